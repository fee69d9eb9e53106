/* test_workpool.c — the layer-owned worker pool: every job's work runs once
 * on a pool thread and its done once on the loop thread, in submission order
 * for a single thread; a queued job cancelled never runs and completes with
 * ID_ECANCELED; a running job sees its cancel flag; destroy cancels and
 * completes everything still outstanding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <uv.h>

#include "base/err.h"
#include "base/workpool.h"

struct tjob {
    struct workpool_job job; /* first: the callbacks cast back */
    atomic_int worked;
    int done_calls, done_status, done_order;
    pthread_t work_thread, done_thread;
    /* For jobs that block: released by the test. */
    pthread_mutex_t *m;
    pthread_cond_t *c;
    int *started, *release;
    atomic_int saw_cancel;
};

static int done_counter;

static void plain_work(struct workpool_job *j)
{
    struct tjob *t = (struct tjob *)j;
    t->work_thread = pthread_self();
    atomic_fetch_add(&t->worked, 1);
}

static void on_done(struct workpool_job *j, int status)
{
    struct tjob *t = (struct tjob *)j;
    t->done_calls++;
    t->done_status = status;
    t->done_order = done_counter++;
    t->done_thread = pthread_self();
}

/* Tells the test it started, then waits until released. */
static void blocking_work(struct workpool_job *j)
{
    struct tjob *t = (struct tjob *)j;
    atomic_fetch_add(&t->worked, 1);
    pthread_mutex_lock(t->m);
    *t->started = 1;
    pthread_cond_broadcast(t->c);
    while (!*t->release)
        pthread_cond_wait(t->c, t->m);
    pthread_mutex_unlock(t->m);
}

/* Works in chunks until cancelled, like a long search. */
static void chunked_work(struct workpool_job *j)
{
    struct tjob *t = (struct tjob *)j;
    atomic_fetch_add(&t->worked, 1);
    pthread_mutex_lock(t->m);
    *t->started = 1;
    pthread_cond_broadcast(t->c);
    pthread_mutex_unlock(t->m);
    while (!workpool_job_cancelled(j))
        sched_yield();
    atomic_store(&t->saw_cancel, 1);
}

static void run_until_done(uv_loop_t *loop, struct workpool *p)
{
    while (workpool_pending(p) > 0)
        uv_run(loop, UV_RUN_ONCE);
}

static void wait_started(struct tjob *t)
{
    pthread_mutex_lock(t->m);
    while (!*t->started)
        pthread_cond_wait(t->c, t->m);
    pthread_mutex_unlock(t->m);
}

static void test_jobs_complete_on_the_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct workpool *p;
    assert_int_equal(workpool_create(&loop, "test", 3, &p), 0);
    enum { N = 50 };
    struct tjob *jobs = calloc(N, sizeof *jobs);
    done_counter = 0;
    for (int i = 0; i < N; i++)
        assert_int_equal(workpool_submit(p, &jobs[i].job, plain_work, on_done), 0);
    run_until_done(&loop, p);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&jobs[i].worked), 1);
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].done_status, 0);
        assert_true(pthread_equal(jobs[i].done_thread, pthread_self()));
        assert_false(pthread_equal(jobs[i].work_thread, pthread_self()));
    }
    workpool_destroy(p);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(jobs);
}

static void test_queued_job_cancelled_never_runs(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct workpool *p;
    assert_int_equal(workpool_create(&loop, "test", 1, &p), 0);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    int started = 0, release = 0;
    struct tjob busy = {.m = &m, .c = &c, .started = &started, .release = &release};
    struct tjob queued = {0}, after = {0};
    done_counter = 0;
    assert_int_equal(workpool_submit(p, &busy.job, blocking_work, on_done), 0);
    assert_int_equal(workpool_submit(p, &queued.job, plain_work, on_done), 0);
    assert_int_equal(workpool_submit(p, &after.job, plain_work, on_done), 0);
    wait_started(&busy); /* the only thread is taken: the others are queued */
    workpool_cancel(&queued.job);
    pthread_mutex_lock(&m);
    release = 1;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    run_until_done(&loop, p);
    assert_int_equal(atomic_load(&queued.worked), 0);
    assert_int_equal(queued.done_calls, 1);
    assert_int_equal(queued.done_status, ID_ECANCELED);
    assert_int_equal(queued.done_order, 0); /* completed before the busy job ended */
    assert_int_equal(busy.done_status, 0);
    assert_int_equal(after.done_calls, 1);
    assert_int_equal(atomic_load(&after.worked), 1);
    assert_true(after.done_order > busy.done_order); /* one thread: in order */
    workpool_destroy(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_running_job_sees_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct workpool *p;
    assert_int_equal(workpool_create(&loop, "test", 2, &p), 0);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    int started = 0;
    struct tjob t = {.m = &m, .c = &c, .started = &started};
    assert_int_equal(workpool_submit(p, &t.job, chunked_work, on_done), 0);
    wait_started(&t);
    assert_int_equal(t.done_calls, 0);
    workpool_cancel(&t.job);
    run_until_done(&loop, p);
    assert_int_equal(atomic_load(&t.saw_cancel), 1);
    assert_int_equal(t.done_calls, 1);
    assert_int_equal(t.done_status, 0); /* it ran: its work says how far */
    workpool_destroy(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_destroy_completes_everything(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct workpool *p;
    assert_int_equal(workpool_create(&loop, "test", 1, &p), 0);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    int started = 0;
    struct tjob running = {.m = &m, .c = &c, .started = &started};
    struct tjob queued[3] = {0};
    assert_int_equal(workpool_submit(p, &running.job, chunked_work, on_done), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(workpool_submit(p, &queued[i].job, plain_work, on_done), 0);
    wait_started(&running);
    workpool_destroy(p); /* must stop the endless job and complete all four */
    assert_int_equal(atomic_load(&running.saw_cancel), 1);
    assert_int_equal(running.done_calls, 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(queued[i].done_calls, 1);
        assert_int_equal(queued[i].done_status, ID_ECANCELED);
        assert_int_equal(atomic_load(&queued[i].worked), 0);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct workpool *p;
    assert_int_equal(workpool_create(&loop, "test", 0, &p), ID_EINVAL);
    assert_int_equal(workpool_create(&loop, "test", 65, &p), ID_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_complete_on_the_loop),
        cmocka_unit_test(test_queued_job_cancelled_never_runs),
        cmocka_unit_test(test_running_job_sees_cancel),
        cmocka_unit_test(test_destroy_completes_everything),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
