/* ctl_tcp.c — the socket tuning of every raft connection (ctl_relay.c makes
 * and accepts them), for heartbeats on a lossy network (see ctl_tcp.h and
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
#include <string.h>
#include <sys/socket.h>

#include "base/err.h"
#include "base/log.h"

#ifndef TCP_RTO_MIN_US
#define TCP_RTO_MIN_US 45 /* Linux 6.15 and later */
#endif

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
        LOG_WARN("ctl",
                 "cannot lower the raft connections' minimum retransmission timeout "
                 "(%s): packet loss will cause more elections",
                 strerror(errno));
    }
}
