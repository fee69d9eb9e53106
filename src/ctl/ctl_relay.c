/* ctl_relay.c — the raft transport of ctl_relay.h: connections on PORT+1,
 * their handshakes (cluster key, then id and address) under a deadline and a
 * byte bound, and the relay between each TCP connection and the socket pair
 * libraft reads and writes. libraft connects to send and accepts to receive,
 * so data flows one way: the connecting side seals what libraft writes, the
 * accepting side opens, checks and hands it to libraft. Either side ending
 * ends the connection.
 *
 * Delay: the relay writes what it reads at once (no timers, no batching) and
 * the TCP socket is tuned like libraft's own was (ctl_tcp_tune_fd). */
#include "ctl/ctl_relay.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/array.h"
#include "base/err.h"
#include "base/log.h"
#include "ctl/ctl_tcp.h"

enum stage { ST_KEY, ST_HELLO, ST_RELAY };

struct relay_conn {
    struct ctl_relay *t;
    struct relay_conn *next;
    uv_tcp_t tcp;
    uv_pipe_t pipe; /* our end of the socket pair */
    uv_timer_t timer;
    int open_handles;
    int pipe_inited;
    int closing;
    int outbound;
    enum stage stage;
    int sealed;
    struct seal_session ss;
    uint8_t hello[SEAL_HELLO_LEN];
    /* Bytes read from TCP not yet used: the key handshake, whole records. */
    uint8_t *in;
    size_t in_len, in_cap;
    /* Plaintext of our handshake (id, address) as it arrives. */
    uint8_t hs[RAFT_WIRE_HELLO_FIXED + RAFT_WIRE_ADDR_MAX];
    size_t hs_len;
    struct raft_wire_scan scan;
    uint64_t peer_id;
    char peer_ip[INET6_ADDRSTRLEN];
    struct raft_uv_connect *req; /* outbound, until libraft has its stream */
};

struct relay_write {
    uv_write_t w;
    struct relay_conn *c;
    uint8_t data[];
};

static struct ctl_relay *relay_of(struct raft_uv_transport *outer)
{
    return (struct ctl_relay *)((char *)outer - offsetof(struct ctl_relay, outer));
}

/* ---- life of a connection ------------------------------------------------ */

static void maybe_closed(struct ctl_relay *t)
{
    if (t->closing && !t->conns && !t->listening && t->close_cb) {
        raft_uv_transport_close_cb cb = t->close_cb;
        t->close_cb = NULL;
        cb(&t->outer);
    }
}

static void conn_unlink(struct relay_conn *c)
{
    for (struct relay_conn **p = &c->t->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            return;
        }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct relay_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    struct ctl_relay *t = c->t;
    conn_unlink(c);
    free(c->in);
    memset(&c->ss, 0, sizeof c->ss);
    free(c);
    maybe_closed(t);
}

/* Ends the connection; status is what libraft's pending connect hears. */
static void conn_close(struct relay_conn *c, int status)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->req) {
        struct raft_uv_connect *req = c->req;
        c->req = NULL;
        req->cb(req, NULL, status);
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->pipe_inited)
        uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
}

/* A stranger's connection refused: counted, logged with its address. */
static void conn_refuse(struct relay_conn *c, uint64_t *counter, const char *why)
{
    (*counter)++;
    LOG_WARN("ctl", "raft port: %s from %s (id %llu): connection closed", why,
             c->peer_ip[0] ? c->peer_ip : "?", (unsigned long long)c->peer_id);
    conn_close(c, RAFT_NOCONNECTION);
}

static void on_timeout(uv_timer_t *timer)
{
    struct relay_conn *c = timer->data;
    if (c->outbound)
        conn_close(c, RAFT_NOCONNECTION);
    else
        conn_refuse(c, &c->t->stats.timed_out, "handshake not finished in time");
}

static struct relay_conn *conn_new(struct ctl_relay *t, int outbound)
{
    struct relay_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->t = t;
    c->outbound = outbound;
    c->sealed = t->keys != NULL;
    c->stage = c->sealed ? ST_KEY : ST_HELLO;
    uv_tcp_init(t->loop, &c->tcp);
    uv_timer_init(t->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = t->conns;
    t->conns = c;
    uv_timer_start(&c->timer, on_timeout, CTL_RELAY_HANDSHAKE_MS, 0);
    return c;
}

/* ---- writing ------------------------------------------------------------- */

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* Reading one side resumes once the other side's queue is below the bound. */
static void on_written(uv_write_t *w, int status)
{
    struct relay_write *rw = (struct relay_write *)w;
    struct relay_conn *c = rw->c;
    free(rw);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->stage != ST_RELAY)
        return;
    if (c->outbound && c->tcp.write_queue_size < CTL_RELAY_QUEUE_MAX)
        uv_read_start((uv_stream_t *)&c->pipe, alloc_buf, on_pipe_read);
    if (!c->outbound && c->pipe.write_queue_size < CTL_RELAY_QUEUE_MAX)
        uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_tcp_read);
}

static int write_to(struct relay_conn *c, uv_stream_t *s, const uint8_t *p, size_t n, int seal)
{
    size_t room = seal ? n + SEAL_RECORD_OVERHEAD : n;
    struct relay_write *rw = malloc(sizeof *rw + room);
    if (!rw)
        return ID_ENOMEM;
    rw->c = c;
    if (seal) {
        memcpy(rw->data + SEAL_RECORD_LEN_BYTES, p, n);
        seal_record(&c->ss.tx, rw->data, (uint32_t)n);
    } else {
        memcpy(rw->data, p, n);
    }
    uv_buf_t b = uv_buf_init((char *)rw->data, (unsigned)room);
    int rc = uv_write(&rw->w, s, &b, 1, on_written);
    if (rc < 0) {
        free(rw);
        return ID_EIO;
    }
    return 0;
}

/* Plaintext towards the peer: sealed in chunks when keyed. */
static int send_plain(struct relay_conn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t k = n < CTL_RELAY_CHUNK ? n : CTL_RELAY_CHUNK;
        int rc = write_to(c, (uv_stream_t *)&c->tcp, p, k, c->sealed);
        if (rc < 0)
            return rc;
        p += k;
        n -= k;
    }
    return 0;
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(CTL_RELAY_CHUNK);
    buf->len = buf->base ? CTL_RELAY_CHUNK : 0;
}

/* ---- the socket pair handed to libraft ----------------------------------- */

/* Creates the pair; *lib gets libraft's end (libraft frees it with free()). */
static int open_pair(struct relay_conn *c, uv_stream_t **lib)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        return ID_EIO;
    uv_pipe_t *p = malloc(sizeof *p);
    if (!p) {
        close(fds[0]);
        close(fds[1]);
        return ID_ENOMEM;
    }
    uv_pipe_init(c->t->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->pipe_inited = 1;
    c->open_handles++;
    uv_pipe_init(c->t->loop, p, 0);
    if (uv_pipe_open(&c->pipe, fds[0]) < 0 || uv_pipe_open(p, fds[1]) < 0) {
        close(fds[1]);
        uv_close((uv_handle_t *)p, (uv_close_cb)free);
        return ID_EIO;
    }
    *lib = (uv_stream_t *)p;
    return 0;
}

/* ---- inbound: TCP -> checks -> libraft ---------------------------------- */

static void policy_for(struct relay_conn *c, struct raft_wire_policy *pol)
{
    pol->current_term = 0;
    pol->verified_voter = 0;
    c->t->policy(c->t->policy_ud, c->peer_id, c->peer_ip, pol);
}

/* libraft's bytes from the peer, after the handshake: checked, then passed. */
static void deliver(struct relay_conn *c, const uint8_t *p, size_t n)
{
    struct raft_wire_policy pol;
    policy_for(c, &pol);
    enum raft_wire_verdict v = raft_wire_scan_feed(&c->scan, p, n, &pol, NULL);
    if (v == RAFT_WIRE_TERM_JUMP) {
        LOG_WARN("ctl",
                 "raft port: term %llu from %s (id %llu), not a verified voter, is more "
                 "than %u beyond ours (%llu)",
                 (unsigned long long)c->scan.term, c->peer_ip, (unsigned long long)c->peer_id,
                 RAFT_WIRE_TERM_SLACK, (unsigned long long)pol.current_term);
        conn_refuse(c, &c->t->stats.term_jump, "term jump");
        return;
    }
    if (v != RAFT_WIRE_OK) {
        LOG_WARN("ctl", "raft port: message refused (%s): type %llu, header %llu bytes",
                 raft_wire_verdict_name(v), (unsigned long long)c->scan.type,
                 (unsigned long long)c->scan.hlen);
        conn_refuse(c, &c->t->stats.bad_frame, raft_wire_verdict_name(v));
        return;
    }
    if (write_to(c, (uv_stream_t *)&c->pipe, p, n, 0) < 0) {
        conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->pipe.write_queue_size >= CTL_RELAY_QUEUE_MAX)
        uv_read_stop((uv_stream_t *)&c->tcp);
}

/* Our handshake's plaintext; once complete the rest goes to deliver(). */
static void hello_bytes(struct relay_conn *c, const uint8_t *p, size_t n)
{
    while (n > 0 && c->stage == ST_HELLO && !c->closing) {
        size_t k = sizeof c->hs - c->hs_len;
        k = k < n ? k : n;
        memcpy(c->hs + c->hs_len, p, k);
        struct raft_wire_hello h;
        long used = raft_wire_hello_decode(c->hs, c->hs_len + k, &h);
        if (used < 0) {
            conn_refuse(c, &c->t->stats.bad_handshake, id_strerror((int)used));
            return;
        }
        if (used == 0) {
            c->hs_len += k;
            if (c->hs_len == sizeof c->hs)
                conn_refuse(c, &c->t->stats.bad_handshake, "handshake too long");
            return;
        }
        size_t from_p = (size_t)used - c->hs_len;
        p += from_p;
        n -= from_p;
        c->peer_id = h.id;
        uv_stream_t *lib;
        if (open_pair(c, &lib) < 0) {
            conn_close(c, RAFT_NOCONNECTION);
            return;
        }
        uv_timer_stop(&c->timer);
        c->stage = ST_RELAY;
        c->t->accept_cb(&c->t->outer, h.id, h.addr, lib);
        /* Reading the pipe only to notice libraft closing its end. */
        uv_read_start((uv_stream_t *)&c->pipe, alloc_buf, on_pipe_read);
    }
    if (n > 0 && !c->closing)
        deliver(c, p, n);
}

/* Plaintext received (opened when keyed), whatever the stage. */
static void plain_in(struct relay_conn *c, const uint8_t *p, size_t n)
{
    if (c->outbound) {
        conn_refuse(c, &c->t->stats.bad_frame, "data on an outgoing raft connection");
        return;
    }
    if (c->stage == ST_HELLO)
        hello_bytes(c, p, n);
    else
        deliver(c, p, n);
}

static int in_append(struct relay_conn *c, const uint8_t *p, size_t n)
{
    if (ARRAY_RESERVE(c->in, c->in_cap, c->in_len, n, 4096) < 0)
        return ID_ENOMEM;
    memcpy(c->in + c->in_len, p, n);
    c->in_len += n;
    return 0;
}

static void key_handshake(struct relay_conn *c);

/* Sealed records from c->in, opened one by one. */
static void open_records(struct relay_conn *c)
{
    size_t off = 0;
    while (!c->closing && c->in_len - off >= SEAL_RECORD_LEN_BYTES) {
        uint32_t len = seal_record_frame_len(c->in + off);
        if (len == 0 || len > CTL_RELAY_CHUNK) {
            conn_refuse(c, &c->t->stats.bad_frame, "sealed record of a wrong size");
            return;
        }
        if (c->in_len - off < len + SEAL_RECORD_OVERHEAD)
            break;
        if (seal_open_record(&c->ss.rx, c->in + off, len) < 0) {
            conn_refuse(c, &c->t->stats.bad_auth, "record fails to open (wrong cluster key?)");
            return;
        }
        plain_in(c, c->in + off + SEAL_RECORD_LEN_BYTES, len);
        off += len + SEAL_RECORD_OVERHEAD;
    }
    if (c->closing)
        return;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct relay_conn *c = s->data;
    if (n < 0) {
        free(buf->base);
        conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->closing || n == 0) {
        free(buf->base);
        return;
    }
    if (!c->sealed) {
        plain_in(c, (uint8_t *)buf->base, (size_t)n);
        free(buf->base);
        return;
    }
    int rc = in_append(c, (uint8_t *)buf->base, (size_t)n);
    free(buf->base);
    if (rc < 0) {
        conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (c->stage == ST_KEY)
        key_handshake(c);
    if (!c->closing && c->stage != ST_KEY)
        open_records(c);
}

/* ---- outbound: libraft -> TCP -------------------------------------------- */

static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct relay_conn *c = s->data;
    if (n < 0) {
        free(buf->base);
        conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (!c->closing && n > 0 && c->outbound) {
        if (send_plain(c, (uint8_t *)buf->base, (size_t)n) < 0)
            conn_close(c, RAFT_NOCONNECTION);
        else if (c->tcp.write_queue_size >= CTL_RELAY_QUEUE_MAX)
            uv_read_stop(s);
    }
    free(buf->base);
}

/* The handshake is done on the connecting side: libraft gets its stream. */
static void outbound_ready(struct relay_conn *c)
{
    uint8_t hs[RAFT_WIRE_HELLO_FIXED + RAFT_WIRE_ADDR_MAX];
    long n = raft_wire_hello_encode(c->t->id, c->t->address, hs);
    uv_stream_t *lib;
    if (n < 0 || send_plain(c, hs, (size_t)n) < 0 || open_pair(c, &lib) < 0) {
        conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    uv_timer_stop(&c->timer);
    c->stage = ST_RELAY;
    struct raft_uv_connect *req = c->req;
    c->req = NULL;
    uv_read_start((uv_stream_t *)&c->pipe, alloc_buf, on_pipe_read);
    req->cb(req, lib, 0);
}

/* The key handshake from c->in: the acceptor reads a hello and replies; the
 * connector reads the reply. */
static void key_handshake(struct relay_conn *c)
{
    size_t need = c->outbound ? SEAL_REPLY_LEN : SEAL_HELLO_LEN;
    if (c->in_len < need)
        return;
    int rc;
    if (c->outbound) {
        rc = seal_finish(c->t->keys, c->hello, c->in, &c->ss);
    } else {
        uint8_t reply[SEAL_REPLY_LEN];
        rc = seal_accept(c->t->keys, c->in, reply, &c->ss);
        if (rc == 0)
            rc = write_to(c, (uv_stream_t *)&c->tcp, reply, sizeof reply, 0);
    }
    if (rc < 0) {
        if (rc == ID_EAUTH)
            conn_refuse(c, &c->t->stats.bad_auth, "wrong cluster key");
        else
            conn_refuse(c, &c->t->stats.bad_handshake, "not a key handshake");
        return;
    }
    memmove(c->in, c->in + need, c->in_len - need);
    c->in_len -= need;
    c->stage = ST_HELLO;
    if (c->outbound)
        outbound_ready(c);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct relay_conn *c = req->data;
    free(req);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        ctl_tcp_tune_fd(fd, c->t->rto_min_us, &c->t->warned);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_tcp_read);
    if (!c->sealed) {
        outbound_ready(c);
        return;
    }
    seal_hello(c->t->keys, c->hello);
    if (write_to(c, (uv_stream_t *)&c->tcp, c->hello, sizeof c->hello, 0) < 0)
        conn_close(c, RAFT_NOCONNECTION);
}

/* ---- the transport interface --------------------------------------------- */

static int parse_addr(const char *address, struct sockaddr_in *sa)
{
    char host[RAFT_WIRE_ADDR_MAX];
    snprintf(host, sizeof host, "%s", address);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -1;
    *colon = '\0';
    return uv_ip4_addr(host, atoi(colon + 1), sa) == 0 ? 0 : -1;
}

static int relay_init(struct raft_uv_transport *outer, raft_id id, const char *address)
{
    struct ctl_relay *t = relay_of(outer);
    if (strlen(address) + 1 > sizeof t->address - 8) {
        snprintf(outer->errmsg, sizeof outer->errmsg, "address too long");
        return RAFT_INVALID;
    }
    t->id = id;
    snprintf(t->address, sizeof t->address, "%s", address);
    return 0;
}

static size_t same_source(struct ctl_relay *t, const char *ip)
{
    size_t n = 0;
    for (struct relay_conn *c = t->conns; c; c = c->next)
        if (!c->outbound && !c->closing && strcmp(c->peer_ip, ip) == 0)
            n++;
    return n;
}

static void on_listen(uv_stream_t *l, int status)
{
    struct ctl_relay *t = l->data;
    if (status < 0 || t->closing)
        return;
    struct relay_conn *c = conn_new(t, 0);
    if (!c)
        return;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, 0);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer_ip, sizeof c->peer_ip);
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer_ip, sizeof c->peer_ip);
    }
    if (same_source(t, c->peer_ip) > CTL_RELAY_MAX_PER_SOURCE) {
        conn_refuse(c, &t->stats.over_source, "too many connections from one source");
        return;
    }
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        ctl_tcp_tune_fd(fd, t->rto_min_us, &t->warned);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_tcp_read);
}

static int relay_listen(struct raft_uv_transport *outer, raft_uv_accept_cb cb)
{
    struct ctl_relay *t = relay_of(outer);
    struct sockaddr_in sa;
    t->accept_cb = cb;
    if (parse_addr(t->address, &sa) < 0)
        return RAFT_INVALID;
    uv_tcp_init(t->loop, &t->listener);
    t->listener.data = t;
    t->listening = 1;
    if (uv_tcp_bind(&t->listener, (struct sockaddr *)&sa, 0) < 0 ||
        uv_listen((uv_stream_t *)&t->listener, 64, on_listen) < 0) {
        snprintf(outer->errmsg, sizeof outer->errmsg, "cannot listen on %s", t->address);
        return RAFT_IOERR;
    }
    return 0;
}

static int relay_connect(struct raft_uv_transport *outer, struct raft_uv_connect *req, raft_id id,
                         const char *address, raft_uv_connect_cb cb)
{
    struct ctl_relay *t = relay_of(outer);
    struct sockaddr_in sa;
    (void)id;
    if (parse_addr(address, &sa) < 0)
        return RAFT_NOCONNECTION;
    uv_connect_t *cr = malloc(sizeof *cr);
    struct relay_conn *c = cr ? conn_new(t, 1) : NULL;
    if (!c) {
        free(cr);
        return RAFT_NOMEM;
    }
    req->cb = cb;
    cr->data = c;
    if (uv_tcp_connect(cr, &c->tcp, (struct sockaddr *)&sa, on_connected) < 0) {
        free(cr);
        conn_close(c, 0);
        return RAFT_NOCONNECTION;
    }
    c->req = req;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct ctl_relay *t = h->data;
    t->listening = 0;
    maybe_closed(t);
}

static void relay_close(struct raft_uv_transport *outer, raft_uv_transport_close_cb cb)
{
    struct ctl_relay *t = relay_of(outer);
    t->closing = 1;
    t->close_cb = cb;
    for (struct relay_conn *c = t->conns; c; c = c->next)
        conn_close(c, RAFT_CANCELED);
    if (t->listening)
        uv_close((uv_handle_t *)&t->listener, on_listener_closed);
    else
        maybe_closed(t);
}

void ctl_relay_init(struct ctl_relay *t, uv_loop_t *loop, unsigned rto_min_us,
                    const struct seal_keyring *keys, ctl_relay_policy_fn policy, void *ud)
{
    memset(t, 0, sizeof *t);
    t->loop = loop;
    t->rto_min_us = rto_min_us;
    t->keys = keys;
    t->policy = policy;
    t->policy_ud = ud;
    t->outer.version = 1;
    t->outer.impl = t;
    t->outer.init = relay_init;
    t->outer.listen = relay_listen;
    t->outer.connect = relay_connect;
    t->outer.close = relay_close;
}
