/* coord.h — the coordinator's IDunno part, active on the serving leader only:
 * the job and model requests, dispatching queries to workers, collecting
 * results into the replicated job state (jobs.h) and writing them to SDFS.
 * The decisions are pure cores: dispatch.h (claims, queries, workers,
 * adoption, the group commit; over the fair dispatcher, fair.h) and parts.h
 * (result parts); coord.c and its files (coord_int.h) wire them to the
 * network, membership and the control plane.
 *
 * What the leader keeps for itself (and rebuilds when it takes over): which
 * images of each job are claimed by a query not yet done, the queries queued
 * and in flight, and the dispatcher. On taking over it asks every live worker
 * what it holds (WORKER_STATE) and adopts those queries before dispatching
 * anything, so nothing runs twice needlessly and nothing is lost: every image
 * that is neither done (replicated) nor held by a worker is queued again.
 *
 * Queries are cut when dispatched is near: each job keeps one queued query cut
 * ahead (plus any requeued ones), so `set-batch` reaches every query not yet
 * dispatched and a new job's first query is ready at once. Completions are
 * batched into one command per few milliseconds (JOB_DONE), and a worker is
 * answered once its result is committed.
 *
 * Failures: a worker that membership declares failed or that left has its
 * queries requeued at the head of their jobs' queues at once; a dispatch the
 * worker refused or never acknowledged is requeued; a query in flight for
 * more than COORD_QUERY_TIMEOUT_MS is requeued (a result that arrives later
 * still counts, once).
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_SCHED_COORD_H
#define IDUNNO_SCHED_COORD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ctl/service.h"

struct catalog;
struct coord;
struct ctl;
struct ctl_fwd;
struct jobs;
struct member;
struct net;
struct sdfs;

#define COORD_SLOTS 1
/* One spare slot per worker for a job with nothing running (fair.h): a new
 * job's first query starts at once instead of after the next completion
 * anywhere, which on a cluster busy with ResNet50 is ~0.1 s away. */
#define COORD_SPARE 1
#define COORD_TICK_MS 50
#define COORD_QUERY_TIMEOUT_MS 30000
#define COORD_ADOPT_WAIT_MS 500
/* Results are written to SDFS as a part when COORD_FLUSH_AT are pending or the
 * oldest waited COORD_FLUSH_MS; one part at a time per job, holding up to
 * COORD_PART_MAX results and COORD_PART_BYTES of JSON, so that the writing
 * keeps up with thousands of queries a second (results not yet written live
 * in the replicated state). */
#define COORD_FLUSH_MS 2000
#define COORD_FLUSH_AT 2000
#define COORD_PART_MAX 16384
#define COORD_PART_BYTES (3u << 20)

struct coord_config {
    struct ctl_svc_env env;
    struct jobs *jobs;
    struct catalog *catalog;
    struct sdfs *sdfs;
};

/* Makes the coordinator service: registers its requests as ops of a
 * leader-service layer over cfg->fwd (ctl/service.h), follows
 * leadership and membership, and starts its tick; it dispatches only while this
 * node leads. Returns 0, or ID_ENOMEM or a registration error with errmsg. */
int coord_create(const struct coord_config *cfg, struct coord **out, char *errmsg, size_t len);
/* Refuses new requests, answers the held ones with ID_ESHUTDOWN and closes the
 * timers. Call before net_destroy; a second call does nothing. */
void coord_stop(struct coord *c);
/* After net_destroy (whose failed calls still reach c): stops c if that was
 * not done, and frees it, at once or when its timers' close callbacks run. */
void coord_destroy(struct coord *c);

/* For metrics and tests: whether this node dispatches now, and counters. */
struct coord_stats {
    int active;
    uint64_t dispatched, requeued, adopted, completed, run_failures;
    uint64_t activated_ms;              /* wall clock when it last started dispatching */
    double rerun_last_ms, rerun_max_ms; /* worker failure -> its queries dispatched again */
    /* Online requests (coord_online.c): received by this leader, answered
     * with results, failed, and attempts that moved to another worker. */
    uint64_t online_requests, online_answered, online_failed, online_retried;
    uint64_t online_repeats; /* repeats of a request under way or answered (not run again) */
};
void coord_get_stats(struct coord *c, struct coord_stats *out);

/* Models whose online requests this leader answered or failed since it
 * started, with their latency statistics (received to answered; qstats.h):
 * fills at most max, returns how many. Valid until the next loop turn. */
#define COORD_ONLINE_MODELS 64
struct qstats;
struct coord_online_view {
    const char *model;
    const struct qstats *stats;
    uint64_t failed;
};
size_t coord_online_view(struct coord *c, struct coord_online_view *out, size_t max);

#endif
