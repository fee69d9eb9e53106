/* fair.h — the fair-time dispatcher: which query of which job runs next, and on
 * which worker. Pure logic: no I/O, no clock of its own (times are passed in),
 * deterministic for the same calls in the same order. The coordinator owns one
 * and rebuilds it from the replicated state after a failover.
 *
 * Policy (docs/scheduler.md, "Scheduler core"):
 *   - Every job has a weight (default 1) and a FIFO of queued query ids. The job
 *     served next is the one furthest behind: the smallest dispatched/weight
 *     ("virtual finish" with the query as unit). A job that becomes runnable
 *     (new, or its queue was empty) starts at the current minimum of the runnable
 *     jobs, so it neither hogs the cluster to catch up nor starves.
 *   - Work-conserving: a job with nothing queued is skipped; its share goes to
 *     the others.
 *   - Every worker runs at most `slots` queries at once (a small bound, so a
 *     failure requeues little and a new job gets a worker quickly).
 *   - Spare slots (fair_set_spare, off by default): when every slot is taken,
 *     a job with nothing in flight may still have one query dispatched to a
 *     worker holding up to `spare` queries beyond its slots. So a new job's
 *     first query starts at once on a busy cluster instead of waiting for the
 *     next completion anywhere; a job that has a query running waits as usual.
 *   - Bursts (fair_job_set_burst, 1 by default): a job whose queries are cheap
 *     may have up to `burst` of its queries at once on a worker that runs
 *     nothing else, even beyond the worker's slots. The coordinator sets it from the job's measured
 *     run time, so that a worker holds a few milliseconds of work rather than
 *     one sub-millisecond query: the messages of several queries then travel
 *     together. A worker running anything of another job is not used for a
 *     burst, so a costly job's share is never held up behind one.
 *   - Among free workers the dispatcher prefers one that holds the job's model
 *     (fair_worker_set_model), then the least loaded, then the name order. A
 *     job that needs its model loaded (fair_job_needs_model) goes only to
 *     workers holding it; while free workers hold none, the next job goes
 *     first, and the waiting job's vt is raised to at most one round of the
 *     cluster (all slots, at its weight) below the last dispatch's: waiting
 *     for a model banks that much credit and no more.
 *   - Failures: removing a worker puts its in-flight queries back at the head of
 *     their jobs' queues, in their original order.
 *   - Holds (fair_job_hold): a held job's queries stay queued while fair_next
 *     serves the other jobs, as if it had none; it stays runnable for the
 *     floor, so its vt does not rise to the others' when the hold ends (the
 *     coordinator holds an online job's requests a moment to batch them).
 */
#ifndef IDUNNO_SCHED_FAIR_H
#define IDUNNO_SCHED_FAIR_H

#include <stddef.h>
#include <stdint.h>

#define FAIR_NAME_MAX 64
#define FAIR_DEFAULT_SLOTS 2
/* Weights outside [MIN, MAX] (or not finite) are ID_EINVAL: a ratio beyond 10^12
 * between jobs means nothing, and the bound keeps virtual times finite. */
#define FAIR_WEIGHT_MIN 1e-6
#define FAIR_WEIGHT_MAX 1e6

struct fair;

struct fair_dispatch {
    uint32_t job;
    uint64_t query;
    char worker[FAIR_NAME_MAX];
};

/* An empty scheduler (no jobs, no workers); NULL if out of memory. Freed with
 * fair_destroy. */
struct fair *fair_create(void);
void fair_destroy(struct fair *f);

/* Jobs. Returns 0, ID_EEXIST, ID_ENOTFOUND, ID_EINVAL (weight <= 0, or outside
 * [FAIR_WEIGHT_MIN, FAIR_WEIGHT_MAX]), ID_ENOMEM. */
int fair_job_add(struct fair *f, uint32_t job, double weight);
int fair_job_set_weight(struct fair *f, uint32_t job, double weight);
/* Removes a job with its queue; its in-flight queries are forgotten (their
 * completions later return ID_ENOTFOUND). */
int fair_job_remove(struct fair *f, uint32_t job);

/* Appends a query to the tail of its job's queue (or the head with front=1).
 * ID_ENOTFOUND (no such job), ID_EEXIST (that query is in flight), ID_ENOMEM. */
int fair_enqueue(struct fair *f, uint32_t job, uint64_t query, int front);
size_t fair_queued(const struct fair *f, uint32_t job);
size_t fair_inflight(const struct fair *f, uint32_t job);

/* Spare slots per worker for jobs with nothing in flight (see above); 0 turns
 * them off. ID_EINVAL above FAIR_SPARE_MAX, ID_ENOMEM. */
#define FAIR_SPARE_MAX 4
int fair_set_spare(struct fair *f, unsigned spare);

/* How many queries of `job` a worker may hold at once, even beyond its slots,
 * while it holds nothing of any other job (see above); 1 turns bursts off. ID_EINVAL for
 * 0 or above FAIR_BURST_MAX, ID_ENOTFOUND, ID_ENOMEM. */
#define FAIR_BURST_MAX 8
int fair_job_set_burst(struct fair *f, uint32_t job, unsigned burst);

/* Workers. slots 0 means FAIR_DEFAULT_SLOTS. Adding an existing worker updates
 * its slots. ID_EINVAL for a NULL, empty or too long (>= FAIR_NAME_MAX) name. */
int fair_worker_add(struct fair *f, const char *worker, unsigned slots);
/* Removes a worker: its in-flight queries go back to the head of their queues.
 * Returns how many were requeued, or ID_ENOTFOUND. */
int fair_worker_remove(struct fair *f, const char *worker);
/* Marks that the worker holds (1) or no longer holds (0) the job's model. */
int fair_worker_set_model(struct fair *f, const char *worker, uint32_t job, int holds);
/* on: the job's queries go only to workers holding its model (0 by default:
 * to any free worker, preferring those). ID_ENOTFOUND for an unknown job. */
int fair_job_needs_model(struct fair *f, uint32_t job, int on);
/* No worker holds the job's model any more (a new model version). */
int fair_job_forget_models(struct fair *f, uint32_t job);
/* How many workers hold the job's model. */
size_t fair_model_holders(const struct fair *f, uint32_t job);

/* on: fair_next passes the job over (its queue waits, the others are served);
 * off by default. ID_ENOTFOUND for an unknown job. */
int fair_job_hold(struct fair *f, uint32_t job, int on);
/* How many queries of `job` one dispatch would place now, held or not: the
 * one fair_next would give the worker it would pick, and those fair_take
 * would then add there (its free slots, or a burst's room). 0 when no worker
 * could take one, or for an unknown job. */
unsigned fair_room(const struct fair *f, uint32_t job);

/* Picks the next dispatch: a query of the job furthest behind and a free worker.
 * Returns 1 and fills *out (the query is then in flight on that worker), or 0
 * when nothing can be dispatched now (no queued query or no free slot). */
int fair_next(struct fair *f, struct fair_dispatch *out);

/* Puts the next queued query of `job` in flight on `worker` too, into a free
 * slot of it (or its room for a burst of the job), charged like any dispatch:
 * a query that joins one fair_next gave that worker, to run as one batch (the
 * coordinator's online requests, docs/scheduler.md "Online jobs"). Returns 1
 * with *query, 0 when the job has nothing queued or the worker no room,
 * ID_ENOTFOUND (no such job or worker) or ID_ENOMEM. */
int fair_take(struct fair *f, uint32_t job, const char *worker, uint64_t *query);

/* Marks a query in flight as done (0) or records that an already requeued or
 * never dispatched query is being reported (ID_ENOTFOUND; the caller ignores it). */
int fair_complete(struct fair *f, uint32_t job, uint64_t query);
/* Puts an in-flight query back at the head of its queue (its worker reported an
 * error or the dispatch failed). */
int fair_requeue(struct fair *f, uint32_t job, uint64_t query);
/* Records that `worker` is running `query` of `job` (a worker re-attaching to a
 * new coordinator reports what it holds): the query leaves the queue, if it is
 * there, and takes a slot on that worker, even beyond its slots. 0 as well if
 * that worker already holds it; ID_EEXIST if another worker does; ID_ENOTFOUND
 * for an unknown job or worker. */
int fair_adopt(struct fair *f, uint32_t job, uint64_t query, const char *worker);

/* How many queries of `job` have been dispatched so far (counting re-dispatches). */
uint64_t fair_dispatched(const struct fair *f, uint32_t job);

#endif
