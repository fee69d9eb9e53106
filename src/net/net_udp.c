/* net_udp.c — the transport's datagrams (net.h, net_int.h): one UDP socket on
 * the node's address, sealed with the cluster key when there is one, best
 * effort both ways.
 *
 * Threading: everything on the loop thread.
 */
#include "net/net_int.h"

#include <string.h>

#include "base/clock.h"

void net__on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct net *net = h->data;
    buf->base = net->read_buf;
    buf->len = sizeof net->read_buf;
}

void net__on_udp_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
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
        int rc = seal_open_datagram(&net->keys, &net->udp_replay, id_wall_ms(),
                                    (uint8_t *)buf->base, (size_t)nread, &frame, &frame_len);
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
    net__format_sockaddr(from, peer, sizeof peer);
    net->handlers[h.type].dg_fn(net->handlers[h.type].dg_ud, peer, body, h.length);
}

int net_send_datagram(struct net *net, const char *addr, uint16_t type, const void *body,
                      size_t len)
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
        b = uv_buf_init((char *)sealed,
                        (unsigned)seal_datagram(&net->keys, &net->udp_sender, id_wall_ms(), dgram,
                                                b.len, sealed));
    /* Gossip is best effort: a full socket buffer drops the datagram like a
     * lossy network would, and the protocol copes. */
    int rc = uv_udp_try_send(&net->udp, &b, 1, (struct sockaddr *)&sa);
    if (rc >= 0)
        net->udp_sent += b.len;
    return 0;
}

uint64_t net_udp_bytes_sent(const struct net *net)
{
    return net->udp_sent;
}
uint64_t net_udp_bytes_received(const struct net *net)
{
    return net->udp_received;
}
