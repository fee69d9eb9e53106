/* oip.c — the Open Inference Protocol's paths, infer bodies and answers
 * (oip.h). */
#include "http/oip.h"

#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json_out.h"

/* ---- paths ------------------------------------------------------------------------------ */

/* The most segments a /v2 path has: models/NAME/versions/V/infer. */
#define OIP_MAX_SEGMENTS 5

struct oip_segment {
    const char *s;
    size_t len;
};

static int segment_is(const struct oip_segment *seg, const char *word)
{
    return seg->len == strlen(word) && memcmp(seg->s, word, seg->len) == 0;
}

static int model_name_ok(const struct oip_segment *seg)
{
    if (seg->len == 0 || seg->len >= OIP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < seg->len; i++) {
        char c = seg->s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

/* Digits only, by hand: strtoul would also take a sign, spaces and "0x". */
static int version_parse(const struct oip_segment *seg, uint32_t *out)
{
    if (seg->len == 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < seg->len; i++) {
        char c = seg->s[i];
        if (c < '0' || c > '9')
            return 0;
        v = v * 10 + (uint64_t)(c - '0');
        if (v > UINT32_MAX)
            return 0;
    }
    if (v == 0)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

/* models/NAME[/versions/V][/ready|/infer], the segments after "/v2/". */
static enum oip_route model_route(const struct oip_segment *seg, size_t n, struct oip_target *out)
{
    if (n < 2 || !model_name_ok(&seg[1]))
        return OIP_NOT_FOUND;
    size_t next = 2;
    uint32_t version = 0;
    if (n >= 4 && segment_is(&seg[2], "versions")) {
        if (!version_parse(&seg[3], &version))
            return OIP_NOT_FOUND;
        next = 4;
    }
    enum oip_route route;
    if (n == next)
        route = OIP_MODEL;
    else if (n == next + 1 && segment_is(&seg[next], "ready"))
        route = OIP_MODEL_READY;
    else if (n == next + 1 && segment_is(&seg[next], "infer"))
        route = OIP_INFER;
    else
        return OIP_NOT_FOUND;
    memcpy(out->model, seg[1].s, seg[1].len);
    out->model[seg[1].len] = 0;
    out->version = version;
    return route;
}

static enum oip_route route_of(const char *path, struct oip_target *out)
{
    size_t n = strcspn(path, "?");
    if (n < 3 || memcmp(path, "/v2", 3) != 0)
        return OIP_NONE;
    if (n == 3)
        return OIP_SERVER;
    if (path[3] != '/')
        return OIP_NONE; /* "/v20", "/v2x": not ours */
    struct oip_segment seg[OIP_MAX_SEGMENTS];
    size_t n_seg = 0;
    const char *p = path + 4, *end = path + n;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        /* An empty segment: "/v2/", a trailing slash or "//". */
        if (stop == p || n_seg == OIP_MAX_SEGMENTS)
            return OIP_NOT_FOUND;
        seg[n_seg++] = (struct oip_segment){p, (size_t)(stop - p)};
        if (!slash)
            break;
        p = slash + 1;
    }
    if (n_seg == 2 && segment_is(&seg[0], "health")) {
        if (segment_is(&seg[1], "live"))
            return OIP_LIVE;
        if (segment_is(&seg[1], "ready"))
            return OIP_READY;
        return OIP_NOT_FOUND;
    }
    if (segment_is(&seg[0], "models"))
        return model_route(seg, n_seg, out);
    return OIP_NOT_FOUND;
}

enum oip_route oip_parse_path(const char *path, struct oip_target *out)
{
    memset(out, 0, sizeof *out);
    /* Only a model route writes model and version: every other one leaves
     * them zero. */
    out->route = path ? route_of(path, out) : OIP_NONE;
    return out->route;
}

int oip_method_ok(enum oip_route route, const char *method)
{
    if (!method)
        return 0;
    switch (route) {
    case OIP_LIVE:
    case OIP_READY:
    case OIP_SERVER:
    case OIP_MODEL:
    case OIP_MODEL_READY: return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    case OIP_INFER: return strcmp(method, "POST") == 0;
    case OIP_NONE:
    case OIP_NOT_FOUND: break;
    }
    return 0; /* no endpoint answers any method */
}

/* ---- infer requests --------------------------------------------------------------------- */

/* Arrays in "data" nest as the shape does ([n] or [n,1]), and some clients
 * wrap them once or twice more; the bound keeps the recursion over client
 * input short. */
#define OIP_DATA_MAX_DEPTH 4
#define OIP_CLASSIFICATION_MAX 1000

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return ID_EINVAL;
}

/* Optional fields may be null: some clients write every field they know,
 * absent ones as null. */
static json_t *field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* Fields outside the protocol are refused rather than ignored, so that a
 * misspelt "outputs" or "datatype" is an answer the client sees, not a
 * request quietly run another way. "parameters" objects stay open: the
 * protocol lets them carry anything. */
static int only_fields(json_t *obj, const char *where, const char *const *known, char *err,
                       size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        (void)v;
        size_t i = 0;
        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i])
            return fail(err, errlen, "%s: unknown field \"%.32s\"", where, key);
    }
    return 0;
}

/* A string field into a fixed buffer: present (or "" when optional and
 * absent), without NUL bytes, and short enough. */
static int string_field(json_t *obj, const char *key, const char *where, int required, char *dst,
                        size_t cap, char *err, size_t errlen)
{
    json_t *v = field(obj, key);
    dst[0] = 0;
    if (!v)
        return required ? fail(err, errlen, "%s%s is missing", where, key) : 0;
    if (!json_is_string(v))
        return fail(err, errlen, "%s%s must be a string", where, key);
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (strlen(s) != len)
        return fail(err, errlen, "%s%s holds a NUL byte", where, key);
    if (required && len == 0)
        return fail(err, errlen, "%s%s is empty", where, key);
    if (len >= cap)
        return fail(err, errlen, "%s%s is longer than %zu bytes", where, key, cap - 1);
    memcpy(dst, s, len + 1);
    return 0;
}

static int parameters_field(json_t *obj, const char *where, json_t **out, char *err, size_t errlen)
{
    *out = field(obj, "parameters");
    if (*out && !json_is_object(*out))
        return fail(err, errlen, "%sparameters must be an object", where);
    return 0;
}

/* The protocol's other tensor datatypes: named in the refusal, so that the
 * client learns what is taken instead. */
static const char *const oip_other_datatypes[] = {
    "BOOL",  "UINT16", "UINT32", "UINT64", "INT8", "INT16",
    "INT32", "INT64",  "FP16",   "FP64",   "BF16", NULL,
};

static int datatype_check(json_t *input, enum oip_datatype *dt, char *err, size_t errlen)
{
    json_t *v = field(input, "datatype");
    if (!v)
        return fail(err, errlen,
                    "inputs[0].datatype is missing (BYTES for images, FP32 or UINT8 for tensors)");
    const char *s = json_string_value(v);
    if (!json_is_string(v))
        return fail(err, errlen,
                    "inputs[0].datatype must be a string (BYTES for images, FP32 or UINT8 for "
                    "tensors)");
    if (strcmp(s, "BYTES") == 0) {
        *dt = OIP_BYTES;
        return 0;
    }
    if (strcmp(s, "FP32") == 0) {
        *dt = OIP_FP32;
        return 0;
    }
    if (strcmp(s, "UINT8") == 0) {
        *dt = OIP_UINT8;
        return 0;
    }
    for (size_t i = 0; oip_other_datatypes[i]; i++)
        if (strcmp(s, oip_other_datatypes[i]) == 0)
            return fail(err, errlen,
                        "inputs[0].datatype %s is not taken: send FP32 or UINT8 tensors (the "
                        "model's input, preprocessed) or BYTES (encoded JPEG or PNG images)",
                        oip_other_datatypes[i]);
    return fail(err, errlen,
                "inputs[0].datatype is not a datatype of the protocol (BYTES for images, FP32 or "
                "UINT8 for tensors)");
}

/* [n] or [n, 1]: n images of one encoded image each. */
static int shape_parse(json_t *input, size_t *n, char *err, size_t errlen)
{
    static const char usage[] = "inputs[0].shape must be [n] or [n,1], n the number of images";
    json_t *shape = field(input, "shape");
    size_t rank = json_is_array(shape) ? json_array_size(shape) : 0;
    if (rank != 1 && rank != 2)
        return fail(err, errlen, "%s", usage);
    json_t *dim0 = json_array_get(shape, 0);
    if (!json_is_integer(dim0))
        return fail(err, errlen, "%s", usage);
    if (rank == 2) {
        json_t *dim1 = json_array_get(shape, 1);
        if (!json_is_integer(dim1) || json_integer_value(dim1) != 1)
            return fail(err, errlen, "%s", usage);
    }
    json_int_t v = json_integer_value(dim0);
    if (v < 1)
        return fail(err, errlen, "inputs[0].shape: n must be a positive number of images");
    if (v > OIP_MAX_IMAGES)
        return fail(err, errlen, "inputs[0].shape: at most %d images per request", OIP_MAX_IMAGES);
    *n = (size_t)v;
    return 0;
}

/* The strings of "data", flat or nested, in order, counted up to one past
 * the most a request may hold (so that a huge array costs nothing more). */
static int data_collect(json_t *a, int depth, json_t **strings, size_t *count, char *err,
                        size_t errlen)
{
    if (depth > OIP_DATA_MAX_DEPTH)
        return fail(err, errlen, "inputs[0].data nests deeper than %d arrays", OIP_DATA_MAX_DEPTH);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_array(v)) {
            int rc = data_collect(v, depth + 1, strings, count, err, errlen);
            if (rc)
                return rc;
            continue;
        }
        if (!json_is_string(v))
            return fail(err, errlen,
                        "inputs[0].data[%zu] is not a string (BYTES elements are base64 strings)",
                        *count);
        if (*count == OIP_MAX_IMAGES)
            return fail(err, errlen, "inputs[0].data holds more than %d images", OIP_MAX_IMAGES);
        strings[(*count)++] = v;
    }
    return 0;
}

static int data_decode(json_t *data, size_t n, struct oip_infer_request *out, char *err,
                       size_t errlen)
{
    if (!json_is_array(data))
        return fail(err, errlen, "inputs[0].data must be an array of base64 strings");
    json_t *strings[OIP_MAX_IMAGES];
    size_t count = 0;
    int rc = data_collect(data, 1, strings, &count, err, errlen);
    if (rc)
        return rc;
    if (count != n)
        return fail(err, errlen, "inputs[0].shape says %zu images but data holds %zu", n, count);
    /* One buffer for every image: base64 decodes to at most 3/4 of its
     * length, and each string is at most the body's size, so the sum of a
     * bounded count of them does not overflow. */
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += json_string_length(strings[i]) / 4 * 3 + 3;
    out->owned = malloc(total);
    if (!out->owned)
        return ID_ENOMEM;
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        const char *b64 = json_string_value(strings[i]);
        size_t b64_len = json_string_length(strings[i]);
        size_t bin_len = 0;
        if (sodium_base642bin(out->owned + used, total - used, b64, b64_len, NULL, &bin_len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0)
            return fail(err, errlen, "inputs[0].data[%zu] is not base64", i);
        if (bin_len == 0)
            return fail(err, errlen, "inputs[0].data[%zu] is empty", i);
        out->images[i] = (struct oip_image){out->owned + used, bin_len};
        used += bin_len;
    }
    out->n_images = count;
    return 0;
}

/* The binary extension's BYTES: n elements of a 4-byte little-endian length
 * and that many bytes, filling bin[0..len) exactly. */
static int binary_split(const uint8_t *bin, size_t len, size_t n, struct oip_infer_request *out,
                        char *err, size_t errlen)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (len - pos < 4)
            return fail(err, errlen,
                        "inputs[0] binary data ends after %zu of %zu images (each needs a "
                        "4-byte length)",
                        i, n);
        uint32_t el = (uint32_t)bin[pos] | (uint32_t)bin[pos + 1] << 8 |
                      (uint32_t)bin[pos + 2] << 16 | (uint32_t)bin[pos + 3] << 24;
        pos += 4;
        if (el == 0)
            return fail(err, errlen, "inputs[0] binary element %zu is empty", i);
        if (el > len - pos)
            return fail(err, errlen,
                        "inputs[0] binary element %zu says %" PRIu32 " bytes, %zu are left", i, el,
                        len - pos);
        out->images[i] = (struct oip_image){bin + pos, el};
        pos += el;
    }
    if (pos != len)
        return fail(err, errlen, "inputs[0] binary data has %zu bytes after its %zu images",
                    len - pos, n);
    out->n_images = n;
    return 0;
}

/* ---- tensor inputs ---------------------------------------------------------------------- */

static const char *datatype_name(enum oip_datatype dt)
{
    return dt == OIP_FP32 ? "FP32" : dt == OIP_UINT8 ? "UINT8" : "BYTES";
}

/* "[2, 3, 32, 32]" into buf, for messages. */
static const char *shape_text(const int64_t *shape, size_t rank, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = 0;
    for (size_t i = 0; i < rank && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%" PRId64, i ? ", " : "[", shape[i]);
    if (pos < len)
        snprintf(buf + pos, len - pos, "]");
    return buf;
}

/* [N, d0, d1, d2] or [d0, d1, d2]: every dim positive, N at most
 * OIP_MAX_IMAGES, the values at most OIP_TENSOR_MAX_VALUES. The bound is
 * checked as the product grows, so that no shape, however large its dims,
 * overflows the count. */
static int tensor_shape_parse(json_t *input, struct oip_infer_request *out, char *err,
                              size_t errlen)
{
    static const char usage[] =
        "inputs[0].shape of a tensor must be [N, C, H, W] or [C, H, W] (the model's input; "
        "[N, H, W, C] or [H, W, C] for a model that takes NHWC)";
    json_t *shape = field(input, "shape");
    size_t rank = json_is_array(shape) ? json_array_size(shape) : 0;
    if (rank != 3 && rank != 4)
        return fail(err, errlen, "%s", usage);
    for (size_t i = 0; i < rank; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d))
            return fail(err, errlen, "%s", usage);
        out->shape[i] = (int64_t)json_integer_value(d);
    }
    out->rank = rank;
    char text[128];
    for (size_t i = 0; i < rank; i++)
        if (out->shape[i] < 1)
            return fail(err, errlen, "inputs[0].shape %s: every dim must be positive",
                        shape_text(out->shape, rank, text, sizeof text));
    size_t batch = rank == 4 ? 1 : 0;
    if (out->shape[0] > OIP_MAX_IMAGES && batch)
        return fail(err, errlen, "inputs[0].shape %s: at most %d images per request",
                    shape_text(out->shape, rank, text, sizeof text), OIP_MAX_IMAGES);
    uint64_t values = 1;
    for (size_t i = 0; i < rank; i++) {
        if ((uint64_t)out->shape[i] > OIP_TENSOR_MAX_VALUES ||
            __builtin_mul_overflow(values, (uint64_t)out->shape[i], &values) ||
            values > OIP_TENSOR_MAX_VALUES)
            return fail(err, errlen,
                        "inputs[0].shape %s holds more than %u values, the most a request takes "
                        "(16 MiB as floats)",
                        shape_text(out->shape, rank, text, sizeof text), OIP_TENSOR_MAX_VALUES);
    }
    out->n_images = batch ? (size_t)out->shape[0] : 1;
    for (size_t i = 0; i < 3; i++)
        out->image_dims[i] = (uint32_t)out->shape[batch + i];
    out->image_len = (size_t)values / out->n_images;
    return 0;
}

struct tensor_fill {
    enum oip_datatype dt;
    size_t want;  /* values the shape holds */
    size_t count; /* values seen so far */
    float *dst;   /* NULL: count and check only */
    size_t max_depth;
};

/* The numbers of "data", flat or nested, in order: checked against the
 * datatype, counted up to one past the shape's (so that a huge array costs
 * nothing more), and stored when dst is given. */
static int tensor_collect(json_t *a, size_t depth, struct tensor_fill *f, char *err, size_t errlen)
{
    if (depth > f->max_depth)
        return fail(err, errlen, "inputs[0].data nests deeper than its shape (%zu arrays)",
                    f->max_depth);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_array(v)) {
            int rc = tensor_collect(v, depth + 1, f, err, errlen);
            if (rc)
                return rc;
            continue;
        }
        float x;
        if (f->dt == OIP_UINT8) {
            json_int_t u = json_is_integer(v) ? json_integer_value(v) : -1;
            if (u < 0 || u > 255)
                return fail(err, errlen,
                            "inputs[0].data value %zu is not a UINT8 (an integer 0..255)",
                            f->count);
            x = (float)u;
        } else {
            if (!json_is_number(v))
                return fail(err, errlen, "inputs[0].data value %zu is not a number", f->count);
            double d = json_number_value(v);
            if (!(fabs(d) <= FLT_MAX))
                return fail(err, errlen, "inputs[0].data value %zu is out of FP32's range",
                            f->count);
            x = (float)d;
        }
        if (f->count == f->want)
            return fail(err, errlen, "inputs[0].data holds more values than its shape's %zu",
                        f->want);
        if (f->dst)
            f->dst[f->count] = x;
        f->count++;
    }
    return 0;
}

/* The values of a tensor given in JSON: counted and checked first, then
 * stored, so that a shape claiming more than the data holds costs no
 * memory. */
static int tensor_json_decode(json_t *data, struct oip_infer_request *out, char *err, size_t errlen)
{
    if (!json_is_array(data))
        return fail(err, errlen, "inputs[0].data of a tensor must be an array of numbers");
    struct tensor_fill f = {
        .dt = out->datatype, .want = out->n_images * out->image_len, .max_depth = out->rank};
    int rc = tensor_collect(data, 1, &f, err, errlen);
    if (rc)
        return rc;
    if (f.count != f.want) {
        char text[128];
        return fail(err, errlen, "inputs[0].shape %s holds %zu values but data holds %zu",
                    shape_text(out->shape, out->rank, text, sizeof text), f.want, f.count);
    }
    out->values = malloc(f.want * sizeof *out->values);
    if (!out->values)
        return ID_ENOMEM;
    f.dst = out->values;
    f.count = 0;
    return tensor_collect(data, 1, &f, err, errlen);
}

/* The binary extension's tensor: its values back to back, little-endian,
 * filling bin[0..len) exactly. */
static int tensor_binary_decode(const uint8_t *bin, size_t len, struct oip_infer_request *out,
                                char *err, size_t errlen)
{
    size_t n = out->n_images * out->image_len;
    size_t width = out->datatype == OIP_FP32 ? 4 : 1;
    if (len != n * width) { /* n is bounded: no overflow */
        char text[128];
        return fail(err, errlen, "inputs[0] binary data has %zu bytes but shape %s of %s needs %zu",
                    len, shape_text(out->shape, out->rank, text, sizeof text),
                    datatype_name(out->datatype), n * width);
    }
    out->values = malloc((n ? n : 1) * sizeof *out->values);
    if (!out->values)
        return ID_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (width == 1) {
            out->values[i] = (float)bin[i];
            continue;
        }
        const uint8_t *b = bin + 4 * i;
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        float x;
        memcpy(&x, &u, sizeof x);
        /* A NaN or an infinity would make the model's output one too. */
        if (!isfinite(x))
            return fail(err, errlen, "inputs[0] binary value %zu is not a finite number", i);
        out->values[i] = x;
    }
    return 0;
}

static int input_parse(json_t *input, const uint8_t *bin, size_t bin_len, int header_given,
                       struct oip_infer_request *out, char *err, size_t errlen)
{
    static const char *const known[] = {"name", "datatype", "shape", "data", "parameters", NULL};
    if (!json_is_object(input))
        return fail(err, errlen, "inputs[0] must be an object");
    int rc = only_fields(input, "inputs[0]", known, err, errlen);
    if (!rc)
        rc = string_field(input, "name", "inputs[0].", 1, out->input_name, sizeof out->input_name,
                          err, errlen);
    if (!rc)
        rc = datatype_check(input, &out->datatype, err, errlen);
    int tensor = out->datatype != OIP_BYTES;
    size_t n = 0;
    if (!rc)
        rc = tensor ? tensor_shape_parse(input, out, err, errlen)
                    : shape_parse(input, &n, err, errlen);
    json_t *params = NULL;
    if (!rc)
        rc = parameters_field(input, "inputs[0].", &params, err, errlen);
    if (rc)
        return rc;
    json_t *data = field(input, "data");
    json_t *size = params ? field(params, "binary_data_size") : NULL;
    if (data && size)
        return fail(err, errlen, "inputs[0] has both data and parameters.binary_data_size");
    if (!data && !size)
        return fail(err, errlen, "inputs[0] has no data and no parameters.binary_data_size");
    if (data) {
        if (bin_len)
            return fail(err, errlen, "%zu bytes follow the JSON but no input has binary_data_size",
                        bin_len);
        return tensor ? tensor_json_decode(data, out, err, errlen)
                      : data_decode(data, n, out, err, errlen);
    }
    if (!header_given)
        return fail(err, errlen,
                    "inputs[0].parameters.binary_data_size needs the "
                    "Inference-Header-Content-Length header");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return fail(err, errlen,
                    "inputs[0].parameters.binary_data_size must be a non-negative integer");
    if ((uint64_t)json_integer_value(size) != (uint64_t)bin_len)
        return fail(err, errlen,
                    "inputs[0].parameters.binary_data_size is %" JSON_INTEGER_FORMAT
                    " but %zu bytes follow the JSON",
                    json_integer_value(size), bin_len);
    return tensor ? tensor_binary_decode(bin, bin_len, out, err, errlen)
                  : binary_split(bin, bin_len, n, out, err, errlen);
}

static int output_parse(json_t *output, struct oip_infer_request *out, char *err, size_t errlen)
{
    static const char *const known[] = {"name", "parameters", NULL};
    if (!json_is_object(output))
        return fail(err, errlen, "outputs[0] must be an object");
    int rc = only_fields(output, "outputs[0]", known, err, errlen);
    if (!rc)
        rc = string_field(output, "name", "outputs[0].", 0, out->output_name,
                          sizeof out->output_name, err, errlen);
    json_t *params = NULL;
    if (!rc)
        rc = parameters_field(output, "outputs[0].", &params, err, errlen);
    if (rc || !params)
        return rc;
    json_t *k = field(params, "classification");
    if (k) {
        json_int_t v = json_is_integer(k) ? json_integer_value(k) : 0;
        if (v < 1 || v > OIP_CLASSIFICATION_MAX)
            return fail(err, errlen,
                        "outputs[0].parameters.classification must be an integer in 1..%d",
                        OIP_CLASSIFICATION_MAX);
        out->classification = (int)v;
    }
    /* Asked for binary or not, the answer is JSON: the extension lets a
     * server answer JSON either way. */
    json_t *binary = field(params, "binary_data");
    if (binary && !json_is_boolean(binary))
        return fail(err, errlen, "outputs[0].parameters.binary_data must be true or false");
    return 0;
}

static int request_parse(json_t *root, const uint8_t *bin, size_t bin_len, int header_given,
                         struct oip_infer_request *out, char *err, size_t errlen)
{
    static const char *const known[] = {"id", "parameters", "inputs", "outputs", NULL};
    if (!json_is_object(root))
        return fail(err, errlen, "the body must be a JSON object");
    int rc = only_fields(root, "request", known, err, errlen);
    if (!rc)
        rc = string_field(root, "id", "", 0, out->id, sizeof out->id, err, errlen);
    json_t *params = NULL;
    if (!rc)
        rc = parameters_field(root, "", &params, err, errlen);
    if (rc)
        return rc;
    json_t *inputs = field(root, "inputs");
    if (!inputs)
        return fail(err, errlen,
                    "inputs is missing (one input: BYTES images or an FP32 or UINT8 tensor)");
    if (!json_is_array(inputs) || json_array_size(inputs) != 1)
        return fail(err, errlen,
                    "inputs must be an array of exactly one input (the images or the tensor)");
    json_t *outputs = field(root, "outputs");
    if (outputs && !json_is_array(outputs))
        return fail(err, errlen, "outputs must be an array");
    if (outputs && json_array_size(outputs) > 1)
        return fail(err, errlen, "outputs may name at most one output");
    rc = input_parse(json_array_get(inputs, 0), bin, bin_len, header_given, out, err, errlen);
    if (!rc && outputs && json_array_size(outputs) == 1)
        rc = output_parse(json_array_get(outputs, 0), out, err, errlen);
    return rc;
}

int oip_parse_infer(const uint8_t *body, size_t len, size_t json_len, struct oip_infer_request *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = 0;
    if (json_len > len)
        return fail(err, errlen,
                    "Inference-Header-Content-Length is %zu but the body has %zu bytes", json_len,
                    len);
    size_t json_end = json_len ? json_len : len;
    if (json_end == 0 || !body)
        return fail(err, errlen, "the body is empty");
    /* Any value is decoded, so that "5" or "\"x\"" is told it is not an
     * object rather than handed a parser's message. */
    json_error_t je;
    json_t *root = json_loadb((const char *)body, json_end,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return ID_ENOMEM;
        return fail(err, errlen, "the body is not valid JSON: %s (line %d)", je.text, je.line);
    }
    int rc = request_parse(root, body + json_end, len - json_end, json_len != 0, out, err, errlen);
    json_decref(root);
    if (rc)
        oip_infer_free(out);
    return rc;
}

void oip_infer_free(struct oip_infer_request *r)
{
    if (!r)
        return;
    free(r->owned);
    free(r->values);
    memset(r, 0, sizeof *r);
}

/* ---- answers ---------------------------------------------------------------------------- */

static int result_is_raw(const struct oip_result *r)
{
    return r->n_values > 0;
}

/* Checked before anything is written, so that a refused answer leaves sb as
 * it was. */
static int results_check(const struct oip_result *res, size_t n, int *raw)
{
    *raw = n > 0 && result_is_raw(&res[0]);
    for (size_t i = 0; i < n; i++) {
        const struct oip_result *r = &res[i];
        if (result_is_raw(r) != *raw)
            return ID_EINVAL;
        if (*raw && !r->values)
            return ID_EINVAL;
        if (!*raw && r->k > 0 && (!r->classes || !r->probs))
            return ID_EINVAL;
    }
    return 0;
}

static void classified_output(struct json_out *j, int classification, const struct oip_result *res,
                              size_t n)
{
    size_t k = classification > 0 ? (size_t)classification : SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        if (res[i].k < k)
            k = res[i].k;
    if (k == SIZE_MAX)
        k = 0; /* no results and no bound */
    json_out_str(j, "datatype", "BYTES");
    json_out_begin_array(j, "shape");
    json_out_u64(j, NULL, n);
    json_out_u64(j, NULL, k);
    json_out_end(j);
    json_out_begin_array(j, "data");
    struct strbuf entry = STRBUF_INIT;
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < k; c++) {
            const char *label = res[i].labels ? res[i].labels[c] : NULL;
            strbuf_reset(&entry);
            strbuf_printf(&entry, "%.6g:%" PRIu32, (double)res[i].probs[c], res[i].classes[c]);
            if (label && label[0]) {
                strbuf_putc(&entry, ':');
                strbuf_puts(&entry, label);
            }
            if (strbuf_failed(&entry))
                j->sb->failed = 1;
            json_out_str(j, NULL, strbuf_str(&entry));
        }
    }
    strbuf_free(&entry);
    json_out_end(j);
}

static void raw_output(struct json_out *j, const struct oip_result *res, size_t n)
{
    size_t m = SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        if (res[i].n_values < m)
            m = res[i].n_values;
    json_out_str(j, "datatype", "FP32");
    json_out_begin_array(j, "shape");
    json_out_u64(j, NULL, n);
    json_out_u64(j, NULL, m);
    json_out_end(j);
    json_out_begin_array(j, "data");
    for (size_t i = 0; i < n; i++)
        for (size_t v = 0; v < m; v++)
            json_out_double(j, NULL, res[i].values[v]);
    json_out_end(j);
}

int oip_infer_response(struct strbuf *sb, const char *model, uint32_t version, const char *id,
                       const char *output_name, int classification, const struct oip_result *res,
                       size_t n)
{
    int raw;
    if (n > 0 && !res)
        return ID_EINVAL;
    int rc = results_check(res, n, &raw);
    if (rc)
        return rc;
    char version_str[16];
    snprintf(version_str, sizeof version_str, "%" PRIu32, version);
    struct json_out j;
    json_out_init(&j, sb);
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "model_name", model);
    json_out_str(&j, "model_version", version_str);
    if (id && id[0])
        json_out_str(&j, "id", id);
    json_out_begin_array(&j, "outputs");
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "name", output_name && output_name[0] ? output_name : "classification");
    if (raw)
        raw_output(&j, res, n);
    else
        classified_output(&j, classification, res, n);
    json_out_end_all(&j);
    return 0;
}

void oip_error(struct strbuf *sb, const char *msg)
{
    struct json_out j;
    json_out_init(&j, sb);
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "error", msg);
    json_out_end_all(&j);
}

void oip_server_metadata(struct strbuf *sb, const char *version)
{
    struct json_out j;
    json_out_init(&j, sb);
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "name", "idunno");
    json_out_str(&j, "version", version);
    json_out_begin_array(&j, "extensions");
    json_out_str(&j, NULL, "classification");
    json_out_str(&j, NULL, "binary_tensor_data");
    json_out_str(&j, NULL, "idunno_image_bytes");
    json_out_end_all(&j);
}

void oip_model_metadata(struct strbuf *sb, const struct oip_model_meta *m)
{
    struct json_out j;
    json_out_init(&j, sb);
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "name", m->name);
    json_out_begin_array(&j, "versions");
    for (size_t i = 0; i < m->n_versions; i++) {
        char v[16];
        snprintf(v, sizeof v, "%" PRIu32, m->versions[i]);
        json_out_str(&j, NULL, v);
    }
    json_out_end(&j);
    json_out_str(&j, "platform", "onnxruntime_onnx");
    json_out_begin_array(&j, "inputs");
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "name", "image");
    json_out_str(&j, "datatype", "BYTES");
    json_out_begin_array(&j, "shape");
    json_out_i64(&j, NULL, -1);
    json_out_end(&j);
    json_out_end(&j);
    if (m->input[0] && m->input[1] && m->input[2]) {
        /* The tensor input (UINT8 is taken too, as its values in FP32). */
        json_out_begin_object(&j, NULL);
        json_out_str(&j, "name", "input");
        json_out_str(&j, "datatype", "FP32");
        json_out_begin_array(&j, "shape");
        json_out_i64(&j, NULL, -1);
        for (int k = 0; k < 3; k++)
            json_out_i64(&j, NULL, (int64_t)m->input[k]);
        json_out_end(&j);
        json_out_end(&j);
    }
    json_out_end(&j);
    /* FP32 whether raw or not: a classifier's tensor holds its scores, and
     * the classes and labels are the classification extension's view of
     * them. */
    json_out_begin_array(&j, "outputs");
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "name", m->output && m->output[0] ? m->output : "output");
    json_out_str(&j, "datatype", "FP32");
    json_out_begin_array(&j, "shape");
    json_out_i64(&j, NULL, -1);
    json_out_i64(&j, NULL, m->classes ? (int64_t)m->classes : -1);
    json_out_end_all(&j);
}
