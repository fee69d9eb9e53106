/* infer_bench.c — throughput of IDunno's inference path, for bench/infer_bench.sh.
 *
 *   infer_bench model MODEL.onnx THREADS BATCH SECONDS      pre-made tensors only
 *   infer_bench e2e   MODEL.onnx THREADS BATCH SECONDS DIR  JPEG/PNG files from DIR
 *   infer_bench rss   MODEL.onnx MODEL2.onnx               RSS with both loaded
 *
 * Prints one JSON object. Inputs for `model` are seeded random tensors, so the
 * Node reference (bench/infer_ref.js) can feed the same kind of data. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "infer/infer.h"

static long rss_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0)
            v = atol(line + strlen(field) + 1);
    if (f)
        fclose(f);
    return v;
}

static struct infer_model *open_or_die(const char *path, int threads)
{
    struct infer_model *m;
    char err[512];
    struct infer_options opt = {.threads = threads};
    if (infer_model_open(path, &opt, &m, err, sizeof err)) {
        fprintf(stderr, "infer_bench: %s: %s\n", path, err);
        exit(1);
    }
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: see the comment at the top of bench/infer_bench.c\n");
        return 1;
    }
    char err[512];
    if (strcmp(argv[1], "rss") == 0) {
        long before = rss_kb("VmRSS:");
        struct infer_model *a = open_or_die(argv[2], 1), *b = open_or_die(argv[3], 1);
        for (int k = 0; k < 2; k++) {
            struct infer_model *m = k ? b : a;
            const struct infer_model_info *in = infer_model_info(m);
            size_t plane = image_tensor_len(&in->card);
            float *x = calloc(plane, sizeof(float)), *y = calloc((size_t)in->classes, sizeof(float));
            infer_run_tensor(m, x, 1, y, err, sizeof err);
            free(x);
            free(y);
        }
        printf("{\"rss_mb_both_loaded\": %.1f, \"peak_rss_mb\": %.1f, \"rss_mb_before\": %.1f}\n",
               rss_kb("VmRSS:") / 1024.0, rss_kb("VmHWM:") / 1024.0, before / 1024.0);
        infer_model_close(a);
        infer_model_close(b);
        return 0;
    }
    int e2e = strcmp(argv[1], "e2e") == 0;
    if (argc < 6 || (e2e && argc < 7)) {
        fprintf(stderr, "usage: see the comment at the top of bench/infer_bench.c\n");
        return 1;
    }
    int threads = atoi(argv[3]);
    size_t batch = (size_t)atoi(argv[4]);
    double seconds = atof(argv[5]);
    struct infer_model *m = open_or_die(argv[2], threads);
    const struct infer_model_info *in = infer_model_info(m);
    size_t plane = image_tensor_len(&in->card);
    size_t images = 0;
    double elapsed = 0;
    if (!e2e) {
        float *x = malloc(batch * plane * sizeof(float));
        float *y = malloc(batch * (size_t)in->classes * sizeof(float));
        unsigned s = 12345;
        for (size_t i = 0; i < batch * plane; i++) {
            s = s * 1103515245u + 12345u;
            x[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
        infer_run_tensor(m, x, batch, y, err, sizeof err); /* warm-up */
        uint64_t t0 = id_now_us();
        while ((elapsed = (id_now_us() - t0) / 1e6) < seconds) {
            if (infer_run_tensor(m, x, batch, y, err, sizeof err)) {
                fprintf(stderr, "infer_bench: %s\n", err);
                return 1;
            }
            images += batch;
        }
        free(x);
        free(y);
    } else {
        DIR *d = opendir(argv[6]);
        if (!d) {
            fprintf(stderr, "infer_bench: no directory %s\n", argv[6]);
            return 1;
        }
        char **files = NULL;
        size_t nf = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            files = realloc(files, (nf + 1) * sizeof *files);
            size_t l = strlen(argv[6]) + strlen(de->d_name) + 2;
            files[nf] = malloc(l);
            snprintf(files[nf++], l, "%s/%s", argv[6], de->d_name);
        }
        closedir(d);
        struct infer_result *res = calloc(nf, sizeof *res);
        infer_run_files(m, (const char *const *)files, batch < nf ? batch : nf, batch, res, err, sizeof err);
        uint64_t t0 = id_now_us();
        while ((elapsed = (id_now_us() - t0) / 1e6) < seconds) {
            if (infer_run_files(m, (const char *const *)files, nf, batch, res, err, sizeof err)) {
                fprintf(stderr, "infer_bench: %s\n", err);
                return 1;
            }
            images += nf;
        }
        for (size_t i = 0; i < nf; i++)
            free(files[i]);
        free(files);
        free(res);
    }
    printf("{\"runtime\": \"idunno-c\", \"mode\": \"%s\", \"model\": \"%s\", \"threads\": %d, \"batch\": %zu, "
           "\"images\": %zu, \"seconds\": %.3f, \"images_per_s\": %.3f}\n",
           e2e ? "end-to-end" : "model-only", in->name, threads, batch, images, elapsed, images / elapsed);
    infer_model_close(m);
    return 0;
}
