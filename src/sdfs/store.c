/* store.c — the replica store (see store.h): a sorted index of sealed blobs in
 * memory, temporary copies with a queue of disk operations each, and the disk
 * work itself on libuv's thread pool. Batches of whole copies are
 * store_batch.c's. */
#include "sdfs/store.h"

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
#include "base/log.h"
#include "base/sha256.h"
#include "base/workpool.h"
#include "sdfs/store_int.h"

struct blob_entry {
    char id[SDFS_BLOB_LEN + 1];
    uint64_t size;
    uint64_t sealed_ms; /* monotonic */
    /* The checksums of the bytes as sealed (their SHA-256 was checked then),
     * or of the last full verification; unknown for blobs found at start
     * until one. A known CRC lets a verification read at CRC speed. */
    int has_sums;
    uint8_t sha[32];
    uint32_t crc32c;
};

enum op_kind { OP_WRITE, OP_SEAL, OP_READ, OP_UNLINK, OP_VERIFY };

struct tmp_copy;

struct op {
    uv_work_t work;
    struct store *s;
    enum op_kind kind;
    struct tmp_copy *copy; /* writes and seals */
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t offset;
    uint8_t *data;
    size_t len;
    uint64_t size;
    uint8_t sha[32];
    int status;
    uint32_t crc32c; /* seals: of the sealed copy; verifies: the known one */
    int has_sums;    /* verifies: sha and crc32c hold the blob's recorded sums */
    uint8_t want_sha[32];
    int quarantine; /* verifies: move a bad copy to bad/ */
    store_cb cb;
    store_seal_cb seal_cb;
    store_read_cb read_cb;
    void *ud;
    struct op *next;
};

/* A copy being written. Its operations run one at a time (`busy`), so the
 * thread that runs one may use fd and sha without locks. */
struct tmp_copy {
    char blob[SDFS_BLOB_LEN + 1];
    char path[600];
    int fd;
    uint64_t written;    /* bytes on disk (thread side, read after completion) */
    uint64_t queued_end; /* where the next write must start (loop side) */
    struct sha256 sha;
    uint32_t crc32c; /* of the bytes written so far */
    struct op *head, *tail;
    int busy;
    int dropped; /* replaced, aborted or sealed: free once idle */
    uint64_t last_ms;
    struct tmp_copy *next;
};

/* ---- index ---------------------------------------------------------------------------------- */

static int blob_cmp(const void *blob, const void *elem)
{
    return strcmp(blob, ((const struct blob_entry *)elem)->id);
}

/* Index of blob, or of where it would go (with *found 0). */
static size_t index_find(const struct store *s, const char *blob, int *found)
{
    return array_search(s->e, s->n, sizeof *s->e, blob, blob_cmp, found);
}

int store_index_add(struct store *s, const char *blob, uint64_t size)
{
    int found;
    size_t i = index_find(s, blob, &found);
    if (found) {
        s->bytes -= s->e[i].size;
    } else {
        if (ARRAY_RESERVE(s->e, s->cap, s->n, 1, 256) < 0)
            return ID_ENOMEM;
        memmove(&s->e[i + 1], &s->e[i], (s->n - i) * sizeof *s->e);
        s->n++;
        snprintf(s->e[i].id, sizeof s->e[i].id, "%s", blob);
    }
    s->e[i].size = size;
    s->e[i].sealed_ms = id_now_ms();
    s->e[i].has_sums = 0;
    s->bytes += size;
    return 0;
}

void store_index_set_sums(struct store *s, const char *blob, const uint8_t sha[32], uint32_t crc)
{
    int found;
    size_t i = index_find(s, blob, &found);
    if (!found)
        return;
    s->e[i].has_sums = 1;
    memcpy(s->e[i].sha, sha, 32);
    s->e[i].crc32c = crc;
}

static void index_remove(struct store *s, const char *blob)
{
    int found;
    size_t i = index_find(s, blob, &found);
    if (!found)
        return;
    s->bytes -= s->e[i].size;
    memmove(&s->e[i], &s->e[i + 1], (s->n - i - 1) * sizeof *s->e);
    s->n--;
}

int store_has(const struct store *s, const char *blob, uint64_t *size)
{
    int found;
    size_t i = index_find(s, blob, &found);
    if (found && size)
        *size = s->e[i].size;
    return found;
}

size_t store_count(const struct store *s)
{
    return s->n;
}
uint64_t store_bytes(const struct store *s)
{
    return s->bytes;
}

size_t store_list(const struct store *s, char (*out)[SDFS_BLOB_LEN + 1], size_t max)
{
    for (size_t i = 0; i < s->n && i < max; i++)
        memcpy(out[i], s->e[i].id, SDFS_BLOB_LEN + 1);
    return s->n;
}

uint64_t store_age_ms(const struct store *s, const char *blob)
{
    int found;
    size_t i = index_find(s, blob, &found);
    return found ? id_now_ms() - s->e[i].sealed_ms : UINT64_MAX;
}

void store_touch(struct store *s, const char *blob)
{
    int found;
    size_t i = index_find(s, blob, &found);
    if (found)
        s->e[i].sealed_ms = id_now_ms();
}

int store_path(const struct store *s, const char *blob, char *out, size_t len)
{
    if (!sdfs_blob_ok(blob) || !store_has(s, blob, NULL))
        return ID_ENOTFOUND;
    snprintf(out, len, "%s/blobs/%s", s->dir, blob);
    return 0;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static int mkdir_one(const char *path)
{
    return mkdir(path, 0755) < 0 && errno != EEXIST ? id_from_errno(errno) : 0;
}

static void on_idle_timer(uv_timer_t *t);

int store_create(uv_loop_t *loop, const char *dir, struct store **out, char *errmsg, size_t len)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return ID_ENOMEM;
    s->loop = loop;
    s->blobs_fd = -1;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    char path[600];
    int rc = mkdir_one(dir);
    snprintf(path, sizeof path, "%s/blobs", dir);
    if (rc == 0)
        rc = mkdir_one(path);
    snprintf(path, sizeof path, "%s/bad", dir);
    if (rc == 0)
        rc = mkdir_one(path);
    snprintf(path, sizeof path, "%s/tmp", dir);
    if (rc == 0)
        rc = mkdir_one(path);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot create %s: %s", path, id_strerror(rc));
        free(s);
        return rc;
    }
    /* Temporaries are copies whose put never finished: nobody will finish them. */
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[900];
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    snprintf(path, sizeof path, "%s/blobs", dir);
    d = opendir(path);
    while (d && (de = readdir(d))) {
        if (!sdfs_blob_ok(de->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (store_index_add(s, de->d_name, (uint64_t)st.st_size) < 0)
            break;
        /* Its age is the file's: a copy sealed long ago is not young again
         * just because this node restarted. */
        uint64_t mtime_ms = (uint64_t)st.st_mtim.tv_sec * 1000 +
                            (uint64_t)st.st_mtim.tv_nsec / 1000000;
        uint64_t wall = id_wall_ms(), now = id_now_ms();
        uint64_t age = wall > mtime_ms ? wall - mtime_ms : 0;
        int found;
        size_t at = index_find(s, de->d_name, &found);
        s->e[at].sealed_ms = age < now ? now - age : 0;
    }
    if (d)
        closedir(d);
    s->blobs_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->blobs_fd < 0) {
        rc = id_from_errno(errno);
        snprintf(errmsg, len, "cannot open %s: %s", path, id_strerror(rc));
        free(s->e);
        free(s);
        return rc;
    }
    uv_timer_init(loop, &s->idle_timer);
    s->idle_timer.data = s;
    uv_timer_start(&s->idle_timer, on_idle_timer, STORE_TMP_IDLE_MS / 4, STORE_TMP_IDLE_MS / 4);
    uv_unref((uv_handle_t *)&s->idle_timer);
    *out = s;
    return 0;
}

static void copy_free(struct tmp_copy *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        unlink(c->path);
    }
    free(c);
}

static void store_maybe_free(struct store *s)
{
    if (!s->closing || s->pending || !s->timer_closed)
        return;
    while (s->copies) {
        struct tmp_copy *c = s->copies;
        s->copies = c->next;
        copy_free(c);
    }
    if (s->blobs_fd >= 0)
        close(s->blobs_fd);
    free(s->e);
    free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct store *s = h->data;
    s->timer_closed = 1;
    store_maybe_free(s);
}

void store_destroy(struct store *s)
{
    if (!s)
        return;
    s->closing = 1;
    /* Joins the batch threads: every batch's callback runs from in here (the
     * writers first: a batch whose writes end here is not sealed). */
    workpool_destroy(s->batch_pool);
    s->batch_pool = NULL;
    workpool_destroy(s->seal_pool);
    s->seal_pool = NULL;
    uv_close((uv_handle_t *)&s->idle_timer, on_timer_closed);
}

/* ---- temporary copies ----------------------------------------------------------------------- */

static struct tmp_copy *copy_find(struct store *s, const char *blob)
{
    for (struct tmp_copy *c = s->copies; c; c = c->next)
        if (!c->dropped && strcmp(c->blob, blob) == 0)
            return c;
    return NULL;
}

/* Frees dropped copies that have no work left. */
static void copies_reap(struct store *s)
{
    struct tmp_copy **pp = &s->copies;
    while (*pp) {
        struct tmp_copy *c = *pp;
        if (c->dropped && !c->busy && !c->head) {
            *pp = c->next;
            copy_free(c);
        } else {
            pp = &c->next;
        }
    }
}

/* Tells a write's or a seal's caller how it ended. */
static void op_callback(struct op *o, int status)
{
    if (o->kind == OP_SEAL && o->seal_cb)
        o->seal_cb(o->ud, status, o->crc32c);
    else if (o->kind != OP_SEAL && o->cb)
        o->cb(o->ud, status);
}

static void copy_drop(struct store *s, struct tmp_copy *c)
{
    c->dropped = 1;
    /* Queued operations that have not started fail now. */
    while (c->head) {
        struct op *o = c->head;
        c->head = o->next;
        if (!s->closing)
            op_callback(o, ID_ECANCELED);
        free(o->data);
        free(o);
    }
    c->tail = NULL;
}

static void on_idle_timer(uv_timer_t *t)
{
    struct store *s = t->data;
    uint64_t now = id_now_ms();
    for (struct tmp_copy *c = s->copies; c; c = c->next)
        if (!c->dropped && !c->busy && !c->head && now - c->last_ms >= STORE_TMP_IDLE_MS) {
            LOG_INFO("sdfs", "dropping copy of blob %s: idle for %d s", c->blob,
                     STORE_TMP_IDLE_MS / 1000);
            copy_drop(s, c);
        }
    copies_reap(s);
}

/* ---- the disk work (pool threads) ----------------------------------------------------------- */

static void work_write(struct op *o)
{
    struct tmp_copy *c = o->copy;
    if (c->fd < 0) {
        c->fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (c->fd < 0) {
            o->status = id_from_errno(errno);
            return;
        }
    }
    size_t done = 0;
    while (done < o->len) {
        ssize_t n = pwrite(c->fd, o->data + done, o->len - done, (off_t)(o->offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            o->status = errno == ENOSPC || errno == EDQUOT ? ID_ENOSPC : id_from_errno(errno);
            return;
        }
        done += (size_t)n;
    }
    sha256_update(&c->sha, o->data, o->len);
    c->crc32c = crc32c_update(c->crc32c, o->data, o->len);
    c->written = o->offset + o->len;
}

static void work_seal(struct op *o)
{
    struct tmp_copy *c = o->copy;
    uint8_t got[32];
    sha256_final(&c->sha, got);
    if (c->written != o->size || memcmp(got, o->sha, 32) != 0) {
        o->status = ID_ECRC;
        return;
    }
    o->crc32c = c->crc32c;
    if (c->fd < 0) { /* an empty file: nothing was written */
        c->fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (c->fd < 0) {
            o->status = id_from_errno(errno);
            return;
        }
    }
    char dst[600];
    snprintf(dst, sizeof dst, "%s/blobs/%s", o->s->dir, o->blob);
    /* A sealed blob is immutable: never renamed over, whoever asks. */
    if (fsync(c->fd) < 0 || renameat2(AT_FDCWD, c->path, AT_FDCWD, dst, RENAME_NOREPLACE) < 0 ||
        fsync(o->s->blobs_fd) < 0) {
        o->status = errno == ENOSPC   ? ID_ENOSPC
                    : errno == EEXIST ? ID_EEXIST
                                      : id_from_errno(errno);
        return;
    }
    close(c->fd);
    c->fd = -1; /* renamed: nothing to unlink */
}

static void blob_path(const struct op *o, char path[600])
{
    snprintf(path, 600, "%s/blobs/%s", o->s->dir, o->blob);
}

/* Opens o's sealed blob for reading; on failure sets o->status and returns -1. */
static int open_sealed(struct op *o)
{
    char path[600];
    blob_path(o, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        o->status = errno == ENOENT ? ID_ENOTFOUND : id_from_errno(errno);
    return fd;
}

static void work_read(struct op *o)
{
    int fd = open_sealed(o);
    if (fd < 0)
        return;
    o->data = malloc(o->len ? o->len : 1);
    if (!o->data) {
        o->status = ID_ENOMEM;
        close(fd);
        return;
    }
    size_t done = 0;
    while (done < o->len) {
        ssize_t n = pread(fd, o->data + done, o->len - done, (off_t)(o->offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            o->status = id_from_errno(errno);
            break;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    o->len = done;
    close(fd);
}

/* Reads the whole sealed copy: its size must be o->size and its checksum the
 * recorded CRC-32C (when known, and the recorded SHA-256 must be the one
 * wanted), else the wanted SHA-256. A bad copy goes to bad/ if asked. */
static void work_verify(struct op *o)
{
    int fd = open_sealed(o);
    if (fd < 0)
        return;
    struct stat st;
    int bad = fstat(fd, &st) < 0 || (uint64_t)st.st_size != o->size ||
              (o->has_sums && memcmp(o->sha, o->want_sha, 32) != 0);
    enum { STEP = 1 << 20 };
    uint8_t *buf = bad ? NULL : malloc(STEP);
    struct sha256 h;
    sha256_init(&h);
    uint32_t crc = 0;
    uint64_t done = 0;
    while (buf && !bad && done < o->size) {
        ssize_t n = pread(fd, buf, STEP, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            bad = 1;
            break;
        }
        crc = crc32c_update(crc, buf, (size_t)n);
        if (!o->has_sums)
            sha256_update(&h, buf, (size_t)n);
        done += (uint64_t)n;
    }
    close(fd);
    if (!bad && !buf && o->size) {
        o->status = ID_ENOMEM;
        return;
    }
    free(buf);
    if (!bad && o->has_sums) {
        bad = crc != o->crc32c;
    } else if (!bad) {
        sha256_final(&h, o->sha);
        bad = memcmp(o->sha, o->want_sha, 32) != 0;
        o->crc32c = crc;
    }
    if (!bad)
        return;
    o->status = ID_ECRC;
    if (o->quarantine) {
        char path[600], dst[600];
        blob_path(o, path);
        snprintf(dst, sizeof dst, "%s/bad/%s", o->s->dir, o->blob);
        if (rename(path, dst) == 0)
            fsync(o->s->blobs_fd);
    }
}

static void work_unlink(struct op *o)
{
    char path[600];
    blob_path(o, path);
    if (unlink(path) == 0)
        fsync(o->s->blobs_fd);
}

static void on_work(uv_work_t *w)
{
    struct op *o = w->data;
    switch (o->kind) {
    case OP_WRITE: work_write(o); break;
    case OP_SEAL: work_seal(o); break;
    case OP_READ: work_read(o); break;
    case OP_UNLINK: work_unlink(o); break;
    case OP_VERIFY: work_verify(o); break;
    }
}

static void copy_kick(struct store *s, struct tmp_copy *c);

static void on_work_done(uv_work_t *w, int status)
{
    struct op *o = w->data;
    struct store *s = o->s;
    s->pending--;
    if (status == UV_ECANCELED && o->status == 0)
        o->status = ID_ECANCELED;
    struct tmp_copy *c = o->copy;
    if (c) {
        c->busy = 0;
        c->last_ms = id_now_ms();
        if (o->kind == OP_SEAL && o->status == 0) {
            store_index_add(s, o->blob, o->size);
            store_index_set_sums(s, o->blob, o->sha, o->crc32c);
            c->dropped = 1;
        } else if (o->status < 0 && !c->dropped) {
            /* A copy that failed once is useless: later writes would leave a hole. */
            copy_drop(s, c);
        }
    }
    if (o->kind == OP_VERIFY && o->status == 0 && !o->has_sums)
        store_index_set_sums(s, o->blob, o->sha, o->crc32c);
    else if (o->kind == OP_VERIFY &&
             (o->status == ID_ENOTFOUND || (o->status == ID_ECRC && o->quarantine)))
        index_remove(s, o->blob); /* gone, or moved to bad/ */
    if (!s->closing) {
        if (o->kind == OP_READ && o->read_cb)
            o->read_cb(o->ud, o->status, o->data, o->len);
        else
            op_callback(o, o->status);
    }
    free(o->data);
    free(o);
    if (c && !s->closing)
        copy_kick(s, c);
    copies_reap(s);
    store_maybe_free(s);
}

static int op_queue(struct store *s, struct op *o)
{
    o->work.data = o;
    o->s = s;
    int rc = uv_queue_work(s->loop, &o->work, on_work, on_work_done);
    if (rc < 0)
        return ID_EIO;
    s->pending++;
    return 0;
}

/* Starts the copy's next operation if none is running. */
static void copy_kick(struct store *s, struct tmp_copy *c)
{
    if (c->busy || !c->head)
        return;
    struct op *o = c->head;
    c->head = o->next;
    if (!c->head)
        c->tail = NULL;
    c->busy = 1;
    if (op_queue(s, o) < 0) {
        c->busy = 0;
        op_callback(o, ID_EIO);
        free(o->data);
        free(o);
        copy_drop(s, c);
    }
}

static void copy_append(struct store *s, struct tmp_copy *c, struct op *o)
{
    o->copy = c;
    o->s = s;
    if (c->tail)
        c->tail->next = o;
    else
        c->head = o;
    c->tail = o;
    copy_kick(s, c);
}

/* ---- the API -------------------------------------------------------------------------------- */

int store_write_take(struct store *s, const char *blob, uint64_t offset, uint8_t *data, size_t len,
                     store_cb cb, void *ud)
{
    int rc = 0;
    struct tmp_copy *c = NULL;
    struct op *o = NULL;
    if (s->closing)
        rc = ID_ESHUTDOWN;
    else if (!sdfs_blob_ok(blob))
        rc = ID_EINVAL;
    else if (store_has(s, blob, NULL))
        rc = ID_EEXIST; /* sealed copies are immutable */
    else if (!(o = calloc(1, sizeof *o)))
        rc = ID_ENOMEM;
    if (rc == 0) {
        c = copy_find(s, blob);
        if (offset == 0) {
            if (c)
                copy_drop(s, c);
            c = calloc(1, sizeof *c);
            if (!c) {
                rc = ID_ENOMEM;
            } else {
                snprintf(c->blob, sizeof c->blob, "%s", blob);
                snprintf(c->path, sizeof c->path, "%s/tmp/%s.%llu", s->dir, blob,
                         (unsigned long long)++s->tmp_seq);
                c->fd = -1;
                sha256_init(&c->sha);
                c->next = s->copies;
                s->copies = c;
            }
        } else if (!c || offset != c->queued_end) {
            rc = ID_EINVAL;
        }
    }
    if (rc < 0) {
        free(o);
        free(data);
        return rc;
    }
    o->kind = OP_WRITE;
    snprintf(o->blob, sizeof o->blob, "%s", blob);
    o->offset = offset;
    o->data = data;
    o->len = len;
    o->cb = cb;
    o->ud = ud;
    c->queued_end = offset + len;
    c->last_ms = id_now_ms();
    copy_append(s, c, o);
    return 0;
}

int store_write(struct store *s, const char *blob, uint64_t offset, const uint8_t *data, size_t len,
                store_cb cb, void *ud)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return ID_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    return store_write_take(s, blob, offset, copy, len, cb, ud);
}

int store_seal(struct store *s, const char *blob, uint64_t size, const uint8_t sha[32],
               store_seal_cb cb, void *ud)
{
    if (s->closing)
        return ID_ESHUTDOWN;
    if (!sdfs_blob_ok(blob))
        return ID_EINVAL;
    struct tmp_copy *c = copy_find(s, blob);
    if (!c && size == 0) {
        /* An empty file has no write to start its copy. */
        if (store_write(s, blob, 0, NULL, 0, NULL, NULL) < 0)
            return ID_ENOMEM;
        c = copy_find(s, blob);
    }
    if (!c)
        return store_has(s, blob, NULL) ? ID_EEXIST : ID_ENOTFOUND;
    struct op *o = calloc(1, sizeof *o);
    if (!o)
        return ID_ENOMEM;
    o->kind = OP_SEAL;
    snprintf(o->blob, sizeof o->blob, "%s", blob);
    o->size = size;
    memcpy(o->sha, sha, 32);
    o->seal_cb = cb;
    o->ud = ud;
    copy_append(s, c, o);
    return 0;
}

void store_abort(struct store *s, const char *blob)
{
    struct tmp_copy *c = copy_find(s, blob);
    if (c)
        copy_drop(s, c);
    copies_reap(s);
}

int store_read(struct store *s, const char *blob, uint64_t offset, size_t len, store_read_cb cb,
               void *ud)
{
    if (s->closing)
        return ID_ESHUTDOWN;
    uint64_t size;
    if (!sdfs_blob_ok(blob) || !store_has(s, blob, &size))
        return ID_ENOTFOUND;
    if (len > STORE_MAX_READ)
        len = STORE_MAX_READ;
    if (offset > size)
        return ID_EINVAL;
    if (offset + len > size)
        len = (size_t)(size - offset);
    struct op *o = calloc(1, sizeof *o);
    if (!o)
        return ID_ENOMEM;
    o->kind = OP_READ;
    snprintf(o->blob, sizeof o->blob, "%s", blob);
    o->offset = offset;
    o->len = len;
    o->read_cb = cb;
    o->ud = ud;
    int rc = op_queue(s, o);
    if (rc < 0)
        free(o);
    return rc;
}

int store_verify(struct store *s, const char *blob, uint64_t size, const uint8_t sha[32],
                 int quarantine, store_cb cb, void *ud)
{
    if (s->closing)
        return ID_ESHUTDOWN;
    int found;
    size_t i = sdfs_blob_ok(blob) ? index_find(s, blob, &found) : (found = 0, 0);
    if (!found)
        return ID_ENOTFOUND;
    struct op *o = calloc(1, sizeof *o);
    if (!o)
        return ID_ENOMEM;
    o->kind = OP_VERIFY;
    snprintf(o->blob, sizeof o->blob, "%s", blob);
    o->size = size;
    memcpy(o->want_sha, sha, 32);
    o->has_sums = s->e[i].has_sums;
    memcpy(o->sha, s->e[i].sha, 32);
    o->crc32c = s->e[i].crc32c;
    o->quarantine = quarantine;
    o->cb = cb;
    o->ud = ud;
    int rc = op_queue(s, o);
    if (rc < 0)
        free(o);
    return rc;
}

void store_delete(struct store *s, const char *blob)
{
    if (s->closing || !sdfs_blob_ok(blob))
        return;
    store_abort(s, blob);
    if (!store_has(s, blob, NULL))
        return;
    index_remove(s, blob);
    struct op *o = calloc(1, sizeof *o);
    if (!o)
        return;
    o->kind = OP_UNLINK;
    snprintf(o->blob, sizeof o->blob, "%s", blob);
    if (op_queue(s, o) < 0)
        free(o);
}
