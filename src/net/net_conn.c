/* net_conn.c — the transport's TCP connections (net.h, net_int.h): connecting,
 * pooling outgoing connections by address, accepting within the per-source and
 * total bounds, the key handshake (seal.h), reading frames and handing them to
 * net_rpc.c, corked writes, and the once-a-second bounds and idle check.
 *
 * Threading: everything on the loop thread.
 */
#include "net/net_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "base/clock.h"
#include "base/log.h"
#include "idunno.pb-c.h"

/* ---- writes ----------------------------------------------------------------- */

/* One malloc holding the write request, header and body (with room to seal
 * them), freed on completion. On a sealed transport the header has no CRC
 * (frame.h): every connection of the node is sealed before a frame leaves.
 * The frame sits after room for the longer, tail record's prefix; a plain
 * record starts 4 bytes later. */
struct pending_write *net__frame_build(const struct net *net, uint16_t type, uint8_t flags,
                                       uint64_t req_id, const void *body, size_t len, uint32_t tail)
{
    struct pending_write *w = malloc(sizeof *w + SEAL_RECORD_TAIL_OVERHEAD + FRAME_HEADER_LEN +
                                     len);
    if (!w)
        return NULL;
    uint8_t *p = (uint8_t *)(w + 1) + SEAL_RECORD_TAIL_PREFIX;
    if (len)
        memcpy(p + FRAME_HEADER_LEN, body, len);
    if (net->sealed)
        frame_encode_header_sealed(p, type, flags, req_id, (uint32_t)len);
    else
        frame_encode_header(p, type, flags, req_id, p + FRAME_HEADER_LEN, (uint32_t)len);
    w->buf = uv_buf_init((char *)p, (unsigned)(FRAME_HEADER_LEN + len));
    w->next = NULL;
    w->frame_len = (uint32_t)(FRAME_HEADER_LEN + len);
    w->tail = net->sealed ? tail : 0;
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
    w->tail = 0;
    return w;
}

/* Seals a frame in place into its record (seal.h). */
static void pending_seal(struct net_conn *c, struct pending_write *w)
{
    uint8_t *rec = (uint8_t *)(w + 1);
    if (w->tail) {
        seal_record_tail(&c->seal.tx, rec, w->frame_len, w->tail);
        w->buf = uv_buf_init((char *)rec, (unsigned)(w->frame_len + SEAL_RECORD_TAIL_OVERHEAD));
        return;
    }
    rec += SEAL_RECORD_TAIL_PREFIX - SEAL_RECORD_LEN_BYTES;
    seal_record(&c->seal.tx, rec, w->frame_len);
    w->buf = uv_buf_init((char *)rec, (unsigned)(w->frame_len + SEAL_RECORD_OVERHEAD));
}

static void on_write(uv_write_t *req, int status)
{
    struct pending_write *w = (struct pending_write *)req;
    struct net_conn *c = req->data;
    free(w);
    if (status < 0 && c && !c->closing)
        net__conn_close(c, net__uv_to_id(status));
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
                net__conn_close(c, net__uv_to_id(done));
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
                net__conn_close(c, net__uv_to_id(rc));
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
    if (net->local)
        net__local_run(net); /* may cork replies and calls: flushed below */
    while (net->corked) {
        struct net_conn *c = net->corked;
        net->corked = c->cork_next;
        c->cork_next = NULL;
        conn_flush(c);
    }
}

void net__flush_arm(struct net *net)
{
    if (!uv_is_active((uv_handle_t *)&net->flush))
        uv_idle_start(&net->flush, on_flush);
}

/* Puts a frame (or raw bytes) on the cork list; frames wait on the queue
 * until the connection is ready, and are sealed as they leave it. */
int net__conn_write(struct net_conn *c, struct pending_write *w)
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
        net__flush_arm(c->net);
    }
    return 0;
}

/* ---- connections ------------------------------------------------------------- */

static void conn_free_cb(uv_handle_t *h)
{
    struct net_conn *c = h->data;
    struct net *net = c->net;
    net->buffered -= c->reader_counted;
    frame_reader_free(&c->reader);
    sodium_memzero(&c->seal, sizeof c->seal);
    free(c);
    net__handle_released(net);
}

void net__conn_close(struct net_conn *c, int reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct net *net = c->net;
    net_link_remove(&net->conns, &c->link);
    if (!c->outgoing)
        net->n_incoming--;
    else
        net->n_outgoing--;
    while (c->calls)
        net__call_fail_later(NET_ENTRY(c->calls, struct net_call), reason ? reason : ID_ECLOSED,
                             reason == ID_ESHUTDOWN      ? "the node is shutting down"
                             : reason == ID_ECONNREFUSED ? "connection refused by the peer"
                             : reason == ID_EAUTH ? "the peer does not hold this node's cluster key"
                                                  : "connection to the peer failed");
    while (c->requests)
        net__request_unlink(
            NET_ENTRY(c->requests,
                      struct net_request)); /* handlers still own them; replies will be dropped */
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
        static const char msg[] =
            "this cluster requires its key (idunno --key-file, $IDUNNO_KEY_FILE)";
        Idunno__ErrorReply er = IDUNNO__ERROR_REPLY__INIT;
        er.code = ID_EAUTH;
        er.message = (char *)msg;
        er.leader = (char *)"";
        uint8_t frame[FRAME_HEADER_LEN + 256];
        size_t len = idunno__error_reply__pack(&er, frame + FRAME_HEADER_LEN);
        frame_encode_header(frame, IDUNNO__MSG_TYPE__MSG_ERROR_REPLY,
                            FRAME_F_RESPONSE | FRAME_F_ERROR, h.req_id, frame + FRAME_HEADER_LEN,
                            (uint32_t)len);
        uv_buf_t b = uv_buf_init((char *)frame, (unsigned)(FRAME_HEADER_LEN + len));
        (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* best effort: we close anyway */
    }
    net__conn_close(c, ID_EAUTH);
}

static void conn_ready(struct net_conn *c);

/* The handshake, from whatever the reader holds. Returns 0 (done or more bytes
 * needed) or ID_E* after closing the connection. */
static int conn_handshake(struct net_conn *c)
{
    struct net *net = c->net;
    const uint8_t *msg = frame_reader_peek(&c->reader);
    if (frame_reader_pending(&c->reader) >= 4 && ((uint32_t)msg[0] << 24 | (uint32_t)msg[1] << 16 |
                                                  (uint32_t)msg[2] << 8 | msg[3]) == FRAME_MAGIC) {
        if (c->outgoing) {
            net->stats.unsealed++;
            LOG_WARN("net", "%s answers without a cluster key: not using it", c->peer);
            net__conn_close(c, ID_EAUTH);
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
            rc = w ? net__conn_write(c, w) : ID_ENOMEM;
        }
    }
    if (rc < 0) {
        if (rc == ID_EAUTH)
            net->stats.bad_auth++;
        else
            net->stats.bad_magic++;
        LOG_WARN("net", "handshake with %s failed: %s", c->peer, id_strerror(rc));
        net__conn_close(c, rc == ID_EAUTH ? ID_EAUTH : ID_EPROTO);
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
            net__conn_close(c, rc == ID_EAUTH ? ID_EAUTH : ID_EPROTO);
            return rc;
        }
        c->partial_since_ms = 0;
        if (h.flags & FRAME_F_RESPONSE) {
            if (c->outgoing)
                net__deliver_response(c, &h, body);
            else
                c->net->stats.bad_body++; /* a response nobody asked for */
        } else {
            net__dispatch_request(c, &h, body);
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
        net__conn_close(c, nread == UV_EOF ? ID_ECLOSED : net__uv_to_id((int)nread));
        return;
    }
    if (nread == 0)
        return;
    if (frame_reader_feed(&c->reader, buf->base, (size_t)nread) < 0) {
        net__conn_close(c, ID_ENOMEM);
        return;
    }
    conn_account(c);
    if (net->buffered > net->cfg.max_buffered) {
        net->stats.over_limit++;
        LOG_WARN("net", "closing %s: read buffers hold %zu bytes, over the %zu limit", c->peer,
                 net->buffered, net->cfg.max_buffered);
        net__conn_close(c, ID_EBUSY);
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
    net_link_push(&net->conns, &c->link);
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
        if (net__conn_write(c, w) < 0) {
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
        net__conn_close(c, net__uv_to_id(status));
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
    if (!w || net__conn_write(c, w) < 0) {
        free(w);
        net__conn_close(c, ID_ENOMEM);
    }
}

struct net_conn *net__conn_get(struct net *net, const char *addr, int *err)
{
    for (struct net_link *l = net->conns; l; l = l->next) {
        struct net_conn *c = NET_ENTRY(l, struct net_conn);
        if (c->outgoing && !c->closing && strcmp(c->peer, addr) == 0)
            return c;
    }
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
        net__conn_close(c, net__uv_to_id(rc));
        *err = net__uv_to_id(rc);
        return NULL;
    }
    return c;
}

void net__on_accept(uv_stream_t *server, int status)
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
        net__conn_close(c, ID_EIO);
        return;
    }
    if (net->cfg.max_connections && net->n_incoming > net->cfg.max_connections) {
        LOG_WARN("net", "refusing a connection: %zu open", net->n_incoming - 1);
        net__conn_close(c, ID_EBUSY);
        return;
    }
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0)
        net__format_sockaddr((struct sockaddr *)&sa, c->peer, sizeof c->peer);
    snprintf(c->source, sizeof c->source, "%.*s",
             (int)(strrchr(c->peer, ':') ? strrchr(c->peer, ':') - c->peer : 0), c->peer);
    size_t same = 0;
    for (struct net_link *l = net->conns; l; l = l->next) {
        const struct net_conn *o = NET_ENTRY(l, struct net_conn);
        same += !o->outgoing && o != c && strcmp(o->source, c->source) == 0;
    }
    if (same >= net->cfg.max_per_source) {
        net->stats.over_limit++;
        LOG_WARN("net", "refusing a connection from %s: it has %zu open", c->source, same);
        net__conn_close(c, ID_EBUSY);
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

void net__on_idle_timer(uv_timer_t *t)
{
    struct net *net = t->data;
    uint64_t now = id_now_ms();
    struct net_link *l = net->conns;
    while (l) {
        struct net_conn *c = NET_ENTRY(l, struct net_conn);
        l = l->next; /* c may be closed, and unlinked, below */
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
            net__conn_close(c, ID_ETIMEDOUT);
        } else if (c->outgoing ? !c->calls && idle > net->cfg.idle_close_ms
                               : !c->requests && idle > 2 * (uint64_t)net->cfg.idle_close_ms) {
            net__conn_close(c, ID_ECLOSED);
        }
    }
}
