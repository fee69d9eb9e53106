/* infer.h — the worker's inference engine: a model loaded through a backend
 * (backend.h) with its resolved card (card.h), batches of image files in,
 * top-k classes with probabilities (or a raw output's values) out. Image decoding of the next batch overlaps the current
 * batch's inference. All functions block: call them from worker threads. A
 * model may be used by one thread at a time. */
#ifndef IDUNNO_INFER_INFER_H
#define IDUNNO_INFER_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "infer/backend.h"
#include "infer/card.h"
#include "infer/image.h"

/* Entries a cluster result carries (sched/jobs.h's JOBS_TOPK), and the
 * default top-k when the model has that many classes. */
#define INFER_TOPK 5
#define INFER_MAX_K CARD_MAX_K

struct infer_model_info {
    char name[64];
    int input_size; /* H when H = W; 0 for a non-square input */
    int resize;     /* crop: shorter side before the centre crop */
    float mean[3], std[3];
    int classes;            /* the output's width */
    int output;             /* index of the output tensor read */
    struct model_card card; /* resolved: every field given */
    struct infer_io io;
};

struct infer_result {
    int status; /* 0, or ID_EIMAGE / ID_ENOTFOUND / ID_EIO for this image */
    char error[160];
    int k;   /* entries in top_class/top_prob; the rest hold -1 and 0 */
    int raw; /* 1: top_prob[i] is the output's value i and top_class[i] = i */
    int top_class[INFER_MAX_K];
    float top_prob[INFER_MAX_K];
};

struct infer_model;

struct infer_gate;

struct infer_options {
    int threads;             /* intra-op threads; 0 = 1 */
    struct infer_gate *gate; /* held around every model run (gate.h); NULL: none */
};

/* Loads a model file with no card of its own: its card comes from the
 * model's metadata (idunno.input_size, idunno.resize, idunno.mean,
 * idunno.std), then its shapes, then the defaults (card_resolve). Returns 0
 * or ID_E* with errmsg; a malformed metadata value or a model the card does
 * not fit is ID_EMODEL naming the field. */
int infer_model_open(const char *path, const struct infer_options *opt, struct infer_model **out,
                     char *errmsg, size_t len);
/* The same with a card (NULL: none) whose fields override the metadata's
 * (a metadata value the card overrides is not read, so not refused). */
int infer_model_open_card(const char *path, const struct infer_options *opt,
                          const struct model_card *card, struct infer_model **out, char *errmsg,
                          size_t len);
void infer_model_close(struct infer_model *m);
const struct infer_model_info *infer_model_info(const struct infer_model *m);
/* A custom metadata value of the model, or NULL (caller frees). */
char *infer_model_metadata(struct infer_model *m, const char *key);

/* Runs n preprocessed inputs (n x image_tensor_len(card) floats); out is
 * n x classes: the selected output exactly as the model returned it. */
int infer_run_tensor(struct infer_model *m, const float *input, size_t n, float *out, char *errmsg,
                     size_t len);

/* One image's result from the output's values[classes], as the card's
 * output says: logits get a softmax, probabilities are taken as they are
 * (both then the top_k largest, 1 <= top_k <= classes, ties to the lower
 * index); raw keeps every value in order (classes <= INFER_MAX_K). Pure. */
void infer_postprocess(const float *values, int classes, enum card_output output, int top_k,
                       struct infer_result *r);

/* Runs every file through the model, `batch` images at a time, decoding the
 * next batch on a second thread while the current one runs. Images that cannot
 * be read or decoded get an error result; the rest are unaffected. Returns 0,
 * or an ID_E* if the model itself failed (then errmsg says why). */
int infer_run_files(struct infer_model *m, const char *const *paths, size_t n, size_t batch,
                    struct infer_result *results, char *errmsg, size_t len);

/* One input of a run: an encoded image or, with tensor set, the model's
 * input itself (image_tensor_len(card) float32 values little-endian in the
 * model's layout, already preprocessed: an online request's FP32 or UINT8
 * tensor), fed as it is. It is read from the file at path, or, when data is
 * set, given in memory (len bytes; path is then ignored). A tensor of
 * another length, or holding a NaN or an infinity, is that input's
 * ID_EINVAL. */
struct infer_input {
    const char *path;
    const uint8_t *data;
    size_t len;
    int tensor;
};

/* infer_run_files over inputs that may be tensors or bytes in memory. */
int infer_run_inputs(struct infer_model *m, const struct infer_input *inputs, size_t n,
                     size_t batch, struct infer_result *results, char *errmsg, size_t len);

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
