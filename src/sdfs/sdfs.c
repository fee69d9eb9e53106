/* sdfs.c — SDFS on a node (see sdfs.h): the replica's blob handlers, the
 * gateway's gets, and the life cycle (handler registration, the tick, stop).
 * The put path is in sdfs_put.c, the coordinator's requests, repairs and
 * store reports in sdfs_lead.c; sdfs_int.h has what they share.
 *
 * Threading: loop thread only (disk work runs in store.c's workers). */
#include "sdfs/sdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "base/sha256.h"
#include "ctl/ctl.h"
#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "sdfs/catalog.h"
#include "sdfs/fetch.h"
#include "sdfs/reconcile.h"
#include "sdfs/sdfs_int.h"
#include "sdfs/store.h"

/* ---- small helpers -------------------------------------------------------------------------- */

void sdfs_random_blob(char out[SDFS_BLOB_LEN + 1])
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &v, sizeof v) != (ssize_t)sizeof v)
        v = id_wall_ms() * 6364136223846793005ull ^ id_now_us() ^ (uint64_t)getpid() << 32;
    if (fd >= 0)
        close(fd);
    snprintf(out, SDFS_BLOB_LEN + 1, "%016llx", (unsigned long long)v);
}

/* The address of a live node, or NULL. */
const char *sdfs_addr_of(const struct member_view *alive, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(alive[i].name, name) == 0)
            return alive[i].addr;
    return NULL;
}

/* Calls a coordinator request through this node itself: its handler serves it
 * here if this node leads, or forwards it to the leader with every retry of
 * ctl/forward.h. */
int sdfs_call_leader(struct sdfs *s, uint16_t type, const ProtobufCMessage *msg, net_response_fn fn,
                     void *ud)
{
    return net_call_pb(s->net, s->addr, type, msg, SDFS_CALL_MS, fn, ud);
}

int sdfs_chunk_payload(const struct sdfs *s, const struct net_request *req,
                       const Idunno__SdfsChunk *m, const uint8_t *body, size_t len,
                       const uint8_t **payload, size_t *plain)
{
    if (!net_keys(s->net)) {
        *payload = m->data.data;
        *plain = m->data.len;
        return 0;
    }
    uint32_t tail = net_request_sealed_tail(req);
    if (tail != m->data.len || tail < SEAL_PAYLOAD_OVERHEAD || tail > len)
        return ID_EPROTO;
    *payload = body + len - tail;
    *plain = tail - SEAL_PAYLOAD_OVERHEAD;
    return 0;
}

/* ==== replica ================================================================================ */

static void on_blob_written(void *ud, int status)
{
    struct net_request *req = ud;
    if (status < 0)
        net_reply_errorf(req, status, "replica write failed: %s", id_strerror(status));
    else
        net_reply(req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_RESP, NULL, 0);
}

static void on_blob_write(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsChunk *m = ctl_req_unpack(req, &idunno__sdfs_chunk__descriptor, body, len,
                                          s->stopping);
    if (!m)
        return;
    const uint8_t *payload;
    size_t plain;
    int rc = sdfs_chunk_payload(s, req, m, body, len, &payload, &plain);
    if (rc < 0) {
        net_reply_error(req, rc, "a chunk's data must be a sealed payload on a cluster with a key",
                        NULL);
        idunno__sdfs_chunk__free_unpacked(m, NULL);
        return;
    }
    /* With a key the payload is opened here, where it is stored: the gateway
     * that forwarded it never had it in clear (net.h). It is opened straight
     * into the buffer the store writes from. */
    if (payload == m->data.data) {
        rc = store_write(s->store, m->blob, m->offset, m->data.data, plain, on_blob_written, req);
    } else {
        uint8_t *clear = malloc(plain ? plain : 1);
        rc = clear ? seal_open_payload(net_keys(s->net), m->offset, payload, m->data.len, clear)
                   : ID_ENOMEM;
        if (rc == ID_EAUTH) {
            free(clear);
            net_reply_errorf(req, rc,
                             "replica %s: the chunk of blob %s at %llu fails authentication",
                             s->name, m->blob, (unsigned long long)m->offset);
            idunno__sdfs_chunk__free_unpacked(m, NULL);
            return;
        }
        if (rc == 0)
            rc = store_write_take(s->store, m->blob, m->offset, clear, plain, on_blob_written, req);
        else
            free(clear);
    }
    if (rc == ID_EEXIST)
        net_reply_errorf(req, rc,
                         "replica %s holds blob %s sealed; sealed copies are never "
                         "replaced",
                         s->name, m->blob);
    else if (rc < 0)
        net_reply_errorf(req, rc, "replica %s cannot write blob %s at %llu: %s", s->name, m->blob,
                         (unsigned long long)m->offset, id_strerror(rc));
    idunno__sdfs_chunk__free_unpacked(m, NULL);
}

static void on_blob_sealed(void *ud, int status, uint32_t crc32c)
{
    struct net_request *req = ud;
    if (status < 0) {
        net_reply_errorf(req, status, "replica seal failed: %s", id_strerror(status));
        return;
    }
    uint8_t crc[4];
    sdfs_crc_encode(crc, crc32c);
    Idunno__SdfsChunk out = IDUNNO__SDFS_CHUNK__INIT;
    out.crc32c.data = crc;
    out.crc32c.len = 4;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_RESP, &out.base);
}

/* Sealed copies are immutable: a seal of a blob already sealed here succeeds
 * only if it names the very bytes held. */
static void on_blob_resealed(void *ud, int status)
{
    struct net_request *req = ud;
    if (status == ID_ECRC)
        net_reply_errorf(req, ID_EEXIST,
                         "a different copy of this blob is sealed here; sealed "
                         "copies are never replaced");
    else if (status < 0)
        net_reply_errorf(req, status, "replica seal failed: %s", id_strerror(status));
    else
        net_reply(req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_RESP, NULL, 0);
}

/* The prologue of a replica request that names a copy by its SHA-256: the
 * request decoded (ctl_req_unpack), and its digest field (at sha_at in the
 * message) 32 bytes long, else answered with `code` and NULL. */
static void *unpack_with_sha(struct sdfs *s, struct net_request *req,
                             const ProtobufCMessageDescriptor *desc, const uint8_t *body,
                             size_t len, size_t sha_at, int code)
{
    ProtobufCMessage *m = ctl_req_unpack(req, desc, body, len, s->stopping);
    if (m && ((const ProtobufCBinaryData *)((const char *)m + sha_at))->len != 32) {
        net_reply_errorf(req, code, "bad %s", desc->short_name);
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

static void on_blob_seal(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsChunk *m = unpack_with_sha(s, req, &idunno__sdfs_chunk__descriptor, body, len,
                                           offsetof(Idunno__SdfsChunk, sha256), ID_EPROTO);
    if (!m)
        return;
    int rc = store_seal(s->store, m->blob, m->size, m->sha256.data, on_blob_sealed, req);
    if (rc == ID_EEXIST) /* a retried seal: fine if it is the same copy */
        rc = store_verify(s->store, m->blob, m->size, m->sha256.data, 0, on_blob_resealed, req);
    if (rc < 0)
        net_reply_errorf(req, rc, "replica %s cannot seal blob %s: %s", s->name, m->blob,
                         id_strerror(rc));
    idunno__sdfs_chunk__free_unpacked(m, NULL);
}

struct read_op {
    struct sdfs *s;
    struct net_request *req;
    uint16_t resp_type;
};

static void on_blob_read_done(void *ud, int status, const uint8_t *data, size_t len)
{
    struct read_op *op = ud;
    if (status < 0) {
        net_reply_errorf(op->req, status, "replica %s cannot read: %s", op->s->name,
                         id_strerror(status));
    } else {
        Idunno__SdfsChunk c = IDUNNO__SDFS_CHUNK__INIT;
        c.data.data = (uint8_t *)data;
        c.data.len = len;
        c.from = op->s->name;
        net_reply_pb(op->req, op->resp_type, &c.base);
    }
    free(op);
}

static void on_blob_read(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsRead *m = ctl_req_unpack(req, &idunno__sdfs_read__descriptor, body, len,
                                         s->stopping);
    if (!m)
        return;
    struct read_op *op = calloc(1, sizeof *op);
    int rc = op ? 0 : ID_ENOMEM;
    if (op) {
        *op = (struct read_op){s, req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_READ_RESP};
        rc = store_read(s->store, m->blob, m->offset, m->length, on_blob_read_done, op);
    }
    if (rc < 0) {
        free(op);
        net_reply_errorf(req, rc, "replica %s cannot read blob %s: %s", s->name, m->blob,
                         id_strerror(rc));
    }
    idunno__sdfs_read__free_unpacked(m, NULL);
}

/* Where a sealed blob's file is, for a client on this host: it copies the
 * file in the kernel and checks the checksum itself, which saves the bytes'
 * trips through two sockets (docs/sdfs.md, "Short-circuit gets"). A client
 * elsewhere cannot open the path and reads over the network. */
static void on_blob_locate(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsRead *m = ctl_req_unpack(req, &idunno__sdfs_read__descriptor, body, len, 0);
    if (!m)
        return;
    char path[700], abs[PATH_MAX];
    if (store_path(s->store, m->blob, path, sizeof path) < 0) {
        net_reply_errorf(req, ID_ENOTFOUND, "replica %s holds no blob %s", s->name, m->blob);
    } else if (!realpath(path, abs)) {
        net_reply_errorf(req, id_from_errno(errno), "replica %s cannot resolve blob %s: %s",
                         s->name, m->blob, strerror(errno));
    } else {
        Idunno__SdfsBlobFile f = IDUNNO__SDFS_BLOB_FILE__INIT;
        f.path = abs;
        net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_LOCATE_RESP, &f.base);
    }
    idunno__sdfs_read__free_unpacked(m, NULL);
}

static void on_blob_delete(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsBlobList *m = ctl_req_unpack(req, &idunno__sdfs_blob_list__descriptor, body, len,
                                             s->stopping);
    if (!m)
        return;
    for (size_t i = 0; i < m->n_blobs; i++) {
        if (store_has(s->store, m->blobs[i], NULL))
            LOG_INFO("sdfs", "deleting blob %s", m->blobs[i]);
        store_delete(s->store, m->blobs[i]); /* also drops an unfinished copy */
    }
    idunno__sdfs_blob_list__free_unpacked(m, NULL);
    net_reply(req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_DELETE_RESP, NULL, 0);
}

static void on_blob_fetch(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsFetch *m = unpack_with_sha(s, req, &idunno__sdfs_fetch__descriptor, body, len,
                                           offsetof(Idunno__SdfsFetch, sha256), ID_EINVAL);
    if (!m)
        return;
    int rc = fetcher_get(s->fetcher, m->blob, m->size, m->sha256.data, m->sources, m->n_sources, 1,
                         req, NULL, NULL);
    if (rc < 0)
        net_reply_error(req, rc, rc == ID_EINVAL ? "bad SdfsFetch" : id_strerror(rc), NULL);
    idunno__sdfs_fetch__free_unpacked(m, NULL);
}

int sdfs_fetch_local(struct sdfs *s, const char *blob, uint64_t size, const uint8_t sha[32],
                     char *const *sources, size_t n_sources, sdfs_done_fn cb, void *ud)
{
    /* A copy in use stays: the fetch touches it, and the store report spares
     * young blobs, so a worker's cache of a data set it keeps reading is not
     * deleted and fetched again every SDFS_YOUNG_MS. */
    return fetcher_get(s->fetcher, blob, size, sha, sources, n_sources, 0, NULL, cb, ud);
}

/* ==== gateway: gets ========================================================================== */

struct get_op {
    struct sdfs *s;
    struct net_request *req;
    Idunno__SdfsRead *m;
    size_t next; /* next replica to try */
    char tried_err[200];
};

static void get_try(struct get_op *g);

static void get_done(struct get_op *g)
{
    idunno__sdfs_read__free_unpacked(g->m, NULL);
    free(g);
}

static void on_get_local(void *ud, int status, const uint8_t *data, size_t len)
{
    struct get_op *g = ud;
    if (status < 0) {
        snprintf(g->tried_err, sizeof g->tried_err, "%s: %s", g->s->name, id_strerror(status));
        get_try(g);
        return;
    }
    Idunno__SdfsChunk c = IDUNNO__SDFS_CHUNK__INIT;
    c.data.data = (uint8_t *)data;
    c.data.len = len;
    c.from = g->s->name;
    net_reply_pb(g->req, IDUNNO__MSG_TYPE__MSG_SDFS_GET_RESP, &c.base);
    get_done(g);
}

static void on_get_remote(void *ud, const struct net_result *res)
{
    struct get_op *g = ud;
    if (res->status < 0) {
        snprintf(g->tried_err, sizeof g->tried_err, "%s: %s", g->m->replicas[g->next - 1],
                 res->errmsg ? res->errmsg : id_strerror(res->status));
        get_try(g);
        return;
    }
    net_reply(g->req, IDUNNO__MSG_TYPE__MSG_SDFS_GET_RESP, res->body, res->len);
    get_done(g);
}

/* Tries the local store (once, first), then each listed replica in order. */
static void get_try(struct get_op *g)
{
    struct sdfs *s = g->s;
    struct member_view alive[SDFS_MAX_ALIVE];
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    while (g->next < g->m->n_replicas) {
        const char *name = g->m->replicas[g->next++];
        if (strcmp(name, s->name) == 0)
            continue; /* the local store was tried first */
        const char *addr = sdfs_addr_of(alive, n_alive, name);
        if (!addr)
            continue;
        Idunno__SdfsRead r = IDUNNO__SDFS_READ__INIT;
        r.blob = g->m->blob;
        r.offset = g->m->offset;
        r.length = g->m->length;
        if (net_call_pb(s->net, addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_READ_REQ, &r.base,
                        SDFS_CALL_MS, on_get_remote, g) == 0)
            return;
    }
    net_reply_errorf(g->req, ID_EUNAVAIL, "no replica of %s could be read%s%s", g->m->name,
                     g->tried_err[0] ? "; last error: " : "", g->tried_err);
    get_done(g);
}

static void on_get(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsRead *m = ctl_req_unpack(req, &idunno__sdfs_read__descriptor, body, len,
                                         s->stopping);
    if (!m)
        return;
    if (!sdfs_blob_ok(m->blob)) {
        net_reply_error(req, ID_EINVAL, "bad SdfsRead", NULL);
        idunno__sdfs_read__free_unpacked(m, NULL);
        return;
    }
    struct get_op *g = calloc(1, sizeof *g);
    if (!g) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        idunno__sdfs_read__free_unpacked(m, NULL);
        return;
    }
    *g = (struct get_op){.s = s, .req = req, .m = m};
    s->stats.gets += m->offset == 0;
    int local = 0;
    for (size_t i = 0; i < m->n_replicas; i++)
        local |= strcmp(m->replicas[i], s->name) == 0;
    if (local && store_has(s->store, m->blob, NULL) &&
        store_read(s->store, m->blob, m->offset, m->length ? m->length : SDFS_CHUNK, on_get_local,
                   g) == 0)
        return;
    get_try(g);
}

static void on_tick(uv_timer_t *t)
{
    struct sdfs *s = t->data;
    if (s->stopping)
        return;
    sdfs_repair_tick(s);
    uint64_t now = id_now_ms();
    if (!s->report_busy && now >= s->next_report_ms) {
        s->next_report_ms = now + SDFS_REPORT_MS;
        sdfs_report_send(s);
    }
    sdfs_puts_expire(s, now);
}

/* ==== life cycle ============================================================================= */

int sdfs_create(const struct sdfs_config *cfg, struct sdfs **out, char *errmsg, size_t len)
{
    struct sdfs *s = calloc(1, sizeof *s);
    if (!s)
        return ID_ENOMEM;
    s->loop = cfg->env.loop;
    s->net = cfg->env.net;
    s->ctl = cfg->env.ctl;
    s->member = cfg->env.member;
    s->catalog = cfg->catalog;
    snprintf(s->name, sizeof s->name, "%s", cfg->env.name);
    snprintf(s->addr, sizeof s->addr, "%s", cfg->env.addr);
    s->boot = id_wall_ms();
    s->young_ms = cfg->young_ms ? cfg->young_ms : SDFS_YOUNG_MS;
    s->reconcile = reconcile_create(cfg->delete_grace_ms ? cfg->delete_grace_ms
                                                         : RECONCILE_DELETE_GRACE_MS);
    if (!s->reconcile) {
        free(s);
        return ID_ENOMEM;
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sdfs", cfg->data_dir);
    int rc = store_create(s->loop, dir, &s->store, errmsg, len);
    if (rc == 0 && !(s->fetcher = fetcher_create(s->net, s->store))) {
        store_destroy(s->store);
        rc = ID_ENOMEM;
    }
    if (rc < 0) {
        reconcile_destroy(s->reconcile);
        free(s);
        return rc;
    }
    LOG_INFO("sdfs", "store %s: %zu blobs, %llu bytes", dir, store_count(s->store),
             (unsigned long long)store_bytes(s->store));
    struct net *n = s->net;
    struct {
        uint16_t type;
        net_request_fn fn;
    } local[] = {
        {IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, on_blob_write},
        {IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_REQ, on_blob_seal},
        {IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_READ_REQ, on_blob_read},
        {IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_LOCATE_REQ, on_blob_locate},
        {IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_DELETE_REQ, on_blob_delete},
        {IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_FETCH_REQ, on_blob_fetch},
        {IDUNNO__MSG_TYPE__MSG_SDFS_PUT_OPEN_REQ, sdfs_on_put_open},
        {IDUNNO__MSG_TYPE__MSG_SDFS_PUT_DATA_REQ, sdfs_on_put_data},
        {IDUNNO__MSG_TYPE__MSG_SDFS_PUT_CLOSE_REQ, sdfs_on_put_close},
        {IDUNNO__MSG_TYPE__MSG_SDFS_PUT_BATCH_REQ, sdfs_on_put_batch},
        {IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_BATCH_REQ, sdfs_on_blob_batch},
        {IDUNNO__MSG_TYPE__MSG_SDFS_GET_REQ, on_get},
        {IDUNNO__MSG_TYPE__MSG_SDFS_LIST_REQ, sdfs_on_list},
    };
    for (size_t i = 0; rc == 0 && i < sizeof local / sizeof local[0]; i++)
        rc = net_on_request(n, local[i].type, local[i].fn, s);
    if (rc == 0)
        rc = net_accept_tail(n, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ);
    if (rc == 0)
        rc = net_accept_tail(n, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_DATA_REQ);
    if (rc == 0)
        rc = ctl_svc_create(cfg->env.fwd, s->ctl, s, &s->svc);
    if (rc == 0)
        rc = ctl_svc_register(s->svc, sdfs_lead_ops, sdfs_lead_n_ops);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot register SDFS requests: %s", id_strerror(rc));
        ctl_svc_destroy(s->svc);
        fetcher_destroy(s->fetcher);
        store_destroy(s->store);
        reconcile_destroy(s->reconcile);
        free(s);
        return rc;
    }
    uv_timer_init(s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, SDFS_REPAIR_TICK_MS, SDFS_REPAIR_TICK_MS);
    s->next_report_ms = id_now_ms() + 1000;
    *out = s;
    return 0;
}

static void sdfs_release(struct sdfs *s);

static void on_tick_closed(uv_handle_t *h)
{
    struct sdfs *s = h->data;
    s->tick_closed = 1;
    if (s->destroy_pending)
        sdfs_release(s);
}

void sdfs_stop(struct sdfs *s)
{
    if (!s || s->stopping)
        return;
    s->stopping = 1;
    ctl_svc_stop(s->svc);
    while (s->puts) {
        struct put_session *p = s->puts;
        if (!p->failed)
            sdfs_put_fail(p, ID_ESHUTDOWN, NULL, "node shutting down");
        sdfs_put_free(p);
    }
    sdfs_batches_stop(s);
    fetcher_stop(s->fetcher);
    store_destroy(s->store);
    s->store = NULL;
    /* Repairs in flight end when their calls fail at net_destroy. */
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
}

struct store *sdfs_store(struct sdfs *s)
{
    return s->store;
}

void sdfs_get_stats(struct sdfs *s, struct sdfs_stats *out)
{
    *out = s->stats;
    out->files_held = s->store ? store_count(s->store) : 0;
    out->bytes_held = s->store ? store_bytes(s->store) : 0;
}

static void sdfs_release(struct sdfs *s)
{
    while (s->repairs)
        sdfs_repair_end(s->repairs);
    reconcile_destroy(s->reconcile);
    fetcher_destroy(s->fetcher);
    ctl_svc_destroy(s->svc);
    free(s);
}

void sdfs_destroy(struct sdfs *s)
{
    if (!s)
        return;
    sdfs_stop(s);
    /* The timer's close callback runs on a later loop turn, possibly after
     * the node's shutdown has reached here: it frees s then. */
    if (s->tick_closed)
        sdfs_release(s);
    else
        s->destroy_pending = 1;
}
