/* infer.c — model loading, batching, top-5 and the session cache (infer.h). */
#include "infer/infer.h"
#include "infer/gate.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

struct infer_model {
    const struct infer_backend *backend;
    struct infer_session *session;
    struct infer_model_info info;
    struct infer_gate *gate;
    int64_t in_shape[4]; /* what each run feeds: N (ignored), then as the card's layout */
};

/* The card the model's metadata gives; a malformed value is refused,
 * unless `over` (the user's card, NULL: none) gives that field itself:
 * then the metadata's value would never be used. */
static int metadata_card(struct infer_model *m, const struct model_card *over, struct model_card *c,
                         char *errmsg, size_t len)
{
    static const char *const keys[] = {"idunno.input_size", "idunno.resize", "idunno.mean",
                                       "idunno.std"};
    static const unsigned fields[] = {CARD_F_SIZE, CARD_F_RESIZE_SIDE, CARD_F_MEAN, CARD_F_STD};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (over && (over->given & fields[i]))
            continue;
        char *v = m->backend->metadata(m->session, keys[i]);
        int rc = v ? card_from_metadata(c, keys[i], v, errmsg, len) : 0;
        free(v);
        if (rc)
            return ID_EMODEL;
    }
    return 0;
}

int infer_model_open(const char *path, const struct infer_options *opt, struct infer_model **out,
                     char *errmsg, size_t len)
{
    return infer_model_open_card(path, opt, NULL, out, errmsg, len);
}

int infer_model_open_card(const char *path, const struct infer_options *opt,
                          const struct model_card *card, struct infer_model **out, char *errmsg,
                          size_t len)
{
    struct infer_model *m = calloc(1, sizeof *m);
    if (!m)
        return ID_ENOMEM;
    m->backend = &infer_backend_ort;
    m->gate = opt ? opt->gate : NULL;
    struct infer_backend_options bo = {.intra_threads = opt ? opt->threads : 1, .optimize = 1};
    int rc = m->backend->load(path, &bo, &m->session, &m->info.io, errmsg, len);
    if (rc) {
        free(m);
        return rc;
    }
    struct infer_model_info *in = &m->info;
    struct model_card *c = &in->card;
    rc = metadata_card(m, card, c, errmsg, len);
    if (!rc && card && card_merge(c, card) < 0)
        rc = ID_ENOMEM;
    if (!rc)
        rc = card_resolve(c, &in->io, &in->output, &in->classes, errmsg, len);
    if (rc) {
        infer_model_close(m);
        return rc;
    }
    char *name = m->backend->metadata(m->session, "idunno.name");
    if (name)
        snprintf(in->name, sizeof in->name, "%s", name);
    else {
        const char *base = strrchr(path, '/');
        snprintf(in->name, sizeof in->name, "%s", base ? base + 1 : path);
    }
    free(name);
    in->input_size = c->height == c->width ? c->height : 0;
    in->resize = c->resize_side;
    for (int k = 0; k < 3; k++) {
        in->mean[k] = c->mean[k < c->n_mean ? k : 0];
        in->std[k] = c->std[k < c->n_std ? k : 0];
    }
    int nch = c->channels == CARD_GRAY ? 1 : 3;
    int64_t shape[4] = {1, nch, c->height, c->width};
    if (c->layout == CARD_NHWC) {
        shape[1] = c->height;
        shape[2] = c->width;
        shape[3] = nch;
    }
    memcpy(m->in_shape, shape, sizeof shape);
    *out = m;
    return 0;
}

void infer_model_close(struct infer_model *m)
{
    if (!m)
        return;
    m->backend->free(m->session);
    card_free(&m->info.card);
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

int infer_run_tensor(struct infer_model *m, const float *input, size_t n, float *out, char *errmsg,
                     size_t len)
{
    const struct infer_model_info *in = &m->info;
    if (!m->gate)
        return m->backend->run(m->session, m->in_shape, in->output, in->classes, input, n, out,
                               errmsg, len);
    int slot = infer_gate_enter(m->gate);
    int rc = m->backend->run(m->session, m->in_shape, in->output, in->classes, input, n, out,
                             errmsg, len);
    infer_gate_exit(m->gate, slot);
    return rc;
}

void infer_postprocess(const float *values, int classes, enum card_output output, int top_k,
                       struct infer_result *r)
{
    for (int k = 0; k < INFER_MAX_K; k++) {
        r->top_class[k] = -1;
        r->top_prob[k] = 0;
    }
    r->status = 0;
    r->error[0] = 0;
    r->raw = output == CARD_RAW;
    if (r->raw) {
        r->k = classes < INFER_MAX_K ? classes : INFER_MAX_K;
        for (int i = 0; i < r->k; i++) {
            r->top_class[i] = i;
            r->top_prob[i] = values[i];
        }
        return;
    }
    int want = top_k < 1 ? 1 : top_k;
    if (want > classes)
        want = classes;
    if (want > INFER_MAX_K)
        want = INFER_MAX_K;
    /* Insertion into the top `want`, kept sorted: a later class goes in
     * only if strictly larger, so ties keep the lower index first. */
    int n = 0;
    for (int i = 0; i < classes; i++) {
        float v = values[i];
        int k = n;
        while (k > 0 && v > values[r->top_class[k - 1]])
            k--;
        if (k == want)
            continue;
        int moved = (n < want ? n : want - 1) - k;
        memmove(&r->top_class[k + 1], &r->top_class[k], (size_t)moved * sizeof(int));
        r->top_class[k] = i;
        if (n < want)
            n++;
    }
    r->k = n;
    if (output == CARD_PROBABILITIES) {
        for (int k = 0; k < n; k++)
            r->top_prob[k] = values[r->top_class[k]];
        return;
    }
    float mx = -INFINITY;
    for (int i = 0; i < classes; i++)
        if (values[i] > mx)
            mx = values[i];
    double sum = 0;
    for (int i = 0; i < classes; i++)
        sum += exp((double)values[i] - mx);
    for (int k = 0; k < n; k++)
        r->top_prob[k] = (float)(exp((double)values[r->top_class[k]] - mx) / sum);
}

/* ---- batches with decoding overlapped ---------------------------------------------- */

struct batch {
    const struct infer_input *inputs;
    size_t n;
    float *tensor; /* n x plane, packed: failed images leave no gap */
    size_t n_ok;
    size_t *slot; /* slot[i]: row of image i in tensor, or SIZE_MAX */
    struct infer_result *results;
    const struct model_card *prep;
    size_t plane;
};

/* Bytes given as a tensor: exactly plane float32 values, little-endian,
 * each finite (a NaN or an infinity would come out of the model as one). */
static int tensor_parse(const uint8_t *data, size_t len, size_t plane, float *out, char *errmsg,
                        size_t errlen)
{
    if (len != plane * 4) {
        snprintf(errmsg, errlen, "the tensor does not hold %zu float32 values, the model's input",
                 plane);
        return ID_EINVAL;
    }
    for (size_t i = 0; i < plane; i++) {
        const uint8_t *b = data + 4 * i;
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        float x;
        memcpy(&x, &u, sizeof x);
        if (!isfinite(x)) {
            snprintf(errmsg, errlen, "tensor value %zu is not a finite number", i);
            return ID_EINVAL;
        }
        out[i] = x;
    }
    return 0;
}

/* A tensor in a file: read whole (up to one value more than the model's
 * input, to tell a longer file), then parsed. */
static int tensor_load(const char *path, size_t plane, float *out, char *errmsg, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(errmsg, errlen, "cannot open %s: %s", path, strerror(e));
        return e == ENOENT ? ID_ENOTFOUND : ID_EIO;
    }
    size_t want = plane * 4 + 4;
    uint8_t *buf = malloc(want);
    int rc = buf ? 0 : ID_ENOMEM;
    size_t got = buf ? fread(buf, 1, want, f) : 0;
    if (!rc && ferror(f)) {
        snprintf(errmsg, errlen, "cannot read %s", path);
        rc = ID_EIO;
    }
    fclose(f);
    if (!rc)
        rc = tensor_parse(buf, got, plane, out, errmsg, errlen);
    free(buf);
    return rc;
}

static int input_load(const struct infer_input *in, const struct model_card *prep, size_t plane,
                      float *out, char *errmsg, size_t errlen)
{
    if (in->data && in->tensor)
        return tensor_parse(in->data, in->len, plane, out, errmsg, errlen);
    if (in->data)
        return image_bytes_tensor(in->data, in->len, prep, out, errmsg, errlen);
    if (in->tensor)
        return tensor_load(in->path, plane, out, errmsg, errlen);
    return image_load_tensor(in->path, prep, out, errmsg, errlen);
}

static void *decode_batch(void *arg)
{
    struct batch *b = arg;
    b->n_ok = 0;
    for (size_t i = 0; i < b->n; i++) {
        float *dst = b->tensor + b->n_ok * b->plane;
        struct infer_result *r = &b->results[i];
        r->status = input_load(&b->inputs[i], b->prep, b->plane, dst, r->error, sizeof r->error);
        b->slot[i] = r->status == 0 ? b->n_ok++ : SIZE_MAX;
    }
    return NULL;
}

/* An output the model computed from an input out of its range may hold a
 * NaN or an infinity: no class or value can be read from it, so the input
 * gets an error (not a result that the node would refuse as malformed and
 * count as a crash of the model). */
static int output_finite(const float *values, int classes)
{
    for (int i = 0; i < classes; i++)
        if (!isfinite(values[i]))
            return 0;
    return 1;
}

int infer_run_files(struct infer_model *m, const char *const *paths, size_t n, size_t batch,
                    struct infer_result *results, char *errmsg, size_t len)
{
    struct infer_input *in = calloc(n ? n : 1, sizeof *in);
    if (!in)
        return ID_ENOMEM;
    for (size_t i = 0; i < n; i++)
        in[i].path = paths[i];
    int rc = infer_run_inputs(m, in, n, batch, results, errmsg, len);
    free(in);
    return rc;
}

int infer_run_inputs(struct infer_model *m, const struct infer_input *inputs, size_t n,
                     size_t batch, struct infer_result *results, char *errmsg, size_t len)
{
    if (batch == 0)
        batch = 1;
    const struct infer_model_info *in = &m->info;
    size_t plane = image_tensor_len(&in->card);
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
        b[k].prep = &in->card;
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
            cur->inputs = inputs;
            cur->n = n < batch ? n : batch;
            cur->results = results;
            decode_batch(cur);
        }
        pthread_t th;
        int have_next = i + 1 < nb;
        struct batch *next = &b[(i + 1) % 2];
        if (have_next) {
            size_t start = (i + 1) * batch;
            next->inputs = inputs + start;
            next->n = n - start < batch ? n - start : batch;
            next->results = results + start;
            if (pthread_create(&th, NULL, decode_batch, next) != 0) {
                decode_batch(next);
                have_next = 2; /* decoded inline */
            }
        }
        if (cur->n_ok)
            rc = infer_run_tensor(m, cur->tensor, cur->n_ok, logits, errmsg, len);
        for (size_t j = 0; !rc && j < cur->n; j++) {
            if (cur->slot[j] == SIZE_MAX)
                continue;
            const float *values = logits + cur->slot[j] * (size_t)in->classes;
            struct infer_result *r = &cur->results[j];
            if (output_finite(values, in->classes)) {
                infer_postprocess(values, in->classes, in->card.output, in->card.top_k, r);
                continue;
            }
            r->status = ID_EINVAL;
            snprintf(r->error, sizeof r->error,
                     "the model's output is not finite (an input out of its range?)");
        }
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
