/* cmd_infer.c — `idunno local-infer`: the worker's inference path on this
 * machine alone, no cluster needed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/err.h"
#include "cli/cli.h"
#include "infer/infer.h"

static int cmd_local_infer(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_infer_commands[] = {
    {"local-infer", "[--threads N] [--batch B] MODEL IMAGE...",
     "run a model on local images, top-5 per image (MODEL: a .onnx file or a name in models/)",
     cmd_local_infer},
    {NULL, NULL, NULL, NULL},
};

/* A name without a slash or .onnx is looked up in $IDUNNO_MODELS, then models/. */
static void resolve_model(const char *arg, char *out, size_t len)
{
    struct stat sb;
    if (strchr(arg, '/') || strstr(arg, ".onnx") || stat(arg, &sb) == 0) {
        snprintf(out, len, "%s", arg);
        return;
    }
    const char *dir = getenv("IDUNNO_MODELS");
    snprintf(out, len, "%s/%s.onnx", dir && dir[0] ? dir : "models", arg);
}

static int cmd_local_infer(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    static const struct option opts[] = {
        {"threads", required_argument, NULL, 't'},
        {"batch", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    struct infer_options opt = {.threads = 1};
    long batch = 1;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 't')
            opt.threads = atoi(optarg);
        else if (c == 'b')
            batch = strtol(optarg, NULL, 10);
        else
            return cli_usage_error(cmd, "unknown option");
    }
    if (opt.threads < 1 || opt.threads > 64 || batch < 1 || batch > 256)
        return cli_usage_error(cmd, "takes --threads 1..64 and --batch 1..256");
    if (argc - optind < 2)
        return cli_usage_error(cmd, "needs a MODEL and at least one IMAGE");
    char path[1024], err[512];
    resolve_model(argv[optind], path, sizeof path);
    struct infer_model *m;
    int rc = infer_model_open(path, &opt, &m, err, sizeof err);
    if (rc)
        return cli_fail(CLI_USER_ERROR, "cannot load model %s: %s", path, err);
    const struct infer_model_info *info = infer_model_info(m);
    size_t n = (size_t)(argc - optind - 1);
    const char *const *images = (const char *const *)argv + optind + 1;
    struct infer_result *res = calloc(n, sizeof *res);
    if (!res) {
        infer_model_close(m);
        return cli_fail(CLI_CLUSTER_ERROR, "out of memory");
    }
    uint64_t t0 = id_now_us();
    rc = infer_run_files(m, images, n, (size_t)batch, res, err, sizeof err);
    double secs = (id_now_us() - t0) / 1e6;
    if (rc) {
        free(res);
        infer_model_close(m);
        return cli_fail(CLI_CLUSTER_ERROR, "inference failed: %s", err);
    }
    size_t failed = 0;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("model", info->name);
        cli_json_begin_array("images");
    }
    for (size_t i = 0; i < n; i++) {
        failed += res[i].status != 0;
        if (ctx->json) {
            cli_json_begin_object();
            cli_json_str("image", images[i]);
            if (res[i].status) {
                cli_json_str("error", res[i].error);
            } else {
                cli_json_begin_array("top5");
                for (int k = 0; k < INFER_TOPK && res[i].top_class[k] >= 0; k++) {
                    cli_json_begin_object();
                    cli_json_i64("class", res[i].top_class[k]);
                    cli_json_double("prob", res[i].top_prob[k]);
                    cli_json_end_object();
                }
                cli_json_end_array();
            }
            cli_json_end_object();
            continue;
        }
        printf("%s\n", images[i]);
        if (res[i].status) {
            printf("  error: %s\n", res[i].error);
            continue;
        }
        for (int k = 0; k < INFER_TOPK && res[i].top_class[k] >= 0; k++)
            printf("  %d. class %-5d %6.2f%%\n", k + 1, res[i].top_class[k],
                   100.0 * res[i].top_prob[k]);
    }
    if (ctx->json) {
        cli_json_end_array();
        cli_json_u64("failed", failed);
        cli_json_double("seconds", secs);
        cli_json_end_object();
        cli_json_done();
    } else {
        fprintf(stderr, "%zu images (%zu failed) through %s (%dx%d, %d classes) in %.2f s\n", n,
                failed, info->name, info->input_size, info->input_size, info->classes, secs);
    }
    free(res);
    infer_model_close(m);
    return failed == n ? CLI_USER_ERROR : 0;
}
