/* cmd_sdfs.c — the SDFS commands: put, get, delete, ls, store, get-versions,
 * put-dir. This file holds the command table, what the transfers share (the
 * gateway call, lookups, progress, version printing) and the commands that
 * only ask the catalog (delete, ls, store); cmd_sdfs_put.c has put and
 * put-dir, cmd_sdfs_get.c get and get-versions (cmd_sdfs.h is what they
 * share).
 *
 * Transfers go through the node given by -s (the gateway) on one connection,
 * in chunks of the size it announces, with up to CLI_SDFS_WINDOW chunks in
 * flight, so a large file neither waits for one round trip per chunk nor is
 * held in memory.
 *
 * Threading: the client's one thread (a get also runs a writer thread of its
 * own, cmd_sdfs_get.c). */
#include "cli/cmd_sdfs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/sha256.h"
#include "sdfs/catalog.h"

static int cmd_delete(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_ls(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_store(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_sdfs_commands[] = {
    {"put", "LOCAL NAME", "store a local file in SDFS as NAME (a new version if it exists)",
     cli_sdfs__cmd_put},
    {"get", "NAME LOCAL [--version V]",
     "fetch the latest (or given) version of NAME, checked (copied from a replica on this host "
     "when there is one)",
     cli_sdfs__cmd_get},
    {"delete", "NAME", "delete NAME and all its versions everywhere", cmd_delete},
    {"ls", "[NAME | --prefix P]",
     "NAME: its versions and the replicas holding them; else all files", cmd_ls},
    {"store", "", "the files with a copy on the node given by -s", cmd_store},
    {"get-versions", "NAME N LOCAL", "the last N versions of NAME in one file, newest first",
     cli_sdfs__cmd_get_versions},
    {"put-dir", "[--follow-links] LOCALDIR PREFIX",
     "store every file of LOCALDIR as PREFIX/FILE (a data set); links out of LOCALDIR only with "
     "--follow-links",
     cli_sdfs__cmd_put_dir},
    {NULL, NULL, NULL, NULL},
};

uint32_t cli_sdfs__timeout_of(const struct cli_ctx *ctx)
{
    return ctx->timeout_set ? ctx->timeout_ms : CLI_SDFS_TIMEOUT_MS;
}

/* Whether a failed transfer is worth another attempt. */
int cli_sdfs__retryable(int code)
{
    return code == ID_EUNAVAIL || code == ID_ECLOSED || code == ID_ETIMEDOUT ||
           code == ID_ENOLEADER || code == ID_ENOTLEADER || code == ID_ECRC || code == ID_ENOSPC ||
           code == ID_ECONNREFUSED || code == ID_ENOTFOUND || code == ID_EBUSY ||
           code == ID_ECANCELED;
}

void cli_sdfs__fmt_size(uint64_t b, char *buf, size_t len)
{
    if (b >= (1ull << 30))
        snprintf(buf, len, "%.1f GiB", (double)b / (1u << 30));
    else if (b >= (1u << 20))
        snprintf(buf, len, "%.1f MiB", (double)b / (1u << 20));
    else if (b >= 1024)
        snprintf(buf, len, "%.1f KiB", (double)b / 1024);
    else
        snprintf(buf, len, "%llu B", (unsigned long long)b);
}

void cli_sdfs__fmt_time(uint64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void join_names(char **names, size_t n, char *buf, size_t len)
{
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? "," : "", names[i]);
    }
}

/* One call on a connection, no pipelining. */
int cli_sdfs__conn_call(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg,
                        struct cli_reply *r, char *err, size_t errlen)
{
    int rc = cli_conn_send(c, type, msg, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "%s", id_strerror(rc));
        return rc;
    }
    return cli_conn_recv(c, r, NULL, err, errlen);
}

void cli_sdfs__progress_show(struct progress *p, uint64_t done, int final)
{
    if (!p->on)
        return;
    uint64_t now = id_now_ms();
    if (!final && now - p->last_ms < 200)
        return;
    p->last_ms = now;
    double secs = (double)(now - p->start_ms) / 1000.0;
    fprintf(stderr, "\r%s: %3.0f%% %llu/%llu MiB %.1f MiB/s%s", p->what,
            p->total ? 100.0 * (double)done / (double)p->total : 100.0,
            (unsigned long long)(done >> 20), (unsigned long long)(p->total >> 20),
            secs > 0 ? (double)done / (1 << 20) / secs : 0.0, final ? "\n" : "");
}

/* local_from: for a get, the replica whose file on this host was copied
 * ("" when the bytes came over the network); NULL for a put. */
void cli_sdfs__print_version(const struct cli_ctx *ctx, const char *verb,
                             const Idunno__SdfsVersion *v, uint64_t ms, const char *local_from)
{
    char reps[300], size[32];
    join_names(v->replicas, v->n_replicas, reps, sizeof reps);
    cli_sdfs__fmt_size(v->size, size, sizeof size);
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("name", v->name);
        cli_json_u64("version", v->version);
        cli_json_u64("size", v->size);
        cli_json_str("blob", v->blob);
        cli_json_begin_array("replicas");
        for (size_t i = 0; i < v->n_replicas; i++)
            cli_json_str(NULL, v->replicas[i]);
        cli_json_end_array();
        cli_json_u64("elapsed_ms", ms);
        if (local_from) {
            cli_json_str("source", local_from[0] ? "local" : "network");
            if (local_from[0])
                cli_json_str("copied_from", local_from);
        }
        cli_json_end_object();
        cli_json_done();
    } else if (local_from && local_from[0]) {
        printf("%s %s version %llu (%s) on %s in %llu ms, copied from %s's file on this host\n",
               verb, v->name, (unsigned long long)v->version, size, reps, (unsigned long long)ms,
               local_from);
    } else {
        printf("%s %s version %llu (%s) on %s in %llu ms\n", verb, v->name,
               (unsigned long long)v->version, size, reps, (unsigned long long)ms);
    }
}

/* ---- lookups ---------------------------------------------------------------------------------- */

int cli_sdfs__lookup(const struct cli_ctx *ctx, struct cli_conn *conn, const char *name,
                     uint64_t version, Idunno__SdfsFile **out, char *err, size_t errlen)
{
    (void)ctx;
    Idunno__SdfsLookup l = IDUNNO__SDFS_LOOKUP__INIT;
    l.name = (char *)name;
    l.version = version;
    struct cli_reply r;
    int rc = cli_sdfs__conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_LOOKUP_REQ, &l.base, &r, err,
                                 errlen);
    if (rc < 0)
        return rc;
    *out = idunno__sdfs_file__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!*out || (*out)->n_versions == 0) {
        snprintf(err, errlen, "malformed answer to lookup");
        return ID_EPROTO;
    }
    return 0;
}

/* ---- delete ----------------------------------------------------------------------------------- */

static int cmd_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 2)
        return cli_usage_error(cmd, "takes an SDFS name");
    Idunno__SdfsLookup l = IDUNNO__SDFS_LOOKUP__INIT;
    l.name = argv[1];
    Idunno__SdfsFile *f;
    int rc = cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_SDFS_DELETE_REQ, &l.base,
                             &idunno__sdfs_file__descriptor, &f);
    if (rc)
        return rc;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("deleted", f->name);
        cli_json_u64("versions", f->n_versions);
        cli_json_end_object();
        cli_json_done();
    } else {
        printf("deleted %s (%zu version%s)\n", f->name, f->n_versions,
               f->n_versions == 1 ? "" : "s");
    }
    idunno__sdfs_file__free_unpacked(f, NULL);
    return 0;
}

/* ---- ls and store ----------------------------------------------------------------------------- */

static int print_listing(const struct cli_ctx *ctx, Idunno__SdfsList *req)
{
    struct cli_reply r;
    uint64_t t0 = id_now_us();
    int rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_SDFS_LIST_REQ, &req->base, &r);
    uint64_t answer_us = id_now_us() - t0;
    if (rc)
        return rc;
    Idunno__SdfsListing *l = idunno__sdfs_listing__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!l)
        return cli_fail(CLI_CLUSTER_ERROR, "malformed answer from %s", ctx->server);
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_u64("count", l->n_files);
        cli_json_u64("total_bytes", l->total_bytes);
        cli_json_double("answer_ms", (double)answer_us / 1000.0); /* request sent -> answer read */
        cli_json_begin_array("files");
        for (size_t i = 0; i < l->n_files; i++) {
            const Idunno__SdfsFileSummary *f = l->files[i];
            cli_json_begin_object();
            cli_json_str("name", f->name);
            cli_json_u64("version", f->version);
            cli_json_u64("versions", f->versions);
            cli_json_u64("size", f->size);
            cli_json_begin_array("replicas");
            for (size_t k = 0; k < f->n_replicas; k++)
                cli_json_str(NULL, f->replicas[k]);
            cli_json_end_array();
            cli_json_end_object();
        }
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
    } else {
        struct cli_table *t = cli_table_new(5, "NAME", "VERSION", "SIZE", "KEPT", "REPLICAS");
        for (size_t i = 0; i < l->n_files; i++) {
            const Idunno__SdfsFileSummary *f = l->files[i];
            char ver[24], size[32], kept[16], reps[300];
            snprintf(ver, sizeof ver, "%llu", (unsigned long long)f->version);
            cli_sdfs__fmt_size(f->size, size, sizeof size);
            snprintf(kept, sizeof kept, "%u", f->versions);
            join_names(f->replicas, f->n_replicas, reps, sizeof reps);
            cli_table_row(t, f->name, ver, size, kept, reps);
        }
        cli_table_print(t);
        char total[32];
        cli_sdfs__fmt_size(l->total_bytes, total, sizeof total);
        printf("%zu file%s, %s\n", l->n_files, l->n_files == 1 ? "" : "s", total);
    }
    idunno__sdfs_listing__free_unpacked(l, NULL);
    return 0;
}

static int cmd_ls(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    Idunno__SdfsList req = IDUNNO__SDFS_LIST__INIT;
    req.prefix = "";
    if (argc == 3 && strcmp(argv[1], "--prefix") == 0) {
        req.prefix = argv[2];
        return print_listing(ctx, &req);
    }
    if (argc == 1)
        return print_listing(ctx, &req);
    if (argc != 2)
        return cli_usage_error(cmd, "takes one SDFS name, --prefix P, or nothing");
    struct cli_conn *conn = NULL;
    char err[400];
    int rc = cli_conn_open(ctx->server, cli_sdfs__timeout_of(ctx), &conn);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s", ctx->server, id_strerror(rc));
    Idunno__SdfsFile *f = NULL;
    rc = cli_sdfs__lookup(ctx, conn, argv[1], 0, &f, err, sizeof err);
    cli_conn_close(conn);
    if (rc < 0)
        return cli_fail(cli_status_of(rc), "ls %s: %s", argv[1], err);
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("name", f->name);
        cli_json_begin_array("versions");
        for (size_t i = 0; i < f->n_versions; i++) {
            const Idunno__SdfsVersion *v = f->versions[i];
            char hex[65];
            if (v->sha256.len == 32)
                sha256_hex(v->sha256.data, hex);
            else
                hex[0] = 0;
            cli_json_begin_object();
            cli_json_u64("version", v->version);
            cli_json_u64("size", v->size);
            cli_json_str("sha256", hex);
            char crc[9] = "";
            if (v->crc32c.len == 4)
                snprintf(crc, sizeof crc, "%08x", sdfs_crc_decode(v->crc32c.data));
            cli_json_str("crc32c", crc);
            cli_json_str("blob", v->blob);
            cli_json_u64("time_ms", v->time_ms);
            cli_json_begin_array("replicas");
            for (size_t k = 0; k < v->n_replicas; k++) {
                cli_json_begin_object();
                cli_json_str("name", v->replicas[k]);
                cli_json_str("addr", k < v->n_replica_addrs ? v->replica_addrs[k] : "");
                cli_json_end_object();
            }
            cli_json_end_array();
            cli_json_end_object();
        }
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
    } else {
        struct cli_table *t = cli_table_new(5, "VERSION", "SIZE", "SHA256", "COMMITTED",
                                            "REPLICAS");
        for (size_t i = f->n_versions; i > 0; i--) {
            const Idunno__SdfsVersion *v = f->versions[i - 1];
            char ver[24], size[32], hex[65] = "", when[40], reps[400] = "";
            snprintf(ver, sizeof ver, "%llu", (unsigned long long)v->version);
            cli_sdfs__fmt_size(v->size, size, sizeof size);
            if (v->sha256.len == 32)
                sha256_hex(v->sha256.data, hex);
            hex[12] = 0;
            cli_sdfs__fmt_time(v->time_ms, when, sizeof when);
            for (size_t k = 0; k < v->n_replicas; k++) {
                size_t used = strlen(reps);
                const char *a = k < v->n_replica_addrs ? v->replica_addrs[k] : "";
                snprintf(reps + used, sizeof reps - used, "%s%s%s", k ? "," : "", v->replicas[k],
                         a[0] ? "" : "(down)");
            }
            cli_table_row(t, ver, size, hex, when, reps);
        }
        printf("%s\n", f->name);
        cli_table_print(t);
    }
    idunno__sdfs_file__free_unpacked(f, NULL);
    return 0;
}

static int cmd_store(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 1)
        return cli_usage_error(cmd, "takes no arguments (-s picks the node)");
    Idunno__SdfsList req = IDUNNO__SDFS_LIST__INIT;
    req.prefix = "";
    req.here = 1;
    return print_listing(ctx, &req);
}
