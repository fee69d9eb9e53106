/* sdfs.c — SDFS on a node (see sdfs.h): request handlers of the replica, the
 * gateway and the coordinator, the repair loop and the store report. */
#include "sdfs/sdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
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
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "ctl/service.h"
#include "sdfs/catalog.h"
#include "sdfs/fetch.h"
#include "sdfs/reconcile.h"
#include "sdfs/store.h"

#define SDFS_CALL_MS 10000
#define SDFS_FETCH_MS 120000
#define SDFS_FAILED_MEMORY 32
#define SDFS_MAX_ALIVE 256
/* Chunk writes in flight to one replica: enough to keep its disk busy during
 * the round trips, few enough to bound the gateway's memory. */
#define SDFS_TARGET_WINDOW 4

struct put_chunk;
struct put_session;

/* One replica of a put: its chunks go out one at a time, in order. */
struct put_target {
    struct put_session *ps;
    char name[SDFS_NODE_MAX];
    char addr[64];
    struct put_chunk **queue; /* ring of chunks still to send */
    size_t q_head, q_len, q_cap;
    int sending; /* writes in flight (the replica applies them in order) */
    int sealed;
};

struct put_chunk {
    uint64_t offset;
    uint8_t *data; /* the packed BLOB_WRITE body */
    size_t len;
    size_t size;   /* file bytes in it */
    unsigned acks;
    unsigned refs;            /* targets that still hold it, plus the session */
    struct net_request *req;  /* the client's request, answered at the last ack */
};

struct put_session {
    struct sdfs *s;
    uint64_t id;
    char name[SDFS_NAME_MAX + 1];
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t size;
    uint64_t next_offset;
    size_t n_targets;
    struct put_target targets[SDFS_REPLICAS];
    int failed;                  /* an ID_E* once a replica failed */
    char failed_node[SDFS_NODE_MAX];
    char failed_msg[200];
    struct net_request *close_req;
    unsigned seals_pending;
    uint8_t sha[32];
    /* The CRC-32C the replicas computed while writing; recorded with the
     * version only if every replica reported the same one. */
    uint32_t crc32c;
    int crc_state; /* 0 none yet, 1 agreed so far, -1 missing or disagreeing */
    uint64_t last_ms;
    struct put_session *next;
};

struct repair_job {
    struct sdfs *s;
    char name[SDFS_NAME_MAX + 1];
    char blob[SDFS_BLOB_LEN + 1];
    char dead[SDFS_NODE_MAX];
    char target[SDFS_NODE_MAX];
    uint64_t started_ms;
    struct repair_job *next;
};

struct sdfs {
    uv_loop_t *loop;
    struct net *net;
    struct ctl *ctl;
    struct ctl_svc *svc; /* the leader operations */
    struct member *member;
    struct catalog *catalog;
    struct store *store;
    char name[SDFS_NODE_MAX];
    char addr[64];
    struct put_session *puts;
    uint64_t next_session;
    struct {
        uint64_t session;
        char node[SDFS_NODE_MAX];
    } failed[SDFS_FAILED_MEMORY];
    unsigned failed_next;
    struct repair_job *repairs;
    size_t n_repairs;
    struct fetcher *fetcher;
    struct reconcile *reconcile; /* the leader's memory of store reports */
    uv_timer_t tick;
    uint64_t next_report_ms;
    int report_busy;
    uint64_t boot, report_seq, report_answered; /* numbering of this process's reports */
    int stopping;
    int tick_started, tick_closed, free_pending;
    struct sdfs_stats stats;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static void random_blob(char out[SDFS_BLOB_LEN + 1])
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
static const char *addr_of(const struct member_view *alive, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(alive[i].name, name) == 0)
            return alive[i].addr;
    return NULL;
}

/* Calls a coordinator request through this node itself: its handler serves it
 * here if this node leads, or forwards it to the leader with every retry of
 * ctl/forward.h. */
static int call_leader(struct sdfs *s, uint16_t type, const ProtobufCMessage *msg,
                       net_response_fn fn, void *ud)
{
    return net_call_pb(s->net, s->addr, type, msg, SDFS_CALL_MS, fn, ud);
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
    Idunno__SdfsChunk *m =
        ctl_req_unpack(req, &idunno__sdfs_chunk__descriptor, body, len, s->stopping);
    if (!m)
        return;
    int rc = store_write(s->store, m->blob, m->offset, m->data.data, m->data.len, on_blob_written,
                         req);
    if (rc == ID_EEXIST)
        net_reply_errorf(req, rc, "replica %s holds blob %s sealed; sealed copies are never "
                                  "replaced", s->name, m->blob);
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
        net_reply_errorf(req, ID_EEXIST, "a different copy of this blob is sealed here; sealed "
                                         "copies are never replaced");
    else if (status < 0)
        net_reply_errorf(req, status, "replica seal failed: %s", id_strerror(status));
    else
        net_reply(req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_RESP, NULL, 0);
}

static void on_blob_seal(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsChunk *m =
        ctl_req_unpack(req, &idunno__sdfs_chunk__descriptor, body, len, s->stopping);
    if (!m)
        return;
    if (m->sha256.len != 32) {
        net_reply_error(req, ID_EPROTO, "bad SdfsChunk", NULL);
        idunno__sdfs_chunk__free_unpacked(m, NULL);
        return;
    }
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
    Idunno__SdfsRead *m =
        ctl_req_unpack(req, &idunno__sdfs_read__descriptor, body, len, s->stopping);
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
        net_reply_errorf(req, id_from_errno(errno), "replica %s cannot resolve blob %s: %s", s->name,
                         m->blob, strerror(errno));
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
    Idunno__SdfsBlobList *m =
        ctl_req_unpack(req, &idunno__sdfs_blob_list__descriptor, body, len, s->stopping);
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
    Idunno__SdfsFetch *m =
        ctl_req_unpack(req, &idunno__sdfs_fetch__descriptor, body, len, s->stopping);
    if (!m)
        return;
    if (m->sha256.len != 32) {
        net_reply_error(req, ID_EINVAL, "bad SdfsFetch", NULL);
        idunno__sdfs_fetch__free_unpacked(m, NULL);
        return;
    }
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

/* ==== gateway: puts ========================================================================== */

static struct put_session *put_find(struct sdfs *s, uint64_t id)
{
    for (struct put_session *p = s->puts; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static void chunk_unref(struct put_chunk *c)
{
    if (--c->refs == 0) {
        free(c->data);
        free(c);
    }
}

static void target_send_next(struct put_target *t);

/* Fails the session: every waiting client request gets the error. */
static void put_fail(struct put_session *ps, int code, const char *node, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put_fail(struct put_session *ps, int code, const char *node, const char *fmt, ...)
{
    if (ps->failed)
        return;
    ps->failed = code;
    snprintf(ps->failed_node, sizeof ps->failed_node, "%s", node ? node : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->failed_msg, sizeof ps->failed_msg, fmt, ap);
    va_end(ap);
    LOG_WARN("sdfs", "put of %s (blob %s) failed: %s", ps->name, ps->blob, ps->failed_msg);
    struct sdfs *s = ps->s;
    if (node && node[0]) {
        s->failed[s->failed_next % SDFS_FAILED_MEMORY].session = ps->id;
        snprintf(s->failed[s->failed_next % SDFS_FAILED_MEMORY].node, SDFS_NODE_MAX, "%s", node);
        s->failed_next++;
    }
    for (size_t i = 0; i < ps->n_targets; i++) {
        struct put_target *t = &ps->targets[i];
        while (t->q_len) {
            struct put_chunk *c = t->queue[t->q_head];
            t->q_head = (t->q_head + 1) % t->q_cap;
            t->q_len--;
            if (c->req) {
                net_reply_error(c->req, code, ps->failed_msg, NULL);
                c->req = NULL;
            }
            chunk_unref(c);
        }
    }
    if (ps->close_req) {
        net_reply_error(ps->close_req, code, ps->failed_msg, NULL);
        ps->close_req = NULL;
    }
    /* Tell the replicas to drop their copies (they would expire anyway). */
    Idunno__SdfsBlobList bl = IDUNNO__SDFS_BLOB_LIST__INIT;
    char *b = ps->blob;
    bl.n_blobs = 1;
    bl.blobs = &b;
    for (size_t i = 0; i < ps->n_targets; i++)
        net_call_pb(s->net, ps->targets[i].addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_DELETE_REQ,
                    &bl.base, SDFS_CALL_MS, NULL, NULL);
}

static void put_free(struct put_session *ps)
{
    struct sdfs *s = ps->s;
    for (struct put_session **pp = &s->puts; *pp; pp = &(*pp)->next)
        if (*pp == ps) {
            *pp = ps->next;
            break;
        }
    for (size_t i = 0; i < ps->n_targets; i++) {
        struct put_target *t = &ps->targets[i];
        while (t->q_len) {
            struct put_chunk *c = t->queue[t->q_head];
            t->q_head = (t->q_head + 1) % t->q_cap;
            t->q_len--;
            if (c->req)
                net_reply_error(c->req, ID_ECANCELED, "put abandoned", NULL);
            c->req = NULL;
            chunk_unref(c);
        }
        free(t->queue);
    }
    free(ps);
}

struct target_call {
    struct put_target *t;
    struct put_chunk *c;
    uint64_t session;
};

static void on_target_written(void *ud, const struct net_result *res)
{
    struct target_call *tc = ud;
    struct put_chunk *c = tc->c;
    /* The session may have been freed (client gone, node stopping): look it up. */
    struct put_session *ps = NULL;
    struct sdfs *s = tc->t ? tc->t->ps->s : NULL;
    if (s)
        ps = put_find(s, tc->session);
    if (!ps || ps->failed) {
        chunk_unref(c);
        free(tc);
        return;
    }
    struct put_target *t = tc->t;
    t->sending--;
    if (res->status < 0) {
        put_fail(ps, res->status == ID_ENOSPC ? ID_ENOSPC : ID_EUNAVAIL, t->name,
                 "replica %s failed: %s", t->name, res->errmsg ? res->errmsg : id_strerror(res->status));
        chunk_unref(c);
        free(tc);
        return;
    }
    if (++c->acks == ps->n_targets && c->req) {
        net_reply(c->req, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_DATA_RESP, NULL, 0);
        c->req = NULL;
    }
    chunk_unref(c);
    free(tc);
    target_send_next(t);
}

/* Sends the replica's next queued chunk; returns 1 if one was sent. */
static int target_send_one(struct put_target *t)
{
    struct put_session *ps = t->ps;
    if (t->sending >= SDFS_TARGET_WINDOW || t->q_len == 0 || ps->failed)
        return 0;
    struct put_chunk *c = t->queue[t->q_head];
    t->q_head = (t->q_head + 1) % t->q_cap;
    t->q_len--;
    struct target_call *tc = malloc(sizeof *tc);
    if (!tc) {
        put_fail(ps, ID_ENOMEM, NULL, "out of memory");
        chunk_unref(c);
        return 0;
    }
    *tc = (struct target_call){t, c, ps->id};
    t->sending++;
    int rc = net_call(ps->s->net, t->addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, c->data,
                      c->len, SDFS_CALL_MS, on_target_written, tc);
    if (rc < 0) {
        t->sending--;
        free(tc);
        chunk_unref(c);
        put_fail(ps, ID_EUNAVAIL, t->name, "cannot send to replica %s: %s", t->name,
                 id_strerror(rc));
        return 0;
    }
    return 1;
}

static void target_send_next(struct put_target *t)
{
    while (target_send_one(t))
        ;
}

static int target_push(struct put_target *t, struct put_chunk *c)
{
    if (t->q_len == t->q_cap) {
        size_t cap = t->q_cap ? t->q_cap * 2 : 8;
        struct put_chunk **q = malloc(cap * sizeof *q);
        if (!q)
            return ID_ENOMEM;
        for (size_t i = 0; i < t->q_len; i++)
            q[i] = t->queue[(t->q_head + i) % t->q_cap];
        free(t->queue);
        t->queue = q;
        t->q_head = 0;
        t->q_cap = cap;
    }
    t->queue[(t->q_head + t->q_len) % t->q_cap] = c;
    t->q_len++;
    c->refs++;
    return 0;
}

struct put_open {
    struct sdfs *s;
    struct net_request *req;
    char name[SDFS_NAME_MAX + 1];
    uint64_t size;
};

static void on_placed(void *ud, const struct net_result *res)
{
    struct put_open *po = ud;
    struct sdfs *s = po->s;
    Idunno__SdfsPlacement *pl =
        res->status == 0 ? idunno__sdfs_placement__unpack(NULL, res->len, res->body) : NULL;
    if (!pl || pl->n_replicas == 0 || pl->n_replicas != pl->n_addrs) {
        int code = res->status < 0 ? res->status : ID_EPROTO;
        net_reply_errorf(po->req, code, "cannot place %s: %s", po->name,
                         res->errmsg ? res->errmsg : id_strerror(code));
        if (pl)
            idunno__sdfs_placement__free_unpacked(pl, NULL);
        free(po);
        return;
    }
    struct put_session *ps = calloc(1, sizeof *ps);
    if (!ps) {
        net_reply_error(po->req, ID_ENOMEM, NULL, NULL);
        idunno__sdfs_placement__free_unpacked(pl, NULL);
        free(po);
        return;
    }
    ps->s = s;
    ps->id = ++s->next_session;
    snprintf(ps->name, sizeof ps->name, "%s", po->name);
    random_blob(ps->blob);
    ps->size = po->size;
    ps->last_ms = id_now_ms();
    for (size_t i = 0; i < pl->n_replicas && i < SDFS_REPLICAS; i++) {
        struct put_target *t = &ps->targets[ps->n_targets++];
        t->ps = ps;
        snprintf(t->name, sizeof t->name, "%s", pl->replicas[i]);
        snprintf(t->addr, sizeof t->addr, "%s", pl->addrs[i]);
    }
    ps->next = s->puts;
    s->puts = ps;
    Idunno__SdfsSession out = IDUNNO__SDFS_SESSION__INIT;
    out.session = ps->id;
    out.blob = ps->blob;
    out.n_replicas = pl->n_replicas;
    out.replicas = pl->replicas;
    out.chunk_size = SDFS_CHUNK;
    net_reply_pb(po->req, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_OPEN_RESP, &out.base);
    LOG_INFO("sdfs", "put of %s (%llu bytes) as blob %s on %zu replicas", ps->name,
             (unsigned long long)ps->size, ps->blob, ps->n_targets);
    idunno__sdfs_placement__free_unpacked(pl, NULL);
    free(po);
}

static void on_put_open(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsPutOpen *m =
        ctl_req_unpack(req, &idunno__sdfs_put_open__descriptor, body, len, s->stopping);
    if (!m)
        return;
    if (!sdfs_name_ok(m->name)) {
        net_reply_errorf(req, ID_EINVAL,
                         "'%s' is not a valid SDFS name (1-%d printable characters, no spaces, no "
                         "leading '/', no '.' or '..' parts)",
                         m->name, SDFS_NAME_MAX);
        idunno__sdfs_put_open__free_unpacked(m, NULL);
        return;
    }
    struct put_open *po = calloc(1, sizeof *po);
    if (!po) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        idunno__sdfs_put_open__free_unpacked(m, NULL);
        return;
    }
    po->s = s;
    po->req = req;
    snprintf(po->name, sizeof po->name, "%s", m->name);
    po->size = m->size;
    Idunno__SdfsPlace p = IDUNNO__SDFS_PLACE__INIT;
    p.name = m->name;
    p.size = m->size;
    char *avoid[SDFS_FAILED_MEMORY];
    for (unsigned i = 0; i < SDFS_FAILED_MEMORY && m->retry_of; i++)
        if (s->failed[i].session == m->retry_of && s->failed[i].node[0])
            avoid[p.n_avoid++] = s->failed[i].node;
    p.avoid = avoid;
    p.near = s->name;
    int rc = call_leader(s, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_REQ, &p.base, on_placed, po);
    if (rc < 0) {
        net_reply_errorf(req, rc, "cannot reach the coordinator: %s", id_strerror(rc));
        free(po);
    }
    idunno__sdfs_put_open__free_unpacked(m, NULL);
}

static void on_put_data(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsChunk *m =
        ctl_req_unpack(req, &idunno__sdfs_chunk__descriptor, body, len, s->stopping);
    if (!m)
        return;
    struct put_session *ps = put_find(s, m->session);
    if (!ps) {
        net_reply_errorf(req, ID_ENOTFOUND, "no put session %llu on %s (expired?)",
                         (unsigned long long)m->session, s->name);
    } else if (ps->failed) {
        net_reply_error(req, ps->failed, ps->failed_msg, NULL);
    } else if (m->offset != ps->next_offset || m->data.len == 0 || m->data.len > SDFS_CHUNK ||
               m->offset + m->data.len > ps->size) {
        net_reply_errorf(req, ID_EINVAL, "chunk at %llu (+%zu) does not follow %llu of %llu bytes",
                         (unsigned long long)m->offset, m->data.len,
                         (unsigned long long)ps->next_offset, (unsigned long long)ps->size);
    } else {
        /* The chunk is packed once, as the replicas' BLOB_WRITE body, and the
         * same bytes go to every replica. */
        Idunno__SdfsChunk w = IDUNNO__SDFS_CHUNK__INIT;
        w.blob = ps->blob;
        w.offset = m->offset;
        w.data = m->data;
        size_t packed = idunno__sdfs_chunk__get_packed_size(&w);
        struct put_chunk *c = calloc(1, sizeof *c);
        uint8_t *data = malloc(packed);
        if (!c || !data) {
            free(c);
            free(data);
            net_reply_error(req, ID_ENOMEM, NULL, NULL);
        } else {
            c->offset = m->offset;
            c->data = data;
            c->len = idunno__sdfs_chunk__pack(&w, data);
            c->size = m->data.len;
            c->req = req;
            c->refs = 1;
            ps->next_offset += c->size;
            ps->last_ms = id_now_ms();
            int rc = 0;
            for (size_t i = 0; i < ps->n_targets && rc == 0; i++)
                rc = target_push(&ps->targets[i], c);
            if (rc < 0)
                put_fail(ps, rc, NULL, "out of memory");
            for (size_t i = 0; i < ps->n_targets; i++)
                target_send_next(&ps->targets[i]);
            chunk_unref(c);
        }
    }
    idunno__sdfs_chunk__free_unpacked(m, NULL);
}

struct commit_call {
    struct sdfs *s;
    uint64_t session;
};

static void on_put_committed(void *ud, const struct net_result *res)
{
    struct commit_call *cc = ud;
    struct put_session *ps = put_find(cc->s, cc->session);
    free(cc);
    if (!ps)
        return;
    if (!ps->close_req) {
        put_free(ps);
        return;
    }
    if (res->status < 0) {
        /* The copies are durable but the version is not visible: the client
         * retries the whole put (the commit is idempotent by blob, so a commit
         * that did go through is not doubled: the retry uses a new blob and makes
         * a newer version, never a partial one). */
        net_reply_error(ps->close_req, res->status == ID_ENOLEADER ? ID_ENOLEADER : res->status,
                        res->errmsg ? res->errmsg : id_strerror(res->status), NULL);
    } else {
        net_reply(ps->close_req, IDUNNO__MSG_TYPE__MSG_SDFS_PUT_CLOSE_RESP, res->body, res->len);
        ps->s->stats.puts++;
    }
    ps->close_req = NULL;
    put_free(ps);
}

static void put_commit(struct put_session *ps)
{
    Idunno__SdfsVersion v = IDUNNO__SDFS_VERSION__INIT;
    char *names[SDFS_REPLICAS];
    v.name = ps->name;
    v.blob = ps->blob;
    v.size = ps->size;
    v.sha256.data = ps->sha;
    v.sha256.len = 32;
    uint8_t crc[4];
    if (ps->crc_state == 1) {
        sdfs_crc_encode(crc, ps->crc32c);
        v.crc32c.data = crc;
        v.crc32c.len = 4;
    }
    for (size_t i = 0; i < ps->n_targets; i++)
        names[i] = ps->targets[i].name;
    v.n_replicas = ps->n_targets;
    v.replicas = names;
    struct commit_call *cc = malloc(sizeof *cc);
    int rc = cc ? 0 : ID_ENOMEM;
    if (cc) {
        *cc = (struct commit_call){ps->s, ps->id};
        rc = call_leader(ps->s, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_REQ, &v.base, on_put_committed, cc);
    }
    if (rc < 0) {
        free(cc);
        net_reply_error(ps->close_req, rc, "cannot reach the coordinator", NULL);
        ps->close_req = NULL;
        put_free(ps);
    }
}

static void on_target_sealed(void *ud, const struct net_result *res)
{
    struct target_call *tc = ud;
    struct sdfs *s = tc->t->ps->s;
    struct put_session *ps = put_find(s, tc->session);
    struct put_target *t = tc->t;
    free(tc);
    if (!ps || ps->failed)
        return;
    if (res->status < 0) {
        put_fail(ps, res->status == ID_ECRC ? ID_ECRC : ID_EUNAVAIL, t->name,
                 "replica %s could not seal the copy: %s", t->name,
                 res->errmsg ? res->errmsg : id_strerror(res->status));
        return;
    }
    t->sealed = 1;
    /* An answer without a CRC (a replica that had sealed it already) leaves
     * the version without one: gets then check the SHA-256 instead. */
    Idunno__SdfsChunk *a = idunno__sdfs_chunk__unpack(NULL, res->len, res->body);
    if (a && a->crc32c.len == 4 && ps->crc_state >= 0) {
        uint32_t crc = sdfs_crc_decode(a->crc32c.data);
        ps->crc_state = ps->crc_state == 0 || crc == ps->crc32c ? 1 : -1;
        ps->crc32c = crc;
    } else {
        ps->crc_state = -1;
    }
    if (a)
        idunno__sdfs_chunk__free_unpacked(a, NULL);
    if (--ps->seals_pending == 0)
        put_commit(ps);
}

static void on_put_close(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsChunk *m =
        ctl_req_unpack(req, &idunno__sdfs_chunk__descriptor, body, len, s->stopping);
    if (!m)
        return;
    struct put_session *ps = put_find(s, m->session);
    if (!ps) {
        net_reply_errorf(req, ID_ENOTFOUND, "no put session %llu on %s (expired?)",
                         (unsigned long long)m->session, s->name);
    } else if (ps->failed) {
        net_reply_error(req, ps->failed, ps->failed_msg, NULL);
    } else if (ps->close_req || m->sha256.len != 32 || ps->next_offset != ps->size) {
        net_reply_errorf(req, ID_EINVAL, "close after %llu of %llu bytes",
                         (unsigned long long)ps->next_offset, (unsigned long long)ps->size);
    } else {
        ps->close_req = req;
        memcpy(ps->sha, m->sha256.data, 32);
        ps->seals_pending = (unsigned)ps->n_targets;
        /* Seals queue behind each replica's last write (one connection, in order). */
        for (size_t i = 0; i < ps->n_targets && !ps->failed; i++) {
            struct target_call *tc = malloc(sizeof *tc);
            if (!tc) {
                put_fail(ps, ID_ENOMEM, NULL, "out of memory");
                break;
            }
            *tc = (struct target_call){&ps->targets[i], NULL, ps->id};
            Idunno__SdfsChunk seal = IDUNNO__SDFS_CHUNK__INIT;
            seal.blob = ps->blob;
            seal.size = ps->size;
            seal.sha256.data = ps->sha;
            seal.sha256.len = 32;
            int rc = net_call_pb(s->net, ps->targets[i].addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_REQ,
                                 &seal.base, SDFS_FETCH_MS, on_target_sealed, tc);
            if (rc < 0) {
                free(tc);
                put_fail(ps, ID_EUNAVAIL, ps->targets[i].name, "cannot reach replica %s",
                         ps->targets[i].name);
            }
        }
    }
    idunno__sdfs_chunk__free_unpacked(m, NULL);
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
        const char *addr = addr_of(alive, n_alive, name);
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
    Idunno__SdfsRead *m =
        ctl_req_unpack(req, &idunno__sdfs_read__descriptor, body, len, s->stopping);
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

/* ==== coordinator ============================================================================ */

/* Each request below is a ctl_op of the leader-service layer
 * (ctl/service.h): it decodes the request, hands it on if leadership moves,
 * and answers failed proposals. */

static void lead_place(struct ctl_op *op)
{
    struct sdfs *s = op->ud;
    const Idunno__SdfsPlace *m = op->msg;
    struct net_request *req = op->req;
    struct member_view alive[SDFS_MAX_ALIVE];
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    struct sdfs_node nodes[SDFS_MAX_ALIVE];
    for (size_t i = 0; i < n_alive; i++)
        nodes[i] = (struct sdfs_node){.name = alive[i].name};
    size_t chosen[SDFS_REPLICAS];
    size_t n = catalog_place(s->catalog, m->name, nodes, n_alive, (const char *const *)m->avoid,
                             m->n_avoid, SDFS_REPLICAS, chosen);
    if (n == 0) {
        net_reply_errorf(req, ID_EUNAVAIL, "no live node can take a replica of %s", m->name);
    } else {
        char *names[SDFS_REPLICAS], *addrs[SDFS_REPLICAS];
        for (size_t i = 0; i < n; i++) {
            names[i] = alive[chosen[i]].name;
            addrs[i] = alive[chosen[i]].addr;
        }
        Idunno__SdfsPlacement out = IDUNNO__SDFS_PLACEMENT__INIT;
        out.n_replicas = out.n_addrs = n;
        out.replicas = names;
        out.addrs = addrs;
        net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_RESP, &out.base);
    }
}

static void lead_commit_done(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    Idunno__SdfsVersion *v = idunno__sdfs_version__unpack(NULL, len, result);
    if (v) {
        /* The versions it pushed out (v->dropped) are not deleted here: a
         * reader may be in the middle of one. The replicas' store reports
         * delete them after the grace period (reconcile.h). */
        LOG_INFO("sdfs", "committed %s version %llu (blob %s, %llu bytes)", v->name,
                 (unsigned long long)v->version, v->blob, (unsigned long long)v->size);
        idunno__sdfs_version__free_unpacked(v, NULL);
    }
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_RESP, result, len);
}

/* The body goes into the log as it came: the state machine validates it. */
static void lead_commit(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT, op->body, op->len);
}

/* Registered with CTL_OP_NOTFOUND_TO_DONE: a missing file is named. */
static void lead_delete_done(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    if (status == ID_ENOTFOUND) {
        Idunno__SdfsLookup *m = idunno__sdfs_lookup__unpack(NULL, op->len, op->body);
        net_reply_errorf(op->req, ID_ENOTFOUND, "no SDFS file named '%s'", m ? m->name : "?");
        if (m)
            idunno__sdfs_lookup__free_unpacked(m, NULL);
        return;
    }
    /* The copies stay until the replicas' store reports delete them after
     * the grace period (reconcile.h): a read in flight finishes first. */
    Idunno__SdfsFile *f = idunno__sdfs_file__unpack(NULL, len, result);
    if (f) {
        LOG_INFO("sdfs", "deleted %s (%zu versions)", f->name, f->n_versions);
        idunno__sdfs_file__free_unpacked(f, NULL);
    }
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_DELETE_RESP, result, len);
}

static void lead_delete(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_DELETE, op->body, op->len);
}

/* Fills a version message with replica addresses of live nodes. */
static void version_msg(const struct sdfs_file *f, const struct sdfs_version *v,
                        const struct member_view *alive, size_t n_alive, Idunno__SdfsVersion *m,
                        char **names, char **addrs)
{
    catalog_version_to_pb(f->name, v, m, names);
    for (size_t r = 0; r < v->n_replicas; r++) {
        const char *a = addr_of(alive, n_alive, v->replicas[r]);
        addrs[r] = (char *)(a ? a : "");
    }
    m->n_replica_addrs = v->n_replicas;
    m->replica_addrs = addrs;
}

static void lead_lookup_read(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    struct sdfs *s = op->ud;
    const Idunno__SdfsLookup *m = op->msg;
    const struct sdfs_file *f = catalog_find(s->catalog, m->name);
    if (!f) {
        net_reply_errorf(op->req, ID_ENOTFOUND, "no SDFS file named '%s'", m->name);
    } else {
        struct member_view alive[SDFS_MAX_ALIVE];
        size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
        Idunno__SdfsVersion rows[SDFS_KEEP_VERSIONS], *rp[SDFS_KEEP_VERSIONS];
        char *names[SDFS_KEEP_VERSIONS][SDFS_REPLICAS], *addrs[SDFS_KEEP_VERSIONS][SDFS_REPLICAS];
        size_t n = 0;
        for (size_t i = 0; i < f->n_versions; i++) {
            if (m->version && f->versions[i].version != m->version)
                continue;
            version_msg(f, &f->versions[i], alive, n_alive, &rows[n], names[n], addrs[n]);
            rp[n] = &rows[n];
            n++;
        }
        if (n == 0) {
            net_reply_errorf(op->req, ID_ENOTFOUND, "%s has no version %llu (kept: %llu..%llu)",
                             m->name, (unsigned long long)m->version,
                             (unsigned long long)f->versions[0].version,
                             (unsigned long long)f->versions[f->n_versions - 1].version);
        } else {
            Idunno__SdfsFile out = IDUNNO__SDFS_FILE__INIT;
            out.name = f->name;
            out.n_versions = n;
            out.versions = rp;
            net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_LOOKUP_RESP, &out.base);
        }
    }
}

static int version_on(const struct sdfs_version *v, const char *node)
{
    for (size_t r = 0; r < v->n_replicas; r++)
        if (strcmp(v->replicas[r], node) == 0)
            return 1;
    return 0;
}

static void lead_list_read(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    const Idunno__SdfsList *m = op->msg;
    const struct catalog *c = ((struct sdfs *)op->ud)->catalog;
    size_t total = catalog_count(c), plen = strlen(m->prefix);
    Idunno__SdfsFileSummary *rows = calloc(total ? total : 1, sizeof *rows);
    Idunno__SdfsFileSummary **rp = calloc(total ? total : 1, sizeof *rp);
    char **names = calloc(total ? total * SDFS_REPLICAS : 1, sizeof *names);
    if (!rows || !rp || !names) {
        net_reply_error(op->req, ID_ENOMEM, NULL, NULL);
    } else {
        size_t n = 0;
        uint64_t bytes = 0;
        for (size_t i = catalog_lower_bound(c, m->prefix); i < total; i++) {
            const struct sdfs_file *f = catalog_at(c, i);
            if (strncmp(f->name, m->prefix, plen) != 0)
                break;
            const struct sdfs_version *v = &f->versions[f->n_versions - 1];
            if (m->node[0]) {
                int on = 0;
                for (size_t k = 0; k < f->n_versions && !on; k++)
                    on = version_on(&f->versions[k], m->node);
                if (!on)
                    continue;
            }
            idunno__sdfs_file_summary__init(&rows[n]);
            rows[n].name = f->name;
            rows[n].version = v->version;
            rows[n].size = v->size;
            rows[n].versions = (uint32_t)f->n_versions;
            rows[n].time_ms = v->time_ms;
            for (size_t r = 0; r < v->n_replicas; r++)
                names[n * SDFS_REPLICAS + r] = (char *)v->replicas[r];
            rows[n].n_replicas = v->n_replicas;
            rows[n].replicas = &names[n * SDFS_REPLICAS];
            rp[n] = &rows[n];
            bytes += v->size;
            n++;
        }
        Idunno__SdfsListing out = IDUNNO__SDFS_LISTING__INIT;
        out.n_files = n;
        out.files = rp;
        out.total_bytes = bytes;
        net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_LIST_RESP, &out.base);
    }
    free(rows);
    free(rp);
    free(names);
}

/* `store` names the node it is sent to: that node fills itself in and sends the
 * request on towards the leader. */
static void on_list(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsList *m = ctl_req_unpack(req, &idunno__sdfs_list__descriptor, body, len, 0);
    if (!m)
        return;
    if (m->here) {
        m->here = 0;
        m->node = s->name;
        size_t n = idunno__sdfs_list__get_packed_size(m);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf) {
            n = idunno__sdfs_list__pack(m, buf);
            ctl_svc_forward(s->svc, req, IDUNNO__MSG_TYPE__MSG_SDFS_LIST_REQ, buf, n);
        } else {
            net_reply_error(req, ID_ENOMEM, NULL, NULL);
        }
        free(buf);
        m->node = NULL; /* not ours to free */
        idunno__sdfs_list__free_unpacked(m, NULL);
        return;
    }
    idunno__sdfs_list__free_unpacked(m, NULL);
    ctl_svc_forward(s->svc, req, IDUNNO__MSG_TYPE__MSG_SDFS_LIST_REQ, body, len);
}

/* -- replica changes (repairs, bad copies, missing copies) -- */

static int propose_replica_change(struct sdfs *s, const char *name, const char *blob,
                                  const char *remove, const char *add, ctl_propose_cb cb, void *ud)
{
    Idunno__SdfsReplicaChange ch = IDUNNO__SDFS_REPLICA_CHANGE__INIT;
    ch.name = (char *)name;
    ch.blob = (char *)blob;
    ch.remove = (char *)remove;
    ch.add = (char *)add;
    uint8_t buf[1024];
    if (idunno__sdfs_replica_change__get_packed_size(&ch) > sizeof buf)
        return ID_ETOOBIG;
    size_t n = idunno__sdfs_replica_change__pack(&ch, buf);
    return ctl_propose(s->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_REPLICA, buf, n, cb, ud);
}

/* Has the replica `node` check its copy of v against the catalog's checksum:
 * a BLOB_FETCH naming the other live replicas as sources. A good copy stays;
 * a bad one is moved aside and copied again from the others. Nothing is
 * deleted on anyone's word, and the replica set does not change. */
static void verify_copy(struct sdfs *s, const struct sdfs_version *v, const char *node)
{
    struct member_view alive[SDFS_MAX_ALIVE];
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    const char *addr = addr_of(alive, n_alive, node);
    if (!addr)
        return; /* not reachable now: its reports and the repair loop take over */
    char *sources[SDFS_REPLICAS];
    size_t n_src = 0;
    for (size_t r = 0; r < v->n_replicas; r++) {
        const char *a = strcmp(v->replicas[r], node) ? addr_of(alive, n_alive, v->replicas[r]) : NULL;
        if (a)
            sources[n_src++] = (char *)a;
    }
    Idunno__SdfsFetch f = IDUNNO__SDFS_FETCH__INIT;
    f.blob = (char *)v->blob;
    f.size = v->size;
    f.sha256.data = (uint8_t *)v->sha256;
    f.sha256.len = 32;
    f.n_sources = n_src;
    f.sources = sources;
    net_call_pb(s->net, addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_FETCH_REQ, &f.base, SDFS_FETCH_MS,
                NULL, NULL);
}

/* A reader says a replica's copy is bad. It may be wrong or hostile, so the
 * claim only makes that replica verify its copy. */
static void lead_bad(struct ctl_op *op)
{
    struct sdfs *s = op->ud;
    const Idunno__SdfsBad *m = op->msg;
    s->stats.bad_copies_reported++;
    const struct sdfs_version *v = catalog_find_blob(s->catalog, m->name, m->blob);
    if (v && version_on(v, m->node)) {
        LOG_WARN("sdfs", "copy of %s (blob %s) on %s reported bad (%s): %s verifies it", m->name,
                 m->blob, m->node, m->reason, m->node);
        verify_copy(s, v, m->node);
    }
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_BAD_RESP, NULL, 0);
}

static void on_missing_dropped(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)ud;
    (void)status;
    (void)result;
    (void)len;
}

/* A replica's report: the reconciliation core (reconcile.h) says what it may
 * delete and which of its listed copies are missing (dropped from their sets,
 * so the repair loop replaces them). */
static void lead_report(struct ctl_op *op)
{
    struct sdfs *s = op->ud;
    const Idunno__SdfsStoreReport *m = op->msg;
    struct net_request *req = op->req;
    struct reconcile_report rep = {m->node,   m->boot,   m->seq,   m->answered_seq, m->held,
                                   m->blobs, m->n_blobs, m->young, m->n_young};
    struct reconcile_actions a;
    int rc = reconcile_report(s->reconcile, s->catalog, &rep, id_now_ms(), &a);
    if (rc < 0) {
        net_reply_error(req, rc, id_strerror(rc), NULL);
        return;
    }
    if (a.ignored)
        LOG_INFO("sdfs", "report %llu of %s ignored: incomplete or stale",
                 (unsigned long long)m->seq, m->node);
    for (size_t i = 0; i < a.n_missing; i++) {
        const struct sdfs_version *v = a.missing[i].version;
        LOG_WARN("sdfs", "%s lacks its copy of %s version %llu (blob %s) on two reports: "
                 "replacing it", m->node, a.missing[i].file->name,
                 (unsigned long long)v->version, v->blob);
        propose_replica_change(s, a.missing[i].file->name, v->blob, m->node, "",
                               on_missing_dropped, NULL);
    }
    Idunno__SdfsBlobList out = IDUNNO__SDFS_BLOB_LIST__INIT;
    out.n_blobs = a.n_del;
    out.blobs = a.del;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_SDFS_REPORT_RESP, &out.base);
    reconcile_actions_free(&a);
}

/* -- the repair loop -- */

static int repair_running(void *ud, const char *blob)
{
    struct sdfs *s = ud;
    for (struct repair_job *j = s->repairs; j; j = j->next)
        if (strcmp(j->blob, blob) == 0)
            return 1;
    return 0;
}

static void repair_end(struct repair_job *j)
{
    struct sdfs *s = j->s;
    for (struct repair_job **pp = &s->repairs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            s->n_repairs--;
            break;
        }
    free(j);
}

static void on_repair_committed(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)result;
    (void)len;
    struct repair_job *j = ud;
    if (status == 0) {
        j->s->stats.repairs_done++;
        LOG_INFO("sdfs", "repaired %s (blob %s): copy on %s replaces %s in %llu ms", j->name,
                 j->blob, j->target, j->dead[0] ? j->dead : "(none)",
                 (unsigned long long)(id_now_ms() - j->started_ms));
    } else {
        j->s->stats.repairs_failed++;
    }
    repair_end(j);
}

static void on_repair_fetched(void *ud, const struct net_result *res)
{
    struct repair_job *j = ud;
    struct sdfs *s = j->s;
    if (s->stopping) {
        repair_end(j);
        return;
    }
    if (res->status < 0) {
        LOG_WARN("sdfs", "repair of %s (blob %s) on %s failed: %s", j->name, j->blob, j->target,
                 res->errmsg ? res->errmsg : id_strerror(res->status));
        s->stats.repairs_failed++;
        repair_end(j);
        return;
    }
    if (propose_replica_change(s, j->name, j->blob, j->dead, j->target, on_repair_committed, j) < 0)
        repair_end(j);
}

static void repair_tick(struct sdfs *s)
{
    if (!ctl_is_serving(s->ctl) || s->n_repairs >= SDFS_MAX_REPAIRS)
        return;
    /* Suspected members still hold their copies (reconcile.h): only failed
     * and departed ones are repaired away from. Sources and targets are
     * alive. */
    struct member_view members[SDFS_MAX_ALIVE], alive[SDFS_MAX_ALIVE];
    size_t n_members = member_snapshot(s->member, members, SDFS_MAX_ALIVE);
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    struct sdfs_node nodes[SDFS_MAX_ALIVE];
    size_t n_nodes = reconcile_repair_nodes(
        members, n_members < SDFS_MAX_ALIVE ? n_members : SDFS_MAX_ALIVE, nodes, SDFS_MAX_ALIVE);
    struct sdfs_repair plan[SDFS_MAX_REPAIRS];
    size_t n = catalog_plan_repairs(s->catalog, nodes, n_nodes, repair_running, s, plan,
                                    SDFS_MAX_REPAIRS - s->n_repairs);
    for (size_t i = 0; i < n; i++) {
        const struct sdfs_version *v = plan[i].version;
        struct repair_job *j = calloc(1, sizeof *j);
        if (!j)
            return;
        j->s = s;
        snprintf(j->name, sizeof j->name, "%s", plan[i].file->name);
        snprintf(j->blob, sizeof j->blob, "%s", v->blob);
        snprintf(j->dead, sizeof j->dead, "%s", plan[i].dead);
        snprintf(j->target, sizeof j->target, "%s", plan[i].target);
        j->started_ms = id_now_ms();
        char *sources[SDFS_REPLICAS];
        size_t n_src = 0;
        for (size_t r = 0; r < v->n_replicas; r++) {
            const char *a = addr_of(alive, n_alive, v->replicas[r]);
            if (a)
                sources[n_src++] = (char *)a;
        }
        Idunno__SdfsFetch f = IDUNNO__SDFS_FETCH__INIT;
        f.blob = j->blob;
        f.size = v->size;
        f.sha256.data = (uint8_t *)v->sha256;
        f.sha256.len = 32;
        f.n_sources = n_src;
        f.sources = sources;
        const char *taddr = addr_of(alive, n_alive, j->target);
        j->next = s->repairs;
        s->repairs = j;
        s->n_repairs++;
        if (!taddr || net_call_pb(s->net, taddr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_FETCH_REQ, &f.base,
                                  SDFS_FETCH_MS, on_repair_fetched, j) < 0)
            repair_end(j);
        else
            LOG_INFO("sdfs", "repairing %s version %llu (blob %s): %s copies it%s%s", j->name,
                     (unsigned long long)v->version, j->blob, j->target,
                     j->dead[0] ? " in place of " : "", j->dead);
    }
}

/* -- the store report (every node) -- */

static void on_report_answer(void *ud, const struct net_result *res)
{
    struct sdfs *s = ud;
    s->report_busy = 0;
    if (s->stopping || res->status < 0)
        return;
    s->report_answered = s->report_seq; /* the next report is built after this answer */
    Idunno__SdfsBlobList *m = idunno__sdfs_blob_list__unpack(NULL, res->len, res->body);
    if (!m)
        return;
    for (size_t i = 0; i < m->n_blobs; i++) {
        /* Re-check the age: it may have been sealed again meanwhile. */
        if (store_age_ms(s->store, m->blobs[i]) < SDFS_YOUNG_MS)
            continue;
        LOG_INFO("sdfs", "deleting stale blob %s (no kept version lists it here)", m->blobs[i]);
        store_delete(s->store, m->blobs[i]);
    }
    idunno__sdfs_blob_list__free_unpacked(m, NULL);
}

static void report_send(struct sdfs *s)
{
    size_t n = store_count(s->store);
    char(*ids)[SDFS_BLOB_LEN + 1] = malloc((n ? n : 1) * sizeof *ids);
    char **old = calloc(n ? n : 1, sizeof *old), **young = calloc(n ? n : 1, sizeof *young);
    if (ids && old && young) {
        n = store_list(s->store, ids, n);
        Idunno__SdfsStoreReport r = IDUNNO__SDFS_STORE_REPORT__INIT;
        r.node = s->name;
        r.time_ms = id_wall_ms();
        r.seq = ++s->report_seq;
        r.answered_seq = s->report_answered;
        r.held = n;
        r.boot = s->boot;
        r.blobs = old;
        r.young = young;
        for (size_t i = 0; i < n; i++) {
            if (store_age_ms(s->store, ids[i]) < SDFS_YOUNG_MS)
                young[r.n_young++] = ids[i];
            else
                old[r.n_blobs++] = ids[i];
        }
        if (call_leader(s, IDUNNO__MSG_TYPE__MSG_SDFS_REPORT_REQ, &r.base, on_report_answer, s) == 0)
            s->report_busy = 1;
    }
    free(ids);
    free(old);
    free(young);
}

static void on_tick(uv_timer_t *t)
{
    struct sdfs *s = t->data;
    if (s->stopping)
        return;
    repair_tick(s);
    uint64_t now = id_now_ms();
    if (!s->report_busy && now >= s->next_report_ms) {
        s->next_report_ms = now + SDFS_REPORT_MS;
        report_send(s);
    }
    /* Put sessions whose client went quiet are abandoned. */
    for (struct put_session *p = s->puts, *next; p; p = next) {
        next = p->next;
        if (!p->close_req && now - p->last_ms > STORE_TMP_IDLE_MS) {
            LOG_INFO("sdfs", "abandoning put of %s: client idle", p->name);
            put_fail(p, ID_ETIMEDOUT, NULL, "put idle for too long");
            put_free(p);
        }
    }
}

/* ==== life cycle ============================================================================= */

#define SDFS_OP(t, d, start, done, flags) \
    {IDUNNO__MSG_TYPE__MSG_SDFS_##t##_REQ, d, start, done, NULL, flags, NULL}

static const struct ctl_svc_op sdfs_ops[] = {
    SDFS_OP(PLACE, &idunno__sdfs_place__descriptor, lead_place, NULL, 0),
    SDFS_OP(COMMIT, NULL, lead_commit, lead_commit_done, 0),
    SDFS_OP(LOOKUP, &idunno__sdfs_lookup__descriptor, ctl_op_read, lead_lookup_read, 0),
    SDFS_OP(DELETE, NULL, lead_delete, lead_delete_done, CTL_OP_NOTFOUND_TO_DONE),
    SDFS_OP(REPORT, &idunno__sdfs_store_report__descriptor, lead_report, NULL, 0),
    SDFS_OP(BAD, &idunno__sdfs_bad__descriptor, lead_bad, NULL, 0),
    /* on_list fills the request in and forwards it itself. */
    SDFS_OP(LIST, &idunno__sdfs_list__descriptor, ctl_op_read, lead_list_read, CTL_OP_NO_NET),
};

int sdfs_create(const struct sdfs_config *cfg, struct sdfs **out, char *errmsg, size_t len)
{
    struct sdfs *s = calloc(1, sizeof *s);
    if (!s)
        return ID_ENOMEM;
    s->loop = cfg->loop;
    s->net = cfg->net;
    s->ctl = cfg->ctl;
    s->member = cfg->member;
    s->catalog = cfg->catalog;
    snprintf(s->name, sizeof s->name, "%s", cfg->name);
    snprintf(s->addr, sizeof s->addr, "%s", cfg->addr);
    s->boot = id_wall_ms();
    s->reconcile = reconcile_create(cfg->delete_grace_ms ? cfg->delete_grace_ms
                                                         : RECONCILE_DELETE_GRACE_MS);
    if (!s->reconcile) {
        free(s);
        return ID_ENOMEM;
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sdfs", cfg->data_dir);
    int rc = store_open(cfg->loop, dir, &s->store, errmsg, len);
    if (rc == 0 && !(s->fetcher = fetcher_create(s->net, s->store))) {
        store_close(s->store);
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
        {IDUNNO__MSG_TYPE__MSG_SDFS_PUT_OPEN_REQ, on_put_open},
        {IDUNNO__MSG_TYPE__MSG_SDFS_PUT_DATA_REQ, on_put_data},
        {IDUNNO__MSG_TYPE__MSG_SDFS_PUT_CLOSE_REQ, on_put_close},
        {IDUNNO__MSG_TYPE__MSG_SDFS_GET_REQ, on_get},
        {IDUNNO__MSG_TYPE__MSG_SDFS_LIST_REQ, on_list},
    };
    for (size_t i = 0; rc == 0 && i < sizeof local / sizeof local[0]; i++)
        rc = net_on_request(n, local[i].type, local[i].fn, s);
    if (rc == 0)
        rc = ctl_svc_create(cfg->fwd, s->ctl, s, &s->svc);
    if (rc == 0)
        rc = ctl_svc_register(s->svc, sdfs_ops, sizeof sdfs_ops / sizeof sdfs_ops[0]);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot register SDFS requests: %s", id_strerror(rc));
        ctl_svc_free(s->svc);
        fetcher_free(s->fetcher);
        store_close(s->store);
        reconcile_destroy(s->reconcile);
        free(s);
        return rc;
    }
    uv_timer_init(s->loop, &s->tick);
    s->tick_started = 1;
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
    if (s->free_pending)
        sdfs_release(s);
}

void sdfs_stop(struct sdfs *s)
{
    if (!s)
        return;
    s->stopping = 1;
    ctl_svc_stop(s->svc);
    while (s->puts) {
        struct put_session *p = s->puts;
        if (!p->failed)
            put_fail(p, ID_ESHUTDOWN, NULL, "node shutting down");
        put_free(p);
    }
    fetcher_stop(s->fetcher);
    store_close(s->store);
    s->store = NULL;
    /* Repairs in flight end when their calls fail at net_close. */
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
}

struct store *sdfs_store(struct sdfs *s) { return s->store; }

void sdfs_get_stats(struct sdfs *s, struct sdfs_stats *out)
{
    *out = s->stats;
    out->files_held = s->store ? store_count(s->store) : 0;
    out->bytes_held = s->store ? store_bytes(s->store) : 0;
}

static void sdfs_release(struct sdfs *s)
{
    while (s->repairs)
        repair_end(s->repairs);
    reconcile_destroy(s->reconcile);
    fetcher_free(s->fetcher);
    ctl_svc_free(s->svc);
    free(s);
}

void sdfs_free(struct sdfs *s)
{
    if (!s)
        return;
    /* The timer's close callback runs on a later loop turn, possibly after
     * the node's shutdown has reached here: it frees s then. */
    if (s->tick_started && !s->tick_closed) {
        s->free_pending = 1;
        if (!uv_is_closing((uv_handle_t *)&s->tick))
            uv_close((uv_handle_t *)&s->tick, on_tick_closed);
    } else
        sdfs_release(s);
}

/* ==== internal puts (the coordinator's result parts) ========================================== */

struct small_put {
    struct sdfs *s;
    char name[SDFS_NAME_MAX + 1];
    char blob[SDFS_BLOB_LEN + 1];
    uint8_t *data;
    size_t len;
    uint8_t sha[32];
    uint32_t crc32c;
    size_t n;
    char names[SDFS_REPLICAS][SDFS_NODE_MAX];
    char addrs[SDFS_REPLICAS][64];
    unsigned pending;
    int failed;
    sdfs_done_fn cb;
    void *ud;
};

static void small_put_end(struct small_put *p, int status)
{
    if (status < 0 && p->n) {
        Idunno__SdfsBlobList bl = IDUNNO__SDFS_BLOB_LIST__INIT;
        char *b = p->blob;
        bl.n_blobs = 1;
        bl.blobs = &b;
        for (size_t i = 0; i < p->n && !p->s->stopping; i++)
            net_call_pb(p->s->net, p->addrs[i], IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_DELETE_REQ, &bl.base,
                        SDFS_CALL_MS, NULL, NULL);
    }
    p->cb(p->ud, status);
    free(p->data);
    free(p);
}

static void on_small_committed(void *ud, const struct net_result *res)
{
    small_put_end(ud, res->status);
}

static void on_small_sealed(void *ud, const struct net_result *res)
{
    struct small_put *p = ud;
    if (res->status < 0)
        p->failed = p->failed ? p->failed : res->status;
    if (--p->pending)
        return;
    if (p->failed || p->s->stopping) {
        small_put_end(p, p->failed ? p->failed : ID_ESHUTDOWN);
        return;
    }
    Idunno__SdfsVersion v = IDUNNO__SDFS_VERSION__INIT;
    char *names[SDFS_REPLICAS];
    for (size_t i = 0; i < p->n; i++)
        names[i] = p->names[i];
    v.name = p->name;
    v.blob = p->blob;
    v.size = p->len;
    v.sha256.data = p->sha;
    v.sha256.len = 32;
    uint8_t crc[4];
    sdfs_crc_encode(crc, p->crc32c);
    v.crc32c.data = crc;
    v.crc32c.len = 4;
    v.n_replicas = p->n;
    v.replicas = names;
    int rc = call_leader(p->s, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_REQ, &v.base, on_small_committed, p);
    if (rc < 0)
        small_put_end(p, rc);
}

/* Each replica gets the whole (small) file as chunks in order, then a seal:
 * one connection per peer keeps them in order. */
static void on_small_written(void *ud, const struct net_result *res)
{
    struct small_put *p = ud;
    if (res->status < 0)
        p->failed = p->failed ? p->failed : res->status;
}

static void on_small_placed(void *ud, const struct net_result *res)
{
    struct small_put *p = ud;
    Idunno__SdfsPlacement *pl =
        res->status == 0 ? idunno__sdfs_placement__unpack(NULL, res->len, res->body) : NULL;
    if (!pl || pl->n_replicas == 0 || pl->n_replicas != pl->n_addrs || p->s->stopping) {
        if (pl)
            idunno__sdfs_placement__free_unpacked(pl, NULL);
        small_put_end(p, res->status < 0 ? res->status : ID_EUNAVAIL);
        return;
    }
    for (size_t i = 0; i < pl->n_replicas && i < SDFS_REPLICAS; i++) {
        snprintf(p->names[i], SDFS_NODE_MAX, "%s", pl->replicas[i]);
        snprintf(p->addrs[i], 64, "%s", pl->addrs[i]);
        p->n++;
    }
    idunno__sdfs_placement__free_unpacked(pl, NULL);
    p->pending = (unsigned)p->n;
    for (size_t i = 0; i < p->n; i++) {
        for (size_t off = 0; off < p->len; off += SDFS_CHUNK) {
            Idunno__SdfsChunk c = IDUNNO__SDFS_CHUNK__INIT;
            c.blob = p->blob;
            c.offset = off;
            c.data.data = p->data + off;
            c.data.len = p->len - off < SDFS_CHUNK ? p->len - off : SDFS_CHUNK;
            if (net_call_pb(p->s->net, p->addrs[i], IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ,
                            &c.base, SDFS_CALL_MS, on_small_written, p) < 0)
                p->failed = ID_EUNAVAIL;
        }
        Idunno__SdfsChunk seal = IDUNNO__SDFS_CHUNK__INIT;
        seal.blob = p->blob;
        seal.size = p->len;
        seal.sha256.data = p->sha;
        seal.sha256.len = 32;
        if (net_call_pb(p->s->net, p->addrs[i], IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_REQ, &seal.base,
                        SDFS_CALL_MS, on_small_sealed, p) < 0) {
            p->failed = ID_EUNAVAIL;
            p->pending--;
        }
    }
    if (p->pending == 0)
        small_put_end(p, p->failed ? p->failed : ID_EUNAVAIL);
}

int sdfs_put_bytes(struct sdfs *s, const char *name, const uint8_t *data, size_t len,
                   sdfs_done_fn cb, void *ud)
{
    if (s->stopping)
        return ID_ESHUTDOWN;
    if (!sdfs_name_ok(name))
        return ID_EINVAL;
    if (len > 4 * SDFS_CHUNK)
        return ID_ETOOBIG;
    struct small_put *p = calloc(1, sizeof *p);
    uint8_t *copy = malloc(len ? len : 1);
    if (!p || !copy) {
        free(p);
        free(copy);
        return ID_ENOMEM;
    }
    memcpy(copy, data, len);
    p->s = s;
    snprintf(p->name, sizeof p->name, "%s", name);
    random_blob(p->blob);
    p->data = copy;
    p->len = len;
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, copy, len);
    sha256_final(&h, p->sha);
    p->crc32c = crc32c_update(0, copy, len);
    p->cb = cb;
    p->ud = ud;
    Idunno__SdfsPlace pl = IDUNNO__SDFS_PLACE__INIT;
    pl.name = p->name;
    pl.size = len;
    int rc = call_leader(s, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_REQ, &pl.base, on_small_placed, p);
    if (rc < 0) {
        free(copy);
        free(p);
    }
    return rc;
}
