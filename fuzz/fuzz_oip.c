/* fuzz_oip.c — libFuzzer target for the Open Inference Protocol's REST
 * binding (http/oip.h), which reads request paths and infer bodies straight
 * off the network. The input is used three ways: as a path, as an infer
 * body (its first two bytes, little-endian, are the
 * Inference-Header-Content-Length, the rest the body), and as the names,
 * scores and labels of an answer. Properties checked, not just "no crash":
 *   - a model route's name obeys the rule and is the one in the path; other
 *     routes carry no name or version; a path not under /v2 is OIP_NONE;
 *   - a parsed body has 1..OIP_MAX_IMAGES non-empty images, each inside the
 *     body's binary part or inside the decoded buffer, k in 0..1000, and
 *     NUL-terminated strings; a refused one says why and holds nothing;
 *   - a parsed tensor (FP32, UINT8) has 1..OIP_MAX_IMAGES images whose dims
 *     are its shape's, positive, at most OIP_TENSOR_MAX_VALUES values in
 *     all, every one readable, finite, and for UINT8 an integer 0..255; its
 *     values, when binary, are the body's bytes;
 *   - every answer is one JSON object whose shape matches its data. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/strbuf.h"
#include "http/oip.h"

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static void check_path(const char *path)
{
    struct oip_target t;
    enum oip_route r = oip_parse_path(path, &t);
    if (r != t.route || r < OIP_NONE || r > OIP_INFER)
        __builtin_trap();
    int ours = strncmp(path, "/v2", 3) == 0 && (!path[3] || path[3] == '/' || path[3] == '?');
    if ((r != OIP_NONE) != ours)
        __builtin_trap();
    if (r >= OIP_MODEL) {
        size_t n = strnlen(t.model, sizeof t.model);
        if (n == 0 || n >= OIP_NAME_MAX || strncmp(path, "/v2/models/", 11) != 0 ||
            strncmp(path + 11, t.model, n) != 0 ||
            (path[11 + n] && path[11 + n] != '/' && path[11 + n] != '?'))
            __builtin_trap();
        for (size_t i = 0; i < n; i++)
            if (!name_char(t.model[i]))
                __builtin_trap();
        if (t.version != 0 && !strstr(path, "/versions/"))
            __builtin_trap();
    } else if (t.model[0] || t.version) {
        __builtin_trap();
    }
    int get = oip_method_ok(r, "GET"), post = oip_method_ok(r, "POST");
    if (get != oip_method_ok(r, "HEAD") || (get && post) || post != (r == OIP_INFER) ||
        get != (r >= OIP_LIVE && r != OIP_INFER))
        __builtin_trap();
    (void)oip_method_ok(r, path);
}

static int inside(const uint8_t *p, size_t n, const uint8_t *base, size_t base_len)
{
    return p >= base && n <= base_len && (size_t)(p - base) <= base_len - n;
}

/* A parsed tensor: its shape, its count and every value (see the top). */
static void check_tensor(const uint8_t *body, size_t len, size_t json_len,
                         const struct oip_infer_request *r)
{
    if ((r->datatype != OIP_FP32 && r->datatype != OIP_UINT8) || r->owned || !r->values ||
        r->n_images < 1 || r->n_images > OIP_MAX_IMAGES || (r->rank != 3 && r->rank != 4) ||
        !r->input_name[0])
        __builtin_trap();
    size_t batch = r->rank == 4;
    if (batch ? (size_t)r->shape[0] != r->n_images : r->n_images != 1)
        __builtin_trap();
    size_t count = 1;
    for (size_t i = 0; i < 3; i++) {
        if (r->shape[batch + i] < 1 || (int64_t)r->image_dims[i] != r->shape[batch + i])
            __builtin_trap();
        count *= r->image_dims[i];
    }
    if (count != r->image_len || count * r->n_images > OIP_TENSOR_MAX_VALUES)
        __builtin_trap();
    size_t n = count * r->n_images;
    /* Binary: exactly the bytes after the JSON, each value as sent. */
    size_t width = r->datatype == OIP_FP32 ? 4 : 1;
    int binary = json_len && len > json_len;
    if (binary && len - json_len != n * width)
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        float v = r->values[i];
        if (!isfinite(v) || (r->datatype == OIP_UINT8 && (v < 0 || v > 255 || v != floorf(v))))
            __builtin_trap();
        if (!binary)
            continue;
        const uint8_t *b = body + json_len + i * width;
        float sent = (float)b[0];
        if (width == 4) {
            uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                         (uint32_t)b[3] << 24;
            memcpy(&sent, &u, sizeof sent);
        }
        if (memcmp(&sent, &v, sizeof v) != 0)
            __builtin_trap();
    }
}

static void check_parse(const uint8_t *body, size_t len, size_t json_len,
                        struct oip_infer_request *r)
{
    char err[256];
    int rc = oip_parse_infer(body, len, json_len, r, err, sizeof err);
    if (rc != 0 && rc != ID_EINVAL && rc != ID_ENOMEM)
        __builtin_trap();
    if (rc != 0) {
        if ((rc == ID_EINVAL && !err[0]) || r->owned || r->n_images || r->id[0] ||
            r->input_name[0] || r->output_name[0] || r->classification || r->values ||
            r->datatype != OIP_BYTES)
            __builtin_trap();
        oip_infer_free(r);
        return;
    }
    if (r->datatype != OIP_BYTES) {
        check_tensor(body, len, json_len, r);
        return;
    }
    if (json_len > len || r->n_images < 1 || r->n_images > OIP_MAX_IMAGES ||
        r->classification < 0 || r->classification > 1000 || !r->input_name[0] ||
        strnlen(r->id, OIP_ID_MAX) == OIP_ID_MAX ||
        strnlen(r->input_name, OIP_NAME_MAX) == OIP_NAME_MAX ||
        strnlen(r->output_name, OIP_NAME_MAX) == OIP_NAME_MAX)
        __builtin_trap();
    /* Images are all in the binary part (which then exists) or all decoded. */
    size_t bin_at = json_len ? json_len : len;
    for (size_t i = 0; i < r->n_images; i++) {
        const struct oip_image *im = &r->images[i];
        if (im->len == 0 || !im->data)
            __builtin_trap();
        if (r->owned ? im->data < r->owned
                     : !inside(im->data, im->len, body + bin_at, len - bin_at))
            __builtin_trap();
        /* touch every byte, so that ASan sees an image past its buffer */
        volatile uint8_t sink = 0;
        for (size_t b = 0; b < im->len; b++)
            sink ^= im->data[b];
        (void)sink;
    }
}

/* The answer parses back as one object with one output whose data holds
 * rows * cols values. */
static void check_answer(const struct strbuf *sb, size_t rows, const char *datatype)
{
    if (strbuf_failed(sb))
        return;
    json_t *root = json_loadb(sb->data, sb->len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root) || !json_is_string(json_object_get(root, "model_version")))
        __builtin_trap();
    json_t *out = json_array_get(json_object_get(root, "outputs"), 0);
    json_t *shape = json_object_get(out, "shape");
    json_t *data = json_object_get(out, "data");
    const char *dt = json_string_value(json_object_get(out, "datatype"));
    if (!dt || strcmp(dt, datatype) != 0 || json_array_size(shape) != 2 || !json_is_array(data))
        __builtin_trap();
    json_int_t n = json_integer_value(json_array_get(shape, 0));
    json_int_t k = json_integer_value(json_array_get(shape, 1));
    if (n != (json_int_t)rows || k < 0 || (size_t)(n * k) != json_array_size(data))
        __builtin_trap();
    json_decref(root);
}

/* Byte c of image i: of its encoded bytes, or of its tensor's values. */
static uint8_t image_byte(const struct oip_infer_request *r, size_t i, size_t c)
{
    if (r->datatype == OIP_BYTES)
        return r->images[i].data[c % r->images[i].len];
    return (uint8_t)(int)fmodf(fabsf(r->values[i * r->image_len + c % r->image_len]), 256.0f);
}

static size_t image_size(const struct oip_infer_request *r, size_t i)
{
    return r->datatype == OIP_BYTES ? r->images[i].len : r->image_len;
}

/* An answer for the parsed request, each image's scores and labels made of
 * its own bytes, then the same as raw values, then a mix of the two. */
static void check_answers(const struct oip_infer_request *r, const char *text)
{
    enum { K = 4 };
    uint32_t classes[OIP_MAX_IMAGES][K];
    float probs[OIP_MAX_IMAGES][K];
    const char *labels[OIP_MAX_IMAGES][K];
    struct oip_result res[OIP_MAX_IMAGES];
    size_t n = r->n_images;
    for (size_t i = 0; i < n; i++) {
        size_t size = image_size(r, i);
        size_t k = 1 + image_byte(r, i, 0) % K;
        for (size_t c = 0; c < K; c++) {
            uint8_t b = image_byte(r, i, c);
            classes[i][c] = (uint32_t)b * 1000003u;
            probs[i][c] = b == 0xff ? __builtin_nanf("") : (float)b / 7.0f;
            labels[i][c] = b & 1 ? "" : text + (b % 8);
        }
        res[i] = (struct oip_result){.k = k,
                                     .classes = classes[i],
                                     .probs = probs[i],
                                     .labels = size & 1 ? NULL : labels[i]};
    }
    struct strbuf sb = STRBUF_INIT;
    if (oip_infer_response(&sb, text, (uint32_t)n, r->id, r->output_name, r->classification, res,
                           n) != 0)
        __builtin_trap();
    check_answer(&sb, n, "BYTES");
    for (size_t i = 0; i < n; i++)
        res[i] = (struct oip_result){.n_values = 1 + image_size(r, i) % K, .values = probs[i]};
    strbuf_reset(&sb);
    if (oip_infer_response(&sb, text, 1, r->id, text, 0, res, n) != 0)
        __builtin_trap();
    check_answer(&sb, n, "FP32");
    if (n > 1) {
        res[0] = (struct oip_result){.k = 1, .classes = classes[0], .probs = probs[0]};
        strbuf_reset(&sb);
        if (oip_infer_response(&sb, text, 1, NULL, NULL, 0, res, n) != ID_EINVAL || sb.len != 0)
            __builtin_trap();
    }
    strbuf_free(&sb);
}

static void check_documents(const char *text)
{
    struct strbuf sb = STRBUF_INIT;
    oip_error(&sb, text);
    json_t *e = json_loadb(sb.data, sb.len, 0, NULL);
    if (!strbuf_failed(&sb) && !json_is_string(json_object_get(e, "error")))
        __builtin_trap();
    json_decref(e);
    strbuf_reset(&sb);
    oip_server_metadata(&sb, text);
    e = json_loadb(sb.data, sb.len, 0, NULL);
    if (!strbuf_failed(&sb) && !json_is_object(e))
        __builtin_trap();
    json_decref(e);
    strbuf_reset(&sb);
    static const uint32_t versions[] = {1, 2, UINT32_MAX};
    struct oip_model_meta m = {.name = text,
                               .versions = versions,
                               .n_versions = strlen(text) % 4,
                               .classes = (uint32_t)strlen(text),
                               .output = text};
    oip_model_metadata(&sb, &m);
    e = json_loadb(sb.data, sb.len, 0, NULL);
    if (!strbuf_failed(&sb) && !json_is_object(e))
        __builtin_trap();
    json_decref(e);
    strbuf_free(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 8);
    if (!text)
        return 0;
    memcpy(text, data, size);
    memset(text + size, 0, 8); /* labels start up to 7 bytes in */
    check_path(text);
    check_documents(text);

    if (size >= 2) {
        size_t json_len = (size_t)data[0] | (size_t)data[1] << 8;
        /* a copy of exactly the body's length: a read past it is a report */
        size_t len = size - 2;
        uint8_t *body = malloc(len ? len : 1);
        if (body) {
            memcpy(body, data + 2, len);
            struct oip_infer_request r;
            check_parse(body, len, json_len, &r);
            if (r.n_images)
                check_answers(&r, text);
            oip_infer_free(&r);
            oip_infer_free(&r);
            free(body);
        }
    }
    free(text);
    return 0;
}
