/* worker.c — the inference worker (see worker.h). */
#include "sched/worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "infer/child.h"
#include "infer/infer.h"
#include "net/net.h"
#include "sched/dispatch.h"
#include "sdfs/catalog.h"
#include "sdfs/sdfs.h"
#include "sdfs/store.h"

#define WORKER_TICK_MS 100
#define WORKER_RETRY_MS 200
#define WORKER_DONE_TIMEOUT_MS 10000
/* Model processes kept alive without a run (infer/child.h), the least
 * recently used stopped beyond: each holds its model's weights. */
#define WORKER_CACHE_MODELS 4
/* Queries held: running, or done with the result not yet committed. A burst
 * of cheap queries completes faster than the control plane commits, so the
 * bound covers a few commit times of a busy worker's results. */
#define WORKER_MAX_QUERIES 256
/* Batches run at once. The coordinator bounds what it dispatches (a slot, and
 * a spare one for a job with nothing else running: fair.h); beyond that only
 * queries of a job stopped while they ran, which it no longer counts, can be
 * here. The bound is a guard. ONNX Runtime runs one session from several
 * threads at once, so two batches of one model may run side by side in its
 * process. */
#define WORKER_MAX_RUNNING 3
/* Model versions this worker reports as loaded to a new coordinator (its
 * WORKER_STATE answer), the latest used first. A process stopped for being
 * idle may have left: the coordinator then sends a query that loads it. */
#define WORKER_LOADED_KEYS 8
#define WORKER_SLOW_START_MS 50
/* Ready queries of one model run as one chain: one pool job and one model
 * run over all their images. A worker holds several queries of one job only
 * when the coordinator sends it a burst of cheap ones (fair.h), and running
 * them together saves a pool hand-off and a model run's fixed cost per
 * query. The bounds keep a chain's tensor small. */
#define WORKER_CHAIN_MAX 8
#define WORKER_CHAIN_IMAGES 64
/* An online run's inputs up to this many bytes go to the model's process in
 * the run message itself; larger ones are written to files (a file each
 * costs a write here and a read there, a third of a tiny model's run). A
 * chain's given bytes stay under WORKER_CHAIN_GIVEN_BYTES, well inside the
 * run frame's INFER_CHILD_MAX_FRAME. */
#define WORKER_GIVEN_BYTES (256u * 1024)
#define WORKER_CHAIN_GIVEN_BYTES (768u * 1024)

enum wq_state { WQ_FETCHING, WQ_READY, WQ_RUNNING, WQ_DONE };

struct wquery {
    struct worker *w;
    Idunno__QueryRun *run;           /* as received (owned) */
    int preload;                     /* load the model only; nothing to report */
    struct net_request *preload_req; /* answered once the model is loaded (or not) */
    enum wq_state state;
    unsigned fetching; /* fetches not yet finished (+1 while starting them) */
    int model_status;
    int *image_status; /* per image: 0 or the fetch error */
    /* Set on the loop before the pool runs the batch. */
    char model_path[700];
    char **paths;
    struct infer_result *results;
    char model_err[200];
    uint64_t started_ms, infer_ms;
    uint64_t run_us;              /* its share of the model run's CPU time (by images) */
    uint64_t run_wall_ms;         /* wall clock when the batch went to the model's process */
    uint64_t run_started_us;      /* the same, monotonic (the chain's head) */
    struct wquery *chain;         /* while WQ_RUNNING: the next query of its chain */
    uint64_t ready_ms, queued_ms; /* inputs all here; handed to the process (monotonic) */
    unsigned refetches;           /* times a fetched input vanished before its run */
    int stop_job;                 /* the model was given up: the coordinator should stop the job */
    /* An online run (ONLINE_RUN): its images came with the request and were
     * written to files; its results answer the request, not a job. */
    struct net_request *online_req;
    char **online_files;
    int online_tensors; /* the inputs are the model's input itself (OnlineRun.tensors) */
    /* Small inputs are kept here instead of files (WORKER_GIVEN_BYTES):
     * the request as received, its images' or tensors' bytes. */
    Idunno__OnlineRun *online_given;
    size_t given_bytes;
    /* The packed QueryDone, retried until a coordinator commits it. */
    uint8_t *done;
    size_t done_len;
    int sending;
    uint64_t next_try_ms;
    struct wquery *next;
};

struct worker {
    uv_loop_t *loop;
    struct net *net;
    struct sdfs *sdfs;
    char name[64];
    char addr[64];
    /* The coordinator that dispatched the latest query ("" after a failed
     * send: results then go through this node's forwarder). */
    char coord_addr[64];
    struct infer_procs *procs; /* the models' processes */
    struct wquery *queries;    /* FIFO */
    int running;               /* chains in model processes, at most WORKER_MAX_RUNNING */
    uv_timer_t tick;
    int stopping;
    int tick_closed;     /* its close callback ran */
    int destroy_pending; /* worker_destroy ran: the tick's close callback frees */
    struct worker_stats stats;
    char loaded[WORKER_LOADED_KEYS][DISPATCH_MODEL_KEY_MAX]; /* model versions run lately */
    char online_dir[600]; /* where online runs' images are written (DATA/online) */
    uint64_t online_seq;
};

/* ---- queries -------------------------------------------------------------------------------- */

static void wq_free(struct wquery *q)
{
    size_t n = q->run ? q->run->n_images : 0;
    for (size_t i = 0; q->paths && i < n; i++)
        free(q->paths[i]);
    for (size_t i = 0; q->online_files && i < n; i++)
        if (q->online_files[i]) {
            unlink(q->online_files[i]);
            free(q->online_files[i]);
        }
    if (q->run)
        idunno__query_run__free_unpacked(q->run, NULL);
    if (q->online_given)
        idunno__online_run__free_unpacked(q->online_given, NULL);
    free(q->online_files);
    free(q->paths);
    free(q->image_status);
    free(q->results);
    free(q->done);
    free(q);
}

/* An online run's query (its inputs came with the request), not a job's. */
static int wq_online(const struct wquery *q)
{
    return q->online_files || q->online_given;
}

static void wq_unlink(struct worker *w, struct wquery *q)
{
    for (struct wquery **pp = &w->queries; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            return;
        }
}

static void wq_append(struct worker *w, struct wquery *q)
{
    struct wquery **pp = &w->queries;
    while (*pp)
        pp = &(*pp)->next;
    *pp = q;
}

static size_t wq_count(const struct worker *w)
{
    size_t n = 0;
    for (struct wquery *q = w->queries; q; q = q->next)
        n += !q->preload;
    return n;
}

/* ---- running a chain in the model's process -------------------------------------------------- */

static void kick(struct worker *w);
static void send_done(struct wquery *q);
static void pack_done(struct wquery *q);
static void answer_online(struct wquery *q);

/* Model runs happen in a process per model (infer/child.h): a model that
 * crashes ONNX Runtime kills that process, not this node, which is also a
 * replica and maybe a voter. The process runs niced so that the node's
 * event loops, heartbeats included, are never stuck behind a model, and with
 * --infer-sched batch as SCHED_BATCH: a waking batch no longer preempts a
 * running one, so with ten workers on two cores each batch keeps its core and
 * its caches for whole time slices (more throughput, less even rates between
 * jobs: docs/inference.md has the figures). */

static void chain_fail(struct wquery *head, const char *msg, int stop_job)
{
    for (struct wquery *q = head; q; q = q->chain) {
        snprintf(q->model_err, sizeof q->model_err, "%s", msg);
        q->stop_job = stop_job;
    }
}

/* Where model version m is in the worker's list of versions run lately, or
 * WORKER_LOADED_KEYS; *key gets its key. */
static size_t loaded_index(const struct worker *w, const Idunno__ModelInfo *m,
                           char key[DISPATCH_MODEL_KEY_MAX])
{
    dispatch_model_key(key, DISPATCH_MODEL_KEY_MAX, m->name, m->blob, m->version);
    size_t i = 0;
    while (i < WORKER_LOADED_KEYS && strcmp(w->loaded[i], key) != 0)
        i++;
    return i;
}

/* The model version ran here: it goes to the front of the list a new
 * coordinator is given (the last one drops out when it is new). */
static void note_loaded(struct worker *w, const Idunno__ModelInfo *m)
{
    char key[DISPATCH_MODEL_KEY_MAX];
    size_t at = loaded_index(w, m, key);
    if (at == WORKER_LOADED_KEYS)
        at = WORKER_LOADED_KEYS - 1;
    memmove(&w->loaded[1], &w->loaded[0], at * sizeof w->loaded[0]);
    snprintf(w->loaded[0], sizeof w->loaded[0], "%s", key);
}

static int is_loaded(const struct worker *w, const Idunno__ModelInfo *m)
{
    char key[DISPATCH_MODEL_KEY_MAX];
    return loaded_index(w, m, key) < WORKER_LOADED_KEYS;
}

/* A preload's answer, once it is over: the coordinator sends the model's
 * queries here only after it (dispatch.h, "Loaded models"). A model that
 * cannot be loaded is ID_EMODEL; a file that cannot be fetched, its error
 * (the coordinator tries again). */
static void answer_preload(struct wquery *q)
{
    struct net_request *req = q->preload_req;
    q->preload_req = NULL;
    if (!req)
        return;
    if (!q->model_err[0])
        net_reply(req, IDUNNO__MSG_TYPE__MSG_JOB_PRELOAD_RESP, NULL, 0);
    else
        net_reply_error(req, q->model_status < 0 ? q->model_status : ID_EMODEL, q->model_err, NULL);
}

/* The chain's run is over (results or model_err set): each query's result
 * goes to the coordinator. */
static void finish_chain(struct wquery *head)
{
    struct worker *w = head->w;
    w->running--;
    for (struct wquery *q = head, *next; q; q = next) {
        next = q->chain;
        q->chain = NULL;
        w->stats.infer_ms_total += q->infer_ms;
        if (!q->model_err[0])
            note_loaded(w, q->run->model);
        if (q->online_req) {
            answer_online(q);
            wq_unlink(w, q);
            wq_free(q);
            continue;
        }
        if (q->preload) {
            if (q->model_err[0])
                LOG_WARN("worker", "preload failed: %s", q->model_err);
            else
                LOG_INFO("worker", "model %s loaded", q->run->model->name);
            answer_preload(q);
            wq_unlink(w, q);
            wq_free(q);
            continue;
        }
        if (q->model_err[0])
            LOG_WARN("worker", "query %llu of job %u: %s", (unsigned long long)q->run->query,
                     q->run->job, q->model_err);
        pack_done(q);
        q->state = WQ_DONE;
        w->stats.completed++;
        w->stats.images += q->run->n_images;
        send_done(q);
    }
}

/* The model's process answered the chain's run, or died with it. */
static void on_chain_ran(void *ud, const struct infer_procs_done *d)
{
    struct wquery *head = ud;
    struct worker *w = head->w;
    if (d->status == ID_ECLOSED) {
        /* The process died before the run was done: nothing of it came
         * back, so the queries run again, in a new process (the crash has
         * been counted against the model). */
        for (struct wquery *q = head, *next; q; q = next) {
            next = q->chain;
            q->chain = NULL;
            q->state = WQ_READY;
        }
        w->running--;
        kick(w);
        return;
    }
    if (d->status < 0) {
        chain_fail(head, d->error, d->model_failed);
    } else {
        size_t k = 0;
        for (struct wquery *q = head; q; q = q->chain)
            for (size_t i = 0; i < q->run->n_images; i++)
                if (q->paths[i])
                    q->results[i] = d->results[k++];
    }
    size_t n = 0;
    for (struct wquery *q = head; q; q = q->chain)
        n += q->run->n_images;
    uint64_t us = id_now_us() - head->run_started_us;
    for (struct wquery *q = head; q; q = q->chain) {
        q->run_us = n ? d->cpu_us * q->run->n_images / n : d->cpu_us;
        q->infer_ms = (n ? us * q->run->n_images / n : us) / 1000;
    }
    finish_chain(head);
    kick(w);
}

/* Input i of an online run: an encoded image, or a tensor's values. */
static const ProtobufCBinaryData *online_bytes(const Idunno__OnlineRun *o, size_t i)
{
    return o->n_tensors ? &o->tensors[i]->data : &o->images[i];
}

/* Hands the chain to its model's process: one run over the images that were
 * fetched. A failure to start it fails the chain at once. */
static void run_chain(struct worker *w, struct wquery *head)
{
    Idunno__QueryRun *run = head->run;
    char err[200] = "", msg[sizeof head->model_err];
    head->run_started_us = id_now_us();
    uint64_t wall = id_wall_ms();
    for (struct wquery *q = head; q; q = q->chain)
        q->run_wall_ms = wall;
    if (head->model_status < 0) {
        snprintf(msg, sizeof msg, "model %s: model file unavailable: %s", run->model->name,
                 id_strerror(head->model_status));
        chain_fail(head, msg, 0);
        finish_chain(head);
        return;
    }
    size_t n = 0, k = 0;
    for (struct wquery *q = head; q; q = q->chain)
        n += q->run->n_images;
    struct infer_input *in = calloc(n ? n : 1, sizeof *in);
    if (!in) {
        chain_fail(head, "out of memory", 0);
        finish_chain(head);
        return;
    }
    for (struct wquery *q = head; q; q = q->chain)
        for (size_t i = 0; i < q->run->n_images; i++)
            if (q->paths[i]) {
                in[k].tensor = q->online_tensors;
                if (q->online_given) {
                    in[k].data = online_bytes(q->online_given, i)->data;
                    in[k].len = online_bytes(q->online_given, i)->len;
                } else {
                    in[k].path = q->paths[i];
                }
                k++;
            }
    /* A process per model version: a re-trained model starts afresh, even
     * when only its card changed (the same file, another version). */
    char key[INFER_KEY_MAX];
    snprintf(key, sizeof key, "%s@%llx.%u", run->model->name,
             (unsigned long long)strtoull(run->model->blob, NULL, 16), run->model->version);
    int rc = infer_procs_run(w->procs, key, head->model_path, run->model->card, in, k, on_chain_ran,
                             head, err, sizeof err);
    free(in);
    if (rc < 0) {
        /* ID_EMODEL: the model was given up after crashing its processes. */
        snprintf(msg, sizeof msg, "%s", err[0] ? err : id_strerror(rc));
        chain_fail(head, msg, rc == ID_EMODEL);
        finish_chain(head);
    }
}

/* A query's results as QueryResult messages, in arrays of n_images each
 * (one calloc per array: rows_free releases them). */
struct result_rows {
    Idunno__QueryResult *rows;
    Idunno__QueryResult **ptrs;
    uint32_t (*cls)[INFER_MAX_K];
    float (*probs)[INFER_MAX_K];
    char (*errs)[200];
};

static void rows_free(struct result_rows *r)
{
    free(r->rows);
    free(r->ptrs);
    free(r->cls);
    free(r->probs);
    free(r->errs);
}

static int rows_fill(struct wquery *q, struct result_rows *rr)
{
    Idunno__QueryRun *run = q->run;
    size_t n = run->n_images;
    rr->rows = calloc(n ? n : 1, sizeof *rr->rows);
    rr->ptrs = calloc(n ? n : 1, sizeof *rr->ptrs);
    rr->cls = calloc(n ? n : 1, sizeof *rr->cls);
    rr->probs = calloc(n ? n : 1, sizeof *rr->probs);
    rr->errs = calloc(n ? n : 1, sizeof *rr->errs);
    if (!rr->rows || !rr->ptrs || !rr->cls || !rr->probs || !rr->errs) {
        rows_free(rr);
        return ID_ENOMEM;
    }
    Idunno__QueryResult *rows = rr->rows, **ptrs = rr->ptrs;
    uint32_t(*cls)[INFER_MAX_K] = rr->cls;
    float(*probs)[INFER_MAX_K] = rr->probs;
    char(*errs)[200] = rr->errs;
    for (size_t i = 0; i < n; i++) {
        Idunno__QueryResult *r = &rows[i];
        idunno__query_result__init(r);
        r->image = run->images[i]->index;
        r->version = run->model->version;
        const struct infer_result *ir = &q->results[i];
        if (q->model_err[0])
            snprintf(errs[i], sizeof errs[i], "%s", q->model_err);
        else if (q->image_status[i] < 0)
            snprintf(errs[i], sizeof errs[i], "cannot read %s: %s", run->images[i]->name,
                     id_strerror(q->image_status[i]));
        else if (ir->status < 0)
            snprintf(errs[i], sizeof errs[i], "%s: %s", run->images[i]->name,
                     ir->error[0] ? ir->error : id_strerror(ir->status));
        if (errs[i][0]) {
            r->error = errs[i];
            q->w->stats.failed_images++;
        } else {
            /* Exactly the card's k entries (the process was held to them),
             * or the raw output's values. */
            size_t k = ir->k > 0 && ir->k <= INFER_MAX_K ? (size_t)ir->k : 0;
            for (size_t e = 0; e < k; e++) {
                cls[i][e] = (uint32_t)ir->top_class[e];
                probs[i][e] = ir->top_prob[e];
            }
            if (ir->raw) {
                r->n_values = k;
                r->values = probs[i];
            } else {
                r->n_classes = r->n_probs = k;
                r->classes = cls[i];
                r->probs = probs[i];
            }
        }
        ptrs[i] = r;
    }
    return 0;
}

static void pack_done(struct wquery *q)
{
    Idunno__QueryRun *run = q->run;
    size_t n = run->n_images;
    struct result_rows rr;
    if (rows_fill(q, &rr) < 0)
        return;
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT;
    d.job = run->job;
    d.query = run->query;
    d.worker = q->w->name;
    uint64_t now = id_wall_ms();
    d.duration_ms = now > run->dispatched_ms ? (uint32_t)(now - run->dispatched_ms) : 0;
    d.wait_ms = q->run_wall_ms > run->dispatched_ms
                    ? (uint32_t)(q->run_wall_ms - run->dispatched_ms)
                    : 0;
    d.run_us = q->run_us > UINT32_MAX ? UINT32_MAX : (uint32_t)q->run_us;
    if (q->stop_job)
        d.stop_job = q->model_err;
    /* A long wait before the run is worth a line: which part was slow. */
    if (d.wait_ms >= WORKER_SLOW_START_MS)
        LOG_INFO("worker",
                 "query %llu of job %u started %u ms after its dispatch: inputs %llu ms, "
                 "waiting for another batch %llu ms",
                 (unsigned long long)run->query, run->job, d.wait_ms,
                 (unsigned long long)(q->ready_ms - q->started_ms),
                 (unsigned long long)(q->queued_ms - q->ready_ms));
    d.n_results = n;
    d.results = rr.ptrs;
    q->done_len = idunno__query_done__get_packed_size(&d);
    q->done = malloc(q->done_len ? q->done_len : 1);
    if (q->done)
        idunno__query_done__pack(&d, q->done);
    rows_free(&rr);
}

/* An online run is over: its results (or why the model failed it) answer
 * the coordinator's request. */
static void answer_online(struct wquery *q)
{
    struct net_request *req = q->online_req;
    q->online_req = NULL;
    if (q->model_err[0]) {
        LOG_WARN("worker", "online run of %s: %s", q->run->model->name, q->model_err);
        net_reply_error(req, q->model_status < 0 ? q->model_status : ID_EMODEL, q->model_err, NULL);
        return;
    }
    struct result_rows rr;
    if (rows_fill(q, &rr) < 0) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    Idunno__OnlineResult r = IDUNNO__ONLINE_RESULT__INIT;
    r.n_results = q->run->n_images;
    r.results = rr.ptrs;
    r.worker = q->w->name;
    r.version = q->run->model->version;
    uint64_t ms = id_now_ms() - q->started_ms;
    r.run_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    r.run_us = q->run_us > UINT32_MAX ? UINT32_MAX : (uint32_t)q->run_us;
    q->w->stats.online++;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_ONLINE_RUN_RESP, &r.base);
    rows_free(&rr);
}

static void fetch_one(struct wquery *q, long image, const char *blob, uint64_t size,
                      const ProtobufCBinaryData *sha, char **sources, size_t n_sources);

/* A fetched input that is gone from the store by the time its query runs
 * (the store report removed a copy that had stayed unnamed for the grace
 * while the query waited) is fetched again from its sources rather than
 * reported unreadable. Bounded: an input that keeps vanishing fails. */
#define WORKER_MAX_REFETCHES 3

/* Resolves a ready query's paths (on the loop: the store index is the
 * loop's) and marks it running. Returns 0, or 1 if an input had vanished
 * and the query went back to fetching it. */
static int prepare_run(struct worker *w, struct wquery *q)
{
    struct store *st = sdfs_store(w->sdfs);
    Idunno__QueryRun *run = q->run;
    int model_gone = q->model_status == 0 &&
                     store_path(st, run->model->blob, q->model_path, sizeof q->model_path) < 0;
    size_t gone = model_gone;
    for (size_t i = 0; i < run->n_images; i++) {
        char p[700];
        free(q->paths[i]); /* resolved before a run that its process's crash undid */
        q->paths[i] = NULL;
        if (q->online_given && q->image_status[i] == 0)
            q->paths[i] = strdup(""); /* given in the run message (online_input) */
        else if (q->online_files && q->image_status[i] == 0)
            q->paths[i] = strdup(q->online_files[i]);
        else if (q->image_status[i] == 0 && store_path(st, run->images[i]->blob, p, sizeof p) == 0)
            q->paths[i] = strdup(p);
        else if (q->image_status[i] == 0)
            gone++;
    }
    if (gone && q->refetches < WORKER_MAX_REFETCHES) {
        q->refetches++;
        LOG_INFO("worker",
                 "job %u query %llu: %zu fetched input(s) vanished before the run; "
                 "fetching again",
                 run->job, (unsigned long long)run->query, gone);
        q->state = WQ_FETCHING;
        q->fetching = 1; /* no settle (and no kick) until all have started */
        if (model_gone)
            fetch_one(q, -1, run->model->blob, run->model->size, &run->model->sha256,
                      run->model->sources, run->model->n_sources);
        for (size_t i = 0; i < run->n_images; i++) {
            Idunno__QueryImage *im = run->images[i];
            if (q->image_status[i] == 0 && !q->paths[i])
                fetch_one(q, (long)i, im->blob, im->size, &im->sha256, im->sources, im->n_sources);
        }
        /* The caller's kick() finds it ready again if every fetch finished at
         * once; otherwise the last fetch's settle kicks. */
        if (--q->fetching == 0) {
            q->state = WQ_READY;
            q->ready_ms = id_now_ms();
        }
        return 1;
    }
    if (model_gone)
        q->model_status = ID_ENOTFOUND;
    for (size_t i = 0; i < run->n_images; i++)
        if (q->image_status[i] == 0 && !q->paths[i])
            q->image_status[i] = ID_ENOTFOUND;
    q->state = WQ_RUNNING;
    q->queued_ms = id_now_ms();
    return 0;
}

/* Can q join a chain headed by head? Same model file and version (so the
 * same card), both have it. */
static int chains_with(const struct wquery *head, const struct wquery *q)
{
    return !q->preload && !head->preload && q->state == WQ_READY && q->model_status == 0 &&
           head->model_status == 0 && strcmp(q->run->model->blob, head->run->model->blob) == 0 &&
           q->run->model->version == head->run->model->version;
}

/* Hands the ready query q to its model's process, with the ready queries
 * after it that can share its model run. */
static void start_chain(struct worker *w, struct wquery *head)
{
    if (prepare_run(w, head))
        return;
    struct wquery *tail = head;
    size_t n = 1, images = head->run->n_images, given = head->given_bytes;
    /* The others' model path resolves as the head's did (same file, same
     * moment): the chain's run uses the head's. */
    for (struct wquery *q = head->next; q && n < WORKER_CHAIN_MAX; q = q->next) {
        if (!chains_with(head, q) || images + q->run->n_images > WORKER_CHAIN_IMAGES ||
            given + q->given_bytes > WORKER_CHAIN_GIVEN_BYTES)
            continue;
        if (prepare_run(w, q))
            continue;
        tail->chain = q;
        tail = q;
        n++;
        images += q->run->n_images;
        given += q->given_bytes;
    }
    w->running++;
    run_chain(w, head);
}

/* Starts the oldest ready queries, up to WORKER_MAX_RUNNING chains at once. */
static void kick(struct worker *w)
{
    while (w->running < WORKER_MAX_RUNNING && !w->stopping) {
        struct wquery *q = w->queries;
        while (q && q->state != WQ_READY)
            q = q->next;
        if (!q)
            return;
        start_chain(w, q);
    }
}

/* ---- fetching inputs ------------------------------------------------------------------------ */

struct fetch_ref {
    struct wquery *q;
    long image; /* -1: the model */
};

static void fetch_settled(struct wquery *q)
{
    if (--q->fetching == 0 && q->state == WQ_FETCHING) {
        q->state = WQ_READY;
        q->ready_ms = id_now_ms();
        kick(q->w);
    }
}

static void on_fetched(void *ud, int status)
{
    struct fetch_ref *r = ud;
    struct wquery *q = r->q;
    if (status < 0) {
        if (r->image < 0)
            q->model_status = status;
        else
            q->image_status[r->image] = status;
    }
    free(r);
    fetch_settled(q);
}

static void fetch_one(struct wquery *q, long image, const char *blob, uint64_t size,
                      const ProtobufCBinaryData *sha, char **sources, size_t n_sources)
{
    int *slot = image < 0 ? &q->model_status : &q->image_status[image];
    if (!blob || !sdfs_blob_ok(blob) || sha->len != 32) {
        *slot = ID_ENOTFOUND;
        return;
    }
    struct fetch_ref *r = malloc(sizeof *r);
    if (!r) {
        *slot = ID_ENOMEM;
        return;
    }
    *r = (struct fetch_ref){q, image};
    q->fetching++;
    int rc = sdfs_fetch_local(q->w->sdfs, blob, size, sha->data, sources, n_sources, on_fetched, r);
    if (rc < 0) {
        free(r);
        *slot = rc;
        q->fetching--;
    }
}

static void wq_start(struct wquery *q)
{
    Idunno__QueryRun *run = q->run;
    q->fetching = 1; /* held while the fetches start: some may finish at once */
    Idunno__ModelInfo *m = run->model;
    fetch_one(q, -1, m->blob, m->size, &m->sha256, m->sources, m->n_sources);
    for (size_t i = 0; i < run->n_images && !wq_online(q); i++) {
        Idunno__QueryImage *im = run->images[i];
        fetch_one(q, (long)i, im->blob, im->size, &im->sha256, im->sources, im->n_sources);
    }
    fetch_settled(q);
}

/* ---- results to the coordinator ------------------------------------------------------------- */

struct done_call {
    struct worker *w;
    uint32_t job;
    uint64_t query;
};

static struct wquery *wq_find(struct worker *w, uint32_t job, uint64_t query)
{
    for (struct wquery *q = w->queries; q; q = q->next)
        if (!q->preload && !q->online_req && q->run->job == job && q->run->query == query)
            return q;
    return NULL;
}

static void on_done_ack(void *ud, const struct net_result *res)
{
    struct done_call *dc = ud;
    struct worker *w = dc->w;
    struct wquery *q = w->stopping ? NULL : wq_find(w, dc->job, dc->query);
    free(dc);
    if (!q)
        return;
    q->sending = 0;
    if (res->status < 0) {
        w->coord_addr[0] = 0; /* it may have died or stepped down */
        q->next_try_ms = id_now_ms() + WORKER_RETRY_MS;
        return;
    }
    wq_unlink(w, q);
    wq_free(q);
}

static void send_done(struct wquery *q)
{
    struct worker *w = q->w;
    if (q->sending || !q->done)
        return;
    struct done_call *dc = malloc(sizeof *dc);
    if (!dc)
        return;
    *dc = (struct done_call){w, q->run->job, q->run->query};
    /* Straight to the coordinator saves the hops through this node and, on a
     * non-voter, through a relaying voter; a coordinator that has just lost
     * its place forwards the result itself. */
    const char *to = w->coord_addr[0] ? w->coord_addr : w->addr;
    if (net_call(w->net, to, IDUNNO__MSG_TYPE__MSG_JOB_DONE_REQ, q->done, q->done_len,
                 WORKER_DONE_TIMEOUT_MS, on_done_ack, dc) == 0)
        q->sending = 1;
    else {
        free(dc);
        q->next_try_ms = id_now_ms() + WORKER_RETRY_MS;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t now = id_now_ms();
    for (struct wquery *q = w->queries; q; q = q->next)
        if (q->state == WQ_DONE && !q->sending && now >= q->next_try_ms)
            send_done(q);
}

/* ---- requests ------------------------------------------------------------------------------- */

static struct wquery *wq_new(struct worker *w, Idunno__QueryRun *run)
{
    struct wquery *q = calloc(1, sizeof *q);
    size_t n = run->n_images;
    if (q) {
        q->image_status = calloc(n ? n : 1, sizeof *q->image_status);
        q->paths = calloc(n ? n : 1, sizeof *q->paths);
        q->results = calloc(n ? n : 1, sizeof *q->results);
    }
    if (!q || !q->image_status || !q->paths || !q->results) {
        if (q) {
            free(q->image_status);
            free(q->paths);
            free(q->results);
            free(q);
        }
        return NULL;
    }
    q->w = w;
    q->run = run;
    q->started_ms = id_now_ms();
    return q;
}

static void on_run(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct worker *w = ud;
    Idunno__QueryRun *run = ctl_req_unpack(req, &idunno__query_run__descriptor, body, len,
                                           w->stopping);
    if (!run)
        return;
    if (!run->model || !run->model->name[0] || run->n_images == 0 || run->n_images > 1024) {
        net_reply_error(req, ID_EINVAL, "bad QueryRun", NULL);
        idunno__query_run__free_unpacked(run, NULL);
        return;
    }
    if (wq_find(w, run->job, run->query)) { /* a retried dispatch */
        idunno__query_run__free_unpacked(run, NULL);
        net_reply(req, IDUNNO__MSG_TYPE__MSG_JOB_RUN_RESP, NULL, 0);
        return;
    }
    if (wq_count(w) >= WORKER_MAX_QUERIES) {
        idunno__query_run__free_unpacked(run, NULL);
        net_reply_error(req, ID_EBUSY, "worker holds too many queries", NULL);
        return;
    }
    struct wquery *q = wq_new(w, run);
    if (!q) {
        idunno__query_run__free_unpacked(run, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    if (run->coordinator[0] && strlen(run->coordinator) < sizeof w->coord_addr)
        snprintf(w->coord_addr, sizeof w->coord_addr, "%s", run->coordinator);
    /* The coordinator sends a model's queries only where it is loaded
     * (dispatch.h): this says when that did not hold (a model that cannot be
     * loaded, whose queries come to report it, or more versions in use than
     * this worker lists). Tests count these lines. */
    if (!is_loaded(w, run->model))
        LOG_INFO("worker", "query %llu of job %u: model %s version %u was not loaded here",
                 (unsigned long long)run->query, run->job, run->model->name, run->model->version);
    wq_append(w, q);
    w->stats.accepted++;
    net_reply(req, IDUNNO__MSG_TYPE__MSG_JOB_RUN_RESP, NULL, 0);
    wq_start(q);
}

static void on_state(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct worker *w = ud;
    size_t n = wq_count(w);
    Idunno__WorkerQuery *rows = calloc(n ? n : 1, sizeof *rows);
    Idunno__WorkerQuery **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    uint32_t **idx = calloc(n ? n : 1, sizeof *idx);
    if (!rows || !ptrs || !idx) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        goto out;
    }
    size_t k = 0;
    for (struct wquery *q = w->queries; q && k < n; q = q->next) {
        if (q->preload || wq_online(q))
            continue;
        Idunno__WorkerQuery *r = &rows[k];
        idunno__worker_query__init(r);
        r->job = q->run->job;
        r->query = q->run->query;
        r->dispatched_ms = q->run->dispatched_ms;
        idx[k] = calloc(q->run->n_images, sizeof **idx);
        if (idx[k]) {
            for (size_t i = 0; i < q->run->n_images; i++)
                idx[k][i] = q->run->images[i]->index;
            r->n_images = q->run->n_images;
            r->images = idx[k];
        }
        ptrs[k] = r;
        k++;
    }
    Idunno__WorkerState st = IDUNNO__WORKER_STATE__INIT;
    st.worker = w->name;
    st.n_queries = k;
    st.queries = ptrs;
    char *models[WORKER_LOADED_KEYS];
    for (size_t i = 0; i < WORKER_LOADED_KEYS && w->loaded[i][0]; i++)
        models[st.n_models++] = w->loaded[i];
    st.models = models;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_JOB_WORKER_STATE_RESP, &st.base);
out:
    if (idx)
        for (size_t i = 0; i < n; i++)
            free(idx[i]);
    free(idx);
    free(rows);
    free(ptrs);
}

/* Writes an online image to a file of its own under the online directory
 * (created afresh: O_EXCL, never through a link). Returns the path
 * (malloc'd) or NULL. */
static char *online_write(struct worker *w, const ProtobufCBinaryData *img)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%llu", w->online_dir, (unsigned long long)++w->online_seq);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    size_t off = 0;
    while (off < img->len) {
        ssize_t k = write(fd, img->data + off, img->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    close(fd);
    if (off < img->len) {
        unlink(path);
        return NULL;
    }
    return strdup(path);
}

/* An online run: the images of a user's request, run now on the model and
 * answered (coord_online.c picked this worker). A query with the model, the
 * images as files, and no job: it runs in the model's process like any
 * query, chained with others of the same model version if they are ready.
 * Tensors (the model's input itself, checked against the model by the
 * leader) are written to files the same way, flagged for the model's
 * process to read as they are. */
static void on_online_run(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct worker *w = ud;
    Idunno__OnlineRun *o = ctl_req_unpack(req, &idunno__online_run__descriptor, body, len,
                                          w->stopping);
    if (!o)
        return;
    size_t n = o->n_images ? o->n_images : o->n_tensors;
    if (!o->model || !o->model->name[0] || n == 0 || n > WORKER_CHAIN_IMAGES ||
        (o->n_images && o->n_tensors)) {
        net_reply_error(req, ID_EINVAL, "bad OnlineRun", NULL);
        idunno__online_run__free_unpacked(o, NULL);
        return;
    }
    if (wq_count(w) >= WORKER_MAX_QUERIES) {
        net_reply_error(req, ID_EBUSY, "worker holds too many queries", NULL);
        idunno__online_run__free_unpacked(o, NULL);
        return;
    }
    /* A QueryRun made of the request's model (taken from it) and one image
     * entry per file, freed by free_unpacked like a received one: every part
     * comes from the default allocator. */
    Idunno__QueryRun *run = calloc(1, sizeof *run);
    Idunno__QueryImage **ims = calloc(n, sizeof *ims);
    struct wquery *q = NULL;
    int ok = run && ims;
    if (ok) {
        idunno__query_run__init(run);
        run->model = o->model;
        o->model = NULL;
        run->images = ims;
        for (size_t i = 0; i < n && ok; i++) {
            ims[i] = calloc(1, sizeof **ims);
            char label[32];
            snprintf(label, sizeof label, "image %zu", i);
            ok = ims[i] != NULL;
            if (ok) {
                idunno__query_image__init(ims[i]);
                ims[i]->index = (uint32_t)i;
                ims[i]->name = strdup(label);
                ok = ims[i]->name != NULL;
                run->n_images = i + 1;
            }
        }
    }
    if (ok)
        q = wq_new(w, run);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += online_bytes(o, i)->len;
    int given = bytes <= WORKER_GIVEN_BYTES;
    if (q && !given)
        q->online_files = calloc(n, sizeof *q->online_files);
    if (!q || (!given && !q->online_files)) {
        if (q)
            wq_free(q);
        else if (run)
            idunno__query_run__free_unpacked(run, NULL);
        else
            free(ims);
        idunno__online_run__free_unpacked(o, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    /* An image that cannot be stored is that image's error, as one that
     * cannot be fetched is in a job's query. */
    q->online_tensors = o->n_tensors > 0;
    if (given) {
        q->online_given = o; /* its bytes go in the run message */
        q->given_bytes = bytes;
    } else {
        for (size_t i = 0; i < n; i++)
            if (!(q->online_files[i] = online_write(w, online_bytes(o, i))))
                q->image_status[i] = ID_EIO;
        idunno__online_run__free_unpacked(o, NULL);
    }
    q->online_req = req;
    wq_append(w, q);
    w->stats.accepted++;
    wq_start(q);
}

/* Loads a model ahead of its first query: fetched, then loaded on the pool in
 * the same queue as the batches. */
static void on_preload(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct worker *w = ud;
    Idunno__ModelInfo *m = idunno__model_info__unpack(NULL, len, body);
    if (!m || w->stopping) {
        net_reply_error(req, m ? ID_ESHUTDOWN : ID_EPROTO, "cannot preload", NULL);
        if (m)
            idunno__model_info__free_unpacked(m, NULL);
        return;
    }
    /* A query with the model and no images. */
    Idunno__QueryRun *run = calloc(1, sizeof *run);
    if (!run) {
        idunno__model_info__free_unpacked(m, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    idunno__query_run__init(run);
    run->model = m; /* freed with run by free_unpacked: both come from the default allocator */
    struct wquery *q = wq_new(w, run);
    if (!q) {
        idunno__query_run__free_unpacked(run, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    q->preload = 1;
    q->preload_req = req;
    wq_append(w, q);
    wq_start(q);
}

/* ---- life cycle ----------------------------------------------------------------------------- */

/* DATA/online, emptied: what a run left there when the node died is
 * nobody's now. */
static int online_dir_prepare(struct worker *w, const char *data_dir)
{
    snprintf(w->online_dir, sizeof w->online_dir, "%s/online",
             data_dir && data_dir[0] ? data_dir : ".");
    if (mkdir(w->online_dir, 0700) < 0 && errno != EEXIST)
        return ID_EIO;
    DIR *d = opendir(w->online_dir);
    if (!d)
        return ID_EIO;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    return 0;
}

int worker_create(const struct worker_config *cfg, struct worker **out, char *errmsg, size_t len)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w)
        return ID_ENOMEM;
    w->loop = cfg->loop;
    w->net = cfg->net;
    w->sdfs = cfg->sdfs;
    snprintf(w->name, sizeof w->name, "%s", cfg->name);
    snprintf(w->addr, sizeof w->addr, "%s", cfg->addr);
    if (cfg->sched_batch)
        LOG_INFO("worker", "model runs are scheduled as SCHED_BATCH (--infer-sched batch)");
    if (cfg->gate_slots > 0)
        LOG_INFO("worker", "at most %d model runs at once on this host (--infer-slots)",
                 cfg->gate_slots);
    struct infer_procs_config pc = {.loop = w->loop,
                                    .node = cfg->name,
                                    .log_path = cfg->log_path,
                                    .threads = cfg->threads ? cfg->threads : 1,
                                    .gate_slots = cfg->gate_slots,
                                    .gate_dir = cfg->gate_dir,
                                    .sched_batch = cfg->sched_batch,
                                    .test_hooks = cfg->test_hooks,
                                    .max_idle = WORKER_CACHE_MODELS,
                                    .run_timeout_ms = cfg->run_timeout_ms};
    int rc = infer_procs_create(&pc, &w->procs);
    if (rc == 0)
        rc = net_on_request(w->net, IDUNNO__MSG_TYPE__MSG_JOB_RUN_REQ, on_run, w);
    if (rc == 0)
        rc = net_on_request(w->net, IDUNNO__MSG_TYPE__MSG_JOB_WORKER_STATE_REQ, on_state, w);
    if (rc == 0)
        rc = net_on_request(w->net, IDUNNO__MSG_TYPE__MSG_JOB_PRELOAD_REQ, on_preload, w);
    if (rc == 0)
        rc = net_on_request(w->net, IDUNNO__MSG_TYPE__MSG_ONLINE_RUN_REQ, on_online_run, w);
    if (rc == 0)
        rc = online_dir_prepare(w, cfg->data_dir);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot start the inference worker: %s", id_strerror(rc));
        infer_procs_destroy(w->procs);
        free(w);
        return rc;
    }
    uv_timer_init(w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, WORKER_TICK_MS, WORKER_TICK_MS);
    *out = w;
    return 0;
}

static void worker_release(struct worker *w)
{
    while (w->queries) {
        struct wquery *q = w->queries;
        w->queries = q->next;
        wq_free(q); /* a running one's process was killed by worker_stop */
    }
    free(w);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct worker *w = h->data;
    w->tick_closed = 1;
    if (w->destroy_pending)
        worker_release(w);
}

void worker_stop(struct worker *w)
{
    if (!w || w->stopping)
        return;
    w->stopping = 1;
    uv_close((uv_handle_t *)&w->tick, on_tick_closed);
    for (struct wquery *q = w->queries; q; q = q->next) {
        if (q->preload_req) {
            net_reply_error(q->preload_req, ID_ESHUTDOWN, "the node is stopping", NULL);
            q->preload_req = NULL;
        }
        if (q->online_req) {
            net_reply_error(q->online_req, ID_ESHUTDOWN, "the node is stopping", NULL);
            q->online_req = NULL;
        }
    }
    /* The model processes are killed: results not yet delivered are lost
     * with the node, as a pool thread's were, and requeued by the
     * coordinator when the node leaves. */
    infer_procs_destroy(w->procs);
    w->procs = NULL;
}

void worker_destroy(struct worker *w)
{
    if (!w)
        return;
    worker_stop(w);
    /* The tick's close callback may not have run yet (stopped in this loop
     * turn): it frees w then. */
    if (w->tick_closed)
        worker_release(w);
    else
        w->destroy_pending = 1;
}

void worker_get_stats(struct worker *w, struct worker_stats *out)
{
    *out = w->stats;
    out->holding = wq_count(w);
}
