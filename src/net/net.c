/* net.c — the node's transport (see net.h): framed RPC over TCP and datagrams over
 * UDP on one libuv loop. This file holds addresses, the transport's lifecycle
 * and handler registration; net_conn.c the TCP connections, net_rpc.c calls
 * and requests, net_udp.c datagrams (net_int.h is what they share).
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
 *
 * Threading: everything on the loop thread (net.h).
 */
#include "net/net_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* ---- helpers --------------------------------------------------------------- */

int net__uv_to_id(int uverr)
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

void net__format_sockaddr(const struct sockaddr *sa, char *out, size_t len)
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

/* ---- lifecycle ------------------------------------------------------------------- */

/* Every libuv handle the transport opened counts in open_handles; the transport
 * is freed when the last one is released after net_destroy(). */
void net__handle_released(struct net *net)
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
    net->local_tail = &net->local;
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
        rc = uv_listen((uv_stream_t *)&net->listener, 512, net__on_accept);
    if (rc < 0) {
        snprintf(net->errmsg, sizeof net->errmsg, "cannot listen on TCP %s: %s", net->addr,
                 uv_strerror(rc));
        return net__uv_to_id(rc);
    }
    rc = uv_udp_bind(&net->udp, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_udp_recv_start(&net->udp, net__on_udp_alloc, net__on_udp_recv);
    if (rc < 0) {
        snprintf(net->errmsg, sizeof net->errmsg, "cannot bind UDP %s: %s", net->addr,
                 uv_strerror(rc));
        return net__uv_to_id(rc);
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
    uv_timer_start(&net->idle_timer, net__on_idle_timer, every, every);
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    net__handle_released(h->data);
}

void net_destroy(struct net *net, void (*done)(void *ud), void *ud)
{
    if (!net)
        return;
    net->closing = 1;
    net->close_done = done;
    net->close_ud = ud;
    while (net->conns)
        net__conn_close(NET_ENTRY(net->conns, struct net_conn), ID_ESHUTDOWN);
    net__local_stop(net);
    uv_close((uv_handle_t *)&net->flush, handle_closed);
    if (net->started) {
        uv_close((uv_handle_t *)&net->listener, handle_closed);
        uv_close((uv_handle_t *)&net->udp, handle_closed);
        uv_close((uv_handle_t *)&net->idle_timer, handle_closed);
    }
}

const char *net_errmsg(const struct net *net)
{
    return net->errmsg;
}
const char *net_addr(const struct net *net)
{
    return net->addr;
}
const struct frame_stats *net_frame_stats(const struct net *net)
{
    return &net->stats;
}

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

int net_accept_tail(struct net *net, uint16_t type)
{
    if (type >= NET_MAX_TYPES || !net->handlers[type].req_fn)
        return ID_EINVAL;
    net->handlers[type].takes_tail = 1;
    return 0;
}

const struct seal_keyring *net_keys(const struct net *net)
{
    return net->sealed ? &net->keys : NULL;
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
