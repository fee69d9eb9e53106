/* worker.c — the inference worker (see worker.h). */
#include "sched/worker.h"

#include <sched.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "idunno.pb-c.h"
#include "infer/gate.h"
#include "infer/infer.h"
#include "net/net.h"
#include "sdfs/catalog.h"
#include "sdfs/sdfs.h"
#include "sdfs/store.h"

#define WORKER_TICK_MS 100
#define WORKER_RETRY_MS 200
#define WORKER_DONE_TIMEOUT_MS 10000
#define WORKER_CACHE_MODELS 4
/* Queries held: running, or done with the result not yet committed. A burst
 * of cheap queries completes faster than the control plane commits, so the
 * bound covers a few commit times of a busy worker's results. */
#define WORKER_MAX_QUERIES 256
/* Batches run at once. The coordinator bounds what it dispatches (a slot, and
 * a spare one for a job with nothing else running: fair.h); beyond that only
 * queries of a job stopped while they ran, which it no longer counts, can be
 * here. The bound is a guard, and leaves one of libuv's four pool threads to
 * the store's disk work. ONNX Runtime runs one session from several threads
 * at once, so two batches of one model may run side by side. */
#define WORKER_MAX_RUNNING 3
#define WORKER_SLOW_START_MS 50
/* Ready queries of one model run as one chain: one pool job and one model
 * run over all their images. A worker holds several queries of one job only
 * when the coordinator sends it a burst of cheap ones (fair.h), and running
 * them together saves a pool hand-off and a model run's fixed cost per
 * query. The bounds keep a chain's tensor small. */
#define WORKER_CHAIN_MAX 8
#define WORKER_CHAIN_IMAGES 64

enum wq_state { WQ_FETCHING, WQ_READY, WQ_RUNNING, WQ_DONE };

struct wquery {
    struct worker *w;
    Idunno__QueryRun *run; /* as received (owned) */
    int preload;           /* load the model only; nothing to report */
    enum wq_state state;
    unsigned fetching;     /* fetches not yet finished (+1 while starting them) */
    int model_status;
    int *image_status;     /* per image: 0 or the fetch error */
    /* Set on the loop before the pool runs the batch. */
    char model_path[700];
    char **paths;
    struct infer_result *results;
    char model_err[200];
    uint64_t started_ms, infer_ms;
    uint64_t run_us;      /* its share of the model run's CPU time (by images) */
    uint64_t run_wall_ms; /* wall clock when the batch started on the pool */
    struct wquery *chain; /* while WQ_RUNNING: the next query of its chain */
    uint64_t ready_ms, queued_ms; /* inputs all here; handed to the pool (monotonic) */
    uv_work_t work; /* while WQ_RUNNING: the chain on the pool (its first query's) */
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
    struct infer_cache *cache;
    struct infer_gate *gate; /* NULL: model runs not limited on this host */
    int sched_batch;         /* batches run as SCHED_BATCH */
    struct wquery *queries; /* FIFO */
    int running;            /* batches on the pool, at most WORKER_MAX_RUNNING */
    uv_timer_t tick;
    int stopping;
    struct worker_stats stats;
};

/* ---- queries -------------------------------------------------------------------------------- */

static void wq_free(struct wquery *q)
{
    if (q->run)
        idunno__query_run__free_unpacked(q->run, NULL);
    if (q->paths) {
        for (size_t i = 0; q->run && i < q->run->n_images; i++)
            free(q->paths[i]);
    }
    free(q->paths);
    free(q->image_status);
    free(q->results);
    free(q->done);
    free(q);
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

/* ---- running a batch on the pool ------------------------------------------------------------ */

static void kick(struct worker *w);
static void send_done(struct wquery *q);
static void run_chain(struct wquery *head);

/* Inference yields the CPU to the node's event loops: on a machine shared by
 * many nodes, heartbeats and probes that wait behind a batch would look like
 * failures. The pool thread is niced while it runs a batch (Linux nice values
 * are per thread) and restored after, which root may do; an unprivileged
 * node just keeps the pool thread niced.
 *
 * With --infer-sched batch it also runs as SCHED_BATCH, which tells the
 * kernel the thread is CPU-bound: a waking batch no longer preempts a running
 * one, so with ten workers on two cores each batch keeps its core (and its
 * caches) for whole time slices. Measured: the whole cluster went from
 * 0.83-0.87 to 0.93-0.95 of bare ONNX Runtime's ResNet50 throughput, but the
 * worst 10 s rate gap between jobs from 3.1-5.8% to 3.7-7.1%
 * (docs/inference.md), so it is not the default. Event loops stay
 * SCHED_OTHER either way. */
#define WORKER_NICE 10

static void on_work(uv_work_t *req)
{
    /* A pool thread's id and own priority are read once (they do not change
     * between batches): two system calls fewer per batch. */
    static __thread pid_t tid;
    static __thread int before;
    if (!tid) {
        tid = (pid_t)syscall(SYS_gettid);
        before = getpriority(PRIO_PROCESS, (id_t)tid);
    }
    setpriority(PRIO_PROCESS, (id_t)tid, WORKER_NICE);
    struct wquery *q = req->data;
    struct sched_param sp = {0};
    if (q->w->sched_batch)
        sched_setscheduler(tid, SCHED_BATCH, &sp);
    uint64_t wall = id_wall_ms();
    for (struct wquery *c = q; c; c = c->chain)
        c->run_wall_ms = wall;
    run_chain(q);
    if (q->w->sched_batch)
        sched_setscheduler(tid, SCHED_OTHER, &sp);
    setpriority(PRIO_PROCESS, (id_t)tid, before);
}

static void chain_fail(struct wquery *head, const char *msg)
{
    for (struct wquery *q = head; q; q = q->chain)
        snprintf(q->model_err, sizeof q->model_err, "%s", msg);
}

/* Runs a chain of queries of one model (often a chain of one) as one model
 * run over the images that were fetched; each query gets its images'
 * results and its share of the time. */
static void run_chain(struct wquery *head)
{
    struct worker *w = head->w;
    Idunno__QueryRun *run = head->run;
    /* The run's cost is the thread's CPU time: on a host shared by many
     * workers the wall time says more about the others than about the model. */
    uint64_t t0 = id_now_us(), cpu0 = id_thread_cpu_us();
    struct infer_model *m = NULL;
    char err[200] = "";
    uint64_t version = strtoull(run->model->blob, NULL, 16);
    int rc = head->model_status;
    if (rc == 0)
        rc = infer_cache_get(w->cache, run->model->name, version, head->model_path, &m, err, sizeof err);
    else
        snprintf(err, sizeof err, "model file unavailable: %s", id_strerror(rc));
    char msg[sizeof head->model_err];
    if (rc < 0) {
        snprintf(msg, sizeof msg, "model %s: %s", run->model->name, err);
        chain_fail(head, msg);
        head->infer_ms = (id_now_us() - t0) / 1000;
        return;
    }
    if (head->preload) {
        infer_cache_release(w->cache, m);
        return;
    }
    /* Only images that were fetched go to the model. */
    size_t n = 0, k = 0;
    for (struct wquery *q = head; q; q = q->chain)
        n += q->run->n_images;
    const char **paths = calloc(n ? n : 1, sizeof *paths);
    struct infer_result *res = calloc(n ? n : 1, sizeof *res);
    if (!paths || !res) {
        chain_fail(head, "out of memory");
    } else {
        for (struct wquery *q = head; q; q = q->chain)
            for (size_t i = 0; i < q->run->n_images; i++)
                if (q->paths[i])
                    paths[k++] = q->paths[i];
        if (k && infer_run_files(m, paths, k, k, res, err, sizeof err) < 0) {
            snprintf(msg, sizeof msg, "model %s failed: %s", run->model->name, err);
            chain_fail(head, msg);
        }
        k = 0;
        for (struct wquery *q = head; q; q = q->chain)
            for (size_t i = 0; i < q->run->n_images; i++)
                if (q->paths[i])
                    q->results[i] = res[k++];
    }
    free(paths);
    free(res);
    infer_cache_release(w->cache, m);
    uint64_t us = id_now_us() - t0, cpu = id_thread_cpu_us() - cpu0;
    for (struct wquery *q = head; q; q = q->chain) {
        q->run_us = n ? cpu * q->run->n_images / n : cpu;
        q->infer_ms = (n ? us * q->run->n_images / n : us) / 1000;
    }
}

static void pack_done(struct wquery *q)
{
    Idunno__QueryRun *run = q->run;
    size_t n = run->n_images;
    Idunno__QueryResult *rows = calloc(n ? n : 1, sizeof *rows);
    Idunno__QueryResult **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    uint32_t(*cls)[INFER_TOPK] = calloc(n ? n : 1, sizeof *cls);
    float(*probs)[INFER_TOPK] = calloc(n ? n : 1, sizeof *probs);
    char(*errs)[200] = calloc(n ? n : 1, sizeof *errs);
    if (!rows || !ptrs || !cls || !probs || !errs)
        goto out;
    for (size_t i = 0; i < n; i++) {
        Idunno__QueryResult *r = &rows[i];
        idunno__query_result__init(r);
        r->image = run->images[i]->index;
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
            for (int k = 0; k < INFER_TOPK; k++) {
                cls[i][k] = (uint32_t)ir->top_class[k];
                probs[i][k] = ir->top_prob[k];
            }
            r->n_classes = r->n_probs = INFER_TOPK;
            r->classes = cls[i];
            r->probs = probs[i];
        }
        ptrs[i] = r;
    }
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT;
    d.job = run->job;
    d.query = run->query;
    d.worker = q->w->name;
    uint64_t now = id_wall_ms();
    d.duration_ms = now > run->dispatched_ms ? (uint32_t)(now - run->dispatched_ms) : 0;
    d.wait_ms = q->run_wall_ms > run->dispatched_ms ? (uint32_t)(q->run_wall_ms - run->dispatched_ms) : 0;
    d.run_us = q->run_us > UINT32_MAX ? UINT32_MAX : (uint32_t)q->run_us;
    /* A long wait before the run is worth a line: which part was slow. */
    if (d.wait_ms >= WORKER_SLOW_START_MS)
        LOG_INFO("worker", "query %llu of job %u started %u ms after its dispatch: inputs %llu ms, "
                 "waiting for another batch %llu ms",
                 (unsigned long long)run->query, run->job, d.wait_ms,
                 (unsigned long long)(q->ready_ms - q->started_ms), (unsigned long long)(q->queued_ms - q->ready_ms));
    d.n_results = n;
    d.results = ptrs;
    q->done_len = idunno__query_done__get_packed_size(&d);
    q->done = malloc(q->done_len ? q->done_len : 1);
    if (q->done)
        idunno__query_done__pack(&d, q->done);
out:
    free(rows);
    free(ptrs);
    free(cls);
    free(probs);
    free(errs);
}

static void on_work_done(uv_work_t *req, int status)
{
    (void)status;
    struct wquery *head = req->data;
    struct worker *w = head->w;
    w->running--;
    if (w->stopping)
        return; /* the process is ending: the results are lost with it, and requeued */
    for (struct wquery *q = head, *next; q; q = next) {
        next = q->chain;
        q->chain = NULL;
        w->stats.infer_ms_total += q->infer_ms;
        if (q->preload) {
            if (q->model_err[0])
                LOG_WARN("worker", "preload failed: %s", q->model_err);
            else
                LOG_INFO("worker", "model %s loaded", q->run->model->name);
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
    kick(w);
}

/* Resolves a ready query's paths (on the loop: the store index is the
 * loop's) and marks it running. */
static void prepare_run(struct worker *w, struct wquery *q)
{
    struct store *st = sdfs_store(w->sdfs);
    Idunno__QueryRun *run = q->run;
    if (q->model_status == 0 && store_path(st, run->model->blob, q->model_path, sizeof q->model_path) < 0)
        q->model_status = ID_ENOTFOUND;
    for (size_t i = 0; i < run->n_images; i++) {
        char p[700];
        if (q->image_status[i] == 0 && store_path(st, run->images[i]->blob, p, sizeof p) == 0)
            q->paths[i] = strdup(p);
        else if (q->image_status[i] == 0)
            q->image_status[i] = ID_ENOTFOUND;
    }
    q->state = WQ_RUNNING;
    q->queued_ms = id_now_ms();
}

/* Can q join a chain headed by head? Same model file, both have it. */
static int chains_with(const struct wquery *head, const struct wquery *q)
{
    return !q->preload && !head->preload && q->state == WQ_READY && q->model_status == 0 &&
           head->model_status == 0 && strcmp(q->run->model->blob, head->run->model->blob) == 0;
}

/* Hands the ready query q to the pool, with the ready queries after it that
 * can share its model run. Returns 0, or -1 if it could not be queued (the
 * chain then failed as a whole, and on_work_done has kicked again). */
static int start_chain(struct worker *w, struct wquery *head)
{
    prepare_run(w, head);
    struct wquery *tail = head;
    size_t n = 1, images = head->run->n_images;
    /* The others' model path resolves as the head's did (same file, same
     * moment): the chain's run uses the head's. */
    for (struct wquery *q = head->next; q && n < WORKER_CHAIN_MAX; q = q->next) {
        if (!chains_with(head, q) || images + q->run->n_images > WORKER_CHAIN_IMAGES)
            continue;
        prepare_run(w, q);
        tail->chain = q;
        tail = q;
        n++;
        images += q->run->n_images;
    }
    w->running++;
    head->work.data = head;
    if (uv_queue_work(w->loop, &head->work, on_work, on_work_done) < 0) {
        chain_fail(head, "cannot start the batch");
        on_work_done(&head->work, 0);
        return -1;
    }
    return 0;
}

/* Starts the oldest ready queries, up to WORKER_MAX_RUNNING chains at once. */
static void kick(struct worker *w)
{
    while (w->running < WORKER_MAX_RUNNING && !w->stopping) {
        struct wquery *q = w->queries;
        while (q && q->state != WQ_READY)
            q = q->next;
        if (!q || start_chain(w, q) < 0)
            return;
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
    for (size_t i = 0; i < run->n_images; i++) {
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
        if (!q->preload && q->run->job == job && q->run->query == query)
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
    if (w->stopping) {
        net_reply_error(req, ID_ESHUTDOWN, "node shutting down", NULL);
        return;
    }
    Idunno__QueryRun *run = idunno__query_run__unpack(NULL, len, body);
    if (!run || !run->model || !run->model->name[0] || run->n_images == 0 ||
        run->n_images > 1024) {
        net_reply_error(req, run ? ID_EINVAL : ID_EPROTO, "bad QueryRun", NULL);
        if (run)
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
        if (q->preload)
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
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_JOB_WORKER_STATE_RESP, &st.base);
out:
    if (idx)
        for (size_t i = 0; i < n; i++)
            free(idx[i]);
    free(idx);
    free(rows);
    free(ptrs);
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
    wq_append(w, q);
    net_reply(req, IDUNNO__MSG_TYPE__MSG_JOB_PRELOAD_RESP, NULL, 0);
    wq_start(q);
}

/* ---- life cycle ----------------------------------------------------------------------------- */

int worker_create(const struct worker_config *cfg, struct worker **out, char *errmsg, size_t len)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w)
        return ID_ENOMEM;
    w->loop = cfg->loop;
    w->net = cfg->net;
    w->sdfs = cfg->sdfs;
    snprintf(w->name, sizeof w->name, "%s", cfg->name);
    w->sched_batch = cfg->sched_batch;
    if (w->sched_batch)
        LOG_INFO("worker", "model runs are scheduled as SCHED_BATCH (--infer-sched batch)");
    snprintf(w->addr, sizeof w->addr, "%s", cfg->addr);
    if (cfg->gate_slots > 0) {
        unsigned slots = (unsigned)cfg->gate_slots;
        char dir[300];
        if (cfg->gate_dir && cfg->gate_dir[0])
            snprintf(dir, sizeof dir, "%s", cfg->gate_dir);
        else
            infer_gate_default_dir(dir, sizeof dir);
        char err[400];
        if (infer_gate_open(dir, slots, &w->gate, err, sizeof err) < 0)
            LOG_WARN("worker", "no inference gate (%s): model runs are not limited on this host",
                     err);
        else
            LOG_INFO("worker", "at most %u model runs at once on this host (gate %s)", slots, dir);
    }
    struct infer_options io = {.threads = cfg->threads ? cfg->threads : 1, .gate = w->gate};
    w->cache = infer_cache_new(WORKER_CACHE_MODELS, &io);
    int rc = w->cache ? 0 : ID_ENOMEM;
    if (rc == 0)
        rc = net_on_request(w->net, IDUNNO__MSG_TYPE__MSG_JOB_RUN_REQ, on_run, w);
    if (rc == 0)
        rc = net_on_request(w->net, IDUNNO__MSG_TYPE__MSG_JOB_WORKER_STATE_REQ, on_state, w);
    if (rc == 0)
        rc = net_on_request(w->net, IDUNNO__MSG_TYPE__MSG_JOB_PRELOAD_REQ, on_preload, w);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot start the inference worker: %s", id_strerror(rc));
        if (w->cache)
            infer_cache_free(w->cache);
        free(w);
        return rc;
    }
    uv_timer_init(w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, WORKER_TICK_MS, WORKER_TICK_MS);
    *out = w;
    return 0;
}

void worker_stop(struct worker *w)
{
    if (!w)
        return;
    w->stopping = 1;
    uv_close((uv_handle_t *)&w->tick, NULL);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    while (w->queries) {
        struct wquery *q = w->queries;
        w->queries = q->next;
        if (q->state == WQ_RUNNING)
            continue; /* the pool still uses it; the process is ending */
        wq_free(q);
    }
    if (!w->running) {
        infer_cache_free(w->cache);
        infer_gate_close(w->gate);
        free(w);
    }
}

void worker_get_stats(struct worker *w, struct worker_stats *out)
{
    *out = w->stats;
    out->holding = wq_count(w);
}
