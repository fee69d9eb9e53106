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
 * Not yet: online requests are not charged to a job, so the fair-time
 * scheduler does not see them; they share the workers with the queries of
 * batch jobs as the workers' own processes run them.
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

struct online_call {
    struct coord *c;
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
    oc->c->stats.online_failed++;
    struct online_model *m = model_stats(oc->c, oc->model);
    if (m)
        m->failed++;
    net_reply_error(oc->req, code, msg, NULL);
    call_free(oc);
}

static void try_next(struct online_call *oc);

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
    c->stats.online_answered++;
    struct online_model *om = model_stats(c, oc->model);
    uint64_t now = id_wall_ms();
    if (om)
        qstats_record(om->stats, now, now > oc->received_ms ? (uint32_t)(now - oc->received_ms) : 0,
                      r->worker);
    net_reply_pb(oc->req, IDUNNO__MSG_TYPE__MSG_ONLINE_INFER_RESP, &r->base);
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
    if (status == ID_EMODEL || status == ID_EINVAL || status == ID_ETOOBIG) {
        /* The model or the request is at fault: another worker would say the same. */
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
                         (uint32_t)(oc->deadline_ms - now), on_online_ran, oc);
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

void coord_lead_online(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct coord *c = ud;
    Idunno__OnlineInfer *in = idunno__online_infer__unpack(NULL, len, body);
    if (!in) {
        net_reply_error(req, ID_EPROTO, "bad OnlineInfer", NULL);
        return;
    }
    c->stats.online_requests++;
    const char *why = NULL;
    int code = ID_EINVAL;
    const struct model_rec *m = NULL;
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
        const struct job_rec *job = v ? NULL : jobs_of_model(c->jobs, in->model);
        if (job && !job->stopped)
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
        if (!oc->worker[0])
            call_free(oc); /* between attempts: no call will come back for it */
    }
    c->online = NULL;
}
