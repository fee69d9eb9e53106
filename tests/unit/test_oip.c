/* test_oip.c — the Open Inference Protocol's REST binding (src/http/oip.c):
 * every path form and many that are not one, the methods each route
 * answers, infer bodies in JSON (base64 data flat and nested, shapes [n]
 * and [n,1], id, classification and output name) and with the binary
 * extension, every refusal naming its field, and the answers parsed back
 * with jansson field by field. Bodies are copied into buffers of exactly
 * their length, so that a read past the end is an ASan report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/err.h"
#include "base/strbuf.h"
#include "http/oip.h"

/* ---- paths ------------------------------------------------------------------------------ */

static void expect_path(const char *path, enum oip_route route, const char *model, uint32_t version)
{
    struct oip_target t;
    memset(&t, 0x5a, sizeof t); /* whatever was there must not show through */
    enum oip_route r = oip_parse_path(path, &t);
    if (r != route || t.route != route || strcmp(t.model, model) != 0 || t.version != version)
        fail_msg("%s: route %d model \"%.64s\" version %u, expected %d \"%s\" %u", path, r, t.model,
                 t.version, route, model, version);
}

static void test_paths_that_name_endpoints(void **state)
{
    (void)state;
    expect_path("/v2", OIP_SERVER, "", 0);
    expect_path("/v2?verbose=1", OIP_SERVER, "", 0);
    expect_path("/v2/health/live", OIP_LIVE, "", 0);
    expect_path("/v2/health/ready", OIP_READY, "", 0);
    expect_path("/v2/health/ready?x=/y/", OIP_READY, "", 0);
    expect_path("/v2/models/resnet50", OIP_MODEL, "resnet50", 0);
    expect_path("/v2/models/resnet50/ready", OIP_MODEL_READY, "resnet50", 0);
    expect_path("/v2/models/resnet50/infer", OIP_INFER, "resnet50", 0);
    expect_path("/v2/models/resnet50/infer?timeout=3", OIP_INFER, "resnet50", 0);
    expect_path("/v2/models/resnet50/versions/3", OIP_MODEL, "resnet50", 3);
    expect_path("/v2/models/resnet50/versions/3/ready", OIP_MODEL_READY, "resnet50", 3);
    expect_path("/v2/models/resnet50/versions/12/infer", OIP_INFER, "resnet50", 12);
    expect_path("/v2/models/m/versions/4294967295/infer", OIP_INFER, "m", UINT32_MAX);
    expect_path("/v2/models/m/versions/007", OIP_MODEL, "m", 7);
    expect_path("/v2/models/A-z_0.9/ready", OIP_MODEL_READY, "A-z_0.9", 0);
    /* Words of the path are names too when they stand where a name does. */
    expect_path("/v2/models/versions", OIP_MODEL, "versions", 0);
    expect_path("/v2/models/infer/infer", OIP_INFER, "infer", 0);
    expect_path("/v2/models/ready/versions/1/ready", OIP_MODEL_READY, "ready", 1);
    char name63[64], path[128];
    memset(name63, 'n', 63);
    name63[63] = 0;
    snprintf(path, sizeof path, "/v2/models/%s/infer", name63);
    expect_path(path, OIP_INFER, name63, 0);
}

static void test_paths_that_are_not_found_or_not_ours(void **state)
{
    (void)state;
    static const char *const not_found[] = {
        "/v2/",
        "/v2//",
        "/v2/health",
        "/v2/health/",
        "/v2/health/live/",
        "/v2/health/alive",
        "/v2/health/live/x",
        "/v2/models",
        "/v2/models/",
        "/v2/models/m/",
        "/v2/models/m/infer/",
        "/v2/models/m/versions/1/",
        "/v2/models//infer",
        "/v2/models/m//infer",
        "/v2/models/m/predict",
        "/v2/models/m/versions",
        "/v2/models/m/versions/",
        "/v2/models/m/versions/0",
        "/v2/models/m/versions/00",
        "/v2/models/m/versions/4294967296",
        "/v2/models/m/versions/99999999999999999999999",
        "/v2/models/m/versions/+1",
        "/v2/models/m/versions/-1",
        "/v2/models/m/versions/1a",
        "/v2/models/m/versions/0x10",
        "/v2/models/m/versions/ 1",
        "/v2/models/m/versions/1/infer/x",
        "/v2/models/m/versions/1/predict",
        "/v2/models/m/ready/infer",
        "/v2/models/bad name",
        "/v2/models/bad%20name",
        "/v2/models/na/me/infer",
        "/v2/models/caf\xc3\xa9",
        "/v2/models/a+b",
        "/v2/models/a:b/infer",
        "/v2/repository/index",
        "/v2/x",
        "/v2/?x",
    };
    for (size_t i = 0; i < sizeof not_found / sizeof not_found[0]; i++)
        expect_path(not_found[i], OIP_NOT_FOUND, "", 0);
    char name64[65], path[128];
    memset(name64, 'n', 64);
    name64[64] = 0;
    snprintf(path, sizeof path, "/v2/models/%s", name64);
    expect_path(path, OIP_NOT_FOUND, "", 0);

    static const char *const not_ours[] = {
        "",     "/",     "/v",   "/v1",      "/v20",        "/v2x/models/m",
        "/V2",  "v2",    "/v3/", "/metrics", "/api/status", "/v20/models/m/infer",
        "//v2", "/x/v2",
    };
    for (size_t i = 0; i < sizeof not_ours / sizeof not_ours[0]; i++)
        expect_path(not_ours[i], OIP_NONE, "", 0);
    expect_path(NULL, OIP_NONE, "", 0);
}

static void test_methods(void **state)
{
    (void)state;
    static const enum oip_route gets[] = {OIP_LIVE, OIP_READY, OIP_SERVER, OIP_MODEL,
                                          OIP_MODEL_READY};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        assert_true(oip_method_ok(gets[i], "GET"));
        assert_true(oip_method_ok(gets[i], "HEAD"));
        assert_false(oip_method_ok(gets[i], "POST"));
        assert_false(oip_method_ok(gets[i], "PUT"));
        assert_false(oip_method_ok(gets[i], "get"));
        assert_false(oip_method_ok(gets[i], ""));
        assert_false(oip_method_ok(gets[i], NULL));
    }
    assert_true(oip_method_ok(OIP_INFER, "POST"));
    assert_false(oip_method_ok(OIP_INFER, "GET"));
    assert_false(oip_method_ok(OIP_INFER, "HEAD"));
    assert_false(oip_method_ok(OIP_INFER, "DELETE"));
    assert_false(oip_method_ok(OIP_INFER, "POSTX"));
    assert_false(oip_method_ok(OIP_INFER, NULL));
    assert_false(oip_method_ok(OIP_NONE, "GET"));
    assert_false(oip_method_ok(OIP_NOT_FOUND, "GET"));
    assert_false(oip_method_ok(OIP_NOT_FOUND, "POST"));
}

/* ---- infer requests --------------------------------------------------------------------- */

static char err[256];

/* Parses body[0..len) from a copy of exactly len bytes (kept in *copy for
 * the images that point into it; the caller frees it). */
static int parse_n(const void *body, size_t len, size_t json_len, struct oip_infer_request *r,
                   uint8_t **copy)
{
    *copy = malloc(len ? len : 1);
    assert_non_null(*copy);
    memcpy(*copy, body, len);
    memset(err, 0, sizeof err);
    return oip_parse_infer(*copy, len, json_len, r, err, sizeof err);
}

static int parse(const char *json, struct oip_infer_request *r, uint8_t **copy)
{
    return parse_n(json, strlen(json), 0, r, copy);
}

static void assert_image(const struct oip_image *im, const char *bytes)
{
    assert_int_equal(im->len, strlen(bytes));
    assert_memory_equal(im->data, bytes, im->len);
}

static int inside(const uint8_t *p, size_t n, const uint8_t *base, size_t base_len)
{
    return p >= base && n <= base_len && (size_t)(p - base) <= base_len - n;
}

/* "hello", "world!", "A" */
#define B64_HELLO "aGVsbG8="
#define B64_WORLD "d29ybGQh"
#define B64_A "QQ=="

static void test_infer_json_flat_and_nested(void **state)
{
    (void)state;
    struct oip_infer_request r;
    uint8_t *copy;
    static const char *const bodies[] = {
        "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[3],"
        "\"data\":[\"" B64_HELLO "\",\"" B64_WORLD "\",\"" B64_A "\"]}]}",
        /* shape [n,1] with data nested as the shape is */
        "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[3,1],"
        "\"data\":[[\"" B64_HELLO "\"],[\"" B64_WORLD "\"],[\"" B64_A "\"]]}]}",
        /* nested unevenly, down to the deepest level taken */
        "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[3,1],"
        "\"data\":[[[[\"" B64_HELLO "\"]]],\"" B64_WORLD "\",[[],[\"" B64_A "\"]]]}]}",
    };
    for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++) {
        assert_int_equal(parse(bodies[b], &r, &copy), 0);
        assert_string_equal(err, "");
        assert_string_equal(r.input_name, "image");
        assert_string_equal(r.id, "");
        assert_string_equal(r.output_name, "");
        assert_int_equal(r.classification, 0);
        assert_int_equal(r.n_images, 3);
        assert_image(&r.images[0], "hello");
        assert_image(&r.images[1], "world!");
        assert_image(&r.images[2], "A");
        assert_non_null(r.owned);
        for (size_t i = 0; i < r.n_images; i++)
            assert_true(r.images[i].data >= r.owned);
        /* decoded one after another into the one buffer */
        assert_ptr_equal(r.images[1].data, r.images[0].data + 5);
        assert_ptr_equal(r.images[2].data, r.images[1].data + 6);
        oip_infer_free(&r);
        assert_null(r.owned);
        assert_int_equal(r.n_images, 0);
        free(copy);
    }
}

static void test_infer_id_classification_output_name(void **state)
{
    (void)state;
    struct oip_infer_request r;
    uint8_t *copy;
    assert_int_equal(parse("{\"id\":\"req-42\",\"parameters\":{\"anything\":[1,{\"x\":null}]},"
                           "\"inputs\":[{\"name\":\"in\",\"datatype\":\"BYTES\",\"shape\":[1],"
                           "\"data\":[\"" B64_A "\"],\"parameters\":{\"content_type\":\"jpeg\"}}],"
                           "\"outputs\":[{\"name\":\"probs\",\"parameters\":{\"classification\":5,"
                           "\"binary_data\":false,\"other\":1}}]}",
                           &r, &copy),
                     0);
    assert_string_equal(r.id, "req-42");
    assert_string_equal(r.input_name, "in");
    assert_string_equal(r.output_name, "probs");
    assert_int_equal(r.classification, 5);
    assert_int_equal(r.n_images, 1);
    assert_image(&r.images[0], "A");
    oip_infer_free(&r);
    free(copy);

    /* k at both ends of its range; an output with no parameters; nulls for
     * absent optional fields */
    assert_int_equal(parse("{\"id\":null,\"parameters\":null,\"inputs\":[{\"name\":\"i\","
                           "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"" B64_A "\"],"
                           "\"parameters\":null}],\"outputs\":[{\"name\":\"o\",\"parameters\":{"
                           "\"classification\":1000,\"binary_data\":true}}]}",
                           &r, &copy),
                     0);
    assert_int_equal(r.classification, 1000);
    assert_string_equal(r.id, "");
    oip_infer_free(&r);
    free(copy);
    assert_int_equal(parse("{\"inputs\":[{\"name\":\"i\",\"datatype\":\"BYTES\",\"shape\":[1],"
                           "\"data\":[\"" B64_A "\"]}],\"outputs\":[{\"parameters\":{"
                           "\"classification\":1}}]}",
                           &r, &copy),
                     0);
    assert_int_equal(r.classification, 1);
    assert_string_equal(r.output_name, "");
    oip_infer_free(&r);
    free(copy);
    assert_int_equal(parse("{\"inputs\":[{\"name\":\"i\",\"datatype\":\"BYTES\",\"shape\":[1],"
                           "\"data\":[\"" B64_A "\"]}],\"outputs\":[{\"name\":\"top\"}]}",
                           &r, &copy),
                     0);
    assert_int_equal(r.classification, 0);
    assert_string_equal(r.output_name, "top");
    oip_infer_free(&r);
    free(copy);
    assert_int_equal(parse("{\"inputs\":[{\"name\":\"i\",\"datatype\":\"BYTES\",\"shape\":[1],"
                           "\"data\":[\"" B64_A "\"]}],\"outputs\":[]}",
                           &r, &copy),
                     0);
    oip_infer_free(&r);
    free(copy);

    /* an id of 127 bytes is the longest */
    char body[512], id[128];
    memset(id, 'i', 127);
    id[127] = 0;
    snprintf(body, sizeof body,
             "{\"id\":\"%s\",\"inputs\":[{\"name\":\"i\",\"datatype\":\"BYTES\","
             "\"shape\":[1],\"data\":[\"" B64_A "\"]}]}",
             id);
    assert_int_equal(parse(body, &r, &copy), 0);
    assert_string_equal(r.id, id);
    oip_infer_free(&r);
    free(copy);
}

/* json then the binary extension's elements (4-byte little-endian length,
 * bytes). Returns the body's length; *json_len is set. */
static size_t binary_raw(uint8_t *buf, size_t cap, const char *json, const char *const *elements,
                         size_t n, size_t *json_len)
{
    size_t pos = strlen(json);
    assert_true(pos <= cap);
    memcpy(buf, json, pos);
    for (size_t i = 0; i < n; i++) {
        uint32_t len = (uint32_t)strlen(elements[i]);
        assert_true(pos + 4 + len <= cap);
        for (int b = 0; b < 4; b++)
            buf[pos++] = (uint8_t)(len >> (8 * b));
        memcpy(buf + pos, elements[i], len);
        pos += len;
    }
    *json_len = strlen(json);
    return pos;
}

/* The same with the JSON of one input of the given shape, binary_data_size
 * the bytes that follow unless size >= 0. */
static size_t binary_body(uint8_t *buf, size_t cap, const char *shape, const char *const *elements,
                          size_t n, long size, size_t *json_len)
{
    size_t bin = 0;
    for (size_t i = 0; i < n; i++)
        bin += 4 + strlen(elements[i]);
    char json[256];
    snprintf(json, sizeof json,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":%s,"
             "\"parameters\":{\"binary_data_size\":%ld}}]}",
             shape, size >= 0 ? size : (long)bin);
    return binary_raw(buf, cap, json, elements, n, json_len);
}

static void test_infer_binary_extension(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t json_len;
    static const char *const two[] = {"\xff\xd8\xff\xe0jpeg-bytes", "\x89PNG\r\n\x1a\n"};
    size_t len = binary_body(buf, sizeof buf, "[2]", two, 2, -1, &json_len);
    struct oip_infer_request r;
    uint8_t *copy;
    assert_int_equal(parse_n(buf, len, json_len, &r, &copy), 0);
    assert_int_equal(r.n_images, 2);
    assert_null(r.owned); /* the images stay in the body */
    assert_image(&r.images[0], two[0]);
    assert_image(&r.images[1], two[1]);
    assert_ptr_equal(r.images[0].data, copy + json_len + 4);
    assert_ptr_equal(r.images[1].data, copy + json_len + 4 + strlen(two[0]) + 4);
    for (size_t i = 0; i < 2; i++)
        assert_true(inside(r.images[i].data, r.images[i].len, copy, len));
    oip_infer_free(&r);
    free(copy);

    /* [n,1], and an element holding NUL bytes and a length above 255 */
    char big[300];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    static const char *one[1];
    one[0] = big;
    len = binary_body(buf, sizeof buf, "[1,1]", one, 1, -1, &json_len);
    assert_int_equal(parse_n(buf, len, json_len, &r, &copy), 0);
    assert_int_equal(r.n_images, 1);
    assert_int_equal(r.images[0].len, 299);
    oip_infer_free(&r);
    free(copy);
}

/* A body that must be refused with a message holding want. */
static void expect_refused_n(const void *body, size_t len, size_t json_len, const char *want)
{
    struct oip_infer_request r;
    uint8_t *copy;
    int rc = parse_n(body, len, json_len, &r, &copy);
    if (rc != ID_EINVAL || !strstr(err, want))
        fail_msg("%.*s: rc %d \"%s\", expected ID_EINVAL with \"%s\"", (int)(len < 200 ? len : 200),
                 (const char *)body, rc, err, want);
    /* a refused parse leaves nothing behind, and freeing it again is safe */
    assert_null(r.owned);
    assert_null(r.values);
    assert_int_equal(r.datatype, OIP_BYTES);
    assert_int_equal(r.n_images, 0);
    assert_string_equal(r.id, "");
    oip_infer_free(&r);
    free(copy);
}

static void expect_refused(const char *json, const char *want)
{
    expect_refused_n(json, strlen(json), 0, want);
}

#define INPUT_HEAD "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\","
#define ONE_INPUT INPUT_HEAD "\"shape\":[1],\"data\":[\"" B64_A "\"]}"

static void test_infer_refusals_of_the_json(void **state)
{
    (void)state;
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{", "not valid JSON"},
        {"{\"inputs\":[]} x", "not valid JSON"},
        {"[1]", "must be a JSON object"},
        {"\"inputs\"", "must be a JSON object"},
        {"{\"id\":\"a\",\"id\":\"b\"}", "duplicate"},
        {"{}", "inputs is missing"},
        {"{\"inputs\":null}", "inputs is missing"},
        {"{\"inputs\":[]}", "exactly one input"},
        {"{\"inputs\":{}}", "exactly one input"},
        {ONE_INPUT ",{\"name\":\"b\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "exactly one input"},
        {"{\"inputs\":[1]}", "inputs[0] must be an object"},
        {"{\"input\":[]}", "unknown field \"input\""},
        {ONE_INPUT "],\"output\":[]}", "unknown field \"output\""},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"" B64_A "\"],\"type\":1}]}",
         "inputs[0]: unknown field \"type\""},
        {ONE_INPUT "],\"outputs\":[{\"name\":\"o\",\"k\":1}]}", "outputs[0]: unknown field \"k\""},
        {ONE_INPUT "],\"id\":5}", "id must be a string"},
        {ONE_INPUT "],\"parameters\":[]}", "parameters must be an object"},
        {"{\"inputs\":[{\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].name is missing"},
        {"{\"inputs\":[{\"name\":\"\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].name is empty"},
        {"{\"inputs\":[{\"name\":7,\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].name must be a string"},
        /* datatypes */
        {"{\"inputs\":[{\"name\":\"i\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1.0]}]}",
         "inputs[0].shape of a tensor must be [N, C, H, W] or [C, H, W]"},
        {"{\"inputs\":[{\"name\":\"i\",\"datatype\":\"INT64\",\"shape\":[1],\"data\":[1]}]}",
         "inputs[0].datatype INT64 is not taken: send FP32 or UINT8 tensors"},
        {"{\"inputs\":[{\"name\":\"i\",\"datatype\":\"FP16\",\"shape\":[1,1,1],\"data\":[1]}]}",
         "inputs[0].datatype FP16 is not taken: send FP32 or UINT8 tensors (the model's input, "
         "preprocessed) or BYTES (encoded JPEG or PNG images)"},
        {"{\"inputs\":[{\"name\":\"i\",\"datatype\":\"bytes\",\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].datatype is not a datatype"},
        {"{\"inputs\":[{\"name\":\"i\",\"datatype\":\"JPEG\",\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].datatype is not a datatype"},
        {"{\"inputs\":[{\"name\":\"i\",\"datatype\":1,\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].datatype must be a string"},
        {"{\"inputs\":[{\"name\":\"i\",\"shape\":[1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].datatype is missing"},
        /* shapes */
        {INPUT_HEAD "\"data\":[\"QQ==\"]}]}", "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":[],\"data\":[\"QQ==\"]}]}", "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":1,\"data\":[\"QQ==\"]}]}", "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":[1,2],\"data\":[\"QQ==\"]}]}",
         "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":[1,1,1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":[\"1\"],\"data\":[\"QQ==\"]}]}",
         "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":[1.0],\"data\":[\"QQ==\"]}]}",
         "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":[1,1.0],\"data\":[\"QQ==\"]}]}",
         "inputs[0].shape must be [n] or [n,1]"},
        {INPUT_HEAD "\"shape\":[0],\"data\":[]}]}", "inputs[0].shape: n must be a positive"},
        {INPUT_HEAD "\"shape\":[-1],\"data\":[\"QQ==\"]}]}",
         "inputs[0].shape: n must be a positive"},
        {INPUT_HEAD "\"shape\":[65],\"data\":[\"QQ==\"]}]}", "at most 64 images"},
        {INPUT_HEAD "\"shape\":[9223372036854775807],\"data\":[]}]}", "at most 64 images"},
        {INPUT_HEAD "\"shape\":[2],\"data\":[\"QQ==\"]}]}",
         "inputs[0].shape says 2 images but data holds 1"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"QQ==\",\"QQ==\"]}]}",
         "inputs[0].shape says 1 images but data holds 2"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[]}]}",
         "inputs[0].shape says 1 images but data holds 0"},
        /* data */
        {INPUT_HEAD "\"shape\":[1]}]}", "inputs[0] has no data and no parameters.binary_data_size"},
        {INPUT_HEAD "\"shape\":[1],\"parameters\":{}}]}", "has no data"},
        {INPUT_HEAD "\"shape\":[1],\"data\":\"QQ==\"}]}", "inputs[0].data must be an array"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"\"]}]}", "inputs[0].data[0] is empty"},
        {INPUT_HEAD "\"shape\":[2],\"data\":[\"QQ==\",\"!!!!\"]}]}",
         "inputs[0].data[1] is not base64"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"aGVsbG8\"]}]}", "inputs[0].data[0] is not base64"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"aGVs bG8=\"]}]}", "inputs[0].data[0] is not base64"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"aGVsbG8=\\n\"]}]}",
         "inputs[0].data[0] is not base64"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"aGVsbG8-\"]}]}", "inputs[0].data[0] is not base64"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"QR==\"]}]}", "inputs[0].data[0] is not base64"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[1]}]}", "inputs[0].data[0] is not a string"},
        {INPUT_HEAD "\"shape\":[2],\"data\":[\"QQ==\",null]}]}",
         "inputs[0].data[1] is not a string"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[{\"b64\":\"QQ==\"}]}]}",
         "inputs[0].data[0] is not a string"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[[[[[\"QQ==\"]]]]]}]}", "nests deeper than 4 arrays"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"QQ==\"],\"parameters\":{\"binary_data_size\":0}}]}",
         "inputs[0] has both data and parameters.binary_data_size"},
        {INPUT_HEAD "\"shape\":[1],\"data\":[\"QQ==\"],\"parameters\":1}]}",
         "inputs[0].parameters must be an object"},
        {INPUT_HEAD "\"shape\":[1],\"parameters\":{\"binary_data_size\":5}}]}",
         "binary_data_size needs the Inference-Header-Content-Length header"},
        /* outputs */
        {ONE_INPUT "],\"outputs\":{}}", "outputs must be an array"},
        {ONE_INPUT "],\"outputs\":[{\"name\":\"a\"},{\"name\":\"b\"}]}", "at most one output"},
        {ONE_INPUT "],\"outputs\":[\"o\"]}", "outputs[0] must be an object"},
        {ONE_INPUT "],\"outputs\":[{\"name\":3}]}", "outputs[0].name must be a string"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":3}]}",
         "outputs[0].parameters must be an object"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":{\"classification\":0}}]}",
         "outputs[0].parameters.classification must be an integer in 1..1000"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":{\"classification\":1001}}]}",
         "classification must be an integer in 1..1000"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":{\"classification\":-3}}]}",
         "classification must be an integer in 1..1000"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":{\"classification\":\"5\"}}]}",
         "classification must be an integer in 1..1000"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":{\"classification\":2.5}}]}",
         "classification must be an integer in 1..1000"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":{\"classification\":4294967297}}]}",
         "classification must be an integer in 1..1000"},
        {ONE_INPUT "],\"outputs\":[{\"parameters\":{\"binary_data\":1}}]}",
         "outputs[0].parameters.binary_data must be true or false"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(cases[i].body, cases[i].want);
    expect_refused_n("", 0, 0, "the body is empty");
    struct oip_infer_request none;
    assert_int_equal(oip_parse_infer(NULL, 0, 0, &none, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "the body is empty"));
    oip_infer_free(&none);

    /* ids and names too long for their buffers */
    char body[1024], name[129];
    memset(name, 'x', 128);
    name[128] = 0;
    snprintf(body, sizeof body,
             "{\"id\":\"%s\",\"inputs\":[{\"name\":\"i\",\"datatype\":\"BYTES\","
             "\"shape\":[1],\"data\":[\"QQ==\"]}]}",
             name);
    expect_refused(body, "id is longer than 127 bytes");
    name[64] = 0;
    snprintf(body, sizeof body,
             "{\"inputs\":[{\"name\":\"%s\",\"datatype\":\"BYTES\",\"shape\":[1],"
             "\"data\":[\"QQ==\"]}]}",
             name);
    expect_refused(body, "inputs[0].name is longer than 63 bytes");
    snprintf(body, sizeof body, ONE_INPUT "],\"outputs\":[{\"name\":\"%s\"}]}", name);
    expect_refused(body, "outputs[0].name is longer than 63 bytes");

    /* 65 images: the shape says too many, and so does the data */
    size_t pos = (size_t)snprintf(body, sizeof body, INPUT_HEAD "\"shape\":[64],\"data\":[");
    for (int i = 0; i < 65; i++)
        pos += (size_t)snprintf(body + pos, sizeof body - pos, "%s\"QQ==\"", i ? "," : "");
    snprintf(body + pos, sizeof body - pos, "]}]}");
    expect_refused(body, "inputs[0].data holds more than 64 images");
    memcpy(strstr(body, "[64]"), "[65]", 4);
    expect_refused(body, "at most 64 images per request");
    /* and 64 is taken */
    memcpy(strstr(body, "[65]"), "[64]", 4);
    memcpy(strstr(body, ",\"QQ==\"]}]}"), "]}]}\0", 5);
    struct oip_infer_request r;
    uint8_t *copy;
    assert_int_equal(parse(body, &r, &copy), 0);
    assert_int_equal(r.n_images, 64);
    for (size_t i = 0; i < 64; i++)
        assert_image(&r.images[i], "A");
    oip_infer_free(&r);
    free(copy);
}

static void test_infer_refusals_of_the_binary_part(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t json_len, len;
    static const char *const two[] = {"jpeg", "png!"};

    /* the header's length beyond the body */
    len = binary_body(buf, sizeof buf, "[2]", two, 2, -1, &json_len);
    expect_refused_n(buf, len, len + 1, "Inference-Header-Content-Length is");
    /* the header cutting the JSON short */
    expect_refused_n(buf, len, json_len - 1, "not valid JSON");
    /* binary_data_size not the bytes that follow, either way */
    len = binary_body(buf, sizeof buf, "[2]", two, 2, 15, &json_len);
    expect_refused_n(buf, len, json_len, "binary_data_size is 15 but 16 bytes follow the JSON");
    len = binary_body(buf, sizeof buf, "[2]", two, 2, 17, &json_len);
    expect_refused_n(buf, len, json_len, "binary_data_size is 17 but 16 bytes follow the JSON");
    expect_refused_n(buf, json_len, json_len, "binary_data_size is 17 but 0 bytes follow the JSON");
    len = binary_body(buf, sizeof buf, "[2]", two, 2, -1, &json_len);
    expect_refused_n(buf, len - 1, json_len, "but 15 bytes follow the JSON");
    /* the shape against the elements */
    len = binary_body(buf, sizeof buf, "[3]", two, 2, -1, &json_len);
    expect_refused_n(buf, len, json_len, "binary data ends after 2 of 3 images");
    len = binary_body(buf, sizeof buf, "[1]", two, 2, -1, &json_len);
    expect_refused_n(buf, len, json_len, "binary data has 8 bytes after its 1 images");
    /* an empty element, an element longer than what is left, a length cut */
    static const char *const with_empty[] = {"jpeg", ""};
    len = binary_body(buf, sizeof buf, "[2]", with_empty, 2, -1, &json_len);
    expect_refused_n(buf, len, json_len, "binary element 1 is empty");
    len = binary_body(buf, sizeof buf, "[2]", two, 2, -1, &json_len);
    buf[json_len + 8] = 5; /* the second element claims 5 bytes, 4 are left */
    expect_refused_n(buf, len, json_len, "binary element 1 says 5 bytes, 4 are left");
    buf[json_len + 8 + 3] = 0x80; /* and then 2 GiB */
    expect_refused_n(buf, len, json_len, "binary element 1 says 2147483653 bytes");
    static const char *const one[] = {"x"};
    len = binary_body(buf, sizeof buf, "[1]", one, 1, 3, &json_len);
    expect_refused_n(buf, json_len + 3, json_len, "binary data ends after 0 of 1 images");
    /* sizes that are not a byte count */
    static const char *const bad_sizes[] = {"\"5\"", "-1", "5.0", "true", "[5]"};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 INPUT_HEAD "\"shape\":[1],\"parameters\":{\"binary_data_size\":%s}}]}",
                 bad_sizes[i]);
        len = binary_raw(buf, sizeof buf, json, one, 1, &json_len);
        expect_refused_n(buf, len, json_len, "binary_data_size must be a non-negative integer");
    }
    /* bytes after the JSON when the data is in the JSON */
    char json_then_junk[256];
    int j = snprintf(json_then_junk, sizeof json_then_junk, ONE_INPUT "]}");
    memcpy(json_then_junk + j, "junk", 4);
    expect_refused_n(json_then_junk, (size_t)j + 4, (size_t)j,
                     "4 bytes follow the JSON but no input has binary_data_size");
    /* the header naming the JSON exactly with nothing after it is fine */
    struct oip_infer_request r;
    uint8_t *copy;
    assert_int_equal(parse_n(json_then_junk, (size_t)j, (size_t)j, &r, &copy), 0);
    assert_int_equal(r.n_images, 1);
    oip_infer_free(&r);
    free(copy);
}

static void test_infer_free_is_safe(void **state)
{
    (void)state;
    struct oip_infer_request r;
    memset(&r, 0, sizeof r);
    oip_infer_free(&r);
    oip_infer_free(&r);
    oip_infer_free(NULL);
    /* a failed parse after a base64 buffer was allocated: freed, zeroed */
    uint8_t *copy;
    assert_int_equal(
        parse(INPUT_HEAD "\"shape\":[2],\"data\":[\"" B64_HELLO "\",\"\"]}]}", &r, &copy),
        ID_EINVAL);
    assert_null(r.owned);
    assert_int_equal(r.n_images, 0);
    assert_string_equal(r.input_name, "");
    oip_infer_free(&r);
    free(copy);
    /* no room for a message is fine too */
    assert_int_equal(oip_parse_infer((const uint8_t *)"{}", 2, 0, &r, NULL, 0), ID_EINVAL);
    oip_infer_free(&r);
    char small[8];
    assert_int_equal(oip_parse_infer((const uint8_t *)"{}", 2, 0, &r, small, sizeof small),
                     ID_EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
    oip_infer_free(&r);
}

/* ---- tensor inputs ---------------------------------------------------------------------- */

#define TENSOR_HEAD(dt) "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"" dt "\","

static void assert_values(const struct oip_infer_request *r, const float *want, size_t n)
{
    assert_non_null(r->values);
    assert_int_equal(r->n_images * r->image_len, n);
    for (size_t i = 0; i < n; i++)
        if (r->values[i] != want[i])
            fail_msg("value %zu is %g, expected %g", i, (double)r->values[i], (double)want[i]);
}

static void test_infer_tensor_json(void **state)
{
    (void)state;
    static const float want[12] = {0, 1, -2.5f, 3, 4, 5, 6e-3f, 7, 8, 9, 10, 1e30f};
    static const char *const bodies[] = {
        /* flat */
        TENSOR_HEAD("FP32") "\"shape\":[2,1,2,3],"
                            "\"data\":[0,1,-2.5,3,4,5,6e-3,7,8,9,10,1e30]}]}",
        /* nested as the shape is */
        TENSOR_HEAD("FP32") "\"shape\":[2,1,2,3],"
                            "\"data\":[[[[0,1,-2.5],[3,4,5]]],[[[6e-3,7,8],[9,10,1e30]]]]}]}",
        /* nested unevenly, as deep as the shape at most */
        TENSOR_HEAD("FP32") "\"shape\":[2,1,2,3],"
                            "\"data\":[[0,1],[[[-2.5,3]]],4,[],[5,6e-3,[7,8,9]],10,[[1e30]]]}]}",
    };
    for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++) {
        struct oip_infer_request r;
        uint8_t *copy;
        if (parse(bodies[b], &r, &copy) != 0)
            fail_msg("body %zu refused: %s", b, err);
        assert_int_equal(r.datatype, OIP_FP32);
        assert_string_equal(r.input_name, "input");
        assert_int_equal(r.n_images, 2);
        assert_int_equal(r.rank, 4);
        assert_int_equal(r.shape[0], 2);
        assert_int_equal(r.shape[3], 3);
        assert_int_equal(r.image_dims[0], 1);
        assert_int_equal(r.image_dims[1], 2);
        assert_int_equal(r.image_dims[2], 3);
        assert_int_equal(r.image_len, 6);
        assert_null(r.owned);
        assert_values(&r, want, 12);
        oip_infer_free(&r);
        assert_null(r.values);
        free(copy);
    }

    /* [C, H, W]: one image; UINT8 values become the same floats, unscaled */
    struct oip_infer_request r;
    uint8_t *copy;
    assert_int_equal(parse(TENSOR_HEAD("UINT8") "\"shape\":[3,1,2],"
                                                "\"data\":[[[0,1]],[[128,254]],[[255,7]]]}]}",
                           &r, &copy),
                     0);
    static const float u8[6] = {0, 1, 128, 254, 255, 7};
    assert_int_equal(r.datatype, OIP_UINT8);
    assert_int_equal(r.n_images, 1);
    assert_int_equal(r.rank, 3);
    assert_int_equal(r.image_dims[0], 3);
    assert_int_equal(r.image_dims[1], 1);
    assert_int_equal(r.image_dims[2], 2);
    assert_values(&r, u8, 6);
    oip_infer_free(&r);
    free(copy);

    /* 64 images are taken, and FP32's extremes */
    assert_int_equal(
        parse(TENSOR_HEAD("FP32") "\"shape\":[64,1,1,1],\"data\":[" /* 64 values */
                                  "3.4028234e38,-3.4028234e38,1e-45,0,0,0,0,0,0,0,"
                                  "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
                                  "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
                                  "0,0]}]}",
              &r, &copy),
        0);
    assert_int_equal(r.n_images, 64);
    assert_true(r.values[0] > 3.4e38f && r.values[1] < -3.4e38f && r.values[2] > 0);
    oip_infer_free(&r);
    free(copy);
}

/* JSON of one tensor input with binary data, then the bytes. */
static size_t tensor_binary(uint8_t *buf, size_t cap, const char *dt, const char *shape,
                            const void *bytes, size_t n, long size, size_t *json_len)
{
    char json[256];
    int j = snprintf(json, sizeof json,
                     "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"%s\",\"shape\":%s,"
                     "\"parameters\":{\"binary_data_size\":%ld}}]}",
                     dt, shape, size >= 0 ? size : (long)n);
    assert_true((size_t)j + n <= cap);
    memcpy(buf, json, (size_t)j);
    memcpy(buf + j, bytes, n);
    *json_len = (size_t)j;
    return (size_t)j + n;
}

/* v as float32 little-endian, whatever the host's order. */
static void put_f32(uint8_t *dst, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int b = 0; b < 4; b++)
        dst[b] = (uint8_t)(u >> (8 * b));
}

static void test_infer_tensor_binary(void **state)
{
    (void)state;
    static const float want[4] = {0.5f, -1.25f, 3e-20f, 65504.0f};
    uint8_t bytes[16], buf[512];
    for (int i = 0; i < 4; i++)
        put_f32(bytes + 4 * i, want[i]);
    size_t json_len;
    size_t len = tensor_binary(buf, sizeof buf, "FP32", "[2,1,1,2]", bytes, 16, -1, &json_len);
    struct oip_infer_request r;
    uint8_t *copy;
    assert_int_equal(parse_n(buf, len, json_len, &r, &copy), 0);
    assert_int_equal(r.datatype, OIP_FP32);
    assert_int_equal(r.n_images, 2);
    assert_int_equal(r.image_len, 2);
    assert_values(&r, want, 4);
    oip_infer_free(&r);
    free(copy);

    static const uint8_t pixels[6] = {0, 9, 128, 200, 254, 255};
    static const float as_floats[6] = {0, 9, 128, 200, 254, 255};
    len = tensor_binary(buf, sizeof buf, "UINT8", "[1,3,2]", pixels, 6, -1, &json_len);
    assert_int_equal(parse_n(buf, len, json_len, &r, &copy), 0);
    assert_int_equal(r.datatype, OIP_UINT8);
    assert_int_equal(r.n_images, 1);
    assert_int_equal(r.image_dims[0], 1);
    assert_values(&r, as_floats, 6);
    oip_infer_free(&r);
    free(copy);
}

static void test_infer_tensor_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *body, *want;
    } cases[] = {
        /* shapes */
        {TENSOR_HEAD("FP32") "\"shape\":[3,2],\"data\":[1,2,3,4,5,6]}]}",
         "shape of a tensor must be [N, C, H, W] or [C, H, W]"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1,1,1],\"data\":[1]}]}", "shape of a tensor must be"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1.0],\"data\":[1]}]}", "shape of a tensor must be"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,\"1\",1],\"data\":[1]}]}", "shape of a tensor must be"},
        {TENSOR_HEAD("FP32") "\"data\":[1]}]}", "shape of a tensor must be"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,0,1,1],\"data\":[]}]}",
         "shape [1, 0, 1, 1]: every dim must be positive"},
        {TENSOR_HEAD("UINT8") "\"shape\":[-1,3,32,32],\"data\":[]}]}",
         "shape [-1, 3, 32, 32]: every dim must be positive"},
        {TENSOR_HEAD("FP32") "\"shape\":[65,1,1,1],\"data\":[]}]}",
         "shape [65, 1, 1, 1]: at most 64 images per request"},
        /* shapes whose count overflows size_t (and int64) many times over */
        {TENSOR_HEAD("FP32") "\"shape\":[64,4294967296,4294967296,4294967296],\"data\":[1]}]}",
         "holds more than 4194304 values"},
        {TENSOR_HEAD("FP32") "\"shape\":[9223372036854775807,9223372036854775807,"
                             "9223372036854775807],\"data\":[1]}]}",
         "holds more than 4194304 values"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,65536,65536,2],\"data\":[1]}]}",
         "holds more than 4194304 values"},
        {TENSOR_HEAD("FP32") "\"shape\":[2,3,1024,1024],\"data\":[1]}]}",
         "shape [2, 3, 1024, 1024] holds more than 4194304 values"},
        /* data against the shape */
        {TENSOR_HEAD("FP32") "\"shape\":[1,2,3],\"data\":[1,2,3,4,5]}]}",
         "shape [1, 2, 3] holds 6 values but data holds 5"},
        {TENSOR_HEAD("FP32") "\"shape\":[2,1,1,1],\"data\":[1,2,3]}]}",
         "data holds more values than its shape's 2"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1],\"data\":[]}]}", "holds 1 values but data holds 0"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1],\"data\":[[[[1]]]]}]}",
         "data nests deeper than its shape (3 arrays)"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1],\"data\":1}]}",
         "data of a tensor must be an array of numbers"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1],\"data\":{\"a\":1}}]}",
         "data of a tensor must be an array of numbers"},
        /* values against the datatype */
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,3],\"data\":[1,2,\"3\"]}]}",
         "data value 2 is not a number"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,2],\"data\":[true,2]}]}",
         "data value 0 is not a number"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,2],\"data\":[1,null]}]}",
         "data value 1 is not a number"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,2],\"data\":[1,3.5e38]}]}",
         "data value 1 is out of FP32's range"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,2],\"data\":[-1e300,0]}]}",
         "data value 0 is out of FP32's range"},
        {TENSOR_HEAD("UINT8") "\"shape\":[1,1,2],\"data\":[1,256]}]}",
         "data value 1 is not a UINT8 (an integer 0..255)"},
        {TENSOR_HEAD("UINT8") "\"shape\":[1,1,2],\"data\":[-1,2]}]}",
         "data value 0 is not a UINT8"},
        {TENSOR_HEAD("UINT8") "\"shape\":[1,1,2],\"data\":[1,2.5]}]}",
         "data value 1 is not a UINT8"},
        {TENSOR_HEAD("UINT8") "\"shape\":[1,1,2],\"data\":[1,\"QQ==\"]}]}",
         "data value 1 is not a UINT8"},
        /* the other datatypes, and BYTES' data in a tensor */
        {TENSOR_HEAD("INT64") "\"shape\":[1,1,1],\"data\":[1]}]}",
         "datatype INT64 is not taken: send FP32 or UINT8"},
        {TENSOR_HEAD("FP64") "\"shape\":[1,1,1],\"data\":[1]}]}",
         "datatype FP64 is not taken: send FP32 or UINT8"},
        {TENSOR_HEAD("fp32") "\"shape\":[1,1,1],\"data\":[1]}]}",
         "datatype is not a datatype of the protocol"},
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1],\"data\":[\"" B64_A "\"]}]}",
         "data value 0 is not a number"},
        /* a tensor and images in one request: two inputs */
        {TENSOR_HEAD("FP32") "\"shape\":[1,1,1],\"data\":[1]},"
                             "{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],"
                             "\"data\":[\"" B64_A "\"]}]}",
         "exactly one input"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(cases[i].body, cases[i].want);

    /* the binary part against the shape and datatype */
    uint8_t bytes[64] = {0}, buf[512];
    size_t json_len, len;
    len = tensor_binary(buf, sizeof buf, "FP32", "[1,1,2,2]", bytes, 15, -1, &json_len);
    expect_refused_n(buf, len, json_len,
                     "binary data has 15 bytes but shape [1, 1, 2, 2] of FP32 needs 16");
    len = tensor_binary(buf, sizeof buf, "FP32", "[1,2,2]", bytes, 17, -1, &json_len);
    expect_refused_n(buf, len, json_len, "has 17 bytes but shape [1, 2, 2] of FP32 needs 16");
    len = tensor_binary(buf, sizeof buf, "UINT8", "[1,2,2]", bytes, 16, -1, &json_len);
    expect_refused_n(buf, len, json_len, "has 16 bytes but shape [1, 2, 2] of UINT8 needs 4");
    /* binary_data_size beyond the body, or short of it */
    len = tensor_binary(buf, sizeof buf, "FP32", "[1,2,2]", bytes, 16, 20, &json_len);
    expect_refused_n(buf, len, json_len, "binary_data_size is 20 but 16 bytes follow the JSON");
    len = tensor_binary(buf, sizeof buf, "FP32", "[1,2,2]", bytes, 16, 4, &json_len);
    expect_refused_n(buf, len, json_len, "binary_data_size is 4 but 16 bytes follow the JSON");
    /* a huge shape with a few bytes: refused before anything is allocated */
    len = tensor_binary(buf, sizeof buf, "FP32", "[64,4294967295,4294967295,4294967295]", bytes, 16,
                        -1, &json_len);
    expect_refused_n(buf, len, json_len, "holds more than 4194304 values");
    /* values that are not finite */
    put_f32(bytes + 4, __builtin_nanf(""));
    len = tensor_binary(buf, sizeof buf, "FP32", "[1,2,2]", bytes, 16, -1, &json_len);
    expect_refused_n(buf, len, json_len, "binary value 1 is not a finite number");
    put_f32(bytes + 4, 0);
    put_f32(bytes + 12, -__builtin_inff());
    len = tensor_binary(buf, sizeof buf, "FP32", "[1,2,2]", bytes, 16, -1, &json_len);
    expect_refused_n(buf, len, json_len, "binary value 3 is not a finite number");
    /* the same bytes as UINT8 are any values */
    struct oip_infer_request r;
    uint8_t *copy;
    len = tensor_binary(buf, sizeof buf, "UINT8", "[4,1,2,2]", bytes, 16, -1, &json_len);
    assert_int_equal(parse_n(buf, len, json_len, &r, &copy), 0);
    assert_int_equal(r.n_images, 4);
    assert_true(r.values[15] == (float)bytes[15]);
    oip_infer_free(&r);
    free(copy);
}

/* ---- answers ---------------------------------------------------------------------------- */

static json_t *parse_back(const struct strbuf *sb)
{
    assert_int_equal(strbuf_failed(sb), 0);
    json_error_t je;
    json_t *root = json_loads(strbuf_str(sb), JSON_REJECT_DUPLICATES, &je);
    if (!root)
        fail_msg("not JSON (%s): %s", je.text, strbuf_str(sb));
    assert_true(json_is_object(root));
    return root;
}

static const char *str_at(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void assert_shape(json_t *output, json_int_t rows, json_int_t cols)
{
    json_t *shape = json_object_get(output, "shape");
    assert_int_equal(json_array_size(shape), 2);
    assert_true(json_is_integer(json_array_get(shape, 0)));
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), rows);
    assert_int_equal(json_integer_value(json_array_get(shape, 1)), cols);
}

static void assert_data_strings(json_t *output, const char *const *want, size_t n)
{
    json_t *data = json_object_get(output, "data");
    assert_int_equal(json_array_size(data), n);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(data, i);
        assert_true(json_is_string(s));
        assert_string_equal(json_string_value(s), want[i]);
    }
}

static json_t *only_output(json_t *root)
{
    json_t *outputs = json_object_get(root, "outputs");
    assert_int_equal(json_array_size(outputs), 1);
    json_t *o = json_array_get(outputs, 0);
    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), 4); /* name, datatype, shape, data */
    return o;
}

static void test_response_classified(void **state)
{
    (void)state;
    static const uint32_t classes0[] = {281, 285, 7}, classes1[] = {0, 999, 3};
    static const float probs0[] = {0.9f, 0.123456789f, 1e-7f}, probs1[] = {1.0f, 0.5f, 0.25f};
    static const char *const labels0[] = {"tabby cat", "Egyptian \"cat\"", "a\\b"};
    static const char *const labels1[] = {"", NULL, "x"};
    struct oip_result res[2] = {
        {.k = 3, .classes = classes0, .probs = probs0, .labels = labels0},
        {.k = 3, .classes = classes1, .probs = probs1, .labels = labels1},
    };
    struct strbuf sb = STRBUF_INIT;
    assert_int_equal(oip_infer_response(&sb, "resnet50", 7, "req-1", "probs", 0, res, 2), 0);
    json_t *root = parse_back(&sb);
    assert_int_equal(json_object_size(root), 4);
    assert_string_equal(str_at(root, "model_name"), "resnet50");
    assert_string_equal(str_at(root, "model_version"), "7");
    assert_string_equal(str_at(root, "id"), "req-1");
    json_t *o = only_output(root);
    assert_string_equal(str_at(o, "name"), "probs");
    assert_string_equal(str_at(o, "datatype"), "BYTES");
    assert_shape(o, 2, 3);
    static const char *const all[] = {
        "0.9:281:tabby cat", "0.123457:285:Egyptian \"cat\"", "1e-07:7:a\\b", "1:0", "0.5:999",
        "0.25:3:x",
    };
    assert_data_strings(o, all, 6);
    json_decref(root);

    /* k from the request bounds the rows; no id, no output name, the
     * largest version */
    strbuf_reset(&sb);
    assert_int_equal(oip_infer_response(&sb, "m", UINT32_MAX, "", NULL, 2, res, 2), 0);
    root = parse_back(&sb);
    assert_null(json_object_get(root, "id"));
    assert_string_equal(str_at(root, "model_version"), "4294967295");
    o = only_output(root);
    assert_string_equal(str_at(o, "name"), "classification");
    assert_shape(o, 2, 2);
    static const char *const top2[] = {"0.9:281:tabby cat", "0.123457:285:Egyptian \"cat\"", "1:0",
                                       "0.5:999"};
    assert_data_strings(o, top2, 4);
    json_decref(root);

    /* results of different k: every row cut to the smallest; no labels at
     * all; a classification above every k bounds nothing */
    res[0].k = 1;
    res[1].labels = NULL;
    strbuf_reset(&sb);
    assert_int_equal(oip_infer_response(&sb, "m", 1, NULL, "", 50, res, 2), 0);
    root = parse_back(&sb);
    assert_null(json_object_get(root, "id"));
    o = only_output(root);
    assert_string_equal(str_at(o, "name"), "classification");
    assert_shape(o, 2, 1);
    static const char *const top1[] = {"0.9:281:tabby cat", "1:0"};
    assert_data_strings(o, top1, 2);
    json_decref(root);

    /* no results: an empty answer that is still one */
    strbuf_reset(&sb);
    assert_int_equal(oip_infer_response(&sb, "m", 1, NULL, NULL, 5, NULL, 0), 0);
    root = parse_back(&sb);
    o = only_output(root);
    assert_shape(o, 0, 5);
    assert_int_equal(json_array_size(json_object_get(o, "data")), 0);
    json_decref(root);

    /* names that need escaping come back as they went */
    strbuf_reset(&sb);
    assert_int_equal(oip_infer_response(&sb, "m\"\n", 2, "id\\\"\t", "o\x01", 0, res, 1), 0);
    root = parse_back(&sb);
    assert_string_equal(str_at(root, "model_name"), "m\"\n");
    assert_string_equal(str_at(root, "id"), "id\\\"\t");
    assert_string_equal(str_at(only_output(root), "name"), "o\x01");
    json_decref(root);
    strbuf_free(&sb);
}

static void test_response_raw_and_mixed(void **state)
{
    (void)state;
    static const float v0[] = {1.5f, -2.25f, 1e10f}, v1[] = {0.1f, 3.0f};
    struct oip_result res[2] = {
        {.n_values = 3, .values = v0},
        {.n_values = 2, .values = v1},
    };
    struct strbuf sb = STRBUF_INIT;
    assert_int_equal(oip_infer_response(&sb, "regress", 3, "r", NULL, 0, res, 2), 0);
    json_t *root = parse_back(&sb);
    assert_string_equal(str_at(root, "model_version"), "3");
    json_t *o = only_output(root);
    assert_string_equal(str_at(o, "datatype"), "FP32");
    assert_shape(o, 2, 2);
    json_t *data = json_object_get(o, "data");
    assert_int_equal(json_array_size(data), 4);
    static const double want[] = {1.5, -2.25, 0.1, 3.0};
    for (size_t i = 0; i < 4; i++) {
        json_t *x = json_array_get(data, i);
        assert_true(json_is_number(x));
        assert_float_equal(json_number_value(x), want[i], 1e-6);
    }
    json_decref(root);

    /* raw and classified in one answer: refused, and nothing written */
    static const uint32_t classes[] = {1};
    static const float probs[] = {0.5f};
    struct oip_result mixed[2] = {
        {.k = 1, .classes = classes, .probs = probs},
        {.n_values = 2, .values = v1},
    };
    strbuf_reset(&sb);
    strbuf_puts(&sb, "before");
    assert_int_equal(oip_infer_response(&sb, "m", 1, NULL, NULL, 0, mixed, 2), ID_EINVAL);
    assert_string_equal(strbuf_str(&sb), "before");
    struct oip_result mixed_other_way[2] = {mixed[1], mixed[0]};
    assert_int_equal(oip_infer_response(&sb, "m", 1, NULL, NULL, 0, mixed_other_way, 2), ID_EINVAL);
    assert_string_equal(strbuf_str(&sb), "before");
    /* results whose arrays are missing are refused too */
    struct oip_result no_probs = {.k = 1, .classes = classes};
    assert_int_equal(oip_infer_response(&sb, "m", 1, NULL, NULL, 0, &no_probs, 1), ID_EINVAL);
    struct oip_result no_values = {.n_values = 1};
    assert_int_equal(oip_infer_response(&sb, "m", 1, NULL, NULL, 0, &no_values, 1), ID_EINVAL);
    assert_string_equal(strbuf_str(&sb), "before");
    strbuf_free(&sb);
}

static void test_error_escapes(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    const char *msg = "inputs[0].name \"x\\y\"\nbad\x01 \xff end";
    oip_error(&sb, msg);
    json_t *root = parse_back(&sb);
    assert_int_equal(json_object_size(root), 1);
    assert_string_equal(str_at(root, "error"),
                        "inputs[0].name \"x\\y\"\nbad\x01 \xef\xbf\xbd end"); /* U+FFFD */
    json_decref(root);
    strbuf_reset(&sb);
    oip_error(&sb, NULL);
    root = parse_back(&sb);
    assert_string_equal(str_at(root, "error"), "");
    json_decref(root);
    strbuf_free(&sb);
}

static void test_metadata(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    oip_server_metadata(&sb, "1.2.3");
    json_t *root = parse_back(&sb);
    assert_int_equal(json_object_size(root), 3);
    assert_string_equal(str_at(root, "name"), "idunno");
    assert_string_equal(str_at(root, "version"), "1.2.3");
    json_t *ext = json_object_get(root, "extensions");
    static const char *const extensions[] = {"classification", "binary_tensor_data",
                                             "idunno_image_bytes"};
    assert_int_equal(json_array_size(ext), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_array_get(ext, i)), extensions[i]);
    json_decref(root);

    static const uint32_t versions[] = {1, 3, UINT32_MAX};
    struct oip_model_meta m = {.name = "resnet50",
                               .versions = versions,
                               .n_versions = 3,
                               .classes = 1000,
                               .output = "probs"};
    strbuf_reset(&sb);
    oip_model_metadata(&sb, &m);
    root = parse_back(&sb);
    assert_int_equal(json_object_size(root), 5);
    assert_string_equal(str_at(root, "name"), "resnet50");
    assert_string_equal(str_at(root, "platform"), "onnxruntime_onnx");
    json_t *v = json_object_get(root, "versions");
    assert_int_equal(json_array_size(v), 3);
    assert_string_equal(json_string_value(json_array_get(v, 0)), "1");
    assert_string_equal(json_string_value(json_array_get(v, 1)), "3");
    assert_string_equal(json_string_value(json_array_get(v, 2)), "4294967295");
    json_t *inputs = json_object_get(root, "inputs");
    assert_int_equal(json_array_size(inputs), 1);
    json_t *in = json_array_get(inputs, 0);
    assert_string_equal(str_at(in, "name"), "image");
    assert_string_equal(str_at(in, "datatype"), "BYTES");
    json_t *shape = json_object_get(in, "shape");
    assert_int_equal(json_array_size(shape), 1);
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), -1);
    json_t *outputs = json_object_get(root, "outputs");
    assert_int_equal(json_array_size(outputs), 1);
    json_t *out = json_array_get(outputs, 0);
    assert_string_equal(str_at(out, "name"), "probs");
    assert_string_equal(str_at(out, "datatype"), "FP32");
    assert_shape(out, -1, 1000);
    json_decref(root);

    /* the input's shape known: the tensor input is listed after the images */
    m.input[0] = 3;
    m.input[1] = 224;
    m.input[2] = 200;
    strbuf_reset(&sb);
    oip_model_metadata(&sb, &m);
    root = parse_back(&sb);
    inputs = json_object_get(root, "inputs");
    assert_int_equal(json_array_size(inputs), 2);
    in = json_array_get(inputs, 1);
    assert_string_equal(str_at(in, "name"), "input");
    assert_string_equal(str_at(in, "datatype"), "FP32");
    shape = json_object_get(in, "shape");
    assert_int_equal(json_array_size(shape), 4);
    static const int64_t want[] = {-1, 3, 224, 200};
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(json_integer_value(json_array_get(shape, k)), want[k]);
    json_decref(root);

    /* unknown width, no output name, no versions kept */
    struct oip_model_meta bare = {.name = "m\"q", .raw = 1};
    strbuf_reset(&sb);
    oip_model_metadata(&sb, &bare);
    root = parse_back(&sb);
    assert_string_equal(str_at(root, "name"), "m\"q");
    assert_int_equal(json_array_size(json_object_get(root, "versions")), 0);
    out = json_array_get(json_object_get(root, "outputs"), 0);
    assert_string_equal(str_at(out, "name"), "output");
    assert_shape(out, -1, -1);
    json_decref(root);
    bare.output = "";
    strbuf_reset(&sb);
    oip_model_metadata(&sb, &bare);
    root = parse_back(&sb);
    out = json_array_get(json_object_get(root, "outputs"), 0);
    assert_string_equal(str_at(out, "name"), "output");
    json_decref(root);
    strbuf_free(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_that_name_endpoints),
        cmocka_unit_test(test_paths_that_are_not_found_or_not_ours),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_infer_json_flat_and_nested),
        cmocka_unit_test(test_infer_id_classification_output_name),
        cmocka_unit_test(test_infer_binary_extension),
        cmocka_unit_test(test_infer_refusals_of_the_json),
        cmocka_unit_test(test_infer_refusals_of_the_binary_part),
        cmocka_unit_test(test_infer_free_is_safe),
        cmocka_unit_test(test_infer_tensor_json),
        cmocka_unit_test(test_infer_tensor_binary),
        cmocka_unit_test(test_infer_tensor_refusals),
        cmocka_unit_test(test_response_classified),
        cmocka_unit_test(test_response_raw_and_mixed),
        cmocka_unit_test(test_error_escapes),
        cmocka_unit_test(test_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
