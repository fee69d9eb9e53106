/* cmd_models.c — `idunno train` and `idunno models`. train resolves the
 * model card (docs/inference.md) against the model here, where the file is,
 * so a card that does not fit the model never reaches the cluster; the file
 * goes to SDFS and the resolved card, labels included, into the replicated
 * model record with it. models shows the records and their cards; with a
 * name, every kept version of it and the job pinned to each. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"
#include "infer/infer.h"
#include "sched/jobs.h"

static int cmd_train(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_models(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_model_commands[] = {
    {"train",
     "MODEL [--file model.onnx] [--card FILE] [--size HxW] [--resize crop|stretch|pad]\n"
     "       [--resize-side S] [--pad-value V] [--layout nchw|nhwc] [--channels rgb|bgr|gray]\n"
     "       [--scale 1|255] [--mean M[,M,M]] [--std S[,S,S]] [--labels FILE]\n"
     "       [--output logits|probabilities|raw] [--output-name NAME] [--top-k K]",
     "register a model: its file goes to SDFS (models/MODEL.onnx) and its card "
     "(docs/inference.md:\n"
     "the flags, then --card, then the model's metadata and shapes), resolved against the model\n"
     "here, is stored with it and printed; training a name again makes a new version",
     cmd_train},
    {"models", "[MODEL]",
     "the registered models and their cards; with MODEL, its card and every kept version",
     cmd_models},
    {NULL, NULL, NULL, NULL},
};

static void model_path_of(const char *name, char *out, size_t len)
{
    const char *dir = getenv("IDUNNO_MODELS");
    snprintf(out, len, "%s/%s.onnx", dir && dir[0] ? dir : "models", name);
}

/* The card train registers: --card's file, then every card flag over it
 * (whatever their order on the line), as local-infer does. *file and *name
 * get the other arguments. Returns 0 or a CLI status (already reported). */
static int parse_train_args(const struct cli_command *cmd, int argc, char **argv, const char **name,
                            const char **file, struct model_card *card)
{
    struct model_card flags = {0};
    const char *card_file = NULL;
    char err[512];
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            *file = argv[++i];
        } else if (strcmp(argv[i], "--card") == 0 && i + 1 < argc) {
            card_file = argv[++i];
        } else if (strncmp(argv[i], "--", 2) == 0 && argv[i][2] && i + 1 < argc) {
            /* Every other option is a card field: card_set names a wrong one. */
            if (card_set(&flags, argv[i] + 2, argv[i + 1], err, sizeof err) < 0)
                rc = cli_fail(CLI_USER_ERROR, "train: %s", err);
            i++;
        } else if (!*name && argv[i][0] != '-') {
            *name = argv[i];
        } else {
            rc = cli_usage_error(cmd, "takes a model name, --file FILE and card options");
        }
    }
    if (rc == 0 && !*name)
        rc = cli_usage_error(cmd, "needs a model name");
    if (rc == 0 && card_file && card_load_file(card_file, card, err, sizeof err) < 0)
        rc = cli_fail(CLI_USER_ERROR, "train: %s", err);
    if (rc == 0 && card_merge(card, &flags) < 0)
        rc = cli_fail(CLI_CLUSTER_ERROR, "out of memory");
    card_free(&flags);
    if (rc)
        card_free(card);
    return rc;
}

static void print_trained(const struct cli_ctx *ctx, const char *name, const char *sdfs_name,
                          const Idunno__SdfsVersion *v, const Idunno__ModelInfo *got,
                          const char *card_json, uint64_t elapsed_ms)
{
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("model", name);
        cli_json_u64("version", got->version);
        cli_json_str("file", sdfs_name);
        cli_json_u64("file_version", v->version);
        cli_json_u64("size", v->size);
        cli_json_u64("classes", got->classes);
        cli_json_raw("card", card_json);
        cli_json_u64("elapsed_ms", elapsed_ms);
        cli_json_end_object();
        cli_json_done();
        return;
    }
    printf("trained %s version %u: %s (SDFS version %llu, %.1f MB), %u classes, in %llu ms; "
           "workers are loading it\n",
           name, got->version, sdfs_name, (unsigned long long)v->version, (double)v->size / 1e6,
           got->classes, (unsigned long long)elapsed_ms);
    printf("card: %s\n", card_json);
}

static int cmd_train(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    const char *name = NULL, *file = NULL;
    struct model_card card = {0};
    int rc = parse_train_args(cmd, argc, argv, &name, &file, &card);
    if (rc)
        return rc;
    char path[1024];
    if (file)
        snprintf(path, sizeof path, "%s", file);
    else
        model_path_of(name, path, sizeof path);
    struct stat st;
    if (stat(path, &st) < 0) {
        card_free(&card);
        return cli_fail(CLI_USER_ERROR, "train %s: cannot read %s: %s%s", name, path,
                        strerror(errno), file ? "" : " (run `make models`, or give --file)");
    }
    /* Open it here with its card first: a file that is not a usable model,
     * or a card that does not fit it, never reaches the cluster; the error
     * names the card's field. */
    struct infer_model *m;
    char err[512];
    struct infer_options io = {.threads = 1};
    rc = infer_model_open_card(path, &io, &card, &m, err, sizeof err);
    card_free(&card);
    if (rc < 0)
        return cli_fail(CLI_USER_ERROR, "train %s: %s is not a usable model with this card: %s",
                        name, path, err);
    const struct infer_model_info *info = infer_model_info(m);
    char *card_json = card_to_json(&info->card);
    Idunno__ModelInfo mi = IDUNNO__MODEL_INFO__INIT;
    float mean[3], std[3];
    for (int k = 0; k < 3; k++) {
        mean[k] = info->mean[k];
        std[k] = info->std[k];
    }
    mi.input_size = (uint32_t)info->input_size;
    mi.resize = (uint32_t)info->resize;
    mi.classes = (uint32_t)info->classes;
    infer_model_close(m);
    if (!card_json)
        return cli_fail(CLI_CLUSTER_ERROR, "out of memory");
    char sdfs_name[300];
    snprintf(sdfs_name, sizeof sdfs_name, "models/%s.onnx", name);
    uint64_t t0 = id_now_ms();
    struct cli_conn *conn = NULL;
    Idunno__SdfsVersion *v = NULL;
    rc = cli_sdfs_put(ctx, &conn, path, sdfs_name, &v, err, sizeof err);
    cli_conn_close(conn);
    if (rc < 0) {
        free(card_json);
        return cli_fail(cli_status_of(rc), "train %s: storing the model: %s", name, err);
    }
    mi.name = (char *)name;
    mi.file = sdfs_name;
    mi.blob = v->blob;
    mi.size = v->size;
    mi.sha256 = v->sha256;
    mi.n_mean = mi.n_std = 3;
    mi.mean = mean;
    mi.std = std;
    mi.card = card_json;
    Idunno__ModelInfo *got = NULL;
    rc = cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_JOB_MODEL_ADD_REQ, &mi.base,
                         &idunno__model_info__descriptor, &got);
    if (rc == 0) {
        print_trained(ctx, name, sdfs_name, v, got, card_json, id_now_ms() - t0);
        idunno__model_info__free_unpacked(got, NULL);
    }
    free(card_json);
    idunno__sdfs_version__free_unpacked(v, NULL);
    return rc;
}

/* ---- models --------------------------------------------------------------------------------- */

/* What `models` shows of a record's card, as text. A record without a card
 * (registered before them) shows its square input and statistics. */
struct card_text {
    char input[64], prep[160], output[96], labels[16];
};

static void list3(char *out, size_t len, const float *v, int n)
{
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%g", i ? "," : "", (double)v[i]);
}

static void card_text_of(const Idunno__ModelInfo *m, struct model_card *c, struct card_text *t)
{
    char err[200], mean[64], std[64];
    if (m->card[0] && card_parse_json(m->card, strlen(m->card), NULL, c, err, sizeof err) == 0) {
        snprintf(t->input, sizeof t->input, "%dx%d %s %s", c->height, c->width,
                 card_layout_name(c->layout), card_channels_name(c->channels));
        list3(mean, sizeof mean, c->mean, c->n_mean);
        list3(std, sizeof std, c->std, c->n_std);
        snprintf(t->prep, sizeof t->prep, "%s, scale %d, mean %s, std %s",
                 card_resize_name(c->resize), c->scale, mean, std);
        if (c->output == CARD_RAW)
            snprintf(t->output, sizeof t->output, "raw (%u values)", m->classes);
        else
            snprintf(t->output, sizeof t->output, "%s, top %d of %u", card_output_name(c->output),
                     c->top_k, m->classes);
        snprintf(t->labels, sizeof t->labels, "%zu", c->n_labels);
        return;
    }
    snprintf(t->input, sizeof t->input, "%ux%u", m->input_size, m->input_size);
    list3(mean, sizeof mean, m->mean, (int)(m->n_mean < 3 ? m->n_mean : 3));
    list3(std, sizeof std, m->std, (int)(m->n_std < 3 ? m->n_std : 3));
    snprintf(t->prep, sizeof t->prep, "crop (side %u), mean %s, std %s", m->resize, mean, std);
    snprintf(t->output, sizeof t->output, "logits, top %u of %u",
             m->classes < INFER_TOPK ? m->classes : INFER_TOPK, m->classes);
    snprintf(t->labels, sizeof t->labels, "0");
}

static void json_card(const Idunno__ModelInfo *m)
{
    if (m->card[0])
        cli_json_raw("card", m->card);
    else
        cli_json_raw("card", "null");
}

/* The kept versions of model `name` in l, oldest first. */
static void json_versions(const Idunno__ModelList *l, const char *name)
{
    cli_json_begin_array("versions");
    for (size_t i = 0; i < l->n_versions; i++) {
        const Idunno__ModelInfo *v = l->versions[i];
        if (strcmp(v->name, name) != 0)
            continue;
        char sha[65] = "";
        for (size_t k = 0; k < v->sha256.len && k < 32; k++)
            snprintf(sha + 2 * k, 3, "%02x", v->sha256.data[k]);
        cli_json_begin_object();
        cli_json_fields(&v->base, "version file blob size classes time_ms job");
        cli_json_str("sha256", sha);
        json_card(v);
        cli_json_end_object();
    }
    cli_json_end_array();
}

static void json_model(const Idunno__ModelList *l, const Idunno__ModelInfo *m)
{
    struct model_card c = {0};
    struct card_text t;
    card_text_of(m, &c, &t);
    cli_json_begin_object();
    cli_json_fields(&m->base, "name version file size input_size resize classes");
    json_card(m);
    cli_json_u64("labels", c.n_labels);
    json_versions(l, m->name);
    cli_json_end_object();
    card_free(&c);
}

/* The kept versions of a model, as a table: when each was trained, its file
 * and labels, and which one the model's job runs. */
static void print_versions(const Idunno__ModelList *l, const char *name)
{
    struct cli_table *t = cli_table_new(6, "VERSION", "TRAINED (UTC)", "FILE (BLOB)", "SIZE",
                                        "LABELS", "JOB");
    for (size_t i = 0; i < l->n_versions; i++) {
        const Idunno__ModelInfo *v = l->versions[i];
        if (strcmp(v->name, name) != 0)
            continue;
        struct model_card c = {0};
        struct card_text ct;
        card_text_of(v, &c, &ct);
        char ver[16], when[32] = "?", file[320], size[32], labels[96], job[32] = "-";
        time_t secs = (time_t)(v->time_ms / 1000);
        struct tm tm;
        if (gmtime_r(&secs, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(ver, sizeof ver, "%u", v->version);
        snprintf(file, sizeof file, "%s (%s)", v->file, v->blob);
        snprintf(size, sizeof size, "%.1f MB", (double)v->size / 1e6);
        size_t o = (size_t)snprintf(labels, sizeof labels, "%zu", c.n_labels);
        for (size_t k = 0; k < c.n_labels && k < 3 && o < sizeof labels; k++)
            o += (size_t)snprintf(labels + o, sizeof labels - o, "%s%s", k ? ", " : ": ",
                                  c.labels[k]);
        if (c.n_labels > 3 && o < sizeof labels)
            snprintf(labels + o, sizeof labels - o, ", ...");
        if (v->job)
            snprintf(job, sizeof job, "job %u runs it", v->job);
        cli_table_row(t, ver, when, file, size, labels, job);
        card_free(&c);
    }
    cli_table_print(t);
}

static void print_model(const Idunno__ModelInfo *m)
{
    struct model_card c = {0};
    struct card_text t;
    card_text_of(m, &c, &t);
    printf("model %s version %u: %s (%.1f MB), %u classes\n", m->name, m->version, m->file,
           (double)m->size / 1e6, m->classes);
    printf("  input:   %s\n  prepare: %s\n  output:  %s\n  labels:  %s", t.input, t.prep, t.output,
           t.labels);
    for (size_t i = 0; i < c.n_labels && i < 10; i++)
        printf("%s%s", i ? ", " : " (", c.labels[i]);
    printf("%s\n", c.n_labels > 10 ? ", ...)" : c.n_labels ? ")" : "");
    printf("  card:    %s\n", m->card[0] ? m->card : "(none: from the model's metadata)");
    card_free(&c);
}

static int cmd_models(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc > 2)
        return cli_usage_error(cmd, "takes at most a model name");
    const char *only = argc == 2 ? argv[1] : NULL;
    Idunno__Empty e = IDUNNO__EMPTY__INIT;
    Idunno__ModelList *l;
    int rc = cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_JOB_MODELS_REQ, &e.base,
                             &idunno__model_list__descriptor, &l);
    if (rc)
        return rc;
    const Idunno__ModelInfo *one = NULL;
    for (size_t i = 0; only && i < l->n_models; i++)
        if (strcmp(l->models[i]->name, only) == 0)
            one = l->models[i];
    if (only && !one) {
        idunno__model_list__free_unpacked(l, NULL);
        return cli_fail(CLI_USER_ERROR, "no model '%s' (idunno models lists them)", only);
    }
    if (one && ctx->json) {
        json_model(l, one);
        cli_json_done();
    } else if (one) {
        print_model(one);
        printf("versions (the latest %d are kept):\n", JOBS_MAX_VERSIONS);
        print_versions(l, one->name);
    } else if (ctx->json) {
        cli_json_begin_object();
        cli_json_begin_array("models");
        for (size_t i = 0; i < l->n_models; i++)
            json_model(l, l->models[i]);
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
    } else {
        struct cli_table *t = cli_table_new(7, "MODEL", "VERSION", "SIZE", "INPUT", "PREPARE",
                                            "OUTPUT", "LABELS");
        for (size_t i = 0; i < l->n_models; i++) {
            const Idunno__ModelInfo *m = l->models[i];
            struct model_card c = {0};
            struct card_text ct;
            card_text_of(m, &c, &ct);
            char size[32], version[16];
            snprintf(size, sizeof size, "%.1f MB", (double)m->size / 1e6);
            snprintf(version, sizeof version, "%u", m->version);
            cli_table_row(t, m->name, version, size, ct.input, ct.prep, ct.output, ct.labels);
            card_free(&c);
        }
        cli_table_print(t);
    }
    idunno__model_list__free_unpacked(l, NULL);
    return 0;
}
