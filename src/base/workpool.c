/* workpool.c — worker threads with their own queue, completions posted back
 * to the loop through a uv_async_t (see workpool.h).
 *
 * One mutex guards the queue, the done list and each thread's current job.
 * A job moves queued -> running -> finished, or queued -> finished when it is
 * cancelled before a thread takes it; finished jobs wait on the done list
 * until the async handle runs on the loop and calls their done callbacks.
 */
#include "base/workpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define WORKPOOL_MAX_THREADS 64

enum { JOB_QUEUED = 1, JOB_RUNNING, JOB_FINISHED };

struct workpool_thread {
    struct workpool *pool;
    pthread_t tid;
    struct workpool_job *current;
};

struct workpool {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct workpool_job *queue_head, *queue_tail;
    struct workpool_job *done_head, *done_tail;
    size_t pending; /* submitted, done not yet called */
    int stopping;
    char name[16];
    unsigned n_threads;
    struct workpool_thread threads[];
};

/* Caller holds the lock. */
static void push_done(struct workpool *p, struct workpool_job *job, int status)
{
    job->state = JOB_FINISHED;
    job->status = status;
    job->next = NULL;
    if (p->done_tail)
        p->done_tail->next = job;
    else
        p->done_head = job;
    p->done_tail = job;
}

static void *worker_main(void *arg)
{
    struct workpool_thread *t = arg;
    struct workpool *p = t->pool;
    pthread_setname_np(pthread_self(), p->name);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->queue_head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        struct workpool_job *job = p->queue_head;
        if (!job)
            break; /* stopping, and nothing left */
        p->queue_head = job->next;
        if (!p->queue_head)
            p->queue_tail = NULL;
        job->state = JOB_RUNNING;
        t->current = job;
        pthread_mutex_unlock(&p->lock);
        job->work(job);
        pthread_mutex_lock(&p->lock);
        t->current = NULL;
        push_done(p, job, 0);
        uv_async_send(&p->async);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Loop thread: calls the done callbacks of finished jobs, oldest first. */
static void deliver_done(struct workpool *p)
{
    pthread_mutex_lock(&p->lock);
    struct workpool_job *job = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (job) {
        struct workpool_job *next = job->next;
        p->pending--;
        job->done(job, job->status); /* may free job */
        job = next;
    }
}

static void on_async(uv_async_t *a)
{
    deliver_done(a->data);
}

int workpool_create(uv_loop_t *loop, const char *name, unsigned threads, struct workpool **out)
{
    if (threads == 0 || threads > WORKPOOL_MAX_THREADS || !name)
        return ID_EINVAL;
    struct workpool *p = calloc(1, sizeof *p + threads * sizeof p->threads[0]);
    if (!p)
        return ID_ENOMEM;
    p->loop = loop;
    snprintf(p->name, sizeof p->name, "%s", name);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (uv_async_init(loop, &p->async, on_async) < 0) {
        free(p);
        return ID_EINTERNAL;
    }
    p->async.data = p;
    for (unsigned i = 0; i < threads; i++) {
        p->threads[i].pool = p;
        if (pthread_create(&p->threads[i].tid, NULL, worker_main, &p->threads[i]) != 0) {
            p->n_threads = i;
            workpool_destroy(p);
            return ID_EINTERNAL;
        }
    }
    p->n_threads = threads;
    *out = p;
    return 0;
}

int workpool_submit(struct workpool *p, struct workpool_job *job, workpool_work_fn work,
                    workpool_done_fn done)
{
    if (p->stopping)
        return ID_ESHUTDOWN;
    job->work = work;
    job->done = done;
    job->pool = p;
    job->next = NULL;
    job->status = 0;
    atomic_store(&job->cancelled, 0);
    pthread_mutex_lock(&p->lock);
    job->state = JOB_QUEUED;
    if (p->queue_tail)
        p->queue_tail->next = job;
    else
        p->queue_head = job;
    p->queue_tail = job;
    p->pending++;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Caller holds the lock. */
static void unqueue(struct workpool *p, struct workpool_job *job)
{
    struct workpool_job **link = &p->queue_head, *prev = NULL;
    while (*link && *link != job) {
        prev = *link;
        link = &(*link)->next;
    }
    if (!*link)
        return;
    *link = job->next;
    if (p->queue_tail == job)
        p->queue_tail = prev;
}

void workpool_cancel(struct workpool_job *job)
{
    struct workpool *p = job->pool;
    pthread_mutex_lock(&p->lock);
    atomic_store(&job->cancelled, 1);
    if (job->state == JOB_QUEUED) {
        unqueue(p, job);
        push_done(p, job, ID_ECANCELED);
        uv_async_send(&p->async);
    }
    pthread_mutex_unlock(&p->lock);
}

size_t workpool_pending(struct workpool *p)
{
    return p->pending;
}

static void on_closed(uv_handle_t *h)
{
    struct workpool *p = h->data;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}

void workpool_destroy(struct workpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    while (p->queue_head) {
        struct workpool_job *job = p->queue_head;
        p->queue_head = job->next;
        atomic_store(&job->cancelled, 1);
        push_done(p, job, ID_ECANCELED);
    }
    p->queue_tail = NULL;
    for (unsigned i = 0; i < p->n_threads; i++)
        if (p->threads[i].current)
            atomic_store(&p->threads[i].current->cancelled, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i].tid, NULL);
    deliver_done(p);
    uv_close((uv_handle_t *)&p->async, on_closed);
}
