/* jobs_models.c — the model records of the jobs state machine (jobs.h):
 * each model's kept versions, MODEL_ADD, and their part of the snapshot.
 *
 * A train of an existing name adds the next version and keeps the earlier
 * ones, so a job keeps running the version it is pinned to. At most
 * JOBS_MAX_VERSIONS are kept per model, like SDFS keeps a file's versions: a
 * new one drops the oldest version the model's job is not pinned to. A model
 * has at most one job, so a pinned version is kept without ever refusing a
 * train. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "sched/jobs_int.h"

int jobs_model_name_ok(const char *name)
{
    if (!name || !name[0] || strlen(name) >= JOBS_NAME_MAX)
        return 0;
    for (const char *p = name; *p; p++)
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return 1;
}

static void model_rec_free(struct model_rec *r)
{
    free(r->card_json);
    r->card_json = NULL;
    card_free(&r->card);
}

void jobs_models_clear(struct jobs *j)
{
    for (size_t i = 0; i < j->n_models; i++) {
        struct model_hist *h = &j->models[i];
        for (size_t k = 0; k < h->n; k++)
            model_rec_free(&h->v[k]);
        free(h->v);
        h->v = NULL;
        h->n = 0;
    }
    j->n_models = 0;
}

static struct model_hist *hist_of(const struct jobs *j, const char *name)
{
    for (size_t i = 0; i < j->n_models; i++)
        if (strcmp(j->models[i].v[0].name, name) == 0)
            return &j->models[i];
    return NULL;
}

size_t jobs_model_count(const struct jobs *j)
{
    return j->n_models;
}

const struct model_rec *jobs_model_at(const struct jobs *j, size_t i)
{
    return i < j->n_models ? &j->models[i].v[j->models[i].n - 1] : NULL;
}

const struct model_rec *jobs_model(const struct jobs *j, const char *name)
{
    return jobs_model_version(j, name, 0);
}

const struct model_rec *jobs_model_version(const struct jobs *j, const char *name, uint32_t version)
{
    const struct model_hist *h = hist_of(j, name);
    if (!h)
        return NULL;
    if (version == 0)
        return &h->v[h->n - 1];
    for (size_t k = 0; k < h->n; k++)
        if (h->v[k].version == version)
            return &h->v[k];
    return NULL;
}

const struct model_rec *jobs_model_versions(const struct jobs *j, const char *name, size_t *n)
{
    const struct model_hist *h = hist_of(j, name);
    *n = h ? h->n : 0;
    return h ? h->v : NULL;
}

/* The stored card of a model record: parsed from its JSON and checked
 * against the record's classes; the record's legacy fields (a square size,
 * three means) then come from it, so they never disagree. */
static int model_card_from_pb(const Idunno__ModelInfo *m, struct model_rec *out)
{
    size_t len = strnlen(m->card, JOBS_MAX_CARD + 1);
    char err[200];
    if (len > JOBS_MAX_CARD || card_parse_json(m->card, len, NULL, &out->card, err, sizeof err) < 0)
        return ID_EINVAL;
    const struct model_card *c = &out->card;
    int raw = c->output == CARD_RAW;
    if (!(c->given & CARD_F_SIZE) || (c->n_labels && c->n_labels != m->classes) ||
        (raw ? m->classes > CARD_MAX_K
             : c->top_k < 1 || c->top_k > CARD_MAX_K || (uint32_t)c->top_k > m->classes))
        return ID_EINVAL;
    if (!(out->card_json = strndup(m->card, len)))
        return ID_ENOMEM;
    out->input_size = c->height == c->width ? (uint32_t)c->height : 0;
    out->resize = (uint32_t)c->resize_side;
    for (int k = 0; k < 3; k++) {
        out->mean[k] = c->mean[k < c->n_mean ? k : 0];
        out->std[k] = c->std[k < c->n_std ? k : 0];
    }
    return 0;
}

static int model_from_pb(const Idunno__ModelInfo *m, struct model_rec *out)
{
    memset(out, 0, sizeof *out);
    if (!jobs_model_name_ok(m->name) || !sdfs_name_ok(m->file) || !sdfs_blob_ok(m->blob) ||
        m->sha256.len != 32 || m->classes == 0 || m->classes > 1000000)
        return ID_EINVAL;
    snprintf(out->name, sizeof out->name, "%s", m->name);
    snprintf(out->file, sizeof out->file, "%s", m->file);
    memcpy(out->blob, m->blob, SDFS_BLOB_LEN + 1);
    out->size = m->size;
    memcpy(out->sha256, m->sha256.data, 32);
    out->classes = m->classes;
    out->time_ms = m->time_ms;
    out->version = m->version ? m->version : 1;
    if (m->card[0]) {
        int rc = model_card_from_pb(m, out);
        if (rc < 0)
            model_rec_free(out);
        return rc;
    }
    /* A model registered before cards: a square input and its statistics. */
    if (m->input_size == 0 || m->input_size > 4096 || m->resize < m->input_size ||
        m->resize > 8192 || m->n_mean != 3 || m->n_std != 3)
        return ID_EINVAL;
    for (int k = 0; k < 3; k++)
        if (!isfinite(m->mean[k]) || !isfinite(m->std[k]) || m->std[k] <= 0)
            return ID_EINVAL;
    out->input_size = m->input_size;
    out->resize = m->resize;
    for (int k = 0; k < 3; k++) {
        out->mean[k] = m->mean[k];
        out->std[k] = m->std[k];
    }
    return 0;
}

void jobs_model_to_pb(const struct model_rec *r, Idunno__ModelInfo *m, float *mean, float *std)
{
    idunno__model_info__init(m);
    m->name = (char *)r->name;
    m->file = (char *)r->file;
    m->blob = (char *)r->blob;
    m->size = r->size;
    m->sha256.data = (uint8_t *)r->sha256;
    m->sha256.len = 32;
    m->input_size = r->input_size;
    m->resize = r->resize;
    m->classes = r->classes;
    for (int k = 0; k < 3; k++) {
        mean[k] = r->mean[k];
        std[k] = r->std[k];
    }
    m->n_mean = m->n_std = 3;
    m->mean = mean;
    m->std = std;
    m->time_ms = r->time_ms;
    m->card = r->card_json ? r->card_json : "";
    m->version = r->version;
}

/* A new history slot for a model not yet known, or NULL (out of slots or
 * memory: *status says which). */
static struct model_hist *hist_new(struct jobs *j, int *status)
{
    if (j->n_models == JOBS_MAX_MODELS) {
        *status = ID_ENOSPC;
        return NULL;
    }
    struct model_hist *h = &j->models[j->n_models];
    if (!(h->v = calloc(JOBS_MAX_VERSIONS, sizeof *h->v))) {
        *status = ID_ENOMEM;
        return NULL;
    }
    h->n = 0;
    j->n_models++;
    return h;
}

/* Makes room for one more version: drops the oldest one the model's job is
 * not pinned to. */
static void hist_make_room(const struct jobs *j, struct model_hist *h)
{
    if (h->n < JOBS_MAX_VERSIONS)
        return;
    const struct job_rec *job = jobs_of_model(j, h->v[0].name);
    size_t drop = 0;
    while (drop < h->n - 1 && job && job->version == h->v[drop].version)
        drop++;
    model_rec_free(&h->v[drop]);
    memmove(&h->v[drop], &h->v[drop + 1], (h->n - drop - 1) * sizeof *h->v);
    h->n--;
}

void jobs_apply_model_add(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__ModelInfo *m = idunno__model_info__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct model_rec rec;
    res->status = model_from_pb(m, &rec);
    if (res->status == 0) {
        rec.time_ms = cmd->time_ms;
        struct model_hist *h = hist_of(j, rec.name);
        uint32_t last = h ? h->v[h->n - 1].version : 0;
        if (!h)
            h = hist_new(j, &res->status);
        if (!h) {
            model_rec_free(&rec);
        } else {
            /* The version is the state machine's to give, never the caller's. */
            rec.version = last + 1;
            hist_make_room(j, h);
            h->v[h->n++] = rec;
            m->version = rec.version;
            m->time_ms = rec.time_ms;
            jobs_result_pb(res, &m->base);
        }
    }
    idunno__model_info__free_unpacked(m, NULL);
}

/* Puts rec in its model's history, in version order; the latest versions
 * (JobsState.models) come first, so each earlier one goes before them. */
static int restore_one(struct jobs *fresh, const Idunno__ModelInfo *m, int latest)
{
    struct model_rec rec;
    struct model_hist *h = jobs_model_name_ok(m->name) ? hist_of(fresh, m->name) : NULL;
    int rc = 0;
    if (latest == !!h || (!latest && h->n == JOBS_MAX_VERSIONS))
        return ID_EPROTO; /* a latest version twice, or an earlier one of no model */
    if ((rc = model_from_pb(m, &rec)) < 0)
        return rc == ID_ENOMEM ? rc : ID_EPROTO;
    if (!h && !(h = hist_new(fresh, &rc))) {
        model_rec_free(&rec);
        return rc == ID_ENOMEM ? rc : ID_EPROTO;
    }
    size_t at = h->n;
    while (at > 0 && h->v[at - 1].version > rec.version)
        at--;
    if ((at > 0 && h->v[at - 1].version == rec.version) || (!latest && at == h->n)) {
        model_rec_free(&rec);
        return ID_EPROTO;
    }
    /* An earlier version is older than the latest (at < n). */
    memmove(&h->v[at + 1], &h->v[at], (h->n - at) * sizeof *h->v);
    h->v[at] = rec;
    h->n++;
    return 0;
}

int jobs_models_restore(struct jobs *fresh, const Idunno__JobsState *st)
{
    if (st->n_models > JOBS_MAX_MODELS)
        return ID_EPROTO;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < st->n_models; i++)
        rc = restore_one(fresh, st->models[i], 1);
    for (size_t i = 0; rc == 0 && i < st->n_earlier; i++)
        rc = restore_one(fresh, st->earlier[i], 0);
    return rc;
}

void jobs_models_snapshot(const struct jobs *j, struct sm_scratch *sc, Idunno__JobsState *st)
{
    size_t total = 0;
    for (size_t i = 0; i < j->n_models; i++)
        total += j->models[i].n;
    Idunno__ModelInfo *rows = sm_scratch_calloc(sc, total + 1, sizeof *rows);
    Idunno__ModelInfo **latest = sm_scratch_calloc(sc, j->n_models + 1, sizeof *latest);
    Idunno__ModelInfo **earlier = sm_scratch_calloc(sc, total + 1, sizeof *earlier);
    float(*mean)[3] = sm_scratch_calloc(sc, total + 1, sizeof *mean);
    float(*std)[3] = sm_scratch_calloc(sc, total + 1, sizeof *std);
    if (sc->failed)
        return;
    size_t k = 0, ne = 0;
    for (size_t i = 0; i < j->n_models; i++) {
        const struct model_hist *h = &j->models[i];
        for (size_t v = 0; v < h->n; v++, k++) {
            jobs_model_to_pb(&h->v[v], &rows[k], mean[k], std[k]);
            if (v + 1 == h->n)
                latest[i] = &rows[k];
            else
                earlier[ne++] = &rows[k];
        }
    }
    st->n_models = j->n_models;
    st->models = latest;
    st->n_earlier = ne;
    st->earlier = earlier;
}
