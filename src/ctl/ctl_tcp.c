/* ctl_tcp.c — the raft transport: libraft's own TCP transport (raft_uv_tcp),
 * wrapped so that every connection it makes or accepts is tuned for heartbeats
 * on a lossy network before libraft uses it (see ctl_tcp.h and
 * docs/control-plane.md, "libraft settings").
 *
 * Why: raft messages ride TCP, so one lost segment holds back every later
 * heartbeat on that connection until TCP retransmits it. Linux waits at least
 * its minimum RTO (200 ms) for that — as long as the election timeout — and
 * doubles the wait on each further loss. At 10% loss that was an election
 * every second or so. With a small minimum RTO (the round trip between the
 * nodes is well under a millisecond), linear timeouts for these thin streams
 * and no Nagle delay behind an unacknowledged segment, a loss costs tens of ms.
 */
#include "ctl/ctl_tcp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/err.h"
#include "base/log.h"

#ifndef TCP_RTO_MIN_US
#define TCP_RTO_MIN_US 45 /* Linux 6.15 and later */
#endif

/* One connect request of libraft's, passed on to the inner transport. */
struct ctl_tcp_connect {
    struct raft_uv_connect inner; /* inner.data = this */
    struct raft_uv_connect *outer;
    struct ctl_tcp *t;
};

static struct ctl_tcp *outer_of(struct raft_uv_transport *outer)
{
    return (struct ctl_tcp *)((char *)outer - offsetof(struct ctl_tcp, outer));
}

/* Best effort: a kernel without one of these options keeps its default. */
void ctl_tcp_tune_fd(int fd, unsigned rto_min_us, int *warned)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rto_min_us == 0)
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, &one, sizeof one);
    int us = (int)rto_min_us;
    if (setsockopt(fd, IPPROTO_TCP, TCP_RTO_MIN_US, &us, sizeof us) < 0 && !*warned) {
        *warned = 1;
        LOG_WARN("ctl", "cannot lower the raft connections' minimum retransmission timeout "
                        "(%s): packet loss will cause more elections",
                 strerror(errno));
    }
}

static void ctl_tcp_tune(struct ctl_tcp *t, struct uv_stream_s *stream)
{
    uv_os_fd_t fd;
    if (!stream || uv_fileno((uv_handle_t *)stream, &fd) != 0)
        return;
    ctl_tcp_tune_fd(fd, t->rto_min_us, &t->warned);
}

static int ctl_tcp_init(struct raft_uv_transport *outer, raft_id id, const char *address)
{
    struct ctl_tcp *t = outer_of(outer);
    int rv = t->inner.init(&t->inner, id, address);
    if (rv != 0)
        memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
    return rv;
}

static void ctl_tcp_on_accept(struct raft_uv_transport *inner, raft_id id, const char *address,
                              struct uv_stream_s *stream)
{
    struct ctl_tcp *t = inner->data;
    ctl_tcp_tune(t, stream);
    t->accept_cb(&t->outer, id, address, stream);
}

static int ctl_tcp_listen(struct raft_uv_transport *outer, raft_uv_accept_cb cb)
{
    struct ctl_tcp *t = outer_of(outer);
    t->accept_cb = cb;
    int rv = t->inner.listen(&t->inner, ctl_tcp_on_accept);
    if (rv != 0)
        memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
    return rv;
}

static void ctl_tcp_on_connect(struct raft_uv_connect *inner, struct uv_stream_s *stream, int status)
{
    struct ctl_tcp_connect *req = inner->data;
    struct raft_uv_connect *outer = req->outer;
    if (status == 0)
        ctl_tcp_tune(req->t, stream);
    free(req);
    outer->cb(outer, stream, status);
}

static int ctl_tcp_connect(struct raft_uv_transport *outer, struct raft_uv_connect *req, raft_id id,
                           const char *address, raft_uv_connect_cb cb)
{
    struct ctl_tcp *t = outer_of(outer);
    struct ctl_tcp_connect *w = calloc(1, sizeof *w);
    if (!w)
        return RAFT_NOMEM;
    req->cb = cb;
    w->inner.data = w;
    w->outer = req;
    w->t = t;
    int rv = t->inner.connect(&t->inner, &w->inner, id, address, ctl_tcp_on_connect);
    if (rv != 0) {
        memcpy(outer->errmsg, t->inner.errmsg, sizeof outer->errmsg);
        free(w);
    }
    return rv;
}

static void ctl_tcp_on_close(struct raft_uv_transport *inner)
{
    struct ctl_tcp *t = inner->data;
    if (t->close_cb)
        t->close_cb(&t->outer);
}

static void ctl_tcp_close(struct raft_uv_transport *outer, raft_uv_transport_close_cb cb)
{
    struct ctl_tcp *t = outer_of(outer);
    t->close_cb = cb;
    t->inner.close(&t->inner, ctl_tcp_on_close);
}

int ctl_tcp_init_transport(struct ctl_tcp *t, uv_loop_t *loop, unsigned rto_min_us)
{
    memset(t, 0, sizeof *t);
    t->rto_min_us = rto_min_us;
    t->inner.version = 1;
    int rv = raft_uv_tcp_init(&t->inner, loop);
    if (rv != 0)
        return rv;
    t->inner.data = t; /* libraft sets outer.data for itself; inner's is ours */
    t->outer.version = 1;
    t->outer.impl = t;
    t->outer.init = ctl_tcp_init;
    t->outer.listen = ctl_tcp_listen;
    t->outer.connect = ctl_tcp_connect;
    t->outer.close = ctl_tcp_close;
    return 0;
}

void ctl_tcp_release(struct ctl_tcp *t)
{
    raft_uv_tcp_close(&t->inner);
}
