/* net_rpc.c — request and reply over the transport's connections (net.h,
 * net_int.h): outgoing calls, found by request id in a hash table and each
 * with its deadline timer, and incoming requests until their handler replies.
 *
 * Threading: everything on the loop thread; a call's callback runs exactly
 * once, never inside net_call or inside another callback.
 */
#include "net/net_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "idunno.pb-c.h"

/* ---- calls ----------------------------------------------------------------- */

static void local_dispatch(struct net *net, const struct local_frame *f);

static size_t call_slot(const struct net *net, uint64_t req_id)
{
    /* Ids are sequential, so a multiplicative hash spreads them evenly. */
    return (size_t)((req_id * 0x9E3779B97F4A7C15ull) >> 32) & (net->call_tab_size - 1);
}

static int call_tab_grow(struct net *net)
{
    size_t size = net->call_tab_size ? net->call_tab_size * 2 : NET_CALL_TAB_MIN;
    struct net_call **tab = calloc(size, sizeof *tab);
    if (!tab)
        return ID_ENOMEM;
    struct net_call **old = net->call_tab;
    size_t old_size = net->call_tab_size;
    net->call_tab = tab;
    net->call_tab_size = size;
    for (size_t i = 0; i < old_size; i++) {
        struct net_call *c = old[i];
        while (c) {
            struct net_call *next = c->hnext;
            size_t s = call_slot(net, c->req_id);
            c->hnext = tab[s];
            tab[s] = c;
            c = next;
        }
    }
    free(old);
    return 0;
}

static int call_tab_insert(struct net *net, struct net_call *call)
{
    /* Keep the load under 3/4; if growing fails, longer chains still work. */
    if (!net->call_tab || (net->n_calls + 1) * 4 > net->call_tab_size * 3) {
        if (call_tab_grow(net) < 0 && !net->call_tab)
            return ID_ENOMEM;
    }
    size_t s = call_slot(net, call->req_id);
    call->hnext = net->call_tab[s];
    net->call_tab[s] = call;
    net->n_calls++;
    return 0;
}

static struct net_call *call_tab_find(const struct net *net, uint64_t req_id)
{
    if (!net->call_tab)
        return NULL;
    struct net_call *c = net->call_tab[call_slot(net, req_id)];
    while (c && c->req_id != req_id)
        c = c->hnext;
    return c;
}

static void call_tab_remove(struct net *net, struct net_call *call)
{
    struct net_call **pp = &net->call_tab[call_slot(net, call->req_id)];
    while (*pp && *pp != call)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = call->hnext;
        net->n_calls--;
    }
    call->hnext = NULL;
}

static void call_unlink(struct net_call *call)
{
    if (!call->conn)
        return;
    net_link_remove(&call->conn->calls, &call->link);
    call->conn = NULL;
}

static void call_free_cb(uv_handle_t *h)
{
    struct net_call *call = h->data;
    struct net *net = call->net;
    free(call);
    net__handle_released(net);
}

/* Runs the callback once and releases the call. */
static void call_finish(struct net_call *call, const struct net_result *res)
{
    if (call->done)
        return;
    call->done = 1;
    call_unlink(call);
    call_tab_remove(call->net, call);
    uv_timer_stop(&call->timer);
    if (call->fn) /* NULL: fire and forget */
        call->fn(call->ud, res);
    uv_close((uv_handle_t *)&call->timer, call_free_cb);
}

static void on_call_timeout(uv_timer_t *t);

static void call_fail(struct net_call *call, int status, const char *msg)
{
    struct net_result res = {.status = status, .errmsg = msg};
    call_finish(call, &res);
}

/* Fails a call from the loop's next turn, so that no callback ever runs inside
 * net_call or inside another callback's stack. `msg` must be static. */
void net__call_fail_later(struct net_call *call, int status, const char *msg)
{
    if (call->done || call->fail_status)
        return;
    call_unlink(call);
    call->fail_status = status;
    call->fail_msg = msg;
    uv_timer_start(&call->timer, on_call_timeout, 0, 0);
}

static void on_call_timeout(uv_timer_t *t)
{
    struct net_call *call = t->data;
    if (call->fail_status)
        call_fail(call, call->fail_status, call->fail_msg);
    else
        call_fail(call, ID_ETIMEDOUT, "no answer before the deadline");
}

static void deliver(struct net *net, struct net_call *call, const struct frame_header *h,
                    const uint8_t *body);

void net__deliver_response(struct net_conn *c, const struct frame_header *h, const uint8_t *body)
{
    struct net_call *call = call_tab_find(c->net, h->req_id);
    /* Timed out meanwhile, or an id this connection never carried: dropped. */
    if (!call || call->conn != c || call->done || call->fail_status)
        return;
    deliver(c->net, call, h, body);
}

static void deliver(struct net *net, struct net_call *call, const struct frame_header *h,
                    const uint8_t *body)
{
    struct net_result res = {.status = 0, .type = h->type, .body = body, .len = h->length};
    if (h->flags & FRAME_F_ERROR) {
        Idunno__ErrorReply *er = idunno__error_reply__unpack(NULL, h->length, body);
        if (!er) {
            net->stats.bad_body++;
            call_fail(call, ID_EPROTO, "undecodable error reply");
            return;
        }
        res.status = er->code < 0 ? er->code : ID_EINTERNAL;
        res.errmsg = er->message;
        res.leader = (er->leader && er->leader[0]) ? er->leader : NULL;
        res.body = NULL;
        res.len = 0;
        call_finish(call, &res);
        idunno__error_reply__free_unpacked(er, NULL);
        return;
    }
    call_finish(call, &res);
}

/* ---- requests ---------------------------------------------------------------- */

void net__request_unlink(struct net_request *req)
{
    if (req->local) {
        net_link_remove(&req->net->local_requests, &req->link);
        req->local = 0;
        return;
    }
    if (!req->conn)
        return;
    net_link_remove(&req->conn->requests, &req->link);
    req->conn = NULL;
}

static void request_serve(struct net *net, struct net_request *req, const struct frame_header *h,
                          const uint8_t *body);

void net__dispatch_request(struct net_conn *c, const struct frame_header *h, const uint8_t *body)
{
    struct net *net = c->net;
    struct net_request *req = calloc(1, sizeof *req);
    if (!req) {
        net__conn_close(c, ID_ENOMEM);
        return;
    }
    req->net = net;
    req->conn = c;
    req->req_id = h->req_id;
    req->type = h->type;
    snprintf(req->peer, sizeof req->peer, "%s", c->peer);
    req->sealed_tail = h->sealed_tail;
    net_link_push(&c->requests, &req->link);
    request_serve(net, req, h, body);
}

/* Hands a request to its type's handler, or answers the error. */
static void request_serve(struct net *net, struct net_request *req, const struct frame_header *h,
                          const uint8_t *body)
{
    if (h->type >= NET_MAX_TYPES || !net->handlers[h->type].req_fn) {
        net->stats.unknown_type++;
        net_reply_error(req, ID_EUNKNOWNTYPE, "this node does not handle that message type", NULL);
        return;
    }
    struct handler *hd = &net->handlers[h->type];
    if (h->sealed_tail && !hd->takes_tail) {
        /* Only a handler that opens the payload itself may get one: anyone
         * else would use bytes that nothing has authenticated yet. */
        net->stats.bad_body++;
        net_reply_error(req, ID_EPROTO, "this message type cannot carry a sealed payload", NULL);
        return;
    }
    hd->req_fn(hd->req_ud, req, body, h->length);
}

const char *net_request_peer(const struct net_request *req)
{
    return req->peer;
}

uint32_t net_request_sealed_tail(const struct net_request *req)
{
    return req->sealed_tail;
}

static int net_reply_flags(struct net_request *req, uint16_t type, uint8_t flags, const void *body,
                           size_t len);
static int local_queue(struct net *net, uint16_t type, uint8_t flags, uint64_t req_id,
                       const void *body, size_t len, uint32_t tail);

int net_reply(struct net_request *req, uint16_t type, const void *body, size_t len)
{
    return net_reply_flags(req, type, FRAME_F_RESPONSE, body, len);
}

static int net_reply_flags(struct net_request *req, uint16_t type, uint8_t flags, const void *body,
                           size_t len)
{
    struct net_conn *c = req->conn;
    int rc = ID_ECLOSED;
    if ((c || req->local) && len > FRAME_MAX_BODY) {
        LOG_WARN("net", "answer of type %u to %s is %zu bytes, over the frame limit", type,
                 req->peer, len);
        net_reply_errorf(req, ID_ETOOBIG, "the answer (%zu bytes) exceeds the %u-byte frame limit",
                         len, FRAME_MAX_BODY);
        return ID_ETOOBIG;
    }
    if (c) {
        struct pending_write *w = net__frame_build(c->net, type, flags | FRAME_F_RESPONSE,
                                                   req->req_id, body, len, 0);
        rc = w ? net__conn_write(c, w) : ID_ENOMEM;
        c->last_used_ms = id_now_ms(); /* the caller's idle clock restarts now too */
    } else if (req->local) {
        rc = local_queue(req->net, type, flags | FRAME_F_RESPONSE, req->req_id, body, len, 0);
    }
    net__request_unlink(req);
    free(req);
    return rc;
}

int net_reply_pb(struct net_request *req, uint16_t type, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t stackbuf[1024];
    uint8_t *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!buf) {
        net_reply_error(req, ID_ENOMEM, "out of memory", NULL);
        return ID_ENOMEM;
    }
    protobuf_c_message_pack(msg, buf);
    int rc = net_reply(req, type, buf, len);
    if (buf != stackbuf)
        free(buf);
    return rc;
}

int net_reply_errorf(struct net_request *req, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return net_reply_error(req, code, msg, NULL);
}

int net_reply_error(struct net_request *req, int code, const char *message, const char *leader)
{
    Idunno__ErrorReply er = IDUNNO__ERROR_REPLY__INIT;
    er.code = code;
    er.message = (char *)(message ? message : id_strerror(code));
    er.leader = (char *)(leader ? leader : "");
    /* A handler that could not decode the body says so with ID_EPROTO: that is
     * the "undecodable body" reject of net.h, counted here in one place. The
     * transport itself outlives no request it hands out, but the connection
     * may be gone, so count only while it is there. */
    if (code == ID_EPROTO && (req->conn || req->local))
        req->net->stats.bad_body++;
    uint8_t buf[1024];
    size_t len = idunno__error_reply__get_packed_size(&er);
    if (len > sizeof buf) {
        er.message = (char *)id_strerror(code);
        len = idunno__error_reply__get_packed_size(&er);
    }
    idunno__error_reply__pack(&er, buf);
    return net_reply_flags(req, IDUNNO__MSG_TYPE__MSG_ERROR_REPLY, FRAME_F_ERROR, buf, len);
}

/* ---- calls to this node itself ------------------------------------------------
 *
 * A node calls itself often: its HTTP gateway and its command line hand every
 * request to its own forwarder, and a coordinator runs queries on its own
 * worker. Over a connection each such call cost a frame built, sealed,
 * written, read, opened and parsed, both ways. Here it is a copy of the body
 * queued on the transport and handled on the loop's next turn: the handler
 * gets a net_request, the caller its callback with the reply or an error, as
 * over a connection (never inside net_call or inside another callback), and
 * the call's deadline holds. A sealed tail (net_call_tail) comes as it
 * would over a connection, still sealed (net_request_sealed_tail), for its
 * handler to open. Every call to itself takes this way, tail or not, so they
 * keep their order as calls over one connection do: an SDFS replica's seal
 * must not overtake its chunks. */

static int local_queue(struct net *net, uint16_t type, uint8_t flags, uint64_t req_id,
                       const void *body, size_t len, uint32_t tail)
{
    if (net->closing)
        return ID_ESHUTDOWN;
    struct local_frame *f = malloc(sizeof *f + len);
    if (!f)
        return ID_ENOMEM;
    *f = (struct local_frame){
        .req_id = req_id, .type = type, .flags = flags, .tail = tail, .len = len};
    if (len)
        memcpy(f->body, body, len);
    *net->local_tail = f;
    net->local_tail = &f->next;
    net__flush_arm(net);
    return 0;
}

/* A call with its id and its running deadline, over connection c (NULL: to
 * this node itself); NULL when out of memory. */
static struct net_call *call_new(struct net *net, struct net_conn *c, uint32_t timeout_ms,
                                 net_response_fn fn, void *ud)
{
    struct net_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->net = net;
    call->conn = c;
    call->local = c == NULL;
    call->req_id = net->next_req_id++;
    call->fn = fn;
    call->ud = ud;
    if (call_tab_insert(net, call) < 0) {
        free(call);
        return NULL;
    }
    uv_timer_init(net->loop, &call->timer);
    call->timer.data = call;
    net->open_handles++;
    if (c)
        net_link_push(&c->calls, &call->link);
    /* The deadline counts from now, not from the loop's cached time, which lags
     * by however long the current callback has been running. */
    uv_update_time(net->loop);
    uv_timer_start(&call->timer, on_call_timeout,
                   timeout_ms ? timeout_ms : net->cfg.call_timeout_ms, 0);
    return call;
}

static int local_call(struct net *net, uint16_t type, const void *body, size_t len, uint32_t tail,
                      uint32_t timeout_ms, net_response_fn fn, void *ud)
{
    struct net_call *call = call_new(net, NULL, timeout_ms, fn, ud);
    if (!call)
        return ID_ENOMEM;
    if (local_queue(net, type, 0, call->req_id, body, len, tail) < 0)
        net__call_fail_later(call, ID_ENOMEM, "out of memory");
    return 0;
}

static void local_dispatch(struct net *net, const struct local_frame *f)
{
    struct frame_header h = {.flags = f->flags,
                             .type = f->type,
                             .req_id = f->req_id,
                             .length = (uint32_t)f->len,
                             .sealed_tail = f->tail};
    if (f->flags & FRAME_F_RESPONSE) {
        struct net_call *call = call_tab_find(net, f->req_id);
        /* Timed out (or failed) meanwhile: dropped, as over a connection. */
        if (call && call->local && !call->done && !call->fail_status)
            deliver(net, call, &h, f->body);
        return;
    }
    struct net_request *req = calloc(1, sizeof *req);
    if (!req) {
        struct net_call *call = call_tab_find(net, f->req_id);
        if (call && call->local)
            net__call_fail_later(call, ID_ENOMEM, "out of memory");
        return;
    }
    req->net = net;
    req->local = 1;
    req->req_id = f->req_id;
    req->type = f->type;
    req->sealed_tail = f->tail;
    snprintf(req->peer, sizeof req->peer, "%s", net->addr);
    net_link_push(&net->local_requests, &req->link);
    request_serve(net, req, &h, f->body);
}

void net__local_run(struct net *net)
{
    /* Only the frames queued so far: what their handlers and callbacks queue
     * waits for the next turn, so a call that calls itself again cannot
     * hold the loop. */
    struct local_frame *f = net->local;
    net->local = NULL;
    net->local_tail = &net->local;
    while (f) {
        struct local_frame *next = f->next;
        if (!net->closing)
            local_dispatch(net, f);
        free(f);
        f = next;
    }
}

void net__local_stop(struct net *net)
{
    while (net->local) {
        struct local_frame *f = net->local;
        net->local = f->next;
        free(f);
    }
    net->local_tail = &net->local;
    while (net->local_requests)
        net__request_unlink(NET_ENTRY(net->local_requests, struct net_request));
    for (size_t i = 0; i < net->call_tab_size; i++)
        for (struct net_call *c = net->call_tab[i]; c; c = c->hnext)
            if (c->local)
                net__call_fail_later(c, ID_ESHUTDOWN, "the node is stopping");
}

int net_call(struct net *net, const char *addr, uint16_t type, const void *body, size_t len,
             uint32_t timeout_ms, net_response_fn fn, void *ud)
{
    return net_call_tail(net, addr, type, body, len, 0, timeout_ms, fn, ud);
}

int net_call_tail(struct net *net, const char *addr, uint16_t type, const void *body, size_t len,
                  uint32_t tail, uint32_t timeout_ms, net_response_fn fn, void *ud)
{
    if (net->closing)
        return ID_ESHUTDOWN;
    if (len > FRAME_MAX_BODY)
        return ID_ETOOBIG;
    if (tail && (!net->sealed || tail > len || tail < SEAL_PAYLOAD_OVERHEAD))
        return ID_EINVAL;
    if (net->started && strcmp(addr, net->addr) == 0)
        return local_call(net, type, body, len, tail, timeout_ms, fn, ud);
    int err = 0;
    struct net_conn *c = net__conn_get(net, addr, &err);
    if (!c)
        return err;
    if (c->connected && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + c->corked_bytes >
                            NET_MAX_WRITE_QUEUE)
        return ID_EBUSY;
    struct net_call *call = call_new(net, c, timeout_ms, fn, ud);
    if (!call)
        return ID_ENOMEM;
    c->last_used_ms = id_now_ms();
    struct pending_write *w = net__frame_build(net, type, 0, call->req_id, body, len, tail);
    if (!w) {
        net__call_fail_later(call, ID_ENOMEM, "out of memory");
        return 0;
    }
    /* A write failure closes the connection, which fails the call through its
     * callback later: never from inside net_call. */
    net__conn_write(c, w);
    return 0;
}

int net_call_pb(struct net *net, const char *addr, uint16_t type, const ProtobufCMessage *msg,
                uint32_t timeout_ms, net_response_fn fn, void *ud)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t stackbuf[1024];
    uint8_t *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!buf)
        return ID_ENOMEM;
    protobuf_c_message_pack(msg, buf);
    int rc = net_call(net, addr, type, buf, len, timeout_ms, fn, ud);
    if (buf != stackbuf)
        free(buf);
    return rc;
}
