/* fetch.c — blobs made available in the local store, verified (see fetch.h):
 * one transfer per blob, its waiters told together. */
#include "sdfs/fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "idunno.pb-c.h"
#include "net/net.h"
#include "sdfs/catalog.h"
#include "sdfs/sdfs.h"
#include "sdfs/store.h"

/* One chunk read from a source; a source that does not answer in time is
 * replaced by the next. */
#define FETCH_READ_MS 10000

struct fetcher {
    struct net *net;
    struct store *store; /* NULL once stopped */
    int stopping;
    struct fetch *fetches;
};

struct fetcher *fetcher_create(struct net *net, struct store *store)
{
    struct fetcher *fe = calloc(1, sizeof *fe);
    if (fe) {
        fe->net = net;
        fe->store = store;
    }
    return fe;
}

void fetcher_stop(struct fetcher *fe)
{
    fe->stopping = 1;
    fe->store = NULL;
}

void fetcher_destroy(struct fetcher *fe)
{
    free(fe);
}

struct fetch_waiter {
    struct net_request *req; /* a BLOB_FETCH to answer, or */
    fetch_done_fn cb;        /* a local caller */
    void *ud;
    struct fetch_waiter *next;
};

struct fetch {
    struct fetcher *fe;
    struct fetch_waiter *waiters;
    int repair; /* log at info level */
    int copied; /* chunks were asked for (not just a verification) */
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t size, offset;
    uint8_t sha[32];
    char **sources;
    size_t n_sources, source;
    struct fetch *next;
};

static void fetch_finish(struct fetch *f, int status, const char *what)
{
    struct fetcher *fe = f->fe;
    for (struct fetch **pp = &fe->fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    if (status < 0) {
        if (fe->store)
            store_abort(fe->store, f->blob);
        if (f->repair)
            LOG_WARN("sdfs", "fetch of blob %s failed: %s", f->blob, what);
    } else {
        if (f->repair && f->copied)
            LOG_INFO("sdfs", "fetched blob %s (%llu bytes)", f->blob, (unsigned long long)f->size);
        else if (f->repair)
            LOG_INFO("sdfs", "blob %s verified: the copy here matches its checksum", f->blob);
        if (fe->store)
            store_touch(fe->store, f->blob); /* in use: spared by store reports for a while */
    }
    while (f->waiters) {
        struct fetch_waiter *w = f->waiters;
        f->waiters = w->next;
        if (w->req && status < 0)
            net_reply_errorf(w->req, status, "fetch of blob %s failed: %s", f->blob, what);
        else if (w->req)
            net_reply(w->req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_FETCH_RESP, NULL, 0);
        else if (w->cb)
            w->cb(w->ud, status);
        free(w);
    }
    for (size_t i = 0; i < f->n_sources; i++)
        free(f->sources[i]);
    free(f->sources);
    free(f);
}

static void fetch_fail(struct fetch *f, int status, const char *what)
{
    fetch_finish(f, status, what);
}

static void fetch_next(struct fetch *f);

/* The current source failed: go on from `offset` with the next one. */
static void fetch_next_source(struct fetch *f, uint64_t offset, const char *why)
{
    if (f->repair)
        LOG_WARN("sdfs", "fetch of blob %s from %s failed at %llu: %s", f->blob,
                 f->sources[f->source], (unsigned long long)f->offset, why);
    if (++f->source >= f->n_sources) {
        fetch_fail(f, ID_EUNAVAIL, "no source could serve it");
        return;
    }
    f->offset = offset;
    fetch_next(f);
}

static void on_fetch_sealed(void *ud, int status, uint32_t crc32c)
{
    (void)crc32c; /* the version's CRC is already recorded */
    struct fetch *f = ud;
    if (status == ID_ECRC && !f->fe->stopping) {
        /* A source sent bytes that do not match: start again from another. */
        fetch_next_source(f, 0, "the copy does not match its checksum");
        return;
    }
    fetch_finish(f, status, status < 0 ? id_strerror(status) : "");
}

static void on_fetch_verified(void *ud, int status)
{
    struct fetch *f = ud;
    if (status == 0 || f->fe->stopping) {
        fetch_finish(f, status == 0 ? 0 : ID_ESHUTDOWN, "shutting down");
        return;
    }
    if (status != ID_ENOTFOUND && status != ID_ECRC) {
        fetch_fail(f, status, id_strerror(status)); /* kept: it may be readable later */
        return;
    }
    LOG_WARN("sdfs", "local copy of blob %s %s: copying it from %zu other replica(s)", f->blob,
             status == ID_ECRC ? "fails its checksum (moved to bad/)" : "is missing", f->n_sources);
    if (f->n_sources == 0)
        fetch_fail(f, ID_EUNAVAIL, "no other live replica holds it");
    else
        fetch_next(f);
}

static void on_fetch_written(void *ud, int status)
{
    struct fetch *f = ud;
    if (status < 0) {
        fetch_fail(f, status, id_strerror(status));
        return;
    }
    fetch_next(f);
}

static void on_fetch_read(void *ud, const struct net_result *res)
{
    struct fetch *f = ud;
    if (f->fe->stopping) {
        fetch_fail(f, ID_ESHUTDOWN, "shutting down");
        return;
    }
    Idunno__SdfsChunk *c = res->status == 0 ? idunno__sdfs_chunk__unpack(NULL, res->len, res->body)
                                            : NULL;
    if (!c || c->data.len == 0) {
        if (c)
            idunno__sdfs_chunk__free_unpacked(c, NULL);
        fetch_next_source(f, f->offset, res->errmsg ? res->errmsg : "empty chunk");
        return;
    }
    uint64_t at = f->offset;
    f->offset += c->data.len;
    int rc = store_write(f->fe->store, f->blob, at, c->data.data, c->data.len, on_fetch_written, f);
    idunno__sdfs_chunk__free_unpacked(c, NULL);
    if (rc < 0)
        fetch_fail(f, rc, id_strerror(rc));
}

static void fetch_next(struct fetch *f)
{
    if (f->offset >= f->size) {
        int rc = store_seal(f->fe->store, f->blob, f->size, f->sha, on_fetch_sealed, f);
        if (rc == ID_EEXIST)
            on_fetch_sealed(f, 0, 0);
        else if (rc < 0)
            fetch_fail(f, rc, id_strerror(rc));
        return;
    }
    f->copied = 1;
    Idunno__SdfsRead r = IDUNNO__SDFS_READ__INIT;
    r.blob = f->blob;
    r.offset = f->offset;
    r.length = SDFS_CHUNK;
    int rc = net_call_pb(f->fe->net, f->sources[f->source],
                         IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_READ_REQ, &r.base, FETCH_READ_MS,
                         on_fetch_read, f);
    if (rc < 0)
        fetch_fail(f, rc, id_strerror(rc));
}

int fetcher_get(struct fetcher *fe, const char *blob, uint64_t size, const uint8_t sha[32],
                char *const *sources, size_t n_sources, int repair, struct net_request *req,
                fetch_done_fn cb, void *ud)
{
    if (fe->stopping)
        return ID_ESHUTDOWN;
    if (!sdfs_blob_ok(blob))
        return ID_EINVAL;
    struct fetch_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return ID_ENOMEM;
    *w = (struct fetch_waiter){req, cb, ud, NULL};
    for (struct fetch *f = fe->fetches; f; f = f->next)
        if (strcmp(f->blob, blob) == 0) {
            w->next = f->waiters;
            f->waiters = w;
            f->repair |= repair;
            return 0;
        }
    struct fetch *f = calloc(1, sizeof *f);
    if (f)
        f->sources = calloc(n_sources ? n_sources : 1, sizeof *f->sources);
    if (!f || !f->sources) {
        free(f);
        free(w);
        return ID_ENOMEM;
    }
    f->fe = fe;
    f->repair = repair;
    f->waiters = w;
    snprintf(f->blob, sizeof f->blob, "%s", blob);
    f->size = size;
    memcpy(f->sha, sha, 32);
    for (size_t i = 0; i < n_sources; i++)
        if (sources[i] && sources[i][0] && (f->sources[f->n_sources] = strdup(sources[i])))
            f->n_sources++;
    f->next = fe->fetches;
    fe->fetches = f;
    if (store_has(fe->store, blob, NULL) &&
        store_verify(fe->store, blob, size, sha, 1, on_fetch_verified, f) == 0)
        return 0;
    if (f->n_sources == 0) {
        fetch_fail(f, ID_EUNAVAIL, "no live replica holds it");
        return 0;
    }
    fetch_next(f); /* the first chunk starts a fresh copy (offset 0) */
    return 0;
}
