/* test_card.c — the model card (src/infer/card.c): parsing from JSON, flags
 * and metadata, every refusal naming its field, the merge order, resolving
 * against declared shapes, JSON round trips, post-processing per output kind,
 * and the dynamic-H/W two-class Softmax model (tools/gen_models.py
 * tiny_dyn_softmax) run end to end through ONNX Runtime. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <png.h>

#include "base/err.h"
#include "infer/card.h"
#include "infer/infer.h"

static char model_dir[512];
static char tmp_dir[64];

static const char *tmp_path(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", tmp_dir, name);
    return p;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/idunno-card-XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The io of a model: input dims, one output per (name, width) pair. */
static struct infer_io io_of(int64_t n, int64_t a, int64_t b, int64_t c, int64_t classes)
{
    struct infer_io io = {0};
    snprintf(io.input.name, sizeof io.input.name, "x");
    io.input.rank = 4;
    io.input.is_float = 1;
    int64_t d[4] = {n, a, b, c};
    memcpy(io.input.dims, d, sizeof d);
    io.n_outputs = 2;
    snprintf(io.outputs[0].name, sizeof io.outputs[0].name, "probs");
    io.outputs[0].rank = 2;
    io.outputs[0].is_float = 1;
    io.outputs[0].dims[0] = -1;
    io.outputs[0].dims[1] = classes;
    snprintf(io.outputs[1].name, sizeof io.outputs[1].name, "features");
    io.outputs[1].rank = 2;
    io.outputs[1].is_float = 1;
    io.outputs[1].dims[0] = -1;
    io.outputs[1].dims[1] = 3;
    return io;
}

static void parse_ok(const char *json, struct model_card *c)
{
    char err[256] = "";
    int rc = card_parse_json(json, strlen(json), tmp_dir, c, err, sizeof err);
    if (rc)
        fail_msg("%s: %s", json, err);
}

/* ---- parsing ---------------------------------------------------------------------------- */

static void test_parse_full_card_and_round_trip(void **state)
{
    (void)state;
    const char *json = "{\"size\":\"48x192\",\"layout\":\"nhwc\",\"channels\":\"bgr\","
                       "\"scale\":255,\"mean\":[127.5,127.5,127.5],\"std\":[127.5,127.5,127.5],"
                       "\"resize\":\"pad\",\"resize_side\":60,\"pad_value\":114,"
                       "\"output\":\"probabilities\",\"output_name\":\"probs\",\"top_k\":2,"
                       "\"labels\":[\"cat\",\"dog\"]}";
    struct model_card c, back;
    parse_ok(json, &c);
    assert_int_equal(c.given, CARD_F_ALL);
    assert_int_equal(c.height, 48);
    assert_int_equal(c.width, 192);
    assert_int_equal(c.layout, CARD_NHWC);
    assert_int_equal(c.channels, CARD_BGR);
    assert_int_equal(c.scale, 255);
    assert_int_equal(c.n_mean, 3);
    assert_float_equal(c.std[2], 127.5, 0);
    assert_int_equal(c.resize, CARD_PAD);
    assert_int_equal(c.resize_side, 60);
    assert_int_equal(c.pad_value, 114);
    assert_int_equal(c.output, CARD_PROBABILITIES);
    assert_string_equal(c.output_name, "probs");
    assert_int_equal(c.top_k, 2);
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.labels[1], "dog");
    /* serialised and parsed back: the same card, and the same text again */
    char *text = card_to_json(&c);
    assert_non_null(text);
    assert_string_equal(text, json);
    parse_ok(text, &back);
    assert_true(card_equal(&c, &back));
    char *again = card_to_json(&back);
    assert_string_equal(text, again);
    free(text);
    free(again);
    card_free(&back);
    /* floats that have no short decimal form survive too */
    assert_int_equal(card_set(&c, "mean", "0.485,0.456,0.406", NULL, 0), 0);
    assert_int_equal(card_set(&c, "std", "0.1,0.2,0.3333333", NULL, 0), 0);
    text = card_to_json(&c);
    parse_ok(text, &back);
    assert_true(card_equal(&c, &back));
    free(text);
    card_free(&back);
    card_free(&c);
    /* a partial card gives only what it says */
    parse_ok("{\"resize\":\"stretch\"}", &c);
    assert_int_equal(c.given, CARD_F_RESIZE);
    text = card_to_json(&c);
    assert_string_equal(text, "{\"resize\":\"stretch\"}");
    free(text);
    card_free(&c);
}

struct refusal {
    const char *json;
    const char *field; /* the message starts with "field:" */
};

static void test_parse_refusals_name_the_field(void **state)
{
    (void)state;
    static const struct refusal bad[] = {
        {"{\"colour\":\"rgb\"}", "colour"},
        {"{\"size\":\"48\"}", "size"},
        {"{\"size\":\"48x\"}", "size"},
        {"{\"size\":\"0x4\"}", "size"},
        {"{\"size\":\"48x99999\"}", "size"},
        {"{\"size\":[48,192]}", "size"},
        {"{\"layout\":\"nhcw\"}", "layout"},
        {"{\"channels\":\"rgba\"}", "channels"},
        {"{\"scale\":2}", "scale"},
        {"{\"scale\":\"255\"}", "scale"},
        {"{\"scale\":1.5}", "scale"},
        {"{\"mean\":[0.5,0.5]}", "mean"},
        {"{\"mean\":\"0.5,0.5,0.5\"}", "mean"},
        {"{\"mean\":[0.5,\"x\",0.5]}", "mean"},
        {"{\"mean\":[]}", "mean"},
        {"{\"std\":[0.5,0,0.5]}", "std"},
        {"{\"std\":[-1]}", "std"},
        {"{\"resize\":\"zoom\"}", "resize"},
        {"{\"resize_side\":0}", "resize_side"},
        {"{\"pad_value\":256}", "pad_value"},
        {"{\"pad_value\":-1}", "pad_value"},
        {"{\"output\":\"softmax\"}", "output"},
        {"{\"output_name\":\"\"}", "output_name"},
        {"{\"top_k\":0}", "top_k"},
        {"{\"top_k\":65}", "top_k"},
        {"{\"labels\":\"cat,dog\"}", "labels"},
        {"{\"labels\":[]}", "labels"},
        {"{\"labels\":[\"cat\",\"\"]}", "labels"},
        {"{\"labels\":[\"cat\",3]}", "labels"},
        {"{\"labels\":[\"c\\u0000t\"]}", "card"}, /* jansson refuses NUL */
        {"{\"labels\":[\"a\\nb\"]}", "labels"},
        {"{\"labels\":[\"a\"],\"labels_file\":\"l.txt\"}", "labels"},
        {"{\"labels_file\":\"no-such-file.txt\"}", "labels"},
        {"{\"labels_file\":7}", "labels_file"},
        {"{\"top_k\":2,\"top_k\":3}", "card"},
        {"[1,2]", "card"},
        {"{\"size\":\"48x192\"", "card"},
        {"", "card"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct model_card c = {0};
        char err[256] = "";
        int rc = card_parse_json(bad[i].json, strlen(bad[i].json), tmp_dir, &c, err, sizeof err);
        if (rc != ID_EINVAL)
            fail_msg("%s: accepted", bad[i].json);
        size_t fl = strlen(bad[i].field);
        if (strncmp(err, bad[i].field, fl) != 0 || err[fl] != ':')
            fail_msg("%s: '%s' does not name %s", bad[i].json, err, bad[i].field);
    }
    /* labels_file needs a folder to be relative to */
    struct model_card c = {0};
    char err[256];
    const char *j = "{\"labels_file\":\"l.txt\"}";
    assert_int_equal(card_parse_json(j, strlen(j), NULL, &c, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "labels_file:"));
}

static void test_flags_and_their_refusals(void **state)
{
    (void)state;
    struct model_card c = {0};
    char err[256];
    static const char *const good[][2] = {
        {"size", "48x192"},
        {"resize", "stretch"},
        {"mean", "0.5,0.5,0.5"},
        {"std", "0.5"},
        {"output", "probabilities"},
        {"layout", "nhwc"},
        {"channels", "bgr"},
        {"scale", "255"},
        {"top-k", "3"},
        {"pad-value", "0"},
        {"output-name", "probs"},
        {"resize-side", "64"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (card_set(&c, good[i][0], good[i][1], err, sizeof err))
            fail_msg("--%s %s: %s", good[i][0], good[i][1], err);
    assert_int_equal(c.given, CARD_F_ALL & ~CARD_F_LABELS);
    assert_int_equal(c.n_std, 1);
    static const char *const bad[][3] = {
        {"size", "48*192", "size"},
        {"size", "x192", "size"},
        {"size", "48x192 ", "size"},
        {"size", "64x0", "size"},
        {"size", "+48x192", "size"},
        {"mean", "0.5,,0.5", "mean"},
        {"mean", "0.5,0.5,0.5,", "mean"},
        {"mean", "abc", "mean"},
        {"mean", "nan,0,0", "mean"},
        {"mean", "1,2", "mean"},
        {"std", "0.5,0,0.5", "std"},
        {"std", "inf", "std"},
        {"scale", "2", "scale"},
        {"scale", "", "scale"},
        {"top-k", "0", "top_k"},
        {"top-k", "3x", "top_k"},
        {"pad-value", "1000", "pad_value"},
        {"resize", "Crop", "resize"},
        {"output", "", "output"},
        {"layout", "NCHW", "layout"},
        {"channels", "grey", "channels"},
        {"labels", "/nonexistent/l.txt", "labels"},
        {"colour", "red", "colour"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct model_card before;
        assert_int_equal(card_copy(&before, &c), 0);
        if (card_set(&c, bad[i][0], bad[i][1], err, sizeof err) != ID_EINVAL)
            fail_msg("--%s '%s': accepted", bad[i][0], bad[i][1]);
        size_t fl = strlen(bad[i][2]);
        if (strncmp(err, bad[i][2], fl) != 0 || err[fl] != ':')
            fail_msg("--%s '%s': '%s' does not name %s", bad[i][0], bad[i][1], err, bad[i][2]);
        /* a refused flag changes nothing */
        assert_true(card_equal(&c, &before));
        card_free(&before);
    }
    card_free(&c);
}

static void test_labels_file(void **state)
{
    (void)state;
    struct model_card c = {0};
    char err[256];
    write_file(tmp_path("crlf.txt"), "cat\r\ndog\r\n");
    assert_int_equal(card_load_labels(&c, tmp_path("crlf.txt"), err, sizeof err), 0);
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.labels[0], "cat");
    assert_string_equal(c.labels[1], "dog");
    write_file(tmp_path("nofinal.txt"), "a b\nc");
    assert_int_equal(card_load_labels(&c, tmp_path("nofinal.txt"), err, sizeof err), 0);
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.labels[0], "a b");
    write_file(tmp_path("gap.txt"), "a\n\nb\n");
    assert_int_equal(card_load_labels(&c, tmp_path("gap.txt"), err, sizeof err), ID_EINVAL);
    assert_string_equal(err, "labels: label 2 is empty");
    write_file(tmp_path("empty.txt"), "");
    assert_int_equal(card_load_labels(&c, tmp_path("empty.txt"), err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "labels:"));
    /* the refused files left the last good labels */
    assert_int_equal(c.n_labels, 2);
    card_free(&c);
    /* a card file's labels_file is relative to the card's folder */
    write_file(tmp_path("l.txt"), "yes\nno\n");
    write_file(tmp_path("card.json"), "{\"labels_file\":\"l.txt\",\"size\":\"4x8\"}");
    assert_int_equal(card_load_file(tmp_path("card.json"), &c, err, sizeof err), 0);
    assert_int_equal(c.n_labels, 2);
    assert_string_equal(c.labels[1], "no");
    card_free(&c);
    assert_int_equal(card_load_file(tmp_path("none.json"), &c, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "card:"));
}

static void test_metadata_is_refused_when_malformed(void **state)
{
    (void)state;
    struct model_card c = {0};
    char err[256];
    assert_int_equal(card_from_metadata(&c, "idunno.mean", "0.5,0.4,0.3", err, sizeof err), 0);
    assert_int_equal(card_from_metadata(&c, "idunno.std", "0.2,0.2,0.2", err, sizeof err), 0);
    assert_int_equal(card_from_metadata(&c, "idunno.input_size", "224", err, sizeof err), 0);
    assert_int_equal(card_from_metadata(&c, "idunno.resize", "256", err, sizeof err), 0);
    assert_int_equal(card_from_metadata(&c, "idunno.name", "anything", err, sizeof err), 0);
    assert_int_equal(c.given, CARD_F_MEAN | CARD_F_STD | CARD_F_SIZE | CARD_F_RESIZE_SIDE);
    assert_int_equal(c.width, 224);
    /* today's silent fallback to ImageNet's statistics is a refusal now */
    assert_int_equal(card_from_metadata(&c, "idunno.mean", "0.5;0.4;0.3", err, sizeof err),
                     ID_EINVAL);
    assert_string_equal(err, "mean: the model's metadata idunno.mean '0.5;0.4;0.3' is malformed");
    assert_float_equal(c.mean[0], 0.5, 1e-7);
    assert_int_equal(card_from_metadata(&c, "idunno.std", "0.2,0,0.2", err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "std:"));
    assert_int_equal(card_from_metadata(&c, "idunno.input_size", "big", err, sizeof err),
                     ID_EINVAL);
    assert_non_null(strstr(err, "size:"));
    assert_int_equal(card_from_metadata(&c, "idunno.resize", "-3", err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "resize_side:"));
    card_free(&c);
}

/* ---- merging and resolving -------------------------------------------------------------- */

static void test_merge_order(void **state)
{
    (void)state;
    char err[256];
    struct model_card meta = {0}, file = {0}, flags = {0};
    assert_int_equal(card_from_metadata(&meta, "idunno.mean", "0.1,0.1,0.1", err, sizeof err), 0);
    assert_int_equal(card_from_metadata(&meta, "idunno.resize", "40", err, sizeof err), 0);
    parse_ok("{\"mean\":[0.2,0.2,0.2],\"resize\":\"stretch\",\"top_k\":1}", &file);
    assert_int_equal(card_set(&flags, "mean", "0.3,0.3,0.3", err, sizeof err), 0);
    /* a model fixed at 32 x 32, 10 classes */
    struct infer_io io = io_of(-1, 3, 32, 32, 10);
    int out, classes;
    struct {
        int use_file, use_flags;
        float mean;
        enum card_resize resize;
        int top_k;
    } cases[] = {
        {1, 1, 0.3f, CARD_STRETCH, 1}, /* flags > file > metadata */
        {1, 0, 0.2f, CARD_STRETCH, 1}, /* file > metadata */
        {0, 0, 0.1f, CARD_CROP, 5},    /* metadata > defaults */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct model_card c;
        assert_int_equal(card_copy(&c, &meta), 0);
        if (cases[i].use_file)
            assert_int_equal(card_merge(&c, &file), 0);
        if (cases[i].use_flags)
            assert_int_equal(card_merge(&c, &flags), 0);
        assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), 0);
        assert_float_equal(c.mean[1], cases[i].mean, 1e-7);
        assert_int_equal(c.resize, cases[i].resize);
        assert_int_equal(c.top_k, cases[i].top_k);
        /* the shapes give the size; the metadata the crop side */
        assert_int_equal(c.height, 32);
        assert_int_equal(c.width, 32);
        assert_int_equal(c.resize_side, 40);
        /* and the defaults the rest */
        assert_float_equal(c.std[0], 0.229, 1e-7);
        assert_int_equal(c.layout, CARD_NCHW);
        assert_int_equal(c.channels, CARD_RGB);
        assert_int_equal(c.scale, 1);
        assert_int_equal(c.output, CARD_LOGITS);
        assert_string_equal(c.output_name, "probs");
        assert_int_equal(out, 0);
        assert_int_equal(classes, 10);
        card_free(&c);
    }
    /* nothing given at all: the defaults, and today's crop side 8/7 */
    struct model_card c = {0};
    assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), 0);
    assert_int_equal(c.resize_side, 37);
    assert_float_equal(c.mean[0], 0.485, 1e-7);
    assert_int_equal(c.given, CARD_F_ALL & ~CARD_F_LABELS);
    card_free(&c);
    card_free(&meta);
    card_free(&file);
    card_free(&flags);
}

static void test_resolve_from_shapes(void **state)
{
    (void)state;
    char err[256];
    int out, classes;
    /* channels last: NHWC, taken from the shape */
    struct model_card c = {0};
    struct infer_io io = io_of(1, 20, 30, 3, 2);
    assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), 0);
    assert_int_equal(c.layout, CARD_NHWC);
    assert_int_equal(c.height, 20);
    assert_int_equal(c.width, 30);
    assert_int_equal(c.top_k, 2); /* min(5, classes) */
    card_free(&c);
    /* one channel: gray, with one mean and one std */
    io = io_of(-1, 1, 8, 8, 10);
    assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), 0);
    assert_int_equal(c.channels, CARD_GRAY);
    assert_int_equal(c.n_mean, 1);
    assert_int_equal(c.n_std, 1);
    card_free(&c);
    /* scale 255: the default statistics in 0..255 units */
    io = io_of(-1, 3, 8, 8, 10);
    assert_int_equal(card_set(&c, "scale", "255", err, sizeof err), 0);
    assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), 0);
    assert_float_equal(c.mean[0], 0.485 * 255, 1e-4);
    card_free(&c);
    /* dynamic H and W take the card's size; the other output by name; raw */
    io = io_of(-1, 3, -1, -1, 2);
    assert_int_equal(card_set(&c, "size", "48x192", err, sizeof err), 0);
    assert_int_equal(card_set(&c, "output-name", "features", err, sizeof err), 0);
    assert_int_equal(card_set(&c, "output", "raw", err, sizeof err), 0);
    assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), 0);
    assert_int_equal(out, 1);
    assert_int_equal(classes, 3);
    assert_int_equal(c.top_k, 3);
    assert_int_equal(c.resize_side, 55);
    /* a resolved card serialises and parses back equal */
    char *text = card_to_json(&c);
    struct model_card back;
    parse_ok(text, &back);
    assert_true(card_equal(&c, &back));
    free(text);
    card_free(&back);
    card_free(&c);
}

struct model_refusal {
    const char *flags[4][2];
    int64_t dims[4];
    int64_t classes;
    const char *message; /* exactly */
};

static void test_resolve_refusals_name_the_field(void **state)
{
    (void)state;
    static const struct model_refusal bad[] = {
        {{{"channels", "gray"}},
         {-1, 3, 32, 32},
         10,
         "channels: the card says gray (1 channel) but the model's nchw input has 3"},
        {{{NULL}},
         {-1, 4, 32, 32},
         10,
         "channels: the model's nchw input has 4 channels; 1 or 3 are supported"},
        {{{"size", "48x192"}},
         {-1, 3, 32, 32},
         10,
         "size: the card says 48x192 but the model's input is 32 x 32"},
        {{{"size", "48x192"}}, {-1, 3, 48, -1}, 10, NULL}, /* fits: H fixed, W dynamic */
        {{{"size", "32x192"}},
         {-1, 3, 48, -1},
         10,
         "size: the card says 32x192 but the model's input is 48 x dynamic"},
        {{{NULL}},
         {-1, 3, -1, -1},
         2,
         "size: the model's input is dynamic x dynamic; give the size (--size HxW, or \"size\" in "
         "the card)"},
        {{{"labels", "three"}},
         {-1, 3, 32, 32},
         2,
         "labels: 3 labels, but the model has 2 classes"},
        {{{"top-k", "3"}}, {-1, 3, 32, 32}, 2, "top_k: 3, but the model has 2 classes"},
        {{{"output-name", "nope"}},
         {-1, 3, 32, 32},
         2,
         "output_name: the model has no output 'nope' (it has probs, features)"},
        {{{"output", "raw"}, {"top-k", "1"}},
         {-1, 3, 32, 32},
         2,
         "top_k: raw output has no top-k (every value is the result)"},
        {{{"output", "raw"}},
         {-1, 3, 32, 32},
         1000,
         "output: raw output of 1000 values; at most 64 are supported"},
        {{{"mean", "0.5"}}, {-1, 3, 32, 32}, 2, "mean: 1 value for a 3-channel input"},
        {{{"channels", "gray"}, {"std", "0.5,0.5,0.5"}},
         {-1, 1, 32, 32},
         2,
         "std: 3 values for a 1-channel input"},
        {{{"layout", "nhwc"}},
         {-1, 3, 32, 32},
         2,
         "channels: the model's nhwc input has 32 channels; 1 or 3 are supported"},
        {{{NULL}},
         {-1, 3, 32, 32},
         1 << 21,
         "output_name: the model's output 'probs' declares 2097152 classes; at most 1048576 are "
         "supported"},
    };
    write_file(tmp_path("three.txt"), "a\nb\nc\n");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct model_card c = {0};
        char err[256] = "";
        for (int f = 0; f < 4 && bad[i].flags[f][0]; f++) {
            const char *v = bad[i].flags[f][1];
            if (strcmp(bad[i].flags[f][0], "labels") == 0)
                v = tmp_path("three.txt");
            assert_int_equal(card_set(&c, bad[i].flags[f][0], v, err, sizeof err), 0);
        }
        const int64_t *d = bad[i].dims;
        struct infer_io io = io_of(d[0], d[1], d[2], d[3], bad[i].classes);
        int out, classes;
        int rc = card_resolve(&c, &io, &out, &classes, err, sizeof err);
        if (!bad[i].message) {
            if (rc)
                fail_msg("case %zu: refused: %s", i, err);
        } else {
            assert_int_equal(rc, ID_EMODEL);
            assert_string_equal(err, bad[i].message);
        }
        card_free(&c);
    }
    /* an output that is not images x values */
    struct model_card c = {0};
    struct infer_io io = io_of(-1, 3, 32, 32, 2);
    io.outputs[0].rank = 3;
    char err[256];
    int out, classes;
    assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), ID_EMODEL);
    assert_non_null(strstr(err, "output_name: the model's output 'probs' is not a float tensor"));
    card_free(&c);
    io = io_of(-1, 3, 32, 32, 2);
    io.input.rank = 3;
    assert_int_equal(card_resolve(&c, &io, &out, &classes, err, sizeof err), ID_EMODEL);
    assert_non_null(strstr(err, "input:"));
    card_free(&c);
}

/* ---- post-processing -------------------------------------------------------------------- */

static void test_postprocess_per_output_kind(void **state)
{
    (void)state;
    struct infer_result r;
    const float probs[3] = {0.1f, 0.7f, 0.2f};
    /* probabilities as they are: no second softmax */
    infer_postprocess(probs, 3, CARD_PROBABILITIES, 2, &r);
    assert_int_equal(r.k, 2);
    assert_int_equal(r.raw, 0);
    assert_int_equal(r.top_class[0], 1);
    assert_float_equal(r.top_prob[0], 0.7f, 0);
    assert_int_equal(r.top_class[1], 2);
    assert_float_equal(r.top_prob[1], 0.2f, 0);
    assert_int_equal(r.top_class[2], -1);
    /* the same numbers as logits get a softmax */
    infer_postprocess(probs, 3, CARD_LOGITS, 2, &r);
    double sum = exp(0.1) + exp(0.7) + exp(0.2);
    assert_float_equal(r.top_prob[0], exp(0.7) / sum, 1e-6);
    /* a two-class model's 1.0 / 0.0 stays 1.0 / 0.0 (issue 15: it became
     * 0.731 / 0.269 under a second softmax) */
    const float sure[2] = {0.0f, 1.0f};
    infer_postprocess(sure, 2, CARD_PROBABILITIES, 5, &r);
    assert_int_equal(r.k, 2);
    assert_float_equal(r.top_prob[0], 1.0f, 0);
    assert_float_equal(r.top_prob[1], 0.0f, 0);
    assert_int_equal(r.top_class[0], 1);
    assert_int_equal(r.top_class[1], 0);
    /* top-k never exceeds the classes, and never holds a non-class */
    for (int k = 1; k <= 8; k++) {
        infer_postprocess(probs, 3, CARD_LOGITS, k, &r);
        assert_int_equal(r.k, k < 3 ? k : 3);
        for (int i = 0; i < r.k; i++)
            assert_true(r.top_class[i] >= 0 && r.top_class[i] < 3);
    }
    /* ties go to the lower index */
    const float tie[4] = {1, 2, 2, 1};
    infer_postprocess(tie, 4, CARD_PROBABILITIES, 4, &r);
    int want[4] = {1, 2, 0, 3};
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.top_class[i], want[i]);
    /* raw: every value, in order, untouched */
    const float raw[4] = {-3.5f, 12.0f, 0.25f, 1e6f};
    infer_postprocess(raw, 4, CARD_RAW, 0, &r);
    assert_int_equal(r.raw, 1);
    assert_int_equal(r.k, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r.top_class[i], i);
        assert_float_equal(r.top_prob[i], raw[i], 0);
    }
}

/* ---- end to end: the model through ONNX Runtime --------------------------------- */

/* Gradients, or (`solid`) one colour: stretched to the same size, two
 * gradient images would be the same input. */
static void write_png(const char *path, int w, int h, int solid)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)((x + y) % 256);
            if (solid) {
                p[0] = 20;
                p[1] = 220;
                p[2] = 60;
            }
        }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    assert_true(png_image_write_to_file(&img, path, 0, rgb, 0, NULL));
    free(rgb);
}

static void test_dynamic_softmax_model_end_to_end(void **state)
{
    (void)state;
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/tiny_dyn_softmax.onnx", model_dir);
    struct infer_options opt = {.threads = 1};
    struct infer_model *m;
    /* no card: its H and W are dynamic, so the size must be given */
    assert_int_equal(infer_model_open(path, &opt, &m, err, sizeof err), ID_EMODEL);
    assert_non_null(strstr(err, "size: the model's input is dynamic x dynamic"));
    /* the card: 48 x 192, stretched, (v/255 - 0.5)/0.5, probabilities */
    struct model_card card = {0};
    static const char *const flags[][2] = {
        {"size", "48x192"},     {"resize", "stretch"},       {"mean", "0.5,0.5,0.5"},
        {"std", "0.5,0.5,0.5"}, {"output", "probabilities"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        assert_int_equal(card_set(&card, flags[i][0], flags[i][1], err, sizeof err), 0);
    write_file(tmp_path("labels.txt"), "negative\npositive\n");
    assert_int_equal(card_load_labels(&card, tmp_path("labels.txt"), err, sizeof err), 0);
    if (infer_model_open_card(path, &opt, &card, &m, err, sizeof err))
        fail_msg("%s", err);
    const struct infer_model_info *info = infer_model_info(m);
    assert_int_equal(info->classes, 2);
    assert_int_equal(info->card.top_k, 2);
    assert_int_equal(info->card.height, 48);
    assert_int_equal(info->card.width, 192);
    assert_int_equal(info->input_size, 0);

    char wide[256], tall[256];
    snprintf(wide, sizeof wide, "%s", tmp_path("wide.png"));
    snprintf(tall, sizeof tall, "%s", tmp_path("tall.png"));
    write_png(wide, 300, 40, 0);
    write_png(tall, 30, 90, 1);
    const char *images[2] = {wide, tall};
    struct infer_result res[2];
    assert_int_equal(infer_run_files(m, images, 2, 2, res, err, sizeof err), 0);
    /* the same images preprocessed here and run as a tensor: the model's own
     * output, which the results must carry unchanged (no second softmax) */
    size_t plane = image_tensor_len(&info->card);
    assert_int_equal(plane, 3 * 48 * 192);
    float *in = malloc(2 * plane * sizeof(float));
    float out[4];
    for (int i = 0; i < 2; i++)
        assert_int_equal(image_load_tensor(images[i], &info->card, in + i * plane, err, sizeof err),
                         0);
    assert_int_equal(infer_run_tensor(m, in, 2, out, err, sizeof err), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].status, 0);
        assert_int_equal(res[i].k, 2);
        float sum = res[i].top_prob[0] + res[i].top_prob[1];
        assert_float_equal(sum, 1.0f, 1e-5);
        assert_true(res[i].top_prob[0] >= res[i].top_prob[1]);
        for (int k = 0; k < 2; k++)
            assert_float_equal(res[i].top_prob[k], out[i * 2 + res[i].top_class[k]], 0);
    }
    /* the two images differ, so the stretch fed the model two inputs */
    assert_true(out[0] != out[2]);
    free(in);
    infer_model_close(m);

    /* the same card with output logits would softmax again: different numbers */
    struct model_card lg;
    assert_int_equal(card_copy(&lg, &card), 0);
    assert_int_equal(card_set(&lg, "output", "logits", err, sizeof err), 0);
    assert_int_equal(infer_model_open_card(path, &opt, &lg, &m, err, sizeof err), 0);
    struct infer_result twice[2];
    assert_int_equal(infer_run_files(m, images, 2, 1, twice, err, sizeof err), 0);
    assert_int_equal(twice[0].top_class[0], res[0].top_class[0]);
    assert_true(fabsf(twice[0].top_prob[0] - res[0].top_prob[0]) > 1e-3f);
    infer_model_close(m);
    card_free(&lg);

    /* a card the model's fixed channel count refuses */
    assert_int_equal(card_set(&card, "channels", "gray", err, sizeof err), 0);
    assert_int_equal(infer_model_open_card(path, &opt, &card, &m, err, sizeof err), ID_EMODEL);
    assert_non_null(strstr(err, "channels:"));
    card_free(&card);
}

int main(void)
{
    const char *d = getenv("IDUNNO_MODELS");
    snprintf(model_dir, sizeof model_dir, "%s", d && d[0] ? d : "models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full_card_and_round_trip),
        cmocka_unit_test(test_parse_refusals_name_the_field),
        cmocka_unit_test(test_flags_and_their_refusals),
        cmocka_unit_test(test_labels_file),
        cmocka_unit_test(test_metadata_is_refused_when_malformed),
        cmocka_unit_test(test_merge_order),
        cmocka_unit_test(test_resolve_from_shapes),
        cmocka_unit_test(test_resolve_refusals_name_the_field),
        cmocka_unit_test(test_postprocess_per_output_kind),
        cmocka_unit_test(test_dynamic_softmax_model_end_to_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
