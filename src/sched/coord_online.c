/* coord_online.c — online requests, on the leader (docs/scheduler.md,
 * "Online requests"): a request brings its images (encoded, as a user sends
 * them) and wants their results now, so it is not a job's query: nothing is
 * read from or written to SDFS and nothing is replicated. The leader picks a
 * worker, hands it the images with the model (ONLINE_RUN) and answers the
 * request with the worker's results, or tries another worker if that one
 * failed (its connection, its process), until the request's deadline.
 *
 * Which worker: the one with the fewest online requests under way among
 * those in the dispatcher, one that has the model version loaded (what the
 * dispatcher knows of each worker, dispatch_online_rank) counted as
 * ONLINE_LOADED_BONUS less busy; the next in turn on a tie. Workers already
 * tried for this request come last.
 *
 * Online jobs (docs/scheduler.md, "Online jobs"): when the model's running
 * job is an online one (`launch MODEL BATCH --online`), its requests are
 * charged to it instead. Each is queued in the dispatcher as a query without
 * images (dispatch_online_enqueue), so the fair-time scheduler picks when and
 * where it runs, sharing the workers with the batch jobs by weight. When one
 * is dispatched to a worker, the job's other queued requests join it there,
 * into the worker's free slots and up to the job's batch (dynamic batching:
 * one ONLINE_RUN, one run of the model). With a maximum queue delay
 * (`launch ... --max-queue-delay US`), while some of a job's requests run,
 * the dispatcher holds its waiting ones until the oldest has waited that long
 * or they fill such a run (dispatch_online_enqueue), and coord.c's hold timer
 * dispatches them when the hold ends. Each request answered is one query of
 * the job, proposed in the completions' group commit, so `jobs`, `qjob` and
 * `assign` show it. A run that fails or takes too long (attempt_ms) puts its
 * requests back in the job's queue (dispatch_run_failed), each tried on at
 * most ONLINE_ATTEMPTS runs before its deadline.
 *
 * A request may be held by more than one run: a worker found failed has its
 * queries requeued at once while its call is still under way. The first
 * answer wins; the request is freed when no run holds it any more.
 *
 * A request that reaches the leader again (the forwarder sent it anew after
 * an attempt got no answer in time) is told by its key and not run twice
 * (reply_of_key, remember_reply; "requests sent more than once" below).
 *
 * Threading: loop thread only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "idunno.pb-c.h"
#include "net/frame.h"
#include "net/net.h"
#include "sched/coord_int.h"
#include "sched/dispatch.h"
#include "sched/jobs.h"
#include "sched/online_input.h"
#include "sched/qstats.h"

/* A request's deadline when it names none, and the longest it may name. A
 * first run on a worker loads the model (a second or more on shared cores). */
#define ONLINE_DEADLINE_MS 30000
#define ONLINE_DEADLINE_MAX_MS 600000
/* Workers tried per request at most. */
#define ONLINE_ATTEMPTS 3
/* A worker with the model loaded is preferred to one without unless it has
 * this many more online requests under way: a first run elsewhere loads the
 * model there (a fraction of a second for a small model, over a second for
 * ResNet50), so the load spreads once one worker is kept busy. */
#define ONLINE_LOADED_BONUS 2
/* Images per request at most (the frame bounds their bytes). */
#define ONLINE_MAX_IMAGES 64
/* Answers kept by request key, for repeats of a request the forwarder sent
 * again after its answer was lost (a timed-out attempt, a relay cut off):
 * this many, each this long. */
#define ONLINE_REPLIES 512
#define ONLINE_REPLY_KEEP_MS 60000

/* An answer as sent: a result (type, body) or an error (status, msg). */
struct online_reply {
    uint64_t key; /* 0: an empty entry */
    uint64_t expires_ms;
    uint16_t type;
    int status;
    char msg[200];
    uint8_t *body;
    size_t len;
};

struct online_call {
    struct coord *c; /* NULL once answered (or orphaned by coord_online_stop) */
    struct online_call *next;
    struct net_request *req;
    Idunno__OnlineInfer *in; /* the request as decoded (owned) */
    char model[JOBS_NAME_MAX];
    uint32_t version;
    char key[DISPATCH_MODEL_KEY_MAX];
    char worker[64]; /* the worker running it now ("" between attempts) */
    char tried[ONLINE_ATTEMPTS][64];
    unsigned attempts;
    uint64_t deadline_ms; /* monotonic */
    uint64_t epoch;
    uint64_t received_ms; /* wall clock, for the model's latency statistics */
    int last_status;
    char last_error[200];
    /* Charged to an online job (else 0): its query in the dispatcher. */
    uint32_t job;
    uint64_t query;
    unsigned runs; /* ONLINE_RUN calls under way that hold it */
};

/* One ONLINE_RUN of an online job's requests on one worker. Holds a run
 * reference on each request. */
struct online_group {
    uint64_t epoch;
    uint32_t job;
    char worker[64];
    char key[DISPATCH_MODEL_KEY_MAX];
    size_t n;
    struct online_call *calls[ONLINE_MAX_IMAGES]; /* each has >= 1 image */
};

static struct online_model *model_stats(struct coord *c, const char *name)
{
    for (size_t i = 0; i < c->n_online_models; i++)
        if (strcmp(c->online_models[i].name, name) == 0)
            return &c->online_models[i];
    if (c->n_online_models == COORD_ONLINE_MODELS)
        return NULL; /* more models than that: the rest go uncounted */
    struct qstats *q = qstats_create();
    if (!q)
        return NULL;
    struct online_model *m = &c->online_models[c->n_online_models++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->stats = q;
    m->failed = 0;
    return m;
}

size_t coord_online_view(struct coord *c, struct coord_online_view *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_online_models && n < max; i++, n++)
        out[n] = (struct coord_online_view){c->online_models[i].name, c->online_models[i].stats,
                                            c->online_models[i].failed};
    return n;
}

void coord_online_free(struct coord *c)
{
    for (size_t i = 0; i < c->n_online_models; i++)
        qstats_destroy(c->online_models[i].stats);
    c->n_online_models = 0;
    for (size_t i = 0; c->online_replies && i < ONLINE_REPLIES; i++)
        free(c->online_replies[i].body);
    free(c->online_replies);
    c->online_replies = NULL;
}

/* ---- requests sent more than once --------------------------------------------------------- */

/* The forwarder sends a request again when an attempt gets no answer in
 * time, which a long model run or a cut-off relay both cause. A request's
 * key (OnlineInfer.key, random, the same on every attempt) lets the leader
 * run it once: a repeat of a request under way takes over its answer (the
 * earlier attempt's waiter has gone), and a repeat of one answered in the
 * last minute gets that answer again. */

static const struct online_reply *reply_of_key(struct coord *c, uint64_t key)
{
    uint64_t now = id_now_ms();
    for (size_t i = 0; key && c->online_replies && i < ONLINE_REPLIES; i++) {
        const struct online_reply *r = &c->online_replies[i];
        if (r->key == key && r->expires_ms > now)
            return r;
    }
    return NULL;
}

/* Keeps an answer for its key (body copied; NULL for an error). */
static void remember_reply(struct coord *c, uint64_t key, uint16_t type, int status,
                           const char *msg, const uint8_t *body, size_t len)
{
    if (!key || status == ID_ENOTLEADER || status == ID_ESHUTDOWN)
        return; /* those send the request on to another leader: not its answer */
    if (!c->online_replies &&
        !(c->online_replies = calloc(ONLINE_REPLIES, sizeof(struct online_reply))))
        return;
    struct online_reply *r = &c->online_replies[c->online_reply_next++ % ONLINE_REPLIES];
    free(r->body);
    *r = (struct online_reply){key, id_now_ms() + ONLINE_REPLY_KEEP_MS, type, status, "", NULL, 0};
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
    if (body && len && (r->body = malloc(len))) {
        memcpy(r->body, body, len);
        r->len = len;
    } else if (body && len) {
        r->key = 0; /* out of memory: not kept */
    }
}

static void call_unlink(struct online_call *oc)
{
    if (!oc->c)
        return; /* orphaned by coord_online_stop */
    for (struct online_call **p = &oc->c->online; *p; p = &(*p)->next)
        if (*p == oc) {
            *p = oc->next;
            return;
        }
}

static void call_free(struct online_call *oc)
{
    call_unlink(oc);
    if (oc->in)
        idunno__online_infer__free_unpacked(oc->in, NULL);
    free(oc);
}

/* The request was answered: it leaves the list, and is freed once no run
 * holds it. */
static void call_done(struct online_call *oc)
{
    call_unlink(oc);
    oc->c = NULL;
    oc->req = NULL;
    oc->next = NULL;
    if (oc->runs == 0)
        call_free(oc);
}

/* The charged request whose query this is, or NULL. */
static struct online_call *call_of_query(struct coord *c, uint64_t query)
{
    for (struct online_call *oc = c->online; oc; oc = oc->next)
        if (oc->job && oc->query == query)
            return oc;
    return NULL;
}

static unsigned online_load(const struct coord *c, const char *worker)
{
    unsigned n = 0;
    for (const struct online_call *oc = c->online; oc; oc = oc->next)
        n += strcmp(oc->worker, worker) == 0;
    return n;
}

static int was_tried(const struct online_call *oc, const char *worker)
{
    for (unsigned i = 0; i < oc->attempts && i < ONLINE_ATTEMPTS; i++)
        if (strcmp(oc->tried[i], worker) == 0)
            return 1;
    return 0;
}

/* The best worker for oc (see the top of the file), or NULL. */
static const char *pick_worker(struct coord *c, const struct online_call *oc)
{
    size_t n = dispatch_worker_count(c->d);
    const char *best = NULL;
    long best_score = 0;
    unsigned start = c->online_rr++;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        int rank = dispatch_online_rank(c->d, i, oc->key);
        if (rank == 0)
            continue;
        const char *name = dispatch_worker_name(c->d, i);
        /* higher is better: untried first, then the least busy, a worker
         * with the model loaded counted ONLINE_LOADED_BONUS requests less busy */
        long score = (was_tried(oc, name) ? 0 : 1000000) + (rank == 2 ? ONLINE_LOADED_BONUS : 0) -
                     (long)online_load(c, name);
        if (!best || score > best_score) {
            best = name;
            best_score = score;
        }
    }
    return best;
}

static void reply_error(struct online_call *oc, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(struct online_call *oc, int code, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct coord *c = oc->c;
    c->stats.online_failed++;
    struct online_model *m = model_stats(c, oc->model);
    if (m)
        m->failed++;
    net_reply_error(oc->req, code, msg, NULL);
    remember_reply(c, oc->in->key, 0, code, msg, NULL, 0);
    if (oc->job && oc->epoch == c->epoch)
        dispatch_online_forget(c->d, oc->query);
    call_done(oc);
}

/* How long one run may take before its requests move on: a worker whose
 * link from the coordinator drops packets looks alive to membership, so
 * only a bound on the run ends the wait. ONLINE_ATTEMPT_SLACK times the
 * job's mean CPU time for these inputs (the cores are shared, a run waits
 * behind others), at least ONLINE_ATTEMPT_MIN_MS, ONLINE_ATTEMPT_FIRST_MS
 * while the mean is not known, and never past the requests' deadline. */
#define ONLINE_ATTEMPT_SLACK 20.0
#define ONLINE_ATTEMPT_MIN_MS 3000
#define ONLINE_ATTEMPT_FIRST_MS 15000
static uint32_t attempt_ms(struct coord *c, uint32_t job, size_t inputs, uint64_t left_ms)
{
    double run_us = dispatch_job_run_us(c->d, job);
    double ms = run_us > 0 ? ONLINE_ATTEMPT_SLACK * run_us * (double)inputs / 1000.0
                           : ONLINE_ATTEMPT_FIRST_MS;
    if (ms < ONLINE_ATTEMPT_MIN_MS)
        ms = ONLINE_ATTEMPT_MIN_MS;
    if (ms > (double)left_ms)
        ms = (double)left_ms;
    return ms >= UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static void try_next(struct online_call *oc);

/* The model or the request is at fault: another worker would say the same. */
static int request_at_fault(int status)
{
    return status == ID_EMODEL || status == ID_EINVAL || status == ID_ETOOBIG;
}

/* The labels of the classes in each result, when the model's card has them. */
static void reply_result(struct online_call *oc, Idunno__OnlineResult *r)
{
    struct coord *c = oc->c;
    const struct model_rec *m = jobs_model_version(c->jobs, oc->model, r->version);
    const struct model_card *card = m ? &m->card : NULL;
    char ***labels = calloc(r->n_results ? r->n_results : 1, sizeof *labels);
    for (size_t i = 0; labels && card && card->n_labels && i < r->n_results; i++) {
        Idunno__QueryResult *q = r->results[i];
        labels[i] = calloc(q->n_classes ? q->n_classes : 1, sizeof **labels);
        if (!labels[i])
            continue;
        for (size_t k = 0; k < q->n_classes; k++)
            labels[i][k] = q->classes[k] < card->n_labels ? card->labels[q->classes[k]] : "";
        q->n_labels = q->n_classes;
        q->labels = labels[i];
    }
    /* The model and id are ours: the worker's strings go back before r is freed. */
    char *worker_model = r->model, *worker_id = r->id;
    r->model = oc->model;
    r->id = oc->in->id;
    r->attempts = oc->attempts;
    if (!r->batched)
        r->batched = 1;
    c->stats.online_answered++;
    struct online_model *om = model_stats(c, oc->model);
    uint64_t now = id_wall_ms();
    if (om)
        qstats_record(om->stats, now, now > oc->received_ms ? (uint32_t)(now - oc->received_ms) : 0,
                      r->worker);
    size_t n = idunno__online_result__get_packed_size(r);
    uint8_t *packed = malloc(n ? n : 1);
    if (packed) {
        n = idunno__online_result__pack(r, packed);
        net_reply(oc->req, IDUNNO__MSG_TYPE__MSG_ONLINE_INFER_RESP, packed, n);
        remember_reply(c, oc->in->key, IDUNNO__MSG_TYPE__MSG_ONLINE_INFER_RESP, 0, NULL, packed, n);
        free(packed);
    } else {
        net_reply_error(oc->req, ID_ENOMEM, NULL, NULL);
    }
    r->model = worker_model;
    r->id = worker_id;
    for (size_t i = 0; labels && i < r->n_results; i++) {
        r->results[i]->n_labels = 0; /* not the message's to free */
        r->results[i]->labels = NULL;
        free(labels[i]);
    }
    free(labels);
}

static void on_online_ran(void *ud, const struct net_result *res)
{
    struct online_call *oc = ud;
    struct coord *c = oc->c;
    if (!c) { /* the coordinator stopped and answered the request */
        call_free(oc);
        return;
    }
    char worker[64];
    snprintf(worker, sizeof worker, "%s", oc->worker);
    oc->worker[0] = 0;
    Idunno__OnlineResult *r = res->status == 0
                                  ? idunno__online_result__unpack(NULL, res->len, res->body)
                                  : NULL;
    if (r && r->n_results == oc->in->n_images + oc->in->n_tensors) {
        if (c->epoch == oc->epoch)
            dispatch_worker_models(c->d, worker, (char *const[]){oc->key}, 1);
        reply_result(oc, r);
        idunno__online_result__free_unpacked(r, NULL);
        call_free(oc);
        return;
    }
    if (r)
        idunno__online_result__free_unpacked(r, NULL);
    int status = res->status < 0 ? res->status : ID_EPROTO;
    if (request_at_fault(status)) {
        reply_error(oc, status, "%s", res->errmsg ? res->errmsg : id_strerror(status));
        return;
    }
    oc->last_status = status;
    snprintf(oc->last_error, sizeof oc->last_error, "worker %s: %s", worker,
             res->errmsg ? res->errmsg : id_strerror(status));
    LOG_WARN("coord", "online request for %s on %s failed (%s): trying another worker", oc->model,
             worker, oc->last_error);
    c->stats.online_retried++;
    try_next(oc);
}

/* Sends oc to the best worker not tried yet, or answers why it cannot. */
static void try_next(struct online_call *oc)
{
    struct coord *c = oc->c;
    uint64_t now = id_now_ms();
    if (c->stopping) {
        reply_error(oc, ID_ESHUTDOWN, "the coordinator is stopping");
        return;
    }
    if (now >= oc->deadline_ms) {
        reply_error(oc, ID_ETIMEDOUT, "no answer before the deadline%s%s",
                    oc->last_error[0] ? "; last: " : "", oc->last_error);
        return;
    }
    if (oc->attempts >= ONLINE_ATTEMPTS) {
        reply_error(oc, oc->last_status ? oc->last_status : ID_EUNAVAIL,
                    "%u workers tried; last: %s", oc->attempts, oc->last_error);
        return;
    }
    const struct model_rec *m = jobs_model_version(c->jobs, oc->model, oc->version);
    const char *worker = pick_worker(c, oc);
    struct coord_alive *a = malloc(sizeof *a);
    if (!m || !worker || !a) {
        free(a);
        reply_error(oc, m ? ID_EUNAVAIL : ID_ENOTFOUND, "%s",
                    !m        ? "the model version is gone"
                    : !worker ? "no worker can take the request now"
                              : "out of memory");
        return;
    }
    snprintf(oc->tried[oc->attempts++], sizeof oc->tried[0], "%s", worker);
    coord_alive_load(c, a);
    const char *addr = coord_alive_addr(a, worker);
    Idunno__ModelInfo mi;
    float mean[3], std[3];
    char *src[SDFS_REPLICAS];
    int rc = addr ? coord_model_msg(c, m, a, &mi, mean, std, src) : ID_EUNAVAIL;
    if (rc == 0) {
        Idunno__OnlineRun run = IDUNNO__ONLINE_RUN__INIT;
        run.model = &mi;
        run.n_images = oc->in->n_images;
        run.images = oc->in->images;
        run.n_tensors = oc->in->n_tensors;
        run.tensors = oc->in->tensors;
        run.id = oc->in->id;
        snprintf(oc->worker, sizeof oc->worker, "%s", worker);
        rc = net_call_pb(c->net, addr, IDUNNO__MSG_TYPE__MSG_ONLINE_RUN_REQ, &run.base,
                         attempt_ms(c, 0, run.n_images + run.n_tensors, oc->deadline_ms - now),
                         on_online_ran, oc);
        if (rc < 0)
            oc->worker[0] = 0;
    }
    free(a);
    if (rc < 0) {
        oc->last_status = rc;
        snprintf(oc->last_error, sizeof oc->last_error, "cannot send to %s: %s", worker,
                 id_strerror(rc));
        try_next(oc); /* the attempt counted: a worker that cannot be reached ends the loop */
    }
}

/* ---- forwarding ----------------------------------------------------------------------------- */

/* Beyond the request's deadline, for its answer's way back through the
 * forwarder: the leader answers at the deadline at the latest. */
#define ONLINE_FORWARD_MARGIN_MS 2000

uint32_t coord_online_wait_ms(const uint8_t *body, size_t len)
{
    uint64_t deadline = online_request_deadline_ms(body, len);
    if (!deadline)
        deadline = ONLINE_DEADLINE_MS;
    if (deadline > ONLINE_DEADLINE_MAX_MS)
        deadline = ONLINE_DEADLINE_MAX_MS;
    return (uint32_t)deadline + ONLINE_FORWARD_MARGIN_MS;
}

/* ---- requests charged to an online job ---------------------------------------------------- */

/* Inputs of one ONLINE_RUN at most, in bytes (the frame's bound, less room
 * for the model's description). */
#define ONLINE_GROUP_BYTES (FRAME_MAX_BODY - 512u * 1024u)

/* A request's inputs: its images, or its tensors (never both). */
static size_t call_inputs(const struct online_call *oc)
{
    return oc->in->n_images + oc->in->n_tensors;
}

static size_t call_bytes(const struct online_call *oc)
{
    size_t n = 0;
    for (size_t i = 0; i < oc->in->n_images; i++)
        n += oc->in->images[i].len;
    for (size_t i = 0; i < oc->in->n_tensors; i++)
        n += oc->in->tensors[i]->data.len + 4 * oc->in->tensors[i]->n_shape + 16;
    return n;
}

/* The request's share of a run's answer, accounted as one query of its job:
 * proposed with the other completions (coord_hold_done) while this leader
 * still dispatches the term the run was sent in. */
static void charge_answer(struct coord *c, const struct online_group *g, struct online_call *oc,
                          uint32_t version, uint32_t run_us)
{
    if (c->epoch != g->epoch)
        return; /* another term: the query is not this dispatcher's */
    uint64_t now = id_wall_ms();
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT;
    d.job = g->job;
    d.query = oc->query;
    d.worker = (char *)g->worker;
    d.duration_ms = now > oc->received_ms ? (uint32_t)(now - oc->received_ms) : 0;
    /* An owned copy: the group commit frees what it holds as unpacked. */
    size_t n = idunno__query_done__get_packed_size(&d);
    uint8_t *buf = malloc(n ? n : 1);
    Idunno__QueryDone *owned = buf ? idunno__query_done__unpack(
                                         NULL, idunno__query_done__pack(&d, buf), buf)
                                   : NULL;
    free(buf);
    /* Its share of the run's time sizes the job's bursts (dispatch.h): a
     * cheap model's requests may then batch beyond the worker's slots while
     * nothing else runs there. */
    struct dispatch_done ev = {g->job, oc->query, g->worker, run_us, 0, 0, version};
    struct dispatch_done_out out;
    dispatch_done(c->d, c->jobs, &ev, id_now_us(), &out);
    if (out.log_burst)
        LOG_INFO("coord", "online job %u: %.0f us per request, up to %u at once per worker", g->job,
                 out.run_us_avg, out.burst);
    if (owned)
        coord_hold_done(c, owned, NULL);
}

/* A charged request's run failed (status): it waits in its job's queue again
 * if it has time and attempts left, else it is answered with the error. */
static void charged_failed(struct coord *c, const struct online_group *g, struct online_call *oc,
                           int status, const char *why)
{
    oc->last_status = status;
    snprintf(oc->last_error, sizeof oc->last_error, "worker %s: %s", g->worker, why);
    if (request_at_fault(status)) {
        reply_error(oc, status, "%s", why);
        return;
    }
    if (c->epoch != g->epoch) { /* the dispatcher that held it is gone */
        reply_error(oc, ID_ENOTLEADER, "the coordinator changed while it ran: %s", oc->last_error);
        return;
    }
    struct dispatch_bench b;
    int requeued = dispatch_run_failed(c->d, oc->query, g->worker, status, id_now_us(), &b);
    if (id_now_ms() >= oc->deadline_ms)
        reply_error(oc, ID_ETIMEDOUT, "no answer before the deadline; last: %s", oc->last_error);
    else if (oc->attempts >= ONLINE_ATTEMPTS)
        reply_error(oc, status, "%u runs tried; last: %s", oc->attempts, oc->last_error);
    else if (requeued)
        c->stats.online_retried++;
    /* else its query was put back already (its worker was found failed). */
}

/* The run's hold on its requests ends: those answered and held by no other
 * run are freed (call_done leaves them to the last holder). */
static void group_release(struct online_group *g)
{
    for (size_t i = 0; i < g->n; i++)
        if (--g->calls[i]->runs == 0 && !g->calls[i]->c)
            call_free(g->calls[i]);
    free(g);
}

static void on_group_ran(void *ud, const struct net_result *res)
{
    struct online_group *g = ud;
    struct coord *c = NULL;
    for (size_t i = 0; i < g->n; i++)
        if (g->calls[i]->c)
            c = g->calls[i]->c;
    /* No request of the run is waiting any more (answered by another run, or
     * the coordinator stopped, and may be gone): nothing to account. */
    Idunno__OnlineResult *r = c && res->status == 0
                                  ? idunno__online_result__unpack(NULL, res->len, res->body)
                                  : NULL;
    size_t inputs = 0;
    for (size_t i = 0; i < g->n; i++)
        inputs += call_inputs(g->calls[i]);
    if (c && r && r->n_results == inputs) {
        if (c->epoch == g->epoch)
            dispatch_worker_models(c->d, g->worker, (char *const[]){g->key}, 1);
        size_t at = 0;
        for (size_t i = 0; i < g->n; i++) {
            struct online_call *oc = g->calls[i];
            size_t k = call_inputs(oc);
            if (oc->c) {
                /* Its slice of the answer, inputs numbered from 0 again. */
                Idunno__OnlineResult part = *r;
                part.n_results = k;
                part.results = r->results + at;
                part.batched = (uint32_t)g->n;
                for (size_t j = 0; j < k; j++)
                    part.results[j]->image = (uint32_t)j;
                reply_result(oc, &part);
                charge_answer(c, g, oc, r->version,
                              (uint32_t)((uint64_t)r->run_us / (inputs ? inputs : 1) * k));
                call_done(oc);
            }
            at += k;
        }
    } else if (c) {
        int status = res->status < 0 ? res->status : ID_EPROTO;
        const char *why = res->status < 0 && res->errmsg ? res->errmsg : id_strerror(status);
        LOG_WARN("coord", "online run of %zu requests on %s failed: %s", g->n, g->worker, why);
        for (size_t i = 0; i < g->n; i++)
            if (g->calls[i]->c)
                charged_failed(c, g, g->calls[i], status, why);
    }
    if (r)
        idunno__online_result__free_unpacked(r, NULL);
    group_release(g);
    if (c && !c->stopping)
        coord_pump(c);
}

/* Adds a dispatched request to the run being built; answers it instead when
 * it is out of time or attempts. */
static int group_add(struct online_group *g, struct online_call *oc)
{
    if (id_now_ms() >= oc->deadline_ms) {
        reply_error(oc, ID_ETIMEDOUT, "no answer before the deadline%s%s",
                    oc->last_error[0] ? "; last: " : "", oc->last_error);
        return 0;
    }
    if (oc->attempts >= ONLINE_ATTEMPTS) {
        reply_error(oc, oc->last_status ? oc->last_status : ID_EUNAVAIL, "%u runs tried; last: %s",
                    oc->attempts, oc->last_error);
        return 0;
    }
    oc->attempts++;
    oc->runs++;
    g->calls[g->n++] = oc;
    return 1;
}

void coord_online_dispatched(struct coord *c, const struct dispatch_run *q,
                             const struct coord_alive *a)
{
    struct online_call *first = call_of_query(c, q->query);
    const struct job_rec *job = jobs_by_id(c->jobs, q->job);
    const struct model_rec *m = job ? jobs_model_version(c->jobs, job->model, job->version) : NULL;
    struct online_group *g = first && m ? calloc(1, sizeof *g) : NULL;
    if (!g) {
        /* Answered or given up while it waited (or out of memory: its
         * deadline answers it). */
        dispatch_online_forget(c->d, q->query);
        return;
    }
    g->epoch = c->epoch;
    g->job = q->job;
    snprintf(g->worker, sizeof g->worker, "%s", q->worker);
    dispatch_model_key(g->key, sizeof g->key, m->name, m->blob, m->version);
    if (!group_add(g, first)) {
        free(g);
        return;
    }
    /* Dynamic batching: the job's other waiting requests join the run, up to
     * its batch in inputs and the frame's bound in bytes; a run holds images
     * or tensors, as its first request does. */
    int tensors = first->in->n_tensors > 0;
    size_t inputs = call_inputs(first), bytes = call_bytes(first);
    size_t max_inputs = job->batch < ONLINE_MAX_IMAGES ? job->batch : ONLINE_MAX_IMAGES;
    uint64_t more;
    while (inputs < max_inputs && g->n < ONLINE_MAX_IMAGES &&
           dispatch_online_take(c->d, q->job, q->worker, id_now_us(), &more)) {
        struct online_call *oc = call_of_query(c, more);
        if (!oc) {
            dispatch_online_forget(c->d, more);
            continue;
        }
        if (inputs + call_inputs(oc) > max_inputs || bytes + call_bytes(oc) > ONLINE_GROUP_BYTES ||
            (oc->in->n_tensors > 0) != tensors) {
            dispatch_requeue(c->d, more); /* the next run takes it */
            break;
        }
        if (group_add(g, oc)) {
            inputs += call_inputs(oc);
            bytes += call_bytes(oc);
        }
    }
    ProtobufCBinaryData *all = tensors ? NULL : calloc(inputs, sizeof *all);
    Idunno__OnlineTensor **all_tensors = tensors ? calloc(inputs, sizeof *all_tensors) : NULL;
    Idunno__ModelInfo mi;
    float mean[3], std[3];
    char *src[SDFS_REPLICAS];
    const char *addr = coord_alive_addr(a, g->worker);
    int rc = !all && !all_tensors ? ID_ENOMEM
             : !addr              ? ID_EUNAVAIL
                                  : coord_model_msg(c, m, a, &mi, mean, std, src);
    uint64_t now = id_now_ms(), until = now;
    if (rc == 0) {
        size_t at = 0;
        for (size_t i = 0; i < g->n; i++) {
            const struct online_call *oc = g->calls[i];
            if (tensors)
                memcpy(all_tensors + at, oc->in->tensors, oc->in->n_tensors * sizeof *all_tensors);
            else
                memcpy(all + at, oc->in->images, oc->in->n_images * sizeof *all);
            at += call_inputs(oc);
            if (oc->deadline_ms > until)
                until = oc->deadline_ms;
        }
        Idunno__OnlineRun run = IDUNNO__ONLINE_RUN__INIT;
        run.model = &mi;
        if (tensors) {
            run.n_tensors = inputs;
            run.tensors = all_tensors;
        } else {
            run.n_images = inputs;
            run.images = all;
        }
        run.id = g->n == 1 ? first->in->id : "";
        rc = net_call_pb(c->net, addr, IDUNNO__MSG_TYPE__MSG_ONLINE_RUN_REQ, &run.base,
                         attempt_ms(c, q->job, inputs, until > now ? until - now : 1), on_group_ran,
                         g);
    }
    free(all);
    free(all_tensors);
    if (rc < 0) {
        /* Not sent: each request goes back to wait (or is answered, out of
         * attempts). pump() goes on dispatching, so the failure is handled
         * here rather than by a call back into it. */
        char why[120];
        snprintf(why, sizeof why, "cannot send the run: %s", id_strerror(rc));
        for (size_t i = 0; i < g->n; i++)
            if (g->calls[i]->c)
                charged_failed(c, g, g->calls[i], rc, why);
        group_release(g);
    }
}

void coord_online_unlead(struct coord *c)
{
    /* Charged requests still waiting in the dispatcher leave with it: the
     * node that sent each one tries the new leader (ID_ENOTLEADER). Those on
     * a worker are answered when their run ends. */
    for (struct online_call *oc = c->online, *next; oc; oc = next) {
        next = oc->next;
        if (oc->job && oc->runs == 0)
            reply_error(oc, ID_ENOTLEADER, "the coordinator stopped dispatching");
    }
}

void coord_online_tick(struct coord *c)
{
    uint64_t now = id_now_ms();
    for (struct online_call *oc = c->online, *next; oc; oc = next) {
        next = oc->next;
        if (!oc->job || oc->runs)
            continue;
        const struct job_rec *job = jobs_by_id(c->jobs, oc->job);
        if (!job || job->stopped)
            reply_error(oc, ID_ENOTFOUND, "the online job of %s was stopped", oc->model);
        else if (now >= oc->deadline_ms)
            reply_error(oc, ID_ETIMEDOUT, "no answer before the deadline%s%s",
                        oc->last_error[0] ? "; last: " : "", oc->last_error);
    }
}

void coord_lead_online(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct coord *c = ud;
    Idunno__OnlineInfer *in = idunno__online_infer__unpack(NULL, len, body);
    if (!in) {
        net_reply_error(req, ID_EPROTO, "bad OnlineInfer", NULL);
        return;
    }
    /* A repeat (the forwarder tried again): answered as the request was, or
     * as it will be. */
    const struct online_reply *done = reply_of_key(c, in->key);
    struct online_call *running = NULL;
    for (struct online_call *oc = in->key && !done ? c->online : NULL; oc && !running;
         oc = oc->next)
        if (oc->in->key == in->key)
            running = oc;
    if (done || running) {
        c->stats.online_repeats++;
        if (done && done->status)
            net_reply_error(req, done->status, done->msg, NULL);
        else if (done)
            net_reply(req, done->type, done->body, done->len);
        else { /* the earlier attempt's waiter gave up: this one gets the answer */
            net_reply_error(running->req, ID_ETIMEDOUT, "answered on a later attempt", NULL);
            running->req = req;
        }
        idunno__online_infer__free_unpacked(in, NULL);
        return;
    }
    c->stats.online_requests++;
    const char *why = NULL;
    int code = ID_EINVAL;
    const struct model_rec *m = NULL;
    const struct job_rec *job = NULL;
    if (!in->model || !in->model[0] || strlen(in->model) >= JOBS_NAME_MAX) {
        why = "a model name is needed";
    } else if (in->n_images && in->n_tensors) {
        why = "a request holds images or tensors, not both";
    } else if (in->n_images + in->n_tensors == 0 ||
               in->n_images + in->n_tensors > ONLINE_MAX_IMAGES) {
        why = "a request holds 1 to 64 images";
    } else {
        /* No version asked: the one the model's running job runs, so that
         * online answers agree with the batch results; else the latest. */
        uint32_t v = in->version;
        job = jobs_of_model(c->jobs, in->model);
        if (job && job->stopped)
            job = NULL;
        if (job && !v)
            v = job->version;
        m = jobs_model_version(c->jobs, in->model, v);
        if (!m) {
            code = ID_ENOTFOUND;
            why = jobs_model(c->jobs, in->model) ? "no such version of the model"
                                                 : "no such model (train it first)";
        }
    }
    for (size_t i = 0; !why && i < in->n_images; i++)
        if (in->images[i].len == 0)
            why = "an image is empty";
    char tensor_why[300];
    if (!why && in->n_tensors &&
        online_tensors_check(m, in->tensors, in->n_tensors, tensor_why, sizeof tensor_why) < 0)
        why = tensor_why;
    struct online_call *oc = why ? NULL : calloc(1, sizeof *oc);
    if (!oc) {
        c->stats.online_failed++;
        net_reply_errorf(req, why ? code : ID_ENOMEM, "%s%s%s", why ? why : "out of memory",
                         why && in->model && in->model[0] ? ": " : "",
                         why && in->model ? in->model : "");
        idunno__online_infer__free_unpacked(in, NULL);
        return;
    }
    oc->c = c;
    oc->req = req;
    oc->in = in;
    snprintf(oc->model, sizeof oc->model, "%s", in->model);
    oc->version = m->version;
    dispatch_model_key(oc->key, sizeof oc->key, m->name, m->blob, m->version);
    uint32_t ms = in->deadline_ms ? in->deadline_ms : ONLINE_DEADLINE_MS;
    oc->deadline_ms = id_now_ms() + (ms < ONLINE_DEADLINE_MAX_MS ? ms : ONLINE_DEADLINE_MAX_MS);
    oc->epoch = c->epoch;
    oc->received_ms = id_wall_ms();
    oc->next = c->online;
    c->online = oc;
    /* The model's online job, running the version asked for, is charged;
     * any other request picks its worker itself. */
    if (job && job->online && job->version == m->version) {
        oc->job = job->id;
        oc->query = dispatch_online_enqueue(c->d, job->id, (uint32_t)call_inputs(oc), id_now_us());
        if (!oc->query) {
            reply_error(oc, ID_ENOTLEADER, "this coordinator is not dispatching yet");
            return;
        }
        coord_pump(c);
        return;
    }
    try_next(oc);
}

void coord_online_stop(struct coord *c)
{
    /* Requests still running on a worker are answered now; their calls'
     * answers come later, to calls that no longer name the coordinator
     * (it may be freed by then). */
    for (struct online_call *oc = c->online, *next; oc; oc = next) {
        next = oc->next;
        net_reply_error(oc->req, ID_ESHUTDOWN, "the coordinator is stopping", NULL);
        oc->req = NULL;
        oc->c = NULL;
        oc->next = NULL;
        if (!oc->worker[0] && oc->runs == 0)
            call_free(oc); /* waiting: no call will come back for it */
    }
    c->online = NULL;
}
