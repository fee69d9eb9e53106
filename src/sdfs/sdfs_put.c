/* sdfs_put.c — the gateway's put path (see sdfs.h): a client's put session
 * (open, chunks streamed to every replica, seal, commit) and the internal
 * small puts of sdfs_put_bytes (the coordinator's result files).
 *
 * Threading: loop thread only. */
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
#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "sdfs/catalog.h"
#include "sdfs/fetch.h"
#include "sdfs/reconcile.h"
#include "sdfs/sdfs_int.h"
#include "sdfs/store.h"

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
void sdfs_put_fail(struct put_session *ps, int code, const char *node, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sdfs_put_fail(struct put_session *ps, int code, const char *node, const char *fmt, ...)
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

void sdfs_put_free(struct put_session *ps)
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
        sdfs_put_fail(ps, res->status == ID_ENOSPC ? ID_ENOSPC : ID_EUNAVAIL, t->name,
                      "replica %s failed: %s", t->name,
                      res->errmsg ? res->errmsg : id_strerror(res->status));
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
        sdfs_put_fail(ps, ID_ENOMEM, NULL, "out of memory");
        chunk_unref(c);
        return 0;
    }
    *tc = (struct target_call){t, c, ps->id};
    t->sending++;
    int rc = net_call_tail(ps->s->net, t->addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, c->data,
                           c->len, c->tail, SDFS_CALL_MS, on_target_written, tc);
    if (rc < 0) {
        t->sending--;
        free(tc);
        chunk_unref(c);
        sdfs_put_fail(ps, ID_EUNAVAIL, t->name, "cannot send to replica %s: %s", t->name,
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
    Idunno__SdfsPlacement *pl = res->status == 0
                                    ? idunno__sdfs_placement__unpack(NULL, res->len, res->body)
                                    : NULL;
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
    sdfs_random_blob(ps->blob);
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

void sdfs_on_put_open(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsPutOpen *m = ctl_req_unpack(req, &idunno__sdfs_put_open__descriptor, body, len,
                                            s->stopping);
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
    int rc = sdfs_call_leader(s, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_REQ, &p.base, on_placed, po);
    if (rc < 0) {
        net_reply_errorf(req, rc, "cannot reach the coordinator: %s", id_strerror(rc));
        free(po);
    }
    idunno__sdfs_put_open__free_unpacked(m, NULL);
}

/* The session a PUT_DATA or PUT_CLOSE names, if it is still going: else req
 * is answered and NULL returned. */
static struct put_session *put_session_for(struct sdfs *s, struct net_request *req,
                                           const Idunno__SdfsChunk *m)
{
    struct put_session *ps = put_find(s, m->session);
    if (!ps) {
        net_reply_errorf(req, ID_ENOTFOUND, "no put session %llu on %s (expired?)",
                         (unsigned long long)m->session, s->name);
        return NULL;
    }
    if (ps->failed) {
        net_reply_error(req, ps->failed, ps->failed_msg, NULL);
        return NULL;
    }
    return ps;
}

void sdfs_on_put_data(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsChunk *m = ctl_req_unpack(req, &idunno__sdfs_chunk__descriptor, body, len,
                                          s->stopping);
    if (!m)
        return;
    const uint8_t *payload;
    size_t plain = 0;
    struct put_session *ps = NULL;
    if (sdfs_chunk_payload(s, req, m, body, len, &payload, &plain) < 0)
        net_reply_error(req, ID_EPROTO,
                        "a chunk's data must be a sealed payload on a cluster with a key", NULL);
    else
        ps = put_session_for(s, req, m);
    if (!ps) {
        /* answered */
    } else if (m->offset != ps->next_offset || plain == 0 || plain > SDFS_CHUNK ||
               m->offset + plain > ps->size) {
        net_reply_errorf(req, ID_EINVAL, "chunk at %llu (+%zu) does not follow %llu of %llu bytes",
                         (unsigned long long)m->offset, plain, (unsigned long long)ps->next_offset,
                         (unsigned long long)ps->size);
    } else {
        /* The chunk is packed once, as the replicas' BLOB_WRITE body, and the
         * same bytes go to every replica. With a key they are the payload the
         * client sealed, forwarded unopened: only the replicas open it. */
        Idunno__SdfsChunk w = IDUNNO__SDFS_CHUNK__INIT;
        w.blob = ps->blob;
        w.offset = m->offset;
        w.data.data = (uint8_t *)payload;
        w.data.len = m->data.len;
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
            /* protobuf-c packs fields in number order: data (4) comes last */
            c->tail = payload != m->data.data ? (uint32_t)m->data.len : 0;
            c->size = plain;
            c->req = req;
            c->refs = 1;
            ps->next_offset += c->size;
            ps->last_ms = id_now_ms();
            int rc = 0;
            for (size_t i = 0; i < ps->n_targets && rc == 0; i++)
                rc = target_push(&ps->targets[i], c);
            if (rc < 0)
                sdfs_put_fail(ps, rc, NULL, "out of memory");
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
        sdfs_put_free(ps);
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
    sdfs_put_free(ps);
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
        rc = sdfs_call_leader(ps->s, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_REQ, &v.base,
                              on_put_committed, cc);
    }
    if (rc < 0) {
        free(cc);
        net_reply_error(ps->close_req, rc, "cannot reach the coordinator", NULL);
        ps->close_req = NULL;
        sdfs_put_free(ps);
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
        sdfs_put_fail(ps, res->status == ID_ECRC ? ID_ECRC : ID_EUNAVAIL, t->name,
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

void sdfs_on_put_close(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsChunk *m = ctl_req_unpack(req, &idunno__sdfs_chunk__descriptor, body, len,
                                          s->stopping);
    if (!m)
        return;
    struct put_session *ps = put_session_for(s, req, m);
    if (!ps) {
        /* answered */
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
                sdfs_put_fail(ps, ID_ENOMEM, NULL, "out of memory");
                break;
            }
            *tc = (struct target_call){&ps->targets[i], NULL, ps->id};
            Idunno__SdfsChunk seal = IDUNNO__SDFS_CHUNK__INIT;
            seal.blob = ps->blob;
            seal.size = ps->size;
            seal.sha256.data = ps->sha;
            seal.sha256.len = 32;
            int rc = net_call_pb(s->net, ps->targets[i].addr,
                                 IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_REQ, &seal.base,
                                 SDFS_FETCH_MS, on_target_sealed, tc);
            if (rc < 0) {
                free(tc);
                sdfs_put_fail(ps, ID_EUNAVAIL, ps->targets[i].name, "cannot reach replica %s",
                              ps->targets[i].name);
            }
        }
    }
    idunno__sdfs_chunk__free_unpacked(m, NULL);
}

/* Put sessions whose client went quiet are abandoned. */
void sdfs_puts_expire(struct sdfs *s, uint64_t now)
{
    for (struct put_session *p = s->puts, *next; p; p = next) {
        next = p->next;
        if (!p->close_req && now - p->last_ms > STORE_TMP_IDLE_MS) {
            LOG_INFO("sdfs", "abandoning put of %s: client idle", p->name);
            sdfs_put_fail(p, ID_ETIMEDOUT, NULL, "put idle for too long");
            sdfs_put_free(p);
        }
    }
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
            net_call_pb(p->s->net, p->addrs[i], IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_DELETE_REQ,
                        &bl.base, SDFS_CALL_MS, NULL, NULL);
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
    int rc = sdfs_call_leader(p->s, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_REQ, &v.base,
                              on_small_committed, p);
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

/* One BLOB_WRITE of a chunk this node writes itself; with a key its data is
 * sealed as a payload here, as a client seals its chunks. */
static int small_write_call(struct small_put *p, const char *addr, uint64_t off, size_t n)
{
    const struct seal_keyring *kr = net_keys(p->s->net);
    Idunno__SdfsChunk c = IDUNNO__SDFS_CHUNK__INIT;
    c.blob = p->blob;
    c.offset = off;
    c.data.data = p->data + off;
    c.data.len = n;
    if (!kr)
        return net_call_pb(p->s->net, addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, &c.base,
                           SDFS_CALL_MS, on_small_written, p);
    uint8_t *sealed = malloc(n + SEAL_PAYLOAD_OVERHEAD);
    if (!sealed)
        return ID_ENOMEM;
    memcpy(sealed + SEAL_PAYLOAD_HEAD, p->data + off, n);
    seal_payload(kr, off, sealed, n);
    c.data.data = sealed;
    c.data.len = n + SEAL_PAYLOAD_OVERHEAD;
    size_t len = idunno__sdfs_chunk__get_packed_size(&c);
    uint8_t *body = malloc(len);
    int rc = ID_ENOMEM;
    if (body) {
        idunno__sdfs_chunk__pack(&c, body); /* data (field 4) packed last: the tail */
        rc = net_call_tail(p->s->net, addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, body, len,
                           (uint32_t)c.data.len, SDFS_CALL_MS, on_small_written, p);
    }
    free(body);
    free(sealed);
    return rc;
}

static void on_small_placed(void *ud, const struct net_result *res)
{
    struct small_put *p = ud;
    Idunno__SdfsPlacement *pl = res->status == 0
                                    ? idunno__sdfs_placement__unpack(NULL, res->len, res->body)
                                    : NULL;
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
        for (size_t off = 0; off < p->len; off += SDFS_CHUNK)
            if (small_write_call(p, p->addrs[i], off,
                                 p->len - off < SDFS_CHUNK ? p->len - off : SDFS_CHUNK) < 0)
                p->failed = ID_EUNAVAIL;
        Idunno__SdfsChunk seal = IDUNNO__SDFS_CHUNK__INIT;
        seal.blob = p->blob;
        seal.size = p->len;
        seal.sha256.data = p->sha;
        seal.sha256.len = 32;
        if (net_call_pb(p->s->net, p->addrs[i], IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_REQ,
                        &seal.base, SDFS_CALL_MS, on_small_sealed, p) < 0) {
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
    sdfs_random_blob(p->blob);
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
    int rc = sdfs_call_leader(s, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_REQ, &pl.base, on_small_placed,
                              p);
    if (rc < 0) {
        free(copy);
        free(p);
    }
    return rc;
}
