/* store_batch.c — the replica store's batches of whole copies
 * (store_write_batch, store.h): the replica's part of a bulk put.
 *
 * A single seal costs two fsyncs in a row (the file, then the directory), and
 * ext4 commits its journal for each. A batch is a group commit:
 *
 *   1. STORE_BATCH_THREADS threads write and check its copies into tmp/
 *      (page cache only);
 *   2. ONE syncfs() on the store's filesystem makes all of them durable;
 *   3. every good copy is renamed into blobs/ and the directory is fsynced
 *      ONCE.
 *
 * Why one syncfs is as durable as an fsync per copy. syncfs(fd) writes back
 * every dirty page and inode of the filesystem and waits for it, commits the
 * journal and flushes the device's cache: for each copy, what its fsync
 * would have done, for all of them at once (ext4 commits one journal
 * transaction for the lot instead of one per file). What fsync adds is its
 * error report, and syncfs gives one too: since Linux 5.8 it returns a
 * writeback error recorded on the filesystem after the descriptor it is
 * called on was opened (errseq, reported once per open file). Each batch
 * opens its OWN descriptor before writing anything, so an error writing back
 * any of its copies is reported to that batch even if another batch's
 * syncfs, or an fsync elsewhere, saw it first. syncfs cannot say which file
 * failed, so an error fails the whole batch: no copy of it is renamed or
 * acknowledged (it may fail for another file of the filesystem: that costs a
 * retry, never an acknowledged copy that is not on disk). The renames are
 * made only after the data is durable, so blobs/ never holds a copy whose
 * bytes a crash could lose, and the directory fsync makes the renames
 * durable before any copy is acknowledged, exactly as a single seal.
 * On a kernel older than 5.8 syncfs reports no writeback errors, and each
 * copy is fsynced by the thread that wrote it instead (store_batch_syncfs).
 *
 * Measured (docs/benchmarks.md, "Bulk put"): a replica's share of a 4096-file
 * batch (about 3,300 copies of 2 KB) took 0.7-1.0 s of data fsyncs from 16
 * threads; one syncfs took 30-430 ms for the same share.
 *
 * The threads are the store's own workpools (base/workpool.h), not libuv's
 * four: a batch's disk work would otherwise hold every thread the single
 * puts and reads need. The seals have their own pool: a batch's seal must
 * not wait behind the writes of the next batch, which arrive meanwhile.
 *
 * Threading: the API and the completions on the loop thread; the disk work
 * on the pools, each file touched by one job at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/workpool.h"
#include "sdfs/store.h"
#include "sdfs/store_int.h"

/* Seals run at most this many at once: each is one syncfs, and concurrent
 * ones share the journal commits, so more threads would only queue in the
 * kernel. */
#define STORE_SEAL_THREADS 2

struct store_batch;

/* One thread's share of the writes: files [from, to). The job comes first:
 * the pool hands the job back, and the part is found from it. */
struct batch_part {
    struct workpool_job job;
    struct store_batch *b;
    size_t from, to;
    uint64_t write_us, sync_us; /* this part's time writing, then fsyncing */
};

struct store_batch {
    struct workpool_job seal_job; /* first: found from the job as above */
    struct store *s;
    struct store_batch_file *files;
    size_t n;
    uint64_t seq; /* names this batch's temporaries */
    /* The descriptor whose syncfs reports this batch's writeback errors
     * (opened before the first write; see the top), or -1 when each copy is
     * fsynced on its own. */
    int sync_fd;
    struct batch_part *parts;
    size_t n_parts, parts_left;
    uint8_t *renamed; /* per file: now in blobs/ (whether acknowledged or not) */
    store_batch_cb cb;
    void *ud;
    uint64_t start_us, written_us, sync_us, seal_us; /* for the log line */
};

/* Does syncfs report writeback errors here (Linux 5.8 and later)? */
static int store_batch_syncfs(void)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
        return 0;
    return major > 5 || (major == 5 && minor >= 8);
}

static void tmp_path(const struct store_batch *b, size_t i, char out[700])
{
    snprintf(out, 700, "%s/tmp/%s.b%llu.%zu", b->s->dir, b->files[i].blob,
             (unsigned long long)b->seq, i);
}

static int code_of(int e)
{
    return e == ENOSPC || e == EDQUOT ? ID_ENOSPC : e == EEXIST ? ID_EEXIST : id_from_errno(e);
}

/* Writes and checks one copy into tmp/; returns its open descriptor, or -1
 * with f->status set. */
static int write_one(const struct store_batch *b, size_t i)
{
    struct store_batch_file *f = &b->files[i];
    uint8_t got[32];
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, f->data, f->len);
    sha256_final(&h, got);
    if (memcmp(got, f->sha, 32) != 0) {
        f->status = ID_ECRC;
        return -1;
    }
    f->crc32c = crc32c_update(0, f->data, f->len);
    char path[700];
    tmp_path(b, i, path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        f->status = code_of(errno);
        return -1;
    }
    size_t done = 0;
    while (done < f->len) {
        ssize_t n = write(fd, f->data + done, f->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            f->status = code_of(errno);
            close(fd);
            unlink(path);
            return -1;
        }
        done += (size_t)n;
    }
    return fd;
}

/* Fails copy i (written to tmp/, not renamed) with code and removes it. */
static void fail_tmp(struct store_batch *b, size_t i, int code)
{
    char path[700];
    tmp_path(b, i, path);
    b->files[i].status = code;
    unlink(path);
}

static void part_work(struct workpool_job *job)
{
    struct batch_part *p = (struct batch_part *)job;
    struct store_batch *b = p->b;
    size_t n = p->to - p->from;
    int *fds = malloc((n ? n : 1) * sizeof *fds);
    if (!fds) {
        for (size_t i = p->from; i < p->to; i++)
            if (b->files[i].status == 0)
                b->files[i].status = ID_ENOMEM;
        return;
    }
    uint64_t t0 = id_now_us();
    for (size_t k = 0; k < n; k++) {
        struct store_batch_file *f = &b->files[p->from + k];
        fds[k] = -1;
        if (f->status < 0)
            continue;
        if (workpool_job_cancelled(job))
            f->status = ID_ESHUTDOWN;
        else
            fds[k] = write_one(b, p->from + k);
    }
    uint64_t t1 = id_now_us();
    p->write_us = t1 - t0;
    /* Without syncfs: everything written first, then the fsyncs, so that the
     * data of later files is already in the page cache when the first fsync
     * commits the journal (concurrent fsyncs share commits). */
    for (size_t k = 0; k < n; k++) {
        if (fds[k] < 0)
            continue;
        if (b->sync_fd < 0 && fsync(fds[k]) < 0)
            fail_tmp(b, p->from + k, code_of(errno));
        close(fds[k]);
    }
    p->sync_us = id_now_us() - t1;
    free(fds);
}

static void seal_work(struct workpool_job *job)
{
    struct store_batch *b = (struct store_batch *)job;
    uint64_t t0 = id_now_us();
    size_t good = 0;
    for (size_t i = 0; i < b->n; i++)
        good += b->files[i].status == 0;
    if (good && b->sync_fd >= 0 && syncfs(b->sync_fd) < 0) {
        /* Some write-back failed since this batch began, maybe one of its
         * copies: none of them is known durable, so none is sealed. */
        int code = code_of(errno);
        for (size_t i = 0; i < b->n; i++)
            if (b->files[i].status == 0)
                fail_tmp(b, i, code);
        good = 0;
    }
    uint64_t t1 = id_now_us();
    b->sync_us = t1 - t0;
    int any = 0;
    for (size_t i = 0; good && i < b->n; i++) {
        struct store_batch_file *f = &b->files[i];
        if (f->status < 0)
            continue;
        char src[700], dst[700];
        tmp_path(b, i, src);
        snprintf(dst, sizeof dst, "%s/blobs/%s", b->s->dir, f->blob);
        /* A sealed blob is immutable: never renamed over. */
        if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
            f->status = code_of(errno);
            unlink(src);
            continue;
        }
        b->renamed[i] = 1;
        any = 1;
    }
    if (any && fsync(b->s->blobs_fd) < 0) {
        /* In blobs/ but maybe not after a crash: none is acknowledged (the
         * store reports have them deleted as no version names them). */
        int code = code_of(errno);
        for (size_t i = 0; i < b->n; i++)
            if (b->renamed[i])
                b->files[i].status = code;
    }
    b->seal_us = id_now_us() - t1;
}

/* Ends the batch: the index learns what reached blobs/, the caller every
 * status. Copies never finished are ID_ESHUTDOWN. */
static void batch_finish(struct store_batch *b, int unfinished)
{
    struct store *s = b->s;
    uint64_t wr = 0, sy = b->sync_us;
    for (size_t k = 0; k < b->n_parts; k++) {
        wr = b->parts[k].write_us > wr ? b->parts[k].write_us : wr;
        sy = b->parts[k].sync_us > sy ? b->parts[k].sync_us : sy;
    }
    LOG_INFO("sdfs",
             "batch of %zu copies: %llu ms (writes %llu, queued %llu, %s %llu, renames and "
             "directory fsync %llu)",
             b->n, (unsigned long long)(id_now_us() - b->start_us) / 1000,
             (unsigned long long)wr / 1000,
             (unsigned long long)(b->written_us ? b->written_us - b->start_us - wr : 0) / 1000,
             b->sync_fd >= 0 ? "syncfs" : "fsyncs", (unsigned long long)sy / 1000,
             (unsigned long long)b->seal_us / 1000);
    for (size_t i = 0; i < b->n; i++) {
        struct store_batch_file *f = &b->files[i];
        if (b->renamed[i]) {
            if (store_index_add(s, f->blob, f->len) == 0 && f->status == 0)
                store_index_set_sums(s, f->blob, f->sha, f->crc32c);
            else if (f->status == 0)
                f->status = ID_ENOMEM;
        } else if (f->status == 0) {
            f->status = unfinished;
        }
    }
    if (b->sync_fd >= 0)
        close(b->sync_fd);
    b->cb(b->ud, b->files, b->n);
    free(b);
}

static void seal_done(struct workpool_job *job, int status)
{
    struct store_batch *b = (struct store_batch *)job;
    batch_finish(b, status == ID_ECANCELED ? ID_ESHUTDOWN : ID_EINTERNAL);
}

static void part_done(struct workpool_job *job, int status)
{
    struct batch_part *p = (struct batch_part *)job;
    struct store_batch *b = p->b;
    if (status == ID_ECANCELED) /* the work never ran */
        for (size_t i = p->from; i < p->to; i++)
            if (b->files[i].status == 0)
                b->files[i].status = ID_ESHUTDOWN;
    if (--b->parts_left)
        return;
    b->written_us = id_now_us();
    if (b->s->closing || !b->s->seal_pool ||
        workpool_submit(b->s->seal_pool, &b->seal_job, seal_work, seal_done) < 0)
        batch_finish(b, ID_ESHUTDOWN);
}

int store_write_batch(struct store *s, struct store_batch_file *files, size_t n, store_batch_cb cb,
                      void *ud)
{
    if (s->closing)
        return ID_ESHUTDOWN;
    if (n == 0 || n > SDFS_BATCH_MAX)
        return ID_EINVAL;
    if (!s->batch_pool) {
        int rc = workpool_create(s->loop, "sdfs-batch", STORE_BATCH_THREADS, &s->batch_pool);
        if (rc < 0)
            return rc;
        s->batch_syncfs = store_batch_syncfs();
    }
    if (!s->seal_pool) {
        int rc = workpool_create(s->loop, "sdfs-seal", STORE_SEAL_THREADS, &s->seal_pool);
        if (rc < 0)
            return rc;
    }
    size_t n_parts = n < STORE_BATCH_THREADS ? n : STORE_BATCH_THREADS;
    /* One allocation: the batch, its parts, then a flag per file. */
    size_t parts_at = (sizeof(struct store_batch) + 15) & ~(size_t)15;
    size_t flags_at = parts_at + n_parts * sizeof(struct batch_part);
    uint8_t *mem = calloc(1, flags_at + n);
    if (!mem)
        return ID_ENOMEM;
    struct store_batch *b = (struct store_batch *)mem;
    b->sync_fd = -1;
    if (s->batch_syncfs) {
        char path[600];
        snprintf(path, sizeof path, "%s/tmp", s->dir);
        b->sync_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (b->sync_fd < 0) {
            int rc = code_of(errno);
            free(mem);
            return rc;
        }
    }
    b->s = s;
    b->files = files;
    b->n = n;
    b->seq = ++s->batch_seq;
    b->parts = (struct batch_part *)(mem + parts_at);
    b->n_parts = n_parts;
    b->renamed = mem + flags_at;
    b->cb = cb;
    b->ud = ud;
    b->start_us = id_now_us();
    for (size_t i = 0; i < n; i++) {
        struct store_batch_file *f = &files[i];
        f->crc32c = 0;
        if (f->status < 0)
            continue;
        if (!sdfs_blob_ok(f->blob))
            f->status = ID_EINVAL;
        else if (store_has(s, f->blob, NULL))
            f->status = ID_EEXIST; /* sealed copies are immutable */
    }
    size_t per = (n + n_parts - 1) / n_parts;
    for (size_t k = 0; k < n_parts; k++) {
        struct batch_part *p = &b->parts[k];
        p->b = b;
        p->from = k * per < n ? k * per : n;
        p->to = (k + 1) * per < n ? (k + 1) * per : n;
    }
    /* Every part is counted before the first is submitted: a part cannot end
     * the batch while others are still being queued. */
    b->parts_left = n_parts;
    for (size_t k = 0; k < n_parts; k++)
        if (workpool_submit(s->batch_pool, &b->parts[k].job, part_work, part_done) < 0)
            part_done(&b->parts[k].job, ID_ECANCELED);
    return 0;
}
