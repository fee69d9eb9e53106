/* cmd_sdfs_get.c — get and get-versions (cmd_sdfs.h). The client checks every
 * get end to end with the CRC-32C the catalog recorded at put time (the
 * SHA-256 for versions without one); a copy that does not match is reported to
 * the coordinator (which replaces it) and the read is retried on the other
 * replicas. A replica on the client's own host is not read over the network
 * at all: the client copies its file in the kernel and checks the copy
 * (get_local).
 *
 * Threading: the client's thread, plus a writer thread per get (file_writer)
 * and a checker thread per local copy (file_check), each joined before the
 * get returns.
 */
#include "cli/cmd_sdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/sha256.h"
#include "sdfs/catalog.h"

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
                       char **order, size_t n, int fd, char *bad, size_t badlen,
                       struct progress *prog, char *err, size_t errlen)
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
                    cli_sdfs__progress_show(prog, written, 0);
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
    cli_sdfs__progress_show(prog, v->size, 1);
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
    int rc = cli_sdfs__conn_call(conn, IDUNNO__MSG_TYPE__MSG_SDFS_BAD_REQ, &b.base, &r, err,
                                 sizeof err);
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
    uint64_t copied; /* bytes the copier has finished (under lock) */
    int stop;        /* the copier gave up (under lock) */
    int result;      /* 1 match, 0 mismatch, ID_E* could not map */
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
            size_t n = upto - off < CLI_SDFS_CHECK_WINDOW ? (size_t)(upto - off)
                                                          : CLI_SDFS_CHECK_WINDOW;
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
            ssize_t n = copy_file_range(
                src, &in, fd, &out,
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
static int get_local(const struct cli_ctx *ctx, const char *addr, const Idunno__SdfsVersion *v,
                     int fd)
{
    struct cli_conn *c = NULL;
    if (cli_conn_open(addr, cli_sdfs__timeout_of(ctx), &c) < 0)
        return ID_EUNAVAIL;
    Idunno__SdfsRead rd = IDUNNO__SDFS_READ__INIT;
    rd.blob = v->blob;
    rd.name = v->name;
    struct cli_reply r;
    char err[200];
    int rc = cli_sdfs__conn_call(c, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_LOCATE_REQ, &rd.base, &r, err,
                                 sizeof err);
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
static size_t drop_bad(const struct cli_ctx *ctx, struct cli_conn **conn,
                       const Idunno__SdfsVersion *v, char **order, char **addrs, size_t n, size_t i,
                       const char *err)
{
    fprintf(stderr, "idunno: get %s: %s; reported, trying another replica\n", v->name, err);
    if (*conn || cli_conn_open(ctx->server, cli_sdfs__timeout_of(ctx), conn) == 0)
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
                            .total = v->size,
                            .start_ms = id_now_ms(),
                            .what = v->name};
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
            cli_sdfs__progress_show(&prog, v->size, 1);
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
        if (!addrs[i][0] || cli_conn_open(addrs[i], cli_sdfs__timeout_of(ctx), &direct) < 0)
            continue;
        char bad[64] = "";
        char *one[1] = {order[i]};
        rc = get_attempt(direct, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_READ_REQ, v, one, 1, fd, bad,
                         sizeof bad, &prog, err, errlen);
        cli_conn_close(direct);
        if (rc == 0 || !cli_sdfs__retryable(rc))
            return rc;
        if (rc == ID_ECRC) {
            n = drop_bad(ctx, conn, v, order, addrs, n, i, err);
            i--;
        }
    }
    /* Through the gateway. */
    for (int attempt = 1; attempt <= CLI_SDFS_ATTEMPTS && n > 0; attempt++) {
        if (!*conn && (rc = cli_conn_open(ctx->server, cli_sdfs__timeout_of(ctx), conn)) < 0) {
            snprintf(err, errlen, "cannot reach %s: %s", ctx->server, id_strerror(rc));
            return rc;
        }
        char bad[64] = "";
        rc = get_attempt(*conn, IDUNNO__MSG_TYPE__MSG_SDFS_GET_REQ, v, order, n, fd, bad,
                         sizeof bad, &prog, err, errlen);
        if (rc == 0 || !cli_sdfs__retryable(rc))
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

int cli_sdfs__cmd_get(struct cli_ctx *ctx, int argc, char **argv)
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
    int rc = cli_conn_open(ctx->server, cli_sdfs__timeout_of(ctx), &conn);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s (is idunnod running there?)",
                        ctx->server, id_strerror(rc));
    Idunno__SdfsFile *f = NULL;
    rc = cli_sdfs__lookup(ctx, conn, pos[0], want, &f, err, sizeof err);
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
        cli_sdfs__print_version(ctx, "got", v, id_now_ms() - t0, local_from);
    idunno__sdfs_file__free_unpacked(f, NULL);
    if (rc < 0)
        return cli_fail(cli_status_of(rc), "get %s: %s", pos[0], err);
    return 0;
}

int cli_sdfs__cmd_get_versions(struct cli_ctx *ctx, int argc, char **argv)
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
    int rc = cli_conn_open(ctx->server, cli_sdfs__timeout_of(ctx), &conn);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s", ctx->server, id_strerror(rc));
    Idunno__SdfsFile *f = NULL;
    rc = cli_sdfs__lookup(ctx, conn, argv[1], 0, &f, err, sizeof err);
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
            cli_sdfs__fmt_time(v->time_ms, when, sizeof when);
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

int cli_sdfs_get_to_fd(const struct cli_ctx *ctx, const char *name, int fd, char *err, size_t len)
{
    struct cli_conn *conn = NULL;
    int rc = cli_conn_open(ctx->server, cli_sdfs__timeout_of(ctx), &conn);
    if (rc < 0) {
        snprintf(err, len, "cannot reach %s: %s", ctx->server, id_strerror(rc));
        return rc;
    }
    Idunno__SdfsFile *f = NULL;
    rc = cli_sdfs__lookup(ctx, conn, name, 0, &f, err, len);
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
