/* infer.h — the worker's inference engine: a model loaded through a backend
 * (backend.h), its preprocessing, batches of image files in, top-5 classes with
 * probabilities out. Image decoding of the next batch overlaps the current
 * batch's inference. All functions block: call them from worker threads. A
 * model may be used by one thread at a time. */
#ifndef IDUNNO_INFER_INFER_H
#define IDUNNO_INFER_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "infer/backend.h"
#include "infer/image.h"

#define INFER_TOPK 5

struct infer_model_info {
    char name[64];
    int input_size; /* H = W */
    int resize;     /* shorter side before the centre crop */
    float mean[3], std[3];
    int classes;
    struct infer_io io;
};

struct infer_result {
    int status; /* 0, or ID_EIMAGE / ID_ENOTFOUND / ID_EIO for this image */
    char error[160];
    int top_class[INFER_TOPK];
    float top_prob[INFER_TOPK];
};

struct infer_model;

struct infer_gate;

struct infer_options {
    int threads;             /* intra-op threads; 0 = 1 */
    struct infer_gate *gate; /* held around every model run (gate.h); NULL: none */
};

/* Loads a model file. Preprocessing comes from the model's metadata
 * (idunno.input_size, idunno.resize, idunno.mean, idunno.std), else from its
 * input shape with ImageNet statistics. Returns 0 or ID_E* with errmsg. */
int infer_model_open(const char *path, const struct infer_options *opt, struct infer_model **out,
                     char *errmsg, size_t len);
void infer_model_close(struct infer_model *m);
const struct infer_model_info *infer_model_info(const struct infer_model *m);
/* A custom metadata value of the model, or NULL (caller frees). */
char *infer_model_metadata(struct infer_model *m, const char *key);

/* Runs n preprocessed inputs (n x 3 x S x S floats); logits is n x classes. */
int infer_run_tensor(struct infer_model *m, const float *input, size_t n, float *logits,
                     char *errmsg, size_t len);

/* Softmax over logits[classes] and the INFER_TOPK most probable classes. Pure. */
void infer_top5(const float *logits, int classes, struct infer_result *r);

/* Runs every file through the model, `batch` images at a time, decoding the
 * next batch on a second thread while the current one runs. Images that cannot
 * be read or decoded get an error result; the rest are unaffected. Returns 0,
 * or an ID_E* if the model itself failed (then errmsg says why). */
int infer_run_files(struct infer_model *m, const char *const *paths, size_t n, size_t batch,
                    struct infer_result *results, char *errmsg, size_t len);

/* ---- session cache: loaded models keyed by name and version, LRU ---------------- */

struct infer_cache;

/* An empty cache holding up to `capacity` sessions (0 counts as 1), every
 * session made with *opt (copied; NULL: the defaults). Safe to use from several
 * threads. NULL if out of memory; freed with infer_cache_destroy. */
struct infer_cache *infer_cache_create(size_t capacity, const struct infer_options *opt);
void infer_cache_destroy(struct infer_cache *c);

/* The model for (name, version), loading it from `path` on a miss and evicting
 * the least recently used model no run is using when full. The model is
 * pinned: it stays valid until infer_cache_release, whatever other threads
 * load meanwhile. Thread-safe; the cache owns the model. */
int infer_cache_get(struct infer_cache *c, const char *name, uint64_t version, const char *path,
                    struct infer_model **out, char *errmsg, size_t len);
/* Unpins a model that infer_cache_get returned (NULL: nothing). */
void infer_cache_release(struct infer_cache *c, struct infer_model *m);
size_t infer_cache_size(const struct infer_cache *c);

#endif
