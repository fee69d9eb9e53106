/* cmd_ctl.c — control-plane commands: `status`, and the diagnostic key-value
 * commands `ctl-put`, `ctl-get`, `ctl-load` (tests and benchmarks use them to
 * time failovers and check that no acknowledged write is lost; the store holds
 * nothing the system needs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"

static int cmd_status(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_ctl_put(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_ctl_get(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_ctl_load(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_ctl_commands[] = {
    {"status", "[--watch]", "the control plane: coordinator, standbys, term, commit index, members",
     cmd_status},
    {"ctl-put", "KEY VALUE", "diagnostics: write KEY in the replicated test store", cmd_ctl_put},
    {"ctl-get", "KEY...", "diagnostics: read keys of the test store (linearizable)", cmd_ctl_get},
    {"ctl-load", "PREFIX COUNT [INTERVAL_MS]",
     "diagnostics: COUNT sequential puts PREFIX-1.., timed (failover benchmarks)", cmd_ctl_load},
    {NULL, NULL, NULL, NULL},
};

static void fmt_wall(uint64_t ms, char *buf, size_t len)
{
    if (!ms) {
        snprintf(buf, len, "?");
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- status --------------------------------------------------------------------------------- */

static int status_once(struct cli_ctx *ctx);

static int cmd_status(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    int watch = argc == 2 && (strcmp(argv[1], "--watch") == 0 || strcmp(argv[1], "-w") == 0);
    if (argc > 1 && !watch)
        return cli_usage_error(cmd, "takes only --watch");
    if (!watch)
        return status_once(ctx);
    for (;;) { /* redrawn every second until interrupted */
        if (!ctx->json)
            printf("\033[H\033[2J");
        int rc = status_once(ctx);
        fflush(stdout);
        if (rc)
            return rc;
        sleep(1);
    }
}

static int status_once(struct cli_ctx *ctx)
{
    Idunno__CtlStatusQuery q = IDUNNO__CTL_STATUS_QUERY__INIT;
    q.digest = 1;
    Idunno__CtlStatus *st;
    int rc = cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_CTL_STATUS_REQ, &q.base,
                             &idunno__ctl_status__descriptor, &st);
    if (rc)
        return rc;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_fields(&st->base,
                        "leader leader_addr leader_since_ms term commit_index members_alive");
        cli_json_begin_array("servers");
        for (size_t i = 0; i < st->n_servers; i++) {
            cli_json_begin_object();
            cli_json_fields(&st->servers[i]->base, "name addr raft_addr id role leader");
            cli_json_end_object();
        }
        cli_json_end_array();
        cli_json_key_object("answered_by");
        cli_json_fields(&st->base,
                        "node state voter applied_index last_index applied_commands digest");
        cli_json_end_object();
        cli_json_end_object();
        cli_json_done();
    } else {
        char since[40];
        fmt_wall(st->leader_since_ms, since, sizeof since);
        if (st->leader[0] || st->leader_addr[0])
            printf("coordinator   %s (%s), since %s\n", st->leader[0] ? st->leader : "?",
                   st->leader_addr, since);
        else
            printf("coordinator   none known (election under way?)\n");
        printf("standbys      ");
        int any = 0;
        for (size_t i = 0; i < st->n_servers; i++)
            if (!st->servers[i]->leader && strcmp(st->servers[i]->role, "voter") == 0) {
                printf("%s%s", any ? ", " : "",
                       st->servers[i]->name[0] ? st->servers[i]->name : st->servers[i]->addr);
                any = 1;
            }
        printf("%s\n", any ? "" : "none");
        printf("term          %llu\n", (unsigned long long)st->term);
        printf("commit index  %llu\n", (unsigned long long)st->commit_index);
        printf("members       %llu alive\n", (unsigned long long)st->members_alive);
        printf("answered by   %s (%s%s), applied %llu, digest %.16s\n\n", st->node, st->state,
               st->voter ? ", voter" : "", (unsigned long long)st->applied_index, st->digest);
        struct cli_table *t = cli_table_new(4, "NAME", "ADDRESS", "RAFT ADDRESS", "ROLE");
        for (size_t i = 0; i < st->n_servers; i++) {
            const Idunno__CtlServer *s = st->servers[i];
            const char *role = s->leader                       ? "coordinator"
                               : strcmp(s->role, "voter") == 0 ? "standby"
                                                               : s->role;
            cli_table_row(t, s->name[0] ? s->name : "?", s->addr, s->raft_addr, role);
        }
        cli_table_print(t);
    }
    idunno__ctl_status__free_unpacked(st, NULL);
    return 0;
}

/* ---- diagnostics ------------------------------------------------------------------------------- */

/* One put; on success fills *out (free with idunno__ctl_kv_put_result__free_unpacked). */
static int kv_put(struct cli_ctx *ctx, const char *key, const char *value,
                  Idunno__CtlKvPutResult **out)
{
    Idunno__CtlKvPut p = IDUNNO__CTL_KV_PUT__INIT;
    p.key = (char *)key;
    p.value.data = (uint8_t *)value;
    p.value.len = strlen(value);
    return cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_CTL_KV_PUT_REQ, &p.base,
                           &idunno__ctl_kv_put_result__descriptor, out);
}

static int cmd_ctl_put(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 3)
        return cli_usage_error(cmd, "takes a key and a value");
    Idunno__CtlKvPutResult *res;
    int rc = kv_put(ctx, argv[1], argv[2], &res);
    if (rc)
        return rc;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("key", argv[1]);
        cli_json_u64("revision", res->revision);
        cli_json_u64("term", res->term);
        cli_json_str("leader", res->leader);
        cli_json_end_object();
        cli_json_done();
    } else {
        printf("%s: revision %llu (coordinator %s, term %llu)\n", argv[1],
               (unsigned long long)res->revision, res->leader, (unsigned long long)res->term);
    }
    idunno__ctl_kv_put_result__free_unpacked(res, NULL);
    return 0;
}

static int cmd_ctl_get(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc < 2)
        return cli_usage_error(cmd, "takes one or more keys");
    int missing = 0;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_begin_array("keys");
    }
    for (int i = 1; i < argc; i++) {
        Idunno__CtlKvGet g = IDUNNO__CTL_KV_GET__INIT;
        g.key = argv[i];
        struct cli_reply r;
        int rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_CTL_KV_GET_REQ, &g.base, &r);
        if (rc) {
            if (ctx->json)
                printf("]}\n"); /* keep the document well-formed for scripts */
            return rc;
        }
        Idunno__CtlKvValue *v = idunno__ctl_kv_value__unpack(NULL, r.len, r.body);
        free(r.body);
        if (!v)
            return cli_fail(CLI_CLUSTER_ERROR, "malformed answer from %s", ctx->server);
        missing += !v->found;
        if (ctx->json) {
            cli_json_begin_object();
            cli_json_str("key", argv[i]);
            cli_json_bool("found", v->found);
            if (v->found) {
                char *s = strndup((const char *)v->value.data, v->value.len);
                cli_json_str("value", s ? s : "");
                free(s);
                cli_json_u64("revision", v->revision);
            }
            cli_json_end_object();
        } else if (v->found) {
            printf("%s = %.*s (revision %llu)\n", argv[i], (int)v->value.len,
                   (const char *)v->value.data, (unsigned long long)v->revision);
        } else {
            printf("%s: not found\n", argv[i]);
        }
        idunno__ctl_kv_value__free_unpacked(v, NULL);
    }
    if (ctx->json) {
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
    }
    return missing ? CLI_USER_ERROR : 0;
}

/* Sequential puts with wall-clock timestamps: the failover benchmark kills the
 * leader meanwhile and reads off when writes were acknowledged again, and by
 * whom. A failed put is reported and the load goes on. */
static int cmd_ctl_load(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 3 && argc != 4)
        return cli_usage_error(cmd, "takes a prefix, a count and an optional interval");
    char *end;
    long count = strtol(argv[2], &end, 10);
    if (*end || count <= 0)
        return cli_usage_error(cmd, "needs a positive COUNT");
    long interval = 0;
    if (argc == 4) {
        interval = strtol(argv[3], &end, 10);
        if (*end || interval < 0)
            return cli_usage_error(cmd, "needs INTERVAL_MS >= 0");
    }
    long ok = 0;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_begin_array("puts");
    }
    for (long i = 1; i <= count; i++) {
        char key[300], value[32];
        snprintf(key, sizeof key, "%s-%ld", argv[1], i);
        snprintf(value, sizeof value, "%ld", i);
        uint64_t sent = id_wall_ms();
        Idunno__CtlKvPutResult *res = NULL;
        int rc = kv_put(ctx, key, value, &res);
        uint64_t acked = id_wall_ms();
        ok += rc == 0;
        if (ctx->json) {
            cli_json_begin_object();
            cli_json_str("key", key);
            cli_json_bool("ok", rc == 0);
            cli_json_u64("sent_ms", sent);
            cli_json_u64("done_ms", acked);
            if (res) {
                cli_json_u64("revision", res->revision);
                cli_json_u64("term", res->term);
                cli_json_str("leader", res->leader);
            }
            cli_json_end_object();
            fflush(stdout);
        } else if (res) {
            printf("%s %s revision %llu term %llu by %s in %llu ms\n", key, "ok",
                   (unsigned long long)res->revision, (unsigned long long)res->term, res->leader,
                   (unsigned long long)(acked - sent));
        } else {
            printf("%s failed after %llu ms\n", key, (unsigned long long)(acked - sent));
        }
        if (res)
            idunno__ctl_kv_put_result__free_unpacked(res, NULL);
        if (interval) {
            struct timespec ts = {.tv_sec = interval / 1000,
                                  .tv_nsec = (interval % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (ctx->json) {
        cli_json_end_array();
        cli_json_u64("ok", (uint64_t)ok);
        cli_json_u64("failed", (uint64_t)(count - ok));
        cli_json_end_object();
        cli_json_done();
    }
    return ok == count ? 0 : CLI_CLUSTER_ERROR;
}
