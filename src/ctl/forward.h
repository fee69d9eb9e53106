/* forward.h — coordinator requests reach the leader from any node.
 *
 * A request of a ctl-managed message type (kv diagnostics, SDFS, models and
 * jobs) may arrive at any node. If this node is the serving leader,
 * the type's handler runs here. Otherwise the request is wrapped in a
 * CtlForward and sent over net_call towards the leader, and the leader's answer
 * (its own response type, or its ErrorReply) is relayed to the caller
 * unchanged:
 *
 *   - a voter sends it to the leader it knows from raft;
 *   - a non-voter, which has no raft view, sends it to a voter (its --coordinators
 *     list, addresses from membership), which relays it (one more hop);
 *   - ID_ENOTLEADER answers carry a leader hint, which is tried next.
 *
 * An attempt sent straight to the believed leader times out after 500 ms (a leader
 * cut off by a partition drops packets), one through a relaying voter after
 * 1.5 s; the request is then retried elsewhere. With no leader known (an election under way) it retries every 50 ms until the
 * request's wait budget (default 3 s) runs out, then answers ID_ENOLEADER
 * ("no coordinator"). Requests are retried after ID_ENOTLEADER, ID_ENOLEADER,
 * a refused connection, one that closed (a leader that died) or that timed out
 * — so a command
 * forwarded this way may run twice, and handlers keep commands idempotent
 * (docs/control-plane.md). Relays are bounded (CTL_FWD_MAX_HOPS) so stale views
 * cannot loop.
 *
 * Layers do not use this directly: they register their requests with the
 * leader-service layer (service.h), which serves them through it. The node
 * creates the forwarder (node_ctl.c) and hands it to the layers.
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_CTL_FORWARD_H
#define IDUNNO_CTL_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ctl;
struct ctl_fwd;
struct ctl_voter;
struct member;
struct net;
struct net_request;

#define CTL_FWD_MAX_HOPS 3
#define CTL_FWD_WAIT_MS 3000
#define CTL_FWD_RETRY_MS 50
/* An attempt sent straight to the (believed) leader gives up after this: a
 * leader cut off from the network drops packets rather than refusing them. */
#define CTL_FWD_LEADER_TIMEOUT_MS 500
/* An attempt through a relaying voter gives up after this (the voter may be
 * cut off too); the relay itself waits for a leader 200 ms less. */
#define CTL_FWD_RELAY_TIMEOUT_MS 1500

/* Runs on the serving leader; owns req and answers it exactly once (as a
 * net_request_fn). body is valid during the call only. */
typedef void (*ctl_fwd_handler)(void *ud, struct net_request *req, const uint8_t *body, size_t len);

struct ctl_fwd_config {
    struct net *net;
    struct ctl *ctl;
    struct member *member; /* to find voters' addresses; may be NULL */
    const char *self_name;
    const struct ctl_voter *voters; /* --coordinators; copied */
    size_t n_voters;
    uint32_t wait_ms; /* 0: CTL_FWD_WAIT_MS */
};

/* Creates the forwarder and registers the MSG_CTL_FORWARD_REQ handler on net.
 * Returns 0 or ID_E*; *out owns it (ctl_fwd_destroy). */
int ctl_fwd_create(uv_loop_t *loop, const struct ctl_fwd_config *cfg, struct ctl_fwd **out);

/* Declares `fn` as the leader-side handler of message `type` (for forwarded
 * requests). ID_EEXIST if the type has one. */
int ctl_fwd_add(struct ctl_fwd *f, uint16_t type, ctl_fwd_handler fn, void *ud);

/* ctl_fwd_add, and also registers `type` on net with a handler that serves on
 * the leader and forwards anywhere else. */
int ctl_fwd_serve(struct ctl_fwd *f, uint16_t type, ctl_fwd_handler fn, void *ud);

/* Marks a type added above as long-running (an online inference, which may
 * take seconds on the leader): wait_of(body) is a request's budget in ms (its
 * own deadline, with a margin) instead of the forwarder's wait, and each
 * attempt may take CTL_FWD_LONG_ATTEMPT_MS instead of
 * CTL_FWD_LEADER_TIMEOUT_MS (or the relay's) before it is sent again. The
 * handler must tell a repeat from a new request (the leader's online
 * requests carry a key: sched/coord_online.c), since a slow answer and a
 * cut-off leader look the same from here. Every node must mark the same
 * types (a relay uses the hop's wait). Returns 0 or ID_ENOTFOUND. */
#define CTL_FWD_LONG_ATTEMPT_MS 5000
typedef uint32_t (*ctl_fwd_wait_fn)(const uint8_t *body, size_t len);
int ctl_fwd_set_long(struct ctl_fwd *f, uint16_t type, ctl_fwd_wait_fn wait_of);

/* Forwards one request towards the leader (or serves it, if this node now
 * is). Takes ownership of req; body is copied. For handlers that decide
 * themselves when to forward. */
void ctl_forward(struct ctl_fwd *f, struct net_request *req, uint16_t type, const uint8_t *body,
                 size_t len);

/* The node address of the leader as this node last learned it ("" if none),
 * and a way to tell it (a non-voter's periodic look at a voter's status). */
const char *ctl_fwd_leader_hint(const struct ctl_fwd *f);
void ctl_fwd_set_hint(struct ctl_fwd *f, const char *leader_addr);

/* Tells the forwarder the voters' node addresses as a voter reported them. */
void ctl_fwd_learn_voters(struct ctl_fwd *f, const char *const *addrs, size_t n);

/* Node addresses of the other voters known now (configured and learned);
 * returns how many. */
size_t ctl_fwd_voter_addrs(struct ctl_fwd *f, char (*out)[64], size_t max);

/* Answers every request still being forwarded with ID_ESHUTDOWN; later ones are
 * refused the same way. Call before net_destroy(); a second call does nothing. */
void ctl_fwd_stop(struct ctl_fwd *f);

/* Stops the forwarder if that was not done and frees it once its timers are
 * closed. After net_destroy(): net may still call its handlers until then. */
void ctl_fwd_destroy(struct ctl_fwd *f);

#endif
