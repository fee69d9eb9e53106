/* dispatch.h — the coordinator's dispatch decisions: which images of each job
 * are claimed by a query not yet done, the queries queued and in flight, which
 * worker runs what, adoption after a failover, and the group commit of
 * completions. Pure logic around the fair dispatcher (fair.h): events and
 * `now` (monotonic microseconds) in, decisions out; no I/O, no clock. The
 * coordinator (sched/coord.c) feeds it what happens and carries out what it
 * returns: RUN requests, JOB_DONE and JOB_STOP proposals, log lines.
 *
 * It reads the replicated job state (jobs.h) handed to each call that needs
 * it, and keeps for itself only what a leader rebuilds when it takes over:
 *
 *   - Claims. An image is claimed while a queued or running query holds it;
 *     a query is cut from images neither done (replicated) nor claimed, so no
 *     image is in two live queries. A result keeps its images claimed until
 *     the JOB_DONE holding it commits (they are done then); a JOB_DONE that
 *     fails gives them back (dispatch_unclaim), and a late result still counts
 *     once, since the state machine drops an image done twice.
 *   - Cut ahead. Each job keeps DISPATCH_CUT_AHEAD queries cut and queued;
 *     those not yet dispatched are resized to the job's current batch
 *     (set-batch reaches every query not yet dispatched).
 *   - Failures. A worker gone or benched (it refused a query or its
 *     connection failed) has its in-flight queries put back at the head of
 *     their queues; a query in flight longer than the timeout is requeued.
 *   - Leading. dispatch_lead starts a term with the jobs in the dispatcher but
 *     nothing cut: the workers' WORKER_STATE answers (dispatch_adopt) say what
 *     already runs, and a query whose result arrived meanwhile is not adopted.
 *     dispatch_start then cuts every image neither done nor held.
 *   - Group commit. Completions wait in a batch for one JOB_DONE command; a
 *     batch goes 1 ms after its first completion with at most
 *     `batches_in_flight` commands uncommitted, else once one commits.
 *   - Loaded models. A job's queries go only to workers that have its model
 *     version loaded (or failed to load it: its queries then report the
 *     error). Loading is driven by demand: while a job has queries, its
 *     model is loaded on more workers in a slow start, one load first, then
 *     up to DISPATCH_LOAD_GROWTH times as many at once as workers have it,
 *     each on the worker with the fewest loads under way; a version just trained is loaded on one
 *     worker at once, ahead of its job. So a job launched right after `train` gets its
 *     first result after one load instead of after every worker loaded every
 *     model at once on shared cores. What a worker has loaded is known from
 *     its PRELOAD answers, its results and, after a failover, its
 *     WORKER_STATE answer (docs/scheduler.md, "Cold start").
 *
 * Threading: none (the coordinator calls it on the loop thread).
 */
#ifndef IDUNNO_SCHED_DISPATCH_H
#define IDUNNO_SCHED_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#define DISPATCH_NAME_MAX 64
/* Queries each job keeps cut ahead of dispatch (see dispatch.c). */
#define DISPATCH_CUT_AHEAD 2
/* Completions in one JOB_DONE command at most. */
#define DISPATCH_BATCH_MAX 256
/* Query ids of the latest results remembered, so that a WORKER_STATE answer
 * older than the worker's JOB_DONE does not adopt a finished query. */
#define DISPATCH_RECENT 1024
/* How long a worker stays out of the dispatcher after refusing a query
 * because it holds too many results not yet committed, and after its
 * connection failed. */
#define DISPATCH_BENCH_BUSY_MS 50
#define DISPATCH_BENCH_UNREACHABLE_MS 250
/* ... and after a call to it timed out: a worker that neither answers nor
 * refuses is likely cut off one way (the coordinator's packets dropped) while
 * it still looks alive to membership, so it sits out long enough for the
 * queries sent meanwhile to go elsewhere. */
#define DISPATCH_BENCH_TIMEOUT_MS 5000
/* Bursts (fair.h): a worker may hold this much of a cheap job's work at once,
 * in queries at the job's mean run time (FAIR_BURST_MAX at most). */
#define DISPATCH_BURST_BUDGET_US 4000.0
#define DISPATCH_RUN_AVG_WEIGHT 0.02 /* of each new run time in the job's mean */
#define DISPATCH_BURST_LOG_MS 10000  /* a job's burst changes are logged this seldom */
/* A model load unanswered this long is given up (the call's own timeout
 * normally says so first); a load that failed for a reason other than the
 * model is tried again after the retry time. */
#define DISPATCH_LOAD_TIMEOUT_MS 120000
/* The slow start: one load of a job's model first, then up to this many
 * times as many at once as workers have it (1, 4, 20, ...): the first load
 * has the cores to itself, the others follow quickly (a job whose model few
 * workers have runs at their rate only). */
#define DISPATCH_LOAD_GROWTH 4
#define DISPATCH_LOAD_RETRY_MS 1000
/* Model versions remembered per worker (loaded, loading or failed); beyond,
 * those no job runs are forgotten first. */
#define DISPATCH_WORKER_MODELS 16
/* "name@blob.version": one model version, as workers report what they hold. */
#define DISPATCH_MODEL_KEY_MAX 160
void dispatch_model_key(char *out, size_t len, const char *name, const char *blob,
                        uint32_t version);

struct dispatch;
struct jobs;

struct dispatch_config {
    unsigned slots;             /* per worker (fair.h) */
    unsigned spare;             /* spare slots per worker (fair.h) */
    uint64_t query_timeout_ms;  /* a query in flight longer is requeued */
    uint64_t adopt_wait_ms;     /* how long a new leader waits for WORKER_STATE answers */
    unsigned batches_in_flight; /* JOB_DONE commands uncommitted at most */
    /* 1: a job's queries go only to workers with its model loaded, and
     * dispatch_loads says where to load it ("Loaded models" above); 0: to
     * any free worker, preferring those that ran the job (tests of the rest). */
    int load_models;
};

enum dispatch_phase {
    DISPATCH_IDLE,     /* not leading */
    DISPATCH_ADOPTING, /* leading; waiting for the workers' answers */
    DISPATCH_ACTIVE,   /* dispatching */
};

/* A query sent to a worker: the coordinator sends RUN(job, query, images). */
struct dispatch_run {
    uint32_t job;
    uint64_t query;
    char worker[DISPATCH_NAME_MAX];
    const uint32_t *images; /* image indexes; valid until the next call */
    size_t n;
    double rerun_ms; /* >= 0: its worker had failed; it waited this long to run again */
    double first_ms; /* >= 0: the job's first query after images came to an idle job; its wait */
};

/* A worker's JOB_DONE for a query. */
struct dispatch_done {
    uint32_t job;
    uint64_t query;
    const char *worker; /* NULL or "": unnamed */
    uint32_t run_us;    /* CPU time of its run (0: unknown) */
    uint32_t wait_ms;   /* from its arrival at the worker to its batch starting */
    int stop_job;       /* the worker asks that the job be stopped */
    uint32_t version;   /* the model version it ran (0: unknown) */
};

/* What follows a JOB_DONE. */
struct dispatch_done_out {
    int propose_stop;  /* propose JOB_STOP for the job (then dispatch_stop_proposed) */
    int burst_changed; /* the job's burst changed (log it when log_burst) */
    int log_burst;
    unsigned burst;
    double run_us_avg;
};

/* A worker taken out of the dispatcher for a moment by dispatch_run_failed. */
struct dispatch_bench {
    int unplugged;   /* it was in the dispatcher: its queries were requeued */
    size_t requeued; /* how many */
    uint64_t ms;     /* for how long */
};

/* A query requeued for having run too long. */
struct dispatch_timeout {
    uint64_t query;
    char worker[DISPATCH_NAME_MAX];
};

/* A completion waiting for its JOB_DONE command: the coordinator's handles. */
struct dispatch_held {
    void *done; /* the QueryDone */
    void *req;  /* the request to answer */
};

/* What the coordinator shows of a job (jobs, qjob). */
struct dispatch_job_view {
    int known; /* the job is in the dispatcher: the first_* fields are set */
    double first_dispatch_ms, first_result_ms, first_start_ms; /* -1: none */
    int active; /* dispatching: the fields below are set */
    size_t queued, inflight;
    uint64_t dispatched;
    size_t n_workers; /* workers running its queries now */
    char workers[64][DISPATCH_NAME_MAX];
    size_t workers_loaded, workers_loading; /* its model version (see above) */
};

struct dispatch_stats {
    uint64_t dispatched, requeued, adopted;
    double rerun_last_ms, rerun_max_ms; /* worker failure -> its queries dispatched again */
};

/* A core not leading, with *cfg (copied); NULL if out of memory. Freed with
 * dispatch_destroy. */
struct dispatch *dispatch_create(const struct dispatch_config *cfg);
void dispatch_destroy(struct dispatch *d);

enum dispatch_phase dispatch_phase(const struct dispatch *d);
uint64_t dispatch_term(const struct dispatch *d);
void dispatch_get_stats(const struct dispatch *d, struct dispatch_stats *out);

/* ---- leadership ---- */

/* Starts leading in `term` (from IDLE): a fresh dispatcher with every running
 * job of `jobs` in it and nothing cut, phase ADOPTING until the last expected
 * answer (dispatch_asked / dispatch_answered) or `now` passes the adoption
 * wait (dispatch_overdue). Returns 0, 1 (leading, but without spare slots:
 * out of memory), or ID_ENOMEM (still IDLE). */
int dispatch_lead(struct dispatch *d, uint64_t term, const struct jobs *jobs, uint64_t now_us);
/* A WORKER_STATE request went out. */
void dispatch_asked(struct dispatch *d);
/* A worker answered or failed to (dispatch_lead holds one expectation of its
 * own, dropped by this call too). Returns 1 when none is left: call
 * dispatch_start. */
int dispatch_answered(struct dispatch *d);
/* Whether the adoption wait is over at `now` (ADOPTING only); then *missing is
 * how many answers never came, the expectations are dropped, and the caller
 * calls dispatch_start. */
int dispatch_overdue(struct dispatch *d, uint64_t now_us, unsigned *missing);
/* `worker` reports running `query` of `job` on `images`. Adopted unless the
 * job is not in the dispatcher, the query is known, the worker is not, the
 * query's result arrived lately, or all its images are done; it times out
 * from `now`. Returns 1
 * adopted, 0 not, ID_ENOMEM (stop adopting). */
int dispatch_adopt(struct dispatch *d, const struct jobs *jobs, const char *worker, uint32_t job,
                   uint64_t query, const uint32_t *images, size_t n, uint64_t now_us);
/* ADOPTING -> ACTIVE; dispatch_sync_jobs then cuts what is neither done nor
 * held. Returns the queries in flight (adopted). */
size_t dispatch_start(struct dispatch *d);
/* Stops leading: forgets queries, claims, workers and the dispatcher. The
 * batch, the recent results and the statistics stay. */
void dispatch_unlead(struct dispatch *d);

/* ---- workers ---- */

/* A live member: in the dispatcher unless it is known already. Returns 0, or
 * ID_ENOMEM, ID_EINVAL (bad name), ID_ENOTLEADER (not leading). */
int dispatch_worker_join(struct dispatch *d, const char *name);
/* A member failed or left: out, its queries requeued and timed from `now`
 * until they run again. Returns how many, or ID_ENOTFOUND. */
int dispatch_worker_gone(struct dispatch *d, const char *name, uint64_t now_us);
size_t dispatch_worker_count(const struct dispatch *d);
size_t dispatch_job_count(const struct dispatch *d);
const char *dispatch_worker_name(const struct dispatch *d, size_t i);
int dispatch_worker_known(const struct dispatch *d, const char *name);
/* How well worker i (dispatch_worker_name's order) suits an online request
 * for model version `key` now: 2 it has the version loaded, 1 it is in the
 * dispatcher without it (its first run loads it), 0 benched or not leading. */
int dispatch_online_rank(const struct dispatch *d, size_t i, const char *key);
/* Benched workers whose time is up at `now` go back into the dispatcher. */
void dispatch_unbench(struct dispatch *d, uint64_t now_us);

/* ---- jobs ---- */

/* Jobs gone or stopped leave (with their queries); running jobs enter, and
 * each has its queries cut ahead. Returns 0 or ID_ENOMEM. ACTIVE only. */
int dispatch_sync_jobs(struct dispatch *d, const struct jobs *jobs);
/* Images were queued for `job`: if it had nothing queued or in flight, its
 * first query's wait is timed from `now`. */
void dispatch_images_queued(struct dispatch *d, uint32_t job, uint64_t now_us);
int dispatch_job_view(const struct dispatch *d, uint32_t job, struct dispatch_job_view *out);
/* The mean CPU time of the job's queries on their workers (0: none yet). */
double dispatch_job_run_us(const struct dispatch *d, uint32_t job);

/* ---- queries ---- */

/* The next query to send, if the dispatcher has one and a free slot
 * (ACTIVE only): it is then in flight on out->worker. Returns 1 or 0. */
int dispatch_next(struct dispatch *d, const struct jobs *jobs, uint64_t now_us,
                  struct dispatch_run *out);
/* ---- online requests (docs/scheduler.md, "Online jobs") ---- */

/* Queues an online request of an online job (`inputs` images or tensors,
 * arrived at `now`) as a query without images, at the tail of the job's
 * queue: dispatch_next hands it out like any query, and the coordinator
 * sends it as an ONLINE_RUN. Returns its query id, or 0 (not leading, the job
 * is not in the dispatcher, out of memory). Its completion goes through
 * dispatch_done, its failure through dispatch_run_failed; it is not timed out
 * by dispatch_tick (its caller's deadline bounds it).
 *
 * The queue delay (JobLaunch.max_queue_delay_us, D): while an online job
 * with D > 0 has some of its requests running and fewer waiting than one
 * dispatch would take now
 * (the room on the worker it would go to, fair_room, and the job's batch in
 * inputs), dispatch_next holds them until the oldest has waited D, and
 * serves the other jobs meanwhile; a full batch waiting goes at once. D = 0
 * never holds. A request put back after a failed run keeps its arrival time,
 * so it is not held again. */
uint64_t dispatch_online_enqueue(struct dispatch *d, uint32_t job, uint32_t inputs,
                                 uint64_t now_us);
/* When the earliest hold of the last dispatch_next ends (monotonic us; 0:
 * nothing is held): the coordinator dispatches again then, whatever else
 * happens meanwhile. */
uint64_t dispatch_online_hold_until(const struct dispatch *d);
/* Dynamic batching: the next queued query of `job` goes in flight on
 * `worker` too (into a free slot of it; fair_take), to run in the same batch as a
 * query dispatch_next just gave it. Returns 1 with *query, else 0. */
int dispatch_online_take(struct dispatch *d, uint32_t job, const char *worker, uint64_t now_us,
                         uint64_t *query);
/* The request was answered without a result to count (an error, its
 * deadline, a stop): its query leaves the dispatcher, queued or in flight. */
void dispatch_online_forget(struct dispatch *d, uint64_t query);

/* The RUN could not be sent: the query goes back to the head of its queue.
 * Returns 1 if it was in flight, else 0. */
int dispatch_requeue(struct dispatch *d, uint64_t query);
/* The worker refused the RUN or never acknowledged it (status < 0). If the
 * query is still in flight on that worker it is requeued (returns 1), and the
 * worker sits out a moment when it was full (ID_EBUSY) or unreachable
 * (ID_ECONNREFUSED, ID_ECLOSED, and longer after ID_ETIMEDOUT: then its
 * queries are timed until they run again, like a failure's); *b says what
 * happened to it. Else 0. */
int dispatch_run_failed(struct dispatch *d, uint64_t query, const char *worker, int status,
                        uint64_t now_us, struct dispatch_bench *b);
/* A worker's result: the query ends (its images stay claimed until the batch
 * commits), its worker is noted as holding the job's model, and the query is
 * remembered as finished (in any phase). */
void dispatch_done(struct dispatch *d, const struct jobs *jobs, const struct dispatch_done *ev,
                   uint64_t now_us, struct dispatch_done_out *out);
/* JOB_STOP for the job was proposed: never again for this leader. */
void dispatch_stop_proposed(struct dispatch *d, uint32_t job);
/* A JOB_DONE holding a result for `image` of `job` failed: the image may be
 * cut again (ACTIVE only). */
void dispatch_unclaim(struct dispatch *d, uint32_t job, uint32_t image);
/* Requeues the queries in flight longer than the timeout at `now`, listing
 * the first max of them. Returns how many there were. */
size_t dispatch_tick(struct dispatch *d, uint64_t now_us, struct dispatch_timeout *out, size_t max);

/* ---- loading models ---- */

/* A model load to ask of a worker (JOB_PRELOAD with the job's model). */
struct dispatch_load {
    uint32_t job;
    char worker[DISPATCH_NAME_MAX];
    char key[DISPATCH_MODEL_KEY_MAX];
};

/* The loads to start now (ACTIVE only), at most max; each is then under way
 * until dispatch_load_done. Returns how many. */
size_t dispatch_loads(struct dispatch *d, uint64_t now_us, struct dispatch_load *out, size_t max);
/* A model version was just registered (`train`): one load of it now, on the
 * worker with the fewest loads under way, since a job is likely launched
 * next; that job's slow start then counts this load. Returns 1 with *out
 * (job 0), or 0 (not dispatching, or every worker has it or is loading it). */
int dispatch_load_new_model(struct dispatch *d, const char *key, uint64_t now_us,
                            struct dispatch_load *out);
/* A load's answer: 0 loaded; ID_EMODEL the model cannot be loaded (the
 * worker then takes its queries, which report why); anything else (a
 * timeout, a fetch that failed, a stale key) is tried again later. Returns 1
 * when the worker can now take the job's queries. */
int dispatch_load_done(struct dispatch *d, const char *worker, const char *key, int status,
                       uint64_t now_us);
/* A worker says it has these model versions loaded (its WORKER_STATE). */
void dispatch_worker_models(struct dispatch *d, const char *worker, char *const *keys, size_t n);

/* ---- the group commit of completions ---- */

/* Whether the batch is full: take it and propose it before adding. */
int dispatch_batch_full(const struct dispatch *d);
/* Adds a completion (the batch must not be full). Returns 1 if it is the
 * first of its batch (arm the 1 ms timer), else 0. */
int dispatch_batch_add(struct dispatch *d, const struct dispatch_held *h);
/* Empties the batch into out (DISPATCH_BATCH_MAX entries). Returns how many. */
size_t dispatch_batch_take(struct dispatch *d, struct dispatch_held *out);
/* The timer fired: whether to propose the batch now (1), or leave it to the
 * next commit (0: the commands in flight are at the bound). */
int dispatch_batch_due(const struct dispatch *d);
/* A JOB_DONE command was proposed / has its outcome. dispatch_batch_settled
 * returns whether to propose the waiting batch now: one is waiting and no
 * timer is armed for it. */
void dispatch_batch_proposed(struct dispatch *d);
int dispatch_batch_settled(struct dispatch *d, int timer_armed);

#endif
