/* coord.c — the coordinator's IDunno part (see coord.h): the wiring around
 * the dispatch core (dispatch.h) and the result-part core (parts.h). It feeds
 * them what happens (leadership, membership, answers of workers, commits,
 * the tick with the clocks) and carries out what they decide: RUN and
 * WORKER_STATE requests, JOB_DONE, JOB_STOP and JOB_FLUSHED proposals, SDFS
 * puts and deletes. The read-only requests are in coord_views.c.
 *
 * Threading: loop thread only. */
#include "sched/coord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "ctl/ctl.h"
#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "sched/coord_int.h"
#include "sched/dispatch.h"
#include "sched/jobs.h"
#include "sched/parts.h"
#include "sdfs/catalog.h"

/* Group commit: completions are proposed as one JOB_DONE command 1 ms after
 * the first arrives, with at most this many commands uncommitted; beyond, they
 * gather until one commits. Under load the batches grow to cover the commit
 * time, so the Raft log (and its fsyncs) grows with batches, not queries. */
#define COORD_BATCHES_IN_FLIGHT 2
/* Timed-out queries logged per tick at most (all are requeued). */
#define COORD_TIMEOUT_LOG_MAX 64

/* ---- live members ----------------------------------------------------------------------------- */

void coord_alive_load(struct coord *c, struct coord_alive *a)
{
    a->n = member_alive(c->member, a->v, COORD_MAX_ALIVE);
}

const char *coord_alive_addr(const struct coord_alive *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].name, name) == 0)
            return a->v[i].addr;
    return NULL;
}

static int is_active(const struct coord *c)
{
    return dispatch_phase(c->d) == DISPATCH_ACTIVE;
}

/* ---- dispatching -------------------------------------------------------------------------------- */

static void pump(struct coord *c);

void coord_pump(struct coord *c)
{
    pump(c);
}
static void load_models(struct coord *c, int now_anyway);

struct run_call {
    struct coord *c;
    uint64_t epoch;
    uint64_t query;
    char worker[64];
};

/* A RUN refused or never acknowledged: the core requeues the query if it is
 * still this dispatch's (the epoch guards against an earlier term's call). */
static void on_run_ack(void *ud, const struct net_result *res)
{
    struct run_call *rc = ud;
    struct coord *c = rc->c;
    struct dispatch_bench b;
    if (res->status < 0 && c->epoch == rc->epoch && !c->stopping &&
        dispatch_run_failed(c->d, rc->query, rc->worker, res->status, id_now_us(), &b)) {
        LOG_WARN("coord", "dispatch of query %llu to %s failed (%s): requeued",
                 (unsigned long long)rc->query, rc->worker,
                 res->errmsg ? res->errmsg : id_strerror(res->status));
        c->stats.run_failures++;
        if (b.unplugged && (res->status == ID_ECONNREFUSED || res->status == ID_ECLOSED))
            LOG_INFO("coord",
                     "worker %s unreachable: %zu queries requeued, out of the "
                     "dispatcher for %llu ms",
                     rc->worker, b.requeued, (unsigned long long)b.ms);
        pump(c);
    }
    free(rc);
}

int coord_model_msg(struct coord *c, const struct model_rec *m, const struct coord_alive *a,
                    Idunno__ModelInfo *out, float *mean, float *std, char **sources)
{
    jobs_model_to_pb(m, out, mean, std);
    const struct sdfs_file *f = catalog_find(c->catalog, m->file);
    const struct sdfs_version *v = f ? catalog_find_blob(c->catalog, m->file, m->blob) : NULL;
    size_t n = 0;
    for (size_t r = 0; v && r < v->n_replicas; r++) {
        const char *addr = coord_alive_addr(a, v->replicas[r]);
        if (addr)
            sources[n++] = (char *)addr;
    }
    out->n_sources = n;
    out->sources = sources;
    return v ? 0 : ID_ENOTFOUND;
}

/* Sends RUN for a query the core put in flight; what cannot be sent goes
 * back to its queue. */
static void send_run(struct coord *c, const struct dispatch_run *q, const struct coord_alive *a)
{
    struct job_rec *job = jobs_by_id(c->jobs, q->job);
    /* The version the job is pinned to now: a re-pin reaches every query
     * sent after it (requeued ones too), while those already sent finish on
     * the version their RUN named. */
    const struct model_rec *m = job ? jobs_model_version(c->jobs, job->model, job->version) : NULL;
    const char *addr = coord_alive_addr(a, q->worker);
    if (!job || !m || !addr) {
        dispatch_requeue(c->d, q->query);
        return;
    }
    Idunno__ModelInfo mi;
    float mean[3], std[3];
    char *msrc[SDFS_REPLICAS];
    coord_model_msg(c, m, a, &mi, mean, std, msrc);
    Idunno__QueryImage rows[JOBS_MAX_BATCH], *ptrs[JOBS_MAX_BATCH];
    char *src[JOBS_MAX_BATCH][SDFS_REPLICAS];
    size_t n = q->n < JOBS_MAX_BATCH ? q->n : JOBS_MAX_BATCH;
    for (size_t i = 0; i < n; i++) {
        Idunno__QueryImage *im = &rows[i];
        idunno__query_image__init(im);
        im->index = q->images[i];
        im->name = job->images[q->images[i]];
        const struct sdfs_file *f = catalog_find(c->catalog, im->name);
        if (f && f->n_versions) {
            const struct sdfs_version *v = &f->versions[f->n_versions - 1];
            im->blob = (char *)v->blob;
            im->size = v->size;
            im->sha256.data = (uint8_t *)v->sha256;
            im->sha256.len = 32;
            for (size_t r = 0; r < v->n_replicas; r++) {
                const char *ra = coord_alive_addr(a, v->replicas[r]);
                if (ra)
                    src[i][im->n_sources++] = (char *)ra;
            }
            im->sources = src[i];
        }
        ptrs[i] = im;
    }
    Idunno__QueryRun run = IDUNNO__QUERY_RUN__INIT;
    run.job = q->job;
    run.query = q->query;
    run.model = &mi;
    run.n_images = n;
    run.images = ptrs;
    run.dispatched_ms = id_wall_ms();
    run.coordinator = c->addr;
    struct run_call *rc = malloc(sizeof *rc);
    if (!rc) {
        dispatch_requeue(c->d, q->query);
        return;
    }
    *rc = (struct run_call){c, c->epoch, q->query, ""};
    snprintf(rc->worker, sizeof rc->worker, "%s", q->worker);
    if (net_call_pb(c->net, addr, IDUNNO__MSG_TYPE__MSG_JOB_RUN_REQ, &run.base,
                    COORD_RUN_TIMEOUT_MS, on_run_ack, rc) < 0) {
        free(rc);
        dispatch_requeue(c->d, q->query);
    }
}

static void on_hold_timer(uv_timer_t *t)
{
    struct coord *c = t->data;
    pump(c);
}

/* An online job's requests held for its queue delay (dispatch.h) are
 * dispatched when the hold ends, even if nothing else happens by then. The
 * loop's timers count whole milliseconds: the wait is rounded up, from the
 * loop's clock brought up to date first, so a hold ends up to about a
 * millisecond late when no other event comes first (a timer that fires a
 * little early is only armed again for the rest). */
static void arm_hold_timer(struct coord *c)
{
    uint64_t until = dispatch_online_hold_until(c->d);
    if (!until) {
        uv_timer_stop(&c->hold_timer);
        return;
    }
    uv_update_time(c->loop);
    uint64_t now = id_now_us();
    uint64_t ms = until > now ? (until - now + 999) / 1000 : 0;
    uv_timer_start(&c->hold_timer, on_hold_timer, ms, 0);
}

/* Dispatches while the dispatcher has a query and a free slot. The guard
 * bounds a loop in which every RUN fails at once (each failure requeues the
 * query, which the dispatcher may pick again). */
static void pump(struct coord *c)
{
    if (c->stopping)
        return;
    struct coord_alive a;
    int loaded = 0;
    struct dispatch_run q;
    unsigned guard = 0;
    while (guard++ < 10000 && dispatch_next(c->d, c->jobs, id_now_us(), &q)) {
        if (!loaded) {
            coord_alive_load(c, &a);
            loaded = 1;
        }
        if (q.rerun_ms >= 0)
            LOG_INFO("coord",
                     "query %llu of job %u runs again on %s, %.1f ms after its worker "
                     "was found failed",
                     (unsigned long long)q.query, q.job, q.worker, q.rerun_ms);
        if (q.first_ms >= 0)
            LOG_INFO("coord", "job %u: first query on %s %.1f ms after its images were queued",
                     q.job, q.worker, q.first_ms);
        const struct job_rec *job = jobs_by_id(c->jobs, q.job);
        if (job && job->online)
            coord_online_dispatched(c, &q, &a);
        else
            send_run(c, &q, &a);
    }
    arm_hold_timer(c);
    load_models(c, 0);
}

/* ---- loading models where jobs need them (dispatch.h, "Loaded models") ------------------------- */

struct load_call {
    struct coord *c;
    uint64_t epoch;
    uint64_t sent_us;
    char worker[DISPATCH_NAME_MAX];
    char key[DISPATCH_MODEL_KEY_MAX];
};

/* A worker answered a PRELOAD: once the model is loaded, or why not. */
static void on_loaded(void *ud, const struct net_result *res)
{
    struct load_call *lc = ud;
    struct coord *c = lc->c;
    if (c->epoch == lc->epoch && !c->stopping && is_active(c)) {
        uint64_t now = id_now_us();
        int takes = dispatch_load_done(c->d, lc->worker, lc->key, res->status, now);
        if (res->status == 0)
            LOG_INFO("coord", "model %s loaded on %s in %.0f ms", lc->key, lc->worker,
                     (double)(now - lc->sent_us) / 1000.0);
        else
            LOG_WARN("coord", "model %s could not be loaded on %s: %s%s", lc->key, lc->worker,
                     res->errmsg ? res->errmsg : id_strerror(res->status),
                     takes ? " (its queries go there to report it)" : " (tried again later)");
        /* The loads first: pump's own question then comes within the
         * interval and is skipped, not asked twice. */
        load_models(c, 1);
        if (takes)
            pump(c);
    }
    free(lc);
}

/* Sends one PRELOAD of model version m (the dispatcher's load l); a load
 * that cannot be sent is answered at once as failed (tried again later). */
static void send_load(struct coord *c, const struct model_rec *m, const struct dispatch_load *l,
                      const struct coord_alive *a)
{
    const char *addr = coord_alive_addr(a, l->worker);
    struct load_call *lc = m && addr ? malloc(sizeof *lc) : NULL;
    if (!lc) {
        dispatch_load_done(c->d, l->worker, l->key, ID_ENOTFOUND, id_now_us());
        return;
    }
    *lc = (struct load_call){c, c->epoch, id_now_us(), "", ""};
    snprintf(lc->worker, sizeof lc->worker, "%s", l->worker);
    snprintf(lc->key, sizeof lc->key, "%s", l->key);
    Idunno__ModelInfo mi;
    float mean[3], std[3];
    char *src[SDFS_REPLICAS];
    coord_model_msg(c, m, a, &mi, mean, std, src);
    if (l->job)
        LOG_INFO("coord", "job %u: loading model %s on %s", l->job, l->key, l->worker);
    else
        LOG_INFO("coord", "loading model %s on %s, ahead of its job", l->key, l->worker);
    if (net_call_pb(c->net, addr, IDUNNO__MSG_TYPE__MSG_JOB_PRELOAD_REQ, &mi.base,
                    DISPATCH_LOAD_TIMEOUT_MS, on_loaded, lc) < 0) {
        dispatch_load_done(c->d, lc->worker, lc->key, ID_EIO, id_now_us());
        free(lc);
    }
}

/* Starts the model loads the dispatcher asks for; unless now_anyway, only
 * if it was last asked COORD_LOADS_EVERY_US ago or more. */
static void load_models(struct coord *c, int now_anyway)
{
    if (c->stopping || !is_active(c))
        return;
    uint64_t now = id_now_us();
    if (!now_anyway && now - c->loads_checked_us < COORD_LOADS_EVERY_US)
        return;
    c->loads_checked_us = now;
    struct dispatch_load loads[COORD_LOADS_MAX];
    size_t n = dispatch_loads(c->d, now, loads, COORD_LOADS_MAX);
    if (!n)
        return;
    struct coord_alive a;
    coord_alive_load(c, &a);
    for (size_t i = 0; i < n; i++) {
        struct job_rec *job = jobs_by_id(c->jobs, loads[i].job);
        send_load(c, job ? jobs_model_version(c->jobs, job->model, job->version) : NULL, &loads[i],
                  &a);
    }
}

/* ---- keeping the dispatcher in step with jobs and members ---------------------------------- */

static void worker_gone(struct coord *c, const char *name, const char *why)
{
    int k = dispatch_worker_gone(c->d, name, id_now_us());
    if (k >= 0)
        LOG_INFO("coord", "worker %s %s: %d queries requeued", name, why, k);
}

static void sync_workers(struct coord *c)
{
    struct coord_alive a;
    coord_alive_load(c, &a);
    for (size_t i = 0; i < a.n; i++)
        dispatch_worker_join(c->d, a.v[i].name);
    for (size_t i = dispatch_worker_count(c->d); i > 0; i--) {
        char name[64];
        snprintf(name, sizeof name, "%s", dispatch_worker_name(c->d, i - 1));
        if (!coord_alive_addr(&a, name))
            worker_gone(c, name, "is gone");
    }
    dispatch_unbench(c->d, id_now_us());
}

static void sync_jobs(struct coord *c)
{
    dispatch_sync_jobs(c->d, c->jobs);
}

/* ---- taking over and stepping down ---------------------------------------------------------- */

static void deactivate(struct coord *c)
{
    if (dispatch_phase(c->d) == DISPATCH_IDLE)
        return;
    LOG_INFO("coord", "no longer dispatching");
    coord_online_unlead(c);
    c->epoch++;
    dispatch_unlead(c->d);
    parts_unlead(c->parts);
}

static void finish_activation(struct coord *c)
{
    size_t inflight = dispatch_start(c->d);
    c->stats.active = 1;
    c->stats.activated_ms = id_wall_ms();
    LOG_INFO("coord", "dispatching: %zu jobs, %zu workers, %zu queries adopted",
             dispatch_job_count(c->d), dispatch_worker_count(c->d), inflight);
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
    if (dispatch_phase(c->d) == DISPATCH_ADOPTING && c->epoch == sc->epoch && !c->stopping) {
        Idunno__WorkerState *st = res->status == 0
                                      ? idunno__worker_state__unpack(NULL, res->len, res->body)
                                      : NULL;
        uint64_t now = id_now_us();
        for (size_t i = 0; st && i < st->n_queries; i++) {
            const Idunno__WorkerQuery *wq = st->queries[i];
            if (dispatch_adopt(c->d, c->jobs, sc->worker, wq->job, wq->query, wq->images,
                               wq->n_images, now) == ID_ENOMEM)
                break;
        }
        if (st)
            dispatch_worker_models(c->d, sc->worker, st->models, st->n_models);
        if (st)
            idunno__worker_state__free_unpacked(st, NULL);
        if (dispatch_answered(c->d))
            finish_activation(c);
    }
    free(sc);
}

uint64_t coord_current_term(struct coord *c)
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

/* Asks every worker what it holds; the last answer (or the tick, after
 * COORD_ADOPT_WAIT_MS) starts dispatching. */
static void ask_workers(struct coord *c)
{
    struct coord_alive a;
    coord_alive_load(c, &a);
    for (size_t i = 0; i < dispatch_worker_count(c->d); i++) {
        const char *name = dispatch_worker_name(c->d, i);
        const char *addr = coord_alive_addr(&a, name);
        struct state_call *sc = malloc(sizeof *sc);
        if (!addr || !sc) {
            free(sc);
            continue;
        }
        *sc = (struct state_call){c, c->epoch, ""};
        snprintf(sc->worker, sizeof sc->worker, "%s", name);
        Idunno__Empty e = IDUNNO__EMPTY__INIT;
        if (net_call_pb(c->net, addr, IDUNNO__MSG_TYPE__MSG_JOB_WORKER_STATE_REQ, &e.base,
                        COORD_ADOPT_WAIT_MS, on_worker_state, sc) == 0)
            dispatch_asked(c->d);
        else
            free(sc);
    }
}

static void activate(struct coord *c)
{
    uint64_t term = coord_current_term(c);
    int rc = dispatch_lead(c->d, term, c->jobs, id_now_us());
    if (rc < 0)
        return;
    if (rc == 1)
        LOG_WARN("coord", "no spare slots (out of memory): a new job waits for a free slot");
    c->epoch++;
    parts_lead(c->parts, term);
    sync_workers(c);
    LOG_INFO("coord", "taking over in term %llu: asking %zu workers what they hold",
             (unsigned long long)term, dispatch_worker_count(c->d));
    ask_workers(c);
    if (dispatch_answered(c->d)) /* the core's own hold while the calls went out */
        finish_activation(c);
}

static void on_leader_change(void *ud, const struct ctl_view *v)
{
    struct coord *c = ud;
    if (c->stopping)
        return;
    int leading = dispatch_phase(c->d) != DISPATCH_IDLE;
    /* Leading again in a later term (deposed and re-elected in between):
     * start over, so nothing of the earlier term is proposed in this one. */
    if (v->serving && leading && v->term != dispatch_term(c->d)) {
        deactivate(c);
        leading = 0;
    }
    if (v->serving && !leading)
        activate(c);
    else if (!v->serving)
        deactivate(c);
}

static void on_member_event(void *ud, const struct member_view *who, enum member_state old_state,
                            enum member_state new_state)
{
    (void)old_state;
    struct coord *c = ud;
    if (!is_active(c) || c->stopping)
        return;
    if (new_state == MEMBER_FAILED || new_state == MEMBER_LEFT) {
        /* Only if no newer incarnation of that name is alive. */
        struct coord_alive a;
        coord_alive_load(c, &a);
        if (!coord_alive_addr(&a, who->name)) {
            worker_gone(c, who->name, new_state == MEMBER_FAILED ? "failed" : "left");
            pump(c);
        }
    } else if (new_state == MEMBER_ALIVE) {
        dispatch_worker_join(c->d, who->name);
        pump(c);
    }
}

/* ---- completions ------------------------------------------------------------------------------ */

/* A JOB_DONE command: the completions it holds (struct dispatch_held: the
 * QueryDone and the request to answer). */
struct done_batch {
    struct coord *c;
    struct dispatch_held *w;
    size_t n;
};

static void batch_flush(struct coord *c);

static void on_batch_committed(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)result;
    (void)len;
    struct done_batch *b = ud;
    struct coord *c = b->c;
    for (size_t i = 0; i < b->n; i++) {
        Idunno__QueryDone *msg = b->w[i].done;
        if (status < 0) {
            /* The worker retries; if this node still leads, the images it
             * claimed are free to be cut again meanwhile (a late result still
             * counts once). */
            if (b->w[i].req)
                net_reply_error(b->w[i].req, status == ID_ENOTLEADER ? ID_ENOTLEADER : status,
                                id_strerror(status), NULL);
            for (size_t k = 0; k < msg->n_results; k++)
                dispatch_unclaim(c->d, msg->job, msg->results[k]->image);
        } else {
            if (b->w[i].req)
                net_reply(b->w[i].req, IDUNNO__MSG_TYPE__MSG_JOB_DONE_RESP, NULL, 0);
            c->stats.completed++;
        }
        idunno__query_done__free_unpacked(msg, NULL);
    }
    free(b->w);
    free(b);
    int armed = !c->stopping && uv_is_active((uv_handle_t *)&c->batch_timer);
    if (dispatch_batch_settled(c->d, armed) && !c->stopping)
        batch_flush(c);
    if (status < 0 && is_active(c)) {
        sync_jobs(c);
        pump(c);
    }
}

/* Proposes the completions collected so far as one JOB_DONE command. */
static void batch_flush(struct coord *c)
{
    struct dispatch_held held[DISPATCH_BATCH_MAX];
    size_t nb = dispatch_batch_take(c->d, held);
    if (nb == 0)
        return;
    struct done_batch *b = calloc(1, sizeof *b);
    Idunno__QueryDone **msgs = calloc(nb, sizeof *msgs);
    struct dispatch_held *w = malloc(nb * sizeof *w);
    uint8_t *buf = NULL;
    int rc = b && msgs && w ? 0 : ID_ENOMEM;
    if (rc == 0) {
        for (size_t i = 0; i < nb; i++)
            msgs[i] = held[i].done;
        Idunno__QueryDoneBatch batch = IDUNNO__QUERY_DONE_BATCH__INIT;
        batch.n_done = nb;
        batch.done = msgs;
        size_t n = idunno__query_done_batch__get_packed_size(&batch);
        buf = malloc(n ? n : 1);
        rc = buf ? 0 : ID_ENOMEM;
        if (rc == 0) {
            n = idunno__query_done_batch__pack(&batch, buf);
            memcpy(w, held, nb * sizeof *w);
            *b = (struct done_batch){c, w, nb};
            rc = ctl_propose(c->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, buf, n,
                             on_batch_committed, b);
            if (rc == 0)
                dispatch_batch_proposed(c->d);
        }
    }
    free(buf);
    free(msgs);
    if (rc < 0) {
        for (size_t i = 0; i < nb; i++) {
            if (held[i].req)
                net_reply_error(held[i].req, rc, id_strerror(rc), NULL);
            idunno__query_done__free_unpacked(held[i].done, NULL);
        }
        free(w);
        free(b);
    }
}

static void on_batch_timer(uv_timer_t *t)
{
    struct coord *c = t->data;
    if (dispatch_batch_due(c->d))
        batch_flush(c);
    /* else the next commit flushes them */
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
    else if (!sc->c->stopping && is_active(sc->c)) {
        sync_jobs(sc->c);
        pump(sc->c);
    }
    free(sc);
}

/* A worker's QueryDone.stop_job: its model crashed the worker's inference
 * process again and again (docs/inference.md), so the job is stopped for the
 * whole cluster, with the reason in `jobs`. The core says when (once per job
 * here); a repeat (another worker, a new coordinator) finds it stopped. */
static void stop_unusable_model(struct coord *c, const Idunno__QueryDone *m)
{
    struct job_rec *job = jobs_by_id(c->jobs, m->job);
    if (!job)
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
    if (ctl_propose(c->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, buf, n,
                    on_model_stop_committed, sc) < 0)
        free(sc);
    else
        dispatch_stop_proposed(c->d, job->id);
}

/* JOB_DONE from a worker (on the leader): the core ends the query, and the
 * completion waits in the batch for its JOB_DONE command. */
static void lead_done(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct coord *c = ud;
    Idunno__QueryDone *m = idunno__query_done__unpack(NULL, len, body);
    if (!m) {
        net_reply_error(req, ID_EPROTO, "bad QueryDone", NULL);
        return;
    }
    struct dispatch_done ev = {m->job,
                               m->query,
                               m->worker,
                               m->run_us,
                               m->wait_ms,
                               m->stop_job[0] != 0,
                               m->n_results ? m->results[0]->version : 0};
    struct dispatch_done_out out;
    dispatch_done(c->d, c->jobs, &ev, id_now_us(), &out);
    if (out.log_burst)
        LOG_INFO("coord", "job %u: %.0f us of CPU per query, up to %u at once per worker", m->job,
                 out.run_us_avg, out.burst);
    if (out.propose_stop)
        stop_unusable_model(c, m);
    coord_hold_done(c, m, req);
    pump(c);
}

void coord_hold_done(struct coord *c, Idunno__QueryDone *m, struct net_request *req)
{
    if (dispatch_batch_full(c->d))
        batch_flush(c);
    if (dispatch_batch_add(c->d, &(struct dispatch_held){m, req}) == 1)
        uv_timer_start(&c->batch_timer, on_batch_timer, 1, 0);
}

/* ---- the tick --------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    struct coord *c = t->data;
    if (c->stopping)
        return;
    int serving = ctl_is_serving(c->ctl);
    if (serving && dispatch_phase(c->d) == DISPATCH_IDLE)
        activate(c);
    else if (!serving)
        deactivate(c);
    unsigned missing = 0;
    if (dispatch_overdue(c->d, id_now_us(), &missing)) {
        LOG_WARN("coord", "%u workers did not say what they hold in time: going on without",
                 missing);
        finish_activation(c);
    }
    if (!is_active(c))
        return;
    sync_workers(c);
    sync_jobs(c);
    struct dispatch_timeout late[COORD_TIMEOUT_LOG_MAX];
    size_t k = dispatch_tick(c->d, id_now_us(), late, COORD_TIMEOUT_LOG_MAX);
    for (size_t i = 0; i < k && i < COORD_TIMEOUT_LOG_MAX; i++)
        LOG_WARN("coord", "query %llu on %s timed out: requeued", (unsigned long long)late[i].query,
                 late[i].worker);
    if (k > COORD_TIMEOUT_LOG_MAX)
        LOG_WARN("coord", "%zu more queries timed out: requeued", k - COORD_TIMEOUT_LOG_MAX);
    coord_flush_results(c);
    coord_online_tick(c);
    pump(c);
}

/* ---- requests served on the leader ------------------------------------------------------------ */

/* Each is a ctl_op of the leader-service layer (ctl/service.h): it decodes
 * the request, hands it on if leadership moves, and answers errors. */

/* -- commands that change jobs: proposed, answered with the job -- */

static uint16_t resp_type_of(uint16_t req_type)
{
    return (uint16_t)(req_type + 1);
}

/* The kept versions of a model, as "1, 2, 3". */
static void kept_versions(const struct jobs *j, const char *model, char *out, size_t len)
{
    size_t n, used = 0;
    const struct model_rec *v = jobs_model_versions(j, model, &n);
    out[0] = 0;
    for (size_t i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%u", i ? ", " : "", v[i].version);
}

static const char *command_error(const struct coord *c, uint16_t type, int status,
                                 const char *model, uint32_t version)
{
    static char msg[300];
    char kept[80];
    const struct job_rec *job;
    switch (status) {
    case ID_ENOTFOUND:
        job = jobs_of_model(c->jobs, model);
        if ((version || type == IDUNNO__MSG_TYPE__MSG_JOB_SET_VERSION_REQ) &&
            jobs_model(c->jobs, model) && !jobs_model_version(c->jobs, model, version) &&
            (type != IDUNNO__MSG_TYPE__MSG_JOB_SET_VERSION_REQ || (job && !job->stopped))) {
            kept_versions(c->jobs, model, kept, sizeof kept);
            snprintf(msg, sizeof msg, "model '%s' has no version %u (kept: %s; idunno models %s)",
                     model, version, kept, model);
        } else if (type == IDUNNO__MSG_TYPE__MSG_JOB_LAUNCH_REQ)
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
        job = jobs_of_model(c->jobs, model);
        if (type == IDUNNO__MSG_TYPE__MSG_JOB_INFERENCE_REQ && job && !job->stopped &&
            job->online) {
            snprintf(msg, sizeof msg,
                     "the job of '%s' is an online job: it runs online requests (idunno predict, "
                     "/v2), not data sets",
                     model);
            return msg;
        }
        snprintf(msg, sizeof msg,
                 "invalid argument: model names use [A-Za-z0-9_.-], batch sizes "
                 "1..%d, weights 1e-6..1e6",
                 JOBS_MAX_BATCH);
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

/* Why a queue delay was refused (launch --max-queue-delay,
 * set-max-queue-delay), or NULL if it was not the delay. */
static const char *queue_delay_error(const struct coord *c, const struct ctl_op *op)
{
    static char msg[200];
    const Idunno__JobLaunch *m = op->msg;
    if (op->type == IDUNNO__MSG_TYPE__MSG_JOB_SET_QUEUE_DELAY_REQ) {
        const struct job_rec *job = jobs_of_model(c->jobs, m->model);
        if (job && !job->stopped && !job->online) {
            snprintf(msg, sizeof msg,
                     "the job of '%s' is not an online job: a queue delay holds online requests "
                     "only",
                     m->model);
            return msg;
        }
    } else if (op->type != IDUNNO__MSG_TYPE__MSG_JOB_LAUNCH_REQ || !m->max_queue_delay_us) {
        return NULL;
    } else if (!m->online) {
        return "a queue delay is for online jobs only (launch MODEL BATCH --online "
               "--max-queue-delay US)";
    }
    if (m->max_queue_delay_us <= JOBS_MAX_QUEUE_DELAY_US)
        return NULL;
    snprintf(msg, sizeof msg, "the maximum queue delay is at most %d us (given %u)",
             JOBS_MAX_QUEUE_DELAY_US, m->max_queue_delay_us);
    return msg;
}

static const char *job_command_why(struct ctl_op *op, int status)
{
    const char *delay = status == ID_EINVAL && op->type != IDUNNO__MSG_TYPE__MSG_JOB_INFERENCE_REQ
                            ? queue_delay_error(op->ud, op)
                            : NULL;
    if (delay)
        return delay;
    uint32_t version = op->type == IDUNNO__MSG_TYPE__MSG_JOB_INFERENCE_REQ
                           ? 0
                           : ((const Idunno__JobLaunch *)op->msg)->version;
    return command_error(op->ud, op->type, status, command_model(op), version);
}

static void on_job_command(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    struct coord *c = op->ud;
    struct job_rec *job = jobs_of_model(c->jobs, command_model(op));
    if (job && op->type == IDUNNO__MSG_TYPE__MSG_JOB_INFERENCE_REQ)
        dispatch_images_queued(c->d, job->id, id_now_us());
    if (is_active(c)) {
        sync_jobs(c);
        pump(c);
    }
    coord_reply_job(c, op->req, resp_type_of(op->type), command_model(op));
}

static void lead_launch(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, op->body, op->len);
}

static void lead_set_batch(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_BATCH, op->body, op->len);
}

static void lead_set_version(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_VERSION, op->body, op->len);
}

static void lead_set_queue_delay(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_QUEUE_DELAY, op->body, op->len);
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
        net_reply_errorf(op->req, ID_ENOTFOUND,
                         "no SDFS files under '%s' (store a data set with "
                         "idunno put-dir DIR %s)",
                         prefix, m->dataset);
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
    return status == ID_EINVAL ? "invalid model: name, file, card, input size or normalisation "
                                 "out of range"
                               : NULL;
}

static void on_model_added(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    struct coord *c = op->ud;
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_JOB_MODEL_ADD_RESP, result, len);
    /* A job is likely launched next: one worker loads the new version now
     * (its job's queries then load it further where they need it, in
     * load_models), rather than every worker loading every model at once. */
    const Idunno__ModelInfo *req = op->msg;
    const struct model_rec *m = status == 0 && is_active(c) ? jobs_model(c->jobs, req->name) : NULL;
    struct dispatch_load l;
    char key[DISPATCH_MODEL_KEY_MAX];
    if (m) {
        dispatch_model_key(key, sizeof key, m->name, m->blob, m->version);
        if (dispatch_load_new_model(c->d, key, id_now_us(), &l)) {
            struct coord_alive a;
            coord_alive_load(c, &a);
            send_load(c, m, &l, &a);
        }
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

static void on_read_ready(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    struct coord *c = op->ud;
    switch (op->type) {
    case IDUNNO__MSG_TYPE__MSG_JOB_MODELS_REQ: coord_read_models(c, op->req); break;
    case IDUNNO__MSG_TYPE__MSG_JOB_LIST_REQ: coord_read_jobs(c, op->req, op->body, op->len); break;
    case IDUNNO__MSG_TYPE__MSG_JOB_RESULTS_REQ:
        coord_read_results(c, op->req, op->body, op->len);
        break;
    default: net_reply_error(op->req, ID_EUNKNOWNTYPE, NULL, NULL); break;
    }
}

#define JOB_OP(t, d, start, done, why)                                    \
    {                                                                     \
        IDUNNO__MSG_TYPE__MSG_JOB_##t##_REQ, d, start, done, why, 0, NULL \
    }

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
    JOB_OP(SET_VERSION, &idunno__job_launch__descriptor, lead_set_version, on_job_command,
           job_command_why),
    JOB_OP(SET_QUEUE_DELAY, &idunno__job_launch__descriptor, lead_set_queue_delay, on_job_command,
           job_command_why),
    JOB_OP(LIST, NULL, ctl_op_read, on_read_ready, NULL),
    JOB_OP(RESULTS, NULL, ctl_op_read, on_read_ready, NULL),
    /* Kept by the batch until its JOB_DONE command commits: not an op. */
    {IDUNNO__MSG_TYPE__MSG_JOB_DONE_REQ, NULL, NULL, NULL, NULL, 0, lead_done},
    /* Kept until a worker answered: not an op (coord_online.c). */
    {IDUNNO__MSG_TYPE__MSG_ONLINE_INFER_REQ, NULL, NULL, NULL, NULL, 0, coord_lead_online,
     coord_online_wait_ms},
};

/* ---- life cycle ----------------------------------------------------------------------------- */

int coord_create(const struct coord_config *cfg, struct coord **out, char *errmsg, size_t len)
{
    struct coord *c = calloc(1, sizeof *c);
    if (!c)
        return ID_ENOMEM;
    c->loop = cfg->env.loop;
    c->net = cfg->env.net;
    c->ctl = cfg->env.ctl;
    c->member = cfg->env.member;
    c->jobs = cfg->jobs;
    c->catalog = cfg->catalog;
    c->sdfs = cfg->sdfs;
    c->parts = parts_create(
        &(struct parts_config){COORD_FLUSH_MS, COORD_FLUSH_AT, COORD_PART_MAX, COORD_SWEEP_MS});
    struct dispatch_config dc = {COORD_SLOTS,
                                 COORD_SPARE,
                                 COORD_QUERY_TIMEOUT_MS,
                                 COORD_ADOPT_WAIT_MS,
                                 COORD_BATCHES_IN_FLIGHT,
                                 1};
    c->d = dispatch_create(&dc);
    c->online_models = calloc(COORD_ONLINE_MODELS, sizeof *c->online_models);
    if (!c->parts || !c->d || !c->online_models) {
        parts_destroy(c->parts);
        dispatch_destroy(c->d);
        free(c->online_models);
        free(c);
        return ID_ENOMEM;
    }
    snprintf(c->name, sizeof c->name, "%s", cfg->env.name);
    snprintf(c->addr, sizeof c->addr, "%s", cfg->env.addr);
    int rc = ctl_svc_create(cfg->env.fwd, c->ctl, c, &c->svc);
    if (rc == 0)
        rc = ctl_svc_register(c->svc, coord_ops, sizeof coord_ops / sizeof coord_ops[0]);
    if (rc == 0)
        rc = ctl_on_leader_change(c->ctl, on_leader_change, c);
    if (rc == 0)
        rc = member_subscribe(c->member, on_member_event, c);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot register job requests: %s", id_strerror(rc));
        ctl_svc_destroy(c->svc);
        parts_destroy(c->parts);
        dispatch_destroy(c->d);
        free(c->online_models);
        free(c);
        return rc;
    }
    uv_timer_init(c->loop, &c->tick);
    c->tick.data = c;
    uv_timer_start(&c->tick, on_tick, COORD_TICK_MS, COORD_TICK_MS);
    uv_timer_init(c->loop, &c->batch_timer);
    c->batch_timer.data = c;
    uv_timer_init(c->loop, &c->hold_timer);
    c->hold_timer.data = c;
    *out = c;
    return 0;
}

/* The timers the coordinator owns (tick, batch_timer and hold_timer): its
 * memory goes in the close callback of the last one. */
#define COORD_TIMERS 3

static void coord_release(struct coord *c)
{
    deactivate(c);
    ctl_svc_destroy(c->svc);
    dispatch_destroy(c->d);
    parts_destroy(c->parts);
    coord_online_free(c);
    free(c->online_models);
    free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct coord *c = h->data;
    if (++c->timers_closed == COORD_TIMERS && c->destroy_pending)
        coord_release(c);
}

void coord_stop(struct coord *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = 1;
    ctl_svc_stop(c->svc);
    coord_online_stop(c);
    struct dispatch_held held[DISPATCH_BATCH_MAX];
    size_t n = dispatch_batch_take(c->d, held);
    for (size_t i = 0; i < n; i++) {
        if (held[i].req) /* NULL: an online request's count, its answer sent */
            net_reply_error(held[i].req, ID_ESHUTDOWN, "node shutting down", NULL);
        idunno__query_done__free_unpacked(held[i].done, NULL);
    }
    uv_close((uv_handle_t *)&c->tick, on_timer_closed);
    uv_close((uv_handle_t *)&c->batch_timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->hold_timer, on_timer_closed);
}

void coord_destroy(struct coord *c)
{
    if (!c)
        return;
    coord_stop(c);
    /* The timers' close callbacks may not have run yet (stopped in this loop
     * turn): the last one frees c then. */
    if (c->timers_closed < COORD_TIMERS)
        c->destroy_pending = 1;
    else
        coord_release(c);
}

void coord_get_stats(struct coord *c, struct coord_stats *out)
{
    struct dispatch_stats d;
    dispatch_get_stats(c->d, &d);
    *out = c->stats;
    out->active = is_active(c);
    out->dispatched = d.dispatched;
    out->requeued = d.requeued;
    out->adopted = d.adopted;
    out->rerun_last_ms = d.rerun_last_ms;
    out->rerun_max_ms = d.rerun_max_ms;
}
