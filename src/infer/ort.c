/* ort.c — the ONNX Runtime backend (C API). One OrtEnv per process; a session
 * per loaded model; inputs are wrapped, not copied. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <onnxruntime_c_api.h>

#include "base/err.h"
#include "infer/backend.h"

struct infer_session {
    OrtSession *session;
    OrtMemoryInfo *mem;
    struct infer_io io;
};

static const OrtApi *ort;
static OrtEnv *ort_env;
static pthread_once_t ort_once = PTHREAD_ONCE_INIT;
static char ort_init_error[256];

static void ort_init(void)
{
    const OrtApiBase *base = OrtGetApiBase();
    ort = base ? base->GetApi(ORT_API_VERSION) : NULL;
    if (!ort) {
        snprintf(ort_init_error, sizeof ort_init_error,
                 "ONNX Runtime %s does not offer API version %d",
                 base ? base->GetVersionString() : "?", ORT_API_VERSION);
        return;
    }
    OrtStatus *st = ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "idunno", &ort_env);
    if (st) {
        snprintf(ort_init_error, sizeof ort_init_error, "%s", ort->GetErrorMessage(st));
        ort->ReleaseStatus(st);
        ort_env = NULL;
    }
}

/* Takes ownership of st. Returns 0 if st is NULL, else ID_EMODEL with errmsg. */
static int check(OrtStatus *st, char *errmsg, size_t len)
{
    if (!st)
        return 0;
    snprintf(errmsg, len, "%s", ort->GetErrorMessage(st));
    ort->ReleaseStatus(st);
    return ID_EMODEL;
}

static void ort_free(struct infer_session *s)
{
    if (!s)
        return;
    if (s->session)
        ort->ReleaseSession(s->session);
    if (s->mem)
        ort->ReleaseMemoryInfo(s->mem);
    free(s);
}

/* What the model declares about one tensor; a non-tensor (a sequence, a
 * map) is recorded with rank 0, so that a card can never select it. */
static int read_decl(OrtTypeInfo *ti, const char *name, struct infer_tensor_decl *d, char *errmsg,
                     size_t len)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    const OrtTensorTypeAndShapeInfo *tsi = NULL;
    int rc = check(ort->CastTypeInfoToTensorInfo(ti, &tsi), errmsg, len);
    if (rc || !tsi)
        return rc;
    size_t nd = 0;
    ONNXTensorElementDataType et = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    rc = check(ort->GetDimensionsCount(tsi, &nd), errmsg, len);
    if (!rc)
        rc = check(ort->GetTensorElementType(tsi, &et), errmsg, len);
    int64_t dims[16];
    if (!rc && nd <= 16)
        rc = check(ort->GetDimensions(tsi, dims, nd), errmsg, len);
    if (rc)
        return rc;
    d->rank = (int)nd;
    d->is_float = et == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    for (size_t i = 0; i < nd && i < 4 && nd <= 16; i++)
        d->dims[i] = dims[i] < 0 ? -1 : dims[i];
    return 0;
}

static int read_io(struct infer_session *s, char *errmsg, size_t len)
{
    OrtAllocator *alloc;
    int rc = check(ort->GetAllocatorWithDefaultOptions(&alloc), errmsg, len);
    size_t nin = 0, nout = 0;
    if (!rc)
        rc = check(ort->SessionGetInputCount(s->session, &nin), errmsg, len);
    if (!rc)
        rc = check(ort->SessionGetOutputCount(s->session, &nout), errmsg, len);
    if (rc)
        return rc;
    if (nin != 1 || nout < 1) {
        snprintf(errmsg, len,
                 "the model has %zu inputs and %zu outputs; one image input and at least one "
                 "output are needed",
                 nin, nout);
        return ID_EMODEL;
    }
    s->io.n_outputs = nout < INFER_MAX_OUTPUTS ? nout : INFER_MAX_OUTPUTS;
    for (size_t i = 0; i <= s->io.n_outputs && !rc; i++) {
        /* i == 0 is the input; i >= 1 is output i - 1. */
        int is_in = i == 0;
        size_t k = is_in ? 0 : i - 1;
        struct infer_tensor_decl *d = is_in ? &s->io.input : &s->io.outputs[k];
        char *name = NULL;
        OrtTypeInfo *ti = NULL;
        rc = check(is_in ? ort->SessionGetInputName(s->session, 0, alloc, &name)
                         : ort->SessionGetOutputName(s->session, k, alloc, &name),
                   errmsg, len);
        if (!rc)
            rc = check(is_in ? ort->SessionGetInputTypeInfo(s->session, 0, &ti)
                             : ort->SessionGetOutputTypeInfo(s->session, k, &ti),
                       errmsg, len);
        if (!rc)
            rc = read_decl(ti, name, d, errmsg, len);
        if (ti)
            ort->ReleaseTypeInfo(ti);
        if (name)
            alloc->Free(alloc, name);
    }
    return rc;
}

static int ort_load(const char *path, const struct infer_backend_options *opt,
                    struct infer_session **out, struct infer_io *io, char *errmsg, size_t len)
{
    pthread_once(&ort_once, ort_init);
    if (!ort_env) {
        snprintf(errmsg, len, "ONNX Runtime unavailable: %s", ort_init_error);
        return ID_EMODEL;
    }
    struct stat sb;
    if (stat(path, &sb) < 0) {
        snprintf(errmsg, len, "no model file %s", path);
        return ID_ENOTFOUND;
    }
    struct infer_session *s = calloc(1, sizeof *s);
    if (!s)
        return ID_ENOMEM;
    OrtSessionOptions *so = NULL;
    int rc = check(ort->CreateSessionOptions(&so), errmsg, len);
    if (!rc)
        rc = check(ort->SetIntraOpNumThreads(so, opt->intra_threads > 0 ? opt->intra_threads : 1),
                   errmsg, len);
    if (!rc)
        rc = check(ort->SetInterOpNumThreads(so, 1), errmsg, len);
    if (!rc)
        rc = check(ort->SetSessionGraphOptimizationLevel(so, opt->optimize ? ORT_ENABLE_ALL
                                                                           : ORT_ENABLE_BASIC),
                   errmsg, len);
    if (!rc)
        rc = check(ort->CreateSession(ort_env, path, so, &s->session), errmsg, len);
    if (so)
        ort->ReleaseSessionOptions(so);
    if (!rc)
        rc = check(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &s->mem), errmsg,
                   len);
    if (!rc)
        rc = read_io(s, errmsg, len);
    if (rc) {
        ort_free(s);
        return rc;
    }
    *io = s->io;
    *out = s;
    return 0;
}

static char *ort_metadata(struct infer_session *s, const char *key)
{
    OrtModelMetadata *md = NULL;
    OrtAllocator *alloc;
    char *value = NULL, *copy = NULL;
    if (ort->GetAllocatorWithDefaultOptions(&alloc) ||
        ort->SessionGetModelMetadata(s->session, &md))
        return NULL;
    OrtStatus *st = ort->ModelMetadataLookupCustomMetadataMap(md, alloc, key, &value);
    if (st)
        ort->ReleaseStatus(st);
    else if (value) {
        copy = strdup(value);
        alloc->Free(alloc, value);
    }
    ort->ReleaseModelMetadata(md);
    return copy;
}

/* Checks that `out`, what the model returned for n images, is the n x classes
 * float tensor it declared, and writes its element count to *count. A model
 * whose graph computes its output shape from the data can declare one shape
 * and return another: only the returned one may be trusted. */
static int check_returned(int64_t width, const OrtValue *out, size_t n, size_t *count, char *errmsg,
                          size_t len)
{
    OrtTensorTypeAndShapeInfo *info = NULL;
    int rc = check(ort->GetTensorTypeAndShape(out, &info), errmsg, len);
    ONNXTensorElementDataType et = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t nd = 0;
    int64_t dims[2] = {0, 0};
    if (!rc)
        rc = check(ort->GetTensorElementType(info, &et), errmsg, len);
    if (!rc)
        rc = check(ort->GetDimensionsCount(info, &nd), errmsg, len);
    if (!rc && nd == 2)
        rc = check(ort->GetDimensions(info, dims, 2), errmsg, len);
    if (!rc)
        rc = check(ort->GetTensorShapeElementCount(info, count), errmsg, len);
    if (info)
        ort->ReleaseTensorTypeAndShapeInfo(info);
    if (rc)
        return rc;
    size_t want;
    if (et != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || nd != 2 || dims[0] != (int64_t)n ||
        dims[1] != width || __builtin_mul_overflow(n, (size_t)width, &want) || *count != want) {
        if (nd == 2)
            snprintf(errmsg, len,
                     "the model returned a %lld x %lld tensor for %zu images; it declares %zu x "
                     "%lld floats",
                     (long long)dims[0], (long long)dims[1], n, n, (long long)width);
        else
            snprintf(errmsg, len,
                     "the model returned a tensor of rank %zu for %zu images; it declares %zu x "
                     "%lld floats",
                     nd, n, n, (long long)width);
        return ID_EMODEL;
    }
    return 0;
}

static int ort_run(struct infer_session *s, const int64_t in_shape[4], int output, int64_t width,
                   const float *input, size_t n, float *logits, char *errmsg, size_t len)
{
    int64_t shape[4] = {(int64_t)n, in_shape[1], in_shape[2], in_shape[3]};
    if (output < 0 || (size_t)output >= s->io.n_outputs) {
        snprintf(errmsg, len, "the model has no output %d", output);
        return ID_EINVAL;
    }
    size_t count, bytes;
    if (__builtin_mul_overflow(n, (size_t)shape[1] * (size_t)shape[2] * (size_t)shape[3], &count) ||
        __builtin_mul_overflow(count, sizeof(float), &bytes) || n > INT64_MAX) {
        snprintf(errmsg, len, "a batch of %zu images is too large for the model", n);
        return ID_EINVAL;
    }
    OrtValue *in = NULL, *out = NULL;
    int rc = check(ort->CreateTensorWithDataAsOrtValue(s->mem, (void *)input, bytes, shape, 4,
                                                       ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in),
                   errmsg, len);
    const char *in_names[] = {s->io.input.name};
    const char *out_names[] = {s->io.outputs[output].name};
    if (!rc)
        rc = check(ort->Run(s->session, NULL, in_names, (const OrtValue *const *)&in, 1, out_names,
                            1, &out),
                   errmsg, len);
    float *data = NULL;
    size_t returned = 0;
    if (!rc)
        rc = check_returned(width, out, n, &returned, errmsg, len);
    if (!rc)
        rc = check(ort->GetTensorMutableData(out, (void **)&data), errmsg, len);
    if (!rc)
        memcpy(logits, data, returned * sizeof(float));
    if (in)
        ort->ReleaseValue(in);
    if (out)
        ort->ReleaseValue(out);
    return rc;
}

const struct infer_backend infer_backend_ort = {
    .name = "onnxruntime",
    .load = ort_load,
    .metadata = ort_metadata,
    .run = ort_run,
    .free = ort_free,
};
