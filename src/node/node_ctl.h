/* node_ctl.h — the node's control plane: the ctl instance (src/ctl), the
 * voters named by --coordinators, forwarding of coordinator requests to the
 * leader, and the requests `idunno status`, `ctl-put` and `ctl-get` use.
 *
 * --coordinators NAME[@HOST:PORT],... names the voters (1, 3 or 5). Addresses
 * given with @ are used as they are; the others are learned from membership
 * (the voter's --addr). A voter's first start waits until it knows every
 * voter's address, then bootstraps; later starts recover from DATA/raft at
 * once. Without --coordinators and without --join, a node is a one-voter
 * group of its own.
 */
#ifndef IDUNNO_NODE_NODE_CTL_H
#define IDUNNO_NODE_NODE_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ctl/ctl.h"

struct ctl_fwd;
struct node;

#define NODE_MAX_VOTERS 5

/* What node_ctl.c and ctl_replace.c keep in struct node. Others read only
 * fwd (node.c hands it to the layers that serve coordinator requests). */
struct node_ctl_state {
    struct ctl_fwd *fwd; /* coordinator requests towards the leader (ctl/forward.h) */
    struct ctl_voter voters[NODE_MAX_VOTERS];
    size_t n_voters;
    uv_timer_t timer; /* retries the first start until voters are known */
    int timer_inited;
    int started;
    uint64_t wait_logged;
    uv_timer_t probe; /* non-voters: who leads, asked of a voter every second */
    int probe_inited;
    int probe_busy;
    unsigned probe_next;
    uv_timer_t replace; /* the leader replaces voters that stay failed */
    int replace_inited;
    struct {
        uint64_t id, since; /* monotonic ms since this voter was unknown to membership */
    } missing[8];
    struct {
        /* ctl_replace.c: the leader's own check of a voter membership calls
         * failed: a barrier at index `target` appended at `since` (monotonic
         * ms) in `term`, which that voter should replicate if it is alive. */
        uint64_t id, term, target, since;
        int warned;
    } contact;
};

/* Whether the control plane has started raft (a voter's first start waits
 * for the voters' addresses). */
int node_ctl_started(const struct node *node);

/* Parses a --coordinators value into voters (addresses left empty unless given
 * with @; self's filled from self_addr). Returns the count, or a negative
 * ID_EINVAL with the reason in errmsg. */
int node_ctl_parse_voters(const char *spec, const char *self_name, const char *self_addr,
                          struct ctl_voter *out, size_t max, char *errmsg, size_t errlen);

/* Creates the control plane and registers its requests; starts raft now or
 * once the voters' addresses are known. Returns 0 or ID_E* (node->errmsg). */
int node_ctl_start(struct node *node);

/* First step of shutdown: answers forwarded requests, closes raft. */
void node_ctl_stop(struct node *node);

/* Last step, after the transport closed. */
void node_ctl_destroy(struct node *node);

/* ctl_replace.c: on the serving leader, one step of replacing a voter that
 * stayed failed (called every NODE_CTL_REPLACE_TICK_MS). */
#define NODE_CTL_REPLACE_TICK_MS 500
void node_ctl_replace_tick(struct node *node);
/* Runs the next tick at once (after a change committed). */
void node_ctl_replace_soon(struct node *node);

/* "coordinator", "standby" or "" for the member (name, addr), as this node's
 * control plane sees it. */
const char *node_ctl_role(struct node *node, const char *name, const char *addr);

/* "voter", "standby" or "spare" for a raft role (RAFT_VOTER, ...). */
const char *node_ctl_role_name(int role);

/* The coordinator as this node knows it: from its own raft view or, for a node
 * outside the group, the last leader a voter named. Writes its name ("" when
 * only its address is known) and node HOST:PORT; returns 1 if a leader is
 * known, else 0 (both left empty). */
int node_ctl_leader(struct node *node, char *name, size_t name_len, char *addr, size_t addr_len);

/* The name of the server with raft id `id` or node address `addr` (may be
 * NULL): a voter, or a member whose name hashes to it; "" if unknown. Valid
 * until the next call. */
const char *node_ctl_server_name(struct node *node, uint64_t id, const char *addr);

#endif
