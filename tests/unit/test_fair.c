/* test_fair.c — the fair-time dispatcher on a fake clock: a discrete-event
 * simulation of workers that finish a query after a per-job cost shows equal
 * (or weighted) completion rates whatever the costs; then the edges one at a
 * time: work conservation, a new job's first slot, slot bounds, worker failure,
 * adoption after a failover, model preference, job removal, holds and the
 * room of a dispatch, and error codes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "sched/fair.h"

/* ---- the simulation ------------------------------------------------------------------------- */

#define SIM_JOBS 4 /* job ids 1..3 */
#define SIM_MAX_FLIGHT 256
#define SIM_LOG_MAX 4096

struct sim_ev {
    uint64_t done_at;
    uint32_t job;
    uint64_t query;
};

struct sim {
    struct fair *f;
    uint64_t now;
    struct sim_ev ev[SIM_MAX_FLIGHT];
    size_t nev;
    unsigned cost[SIM_JOBS];   /* time units per query */
    int feed[SIM_JOBS];        /* keep the queue topped up */
    uint64_t next_q[SIM_JOBS]; /* next query id per job */
    uint64_t completed[SIM_JOBS];
    uint64_t busy;             /* slot-time units spent running queries */
    uint32_t log[SIM_LOG_MAX]; /* jobs in dispatch order, while logging */
    size_t nlog;
    int logging;
};

static void sim_init(struct sim *s, unsigned workers, unsigned slots)
{
    memset(s, 0, sizeof *s);
    s->f = fair_create();
    assert_non_null(s->f);
    for (unsigned i = 0; i < workers; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%02u", i);
        assert_int_equal(fair_worker_add(s->f, name, slots), 0);
    }
    for (uint32_t j = 0; j < SIM_JOBS; j++)
        s->next_q[j] = (uint64_t)j << 32;
}

static void sim_job(struct sim *s, uint32_t job, double weight, unsigned cost)
{
    assert_int_equal(fair_job_add(s->f, job, weight), 0);
    s->cost[job] = cost;
    s->feed[job] = 1;
}

/* Tops queues up, dispatches everything that can run, then moves the clock to
 * the next completion and completes every query due then. */
static void sim_step(struct sim *s)
{
    for (uint32_t j = 1; j < SIM_JOBS; j++)
        while (s->feed[j] && fair_queued(s->f, j) < 8)
            assert_int_equal(fair_enqueue(s->f, j, s->next_q[j]++, 0), 0);
    struct fair_dispatch d;
    while (fair_next(s->f, &d) == 1) {
        assert_true(s->nev < SIM_MAX_FLIGHT);
        s->ev[s->nev++] = (struct sim_ev){s->now + s->cost[d.job], d.job, d.query};
        if (s->logging && s->nlog < SIM_LOG_MAX)
            s->log[s->nlog++] = d.job;
    }
    if (!s->nev)
        return;
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < s->nev; i++)
        if (s->ev[i].done_at < next)
            next = s->ev[i].done_at;
    s->now = next;
    for (size_t i = 0; i < s->nev;) {
        if (s->ev[i].done_at == next) {
            assert_int_equal(fair_complete(s->f, s->ev[i].job, s->ev[i].query), 0);
            s->completed[s->ev[i].job]++;
            s->busy += s->cost[s->ev[i].job];
            s->ev[i] = s->ev[--s->nev];
        } else {
            i++;
        }
    }
}

static void sim_run_until(struct sim *s, uint64_t t)
{
    while (s->now < t)
        sim_step(s);
}

static void sim_free(struct sim *s)
{
    fair_destroy(s->f);
}

/* |a - b| <= tol * max(a, b) */
static void assert_close(double a, double b, double tol)
{
    double hi = a > b ? a : b, diff = a > b ? a - b : b - a;
    if (diff > tol * hi)
        fail_msg("%.1f and %.1f differ by more than %.1f%%", a, b, tol * 100);
}

/* ---- fairness ------------------------------------------------------------------------------- */

static void test_equal_rates_despite_costs(void **state)
{
    (void)state;
    struct sim s;
    sim_init(&s, 10, 0);
    sim_job(&s, 1, 1, 3);
    sim_job(&s, 2, 1, 7);
    sim_run_until(&s, 100000);
    /* 20 slots, costs 3 and 7 at equal rates: 2 queries per unit each. */
    assert_true(s.completed[1] > 150000);
    assert_close((double)s.completed[1], (double)s.completed[2], 0.02);
    /* Far tighter in fact: the gap is bounded by what is in flight. */
    uint64_t gap = s.completed[1] > s.completed[2] ? s.completed[1] - s.completed[2]
                                                   : s.completed[2] - s.completed[1];
    assert_true(gap <= 20);
    /* Work-conserving: every slot busy all the time (but the last queries). */
    assert_true(s.busy >= 20 * (s.now - 10));
    assert_int_equal(fair_dispatched(s.f, 1), s.completed[1] + fair_inflight(s.f, 1));
    sim_free(&s);
}

static void test_weights_one_to_two(void **state)
{
    (void)state;
    struct sim s;
    sim_init(&s, 10, 0);
    sim_job(&s, 1, 1, 3);
    sim_job(&s, 2, 2, 7);
    sim_run_until(&s, 100000);
    assert_close(2.0 * (double)s.completed[1], (double)s.completed[2], 0.02);
    sim_free(&s);
}

static void test_three_jobs(void **state)
{
    (void)state;
    struct sim s;
    sim_init(&s, 15, 0);
    sim_job(&s, 1, 1, 2);
    sim_job(&s, 2, 1, 5);
    sim_job(&s, 3, 1, 11);
    sim_run_until(&s, 100000);
    assert_close((double)s.completed[1], (double)s.completed[2], 0.02);
    assert_close((double)s.completed[2], (double)s.completed[3], 0.02);
    assert_close((double)s.completed[1], (double)s.completed[3], 0.02);
    sim_free(&s);

    /* And weights 3:2:1 on the same costs. */
    sim_init(&s, 15, 0);
    sim_job(&s, 1, 3, 2);
    sim_job(&s, 2, 2, 5);
    sim_job(&s, 3, 1, 11);
    sim_run_until(&s, 100000);
    assert_close((double)s.completed[1], 3.0 * (double)s.completed[3], 0.02);
    assert_close((double)s.completed[2], 2.0 * (double)s.completed[3], 0.02);
    sim_free(&s);
}

static void test_deterministic(void **state)
{
    (void)state;
    struct sim a, b;
    sim_init(&a, 10, 3);
    sim_init(&b, 10, 3);
    sim_job(&a, 1, 1, 3);
    sim_job(&b, 1, 1, 3);
    sim_job(&a, 2, 1.5, 4);
    sim_job(&b, 2, 1.5, 4);
    a.logging = b.logging = 1;
    sim_run_until(&a, 2000);
    sim_run_until(&b, 2000);
    assert_int_equal(a.nlog, b.nlog);
    assert_memory_equal(a.log, b.log, a.nlog * sizeof a.log[0]);
    sim_free(&a);
    sim_free(&b);
}

/* A job with nothing queued gives its share away; when queries come again it
 * starts level with the others, neither catching up in a burst nor starved. */
static void test_work_conservation(void **state)
{
    (void)state;
    struct sim s;
    sim_init(&s, 10, 0);
    sim_job(&s, 1, 1, 3);
    sim_job(&s, 2, 1, 7);
    sim_run_until(&s, 10000);
    uint64_t a0 = s.completed[1], b0 = s.completed[2];

    s.feed[2] = 0; /* job 2's client pauses */
    sim_run_until(&s, 20000);
    uint64_t a1 = s.completed[1] - a0;
    assert_int_equal(fair_queued(s.f, 2), 0);
    assert_true(s.completed[2] - b0 <= 40); /* only what was queued or running */
    /* Job 1 alone fills all 20 slots: 20 * 10000 / 3 queries. */
    assert_true(a1 >= 0.98 * 20 * 10000 / 3);

    s.feed[2] = 1; /* and resumes */
    s.logging = 1;
    sim_run_until(&s, 30000);
    assert_true(s.nlog >= 1000);
    /* Its first query goes out at once, then the two alternate. In every prefix
     * of the dispatch log the jobs stay within two queries of each other. */
    assert_int_equal(s.log[0], 2);
    long diff = 0, worst = 0;
    for (size_t i = 0; i < 1000; i++) {
        diff += s.log[i] == 2 ? 1 : -1;
        long m = diff < 0 ? -diff : diff;
        if (m > worst)
            worst = m;
    }
    assert_true(worst <= 2);
    /* Over the resumed phase the rates are equal again. */
    s.logging = 0;
    uint64_t a3 = s.completed[1], b3 = s.completed[2];
    sim_run_until(&s, 60000);
    assert_close((double)(s.completed[1] - a3), (double)(s.completed[2] - b3), 0.02);
    sim_free(&s);
}

/* A job that became runnable while the cluster was busy takes the next slot. */
static void test_new_job_next_slot(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    assert_int_equal(fair_worker_add(f, "a", 2), 0);
    assert_int_equal(fair_worker_add(f, "b", 2), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    for (uint64_t q = 0; q < 100; q++) {
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
        assert_int_equal(fair_enqueue(f, 2, 1000 + q, 0), 0);
    }
    struct fair_dispatch d;
    /* Run a while so the two old jobs have a history. */
    uint64_t running[4][2];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        running[i][0] = d.job;
        running[i][1] = d.query;
    }
    assert_int_equal(fair_next(f, &d), 0); /* all four slots taken */
    for (int round = 0; round < 50; round++) {
        int i = round % 4;
        assert_int_equal(fair_complete(f, (uint32_t)running[i][0], running[i][1]), 0);
        assert_int_equal(fair_next(f, &d), 1);
        running[i][0] = d.job;
        running[i][1] = d.query;
    }
    assert_int_equal(fair_job_add(f, 7, 1), 0);
    assert_int_equal(fair_enqueue(f, 7, 7000, 0), 0);
    assert_int_equal(fair_enqueue(f, 7, 7001, 0), 0);
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_complete(f, (uint32_t)running[0][0], running[0][1]), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 7);
    assert_int_equal(d.query, 7000);
    /* No burst: the next free slot goes to an old job. */
    assert_int_equal(fair_complete(f, (uint32_t)running[1][0], running[1][1]), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_not_equal(d.job, 7);
    fair_destroy(f);
}

/* A job comes back (or a new one starts) while no job is runnable: it starts
 * at the virtual time of the last dispatch, not where it left off, so when the
 * other job has queries again the two alternate instead of the newcomer taking
 * a long run of slots to catch up. */
static void test_idle_return_no_burst(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "w", 1), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    for (uint64_t q = 0; q < 500; q++) {
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(fair_complete(f, 1, q), 0);
    }
    /* Nothing runnable now. Job 2 wakes, then job 1 gets queries again. */
    for (uint64_t q = 0; q < 20; q++)
        assert_int_equal(fair_enqueue(f, 2, 1000 + q, 0), 0);
    for (uint64_t q = 0; q < 20; q++)
        assert_int_equal(fair_enqueue(f, 1, 500 + q, 0), 0);
    int ones = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        ones += d.job == 1;
        assert_int_equal(fair_complete(f, d.job, d.query), 0);
    }
    assert_true(ones >= 9 && ones <= 11);
    fair_destroy(f);
}

/* Spare slots: with every slot taken, a job with nothing running still gets
 * its next query dispatched, once, to a worker with room in its spare; a job
 * that has a query running waits as before; off, nothing changes. */
static void test_spare_slot(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_set_spare(f, FAIR_SPARE_MAX + 1), ID_EINVAL);
    assert_int_equal(fair_worker_add(f, "a", 1), 0);
    assert_int_equal(fair_worker_add(f, "b", 1), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    for (uint64_t q = 0; q < 100; q++)
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 0); /* both slots taken */
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    assert_int_equal(fair_enqueue(f, 2, 2000, 0), 0);
    assert_int_equal(fair_enqueue(f, 2, 2001, 0), 0);
    assert_int_equal(fair_next(f, &d), 0); /* spare off: the new job waits */

    assert_int_equal(fair_set_spare(f, 1), 0);
    assert_int_equal(fair_next(f, &d), 1); /* on: its first query goes at once */
    assert_int_equal(d.job, 2);
    assert_int_equal(d.query, 2000);
    char spare_host[FAIR_NAME_MAX];
    strcpy(spare_host, d.worker);
    /* It has a query running now, and job 1 always had: nobody else gets one. */
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_inflight(f, 2), 1);
    /* A third job takes the other worker's spare; a fourth finds none left. */
    assert_int_equal(fair_job_add(f, 3, 1), 0);
    assert_int_equal(fair_enqueue(f, 3, 3000, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 3);
    assert_string_not_equal(d.worker, spare_host);
    assert_int_equal(fair_job_add(f, 4, 1), 0);
    assert_int_equal(fair_enqueue(f, 4, 4000, 0), 0);
    assert_int_equal(fair_next(f, &d), 0);
    /* Requeue and remove work on spare queries like on any other. */
    assert_int_equal(fair_requeue(f, 2, 2000), 0);
    assert_int_equal(fair_inflight(f, 2), 0);
    assert_int_equal(fair_queued(f, 2), 2);
    assert_int_equal(fair_next(f, &d), 1); /* job 2 or 4: both idle, tied at the floor */
    assert_true(d.job == 2 || d.job == 4);
    assert_string_equal(d.worker, spare_host);
    assert_int_equal(fair_worker_remove(f, spare_host), 2); /* its job-1 query and the spare one */
    assert_int_equal(
        fair_inflight(f, 1) + fair_inflight(f, 2) + fair_inflight(f, 3) + fair_inflight(f, 4), 2);
    fair_destroy(f);
}

/* With spares on, the rates stay equal: the dispatch order is the same, the
 * spare only adds room for jobs with nothing running. */
static void test_spare_keeps_rates_equal(void **state)
{
    (void)state;
    struct sim s;
    sim_init(&s, 10, 1);
    assert_int_equal(fair_set_spare(s.f, 1), 0);
    sim_job(&s, 1, 1, 3);
    sim_job(&s, 2, 1, 7);
    sim_job(&s, 3, 1, 40);
    sim_run_until(&s, 100000);
    assert_close((double)s.completed[1], (double)s.completed[2], 0.02);
    assert_close((double)s.completed[1], (double)s.completed[3], 0.02);
    sim_free(&s);
}

/* ---- bursts --------------------------------------------------------------------------------- */

static void test_burst_bound(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "a", 1), 0);
    assert_int_equal(fair_worker_add(f, "b", 1), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_set_burst(f, 1, 0), ID_EINVAL);
    assert_int_equal(fair_job_set_burst(f, 1, FAIR_BURST_MAX + 1), ID_EINVAL);
    assert_int_equal(fair_job_set_burst(f, 7, 2), ID_ENOTFOUND);
    for (uint64_t q = 0; q < 100; q++)
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 0); /* no burst yet: one per slot */
    assert_int_equal(fair_job_set_burst(f, 1, 4), 0);
    unsigned on_a = 0, on_b = 0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        on_a += strcmp(d.worker, "a") == 0;
        on_b += strcmp(d.worker, "b") == 0;
    }
    assert_int_equal(fair_next(f, &d), 0); /* four each, spread evenly */
    assert_int_equal(on_a, 3);
    assert_int_equal(on_b, 3);
    assert_int_equal(fair_inflight(f, 1), 8);
    /* A lowered burst: the running ones stay, new ones only below it. */
    assert_int_equal(fair_job_set_burst(f, 1, 2), 0);
    assert_int_equal(fair_complete(f, 1, 0), 0);
    assert_int_equal(fair_next(f, &d), 0);
    for (uint64_t q = 1; q < 8; q++)
        assert_int_equal(fair_complete(f, 1, q), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_inflight(f, 1), 4);
    /* Removing a worker requeues its burst like any other queries. */
    assert_int_equal(fair_worker_remove(f, "a"), 2);
    assert_int_equal(fair_inflight(f, 1), 2);
    fair_destroy(f);
}

/* A burst never shares a worker with another job: a worker running a costly
 * query takes no burst beside it, and one holding a burst is no free slot for
 * another job until it has drained. */
static void test_burst_not_shared(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "a", 1), 0);
    assert_int_equal(fair_worker_add(f, "b", 1), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    assert_int_equal(fair_job_set_burst(f, 1, 3), 0);
    /* Job 2 (no burst) takes a first. */
    assert_int_equal(fair_enqueue(f, 2, 200, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 2);
    char costly[FAIR_NAME_MAX];
    strcpy(costly, d.worker);
    for (uint64_t q = 100; q < 110; q++)
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(d.job, 1);
        assert_string_not_equal(d.worker, costly);
    }
    assert_int_equal(fair_next(f, &d), 0);
    /* Job 2's query done, the worker is job 1's too: a burst there as well. */
    assert_int_equal(fair_complete(f, 2, 200), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(d.job, 1);
        assert_string_equal(d.worker, costly);
    }
    assert_int_equal(fair_next(f, &d), 0);
    /* Job 2 comes back (at the floor, and running nothing it goes first), but
     * every worker holds a burst: it waits until one has drained, whole. */
    assert_int_equal(fair_enqueue(f, 2, 201, 0), 0);
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_complete(f, 1, 100), 0);
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_complete(f, 1, 101), 0);
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_complete(f, 1, 102), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 2);
    assert_int_equal(d.query, 201);
    assert_string_not_equal(d.worker, costly);
    fair_destroy(f);
}

/* With bursts for the cheap jobs, rates stay equal whatever the costs. */
static void test_burst_keeps_rates_equal(void **state)
{
    (void)state;
    struct sim s;
    sim_init(&s, 10, 1);
    assert_int_equal(fair_set_spare(s.f, 1), 0);
    sim_job(&s, 1, 1, 1);
    sim_job(&s, 2, 1, 5);
    sim_job(&s, 3, 1, 40);
    assert_int_equal(fair_job_set_burst(s.f, 1, 8), 0);
    assert_int_equal(fair_job_set_burst(s.f, 2, 2), 0);
    sim_run_until(&s, 100000);
    assert_true(s.completed[3] > 1000);
    assert_close((double)s.completed[1], (double)s.completed[2], 0.02);
    assert_close((double)s.completed[1], (double)s.completed[3], 0.02);
    sim_free(&s);
}

/* ---- slots and workers ---------------------------------------------------------------------- */

static void test_slots_bound(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    for (uint64_t q = 0; q < 20; q++)
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
    assert_int_equal(fair_next(f, &d), 0); /* no worker yet */
    assert_int_equal(fair_worker_add(f, "w", 3), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_string_equal(d.worker, "w");
        assert_int_equal(d.query, (uint64_t)i);
    }
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_inflight(f, 1), 3);
    assert_int_equal(fair_queued(f, 1), 17);
    /* Re-adding updates the bound. */
    assert_int_equal(fair_worker_add(f, "w", 5), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 0);
    /* Lowered below the load: the running ones stay, no new ones until below. */
    assert_int_equal(fair_worker_add(f, "w", 1), 0);
    assert_int_equal(fair_inflight(f, 1), 5);
    for (uint64_t q = 0; q < 4; q++) {
        assert_int_equal(fair_complete(f, 1, q), 0);
        assert_int_equal(fair_next(f, &d), 0);
    }
    assert_int_equal(fair_complete(f, 1, 4), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.query, 5);
    /* 0 means the default. */
    assert_int_equal(fair_worker_add(f, "v", 0), 0);
    for (int i = 0; i < FAIR_DEFAULT_SLOTS; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_string_equal(d.worker, "v");
    }
    assert_int_equal(fair_next(f, &d), 0);
    fair_destroy(f);
}

static void test_worker_remove_requeues_in_order(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "a", 3), 0);
    assert_int_equal(fair_worker_add(f, "b", 3), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    /* a holds job 2's model, so both jobs end up with queries on a. */
    assert_int_equal(fair_worker_set_model(f, "a", 2, 1), 0);
    for (uint64_t q = 0; q < 10; q++) {
        assert_int_equal(fair_enqueue(f, 1, 100 + q, 0), 0);
        assert_int_equal(fair_enqueue(f, 2, 200 + q, 0), 0);
    }
    /* Jobs alternate: 1 on a, 2 on a, 1 on b, 2 on a, 1 on b, 2 on b. */
    uint64_t on_a[2][3];
    size_t na[2] = {0, 0};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(d.job, (uint32_t)(i % 2 + 1));
        if (strcmp(d.worker, "a") == 0)
            on_a[d.job - 1][na[d.job - 1]++] = d.query;
    }
    assert_int_equal(na[0], 1);
    assert_int_equal(na[1], 2);
    assert_int_equal(na[0] + na[1], 3);
    assert_int_equal(fair_worker_remove(f, "a"), 3);
    assert_int_equal(fair_worker_remove(f, "a"), ID_ENOTFOUND);
    assert_int_equal(fair_inflight(f, 1) + fair_inflight(f, 2), 3);
    /* Each job's requeued queries are back at its head, in dispatch order, and
     * before what was queued behind them. */
    for (uint32_t j = 1; j <= 2; j++) {
        assert_int_equal(fair_queued(f, j), 10 - 3 + na[j - 1]);
    }
    /* Drain on "b" (after completing its three) and check the order per job. */
    uint64_t got[2][16];
    size_t ng[2] = {0, 0};
    assert_int_equal(fair_worker_add(f, "b", 100), 0);
    while (fair_next(f, &d) == 1)
        got[d.job - 1][ng[d.job - 1]++] = d.query;
    assert_int_equal(ng[0], 10 - 3 + na[0]);
    assert_int_equal(ng[1], 10 - 3 + na[1]);
    assert_int_equal(got[0][0], 100);
    assert_int_equal(got[1][0], 200);
    assert_int_equal(got[1][1], 201);
    for (int j = 0; j < 2; j++) {
        for (size_t i = 0; i < na[j]; i++)
            assert_int_equal(got[j][i], on_a[j][i]);
        for (size_t i = 1; i < ng[j]; i++)
            assert_true(got[j][i] > got[j][i - 1]);
    }
    fair_destroy(f);
}

static void test_requeue_and_complete(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "w", 2), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    assert_int_equal(fair_enqueue(f, 1, 20, 0), 0);
    assert_int_equal(fair_enqueue(f, 1, 21, 0), 0);
    assert_int_equal(fair_enqueue(f, 2, 10, 0), 0);
    assert_int_equal(fair_enqueue(f, 2, 11, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.query, 20);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.query, 10);
    assert_int_equal(fair_complete(f, 1, 20), 0);
    /* In flight: enqueueing it again is refused. */
    assert_int_equal(fair_enqueue(f, 2, 10, 0), ID_EEXIST);
    /* The failed query goes back to the head and its job gets the charge back,
     * so job 2 is behind and runs it again before job 1 (which a tie would
     * favour: same virtual time, nothing running, lower id). */
    assert_int_equal(fair_requeue(f, 2, 10), 0);
    assert_int_equal(fair_requeue(f, 2, 10), ID_ENOTFOUND);
    assert_int_equal(fair_queued(f, 2), 2);
    assert_int_equal(fair_inflight(f, 2), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 2);
    assert_int_equal(d.query, 10);
    assert_int_equal(fair_dispatched(f, 2), 2); /* re-dispatches count */
    assert_int_equal(fair_complete(f, 2, 10), 0);
    assert_int_equal(fair_complete(f, 2, 10), ID_ENOTFOUND); /* reported twice */
    assert_int_equal(fair_complete(f, 2, 11), ID_ENOTFOUND); /* never dispatched */
    assert_int_equal(fair_complete(f, 9, 10), ID_ENOTFOUND);
    assert_int_equal(fair_complete(f, 1, 10), ID_ENOTFOUND); /* keyed by job too */
    /* Front enqueue. */
    assert_int_equal(fair_enqueue(f, 2, 12, 1), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 1); /* 1 and 2 level again, 1 has none running */
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.query, 12);
    /* A query queued twice runs once at a time: the copy that comes up while
     * the first still runs is dropped. */
    assert_int_equal(fair_complete(f, 1, 21), 0);
    assert_int_equal(fair_complete(f, 2, 12), 0);
    assert_int_equal(fair_enqueue(f, 2, 30, 0), 0);
    assert_int_equal(fair_enqueue(f, 2, 30, 0), 0);
    assert_int_equal(fair_next(f, &d), 1); /* 11 */
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.query, 30);
    assert_int_equal(fair_complete(f, 2, 11), 0);
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_queued(f, 2), 0);
    assert_int_equal(fair_inflight(f, 2), 1);
    fair_destroy(f);
}

static void test_adopt(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "a", 2), 0);
    assert_int_equal(fair_worker_add(f, "b", 2), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    for (uint64_t q = 1; q <= 5; q++)
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
    /* A new coordinator rebuilt its queue with every unfinished query; worker a
     * reports it runs 3 and 4, worker b runs 9 (not queued here at all). */
    assert_int_equal(fair_adopt(f, 1, 3, "a"), 0);
    assert_int_equal(fair_adopt(f, 1, 4, "a"), 0);
    assert_int_equal(fair_adopt(f, 1, 9, "b"), 0);
    assert_int_equal(fair_adopt(f, 1, 3, "a"), 0);         /* reported again */
    assert_int_equal(fair_adopt(f, 1, 3, "b"), ID_EEXIST); /* two claim it */
    assert_int_equal(fair_adopt(f, 1, 6, "zz"), ID_ENOTFOUND);
    assert_int_equal(fair_adopt(f, 2, 6, "a"), ID_ENOTFOUND);
    assert_int_equal(fair_queued(f, 1), 3);
    assert_int_equal(fair_inflight(f, 1), 3);
    assert_int_equal(fair_dispatched(f, 1), 0);
    /* a is full; b has one free slot. */
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "b");
    assert_int_equal(d.query, 1);
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_complete(f, 1, 3), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "a");
    assert_int_equal(d.query, 2);
    assert_int_equal(fair_complete(f, 1, 9), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.query, 5);
    assert_int_equal(fair_queued(f, 1), 0);
    /* Adopting beyond the bound is accepted (the worker does run it). */
    assert_int_equal(fair_adopt(f, 1, 50, "a"), 0);
    assert_int_equal(fair_inflight(f, 1), 5);
    assert_int_equal(fair_worker_remove(f, "a"), 3);
    assert_int_equal(fair_queued(f, 1), 3);
    fair_destroy(f);

    /* A worker far above its slots does not crowd the others out: b still gets
     * its two. */
    f = fair_create();
    assert_int_equal(fair_worker_add(f, "a", 2), 0);
    assert_int_equal(fair_worker_add(f, "b", 2), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    for (uint64_t q = 0; q < 8; q++)
        assert_int_equal(fair_adopt(f, 1, q, "a"), 0);
    for (uint64_t q = 0; q < 3; q++)
        assert_int_equal(fair_enqueue(f, 1, 100 + q, 0), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_string_equal(d.worker, "b");
    }
    assert_int_equal(fair_next(f, &d), 0);
    assert_int_equal(fair_inflight(f, 1), 10);
    fair_destroy(f);
}

static void test_model_preference(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "c", 2), 0);
    assert_int_equal(fair_worker_add(f, "a", 2), 0);
    assert_int_equal(fair_worker_add(f, "b", 2), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    assert_int_equal(fair_worker_set_model(f, "c", 2, 1), 0);
    assert_int_equal(fair_worker_set_model(f, "c", 2, 1), 0); /* idempotent */
    for (uint64_t q = 0; q < 6; q++)
        assert_int_equal(fair_enqueue(f, 2, q, 0), 0);
    /* The model holder first, even when busier; then least loaded by name. */
    const char *want[] = {"c", "c", "a", "b", "a", "b"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_string_equal(d.worker, want[i]);
    }
    for (uint64_t q = 0; q < 6; q++)
        assert_int_equal(fair_complete(f, 2, q), 0);
    /* No longer held: plain load and name order. */
    assert_int_equal(fair_worker_set_model(f, "c", 2, 0), 0);
    assert_int_equal(fair_enqueue(f, 2, 100, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "a");
    /* Least loaded is by fraction of slots: b with 1 of 4 beats c with 1 of 2. */
    assert_int_equal(fair_worker_add(f, "b", 4), 0);
    assert_int_equal(fair_enqueue(f, 1, 101, 0), 0);
    assert_int_equal(fair_enqueue(f, 1, 102, 0), 0);
    assert_int_equal(fair_enqueue(f, 1, 103, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "b"); /* a 1/2, b 0/4, c 0/2: b is first by name */
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "c"); /* a 1/2, b 1/4, c 0/2 */
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "b"); /* a 1/2, b 1/4, c 1/2 */
    /* a 1/2, b 2/4, c 1/2: equal fractions, then fewer running (a, c), then name. */
    assert_int_equal(fair_enqueue(f, 1, 104, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "a");
    /* a 2/2 full, b 2/4, c 1/2: c, although b comes first by name. */
    assert_int_equal(fair_enqueue(f, 1, 105, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, "c");
    assert_int_equal(fair_worker_set_model(f, "nobody", 2, 1), ID_ENOTFOUND);
    assert_int_equal(fair_worker_set_model(f, "a", 99, 1), ID_ENOTFOUND);
    fair_destroy(f);
}

/* A job that needs its model goes only to workers holding it; while none of
 * the free ones does, the next job goes first, and the wait banks at most one
 * round of the cluster. */
static void test_needs_model(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "a", 1), 0);
    assert_int_equal(fair_worker_add(f, "b", 1), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    assert_int_equal(fair_job_needs_model(f, 1, 1), 0);
    assert_int_equal(fair_job_needs_model(f, 99, 1), ID_ENOTFOUND);
    for (uint64_t q = 0; q < 20; q++) {
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
        assert_int_equal(fair_enqueue(f, 2, 100 + q, 0), 0);
    }
    /* Nobody holds job 1's model: job 2 has both workers, 8 queries long. */
    for (int i = 0; i < 8; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(d.job, 2);
        assert_int_equal(fair_complete(f, 2, d.query), 0);
    }
    assert_int_equal(fair_queued(f, 1), 20);
    assert_int_equal(fair_model_holders(f, 1), 0);
    /* b has it now: job 1 goes to b only; a stays job 2's. */
    assert_int_equal(fair_worker_set_model(f, "b", 1, 1), 0);
    assert_int_equal(fair_model_holders(f, 1), 1);
    struct fair_dispatch x, y;
    assert_int_equal(fair_next(f, &x), 1);
    assert_int_equal(fair_next(f, &y), 1);
    assert_int_equal(fair_next(f, &d), 0);
    if (x.job == 2) {
        struct fair_dispatch t = x;
        x = y;
        y = t;
    }
    assert_int_equal(x.job, 1);
    assert_string_equal(x.worker, "b");
    assert_int_equal(y.job, 2);
    assert_string_equal(y.worker, "a");
    assert_int_equal(fair_complete(f, 1, x.query), 0);
    assert_int_equal(fair_complete(f, 2, y.query), 0);
    /* Waiting banked one round of the cluster (2 slots) and no more: with
     * the model everywhere, job 1 is ahead by those 2 dispatches, and job 2
     * keeps the rest of its half, rather than job 1 taking all of them until
     * it has caught up on the 8 it missed. */
    assert_int_equal(fair_worker_set_model(f, "a", 1, 1), 0);
    int of1 = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        of1 += d.job == 1;
        assert_int_equal(fair_complete(f, d.job, d.query), 0);
    }
    assert_in_range(of1, 5, 7);
    /* A new version: nobody holds it until told. */
    assert_int_equal(fair_job_forget_models(f, 1), 0);
    assert_int_equal(fair_model_holders(f, 1), 0);
    assert_int_equal(fair_job_forget_models(f, 99), ID_ENOTFOUND);
    /* Only job 1 queued, nobody holds it: nothing to dispatch, no spin. */
    while (fair_queued(f, 2)) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(fair_complete(f, d.job, d.query), 0);
    }
    assert_int_equal(fair_next(f, &d), 0);
    /* Turned off, any free worker takes it again. */
    assert_int_equal(fair_job_needs_model(f, 1, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 1);
    fair_destroy(f);
}

static void test_job_remove(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_worker_add(f, "w", 2), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    assert_int_equal(fair_worker_set_model(f, "w", 1, 1), 0);
    for (uint64_t q = 0; q < 5; q++)
        assert_int_equal(fair_enqueue(f, 1, q, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_job_remove(f, 1), 0);
    assert_int_equal(fair_job_remove(f, 1), ID_ENOTFOUND);
    assert_int_equal(fair_queued(f, 1), 0);
    assert_int_equal(fair_inflight(f, 1), 0);
    assert_int_equal(fair_complete(f, 1, 0), ID_ENOTFOUND);
    assert_int_equal(fair_requeue(f, 1, 1), ID_ENOTFOUND);
    assert_int_equal(fair_enqueue(f, 1, 9, 0), ID_ENOTFOUND);
    /* Its slots are free for the others. */
    assert_int_equal(fair_enqueue(f, 2, 20, 0), 0);
    assert_int_equal(fair_enqueue(f, 2, 21, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(fair_next(f, &d), 1);
    assert_int_equal(d.job, 2);
    /* A job re-created under the id starts clean. */
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_dispatched(f, 1), 0);
    assert_int_equal(fair_worker_remove(f, "w"), 2);
    assert_int_equal(fair_queued(f, 2), 2);
    fair_destroy(f);
}

/* Many jobs and workers, queries added, failed and completed in a mixed order:
 * the counts stay consistent and nothing is lost or duplicated. */
static void test_bookkeeping_under_churn(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    enum { JOBS = 100, WORKERS = 20, QUERIES = 200000 };
    for (uint32_t j = 0; j < JOBS; j++)
        assert_int_equal(fair_job_add(f, j, 1 + j % 3), 0);
    for (int w = 0; w < WORKERS; w++) {
        char name[16];
        snprintf(name, sizeof name, "node%d", w);
        assert_int_equal(fair_worker_add(f, name, 2), 0);
    }
    static uint8_t done[QUERIES];
    memset(done, 0, sizeof done);
    struct {
        uint32_t job;
        uint64_t q;
    } fl[WORKERS * 2 + 8];
    size_t nfl = 0, ndone = 0;
    uint64_t next = 0, rnd = 12345;
    while (ndone < QUERIES) {
        rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
        if (next < QUERIES && (rnd >> 60) < 6) {
            uint32_t j = (uint32_t)((rnd >> 20) % JOBS);
            /* query ids carry their job so the check below can verify it */
            assert_int_equal(fair_enqueue(f, j, next * 128 + j, 0), 0);
            next++;
        }
        while (fair_next(f, &d) == 1) {
            assert_true(nfl < sizeof fl / sizeof fl[0]);
            assert_int_equal(d.query % 128, d.job);
            fl[nfl].job = d.job;
            fl[nfl++].q = d.query;
        }
        if (nfl) {
            size_t i = (size_t)((rnd >> 33) % nfl);
            if ((rnd >> 8) % 50 == 0) {
                assert_int_equal(fair_requeue(f, fl[i].job, fl[i].q), 0);
            } else {
                assert_int_equal(fair_complete(f, fl[i].job, fl[i].q), 0);
                assert_int_equal(done[fl[i].q / 128], 0);
                done[fl[i].q / 128] = 1;
                ndone++;
            }
            fl[i] = fl[--nfl];
        }
        if ((rnd >> 40) % 5000 == 0) {
            /* A worker fails and comes back. */
            char name[16];
            snprintf(name, sizeof name, "node%d", (int)((rnd >> 10) % WORKERS));
            int n = fair_worker_remove(f, name);
            assert_true(n >= 0 && n <= 2);
            /* Its queries are queued again (complete says so); the others are
             * still running and we let them finish now. */
            int requeued = 0;
            for (size_t i = 0; i < nfl; i++) {
                int rc = fair_complete(f, fl[i].job, fl[i].q);
                if (rc == ID_ENOTFOUND) {
                    requeued++;
                    continue;
                }
                assert_int_equal(rc, 0);
                assert_int_equal(done[fl[i].q / 128], 0);
                done[fl[i].q / 128] = 1;
                ndone++;
            }
            assert_int_equal(requeued, n);
            nfl = 0;
            assert_int_equal(fair_worker_add(f, name, 2), 0);
        }
    }
    size_t queued = 0, inflight = 0;
    for (uint32_t j = 0; j < JOBS; j++) {
        queued += fair_queued(f, j);
        inflight += fair_inflight(f, j);
    }
    assert_int_equal(queued, 0);
    assert_int_equal(inflight, 0);
    fair_destroy(f);
}

/* A held job is passed over while the others run, and served first once
 * released (it fell behind meanwhile); fair_room is what one dispatch of a
 * job places now: fair_next's query and those fair_take adds after it. */
static void test_hold_and_room(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    uint64_t q;
    assert_int_equal(fair_worker_add(f, "a", 2), 0);
    assert_int_equal(fair_worker_add(f, "b", 2), 0);
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 2, 1), 0);
    assert_int_equal(fair_job_hold(f, 9, 1), ID_ENOTFOUND);
    assert_int_equal(fair_room(f, 9), 0);
    assert_int_equal(fair_room(f, 1), 2); /* an idle worker's slots */
    assert_int_equal(fair_job_set_burst(f, 1, 4), 0);
    assert_int_equal(fair_room(f, 1), 4); /* its burst: the job would run alone there */
    for (uint64_t i = 0; i < 8; i++)
        assert_int_equal(fair_enqueue(f, 1, 100 + i, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    unsigned placed = 1;
    while (fair_take(f, 1, d.worker, &q) == 1)
        placed++;
    assert_int_equal(placed, 4);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(fair_complete(f, 1, 100 + i), 0);

    /* Held: job 2 takes both workers meanwhile, job 1's queue waits. */
    assert_int_equal(fair_job_hold(f, 1, 1), 0);
    for (uint64_t i = 0; i < 8; i++)
        assert_int_equal(fair_enqueue(f, 2, 200 + i, 0), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(d.job, 2);
    }
    assert_int_equal(fair_queued(f, 1), 4);
    /* A worker running job 2 has one slot left for job 1, and no burst. */
    assert_int_equal(fair_room(f, 1), 1);
    assert_int_equal(fair_job_hold(f, 1, 0), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fair_next(f, &d), 1);
        assert_int_equal(d.job, 1);
        assert_int_equal(fair_take(f, 1, d.worker, &q), 0);
    }
    assert_int_equal(fair_room(f, 1), 0); /* every slot taken */
    assert_int_equal(fair_next(f, &d), 0);
    fair_destroy(f);
}

static void test_errors(void **state)
{
    (void)state;
    struct fair *f = fair_create();
    struct fair_dispatch d;
    assert_int_equal(fair_job_add(f, 1, 1), 0);
    assert_int_equal(fair_job_add(f, 1, 1), ID_EEXIST);
    assert_int_equal(fair_job_add(f, 2, 0), ID_EINVAL);
    assert_int_equal(fair_job_add(f, 2, -1), ID_EINVAL);
    assert_int_equal(fair_job_add(f, 2, NAN), ID_EINVAL);
    assert_int_equal(fair_job_add(f, 2, INFINITY), ID_EINVAL);
    assert_int_equal(fair_job_add(f, 2, 1e-300), ID_EINVAL);
    assert_int_equal(fair_job_add(f, 2, FAIR_WEIGHT_MAX * 2), ID_EINVAL);
    assert_int_equal(fair_job_add(f, 4, FAIR_WEIGHT_MIN), 0);
    assert_int_equal(fair_job_add(f, 5, FAIR_WEIGHT_MAX), 0);
    assert_int_equal(fair_job_set_weight(f, 1, 0), ID_EINVAL);
    assert_int_equal(fair_job_set_weight(f, 2, 1), ID_ENOTFOUND);
    assert_int_equal(fair_job_set_weight(f, 1, 2.5), 0);
    assert_int_equal(fair_enqueue(f, 2, 1, 0), ID_ENOTFOUND);
    assert_int_equal(fair_queued(f, 2), 0);
    assert_int_equal(fair_inflight(f, 2), 0);
    assert_int_equal(fair_dispatched(f, 2), 0);
    char longname[FAIR_NAME_MAX + 1];
    memset(longname, 'x', FAIR_NAME_MAX);
    longname[FAIR_NAME_MAX] = 0;
    assert_int_equal(fair_worker_add(f, longname, 1), ID_EINVAL);
    longname[FAIR_NAME_MAX - 1] = 0;
    assert_int_equal(fair_worker_add(f, longname, 1), 0); /* 63 characters fit */
    assert_int_equal(fair_worker_add(f, "", 1), ID_EINVAL);
    assert_int_equal(fair_worker_add(f, NULL, 1), ID_EINVAL);
    assert_int_equal(fair_worker_remove(f, "none"), ID_ENOTFOUND);
    assert_int_equal(fair_worker_remove(f, NULL), ID_ENOTFOUND);
    assert_int_equal(fair_next(f, &d), 0); /* nothing queued */
    assert_int_equal(fair_enqueue(f, 1, 5, 0), 0);
    assert_int_equal(fair_next(f, &d), 1);
    assert_string_equal(d.worker, longname);
    assert_int_equal(fair_worker_remove(f, longname), 1);
    fair_destroy(f);
    fair_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_rates_despite_costs),
        cmocka_unit_test(test_weights_one_to_two),
        cmocka_unit_test(test_three_jobs),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_work_conservation),
        cmocka_unit_test(test_new_job_next_slot),
        cmocka_unit_test(test_idle_return_no_burst),
        cmocka_unit_test(test_slots_bound),
        cmocka_unit_test(test_spare_slot),
        cmocka_unit_test(test_spare_keeps_rates_equal),
        cmocka_unit_test(test_burst_bound),
        cmocka_unit_test(test_burst_not_shared),
        cmocka_unit_test(test_burst_keeps_rates_equal),
        cmocka_unit_test(test_worker_remove_requeues_in_order),
        cmocka_unit_test(test_requeue_and_complete),
        cmocka_unit_test(test_adopt),
        cmocka_unit_test(test_model_preference),
        cmocka_unit_test(test_needs_model),
        cmocka_unit_test(test_job_remove),
        cmocka_unit_test(test_bookkeeping_under_churn),
        cmocka_unit_test(test_hold_and_room),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
