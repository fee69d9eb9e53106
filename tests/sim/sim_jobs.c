/* sim_jobs.c — jobs in the simulated cluster: a client that registers models,
 * launches jobs and queues their images; workers that run queries and report
 * results until the leader says they are committed; and on the serving
 * leader the coordinator's pure cores, fed and carried out the way
 * sched/coord.c does: the dispatch decisions (sched/dispatch.c: claims, cut
 * ahead, requeue, adoption of what workers hold after a failover, the group
 * commit of completions) and result parts (sched/parts.c, the parts put
 * through the simulated SDFS). They run behind the lead/unlead hook of sim.h.
 *
 * Results proposed more than once (a worker that ran a query twice, a
 * requeue after a false alarm, a completion re-forwarded after a leader
 * change, a retry after a lost answer) are all proposed, and the replicated
 * job state (sched/jobs.c through ctl/sm.c) must keep exactly one result per
 * image.
 *
 * Invariants, on every replica's applied state at every check: no image has
 * more than one result, counting pending results and the lines of committed
 * parts, and an image is done exactly when it has one; a committed part is
 * never deleted. At the end every image of every job is done, on every
 * replica. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/sha256.h"
#include "base/strbuf.h"
#include "ctl/ctl.h"
#include "idunno.pb-c.h"
#include "sched/dispatch.h"
#include "sched/jobs.h"
#include "sched/parts.h"
#include "sdfs/catalog.h"
#include "sim.h"

#define N_JOBS 2
#define MAX_BATCH 8
#define WORKER_HOLD 16
#define SLOTS 1 /* the coordinator's COORD_SLOTS and COORD_SPARE */
#define SPARE 1
#define REQUEUE_MS 1500 /* in flight this long: requeued (a false alarm if the worker is slow) */
#define ADOPT_MS 300
#define RETRY_MS 300
#define BATCHES 2     /* JOB_DONE commands uncommitted at most */
#define WRITES 16     /* part writes in progress per leader */
#define MAX_FILES 512 /* part files written in a run */

enum { M_RUN = SIM_MSG_WORKER, M_DONE_ACK, M_STATE_REQ };
enum { M_DONE = SIM_MSG_DISPATCH, M_STATE, M_RUN_ACK };

static const struct {
    const char *model;
    uint32_t images, batch;
    uint64_t at; /* set up from then on: the second one while faults go on */
} job_spec[N_JOBS] = {{"m1", 192, 4, 0}, {"m2", 120, 3, 5000}};

struct query {
    uint32_t job;
    uint64_t qid;
    uint32_t n;
    uint32_t images[MAX_BATCH];
};

struct m_run {
    struct query q;
    uint64_t epoch; /* the leader's, echoed in the answer */
};
struct m_run_ack {
    uint64_t epoch, query;
    int status; /* 0 or ID_EBUSY */
};
struct m_done {
    struct query q;
    unsigned worker;
};
struct m_state {
    uint64_t epoch;
    uint32_t n;
    struct query q[WORKER_HOLD];
};

/* ---- the shared world: the client and the run's tallies ---------------------------------- */

/* What a part write put under a name. Names are written once (parts.h), so
 * the name says what the bytes are; the SDFS simulation keeps only ids. */
struct part_file {
    char name[PARTS_FILE_MAX];
    char *text;
    uint8_t sha256[SHA256_LEN];
};

struct leader;

struct jworld {
    struct sim *s;
    uint64_t client_busy_until;
    unsigned done_msgs, reforwards, requeues, adopted;
    unsigned parts_written, parts_committed, parts_deleted;
    struct part_file files[MAX_FILES];
    size_t n_files;
    struct leader *node[SIM_NODES];
    uint64_t checked_at[SIM_NODES]; /* applied index of each replica's last check */
};

static void *jworld_new(struct sim *s)
{
    struct jworld *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->s = s;
    return w;
}

static void jworld_free(void *p)
{
    struct jworld *w = p;
    for (size_t k = 0; k < w->n_files; k++)
        free(w->files[k].text);
    free(w);
}

static const struct part_file *file_find(const struct jworld *w, const char *name)
{
    for (size_t k = 0; k < w->n_files; k++)
        if (strcmp(w->files[k].name, name) == 0)
            return &w->files[k];
    return NULL;
}

/* Totals over every run of the process, for the test to see what was
 * exercised. */
unsigned long sim_jobs_duplicates_total, sim_jobs_reforwards_total, sim_jobs_requeues_total;

/* ---- the client: models, jobs, images (one step at a time, checked first) ---------------- */

static void on_client(void *st, int status, const uint8_t *result, size_t len, const void *arg)
{
    (void)result, (void)len, (void)status;
    struct jworld *w = *(struct jworld *const *)arg;
    (void)st;
    w->client_busy_until = 0;
}

static size_t pack_model(const char *name, uint8_t *buf)
{
    Idunno__ModelInfo m = IDUNNO__MODEL_INFO__INIT;
    uint8_t sha[32] = {1};
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
    char file[32];
    snprintf(file, sizeof file, "models/%s.onnx", name);
    m.name = (char *)name;
    m.file = file;
    m.blob = "00000000000000aa";
    m.size = 1;
    m.sha256.data = sha;
    m.sha256.len = 32;
    m.input_size = 8;
    m.resize = 8;
    m.n_mean = m.n_std = 3;
    m.mean = mean;
    m.std = std;
    m.classes = 10;
    return idunno__model_info__pack(&m, buf);
}

/* Proposes the next missing piece of set-up on the serving leader, judging
 * from its state what is missing: a proposal that failed may still have
 * committed, and JOB_INFERENCE appends, so it is never blindly retried. */
static void client_tick(struct jworld *w, unsigned me, uint64_t now)
{
    struct sim *s = w->s;
    if (now < w->client_busy_until || sim_serving(s) != (int)me)
        return;
    const struct jobs *j = sim_jobs(s, me);
    uint8_t buf[8192];
    size_t len = 0;
    uint32_t type = 0;
    for (int k = 0; k < N_JOBS && !type && now >= job_spec[k].at; k++) {
        const struct job_rec *job = jobs_of_model(j, job_spec[k].model);
        if (!jobs_model(j, job_spec[k].model)) {
            type = IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_MODEL_ADD;
            len = pack_model(job_spec[k].model, buf);
        } else if (!job) {
            Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
            l.model = (char *)job_spec[k].model;
            l.batch = job_spec[k].batch;
            type = IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH;
            len = idunno__job_launch__pack(&l, buf);
        } else if (job->n_images == 0) {
            char names[256][24], *ptrs[256];
            Idunno__JobInference q = IDUNNO__JOB_INFERENCE__INIT;
            q.model = (char *)job_spec[k].model;
            q.dataset = "data";
            for (uint32_t i = 0; i < job_spec[k].images; i++) {
                snprintf(names[i], sizeof names[i], "data/%s-%03u.jpg", job_spec[k].model, i);
                ptrs[i] = names[i];
            }
            q.n_images = job_spec[k].images;
            q.images = ptrs;
            type = IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE;
            len = idunno__job_inference__pack(&q, buf);
        }
    }
    if (!type)
        return;
    if (sim_propose(s, me, &sim_dispatch_ops, type, buf, len, on_client, &w, sizeof w) == 0)
        w->client_busy_until = now + 6000; /* a dropped callback (restart) frees it then */
}

/* ---- workers ----------------------------------------------------------------------------- */

struct held {
    int used;
    struct query q;
    unsigned coord;
    uint64_t done_at, next_send;
    int acked;
};

struct worker {
    struct sim *s;
    unsigned i;
    struct held h[WORKER_HOLD];
};

static void *worker_world_new(struct sim *s)
{
    return s;
}
static void worker_world_free(void *p)
{
    (void)p;
}

static void *worker_start(void *world, unsigned i)
{
    struct worker *wk = calloc(1, sizeof *wk);
    if (!wk)
        abort();
    wk->s = world;
    wk->i = i;
    return wk;
}

static void worker_stop(void *st)
{
    free(st);
}

static void worker_send_done(struct worker *wk, struct held *h, unsigned to)
{
    struct m_done d = {.q = h->q, .worker = wk->i};
    sim_send(wk->s, wk->i, to, M_DONE, &d, sizeof d);
}

static void worker_tick(void *st, uint64_t now)
{
    struct worker *wk = st;
    for (int k = 0; k < WORKER_HOLD; k++) {
        struct held *h = &wk->h[k];
        if (!h->used || now < h->done_at || now < h->next_send)
            continue;
        if (h->acked) { /* a second report of a query already answered */
            worker_send_done(wk, h, h->coord);
            h->used = 0;
            continue;
        }
        /* The first report goes to the coordinator named in the RUN; retries
         * to whoever leads now. */
        int l = h->next_send == 0 ? (int)h->coord : sim_leader_of(wk->s, wk->i);
        if (l >= 0)
            worker_send_done(wk, h, (unsigned)l);
        h->next_send = now + RETRY_MS;
    }
}

static void worker_recv(void *st, const struct sim_msg *m)
{
    struct worker *wk = st;
    struct sim *s = wk->s;
    if (m->type == M_RUN) {
        const struct m_run *r = (const void *)m->body;
        struct m_run_ack ack = {.epoch = r->epoch, .query = r->q.qid};
        struct held *slot = NULL;
        int known = 0;
        for (int k = 0; k < WORKER_HOLD; k++) {
            known |= wk->h[k].used && !wk->h[k].acked && wk->h[k].q.job == r->q.job &&
                     wk->h[k].q.qid == r->q.qid;
            if (!wk->h[k].used && !slot)
                slot = &wk->h[k];
        }
        if (!known && !slot)
            ack.status = ID_EBUSY; /* the dispatcher requeues it and benches us */
        else if (!known)
            *slot = (struct held){.used = 1,
                                  .q = r->q,
                                  .coord = m->from,
                                  .done_at = sim_now(s) + sim_range(s, 100, 900)};
        sim_send(s, wk->i, m->from, M_RUN_ACK, &ack, sizeof ack);
    } else if (m->type == M_DONE_ACK) {
        const struct query *q = (const void *)m->body;
        for (int k = 0; k < WORKER_HOLD; k++) {
            struct held *h = &wk->h[k];
            if (!h->used || h->acked || h->q.job != q->job || h->q.qid != q->qid)
                continue;
            /* Now and then the worker ran it twice, or its report is
             * re-sent: the state machine must drop the second one. */
            if (sim_chance(s, 15)) {
                h->acked = 1;
                h->next_send = sim_now(s) + sim_range(s, 50, 1000);
            } else {
                h->used = 0;
            }
        }
    } else if (m->type == M_STATE_REQ) {
        struct m_state r = {.epoch = *(const uint64_t *)m->body};
        for (int k = 0; k < WORKER_HOLD; k++)
            if (wk->h[k].used && !wk->h[k].acked)
                r.q[r.n++] = wk->h[k].q;
        sim_send(s, wk->i, m->from, M_STATE, &r, sizeof r);
    }
}

const struct sim_service_ops sim_worker_ops = {
    .name = "worker",
    .type_lo = SIM_MSG_WORKER,
    .type_hi = SIM_MSG_WORKER_END,
    .world_new = worker_world_new,
    .world_free = worker_world_free,
    .start = worker_start,
    .stop = worker_stop,
    .tick = worker_tick,
    .recv = worker_recv,
};

/* ---- the leader: the dispatch core, as the coordinator drives it ----------------------------- */

/* A part write, from its put to its JOB_FLUSHED's outcome. */
struct write {
    int used;
    struct parts_action a; /* the WRITE, with the results the part holds */
    uint8_t sha256[SHA256_LEN];
};

/* A node's coordinator process (its cores live as long as it does). */
struct leader {
    struct jworld *w;
    unsigned i;
    int leading;
    uint64_t epoch;  /* bumped by every take-over and step-down: answers of before are stale */
    int timer_armed; /* the batch's 1 ms timer, fired at the next tick */
    struct dispatch *d;
    struct parts *parts;
    struct write writes[WRITES];
};

static uint64_t now_us(const struct jworld *w)
{
    return sim_now(w->s) * 1000;
}

static void free_held(struct dispatch_held *h, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(h[k].done);
}

static void *leader_start(void *world, unsigned i)
{
    struct leader *ld = calloc(1, sizeof *ld);
    if (!ld)
        abort();
    ld->w = world;
    ld->i = i;
    ld->d = dispatch_create(&(struct dispatch_config){SLOTS, SPARE, REQUEUE_MS, ADOPT_MS, BATCHES});
    /* The daemon's 2 s / 2,000 results / 16,384 per part, scaled to the
     * simulation's few hundred results, so that parts are many. */
    ld->parts = parts_create(
        &(struct parts_config){.flush_ms = 400, .flush_at = 12, .part_max = 20, .sweep_ms = 1000});
    if (!ld->d || !ld->parts)
        abort();
    ld->w->node[i] = ld;
    return ld;
}

static void leader_stop(void *st)
{
    struct leader *ld = st;
    struct dispatch_held held[DISPATCH_BATCH_MAX];
    free_held(held, dispatch_batch_take(ld->d, held));
    ld->w->node[ld->i] = NULL;
    dispatch_destroy(ld->d);
    parts_destroy(ld->parts);
    free(ld);
}

static int active(const struct leader *ld)
{
    return dispatch_phase(ld->d) == DISPATCH_ACTIVE;
}

/* Sends RUN for each query the core puts in flight; one that cannot be sent
 * goes back to its queue. */
static void pump(struct leader *ld)
{
    struct sim *s = ld->w->s;
    const struct jobs *j = sim_jobs(s, ld->i);
    struct dispatch_run q;
    unsigned guard = 0;
    while (guard++ < 10000 && dispatch_next(ld->d, j, now_us(ld->w), &q)) {
        int wn = sim_node_of(q.worker);
        if (wn < 0 || !sim_up(s, (unsigned)wn) || q.n > MAX_BATCH) {
            dispatch_requeue(ld->d, q.query);
            continue;
        }
        struct m_run r = {.q = {.job = q.job, .qid = q.query, .n = (uint32_t)q.n},
                          .epoch = ld->epoch};
        memcpy(r.q.images, q.images, q.n * sizeof *q.images);
        sim_send(s, ld->i, (unsigned)wn, M_RUN, &r, sizeof r);
    }
}

/* The membership view: alive workers join, the others leave with their
 * queries requeued. */
static void sync_workers(struct leader *ld)
{
    struct sim *s = ld->w->s;
    struct sdfs_node members[SIM_NODES];
    size_t nm = sim_members(s, members);
    for (size_t k = 0; k < nm; k++)
        if (!members[k].suspect)
            dispatch_worker_join(ld->d, members[k].name);
    for (size_t k = dispatch_worker_count(ld->d); k > 0; k--) {
        char name[DISPATCH_NAME_MAX];
        snprintf(name, sizeof name, "%s", dispatch_worker_name(ld->d, k - 1));
        int alive = 0;
        for (size_t m = 0; m < nm; m++)
            alive |= !members[m].suspect && strcmp(members[m].name, name) == 0;
        if (!alive && dispatch_worker_gone(ld->d, name, now_us(ld->w)) > 0)
            ld->w->requeues++;
    }
    dispatch_unbench(ld->d, now_us(ld->w));
}

static void finish_activation(struct leader *ld)
{
    dispatch_start(ld->d);
    dispatch_sync_jobs(ld->d, sim_jobs(ld->w->s, ld->i));
    pump(ld);
}

/* Taking over: the core leads with nothing cut, every worker is asked what
 * it holds, and the last answer (or the adoption wait) starts dispatching. */
static void leader_lead(void *st, uint64_t term)
{
    struct leader *ld = st;
    struct sim *s = ld->w->s;
    if (dispatch_lead(ld->d, term, sim_jobs(s, ld->i), now_us(ld->w)) < 0)
        return;
    ld->leading = 1;
    ld->epoch++;
    memset(ld->writes, 0, sizeof ld->writes);
    parts_lead(ld->parts, term);
    sync_workers(ld);
    for (size_t k = 0; k < dispatch_worker_count(ld->d); k++) {
        int wn = sim_node_of(dispatch_worker_name(ld->d, k));
        if (wn >= 0) {
            sim_send(s, ld->i, (unsigned)wn, M_STATE_REQ, &ld->epoch, sizeof ld->epoch);
            dispatch_asked(ld->d);
        }
    }
    if (dispatch_answered(ld->d)) /* the core's own hold while the calls went out */
        finish_activation(ld);
}

static void leader_unlead(void *st)
{
    struct leader *ld = st;
    ld->leading = 0;
    ld->epoch++;
    dispatch_unlead(ld->d);
    parts_unlead(ld->parts);
}

/* A JOB_DONE command: the completions it holds. */
struct done_batch {
    struct dispatch_held h[DISPATCH_BATCH_MAX];
    size_t n;
};

static void batch_flush(struct leader *ld);

static void on_batch(void *st, int status, const uint8_t *result, size_t len, const void *arg)
{
    (void)result, (void)len;
    struct leader *ld = st;
    struct done_batch *b = *(struct done_batch *const *)arg;
    if (ld) {
        for (size_t k = 0; k < b->n; k++) {
            const struct m_done *dn = b->h[k].done;
            if (status < 0) {
                /* The worker retries; meanwhile its images may be cut again
                 * (a late result still counts once). */
                for (uint32_t x = 0; x < dn->q.n; x++)
                    dispatch_unclaim(ld->d, dn->q.job, dn->q.images[x]);
            } else {
                sim_send(ld->w->s, ld->i, dn->worker, M_DONE_ACK, &dn->q, sizeof dn->q);
            }
        }
        if (dispatch_batch_settled(ld->d, ld->timer_armed))
            batch_flush(ld);
        if (status < 0 && active(ld)) {
            dispatch_sync_jobs(ld->d, sim_jobs(ld->w->s, ld->i));
            pump(ld);
        }
    }
    free_held(b->h, b->n);
    free(b);
}

/* Proposes the completions collected so far as one JOB_DONE command. */
static void batch_flush(struct leader *ld)
{
    struct sim *s = ld->w->s;
    struct done_batch *b = malloc(sizeof *b);
    if (!b)
        abort();
    b->n = dispatch_batch_take(ld->d, b->h);
    if (b->n == 0) {
        free(b);
        return;
    }
    static Idunno__QueryDone qd[DISPATCH_BATCH_MAX], *qp[DISPATCH_BATCH_MAX];
    static Idunno__QueryResult rr[DISPATCH_BATCH_MAX][MAX_BATCH],
        *rp[DISPATCH_BATCH_MAX][MAX_BATCH];
    static char names[DISPATCH_BATCH_MAX][8];
    uint32_t cls[5] = {1, 2, 3, 4, 5};
    float probs[5] = {0.5f, 0.2f, 0.1f, 0.1f, 0.1f};
    for (size_t k = 0; k < b->n; k++) {
        const struct m_done *m = b->h[k].done;
        idunno__query_done__init(&qd[k]);
        qd[k].job = m->q.job;
        qd[k].query = m->q.qid;
        snprintf(names[k], sizeof names[k], "%s", sim_name(m->worker));
        qd[k].worker = names[k];
        qd[k].duration_ms = 10;
        for (uint32_t x = 0; x < m->q.n; x++) {
            idunno__query_result__init(&rr[k][x]);
            rr[k][x].image = m->q.images[x];
            rr[k][x].n_classes = rr[k][x].n_probs = 5;
            rr[k][x].classes = cls;
            rr[k][x].probs = probs;
            rp[k][x] = &rr[k][x];
        }
        qd[k].n_results = m->q.n;
        qd[k].results = rp[k];
        qp[k] = &qd[k];
    }
    Idunno__QueryDoneBatch batch = IDUNNO__QUERY_DONE_BATCH__INIT;
    batch.n_done = b->n;
    batch.done = qp;
    size_t n = idunno__query_done_batch__get_packed_size(&batch);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    n = idunno__query_done_batch__pack(&batch, buf);
    if (sim_propose(s, ld->i, &sim_dispatch_ops, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, buf, n,
                    on_batch, &b, sizeof b) == 0) {
        dispatch_batch_proposed(ld->d);
    } else {
        free_held(b->h, b->n); /* the workers retry */
        free(b);
    }
    free(buf);
}

/* A worker's JOB_DONE on the leader: the core ends the query, and the
 * completion waits in the batch for its JOB_DONE command. */
static void lead_done(struct leader *ld, const struct m_done *dn)
{
    struct sim *s = ld->w->s;
    struct dispatch_done ev = {dn->q.job, dn->q.qid, sim_name(dn->worker), 0, 0, 0};
    struct dispatch_done_out out;
    dispatch_done(ld->d, sim_jobs(s, ld->i), &ev, now_us(ld->w), &out);
    if (dispatch_batch_full(ld->d))
        batch_flush(ld);
    struct m_done *copy = malloc(sizeof *copy);
    if (!copy)
        abort();
    *copy = *dn;
    if (dispatch_batch_add(ld->d, &(struct dispatch_held){copy, NULL}) == 1)
        ld->timer_armed = 1;
    pump(ld);
}

/* ---- result parts: the decisions of parts.c, the writes through SDFS ---------------------- */

static uint64_t term_now(struct leader *ld)
{
    struct ctl_view v;
    ctl_view(sim_ctl(ld->w->s, ld->i), &v);
    return ld->leading && v.serving ? v.term : 0;
}

static struct write *write_find(struct leader *ld, uint64_t id)
{
    for (int k = 0; k < WRITES; k++)
        if (ld->writes[k].used && ld->writes[k].a.write == id)
            return &ld->writes[k];
    return NULL;
}

/* A file no commit can name is deleted: never one a commit does name. */
static void part_delete(struct leader *ld, const char *file)
{
    struct sim *s = ld->w->s;
    for (unsigned j = 0; j < SIM_NODES; j++) {
        const struct jobs *js = sim_jobs(s, j);
        if (sim_applied(s, j) < sim_applied(s, ld->i))
            continue; /* behind the deciding leader: it applies the same log later */
        for (size_t k = 0; k < jobs_count(js); k++) {
            const struct job_rec *job = jobs_at(js, k);
            for (uint64_t p = 1; p <= job->parts; p++)
                if (strcmp(jobs_part(job, p)->file, file) == 0)
                    sim_fail(s, "%s deletes %s, committed as part %llu of job %u on %s",
                             sim_name(ld->i), file, (unsigned long long)p, job->id, sim_name(j));
        }
    }
    sim_log(s, "%s: delete result file %s", sim_name(ld->i), file);
    ld->w->parts_deleted++;
    sim_sdfs_delete(s, ld->i, file);
}

static void on_flushed(void *st, int status, const uint8_t *result, size_t len, const void *arg)
{
    (void)result, (void)len;
    struct leader *ld = st;
    if (!ld)
        return;
    uint64_t id = *(const uint64_t *)arg;
    struct write *wr = write_find(ld, id);
    struct parts_action del;
    if (status == 0)
        ld->w->parts_committed++;
    if (parts_applied(ld->parts, id, status, &del))
        part_delete(ld, del.file);
    if (wr)
        wr->used = 0;
}

static void on_part_put(struct sim *s, unsigned gateway, uint64_t id, int status)
{
    struct jworld *w = sim_world(s, &sim_dispatch_ops);
    struct leader *ld = w->node[gateway];
    struct write *wr = ld ? write_find(ld, id) : NULL;
    if (!wr)
        return;
    /* A JOB_FLUSHED naming term T is only proposed while leading term T:
     * the term is read and the proposal made in one go. */
    struct parts_action next;
    if (!parts_stored(ld->parts, id, status, wr->a.results, term_now(ld), &next)) {
        wr->used = 0;
    } else if (next.op == PARTS_DELETE) {
        part_delete(ld, next.file);
        wr->used = 0;
    } else {
        Idunno__JobFlushed m = IDUNNO__JOB_FLUSHED__INIT;
        m.job = wr->a.job;
        m.part = wr->a.part;
        m.results = wr->a.results;
        m.file = wr->a.file;
        m.sha256 = (ProtobufCBinaryData){sizeof wr->sha256, wr->sha256};
        uint8_t buf[PARTS_FILE_MAX + 128];
        size_t n = idunno__job_flushed__pack(&m, buf);
        if (sim_propose(s, ld->i, &sim_dispatch_ops, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_FLUSHED,
                        buf, n, on_flushed, &id, sizeof id) < 0) {
            struct parts_action del;
            if (parts_applied(ld->parts, id, ID_ECANCELED, &del)) /* never appended */
                part_delete(ld, del.file);
            wr->used = 0;
        }
    }
}

/* Renders a job's oldest pending results and puts them as a->file. */
static void part_write(struct leader *ld, const struct parts_action *a)
{
    struct jworld *w = ld->w;
    const struct job_rec *job = jobs_by_id(sim_jobs(w->s, ld->i), a->job);
    struct write *wr = NULL;
    for (int k = 0; k < WRITES && !wr; k++)
        if (!ld->writes[k].used)
            wr = &ld->writes[k];
    struct strbuf text = STRBUF_INIT;
    size_t n = 0;
    int rc = job && wr && w->n_files < MAX_FILES
                 ? jobs_render_results(sim_jobs(w->s, ld->i), job, a->results, 1u << 20, &text, &n)
                 : ID_ENOMEM;
    if (rc == 0) {
        *wr = (struct write){.used = 1, .a = *a};
        wr->a.results = (uint32_t)n;
        struct sha256 h;
        sha256_init(&h);
        sha256_update(&h, strbuf_str(&text), text.len);
        sha256_final(&h, wr->sha256);
        struct part_file *f = &w->files[w->n_files++];
        snprintf(f->name, sizeof f->name, "%s", a->file);
        f->text = strdup(strbuf_str(&text));
        if (!f->text)
            abort();
        memcpy(f->sha256, wr->sha256, sizeof f->sha256);
        w->parts_written++;
        sim_log(w->s, "%s: write %s (%zu results)", sim_name(ld->i), a->file, n);
        if (sim_sdfs_put(w->s, ld->i, a->file, a->write, on_part_put) < 0) {
            wr->used = 0;
            rc = ID_EBUSY;
        }
    }
    strbuf_free(&text);
    if (rc < 0) {
        struct parts_action none;
        parts_stored(ld->parts, a->write, ID_ECANCELED, 0, 0, &none); /* nothing was written */
    }
}

static void flush_results(struct leader *ld, uint64_t now)
{
    struct sim *s = ld->w->s;
    struct parts_action acts[8];
    size_t k = parts_tick(ld->parts, now, sim_jobs(s, ld->i), acts, sizeof acts / sizeof acts[0]);
    for (size_t i = 0; i < k; i++)
        part_write(ld, &acts[i]);
    char garbage[8][PARTS_FILE_MAX];
    k = parts_sweep(ld->parts, now, sim_catalog(s, ld->i), sim_jobs(s, ld->i), garbage, 8);
    for (size_t i = 0; i < k; i++)
        part_delete(ld, garbage[i]);
}

static void leader_tick(void *st, uint64_t now)
{
    struct leader *ld = st;
    struct sim *s = ld->w->s;
    client_tick(ld->w, ld->i, now);
    if (ld->timer_armed) {
        ld->timer_armed = 0;
        if (dispatch_batch_due(ld->d))
            batch_flush(ld);
    }
    unsigned missing;
    if (dispatch_overdue(ld->d, now_us(ld->w), &missing))
        finish_activation(ld);
    if (!ld->leading || !active(ld) || !ctl_is_serving(sim_ctl(s, ld->i)))
        return;
    sync_workers(ld);
    dispatch_sync_jobs(ld->d, sim_jobs(s, ld->i));
    struct dispatch_timeout late[8];
    ld->w->requeues += (unsigned)dispatch_tick(ld->d, now_us(ld->w), late, 8);
    flush_results(ld, now);
    pump(ld);
}

static void leader_recv(void *st, const struct sim_msg *m)
{
    struct leader *ld = st;
    struct sim *s = ld->w->s;
    int serving = ld->leading && ctl_is_serving(sim_ctl(s, ld->i));
    if (m->type == M_DONE) {
        const struct m_done *dn = (const void *)m->body;
        ld->w->done_msgs++;
        if (serving) {
            lead_done(ld, dn);
            return;
        }
        /* Relayed towards the leader this node knows of. */
        int l = sim_leader_of(s, ld->i);
        if (l >= 0 && l != (int)ld->i) {
            ld->w->reforwards++;
            sim_send(s, ld->i, (unsigned)l, M_DONE, dn, sizeof *dn);
        }
    } else if (m->type == M_STATE) {
        const struct m_state *r = (const void *)m->body;
        if (r->epoch != ld->epoch || dispatch_phase(ld->d) != DISPATCH_ADOPTING)
            return; /* an answer to an earlier take-over */
        for (uint32_t k = 0; k < r->n; k++)
            if (dispatch_adopt(ld->d, sim_jobs(s, ld->i), sim_name(m->from), r->q[k].job,
                               r->q[k].qid, r->q[k].images, r->q[k].n, now_us(ld->w)) == 1)
                ld->w->adopted++;
        if (dispatch_answered(ld->d))
            finish_activation(ld);
    } else if (m->type == M_RUN_ACK) {
        const struct m_run_ack *a = (const void *)m->body;
        struct dispatch_bench b;
        if (a->status < 0 && a->epoch == ld->epoch && active(ld) &&
            dispatch_run_failed(ld->d, a->query, sim_name(m->from), a->status, now_us(ld->w), &b))
            pump(ld);
    }
}

/* ---- invariants -------------------------------------------------------------------------- */

/* Counts the results of committed part p (its file's lines) into seen. */
static void count_part(struct jworld *w, unsigned i, const struct job_rec *job, uint64_t p,
                       uint8_t *seen)
{
    struct sim *s = w->s;
    const struct job_part *jp = jobs_part(job, p);
    const struct part_file *f = file_find(w, jp->file);
    if (!f) {
        sim_fail(s, "%s: job %u part %llu is %s, which nobody wrote", sim_name(i), job->id,
                 (unsigned long long)p, jp->file);
        return;
    }
    if (jp->has_sha256 && memcmp(jp->sha256, f->sha256, SHA256_LEN) != 0)
        sim_fail(s, "%s: job %u part %llu: %s has other bytes than committed", sim_name(i), job->id,
                 (unsigned long long)p, jp->file);
    uint32_t lines = 0;
    for (const char *at = strstr(f->text, "data/"); at; at = strstr(at + 1, "data/")) {
        const char *dash = strchr(at, '-');
        uint32_t im = dash ? (uint32_t)strtoul(dash + 1, NULL, 10) : UINT32_MAX;
        lines++;
        if (im >= job->n_images || seen[im]++)
            sim_fail(s, "%s: job %u image %u has a second result, in part %llu (%s)", sim_name(i),
                     job->id, im, (unsigned long long)p, jp->file);
    }
    if (lines != jp->results)
        sim_fail(s, "%s: job %u part %llu holds %u results, committed as %u", sim_name(i), job->id,
                 (unsigned long long)p, lines, jp->results);
}

static void check_replica(struct jworld *w, unsigned i, int final)
{
    struct sim *s = w->s;
    const struct jobs *j = sim_jobs(s, i);
    for (size_t k = 0; k < jobs_count(j) && !sim_failed(s); k++) {
        const struct job_rec *job = jobs_at(j, k);
        uint8_t seen[256 + 1] = {0};
        if (job->n_images > sizeof seen)
            abort();
        for (size_t p = 0; p < job->n_pending; p++) {
            uint32_t im = job->pending[p].image;
            if (im >= job->n_images || seen[im]++)
                sim_fail(s, "%s: job %u image %u has %d results", sim_name(i), job->id, im,
                         im < job->n_images ? seen[im] : -1);
        }
        for (uint64_t p = 1; p <= job->parts && !sim_failed(s); p++)
            count_part(w, i, job, p, seen);
        uint64_t done = 0;
        for (size_t im = 0; im < job->n_images; im++) {
            done += job_image_done(job, im);
            if (job_image_done(job, im) != (seen[im] == 1))
                sim_fail(s, "%s: job %u image %zu is %s but has %d results", sim_name(i), job->id,
                         im, job_image_done(job, im) ? "done" : "not done", seen[im]);
        }
        if (done != job->n_done)
            sim_fail(s, "%s: job %u counts %llu done, its bitmap %llu", sim_name(i), job->id,
                     (unsigned long long)job->n_done, (unsigned long long)done);
        if (final && job->n_done != job->n_images)
            sim_fail(s, "%s: job %u ended with %llu of %zu images done", sim_name(i), job->id,
                     (unsigned long long)job->n_done, job->n_images);
    }
    if (final && jobs_count(j) != N_JOBS)
        sim_fail(s, "%s: %zu jobs at the end", sim_name(i), jobs_count(j));
}

/* Every committed part is a file of the leader's catalog: the sweep never
 * deletes one. */
static void check_parts_stored(struct jworld *w)
{
    struct sim *s = w->s;
    int l = sim_serving(s);
    if (l < 0)
        return;
    const struct jobs *j = sim_jobs(s, (unsigned)l);
    for (size_t k = 0; k < jobs_count(j); k++) {
        const struct job_rec *job = jobs_at(j, k);
        for (uint64_t p = 1; p <= job->parts; p++)
            if (!catalog_find(sim_catalog(s, (unsigned)l), jobs_part(job, p)->file))
                sim_fail(s, "job %u part %llu (%s) is not in the leader %s's catalog", job->id,
                         (unsigned long long)p, jobs_part(job, p)->file, sim_name((unsigned)l));
    }
}

static void jobs_check(void *world)
{
    struct jworld *w = world;
    /* A replica's job state changes only when it applies something. */
    for (unsigned i = 0; i < SIM_NODES; i++) {
        uint64_t a = sim_applied(w->s, i);
        if (a != w->checked_at[i])
            check_replica(w, i, 0);
        w->checked_at[i] = a;
    }
    check_parts_stored(w);
}

static int jobs_settled(void *world)
{
    struct jworld *w = world;
    int l = sim_serving(w->s);
    if (l < 0)
        return 0;
    const struct jobs *j = sim_jobs(w->s, (unsigned)l);
    if (jobs_count(j) != N_JOBS)
        return 0;
    for (size_t k = 0; k < N_JOBS; k++)
        if (jobs_at(j, k)->n_images == 0 || jobs_at(j, k)->n_done != jobs_at(j, k)->n_images)
            return 0;
    return 1;
}

static void jobs_final(void *world)
{
    struct jworld *w = world;
    for (unsigned i = 0; i < SIM_NODES; i++)
        check_replica(w, i, 1);
    const struct jobs *j = sim_jobs(w->s, 0);
    unsigned long dups = 0;
    for (size_t k = 0; k < jobs_count(j); k++)
        dups += jobs_at(j, k)->duplicates;
    sim_jobs_duplicates_total += dups;
    sim_jobs_reforwards_total += w->reforwards;
    sim_jobs_requeues_total += w->requeues;
    check_parts_stored(w);
    sim_log(w->s,
            "jobs: %u completions received, %u re-forwarded, %u requeues, %u adopted, "
            "%lu duplicate results dropped; parts: %u written, %u committed, %u files deleted",
            w->done_msgs, w->reforwards, w->requeues, w->adopted, dups, w->parts_written,
            w->parts_committed, w->parts_deleted);
}

const struct sim_service_ops sim_dispatch_ops = {
    .name = "dispatch",
    .type_lo = SIM_MSG_DISPATCH,
    .type_hi = SIM_MSG_DISPATCH_END,
    .world_new = jworld_new,
    .world_free = jworld_free,
    .start = leader_start,
    .stop = leader_stop,
    .lead = leader_lead,
    .unlead = leader_unlead,
    .tick = leader_tick,
    .recv = leader_recv,
    .check = jobs_check,
    .settled = jobs_settled,
    .final_check = jobs_final,
};
