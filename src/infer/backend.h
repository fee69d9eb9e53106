/* backend.h — what an inference runtime must provide. ONNX Runtime (ort.c) is
 * the one backend; the interface keeps the rest of the worker free of its API.
 * Every function may block; call them from worker threads. */
#ifndef IDUNNO_INFER_BACKEND_H
#define IDUNNO_INFER_BACKEND_H

#include <stddef.h>
#include <stdint.h>

struct infer_session; /* a loaded model, owned by the backend */

/* The largest shapes a model may declare. They bound every buffer sized from
 * a model (logits: batch x classes floats; inputs: batch x 3 x side x side),
 * so that no product of them overflows and a model cannot ask for gigabytes:
 * a model beyond them is refused when it is loaded. */
#define INFER_MAX_CLASSES (1 << 20)
#define INFER_MAX_SIDE 4096

struct infer_backend_options {
    int intra_threads; /* threads inside one run; 0 = 1 */
    int optimize;      /* 1: all graph optimisations */
};

struct infer_io {
    char input_name[64];
    char output_name[64];
    int64_t input_shape[4]; /* N, C, H, W; N may be -1 (dynamic) */
    int64_t classes;        /* output's second dimension */
};

struct infer_backend {
    const char *name;
    /* Loads a model file. Returns 0 or ID_EMODEL/ID_ENOTFOUND with errmsg. */
    int (*load)(const char *path, const struct infer_backend_options *opt,
                struct infer_session **out, struct infer_io *io, char *errmsg, size_t len);
    /* A custom metadata value of the model, or NULL (caller frees). */
    char *(*metadata)(struct infer_session *s, const char *key);
    /* Runs input[n * C * H * W] and writes logits[n * classes]: exactly what
     * the runtime returned, which must be an n x classes float tensor (else
     * ID_EMODEL with errmsg, and logits untouched). */
    int (*run)(struct infer_session *s, const float *input, size_t n, float *logits, char *errmsg,
               size_t len);
    void (*free)(struct infer_session *s);
};

extern const struct infer_backend infer_backend_ort;

#endif
