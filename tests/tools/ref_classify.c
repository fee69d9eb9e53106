/* ref_classify.c — test helper: the bare reference for the pretrained
 * classifier. Runs a model through the ONNX Runtime C API directly, with its
 * own PNG decoding (libpng's classic interface) and its own preprocessing,
 * none of src/infer/ (so a bug there cannot hide in both sides of the
 * comparison). Used by tests/cluster/test_real_model.sh.
 *
 *   ref_classify MODEL HxW MEAN STD IMAGE.png...
 *
 * Each image: decoded to 8-bit RGB, stretched to H x W (bilinear, half-pixel
 * centres, edges clamped), (v/255 - MEAN)/STD on every channel, NCHW, one
 * image per run. The model's first output is taken as it is (it ends in a
 * Softmax). Prints one line per image: "IMAGE INDEX PROBABILITY" of the top
 * class (the lower index on a tie). Exit 1 on any error, naming it.
 */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxruntime_c_api.h>

static const OrtApi *ort;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "ref_classify: %s: %s\n", what, why);
    exit(1);
}

static void check(OrtStatus *st, const char *what)
{
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ort->GetErrorMessage(st));
        ort->ReleaseStatus(st);
        die(what, msg);
    }
}

/* The file's pixels as 8-bit RGB, row after row; *w, *h its size. */
static unsigned char *read_rgb(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, "cannot open");
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!info)
        die(path, "libpng could not start");
    if (setjmp(png_jmpbuf(p)))
        die(path, "not a PNG libpng can read");
    png_init_io(p, f);
    /* Palette and low bit depths expanded, 16 bits cut to 8, alpha dropped,
     * gray made RGB: whatever the file holds, three 8-bit channels. */
    png_read_png(p, info,
                 PNG_TRANSFORM_EXPAND | PNG_TRANSFORM_STRIP_16 | PNG_TRANSFORM_STRIP_ALPHA |
                     PNG_TRANSFORM_GRAY_TO_RGB,
                 NULL);
    *w = (int)png_get_image_width(p, info);
    *h = (int)png_get_image_height(p, info);
    if (png_get_channels(p, info) != 3)
        die(path, "did not decode to RGB");
    png_bytepp rows = png_get_rows(p, info);
    unsigned char *px = malloc((size_t)*w * *h * 3);
    if (!px)
        die(path, "out of memory");
    for (int y = 0; y < *h; y++)
        memcpy(px + (size_t)y * *w * 3, rows[y], (size_t)*w * 3);
    png_destroy_read_struct(&p, &info, NULL);
    fclose(f);
    return px;
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* px (sw x sh RGB) stretched to W x H into out as normalised NCHW floats. */
static void to_input(const unsigned char *px, int sw, int sh, int W, int H, float mean, float std,
                     float *out)
{
    for (int y = 0; y < H; y++) {
        float fy = clampf(((float)y + 0.5f) * (float)sh / (float)H - 0.5f, 0, (float)(sh - 1));
        int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
        float ay = fy - (float)y0;
        for (int x = 0; x < W; x++) {
            float fx = clampf(((float)x + 0.5f) * (float)sw / (float)W - 0.5f, 0, (float)(sw - 1));
            int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
            float ax = fx - (float)x0;
            for (int c = 0; c < 3; c++) {
                float a = px[((size_t)y0 * sw + x0) * 3 + c],
                      b = px[((size_t)y0 * sw + x1) * 3 + c];
                float d = px[((size_t)y1 * sw + x0) * 3 + c],
                      e = px[((size_t)y1 * sw + x1) * 3 + c];
                float v = (a * (1 - ax) + b * ax) * (1 - ay) + (d * (1 - ax) + e * ax) * ay;
                out[((size_t)c * H + y) * W + x] = (v / 255.0f - mean) / std;
            }
        }
    }
}

int main(int argc, char **argv)
{
    int H, W;
    if (argc < 6 || sscanf(argv[2], "%dx%d", &H, &W) != 2 || H < 1 || W < 1) {
        fprintf(stderr, "usage: ref_classify MODEL HxW MEAN STD IMAGE.png...\n");
        return 1;
    }
    float mean = strtof(argv[3], NULL), std = strtof(argv[4], NULL);
    if (!(std > 0))
        die("std", "must be > 0");
    ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (!ort)
        die("onnxruntime", "the library does not offer this header's API version");
    OrtEnv *env;
    OrtSessionOptions *so;
    OrtSession *sess;
    OrtAllocator *alloc;
    OrtMemoryInfo *mem;
    check(ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "ref", &env), "CreateEnv");
    check(ort->CreateSessionOptions(&so), "CreateSessionOptions");
    check(ort->SetIntraOpNumThreads(so, 1), "SetIntraOpNumThreads");
    check(ort->CreateSession(env, argv[1], so, &sess), argv[1]);
    check(ort->GetAllocatorWithDefaultOptions(&alloc), "allocator");
    check(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "memory info");
    char *in_name, *out_name;
    check(ort->SessionGetInputName(sess, 0, alloc, &in_name), "input name");
    check(ort->SessionGetOutputName(sess, 0, alloc, &out_name), "output name");

    size_t n = (size_t)3 * H * W;
    float *x = malloc(n * sizeof *x);
    if (!x)
        die("input", "out of memory");
    int64_t shape[4] = {1, 3, H, W};
    for (int i = 5; i < argc; i++) {
        int sw, sh;
        unsigned char *px = read_rgb(argv[i], &sw, &sh);
        to_input(px, sw, sh, W, H, mean, std, x);
        free(px);
        OrtValue *in = NULL, *out = NULL;
        check(ort->CreateTensorWithDataAsOrtValue(mem, x, n * sizeof *x, shape, 4,
                                                  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in),
              "input tensor");
        const char *ins[1] = {in_name}, *outs[1] = {out_name};
        check(ort->Run(sess, NULL, ins, (const OrtValue *const *)&in, 1, outs, 1, &out), argv[i]);
        OrtTensorTypeAndShapeInfo *ti;
        size_t classes;
        float *prob;
        check(ort->GetTensorTypeAndShape(out, &ti), "output shape");
        check(ort->GetTensorShapeElementCount(ti, &classes), "output size");
        ort->ReleaseTensorTypeAndShapeInfo(ti);
        check(ort->GetTensorMutableData(out, (void **)&prob), "output data");
        if (classes < 1)
            die(argv[i], "the model gave no values");
        size_t best = 0;
        for (size_t k = 1; k < classes; k++)
            if (prob[k] > prob[best])
                best = k;
        printf("%s %zu %.6f\n", argv[i], best, prob[best]);
        ort->ReleaseValue(out);
        ort->ReleaseValue(in);
    }
    free(x);
    check(ort->AllocatorFree(alloc, in_name), "free");
    check(ort->AllocatorFree(alloc, out_name), "free");
    ort->ReleaseMemoryInfo(mem);
    ort->ReleaseSession(sess);
    ort->ReleaseSessionOptions(so);
    ort->ReleaseEnv(env);
    return 0;
}
