/* cmd_sdfs_put.c — put and put-dir (cmd_sdfs.h). A put streams the file
 * through the gateway in windows of chunks; a put that loses a replica midway
 * is retried from the start on a new set of replicas (the failed one avoided);
 * a version only becomes visible once complete, so a failed attempt leaves
 * nothing behind. put-dir stores every file of a directory under a prefix,
 * refusing names SDFS would not take before anything is sent: files of at
 * most SDFS_BATCH_FILE_MAX bytes in batch requests (many files per request,
 * one commit per batch), larger ones by the streaming put.
 *
 * Threading: the client's thread.
 */
#include "cli/cmd_sdfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/array.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/names.h"
#include "base/sha256.h"
#include "net/seal.h"
#include "sdfs/catalog.h"

/* ---- put -------------------------------------------------------------------------------------- */

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
    int rc = cli_sdfs__conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_OPEN_REQ, &po.base, &r, err,
                                 errlen);
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
    /* Room to seal each chunk in place (cli_conn_send_chunk). */
    uint8_t *buf = malloc(chunk + SEAL_PAYLOAD_OVERHEAD);
    if (!buf)
        return ID_ENOMEM;
    uint8_t *data = buf + SEAL_PAYLOAD_HEAD;
    struct sha256 sha;
    sha256_init(&sha);
    uint64_t offset = 0, acked = 0;
    unsigned inflight = 0;
    rc = 0;
    while (rc == 0 && (offset < size || inflight)) {
        while (rc == 0 && inflight < CLI_SDFS_WINDOW && offset < size) {
            size_t n = size - offset < chunk ? (size_t)(size - offset) : chunk;
            ssize_t got = pread(fd, data, n, (off_t)offset);
            if (got != (ssize_t)n) {
                snprintf(err, errlen, "cannot read the local file at %llu: %s",
                         (unsigned long long)offset, got < 0 ? strerror(errno) : "it shrank");
                rc = ID_EIO;
                break;
            }
            sha256_update(&sha, data, n);
            Idunno__SdfsChunk c = IDUNNO__SDFS_CHUNK__INIT;
            c.session = session;
            c.offset = offset;
            rc = cli_conn_send_chunk(conn, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_DATA_REQ, &c, buf, n,
                                     NULL);
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
            cli_sdfs__progress_show(prog, acked > size ? size : acked, 0);
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
    rc = cli_sdfs__conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_CLOSE_REQ, &close_req.base, &r,
                             err, errlen);
    if (rc < 0)
        return rc;
    *out = idunno__sdfs_version__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!*out) {
        snprintf(err, errlen, "malformed answer to put");
        return ID_EPROTO;
    }
    cli_sdfs__progress_show(prog, size, 1);
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
                            .total = (uint64_t)st.st_size,
                            .start_ms = id_now_ms(),
                            .what = name};
    uint64_t retry_of = 0;
    int rc = ID_EUNAVAIL;
    for (int attempt = 1; attempt <= CLI_SDFS_ATTEMPTS; attempt++) {
        if (!*conn) {
            rc = cli_conn_open(ctx->server, cli_sdfs__timeout_of(ctx), conn);
            if (rc < 0) {
                snprintf(err, errlen, "cannot reach %s: %s (is idunnod running there?)",
                         ctx->server, id_strerror(rc));
                break;
            }
        }
        rc = put_attempt(*conn, fd, (uint64_t)st.st_size, name, &retry_of, out, &prog, err, errlen);
        if (rc == 0 || !cli_sdfs__retryable(rc))
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

int cli_sdfs__cmd_put(struct cli_ctx *ctx, int argc, char **argv)
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
    cli_sdfs__print_version(ctx, "put", v, id_now_ms() - t0, NULL);
    idunno__sdfs_version__free_unpacked(v, NULL);
    return 0;
}

/* ---- put-dir ---------------------------------------------------------------------------------- */

/* One file of the directory to store. */
struct dir_entry {
    char *name;    /* in the directory */
    char *target;  /* a link's resolved path; NULL: a regular file, opened without following */
    uint64_t size; /* at the scan */
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
static void scan_entry(struct dir_scan *sc, int dfd, const char *dir, const char *realdir,
                       const char *name, const char *prefix, size_t plen, int follow_links)
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
            scan_bad(sc, name,
                     "a link to a file outside the directory (give --follow-links to store it)");
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
    sc->entries[sc->n].size = (uint64_t)st.st_size;
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

/* ---- put-dir's batches ------------------------------------------------------------------------ */

/* put-dir's state: small files go in batch requests over one connection,
 * CLI_SDFS_BATCH_WINDOW of them in flight; a file that failed for a reason
 * worth retrying goes back in the queue (up to CLI_SDFS_ATTEMPTS tries),
 * and the replica at fault is avoided by every later batch. */
struct bulk {
    const struct cli_ctx *ctx;
    int dfd;
    const char *dir, *pfx;
    struct dir_scan *sc;
    uint64_t *sizes;
    size_t *queue; /* of entry indices; a file is queued at most CLI_SDFS_ATTEMPTS times */
    size_t q_head, q_len;
    uint8_t *tries;
    uint8_t *large; /* per entry: stored by the single put */
    char avoid[8][SDFS_NODE_MAX];
    size_t n_avoid;
    size_t done, failed;
    uint64_t bytes, t0, shown_ms;
    int tty;
    int first_error; /* the first file that failed for good: no new batch starts */
};

/* A batch request on its way. */
struct bulk_req {
    uint64_t id;
    size_t *files; /* entry indices */
    size_t n;
};

static void bulk_progress(struct bulk *bk, int final)
{
    uint64_t now = id_now_ms();
    if (!bk->tty || (!final && now - bk->shown_ms < 200) || bk->done == 0)
        return;
    bk->shown_ms = now;
    fprintf(stderr, "\rput-dir %s: %zu/%zu files", bk->dir, bk->done, bk->sc->n);
}

static void bulk_file_failed(struct bulk *bk, const char *name, int code, const char *why)
{
    if (bk->tty && bk->done)
        fputc('\n', stderr);
    bk->shown_ms = 0;
    fprintf(stderr, "idunno: put-dir: %s: %s\n", name, why);
    bk->failed++;
    if (!bk->first_error)
        bk->first_error = code;
}

static void bulk_avoid(struct bulk *bk, const char *node)
{
    if (!node || !node[0])
        return;
    for (size_t i = 0; i < bk->n_avoid; i++)
        if (strcmp(bk->avoid[i], node) == 0)
            return;
    if (bk->n_avoid < sizeof bk->avoid / sizeof bk->avoid[0])
        snprintf(bk->avoid[bk->n_avoid++], SDFS_NODE_MAX, "%s", node);
}

/* Entry i did not make it this time: queued again if the reason is worth
 * another try and tries are left, else reported. */
static void bulk_retry_or_fail(struct bulk *bk, size_t i, int code, const char *why,
                               const char *node)
{
    char name[2048];
    snprintf(name, sizeof name, "%s/%s", bk->pfx, bk->sc->entries[i].name);
    bulk_avoid(bk, node);
    if (cli_sdfs__retryable(code) && bk->tries[i] < CLI_SDFS_ATTEMPTS && !bk->first_error) {
        bk->queue[bk->q_head + bk->q_len++] = i;
        if (bk->tty && bk->done)
            fputc('\n', stderr);
        bk->shown_ms = 0;
        fprintf(stderr, "idunno: put-dir: %s: %s; retrying\n", name, why);
        return;
    }
    bulk_file_failed(bk, name, code, why);
}

/* Reads the next batch from the queue and sends it; the request is in *r.
 * 0 with r->n 0 when nothing was left to send. */
static int bulk_send(struct bulk *bk, struct cli_conn *conn, struct bulk_req *r)
{
    size_t k = cli_sdfs__batch_take(bk->sizes, bk->queue + bk->q_head, bk->q_len);
    r->n = 0;
    r->files = malloc((k ? k : 1) * sizeof *r->files);
    Idunno__SdfsBatchFile *rows = calloc(k ? k : 1, sizeof *rows);
    Idunno__SdfsBatchFile **rp = calloc(k ? k : 1, sizeof *rp);
    char(*names)[2048] = calloc(k ? k : 1, sizeof *names);
    uint8_t(*shas)[32] = calloc(k ? k : 1, sizeof *shas);
    if (!r->files || !rows || !rp || !names || !shas)
        abort(); /* a CLI out of memory has nothing better to do */
    for (size_t j = 0; j < k; j++) {
        size_t i = bk->queue[bk->q_head + j];
        const struct dir_entry *e = &bk->sc->entries[i];
        snprintf(names[r->n], sizeof names[r->n], "%s/%s", bk->pfx, e->name);
        int fd = open_entry(bk->dfd, e);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            char why[600];
            snprintf(why, sizeof why, "cannot read '%s/%s': %s", bk->dir, e->name, strerror(errno));
            if (fd >= 0)
                close(fd);
            bulk_file_failed(bk, names[r->n], ID_EINVAL, why);
            continue;
        }
        if ((uint64_t)st.st_size > SDFS_BATCH_FILE_MAX) { /* it grew since the scan */
            bk->large[i] = 1;
            close(fd);
            continue;
        }
        uint8_t *data = malloc(st.st_size ? (size_t)st.st_size : 1);
        ssize_t got = data ? pread(fd, data, (size_t)st.st_size, 0) : -1;
        close(fd);
        if (got != (ssize_t)st.st_size) {
            char why[600];
            snprintf(why, sizeof why, "cannot read '%s/%s': %s", bk->dir, e->name,
                     got < 0 ? strerror(errno) : "it changed while being read");
            free(data);
            bulk_file_failed(bk, names[r->n], ID_EINVAL, why);
            continue;
        }
        struct sha256 h;
        sha256_init(&h);
        sha256_update(&h, data, (size_t)got);
        sha256_final(&h, shas[r->n]);
        idunno__sdfs_batch_file__init(&rows[r->n]);
        rows[r->n].name = names[r->n];
        rows[r->n].data.data = data;
        rows[r->n].data.len = (size_t)got;
        rows[r->n].sha256.data = shas[r->n];
        rows[r->n].sha256.len = 32;
        rp[r->n] = &rows[r->n];
        r->files[r->n++] = i;
        bk->tries[i]++;
    }
    bk->q_head += k;
    bk->q_len -= k;
    int rc = 0;
    if (r->n) {
        char *avoid[8];
        for (size_t a = 0; a < bk->n_avoid; a++)
            avoid[a] = bk->avoid[a];
        Idunno__SdfsPutBatch m = IDUNNO__SDFS_PUT_BATCH__INIT;
        m.n_files = r->n;
        m.files = rp;
        m.n_avoid = bk->n_avoid;
        m.avoid = avoid;
        rc = cli_conn_send(conn, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_BATCH_REQ, &m.base, &r->id);
    }
    for (size_t j = 0; j < r->n; j++)
        free(rows[j].data.data);
    free(rows);
    free(rp);
    free(names);
    free(shas);
    return rc;
}

/* One batch's answer: each file stored, queued again, or reported. */
static void bulk_answer(struct bulk *bk, struct bulk_req *r, const struct cli_reply *reply)
{
    Idunno__SdfsPutBatchResult *res = idunno__sdfs_put_batch_result__unpack(NULL, reply->len,
                                                                            reply->body);
    for (size_t j = 0; j < r->n; j++) {
        size_t i = r->files[j];
        const Idunno__SdfsBatchOutcome *o = res && res->n_files == r->n ? res->files[j] : NULL;
        if (!o) {
            bulk_retry_or_fail(bk, i, ID_EPROTO, "malformed answer to put-dir", NULL);
        } else if (o->code < 0) {
            bulk_retry_or_fail(bk, i, o->code, o->error[0] ? o->error : id_strerror(o->code),
                               o->node);
        } else {
            bk->done++;
            bk->bytes += o->size;
        }
    }
    if (res)
        idunno__sdfs_put_batch_result__free_unpacked(res, NULL);
    bulk_progress(bk, 0);
}

/* Stores every file of at most SDFS_BATCH_FILE_MAX bytes in batches; marks
 * the others in bk->large. Returns 0 (files that failed are counted and
 * reported, the first's code in bk->first_error) or ID_E* when no
 * connection could be made. */
static int bulk_small(struct bulk *bk)
{
    size_t n = bk->sc->n;
    bk->sizes = calloc(n ? n : 1, sizeof *bk->sizes);
    bk->queue = calloc(n ? n * CLI_SDFS_ATTEMPTS : 1, sizeof *bk->queue);
    bk->tries = calloc(n ? n : 1, 1);
    bk->large = calloc(n ? n : 1, 1);
    if (!bk->sizes || !bk->queue || !bk->tries || !bk->large)
        abort(); /* a CLI out of memory has nothing better to do */
    for (size_t i = 0; i < n; i++) {
        bk->sizes[i] = bk->sc->entries[i].size;
        if (bk->sizes[i] > SDFS_BATCH_FILE_MAX)
            bk->large[i] = 1;
        else
            bk->queue[bk->q_len++] = i;
    }
    struct cli_conn *conn = NULL;
    struct bulk_req win[CLI_SDFS_BATCH_WINDOW];
    size_t inflight = 0;
    int rc = 0;
    char err[400];
    while (bk->q_len || inflight) {
        if (!conn) {
            rc = cli_conn_open(bk->ctx->server, cli_sdfs__timeout_of(bk->ctx), &conn);
            if (rc < 0) {
                fprintf(stderr,
                        "idunno: put-dir: cannot reach %s: %s (is idunnod running there?)\n",
                        bk->ctx->server, id_strerror(rc));
                break;
            }
        }
        while (inflight < CLI_SDFS_BATCH_WINDOW && bk->q_len && !bk->first_error && rc == 0) {
            struct bulk_req *r = &win[inflight];
            rc = bulk_send(bk, conn, r);
            if (rc == 0 && r->n)
                inflight++;
            else if (rc < 0)
                inflight++; /* failed with the others below */
            else
                free(r->files);
        }
        if (bk->first_error && !inflight) {
            bk->q_len = 0;
            break;
        }
        struct cli_reply reply = {0};
        uint64_t id = 0;
        int st = rc < 0 ? rc : 0;
        if (inflight && st == 0)
            st = cli_conn_recv(conn, &reply, &id, err, sizeof err);
        else if (st < 0)
            snprintf(err, sizeof err, "sending the batch: %s", id_strerror(st));
        size_t at = inflight;
        for (size_t k = 0; k < inflight && st >= 0; k++)
            if (win[k].id == id)
                at = k;
        if (st == 0 && at < inflight) {
            bulk_answer(bk, &win[at], &reply);
        } else if (st < 0 && id && at < inflight) {
            /* The gateway refused this batch as a whole. */
            for (size_t j = 0; j < win[at].n; j++)
                bulk_retry_or_fail(bk, win[at].files[j], st, err, NULL);
        } else if (inflight) {
            /* The connection is unusable: every batch on it is tried again
             * on a fresh one (one whose commit went through meanwhile
             * gets a newer version, never a partial one). */
            if (st == 0)
                snprintf(err, sizeof err, "an answer nobody asked for");
            for (size_t k = 0; k < inflight; k++) {
                for (size_t j = 0; j < win[k].n; j++)
                    bulk_retry_or_fail(bk, win[k].files[j], st < 0 ? st : ID_EPROTO, err, NULL);
                free(win[k].files);
            }
            inflight = 0;
            at = CLI_SDFS_BATCH_WINDOW;
            cli_conn_close(conn);
            conn = NULL;
            rc = 0;
        }
        if (at < inflight) {
            free(win[at].files);
            win[at] = win[--inflight];
        }
        free(reply.body);
    }
    for (size_t k = 0; k < inflight; k++)
        free(win[k].files);
    cli_conn_close(conn);
    free(bk->sizes);
    free(bk->queue);
    free(bk->tries);
    return rc;
}

int cli_sdfs__cmd_put_dir(struct cli_ctx *ctx, int argc, char **argv)
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
        return cli_fail(CLI_USER_ERROR,
                        "put-dir: '%s' is not a valid SDFS prefix (printable ASCII, no spaces, "
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
        return cli_fail(CLI_USER_ERROR, "put-dir %s: %zu entr%s cannot be stored as they are", dir,
                        sc.bad, sc.bad == 1 ? "y" : "ies");
    }
    qsort(sc.entries, sc.n, sizeof *sc.entries, entry_cmp);
    struct cli_conn *conn = NULL;
    struct bulk bk = {.ctx = ctx, .dfd = dfd, .dir = dir, .pfx = pfx, .sc = &sc};
    bk.t0 = id_now_ms();
    bk.tty = isatty(2) && !ctx->json;
    int rc = bulk_small(&bk);
    /* Files over SDFS_BATCH_FILE_MAX (and any that grew past it) stream
     * through the single put, one after the other. */
    char err[400];
    for (size_t i = 0; i < sc.n && rc == 0 && !bk.first_error; i++) {
        if (!bk.large[i])
            continue;
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
            bulk_file_failed(&bk, name, rc, err);
            break;
        }
        bk.bytes += v->size;
        bk.done++;
        idunno__sdfs_version__free_unpacked(v, NULL);
        bulk_progress(&bk, 0);
    }
    bulk_progress(&bk, 1);
    size_t done = bk.done, n = sc.n;
    uint64_t bytes = bk.bytes, t0 = bk.t0;
    int tty = bk.tty;
    free(bk.large);
    if (rc == 0 && bk.first_error)
        rc = bk.first_error;
    if (rc < 0) {
        if (tty && done)
            fputc('\n', stderr);
        cli_fail(cli_status_of(rc), "put-dir %s: %zu of %zu files stored, %zu failed", dir, done, n,
                 bk.failed ? bk.failed : 1);
        done = 0; /* the line is ended */
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
        cli_sdfs__fmt_size(bytes, size, sizeof size);
        printf("stored %zu file%s (%s) under %s/ in %llu ms\n", done, done == 1 ? "" : "s", size,
               pfx, (unsigned long long)ms);
    }
    return 0;
}
