/* ctl.h — the control plane: a Raft group (libraft) whose leader is the
 * coordinator, driving the replicated state machine of sm.h.
 *
 * One struct ctl per node. Voters (named by --coordinators) replicate the log
 * and vote; the leader is the coordinator, the others are standbys. Every node
 * runs one, voter or not, so a member can later be promoted in place of a
 * failed voter (docs/control-plane.md).
 *
 * What it gives the layers above:
 *   - ctl_propose(): append a typed, versioned command; its callback runs once,
 *     when the command has been committed and applied here (with the apply
 *     result), or when it failed: ID_ENOTLEADER (this node is not, or stopped
 *     being, the leader — a command that failed after it was appended may
 *     still commit under the next leader, so commands are idempotent or carry
 *     their own ids), ID_ETIMEDOUT, ID_ESHUTDOWN.
 *   - ctl_read_barrier(): linearizable reads. The callback runs once every
 *     command committed before the call has been applied here and this node
 *     was still the leader after the call (a raft barrier entry, shared by all
 *     reads that wait at the same time).
 *   - leadership: after winning an election a node commits a raft barrier (so
 *     everything of earlier terms is applied) and then announces itself with a
 *     CTL_CMD_LEADER command (ctl/meta.h). It is "serving" from the barrier on.
 *     ctl_on_leader_change() callbacks and the node log report every change.
 *
 * Identity: a node's raft id is derived from its name (ctl_id_of), its raft
 * address is its HOST:PORT+1. The first start of a voter with an empty raft
 * directory bootstraps the configuration given to ctl_start(); later starts
 * recover from DATA/raft.
 *
 * libraft pitfalls handled here (docs/control-plane.md, "libraft settings"):
 * entries padded to 8 bytes (sm.c), barrier on becoming leader,
 * install-snapshot timeout ~1 s, connect retry ~50 ms, pre-vote on, rand()
 * seeded per node.
 *
 * Threading: loop thread only. Callbacks run on the loop, never from inside the
 * call that registered them.
 */
#ifndef IDUNNO_CTL_CTL_H
#define IDUNNO_CTL_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ctl/sm.h"

struct ctl;
struct kv;
struct meta;
struct raft;
struct raft_fsm;
struct seal_keyring;
struct ctl_relay_stats;

#define CTL_NAME_MAX 64
#define CTL_ADDR_MAX 64
#define CTL_MAX_SERVERS 16

struct ctl_config {
    const char *name;      /* node name */
    const char *node_addr; /* node HOST:PORT (clients, RPC) */
    const char *dir;       /* raft data directory (created if missing); NULL when detached */
    /* Tuning; 0 picks the default in brackets. */
    unsigned election_timeout_ms;         /* [200] */
    unsigned heartbeat_ms;                /* [50] */
    unsigned install_snapshot_timeout_ms; /* [1000] */
    unsigned connect_retry_ms;            /* [50] */
    unsigned snapshot_threshold;          /* [1024] entries between snapshots */
    unsigned snapshot_trailing;           /* [512] entries kept after a snapshot */
    unsigned propose_timeout_ms;          /* [5000] */
    /* Minimum TCP retransmission timeout of the raft connections [20]; negative:
     * the kernel's own (200 ms). See ctl_tcp.h. */
    int tcp_rto_min_ms;
    /* The proposer clock stamped into commands (ms since the epoch); NULL: the
     * wall clock. Tests pass the fixture's clock. */
    uint64_t (*clock_ms)(void *ud);
    void *clock_ud;
    /* First sequence number of proposals; 0: derived from the wall clock so
     * that a restarted node never reuses one. */
    uint64_t seq_base;
    /* The cluster keyring for the raft port (copied); NULL: plaintext. */
    const struct seal_keyring *keys;
};

/* A voter of the bootstrap configuration. */
struct ctl_voter {
    char name[CTL_NAME_MAX];
    char addr[CTL_ADDR_MAX]; /* node HOST:PORT; the raft address is PORT+1 */
};

/* ---- identities and addresses ---------------------------------------------------------- */

/* The raft id of a node name: a 63-bit hash, never 0. */
uint64_t ctl_id_of(const char *name);

/* HOST:PORT -> HOST:(PORT+1) and back. Return 0 or ID_EINVAL. */
int ctl_raft_addr(const char *node_addr, char *out, size_t len);
int ctl_node_addr(const char *raft_addr, char *out, size_t len);

/* ---- life cycle on a libuv loop ------------------------------------------------------- */

/* Creates the control plane of this node: raft over raft_uv with its TCP
 * transport on PORT+1, data in cfg->dir. Process-wide effects: seeds rand(),
 * which libraft uses, from the name, pid and time; sets SIGPIPE to ignored if
 * it was at its default (libraft writes to peers that may have died). Nothing runs until ctl_start(). On success *out owns
 * everything; release with ctl_destroy(). Errors: ID_EINVAL, ID_EIO (data dir),
 * ID_ENOMEM, with the detail in ctl_errmsg() when *out was set. */
int ctl_create(uv_loop_t *loop, const struct ctl_config *cfg, struct ctl **out);

/* What the raft port refused so far (ctl_relay.h); NULL when c is NULL or
 * detached. */
const struct ctl_relay_stats *ctl_raft_port_stats(const struct ctl *c);

/* Registers a sub-state machine (before ctl_start). See sm_register(). */
int ctl_register(struct ctl *c, const struct sm_ops *ops, void *self);

/* True if the raft directory holds no state yet (a first start). */
int ctl_needs_bootstrap(const struct ctl *c);

/* Starts raft. If ctl_needs_bootstrap() and this node is among `voters`, the
 * directory is first bootstrapped with that configuration (every voter must
 * bootstrap with the same list); otherwise `voters` is ignored and the node
 * recovers its state, or waits to be added to a group. Returns 0 or ID_E*
 * (detail in ctl_errmsg()). */
int ctl_start(struct ctl *c, const struct ctl_voter *voters, size_t n_voters);

/* Stops raft; pending proposals and reads fail with ID_ESHUTDOWN. Frees c once
 * libuv released every handle, then runs done (may be NULL). */
void ctl_destroy(struct ctl *c, void (*done)(void *ud), void *ud);

const char *ctl_errmsg(const struct ctl *c);

/* ---- detached mode, for libraft's in-memory fixture ------------------------------------ */

/* Creates a ctl without I/O: the caller creates the raft instance with
 * ctl_fsm(c) as its FSM (raft_fixture_grow), then calls ctl_attach(), and
 * ctl_poll() after each fixture step. cfg->dir is ignored. Free with
 * ctl_destroy_detached() after the raft instance is closed. */
int ctl_create_detached(const struct ctl_config *cfg, struct ctl **out);
struct raft_fsm *ctl_fsm(struct ctl *c);
void ctl_attach(struct ctl *c, struct raft *r);
void ctl_destroy_detached(struct ctl *c);

/* Notices leadership changes (barrier, announcement, callbacks, logs) and
 * expired proposals. The libuv mode runs it after every loop iteration. */
void ctl_poll(struct ctl *c);

/* ---- proposing and reading ------------------------------------------------------------- */

/* `result`/`len`: the apply result body (may be NULL), valid during the call. */
typedef void (*ctl_propose_cb)(void *ud, int status, const uint8_t *result, size_t len);

/* Proposes a command of `type` (CtlCommandType), version 1, with a protobuf
 * body (copied). Returns 0 and cb runs later exactly once; or returns
 * ID_ENOTLEADER (not the leader), ID_ETOOBIG, ID_ENOMEM, ID_ESHUTDOWN — then cb
 * never runs. The cb's status is the apply result (0 or a sub-state machine's
 * ID_E* rejection) or a failure (see the top of this file). */
int ctl_propose(struct ctl *c, uint32_t type, const void *body, size_t len, ctl_propose_cb cb,
                void *ud);
int ctl_propose_version(struct ctl *c, uint32_t type, uint32_t version, const void *body,
                        size_t len, ctl_propose_cb cb, void *ud);

typedef void (*ctl_read_cb)(void *ud, int status);

/* Linearizable read barrier (see the top of this file). Returns 0 and cb runs
 * later with 0, ID_ENOTLEADER or ID_ESHUTDOWN; or returns ID_ENOTLEADER or
 * ID_ENOMEM at once (cb never runs). */
int ctl_read_barrier(struct ctl *c, ctl_read_cb cb, void *ud);

/* ---- leadership and status ------------------------------------------------------------- */

struct ctl_view {
    int state;   /* enum raft_state: RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER, ... */
    int serving; /* leader, and its start-of-term barrier has been applied */
    int voter;   /* this node is a voter of the current configuration */
    uint64_t id;
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t last_index;
    uint64_t applied_commands;
    uint64_t leader_id;             /* 0: none known */
    char leader_addr[CTL_ADDR_MAX]; /* node HOST:PORT of the leader, "" if none */
    char leader_name[CTL_NAME_MAX]; /* from its announcement; "" until applied */
    uint64_t leader_since_ms;       /* from its announcement; 0 if unknown */
};

void ctl_view(struct ctl *c, struct ctl_view *v);
const char *ctl_state_name(int state);

/* True when this node is the leader and serving. */
int ctl_is_serving(const struct ctl *c);

struct ctl_server {
    uint64_t id;
    char raft_addr[CTL_ADDR_MAX];
    char node_addr[CTL_ADDR_MAX];
    int role; /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
};

/* Copies the current raft configuration (up to max servers); returns how many
 * servers it has. */
size_t ctl_servers(struct ctl *c, struct ctl_server *out, size_t max);

/* Leader only: the highest log index the server `id` is known to have
 * replicated (libraft's match index). Returns 0, ID_ENOTLEADER, or an error
 * for an id not in the configuration. */
int ctl_match_index(struct ctl *c, uint64_t id, uint64_t *out);

/* ---- configuration changes (leader only, one at a time) ------------------------------- */

/* The callback of a change: 0 once the new configuration is committed, or
 * ID_ENOTLEADER, ID_EBUSY (another change is in progress), ID_EINVAL, ... */
typedef void (*ctl_change_cb)(void *ud, int status);

/* Adds a server as a spare (no log, no vote). */
int ctl_change_add(struct ctl *c, uint64_t id, const char *raft_addr, ctl_change_cb cb, void *ud);
/* Gives a server a role: RAFT_STANDBY (receives the log, no vote) or RAFT_VOTER
 * (libraft first catches it up). */
int ctl_change_assign(struct ctl *c, uint64_t id, int role, ctl_change_cb cb, void *ud);
/* Removes a server from the configuration. */
int ctl_change_remove(struct ctl *c, uint64_t id, ctl_change_cb cb, void *ud);
/* True while a change proposed here has not completed. */
int ctl_change_pending(const struct ctl *c);

/* Called on the loop after a change of leader, term or serving state. */
typedef void (*ctl_leader_fn)(void *ud, const struct ctl_view *v);
int ctl_on_leader_change(struct ctl *c, ctl_leader_fn fn, void *ud);

/* The replicated state, for reads (after ctl_read_barrier for linearizable
 * ones). */
struct sm *ctl_sm(struct ctl *c);
struct kv *ctl_kv(struct ctl *c);
struct meta *ctl_meta(struct ctl *c);
void ctl_digest_hex(struct ctl *c, char out[2 * SHA256_LEN + 1]);

/* Maps a libraft error code to an ID_E* code. */
int ctl_from_raft(int rv);

#endif
