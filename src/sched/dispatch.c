/* dispatch.c — the coordinator's dispatch decisions (see dispatch.h): claims,
 * queries, workers, adoption and the completion batch. Pure: times are
 * arguments, nothing is sent; the coordinator carries out what it returns.
 * Threading: none. */
#include "sched/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "sched/fair.h"
#include "sched/jobs.h"

enum cq_state { CQ_QUEUED, CQ_INFLIGHT };

struct cquery {
    uint32_t job;
    uint64_t id;
    uint32_t *idx;
    size_t n;
    enum cq_state state;
    int online; /* an online request (no images): its caller's deadline bounds it, not the timeout */
    uint32_t inputs;    /* online: its images or tensors */
    uint64_t queued_us; /* online: when it came, for the job's queue delay */
    char worker[DISPATCH_NAME_MAX];
    uint64_t requeued_us;     /* set when its worker failed: timed until it runs again */
    uint64_t dispatched_mono; /* ms, for the timeout */
    struct cquery *next;
};

/* A worker the coordinator knows of. A benched one is out of the dispatcher
 * for a moment: it refused a query (full, or its connection failed), and
 * giving it the next one at once would only spin. */
struct cworker {
    char name[DISPATCH_NAME_MAX];
    uint64_t benched_until; /* ms; 0: in the dispatcher */
    struct wmodel *models;  /* the model versions it has or is loading */
    size_t n_models;
};

/* A model version on a worker. LOADED and FAILED make the worker take the
 * queries of jobs running that version; RETRY waits until `until`. */
enum wm_state { WM_LOADING, WM_LOADED, WM_FAILED, WM_RETRY };
struct wmodel {
    char key[DISPATCH_MODEL_KEY_MAX];
    enum wm_state state;
    uint64_t until_ms; /* LOADING: given up then; RETRY: tried again then */
};

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
    uint64_t lazy[DISPATCH_CUT_AHEAD];
    size_t n_lazy;
    uint64_t idle_queued_us;  /* images arrived while the job had nothing to run */
    double first_dispatch_ms; /* how long its first query then waited (-1: never) */
    /* That first query, until its result arrives: the time from the images'
     * arrival to the first result, which shows the query ran, not only left. */
    uint64_t first_query, first_queued_us;
    double first_result_ms; /* -1: none yet */
    double first_start_ms;  /* to the batch starting on its worker; -1: none yet */
    double run_us_avg;      /* moving mean of its queries' run times (0: none yet) */
    unsigned burst;         /* as given to the dispatcher (1: none) */
    uint64_t burst_logged_ms;
    int stop_proposed; /* a worker asked to stop it (QueryDone.stop_job): proposed once */
    /* The model version its queries run now ("": the model is unknown). */
    char model_key[DISPATCH_MODEL_KEY_MAX];
    uint32_t model_version;
    int model_synced; /* model_key has been set once */
    /* An online job held for its queue delay (dispatch_next): when the hold
     * of its oldest waiting request ends (0: not held). */
    uint64_t hold_until_us;
};

struct dispatch {
    struct dispatch_config cfg;
    /* Leader-only state; empty while IDLE. */
    enum dispatch_phase phase;
    uint64_t term;
    uint32_t qcounter;
    struct fair *fair;
    struct cjob *cjobs;
    size_t n_cjobs;
    struct cquery *queries;
    struct cworker *workers; /* live members, in the dispatcher unless benched */
    size_t n_workers;
    unsigned adopt_pending;
    uint64_t adopt_deadline; /* ms */
    /* Kept across terms. Queries whose results arrived lately: a worker's
     * WORKER_STATE answer can be older than its JOB_DONE, and such a query
     * must not be adopted. */
    uint64_t recent_done[DISPATCH_RECENT];
    unsigned recent_next;
    struct dispatch_held batch[DISPATCH_BATCH_MAX];
    size_t n_batch;
    unsigned batches_proposed; /* JOB_DONE commands not yet committed */
    struct dispatch_stats stats;
};

struct dispatch *dispatch_create(const struct dispatch_config *cfg)
{
    struct dispatch *d = calloc(1, sizeof *d);
    if (d)
        d->cfg = *cfg;
    return d;
}

void dispatch_destroy(struct dispatch *d)
{
    if (!d)
        return;
    dispatch_unlead(d);
    free(d);
}

enum dispatch_phase dispatch_phase(const struct dispatch *d)
{
    return d->phase;
}

uint64_t dispatch_term(const struct dispatch *d)
{
    return d->term;
}

void dispatch_get_stats(const struct dispatch *d, struct dispatch_stats *out)
{
    *out = d->stats;
}

static struct cworker *worker_find(const struct dispatch *d, const char *name);

/* ---- loaded models --------------------------------------------------------------------------- */

void dispatch_model_key(char *out, size_t len, const char *name, const char *blob, uint32_t version)
{
    snprintf(out, len, "%s@%s.%u", name, blob, version);
}

static struct wmodel *wm_find(const struct cworker *w, const char *key)
{
    for (size_t i = 0; i < w->n_models; i++)
        if (strcmp(w->models[i].key, key) == 0)
            return &w->models[i];
    return NULL;
}

static int wm_takes(const struct wmodel *m)
{
    return m && (m->state == WM_LOADED || m->state == WM_FAILED);
}

static int key_in_use(const struct dispatch *d, const char *key)
{
    for (size_t i = 0; i < d->n_cjobs; i++)
        if (strcmp(d->cjobs[i].model_key, key) == 0)
            return 1;
    return 0;
}

/* Records key's state on w: updated, or added (at the bound, an entry that
 * no job runs makes room, else the oldest). NULL if out of memory. */
static struct wmodel *wm_set(struct dispatch *d, struct cworker *w, const char *key,
                             enum wm_state state, uint64_t until_ms)
{
    struct wmodel *m = wm_find(w, key);
    if (!m) {
        if (w->n_models >= DISPATCH_WORKER_MODELS) {
            size_t drop = 0;
            for (size_t i = 0; i < w->n_models; i++)
                if (!key_in_use(d, w->models[i].key)) {
                    drop = i;
                    break;
                }
            memmove(&w->models[drop], &w->models[drop + 1],
                    (w->n_models - drop - 1) * sizeof *w->models);
            w->n_models--;
        } else {
            struct wmodel *a = realloc(w->models, (w->n_models + 1) * sizeof *a);
            if (!a)
                return NULL;
            w->models = a;
        }
        m = &w->models[w->n_models++];
        snprintf(m->key, sizeof m->key, "%s", key);
    }
    m->state = state;
    m->until_ms = until_ms;
    return m;
}

/* The worker takes the queries of every job running key (if it is in the
 * dispatcher; a benched one gets them back when it returns). */
static void holder_apply(struct dispatch *d, const struct cworker *w, const char *key)
{
    for (size_t i = 0; i < d->n_cjobs; i++)
        if (strcmp(d->cjobs[i].model_key, key) == 0)
            fair_worker_set_model(d->fair, w->name, d->cjobs[i].id, 1);
}

/* The job's model version, as the replicated state has it now: when it
 * changed (a new version pinned), no worker counts as holding it until it
 * has that version too. */
static void cjob_model_sync(struct dispatch *d, const struct jobs *jobs, struct cjob *cj,
                            const struct job_rec *job)
{
    const struct model_rec *m = jobs_model_version(jobs, job->model, job->version);
    char key[DISPATCH_MODEL_KEY_MAX] = "";
    if (m)
        dispatch_model_key(key, sizeof key, m->name, m->blob, m->version);
    if (strcmp(key, cj->model_key) == 0 && cj->model_synced)
        return;
    cj->model_synced = 1;
    snprintf(cj->model_key, sizeof cj->model_key, "%s", key);
    /* A model not in the state (deleted) gates nothing: its queries report it. */
    fair_job_needs_model(d->fair, cj->id, d->cfg.load_models && key[0]);
    cj->model_version = m ? m->version : 0;
    fair_job_forget_models(d->fair, cj->id);
    for (size_t i = 0; key[0] && i < d->n_workers; i++)
        if (wm_takes(wm_find(&d->workers[i], key)))
            fair_worker_set_model(d->fair, d->workers[i].name, cj->id, 1);
}

/* The candidate to load key next: a worker that has no state for it (or
 * whose retry time came), not benched, with the fewest loads under way,
 * then the fewest models, then the first. */
static struct cworker *load_candidate(struct dispatch *d, const char *key, uint64_t now_ms)
{
    struct cworker *best = NULL;
    size_t best_loading = 0, best_models = 0;
    for (size_t i = 0; i < d->n_workers; i++) {
        struct cworker *w = &d->workers[i];
        const struct wmodel *m = wm_find(w, key);
        if (w->benched_until || (m && !(m->state == WM_RETRY && now_ms >= m->until_ms)))
            continue;
        size_t loading = 0, models = 0;
        for (size_t k = 0; k < w->n_models; k++) {
            loading += w->models[k].state == WM_LOADING;
            models += wm_takes(&w->models[k]);
        }
        if (!best || loading < best_loading || (loading == best_loading && models < best_models)) {
            best = w;
            best_loading = loading;
            best_models = models;
        }
    }
    return best;
}

static void key_counts(const struct dispatch *d, const char *key, size_t *loaded, size_t *loading,
                       size_t *takes)
{
    *loaded = *loading = *takes = 0;
    for (size_t i = 0; i < d->n_workers; i++) {
        const struct wmodel *m = wm_find(&d->workers[i], key);
        if (!m)
            continue;
        *loaded += m->state == WM_LOADED;
        *loading += m->state == WM_LOADING;
        *takes += wm_takes(m);
    }
}

/* Whether some model version is being loaded where no worker has it yet: a
 * job's first load, or one ahead of its job (dispatch_load_new_model). */
static int first_load_under_way(const struct dispatch *d)
{
    for (size_t i = 0; i < d->n_workers; i++)
        for (size_t k = 0; k < d->workers[i].n_models; k++) {
            const struct wmodel *m = &d->workers[i].models[k];
            size_t loaded, loading, takes;
            if (m->state != WM_LOADING)
                continue;
            key_counts(d, m->key, &loaded, &loading, &takes);
            if (!takes)
                return 1;
        }
    return 0;
}

size_t dispatch_loads(struct dispatch *d, uint64_t now_us, struct dispatch_load *out, size_t max)
{
    if (d->phase != DISPATCH_ACTIVE || !d->cfg.load_models)
        return 0;
    uint64_t now = now_us / 1000;
    /* Loads given up: tried again later, elsewhere first. */
    for (size_t i = 0; i < d->n_workers; i++)
        for (size_t k = 0; k < d->workers[i].n_models; k++) {
            struct wmodel *m = &d->workers[i].models[k];
            if (m->state == WM_LOADING && now >= m->until_ms) {
                m->state = WM_RETRY;
                m->until_ms = now + DISPATCH_LOAD_RETRY_MS;
            }
        }
    /* First loads first: a job whose model no worker has gets its first load
     * before any job grows, and no job grows while a first load is under
     * way (a job's, or one ahead of its job), so that every job's first
     * result waits for one load only, not for that load sharing the cores
     * with others' growth. */
    size_t n = 0;
    int first_pending = first_load_under_way(d);
    for (int growth = 0; growth < 2; growth++) {
        for (size_t i = 0; i < d->n_cjobs && n < max; i++) {
            struct cjob *cj = &d->cjobs[i];
            if (!cj->model_key[0] ||
                fair_queued(d->fair, cj->id) + fair_inflight(d->fair, cj->id) == 0)
                continue;
            /* A job with two runs of one key (a stopped job relaunched)
             * counts the key's loads once: the loop sees the same state both
             * times. */
            size_t loaded, loading, takes;
            key_counts(d, cj->model_key, &loaded, &loading, &takes);
            if ((takes > 0) != growth)
                continue;
            size_t allow = takes > 0 ? takes * DISPATCH_LOAD_GROWTH : 1;
            while (loading < allow && n < max) {
                struct cworker *w = load_candidate(d, cj->model_key, now);
                if (!w || !wm_set(d, w, cj->model_key, WM_LOADING, now + DISPATCH_LOAD_TIMEOUT_MS))
                    break;
                struct dispatch_load *l = &out[n++];
                l->job = cj->id;
                snprintf(l->worker, sizeof l->worker, "%s", w->name);
                snprintf(l->key, sizeof l->key, "%s", cj->model_key);
                loading++;
            }
            if (!takes && loading)
                first_pending = 1;
        }
        if (first_pending)
            break;
    }
    return n;
}

int dispatch_load_new_model(struct dispatch *d, const char *key, uint64_t now_us,
                            struct dispatch_load *out)
{
    if (d->phase != DISPATCH_ACTIVE || !d->cfg.load_models || !key[0] ||
        strlen(key) >= DISPATCH_MODEL_KEY_MAX)
        return 0;
    uint64_t now = now_us / 1000;
    size_t loaded, loading, takes;
    key_counts(d, key, &loaded, &loading, &takes);
    struct cworker *w = loading || takes ? NULL : load_candidate(d, key, now);
    if (!w || !wm_set(d, w, key, WM_LOADING, now + DISPATCH_LOAD_TIMEOUT_MS))
        return 0;
    out->job = 0;
    snprintf(out->worker, sizeof out->worker, "%s", w->name);
    snprintf(out->key, sizeof out->key, "%s", key);
    return 1;
}

int dispatch_load_done(struct dispatch *d, const char *worker, const char *key, int status,
                       uint64_t now_us)
{
    struct cworker *w = d->phase == DISPATCH_IDLE ? NULL : worker_find(d, worker);
    struct wmodel *m = w ? wm_find(w, key) : NULL;
    if (!m || m->state != WM_LOADING)
        return 0;
    if (status == 0 || status == ID_EMODEL) {
        m->state = status == 0 ? WM_LOADED : WM_FAILED;
        holder_apply(d, w, key);
        return 1;
    }
    m->state = WM_RETRY;
    m->until_ms = now_us / 1000 + DISPATCH_LOAD_RETRY_MS;
    return 0;
}

void dispatch_worker_models(struct dispatch *d, const char *worker, char *const *keys, size_t n)
{
    struct cworker *w = d->phase == DISPATCH_IDLE ? NULL : worker_find(d, worker);
    for (size_t i = 0; w && i < n && i < DISPATCH_WORKER_MODELS; i++)
        if (keys[i] && strlen(keys[i]) < DISPATCH_MODEL_KEY_MAX &&
            wm_set(d, w, keys[i], WM_LOADED, 0))
            holder_apply(d, w, keys[i]);
}

/* ---- claims --------------------------------------------------------------------------------- */

static struct cjob *cjob_find(const struct dispatch *d, uint32_t id)
{
    for (size_t i = 0; i < d->n_cjobs; i++)
        if (d->cjobs[i].id == id)
            return &d->cjobs[i];
    return NULL;
}

/* Adds the dispatcher's record of a job (and the job to the fair core).
 * Returns it, or NULL with *rc: ID_ENOMEM when the table cannot grow, else
 * the fair core's refusal (the job is then left out). */
static struct cjob *cjob_add(struct dispatch *d, const struct jobs *jobs, const struct job_rec *job,
                             int *rc)
{
    struct cjob *a = realloc(d->cjobs, (d->n_cjobs + 1) * sizeof *a);
    if (!a) {
        *rc = ID_ENOMEM;
        return NULL;
    }
    d->cjobs = a;
    struct cjob *cj = &d->cjobs[d->n_cjobs];
    memset(cj, 0, sizeof *cj);
    cj->id = job->id;
    cj->first_dispatch_ms = cj->first_result_ms = cj->first_start_ms = -1;
    cj->burst = 1;
    *rc = fair_job_add(d->fair, job->id, job->weight);
    if (*rc < 0)
        return NULL;
    d->n_cjobs++;
    cjob_model_sync(d, jobs, cj, job);
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
        cj->claimed[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

/* Gives an image back: unclaimed, and the cursor moves back to it so the next
 * cut finds it. */
static void unclaim(struct cjob *cj, uint32_t image)
{
    set_claim(cj, image, 0);
    if (image < cj->cursor)
        cj->cursor = image;
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

/* ---- queries -------------------------------------------------------------------------------- */

static struct cquery *cq_find(const struct dispatch *d, uint64_t id)
{
    for (struct cquery *q = d->queries; q; q = q->next)
        if (q->id == id)
            return q;
    return NULL;
}

/* Forgets a query. `unclaim_images`: its images may be cut again (it never
 * ran); else they stay claimed (its result is on its way to a commit). */
static void cq_free(struct dispatch *d, struct cquery *q, int unclaim_images)
{
    for (struct cquery **pp = &d->queries; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    struct cjob *cj = cjob_find(d, q->job);
    if (cj && unclaim_images)
        for (size_t i = 0; i < q->n; i++)
            unclaim(cj, q->idx[i]);
    if (cj)
        lazy_forget(cj, q->id);
    free(q->idx);
    free(q);
}

static struct cquery *cq_new(struct dispatch *d, uint32_t job, uint64_t id, size_t cap)
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
    q->next = d->queries;
    d->queries = q;
    return q;
}

/* Query ids are unique across leaders: the term in the high half. */
static uint64_t next_query_id(struct dispatch *d)
{
    return (d->term << 32) | ++d->qcounter;
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

/* Resizes a query cut earlier and still queued to the job's batch. */
static void resize_queued(struct cjob *cj, const struct job_rec *job, struct cquery *q)
{
    if (q->n > job->batch) { /* shrink: give the extra images back */
        for (size_t i = job->batch; i < q->n; i++)
            unclaim(cj, q->idx[i]);
        q->n = job->batch;
    } else if (q->n < job->batch) { /* grow, if there are images */
        uint32_t *grown = realloc(q->idx, job->batch * sizeof *q->idx);
        if (grown) {
            q->idx = grown;
            q->n += take_images(cj, job, q->idx + q->n, job->batch - q->n);
        }
    }
}

/* Keeps DISPATCH_CUT_AHEAD queries of the job cut and queued: up to `batch`
 * images each that are neither done nor claimed. Queries cut earlier and still
 * queued are resized to the current batch first (set-batch applies to every
 * query not yet dispatched). */
static void cut_ahead(struct dispatch *d, const struct jobs *jobs, struct cjob *cj)
{
    struct job_rec *job = jobs_by_id(jobs, cj->id);
    if (!job || job->stopped || cjob_cover(cj, job->n_images) < 0)
        return;
    for (size_t k = 0; k < cj->n_lazy; k++) {
        struct cquery *q = cq_find(d, cj->lazy[k]);
        if (!q || q->state != CQ_QUEUED) {
            lazy_forget(cj, cj->lazy[k--]);
            continue;
        }
        resize_queued(cj, job, q);
    }
    while (cj->n_lazy < DISPATCH_CUT_AHEAD) {
        uint32_t idx[JOBS_MAX_BATCH];
        size_t got = take_images(cj, job, idx, job->batch);
        if (got == 0)
            return;
        struct cquery *q = cq_new(d, cj->id, next_query_id(d), job->batch);
        if (!q) {
            for (size_t i = 0; i < got; i++)
                set_claim(cj, idx[i], 0);
            cj->cursor = idx[0];
            return;
        }
        memcpy(q->idx, idx, got * sizeof *idx);
        q->n = got;
        q->state = CQ_QUEUED;
        if (fair_enqueue(d->fair, cj->id, q->id, 0) < 0) {
            cq_free(d, q, 1);
            return;
        }
        cj->lazy[cj->n_lazy++] = q->id;
    }
}

static int requeue(struct dispatch *d, struct cquery *q)
{
    if (q->state != CQ_INFLIGHT)
        return 0;
    if (fair_requeue(d->fair, q->job, q->id) < 0)
        return 0;
    q->state = CQ_QUEUED;
    q->worker[0] = 0;
    d->stats.requeued++;
    return 1;
}

/* ---- workers -------------------------------------------------------------------------------- */

static struct cworker *worker_find(const struct dispatch *d, const char *name)
{
    for (size_t i = 0; i < d->n_workers; i++)
        if (strcmp(d->workers[i].name, name) == 0)
            return &d->workers[i];
    return NULL;
}

int dispatch_worker_known(const struct dispatch *d, const char *name)
{
    return worker_find(d, name) != NULL;
}

size_t dispatch_worker_count(const struct dispatch *d)
{
    return d->n_workers;
}

size_t dispatch_job_count(const struct dispatch *d)
{
    return d->n_cjobs;
}

const char *dispatch_worker_name(const struct dispatch *d, size_t i)
{
    return i < d->n_workers ? d->workers[i].name : NULL;
}

int dispatch_online_rank(const struct dispatch *d, size_t i, const char *key)
{
    if (d->phase == DISPATCH_IDLE || i >= d->n_workers || d->workers[i].benched_until)
        return 0;
    const struct wmodel *m = wm_find(&d->workers[i], key);
    return m && m->state == WM_LOADED ? 2 : 1;
}

/* Takes the worker out of the dispatcher, which puts its queries back at the
 * front of their queues; returns how many. `failed`: they are timed until
 * they run again (the failure-to-rerun figure). */
static size_t worker_unplug(struct dispatch *d, const char *name, int failed, uint64_t now_us)
{
    fair_worker_remove(d->fair, name);
    size_t k = 0;
    for (struct cquery *q = d->queries; q; q = q->next)
        if (q->state == CQ_INFLIGHT && strcmp(q->worker, name) == 0) {
            q->state = CQ_QUEUED;
            q->worker[0] = 0;
            if (failed)
                q->requeued_us = now_us;
            k++;
        }
    d->stats.requeued += k;
    return k;
}

/* `unreachable`: its connection failed, which on a machine that reports a
 * dead process's port at once is the first sign of a failure: its queries are
 * timed like a declared failure's. A worker benched already stays out (its
 * queries went back then), only longer. */
static void worker_bench(struct dispatch *d, const char *name, uint64_t ms, int unreachable,
                         uint64_t now_us, struct dispatch_bench *b)
{
    struct cworker *w = worker_find(d, name);
    if (!w)
        return;
    if (!w->benched_until) {
        b->unplugged = 1;
        b->requeued = worker_unplug(d, name, unreachable, now_us);
    }
    w->benched_until = now_us / 1000 + ms;
    b->ms = ms;
}

int dispatch_worker_join(struct dispatch *d, const char *name)
{
    if (d->phase == DISPATCH_IDLE)
        return ID_ENOTLEADER;
    if (worker_find(d, name))
        return 0;
    struct cworker *w = realloc(d->workers, (d->n_workers + 1) * sizeof *w);
    if (!w)
        return ID_ENOMEM;
    d->workers = w;
    int rc = fair_worker_add(d->fair, name, d->cfg.slots);
    if (rc < 0)
        return rc;
    w = &d->workers[d->n_workers++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    return 0;
}

int dispatch_worker_gone(struct dispatch *d, const char *name, uint64_t now_us)
{
    struct cworker *w = worker_find(d, name);
    if (!w)
        return ID_ENOTFOUND;
    /* A benched worker is out of the dispatcher already. */
    size_t k = w->benched_until ? 0 : worker_unplug(d, name, 1, now_us);
    size_t i = (size_t)(w - d->workers);
    free(w->models);
    memmove(&d->workers[i], &d->workers[i + 1], (d->n_workers - i - 1) * sizeof *d->workers);
    d->n_workers--;
    return (int)k;
}

void dispatch_unbench(struct dispatch *d, uint64_t now_us)
{
    uint64_t now = now_us / 1000;
    for (size_t i = 0; i < d->n_workers; i++) {
        struct cworker *w = &d->workers[i];
        if (w->benched_until && now >= w->benched_until &&
            fair_worker_add(d->fair, w->name, d->cfg.slots) == 0) {
            w->benched_until = 0;
            /* Back in the dispatcher: with the models it has. */
            for (size_t k = 0; k < w->n_models; k++)
                if (wm_takes(&w->models[k]))
                    holder_apply(d, w, w->models[k].key);
        }
    }
}

/* ---- jobs ----------------------------------------------------------------------------------- */

static void job_drop(struct dispatch *d, size_t at)
{
    struct cjob *cj = &d->cjobs[at];
    fair_job_remove(d->fair, cj->id);
    for (struct cquery *q = d->queries, *next; q; q = next) {
        next = q->next;
        if (q->job == cj->id)
            cq_free(d, q, 0);
    }
    free(cj->claimed);
    memmove(&d->cjobs[at], &d->cjobs[at + 1], (d->n_cjobs - at - 1) * sizeof *d->cjobs);
    d->n_cjobs--;
}

int dispatch_sync_jobs(struct dispatch *d, const struct jobs *jobs)
{
    if (d->phase != DISPATCH_ACTIVE)
        return 0;
    /* Jobs gone or stopped leave the dispatcher (their queries with them). */
    for (size_t i = d->n_cjobs; i > 0; i--) {
        struct job_rec *job = jobs_by_id(jobs, d->cjobs[i - 1].id);
        if (!job || job->stopped)
            job_drop(d, i - 1);
    }
    for (size_t i = 0; i < jobs_count(jobs); i++) {
        struct job_rec *job = jobs_at(jobs, i);
        if (job->stopped)
            continue;
        struct cjob *cj = cjob_find(d, job->id);
        int rc = 0;
        if (!cj && !(cj = cjob_add(d, jobs, job, &rc))) {
            if (rc == ID_ENOMEM)
                return rc;
            continue;
        }
        cjob_model_sync(d, jobs, cj, job);
        cut_ahead(d, jobs, cj);
    }
    return 0;
}

void dispatch_images_queued(struct dispatch *d, uint32_t job, uint64_t now_us)
{
    struct cjob *cj = d->phase == DISPATCH_ACTIVE ? cjob_find(d, job) : NULL;
    if (cj && fair_queued(d->fair, job) == 0 && fair_inflight(d->fair, job) == 0)
        cj->idle_queued_us = now_us;
}

double dispatch_job_run_us(const struct dispatch *d, uint32_t job)
{
    const struct cjob *cj = d->phase == DISPATCH_IDLE ? NULL : cjob_find(d, job);
    return cj ? cj->run_us_avg : 0;
}

int dispatch_job_view(const struct dispatch *d, uint32_t job, struct dispatch_job_view *out)
{
    memset(out, 0, sizeof *out);
    out->first_dispatch_ms = out->first_result_ms = out->first_start_ms = -1;
    if (d->phase != DISPATCH_ACTIVE)
        return 0;
    const struct cjob *cj = cjob_find(d, job);
    if (cj) {
        out->known = 1;
        out->first_dispatch_ms = cj->first_dispatch_ms;
        out->first_result_ms = cj->first_result_ms;
        out->first_start_ms = cj->first_start_ms;
        size_t takes;
        if (cj->model_key[0])
            key_counts(d, cj->model_key, &out->workers_loaded, &out->workers_loading, &takes);
    }
    out->active = 1;
    out->queued = fair_queued(d->fair, job);
    out->dispatched = fair_dispatched(d->fair, job);
    out->inflight = fair_inflight(d->fair, job);
    size_t max = sizeof out->workers / sizeof out->workers[0];
    for (struct cquery *q = d->queries; q && out->n_workers < max; q = q->next) {
        if (q->job != job || q->state != CQ_INFLIGHT)
            continue;
        int seen = 0;
        for (size_t k = 0; k < out->n_workers && !seen; k++)
            seen = strcmp(out->workers[k], q->worker) == 0;
        if (!seen)
            snprintf(out->workers[out->n_workers++], DISPATCH_NAME_MAX, "%s", q->worker);
    }
    return 0;
}

/* ---- leadership ----------------------------------------------------------------------------- */

int dispatch_lead(struct dispatch *d, uint64_t term, const struct jobs *jobs, uint64_t now_us)
{
    if (d->phase != DISPATCH_IDLE)
        return 0;
    d->fair = fair_create();
    if (!d->fair)
        return ID_ENOMEM;
    int rc = fair_set_spare(d->fair, d->cfg.spare) < 0 ? 1 : 0;
    d->term = term;
    d->qcounter = 0;
    d->phase = DISPATCH_ADOPTING;
    /* Jobs enter the dispatcher without cutting anything yet: the workers'
     * answers say which images are already running. */
    for (size_t i = 0; i < jobs_count(jobs); i++) {
        struct job_rec *job = jobs_at(jobs, i);
        if (job->stopped)
            continue;
        int add_rc;
        if (!cjob_add(d, jobs, job, &add_rc) && add_rc == ID_ENOMEM)
            break;
    }
    d->adopt_pending = 1; /* held while the calls go out */
    d->adopt_deadline = now_us / 1000 + d->cfg.adopt_wait_ms;
    return rc;
}

void dispatch_asked(struct dispatch *d)
{
    if (d->phase == DISPATCH_ADOPTING)
        d->adopt_pending++;
}

int dispatch_answered(struct dispatch *d)
{
    if (d->phase != DISPATCH_ADOPTING || d->adopt_pending == 0)
        return 0;
    return --d->adopt_pending == 0;
}

int dispatch_overdue(struct dispatch *d, uint64_t now_us, unsigned *missing)
{
    if (d->phase != DISPATCH_ADOPTING || now_us / 1000 < d->adopt_deadline)
        return 0;
    *missing = d->adopt_pending;
    d->adopt_pending = 0;
    return 1;
}

static int finished_lately(const struct dispatch *d, uint64_t query)
{
    for (size_t k = 0; k < DISPATCH_RECENT; k++)
        if (d->recent_done[k] == query)
            return 1;
    return 0;
}

int dispatch_adopt(struct dispatch *d, const struct jobs *jobs, const char *worker, uint32_t job_id,
                   uint64_t query, const uint32_t *images, size_t n, uint64_t now_us)
{
    if (d->phase != DISPATCH_ADOPTING)
        return 0;
    struct cjob *cj = cjob_find(d, job_id);
    struct job_rec *job = jobs_by_id(jobs, job_id);
    if (!cj || !job || cq_find(d, query) || !worker_find(d, worker))
        return 0;
    int all_done = n > 0;
    for (size_t k = 0; k < n && all_done; k++)
        all_done = images[k] < job->n_images && job_image_done(job, images[k]);
    if (finished_lately(d, query) || all_done)
        return 0; /* its result is here already */
    struct cquery *q = cq_new(d, job_id, query, n);
    if (!q)
        return ID_ENOMEM;
    cjob_cover(cj, job->n_images);
    for (size_t k = 0; k < n; k++)
        if (images[k] < job->n_images) {
            q->idx[q->n++] = images[k];
            set_claim(cj, images[k], 1);
        }
    /* In flight even if the dispatcher refuses it (another worker claims it):
     * its images stay claimed, and the timeout or the result settles it. */
    q->state = CQ_INFLIGHT;
    snprintf(q->worker, sizeof q->worker, "%s", worker);
    q->dispatched_mono = now_us / 1000; /* timed out from now on */
    if (fair_adopt(d->fair, job_id, query, worker) != 0)
        return 0;
    d->stats.adopted++;
    return 1;
}

size_t dispatch_start(struct dispatch *d)
{
    if (d->phase != DISPATCH_ADOPTING)
        return 0;
    d->phase = DISPATCH_ACTIVE;
    d->adopt_pending = 0;
    size_t inflight = 0;
    for (struct cquery *q = d->queries; q; q = q->next)
        inflight += q->state == CQ_INFLIGHT;
    return inflight;
}

void dispatch_unlead(struct dispatch *d)
{
    while (d->queries)
        cq_free(d, d->queries, 0);
    for (size_t i = 0; i < d->n_cjobs; i++)
        free(d->cjobs[i].claimed);
    free(d->cjobs);
    d->cjobs = NULL;
    d->n_cjobs = 0;
    for (size_t i = 0; i < d->n_workers; i++)
        free(d->workers[i].models);
    free(d->workers);
    d->workers = NULL;
    d->n_workers = 0;
    fair_destroy(d->fair);
    d->fair = NULL;
    d->adopt_pending = 0;
    d->phase = DISPATCH_IDLE;
}

/* ---- dispatching ---------------------------------------------------------------------------- */

/* A query goes in flight on `worker` (the fair core put it there). Returns
 * how long it waited to run again after its worker failed, or -1. */
static double launch(struct dispatch *d, struct cquery *q, const char *worker, uint64_t now_us)
{
    q->state = CQ_INFLIGHT;
    snprintf(q->worker, sizeof q->worker, "%s", worker);
    q->dispatched_mono = now_us / 1000;
    d->stats.dispatched++;
    if (!q->requeued_us)
        return -1;
    /* The worst case of a failure: its queries' wait to run again. */
    double ms = (double)(now_us - q->requeued_us) / 1000.0;
    q->requeued_us = 0;
    d->stats.rerun_last_ms = ms;
    if (ms > d->stats.rerun_max_ms)
        d->stats.rerun_max_ms = ms;
    return ms;
}

/* The online queue delay (dispatch.h). Whether an online job's requests
 * wait for more at `now`: it has a delay, some of its requests are running,
 * requests are waiting, the oldest of them has waited less than the delay,
 * and they would not fill the batch a dispatch would take now, in requests
 * (the room on the worker it would go to) nor in inputs (its batch). With
 * none running, a request goes at once (as Nagle's algorithm sends when
 * nothing is unacknowledged): a lone client never waits out the delay, and
 * requests gather only behind work under way. Sets cj->hold_until_us. */
static int online_held(struct dispatch *d, const struct job_rec *job, struct cjob *cj,
                       uint64_t now_us)
{
    cj->hold_until_us = 0;
    if (!job || !job->online || !job->max_queue_delay_us || fair_inflight(d->fair, cj->id) == 0)
        return 0;
    unsigned room = fair_room(d->fair, cj->id);
    if (room == 0)
        return 0; /* nothing could go now anyway: the next free slot pumps again */
    size_t waiting = 0, inputs = 0;
    uint64_t oldest_us = 0;
    for (const struct cquery *q = d->queries; q; q = q->next) {
        if (q->job != cj->id || q->state != CQ_QUEUED || !q->online)
            continue;
        waiting++;
        inputs += q->inputs;
        if (waiting >= room || inputs >= job->batch)
            return 0; /* a full batch is waiting */
        if (!oldest_us || q->queued_us < oldest_us)
            oldest_us = q->queued_us;
    }
    if (!waiting || now_us >= oldest_us + job->max_queue_delay_us)
        return 0;
    cj->hold_until_us = oldest_us + job->max_queue_delay_us;
    return 1;
}

int dispatch_next(struct dispatch *d, const struct jobs *jobs, uint64_t now_us,
                  struct dispatch_run *out)
{
    if (d->phase != DISPATCH_ACTIVE)
        return 0;
    /* Held online jobs are passed over, so the other jobs go meanwhile. Each
     * call looks again: a dispatch changes the room, a request may have come. */
    for (size_t i = 0; i < d->n_cjobs; i++) {
        struct cjob *cj = &d->cjobs[i];
        fair_job_hold(d->fair, cj->id, online_held(d, jobs_by_id(jobs, cj->id), cj, now_us));
    }
    struct fair_dispatch fd;
    while (fair_next(d->fair, &fd)) {
        struct cquery *q = cq_find(d, fd.query);
        if (!q) { /* a query forgotten meanwhile */
            fair_complete(d->fair, fd.job, fd.query);
            continue;
        }
        out->first_ms = -1;
        out->rerun_ms = launch(d, q, fd.worker, now_us);
        struct cjob *cj = cjob_find(d, q->job);
        if (cj && cj->idle_queued_us) {
            cj->first_dispatch_ms = (double)(now_us - cj->idle_queued_us) / 1000.0;
            cj->first_query = q->id;
            cj->first_queued_us = cj->idle_queued_us;
            cj->first_result_ms = -1;
            cj->first_start_ms = -1;
            cj->idle_queued_us = 0;
            out->first_ms = cj->first_dispatch_ms;
        }
        /* The query left the cut-ahead list: cut the next one, so the job's
         * queue does not run empty (see struct cjob). */
        if (cj && lazy_forget(cj, q->id))
            cut_ahead(d, jobs, cj);
        out->job = q->job;
        out->query = q->id;
        snprintf(out->worker, sizeof out->worker, "%s", q->worker);
        out->images = q->idx;
        out->n = q->n;
        return 1;
    }
    return 0;
}

/* ---- online requests ------------------------------------------------------------------------ */

uint64_t dispatch_online_enqueue(struct dispatch *d, uint32_t job, uint32_t inputs, uint64_t now_us)
{
    if (d->phase == DISPATCH_IDLE || !cjob_find(d, job))
        return 0;
    struct cquery *q = cq_new(d, job, next_query_id(d), 0);
    if (!q)
        return 0;
    q->online = 1;
    q->inputs = inputs;
    q->queued_us = now_us;
    q->state = CQ_QUEUED;
    if (fair_enqueue(d->fair, job, q->id, 0) < 0) {
        cq_free(d, q, 0);
        return 0;
    }
    return q->id;
}

int dispatch_online_take(struct dispatch *d, uint32_t job, const char *worker, uint64_t now_us,
                         uint64_t *query)
{
    if (d->phase != DISPATCH_ACTIVE)
        return 0;
    uint64_t id;
    while (fair_take(d->fair, job, worker, &id) == 1) {
        struct cquery *q = cq_find(d, id);
        if (!q) { /* answered or given up while it waited */
            fair_complete(d->fair, job, id);
            continue;
        }
        launch(d, q, worker, now_us);
        *query = id;
        return 1;
    }
    return 0;
}

uint64_t dispatch_online_hold_until(const struct dispatch *d)
{
    uint64_t until = 0;
    for (size_t i = 0; d->phase == DISPATCH_ACTIVE && i < d->n_cjobs; i++) {
        uint64_t u = d->cjobs[i].hold_until_us;
        if (u && (!until || u < until))
            until = u;
    }
    return until;
}

void dispatch_online_forget(struct dispatch *d, uint64_t query)
{
    struct cquery *q = d->phase != DISPATCH_IDLE ? cq_find(d, query) : NULL;
    if (!q || !q->online)
        return;
    /* One still queued stays in the fair core's queue and is dropped when it
     * comes up (dispatch_next finds no record of it). */
    if (q->state == CQ_INFLIGHT)
        fair_complete(d->fair, q->job, q->id);
    cq_free(d, q, 0);
}

int dispatch_requeue(struct dispatch *d, uint64_t query)
{
    struct cquery *q = d->phase == DISPATCH_ACTIVE ? cq_find(d, query) : NULL;
    return q ? requeue(d, q) : 0;
}

int dispatch_run_failed(struct dispatch *d, uint64_t query, const char *worker, int status,
                        uint64_t now_us, struct dispatch_bench *b)
{
    memset(b, 0, sizeof *b);
    struct cquery *q = d->phase == DISPATCH_ACTIVE ? cq_find(d, query) : NULL;
    /* Only the dispatch that failed: the query may have been requeued and sent
     * to another worker meanwhile. */
    if (!q || q->state != CQ_INFLIGHT || strcmp(q->worker, worker) != 0)
        return 0;
    int unreachable = status == ID_ECONNREFUSED || status == ID_ECLOSED || status == ID_ETIMEDOUT;
    if (unreachable)
        q->requeued_us = now_us;
    requeue(d, q);
    /* Dispatching to it again at once would fail the same way: a full worker
     * needs its results committed first, and one that refuses connections is
     * probably going away (membership will tell). dispatch_unbench puts it
     * back after a moment. */
    if (status == ID_EBUSY)
        worker_bench(d, worker, DISPATCH_BENCH_BUSY_MS, 0, now_us, b);
    else if (status == ID_ETIMEDOUT)
        worker_bench(d, worker, DISPATCH_BENCH_TIMEOUT_MS, 1, now_us, b);
    else if (unreachable)
        worker_bench(d, worker, DISPATCH_BENCH_UNREACHABLE_MS, 1, now_us, b);
    return 1;
}

size_t dispatch_tick(struct dispatch *d, uint64_t now_us, struct dispatch_timeout *out, size_t max)
{
    if (d->phase != DISPATCH_ACTIVE)
        return 0;
    uint64_t now = now_us / 1000;
    size_t k = 0;
    for (struct cquery *q = d->queries; q; q = q->next)
        if (q->state == CQ_INFLIGHT && !q->online &&
            now - q->dispatched_mono > d->cfg.query_timeout_ms) {
            if (k < max) {
                out[k].query = q->id;
                snprintf(out[k].worker, sizeof out[k].worker, "%s", q->worker);
            }
            k++;
            requeue(d, q);
        }
    return k;
}

/* ---- completions ---------------------------------------------------------------------------- */

/* A query of the job ran for run_us: its mean, and the burst that fits the
 * budget. Under a millisecond per query, the messages and wake-ups of each
 * query cost more than its run; costly jobs (a query or more of the budget)
 * keep one query per slot, so their rates stay as even as before. */
static void job_run_time(struct dispatch *d, struct cjob *cj, uint32_t run_us, uint64_t now_us,
                         struct dispatch_done_out *out)
{
    cj->run_us_avg = cj->run_us_avg > 0 ? cj->run_us_avg + DISPATCH_RUN_AVG_WEIGHT *
                                                               ((double)run_us - cj->run_us_avg)
                                        : (double)run_us;
    double fit = DISPATCH_BURST_BUDGET_US / cj->run_us_avg;
    unsigned burst = fit >= FAIR_BURST_MAX ? FAIR_BURST_MAX : fit >= 1 ? (unsigned)fit : 1;
    if (burst != cj->burst && fair_job_set_burst(d->fair, cj->id, burst) == 0) {
        uint64_t now = now_us / 1000;
        out->burst_changed = 1;
        out->burst = burst;
        out->run_us_avg = cj->run_us_avg;
        if (now - cj->burst_logged_ms >= DISPATCH_BURST_LOG_MS) {
            out->log_burst = 1;
            cj->burst_logged_ms = now;
        }
        cj->burst = burst;
    }
}

void dispatch_done(struct dispatch *d, const struct jobs *jobs, const struct dispatch_done *ev,
                   uint64_t now_us, struct dispatch_done_out *out)
{
    memset(out, 0, sizeof *out);
    if (d->phase == DISPATCH_ACTIVE) {
        struct cquery *q = cq_find(d, ev->query);
        if (q && q->job == ev->job) {
            /* A requeued query still in the dispatcher's queue is dropped when
             * it comes up (dispatch_next finds no record of it). */
            if (q->state == CQ_INFLIGHT)
                fair_complete(d->fair, q->job, q->id);
            struct cjob *cj = cjob_find(d, q->job);
            if (cj && cj->first_queued_us && cj->first_query == q->id) {
                cj->first_result_ms = (double)(now_us - cj->first_queued_us) / 1000.0;
                cj->first_start_ms = cj->first_dispatch_ms + (double)ev->wait_ms;
                cj->first_queued_us = 0;
            }
            if (cj && ev->run_us)
                job_run_time(d, cj, ev->run_us, now_us, out);
            cq_free(d, q, 0); /* its images stay claimed: they are done once committed */
        }
        /* A result of the job's current version shows its worker has it. */
        struct cjob *mj = cjob_find(d, ev->job);
        struct cworker *w = ev->worker && ev->worker[0] ? worker_find(d, ev->worker) : NULL;
        if (mj && w && mj->model_key[0] && ev->version == mj->model_version &&
            !wm_takes(wm_find(w, mj->model_key)) && wm_set(d, w, mj->model_key, WM_LOADED, 0))
            holder_apply(d, w, mj->model_key);
        if (ev->stop_job) {
            /* Once per job and leader; a repeat (another worker, a new
             * coordinator) finds the job stopped already. */
            struct job_rec *job = jobs_by_id(jobs, ev->job);
            struct cjob *cj = job && !job->stopped ? cjob_find(d, job->id) : NULL;
            out->propose_stop = cj && !cj->stop_proposed;
        }
    }
    d->recent_done[d->recent_next++ % DISPATCH_RECENT] = ev->query;
}

void dispatch_stop_proposed(struct dispatch *d, uint32_t job)
{
    struct cjob *cj = cjob_find(d, job);
    if (cj)
        cj->stop_proposed = 1;
}

void dispatch_unclaim(struct dispatch *d, uint32_t job, uint32_t image)
{
    struct cjob *cj = d->phase == DISPATCH_ACTIVE ? cjob_find(d, job) : NULL;
    if (cj)
        unclaim(cj, image);
}

/* ---- the group commit ----------------------------------------------------------------------- */

int dispatch_batch_full(const struct dispatch *d)
{
    return d->n_batch == DISPATCH_BATCH_MAX;
}

int dispatch_batch_add(struct dispatch *d, const struct dispatch_held *h)
{
    if (d->n_batch == DISPATCH_BATCH_MAX)
        return ID_ETOOBIG;
    d->batch[d->n_batch++] = *h;
    return d->n_batch == 1;
}

size_t dispatch_batch_take(struct dispatch *d, struct dispatch_held *out)
{
    size_t n = d->n_batch;
    memcpy(out, d->batch, n * sizeof *out);
    d->n_batch = 0;
    return n;
}

int dispatch_batch_due(const struct dispatch *d)
{
    return d->n_batch > 0 && d->batches_proposed < d->cfg.batches_in_flight;
}

void dispatch_batch_proposed(struct dispatch *d)
{
    d->batches_proposed++;
}

int dispatch_batch_settled(struct dispatch *d, int timer_armed)
{
    if (d->batches_proposed)
        d->batches_proposed--;
    return d->n_batch > 0 && !timer_armed;
}
