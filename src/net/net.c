/* net.c — the node's transport (see net.h): framed RPC over TCP and datagrams over
 * UDP on one libuv loop.
 *
 * Connections are one-directional in purpose: an outgoing connection carries our
 * requests and their responses, an accepted one carries the peer's requests and
 * our responses. Outgoing connections are pooled by target address, so calls to
 * one peer share a connection and keep their order. Every call owns a timer for
 * its deadline; a connection that drops fails all of its calls with ID_ECLOSED.
 *
 * Pending calls are found by request id in one hash table (responses arrive in
 * any order, and a busy peer may have thousands in flight); each call is also
 * on its connection's list so that a drop can fail exactly that connection's
 * calls. Outgoing connections idle for cfg.idle_close_ms are closed by us; an
 * accepted connection with nothing unanswered is closed after twice that, so a
 * well-behaved caller always closes first.
 *
 * With a cluster key a connection is usable once its handshake (seal.h) is
 * done: the connecting side sends its hello on connect and queues its calls
 * until the reply proves the peer holds the key; the accepting side answers a
 * hello and only then reads frames. Frames are sealed as they enter the cork
 * list, so records carry their numbers in the order they are written.
 *
 * Bounds, checked every second: a handshake unfinished after
 * handshake_timeout_ms and a frame begun and unfinished after frame_timeout_ms
 * close their connection; accept refuses a source over max_per_source; a read
 * that would take all read buffers past max_buffered closes its connection.
 */
#include "net/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "idunno.pb-c.h"
#include "net/reader.h"

#define NET_MAX_TYPES 512
#define NET_ADDR_LEN 64
#define NET_READ_CHUNK 65536
/* A call is refused with ID_EBUSY while its connection has this much unsent:
 * the peer is not reading, and queueing more would only grow memory. */
#define NET_MAX_WRITE_QUEUE (64u * 1024u * 1024u)
#define NET_CALL_TAB_MIN 64
#define NET_BOUNDS_CHECK_MS 1000

struct net_call;

struct net_conn {
    struct net *net;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    int outgoing;
    int connected;
    int closing;
    int ready;                   /* connected, and sealed if the node has a key */
    char peer[NET_ADDR_LEN];     /* target addr (outgoing) or peer sockaddr (incoming) */
    char source[NET_ADDR_LEN];   /* incoming: the peer's IP address alone */
    struct frame_reader reader;
    size_t reader_counted;       /* reader.cap as counted in net->buffered */
    struct seal_session seal;
    uint8_t hello[SEAL_HELLO_LEN]; /* outgoing: the hello we sent */
    uint64_t opened_ms;
    uint64_t partial_since_ms;   /* a frame began then and is not complete (0: none) */
    struct net_call *calls;      /* outgoing: calls waiting for their response */
    struct net_request *requests; /* incoming: requests not yet answered */
    struct pending_write *queued; /* outgoing: frames written before connect finished */
    struct pending_write **queued_tail;
    struct pending_write *corked; /* frames of this loop iteration, not yet written */
    struct pending_write **corked_tail;
    size_t corked_bytes;
    struct net_conn *cork_next;   /* on net->corked exactly while corked != NULL */
    uint64_t last_used_ms;
    struct net_conn *next, *prev;
};

/* An outgoing frame in one malloc: the write request, then room for a record
 * around the frame (seal.h), so it is sealed in place when written. */
struct pending_write {
    uv_write_t req;
    uv_buf_t buf;
    struct pending_write *next;
    uint32_t frame_len; /* 0: raw bytes (a handshake message), never sealed */
};

struct net_call {
    struct net *net;
    struct net_conn *conn;
    uint64_t req_id;
    uv_timer_t timer;
    net_response_fn fn;
    void *ud;
    struct net_call *next, *prev; /* on conn->calls */
    struct net_call *hnext;       /* in net->call_tab */
    int done;
    int fail_status;        /* set: fail with this on the next timer tick */
    const char *fail_msg;   /* static text */
};

struct net_request {
    struct net *net;
    struct net_conn *conn; /* NULL once the connection closed */
    uint64_t req_id;
    uint16_t type;
    char peer[NET_ADDR_LEN];
    struct net_request *next, *prev;
};

struct handler {
    net_request_fn req_fn;
    void *req_ud;
    net_datagram_fn dg_fn;
    void *dg_ud;
};

struct net {
    uv_loop_t *loop;
    struct net_config cfg;
    char addr[NET_ADDR_LEN];
    char errmsg[ID_ERRMSG_LEN];
    uv_tcp_t listener;
    uv_udp_t udp;
    uv_timer_t idle_timer;
    /* Frames are corked for the rest of a loop iteration and written per
     * connection in one system call (on_flush): the several messages a
     * handler sends one peer, and the answers to several requests that came
     * in one read, leave together. An idle handle runs the flush: it runs
     * before the loop would block, and while it is active the loop does not. */
    uv_idle_t flush;
    struct net_conn *corked;
    int started;
    int closing;
    int open_handles;
    void (*close_done)(void *);
    void *close_ud;
    struct handler handlers[NET_MAX_TYPES];
    struct net_conn *conns;
    size_t n_incoming, n_outgoing;
    uint64_t next_req_id;
    struct net_call **call_tab; /* by req_id; size a power of two */
    size_t call_tab_size, n_calls;
    struct frame_stats stats;
    uint64_t udp_sent, udp_received;
    int sealed;                  /* keys holds the cluster key */
    struct seal_keyring keys;
    struct seal_sender udp_sender;
    struct seal_replay udp_replay;
    size_t buffered;             /* sum of the connections' read buffers */
    char read_buf[NET_READ_CHUNK];
    int read_buf_busy;
};

/* ---- helpers --------------------------------------------------------------- */

static int uv_to_id(int uverr)
{
    switch (uverr) {
    case UV_ECONNREFUSED: return ID_ECONNREFUSED;
    case UV_ETIMEDOUT: return ID_ETIMEDOUT;
    case UV_ENOMEM: return ID_ENOMEM;
    case UV_EINVAL: return ID_EINVAL;
    case UV_EADDRINUSE: return ID_EEXIST;
    case UV_ECONNRESET:
    case UV_EPIPE:
    case UV_EOF: return ID_ECLOSED;
    default: return ID_EIO;
    }
}

int net_shift_port(const char *addr, int delta, char *out, size_t len)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon == addr)
        return ID_EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || colon[1] == 0 || port + delta < 1 || port + delta > 65535)
        return ID_EINVAL;
    int n = snprintf(out, len, "%.*s:%ld", (int)(colon - addr), addr, port + delta);
    return n < 0 || (size_t)n >= len ? ID_EINVAL : 0;
}

int net_parse_addr(const char *addr, struct sockaddr_storage *out)
{
    if (!addr)
        return ID_EINVAL;
    char host[NET_ADDR_LEN];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || strlen(addr) >= sizeof host)
        return ID_EINVAL;
    size_t hlen = (size_t)(colon - addr);
    memcpy(host, addr, hlen);
    host[hlen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return ID_EINVAL;
    memset(out, 0, sizeof *out);
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
        host[hlen - 1] = 0;
        if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) == 0)
            return 0;
        return ID_EINVAL;
    }
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        /* uv_ip4_addr accepts some junk; insist on a dotted quad. */
        struct in_addr check;
        if (inet_pton(AF_INET, host, &check) == 1 && check.s_addr == sin->sin_addr.s_addr)
            return 0;
    }
    return ID_EINVAL;
}

static void format_sockaddr(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        uv_ip4_name(s, ip, sizeof ip);
        port = ntohs(s->sin_port);
        snprintf(out, len, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(s, ip, sizeof ip);
        port = ntohs(s->sin6_port);
        snprintf(out, len, "[%s]:%d", ip, port);
    } else {
        snprintf(out, len, "?");
    }
}

/* One malloc holding the write request, header and body (with room to seal
 * them), freed on completion. */
static struct pending_write *frame_build(uint16_t type, uint8_t flags, uint64_t req_id,
                                         const void *body, size_t len)
{
    struct pending_write *w = malloc(sizeof *w + SEAL_RECORD_OVERHEAD + FRAME_HEADER_LEN + len);
    if (!w)
        return NULL;
    uint8_t *p = (uint8_t *)(w + 1) + SEAL_RECORD_LEN_BYTES;
    if (len)
        memcpy(p + FRAME_HEADER_LEN, body, len);
    frame_encode_header(p, type, flags, req_id, p + FRAME_HEADER_LEN, (uint32_t)len);
    w->buf = uv_buf_init((char *)p, (unsigned)(FRAME_HEADER_LEN + len));
    w->next = NULL;
    w->frame_len = (uint32_t)(FRAME_HEADER_LEN + len);
    return w;
}

/* Raw bytes (a handshake message) to write as they are. */
static struct pending_write *raw_build(const void *data, size_t len)
{
    struct pending_write *w = malloc(sizeof *w + len);
    if (!w)
        return NULL;
    memcpy(w + 1, data, len);
    w->buf = uv_buf_init((char *)(w + 1), (unsigned)len);
    w->next = NULL;
    w->frame_len = 0;
    return w;
}

/* Seals a frame in place into its record (seal.h). */
static void pending_seal(struct net_conn *c, struct pending_write *w)
{
    uint8_t *rec = (uint8_t *)(w + 1);
    seal_record(&c->seal.tx, rec, w->frame_len);
    w->buf = uv_buf_init((char *)rec, (unsigned)(w->frame_len + SEAL_RECORD_OVERHEAD));
}

static void conn_close(struct net_conn *c, int reason);

static void on_write(uv_write_t *req, int status)
{
    struct pending_write *w = (struct pending_write *)req;
    struct net_conn *c = req->data;
    free(w);
    if (status < 0 && c && !c->closing)
        conn_close(c, uv_to_id(status));
}

/* Writes a connection's corked frames: as many as fit in one writev, then
 * through the loop what the socket did not take. Frames keep their order:
 * uv_try_write refuses while earlier writes are queued. */
#define NET_FLUSH_IOV 64

/* The first corked frames, at most NET_FLUSH_IOV, as one writev's buffers. */
static unsigned corked_iov(const struct net_conn *c, uv_buf_t bufs[NET_FLUSH_IOV])
{
    unsigned n = 0;
    for (const struct pending_write *w = c->corked; w && n < NET_FLUSH_IOV; w = w->next)
        bufs[n++] = w->buf;
    return n;
}

static void conn_flush(struct net_conn *c)
{
    while (c->corked && !c->closing) {
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
            uv_buf_t bufs[NET_FLUSH_IOV];
            unsigned n = corked_iov(c, bufs);
            int done = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
            if (done < 0 && done != UV_EAGAIN) {
                conn_close(c, uv_to_id(done));
                return;
            }
            size_t left = done > 0 ? (size_t)done : 0;
            unsigned freed = 0;
            while (c->corked && left >= c->corked->buf.len) {
                struct pending_write *w = c->corked;
                left -= w->buf.len;
                c->corked = w->next;
                free(w);
                freed++;
            }
            if (c->corked && left) {
                c->corked->buf.base += left;
                c->corked->buf.len -= left;
            }
            if (freed == n)
                continue; /* all taken: the next batch, if any */
        }
        /* The socket is full (or earlier writes wait): the rest goes in order
         * through the loop. */
        while (c->corked) {
            struct pending_write *w = c->corked;
            c->corked = w->next;
            w->next = NULL;
            w->req.data = c;
            int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_write);
            if (rc < 0) {
                free(w);
                conn_close(c, uv_to_id(rc));
                return;
            }
        }
    }
    c->corked_tail = &c->corked;
    c->corked_bytes = 0;
}

static void drop_corked(struct net_conn *c)
{
    while (c->corked) {
        struct pending_write *w = c->corked;
        c->corked = w->next;
        free(w);
    }
    c->corked_tail = &c->corked;
    c->corked_bytes = 0;
}

static void on_flush(uv_idle_t *h)
{
    struct net *net = h->data;
    uv_idle_stop(h);
    while (net->corked) {
        struct net_conn *c = net->corked;
        net->corked = c->cork_next;
        c->cork_next = NULL;
        conn_flush(c);
    }
}

/* Puts a frame (or raw bytes) on the cork list; frames wait on the queue
 * until the connection is ready, and are sealed as they leave it. */
static int conn_write(struct net_conn *c, struct pending_write *w)
{
    if (c->closing) {
        free(w);
        return ID_ECLOSED;
    }
    if (w->frame_len && !c->ready) {
        *c->queued_tail = w;
        c->queued_tail = &w->next;
        return 0;
    }
    if (w->frame_len && c->net->sealed)
        pending_seal(c, w);
    int first = c->corked == NULL;
    w->next = NULL;
    *c->corked_tail = w;
    c->corked_tail = &w->next;
    c->corked_bytes += w->buf.len;
    if (first) {
        c->cork_next = c->net->corked;
        c->net->corked = c;
        if (!uv_is_active((uv_handle_t *)&c->net->flush))
            uv_idle_start(&c->net->flush, on_flush);
    }
    return 0;
}

/* ---- calls ----------------------------------------------------------------- */

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
    struct net_conn *c = call->conn;
    if (!c)
        return;
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->next = call->prev = NULL;
    call->conn = NULL;
}

static void net_handle_released(struct net *net);

static void call_free_cb(uv_handle_t *h)
{
    struct net_call *call = h->data;
    struct net *net = call->net;
    free(call);
    net_handle_released(net);
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
static void call_fail_later(struct net_call *call, int status, const char *msg)
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

static void deliver_response(struct net_conn *c, const struct frame_header *h, const uint8_t *body)
{
    struct net_call *call = call_tab_find(c->net, h->req_id);
    /* Timed out meanwhile, or an id this connection never carried: dropped. */
    if (!call || call->conn != c || call->done || call->fail_status)
        return;
    struct net_result res = {.status = 0, .type = h->type, .body = body, .len = h->length};
    if (h->flags & FRAME_F_ERROR) {
        Idunno__ErrorReply *er = idunno__error_reply__unpack(NULL, h->length, body);
        if (!er) {
            c->net->stats.bad_body++;
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

static void request_unlink(struct net_request *req)
{
    struct net_conn *c = req->conn;
    if (!c)
        return;
    if (req->prev)
        req->prev->next = req->next;
    else
        c->requests = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->next = req->prev = NULL;
    req->conn = NULL;
}

static void dispatch_request(struct net_conn *c, const struct frame_header *h, const uint8_t *body)
{
    struct net *net = c->net;
    struct net_request *req = calloc(1, sizeof *req);
    if (!req) {
        conn_close(c, ID_ENOMEM);
        return;
    }
    req->net = net;
    req->conn = c;
    req->req_id = h->req_id;
    req->type = h->type;
    snprintf(req->peer, sizeof req->peer, "%s", c->peer);
    req->next = c->requests;
    if (c->requests)
        c->requests->prev = req;
    c->requests = req;
    if (h->type >= NET_MAX_TYPES || !net->handlers[h->type].req_fn) {
        net->stats.unknown_type++;
        net_reply_error(req, ID_EUNKNOWNTYPE, "this node does not handle that message type", NULL);
        return;
    }
    struct handler *hd = &net->handlers[h->type];
    hd->req_fn(hd->req_ud, req, body, h->length);
}

const char *net_request_peer(const struct net_request *req) { return req->peer; }

static int net_reply_flags(struct net_request *req, uint16_t type, uint8_t flags, const void *body,
                           size_t len);

int net_reply(struct net_request *req, uint16_t type, const void *body, size_t len)
{
    return net_reply_flags(req, type, FRAME_F_RESPONSE, body, len);
}

static int net_reply_flags(struct net_request *req, uint16_t type, uint8_t flags, const void *body,
                    size_t len)
{
    struct net_conn *c = req->conn;
    int rc = ID_ECLOSED;
    if (c && len > FRAME_MAX_BODY) {
        LOG_WARN("net", "answer of type %u to %s is %zu bytes, over the frame limit", type, c->peer, len);
        net_reply_errorf(req, ID_ETOOBIG, "the answer (%zu bytes) exceeds the %u-byte frame limit", len,
                         FRAME_MAX_BODY);
        return ID_ETOOBIG;
    }
    if (c) {
        struct pending_write *w = frame_build(type, flags | FRAME_F_RESPONSE, req->req_id, body, len);
        rc = w ? conn_write(c, w) : ID_ENOMEM;
        c->last_used_ms = id_now_ms(); /* the caller's idle clock restarts now too */
    }
    request_unlink(req);
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
    if (code == ID_EPROTO && req->conn)
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

/* ---- connections ------------------------------------------------------------- */

/* Every libuv handle the transport opened counts in open_handles; the transport
 * is freed when the last one is released after net_close(). */
static void net_handle_released(struct net *net)
{
    net->open_handles--;
    if (net->closing && net->open_handles == 0) {
        void (*done)(void *) = net->close_done;
        void *ud = net->close_ud;
        free(net->call_tab);
        sodium_memzero(&net->keys, sizeof net->keys);
        free(net);
        if (done)
            done(ud);
    }
}

static void conn_free_cb(uv_handle_t *h)
{
    struct net_conn *c = h->data;
    struct net *net = c->net;
    net->buffered -= c->reader_counted;
    frame_reader_free(&c->reader);
    sodium_memzero(&c->seal, sizeof c->seal);
    free(c);
    net_handle_released(net);
}

static void conn_close(struct net_conn *c, int reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct net *net = c->net;
    if (c->prev)
        c->prev->next = c->next;
    else
        net->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (!c->outgoing)
        net->n_incoming--;
    else
        net->n_outgoing--;
    while (c->calls)
        call_fail_later(c->calls, reason ? reason : ID_ECLOSED,
                        reason == ID_ESHUTDOWN ? "the node is shutting down"
                        : reason == ID_ECONNREFUSED ? "connection refused by the peer"
                        : reason == ID_EAUTH ? "the peer does not hold this node's cluster key"
                                             : "connection to the peer failed");
    while (c->requests)
        request_unlink(c->requests); /* handlers still own them; replies will be dropped */
    while (c->queued) {
        struct pending_write *w = c->queued;
        c->queued = w->next;
        free(w);
    }
    if (c->corked) {
        for (struct net_conn **pp = &net->corked; *pp; pp = &(*pp)->cork_next)
            if (*pp == c) {
                *pp = c->cork_next;
                break;
            }
    }
    /* A node shutting down still sends what it answered in its last loop
     * iteration (the reply to a stop request, say), as far as the socket
     * takes it now; a failed connection drops it. */
    if (reason == ID_ESHUTDOWN && c->corked &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
        uv_buf_t bufs[NET_FLUSH_IOV];
        (void)uv_try_write((uv_stream_t *)&c->tcp, bufs, corked_iov(c, bufs));
    }
    drop_corked(c);
    uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct net_conn *c = h->data;
    /* One loop thread: reads never overlap, so one buffer serves all conns. */
    buf->base = c->net->read_buf;
    buf->len = sizeof c->net->read_buf;
}

/* Keeps net->buffered equal to the sum of the read buffers. */
static void conn_account(struct net_conn *c)
{
    c->net->buffered += c->reader.cap - c->reader_counted;
    c->reader_counted = c->reader.cap;
}

/* A plaintext frame header from a peer without the key: tell it why, in
 * plaintext (it could read nothing else), then close. */
static void refuse_unsealed(struct net_conn *c, const uint8_t *raw)
{
    struct frame_header h;
    c->net->stats.unsealed++;
    LOG_WARN("net", "refusing %s: it sent a frame without the cluster key", c->peer);
    if (frame_decode_header(raw, FRAME_MAX_BODY, &h, NULL) == 0) {
        static const char msg[] = "this cluster requires its key (idunno --key-file, $IDUNNO_KEY_FILE)";
        Idunno__ErrorReply er = IDUNNO__ERROR_REPLY__INIT;
        er.code = ID_EAUTH;
        er.message = (char *)msg;
        er.leader = (char *)"";
        uint8_t frame[FRAME_HEADER_LEN + 256];
        size_t len = idunno__error_reply__pack(&er, frame + FRAME_HEADER_LEN);
        frame_encode_header(frame, IDUNNO__MSG_TYPE__MSG_ERROR_REPLY, FRAME_F_RESPONSE | FRAME_F_ERROR,
                            h.req_id, frame + FRAME_HEADER_LEN, (uint32_t)len);
        uv_buf_t b = uv_buf_init((char *)frame, (unsigned)(FRAME_HEADER_LEN + len));
        (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* best effort: we close anyway */
    }
    conn_close(c, ID_EAUTH);
}

static void conn_ready(struct net_conn *c);

/* The handshake, from whatever the reader holds. Returns 0 (done or more bytes
 * needed) or ID_E* after closing the connection. */
static int conn_handshake(struct net_conn *c)
{
    struct net *net = c->net;
    const uint8_t *msg = frame_reader_peek(&c->reader);
    if (frame_reader_pending(&c->reader) >= 4 &&
        ((uint32_t)msg[0] << 24 | (uint32_t)msg[1] << 16 | (uint32_t)msg[2] << 8 | msg[3]) == FRAME_MAGIC) {
        if (c->outgoing) {
            net->stats.unsealed++;
            LOG_WARN("net", "%s answers without a cluster key: not using it", c->peer);
            conn_close(c, ID_EAUTH);
            return ID_EAUTH;
        }
        if (frame_reader_pending(&c->reader) < FRAME_HEADER_LEN)
            return 0;
        frame_reader_take(&c->reader, FRAME_HEADER_LEN, &msg);
        refuse_unsealed(c, msg);
        return ID_EAUTH;
    }
    int rc;
    if (c->outgoing) {
        if (!frame_reader_take(&c->reader, SEAL_REPLY_LEN, &msg))
            return 0;
        rc = seal_finish(&net->keys, c->hello, msg, &c->seal);
    } else {
        if (!frame_reader_take(&c->reader, SEAL_HELLO_LEN, &msg))
            return 0;
        uint8_t reply[SEAL_REPLY_LEN];
        rc = seal_accept(&net->keys, msg, reply, &c->seal);
        if (rc == 0) {
            struct pending_write *w = raw_build(reply, sizeof reply);
            rc = w ? conn_write(c, w) : ID_ENOMEM;
        }
    }
    if (rc < 0) {
        if (rc == ID_EAUTH)
            net->stats.bad_auth++;
        else
            net->stats.bad_magic++;
        LOG_WARN("net", "handshake with %s failed: %s", c->peer, id_strerror(rc));
        conn_close(c, rc == ID_EAUTH ? ID_EAUTH : ID_EPROTO);
        return rc;
    }
    frame_reader_seal(&c->reader, &c->seal.rx);
    conn_ready(c);
    return 0;
}

/* The frames the reader holds, in order. Returns 0 or ID_E* after closing. */
static int conn_read_frames(struct net_conn *c)
{
    for (;;) {
        struct frame_header h;
        const uint8_t *body;
        int rc = frame_reader_next(&c->reader, &h, &body);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            LOG_WARN("net", "dropping connection %s: %s", c->peer, id_strerror(rc));
            conn_close(c, rc == ID_EAUTH ? ID_EAUTH : ID_EPROTO);
            return rc;
        }
        c->partial_since_ms = 0;
        if (h.flags & FRAME_F_RESPONSE) {
            if (c->outgoing)
                deliver_response(c, &h, body);
            else
                c->net->stats.bad_body++; /* a response nobody asked for */
        } else {
            dispatch_request(c, &h, body);
        }
        if (c->closing)
            return ID_ECLOSED;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct net_conn *c = s->data;
    struct net *net = c->net;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? ID_ECLOSED : uv_to_id((int)nread));
        return;
    }
    if (nread == 0)
        return;
    if (frame_reader_feed(&c->reader, buf->base, (size_t)nread) < 0) {
        conn_close(c, ID_ENOMEM);
        return;
    }
    conn_account(c);
    if (net->buffered > net->cfg.max_buffered) {
        net->stats.over_limit++;
        LOG_WARN("net", "closing %s: read buffers hold %zu bytes, over the %zu limit", c->peer,
                 net->buffered, net->cfg.max_buffered);
        conn_close(c, ID_EBUSY);
        return;
    }
    uint64_t now = id_now_ms();
    c->last_used_ms = now;
    if (!c->ready && conn_handshake(c) < 0)
        return;
    if (c->ready && conn_read_frames(c) < 0)
        return;
    if (frame_reader_pending(&c->reader) && c->ready && !c->partial_since_ms)
        c->partial_since_ms = now;
}

static struct net_conn *conn_new(struct net *net, int outgoing, const char *peer)
{
    struct net_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->net = net;
    c->outgoing = outgoing;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    frame_reader_init(&c->reader, FRAME_MAX_BODY, &net->stats);
    c->queued_tail = &c->queued;
    c->corked_tail = &c->corked;
    c->last_used_ms = c->opened_ms = id_now_ms();
    uv_tcp_init(net->loop, &c->tcp);
    c->tcp.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    net->open_handles++;
    if (!outgoing)
        net->n_incoming++;
    else
        net->n_outgoing++;
    c->next = net->conns;
    if (net->conns)
        net->conns->prev = c;
    net->conns = c;
    return c;
}

/* The connection may carry frames: the ones queued meanwhile go first. */
static void conn_ready(struct net_conn *c)
{
    c->ready = 1;
    struct pending_write *w = c->queued;
    c->queued = NULL;
    c->queued_tail = &c->queued;
    while (w) {
        struct pending_write *next = w->next;
        w->next = NULL;
        if (conn_write(c, w) < 0) {
            /* conn_write freed w and closed the connection; free the rest. */
            while (next) {
                w = next->next;
                free(next);
                next = w;
            }
            return;
        }
        w = next;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct net_conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, uv_to_id(status));
        return;
    }
    c->connected = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (!c->net->sealed) {
        conn_ready(c);
        return;
    }
    seal_hello(&c->net->keys, c->hello);
    struct pending_write *w = raw_build(c->hello, sizeof c->hello);
    if (!w || conn_write(c, w) < 0) {
        free(w);
        conn_close(c, ID_ENOMEM);
    }
}

static struct net_conn *conn_get(struct net *net, const char *addr, int *err)
{
    for (struct net_conn *c = net->conns; c; c = c->next)
        if (c->outgoing && !c->closing && strcmp(c->peer, addr) == 0)
            return c;
    struct sockaddr_storage sa;
    if (net_parse_addr(addr, &sa) < 0) {
        *err = ID_EINVAL;
        return NULL;
    }
    struct net_conn *c = conn_new(net, 1, addr);
    if (!c) {
        *err = ID_ENOMEM;
        return NULL;
    }
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&sa, on_connect);
    if (rc < 0) {
        conn_close(c, uv_to_id(rc));
        *err = uv_to_id(rc);
        return NULL;
    }
    return c;
}

static void on_accept(uv_stream_t *server, int status)
{
    struct net *net = server->data;
    if (status < 0) {
        LOG_WARN("net", "accept failed: %s", uv_strerror(status));
        return;
    }
    struct net_conn *c = conn_new(net, 0, "?");
    if (!c)
        return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, ID_EIO);
        return;
    }
    if (net->cfg.max_connections && net->n_incoming > net->cfg.max_connections) {
        LOG_WARN("net", "refusing a connection: %zu open", net->n_incoming - 1);
        conn_close(c, ID_EBUSY);
        return;
    }
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0)
        format_sockaddr((struct sockaddr *)&sa, c->peer, sizeof c->peer);
    snprintf(c->source, sizeof c->source, "%.*s", (int)(strrchr(c->peer, ':') ? strrchr(c->peer, ':') - c->peer : 0),
             c->peer);
    size_t same = 0;
    for (struct net_conn *o = net->conns; o; o = o->next)
        same += !o->outgoing && o != c && strcmp(o->source, c->source) == 0;
    if (same >= net->cfg.max_per_source) {
        net->stats.over_limit++;
        LOG_WARN("net", "refusing a connection from %s: it has %zu open", c->source, same);
        conn_close(c, ID_EBUSY);
        return;
    }
    c->ready = !net->sealed;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* The bound a connection broke, or NULL. */
static const char *conn_overdue(const struct net_conn *c, uint64_t now)
{
    const struct net_config *cfg = &c->net->cfg;
    if (!c->ready && now - c->opened_ms > cfg->handshake_timeout_ms)
        return c->connected || !c->outgoing ? "handshake unfinished" : "connect unfinished";
    if (c->partial_since_ms && now - c->partial_since_ms > cfg->frame_timeout_ms)
        return "frame unfinished";
    return NULL;
}

static void on_idle_timer(uv_timer_t *t)
{
    struct net *net = t->data;
    uint64_t now = id_now_ms();
    struct net_conn *c = net->conns;
    while (c) {
        struct net_conn *next = c->next;
        uint64_t idle = now - c->last_used_ms;
        /* A buffer grown for large frames is given back between them, here
         * rather than after every read, so a stream of them reuses it. */
        if (frame_reader_pending(&c->reader) == 0 && now - c->last_used_ms >= NET_BOUNDS_CHECK_MS) {
            frame_reader_trim(&c->reader);
            conn_account(c);
        }
        const char *overdue = conn_overdue(c, now);
        if (overdue) {
            net->stats.over_limit++;
            LOG_WARN("net", "closing %s: %s", c->peer, overdue);
            conn_close(c, ID_ETIMEDOUT);
        } else if (c->outgoing ? !c->calls && idle > net->cfg.idle_close_ms
                               : !c->requests && idle > 2 * (uint64_t)net->cfg.idle_close_ms) {
            conn_close(c, ID_ECLOSED);
        }
        c = next;
    }
}

/* ---- UDP ---------------------------------------------------------------------- */

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct net *net = h->data;
    buf->base = net->read_buf;
    buf->len = sizeof net->read_buf;
}

static void on_udp_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                        unsigned flags)
{
    struct net *net = u->data;
    if (nread <= 0 || !from)
        return;
    net->udp_received += (uint64_t)nread;
    if (flags & UV_UDP_PARTIAL) {
        net->stats.too_big++;
        return;
    }
    const uint8_t *frame = (const uint8_t *)buf->base;
    size_t frame_len = (size_t)nread;
    if (net->sealed) {
        int rc = seal_open_datagram(&net->keys, &net->udp_replay, id_wall_ms(), (uint8_t *)buf->base,
                                    (size_t)nread, &frame, &frame_len);
        if (rc < 0) {
            if (rc == ID_EPROTO)
                net->stats.unsealed++;
            else if (rc == ID_EEXIST)
                net->stats.replayed++;
            else
                net->stats.bad_auth++;
            return;
        }
    }
    struct frame_header h;
    const uint8_t *body;
    if (frame_decode_datagram(frame, frame_len, &h, &body, &net->stats) < 0)
        return;
    if (h.type >= NET_MAX_TYPES || !net->handlers[h.type].dg_fn) {
        net->stats.unknown_type++;
        return;
    }
    char peer[NET_ADDR_LEN];
    format_sockaddr(from, peer, sizeof peer);
    net->handlers[h.type].dg_fn(net->handlers[h.type].dg_ud, peer, body, h.length);
}

int net_send_datagram(struct net *net, const char *addr, uint16_t type, const void *body, size_t len)
{
    if (len + FRAME_HEADER_LEN > FRAME_MAX_DATAGRAM)
        return ID_ETOOBIG;
    struct sockaddr_storage sa;
    if (net_parse_addr(addr, &sa) < 0)
        return ID_EINVAL;
    uint8_t dgram[FRAME_MAX_DATAGRAM];
    if (len)
        memcpy(dgram + FRAME_HEADER_LEN, body, len);
    frame_encode_header(dgram, type, 0, 0, dgram + FRAME_HEADER_LEN, (uint32_t)len);
    uv_buf_t b = uv_buf_init((char *)dgram, (unsigned)(FRAME_HEADER_LEN + len));
    uint8_t sealed[FRAME_MAX_DATAGRAM + SEAL_DGRAM_OVERHEAD];
    if (net->sealed)
        b = uv_buf_init((char *)sealed, (unsigned)seal_datagram(&net->keys, &net->udp_sender, id_wall_ms(),
                                                                 dgram, b.len, sealed));
    /* Gossip is best effort: a full socket buffer drops the datagram like a
     * lossy network would, and the protocol copes. */
    int rc = uv_udp_try_send(&net->udp, &b, 1, (struct sockaddr *)&sa);
    if (rc >= 0)
        net->udp_sent += b.len;
    return 0;
}

uint64_t net_udp_bytes_sent(const struct net *net) { return net->udp_sent; }
uint64_t net_udp_bytes_received(const struct net *net) { return net->udp_received; }

/* ---- lifecycle ------------------------------------------------------------------- */

int net_create(uv_loop_t *loop, const struct net_config *cfg, struct net **out)
{
    struct sockaddr_storage sa;
    if (!cfg->addr || net_parse_addr(cfg->addr, &sa) < 0)
        return ID_EINVAL;
    struct net *net = calloc(1, sizeof *net);
    if (!net)
        return ID_ENOMEM;
    net->loop = loop;
    net->cfg = *cfg;
    snprintf(net->addr, sizeof net->addr, "%s", cfg->addr);
    net->cfg.addr = net->addr;
    if (!net->cfg.call_timeout_ms)
        net->cfg.call_timeout_ms = 5000;
    if (!net->cfg.idle_close_ms)
        net->cfg.idle_close_ms = 60000;
    if (!net->cfg.max_connections)
        net->cfg.max_connections = 1024;
    if (!net->cfg.handshake_timeout_ms)
        net->cfg.handshake_timeout_ms = 5000;
    if (!net->cfg.frame_timeout_ms)
        net->cfg.frame_timeout_ms = 30000;
    if (!net->cfg.max_per_source)
        net->cfg.max_per_source = 256;
    if (!net->cfg.max_buffered)
        net->cfg.max_buffered = 256u << 20;
    if (cfg->keys) {
        if (seal_init() < 0 || cfg->keys->n == 0) {
            free(net);
            return ID_EINVAL;
        }
        net->keys = *cfg->keys;
        net->sealed = 1;
        seal_sender_init(&net->udp_sender);
    }
    net->cfg.keys = NULL; /* the copy above is the one used */
    net->next_req_id = 1;
    uv_idle_init(loop, &net->flush);
    net->flush.data = net;
    net->open_handles++;
    *out = net;
    return 0;
}

int net_start(struct net *net)
{
    struct sockaddr_storage sa;
    net_parse_addr(net->addr, &sa);
    uv_tcp_init(net->loop, &net->listener);
    net->listener.data = net;
    net->open_handles++;
    uv_udp_init(net->loop, &net->udp);
    net->udp.data = net;
    net->open_handles++;
    uv_timer_init(net->loop, &net->idle_timer);
    net->idle_timer.data = net;
    net->open_handles++;
    net->started = 1;

    int rc = uv_tcp_bind(&net->listener, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&net->listener, 512, on_accept);
    if (rc < 0) {
        snprintf(net->errmsg, sizeof net->errmsg, "cannot listen on TCP %s: %s", net->addr,
                 uv_strerror(rc));
        return uv_to_id(rc);
    }
    rc = uv_udp_bind(&net->udp, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_udp_recv_start(&net->udp, on_udp_alloc, on_udp_recv);
    if (rc < 0) {
        snprintf(net->errmsg, sizeof net->errmsg, "cannot bind UDP %s: %s", net->addr,
                 uv_strerror(rc));
        return uv_to_id(rc);
    }
    /* The same timer checks the bounds, at a quarter of the shortest. */
    uint64_t every = net->cfg.idle_close_ms;
    if (every > net->cfg.handshake_timeout_ms)
        every = net->cfg.handshake_timeout_ms;
    if (every > net->cfg.frame_timeout_ms)
        every = net->cfg.frame_timeout_ms;
    every = every / 4 ? every / 4 : 1;
    if (every > NET_BOUNDS_CHECK_MS)
        every = NET_BOUNDS_CHECK_MS;
    uv_timer_start(&net->idle_timer, on_idle_timer, every, every);
    return 0;
}

static void handle_closed(uv_handle_t *h) { net_handle_released(h->data); }

void net_close(struct net *net, void (*done)(void *ud), void *ud)
{
    net->closing = 1;
    net->close_done = done;
    net->close_ud = ud;
    while (net->conns)
        conn_close(net->conns, ID_ESHUTDOWN);
    uv_close((uv_handle_t *)&net->flush, handle_closed);
    if (net->started) {
        uv_close((uv_handle_t *)&net->listener, handle_closed);
        uv_close((uv_handle_t *)&net->udp, handle_closed);
        uv_close((uv_handle_t *)&net->idle_timer, handle_closed);
    }
}

const char *net_errmsg(const struct net *net) { return net->errmsg; }
const char *net_addr(const struct net *net) { return net->addr; }
const struct frame_stats *net_frame_stats(const struct net *net) { return &net->stats; }

size_t net_open_connections(const struct net *net, size_t *incoming)
{
    if (incoming)
        *incoming = net->n_incoming;
    return net->n_incoming + net->n_outgoing;
}

int net_on_request(struct net *net, uint16_t type, net_request_fn fn, void *ud)
{
    if (type >= NET_MAX_TYPES)
        return ID_EINVAL;
    if (net->handlers[type].req_fn)
        return ID_EEXIST;
    net->handlers[type].req_fn = fn;
    net->handlers[type].req_ud = ud;
    return 0;
}

int net_on_datagram(struct net *net, uint16_t type, net_datagram_fn fn, void *ud)
{
    if (type >= NET_MAX_TYPES)
        return ID_EINVAL;
    if (net->handlers[type].dg_fn)
        return ID_EEXIST;
    net->handlers[type].dg_fn = fn;
    net->handlers[type].dg_ud = ud;
    return 0;
}

int net_call(struct net *net, const char *addr, uint16_t type, const void *body, size_t len,
             uint32_t timeout_ms, net_response_fn fn, void *ud)
{
    if (net->closing)
        return ID_ESHUTDOWN;
    if (len > FRAME_MAX_BODY)
        return ID_ETOOBIG;
    int err = 0;
    struct net_conn *c = conn_get(net, addr, &err);
    if (!c)
        return err;
    if (c->connected &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + c->corked_bytes > NET_MAX_WRITE_QUEUE)
        return ID_EBUSY;
    struct net_call *call = calloc(1, sizeof *call);
    if (!call)
        return ID_ENOMEM;
    call->net = net;
    call->conn = c;
    call->req_id = net->next_req_id++;
    call->fn = fn;
    call->ud = ud;
    if (call_tab_insert(net, call) < 0) {
        free(call);
        return ID_ENOMEM;
    }
    uv_timer_init(net->loop, &call->timer);
    call->timer.data = call;
    net->open_handles++;
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    /* The deadline counts from now, not from the loop's cached time, which lags
     * by however long the current callback has been running. */
    uv_update_time(net->loop);
    uv_timer_start(&call->timer, on_call_timeout, timeout_ms ? timeout_ms : net->cfg.call_timeout_ms, 0);
    c->last_used_ms = id_now_ms();
    struct pending_write *w = frame_build(type, 0, call->req_id, body, len);
    if (!w) {
        call_fail_later(call, ID_ENOMEM, "out of memory");
        return 0;
    }
    /* A write failure closes the connection, which fails the call through its
     * callback later: never from inside net_call. */
    conn_write(c, w);
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
