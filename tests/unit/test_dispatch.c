/* test_dispatch.c — the coordinator's dispatch core (sched/dispatch.h) on a
 * fake clock, with the real replicated job state: claims stay exactly once
 * under requeues, a worker failing with queries in flight, timeouts, the
 * cut-ahead queries and set-batch, adoption after a failover with results
 * partly committed, results computed twice, stopping a job once, the group
 * commit of completions, a randomised run of all of it against the
 * invariant that no image is in two live queries and every one ends done,
 * and online jobs: requests as queries, batching and the queue delay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "ctl/sm.h"
#include "idunno.pb-c.h"
#include "sched/dispatch.h"
#include "sched/jobs.h"

#define MS 1000ull /* the core's clock is in microseconds */

/* One worker slot, no spare slot unless a test sets it. */
static const struct dispatch_config cfg = {1, 0, 30000, 500, 2};

/* ---- the replicated state ------------------------------------------------------------------- */

struct replica {
    struct sm sm;
    struct jobs *jobs;
};

static void replica_init(struct replica *r)
{
    sm_init(&r->sm);
    r->jobs = jobs_create();
    assert_non_null(r->jobs);
    assert_int_equal(sm_register(&r->sm, &jobs_sm_ops, r->jobs), 0);
}

/* A new replica restored from r's snapshot (what a new coordinator reads). */
static void replica_restored(struct replica *r, struct replica *back)
{
    void *snap;
    size_t len;
    assert_int_equal(sm_snapshot(&r->sm, NULL, &snap, &len), 0);
    replica_init(back);
    assert_int_equal(sm_restore(&back->sm, snap, len), 0);
    free(snap);
}

static int apply(struct replica *r, uint32_t type, const ProtobufCMessage *body)
{
    size_t n = protobuf_c_message_get_packed_size(body);
    uint8_t *buf = malloc(n ? n : 1);
    protobuf_c_message_pack(body, buf);
    struct sm_cmd cmd = {.type = type,
                         .version = 1,
                         .body = buf,
                         .len = n,
                         .origin = 1,
                         .seq = r->sm.applied + 1,
                         .time_ms = 1000 + r->sm.applied};
    void *entry;
    size_t len;
    assert_int_equal(sm_encode(&cmd, NULL, &entry, &len), 0);
    free(buf);
    struct sm_result res = {0};
    sm_apply_entry(&r->sm, entry, len, &res);
    free(entry);
    sm_result_clear(&res);
    return res.status;
}

static int job_cmd(struct replica *r, uint32_t type, const char *model, uint32_t batch)
{
    Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
    l.model = (char *)model;
    l.batch = batch;
    l.weight = 1;
    return apply(r, type, &l.base);
}

static void queue_images(struct replica *r, const char *model, size_t n)
{
    char **names = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        names[i] = malloc(64);
        snprintf(names[i], 64, "%s/img%zu.jpg", model, i);
    }
    Idunno__JobInference q = IDUNNO__JOB_INFERENCE__INIT;
    q.model = (char *)model;
    q.dataset = (char *)model;
    q.n_images = n;
    q.images = names;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE, &q.base), 0);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* A model, its job with `batch` and n images; returns the job's id. */
/* Registers a version of model (MODEL_ADD) whose file is the SDFS blob given. */
static void add_model(struct replica *r, const char *model, const char *blob)
{
    uint8_t sha[32] = {9};
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
    Idunno__ModelInfo m = IDUNNO__MODEL_INFO__INIT;
    m.name = (char *)model;
    m.file = "models/x.onnx";
    m.blob = (char *)blob;
    m.sha256 = (ProtobufCBinaryData){32, sha};
    m.input_size = 32;
    m.resize = 64;
    m.classes = 10;
    m.n_mean = m.n_std = 3;
    m.mean = mean;
    m.std = std;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_MODEL_ADD, &m.base), 0);
}

static uint32_t launch(struct replica *r, const char *model, uint32_t batch, size_t n)
{
    add_model(r, model, "00000000000000aa");
    assert_int_equal(job_cmd(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, model, batch), 0);
    if (n)
        queue_images(r, model, n);
    return jobs_of_model(r->jobs, model)->id;
}

/* Commits one query's results (a JOB_DONE command of one completion). */
static void commit(struct replica *r, uint32_t job, uint64_t query, const uint32_t *images,
                   size_t n)
{
    Idunno__QueryResult *rows = calloc(n + 1, sizeof *rows), **ptrs = calloc(n + 1, sizeof *ptrs);
    uint32_t cls[5] = {1, 2, 3, 4, 5};
    float probs[5] = {0.5f, 0.2f, 0.1f, 0.1f, 0.1f};
    for (size_t i = 0; i < n; i++) {
        idunno__query_result__init(&rows[i]);
        rows[i].image = images[i];
        rows[i].n_classes = rows[i].n_probs = 5;
        rows[i].classes = cls;
        rows[i].probs = probs;
        ptrs[i] = &rows[i];
    }
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT;
    d.job = job;
    d.query = query;
    d.worker = "w";
    d.duration_ms = 5;
    d.n_results = n;
    d.results = ptrs;
    Idunno__QueryDone *dp = &d;
    Idunno__QueryDoneBatch b = IDUNNO__QUERY_DONE_BATCH__INIT;
    b.n_done = 1;
    b.done = &dp;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, &b.base), 0);
    free(rows);
    free(ptrs);
}

/* ---- the core ------------------------------------------------------------------------------- */

struct world {
    struct replica r;
    struct dispatch *d;
    uint64_t now; /* us */
};

static void world_init(struct world *w, const struct dispatch_config *c)
{
    replica_init(&w->r);
    w->d = dispatch_create(c);
    assert_non_null(w->d);
    w->now = 100000 * MS; /* past the burst log's interval from 0 */
}

static void world_free(struct world *w)
{
    dispatch_destroy(w->d);
    jobs_destroy(w->r.jobs);
}

/* Leads `term` with the workers named (NULL-terminated), none holding
 * anything: dispatching at once. */
static void lead(struct world *w, uint64_t term, const char *const *workers)
{
    assert_int_equal(dispatch_lead(w->d, term, w->r.jobs, w->now), 0);
    assert_int_equal(dispatch_phase(w->d), DISPATCH_ADOPTING);
    for (size_t i = 0; workers[i]; i++)
        assert_int_equal(dispatch_worker_join(w->d, workers[i]), 0);
    assert_int_equal(dispatch_answered(w->d), 1);
    assert_int_equal(dispatch_start(w->d), 0);
    assert_int_equal(dispatch_phase(w->d), DISPATCH_ACTIVE);
    assert_int_equal(dispatch_sync_jobs(w->d, w->r.jobs), 0);
}

/* The next dispatch, which must exist; its images are copied to imgs. */
static struct dispatch_run next(struct world *w, uint32_t *imgs)
{
    struct dispatch_run run;
    assert_int_equal(dispatch_next(w->d, w->r.jobs, w->now, &run), 1);
    if (imgs)
        memcpy(imgs, run.images, run.n * sizeof *imgs);
    return run;
}

static void no_next(struct world *w)
{
    struct dispatch_run run;
    assert_int_equal(dispatch_next(w->d, w->r.jobs, w->now, &run), 0);
}

/* A result arriving at the core (not yet committed). */
static struct dispatch_done_out done(struct world *w, uint32_t job, uint64_t query,
                                     const char *worker)
{
    struct dispatch_done ev = {job, query, worker, 0, 0, 0};
    struct dispatch_done_out out;
    dispatch_done(w->d, w->r.jobs, &ev, w->now, &out);
    return out;
}

static struct dispatch_job_view view(struct world *w, uint32_t job)
{
    struct dispatch_job_view v;
    assert_int_equal(dispatch_job_view(w->d, job, &v), 0);
    return v;
}

static int same_images(const uint32_t *a, const uint32_t *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* Two queries are cut ahead; dispatching one cuts the next; each takes the
 * next images neither done nor claimed, and a new term's ids carry it. */
static void test_cut_ahead(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 4, 20);
    lead(&w, 7, (const char *const[]){"w1", "w2", NULL});
    assert_int_equal(view(&w, job).queued, DISPATCH_CUT_AHEAD);
    uint32_t a[4], b[4];
    struct dispatch_run ra = next(&w, a), rb = next(&w, b);
    assert_int_equal(ra.n, 4);
    assert_int_equal(rb.n, 4);
    assert_int_equal(ra.query >> 32, 7);
    assert_int_not_equal(ra.query, rb.query);
    assert_true(same_images(a, (uint32_t[]){0, 1, 2, 3}, 4));
    assert_true(same_images(b, (uint32_t[]){4, 5, 6, 7}, 4));
    assert_string_not_equal(ra.worker, rb.worker);
    /* Both slots busy: nothing more, though two queries are cut. */
    no_next(&w);
    struct dispatch_job_view v = view(&w, job);
    assert_int_equal(v.queued, DISPATCH_CUT_AHEAD);
    assert_int_equal(v.inflight, 2);
    assert_int_equal(v.dispatched, 2);
    assert_int_equal(v.n_workers, 2);
    world_free(&w);
}

/* set-batch reaches the queries cut but not dispatched, both ways; the
 * images a shrink gives back are cut again next. */
static void test_set_batch_resizes_cut_queries(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 4, 20);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    uint32_t imgs[8];
    struct dispatch_run r1 = next(&w, imgs); /* 0-3 in flight; 4-7 and 8-11 cut */
    assert_int_equal(job_cmd(&w.r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_BATCH, "m", 2), 0);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    done(&w, job, r1.query, "w1");
    commit(&w.r, job, r1.query, imgs, 4);
    struct dispatch_run r2 = next(&w, imgs);
    assert_int_equal(r2.n, 2);
    assert_true(same_images(imgs, (uint32_t[]){4, 5}, 2));
    done(&w, job, r2.query, "w1");
    struct dispatch_run r3 = next(&w, imgs);
    assert_int_equal(r3.n, 2);
    /* 6 and 7 were given back by the shrink; the second cut query (8, 9)
     * stays ahead of them. */
    assert_true(same_images(imgs, (uint32_t[]){8, 9}, 2));
    done(&w, job, r3.query, "w1");
    assert_int_equal(job_cmd(&w.r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_BATCH, "m", 6), 0);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    struct dispatch_run r4 = next(&w, imgs);
    assert_int_equal(r4.n, 6);
    /* The query cut next (6, 7) grows from the cursor on. */
    assert_true(same_images(imgs, (uint32_t[]){6, 7, 12, 13, 14, 15}, 6));
    world_free(&w);
}

/* A refused RUN requeues its query with the same images; the worker sits
 * out, and the query runs again under the same id. A stale failure report
 * (another worker's, or for a query dispatched again) changes nothing. */
static void test_requeue_keeps_claims(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 3, 9);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    uint32_t a[3], b[3];
    struct dispatch_run r = next(&w, a);
    struct dispatch_bench bench;
    assert_int_equal(dispatch_run_failed(w.d, r.query, "w2", ID_EBUSY, w.now, &bench), 0);
    assert_int_equal(dispatch_run_failed(w.d, r.query, "w1", ID_ECONNREFUSED, w.now, &bench), 1);
    assert_int_equal(bench.unplugged, 1);
    assert_int_equal(bench.requeued, 0); /* the failed query itself was requeued already */
    assert_int_equal(bench.ms, DISPATCH_BENCH_UNREACHABLE_MS);
    /* A second report for the same dispatch finds it requeued. */
    assert_int_equal(dispatch_run_failed(w.d, r.query, "w1", ID_ECLOSED, w.now, &bench), 0);
    no_next(&w); /* w1 is out for a while */
    w.now += (DISPATCH_BENCH_UNREACHABLE_MS - 1) * MS;
    dispatch_unbench(w.d, w.now);
    no_next(&w);
    w.now += 1 * MS;
    dispatch_unbench(w.d, w.now);
    struct dispatch_run again = next(&w, b);
    assert_int_equal(again.query, r.query);
    assert_int_equal(again.n, 3);
    assert_true(same_images(a, b, 3));
    assert_true(again.rerun_ms >= DISPATCH_BENCH_UNREACHABLE_MS - 0.001 &&
                again.rerun_ms <= DISPATCH_BENCH_UNREACHABLE_MS + 0.001);
    /* A requeue that was not in flight is refused. */
    done(&w, job, again.query, "w1");
    assert_int_equal(dispatch_requeue(w.d, again.query), 0);
    struct dispatch_stats st;
    dispatch_get_stats(w.d, &st);
    assert_int_equal(st.requeued, 1);
    assert_int_equal(st.dispatched, 2);
    world_free(&w);
}

/* A busy worker sits out only the short bench; the query goes elsewhere. */
static void test_busy_worker_benched(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    launch(&w.r, "m", 1, 4);
    lead(&w, 1, (const char *const[]){"w1", "w2", NULL});
    struct dispatch_run r1 = next(&w, NULL), r2 = next(&w, NULL);
    struct dispatch_bench bench;
    assert_int_equal(dispatch_run_failed(w.d, r1.query, r1.worker, ID_EBUSY, w.now, &bench), 1);
    assert_int_equal(bench.ms, DISPATCH_BENCH_BUSY_MS);
    no_next(&w); /* r2's worker is busy, r1's benched */
    w.now += DISPATCH_BENCH_BUSY_MS * MS;
    dispatch_unbench(w.d, w.now);
    struct dispatch_run again = next(&w, NULL);
    assert_int_equal(again.query, r1.query);
    assert_string_equal(again.worker, r1.worker);
    assert_true(again.rerun_ms < 0); /* busy is no failure */
    (void)r2;
    world_free(&w);
}

/* A worker failing with queries in flight: they go back to the head of their
 * queues, run next on the survivor with the same images, and the figure of
 * failure to rerun is kept. */
static void test_worker_fails_with_queries(void **state)
{
    (void)state;
    struct dispatch_config c = cfg;
    c.slots = 2;
    struct world w;
    world_init(&w, &c);
    uint32_t job = launch(&w.r, "m", 2, 40);
    lead(&w, 3, (const char *const[]){"w1", "w2", NULL});
    struct dispatch_run runs[4];
    uint32_t imgs[4][2];
    for (int i = 0; i < 4; i++)
        runs[i] = next(&w, imgs[i]);
    no_next(&w);
    int on_w1 = 0;
    for (int i = 0; i < 4; i++)
        on_w1 += strcmp(runs[i].worker, "w1") == 0;
    assert_int_equal(on_w1, 2);
    w.now += 10 * MS;
    assert_int_equal(dispatch_worker_gone(w.d, "w1", w.now), 2);
    assert_int_equal(dispatch_worker_gone(w.d, "w1", w.now), ID_ENOTFOUND);
    assert_false(dispatch_worker_known(w.d, "w1"));
    /* w2 finishes one of its own: the freed slot takes a failed query. */
    int mine = strcmp(runs[0].worker, "w2") == 0 ? 0 : strcmp(runs[1].worker, "w2") == 0 ? 1 : 2;
    done(&w, job, runs[mine].query, "w2");
    w.now += 5 * MS;
    uint32_t got[2];
    struct dispatch_run re = next(&w, got);
    assert_string_equal(re.worker, "w2");
    int from = -1;
    for (int i = 0; i < 4; i++)
        if (runs[i].query == re.query)
            from = i;
    assert_true(from >= 0);
    assert_string_equal(runs[from].worker, "w1");
    assert_true(same_images(got, imgs[from], 2));
    assert_true(re.rerun_ms > 4.999 && re.rerun_ms < 5.001);
    struct dispatch_stats st;
    dispatch_get_stats(w.d, &st);
    assert_true(st.rerun_max_ms > 4.999);
    assert_int_equal(st.requeued, 2);
    world_free(&w);
}

/* A query in flight past the timeout is requeued; the late result and the
 * second run's result both arrive: each image is stored once, the second
 * result dropped as a duplicate. */
static void test_timeout_and_duplicate_result(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 2, 4);
    lead(&w, 1, (const char *const[]){"w1", "w2", NULL});
    uint32_t imgs[2], again_imgs[2];
    struct dispatch_run r = next(&w, imgs);
    struct dispatch_run other = next(&w, NULL);
    struct dispatch_timeout late[4];
    w.now += cfg.query_timeout_ms * MS;
    assert_int_equal(dispatch_tick(w.d, w.now, late, 4), 0); /* not past it yet */
    w.now += 1 * MS;
    done(&w, job, other.query, other.worker);
    assert_int_equal(dispatch_tick(w.d, w.now, late, 4), 1);
    assert_int_equal(late[0].query, r.query);
    assert_string_equal(late[0].worker, r.worker);
    struct dispatch_run again = next(&w, again_imgs);
    assert_int_equal(again.query, r.query);
    assert_true(same_images(imgs, again_imgs, 2));
    /* The first run's result after all, then the second's. */
    done(&w, job, r.query, r.worker);
    commit(&w.r, job, r.query, imgs, 2);
    done(&w, job, again.query, again.worker);
    commit(&w.r, job, again.query, again_imgs, 2);
    struct job_rec *jr = jobs_by_id(w.r.jobs, job);
    assert_int_equal(jr->duplicates, 2);
    assert_true(job_image_done(jr, imgs[0]) && job_image_done(jr, imgs[1]));
    assert_int_equal(view(&w, job).inflight, 0);
    world_free(&w);
}

/* A JOB_DONE that fails gives its images back: the next cut takes them. */
static void test_failed_commit_unclaims(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 2, 6);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    uint32_t imgs[2];
    struct dispatch_run r = next(&w, imgs); /* 0,1; cut: 2,3 and 4,5 */
    done(&w, job, r.query, "w1");
    /* The commit fails: the images are free again, and cut once more after
     * the queries already cut. */
    for (int i = 0; i < 2; i++)
        dispatch_unclaim(w.d, job, imgs[i]);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    uint32_t a[2], b[2], c[2];
    struct dispatch_run ra = next(&w, a);
    done(&w, job, ra.query, "w1");
    struct dispatch_run rb = next(&w, b);
    done(&w, job, rb.query, "w1");
    struct dispatch_run rc = next(&w, c);
    assert_true(same_images(a, (uint32_t[]){2, 3}, 2));
    assert_true(same_images(b, (uint32_t[]){4, 5}, 2));
    assert_true(same_images(c, imgs, 2));
    assert_int_not_equal(rc.query, r.query);
    /* Without the unclaim they would never be cut again. */
    done(&w, job, rc.query, "w1");
    no_next(&w);
    world_free(&w);
}

/* A result computed twice: the retried JOB_DONE reaches the core twice; the
 * second changes nothing there, and the state machine stores it once. */
static void test_result_reported_twice(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 3, 3);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    uint32_t imgs[3];
    struct dispatch_run r = next(&w, imgs);
    done(&w, job, r.query, "w1");
    done(&w, job, r.query, "w1");
    commit(&w.r, job, r.query, imgs, 3);
    commit(&w.r, job, r.query, imgs, 3);
    struct job_rec *jr = jobs_by_id(w.r.jobs, job);
    assert_int_equal(jr->n_done, 3);
    assert_int_equal(jr->n_pending, 3);
    assert_int_equal(jr->duplicates, 3);
    assert_int_equal(jr->queries_done, 1);
    struct dispatch_job_view v = view(&w, job);
    assert_int_equal(v.inflight, 0);
    assert_int_equal(v.queued, 0);
    no_next(&w);
    world_free(&w);
}

/* A new leader after a failover, with results partly committed: the old
 * leader's query 1 committed, query 2's result still waiting for its commit
 * (its worker holds it), query 3's result arriving while the new leader
 * waits for answers, a report by an unknown worker, a second report of the
 * same query, and a worker that never answers. */
static void test_adoption_after_failover(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 2, 12);
    uint64_t q1 = (1ull << 32) | 1, q2 = (1ull << 32) | 2, q3 = (1ull << 32) | 3;
    uint32_t i1[2] = {0, 1}, i2[2] = {2, 3}, i3[2] = {4, 5};
    commit(&w.r, job, q1, i1, 2);
    assert_int_equal(dispatch_lead(w.d, 2, w.r.jobs, w.now), 0);
    const char *ws[] = {"w1", "w2", "w3", "w4"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(dispatch_worker_join(w.d, ws[i]), 0);
        dispatch_asked(w.d);
    }
    assert_int_equal(dispatch_answered(w.d), 0); /* the hold while asking */
    no_next(&w);                                 /* nothing goes out while adopting */
    /* q3's result reaches the new leader before w3's answer. */
    done(&w, job, q3, "w3");
    /* w1 still reports q1 (its answer raced the commit): all done, not adopted. */
    assert_int_equal(dispatch_adopt(w.d, w.r.jobs, "w1", job, q1, i1, 2, w.now), 0);
    assert_int_equal(dispatch_answered(w.d), 0); /* w1 */
    assert_int_equal(dispatch_adopt(w.d, w.r.jobs, "w2", job, q2, i2, 2, w.now), 1);
    assert_int_equal(dispatch_adopt(w.d, w.r.jobs, "w3", job, q2, i2, 2, w.now), 0);
    assert_int_equal(dispatch_adopt(w.d, w.r.jobs, "w3", job, q3, i3, 2, w.now), 0);
    assert_int_equal(dispatch_adopt(w.d, w.r.jobs, "w9", job, 77, (uint32_t[]){6}, 1, w.now), 0);
    assert_int_equal(dispatch_adopt(w.d, w.r.jobs, "w3", 999, 78, (uint32_t[]){6}, 1, w.now), 0);
    assert_int_equal(dispatch_answered(w.d), 0); /* w2 */
    assert_int_equal(dispatch_answered(w.d), 0); /* w3 */
    /* w4 never answers. */
    unsigned missing = 0;
    w.now += (cfg.adopt_wait_ms - 1) * MS;
    assert_int_equal(dispatch_overdue(w.d, w.now, &missing), 0);
    w.now += 1 * MS;
    assert_int_equal(dispatch_overdue(w.d, w.now, &missing), 1);
    assert_int_equal(missing, 1);
    assert_int_equal(dispatch_start(w.d), 1);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    struct dispatch_stats st;
    dispatch_get_stats(w.d, &st);
    assert_int_equal(st.adopted, 1);
    struct dispatch_job_view v = view(&w, job);
    assert_int_equal(v.inflight, 1);
    assert_int_equal(v.n_workers, 1);
    assert_string_equal(v.workers[0], "w2");
    /* What is cut: neither done (q1) nor held (q2). q3's result is not
     * committed yet, so its images are cut again (a second result is
     * dropped by the state machine). w2 is full; w1, w3, w4 take one each. */
    int seen[12] = {0}, sent = 0;
    struct dispatch_run r;
    while (dispatch_next(w.d, w.r.jobs, w.now, &r)) {
        assert_int_equal(r.query >> 32, 2);
        assert_string_not_equal(r.worker, "w2");
        for (size_t k = 0; k < r.n; k++)
            seen[r.images[k]]++;
        sent++;
    }
    assert_int_equal(sent, 3);
    for (int i = 0; i < 12; i++)
        assert_int_equal(seen[i], i >= 4 && i < 10);
    /* w2's q2 completes under the new leader; commit. */
    done(&w, job, q2, "w2");
    commit(&w.r, job, q2, i2, 2);
    commit(&w.r, job, q3, i3, 2);
    assert_int_equal(jobs_by_id(w.r.jobs, job)->n_done, 6);
    world_free(&w);
}

/* Leading again starts over: the queries of before are forgotten, but the
 * results that arrived stay remembered (no adoption of them). */
static void test_unlead_and_lead_again(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 1, 3);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    uint32_t img;
    struct dispatch_run r = next(&w, &img);
    done(&w, job, r.query, "w1");
    dispatch_unlead(w.d);
    assert_int_equal(dispatch_phase(w.d), DISPATCH_IDLE);
    assert_int_equal(dispatch_worker_count(w.d), 0);
    assert_int_equal(dispatch_worker_join(w.d, "w1"), ID_ENOTLEADER);
    no_next(&w);
    assert_int_equal(dispatch_lead(w.d, 2, w.r.jobs, w.now), 0);
    assert_int_equal(dispatch_worker_join(w.d, "w1"), 0);
    assert_int_equal(dispatch_adopt(w.d, w.r.jobs, "w1", job, r.query, &img, 1, w.now), 0);
    assert_int_equal(dispatch_answered(w.d), 1);
    assert_int_equal(dispatch_start(w.d), 0);
    world_free(&w);
}

/* A worker's stop_job: JOB_STOP proposed once; a stopped job leaves the
 * dispatcher with its queries. */
static void test_stop_proposed_once(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 1, 5);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    struct dispatch_run r = next(&w, NULL);
    struct dispatch_done ev = {job, r.query, "w1", 0, 0, 1};
    struct dispatch_done_out out;
    dispatch_done(w.d, w.r.jobs, &ev, w.now, &out);
    assert_int_equal(out.propose_stop, 1);
    dispatch_done(w.d, w.r.jobs, &ev, w.now, &out);
    assert_int_equal(out.propose_stop, 1); /* not proposed yet: asked again */
    dispatch_stop_proposed(w.d, job);
    dispatch_done(w.d, w.r.jobs, &ev, w.now, &out);
    assert_int_equal(out.propose_stop, 0);
    assert_int_equal(job_cmd(&w.r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, "m", 0), 0);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    assert_int_equal(view(&w, job).known, 0);
    assert_int_equal(dispatch_job_count(w.d), 0);
    no_next(&w);
    world_free(&w);
}

/* Cheap queries raise the job's burst, costly ones keep it at one. */
static void test_burst_from_run_time(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 1, 50);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    struct dispatch_run r = next(&w, NULL);
    struct dispatch_done ev = {job, r.query, "w1", 500, 0, 0};
    struct dispatch_done_out out;
    dispatch_done(w.d, w.r.jobs, &ev, w.now, &out);
    assert_int_equal(out.burst_changed, 1);
    assert_int_equal(out.burst, 8); /* 4 ms / 0.5 ms */
    assert_int_equal(out.log_burst, 1);
    /* Now the worker takes several of the job's queries at once. */
    int n = 0;
    while (dispatch_next(w.d, w.r.jobs, w.now, &r))
        n++;
    assert_int_equal(n, 8);
    world_free(&w);
}

/* The first query after images reach an idle job is timed. */
static void test_first_query_timed(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 2, 0);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    no_next(&w);
    queue_images(&w.r, "m", 4);
    dispatch_images_queued(w.d, job, w.now);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    w.now += 3 * MS;
    struct dispatch_run r = next(&w, NULL);
    assert_true(r.first_ms > 2.999 && r.first_ms < 3.001);
    w.now += 7 * MS;
    struct dispatch_done ev = {job, r.query, "w1", 0, 2, 0};
    struct dispatch_done_out out;
    dispatch_done(w.d, w.r.jobs, &ev, w.now, &out);
    struct dispatch_job_view v = view(&w, job);
    assert_true(v.first_dispatch_ms > 2.999 && v.first_dispatch_ms < 3.001);
    assert_true(v.first_result_ms > 9.999 && v.first_result_ms < 10.001);
    assert_true(v.first_start_ms > 4.999 && v.first_start_ms < 5.001);
    /* The job is not idle now: more images are not timed again. */
    queue_images(&w.r, "m", 2);
    dispatch_images_queued(w.d, job, w.now);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    r = next(&w, NULL);
    assert_true(r.first_ms < 0);
    world_free(&w);
}

/* The group commit: the first completion arms the timer, a full batch goes
 * at once, at most batches_in_flight commands are uncommitted, and a commit
 * sends what waited meanwhile unless its timer is armed. */
static void test_flush_batching(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    int tokens[DISPATCH_BATCH_MAX + 1];
    struct dispatch_held held[DISPATCH_BATCH_MAX];
    assert_int_equal(dispatch_batch_due(w.d), 0); /* nothing to send */
    for (int i = 0; i < DISPATCH_BATCH_MAX; i++) {
        assert_int_equal(dispatch_batch_full(w.d), 0);
        assert_int_equal(dispatch_batch_add(w.d, &(struct dispatch_held){&tokens[i], NULL}),
                         i == 0);
    }
    assert_int_equal(dispatch_batch_full(w.d), 1);
    assert_int_equal(dispatch_batch_add(w.d, &(struct dispatch_held){&tokens[256], NULL}),
                     ID_ETOOBIG);
    assert_int_equal(dispatch_batch_take(w.d, held), DISPATCH_BATCH_MAX);
    for (int i = 0; i < DISPATCH_BATCH_MAX; i++)
        assert_ptr_equal(held[i].done, &tokens[i]);
    dispatch_batch_proposed(w.d);
    assert_int_equal(dispatch_batch_take(w.d, held), 0);
    /* One command in flight: the next batch goes when its timer fires. */
    assert_int_equal(dispatch_batch_add(w.d, &(struct dispatch_held){&tokens[0], NULL}), 1);
    assert_int_equal(dispatch_batch_due(w.d), 1);
    assert_int_equal(dispatch_batch_take(w.d, held), 1);
    dispatch_batch_proposed(w.d);
    /* Two in flight: a third batch waits for a commit. */
    assert_int_equal(dispatch_batch_add(w.d, &(struct dispatch_held){&tokens[1], NULL}), 1);
    assert_int_equal(dispatch_batch_add(w.d, &(struct dispatch_held){&tokens[2], NULL}), 0);
    assert_int_equal(dispatch_batch_due(w.d), 0);
    /* A commit with the timer still armed leaves it to the timer. */
    assert_int_equal(dispatch_batch_settled(w.d, 1), 0);
    assert_int_equal(dispatch_batch_due(w.d), 1);
    assert_int_equal(dispatch_batch_settled(w.d, 0), 1);
    assert_int_equal(dispatch_batch_take(w.d, held), 2);
    assert_ptr_equal(held[0].done, &tokens[1]);
    assert_ptr_equal(held[1].done, &tokens[2]);
    /* Nothing waiting: a commit sends nothing. */
    assert_int_equal(dispatch_batch_settled(w.d, 0), 0);
    world_free(&w);
}

/* ---- a randomised run ----------------------------------------------------------------------- */

#define SIM_IMAGES 300
#define SIM_WORKERS 4
#define SIM_RUNNING 64

struct running {
    uint32_t job;
    uint64_t query;
    char worker[DISPATCH_NAME_MAX];
    uint32_t images[JOBS_MAX_BATCH];
    size_t n;
};

struct live {
    uint64_t query;
    uint32_t images[JOBS_MAX_BATCH];
    size_t n;
};

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

/* Workers run, fail, refuse and time out at random, results arrive late and
 * twice, commits fail. Invariants: a query keeps its images while it lives;
 * no image is in two live queries; at the end every image is done and has
 * one result (duplicates dropped by the state machine). */
static void test_random_run(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, &cfg);
    uint32_t job = launch(&w.r, "m", 3, SIM_IMAGES);
    const char *names[SIM_WORKERS] = {"w0", "w1", "w2", "w3"};
    lead(&w, 1, (const char *const[]){"w0", "w1", "w2", "w3", NULL});
    int up[SIM_WORKERS] = {1, 1, 1, 1};
    static struct running run[SIM_RUNNING];
    static struct live live[SIM_IMAGES];
    size_t n_run = 0, n_live = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    struct job_rec *jr = jobs_by_id(w.r.jobs, job);
    for (int step = 0; step < 200000 && jr->n_done < SIM_IMAGES; step++) {
        w.now += (rnd(&seed) % 20) * MS;
        struct dispatch_run r;
        while (n_run < SIM_RUNNING && dispatch_next(w.d, w.r.jobs, w.now, &r)) {
            size_t l = 0;
            while (l < n_live && live[l].query != r.query)
                l++;
            if (l < n_live) { /* dispatched again: the same images */
                assert_int_equal(live[l].n, r.n);
                assert_true(same_images(live[l].images, r.images, r.n));
            } else {
                for (size_t k = 0; k < r.n; k++) {
                    for (size_t o = 0; o < n_live; o++)
                        for (size_t m = 0; m < live[o].n; m++)
                            assert_int_not_equal(live[o].images[m], r.images[k]);
                }
                live[n_live].query = r.query;
                live[n_live].n = r.n;
                memcpy(live[n_live].images, r.images, r.n * sizeof *r.images);
                n_live++;
            }
            struct running *x = &run[n_run++];
            x->job = r.job;
            x->query = r.query;
            snprintf(x->worker, sizeof x->worker, "%s", r.worker);
            x->n = r.n;
            memcpy(x->images, r.images, r.n * sizeof *r.images);
        }
        uint32_t ev = rnd(&seed) % 100;
        if (ev < 60 && n_run) { /* a run ends: its result arrives and commits (or not) */
            size_t i = rnd(&seed) % n_run;
            struct running x = run[i];
            run[i] = run[--n_run];
            done(&w, x.job, x.query, x.worker);
            if (rnd(&seed) % 10 == 0) { /* the commit fails: the images are free again */
                for (size_t k = 0; k < x.n; k++)
                    dispatch_unclaim(w.d, x.job, x.images[k]);
                assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
            } else {
                commit(&w.r, x.job, x.query, x.images, x.n);
            }
            for (size_t l = 0; l < n_live; l++)
                if (live[l].query == x.query)
                    live[l] = live[--n_live];
            if (rnd(&seed) % 20 == 0) /* the worker retries: the core sees it twice */
                done(&w, x.job, x.query, x.worker);
        } else if (ev < 70 && n_run) { /* a RUN refused */
            size_t i = rnd(&seed) % n_run;
            struct dispatch_bench b;
            int st = rnd(&seed) % 2 ? ID_EBUSY : ID_ECONNREFUSED;
            dispatch_run_failed(w.d, run[i].query, run[i].worker, st, w.now, &b);
            run[i] = run[--n_run];
        } else if (ev < 73) { /* a worker fails; its runs are lost */
            size_t k = rnd(&seed) % SIM_WORKERS;
            if (up[k]) {
                up[k] = 0;
                assert_true(dispatch_worker_gone(w.d, names[k], w.now) >= 0);
                for (size_t i = n_run; i > 0; i--)
                    if (strcmp(run[i - 1].worker, names[k]) == 0)
                        run[i - 1] = run[--n_run];
            }
        } else if (ev < 78) { /* a worker (back) */
            size_t k = rnd(&seed) % SIM_WORKERS;
            up[k] = 1;
            assert_int_equal(dispatch_worker_join(w.d, names[k]), 0);
        } else if (ev < 80) { /* a long stall: timeouts (the runs go on, late) */
            w.now += cfg.query_timeout_ms * MS;
            struct dispatch_timeout late[SIM_RUNNING];
            dispatch_tick(w.d, w.now, late, SIM_RUNNING);
        }
        dispatch_unbench(w.d, w.now);
        if (step % 50 == 0)
            assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    }
    assert_int_equal(jr->n_done, SIM_IMAGES);
    assert_int_equal(jr->n_pending, SIM_IMAGES); /* one result per image */
    world_free(&w);
}

/* ---- loaded models ---- */

static size_t loads(struct world *w, struct dispatch_load *out)
{
    return dispatch_loads(w->d, w->now, out, 16);
}

/* The model loads in a slow start where its job needs it, its queries go only
 * to workers that have it, a failed load is retried or (a bad model) lets the
 * queries report it, a benched worker keeps its models, a new version starts
 * over, and a new leader learns what workers hold from them. */
static void test_model_loads(void **state)
{
    (void)state;
    struct dispatch_config c = cfg;
    c.load_models = 1;
    struct world w;
    world_init(&w, &c);
    uint32_t job = launch(&w.r, "m", 1, 40);
    lead(&w, 3, (const char *const[]){"w1", "w2", "w3", "w4", NULL});
    char key[DISPATCH_MODEL_KEY_MAX];
    dispatch_model_key(key, sizeof key, "m", "00000000000000aa", 1);
    /* Nobody has it: nothing runs; one load starts. */
    no_next(&w);
    struct dispatch_load l[16];
    assert_int_equal(loads(&w, l), 1);
    assert_int_equal(l[0].job, job);
    assert_string_equal(l[0].key, key);
    assert_string_equal(l[0].worker, "w1");
    assert_int_equal(loads(&w, l), 0); /* one at a time until one has it */
    assert_int_equal(view(&w, job).workers_loading, 1);
    assert_int_equal(view(&w, job).workers_loaded, 0);
    /* A stale answer (another key, another worker) changes nothing. */
    assert_int_equal(dispatch_load_done(w.d, "w1", "m@00000000000000aa.9", 0, w.now), 0);
    assert_int_equal(dispatch_load_done(w.d, "w2", key, 0, w.now), 0);
    no_next(&w);
    /* Loaded: its queries go there, and only there (one slot each). */
    assert_int_equal(dispatch_load_done(w.d, "w1", key, 0, w.now), 1);
    struct dispatch_run r1 = next(&w, NULL);
    assert_string_equal(r1.worker, "w1");
    no_next(&w);
    /* Then up to DISPATCH_LOAD_GROWTH times as many at once as have it:
     * here every other worker. */
    assert_int_equal(loads(&w, l), 3);
    assert_string_equal(l[0].worker, "w2");
    assert_string_equal(l[1].worker, "w3");
    assert_string_equal(l[2].worker, "w4");
    assert_int_equal(dispatch_load_done(w.d, "w2", key, 0, w.now), 1);
    assert_string_equal(next(&w, NULL).worker, "w2");
    assert_int_equal(view(&w, job).workers_loaded, 2);
    assert_int_equal(view(&w, job).workers_loading, 2);
    /* w3 could not fetch it: tried again, but only after the retry time. */
    assert_int_equal(dispatch_load_done(w.d, "w3", key, ID_ENOTFOUND, w.now), 0);
    no_next(&w);
    assert_int_equal(loads(&w, l), 0);
    w.now += DISPATCH_LOAD_RETRY_MS * MS;
    assert_int_equal(loads(&w, l), 1);
    assert_string_equal(l[0].worker, "w3");
    /* On w4 the model cannot be loaded: w4 takes its queries to report that,
     * but does not count as having it. */
    assert_int_equal(dispatch_load_done(w.d, "w4", key, ID_EMODEL, w.now), 1);
    assert_string_equal(next(&w, NULL).worker, "w4");
    assert_int_equal(view(&w, job).workers_loaded, 2);
    /* A load never answered is given up after its timeout. */
    w.now += DISPATCH_LOAD_TIMEOUT_MS * MS;
    assert_int_equal(loads(&w, l), 0); /* w3: given up now, retried after the retry time */
    w.now += DISPATCH_LOAD_RETRY_MS * MS;
    assert_int_equal(loads(&w, l), 1);
    assert_string_equal(l[0].worker, "w3");
    /* Benched for a moment (it was full), w1 keeps what it has: its query
     * comes back to it. */
    assert_int_equal(view(&w, job).inflight, 3);
    struct dispatch_bench bench;
    assert_int_equal(dispatch_run_failed(w.d, r1.query, "w1", ID_EBUSY, w.now, &bench), 1);
    no_next(&w);
    w.now += DISPATCH_BENCH_BUSY_MS * MS;
    dispatch_unbench(w.d, w.now);
    assert_string_equal(next(&w, NULL).worker, "w1");
    /* A worker gone and back must load it again. */
    assert_int_equal(dispatch_worker_gone(w.d, "w2", w.now), 1);
    assert_int_equal(dispatch_worker_join(w.d, "w2"), 0);
    no_next(&w);
    assert_int_equal(loads(&w, l), 1); /* w1 has it, w4 failed it, w3 loads: one more */
    assert_string_equal(l[0].worker, "w2");
    /* A new version pinned: nobody has it; a slow start again. */
    add_model(&w.r, "m", "00000000000000bb");
    Idunno__JobLaunch sv = IDUNNO__JOB_LAUNCH__INIT;
    sv.model = "m";
    sv.version = 2;
    assert_int_equal(apply(&w.r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_VERSION, &sv.base), 0);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    char key2[DISPATCH_MODEL_KEY_MAX];
    dispatch_model_key(key2, sizeof key2, "m", "00000000000000bb", 2);
    assert_int_equal(view(&w, job).workers_loaded, 0);
    assert_int_equal(loads(&w, l), 1);
    assert_string_equal(l[0].key, key2);
    /* The result of a query of version 1 does not say a worker has 2. */
    struct dispatch_done ev = {job, 1, "w1", 0, 0, 0, 1};
    struct dispatch_done_out out;
    dispatch_done(w.d, w.r.jobs, &ev, w.now, &out);
    assert_int_equal(view(&w, job).workers_loaded, 0);
    /* One of version 2 does. */
    ev.version = 2;
    dispatch_done(w.d, w.r.jobs, &ev, w.now, &out);
    assert_int_equal(view(&w, job).workers_loaded, 1);
    /* A new leader knows nothing until the workers say what they hold. */
    dispatch_unlead(w.d);
    assert_int_equal(dispatch_lead(w.d, 4, w.r.jobs, w.now), 0);
    assert_int_equal(dispatch_worker_join(w.d, "w1"), 0);
    assert_int_equal(dispatch_worker_join(w.d, "w2"), 0);
    char *held[] = {key, key2};
    dispatch_worker_models(w.d, "w2", held, 2);
    assert_int_equal(dispatch_answered(w.d), 1);
    dispatch_start(w.d);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    assert_int_equal(view(&w, job).workers_loaded, 1);
    assert_string_equal(next(&w, NULL).worker, "w2");
    no_next(&w);
    world_free(&w);
}

/* Two jobs' first loads go to two workers, not both to the first. */
static void test_model_loads_spread(void **state)
{
    (void)state;
    struct dispatch_config c = cfg;
    c.load_models = 1;
    struct world w;
    world_init(&w, &c);
    launch(&w.r, "a", 1, 10);
    launch(&w.r, "b", 1, 10);
    uint32_t idle = launch(&w.r, "c", 1, 0); /* nothing queued: nothing loaded */
    lead(&w, 1, (const char *const[]){"w1", "w2", "w3", NULL});
    struct dispatch_load l[16];
    assert_int_equal(loads(&w, l), 2);
    assert_string_not_equal(l[0].worker, l[1].worker);
    assert_int_not_equal(l[0].job, idle);
    assert_int_not_equal(l[1].job, idle);
    /* A version just trained loads once, ahead of its job; its job's slow
     * start counts that load. */
    char key[DISPATCH_MODEL_KEY_MAX];
    dispatch_model_key(key, sizeof key, "d", "00000000000000aa", 1);
    struct dispatch_load one;
    assert_int_equal(dispatch_load_new_model(w.d, key, w.now, &one), 1);
    assert_int_equal(one.job, 0);
    assert_string_equal(one.worker, "w3");                               /* w1, w2 load a and b */
    assert_int_equal(dispatch_load_new_model(w.d, key, w.now, &one), 0); /* loading already */
    uint32_t dj = launch(&w.r, "d", 1, 5);
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    size_t n = loads(&w, l);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(l[i].job, dj);
    assert_int_equal(view(&w, dj).workers_loading, 1);
    assert_int_equal(dispatch_load_done(w.d, "w3", key, 0, w.now), 1);
    assert_int_equal(view(&w, dj).workers_loaded, 1);
    /* First loads first: while b's first load is under way, neither a nor d
     * grows (their loads would slow it down); then they do. */
    char ka[DISPATCH_MODEL_KEY_MAX], kb[DISPATCH_MODEL_KEY_MAX];
    dispatch_model_key(ka, sizeof ka, "a", "00000000000000aa", 1);
    dispatch_model_key(kb, sizeof kb, "b", "00000000000000aa", 1);
    const char *wa = strcmp(l[0].key, ka) == 0 ? "w1" : "w2";
    const char *wb = strcmp(wa, "w1") == 0 ? "w2" : "w1";
    assert_int_equal(dispatch_load_done(w.d, wa, ka, 0, w.now), 1);
    assert_int_equal(loads(&w, l), 0);
    assert_int_equal(dispatch_load_done(w.d, wb, kb, 0, w.now), 1);
    n = loads(&w, l);
    int grew_a = 0, grew_d = 0;
    for (size_t i = 0; i < n; i++) {
        grew_a += strcmp(l[i].key, ka) == 0;
        grew_d += l[i].job == dj;
    }
    assert_int_equal(grew_a, 2); /* the two workers without it */
    assert_int_equal(grew_d, 2);
    /* A version trained now, its job not launched yet: while its load ahead
     * of the job runs, nothing grows either. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dispatch_load_done(w.d, l[i].worker, l[i].key, 0, w.now), 1);
    char ke[DISPATCH_MODEL_KEY_MAX];
    dispatch_model_key(ke, sizeof ke, "e", "00000000000000aa", 1);
    assert_int_equal(dispatch_load_new_model(w.d, ke, w.now, &one), 1);
    launch(&w.r, "f", 1, 10); /* a job whose model nobody has: its first load still goes */
    assert_int_equal(dispatch_sync_jobs(w.d, w.r.jobs), 0);
    n = loads(&w, l);
    assert_int_equal(n, 1);
    assert_int_equal(l[0].job, jobs_of_model(w.r.jobs, "f")->id);
    /* Without load_models nothing is loaded by the core. */
    world_free(&w);
    world_init(&w, &cfg);
    launch(&w.r, "a", 1, 10);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    assert_int_equal(loads(&w, l), 0);
    assert_int_equal(dispatch_load_new_model(w.d, key, w.now, &one), 0);
    next(&w, NULL);
    world_free(&w);
}

/* ---- online jobs ------------------------------------------------------------------------------ */

/* JOB_LAUNCH of `model` (registered first), or JOB_SET_QUEUE_DELAY: the
 * command's status. */
static int online_cmd(struct replica *r, uint32_t type, const char *model, uint32_t batch,
                      int online, uint32_t delay_us)
{
    if (type == IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH && !jobs_model(r->jobs, model))
        add_model(r, model, "00000000000000bb");
    Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
    l.model = (char *)model;
    l.batch = batch;
    l.weight = 1;
    l.online = online;
    l.max_queue_delay_us = delay_us;
    return apply(r, type, &l.base);
}

#define LAUNCH IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH
#define SET_QUEUE_DELAY IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_QUEUE_DELAY

/* An online job of `model` with `batch` and a maximum queue delay; returns
 * its id. */
static uint32_t launch_online_delay(struct replica *r, const char *model, uint32_t batch,
                                    uint32_t delay_us)
{
    assert_int_equal(online_cmd(r, LAUNCH, model, batch, 1, delay_us), 0);
    return jobs_of_model(r->jobs, model)->id;
}

/* An online job of `model` with `batch` and `weight` (no queue delay);
 * returns its id. */
static uint32_t launch_online(struct replica *r, const char *model, uint32_t batch, double weight)
{
    add_model(r, model, "00000000000000bb");
    Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
    l.model = (char *)model;
    l.batch = batch;
    l.weight = weight;
    l.online = 1;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, &l.base), 0);
    return jobs_of_model(r->jobs, model)->id;
}

/* One answered online request, as the leader proposes it. */
static void commit_online(struct replica *r, uint32_t job, uint64_t query, uint32_t ms)
{
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT;
    d.job = job;
    d.query = query;
    d.worker = "w1";
    d.duration_ms = ms;
    Idunno__QueryDone *dp = &d;
    Idunno__QueryDoneBatch b = IDUNNO__QUERY_DONE_BATCH__INIT;
    b.n_done = 1;
    b.done = &dp;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, &b.base), 0);
}

/* The replicated side: an online job refuses data sets, and each answered
 * request counts one query with its latency; the kind survives a snapshot. */
static void test_online_job_state(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    uint32_t job = launch_online(&r, "o", 4, 2);
    struct job_rec *jr = jobs_by_id(r.jobs, job);
    assert_true(jr->online);
    char *names[] = {"o/a.jpg"};
    Idunno__JobInference q = IDUNNO__JOB_INFERENCE__INIT;
    q.model = "o";
    q.dataset = "o";
    q.n_images = 1;
    q.images = names;
    assert_int_equal(apply(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE, &q.base),
                     ID_EINVAL);
    assert_int_equal(jr->n_images, 0);
    commit_online(&r, job, 7, 12);
    commit_online(&r, job, 8, 30);
    assert_int_equal(jr->queries_done, 2);
    assert_int_equal(jr->n_done, 0);

    struct replica back;
    replica_restored(&r, &back);
    struct job_rec *again = jobs_by_id(back.jobs, job);
    assert_non_null(again);
    assert_true(again->online);
    assert_int_equal(again->queries_done, 2);
    assert_int_equal(again->batch, 4);
    jobs_destroy(back.jobs);
    jobs_destroy(r.jobs);
}

/* Requests queue as queries without images; a dispatched one takes the
 * job's other waiting requests onto the same worker (dynamic batching), into
 * its free slots and no further, and the worker is free again once all are
 * done. One answered or given up while waiting is skipped; one whose run
 * failed goes back to the head; none is timed out by the tick. */
static void test_online_requests(void **state)
{
    (void)state;
    struct dispatch_config c4 = cfg;
    c4.slots = 4;
    struct world w;
    world_init(&w, &c4);
    uint32_t job = launch_online(&w.r, "o", 4, 1);
    assert_int_equal(dispatch_online_enqueue(w.d, job, 1, w.now), 0); /* not leading */
    lead(&w, 1, (const char *const[]){"w1", NULL});
    uint64_t q[6];
    for (int i = 0; i < 6; i++)
        assert_true((q[i] = dispatch_online_enqueue(w.d, job, 1, w.now)) != 0);
    dispatch_online_forget(w.d, q[0]); /* answered while it waited */
    struct dispatch_run r = next(&w, NULL);
    assert_int_equal(r.query, q[1]);
    assert_int_equal(r.n, 0);
    assert_string_equal(r.worker, "w1");
    uint64_t more[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(dispatch_online_take(w.d, job, "w1", w.now, &more[i]), 1);
    assert_int_equal(more[0], q[2]);
    assert_int_equal(more[2], q[4]);
    uint64_t none;
    assert_int_equal(dispatch_online_take(w.d, job, "w1", w.now, &none), 0); /* its 4 slots */
    assert_int_equal(view(&w, job).inflight, 4);
    assert_int_equal(view(&w, job).queued, 1);
    no_next(&w); /* w1 is full */
    /* Past any query timeout: online requests are their callers' to time. */
    struct dispatch_timeout late[4];
    w.now += (c4.query_timeout_ms + 1) * MS;
    assert_int_equal(dispatch_tick(w.d, w.now, late, 4), 0);
    /* The run fails for one of them: it goes back to the head. */
    struct dispatch_bench b;
    assert_int_equal(dispatch_run_failed(w.d, more[1], "w1", ID_EIO, w.now, &b), 1);
    assert_int_equal(b.unplugged, 0);
    done(&w, job, r.query, "w1");
    done(&w, job, more[0], "w1");
    dispatch_online_forget(w.d, more[2]); /* answered with an error */
    assert_int_equal(view(&w, job).inflight, 0);
    struct dispatch_run again = next(&w, NULL);
    assert_int_equal(again.query, more[1]);
    assert_int_equal(dispatch_online_take(w.d, job, "w1", w.now, &more[0]), 1);
    assert_int_equal(more[0], q[5]);
    assert_int_equal(dispatch_online_take(w.d, job, "w1", w.now, &more[0]), 0);
    struct dispatch_stats st;
    dispatch_get_stats(w.d, &st);
    assert_int_equal(st.dispatched, 6);
    /* A run that timed out: the worker may be cut off one way, so it sits
     * out long enough for what it held to run elsewhere. */
    assert_int_equal(dispatch_run_failed(w.d, again.query, "w1", ID_ETIMEDOUT, w.now, &b), 1);
    assert_int_equal(b.unplugged, 1);
    assert_int_equal(b.requeued, 1); /* the other request of its batch */
    assert_int_equal(b.ms, DISPATCH_BENCH_TIMEOUT_MS);
    no_next(&w);
    w.now += DISPATCH_BENCH_TIMEOUT_MS * MS;
    dispatch_unbench(w.d, w.now);
    struct dispatch_run back = next(&w, NULL);
    uint64_t other;
    assert_int_equal(dispatch_online_take(w.d, job, "w1", w.now, &other), 1);
    assert_true((back.query == again.query && other == more[0]) ||
                (back.query == more[0] && other == again.query));
    assert_true(back.rerun_ms >= DISPATCH_BENCH_TIMEOUT_MS - 0.001);
    world_free(&w);
}

/* An online job beside a batch job: while both have work, the dispatches
 * split by weight, whatever the online requests' arrival. */
static void test_online_fair_with_batch(void **state)
{
    (void)state;
    for (double weight = 1; weight <= 2; weight++) {
        struct world w;
        world_init(&w, &cfg);
        uint32_t batch = launch(&w.r, "b", 1, 4000);
        uint32_t online = launch_online(&w.r, "o", 1, weight);
        lead(&w, 1, (const char *const[]){"w1", "w2", NULL});
        unsigned waiting = 0, n_online = 0, n_batch = 0;
        struct dispatch_run runs[2];
        for (int round = 0; round < 600; round++) {
            while (waiting < 3) { /* closed-loop clients: 3 requests waiting */
                assert_true(dispatch_online_enqueue(w.d, online, 1, w.now) != 0);
                waiting++;
            }
            int k = 0;
            uint32_t imgs[2];
            /* A run's images are valid until the next call: kept (batch 1). */
            while (k < 2 && dispatch_next(w.d, w.r.jobs, w.now, &runs[k])) {
                imgs[k] = runs[k].n ? runs[k].images[0] : 0;
                k++;
            }
            for (int i = 0; i < k; i++) {
                if (runs[i].job == online) {
                    n_online++;
                    waiting--;
                } else {
                    n_batch++;
                }
                done(&w, runs[i].job, runs[i].query, runs[i].worker);
                if (runs[i].job == batch)
                    commit(&w.r, batch, runs[i].query, &imgs[i], runs[i].n);
            }
            assert_true(k >= 1);
        }
        double ratio = (double)n_online / n_batch;
        assert_true(ratio > weight * 0.97 && ratio < weight * 1.03);
        world_free(&w);
    }
}

/* The replicated side of the queue delay: only for an online job, at most
 * JOBS_MAX_QUEUE_DELAY_US, changed on a running online job only, and kept
 * by a snapshot (a new coordinator reads it from there). */
static void test_queue_delay_state(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(online_cmd(&r, LAUNCH, "b", 4, 0, 500), ID_EINVAL); /* a batch job */
    assert_int_equal(online_cmd(&r, LAUNCH, "o", 4, 1, JOBS_MAX_QUEUE_DELAY_US + 1), ID_EINVAL);
    assert_null(jobs_of_model(r.jobs, "o"));
    uint32_t job = launch_online_delay(&r, "o", 4, JOBS_MAX_QUEUE_DELAY_US);
    assert_int_equal(jobs_by_id(r.jobs, job)->max_queue_delay_us, JOBS_MAX_QUEUE_DELAY_US);
    assert_int_equal(online_cmd(&r, SET_QUEUE_DELAY, "o", 0, 0, 250), 0);
    assert_int_equal(jobs_by_id(r.jobs, job)->max_queue_delay_us, 250);
    assert_int_equal(online_cmd(&r, SET_QUEUE_DELAY, "o", 0, 0, JOBS_MAX_QUEUE_DELAY_US + 1),
                     ID_EINVAL);
    assert_int_equal(online_cmd(&r, SET_QUEUE_DELAY, "none", 0, 0, 250), ID_ENOTFOUND);
    assert_int_equal(online_cmd(&r, LAUNCH, "b", 4, 0, 0), 0);
    assert_int_equal(online_cmd(&r, SET_QUEUE_DELAY, "b", 0, 0, 250), ID_EINVAL);
    assert_int_equal(jobs_of_model(r.jobs, "b")->max_queue_delay_us, 0);
    assert_int_equal(jobs_by_id(r.jobs, job)->max_queue_delay_us, 250);

    struct replica back;
    replica_restored(&r, &back);
    assert_int_equal(jobs_by_id(back.jobs, job)->max_queue_delay_us, 250);
    assert_int_equal(jobs_of_model(back.jobs, "b")->max_queue_delay_us, 0);
    jobs_destroy(back.jobs);
    jobs_destroy(r.jobs);
}

/* The queue delay D on a fake clock. A request goes at once while none of
 * the job's requests is running; with one running, the next is held until it
 * has waited D (not a microsecond less), or until requests enough to fill
 * what one dispatch takes (the worker's room, or the job's batch in inputs)
 * are waiting, which go at once, together; a request whose run failed is
 * not held again; D = 0 never holds. */
static void test_online_queue_delay(void **state)
{
    (void)state;
    struct dispatch_config c4 = cfg;
    c4.slots = 4;
    struct world w;
    world_init(&w, &c4);
    const uint64_t delay = 2000;
    uint32_t job = launch_online_delay(&w.r, "o", 8, (uint32_t)delay);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    uint64_t none;

    /* Nothing running: a lone request is not held. */
    uint64_t lone = dispatch_online_enqueue(w.d, job, 1, w.now);
    struct dispatch_run r = next(&w, NULL);
    assert_int_equal(r.query, lone);
    assert_int_equal(dispatch_online_hold_until(w.d), 0);
    /* One running: the next waits D behind it. */
    uint64_t t0 = w.now;
    uint64_t second = dispatch_online_enqueue(w.d, job, 1, t0);
    no_next(&w);
    assert_int_equal(dispatch_online_hold_until(w.d), t0 + delay);
    w.now = t0 + delay - 1;
    no_next(&w);
    w.now = t0 + delay;
    r = next(&w, NULL);
    assert_int_equal(r.query, second);
    assert_int_equal(dispatch_online_take(w.d, job, "w1", w.now, &none), 0);
    assert_int_equal(dispatch_online_hold_until(w.d), 0);
    /* Its run failed: back at the head, and not held again (it waited),
     * though the first still runs. */
    struct dispatch_bench b;
    assert_int_equal(dispatch_run_failed(w.d, second, "w1", ID_EIO, w.now, &b), 1);
    r = next(&w, NULL);
    assert_int_equal(r.query, second);
    done(&w, job, second, "w1");

    /* With `lone` running on w1 (4 slots), three requests fill its room of
     * 3 (below the batch of 8): the third releases them into one dispatch,
     * before D. */
    uint64_t q[3];
    for (int i = 0; i < 3; i++) {
        w.now += 100;
        q[i] = dispatch_online_enqueue(w.d, job, 1, w.now);
        assert_true(q[i] != 0);
        if (i < 2)
            no_next(&w);
    }
    r = next(&w, NULL);
    assert_int_equal(r.query, q[0]);
    uint64_t more[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(dispatch_online_take(w.d, job, "w1", w.now, &more[i]), 1);
        assert_int_equal(more[i], q[i + 1]);
    }
    for (int i = 0; i < 3; i++)
        done(&w, job, q[i], "w1");

    /* A batch of 2 inputs is full with one request of 2 images, while a
     * request of one image would wait. */
    assert_int_equal(job_cmd(&w.r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_BATCH, "o", 2), 0);
    uint64_t pair = dispatch_online_enqueue(w.d, job, 2, w.now);
    r = next(&w, NULL);
    assert_int_equal(r.query, pair);
    done(&w, job, pair, "w1");

    /* A request held, then D set to 0 (set-max-queue-delay): it goes at once,
     * and so does the next one. */
    uint64_t held = dispatch_online_enqueue(w.d, job, 1, w.now);
    no_next(&w);
    assert_int_equal(online_cmd(&w.r, SET_QUEUE_DELAY, "o", 0, 0, 0), 0);
    r = next(&w, NULL);
    assert_int_equal(r.query, held);
    assert_int_equal(dispatch_online_hold_until(w.d), 0);
    done(&w, job, held, "w1");
    uint64_t at_once = dispatch_online_enqueue(w.d, job, 1, w.now);
    r = next(&w, NULL);
    assert_int_equal(r.query, at_once);
    done(&w, job, at_once, "w1");
    /* The last one running: nothing of the job is held any more. */
    done(&w, job, lone, "w1");
    assert_int_equal(dispatch_online_hold_until(w.d), 0);
    world_free(&w);
}

/* While an online job is held, the other jobs are dispatched; the room it
 * waits to fill is the free slots left beside them, and it goes when its
 * delay ends. */
static void test_online_delay_beside_batch_job(void **state)
{
    (void)state;
    struct dispatch_config c8 = cfg;
    c8.slots = 8;
    struct world w;
    world_init(&w, &c8);
    uint32_t batch = launch(&w.r, "b", 1, 20);
    const uint64_t delay = 5000;
    uint32_t online = launch_online_delay(&w.r, "o", 8, (uint32_t)delay);
    lead(&w, 1, (const char *const[]){"w1", NULL});
    /* A first request goes at once (nothing of its job runs), beside the
     * batch job's queries. */
    uint64_t first = dispatch_online_enqueue(w.d, online, 1, w.now);
    int seen = 0;
    for (int i = 0; i < 3 && !seen; i++)
        seen = next(&w, NULL).query == first;
    assert_true(seen);
    /* The next waits behind it; the batch job's queries go meanwhile. */
    uint64_t t0 = w.now;
    uint64_t req = dispatch_online_enqueue(w.d, online, 1, t0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(next(&w, NULL).job, batch);
    assert_int_equal(dispatch_online_hold_until(w.d), t0 + delay);
    /* At D it goes, among the batch job's next queries. */
    w.now = t0 + delay;
    seen = 0;
    for (int i = 0; i < 3 && !seen; i++) {
        struct dispatch_run r = next(&w, NULL);
        seen = r.job == online && r.query == req;
    }
    assert_true(seen);
    world_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_ahead),
        cmocka_unit_test(test_set_batch_resizes_cut_queries),
        cmocka_unit_test(test_requeue_keeps_claims),
        cmocka_unit_test(test_busy_worker_benched),
        cmocka_unit_test(test_worker_fails_with_queries),
        cmocka_unit_test(test_timeout_and_duplicate_result),
        cmocka_unit_test(test_failed_commit_unclaims),
        cmocka_unit_test(test_result_reported_twice),
        cmocka_unit_test(test_adoption_after_failover),
        cmocka_unit_test(test_unlead_and_lead_again),
        cmocka_unit_test(test_stop_proposed_once),
        cmocka_unit_test(test_burst_from_run_time),
        cmocka_unit_test(test_first_query_timed),
        cmocka_unit_test(test_flush_batching),
        cmocka_unit_test(test_random_run),
        cmocka_unit_test(test_model_loads),
        cmocka_unit_test(test_model_loads_spread),
        cmocka_unit_test(test_online_job_state),
        cmocka_unit_test(test_online_requests),
        cmocka_unit_test(test_online_fair_with_batch),
        cmocka_unit_test(test_queue_delay_state),
        cmocka_unit_test(test_online_queue_delay),
        cmocka_unit_test(test_online_delay_beside_batch_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
