/* cmd_sdfs.c — the SDFS commands: put, get, delete, ls, store, get-versions,
 * put-dir.
 *
 * Transfers go through the node given by -s (the gateway) on one connection,
 * in chunks of the size it announces, with up to CLI_SDFS_WINDOW chunks in
 * flight, so a large file neither waits for one round trip per chunk nor is
 * held in memory. The client checks every get end to end with the CRC-32C the
 * catalog recorded at put time (the SHA-256 for versions without one); a copy
 * that does not match is reported to the coordinator (which replaces it) and
 * the read is retried on the other replicas. A replica on the client's own
 * host is not read over the network at all: the client copies its file in the
 * kernel and checks the copy (get_local). A put that loses a replica midway is retried from the start on a
 * new set of replicas (the failed one avoided); a version only becomes visible
 * once complete, so a failed attempt leaves nothing behind. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/array.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/names.h"
#include "base/sha256.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"
#include "sdfs/catalog.h"

#define CLI_SDFS_WINDOW 8
#define CLI_SDFS_ATTEMPTS 3
#define CLI_SDFS_TIMEOUT_MS 30000

static int cmd_put(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_get(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_delete(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_ls(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_store(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_get_versions(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_put_dir(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_sdfs_commands[] = {
    {"put", "LOCAL NAME", "store a local file in SDFS as NAME (a new version if it exists)",
     cmd_put},
    {"get", "NAME LOCAL [--version V]",
     "fetch the latest (or given) version of NAME, checked (copied from a replica on this host "
     "when there is one)",
     cmd_get},
    {"delete", "NAME", "delete NAME and all its versions everywhere", cmd_delete},
    {"ls", "[NAME | --prefix P]", "NAME: its versions and the replicas holding them; else all files",
     cmd_ls},
    {"store", "", "the files with a copy on the node given by -s", cmd_store},
    {"get-versions", "NAME N LOCAL", "the last N versions of NAME in one file, newest first",
     cmd_get_versions},
    {"put-dir", "[--follow-links] LOCALDIR PREFIX",
     "store every file of LOCALDIR as PREFIX/FILE (a data set); links out of LOCALDIR only with --follow-links",
     cmd_put_dir},
    {NULL, NULL, NULL, NULL},
};

static uint32_t timeout_of(const struct cli_ctx *ctx)
{
    return ctx->timeout_set ? ctx->timeout_ms : CLI_SDFS_TIMEOUT_MS;
}

/* Whether a failed transfer is worth another attempt. */
static int retryable(int code)
{
    return code == ID_EUNAVAIL || code == ID_ECLOSED || code == ID_ETIMEDOUT ||
           code == ID_ENOLEADER || code == ID_ENOTLEADER || code == ID_ECRC ||
           code == ID_ENOSPC || code == ID_ECONNREFUSED || code == ID_ENOTFOUND ||
           code == ID_EBUSY || code == ID_ECANCELED;
}

static void fmt_size(uint64_t b, char *buf, size_t len)
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

static void fmt_time(uint64_t ms, char *buf, size_t len)
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
static int conn_call(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg,
                     struct cli_reply *r, char *err, size_t errlen)
{
    int rc = cli_conn_send(c, type, msg, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "%s", id_strerror(rc));
        return rc;
    }
    return cli_conn_recv(c, r, NULL, err, errlen);
}

/* ---- put -------------------------------------------------------------------------------------- */

/* Progress on a terminal for transfers that take a while. */
struct progress {
    int on;
    uint64_t total, start_ms, last_ms;
    const char *what;
};

static void progress_show(struct progress *p, uint64_t done, int final)
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

/* One attempt to put fd (size bytes) as name through conn. On success *out is
 * the committed version (free with idunno__sdfs_version__free_unpacked). */
static int put_attempt(struct cli_conn *conn, int fd, uint64_t size, const char *name,
                       uint64_t *retry_of, Idunno__SdfsVersion **out, struct progress *prog,
                       char *err, size_t errlen)
{
    Idunno__SdfsPutOpen po = IDUNNO__SDFS_PUT_OPEN__INIT;
    po.name = (char *)name;
    po.size = size;
    po.retry_of = *retry_of;
    struct cli_reply r;
    int rc = conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_OPEN_REQ, &po.base, &r, err, errlen);
    if (rc < 0)
        return rc;
    Idunno__SdfsSession *ss = idunno__sdfs_session__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!ss || ss->chunk_size == 0) {
        snprintf(err, errlen, "malformed answer to put");
        if (ss)
            idunno__sdfs_session__free_unpacked(ss, NULL);
        return ID_EPROTO;
    }
    uint64_t session = ss->session;
    *retry_of = session;
    size_t chunk = ss->chunk_size;
    idunno__sdfs_session__free_unpacked(ss, NULL);
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return ID_ENOMEM;
    struct sha256 sha;
    sha256_init(&sha);
    uint64_t offset = 0, acked = 0;
    unsigned inflight = 0;
    rc = 0;
    while (rc == 0 && (offset < size || inflight)) {
        while (rc == 0 && inflight < CLI_SDFS_WINDOW && offset < size) {
            size_t n = size - offset < chunk ? (size_t)(size - offset) : chunk;
            ssize_t got = pread(fd, buf, n, (off_t)offset);
            if (got != (ssize_t)n) {
                snprintf(err, errlen, "cannot read the local file at %llu: %s",
                         (unsigned long long)offset, got < 0 ? strerror(errno) : "it shrank");
                rc = ID_EIO;
                break;
            }
            sha256_update(&sha, buf, n);
            Idunno__SdfsChunk c = IDUNNO__SDFS_CHUNK__INIT;
            c.session = session;
            c.offset = offset;
            c.data.data = buf;
            c.data.len = n;
            rc = cli_conn_send(conn, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_DATA_REQ, &c.base, NULL);
            if (rc < 0)
                snprintf(err, errlen, "sending a chunk: %s", id_strerror(rc));
            offset += n;
            inflight++;
        }
        if (rc == 0 && inflight) {
            rc = cli_conn_recv(conn, &r, NULL, err, errlen);
            free(r.body);
            inflight--;
            acked = offset - (uint64_t)inflight * chunk;
            progress_show(prog, acked > size ? size : acked, 0);
        }
    }
    free(buf);
    if (rc < 0)
        return rc;
    Idunno__SdfsChunk close_req = IDUNNO__SDFS_CHUNK__INIT;
    uint8_t digest[32];
    sha256_final(&sha, digest);
    close_req.session = session;
    close_req.sha256.data = digest;
    close_req.sha256.len = 32;
    rc = conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_CLOSE_REQ, &close_req.base, &r, err, errlen);
    if (rc < 0)
        return rc;
    *out = idunno__sdfs_version__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!*out) {
        snprintf(err, errlen, "malformed answer to put");
        return ID_EPROTO;
    }
    progress_show(prog, size, 1);
    return 0;
}

/* Stores the open regular file fd (closed here) as `name`. */
static int put_fd(const struct cli_ctx *ctx, struct cli_conn **conn, int fd, const char *local,
                  const char *name, Idunno__SdfsVersion **out, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot read '%s': not a regular file", local);
        close(fd);
        return ID_EINVAL;
    }
    struct progress prog = {.on = isatty(2) && st.st_size >= (8 << 20) && !ctx->json,
                            .total = (uint64_t)st.st_size, .start_ms = id_now_ms(), .what = name};
    uint64_t retry_of = 0;
    int rc = ID_EUNAVAIL;
    for (int attempt = 1; attempt <= CLI_SDFS_ATTEMPTS; attempt++) {
        if (!*conn) {
            rc = cli_conn_open(ctx->server, timeout_of(ctx), conn);
            if (rc < 0) {
                snprintf(err, errlen, "cannot reach %s: %s (is idunnod running there?)",
                         ctx->server, id_strerror(rc));
                break;
            }
        }
        rc = put_attempt(*conn, fd, (uint64_t)st.st_size, name, &retry_of, out, &prog, err, errlen);
        if (rc == 0 || !retryable(rc))
            break;
        /* Answers to the failed attempt's chunks may still be on the way: a
         * fresh connection leaves them behind. */
        cli_conn_close(*conn);
        *conn = NULL;
        if (attempt < CLI_SDFS_ATTEMPTS)
            fprintf(stderr, "idunno: put %s: %s; retrying\n", name, err);
    }
    close(fd);
    return rc;
}

int cli_sdfs_put(const struct cli_ctx *ctx, struct cli_conn **conn, const char *local,
                 const char *name, Idunno__SdfsVersion **out, char *err, size_t errlen)
{
    int fd = open(local, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read '%s': %s", local, strerror(errno));
        return ID_EINVAL;
    }
    return put_fd(ctx, conn, fd, local, name, out, err, errlen);
}

/* local_from: for a get, the replica whose file on this host was copied
 * ("" when the bytes came over the network); NULL for a put. */
static void print_version(const struct cli_ctx *ctx, const char *verb, const Idunno__SdfsVersion *v,
                          uint64_t ms, const char *local_from)
{
    char reps[300], size[32];
    join_names(v->replicas, v->n_replicas, reps, sizeof reps);
    fmt_size(v->size, size, sizeof size);
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

static int cmd_put(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 3)
        return cli_usage_error(cmd, "takes a local file and an SDFS name");
    struct cli_conn *conn = NULL;
    Idunno__SdfsVersion *v = NULL;
    char err[400];
    uint64_t t0 = id_now_ms();
    int rc = cli_sdfs_put(ctx, &conn, argv[1], argv[2], &v, err, sizeof err);
    cli_conn_close(conn);
    if (rc < 0)
        return cli_fail(cli_status_of(rc), "put %s: %s", argv[2], err);
    print_version(ctx, "put", v, id_now_ms() - t0, NULL);
    idunno__sdfs_version__free_unpacked(v, NULL);
    return 0;
}

/* ---- lookups ---------------------------------------------------------------------------------- */

static int lookup(const struct cli_ctx *ctx, struct cli_conn *conn, const char *name,
                  uint64_t version, Idunno__SdfsFile **out, char *err, size_t errlen)
{
    (void)ctx;
    Idunno__SdfsLookup l = IDUNNO__SDFS_LOOKUP__INIT;
    l.name = (char *)name;
    l.version = version;
    struct cli_reply r;
    int rc = conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_LOOKUP_REQ, &l.base, &r, err, errlen);
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

/* ---- get -------------------------------------------------------------------------------------- */

/* The local file is written by a second thread, so that the copy into the
 * page cache (as costly as everything else a get does) overlaps receiving
 * and checking the next chunks. Chunks pass through a ring of
 * CLI_SDFS_WRITE_QUEUE, which bounds the memory: the writer frees each one. */
#define CLI_SDFS_WRITE_QUEUE 8

struct file_writer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd;
    Idunno__SdfsChunk *ring[CLI_SDFS_WRITE_QUEUE];
    unsigned head, len;
    int closing;
    int error; /* errno of the first failed write; later chunks are only freed */
};

static void *writer_main(void *arg)
{
    struct file_writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->len == 0 && !w->closing)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->len == 0)
            break;
        Idunno__SdfsChunk *c = w->ring[w->head];
        w->head = (w->head + 1) % CLI_SDFS_WRITE_QUEUE;
        w->len--;
        int failed = w->error;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        int err = 0;
        for (size_t done = 0; !failed && done < c->data.len;) {
            ssize_t k = write(w->fd, c->data.data + done, c->data.len - done);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                err = k < 0 ? errno : EIO;
                break;
            }
            done += (size_t)k;
        }
        idunno__sdfs_chunk__free_unpacked(c, NULL);
        pthread_mutex_lock(&w->lock);
        if (err && !w->error)
            w->error = err;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Returns 0 or the error number of pthread_create. */
static int writer_start(struct file_writer *w, int fd)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    int e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
    return e;
}

/* Queues a chunk (the writer owns it from here), waiting while the ring is
 * full. Returns the errno of an earlier failed write, or 0. */
static int writer_push(struct file_writer *w, Idunno__SdfsChunk *c)
{
    pthread_mutex_lock(&w->lock);
    while (w->len == CLI_SDFS_WRITE_QUEUE)
        pthread_cond_wait(&w->cond, &w->lock);
    w->ring[(w->head + w->len) % CLI_SDFS_WRITE_QUEUE] = c;
    w->len++;
    int err = w->error;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return err;
}

/* Writes what is queued, stops the thread; returns the first write errno or 0. */
static int writer_finish(struct file_writer *w)
{
    pthread_mutex_lock(&w->lock);
    w->closing = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    return w->error;
}

/* Empties the output for an attempt. Only a file that holds something (an
 * earlier attempt's bytes) is truncated: on ext4 a truncation to zero marks
 * the file for writeback at close (auto_da_alloc), 70 ms for 256 MB here. */
static int rewind_output(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || (st.st_size != 0 && ftruncate(fd, 0) < 0))
        return -1;
    return lseek(fd, 0, SEEK_SET) < 0 ? -1 : 0;
}

/* The check of a get against a version: its CRC-32C when it has one
 * (recorded at put from the replicas' own computation), the SHA-256 for
 * older versions. */
struct version_sum {
    const Idunno__SdfsVersion *v;
    int use_crc;
    uint32_t crc;
    struct sha256 sha;
};

static void version_sum_init(struct version_sum *vs, const Idunno__SdfsVersion *v)
{
    vs->v = v;
    vs->use_crc = v->crc32c.len == 4;
    vs->crc = 0;
    sha256_init(&vs->sha);
}

static void version_sum_update(struct version_sum *vs, const void *data, size_t len)
{
    if (vs->use_crc)
        vs->crc = crc32c_update(vs->crc, data, len);
    else
        sha256_update(&vs->sha, data, len);
}

/* Do the bytes summed match the version's checksum? */
static int version_sum_matches(struct version_sum *vs)
{
    if (vs->use_crc)
        return vs->crc == sdfs_crc_decode(vs->v->crc32c.data);
    uint8_t digest[32];
    sha256_final(&vs->sha, digest);
    return vs->v->sha256.len == 32 && memcmp(digest, vs->v->sha256.data, 32) == 0;
}

/* Reads version v into fd from the replicas in `order` (count n). On a checksum
 * mismatch *bad gets the node that served the bytes. */
static int get_attempt(struct cli_conn *conn, uint16_t type, const Idunno__SdfsVersion *v,
                       char **order, size_t n, int fd, char *bad, size_t badlen, struct progress *prog, char *err,
                       size_t errlen)
{
    struct version_sum sum;
    version_sum_init(&sum, v);
    uint64_t next = 0, written = 0;
    /* Answers may come back out of order (the gateway reads chunks in
     * parallel): each is parked in the slot of its request until the bytes
     * before it have been written and hashed. */
    struct {
        uint64_t req_id, offset;
        Idunno__SdfsChunk *chunk;
        int used;
    } slot[CLI_SDFS_WINDOW];
    memset(slot, 0, sizeof slot);
    unsigned inflight = 0;
    char from[64] = "";
    int rc = 0;
    if (rewind_output(fd) < 0) {
        snprintf(err, errlen, "cannot write the local file: %s", strerror(errno));
        return ID_EIO;
    }
    struct file_writer writer;
    int terr = writer_start(&writer, fd);
    if (terr != 0) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(terr));
        return ID_ENOMEM;
    }
    while (rc == 0 && (next < v->size || inflight)) {
        for (unsigned k = 0; rc == 0 && k < CLI_SDFS_WINDOW && next < v->size; k++) {
            if (slot[k].used)
                continue;
            Idunno__SdfsRead rd = IDUNNO__SDFS_READ__INIT;
            rd.blob = v->blob;
            rd.offset = next;
            rd.length = 1u << 20;
            rd.n_replicas = n;
            rd.replicas = order;
            rd.name = v->name;
            rc = cli_conn_send(conn, type, &rd.base, &slot[k].req_id);
            if (rc < 0) {
                snprintf(err, errlen, "%s", id_strerror(rc));
                break;
            }
            slot[k].offset = next;
            slot[k].used = 1;
            next += rd.length;
            inflight++;
        }
        if (rc < 0)
            break;
        struct cli_reply r;
        uint64_t id = 0;
        rc = cli_conn_recv(conn, &r, &id, err, errlen);
        if (rc < 0)
            break;
        unsigned k = 0;
        while (k < CLI_SDFS_WINDOW && !(slot[k].used && !slot[k].chunk && slot[k].req_id == id))
            k++;
        Idunno__SdfsChunk *c = k < CLI_SDFS_WINDOW ? idunno__sdfs_chunk__unpack(NULL, r.len, r.body)
                                                   : NULL;
        free(r.body);
        if (!c) {
            snprintf(err, errlen, "malformed or unexpected answer");
            rc = ID_EPROTO;
            break;
        }
        slot[k].chunk = c;
        /* Write every parked chunk that is next in line. */
        for (int progress = 1; progress && rc == 0;) {
            progress = 0;
            for (unsigned j = 0; j < CLI_SDFS_WINDOW; j++) {
                if (!slot[j].used || !slot[j].chunk || slot[j].offset != written)
                    continue;
                Idunno__SdfsChunk *ch = slot[j].chunk;
                if (ch->data.len == 0 && written < v->size) {
                    snprintf(err, errlen, "empty chunk at %llu", (unsigned long long)written);
                    rc = ID_EPROTO;
                } else {
                    version_sum_update(&sum, ch->data.data, ch->data.len);
                    written += ch->data.len;
                    if (ch->from && ch->from[0] && !from[0])
                        snprintf(from, sizeof from, "%s", ch->from);
                    int werr = writer_push(&writer, ch);
                    ch = NULL;
                    if (werr) {
                        snprintf(err, errlen, "cannot write the local file: %s", strerror(werr));
                        rc = ID_EIO;
                    }
                    progress_show(prog, written, 0);
                }
                if (ch)
                    idunno__sdfs_chunk__free_unpacked(ch, NULL);
                slot[j].chunk = NULL;
                slot[j].used = 0;
                inflight--;
                progress = 1;
                /* A short chunk before the end would leave a hole: stop there. */
                if (rc == 0 && written < v->size && written % (1u << 20) != 0) {
                    snprintf(err, errlen, "short chunk at %llu", (unsigned long long)written);
                    rc = ID_EPROTO;
                }
            }
        }
    }
    for (unsigned j = 0; j < CLI_SDFS_WINDOW; j++)
        if (slot[j].chunk)
            idunno__sdfs_chunk__free_unpacked(slot[j].chunk, NULL);
    int werr = writer_finish(&writer);
    if (rc == 0 && werr) {
        snprintf(err, errlen, "cannot write the local file: %s", strerror(werr));
        rc = ID_EIO;
    }
    if (rc < 0)
        return rc;
    if (written != v->size || !version_sum_matches(&sum)) {
        snprintf(bad, badlen, "%s", from);
        snprintf(err, errlen, "the copy on %s does not match its checksum", from[0] ? from : "?");
        return ID_ECRC;
    }
    progress_show(prog, v->size, 1);
    return 0;
}

static int report_bad(struct cli_conn *conn, const Idunno__SdfsVersion *v, const char *node)
{
    Idunno__SdfsBad b = IDUNNO__SDFS_BAD__INIT;
    b.blob = v->blob;
    b.node = (char *)node;
    b.name = v->name;
    b.reason = "checksum mismatch on read";
    struct cli_reply r;
    char err[200];
    int rc = conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_BAD_REQ, &b.base, &r, err, sizeof err);
    free(r.body);
    return rc;
}

/* Drops `bad` from the replica order. */
static size_t order_without(char **order, size_t n, const char *bad)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(order[i], bad) != 0)
            order[k++] = order[i];
    return k;
}

/* ---- get: a replica on this host ----------------------------------------------------------- */

/* The output is checked through mappings of at most this size: the page
 * cache is read in place, without a copy, and the client's memory stays
 * bounded. The copy goes in steps of the same size, and a second thread
 * checks each step while the kernel copies the next. */
#define CLI_SDFS_CHECK_WINDOW (32u << 20)

struct file_check {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd;
    const Idunno__SdfsVersion *v;
    uint64_t copied;  /* bytes the copier has finished (under lock) */
    int stop;         /* the copier gave up (under lock) */
    int result;       /* 1 match, 0 mismatch, ID_E* could not map */
};

/* How far the checker may go: mappings start on page boundaries, so a
 * partial copy step is checked up to its last whole MiB, the rest with the
 * next step (or at the end). Under lock. */
static uint64_t checkable(const struct file_check *k)
{
    return k->copied == k->v->size ? k->copied : k->copied & ~(uint64_t)((1u << 20) - 1);
}

static void *check_main(void *arg)
{
    struct file_check *k = arg;
    const Idunno__SdfsVersion *v = k->v;
    struct version_sum sum;
    version_sum_init(&sum, v);
    uint64_t off = 0;
    k->result = ID_ECANCELED;
    for (;;) {
        pthread_mutex_lock(&k->lock);
        while (!k->stop && off < v->size && checkable(k) <= off)
            pthread_cond_wait(&k->cond, &k->lock);
        uint64_t upto = checkable(k);
        int stop = k->stop;
        pthread_mutex_unlock(&k->lock);
        if (stop)
            return NULL;
        if (off == v->size)
            break;
        while (off < upto) {
            size_t n = upto - off < CLI_SDFS_CHECK_WINDOW ? (size_t)(upto - off) : CLI_SDFS_CHECK_WINDOW;
            void *p = mmap(NULL, n, PROT_READ, MAP_SHARED | MAP_POPULATE, k->fd, (off_t)off);
            if (p == MAP_FAILED) {
                k->result = id_from_errno(errno);
                return NULL;
            }
            version_sum_update(&sum, p, n);
            munmap(p, n);
            off += n;
        }
    }
    k->result = version_sum_matches(&sum);
    return NULL;
}

/* Publishes progress to the checker (copied bytes, or stop). */
static void check_post(struct file_check *k, uint64_t copied, int stop)
{
    pthread_mutex_lock(&k->lock);
    k->copied = copied;
    k->stop |= stop;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
}

/* Copies src (v->size bytes) into fd in the kernel, checking the copy as it
 * goes. 0, ID_ECRC (the copy does not match, or src is short), or
 * ID_EUNAVAIL (it cannot be done here: EXDEV, ENOSYS, a full disk...; the
 * network path then says which). */
static int copy_checked(int src, int fd, const Idunno__SdfsVersion *v)
{
    struct file_check k = {.fd = fd, .v = v};
    pthread_mutex_init(&k.lock, NULL);
    pthread_cond_init(&k.cond, NULL);
    int rc = pthread_create(&k.thread, NULL, check_main, &k) == 0 ? 0 : ID_EUNAVAIL;
    if (rc == 0) {
        loff_t in = 0, out = 0;
        while (rc == 0 && (uint64_t)in < v->size) {
            uint64_t left = v->size - (uint64_t)in;
            ssize_t n = copy_file_range(src, &in, fd, &out,
                                        left < CLI_SDFS_CHECK_WINDOW ? (size_t)left : CLI_SDFS_CHECK_WINDOW, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                rc = ID_EUNAVAIL;
            else if (n == 0)
                rc = ID_ECRC; /* shorter than it said */
            else
                check_post(&k, (uint64_t)in, 0);
        }
        if (rc != 0)
            check_post(&k, (uint64_t)in, 1);
        pthread_join(k.thread, NULL);
        if (rc == 0)
            rc = k.result == 1 ? 0 : k.result == 0 ? ID_ECRC : ID_EUNAVAIL;
    }
    pthread_mutex_destroy(&k.lock);
    pthread_cond_destroy(&k.cond);
    return rc;
}

/* Copies version v from the replica at addr into fd when that replica's file
 * can be opened here, i.e. the replica runs on this host: the node names the
 * file, the kernel copies it (copy_file_range: no trip through two sockets
 * and no copy through this process), and the copy is checked like any other.
 * Returns 0; ID_ECRC if the copy does not match (the replica's file is bad);
 * ID_EUNAVAIL if the replica is not on this host or the copy cannot be made
 * here (the caller then reads over the network). */
static int get_local(const struct cli_ctx *ctx, const char *addr, const Idunno__SdfsVersion *v, int fd)
{
    struct cli_conn *c = NULL;
    if (cli_conn_open(addr, timeout_of(ctx), &c) < 0)
        return ID_EUNAVAIL;
    Idunno__SdfsRead rd = IDUNNO__SDFS_READ__INIT;
    rd.blob = v->blob;
    rd.name = v->name;
    struct cli_reply r;
    char err[200];
    int rc = conn_call(c, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_LOCATE_REQ, &rd.base, &r, err, sizeof err);
    cli_conn_close(c);
    if (rc < 0)
        return ID_EUNAVAIL;
    Idunno__SdfsBlobFile *f = idunno__sdfs_blob_file__unpack(NULL, r.len, r.body);
    free(r.body);
    int src = f && f->path[0] == '/' ? open(f->path, O_RDONLY | O_CLOEXEC) : -1;
    if (f)
        idunno__sdfs_blob_file__free_unpacked(f, NULL);
    if (src < 0)
        return ID_EUNAVAIL; /* not on this host, or not ours to read */
    struct stat st;
    rc = fstat(src, &st) < 0 ? ID_EUNAVAIL : (uint64_t)st.st_size != v->size ? ID_ECRC : 0;
    if (rc == 0 && rewind_output(fd) < 0)
        rc = ID_EUNAVAIL;
    if (rc == 0)
        rc = copy_checked(src, fd, v);
    close(src);
    return rc;
}

/* Replica i's copy failed its checksum (err says how): says so, reports it
 * to the coordinator (which replaces it) and drops it from order and addrs,
 * so that no later read uses it either. Returns the new count. */
static size_t drop_bad(const struct cli_ctx *ctx, struct cli_conn **conn, const Idunno__SdfsVersion *v,
                       char **order, char **addrs, size_t n, size_t i, const char *err)
{
    fprintf(stderr, "idunno: get %s: %s; reported, trying another replica\n", v->name, err);
    if (*conn || cli_conn_open(ctx->server, timeout_of(ctx), conn) == 0)
        report_bad(*conn, v, order[i]);
    char *dropped = order[i];
    n = order_without(order, n, dropped);
    for (size_t k = i; k < n; k++)
        addrs[k] = addrs[k + 1];
    return n;
}

/* Writes version v of a file to fd, checking it, retrying other replicas.
 *
 * A replica on this host is copied in the kernel (get_local; its name goes to
 * local_from, "" otherwise). Else the bytes come straight from a replica when
 * the client can reach one (one hop: the node given by -s first if it holds a
 * copy, then the others in order); otherwise through the -s node, which reads
 * its own copy or relays from the replicas. */
static int get_version(const struct cli_ctx *ctx, struct cli_conn **conn,
                       const Idunno__SdfsVersion *v, int fd, char *local_from, size_t fromlen,
                       char *err, size_t errlen)
{
    if (local_from && fromlen)
        local_from[0] = 0;
    char *order[8], *addrs[8];
    size_t n = 0;
    for (size_t i = 0; i < v->n_replicas && n < 8; i++) {
        order[n] = v->replicas[i];
        addrs[n] = i < v->n_replica_addrs ? v->replica_addrs[i] : "";
        if (n > 0 && strcmp(addrs[n], ctx->server) == 0) { /* -s first */
            char *o = order[0], *a = addrs[0];
            order[0] = order[n];
            addrs[0] = addrs[n];
            order[n] = o;
            addrs[n] = a;
        }
        n++;
    }
    struct progress prog = {.on = isatty(2) && v->size >= (8 << 20) && !ctx->json,
                            .total = v->size, .start_ms = id_now_ms(), .what = v->name};
    int rc;
    /* A replica on this host (the -s node first): the first one whose file
     * opens here is copied; a bad copy is reported and read elsewhere. */
    for (size_t i = 0; i < n; i++) {
        if (!addrs[i][0])
            continue;
        rc = get_local(ctx, addrs[i], v, fd);
        if (rc == 0) {
            if (local_from && fromlen)
                snprintf(local_from, fromlen, "%s", order[i]);
            progress_show(&prog, v->size, 1);
            return 0;
        }
        if (rc != ID_ECRC)
            continue;
        snprintf(err, errlen, "the copy on %s does not match its checksum", order[i]);
        n = drop_bad(ctx, conn, v, order, addrs, n, i, err);
        break;
    }
    rc = ID_EUNAVAIL;
    /* Direct reads, one replica after another. */
    for (size_t i = 0; i < n; i++) {
        struct cli_conn *direct = NULL;
        if (!addrs[i][0] || cli_conn_open(addrs[i], timeout_of(ctx), &direct) < 0)
            continue;
        char bad[64] = "";
        char *one[1] = {order[i]};
        rc = get_attempt(direct, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_READ_REQ, v, one, 1, fd, bad,
                         sizeof bad, &prog, err, errlen);
        cli_conn_close(direct);
        if (rc == 0 || !retryable(rc))
            return rc;
        if (rc == ID_ECRC) {
            n = drop_bad(ctx, conn, v, order, addrs, n, i, err);
            i--;
        }
    }
    /* Through the gateway. */
    for (int attempt = 1; attempt <= CLI_SDFS_ATTEMPTS && n > 0; attempt++) {
        if (!*conn && (rc = cli_conn_open(ctx->server, timeout_of(ctx), conn)) < 0) {
            snprintf(err, errlen, "cannot reach %s: %s", ctx->server, id_strerror(rc));
            return rc;
        }
        char bad[64] = "";
        rc = get_attempt(*conn, IDUNNO__MSG_TYPE__MSG_SDFS_GET_REQ, v, order, n, fd, bad,
                         sizeof bad, &prog, err, errlen);
        if (rc == 0 || !retryable(rc))
            return rc;
        if (rc == ID_ECRC && bad[0]) {
            fprintf(stderr, "idunno: get %s: %s; reported, trying another replica\n", v->name, err);
            report_bad(*conn, v, bad);
            n = order_without(order, n, bad);
        } else {
            cli_conn_close(*conn);
            *conn = NULL;
        }
    }
    return rc;
}

/* Creates a new temporary file from `template` (ending in XXXXXX, replaced):
 * mkostemp opens with O_CREAT|O_EXCL, so neither a file nor a link planted
 * under a guessable name is ever followed or truncated. Read as well as
 * written: a short-circuit get checks it through a mapping. Mode 0600 until
 * finished; see publish_mode. */
static int create_tmp(char *template)
{
    return mkostemp(template, O_CLOEXEC);
}

/* The mode a newly created file would get (0666 less the umask). */
static mode_t publish_mode(void)
{
    mode_t mask = umask(022);
    umask(mask);
    return 0666 & ~mask;
}

/* Writes to a temporary file next to `local`, renamed over it once verified:
 * a failed get never leaves a partial file under the asked-for name. */
static int open_tmp(const char *local, char *tmp, size_t len, char *err, size_t errlen)
{
    if ((size_t)snprintf(tmp, len, "%s.idunno-XXXXXX", local) >= len) {
        snprintf(err, errlen, "cannot write '%s': name too long", local);
        return -1;
    }
    int fd = create_tmp(tmp);
    if (fd < 0)
        snprintf(err, errlen, "cannot write '%s': %s", local, strerror(errno));
    else
        fchmod(fd, publish_mode());
    return fd;
}

static int cmd_get(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    uint64_t want = 0;
    char *pos[2];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0 && i + 1 < argc) {
            char *end;
            want = strtoull(argv[++i], &end, 10);
            if (*end || want == 0)
                return cli_usage_error(cmd, "--version takes a positive number");
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            return cli_usage_error(cmd, "takes an SDFS name and a local file");
        }
    }
    if (npos != 2)
        return cli_usage_error(cmd, "takes an SDFS name and a local file");
    char err[400];
    uint64_t t0 = id_now_ms();
    struct cli_conn *conn = NULL;
    int rc = cli_conn_open(ctx->server, timeout_of(ctx), &conn);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s (is idunnod running there?)",
                        ctx->server, id_strerror(rc));
    Idunno__SdfsFile *f = NULL;
    rc = lookup(ctx, conn, pos[0], want, &f, err, sizeof err);
    if (rc < 0) {
        cli_conn_close(conn);
        return cli_fail(cli_status_of(rc), "get %s: %s", pos[0], err);
    }
    const Idunno__SdfsVersion *v = f->versions[f->n_versions - 1];
    char local_from[64] = "";
    char tmp[1100];
    int fd = open_tmp(pos[1], tmp, sizeof tmp, err, sizeof err);
    if (fd < 0) {
        rc = ID_EINVAL;
    } else {
        rc = get_version(ctx, &conn, v, fd, local_from, sizeof local_from, err, sizeof err);
        if (close(fd) < 0 && rc == 0) {
            snprintf(err, sizeof err, "cannot write '%s': %s", pos[1], strerror(errno));
            rc = ID_EIO;
        }
        if (rc == 0 && rename(tmp, pos[1]) < 0) {
            snprintf(err, sizeof err, "cannot write '%s': %s", pos[1], strerror(errno));
            rc = ID_EIO;
        }
        if (rc < 0)
            unlink(tmp);
    }
    cli_conn_close(conn);
    if (rc == 0)
        print_version(ctx, "got", v, id_now_ms() - t0, local_from);
    idunno__sdfs_file__free_unpacked(f, NULL);
    if (rc < 0)
        return cli_fail(cli_status_of(rc), "get %s: %s", pos[0], err);
    return 0;
}

static int cmd_get_versions(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 4)
        return cli_usage_error(cmd, "takes an SDFS name, a count and a local file");
    char *end;
    unsigned long n = strtoul(argv[2], &end, 10);
    if (*end || n == 0)
        return cli_usage_error(cmd, "N must be a positive number");
    char err[400];
    struct cli_conn *conn = NULL;
    int rc = cli_conn_open(ctx->server, timeout_of(ctx), &conn);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s", ctx->server, id_strerror(rc));
    Idunno__SdfsFile *f = NULL;
    rc = lookup(ctx, conn, argv[1], 0, &f, err, sizeof err);
    if (rc < 0) {
        cli_conn_close(conn);
        return cli_fail(cli_status_of(rc), "get-versions %s: %s", argv[1], err);
    }
    char tmp[1100];
    int fd = open_tmp(argv[3], tmp, sizeof tmp, err, sizeof err);
    size_t shown = 0;
    if (fd < 0)
        rc = ID_EINVAL;
    /* Newest first; each version under a line naming it. Each is read into its
     * own temporary file, then appended. */
    for (size_t k = f->n_versions; rc == 0 && k > 0 && shown < n; k--, shown++) {
        const Idunno__SdfsVersion *v = f->versions[k - 1];
        char part[1200];
        snprintf(part, sizeof part, "%s.part-XXXXXX", tmp);
        int pfd = create_tmp(part);
        if (pfd < 0) {
            snprintf(err, sizeof err, "cannot write '%s': %s", part, strerror(errno));
            rc = ID_EIO;
            break;
        }
        rc = get_version(ctx, &conn, v, pfd, NULL, 0, err, sizeof err);
        if (rc == 0) {
            char when[40];
            fmt_time(v->time_ms, when, sizeof when);
            dprintf(fd, "==== %s version %llu (%llu bytes, %s) ====\n", v->name,
                    (unsigned long long)v->version, (unsigned long long)v->size, when);
            uint8_t buf[65536];
            ssize_t got;
            lseek(pfd, 0, SEEK_SET);
            char last = '\n';
            while ((got = read(pfd, buf, sizeof buf)) > 0) {
                if (write(fd, buf, (size_t)got) != got) {
                    snprintf(err, sizeof err, "cannot write '%s': %s", argv[3], strerror(errno));
                    rc = ID_EIO;
                    break;
                }
                last = (char)buf[got - 1];
            }
            if (rc == 0 && last != '\n' && write(fd, "\n", 1) != 1)
                rc = ID_EIO;
        }
        close(pfd);
        unlink(part);
    }
    if (fd >= 0) {
        close(fd);
        if (rc == 0 && rename(tmp, argv[3]) < 0)
            rc = ID_EIO;
        if (rc < 0)
            unlink(tmp);
    }
    cli_conn_close(conn);
    if (rc == 0) {
        if (ctx->json) {
            cli_json_begin_object();
            cli_json_str("name", f->name);
            cli_json_u64("versions", shown);
            cli_json_str("file", argv[3]);
            cli_json_end_object();
            cli_json_done();
        } else {
            printf("wrote %zu version%s of %s to %s\n", shown, shown == 1 ? "" : "s", f->name,
                   argv[3]);
        }
    }
    idunno__sdfs_file__free_unpacked(f, NULL);
    if (rc < 0)
        return cli_fail(cli_status_of(rc), "get-versions %s: %s", argv[1], err);
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
        printf("deleted %s (%zu version%s)\n", f->name, f->n_versions, f->n_versions == 1 ? "" : "s");
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
            fmt_size(f->size, size, sizeof size);
            snprintf(kept, sizeof kept, "%u", f->versions);
            join_names(f->replicas, f->n_replicas, reps, sizeof reps);
            cli_table_row(t, f->name, ver, size, kept, reps);
        }
        cli_table_print(t);
        char total[32];
        fmt_size(l->total_bytes, total, sizeof total);
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
    int rc = cli_conn_open(ctx->server, timeout_of(ctx), &conn);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s", ctx->server, id_strerror(rc));
    Idunno__SdfsFile *f = NULL;
    rc = lookup(ctx, conn, argv[1], 0, &f, err, sizeof err);
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
        struct cli_table *t = cli_table_new(5, "VERSION", "SIZE", "SHA256", "COMMITTED", "REPLICAS");
        for (size_t i = f->n_versions; i > 0; i--) {
            const Idunno__SdfsVersion *v = f->versions[i - 1];
            char ver[24], size[32], hex[65] = "", when[40], reps[400] = "";
            snprintf(ver, sizeof ver, "%llu", (unsigned long long)v->version);
            fmt_size(v->size, size, sizeof size);
            if (v->sha256.len == 32)
                sha256_hex(v->sha256.data, hex);
            hex[12] = 0;
            fmt_time(v->time_ms, when, sizeof when);
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

/* ---- put-dir ---------------------------------------------------------------------------------- */

/* One file of the directory to store. */
struct dir_entry {
    char *name;   /* in the directory */
    char *target; /* a link's resolved path; NULL: a regular file, opened without following */
};

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dir_entry *)a)->name, ((const struct dir_entry *)b)->name);
}

/* Why `name` (an entry of the directory) cannot become SDFS name `full`, or
 * NULL if it can. */
static const char *name_problem(const char *name, const char *full)
{
    if (sdfs_name_ok(full))
        return NULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p == ' ')
            return "contains a space, which SDFS names may not (rename the file)";
        if (*p < 0x20 || *p == 0x7f)
            return "contains a control character";
        if (*p > 0x7e || *p == '\\')
            return "SDFS names are printable ASCII without '\\'";
    }
    if (strlen(full) > SDFS_NAME_MAX)
        return "the SDFS name would be too long";
    return "not a valid SDFS name";
}

struct dir_scan {
    struct dir_entry *entries;
    size_t n, cap;
    size_t bad; /* entries reported as unusable */
};

static void scan_bad(struct dir_scan *sc, const char *name, const char *why)
{
    char shown[1024];
    if (sc->bad++ == 0)
        fprintf(stderr, "idunno: put-dir: nothing stored; fix these first:\n");
    fprintf(stderr, "  '%s': %s\n", id_escape(name, shown, sizeof shown), why);
}

/* Decides about one directory entry: store it (added to sc->entries), skip it
 * silently (hidden files, directories, devices), or report it (sc->bad).
 * A link is followed only to a regular file inside the directory, unless
 * follow_links. */
static void scan_entry(struct dir_scan *sc, int dfd, const char *dir, const char *realdir, const char *name,
                       const char *prefix, size_t plen, int follow_links)
{
    struct stat st;
    if (name[0] == '.' || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return;
    char *target = NULL;
    if (S_ISLNK(st.st_mode)) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        target = realpath(path, NULL);
        if (!target || stat(target, &st) < 0) {
            scan_bad(sc, name, "a link that leads nowhere");
            free(target);
            return;
        }
        size_t rl = strlen(realdir);
        int inside = strncmp(target, realdir, rl) == 0 && target[rl] == '/';
        if (!inside && !follow_links) {
            scan_bad(sc, name, "a link to a file outside the directory (give --follow-links to store it)");
            free(target);
            return;
        }
    }
    if (!S_ISREG(st.st_mode)) {
        free(target);
        return;
    }
    char full[2048];
    snprintf(full, sizeof full, "%.*s/%s", (int)plen, prefix, name);
    const char *why = name_problem(name, full);
    if (why) {
        scan_bad(sc, name, why);
        free(target);
        return;
    }
    if (ARRAY_RESERVE(sc->entries, sc->cap, sc->n, 1, 64) < 0)
        abort(); /* a CLI out of memory has nothing better to do */
    sc->entries[sc->n].name = strdup(name);
    sc->entries[sc->n].target = target;
    sc->n++;
}

static void scan_free(struct dir_scan *sc)
{
    for (size_t i = 0; i < sc->n; i++) {
        free(sc->entries[i].name);
        free(sc->entries[i].target);
    }
    free(sc->entries);
}

/* Opens an entry for reading: a regular file without following a link
 * (should one have replaced it since the scan), a link's target as resolved. */
static int open_entry(int dfd, const struct dir_entry *e)
{
    if (e->target)
        return open(e->target, O_RDONLY | O_CLOEXEC);
    return openat(dfd, e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

static int cmd_put_dir(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    int follow_links = 0;
    const char *pos[2];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--follow-links") == 0)
            follow_links = 1;
        else if (npos < 2)
            pos[npos++] = argv[i];
        else
            npos = 3;
    }
    if (npos != 2)
        return cli_usage_error(cmd, "takes a local directory and an SDFS prefix");
    const char *dir = pos[0], *prefix = pos[1];
    size_t plen = strlen(prefix);
    while (plen && prefix[plen - 1] == '/')
        plen--;
    char shown[1024];
    char pfx[2048];
    snprintf(pfx, sizeof pfx, "%.*s", (int)plen, prefix);
    if (!sdfs_name_ok(pfx))
        return cli_fail(CLI_USER_ERROR, "put-dir: '%s' is not a valid SDFS prefix (printable ASCII, no spaces, "
                                        "no '.' or '..' parts)",
                        id_escape(prefix, shown, sizeof shown));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *realdir = dfd >= 0 ? realpath(dir, NULL) : NULL;
    DIR *d = realdir ? fdopendir(dup(dfd)) : NULL;
    if (!d) {
        int e = errno;
        free(realdir);
        if (dfd >= 0)
            close(dfd);
        return cli_fail(CLI_USER_ERROR, "cannot read directory '%s': %s", dir, strerror(e));
    }
    struct dir_scan sc = {0};
    struct dirent *de;
    while ((de = readdir(d)))
        scan_entry(&sc, dfd, dir, realdir, de->d_name, prefix, plen, follow_links);
    closedir(d);
    free(realdir);
    if (sc.bad) {
        scan_free(&sc);
        close(dfd);
        return cli_fail(CLI_USER_ERROR, "put-dir %s: %zu entr%s cannot be stored as they are", dir, sc.bad,
                        sc.bad == 1 ? "y" : "ies");
    }
    qsort(sc.entries, sc.n, sizeof *sc.entries, entry_cmp);
    struct cli_conn *conn = NULL;
    uint64_t t0 = id_now_ms(), bytes = 0;
    size_t done = 0, n = sc.n;
    int rc = 0, tty = isatty(2) && !ctx->json;
    char err[400];
    for (size_t i = 0; i < n; i++) {
        char path[4096], name[2048];
        snprintf(path, sizeof path, "%s/%s", dir, sc.entries[i].name);
        snprintf(name, sizeof name, "%s/%s", pfx, sc.entries[i].name);
        Idunno__SdfsVersion *v = NULL;
        int fd = open_entry(dfd, &sc.entries[i]);
        if (fd < 0) {
            snprintf(err, sizeof err, "cannot read '%s': %s", path, strerror(errno));
            rc = ID_EINVAL;
        } else {
            rc = put_fd(ctx, &conn, fd, path, name, &v, err, sizeof err);
        }
        if (rc < 0) {
            if (tty)
                fputc('\n', stderr);
            cli_fail(cli_status_of(rc), "put-dir: %s: %s (%zu of %zu stored)", name, err, done, n);
            break;
        }
        bytes += v->size;
        done++;
        idunno__sdfs_version__free_unpacked(v, NULL);
        if (tty && (id_now_ms() - t0 > 500 || i + 1 == n))
            fprintf(stderr, "\rput-dir %s: %zu/%zu files", dir, done, n);
    }
    if (tty && done)
        fputc('\n', stderr);
    cli_conn_close(conn);
    close(dfd);
    scan_free(&sc);
    if (rc < 0)
        return cli_status_of(rc);
    uint64_t ms = id_now_ms() - t0;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("prefix", prefix);
        cli_json_u64("files", done);
        cli_json_u64("bytes", bytes);
        cli_json_u64("elapsed_ms", ms);
        cli_json_end_object();
        cli_json_done();
    } else {
        char size[32];
        fmt_size(bytes, size, sizeof size);
        printf("stored %zu file%s (%s) under %s/ in %llu ms\n", done, done == 1 ? "" : "s", size, pfx,
               (unsigned long long)ms);
    }
    return 0;
}

/* Appends the latest version of SDFS `name` to fd (for `results`), verified
 * like `get`. Returns 0 or ID_E* with the reason in err. */
int cli_sdfs_get_to_fd(const struct cli_ctx *ctx, const char *name, int fd, char *err, size_t len);
int cli_sdfs_get_to_fd(const struct cli_ctx *ctx, const char *name, int fd, char *err, size_t len)
{
    struct cli_conn *conn = NULL;
    int rc = cli_conn_open(ctx->server, timeout_of(ctx), &conn);
    if (rc < 0) {
        snprintf(err, len, "cannot reach %s: %s", ctx->server, id_strerror(rc));
        return rc;
    }
    Idunno__SdfsFile *f = NULL;
    rc = lookup(ctx, conn, name, 0, &f, err, len);
    char part[600];
    const char *dir = getenv("TMPDIR");
    snprintf(part, sizeof part, "%s/idunno-part-XXXXXX", dir && dir[0] ? dir : "/tmp");
    int pfd = rc == 0 ? create_tmp(part) : -1;
    if (rc == 0 && pfd < 0) {
        snprintf(err, len, "cannot write %s: %s", part, strerror(errno));
        rc = ID_EIO;
    }
    if (rc == 0)
        rc = get_version(ctx, &conn, f->versions[f->n_versions - 1], pfd, NULL, 0, err, len);
    if (rc == 0) {
        uint8_t buf[65536];
        ssize_t got;
        lseek(pfd, 0, SEEK_SET);
        while (rc == 0 && (got = read(pfd, buf, sizeof buf)) > 0)
            if (write(fd, buf, (size_t)got) != got) {
                snprintf(err, len, "cannot write: %s", strerror(errno));
                rc = ID_EIO;
            }
    }
    if (pfd >= 0) {
        close(pfd);
        unlink(part);
    }
    if (f)
        idunno__sdfs_file__free_unpacked(f, NULL);
    cli_conn_close(conn);
    return rc;
}
