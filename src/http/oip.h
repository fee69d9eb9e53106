/* oip.h — the Open Inference Protocol's REST binding (KServe "v2"), as far
 * as IDunno speaks it (docs/http.md, "Online inference"): which endpoint a
 * /v2 path names, the body of an infer request (JSON, or JSON followed by
 * the binary tensor data extension's bytes), and the JSON answers.
 *
 * IDunno's models take images, so an infer request carries one input: of
 * datatype BYTES whose elements are encoded images (JPEG, PNG), in JSON as
 * base64 strings or raw through the binary extension; or a tensor of
 * datatype FP32 or UINT8, the model's input as it is (already
 * preprocessed), one image or a batch of them. The answer is the
 * classification extension's output, "score:index:label" strings, top k per
 * image (a model whose card's output is raw answers its values as FP32).
 *
 * Pure: no I/O, no clock, no global state, so the fuzzer (fuzz/fuzz_oip.c)
 * and the unit tests (tests/unit/test_oip.c) drive it with arbitrary bytes.
 * Everything here comes off the network: every length and count is checked
 * before it is used, and nothing is trusted to be NUL-terminated.
 */
#ifndef IDUNNO_HTTP_OIP_H
#define IDUNNO_HTTP_OIP_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

enum oip_route {
    OIP_NONE = 0,    /* not under /v2: some other endpoint's, or none */
    OIP_NOT_FOUND,   /* under /v2 but no such endpoint, or a bad model name or version: 404 */
    OIP_LIVE,        /* GET /v2/health/live */
    OIP_READY,       /* GET /v2/health/ready */
    OIP_SERVER,      /* GET /v2 (server metadata) */
    OIP_MODEL,       /* GET /v2/models/{name}[/versions/{v}] (model metadata) */
    OIP_MODEL_READY, /* GET /v2/models/{name}[/versions/{v}]/ready */
    OIP_INFER,       /* POST /v2/models/{name}[/versions/{v}]/infer */
};

#define OIP_NAME_MAX 64 /* a model name is 1..63 bytes of [A-Za-z0-9_.-] */

struct oip_target {
    enum oip_route route;
    char model[OIP_NAME_MAX]; /* "" unless a model route */
    uint32_t version;         /* 0: none given; else 1..UINT32_MAX */
};

/* The endpoint a request path names (a query string "?..." is ignored; a
 * trailing slash is not accepted). For model routes out->model and
 * out->version are filled; a name outside the rule above, or a version that
 * is not a decimal number in 1..UINT32_MAX, is OIP_NOT_FOUND. Returns
 * out->route. */
enum oip_route oip_parse_path(const char *path, struct oip_target *out);

/* Whether a route answers a method: GET and HEAD for the GET routes, POST
 * for OIP_INFER. Others are 405. */
int oip_method_ok(enum oip_route route, const char *method);

/* Images per infer request at most, and the bound of one request's id. */
#define OIP_MAX_IMAGES 64
#define OIP_ID_MAX 128

struct oip_image {
    const uint8_t *data; /* into the parsed body, or into owned */
    size_t len;          /* > 0 */
};

/* The input's datatypes taken: encoded images, or a tensor. */
enum oip_datatype { OIP_BYTES = 0, OIP_FP32, OIP_UINT8 };

/* A tensor input is [N, d0, d1, d2] or [d0, d1, d2] (N = 1): N images of
 * d0 x d1 x d2 values each, which the model must take as they are (its
 * layout's [C, H, W] or [H, W, C]: checked by the cluster, which knows the
 * model). Its values at most: 16 MiB as floats, what the cluster's frames
 * carry. */
#define OIP_TENSOR_MAX_RANK 4
#define OIP_TENSOR_MAX_VALUES (4u << 20)

struct oip_infer_request {
    char id[OIP_ID_MAX];           /* the request's "id", "" if none */
    char input_name[OIP_NAME_MAX]; /* the input's "name" */
    enum oip_datatype datatype;
    size_t n_images; /* BYTES: the images; a tensor: N */
    struct oip_image images[OIP_MAX_IMAGES];
    /* A tensor (FP32, UINT8): its shape as sent, one image's dims (the shape
     * without N), and n_images x image_len values, row-major, as floats (a
     * UINT8 value v becomes the float v: no scaling). */
    size_t rank;
    int64_t shape[OIP_TENSOR_MAX_RANK];
    uint32_t image_dims[3];
    size_t image_len;
    float *values; /* owned (released by oip_infer_free) */
    /* 0: no classification asked (the answer uses the card's top k), else
     * the k of "parameters": {"classification": k} on the requested output */
    int classification;
    char output_name[OIP_NAME_MAX]; /* the requested output's "name", "" if none */
    uint8_t *owned;                 /* decoded base64 (released by oip_infer_free) */
};

/* Parses an infer request body of len bytes. json_len is the value of the
 * Inference-Header-Content-Length header (0: the header was absent and the
 * whole body is JSON); then body[0..json_len) is the JSON object and the
 * binary data follows it. Accepted (docs/http.md):
 *
 *   {"id": "...",                          optional string
 *    "parameters": {...},                  optional, ignored
 *    "inputs": [{"name": "...", "datatype": "BYTES", "shape": [n] or [n, 1],
 *                "data": ["<base64>", ...] flat or nested,
 *                or "parameters": {"binary_data_size": B} with no "data"}],
 *     or         [{"name": "...", "datatype": "FP32" or "UINT8",
 *                "shape": [N, d0, d1, d2] or [d0, d1, d2],
 *                "data": [numbers, row-major] flat or nested,
 *                or "parameters": {"binary_data_size": B} with no "data"}],
 *    "outputs": [{"name": "...", "parameters": {"classification": k,
 *                 "binary_data": bool}}]}  optional; at most one output
 *
 * Exactly one input. Binary BYTES data is the extension's encoding: each
 * element a 4-byte little-endian length then that many bytes, B bytes in
 * all, which must be exactly the bytes after the JSON (for one input).
 * Elements must be non-empty, n must match the data, 1 <= n <=
 * OIP_MAX_IMAGES, and k of the classification must be 1..1000.
 *
 * A tensor's binary data is its values, little-endian (FP32: 4 bytes each,
 * UINT8: 1), exactly the shape's count. Its dims are positive, N at most
 * OIP_MAX_IMAGES, the values at most OIP_TENSOR_MAX_VALUES; JSON data holds
 * exactly that many numbers (UINT8: integers 0..255; FP32: within float's
 * range), nested at most as deep as the shape; FP32 values must be finite.
 *
 * Returns 0 with *out filled (its images point into body or out->owned, its
 * tensor values are in out->values), or ID_EINVAL with a message for the
 * client in err (a 400), or ID_ENOMEM. A datatype other than BYTES, FP32
 * and UINT8 is ID_EINVAL naming those. out is always safe to release with
 * oip_infer_free. */
int oip_parse_infer(const uint8_t *body, size_t len, size_t json_len, struct oip_infer_request *out,
                    char *err, size_t errlen);
void oip_infer_free(struct oip_infer_request *r);

/* One image's answer, as the cluster gave it. */
struct oip_result {
    size_t k; /* classes (and probs, and labels if labels is not NULL) */
    const uint32_t *classes;
    const float *probs;
    const char *const *labels; /* may be NULL, or hold "" for a class without one */
    size_t n_values;           /* a raw output: its values instead of classes */
    const float *values;
};

/* The answer to an infer request, as one JSON object appended to sb:
 *
 *   {"model_name": model, "model_version": "V", "id": id (if not ""),
 *    "outputs": [{"name": output_name or "classification",
 *                 "datatype": "BYTES", "shape": [n, k],
 *                 "data": ["score:index:label", ...]}]}
 *
 * n rows of k entries, k the smallest of classification (0: no bound) and
 * each result's k (all must have the same k: else the rows are cut to the
 * smallest). A score is printed with six significant digits, a label left
 * out as "score:index" when there is none. If every result is raw values
 * the output is {"name": ..., "datatype": "FP32", "shape": [n, m],
 * "data": [...]} instead, m the smallest n_values. Returns 0, or ID_EINVAL
 * if results mix raw and classified answers. */
int oip_infer_response(struct strbuf *sb, const char *model, uint32_t version, const char *id,
                       const char *output_name, int classification, const struct oip_result *res,
                       size_t n);

/* {"error": msg} appended to sb. */
void oip_error(struct strbuf *sb, const char *msg);

/* GET /v2: {"name": "idunno", "version": version, "extensions":
 * ["classification", "binary_tensor_data", "idunno_image_bytes"]}. */
void oip_server_metadata(struct strbuf *sb, const char *version);

/* What the model metadata answer says of one model. */
struct oip_model_meta {
    const char *name;
    const uint32_t *versions; /* kept versions, oldest first */
    size_t n_versions;
    uint32_t classes;   /* the output's width (0: unknown) */
    int raw;            /* the card's output is raw values (FP32), not classes */
    const char *output; /* the output's name ("" or NULL: "output") */
    /* One image's tensor as the model takes it ([C, H, W] or [H, W, C]);
     * all 0: not known, and no tensor input is listed. */
    uint32_t input[3];
};

/* GET /v2/models/{name}: {"name", "versions": ["1", ...], "platform":
 * "onnxruntime_onnx", "inputs": [{"name": "image", "datatype": "BYTES",
 * "shape": [-1]}, {"name": "input", "datatype": "FP32", "shape": [-1, the
 * input's 3 dims]} when known], "outputs": [{"name", "datatype": "FP32",
 * "shape": [-1, classes or -1]}]}. */
void oip_model_metadata(struct strbuf *sb, const struct oip_model_meta *m);

#endif
