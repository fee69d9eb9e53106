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
 * a model beyond them is refused when its card is resolved (card.h). */
#define INFER_MAX_CLASSES (1 << 20)
#define INFER_MAX_SIDE 4096

struct infer_backend_options {
    int intra_threads; /* threads inside one run; 0 = 1 */
    int optimize;      /* 1: all graph optimisations */
};

/* What a model declares about one of its tensors. */
struct infer_tensor_decl {
    char name[64];
    int rank;        /* number of dimensions */
    int is_float;    /* 1: float32 */
    int64_t dims[4]; /* the first min(rank, 4); -1: dynamic */
};

/* Outputs beyond this many are not listed (nor selectable by a card). */
#define INFER_MAX_OUTPUTS 8

/* The model's one input and its outputs, as declared; which output is read
 * and how the input is shaped is the card's business (card.h). */
struct infer_io {
    struct infer_tensor_decl input;
    size_t n_outputs;
    struct infer_tensor_decl outputs[INFER_MAX_OUTPUTS];
};

struct infer_backend {
    const char *name;
    /* Loads a model file. Returns 0 or ID_EMODEL/ID_ENOTFOUND with errmsg. */
    int (*load)(const char *path, const struct infer_backend_options *opt,
                struct infer_session **out, struct infer_io *io, char *errmsg, size_t len);
    /* A custom metadata value of the model, or NULL (caller frees). */
    char *(*metadata)(struct infer_session *s, const char *key);
    /* Runs n images, input[n x shape[1] x shape[2] x shape[3]] (shape[0] is
     * ignored), and writes out[n * width]: exactly what the runtime returned
     * for output number `output`, which must be an n x width float tensor
     * (else ID_EMODEL with errmsg, and out untouched). */
    int (*run)(struct infer_session *s, const int64_t shape[4], int output, int64_t width,
               const float *input, size_t n, float *out, char *errmsg, size_t len);
    void (*free)(struct infer_session *s);
};

extern const struct infer_backend infer_backend_ort;

#endif
