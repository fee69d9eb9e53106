/* sdfs_batch.c — the bulk put (docs/sdfs.md, "Batched writes"): the
 * gateway's handling of a client's batch of small files, and the replica's
 * handling of its share of one.
 *
 *   client ─PUT_BATCH(files)─▶ gateway ─PLACE_BATCH─▶ leader (each file placed)
 *   gateway ─BLOB_BATCH(the copies it holds)─▶ each replica involved, once:
 *            written, checked, fsynced, renamed, one directory fsync
 *            (store_write_batch), answering each copy's CRC-32C
 *   gateway ─COMMIT_BATCH(files every replica sealed and agreed on)─▶ leader
 *   client ◀─ each file's version, or its error and the replica at fault
 *
 * A file is committed only if every one of its replicas answered it durable
 * with the SHA-256 the client sent (each replica checks it); its CRC-32C is
 * recorded only if all replicas computed the same one (as for a single put).
 * A file that fails anywhere is not committed; its sealed copies are
 * deleted at once where possible, else by the store reports. The client is
 * answered only after the COMMIT_BATCH entry applied.
 *
 * Threading: loop thread only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "net/net.h"
#include "sdfs/catalog.h"
#include "sdfs/sdfs.h"
#include "sdfs/sdfs_int.h"
#include "sdfs/store.h"

/* The placement and commit of a batch are one control-plane call each, but
 * a big commit entry takes longer to replicate than a single one. */
#define SDFS_BATCH_CALL_MS 30000

/* ==== gateway ================================================================================ */

/* A replica involved in the batch. */
struct batch_node {
    char name[SDFS_NODE_MAX];
    char addr[64];
    size_t n_files;
};

struct batch_file {
    const Idunno__SdfsBatchFile *in; /* in the client's request */
    char blob[SDFS_BLOB_LEN + 1];
    size_t n_replicas;
    size_t replica[SDFS_REPLICAS]; /* into put_batch.nodes */
    unsigned sealed;               /* replicas that answered it durable */
    int crc_state;                 /* 0 none yet, 1 agreed so far, -1 missing or disagreeing */
    uint32_t crc32c;
    int code; /* ID_E* once it failed */
    char error[200];
    char node[SDFS_NODE_MAX]; /* the replica that failed it */
    uint64_t version;
};

struct put_batch {
    struct sdfs *s;
    struct net_request *req;
    Idunno__SdfsPutBatch *m;
    struct batch_file *files;
    size_t n;
    struct batch_node *nodes;
    size_t n_nodes;
    unsigned calls; /* calls pending */
    /* The node stopped (sdfs_batches_stop): the client was answered and s
     * may be gone; the last pending call frees the batch. */
    int abandoned;
    uint64_t started_ms;
    uint64_t placed_ms, sealed_ms, committed_ms; /* when each phase ended (0: did not) */
    struct put_batch *next;
};

static void file_fail(struct batch_file *f, int code, const char *node, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void file_fail(struct batch_file *f, int code, const char *node, const char *fmt, ...)
{
    if (f->code)
        return; /* the first reason is the one reported */
    f->code = code;
    snprintf(f->node, sizeof f->node, "%s", node ? node : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->error, sizeof f->error, fmt, ap);
    va_end(ap);
}

static void batch_unlink(struct put_batch *b)
{
    for (struct put_batch **pp = &b->s->batches; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
}

static void batch_free(struct put_batch *b)
{
    if (b->m)
        idunno__sdfs_put_batch__free_unpacked(b->m, NULL);
    free(b->files);
    free(b->nodes);
    free(b);
}

/* Answers the client with every file's outcome and frees the batch. */
static void batch_answer(struct put_batch *b)
{
    Idunno__SdfsBatchOutcome *rows = calloc(b->n, sizeof *rows);
    Idunno__SdfsBatchOutcome **rp = calloc(b->n, sizeof *rp);
    size_t ok = 0;
    if (!rows || !rp) {
        net_reply_error(b->req, ID_ENOMEM, NULL, NULL);
    } else {
        for (size_t i = 0; i < b->n; i++) {
            struct batch_file *f = &b->files[i];
            idunno__sdfs_batch_outcome__init(&rows[i]);
            rows[i].name = f->in->name;
            rows[i].size = f->in->data.len;
            if (f->code) {
                rows[i].code = f->code;
                rows[i].error = f->error;
                rows[i].node = f->node;
            } else {
                rows[i].version = f->version;
                ok++;
            }
            rp[i] = &rows[i];
        }
        Idunno__SdfsPutBatchResult out = IDUNNO__SDFS_PUT_BATCH_RESULT__INIT;
        out.n_files = b->n;
        out.files = rp;
        net_reply_pb(b->req, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_BATCH_RESP, &out.base);
    }
    b->s->stats.puts += ok;
    uint64_t t = b->started_ms;
#define PHASE_MS(x) (unsigned long long)((x) ? (x)-t : 0)
    LOG_INFO(
        "sdfs",
        "batch of %zu files on %zu replicas: %zu committed, %zu failed, %llu ms (placed at %llu, "
        "sealed at %llu, committed at %llu)",
        b->n, b->n_nodes, ok, b->n - ok, (unsigned long long)(id_now_ms() - t),
        PHASE_MS(b->placed_ms), PHASE_MS(b->sealed_ms), PHASE_MS(b->committed_ms));
#undef PHASE_MS
    free(rows);
    free(rp);
    batch_unlink(b);
    batch_free(b);
}

/* A call of the batch ended: 1 if the caller may go on, 0 if the batch was
 * abandoned (and maybe freed). */
static int batch_call_ended(struct put_batch *b)
{
    b->calls--;
    if (!b->abandoned)
        return 1;
    if (b->calls == 0)
        batch_free(b);
    return 0;
}

/* Has the replicas of files that failed drop their copies (they may have
 * sealed them); the store reports remove whatever this misses. */
static void batch_drop_failed(struct put_batch *b)
{
    char **blobs = calloc(b->n, sizeof *blobs);
    if (!blobs)
        return;
    for (size_t k = 0; k < b->n_nodes; k++) {
        Idunno__SdfsBlobList bl = IDUNNO__SDFS_BLOB_LIST__INIT;
        bl.blobs = blobs;
        for (size_t i = 0; i < b->n; i++) {
            const struct batch_file *f = &b->files[i];
            if (!f->code)
                continue;
            for (size_t r = 0; r < f->n_replicas; r++)
                if (f->replica[r] == k)
                    blobs[bl.n_blobs++] = (char *)f->blob;
        }
        if (bl.n_blobs)
            net_call_pb(b->s->net, b->nodes[k].addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_DELETE_REQ,
                        &bl.base, SDFS_CALL_MS, NULL, NULL);
    }
    free(blobs);
}

static void on_batch_committed(void *ud, const struct net_result *res)
{
    struct put_batch *b = ud;
    if (!batch_call_ended(b))
        return;
    b->committed_ms = id_now_ms();
    Idunno__SdfsCommitBatch *c = res->status == 0
                                     ? idunno__sdfs_commit_batch__unpack(NULL, res->len, res->body)
                                     : NULL;
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct batch_file *f = &b->files[i];
        if (f->code)
            continue;
        if (res->status < 0) {
            /* The copies are durable but not visible: the client tries again
             * (the commit is idempotent by blob: a retry draws new blobs and
             * never makes a partial version). */
            file_fail(f, res->status, NULL, "commit failed: %s",
                      res->errmsg ? res->errmsg : id_strerror(res->status));
        } else if (!c || k >= c->n_versions || strcmp(c->versions[k]->blob, f->blob) != 0) {
            file_fail(f, ID_EPROTO, NULL, "the coordinator's answer to the commit is malformed");
        } else {
            f->version = c->versions[k]->version;
        }
        k++;
    }
    if (c)
        idunno__sdfs_commit_batch__free_unpacked(c, NULL);
    batch_answer(b);
}

/* Every replica answered: commit the files all of theirs sealed. */
static void batch_commit(struct put_batch *b)
{
    b->sealed_ms = id_now_ms();
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        if (!b->files[i].code && b->files[i].sealed != b->files[i].n_replicas)
            file_fail(&b->files[i], ID_EUNAVAIL, NULL, "not every replica sealed it");
    for (size_t i = 0; i < b->n; i++)
        n += !b->files[i].code;
    batch_drop_failed(b);
    if (n == 0) {
        batch_answer(b);
        return;
    }
    Idunno__SdfsVersion *rows = calloc(n, sizeof *rows);
    Idunno__SdfsVersion **rp = calloc(n, sizeof *rp);
    char **names = calloc(n * SDFS_REPLICAS, sizeof *names);
    uint8_t *crcs = calloc(n, 4);
    int rc = rows && rp && names && crcs ? 0 : ID_ENOMEM;
    for (size_t i = 0, k = 0; rc == 0 && i < b->n; i++) {
        struct batch_file *f = &b->files[i];
        if (f->code)
            continue;
        Idunno__SdfsVersion *v = &rows[k];
        idunno__sdfs_version__init(v);
        v->name = f->in->name;
        v->blob = f->blob;
        v->size = f->in->data.len;
        v->sha256 = f->in->sha256;
        if (f->crc_state == 1) {
            sdfs_crc_encode(&crcs[4 * k], f->crc32c);
            v->crc32c.data = &crcs[4 * k];
            v->crc32c.len = 4;
        }
        for (size_t r = 0; r < f->n_replicas; r++)
            names[k * SDFS_REPLICAS + r] = b->nodes[f->replica[r]].name;
        v->n_replicas = f->n_replicas;
        v->replicas = &names[k * SDFS_REPLICAS];
        rp[k++] = v;
    }
    if (rc == 0) {
        Idunno__SdfsCommitBatch cb = IDUNNO__SDFS_COMMIT_BATCH__INIT;
        cb.n_versions = n;
        cb.versions = rp;
        b->calls++;
        rc = net_call_pb(b->s->net, b->s->addr, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_BATCH_REQ,
                         &cb.base, SDFS_BATCH_CALL_MS, on_batch_committed, b);
        if (rc < 0)
            b->calls--;
    }
    free(rows);
    free(rp);
    free(names);
    free(crcs);
    if (rc < 0) {
        for (size_t i = 0; i < b->n; i++)
            file_fail(&b->files[i], rc, NULL, "cannot reach the coordinator: %s", id_strerror(rc));
        batch_answer(b);
    }
}

struct replica_call {
    struct put_batch *b;
    size_t node;
};

static void on_replica_sealed(void *ud, const struct net_result *res)
{
    struct replica_call *rc = ud;
    struct put_batch *b = rc->b;
    size_t k = rc->node;
    free(rc);
    if (!batch_call_ended(b))
        return;
    const struct batch_node *nd = &b->nodes[k];
    Idunno__SdfsBlobBatchResult *r = res->status == 0 ? idunno__sdfs_blob_batch_result__unpack(
                                                            NULL, res->len, res->body)
                                                      : NULL;
    size_t j = 0; /* the answer lists this replica's files in the order they were sent */
    for (size_t i = 0; i < b->n; i++) {
        struct batch_file *f = &b->files[i];
        int mine = 0;
        for (size_t x = 0; x < f->n_replicas && !mine; x++)
            mine = f->replica[x] == k;
        if (!mine)
            continue;
        const Idunno__SdfsBlobSealed *a = r && j < r->n_blobs ? r->blobs[j] : NULL;
        j++;
        if (res->status < 0) {
            file_fail(f, res->status == ID_ENOSPC ? ID_ENOSPC : ID_EUNAVAIL, nd->name,
                      "replica %s failed: %s", nd->name,
                      res->errmsg ? res->errmsg : id_strerror(res->status));
        } else if (!a || strcmp(a->blob, f->blob) != 0) {
            file_fail(f, ID_EPROTO, nd->name, "replica %s answered the batch malformed", nd->name);
        } else if (a->code < 0) {
            file_fail(f, a->code == ID_ECRC || a->code == ID_ENOSPC ? a->code : ID_EUNAVAIL,
                      nd->name, "replica %s could not seal the copy: %s", nd->name,
                      id_strerror(a->code));
        } else {
            f->sealed++;
            if (a->crc32c.len == 4 && f->crc_state >= 0) {
                uint32_t crc = sdfs_crc_decode(a->crc32c.data);
                f->crc_state = f->crc_state == 0 || crc == f->crc32c ? 1 : -1;
                f->crc32c = crc;
            } else {
                f->crc_state = -1;
            }
        }
    }
    if (r)
        idunno__sdfs_blob_batch_result__free_unpacked(r, NULL);
    if (b->calls == 0)
        batch_commit(b);
}

/* The index of the replica named `name` (added with addr if new), or -1. */
static long batch_node_of(struct put_batch *b, const char *name, const char *addr, size_t cap)
{
    for (size_t k = 0; k < b->n_nodes; k++)
        if (strcmp(b->nodes[k].name, name) == 0)
            return (long)k;
    if (b->n_nodes == cap || !name[0] || !addr[0])
        return -1;
    struct batch_node *nd = &b->nodes[b->n_nodes];
    snprintf(nd->name, sizeof nd->name, "%s", name);
    snprintf(nd->addr, sizeof nd->addr, "%s", addr);
    return (long)b->n_nodes++;
}

/* Sends every replica its share of the batch, one message each. */
static void batch_send(struct put_batch *b)
{
    Idunno__SdfsChunk *chunks = calloc(b->n, sizeof *chunks);
    Idunno__SdfsChunk **cp = calloc(b->n, sizeof *cp);
    if (!chunks || !cp) {
        for (size_t i = 0; i < b->n; i++)
            file_fail(&b->files[i], ID_ENOMEM, NULL, "gateway out of memory");
    }
    for (size_t k = 0; chunks && cp && k < b->n_nodes; k++) {
        Idunno__SdfsBlobBatch out = IDUNNO__SDFS_BLOB_BATCH__INIT;
        out.blobs = cp;
        for (size_t i = 0; i < b->n; i++) {
            struct batch_file *f = &b->files[i];
            for (size_t r = 0; r < f->n_replicas; r++) {
                if (f->replica[r] != k)
                    continue;
                Idunno__SdfsChunk *c = &chunks[out.n_blobs];
                idunno__sdfs_chunk__init(c);
                c->blob = f->blob;
                c->size = f->in->data.len;
                c->data = f->in->data;
                c->sha256 = f->in->sha256;
                cp[out.n_blobs++] = c;
            }
        }
        struct replica_call *rc = malloc(sizeof *rc);
        int st = rc ? 0 : ID_ENOMEM;
        if (rc) {
            *rc = (struct replica_call){b, k};
            b->calls++;
            st = net_call_pb(b->s->net, b->nodes[k].addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_BATCH_REQ,
                             &out.base, SDFS_FETCH_MS, on_replica_sealed, rc);
            if (st < 0) {
                b->calls--;
                free(rc);
            }
        }
        if (st < 0)
            for (size_t i = 0; i < b->n; i++)
                for (size_t r = 0; r < b->files[i].n_replicas; r++)
                    if (b->files[i].replica[r] == k)
                        file_fail(&b->files[i], ID_EUNAVAIL, b->nodes[k].name,
                                  "cannot reach replica %s: %s", b->nodes[k].name, id_strerror(st));
    }
    free(chunks);
    free(cp);
    if (b->calls == 0)
        batch_commit(b);
}

static void on_batch_placed(void *ud, const struct net_result *res)
{
    struct put_batch *b = ud;
    if (!batch_call_ended(b))
        return;
    b->placed_ms = id_now_ms();
    Idunno__SdfsPlacementBatch *pl = res->status == 0 ? idunno__sdfs_placement_batch__unpack(
                                                            NULL, res->len, res->body)
                                                      : NULL;
    size_t asked = 0;
    for (size_t i = 0; i < b->n; i++)
        asked += !b->files[i].code;
    if (!pl || pl->n_files != asked) {
        int code = res->status < 0 ? res->status : ID_EPROTO;
        for (size_t i = 0; i < b->n; i++)
            file_fail(&b->files[i], code, NULL, "cannot place the batch: %s",
                      res->errmsg ? res->errmsg : id_strerror(code));
        if (pl)
            idunno__sdfs_placement_batch__free_unpacked(pl, NULL);
        batch_answer(b);
        return;
    }
    /* The replicas are live members: at most SDFS_MAX_ALIVE of them. */
    size_t cap = b->n * SDFS_REPLICAS < SDFS_MAX_ALIVE ? b->n * SDFS_REPLICAS : SDFS_MAX_ALIVE;
    b->nodes = calloc(cap, sizeof *b->nodes);
    for (size_t i = 0, k = 0; i < b->n; i++) {
        struct batch_file *f = &b->files[i];
        if (f->code)
            continue;
        const Idunno__SdfsPlacement *p = pl->files[k++];
        if (!b->nodes) {
            file_fail(f, ID_ENOMEM, NULL, "gateway out of memory");
            continue;
        }
        if (p->n_replicas == 0 || p->n_replicas != p->n_addrs) {
            file_fail(f, ID_EUNAVAIL, NULL, "no live node can take a replica of %s", f->in->name);
            continue;
        }
        sdfs_random_blob(f->blob);
        for (size_t r = 0; r < p->n_replicas && r < SDFS_REPLICAS; r++) {
            long at = batch_node_of(b, p->replicas[r], p->addrs[r], cap);
            if (at < 0) {
                file_fail(f, ID_EPROTO, NULL, "the coordinator's placement is malformed");
                break;
            }
            f->replica[f->n_replicas++] = (size_t)at;
        }
    }
    idunno__sdfs_placement_batch__free_unpacked(pl, NULL);
    /* A file that failed here goes to no replica. */
    for (size_t i = 0; i < b->n; i++)
        if (b->files[i].code)
            b->files[i].n_replicas = 0;
    batch_send(b);
}

void sdfs_on_put_batch(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsPutBatch *m = ctl_req_unpack(req, &idunno__sdfs_put_batch__descriptor, body, len,
                                             s->stopping);
    if (!m)
        return;
    uint64_t bytes = 0;
    for (size_t i = 0; i < m->n_files; i++)
        bytes += m->files[i]->data.len;
    if (m->n_files == 0 || m->n_files > SDFS_BATCH_MAX || bytes > SDFS_BATCH_BYTES_MAX) {
        net_reply_errorf(req, ID_EINVAL,
                         "a batch holds 1 to %d files and at most %u bytes, not %zu files and "
                         "%llu bytes",
                         SDFS_BATCH_MAX, SDFS_BATCH_BYTES_MAX, m->n_files,
                         (unsigned long long)bytes);
        idunno__sdfs_put_batch__free_unpacked(m, NULL);
        return;
    }
    struct put_batch *b = calloc(1, sizeof *b);
    struct batch_file *files = calloc(m->n_files, sizeof *files);
    Idunno__SdfsPlace *rows = calloc(m->n_files, sizeof *rows);
    Idunno__SdfsPlace **rp = calloc(m->n_files, sizeof *rp);
    if (!b || !files || !rows || !rp) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        idunno__sdfs_put_batch__free_unpacked(m, NULL);
        free(b);
        free(files);
        free(rows);
        free(rp);
        return;
    }
    *b = (struct put_batch){.s = s, .req = req, .m = m, .files = files, .n = m->n_files};
    b->started_ms = id_now_ms();
    Idunno__SdfsPlaceBatch p = IDUNNO__SDFS_PLACE_BATCH__INIT;
    p.files = rp;
    for (size_t i = 0; i < b->n; i++) {
        struct batch_file *f = &files[i];
        f->in = m->files[i];
        if (!sdfs_name_ok(f->in->name)) {
            file_fail(f, ID_EINVAL, NULL,
                      "not a valid SDFS name (1-%d printable characters, no spaces, no leading "
                      "'/', no '.' or '..' parts)",
                      SDFS_NAME_MAX);
        } else if (f->in->data.len > SDFS_BATCH_FILE_MAX) {
            file_fail(f, ID_ETOOBIG, NULL, "%zu bytes: files over %u bytes take the single put",
                      f->in->data.len, SDFS_BATCH_FILE_MAX);
        } else if (f->in->sha256.len != 32) {
            file_fail(f, ID_EPROTO, NULL, "its SHA-256 is not 32 bytes");
        } else {
            idunno__sdfs_place__init(&rows[p.n_files]);
            rows[p.n_files].name = f->in->name;
            rows[p.n_files].size = f->in->data.len;
            rp[p.n_files] = &rows[p.n_files];
            p.n_files++;
        }
    }
    p.avoid = m->avoid;
    p.n_avoid = m->n_avoid;
    p.near = s->name;
    b->next = s->batches;
    s->batches = b;
    LOG_INFO("sdfs", "putting a batch of %zu files (%llu bytes)", b->n, (unsigned long long)bytes);
    int rc = 0;
    if (p.n_files) {
        b->calls++;
        rc = net_call_pb(s->net, s->addr, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_BATCH_REQ, &p.base,
                         SDFS_BATCH_CALL_MS, on_batch_placed, b);
        if (rc < 0) {
            b->calls--;
            for (size_t i = 0; i < b->n; i++)
                file_fail(&files[i], rc, NULL, "cannot reach the coordinator: %s", id_strerror(rc));
        }
    }
    free(rows);
    free(rp);
    if (b->calls == 0)
        batch_answer(b);
}

void sdfs_batches_stop(struct sdfs *s)
{
    while (s->batches) {
        struct put_batch *b = s->batches;
        s->batches = b->next;
        net_reply_error(b->req, ID_ESHUTDOWN, "node shutting down", NULL);
        if (b->calls) {
            b->abandoned = 1;
            b->s = NULL;
        } else {
            batch_free(b);
        }
    }
}

/* ==== replica ================================================================================ */

struct replica_batch {
    struct sdfs *s;
    struct net_request *req;
    Idunno__SdfsBlobBatch *m;
    struct store_batch_file *files;
};

static void on_store_batch_done(void *ud, struct store_batch_file *files, size_t n)
{
    struct replica_batch *rb = ud;
    Idunno__SdfsBlobSealed *rows = calloc(n, sizeof *rows);
    Idunno__SdfsBlobSealed **rp = calloc(n, sizeof *rp);
    uint8_t *crcs = calloc(n, 4);
    if (!rows || !rp || !crcs) {
        net_reply_error(rb->req, ID_ENOMEM, NULL, NULL);
    } else {
        for (size_t i = 0; i < n; i++) {
            idunno__sdfs_blob_sealed__init(&rows[i]);
            rows[i].blob = rb->m->blobs[i]->blob;
            rows[i].code = files[i].status;
            if (files[i].status == 0) {
                sdfs_crc_encode(&crcs[4 * i], files[i].crc32c);
                rows[i].crc32c.data = &crcs[4 * i];
                rows[i].crc32c.len = 4;
            }
            rp[i] = &rows[i];
        }
        Idunno__SdfsBlobBatchResult out = IDUNNO__SDFS_BLOB_BATCH_RESULT__INIT;
        out.n_blobs = n;
        out.blobs = rp;
        net_reply_pb(rb->req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_BATCH_RESP, &out.base);
    }
    free(rows);
    free(rp);
    free(crcs);
    idunno__sdfs_blob_batch__free_unpacked(rb->m, NULL);
    free(rb->files);
    free(rb);
}

void sdfs_on_blob_batch(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsBlobBatch *m = ctl_req_unpack(req, &idunno__sdfs_blob_batch__descriptor, body, len,
                                              s->stopping);
    if (!m)
        return;
    if (m->n_blobs == 0 || m->n_blobs > SDFS_BATCH_MAX) {
        net_reply_errorf(req, ID_EINVAL, "a batch holds 1 to %d copies, not %zu", SDFS_BATCH_MAX,
                         m->n_blobs);
        idunno__sdfs_blob_batch__free_unpacked(m, NULL);
        return;
    }
    struct replica_batch *rb = calloc(1, sizeof *rb);
    struct store_batch_file *files = calloc(m->n_blobs, sizeof *files);
    int rc = rb && files ? 0 : ID_ENOMEM;
    if (rc == 0) {
        *rb = (struct replica_batch){s, req, m, files};
        for (size_t i = 0; i < m->n_blobs; i++) {
            const Idunno__SdfsChunk *c = m->blobs[i];
            struct store_batch_file *f = &files[i];
            /* Each copy is checked on its own: one bad entry fails only itself. */
            if (!sdfs_blob_ok(c->blob) || c->sha256.len != 32 || c->size != c->data.len ||
                c->data.len > SDFS_BATCH_FILE_MAX) {
                f->status = ID_EINVAL;
                continue;
            }
            snprintf(f->blob, sizeof f->blob, "%s", c->blob);
            f->data = c->data.data;
            f->len = c->data.len;
            memcpy(f->sha, c->sha256.data, 32);
        }
        rc = store_write_batch(s->store, files, m->n_blobs, on_store_batch_done, rb);
    }
    if (rc < 0) {
        net_reply_errorf(req, rc, "replica %s cannot write the batch: %s", s->name,
                         id_strerror(rc));
        idunno__sdfs_blob_batch__free_unpacked(m, NULL);
        free(files);
        free(rb);
    }
}
