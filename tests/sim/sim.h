/* sim.h — the simulated cluster: several nodes' control-plane services on
 * libraft's in-memory fixture (simulated time, network and disk), driven by a
 * seeded schedule of faults, with invariants checked as it runs.
 *
 * What is real: the Raft glue (ctl.c) and the replicated state machine
 * (sm.c) with the catalog (sdfs/catalog.c) and job state (sched/jobs.c)
 * registered, as a node registers them; the leader's decisions on store
 * reports (sdfs/reconcile.c), repair plans (catalog.c) and result parts
 * (sched/parts.c). What is fake: the
 * network between services (a message queue with latency, loss and the same
 * cut links as the fixture), each node's blob store (a set of ids), the
 * workers, and membership (derived from which nodes are up).
 *
 * Services are the per-node code that runs above the control plane. Each is
 * a set of callbacks (struct sim_service_ops): a node's process starts it,
 * a crash stops it (volatile state lost; what a service keeps "on disk" lives
 * in its world, which survives), and it is told when its node starts and
 * stops serving as the leader. That lead/unlead pair is the hook a pure
 * leader core plugs into (the SDFS reconciler and repair loop here; the
 * dispatch bookkeeping of the coordinator).
 *
 * A schedule is a seed: the fault kind, its timing, the workload and every
 * random choice come from it, so SIM_SEED=N replays a run exactly.
 */
#ifndef IDUNNO_TESTS_SIM_H
#define IDUNNO_TESTS_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "sdfs/catalog.h"

struct ctl;
struct catalog;
struct jobs;
struct sim;

#define SIM_NODES 5
#define SIM_TICK_MS 10   /* services tick at this granularity */
#define SIM_MSG_MAX 4096 /* largest service message body */

/* Fault kinds; a schedule runs one (SIM_MIXED: several at random). */
enum sim_fault {
    SIM_CRASH_VOTER = 0, /* a follower crashes and restarts */
    SIM_CRASH_LEADER,    /* the leader crashes and restarts */
    SIM_PART_LEADER,     /* the leader is cut off both ways, then healed */
    SIM_ONE_WAY,         /* links that deliver in one direction only */
    SIM_LOSS,            /* random message loss on every link */
    SIM_MULTI,           /* several nodes at once: two crash, or a 2|3 split */
    SIM_CHURN,           /* the leader is deposed again and again */
    SIM_MIXED,           /* all of the above at random */
    SIM_FAULT_KINDS
};

const char *sim_fault_name(enum sim_fault k);

/* Knobs a test (or a defect experiment) may change. */
struct sim_config {
    uint64_t seed;
    int fault;          /* enum sim_fault; -1: derived from the seed */
    uint64_t fault_ms;  /* how long faults are injected [12000] */
    uint64_t settle_ms; /* the most the healed cluster may take to settle [40000] */
    uint64_t grace_ms;  /* reconcile's delete grace [6000] */
    int verbose;        /* print the schedule's events */
};

/* A message between services. `type` picks the service (its range). */
struct sim_msg {
    unsigned from, to;
    int type;
    size_t len;
    uint8_t body[SIM_MSG_MAX];
};

struct sim_service_ops {
    const char *name;
    int type_lo, type_hi; /* the message types it receives */
    /* Shared state of all nodes of this service, made once per run; what
     * survives crashes (disks) and what the invariants read lives here. */
    void *(*world_new)(struct sim *s);
    void (*world_free)(void *world);
    /* A node's process starts (first start, or after a crash). */
    void *(*start)(void *world, unsigned node);
    /* A node's process dies: free its volatile state. */
    void (*stop)(void *st);
    /* The node started or stopped serving as the leader (ctl_is_serving). */
    void (*lead)(void *st, uint64_t term);
    void (*unlead)(void *st);
    void (*tick)(void *st, uint64_t now);
    void (*recv)(void *st, const struct sim_msg *m);
    /* Invariants over the whole cluster; return 0 or fail with sim_fail. */
    void (*check)(void *world);
    /* True when the healed cluster has done what this service waits for. */
    int (*settled)(void *world);
    /* Optional: what it still waits for, when it has not settled. */
    const char *(*waiting)(void *world);
    /* The end-of-run invariants (after settling). */
    void (*final_check)(void *world);
};

/* ---- running ------------------------------------------------------------------------ */

/* Runs one schedule with the given services. Returns 0, or -1 after a failed
 * invariant (its message in *msg, static storage). */
int sim_run(const struct sim_config *cfg, const struct sim_service_ops *const *svcs, size_t n_svcs,
            const char **msg);

/* ---- for services ------------------------------------------------------------------- */

uint64_t sim_now(const struct sim *s);
uint64_t sim_rand(struct sim *s);
/* Uniform in [lo, hi]. */
uint64_t sim_range(struct sim *s, uint64_t lo, uint64_t hi);
int sim_chance(struct sim *s, unsigned percent);
const struct sim_config *sim_config(const struct sim *s);
void sim_log(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records a broken invariant (the first one wins) and ends the run. */
void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sim_failed(const struct sim *s);

const char *sim_name(unsigned node); /* "n1" .. */
int sim_node_of(const char *name);   /* -1 if none */
int sim_up(const struct sim *s, unsigned node);
struct ctl *sim_ctl(struct sim *s, unsigned node);
struct catalog *sim_catalog(struct sim *s, unsigned node);
struct jobs *sim_jobs(struct sim *s, unsigned node);
uint64_t sim_applied(struct sim *s, unsigned node); /* raft's last applied index */
/* The node node believes leads (from its raft view), or -1. */
int sim_leader_of(struct sim *s, unsigned node);
/* The serving leader of the highest term, or -1. */
int sim_serving(struct sim *s);
/* Membership as the leader's repair loop sees it: nodes up, and nodes down for
 * less than the detection time (suspected). */
size_t sim_members(struct sim *s, struct sdfs_node *out);

/* Sends a message (copied); it may be late, reordered or lost, like the
 * network of the schedule. Returns 0, or -1 if the body is too big. */
int sim_send(struct sim *s, unsigned from, unsigned to, int type, const void *body, size_t len);

/* Proposes a command on `node`'s ctl. `arg` (up to 64 bytes, copied) comes
 * back to cb with the service's state of that node at callback time, or with
 * st NULL if that process is gone (crashed, or the run ends): then cb only
 * frees what arg points to. cb runs exactly once if this returns 0. Returns
 * what ctl_propose returned. */
typedef void (*sim_propose_cb)(void *st, int status, const uint8_t *result, size_t len,
                               const void *arg);
int sim_propose(struct sim *s, unsigned node, const struct sim_service_ops *svc, uint32_t type,
                const void *body, size_t len, sim_propose_cb cb, const void *arg, size_t arg_len);

/* The shared state of a service of this run (NULL if it does not run). */
void *sim_world(struct sim *s, const struct sim_service_ops *svc);

/* ---- SDFS for other services (sim_sdfs.c) ----------------------------------------- */

#define SIM_FILE_MAX 64 /* SDFS names of the simulation, NUL included */

/* A put of `name` through `gateway`'s SDFS process, as sdfs_put_bytes: done
 * runs once with 0 when the version is committed, or an error (not
 * acknowledged: it may still have committed). It never runs if the gateway's
 * process dies first. Returns 0, or -1 if the gateway cannot take it. */
typedef void (*sim_put_done)(struct sim *s, unsigned gateway, uint64_t tag, int status);
int sim_sdfs_put(struct sim *s, unsigned gateway, const char *name, uint64_t tag,
                 sim_put_done done);
/* Asks the leader `from` knows of to delete `name` (no answer). */
void sim_sdfs_delete(struct sim *s, unsigned from, const char *name);

/* ---- the services of this tier ------------------------------------------------------ */

extern const struct sim_service_ops sim_sdfs_ops;     /* stores, puts, reports, reconcile, repair */
extern const struct sim_service_ops sim_worker_ops;   /* workers: run queries, report results */
extern const struct sim_service_ops sim_dispatch_ops; /* the leader's dispatch bookkeeping */

/* Message type ranges. */
enum {
    SIM_MSG_SDFS = 100,
    SIM_MSG_SDFS_END = 199,
    SIM_MSG_WORKER = 200,
    SIM_MSG_WORKER_END = 249,
    SIM_MSG_DISPATCH = 250,
    SIM_MSG_DISPATCH_END = 299,
};

#endif
