/* test_infer.c — the inference engine on the generated tiny CNN: logits against
 * an independent numpy forward pass, top-5, batches mixing good and bad images,
 * models that must be refused, and the session cache. */
#include <math.h>
#include <pthread.h>
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
#include "infer/image.h"
#include "infer/infer.h"

static char model_dir[512];

static const char *model_path(const char *name)
{
    static char p[600];
    snprintf(p, sizeof p, "%s/%s", model_dir, name);
    return p;
}

static void test_logits_match_numpy_reference(void **state)
{
    (void)state;
    FILE *f = fopen(model_path("tiny_cnn.reference.bin"), "rb");
    assert_non_null(f);
    uint32_t hdr[4];
    assert_int_equal(fread(hdr, 4, 4, f), 4);
    uint32_t n = hdr[0], h = hdr[1], w = hdr[2], classes = hdr[3];
    size_t in_count = (size_t)n * 3 * h * w;
    float *input = malloc(in_count * sizeof(float));
    float *want = malloc((size_t)n * classes * sizeof(float));
    assert_int_equal(fread(input, sizeof(float), in_count, f), in_count);
    assert_int_equal(fread(want, sizeof(float), (size_t)n * classes, f), (size_t)n * classes);
    fclose(f);

    struct infer_model *m;
    char err[256];
    struct infer_options opt = {.threads = 1};
    assert_int_equal(infer_model_open(model_path("tiny_cnn.onnx"), &opt, &m, err, sizeof err), 0);
    const struct infer_model_info *info = infer_model_info(m);
    assert_int_equal(info->input_size, (int)h);
    assert_int_equal(info->classes, (int)classes);
    assert_string_equal(info->name, "tiny_cnn");
    assert_float_equal(info->mean[0], 0.5f, 1e-6);
    assert_float_equal(info->std[2], 0.25f, 1e-6);
    float *got = malloc((size_t)n * classes * sizeof(float));
    assert_int_equal(infer_run_tensor(m, input, n, got, err, sizeof err), 0);
    float worst = 0;
    for (size_t i = 0; i < (size_t)n * classes; i++) {
        float d = got[i] > want[i] ? got[i] - want[i] : want[i] - got[i];
        if (d > worst)
            worst = d;
    }
    print_message("max |logit - reference| = %g\n", (double)worst);
    assert_true(worst <= 1e-4f);
    infer_model_close(m);
    free(input);
    free(want);
    free(got);
}

static void test_top5(void **state)
{
    (void)state;
    float logits[8] = {0.1f, 3.0f, -1.0f, 2.0f, 2.5f, 0.0f, 1.0f, -5.0f};
    struct infer_result r;
    infer_postprocess(logits, 8, CARD_LOGITS, 5, &r);
    assert_int_equal(r.k, 5);
    int want[5] = {1, 4, 3, 6, 0};
    for (int k = 0; k < 5; k++)
        assert_int_equal(r.top_class[k], want[k]);
    double sum = 0;
    for (int i = 0; i < 8; i++)
        sum += exp(logits[i] - 3.0);
    assert_float_equal(r.top_prob[0], 1.0 / sum, 1e-6);
    for (int k = 1; k < 5; k++)
        assert_true(r.top_prob[k] <= r.top_prob[k - 1]);
    /* fewer classes than five */
    float three[3] = {1, 2, 3};
    infer_postprocess(three, 3, CARD_LOGITS, 5, &r);
    assert_int_equal(r.k, 3);
    assert_int_equal(r.top_class[0], 2);
    assert_int_equal(r.top_class[2], 0);
    assert_int_equal(r.top_class[3], -1);
}

static void write_png(const char *path, uint8_t r, uint8_t g, uint8_t b, int w, int h)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        rgb[i * 3] = r;
        rgb[i * 3 + 1] = g;
        rgb[i * 3 + 2] = (uint8_t)(b + (i % w));
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

static void test_batches_with_bad_images(void **state)
{
    (void)state;
    char dir[] = "/tmp/idunno-infer-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char paths[7][300];
    const char *names[7] = {"a.png",    "b.png",     "missing.png", "c.png",
                            "text.png", "trunc.png", "d.png"};
    for (int i = 0; i < 7; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]);
    write_png(paths[0], 250, 10, 10, 40, 30);
    write_png(paths[1], 10, 250, 10, 30, 40);
    write_png(paths[3], 10, 10, 200, 64, 64);
    write_png(paths[6], 128, 128, 0, 33, 33);
    FILE *f = fopen(paths[4], "w");
    fputs("not an image\n", f);
    fclose(f);
    write_png(paths[5], 1, 2, 3, 50, 50);
    assert_int_equal(truncate(paths[5], 60), 0);

    struct infer_model *m;
    char err[256];
    struct infer_options opt = {.threads = 1};
    assert_int_equal(infer_model_open(model_path("tiny_cnn.onnx"), &opt, &m, err, sizeof err), 0);
    const char *list[7];
    for (int i = 0; i < 7; i++)
        list[i] = paths[i];
    struct infer_result batched[7], single[7];
    assert_int_equal(infer_run_files(m, list, 7, 3, batched, err, sizeof err), 0);
    for (int i = 0; i < 7; i++)
        assert_int_equal(infer_run_files(m, &list[i], 1, 1, &single[i], err, sizeof err), 0);
    int good[7] = {1, 1, 0, 1, 0, 0, 1};
    for (int i = 0; i < 7; i++) {
        if (!good[i]) {
            assert_true(batched[i].status < 0);
            assert_true(batched[i].error[0] != 0);
            continue;
        }
        assert_int_equal(batched[i].status, 0);
        /* a neighbour's failure does not shift anyone's answer */
        for (int k = 0; k < INFER_TOPK; k++) {
            assert_int_equal(batched[i].top_class[k], single[i].top_class[k]);
            assert_float_equal(batched[i].top_prob[k], single[i].top_prob[k], 1e-5);
        }
    }
    assert_int_equal(batched[2].status, ID_ENOTFOUND);
    assert_int_equal(batched[4].status, ID_EIMAGE);
    assert_int_equal(batched[5].status, ID_EIMAGE);
    infer_model_close(m);
    for (int i = 0; i < 7; i++)
        unlink(paths[i]);
    rmdir(dir);
}

/* Writes n floats to path as float32 little-endian, what a worker writes for
 * an online request's tensor. */
static void write_floats(const char *path, const float *v, size_t n, size_t extra_bytes)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        assert_int_equal(fwrite(b, 1, 4, f), 4);
    }
    for (size_t i = 0; i < extra_bytes; i++)
        fputc(0, f);
    fclose(f);
}

/* Inputs given as tensors (an online request's FP32 or UINT8 input): the
 * preprocessed form of an image answers exactly as the image does, in one
 * run with images; a file of the wrong length or with a NaN is that
 * input's error, and the others are unaffected. */
static void test_tensor_inputs(void **state)
{
    (void)state;
    char dir[] = "/tmp/idunno-tensor-XXXXXX";
    assert_non_null(mkdtemp(dir));
    enum { N = 8 };
    static const char *const names[N] = {"a.png", "a.f32",   "short.f32", "b.png",
                                         "b.f32", "nan.f32", "odd.f32",   "missing.f32"};
    static const uint8_t given[N] = {0, 1, 1, 0, 1, 1, 1, 1};
    char paths[N][300];
    const char *list[N];
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]);
        list[i] = paths[i];
    }
    write_png(paths[0], 250, 10, 10, 40, 30);
    write_png(paths[3], 10, 90, 200, 64, 64);

    struct infer_model *m;
    char err[256];
    struct infer_options opt = {.threads = 1};
    assert_int_equal(infer_model_open(model_path("tiny_cnn.onnx"), &opt, &m, err, sizeof err), 0);
    const struct model_card *card = &infer_model_info(m)->card;
    size_t plane = image_tensor_len(card);
    assert_int_equal(plane, 3 * 32 * 32);
    float *a = malloc(plane * sizeof *a), *b = malloc(plane * sizeof *b);
    assert_int_equal(image_load_tensor(paths[0], card, a, err, sizeof err), 0);
    assert_int_equal(image_load_tensor(paths[3], card, b, err, sizeof err), 0);
    write_floats(paths[1], a, plane, 0);
    write_floats(paths[2], a, plane - 1, 0);
    write_floats(paths[4], b, plane, 0);
    b[5] = (float)NAN;
    write_floats(paths[5], b, plane, 0);
    write_floats(paths[6], a, plane, 2);

    struct infer_result res[N];
    struct infer_input in[N];
    for (int i = 0; i < N; i++)
        in[i] = (struct infer_input){.path = list[i], .tensor = given[i]};
    assert_int_equal(infer_run_inputs(m, in, N, 3, res, err, sizeof err), 0);
    for (int pair = 0; pair < 2; pair++) {
        const struct infer_result *img = &res[pair * 3], *ten = &res[pair * 3 + 1];
        assert_int_equal(img->status, 0);
        assert_int_equal(ten->status, 0);
        assert_int_equal(ten->k, img->k);
        for (int k = 0; k < img->k; k++) {
            assert_int_equal(ten->top_class[k], img->top_class[k]);
            assert_float_equal(ten->top_prob[k], img->top_prob[k], 1e-5);
        }
    }
    /* the two images differ, so the comparison above can fail */
    assert_true(res[0].top_class[0] != res[3].top_class[0] ||
                fabsf(res[0].top_prob[0] - res[3].top_prob[0]) > 1e-3f);
    assert_int_equal(res[2].status, ID_EINVAL);
    assert_non_null(strstr(res[2].error, "does not hold 3072 float32 values"));
    assert_int_equal(res[5].status, ID_EINVAL);
    assert_non_null(strstr(res[5].error, "tensor value 5 is not a finite number"));
    assert_int_equal(res[6].status, ID_EINVAL);
    assert_int_equal(res[7].status, ID_ENOTFOUND);
    /* without the flags the same files are images, which they are not */
    /* the same inputs given as bytes in memory answer as their files do */
    struct infer_result mem[N];
    uint8_t *bytes[N] = {0};
    for (int i = 0; i < N - 1; i++) { /* the last is missing */
        FILE *f = fopen(paths[i], "rb");
        assert_non_null(f);
        bytes[i] = malloc(1 << 16);
        size_t len = fread(bytes[i], 1, 1 << 16, f);
        fclose(f);
        in[i] = (struct infer_input){.data = bytes[i], .len = len, .tensor = given[i]};
    }
    in[N - 1] = (struct infer_input){.path = list[N - 1], .tensor = 1};
    assert_int_equal(infer_run_inputs(m, in, N, 3, mem, err, sizeof err), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(mem[i].status, res[i].status);
        if (res[i].status != 0) {
            free(bytes[i]);
            continue;
        }
        assert_int_equal(mem[i].k, res[i].k);
        for (int k = 0; k < res[i].k; k++) {
            assert_int_equal(mem[i].top_class[k], res[i].top_class[k]);
            assert_float_equal(mem[i].top_prob[k], res[i].top_prob[k], 1e-6);
        }
        free(bytes[i]);
    }
    assert_non_null(strstr(mem[2].error, "does not hold 3072 float32 values"));
    in[1] = (struct infer_input){.path = list[1]};
    assert_int_equal(infer_run_inputs(m, &in[1], 1, 1, res, err, sizeof err), 0);
    assert_int_equal(res[0].status, ID_EIMAGE);
    infer_model_close(m);
    free(a);
    free(b);
    for (int i = 0; i < N; i++)
        unlink(paths[i]);
    rmdir(dir);
}

static void test_refuses_bad_models(void **state)
{
    (void)state;
    struct infer_model *m = NULL;
    char err[256] = "";
    struct infer_options opt = {.threads = 1};
    /* not ONNX at all */
    char path[] = "/tmp/idunno-notonnx-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, "definitely not a protobuf model", 31) == 31);
    close(fd);
    assert_int_equal(infer_model_open(path, &opt, &m, err, sizeof err), ID_EMODEL);
    assert_true(err[0] != 0);
    unlink(path);
    /* missing */
    assert_int_equal(infer_model_open("/nonexistent/model.onnx", &opt, &m, err, sizeof err),
                     ID_ENOTFOUND);
    /* a one-channel model whose metadata gives three means: refused, naming
     * the field, never fed a made-up mean */
    err[0] = 0;
    assert_int_equal(infer_model_open(model_path("tiny_gray.onnx"), &opt, &m, err, sizeof err),
                     ID_EMODEL);
    assert_string_equal(err, "mean: 3 values for a 1-channel input");
    /* ... and with a card that fits it, it runs */
    struct model_card card = {0};
    assert_int_equal(card_set(&card, "mean", "0.5", err, sizeof err), 0);
    assert_int_equal(card_set(&card, "std", "0.25", err, sizeof err), 0);
    assert_int_equal(
        infer_model_open_card(model_path("tiny_gray.onnx"), &opt, &card, &m, err, sizeof err), 0);
    assert_int_equal(infer_model_info(m)->card.channels, CARD_GRAY);
    infer_model_close(m);
}

/* ---- models whose declared output lies (tools/gen_models.py bad_*) ------------------------ */

static char bad_dir[64];

static const char *bad_path(const char *name)
{
    static char p[160];
    snprintf(p, sizeof p, "%s/%s.onnx", bad_dir, name);
    return p;
}

/* Generates the bad models into a fresh directory with the project's
 * generator (Debian's python3 has numpy and onnx). */
static int make_bad_models(void **state)
{
    (void)state;
    snprintf(bad_dir, sizeof bad_dir, "/tmp/idunno-badmodels-XXXXXX");
    if (!mkdtemp(bad_dir))
        return -1;
    char cmd[400];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tools/gen_models.py --out %s --only "
             "bad_huge_classes,bad_declares_more,bad_declares_fewer,bad_rank3_declared,bad_rank3_"
             "returned,bad_mean >/dev/null",
             bad_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_bad_models(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", bad_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_refuses_huge_declared_class_count(void **state)
{
    (void)state;
    struct infer_model *m = NULL;
    char err[256] = "";
    struct infer_options opt = {.threads = 1};
    assert_int_equal(infer_model_open(bad_path("bad_huge_classes"), &opt, &m, err, sizeof err),
                     ID_EMODEL);
    assert_null(m);
    assert_non_null(strstr(err, "4294967306 classes"));
}

/* A malformed metadata mean once became ImageNet's without a word. */
static void test_refuses_malformed_metadata(void **state)
{
    (void)state;
    struct infer_model *m = NULL;
    char err[256] = "";
    struct infer_options opt = {.threads = 1};
    assert_int_equal(infer_model_open(bad_path("bad_mean"), &opt, &m, err, sizeof err), ID_EMODEL);
    assert_null(m);
    assert_string_equal(err, "mean: the model's metadata idunno.mean '0.5;0.5;0.5' is malformed");
    /* a card that gives the mean itself never uses the metadata's */
    struct model_card card = {0};
    assert_int_equal(card_set(&card, "mean", "0.4,0.5,0.6", err, sizeof err), 0);
    assert_int_equal(infer_model_open_card(bad_path("bad_mean"), &opt, &card, &m, err, sizeof err),
                     0);
    assert_float_equal(infer_model_info(m)->card.mean[2], 0.6f, 1e-7);
    /* the rest still comes from the metadata */
    assert_float_equal(infer_model_info(m)->card.std[0], 0.25f, 1e-7);
    infer_model_close(m);
    card_free(&card);
}

static void test_refuses_declared_wrong_rank(void **state)
{
    (void)state;
    struct infer_model *m = NULL;
    char err[256] = "";
    struct infer_options opt = {.threads = 1};
    assert_int_equal(infer_model_open(bad_path("bad_rank3_declared"), &opt, &m, err, sizeof err),
                     ID_EMODEL);
    assert_non_null(strstr(err, "rank 2"));
}

#define CANARY 12345.0f

/* Runs 2 inputs through a model that loads but returns 2 x 10 logits other
 * than what it declares: the run must fail naming the shapes, and write
 * nothing into (or past) the buffer sized from the declaration. */
static void run_lying_model(const char *name, int declared, const char *want_err)
{
    struct infer_model *m = NULL;
    char err[256] = "";
    struct infer_options opt = {.threads = 1};
    assert_int_equal(infer_model_open(bad_path(name), &opt, &m, err, sizeof err), 0);
    assert_int_equal(infer_model_info(m)->classes, declared);
    size_t n = 2, in_count = n * 3 * 32 * 32, slots = n * (size_t)declared + 64;
    float *input = calloc(in_count, sizeof(float));
    float *logits = malloc(slots * sizeof(float));
    for (size_t i = 0; i < slots; i++)
        logits[i] = CANARY;
    assert_int_equal(infer_run_tensor(m, input, n, logits, err, sizeof err), ID_EMODEL);
    assert_non_null(strstr(err, want_err));
    for (size_t i = 0; i < slots; i++)
        assert_true(logits[i] == CANARY);
    free(input);
    free(logits);
    infer_model_close(m);
}

static void test_output_smaller_than_declared(void **state)
{
    (void)state;
    run_lying_model("bad_declares_more", 1000,
                    "returned a 2 x 10 tensor for 2 images; it declares 2 x 1000");
}

static void test_output_larger_than_declared(void **state)
{
    (void)state;
    run_lying_model("bad_declares_fewer", 4,
                    "returned a 2 x 10 tensor for 2 images; it declares 2 x 4");
}

static void test_output_of_wrong_rank(void **state)
{
    (void)state;
    run_lying_model("bad_rank3_returned", 10, "returned a tensor of rank 3 for 2 images");
}

static void test_cache(void **state)
{
    (void)state;
    struct infer_options opt = {.threads = 1};
    struct infer_cache *c = infer_cache_create(2, &opt);
    struct infer_model *a, *a2, *b, *cm;
    char err[256];
    const char *tiny = model_path("tiny_cnn.onnx");
    assert_int_equal(infer_cache_get(c, "tiny", 1, tiny, &a, err, sizeof err), 0);
    assert_int_equal(infer_cache_get(c, "tiny", 1, tiny, &a2, err, sizeof err), 0);
    assert_ptr_equal(a, a2);
    infer_cache_release(c, a);
    infer_cache_release(c, a2);
    assert_int_equal(infer_cache_get(c, "tiny", 2, tiny, &b, err, sizeof err), 0);
    assert_ptr_not_equal(a, b);
    infer_cache_release(c, b);
    assert_int_equal(infer_cache_size(c), 2);
    /* touching v1 makes v2 the least recently used: the next miss evicts it */
    assert_int_equal(infer_cache_get(c, "tiny", 1, tiny, &a2, err, sizeof err), 0);
    infer_cache_release(c, a2);
    assert_int_equal(infer_cache_get(c, "other", 1, tiny, &cm, err, sizeof err), 0);
    infer_cache_release(c, cm);
    assert_int_equal(infer_cache_size(c), 2);
    assert_int_equal(infer_cache_get(c, "tiny", 1, tiny, &a2, err, sizeof err), 0);
    assert_ptr_equal(a, a2);
    infer_cache_release(c, a2);
    assert_int_equal(infer_cache_get(c, "bad", 1, "/nonexistent.onnx", &cm, err, sizeof err),
                     ID_ENOTFOUND);
    infer_cache_destroy(c);
}

/* One all-zero input through the model: 0 if it ran. */
static int run_zeros(struct infer_model *m, char *err, size_t errlen)
{
    const struct infer_model_info *info = infer_model_info(m);
    size_t in = 3u * (size_t)info->input_size * (size_t)info->input_size;
    float *input = calloc(in, sizeof *input),
          *logits = calloc((size_t)info->classes, sizeof *logits);
    int rc = input && logits ? infer_run_tensor(m, input, 1, logits, err, errlen) : ID_ENOMEM;
    free(input);
    free(logits);
    return rc;
}

/* A model in use is never evicted: with every entry pinned the table grows,
 * and an unpinned entry is the one that goes next. */
static void test_cache_pins(void **state)
{
    (void)state;
    struct infer_options opt = {.threads = 1};
    struct infer_cache *c = infer_cache_create(1, &opt);
    struct infer_model *a, *b, *x;
    char err[256];
    const char *tiny = model_path("tiny_cnn.onnx");
    assert_int_equal(infer_cache_get(c, "a", 1, tiny, &a, err, sizeof err), 0);
    assert_int_equal(infer_cache_get(c, "b", 1, tiny, &b, err, sizeof err), 0); /* a is pinned */
    assert_int_equal(infer_cache_size(c), 2);
    /* a still runs: it was not closed */
    assert_int_equal(run_zeros(a, err, sizeof err), 0);
    infer_cache_release(c, a);
    assert_int_equal(infer_cache_get(c, "c", 1, tiny, &x, err, sizeof err),
                     0); /* evicts a, not b */
    assert_int_equal(infer_cache_size(c), 2);
    assert_int_equal(run_zeros(b, err, sizeof err), 0);
    infer_cache_release(c, b);
    infer_cache_release(c, x);
    infer_cache_destroy(c);
}

/* Two threads getting, running and releasing models of one cache at once, as
 * a worker's regular and spare runs do (ASan checks nothing is freed in use). */
struct cache_user {
    struct infer_cache *c;
    const char *path; /* model_path's buffer is static: resolved before the threads */
    const char *names[3];
    int failures;
    char last_error[256];
};

static void *cache_user_run(void *arg)
{
    struct cache_user *u = arg;
    const char *tiny = u->path;
    for (int i = 0; i < 30; i++) {
        struct infer_model *m;
        char err[256];
        if (infer_cache_get(u->c, u->names[i % 3], 1, tiny, &m, err, sizeof err) != 0) {
            u->failures++;
            snprintf(u->last_error, sizeof u->last_error, "get %s: %s", u->names[i % 3], err);
            continue;
        }
        if (run_zeros(m, err, sizeof err) != 0) {
            u->failures++;
            snprintf(u->last_error, sizeof u->last_error, "run %s: %s", u->names[i % 3], err);
        }
        infer_cache_release(u->c, m);
    }
    return NULL;
}

static void test_cache_two_threads(void **state)
{
    (void)state;
    struct infer_options opt = {.threads = 1};
    struct infer_cache *c = infer_cache_create(2, &opt);
    char path[512];
    snprintf(path, sizeof path, "%s", model_path("tiny_cnn.onnx"));
    struct cache_user u[2] = {{c, path, {"a", "b", "c"}, 0, ""}, {c, path, {"d", "b", "e"}, 0, ""}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, cache_user_run, &u[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (u[i].failures)
            fail_msg("thread %d: %d failures, the last: %s", i, u[i].failures, u[i].last_error);
    }
    assert_true(infer_cache_size(c) >= 2);
    infer_cache_destroy(c);
}

int main(void)
{
    const char *d = getenv("IDUNNO_MODELS");
    snprintf(model_dir, sizeof model_dir, "%s", d && d[0] ? d : "models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_match_numpy_reference),
        cmocka_unit_test(test_top5),
        cmocka_unit_test(test_batches_with_bad_images),
        cmocka_unit_test(test_tensor_inputs),
        cmocka_unit_test(test_refuses_bad_models),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_cache_pins),
        cmocka_unit_test(test_cache_two_threads),
    };
    const struct CMUnitTest lying[] = {
        cmocka_unit_test(test_refuses_huge_declared_class_count),
        cmocka_unit_test(test_refuses_malformed_metadata),
        cmocka_unit_test(test_refuses_declared_wrong_rank),
        cmocka_unit_test(test_output_smaller_than_declared),
        cmocka_unit_test(test_output_larger_than_declared),
        cmocka_unit_test(test_output_of_wrong_rank),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed +
           cmocka_run_group_tests_name("lying models", lying, make_bad_models, remove_bad_models);
}
