/* coord.c — the coordinator's IDunno part (see coord.h). */
#include "sched/coord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/strbuf.h"
#include "base/log.h"
#include "base/sha256.h"
#include "ctl/ctl.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "ctl/service.h"
#include "sched/fair.h"
#include "sched/jobs.h"
#include "sched/parts.h"
#include "sched/qstats.h"
#include "sdfs/catalog.h"
#include "sdfs/sdfs.h"

#define COORD_MAX_ALIVE 256
#define COORD_RUN_TIMEOUT_MS 5000
#define COORD_BATCH_MAX 256
#define COORD_CUT_AHEAD 2
/* Group commit: completions are proposed as one JOB_DONE command 1 ms after
 * the first arrives, with at most this many commands uncommitted; beyond, they
 * gather until one commits. Under load the batches grow to cover the commit
 * time, so the Raft log (and its fsyncs) grows with batches, not queries. */
#define COORD_BATCHES_IN_FLIGHT 2
/* Bursts (fair.h): a worker may hold this much of a cheap job's work at once,
 * in queries at the job's mean run time (FAIR_BURST_MAX at most). Under a
 * millisecond per query, the messages and wake-ups of each query cost more
 * than its run; a burst's queries travel in one write each way and run as
 * one chain on the worker. Costly jobs (a query or more of this budget) keep
 * one query per slot, so their rates stay as even as before. */
#define COORD_BURST_BUDGET_US 4000.0
#define COORD_RUN_AVG_WEIGHT 0.02 /* of each new run time in the job's mean */
#define COORD_BURST_LOG_MS 10000  /* a job's burst changes are logged this seldom */
/* Result files that no commit can name are looked for this often, and at
 * most this many deleted per look (parts.h). */
#define COORD_SWEEP_MS 5000
#define COORD_SWEEP_MAX 64

enum cq_state { CQ_QUEUED, CQ_INFLIGHT };

struct cquery {
    uint32_t job;
    uint64_t id;
    uint32_t *idx;
    size_t n;
    enum cq_state state;
    char worker[64];
    uint64_t requeued_us;    /* set when its worker failed: timed until it runs again */
    uint64_t dispatched_ms;  /* wall clock */
    uint64_t dispatched_mono;
    struct cquery *next;
};

/* A worker the coordinator knows of. A benched one is out of the dispatcher
 * for a moment: it refused a query (full, or its connection failed), and
 * giving it the next one at once would only spin. */
struct cworker {
    char name[64];
    uint64_t benched_until; /* monotonic ms; 0: in the dispatcher */
};

/* How long a worker stays out after refusing a query because it holds too
 * many results not yet committed, and after its connection failed. */
#define COORD_BENCH_BUSY_MS 50
#define COORD_BENCH_UNREACHABLE_MS 250

/* What the leader keeps per job besides the replicated record. */
struct cjob {
    uint32_t id;
    uint8_t *claimed; /* images in a queued or running query */
    size_t cap;       /* images the bitmap covers */
    size_t cursor;    /* images below it are done or claimed */
    /* Queries cut ahead of dispatch, still queued (oldest first). Two, so that
     * dispatching one never leaves the job's queue empty: the dispatcher
     * treats a job whose queue empties and refills as newly runnable and
     * raises its virtual time to the others', which would erase what its
     * weight earned it. */
    uint64_t lazy[COORD_CUT_AHEAD];
    size_t n_lazy;
    uint64_t idle_queued_us; /* images arrived while the job had nothing to run */
    double first_dispatch_ms; /* how long its first query then waited (-1: never) */
    /* That first query, until its result arrives: the time from the images'
     * arrival to the first result, which shows the query ran, not only left. */
    uint64_t first_query, first_queued_us;
    double first_result_ms; /* -1: none yet */
    double first_start_ms;  /* to the batch starting on its worker; -1: none yet */
    double run_us_avg;      /* moving mean of its queries' run times (0: none yet) */
    unsigned burst;         /* as given to the dispatcher (1: none) */
    uint64_t burst_logged_ms;
    int stop_proposed;      /* a worker asked to stop it (QueryDone.stop_job): proposed once */
};

/* A completion waiting for its JOB_DONE command. */
struct done_wait {
    Idunno__QueryDone *msg;
    struct net_request *req;
};

struct done_batch {
    struct coord *c;
    struct done_wait *w;
    size_t n;
};

struct coord {
    uv_loop_t *loop;
    struct net *net;
    struct ctl *ctl;
    struct ctl_svc *svc; /* the leader operations below */
    struct member *member;
    struct jobs *jobs;
    struct catalog *catalog;
    struct sdfs *sdfs;
    char name[64];
    char addr[64];
    /* Leader-only state; NULL/0 when not dispatching. */
    int active, activating;
    uint64_t epoch; /* bumped at each (de)activation: stale callbacks check it */
    uint64_t term;
    uint32_t qcounter;
    struct fair *fair;
    struct cjob *cjobs;
    size_t n_cjobs;
    struct parts *parts; /* writing results to SDFS; leads while active */
    struct cquery *queries;
    struct cworker *workers; /* live members, in the dispatcher unless benched */
    size_t n_workers;
    unsigned adopt_pending;
    uint64_t adopt_deadline;
    /* Queries whose results arrived lately: a worker's WORKER_STATE answer can
     * be older than its JOB_DONE, and such a query must not be adopted. */
    uint64_t recent_done[1024];
    unsigned recent_next;
    struct done_wait batch[COORD_BATCH_MAX];
    size_t n_batch;
    unsigned batches_proposed; /* JOB_DONE commands not yet committed */
    uv_timer_t tick, batch_timer;
    int stopping;
    struct coord_stats stats;
};

/* ---- live members ----------------------------------------------------------------------------- */

struct alive {
    struct member_view v[COORD_MAX_ALIVE];
    size_t n;
};

static void alive_load(struct coord *c, struct alive *a)
{
    a->n = member_alive(c->member, a->v, COORD_MAX_ALIVE);
}

static const char *alive_addr(const struct alive *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].name, name) == 0)
            return a->v[i].addr;
    return NULL;
}

/* ---- leader-local bookkeeping ----------------------------------------------------------------- */

static struct cjob *cjob_find(struct coord *c, uint32_t id)
{
    for (size_t i = 0; i < c->n_cjobs; i++)
        if (c->cjobs[i].id == id)
            return &c->cjobs[i];
    return NULL;
}

/* Adds the dispatcher's record of a job (and the job to the fair core).
 * Returns it, or NULL with *rc: ID_ENOMEM when the table cannot grow, else
 * the fair core's refusal (the job is then left out). */
static struct cjob *cjob_add(struct coord *c, const struct job_rec *job, int *rc)
{
    struct cjob *a = realloc(c->cjobs, (c->n_cjobs + 1) * sizeof *a);
    if (!a) {
        *rc = ID_ENOMEM;
        return NULL;
    }
    c->cjobs = a;
    struct cjob *cj = &c->cjobs[c->n_cjobs];
    memset(cj, 0, sizeof *cj);
    cj->id = job->id;
    cj->first_dispatch_ms = cj->first_result_ms = cj->first_start_ms = -1;
    cj->burst = 1;
    *rc = fair_job_add(c->fair, job->id, job->weight);
    if (*rc < 0)
        return NULL;
    c->n_cjobs++;
    return cj;
}

static int cjob_cover(struct cjob *cj, size_t n_images)
{
    if (n_images <= cj->cap)
        return 0;
    size_t cap = cj->cap ? cj->cap : 256;
    while (cap < n_images)
        cap *= 2;
    uint8_t *b = realloc(cj->claimed, (cap + 7) / 8);
    if (!b)
        return ID_ENOMEM;
    memset(b + (cj->cap + 7) / 8, 0, (cap + 7) / 8 - (cj->cap + 7) / 8);
    cj->claimed = b;
    cj->cap = cap;
    return 0;
}

static int claimed(const struct cjob *cj, size_t i)
{
    return i < cj->cap && ((cj->claimed[i >> 3] >> (i & 7)) & 1);
}

static void set_claim(struct cjob *cj, size_t i, int on)
{
    if (i >= cj->cap)
        return;
    if (on)
        cj->claimed[i >> 3] |= (uint8_t)(1u << (i & 7));
    else
        cj->claimed[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

/* Drops a query from the job's cut-ahead list; returns whether it was there. */
static int lazy_forget(struct cjob *cj, uint64_t id)
{
    for (size_t i = 0; i < cj->n_lazy; i++)
        if (cj->lazy[i] == id) {
            memmove(&cj->lazy[i], &cj->lazy[i + 1], (cj->n_lazy - i - 1) * sizeof *cj->lazy);
            cj->n_lazy--;
            return 1;
        }
    return 0;
}

static struct cquery *cq_find(struct coord *c, uint64_t id)
{
    for (struct cquery *q = c->queries; q; q = q->next)
        if (q->id == id)
            return q;
    return NULL;
}

static void cq_free(struct coord *c, struct cquery *q, int unclaim)
{
    for (struct cquery **pp = &c->queries; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    struct cjob *cj = cjob_find(c, q->job);
    if (cj && unclaim) {
        for (size_t i = 0; i < q->n; i++) {
            set_claim(cj, q->idx[i], 0);
            if (q->idx[i] < cj->cursor)
                cj->cursor = q->idx[i];
        }
    }
    if (cj)
        lazy_forget(cj, q->id);
    free(q->idx);
    free(q);
}

static struct cquery *cq_new(struct coord *c, uint32_t job, uint64_t id, size_t cap)
{
    struct cquery *q = calloc(1, sizeof *q);
    if (q && !(q->idx = calloc(cap ? cap : 1, sizeof *q->idx))) {
        free(q);
        return NULL;
    }
    if (!q)
        return NULL;
    q->job = job;
    q->id = id;
    q->next = c->queries;
    c->queries = q;
    return q;
}

/* Query ids are unique across leaders: the term in the high half. */
static uint64_t next_query_id(struct coord *c)
{
    return (c->term << 32) | ++c->qcounter;
}

/* Takes up to `want` images that are neither done nor claimed, from the
 * job's cursor on, claiming them; returns how many. */
static size_t take_images(struct cjob *cj, const struct job_rec *job, uint32_t *idx, size_t want)
{
    size_t got = 0;
    while (got < want && cj->cursor < job->n_images) {
        size_t i = cj->cursor++;
        if (job_image_done(job, i) || claimed(cj, i))
            continue;
        idx[got++] = (uint32_t)i;
        set_claim(cj, i, 1);
    }
    return got;
}

/* Keeps COORD_CUT_AHEAD queries of the job cut and queued: up to `batch`
 * images each that are neither done nor claimed. Queries cut earlier and still
 * queued are resized to the current batch first (set-batch applies to every
 * query not yet dispatched). */
static void cut_ahead(struct coord *c, struct cjob *cj)
{
    struct job_rec *job = jobs_by_id(c->jobs, cj->id);
    if (!job || job->stopped || cjob_cover(cj, job->n_images) < 0)
        return;
    for (size_t k = 0; k < cj->n_lazy; k++) {
        struct cquery *q = cq_find(c, cj->lazy[k]);
        if (!q || q->state != CQ_QUEUED) {
            lazy_forget(cj, cj->lazy[k--]);
            continue;
        }
        if (q->n > job->batch) { /* shrink: give the extra images back */
            for (size_t i = job->batch; i < q->n; i++) {
                set_claim(cj, q->idx[i], 0);
                if (q->idx[i] < cj->cursor)
                    cj->cursor = q->idx[i];
            }
            q->n = job->batch;
        } else if (q->n < job->batch) { /* grow, if there are images */
            uint32_t *grown = realloc(q->idx, job->batch * sizeof *q->idx);
            if (grown) {
                q->idx = grown;
                q->n += take_images(cj, job, q->idx + q->n, job->batch - q->n);
            }
        }
    }
    while (cj->n_lazy < COORD_CUT_AHEAD) {
        uint32_t idx[JOBS_MAX_BATCH];
        size_t got = take_images(cj, job, idx, job->batch);
        if (got == 0)
            return;
        struct cquery *q = cq_new(c, cj->id, next_query_id(c), job->batch);
        if (!q) {
            for (size_t i = 0; i < got; i++)
                set_claim(cj, idx[i], 0);
            cj->cursor = idx[0];
            return;
        }
        memcpy(q->idx, idx, got * sizeof *idx);
        q->n = got;
        q->state = CQ_QUEUED;
        if (fair_enqueue(c->fair, cj->id, q->id, 0) < 0) {
            cq_free(c, q, 1);
            return;
        }
        cj->lazy[cj->n_lazy++] = q->id;
    }
}

/* ---- dispatching -------------------------------------------------------------------------------- */

static void pump(struct coord *c);
static void worker_bench(struct coord *c, const char *name, uint64_t ms, int unreachable);

struct run_call {
    struct coord *c;
    uint64_t epoch;
    uint64_t query;
    char worker[64];
};

static void requeue(struct coord *c, struct cquery *q)
{
    if (q->state != CQ_INFLIGHT)
        return;
    if (fair_requeue(c->fair, q->job, q->id) == 0) {
        q->state = CQ_QUEUED;
        q->worker[0] = 0;
        c->stats.requeued++;
    }
}

static void on_run_ack(void *ud, const struct net_result *res)
{
    struct run_call *rc = ud;
    struct coord *c = rc->c;
    if (res->status < 0 && c->active && c->epoch == rc->epoch && !c->stopping) {
        struct cquery *q = cq_find(c, rc->query);
        if (q && q->state == CQ_INFLIGHT && strcmp(q->worker, rc->worker) == 0) {
            LOG_WARN("coord", "dispatch of query %llu to %s failed (%s): requeued",
                     (unsigned long long)q->id, rc->worker,
                     res->errmsg ? res->errmsg : id_strerror(res->status));
            c->stats.run_failures++;
            int unreachable = res->status == ID_ECONNREFUSED || res->status == ID_ECLOSED;
            if (unreachable)
                q->requeued_us = id_now_us();
            requeue(c, q);
            /* Dispatching to it again at once would fail the same way: a
             * full worker needs its results committed first, and one that
             * refuses connections is probably going away (membership will
             * tell). The tick puts it back after a moment. */
            if (res->status == ID_EBUSY)
                worker_bench(c, rc->worker, COORD_BENCH_BUSY_MS, 0);
            else if (unreachable)
                worker_bench(c, rc->worker, COORD_BENCH_UNREACHABLE_MS, 1);
            pump(c);
        }
    }
    free(rc);
}

/* Fills the model part of a dispatch, with the replicas holding its file. */
static int model_msg(struct coord *c, const struct model_rec *m, const struct alive *a,
                     Idunno__ModelInfo *out, float *mean, float *std, char **sources)
{
    jobs_model_to_pb(m, out, mean, std);
    const struct sdfs_file *f = catalog_find(c->catalog, m->file);
    const struct sdfs_version *v = f ? catalog_find_blob(c->catalog, m->file, m->blob) : NULL;
    size_t n = 0;
    for (size_t r = 0; v && r < v->n_replicas; r++) {
        const char *addr = alive_addr(a, v->replicas[r]);
        if (addr)
            sources[n++] = (char *)addr;
    }
    out->n_sources = n;
    out->sources = sources;
    return v ? 0 : ID_ENOTFOUND;
}

static void send_run(struct coord *c, struct cquery *q, const struct alive *a)
{
    struct job_rec *job = jobs_by_id(c->jobs, q->job);
    const struct model_rec *m = job ? jobs_model(c->jobs, job->model) : NULL;
    const char *addr = alive_addr(a, q->worker);
    if (!job || !m || !addr) {
        requeue(c, q);
        return;
    }
    Idunno__ModelInfo mi;
    float mean[3], std[3];
    char *msrc[SDFS_REPLICAS];
    model_msg(c, m, a, &mi, mean, std, msrc);
    Idunno__QueryImage rows[JOBS_MAX_BATCH], *ptrs[JOBS_MAX_BATCH];
    char *src[JOBS_MAX_BATCH][SDFS_REPLICAS];
    size_t n = q->n < JOBS_MAX_BATCH ? q->n : JOBS_MAX_BATCH;
    for (size_t i = 0; i < n; i++) {
        Idunno__QueryImage *im = &rows[i];
        idunno__query_image__init(im);
        im->index = q->idx[i];
        im->name = job->images[q->idx[i]];
        const struct sdfs_file *f = catalog_find(c->catalog, im->name);
        if (f && f->n_versions) {
            const struct sdfs_version *v = &f->versions[f->n_versions - 1];
            im->blob = (char *)v->blob;
            im->size = v->size;
            im->sha256.data = (uint8_t *)v->sha256;
            im->sha256.len = 32;
            for (size_t r = 0; r < v->n_replicas; r++) {
                const char *ra = alive_addr(a, v->replicas[r]);
                if (ra)
                    src[i][im->n_sources++] = (char *)ra;
            }
            im->sources = src[i];
        }
        ptrs[i] = im;
    }
    Idunno__QueryRun run = IDUNNO__QUERY_RUN__INIT;
    run.job = q->job;
    run.query = q->id;
    run.model = &mi;
    run.n_images = n;
    run.images = ptrs;
    run.dispatched_ms = q->dispatched_ms;
    run.coordinator = c->addr;
    struct run_call *rc = malloc(sizeof *rc);
    if (!rc) {
        requeue(c, q);
        return;
    }
    *rc = (struct run_call){c, c->epoch, q->id, ""};
    snprintf(rc->worker, sizeof rc->worker, "%s", q->worker);
    if (net_call_pb(c->net, addr, IDUNNO__MSG_TYPE__MSG_JOB_RUN_REQ, &run.base,
                    COORD_RUN_TIMEOUT_MS, on_run_ack, rc) < 0) {
        free(rc);
        requeue(c, q);
    }
}

/* Dispatches while the dispatcher has a query and a free slot. */
static void pump(struct coord *c)
{
    if (!c->active || c->stopping)
        return;
    struct alive a;
    int loaded = 0;
    struct fair_dispatch d;
    unsigned guard = 0;
    while (guard++ < 10000 && fair_next(c->fair, &d)) {
        struct cquery *q = cq_find(c, d.query);
        if (!q) { /* a query forgotten meanwhile */
            fair_complete(c->fair, d.job, d.query);
            continue;
        }
        if (!loaded) {
            alive_load(c, &a);
            loaded = 1;
        }
        q->state = CQ_INFLIGHT;
        snprintf(q->worker, sizeof q->worker, "%s", d.worker);
        if (q->requeued_us) {
            /* The worst case of a failure: its queries' wait to run again. */
            double ms = (double)(id_now_us() - q->requeued_us) / 1000.0;
            q->requeued_us = 0;
            c->stats.rerun_last_ms = ms;
            if (ms > c->stats.rerun_max_ms)
                c->stats.rerun_max_ms = ms;
            LOG_INFO("coord", "query %llu of job %u runs again on %s, %.1f ms after its worker "
                     "was found failed", (unsigned long long)q->id, q->job, d.worker, ms);
        }
        q->dispatched_ms = id_wall_ms();
        q->dispatched_mono = id_now_ms();
        c->stats.dispatched++;
        struct cjob *cj = cjob_find(c, q->job);
        if (cj && cj->idle_queued_us) {
            cj->first_dispatch_ms = (double)(id_now_us() - cj->idle_queued_us) / 1000.0;
            cj->first_query = q->id;
            cj->first_queued_us = cj->idle_queued_us;
            cj->first_result_ms = -1;
            cj->first_start_ms = -1;
            cj->idle_queued_us = 0;
            LOG_INFO("coord", "job %u: first query on %s %.1f ms after its images were queued",
                     q->job, q->worker, cj->first_dispatch_ms);
        }
        if (cj && lazy_forget(cj, q->id))
            cut_ahead(c, cj);
        send_run(c, q, &a);
    }
}

/* ---- keeping the dispatcher in step with jobs and members ---------------------------------- */

static int worker_known(struct coord *c, const char *name)
{
    for (size_t i = 0; i < c->n_workers; i++)
        if (strcmp(c->workers[i].name, name) == 0)
            return 1;
    return 0;
}

/* Takes the worker out of the dispatcher, which puts its queries back at the
 * front of their queues; returns how many. `failed`: they are timed until
 * they run again (the failure-to-rerun figure). */
static size_t worker_unplug(struct coord *c, const char *name, int failed)
{
    fair_worker_remove(c->fair, name);
    size_t k = 0;
    for (struct cquery *q = c->queries; q; q = q->next)
        if (q->state == CQ_INFLIGHT && strcmp(q->worker, name) == 0) {
            q->state = CQ_QUEUED;
            q->worker[0] = 0;
            if (failed)
                q->requeued_us = id_now_us();
            k++;
        }
    c->stats.requeued += k;
    return k;
}

/* `unreachable`: its connection failed, which on a machine that reports a
 * dead process's port at once is the first sign of a failure: its queries are
 * timed like a declared failure's. */
static void worker_bench(struct coord *c, const char *name, uint64_t ms, int unreachable)
{
    for (size_t i = 0; i < c->n_workers; i++)
        if (strcmp(c->workers[i].name, name) == 0) {
            if (!c->workers[i].benched_until) {
                size_t k = worker_unplug(c, name, unreachable);
                if (unreachable)
                    LOG_INFO("coord", "worker %s unreachable: %zu queries requeued, out of the "
                             "dispatcher for %llu ms", name, k, (unsigned long long)ms);
            }
            c->workers[i].benched_until = id_now_ms() + ms;
            return;
        }
}

static void worker_drop(struct coord *c, const char *name, const char *why)
{
    for (size_t i = 0; i < c->n_workers; i++) {
        if (strcmp(c->workers[i].name, name) != 0)
            continue;
        size_t k = c->workers[i].benched_until ? 0 : worker_unplug(c, name, 1);
        LOG_INFO("coord", "worker %s %s: %zu queries requeued", name, why, k);
        memmove(&c->workers[i], &c->workers[i + 1], (c->n_workers - i - 1) * sizeof *c->workers);
        c->n_workers--;
        return;
    }
}

static void worker_take(struct coord *c, const char *name)
{
    if (worker_known(c, name))
        return;
    struct cworker *w = realloc(c->workers, (c->n_workers + 1) * sizeof *w);
    if (!w)
        return;
    c->workers = w;
    if (fair_worker_add(c->fair, name, COORD_SLOTS) == 0) {
        w = &c->workers[c->n_workers++];
        snprintf(w->name, sizeof w->name, "%s", name);
        w->benched_until = 0;
    }
}

static void sync_workers(struct coord *c)
{
    struct alive a;
    alive_load(c, &a);
    for (size_t i = 0; i < a.n; i++)
        worker_take(c, a.v[i].name);
    for (size_t i = c->n_workers; i > 0; i--)
        if (!alive_addr(&a, c->workers[i - 1].name))
            worker_drop(c, c->workers[i - 1].name, "is gone");
    uint64_t now = id_now_ms();
    for (size_t i = 0; i < c->n_workers; i++) {
        struct cworker *w = &c->workers[i];
        if (w->benched_until && now >= w->benched_until &&
            fair_worker_add(c->fair, w->name, COORD_SLOTS) == 0)
            w->benched_until = 0;
    }
}

static void job_drop(struct coord *c, size_t at)
{
    struct cjob *cj = &c->cjobs[at];
    fair_job_remove(c->fair, cj->id);
    for (struct cquery *q = c->queries, *next; q; q = next) {
        next = q->next;
        if (q->job == cj->id)
            cq_free(c, q, 0);
    }
    free(cj->claimed);
    memmove(&c->cjobs[at], &c->cjobs[at + 1], (c->n_cjobs - at - 1) * sizeof *c->cjobs);
    c->n_cjobs--;
}

static void sync_jobs(struct coord *c)
{
    /* Jobs gone or stopped leave the dispatcher (their queries with them). */
    for (size_t i = c->n_cjobs; i > 0; i--) {
        struct job_rec *job = jobs_by_id(c->jobs, c->cjobs[i - 1].id);
        if (!job || job->stopped)
            job_drop(c, i - 1);
    }
    for (size_t i = 0; i < jobs_count(c->jobs); i++) {
        struct job_rec *job = jobs_at(c->jobs, i);
        if (job->stopped)
            continue;
        struct cjob *cj = cjob_find(c, job->id);
        int rc = 0;
        if (!cj && !(cj = cjob_add(c, job, &rc))) {
            if (rc == ID_ENOMEM)
                return;
            continue;
        }
        cut_ahead(c, cj);
    }
}

/* ---- taking over and stepping down ---------------------------------------------------------- */

static void deactivate(struct coord *c)
{
    if (!c->active && !c->activating)
        return;
    LOG_INFO("coord", "no longer dispatching");
    c->active = c->activating = 0;
    c->epoch++;
    while (c->queries)
        cq_free(c, c->queries, 0);
    for (size_t i = 0; i < c->n_cjobs; i++)
        free(c->cjobs[i].claimed);
    free(c->cjobs);
    c->cjobs = NULL;
    parts_unlead(c->parts);
    c->n_cjobs = 0;
    free(c->workers);
    c->workers = NULL;
    c->n_workers = 0;
    fair_destroy(c->fair);
    c->fair = NULL;
}

static void finish_activation(struct coord *c)
{
    c->activating = 0;
    c->active = 1;
    c->stats.active = 1;
    c->stats.activated_ms = id_wall_ms();
    size_t inflight = 0;
    for (struct cquery *q = c->queries; q; q = q->next)
        inflight += q->state == CQ_INFLIGHT;
    LOG_INFO("coord", "dispatching: %zu jobs, %zu workers, %zu queries adopted", c->n_cjobs,
             c->n_workers, inflight);
    sync_jobs(c);
    pump(c);
}

struct state_call {
    struct coord *c;
    uint64_t epoch;
    char worker[64];
};

/* A worker's answer to a new coordinator: the queries it holds become in
 * flight on it. */
static void on_worker_state(void *ud, const struct net_result *res)
{
    struct state_call *sc = ud;
    struct coord *c = sc->c;
    if (c->activating && c->epoch == sc->epoch && !c->stopping) {
        Idunno__WorkerState *st =
            res->status == 0 ? idunno__worker_state__unpack(NULL, res->len, res->body) : NULL;
        for (size_t i = 0; st && i < st->n_queries; i++) {
            const Idunno__WorkerQuery *wq = st->queries[i];
            struct cjob *cj = cjob_find(c, wq->job);
            struct job_rec *job = jobs_by_id(c->jobs, wq->job);
            if (!cj || !job || cq_find(c, wq->query) || !worker_known(c, sc->worker))
                continue;
            int finished = 0, all_done = wq->n_images > 0;
            for (size_t k = 0; k < 1024 && !finished; k++)
                finished = c->recent_done[k] == wq->query;
            for (size_t k = 0; k < wq->n_images && all_done; k++)
                all_done = wq->images[k] < job->n_images && job_image_done(job, wq->images[k]);
            if (finished || all_done)
                continue; /* its result is here already */
            struct cquery *q = cq_new(c, wq->job, wq->query, wq->n_images);
            if (!q)
                break;
            cjob_cover(cj, job->n_images);
            for (size_t k = 0; k < wq->n_images; k++)
                if (wq->images[k] < job->n_images) {
                    q->idx[q->n++] = wq->images[k];
                    set_claim(cj, wq->images[k], 1);
                }
            q->state = CQ_INFLIGHT;
            snprintf(q->worker, sizeof q->worker, "%s", sc->worker);
            q->dispatched_ms = wq->dispatched_ms;
            q->dispatched_mono = id_now_ms();
            if (fair_adopt(c->fair, wq->job, wq->query, sc->worker) == 0)
                c->stats.adopted++;
        }
        if (st)
            idunno__worker_state__free_unpacked(st, NULL);
        if (--c->adopt_pending == 0)
            finish_activation(c);
    }
    free(sc);
}

static uint64_t current_term(struct coord *c)
{
    struct ctl_view *v = malloc(sizeof *v);
    uint64_t term = 0;
    if (v) {
        ctl_view(c->ctl, v);
        term = v->term;
        free(v);
    }
    return term;
}

static void activate(struct coord *c)
{
    c->fair = fair_create();
    if (!c->fair)
        return;
    if (fair_set_spare(c->fair, COORD_SPARE) < 0)
        LOG_WARN("coord", "no spare slots (out of memory): a new job waits for a free slot");
    c->epoch++;
    c->term = current_term(c);
    c->qcounter = 0;
    parts_lead(c->parts, c->term);
    c->activating = 1;
    sync_workers(c);
    /* Jobs enter the dispatcher without cutting anything yet: the workers'
     * answers say which images are already running. */
    for (size_t i = 0; i < jobs_count(c->jobs); i++) {
        struct job_rec *job = jobs_at(c->jobs, i);
        if (job->stopped)
            continue;
        int rc;
        if (!cjob_add(c, job, &rc) && rc == ID_ENOMEM)
            break;
    }
    LOG_INFO("coord", "taking over in term %llu: asking %zu workers what they hold",
             (unsigned long long)c->term, c->n_workers);
    c->adopt_pending = 1; /* held while the calls go out */
    c->adopt_deadline = id_now_ms() + COORD_ADOPT_WAIT_MS;
    struct alive a;
    alive_load(c, &a);
    for (size_t i = 0; i < c->n_workers; i++) {
        const char *addr = alive_addr(&a, c->workers[i].name);
        struct state_call *sc = malloc(sizeof *sc);
        if (!addr || !sc) {
            free(sc);
            continue;
        }
        *sc = (struct state_call){c, c->epoch, ""};
        snprintf(sc->worker, sizeof sc->worker, "%s", c->workers[i].name);
        Idunno__Empty e = IDUNNO__EMPTY__INIT;
        if (net_call_pb(c->net, addr, IDUNNO__MSG_TYPE__MSG_JOB_WORKER_STATE_REQ, &e.base,
                        COORD_ADOPT_WAIT_MS, on_worker_state, sc) == 0)
            c->adopt_pending++;
        else
            free(sc);
    }
    if (--c->adopt_pending == 0)
        finish_activation(c);
}

static void on_leader_change(void *ud, const struct ctl_view *v)
{
    struct coord *c = ud;
    if (c->stopping)
        return;
    /* Leading again in a later term (deposed and re-elected in between):
     * start over, so nothing of the earlier term is proposed in this one. */
    if (v->serving && (c->active || c->activating) && v->term != c->term)
        deactivate(c);
    if (v->serving && !c->active && !c->activating)
        activate(c);
    else if (!v->serving)
        deactivate(c);
}

static void on_member_event(void *ud, const struct member_view *who, enum member_state old_state,
                            enum member_state new_state)
{
    (void)old_state;
    struct coord *c = ud;
    if (!c->active || c->stopping)
        return;
    if (new_state == MEMBER_FAILED || new_state == MEMBER_LEFT) {
        /* Only if no newer incarnation of that name is alive. */
        struct alive a;
        alive_load(c, &a);
        if (!alive_addr(&a, who->name)) {
            worker_drop(c, who->name, new_state == MEMBER_FAILED ? "failed" : "left");
            pump(c);
        }
    } else if (new_state == MEMBER_ALIVE) {
        worker_take(c, who->name);
        pump(c);
    }
}

/* ---- completions ------------------------------------------------------------------------------ */

static void batch_flush(struct coord *c);

static void on_batch_committed(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)result;
    (void)len;
    struct done_batch *b = ud;
    struct coord *c = b->c;
    for (size_t i = 0; i < b->n; i++) {
        struct done_wait *w = &b->w[i];
        if (status < 0) {
            /* The worker retries; if this node still leads, the images it
             * claimed are free to be cut again meanwhile (a late result still
             * counts once). */
            net_reply_error(w->req, status == ID_ENOTLEADER ? ID_ENOTLEADER : status,
                            id_strerror(status), NULL);
            struct cjob *cj = c->active ? cjob_find(c, w->msg->job) : NULL;
            for (size_t k = 0; cj && k < w->msg->n_results; k++) {
                set_claim(cj, w->msg->results[k]->image, 0);
                if (w->msg->results[k]->image < cj->cursor)
                    cj->cursor = w->msg->results[k]->image;
            }
        } else {
            net_reply(w->req, IDUNNO__MSG_TYPE__MSG_JOB_DONE_RESP, NULL, 0);
            c->stats.completed++;
        }
        idunno__query_done__free_unpacked(w->msg, NULL);
    }
    free(b->w);
    free(b);
    c->batches_proposed--;
    if (!c->stopping && c->n_batch && !uv_is_active((uv_handle_t *)&c->batch_timer))
        batch_flush(c);
    if (status < 0 && c->active) {
        sync_jobs(c);
        pump(c);
    }
}

/* Proposes the completions collected so far as one JOB_DONE command. */
static void batch_flush(struct coord *c)
{
    if (c->n_batch == 0)
        return;
    struct done_batch *b = calloc(1, sizeof *b);
    Idunno__QueryDone **msgs = calloc(c->n_batch, sizeof *msgs);
    struct done_wait *w = malloc(c->n_batch * sizeof *w);
    uint8_t *buf = NULL;
    int rc = b && msgs && w ? 0 : ID_ENOMEM;
    if (rc == 0) {
        for (size_t i = 0; i < c->n_batch; i++)
            msgs[i] = c->batch[i].msg;
        Idunno__QueryDoneBatch batch = IDUNNO__QUERY_DONE_BATCH__INIT;
        batch.n_done = c->n_batch;
        batch.done = msgs;
        size_t n = idunno__query_done_batch__get_packed_size(&batch);
        buf = malloc(n ? n : 1);
        rc = buf ? 0 : ID_ENOMEM;
        if (rc == 0) {
            n = idunno__query_done_batch__pack(&batch, buf);
            memcpy(w, c->batch, c->n_batch * sizeof *w);
            b->c = c;
            b->w = w;
            b->n = c->n_batch;
            rc = ctl_propose(c->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, buf, n,
                             on_batch_committed, b);
            if (rc == 0)
                c->batches_proposed++;
        }
    }
    free(buf);
    free(msgs);
    if (rc < 0) {
        for (size_t i = 0; i < c->n_batch; i++) {
            net_reply_error(c->batch[i].req, rc, id_strerror(rc), NULL);
            idunno__query_done__free_unpacked(c->batch[i].msg, NULL);
        }
        free(w);
        free(b);
    }
    c->n_batch = 0;
}

static void on_batch_timer(uv_timer_t *t)
{
    struct coord *c = t->data;
    if (c->batches_proposed < COORD_BATCHES_IN_FLIGHT)
        batch_flush(c);
    /* else the next commit flushes them */
}

/* A query of the job ran for run_us: its mean, and the burst that fits the
 * budget. */
static void job_run_time(struct coord *c, struct cjob *cj, uint32_t run_us)
{
    cj->run_us_avg = cj->run_us_avg > 0
                         ? cj->run_us_avg + COORD_RUN_AVG_WEIGHT * ((double)run_us - cj->run_us_avg)
                         : (double)run_us;
    double fit = COORD_BURST_BUDGET_US / cj->run_us_avg;
    unsigned burst = fit >= FAIR_BURST_MAX ? FAIR_BURST_MAX : fit >= 1 ? (unsigned)fit : 1;
    if (burst != cj->burst && fair_job_set_burst(c->fair, cj->id, burst) == 0) {
        uint64_t now = id_now_ms();
        if (now - cj->burst_logged_ms >= COORD_BURST_LOG_MS) {
            LOG_INFO("coord", "job %u: %.0f us of CPU per query, up to %u at once per worker",
                     cj->id, cj->run_us_avg, burst);
            cj->burst_logged_ms = now;
        }
        cj->burst = burst;
    }
}

/* ---- stopping a job whose model a worker found unusable ---------------------------------------- */

struct stop_call {
    struct coord *c;
    uint32_t job;
};

static void on_model_stop_committed(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)result;
    (void)len;
    struct stop_call *sc = ud;
    if (status < 0)
        LOG_WARN("coord", "cannot stop job %u: %s", sc->job, id_strerror(status));
    else if (!sc->c->stopping && sc->c->active) {
        sync_jobs(sc->c);
        pump(sc->c);
    }
    free(sc);
}

/* A worker's QueryDone.stop_job: its model crashed the worker's inference
 * process again and again (docs/inference.md), so the job is stopped for the
 * whole cluster, with the reason in `jobs`. Proposed once per job here; a
 * repeat (another worker, a new coordinator) finds it stopped already. */
static void stop_unusable_model(struct coord *c, const Idunno__QueryDone *m)
{
    struct job_rec *job = jobs_by_id(c->jobs, m->job);
    struct cjob *cj = job && !job->stopped ? cjob_find(c, job->id) : NULL;
    if (!cj || cj->stop_proposed)
        return;
    Idunno__JobLaunch stop = IDUNNO__JOB_LAUNCH__INIT;
    stop.model = job->model;
    stop.error = m->stop_job;
    uint8_t buf[512];
    size_t n = idunno__job_launch__get_packed_size(&stop);
    struct stop_call *sc = malloc(sizeof *sc);
    if (!sc || n > sizeof buf) {
        free(sc);
        return;
    }
    idunno__job_launch__pack(&stop, buf);
    *sc = (struct stop_call){c, job->id};
    LOG_ERROR("coord", "job %u (%s) stopped: worker %s reports: %s", job->id, job->model, m->worker,
              m->stop_job);
    if (ctl_propose(c->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, buf, n, on_model_stop_committed,
                    sc) < 0)
        free(sc);
    else
        cj->stop_proposed = 1;
}

/* JOB_DONE from a worker (on the leader). */
static void lead_done(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct coord *c = ud;
    Idunno__QueryDone *m = idunno__query_done__unpack(NULL, len, body);
    if (!m) {
        net_reply_error(req, ID_EPROTO, "bad QueryDone", NULL);
        return;
    }
    if (c->active) {
        struct cquery *q = cq_find(c, m->query);
        if (q && q->job == m->job) {
            /* A requeued query still in the dispatcher's queue is dropped when
             * it comes up (pump finds no record of it). */
            if (q->state == CQ_INFLIGHT)
                fair_complete(c->fair, q->job, q->id);
            struct cjob *cj = cjob_find(c, q->job);
            if (cj && cj->first_queued_us && cj->first_query == q->id) {
                cj->first_result_ms = (double)(id_now_us() - cj->first_queued_us) / 1000.0;
                cj->first_start_ms = cj->first_dispatch_ms + (double)m->wait_ms;
                cj->first_queued_us = 0;
            }
            if (cj && m->run_us)
                job_run_time(c, cj, m->run_us);
            cq_free(c, q, 0); /* its images stay claimed: they are done once committed */
        }
        if (m->worker[0])
            fair_worker_set_model(c->fair, m->worker, m->job, 1);
        if (m->stop_job[0])
            stop_unusable_model(c, m);
    }
    c->recent_done[c->recent_next++ % 1024] = m->query;
    if (c->n_batch == COORD_BATCH_MAX)
        batch_flush(c);
    c->batch[c->n_batch].msg = m;
    c->batch[c->n_batch].req = req;
    c->n_batch++;
    if (c->n_batch == 1)
        uv_timer_start(&c->batch_timer, on_batch_timer, 1, 0);
    pump(c);
}

/* ---- results to SDFS (the decisions: sched/parts.h) ------------------------------------------ */

/* A write of a part, from its put to its JOB_FLUSHED's outcome. */
struct part_call {
    struct coord *c;
    struct parts_action a; /* the WRITE, with the results the part holds */
    uint8_t sha256[SHA256_LEN];
};

static void on_part_deleted(void *ud, const struct net_result *res)
{
    if (res->status < 0 && res->status != ID_ENOTFOUND)
        LOG_WARN("coord", "cannot delete %s: %s (the next sweep tries again)", (char *)ud,
                 id_strerror(res->status));
    free(ud);
}

/* Deletes a result file that no commit names (parts.h), through this node's
 * SDFS coordinator. */
static void part_delete(struct coord *c, const char *file)
{
    Idunno__SdfsLookup m = IDUNNO__SDFS_LOOKUP__INIT;
    m.name = strdup(file);
    LOG_INFO("coord", "deleting %s: no committed result part", file);
    if (m.name && net_call_pb(c->net, c->addr, IDUNNO__MSG_TYPE__MSG_SDFS_DELETE_REQ, &m.base,
                              COORD_RUN_TIMEOUT_MS, on_part_deleted, m.name) < 0)
        free(m.name);
}

static void on_part_committed(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)result;
    (void)len;
    struct part_call *pc = ud;
    struct parts_action del;
    LOG_INFO("coord", "job %u: part %llu (%u results) as %s: %s", pc->a.job,
             (unsigned long long)pc->a.part, pc->a.results, pc->a.file,
             status == 0 ? "committed" : id_strerror(status));
    if (parts_applied(pc->c->parts, pc->a.write, status, &del))
        part_delete(pc->c, del.file);
    free(pc);
}

static void on_part_stored(void *ud, int status)
{
    struct part_call *pc = ud;
    struct coord *c = pc->c;
    if (status < 0)
        LOG_WARN("coord", "cannot store %s: %s (written again)", pc->a.file, id_strerror(status));
    /* A JOB_FLUSHED naming term T is only ever appended in term T (parts.h):
     * the core checks the term, and proposing follows at once on the loop. */
    uint64_t term = !c->stopping && ctl_is_serving(c->ctl) ? current_term(c) : 0;
    struct parts_action next;
    if (!parts_stored(c->parts, pc->a.write, status, pc->a.results, term, &next)) {
        free(pc);
    } else if (next.op == PARTS_DELETE) {
        part_delete(c, next.file);
        free(pc);
    } else {
        Idunno__JobFlushed m = IDUNNO__JOB_FLUSHED__INIT;
        m.job = pc->a.job;
        m.part = pc->a.part;
        m.results = pc->a.results;
        m.file = pc->a.file;
        m.sha256 = (ProtobufCBinaryData){sizeof pc->sha256, pc->sha256};
        uint8_t buf[PARTS_FILE_MAX + 128];
        size_t n = idunno__job_flushed__pack(&m, buf);
        if (ctl_propose(c->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_FLUSHED, buf, n,
                        on_part_committed, pc) < 0)
            on_part_committed(pc, ID_ECANCELED, NULL, 0); /* never appended */
    }
}

/* Writes a job's oldest pending results, one JSON line each, as a->file. */
static void part_write(struct coord *c, const struct parts_action *a)
{
    struct job_rec *job = jobs_by_id(c->jobs, a->job);
    struct part_call *pc = calloc(1, sizeof *pc);
    struct strbuf text = STRBUF_INIT;
    size_t n = 0;
    int rc = job && pc ? jobs_render_results(job, a->results, COORD_PART_BYTES, &text, &n)
                       : ID_ENOMEM;
    if (rc == 0) {
        *pc = (struct part_call){c, *a, {0}};
        pc->a.results = (uint32_t)n;
        struct sha256 h;
        sha256_init(&h);
        sha256_update(&h, strbuf_str(&text), text.len);
        sha256_final(&h, pc->sha256);
        rc = sdfs_put_bytes(c->sdfs, a->file, (const uint8_t *)strbuf_str(&text), text.len,
                            on_part_stored, pc);
    }
    strbuf_free(&text);
    if (rc < 0) {
        struct parts_action none;
        parts_stored(c->parts, a->write, ID_ECANCELED, 0, 0, &none); /* nothing was written */
        free(pc);
    }
}

static void flush_results(struct coord *c)
{
    uint64_t now = id_now_ms();
    struct parts_action acts[16];
    size_t k = parts_tick(c->parts, now, c->jobs, acts, sizeof acts / sizeof acts[0]);
    for (size_t i = 0; i < k; i++)
        part_write(c, &acts[i]);
    /* What no commit can ever name: a deposed coordinator's writes, and this
     * one's rejected or abandoned ones. */
    char garbage[COORD_SWEEP_MAX][PARTS_FILE_MAX];
    k = parts_sweep(c->parts, now, c->catalog, c->jobs, garbage, COORD_SWEEP_MAX);
    for (size_t i = 0; i < k; i++)
        part_delete(c, garbage[i]);
}

/* ---- the tick --------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    struct coord *c = t->data;
    if (c->stopping)
        return;
    int serving = ctl_is_serving(c->ctl);
    if (serving && !c->active && !c->activating)
        activate(c);
    else if (!serving)
        deactivate(c);
    if (c->activating && id_now_ms() >= c->adopt_deadline) {
        LOG_WARN("coord", "%u workers did not say what they hold in time: going on without",
                 c->adopt_pending);
        c->adopt_pending = 0;
        finish_activation(c);
    }
    if (!c->active)
        return;
    sync_workers(c);
    sync_jobs(c);
    uint64_t now = id_now_ms();
    for (struct cquery *q = c->queries; q; q = q->next)
        if (q->state == CQ_INFLIGHT && now - q->dispatched_mono > COORD_QUERY_TIMEOUT_MS) {
            LOG_WARN("coord", "query %llu on %s timed out: requeued", (unsigned long long)q->id,
                     q->worker);
            requeue(c, q);
        }
    flush_results(c);
    pump(c);
}

/* ---- requests served on the leader ------------------------------------------------------------ */

/* Each is a ctl_op of the leader-service layer (ctl/service.h): it decodes
 * the request, hands it on if leadership moves, and answers errors. */

static void fill_stats(Idunno__JobStats *out, const struct qstats_summary *s)
{
    idunno__job_stats__init(out);
    out->count = s->count;
    out->mean_ms = s->mean_ms;
    out->stddev_ms = s->stddev_ms;
    out->median_ms = s->median_ms;
    out->p90_ms = s->p90_ms;
    out->p95_ms = s->p95_ms;
    out->p99_ms = s->p99_ms;
}

/* Everything a JobInfo holds, with storage for its pointers. */
struct job_view {
    Idunno__JobInfo info;
    Idunno__JobStats all, window;
    struct qstats_share shares[64];
    Idunno__WorkerShare share_rows[64], *share_ptrs[64];
    char workers[64][64];
    char *worker_ptrs[64];
};

static void job_view_fill(struct coord *c, const struct job_rec *job, uint64_t now,
                          struct job_view *v)
{
    Idunno__JobInfo *info = &v->info;
    idunno__job_info__init(info);
    info->id = job->id;
    info->model = (char *)job->model;
    info->batch = job->batch;
    info->weight = job->weight;
    info->state = job->stopped ? "stopped" : "running";
    info->error = (char *)job->error;
    info->images = job->n_images;
    info->images_done = job->n_done;
    info->queries_done = job->queries_done;
    info->rate = qstats_rate(job->stats, now);
    struct qstats_summary s;
    qstats_all(job->stats, &s);
    fill_stats(&v->all, &s);
    qstats_window(job->stats, now, &s);
    fill_stats(&v->window, &s);
    info->all = &v->all;
    info->window = &v->window;
    size_t ns = qstats_shares(job->stats, now, v->shares, 64);
    if (ns > 64)
        ns = 64;
    for (size_t i = 0; i < ns; i++) {
        idunno__worker_share__init(&v->share_rows[i]);
        v->share_rows[i].worker = v->shares[i].worker;
        v->share_rows[i].count = v->shares[i].count;
        v->share_rows[i].fraction = v->shares[i].fraction;
        v->share_ptrs[i] = &v->share_rows[i];
    }
    info->n_shares = ns;
    info->shares = v->share_ptrs;
    info->created_ms = job->created_ms;
    info->duplicates = job->duplicates;
    info->parts = job->parts;
    info->pending_results = job->n_pending;
    info->first_dispatch_ms = -1;
    info->first_result_ms = -1;
    info->first_start_ms = -1;
    struct cjob *cj = c->active ? cjob_find(c, job->id) : NULL;
    if (cj) {
        info->first_dispatch_ms = cj->first_dispatch_ms;
        info->first_result_ms = cj->first_result_ms;
        info->first_start_ms = cj->first_start_ms;
    }
    if (c->active && !job->stopped) {
        info->queued = fair_queued(c->fair, job->id);
        info->dispatched = fair_dispatched(c->fair, job->id);
        info->inflight = fair_inflight(c->fair, job->id);
        size_t nw = 0;
        for (struct cquery *q = c->queries; q && nw < 64; q = q->next) {
            if (q->job != job->id || q->state != CQ_INFLIGHT)
                continue;
            int seen = 0;
            for (size_t k = 0; k < nw && !seen; k++)
                seen = strcmp(v->workers[k], q->worker) == 0;
            if (!seen) {
                snprintf(v->workers[nw], 64, "%s", q->worker);
                v->worker_ptrs[nw] = v->workers[nw];
                nw++;
            }
        }
        info->n_workers = nw;
        info->workers = v->worker_ptrs;
    }
}

static void reply_job(struct ctl_op *op, uint16_t type, const char *model)
{
    struct coord *c = op->ud;
    struct job_rec *job = jobs_of_model(c->jobs, model);
    if (!job) {
        net_reply_errorf(op->req, ID_ENOTFOUND, "no job for model '%s'", model);
        return;
    }
    struct job_view *v = calloc(1, sizeof *v);
    if (!v) {
        net_reply_error(op->req, ID_ENOMEM, NULL, NULL);
        return;
    }
    job_view_fill(c, job, id_wall_ms(), v);
    net_reply_pb(op->req, type, &v->info.base);
    free(v);
}

/* -- commands that change jobs: proposed, answered with the job -- */

static uint16_t resp_type_of(uint16_t req_type) { return (uint16_t)(req_type + 1); }

static const char *command_error(uint16_t type, int status, const char *model)
{
    static char msg[300];
    switch (status) {
    case ID_ENOTFOUND:
        if (type == IDUNNO__MSG_TYPE__MSG_JOB_LAUNCH_REQ)
            snprintf(msg, sizeof msg, "no model '%s': register it first (idunno train %s)", model,
                     model);
        else
            snprintf(msg, sizeof msg, "no running job for model '%s' (idunno launch %s BATCH)",
                     model, model);
        return msg;
    case ID_EEXIST:
        snprintf(msg, sizeof msg, "a job for model '%s' is already running (stop it first)", model);
        return msg;
    case ID_EINVAL:
        snprintf(msg, sizeof msg, "invalid argument: model names use [A-Za-z0-9_.-], batch sizes "
                                  "1..%d, weights 1e-6..1e6", JOBS_MAX_BATCH);
        return msg;
    default: return NULL;
    }
}

/* The model a job command names (its request stays decoded in op->msg). */
static const char *command_model(const struct ctl_op *op)
{
    if (op->type == IDUNNO__MSG_TYPE__MSG_JOB_INFERENCE_REQ)
        return ((const Idunno__JobInference *)op->msg)->model;
    return ((const Idunno__JobLaunch *)op->msg)->model;
}

static const char *job_command_why(struct ctl_op *op, int status)
{
    return command_error(op->type, status, command_model(op));
}

static void on_job_command(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    struct coord *c = op->ud;
    struct job_rec *job = jobs_of_model(c->jobs, command_model(op));
    struct cjob *cj = c->active && job ? cjob_find(c, job->id) : NULL;
    if (cj && op->type == IDUNNO__MSG_TYPE__MSG_JOB_INFERENCE_REQ &&
        fair_queued(c->fair, cj->id) == 0 && fair_inflight(c->fair, cj->id) == 0)
        cj->idle_queued_us = id_now_us();
    if (c->active) {
        sync_jobs(c);
        pump(c);
    }
    reply_job(op, resp_type_of(op->type), command_model(op));
}

static void lead_launch(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, op->body, op->len);
}

static void lead_set_batch(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_BATCH, op->body, op->len);
}

static void lead_stop(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, op->body, op->len);
}

/* `inference MODEL DATASET`: the data set is every SDFS file under the prefix
 * DATASET/ (or DATASET itself if it names a file), resolved here so that the
 * command carries the exact list. */
static void lead_inference(struct ctl_op *op)
{
    struct coord *c = op->ud;
    const Idunno__JobInference *m = op->msg;
    char prefix[SDFS_NAME_MAX + 2];
    size_t dl = strlen(m->dataset);
    snprintf(prefix, sizeof prefix, "%s%s", m->dataset, dl && m->dataset[dl - 1] == '/' ? "" : "/");
    size_t plen = strlen(prefix), total = catalog_count(c->catalog), n = 0;
    char **names = calloc(total + 1, sizeof *names);
    if (!names) {
        ctl_op_fail(op, ID_ENOMEM, NULL);
        return;
    }
    for (size_t i = catalog_lower_bound(c->catalog, prefix); i < total; i++) {
        const struct sdfs_file *f = catalog_at(c->catalog, i);
        if (strncmp(f->name, prefix, plen) != 0)
            break;
        names[n++] = f->name;
    }
    if (n == 0 && catalog_find(c->catalog, m->dataset))
        names[n++] = m->dataset;
    if (n == 0) {
        net_reply_errorf(op->req, ID_ENOTFOUND, "no SDFS files under '%s' (store a data set with "
                         "idunno put-dir DIR %s)", prefix, m->dataset);
    } else {
        Idunno__JobInference full = IDUNNO__JOB_INFERENCE__INIT;
        full.model = m->model;
        full.dataset = m->dataset;
        full.n_images = n;
        full.images = names;
        size_t blen = idunno__job_inference__get_packed_size(&full);
        uint8_t *buf = malloc(blen ? blen : 1);
        if (!buf) {
            ctl_op_fail(op, ID_ENOMEM, NULL);
        } else {
            blen = idunno__job_inference__pack(&full, buf);
            if (blen > SM_MAX_ENTRY - 64)
                ctl_op_fail(op, ID_ETOOBIG, "data set too large for one command: split it");
            else
                ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE, buf, blen);
        }
        free(buf);
    }
    free(names);
}

/* -- models -- */

static const char *model_add_why(struct ctl_op *op, int status)
{
    (void)op;
    return status == ID_EINVAL ? "invalid model: name, file, input size or normalisation out of "
                                 "range"
                               : NULL;
}

static void on_model_added(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    struct coord *c = op->ud;
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_JOB_MODEL_ADD_RESP, result, len);
    /* Workers preload it now, so the first query does not wait for it. */
    const struct model_rec *m = jobs_model(c->jobs, ((Idunno__ModelInfo *)op->msg)->name);
    if (m) {
        struct alive a;
        alive_load(c, &a);
        Idunno__ModelInfo mi;
        float mean[3], std[3];
        char *src[SDFS_REPLICAS];
        model_msg(c, m, &a, &mi, mean, std, src);
        for (size_t i = 0; i < a.n; i++)
            net_call_pb(c->net, a.v[i].addr, IDUNNO__MSG_TYPE__MSG_JOB_PRELOAD_REQ, &mi.base,
                        COORD_RUN_TIMEOUT_MS, NULL, NULL);
        LOG_INFO("coord", "model %s registered (%s, blob %s); %zu workers preload it", m->name,
                 m->file, m->blob, a.n);
    }
}

static void lead_model_add(struct ctl_op *op)
{
    struct coord *c = op->ud;
    const Idunno__ModelInfo *m = op->msg;
    /* The file must be in SDFS as that very version. */
    const struct sdfs_version *v = sdfs_name_ok(m->file) && sdfs_blob_ok(m->blob)
                                       ? catalog_find_blob(c->catalog, m->file, m->blob)
                                       : NULL;
    if (!v)
        net_reply_errorf(op->req, ID_ENOTFOUND, "model file %s (blob %s) is not in SDFS", m->file,
                         m->blob);
    else
        ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_MODEL_ADD, op->body, op->len);
}

/* -- reads (after a read barrier: they see every acknowledged command) -- */

static void read_models(struct ctl_op *op)
{
    struct jobs *j = ((struct coord *)op->ud)->jobs;
    size_t n = jobs_model_count(j);
    Idunno__ModelInfo *rows = calloc(n + 1, sizeof *rows);
    Idunno__ModelInfo **ptrs = calloc(n + 1, sizeof *ptrs);
    float(*mean)[3] = calloc(n + 1, sizeof *mean), (*std)[3] = calloc(n + 1, sizeof *std);
    if (!rows || !ptrs || !mean || !std) {
        net_reply_error(op->req, ID_ENOMEM, NULL, NULL);
    } else {
        for (size_t i = 0; i < n; i++) {
            jobs_model_to_pb(jobs_model_at(j, i), &rows[i], mean[i], std[i]);
            ptrs[i] = &rows[i];
        }
        Idunno__ModelList l = IDUNNO__MODEL_LIST__INIT;
        l.n_models = n;
        l.models = ptrs;
        net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_JOB_MODELS_RESP, &l.base);
    }
    free(rows);
    free(ptrs);
    free(mean);
    free(std);
}

static void read_jobs(struct ctl_op *op)
{
    struct coord *c = op->ud;
    const Idunno__JobQuery *q = op->msg;
    size_t n = jobs_count(c->jobs);
    struct job_view *views = calloc(n + 1, sizeof *views);
    Idunno__JobInfo **ptrs = calloc(n + 1, sizeof *ptrs);
    if (!views || !ptrs) {
        net_reply_error(op->req, ID_ENOMEM, NULL, NULL);
    } else {
        uint64_t now = id_wall_ms();
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            struct job_rec *job = jobs_at(c->jobs, i);
            if (q->model[0] && strcmp(q->model, job->model) != 0)
                continue;
            job_view_fill(c, job, now, &views[k]);
            ptrs[k] = &views[k].info;
            k++;
        }
        if (q->model[0] && k == 0) {
            net_reply_errorf(op->req, ID_ENOTFOUND, "no job for model '%s' (idunno launch %s BATCH)",
                             q->model, q->model);
        } else {
            Idunno__JobList l = IDUNNO__JOB_LIST__INIT;
            l.n_jobs = k;
            l.jobs = ptrs;
            l.now_ms = now;
            net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_JOB_LIST_RESP, &l.base);
        }
    }
    free(views);
    free(ptrs);
}

static void read_results(struct ctl_op *op)
{
    struct coord *c = op->ud;
    const Idunno__JobQuery *q = op->msg;
    struct job_rec *job = jobs_of_model(c->jobs, q->model);
    if (!job) {
        net_reply_errorf(op->req, ID_ENOTFOUND, "no job for model '%s'", q->model);
        return;
    }
    size_t np = job->n_pending < q->max_results ? job->n_pending : q->max_results;
    struct job_view *v = calloc(1, sizeof *v);
    /* Exactly the committed parts: each names the one write of its file. */
    char **part_ptrs = calloc(job->parts + 1, sizeof *part_ptrs);
    Idunno__JobPart *parts = calloc(job->parts + 1, sizeof *parts);
    Idunno__JobPart **part_info = calloc(job->parts + 1, sizeof *part_info);
    Idunno__JobResult *rows = calloc(np + 1, sizeof *rows);
    Idunno__JobResult **rp = calloc(np + 1, sizeof *rp);
    uint32_t(*cls)[JOBS_TOPK] = calloc(np + 1, sizeof *cls);
    float(*probs)[JOBS_TOPK] = calloc(np + 1, sizeof *probs);
    if (!v || !parts || !part_ptrs || !part_info || !rows || !rp || !cls || !probs) {
        net_reply_error(op->req, ID_ENOMEM, NULL, NULL);
    } else {
        job_view_fill(c, job, id_wall_ms(), v);
        for (uint64_t p = 0; p < job->parts; p++) {
            jobs_part_to_pb(jobs_part(job, p + 1), &parts[p]);
            part_info[p] = &parts[p];
            part_ptrs[p] = parts[p].file;
        }
        for (size_t i = 0; i < np; i++) {
            const struct pending_result *pr = &job->pending[i];
            idunno__job_result__init(&rows[i]);
            rows[i].image = pr->image < job->n_images ? job->images[pr->image] : "";
            if (pr->error) {
                rows[i].error = pr->error;
            } else {
                for (int k = 0; k < JOBS_TOPK; k++) {
                    cls[i][k] = pr->classes[k];
                    probs[i][k] = pr->probs[k];
                }
                rows[i].n_classes = rows[i].n_probs = JOBS_TOPK;
                rows[i].classes = cls[i];
                rows[i].probs = probs[i];
            }
            rp[i] = &rows[i];
        }
        Idunno__JobResults r = IDUNNO__JOB_RESULTS__INIT;
        r.job = &v->info;
        r.n_parts = job->parts;
        r.parts = part_ptrs;
        r.n_part_info = job->parts;
        r.part_info = part_info;
        r.n_pending = np;
        r.pending = rp;
        net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_JOB_RESULTS_RESP, &r.base);
    }
    free(v);
    free(parts);
    free(part_ptrs);
    free(part_info);
    free(rows);
    free(rp);
    free(cls);
    free(probs);
}

static void on_read_ready(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    switch (op->type) {
    case IDUNNO__MSG_TYPE__MSG_JOB_MODELS_REQ: read_models(op); break;
    case IDUNNO__MSG_TYPE__MSG_JOB_LIST_REQ: read_jobs(op); break;
    case IDUNNO__MSG_TYPE__MSG_JOB_RESULTS_REQ: read_results(op); break;
    default: net_reply_error(op->req, ID_EUNKNOWNTYPE, NULL, NULL); break;
    }
}

#define JOB_OP(t, d, start, done, why) {IDUNNO__MSG_TYPE__MSG_JOB_##t##_REQ, d, start, done, why, 0, NULL}

static const struct ctl_svc_op coord_ops[] = {
    JOB_OP(MODEL_ADD, &idunno__model_info__descriptor, lead_model_add, on_model_added,
           model_add_why),
    JOB_OP(MODELS, NULL, ctl_op_read, on_read_ready, NULL),
    JOB_OP(LAUNCH, &idunno__job_launch__descriptor, lead_launch, on_job_command, job_command_why),
    JOB_OP(INFERENCE, &idunno__job_inference__descriptor, lead_inference, on_job_command,
           job_command_why),
    JOB_OP(SET_BATCH, &idunno__job_launch__descriptor, lead_set_batch, on_job_command,
           job_command_why),
    JOB_OP(STOP, &idunno__job_launch__descriptor, lead_stop, on_job_command, job_command_why),
    JOB_OP(LIST, &idunno__job_query__descriptor, ctl_op_read, on_read_ready, NULL),
    JOB_OP(RESULTS, &idunno__job_query__descriptor, ctl_op_read, on_read_ready, NULL),
    /* Kept by the batch until its JOB_DONE command commits: not an op. */
    {IDUNNO__MSG_TYPE__MSG_JOB_DONE_REQ, NULL, NULL, NULL, NULL, 0, lead_done},
};

/* ---- life cycle ----------------------------------------------------------------------------- */

int coord_create(const struct coord_config *cfg, struct coord **out, char *errmsg, size_t len)
{
    struct coord *c = calloc(1, sizeof *c);
    if (!c)
        return ID_ENOMEM;
    c->loop = cfg->loop;
    c->net = cfg->net;
    c->ctl = cfg->ctl;
    c->member = cfg->member;
    c->jobs = cfg->jobs;
    c->catalog = cfg->catalog;
    c->sdfs = cfg->sdfs;
    c->parts = parts_create(&(struct parts_config){COORD_FLUSH_MS, COORD_FLUSH_AT, COORD_PART_MAX,
                                                   COORD_SWEEP_MS});
    if (!c->parts) {
        free(c);
        return ID_ENOMEM;
    }
    snprintf(c->name, sizeof c->name, "%s", cfg->name);
    snprintf(c->addr, sizeof c->addr, "%s", cfg->addr);
    int rc = ctl_svc_create(cfg->fwd, c->ctl, c, &c->svc);
    if (rc == 0)
        rc = ctl_svc_register(c->svc, coord_ops, sizeof coord_ops / sizeof coord_ops[0]);
    if (rc == 0)
        rc = ctl_on_leader_change(c->ctl, on_leader_change, c);
    if (rc == 0)
        rc = member_subscribe(c->member, on_member_event, c);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot register job requests: %s", id_strerror(rc));
        ctl_svc_free(c->svc);
        parts_destroy(c->parts);
        free(c);
        return rc;
    }
    uv_timer_init(c->loop, &c->tick);
    c->tick.data = c;
    uv_timer_start(&c->tick, on_tick, COORD_TICK_MS, COORD_TICK_MS);
    uv_timer_init(c->loop, &c->batch_timer);
    c->batch_timer.data = c;
    *out = c;
    return 0;
}

void coord_stop(struct coord *c)
{
    if (!c)
        return;
    c->stopping = 1;
    ctl_svc_stop(c->svc);
    for (size_t i = 0; i < c->n_batch; i++) {
        net_reply_error(c->batch[i].req, ID_ESHUTDOWN, "node shutting down", NULL);
        idunno__query_done__free_unpacked(c->batch[i].msg, NULL);
    }
    c->n_batch = 0;
    uv_close((uv_handle_t *)&c->tick, NULL);
    uv_close((uv_handle_t *)&c->batch_timer, NULL);
}

void coord_free(struct coord *c)
{
    if (!c)
        return;
    deactivate(c);
    ctl_svc_free(c->svc);
    parts_destroy(c->parts);
    free(c);
}

void coord_get_stats(struct coord *c, struct coord_stats *out)
{
    *out = c->stats;
    out->active = c->active;
}
