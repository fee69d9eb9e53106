/* ctl_tcp.h — the raft transport of ctl_uv.c: libraft's TCP transport with
 * every connection tuned for small, latency-bound messages (no Nagle delay, a
 * low minimum retransmission timeout, linear backoff), so that one lost
 * segment does not hold heartbeats back for an election timeout.
 */
#ifndef IDUNNO_CTL_CTL_TCP_H
#define IDUNNO_CTL_CTL_TCP_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

struct ctl_tcp {
    struct raft_uv_transport outer; /* handed to raft_uv_init */
    struct raft_uv_transport inner; /* raft_uv_tcp */
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    unsigned rto_min_us; /* 0: leave the kernel's retransmission timers alone */
    int warned;
};

/* The tuning of one raft connection's socket (best effort); *warned keeps
 * the warning about an old kernel to one. */
void ctl_tcp_tune_fd(int fd, unsigned rto_min_us, int *warned);

/* Sets up the transport on loop. Returns 0 or a RAFT_* code. */
int ctl_tcp_init_transport(struct ctl_tcp *t, uv_loop_t *loop, unsigned rto_min_us);

/* Frees the inner transport; after libraft closed it (raft_uv_close). */
void ctl_tcp_release(struct ctl_tcp *t);

#endif
