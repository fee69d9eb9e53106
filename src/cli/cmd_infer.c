/* cmd_infer.c — `idunno local-infer`: the worker's inference path on this
 * machine alone, no cluster needed, with a model card from a file and flags. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/json_out.h"
#include "base/strbuf.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"
#include "infer/infer.h"
#include "infer/result.h"

static int cmd_local_infer(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_predict(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_infer_commands[] = {
    {"local-infer",
     "[--threads N] [--batch B] [--card FILE] [--size HxW] [--resize crop|stretch|pad]\n"
     "       [--resize-side S] [--pad-value V] [--layout nchw|nhwc] [--channels rgb|bgr|gray]\n"
     "       [--scale 1|255] [--mean M[,M,M]] [--std S[,S,S]] [--labels FILE]\n"
     "       [--output logits|probabilities|raw] [--output-name NAME] [--top-k K]\n"
     "       MODEL IMAGE...",
     "run a model on local images, top-k per image (MODEL: a .onnx file or a name in models/);\n"
     "the model card (docs/inference.md) comes from the flags, then --card, then the model's\n"
     "metadata and shapes, then the defaults; the resolved card is printed first",
     cmd_local_infer},
    {"predict", "[--version N] [--deadline-ms MS] [--id ID] MODEL IMAGE...",
     "run local images through MODEL on the cluster now (an online request: a worker runs\n"
     "them and the answer comes back; nothing is stored), top-k per image with labels",
     cmd_predict},
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

/* The resolved card as part of the --json answer. */
static void json_card(const struct model_card *c)
{
    char size[32];
    snprintf(size, sizeof size, "%dx%d", c->height, c->width);
    cli_json_key_object("card");
    cli_json_str("size", size);
    cli_json_str("layout", card_layout_name(c->layout));
    cli_json_str("channels", card_channels_name(c->channels));
    cli_json_i64("scale", c->scale);
    cli_json_begin_array("mean");
    for (int i = 0; i < c->n_mean; i++)
        cli_json_double(NULL, c->mean[i]);
    cli_json_end_array();
    cli_json_begin_array("std");
    for (int i = 0; i < c->n_std; i++)
        cli_json_double(NULL, c->std[i]);
    cli_json_end_array();
    cli_json_str("resize", card_resize_name(c->resize));
    cli_json_i64("resize_side", c->resize_side);
    cli_json_i64("pad_value", c->pad_value);
    cli_json_str("output", card_output_name(c->output));
    cli_json_str("output_name", c->output_name);
    if (c->output != CARD_RAW)
        cli_json_i64("top_k", c->top_k);
    if (c->n_labels) {
        cli_json_begin_array("labels");
        for (size_t i = 0; i < c->n_labels; i++)
            cli_json_str(NULL, c->labels[i]);
        cli_json_end_array();
    }
    cli_json_end_object();
}

static const char *label_of(const struct model_card *c, int cls)
{
    return cls >= 0 && (size_t)cls < c->n_labels ? c->labels[cls] : NULL;
}

/* One image in the shape of the cluster's result lines (infer/result.h);
 * a local file has no model version: 0. */
static void json_result(const char *model, const char *image, const struct model_card *c,
                        const struct infer_result *r)
{
    uint32_t index[INFER_MAX_K];
    for (int k = 0; k < r->k && k < INFER_MAX_K; k++)
        index[k] = (uint32_t)r->top_class[k];
    struct result_view v = {
        .image = image,
        .model = model,
        .error = r->status ? r->error : NULL,
        .raw = r->raw,
        .k = r->k > 0 ? (size_t)r->k : 0,
        .index = index,
        .values = r->top_prob,
        .labels = c->n_labels ? c->labels : NULL,
        .n_labels = c->n_labels,
    };
    struct strbuf sb = STRBUF_INIT;
    struct json_out j;
    json_out_init(&j, &sb);
    result_json(&j, NULL, &v);
    if (strbuf_failed(&sb))
        abort(); /* a CLI out of memory has nothing better to do */
    cli_json_raw(NULL, strbuf_str(&sb));
    strbuf_free(&sb);
}

static void print_result(const struct model_card *c, const struct infer_result *r)
{
    for (int k = 0; k < r->k; k++) {
        const char *label = label_of(c, r->top_class[k]);
        if (r->raw)
            printf("  value %-5d %12.6g%s%s\n", k, (double)r->top_prob[k], label ? "  " : "",
                   label ? label : "");
        else
            printf("  %d. class %-5d %6.2f%%%s%s\n", k + 1, r->top_class[k], 100.0 * r->top_prob[k],
                   label ? "  " : "", label ? label : "");
    }
}

static int cmd_local_infer(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    /* Every card flag has val 'c': its name is the card field (card_set). */
    static const struct option opts[] = {
        {"threads", required_argument, NULL, 't'},
        {"batch", required_argument, NULL, 'b'},
        {"card", required_argument, NULL, 'f'},
        {"size", required_argument, NULL, 'c'},
        {"resize", required_argument, NULL, 'c'},
        {"resize-side", required_argument, NULL, 'c'},
        {"pad-value", required_argument, NULL, 'c'},
        {"layout", required_argument, NULL, 'c'},
        {"channels", required_argument, NULL, 'c'},
        {"scale", required_argument, NULL, 'c'},
        {"mean", required_argument, NULL, 'c'},
        {"std", required_argument, NULL, 'c'},
        {"labels", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'c'},
        {"output-name", required_argument, NULL, 'c'},
        {"top-k", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    struct infer_options opt = {.threads = 1};
    long batch = 1;
    const char *card_file = NULL;
    struct model_card flags = {0}, card = {0};
    char err[512];
    optind = 1;
    int c, li;
    while ((c = getopt_long(argc, argv, "+", opts, &li)) != -1) {
        if (c == 't') {
            opt.threads = atoi(optarg);
        } else if (c == 'b') {
            batch = strtol(optarg, NULL, 10);
        } else if (c == 'f') {
            card_file = optarg;
        } else if (c == 'c') {
            if (card_set(&flags, opts[li].name, optarg, err, sizeof err) < 0) {
                card_free(&flags);
                return cli_fail(CLI_USER_ERROR, "local-infer: %s", err);
            }
        } else {
            card_free(&flags);
            return cli_usage_error(cmd, "unknown option");
        }
    }
    /* Flags override the file, whatever their order on the line. */
    if (card_file && card_load_file(card_file, &card, err, sizeof err) < 0) {
        card_free(&flags);
        return cli_fail(CLI_USER_ERROR, "local-infer: %s", err);
    }
    int merged = card_merge(&card, &flags);
    card_free(&flags);
    if (merged < 0) {
        card_free(&card);
        return cli_fail(CLI_CLUSTER_ERROR, "out of memory");
    }
    if (opt.threads < 1 || opt.threads > 64 || batch < 1 || batch > 256) {
        card_free(&card);
        return cli_usage_error(cmd, "takes --threads 1..64 and --batch 1..256");
    }
    if (argc - optind < 2) {
        card_free(&card);
        return cli_usage_error(cmd, "needs a MODEL and at least one IMAGE");
    }
    char path[1024];
    resolve_model(argv[optind], path, sizeof path);
    struct infer_model *m;
    int rc = infer_model_open_card(path, &opt, &card, &m, err, sizeof err);
    card_free(&card);
    if (rc)
        return cli_fail(CLI_USER_ERROR, "cannot load model %s: %s", path, err);
    const struct infer_model_info *info = infer_model_info(m);
    const struct model_card *rc_card = &info->card;
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
        json_card(rc_card);
        cli_json_begin_array("images");
    } else {
        char *text = card_to_json(rc_card);
        printf("card: %s\n", text ? text : "(out of memory)");
        free(text);
    }
    for (size_t i = 0; i < n; i++) {
        failed += res[i].status != 0;
        if (ctx->json) {
            json_result(info->name, images[i], rc_card, &res[i]);
            continue;
        }
        printf("%s\n", images[i]);
        if (res[i].status) {
            printf("  error: %s\n", res[i].error);
            continue;
        }
        print_result(rc_card, &res[i]);
    }
    if (ctx->json) {
        cli_json_end_array();
        cli_json_u64("failed", failed);
        cli_json_double("seconds", secs);
        cli_json_end_object();
        cli_json_done();
    } else {
        fprintf(stderr, "%zu images (%zu failed) through %s (%dx%d, %d classes) in %.2f s\n", n,
                failed, info->name, rc_card->height, rc_card->width, info->classes, secs);
    }
    free(res);
    infer_model_close(m);
    return failed == n ? CLI_USER_ERROR : 0;
}

/* ---- predict: an online request ------------------------------------------------------------- */

/* Images of one request at most, as the coordinator takes them. */
#define PREDICT_MAX_IMAGES 64

static int read_image(const char *path, ProtobufCBinaryData *out, size_t room)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_fail(CLI_USER_ERROR, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (size_t)st.st_size > room) {
        fclose(f);
        return cli_fail(CLI_USER_ERROR, "%s: %s", path,
                        st.st_size <= 0 ? "not a non-empty file"
                                        : "too large (a request holds at most 15 MiB of images)");
    }
    out->len = (size_t)st.st_size;
    out->data = malloc(out->len);
    if (!out->data || fread(out->data, 1, out->len, f) != out->len) {
        fclose(f);
        return cli_fail(CLI_USER_ERROR, "cannot read %s", path);
    }
    fclose(f);
    return 0;
}

static void print_online_result(const char *image, const Idunno__QueryResult *r)
{
    printf("%s\n", image);
    if (r->error && r->error[0]) {
        printf("  error: %s\n", r->error);
        return;
    }
    for (size_t k = 0; k < r->n_values; k++)
        printf("  value %-5zu %12.6g\n", k, (double)r->values[k]);
    for (size_t k = 0; k < r->n_classes && k < r->n_probs; k++) {
        const char *label = k < r->n_labels && r->labels[k][0] ? r->labels[k] : NULL;
        printf("  %zu. class %-5u %6.2f%%%s%s\n", k + 1, r->classes[k], 100.0 * r->probs[k],
               label ? "  " : "", label ? label : "");
    }
}

static void json_online_result(const char *image, const Idunno__QueryResult *r)
{
    cli_json_begin_object();
    cli_json_str("image", image);
    if (r->error && r->error[0]) {
        cli_json_str("error", r->error);
    } else if (r->n_values) {
        cli_json_begin_array("values");
        for (size_t k = 0; k < r->n_values; k++)
            cli_json_double(NULL, r->values[k]);
        cli_json_end_array();
    } else {
        cli_json_begin_array("classes");
        for (size_t k = 0; k < r->n_classes; k++)
            cli_json_u64(NULL, r->classes[k]);
        cli_json_end_array();
        cli_json_begin_array("probs");
        for (size_t k = 0; k < r->n_probs; k++)
            cli_json_double(NULL, r->probs[k]);
        cli_json_end_array();
        if (r->n_labels) {
            cli_json_begin_array("labels");
            for (size_t k = 0; k < r->n_labels; k++)
                cli_json_str(NULL, r->labels[k]);
            cli_json_end_array();
        }
    }
    cli_json_end_object();
}

static int cmd_predict(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    Idunno__OnlineInfer req = IDUNNO__ONLINE_INFER__INIT;
    const char *images[PREDICT_MAX_IMAGES];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--version") == 0 && i + 1 < argc) {
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || v == 0 || v > UINT32_MAX)
                return cli_usage_error(cmd, "--version takes a version number (1, 2, ...)");
            req.version = (uint32_t)v;
        } else if (strcmp(argv[i], "--deadline-ms") == 0 && i + 1 < argc) {
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || v == 0 || v > 600000)
                return cli_usage_error(cmd, "--deadline-ms takes 1..600000");
            req.deadline_ms = (uint32_t)v;
        } else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            req.id = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error(cmd, "unknown option");
        } else if (!req.model || !req.model[0]) {
            req.model = argv[i];
        } else if (n < PREDICT_MAX_IMAGES) {
            images[n++] = argv[i];
        } else {
            return cli_usage_error(cmd, "a request holds at most 64 images");
        }
    }
    if (!req.model || !req.model[0] || n == 0)
        return cli_usage_error(cmd, "needs a MODEL and at least one IMAGE");
    ProtobufCBinaryData data[PREDICT_MAX_IMAGES] = {{0}};
    size_t room = 15u << 20;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = read_image(images[i], &data[i], room);
        if (rc == 0)
            room -= data[i].len;
    }
    Idunno__OnlineResult *res = NULL;
    if (rc == 0) {
        req.n_images = n;
        req.images = data;
        /* The same on the forwarder's retries (0, without randomness: none). */
        if (getrandom(&req.key, sizeof req.key, 0) != (ssize_t)sizeof req.key)
            req.key = 0;
        /* The deadline is the cluster's; the call waits a little longer for
         * the answer that says it passed. */
        uint32_t wait = (req.deadline_ms ? req.deadline_ms : 30000) + 5000;
        if (!ctx->timeout_set && ctx->timeout_ms < wait)
            ctx->timeout_ms = wait;
        rc = cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_ONLINE_INFER_REQ, &req.base,
                             &idunno__online_result__descriptor, &res);
    }
    for (size_t i = 0; i < n; i++)
        free(data[i].data);
    if (rc)
        return rc;
    if (res->n_results != n) {
        idunno__online_result__free_unpacked(res, NULL);
        return cli_fail(CLI_CLUSTER_ERROR, "malformed answer: %zu results for %zu images",
                        res->n_results, n);
    }
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += res->results[i]->error && res->results[i]->error[0];
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("model", res->model);
        cli_json_u64("version", res->version);
        cli_json_str("worker", res->worker);
        cli_json_u64("attempts", res->attempts);
        cli_json_u64("batched", res->batched ? res->batched : 1);
        cli_json_u64("run_ms", res->run_ms);
        if (res->id && res->id[0])
            cli_json_str("id", res->id);
        cli_json_begin_array("results");
        for (size_t i = 0; i < n; i++)
            json_online_result(images[i], res->results[i]);
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
    } else {
        for (size_t i = 0; i < n; i++)
            print_online_result(images[i], res->results[i]);
        fprintf(stderr, "%zu images (%zu failed) through %s version %u on %s in %u ms\n", n, failed,
                res->model, res->version, res->worker, res->run_ms);
    }
    idunno__online_result__free_unpacked(res, NULL);
    return failed == n ? CLI_USER_ERROR : 0;
}
