/* coord_views.c — the coordinator's read-only requests: models, jobs (with
 * their statistics and the leader's view of dispatch) and results. They
 * answer from the replicated state after a read barrier (coord.c) and from
 * the dispatch core (dispatch.h); they change nothing.
 *
 * Threading: loop thread only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/strbuf.h"
#include "idunno.pb-c.h"
#include "net/net.h"
#include "sched/coord_int.h"
#include "sched/dispatch.h"
#include "sched/jobs.h"
#include "sched/qstats.h"

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
    struct dispatch_job_view dispatch; /* the leader's view: queued, in flight, workers */
    char *worker_ptrs[64];
    /* The latency histogram, when asked for (job_view_histogram). */
    struct qstats_bucket *buckets;
    Idunno__LatencyBucket *bucket_rows, **bucket_ptrs;
};

/* Adds the job's all-time histogram to v's JobInfo; 0 or ID_ENOMEM. */
static int job_view_histogram(const struct job_rec *job, struct job_view *v)
{
    size_t n = qstats_buckets(job->stats, NULL, 0); /* how many are not empty */
    v->buckets = calloc(n + 1, sizeof *v->buckets);
    v->bucket_rows = calloc(n + 1, sizeof *v->bucket_rows);
    v->bucket_ptrs = calloc(n + 1, sizeof *v->bucket_ptrs);
    if (!v->buckets || !v->bucket_rows || !v->bucket_ptrs)
        return ID_ENOMEM;
    n = qstats_buckets(job->stats, v->buckets, n);
    for (size_t i = 0; i < n; i++) {
        Idunno__LatencyBucket *b = &v->bucket_rows[i];
        idunno__latency_bucket__init(b);
        b->lo_ms = v->buckets[i].lo_ms;
        b->hi_ms = v->buckets[i].hi_ms;
        b->count = v->buckets[i].count;
        v->bucket_ptrs[i] = b;
    }
    v->info.n_histogram = n;
    v->info.histogram = v->bucket_ptrs;
    return 0;
}

static void job_view_free(struct job_view *v)
{
    free(v->buckets);
    free(v->bucket_rows);
    free(v->bucket_ptrs);
}

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
    info->version = job->version;
    info->online = job->online;
    info->max_queue_delay_us = job->max_queue_delay_us;
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
    struct dispatch_job_view *d = &v->dispatch;
    dispatch_job_view(c->d, job->id, d);
    if (d->known) {
        info->first_dispatch_ms = d->first_dispatch_ms;
        info->first_result_ms = d->first_result_ms;
        info->first_start_ms = d->first_start_ms;
        info->workers_loaded = (uint32_t)d->workers_loaded;
        info->workers_loading = (uint32_t)d->workers_loading;
    }
    if (d->active && !job->stopped) {
        info->queued = d->queued;
        info->dispatched = d->dispatched;
        info->inflight = d->inflight;
        for (size_t k = 0; k < d->n_workers; k++)
            v->worker_ptrs[k] = d->workers[k];
        info->n_workers = d->n_workers;
        info->workers = v->worker_ptrs;
    }
}

void coord_reply_job(struct coord *c, struct net_request *req, uint16_t type, const char *model)
{
    struct job_rec *job = jobs_of_model(c->jobs, model);
    if (!job) {
        net_reply_errorf(req, ID_ENOTFOUND, "no job for model '%s'", model);
        return;
    }
    struct job_view *v = calloc(1, sizeof *v);
    if (!v) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    job_view_fill(c, job, id_wall_ms(), v);
    net_reply_pb(req, type, &v->info.base);
    free(v);
}

/* The latest version of each model, and every kept version with the job
 * pinned to it. */
void coord_read_models(struct coord *c, struct net_request *req)
{
    struct jobs *j = c->jobs;
    size_t n = jobs_model_count(j), total = n;
    for (size_t i = 0; i < n; i++) {
        size_t nv;
        jobs_model_versions(j, jobs_model_at(j, i)->name, &nv);
        total += nv;
    }
    Idunno__ModelInfo *rows = calloc(total + 1, sizeof *rows);
    Idunno__ModelInfo **ptrs = calloc(total + 1, sizeof *ptrs);
    float(*mean)[3] = calloc(total + 1, sizeof *mean), (*std)[3] = calloc(total + 1, sizeof *std);
    if (!rows || !ptrs || !mean || !std) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
    } else {
        size_t k = n;
        for (size_t i = 0; i < n; i++) {
            const struct model_rec *latest = jobs_model_at(j, i);
            const struct job_rec *job = jobs_of_model(j, latest->name);
            jobs_model_to_pb(latest, &rows[i], mean[i], std[i]);
            ptrs[i] = &rows[i];
            size_t nv;
            const struct model_rec *v = jobs_model_versions(j, latest->name, &nv);
            for (size_t x = 0; x < nv; x++, k++) {
                jobs_model_to_pb(&v[x], &rows[k], mean[k], std[k]);
                rows[k].job = job && job->version == v[x].version ? job->id : 0;
                ptrs[k] = &rows[k];
            }
        }
        Idunno__ModelList l = IDUNNO__MODEL_LIST__INIT;
        l.n_models = n;
        l.models = ptrs;
        l.n_versions = total - n;
        l.versions = ptrs + n;
        net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_JOB_MODELS_RESP, &l.base);
    }
    free(rows);
    free(ptrs);
    free(mean);
    free(std);
}

void coord_read_jobs(struct coord *c, struct net_request *req, const uint8_t *body, size_t len)
{
    Idunno__JobQuery *q = idunno__job_query__unpack(NULL, len, body);
    size_t n = jobs_count(c->jobs);
    struct job_view *views = calloc(n + 1, sizeof *views);
    Idunno__JobInfo **ptrs = calloc(n + 1, sizeof *ptrs);
    if (!q || !views || !ptrs) {
        net_reply_error(req, q ? ID_ENOMEM : ID_EPROTO, NULL, NULL);
    } else {
        uint64_t now = id_wall_ms();
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            struct job_rec *job = jobs_at(c->jobs, i);
            if (q->model[0] && strcmp(q->model, job->model) != 0)
                continue;
            job_view_fill(c, job, now, &views[k]);
            if (q->histogram && job_view_histogram(job, &views[k]) < 0) {
                net_reply_error(req, ID_ENOMEM, NULL, NULL);
                goto out;
            }
            ptrs[k] = &views[k].info;
            k++;
        }
        if (q->model[0] && k == 0) {
            net_reply_errorf(req, ID_ENOTFOUND, "no job for model '%s' (idunno launch %s BATCH)",
                             q->model, q->model);
        } else {
            Idunno__JobList l = IDUNNO__JOB_LIST__INIT;
            l.n_jobs = k;
            l.jobs = ptrs;
            l.now_ms = now;
            net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_JOB_LIST_RESP, &l.base);
        }
    }
out:
    if (q)
        idunno__job_query__free_unpacked(q, NULL);
    for (size_t i = 0; views && i < n; i++)
        job_view_free(&views[i]);
    free(views);
    free(ptrs);
}

void coord_read_results(struct coord *c, struct net_request *req, const uint8_t *body, size_t len)
{
    Idunno__JobQuery *q = idunno__job_query__unpack(NULL, len, body);
    struct job_rec *job = q ? jobs_of_model(c->jobs, q->model) : NULL;
    if (!q) {
        net_reply_error(req, ID_EPROTO, "bad JobQuery", NULL);
        return;
    }
    if (!job) {
        net_reply_errorf(req, ID_ENOTFOUND, "no job for model '%s'", q->model);
        idunno__job_query__free_unpacked(q, NULL);
        return;
    }
    size_t np = job->n_pending < q->max_results ? job->n_pending : q->max_results;
    struct job_view *v = calloc(1, sizeof *v);
    /* Exactly the committed parts: each names the one write of its file. */
    char **part_ptrs = calloc(job->parts + 1, sizeof *part_ptrs);
    Idunno__JobPart *parts = calloc(job->parts + 1, sizeof *parts);
    Idunno__JobPart **part_info = calloc(job->parts + 1, sizeof *part_info);
    char **lines = calloc(np + 1, sizeof *lines);
    /* The pending results as the lines a part will hold: one format,
     * rendered in one place. */
    struct strbuf text = STRBUF_INIT;
    size_t rendered = 0;
    int rc = jobs_render_results(c->jobs, job, np, SIZE_MAX, &text, &rendered);
    if (!v || !parts || !part_ptrs || !part_info || !lines || rc < 0) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
    } else {
        job_view_fill(c, job, id_wall_ms(), v);
        for (uint64_t p = 0; p < job->parts; p++) {
            jobs_part_to_pb(jobs_part(job, p + 1), &parts[p]);
            part_info[p] = &parts[p];
            part_ptrs[p] = parts[p].file;
        }
        char *buf = (char *)strbuf_str(&text);
        size_t nl = 0;
        for (char *l = buf; nl < rendered && *l;) {
            char *end = strchr(l, '\n');
            if (end)
                *end = '\0';
            lines[nl++] = l;
            if (!end)
                break;
            l = end + 1;
        }
        Idunno__JobResults r = IDUNNO__JOB_RESULTS__INIT;
        r.job = &v->info;
        r.n_parts = job->parts;
        r.parts = part_ptrs;
        r.n_part_info = job->parts;
        r.part_info = part_info;
        r.n_lines = nl;
        r.lines = lines;
        net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_JOB_RESULTS_RESP, &r.base);
    }
    strbuf_free(&text);
    free(v);
    free(parts);
    free(part_ptrs);
    free(part_info);
    free(lines);
    idunno__job_query__free_unpacked(q, NULL);
}
