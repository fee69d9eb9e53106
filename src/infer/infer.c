/* infer.c — model loading, batching, top-5 and the session cache (infer.h). */
#include "infer/infer.h"
#include "infer/gate.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

struct infer_model {
    const struct infer_backend *backend;
    struct infer_session *session;
    struct infer_model_info info;
    struct infer_gate *gate;
};

static int parse_floats3(const char *s, float out[3])
{
    if (!s)
        return -1;
    char *end;
    for (int i = 0; i < 3; i++) {
        out[i] = strtof(s, &end);
        if (end == s || (i < 2 && *end != ',') || (i == 2 && *end))
            return -1;
        s = end + 1;
    }
    return 0;
}

static int meta_int(struct infer_model *m, const char *key, int fallback)
{
    char *v = m->backend->metadata(m->session, key);
    int r = fallback;
    if (v && atoi(v) > 0)
        r = atoi(v);
    free(v);
    return r;
}

int infer_model_open(const char *path, const struct infer_options *opt, struct infer_model **out,
                     char *errmsg, size_t len)
{
    struct infer_model *m = calloc(1, sizeof *m);
    if (!m)
        return ID_ENOMEM;
    m->backend = &infer_backend_ort;
    m->gate = opt ? opt->gate : NULL;
    struct infer_backend_options bo = {.intra_threads = opt ? opt->threads : 1, .optimize = 1};
    struct infer_io io;
    int rc = m->backend->load(path, &bo, &m->session, &io, errmsg, len);
    if (rc) {
        free(m);
        return rc;
    }
    struct infer_model_info *in = &m->info;
    in->io = io;
    /* The backend refuses larger shapes; checked again here because the
     * int fields below and every buffer size are derived from them. */
    if (io.classes <= 0 || io.classes > INFER_MAX_CLASSES || io.input_shape[2] <= 0 ||
        io.input_shape[2] > INFER_MAX_SIDE) {
        snprintf(errmsg, len,
                 "the model declares %lld classes and %lld-pixel inputs; 1 to %d and 1 to %d are "
                 "supported",
                 (long long)io.classes, (long long)io.input_shape[2], INFER_MAX_CLASSES,
                 INFER_MAX_SIDE);
        infer_model_close(m);
        return ID_EMODEL;
    }
    if (io.input_shape[2] != io.input_shape[3]) {
        snprintf(errmsg, len, "the model's input is %lldx%lld; square inputs only",
                 (long long)io.input_shape[2], (long long)io.input_shape[3]);
        infer_model_close(m);
        return ID_EMODEL;
    }
    char *name = m->backend->metadata(m->session, "idunno.name");
    if (name)
        snprintf(in->name, sizeof in->name, "%s", name);
    else {
        const char *base = strrchr(path, '/');
        snprintf(in->name, sizeof in->name, "%s", base ? base + 1 : path);
    }
    free(name);
    in->input_size = (int)io.input_shape[2];
    int declared = meta_int(m, "idunno.input_size", in->input_size);
    if (declared != in->input_size) {
        snprintf(errmsg, len, "metadata says input %d but the graph takes %d", declared,
                 in->input_size);
        infer_model_close(m);
        return ID_EMODEL;
    }
    in->resize = meta_int(m, "idunno.resize", (in->input_size * 8 + 6) / 7);
    in->classes = (int)io.classes;
    char *mean = m->backend->metadata(m->session, "idunno.mean");
    char *std = m->backend->metadata(m->session, "idunno.std");
    if (parse_floats3(mean, in->mean) < 0)
        memcpy(in->mean, imagenet_mean, sizeof in->mean);
    if (parse_floats3(std, in->std) < 0 || in->std[0] <= 0 || in->std[1] <= 0 || in->std[2] <= 0)
        memcpy(in->std, imagenet_std, sizeof in->std);
    free(mean);
    free(std);
    *out = m;
    return 0;
}

void infer_model_close(struct infer_model *m)
{
    if (!m)
        return;
    m->backend->free(m->session);
    free(m);
}

const struct infer_model_info *infer_model_info(const struct infer_model *m)
{
    return &m->info;
}

char *infer_model_metadata(struct infer_model *m, const char *key)
{
    return m->backend->metadata(m->session, key);
}

int infer_run_tensor(struct infer_model *m, const float *input, size_t n, float *logits,
                     char *errmsg, size_t len)
{
    if (!m->gate)
        return m->backend->run(m->session, input, n, logits, errmsg, len);
    int slot = infer_gate_enter(m->gate);
    int rc = m->backend->run(m->session, input, n, logits, errmsg, len);
    infer_gate_exit(m->gate, slot);
    return rc;
}

void infer_top5(const float *logits, int classes, struct infer_result *r)
{
    float mx = -INFINITY;
    for (int i = 0; i < classes; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0;
    for (int i = 0; i < classes; i++)
        sum += exp((double)logits[i] - mx);
    for (int k = 0; k < INFER_TOPK; k++) {
        r->top_class[k] = -1;
        r->top_prob[k] = 0;
    }
    for (int i = 0; i < classes; i++) {
        float v = logits[i];
        int k = INFER_TOPK;
        while (k > 0 && (r->top_class[k - 1] < 0 || v > logits[r->top_class[k - 1]]))
            k--;
        if (k == INFER_TOPK)
            continue;
        memmove(&r->top_class[k + 1], &r->top_class[k], (INFER_TOPK - 1 - k) * sizeof(int));
        r->top_class[k] = i;
    }
    for (int k = 0; k < INFER_TOPK; k++)
        if (r->top_class[k] >= 0)
            r->top_prob[k] = (float)(exp((double)logits[r->top_class[k]] - mx) / sum);
    r->status = 0;
    r->error[0] = 0;
}

/* ---- batches with decoding overlapped ---------------------------------------------- */

struct batch {
    const char *const *paths;
    size_t n;
    float *tensor; /* n x 3 x S x S, packed: failed images leave no gap */
    size_t n_ok;
    size_t *slot; /* slot[i]: row of image i in tensor, or SIZE_MAX */
    struct infer_result *results;
    const struct image_prep *prep;
    size_t plane;
};

static void *decode_batch(void *arg)
{
    struct batch *b = arg;
    b->n_ok = 0;
    for (size_t i = 0; i < b->n; i++) {
        float *dst = b->tensor + b->n_ok * b->plane;
        struct infer_result *r = &b->results[i];
        r->status = image_load_tensor(b->paths[i], b->prep, dst, r->error, sizeof r->error);
        b->slot[i] = r->status == 0 ? b->n_ok++ : SIZE_MAX;
    }
    return NULL;
}

int infer_run_files(struct infer_model *m, const char *const *paths, size_t n, size_t batch,
                    struct infer_result *results, char *errmsg, size_t len)
{
    if (batch == 0)
        batch = 1;
    const struct infer_model_info *in = &m->info;
    struct image_prep prep = {.resize = in->resize, .crop = in->input_size};
    memcpy(prep.mean, in->mean, sizeof prep.mean);
    memcpy(prep.std, in->std, sizeof prep.std);
    size_t plane = 3 * (size_t)in->input_size * (size_t)in->input_size;
    struct batch b[2] = {0};
    size_t logit_bytes, tensor_bytes;
    if (__builtin_mul_overflow(batch, (size_t)in->classes * sizeof(float), &logit_bytes) ||
        __builtin_mul_overflow(batch, plane * sizeof(float), &tensor_bytes)) {
        snprintf(errmsg, len, "a batch of %zu images is too large for the model", batch);
        return ID_EINVAL;
    }
    float *logits = malloc(logit_bytes);
    int rc = logits ? 0 : ID_ENOMEM;
    for (int k = 0; k < 2; k++) {
        b[k].tensor = malloc(tensor_bytes);
        b[k].slot = malloc(batch * sizeof(size_t));
        b[k].prep = &prep;
        b[k].plane = plane;
        if (!b[k].tensor || !b[k].slot)
            rc = ID_ENOMEM;
    }
    if (rc)
        goto out;
    size_t nb = (n + batch - 1) / batch;
    /* Batch i+1 decodes on a helper thread while batch i runs here. */
    for (size_t i = 0; i < nb && !rc; i++) {
        struct batch *cur = &b[i % 2];
        if (i == 0) {
            cur->paths = paths;
            cur->n = n < batch ? n : batch;
            cur->results = results;
            decode_batch(cur);
        }
        pthread_t th;
        int have_next = i + 1 < nb;
        struct batch *next = &b[(i + 1) % 2];
        if (have_next) {
            size_t start = (i + 1) * batch;
            next->paths = paths + start;
            next->n = n - start < batch ? n - start : batch;
            next->results = results + start;
            if (pthread_create(&th, NULL, decode_batch, next) != 0) {
                decode_batch(next);
                have_next = 2; /* decoded inline */
            }
        }
        if (cur->n_ok)
            rc = infer_run_tensor(m, cur->tensor, cur->n_ok, logits, errmsg, len);
        if (!rc)
            for (size_t j = 0; j < cur->n; j++)
                if (cur->slot[j] != SIZE_MAX)
                    infer_top5(logits + cur->slot[j] * (size_t)in->classes, in->classes,
                               &cur->results[j]);
        if (have_next == 1)
            pthread_join(th, NULL);
    }
out:
    for (int k = 0; k < 2; k++) {
        free(b[k].tensor);
        free(b[k].slot);
    }
    free(logits);
    return rc;
}

/* ---- cache ---------------------------------------------------------------------------- */

struct cache_entry {
    char name[64];
    uint64_t version;
    uint64_t last_used;
    unsigned pins; /* runs using the model now: not evicted while > 0 */
    struct infer_model *model;
};

/* Several pool threads may run batches at once (a worker's spare slot), so
 * the table is locked; models load outside the lock, since a load takes
 * seconds and the other thread's run must not wait for it. */
struct infer_cache {
    pthread_mutex_t lock;
    size_t cap, n;
    uint64_t clock;
    struct infer_options opt;
    struct cache_entry *e;
};

struct infer_cache *infer_cache_create(size_t capacity, const struct infer_options *opt)
{
    struct infer_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cap = capacity ? capacity : 1;
    c->e = calloc(c->cap, sizeof *c->e);
    if (!c->e || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->e);
        free(c);
        return NULL;
    }
    if (opt)
        c->opt = *opt;
    return c;
}

void infer_cache_destroy(struct infer_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        infer_model_close(c->e[i].model);
    pthread_mutex_destroy(&c->lock);
    free(c->e);
    free(c);
}

size_t infer_cache_size(const struct infer_cache *c)
{
    pthread_mutex_lock((pthread_mutex_t *)&c->lock);
    size_t n = c->n;
    pthread_mutex_unlock((pthread_mutex_t *)&c->lock);
    return n;
}

/* The entry for (name, version), pinned, or NULL. Caller holds the lock. */
static struct infer_model *cache_pin(struct infer_cache *c, const char *name, uint64_t version)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->e[i].version == version && strcmp(c->e[i].name, name) == 0) {
            c->e[i].last_used = ++c->clock;
            c->e[i].pins++;
            return c->e[i].model;
        }
    }
    return NULL;
}

int infer_cache_get(struct infer_cache *c, const char *name, uint64_t version, const char *path,
                    struct infer_model **out, char *errmsg, size_t len)
{
    pthread_mutex_lock(&c->lock);
    struct infer_model *hit = cache_pin(c, name, version);
    pthread_mutex_unlock(&c->lock);
    if (hit) {
        *out = hit;
        return 0;
    }
    struct infer_model *m;
    int rc = infer_model_open(path, &c->opt, &m, errmsg, len);
    if (rc)
        return rc;
    pthread_mutex_lock(&c->lock);
    hit = cache_pin(c, name, version); /* loaded by another thread meanwhile */
    if (hit) {
        pthread_mutex_unlock(&c->lock);
        infer_model_close(m);
        *out = hit;
        return 0;
    }
    size_t slot = c->n;
    if (c->n == c->cap) {
        /* The least recently used model that no run is using; all in use
         * (more runs at once than the capacity) grows the table instead. */
        size_t lru = c->n;
        for (size_t i = 0; i < c->n; i++)
            if (!c->e[i].pins && (lru == c->n || c->e[i].last_used < c->e[lru].last_used))
                lru = i;
        if (lru == c->n) {
            struct cache_entry *e = realloc(c->e, (c->cap + 1) * sizeof *e);
            if (!e) {
                pthread_mutex_unlock(&c->lock);
                infer_model_close(m);
                snprintf(errmsg, len, "out of memory");
                return ID_ENOMEM;
            }
            c->e = e;
            c->cap++;
            c->n++;
        } else {
            slot = lru;
            infer_model_close(c->e[slot].model);
        }
    } else {
        c->n++;
    }
    snprintf(c->e[slot].name, sizeof c->e[slot].name, "%s", name);
    c->e[slot].version = version;
    c->e[slot].last_used = ++c->clock;
    c->e[slot].pins = 1;
    c->e[slot].model = m;
    pthread_mutex_unlock(&c->lock);
    *out = m;
    return 0;
}

void infer_cache_release(struct infer_cache *c, struct infer_model *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++) {
        if (c->e[i].model == m && c->e[i].pins > 0) {
            c->e[i].pins--;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
}
