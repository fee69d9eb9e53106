/* ctl_tcp.h — the socket tuning of raft connections (ctl_relay.c): no Nagle
 * delay, a low minimum retransmission timeout, linear backoff, so that one
 * lost segment does not hold heartbeats back for an election timeout.
 */
#ifndef IDUNNO_CTL_CTL_TCP_H
#define IDUNNO_CTL_CTL_TCP_H

/* Tunes one raft connection's socket (best effort); rto_min_us 0 leaves the
 * kernel's retransmission timers alone; *warned keeps the warning about an
 * old kernel to one. */
void ctl_tcp_tune_fd(int fd, unsigned rto_min_us, int *warned);

#endif
