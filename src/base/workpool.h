/* workpool.h — a small pool of worker threads owned by one layer, with its
 * results delivered on the layer's libuv loop.
 *
 * Why not uv_queue_work: libuv has one pool per process (4 threads by
 * default), shared with its own file-system requests. Work that can run long
 * (a log search, a model run) holding those threads delays every fsync behind
 * it. A layer that does such work creates its own pool, sized for it, so its
 * queue never stands in front of another layer's I/O.
 *
 * A job is a struct workpool_job embedded in the caller's own struct:
 *
 *   work(job)          on a pool thread; long work calls
 *                      workpool_job_cancelled(job) between chunks and stops
 *                      early when it returns 1.
 *   done(job, status)  on the loop thread, exactly once per submitted job:
 *                      status 0 when work ran (to the end or stopped early),
 *                      ID_ECANCELED when it was cancelled before it started
 *                      (work never ran). The job's memory is the caller's
 *                      again from here on (done may free it).
 *
 * Cancellation (workpool_cancel, loop thread) sets the job's flag: a queued
 * job is taken off the queue, a running one sees the flag at its next check.
 *
 * Every function except workpool_job_cancelled runs on the loop thread.
 */
#ifndef IDUNNO_BASE_WORKPOOL_H
#define IDUNNO_BASE_WORKPOOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <uv.h>

struct workpool;
struct workpool_job;

typedef void (*workpool_work_fn)(struct workpool_job *job);
typedef void (*workpool_done_fn)(struct workpool_job *job, int status);

struct workpool_job {
    workpool_work_fn work;
    workpool_done_fn done;
    /* The pool's; set by workpool_submit. */
    struct workpool *pool;
    struct workpool_job *next;
    int state;
    int status;
    atomic_int cancelled;
};

/* Starts `threads` (1..64) worker threads named "NAME" (at most 15 bytes are
 * kept) whose completions are delivered on `loop`. Returns 0, ID_EINVAL or
 * ID_ENOMEM / ID_EINTERNAL (threads could not start). */
int workpool_create(uv_loop_t *loop, const char *name, unsigned threads, struct workpool **out);

/* Queues job (work and done set by the caller). Returns 0, or ID_ESHUTDOWN
 * once the pool is being destroyed (then done never runs). */
int workpool_submit(struct workpool *p, struct workpool_job *job, workpool_work_fn work,
                    workpool_done_fn done);

/* Asks the job to stop (see above). A job whose done already ran must not be
 * passed. */
void workpool_cancel(struct workpool_job *job);

/* On the job's pool thread: has it been asked to stop? */
static inline int workpool_job_cancelled(const struct workpool_job *job)
{
    return atomic_load_explicit(&job->cancelled, memory_order_relaxed);
}

/* Jobs queued and running, for stats and tests. */
size_t workpool_pending(struct workpool *p);

/* Cancels every job, waits for running ones to reach their next check (joins
 * the threads), runs every outstanding done callback (from inside this call)
 * and frees the pool once libuv has closed its handle. p may be NULL. */
void workpool_destroy(struct workpool *p);

#endif
