/* jobs.c — jobs as a sub-state machine (see jobs.h): job records, the
 * commands on them, the snapshot section; the model records and their
 * versions are jobs_models.c's. */
#include "sched/jobs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"
#include "base/json_out.h"
#include "base/strbuf.h"
#include "idunno.pb-c.h"
#include "infer/result.h"
#include "sched/jobs_int.h"
#include "sched/parts.h"
#include "sched/qstats.h"

/* Still 1 with cards, versions and pins: they are new protobuf fields, so a
 * snapshot written before them restores (models without a card, one version
 * each, jobs pinned to it, results without a version) and the layout is
 * otherwise unchanged. */
#define JOBS_SNAPSHOT_VERSION 1

struct jobs *jobs_create(void)
{
    struct jobs *j = calloc(1, sizeof *j);
    if (j && !(j->models = calloc(JOBS_MAX_MODELS, sizeof *j->models))) {
        free(j);
        return NULL;
    }
    return j;
}

size_t jobs_count(const struct jobs *j)
{
    return j->n_jobs;
}

static void pending_free(struct pending_result *p)
{
    free(p->classes ? (void *)p->classes : (void *)p->probs);
    free(p->error);
    p->classes = NULL;
    p->probs = NULL;
    p->error = NULL;
}

static void job_free(struct job_rec *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->n_images; i++)
        free(job->images[i]);
    free(job->images);
    free(job->done);
    for (size_t i = 0; i < job->n_pending; i++)
        pending_free(&job->pending[i]);
    free(job->pending);
    free(job->part_list);
    qstats_destroy(job->stats);
    free(job);
}

static void jobs_clear(struct jobs *j)
{
    for (size_t i = 0; i < j->n_jobs; i++)
        job_free(j->jobs[i]);
    free(j->jobs);
    j->jobs = NULL;
    j->n_jobs = j->cap_jobs = 0;
    jobs_models_clear(j);
    j->next_job = 0;
}

void jobs_destroy(struct jobs *j)
{
    if (!j)
        return;
    jobs_clear(j);
    free(j->models);
    free(j);
}

struct job_rec *jobs_at(const struct jobs *j, size_t i)
{
    return i < j->n_jobs ? j->jobs[i] : NULL;
}

struct job_rec *jobs_of_model(const struct jobs *j, const char *model)
{
    for (size_t i = 0; i < j->n_jobs; i++)
        if (strcmp(j->jobs[i]->model, model) == 0)
            return j->jobs[i];
    return NULL;
}

struct job_rec *jobs_by_id(const struct jobs *j, uint32_t id)
{
    for (size_t i = 0; i < j->n_jobs; i++)
        if (j->jobs[i]->id == id)
            return j->jobs[i];
    return NULL;
}

const struct job_part *jobs_part(const struct job_rec *job, uint64_t part)
{
    return part >= 1 && part <= job->parts ? &job->part_list[part - 1] : NULL;
}

void jobs_part_name(const struct job_rec *job, uint64_t part, char *out, size_t len)
{
    const struct job_part *p = jobs_part(job, part);
    snprintf(out, len, "%s", p ? p->file : "");
}

int jobs_render_results(const struct jobs *j, const struct job_rec *job, size_t max,
                        size_t max_bytes, struct strbuf *out, size_t *n)
{
    size_t k = 0;
    for (; k < max && k < job->n_pending && out->len < max_bytes; k++) {
        const struct pending_result *p = &job->pending[k];
        /* Labels belong to the card of the version that ran the image (a
         * result of a worker before versions: the job's); a result of a
         * version no longer kept gets none rather than another's. */
        const struct model_rec *model = jobs_model_version(j, job->model,
                                                           p->version ? p->version : job->version);
        const struct model_card *card = model ? &model->card : NULL;
        struct result_view v = {
            .image = p->image < job->n_images ? job->images[p->image] : "?",
            .model = job->model,
            .version = p->version,
            .error = p->error,
            .raw = p->raw,
            .k = p->k,
            .index = p->classes,
            .values = p->probs,
            .labels = card && card->n_labels ? card->labels : NULL,
            .n_labels = card ? card->n_labels : 0,
        };
        struct json_out jo;
        json_out_init(&jo, out);
        result_json(&jo, NULL, &v);
        strbuf_putc(out, '\n');
    }
    *n = k;
    return strbuf_failed(out) ? ID_ENOMEM : 0;
}

/* Whether `file` may be committed as part `part` of a job: a name of the
 * scheme of parts.h for this job and part, or, for commands and snapshots of
 * earlier versions, the name parts had then. */
static int part_file_ok(const struct job_rec *job, uint64_t part, const char *file)
{
    struct parts_name n;
    if (parts_name_parse(file, &n) == 0)
        return strcmp(n.model, job->model) == 0 && n.job == job->id && n.part == part;
    char legacy[SDFS_NAME_MAX + 1];
    parts_legacy_name(legacy, sizeof legacy, job->model, job->id, part);
    return strcmp(file, legacy) == 0;
}

/* Appends committed part parts + 1. */
static int job_add_part(struct job_rec *job, const char *file, uint32_t results,
                        const uint8_t *sha256, size_t sha_len)
{
    if (!part_file_ok(job, job->parts + 1, file) || (sha_len != 0 && sha_len != 32))
        return ID_EINVAL;
    struct job_part *a = realloc(job->part_list, (job->parts + 1) * sizeof *a);
    if (!a)
        return ID_ENOMEM;
    job->part_list = a;
    struct job_part *p = &a[job->parts];
    memset(p, 0, sizeof *p);
    snprintf(p->file, sizeof p->file, "%s", file);
    p->results = results;
    p->has_sha256 = sha_len == 32;
    if (p->has_sha256)
        memcpy(p->sha256, sha256, 32);
    job->parts++;
    return 0;
}

/* ---- job records ---------------------------------------------------------------------------- */

static struct job_rec *job_new(uint32_t id, const char *model, uint32_t batch, double weight,
                               uint64_t created_ms)
{
    struct job_rec *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->stats = qstats_create();
    if (!job->stats) {
        free(job);
        return NULL;
    }
    job->id = id;
    snprintf(job->model, sizeof job->model, "%s", model);
    job->batch = batch;
    job->weight = weight;
    job->created_ms = created_ms;
    return job;
}

static int job_reserve_images(struct job_rec *job, size_t n)
{
    if (n <= job->cap_images)
        return 0;
    /* The done bitmap follows the images' capacity: job->cap_images is
     * updated only once both have grown. */
    size_t cap = job->cap_images;
    if (ARRAY_RESERVE(job->images, cap, 0, n, 256) < 0)
        return ID_ENOMEM;
    uint8_t *done = realloc(job->done, (cap + 7) / 8);
    if (!done)
        return ID_ENOMEM;
    memset(done + (job->cap_images + 7) / 8, 0, (cap + 7) / 8 - (job->cap_images + 7) / 8);
    job->done = done;
    job->cap_images = cap;
    return 0;
}

static int job_add_pending(struct job_rec *job, const Idunno__QueryResult *r)
{
    if (ARRAY_RESERVE(job->pending, job->cap_pending, job->n_pending, 1, 256) < 0)
        return ID_ENOMEM;
    struct pending_result *p = &job->pending[job->n_pending];
    memset(p, 0, sizeof *p);
    p->image = r->image;
    p->version = r->version;
    if (r->error && r->error[0]) {
        p->error = strndup(r->error, 200);
        if (!p->error)
            return ID_ENOMEM;
        job->n_pending++;
        return 0;
    }
    /* A result holds what the card asked for, bounded as the engine bounds
     * it: at most CARD_MAX_K entries or values. */
    p->raw = r->n_values > 0;
    size_t k = p->raw ? r->n_values : (r->n_classes < r->n_probs ? r->n_classes : r->n_probs);
    p->k = (uint16_t)(k < CARD_MAX_K ? k : CARD_MAX_K);
    size_t each = p->raw ? sizeof(float) : sizeof(float) + sizeof(uint32_t);
    void *mem = malloc((p->k ? p->k : 1) * each);
    if (!mem)
        return ID_ENOMEM;
    if (p->raw) {
        p->probs = mem;
        memcpy(p->probs, r->values, p->k * sizeof(float));
    } else {
        p->classes = mem;
        p->probs = (float *)(p->classes + p->k);
        memcpy(p->classes, r->classes, p->k * sizeof(uint32_t));
        memcpy(p->probs, r->probs, p->k * sizeof(float));
    }
    job->n_pending++;
    return 0;
}

static int jobs_insert(struct jobs *j, struct job_rec *job)
{
    if (ARRAY_RESERVE(j->jobs, j->cap_jobs, j->n_jobs, 1, 16) < 0)
        return ID_ENOMEM;
    j->jobs[j->n_jobs++] = job;
    return 0;
}

static void jobs_remove(struct jobs *j, struct job_rec *job)
{
    for (size_t i = 0; i < j->n_jobs; i++)
        if (j->jobs[i] == job) {
            memmove(&j->jobs[i], &j->jobs[i + 1], (j->n_jobs - i - 1) * sizeof *j->jobs);
            j->n_jobs--;
            break;
        }
    job_free(job);
}

/* ---- results of apply ----------------------------------------------------------------------- */

void jobs_result_pb(struct sm_result *res, const ProtobufCMessage *m)
{
    if (!res->want_body)
        return;
    size_t n = protobuf_c_message_get_packed_size(m);
    res->body = malloc(n ? n : 1);
    if (res->body)
        res->len = protobuf_c_message_pack(m, res->body);
}

static void result_job(struct sm_result *res, const struct job_rec *job)
{
    Idunno__JobInfo info = IDUNNO__JOB_INFO__INIT;
    info.id = job->id;
    info.model = (char *)job->model;
    info.batch = job->batch;
    info.weight = job->weight;
    info.state = job->stopped ? "stopped" : "running";
    info.error = (char *)job->error;
    info.version = job->version;
    info.online = job->online;
    info.max_queue_delay_us = job->max_queue_delay_us;
    info.images = job->n_images;
    info.images_done = job->n_done;
    info.queries_done = job->queries_done;
    info.created_ms = job->created_ms;
    jobs_result_pb(res, &info.base);
}

/* ---- commands ------------------------------------------------------------------------------- */

static int batch_ok(uint32_t b)
{
    return b >= 1 && b <= JOBS_MAX_BATCH;
}

/* A queue delay holds requests of an online job only: a batch job's queries
 * are cut from images already there, nothing more comes by waiting. */
static int queue_delay_ok(uint32_t us, int online)
{
    return us <= JOBS_MAX_QUEUE_DELAY_US && (online || us == 0);
}

static void apply_launch(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__JobLaunch *m = idunno__job_launch__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    double w = m->weight == 0 ? 1.0 : m->weight;
    struct job_rec *old = jobs_model_name_ok(m->model) ? jobs_of_model(j, m->model) : NULL;
    /* The job is pinned to the version asked for, or to the latest. */
    const struct model_rec *pin = jobs_model_name_ok(m->model)
                                      ? jobs_model_version(j, m->model, m->version)
                                      : NULL;
    if (!jobs_model_name_ok(m->model) || !batch_ok(m->batch) || !(w >= 1e-6 && w <= 1e6) ||
        !queue_delay_ok(m->max_queue_delay_us, m->online)) {
        res->status = ID_EINVAL;
    } else if (!pin) {
        res->status = ID_ENOTFOUND;
    } else if (old && !old->stopped) {
        res->status = ID_EEXIST;
    } else {
        struct job_rec *job = job_new(j->next_job + 1, m->model, m->batch, w, cmd->time_ms);
        if (!job || jobs_insert(j, job) < 0) {
            job_free(job);
            res->status = ID_ENOMEM;
        } else {
            j->next_job++;
            job->version = pin->version;
            job->online = m->online;
            job->max_queue_delay_us = m->max_queue_delay_us;
            if (old)
                jobs_remove(j, old); /* a relaunch replaces the stopped job */
            result_job(res, job);
        }
    }
    idunno__job_launch__free_unpacked(m, NULL);
}

/* The running job of a model, or an error status. */
static struct job_rec *running_job(struct jobs *j, const char *model, int *status)
{
    struct job_rec *job = jobs_model_name_ok(model) ? jobs_of_model(j, model) : NULL;
    if (!job || job->stopped) {
        *status = ID_ENOTFOUND;
        return NULL;
    }
    return job;
}

static void apply_inference(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__JobInference *m = idunno__job_inference__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct job_rec *job = running_job(j, m->model, &res->status);
    if (job && job->online)
        res->status = ID_EINVAL; /* its queries are online requests */
    if (job && res->status == 0) {
        for (size_t i = 0; i < m->n_images && res->status == 0; i++)
            if (!sdfs_name_ok(m->images[i]))
                res->status = ID_EINVAL;
        if (res->status == 0 && job->n_images + m->n_images > JOBS_MAX_IMAGES)
            res->status = ID_ENOSPC;
        if (res->status == 0)
            res->status = job_reserve_images(job, job->n_images + m->n_images);
        /* Validated and reserved first: from here on nothing fails halfway. */
        char **copies = res->status == 0 ? calloc(m->n_images ? m->n_images : 1, sizeof *copies)
                                         : NULL;
        if (res->status == 0 && !copies)
            res->status = ID_ENOMEM;
        for (size_t i = 0; res->status == 0 && i < m->n_images; i++)
            if (!(copies[i] = strdup(m->images[i])))
                res->status = ID_ENOMEM;
        if (res->status == 0) {
            for (size_t i = 0; i < m->n_images; i++)
                job->images[job->n_images++] = copies[i];
            result_job(res, job);
        } else if (copies) {
            for (size_t i = 0; i < m->n_images; i++)
                free(copies[i]);
        }
        free(copies);
    }
    idunno__job_inference__free_unpacked(m, NULL);
}

static void apply_set_batch(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__JobLaunch *m = idunno__job_launch__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct job_rec *job = running_job(j, m->model, &res->status);
    if (job && !batch_ok(m->batch)) {
        res->status = ID_EINVAL;
    } else if (job) {
        job->batch = m->batch;
        result_job(res, job);
    }
    idunno__job_launch__free_unpacked(m, NULL);
}

/* JOB_SET_VERSION: queries dispatched from now on run the version given;
 * those in flight finish on theirs (each result records its version). */
static void apply_set_version(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__JobLaunch *m = idunno__job_launch__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct job_rec *job = running_job(j, m->model, &res->status);
    if (job && (m->version == 0 || !jobs_model_version(j, m->model, m->version))) {
        res->status = ID_ENOTFOUND;
    } else if (job) {
        job->version = m->version;
        result_job(res, job);
    }
    idunno__job_launch__free_unpacked(m, NULL);
}

/* JOB_SET_QUEUE_DELAY: an online job's maximum queue delay, for the requests
 * dispatched from now on (the leader reads it at each dispatch). */
static void apply_set_queue_delay(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__JobLaunch *m = idunno__job_launch__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct job_rec *job = running_job(j, m->model, &res->status);
    if (job && (!job->online || !queue_delay_ok(m->max_queue_delay_us, 1))) {
        res->status = ID_EINVAL;
    } else if (job) {
        job->max_queue_delay_us = m->max_queue_delay_us;
        result_job(res, job);
    }
    idunno__job_launch__free_unpacked(m, NULL);
}

static void apply_stop(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__JobLaunch *m = idunno__job_launch__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct job_rec *job = running_job(j, m->model, &res->status);
    if (job) {
        job->stopped = 1;
        snprintf(job->error, sizeof job->error, "%s", m->error);
        result_job(res, job);
    }
    idunno__job_launch__free_unpacked(m, NULL);
}

static void apply_done(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__QueryDoneBatch *m = idunno__query_done_batch__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    for (size_t q = 0; q < m->n_done; q++) {
        const Idunno__QueryDone *d = m->done[q];
        struct job_rec *job = jobs_by_id(j, d->job);
        if (!job || d->error[0])
            continue; /* a failed query is requeued, not recorded */
        if (job->online) {
            /* One online request answered (its results went to its caller):
             * counted once, since the leader proposes each answer once. */
            job->queries_done++;
            qstats_record(job->stats, cmd->time_ms, d->duration_ms, d->worker);
            continue;
        }
        size_t fresh = 0;
        for (size_t i = 0; i < d->n_results; i++) {
            const Idunno__QueryResult *r = d->results[i];
            if (r->image >= job->n_images)
                continue;
            if (job_image_done(job, r->image)) {
                job->duplicates++;
                continue;
            }
            if (job_add_pending(job, r) < 0)
                continue; /* out of memory: the image stays undone and is run again */
            job->done[r->image >> 3] |= (uint8_t)(1u << (r->image & 7));
            job->n_done++;
            fresh++;
        }
        if (fresh) {
            job->queries_done++;
            qstats_record(job->stats, cmd->time_ms, d->duration_ms, d->worker);
        }
    }
    idunno__query_done_batch__free_unpacked(m, NULL);
}

static void apply_flushed(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__JobFlushed *m = idunno__job_flushed__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct job_rec *job = jobs_by_id(j, m->job);
    char legacy[SDFS_NAME_MAX + 1];
    const char *file = m->file;
    if (job && !file[0]) { /* commands of the first versions named no file */
        parts_legacy_name(legacy, sizeof legacy, job->model, job->id, m->part);
        file = legacy;
    }
    if (!job) {
        res->status = ID_ENOTFOUND;
    } else if (m->part >= 1 && m->part <= job->parts) {
        /* The same write again is a retry; another write of a committed part
         * is rejected, so its file is never read (the coordinator deletes it). */
        res->status = strcmp(jobs_part(job, m->part)->file, file) == 0 ? 0 : ID_EEXIST;
    } else if (m->part != job->parts + 1 || m->results > job->n_pending) {
        res->status = ID_EINVAL; /* out of order, or more than is pending */
    } else if ((res->status = job_add_part(job, file, m->results, m->sha256.data, m->sha256.len)) ==
               0) {
        for (size_t i = 0; i < m->results; i++)
            pending_free(&job->pending[i]);
        memmove(job->pending, job->pending + m->results,
                (job->n_pending - m->results) * sizeof *job->pending);
        job->n_pending -= m->results;
    }
    idunno__job_flushed__free_unpacked(m, NULL);
}

static void jobs_apply(void *self, const struct sm_cmd *cmd, struct sm_result *res)
{
    struct jobs *j = self;
    if (cmd->version != 1) {
        res->status = ID_EVERSION;
        return;
    }
    switch (cmd->type) {
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_MODEL_ADD: jobs_apply_model_add(j, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_VERSION: apply_set_version(j, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_QUEUE_DELAY:
        apply_set_queue_delay(j, cmd, res);
        break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH: apply_launch(j, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE: apply_inference(j, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_BATCH: apply_set_batch(j, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP: apply_stop(j, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE: apply_done(j, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_FLUSHED: apply_flushed(j, cmd, res); break;
    default: res->status = ID_EUNKNOWNTYPE; break;
    }
}

/* ---- snapshots ------------------------------------------------------------------------------ */

/* Fills r from p (r points into p). */
static void pending_to_pb(const struct pending_result *p, Idunno__QueryResult *r)
{
    idunno__query_result__init(r);
    r->image = p->image;
    r->version = p->version;
    r->error = p->error ? p->error : "";
    if (p->error)
        return;
    if (p->raw) {
        r->n_values = p->k;
        r->values = p->probs;
    } else {
        r->n_classes = r->n_probs = p->k;
        r->classes = p->classes;
        r->probs = p->probs;
    }
}

/* Fills m from p (m points into p). */
void jobs_part_to_pb(const struct job_part *p, Idunno__JobPart *m)
{
    idunno__job_part__init(m);
    m->file = (char *)p->file;
    m->results = p->results;
    if (p->has_sha256) {
        m->sha256.data = (uint8_t *)p->sha256;
        m->sha256.len = sizeof p->sha256;
    }
}

/* The committed parts of a snapshot's job; a snapshot of an earlier version
 * lists none, and its parts had the names of then. */
static int restore_parts(struct job_rec *job, const Idunno__JobState *s)
{
    if (s->n_part_list != 0 && s->n_part_list != s->parts)
        return ID_EPROTO;
    if (s->parts > JOBS_MAX_IMAGES)
        return ID_EPROTO;
    for (uint64_t p = 0; p < s->parts; p++) {
        char legacy[SDFS_NAME_MAX + 1];
        int rc;
        if (s->n_part_list) {
            const Idunno__JobPart *m = s->part_list[p];
            rc = job_add_part(job, m->file, m->results, m->sha256.data, m->sha256.len);
        } else {
            parts_legacy_name(legacy, sizeof legacy, job->model, job->id, p + 1);
            rc = job_add_part(job, legacy, 0, NULL, 0);
        }
        if (rc < 0)
            return rc == ID_ENOMEM ? rc : ID_EPROTO;
    }
    return 0;
}

static int jobs_build(void *self, const ProtobufCMessage *msg)
{
    struct jobs *fresh = self;
    const Idunno__JobsState *st = (const Idunno__JobsState *)msg;
    fresh->models = calloc(JOBS_MAX_MODELS, sizeof *fresh->models);
    int rc = fresh->models ? jobs_models_restore(fresh, st) : ID_ENOMEM;
    fresh->next_job = st->next_job;
    for (size_t i = 0; rc == 0 && i < st->n_jobs; i++) {
        const Idunno__JobState *s = st->jobs[i];
        double w = s->weight;
        if (!jobs_model_name_ok(s->model) || !batch_ok(s->batch) || !(w >= 1e-6 && w <= 1e6) ||
            !queue_delay_ok(s->max_queue_delay_us, s->online) || s->id == 0 ||
            s->id > st->next_job || jobs_by_id(fresh, s->id) || jobs_of_model(fresh, s->model) ||
            s->n_images > JOBS_MAX_IMAGES || s->done.len != (s->n_images + 7) / 8) {
            rc = ID_EPROTO;
            break;
        }
        struct job_rec *job = job_new(s->id, s->model, s->batch, w, s->created_ms);
        if (!job || jobs_insert(fresh, job) < 0) {
            job_free(job);
            rc = ID_ENOMEM;
            break;
        }
        job->stopped = s->stopped;
        job->online = s->online;
        job->max_queue_delay_us = s->max_queue_delay_us;
        snprintf(job->error, sizeof job->error, "%s", s->error);
        /* A job of an older snapshot ran its model's latest version. */
        const struct model_rec *pin = jobs_model_version(fresh, s->model, s->version);
        if (!pin) {
            rc = ID_EPROTO;
            break;
        }
        job->version = pin->version;
        job->queries_done = s->queries_done;
        job->duplicates = s->duplicates;
        if ((rc = restore_parts(job, s)) < 0 || (rc = job_reserve_images(job, s->n_images)) < 0)
            break;
        for (size_t k = 0; k < s->n_images; k++) {
            if (!sdfs_name_ok(s->images[k]) || !(job->images[k] = strdup(s->images[k]))) {
                rc = ID_EPROTO;
                break;
            }
            job->n_images++;
        }
        if (rc < 0)
            break;
        if (s->done.len)
            memcpy(job->done, s->done.data, s->done.len);
        /* Bits past the last image must be clear: they would mark images not
         * yet queued as done. */
        for (size_t b = s->n_images; b < s->done.len * 8; b++)
            if (job_image_done(job, b))
                rc = ID_EPROTO;
        for (size_t b = 0; b < s->n_images; b++)
            job->n_done += job_image_done(job, b);
        if (rc == 0 && qstats_restore(job->stats, s->stats.data, s->stats.len) < 0)
            rc = ID_EPROTO;
        for (size_t p = 0; rc == 0 && p < s->n_pending; p++) {
            if (s->pending[p]->image >= s->n_images)
                rc = ID_EPROTO;
            else
                rc = job_add_pending(job, s->pending[p]);
        }
    }
    return rc == 0 || rc == ID_ENOMEM ? rc : ID_EPROTO;
}

static void jobs_clear_any(void *self)
{
    jobs_clear(self);
}

static void jobs_release(void *self)
{
    struct jobs *j = self;
    jobs_clear(j);
    free(j->models);
    j->models = NULL;
}

static const struct sm_section jobs_section = {
    .desc = &idunno__jobs_state__descriptor,
    .state_size = sizeof(struct jobs),
    .clear = jobs_clear_any,
    .release = jobs_release,
    .build = jobs_build,
};

static int jobs_snapshot(void *self, struct sm_buf *out)
{
    struct jobs *j = self;
    struct sm_scratch sc = {0};
    Idunno__JobsState st = IDUNNO__JOBS_STATE__INIT;
    jobs_models_snapshot(j, &sc, &st);
    Idunno__JobState *js = sm_scratch_calloc(&sc, j->n_jobs + 1, sizeof *js);
    Idunno__JobState **jp = sm_scratch_calloc(&sc, j->n_jobs + 1, sizeof *jp);
    size_t np = 0;
    for (size_t i = 0; i < j->n_jobs; i++)
        np += j->jobs[i]->n_pending;
    Idunno__QueryResult *pr = sm_scratch_calloc(&sc, np + 1, sizeof *pr);
    Idunno__QueryResult **pp = sm_scratch_calloc(&sc, np + 1, sizeof *pp);
    size_t nparts = 0;
    for (size_t i = 0; i < j->n_jobs; i++)
        nparts += j->jobs[i]->parts;
    Idunno__JobPart *parts = sm_scratch_calloc(&sc, nparts + 1, sizeof *parts);
    Idunno__JobPart **partp = sm_scratch_calloc(&sc, nparts + 1, sizeof *partp);
    if (sc.failed)
        goto out;
    size_t k = 0, kp = 0;
    for (size_t i = 0; i < j->n_jobs; i++) {
        const struct job_rec *job = j->jobs[i];
        Idunno__JobState *s = &js[i];
        idunno__job_state__init(s);
        s->id = job->id;
        s->model = (char *)job->model;
        s->batch = job->batch;
        s->weight = job->weight;
        s->stopped = job->stopped;
        s->error = (char *)job->error;
        s->version = job->version;
        s->online = job->online;
        s->max_queue_delay_us = job->max_queue_delay_us;
        s->created_ms = job->created_ms;
        s->n_images = job->n_images;
        s->images = job->images;
        s->done.data = job->done;
        s->done.len = (job->n_images + 7) / 8;
        s->queries_done = job->queries_done;
        s->duplicates = job->duplicates;
        s->parts = job->parts;
        s->part_list = &partp[kp];
        s->n_part_list = job->parts;
        for (uint64_t p = 0; p < job->parts; p++, kp++) {
            jobs_part_to_pb(&job->part_list[p], &parts[kp]);
            partp[kp] = &parts[kp];
        }
        uint8_t *stats = NULL;
        size_t slen = 0;
        if (qstats_serialize(job->stats, &stats, &slen) < 0)
            goto out;
        sm_scratch_adopt(&sc, stats);
        if (sc.failed)
            goto out;
        s->stats.data = stats;
        s->stats.len = slen;
        s->pending = &pp[k];
        s->n_pending = job->n_pending;
        for (size_t p = 0; p < job->n_pending; p++, k++) {
            pending_to_pb(&job->pending[p], &pr[k]);
            pp[k] = &pr[k];
        }
        jp[i] = s;
    }
    st.n_jobs = j->n_jobs;
    st.jobs = jp;
    st.next_job = j->next_job;
    return sm_scratch_pack(&sc, out, &st.base);
out: /* out of memory */
    sm_scratch_free(&sc);
    return ID_ENOMEM;
}

const struct sm_ops jobs_sm_ops = {
    .name = "jobs",
    .id = SM_ID_JOBS,
    .type_lo = 200,
    .type_hi = 299,
    .snapshot_version = JOBS_SNAPSHOT_VERSION,
    .apply = jobs_apply,
    .snapshot = jobs_snapshot,
    .section = &jobs_section,
    .digest = NULL,
};
