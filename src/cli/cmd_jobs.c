/* cmd_jobs.c — IDunno's commands: jobs (launch,
 * inference, set-batch, set-model-version, set-max-queue-delay, stop, jobs) and what the seed report calls C1–C5:
 * qinfo (queries done and rate over the last 10 s), qjob (processing-time
 * statistics), set-batch, results, assign (workers per job and their share).
 * All of them go to the coordinator through the node given by -s. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/sha256.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"
#include "infer/infer.h"
#include "sched/jobs.h"

static int cmd_launch(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_inference(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_qinfo(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_qjob(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_set_batch(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_set_model_version(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_set_max_queue_delay(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_results(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_assign(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_jobs(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_stop(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_job_commands[] = {
    {"launch", "MODEL BATCH [--weight W] [--version N] [--online [--max-queue-delay US]]",
     "start a job running MODEL (its latest version, or version N), BATCH images per query; "
     "--online: its queries are MODEL's online requests (predict, /v2), up to BATCH images run "
     "together; --max-queue-delay: while some of them run, a request may wait up to US "
     "microseconds (2000 by default, 0 never, at most 1000000) for others to fill its batch",
     cmd_launch},
    {"inference", "MODEL DATASET",
     "queue every image under the SDFS prefix DATASET for MODEL's job", cmd_inference},
    {"qinfo", "[MODEL] [--watch]", "C1: queries processed and the query rate over the last 10 s",
     cmd_qinfo},
    {"qjob", "[MODEL]",
     "C2: processing time (dispatch to result): mean, std dev, median, p90/95/99", cmd_qjob},
    {"set-batch", "MODEL N", "C3: N images per query for queries not yet dispatched",
     cmd_set_batch},
    {"set-model-version", "MODEL N",
     "MODEL's job runs version N for the queries dispatched from now on (models MODEL lists them)",
     cmd_set_model_version},
    {"set-max-queue-delay", "MODEL US",
     "MODEL's online job holds a request up to US microseconds (0..1000000; 0: never) for "
     "others to fill its batch",
     cmd_set_max_queue_delay},
    {"results", "MODEL [LOCAL]", "C4: the job's results; with LOCAL, all of them as JSON lines",
     cmd_results},
    {"assign", "[--watch]", "C5: the workers serving each job now and their share over 10 s",
     cmd_assign},
    {"jobs", "[--histogram]",
     "every job: state, progress, rate, batch (an online job's with its queue delay: 8/500us), "
     "weight, workers with its model loaded "
     "(--json --histogram: each job's latency histogram too)",
     cmd_jobs},
    {"stop", "MODEL", "stop MODEL's job (its results stay)", cmd_stop},
    {NULL, NULL, NULL, NULL},
};

/* ---- helpers ---------------------------------------------------------------------------------- */

static int decode_fail(const struct cli_ctx *ctx)
{
    return cli_fail(CLI_CLUSTER_ERROR, "malformed answer from %s", ctx->server);
}

static void json_stats(const char *key, const Idunno__JobStats *s)
{
    cli_json_key_object(key);
    if (s) {
        cli_json_u64("count", s->count);
        cli_json_double("mean_ms", s->mean_ms);
        cli_json_double("stddev_ms", s->stddev_ms);
        cli_json_double("median_ms", s->median_ms);
        cli_json_double("p90_ms", s->p90_ms);
        cli_json_double("p95_ms", s->p95_ms);
        cli_json_double("p99_ms", s->p99_ms);
    }
    cli_json_end_object();
}

static void json_job(const Idunno__JobInfo *j)
{
    cli_json_begin_object();
    cli_json_u64("id", j->id);
    cli_json_str("model", j->model);
    cli_json_str("state", j->state);
    cli_json_str("kind", j->online ? "online" : "batch");
    cli_json_u64("version", j->version);
    if (j->error[0])
        cli_json_str("error", j->error);
    cli_json_u64("batch", j->batch);
    cli_json_u64("max_queue_delay_us", j->max_queue_delay_us);
    cli_json_double("weight", j->weight);
    cli_json_u64("images", j->images);
    cli_json_u64("images_done", j->images_done);
    cli_json_u64("queries_done", j->queries_done);
    cli_json_double("rate", j->rate);
    cli_json_u64("queued", j->queued);
    cli_json_u64("inflight", j->inflight);
    cli_json_u64("dispatched", j->dispatched);
    cli_json_u64("duplicates", j->duplicates);
    cli_json_u64("parts", j->parts);
    cli_json_u64("pending_results", j->pending_results);
    cli_json_double("first_dispatch_ms", j->first_dispatch_ms);
    cli_json_double("first_result_ms", j->first_result_ms);
    cli_json_double("first_start_ms", j->first_start_ms);
    cli_json_u64("workers_loaded", j->workers_loaded);
    cli_json_u64("workers_loading", j->workers_loading);
    json_stats("all", j->all);
    json_stats("window", j->window);
    cli_json_begin_array("shares");
    for (size_t i = 0; i < j->n_shares; i++) {
        cli_json_begin_object();
        cli_json_str("worker", j->shares[i]->worker);
        cli_json_u64("count", j->shares[i]->count);
        cli_json_double("fraction", j->shares[i]->fraction);
        cli_json_end_object();
    }
    cli_json_end_array();
    cli_json_begin_array("workers");
    for (size_t i = 0; i < j->n_workers; i++)
        cli_json_str(NULL, j->workers[i]);
    cli_json_end_array();
    if (j->n_histogram) {
        /* [lo_ms, hi_ms, count] per non-empty bucket (jobs --histogram) */
        cli_json_begin_array("histogram");
        for (size_t i = 0; i < j->n_histogram; i++) {
            cli_json_begin_array(NULL);
            cli_json_u64(NULL, j->histogram[i]->lo_ms);
            cli_json_u64(NULL, j->histogram[i]->hi_ms);
            cli_json_u64(NULL, j->histogram[i]->count);
            cli_json_end_array();
        }
        cli_json_end_array();
    }
    cli_json_end_object();
}

/* Asks for the jobs (all, or MODEL's); *out is freed by the caller. */
static int fetch_jobs(const struct cli_ctx *ctx, const char *model, int histogram,
                      Idunno__JobList **out)
{
    Idunno__JobQuery q = IDUNNO__JOB_QUERY__INIT;
    q.model = (char *)(model ? model : "");
    q.histogram = histogram != 0;
    return cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_JOB_LIST_REQ, &q.base,
                           &idunno__job_list__descriptor, out);
}

/* --watch: repeat every second until interrupted; the screen is redrawn. */
static int watch_loop(struct cli_ctx *ctx, int (*once)(struct cli_ctx *, const char *),
                      const char *arg, int watch)
{
    if (!watch)
        return once(ctx, arg);
    for (;;) {
        if (!ctx->json)
            printf("\033[H\033[2J");
        int rc = once(ctx, arg);
        fflush(stdout);
        if (rc)
            return rc;
        sleep(1);
    }
}

static int parse_watch(int argc, char **argv, const char **arg)
{
    int watch = 0;
    *arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--watch") == 0 || strcmp(argv[i], "-w") == 0)
            watch = 1;
        else if (!*arg)
            *arg = argv[i];
        else
            return -1;
    }
    return watch;
}

/* What a job command sends besides the model (JobLaunch's fields). */
struct job_args {
    uint32_t batch;
    double weight;
    uint32_t version;
    int online;
    uint32_t max_queue_delay_us;
};

static int job_command(struct cli_ctx *ctx, uint16_t type, const char *model,
                       const struct job_args *args, const char *verb)
{
    Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
    l.model = (char *)model;
    l.batch = args->batch;
    l.weight = args->weight;
    l.version = args->version;
    l.online = args->online;
    l.max_queue_delay_us = args->max_queue_delay_us;
    Idunno__JobInfo *j;
    int rc = cli_call_decode(ctx, type, &l.base, &idunno__job_info__descriptor, &j);
    if (rc)
        return rc;
    if (ctx->json) {
        json_job(j);
        cli_json_done();
    } else if (j->online) {
        printf("%s online job %u of %s: version %u, batch %u, max queue delay %u us, weight %g, "
               "%s, %llu requests answered\n",
               verb, j->id, j->model, j->version, j->batch, j->max_queue_delay_us, j->weight,
               j->state, (unsigned long long)j->queries_done);
    } else {
        printf("%s job %u of %s: version %u, batch %u, weight %g, %s, %llu of %llu images done\n",
               verb, j->id, j->model, j->version, j->batch, j->weight, j->state,
               (unsigned long long)j->images_done, (unsigned long long)j->images);
    }
    idunno__job_info__free_unpacked(j, NULL);
    return 0;
}

/* "done/queued" images, or "online" for an online job (no data set). */
static void job_images_text(const Idunno__JobInfo *j, char *out, size_t len)
{
    if (j->online)
        snprintf(out, len, "online");
    else
        snprintf(out, len, "%llu/%llu", (unsigned long long)j->images_done,
                 (unsigned long long)j->images);
}

/* ---- job commands --------------------------------------------------------------------------- */

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || !*s || v == 0 || v > 1000000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* A queue delay in microseconds: 0 up to the coordinator's bound (it checks
 * too; said here before anything is sent). Returns 0, or -1 with why, which
 * follows the option or command's name ("takes ..."). */
static int parse_queue_delay(const char *s, uint32_t *out, char *why, size_t len)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || !*s || *s == '-' || *s == '+') {
        snprintf(why, len, "takes a number of microseconds, not '%s'", s);
        return -1;
    }
    if (errno == ERANGE || v > JOBS_MAX_QUEUE_DELAY_US) {
        snprintf(why, len, "takes at most %d us (a second), not %s", JOBS_MAX_QUEUE_DELAY_US, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int cmd_launch(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    const char *pos[2];
    int npos = 0;
    struct job_args args = {.weight = 1.0};
    int delay_given = 0;
    char why[160], delay_why[180];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--online") == 0) {
            args.online = 1;
        } else if (strcmp(argv[i], "--version") == 0 && i + 1 < argc) {
            if (parse_u32(argv[++i], &args.version) < 0)
                return cli_usage_error(cmd, "--version takes a version number (1, 2, ...)");
        } else if (strcmp(argv[i], "--weight") == 0 && i + 1 < argc) {
            char *end;
            args.weight = strtod(argv[++i], &end);
            if (*end || !(args.weight > 0))
                return cli_usage_error(cmd, "--weight takes a positive number");
        } else if (strcmp(argv[i], "--max-queue-delay") == 0 && i + 1 < argc) {
            if (parse_queue_delay(argv[++i], &args.max_queue_delay_us, why, sizeof why) < 0) {
                snprintf(delay_why, sizeof delay_why, "--max-queue-delay %s", why);
                return cli_usage_error(cmd, delay_why);
            }
            delay_given = 1;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            return cli_usage_error(cmd, "takes a model and a batch size");
        }
    }
    if (npos != 2 || parse_u32(pos[1], &args.batch) < 0)
        return cli_usage_error(cmd, "takes a model and a batch size (a positive number)");
    /* Even 0: a batch job has no queue, so the option is a mistake there. */
    if (delay_given && !args.online)
        return cli_usage_error(cmd, "--max-queue-delay is for online jobs only (with --online)");
    if (args.online && !delay_given)
        args.max_queue_delay_us = JOBS_DEFAULT_QUEUE_DELAY_US;
    return job_command(ctx, IDUNNO__MSG_TYPE__MSG_JOB_LAUNCH_REQ, pos[0], &args, "launched");
}

static int cmd_set_batch(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    struct job_args args = {0};
    if (argc != 3 || parse_u32(argv[2], &args.batch) < 0)
        return cli_usage_error(cmd, "takes a model and a batch size (a positive number)");
    return job_command(ctx, IDUNNO__MSG_TYPE__MSG_JOB_SET_BATCH_REQ, argv[1], &args, "updated");
}

static int cmd_set_model_version(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    struct job_args args = {0};
    if (argc != 3 || parse_u32(argv[2], &args.version) < 0)
        return cli_usage_error(cmd, "takes a model and a version number (1, 2, ...)");
    return job_command(ctx, IDUNNO__MSG_TYPE__MSG_JOB_SET_VERSION_REQ, argv[1], &args, "updated");
}

static int cmd_set_max_queue_delay(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 3)
        return cli_usage_error(cmd, "takes a model and a delay in microseconds");
    struct job_args args = {0};
    char why[160];
    if (parse_queue_delay(argv[2], &args.max_queue_delay_us, why, sizeof why) < 0)
        return cli_usage_error(cmd, why);
    return job_command(ctx, IDUNNO__MSG_TYPE__MSG_JOB_SET_QUEUE_DELAY_REQ, argv[1], &args,
                       "updated");
}

static int cmd_stop(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 2)
        return cli_usage_error(cmd, "takes a model");
    struct job_args args = {0};
    return job_command(ctx, IDUNNO__MSG_TYPE__MSG_JOB_STOP_REQ, argv[1], &args, "stopped");
}

static int cmd_inference(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 3)
        return cli_usage_error(cmd, "takes a model and an SDFS data set (a prefix)");
    Idunno__JobInference q = IDUNNO__JOB_INFERENCE__INIT;
    q.model = argv[1];
    q.dataset = argv[2];
    struct cli_reply r;
    uint64_t t0 = id_now_us();
    int rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_JOB_INFERENCE_REQ, &q.base, &r);
    if (rc)
        return rc;
    double ms = (double)(id_now_us() - t0) / 1000.0;
    Idunno__JobInfo *j = idunno__job_info__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!j)
        return decode_fail(ctx);
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("model", j->model);
        cli_json_u64("job", j->id);
        cli_json_u64("images", j->images);
        cli_json_u64("images_done", j->images_done);
        cli_json_double("answer_ms", ms);
        cli_json_end_object();
        cli_json_done();
    } else {
        printf("queued %s for %s: the job has %llu images (%llu done), %u per query\n", argv[2],
               j->model, (unsigned long long)j->images, (unsigned long long)j->images_done,
               j->batch);
    }
    idunno__job_info__free_unpacked(j, NULL);
    return 0;
}

/* ---- C1, C2, C5, jobs ------------------------------------------------------------------------ */

static int qinfo_once(struct cli_ctx *ctx, const char *model)
{
    Idunno__JobList *l;
    int rc = fetch_jobs(ctx, model, 0, &l);
    if (rc)
        return rc;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_u64("now_ms", l->now_ms);
        cli_json_begin_array("jobs");
        for (size_t i = 0; i < l->n_jobs; i++) {
            const Idunno__JobInfo *j = l->jobs[i];
            cli_json_begin_object();
            cli_json_str("model", j->model);
            cli_json_u64("queries_done", j->queries_done);
            cli_json_u64("images_done", j->images_done);
            cli_json_u64("images", j->images);
            cli_json_double("rate", j->rate);
            cli_json_end_object();
        }
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
    } else {
        struct cli_table *t = cli_table_new(5, "MODEL", "QUERIES", "IMAGES", "RATE (q/s, 10 s)",
                                            "STATE");
        for (size_t i = 0; i < l->n_jobs; i++) {
            const Idunno__JobInfo *j = l->jobs[i];
            char q[24], im[48], rate[24];
            snprintf(q, sizeof q, "%llu", (unsigned long long)j->queries_done);
            job_images_text(j, im, sizeof im);
            snprintf(rate, sizeof rate, "%.2f", j->rate);
            cli_table_row(t, j->model, q, im, rate, j->state);
        }
        cli_table_print(t);
    }
    idunno__job_list__free_unpacked(l, NULL);
    return 0;
}

static int cmd_qinfo(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    const char *model;
    int watch = parse_watch(argc, argv, &model);
    if (watch < 0)
        return cli_usage_error(cmd, "takes at most one model");
    return watch_loop(ctx, qinfo_once, model, watch);
}

static void stats_row(struct cli_table *t, const char *model, const char *span,
                      const Idunno__JobStats *s)
{
    char c[24], mean[24], sd[24], med[24], p90[24], p95[24], p99[24];
    snprintf(c, sizeof c, "%llu", (unsigned long long)(s ? s->count : 0));
    snprintf(mean, sizeof mean, "%.1f", s ? s->mean_ms : 0);
    snprintf(sd, sizeof sd, "%.1f", s ? s->stddev_ms : 0);
    snprintf(med, sizeof med, "%.1f", s ? s->median_ms : 0);
    snprintf(p90, sizeof p90, "%.1f", s ? s->p90_ms : 0);
    snprintf(p95, sizeof p95, "%.1f", s ? s->p95_ms : 0);
    snprintf(p99, sizeof p99, "%.1f", s ? s->p99_ms : 0);
    cli_table_row(t, model, span, c, mean, sd, med, p90, p95, p99);
}

static int cmd_qjob(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc > 2)
        return cli_usage_error(cmd, "takes at most one model");
    Idunno__JobList *l;
    int rc = fetch_jobs(ctx, argc == 2 ? argv[1] : NULL, 0, &l);
    if (rc)
        return rc;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_begin_array("jobs");
        for (size_t i = 0; i < l->n_jobs; i++) {
            cli_json_begin_object();
            cli_json_str("model", l->jobs[i]->model);
            json_stats("all", l->jobs[i]->all);
            json_stats("last_10s", l->jobs[i]->window);
            cli_json_end_object();
        }
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
    } else {
        struct cli_table *t = cli_table_new(9, "MODEL", "SPAN", "QUERIES", "MEAN ms", "STDDEV",
                                            "MEDIAN", "P90", "P95", "P99");
        for (size_t i = 0; i < l->n_jobs; i++) {
            stats_row(t, l->jobs[i]->model, "all", l->jobs[i]->all);
            stats_row(t, l->jobs[i]->model, "10 s", l->jobs[i]->window);
        }
        cli_table_print(t);
    }
    idunno__job_list__free_unpacked(l, NULL);
    return 0;
}

/* {"jobs": [...]}: the --json answer of jobs and assign. */
static void json_jobs(const Idunno__JobList *l)
{
    cli_json_begin_object();
    cli_json_begin_array("jobs");
    for (size_t i = 0; i < l->n_jobs; i++)
        json_job(l->jobs[i]);
    cli_json_end_array();
    cli_json_end_object();
    cli_json_done();
}

static int assign_once(struct cli_ctx *ctx, const char *unused)
{
    (void)unused;
    Idunno__JobList *l;
    int rc = fetch_jobs(ctx, NULL, 0, &l);
    if (rc)
        return rc;
    if (ctx->json) {
        json_jobs(l);
    } else {
        struct cli_table *t = cli_table_new(4, "MODEL", "RUNNING ON NOW", "WORKER", "SHARE (10 s)");
        for (size_t i = 0; i < l->n_jobs; i++) {
            const Idunno__JobInfo *j = l->jobs[i];
            char now[512] = "";
            for (size_t k = 0; k < j->n_workers; k++) {
                size_t used = strlen(now);
                snprintf(now + used, sizeof now - used, "%s%s", k ? "," : "", j->workers[k]);
            }
            if (j->n_shares == 0)
                cli_table_row(t, j->model, now, "-", "-");
            for (size_t k = 0; k < j->n_shares; k++) {
                char share[48];
                snprintf(share, sizeof share, "%.0f%% (%llu %s)", 100.0 * j->shares[k]->fraction,
                         (unsigned long long)j->shares[k]->count,
                         j->shares[k]->count == 1 ? "query" : "queries");
                cli_table_row(t, k ? "" : j->model, k ? "" : now, j->shares[k]->worker, share);
            }
        }
        cli_table_print(t);
    }
    idunno__job_list__free_unpacked(l, NULL);
    return 0;
}

static int cmd_assign(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    const char *arg;
    int watch = parse_watch(argc, argv, &arg);
    if (watch < 0 || arg)
        return cli_usage_error(cmd, "takes only --watch");
    return watch_loop(ctx, assign_once, NULL, watch);
}

static int cmd_jobs(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    int histogram = argc == 2 && strcmp(argv[1], "--histogram") == 0;
    if (argc != 1 && !histogram)
        return cli_usage_error(cmd, "takes only --histogram");
    if (histogram && !ctx->json)
        return cli_usage_error(cmd,
                               "--histogram goes with --json (idunno --json jobs --histogram)");
    Idunno__JobList *l;
    int rc = fetch_jobs(ctx, NULL, histogram, &l);
    if (rc)
        return rc;
    if (ctx->json) {
        json_jobs(l);
    } else {
        struct cli_table *t = cli_table_new(11, "ID", "MODEL", "VERSION", "STATE", "BATCH",
                                            "WEIGHT", "IMAGES", "QUERIES", "RATE", "QUEUED/RUNNING",
                                            "LOADED");
        for (size_t i = 0; i < l->n_jobs; i++) {
            const Idunno__JobInfo *j = l->jobs[i];
            char id[16], ver[16], b[32], w[24], im[48], q[24], rate[24], qr[32], ld[32];
            snprintf(id, sizeof id, "%u", j->id);
            snprintf(ver, sizeof ver, "%u", j->version);
            /* An online job's batch with its queue delay, when it has one. */
            if (j->online && j->max_queue_delay_us)
                snprintf(b, sizeof b, "%u/%uus", j->batch, j->max_queue_delay_us);
            else
                snprintf(b, sizeof b, "%u", j->batch);
            snprintf(w, sizeof w, "%g", j->weight);
            job_images_text(j, im, sizeof im);
            snprintf(q, sizeof q, "%llu", (unsigned long long)j->queries_done);
            snprintf(rate, sizeof rate, "%.2f/s", j->rate);
            snprintf(qr, sizeof qr, "%llu/%llu", (unsigned long long)j->queued,
                     (unsigned long long)j->inflight);
            /* Workers with the job's model version loaded (+ loading now). */
            if (j->workers_loading)
                snprintf(ld, sizeof ld, "%u+%u", j->workers_loaded, j->workers_loading);
            else
                snprintf(ld, sizeof ld, "%u", j->workers_loaded);
            cli_table_row(t, id, j->model, ver, j->state, b, w, im, q, rate, qr, ld);
        }
        cli_table_print(t);
        for (size_t i = 0; i < l->n_jobs; i++)
            if (l->jobs[i]->error[0])
                printf("job %u (%s) was stopped: %s\n", l->jobs[i]->id, l->jobs[i]->model,
                       l->jobs[i]->error);
    }
    idunno__job_list__free_unpacked(l, NULL);
    return 0;
}

/* ---- C4: results ------------------------------------------------------------------------------ */

#define RESULTS_PREVIEW 10

/* Reads committed part i of res into a new buffer, checked against what was
 * committed: its SHA-256 and its count of lines, when the coordinator
 * recorded them. Each part's name is written once, so its latest version is
 * the committed one; bytes that differ are an error, never read. */
static int fetch_part(const struct cli_ctx *ctx, const Idunno__JobResults *res, size_t i,
                      char **out, size_t *out_len, char *err, size_t len)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/idunno-results-%d", (int)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, len, "cannot write %s: %s", tmp, strerror(errno));
        return ID_EIO;
    }
    unlink(tmp);
    int rc = cli_sdfs_get_to_fd(ctx, res->parts[i], fd, err, len);
    off_t size = rc == 0 ? lseek(fd, 0, SEEK_END) : -1;
    char *buf = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (rc == 0 && (!buf || pread(fd, buf, (size_t)size, 0) != size)) {
        snprintf(err, len, "cannot read it back: %s", strerror(errno));
        rc = ID_EIO;
    }
    close(fd);
    const Idunno__JobPart *info = i < res->n_part_info ? res->part_info[i] : NULL;
    if (rc == 0 && info && info->sha256.len == 32) {
        uint8_t sha[32];
        struct sha256 h;
        sha256_init(&h);
        sha256_update(&h, buf, (size_t)size);
        sha256_final(&h, sha);
        size_t lines = 0;
        for (off_t k = 0; k < size; k++)
            lines += buf[k] == '\n';
        if (memcmp(sha, info->sha256.data, 32) != 0 || (info->results && lines != info->results)) {
            snprintf(err, len, "its bytes are not the committed part (%zu lines, %u committed)",
                     lines, info->results);
            rc = ID_ECRC;
        }
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[size] = '\0';
    *out = buf;
    *out_len = (size_t)size;
    return 0;
}

/* Writes every result to `path`: the committed parts, then the pending ones.
 * *written: how many lines. */
static int write_results(const struct cli_ctx *ctx, const Idunno__JobResults *res, const char *path,
                         size_t *written)
{
    char tmp[1100], err[400];
    snprintf(tmp, sizeof tmp, "%s.idunno-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "we");
    if (!f)
        return cli_fail(CLI_USER_ERROR, "cannot write '%s': %s", path, strerror(errno));
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < res->n_parts; i++) {
        char *buf;
        size_t len;
        if (fetch_part(ctx, res, i, &buf, &len, err, sizeof err) < 0) {
            rc = cli_fail(CLI_CLUSTER_ERROR, "results: reading %s: %s", res->parts[i], err);
            break;
        }
        fwrite(buf, 1, len, f);
        for (size_t k = 0; k < len; k++)
            *written += buf[k] == '\n';
        free(buf);
    }
    /* The pending ones come rendered by the coordinator as the lines a part
     * holds, so the file has one shape throughout. */
    for (size_t i = 0; rc == 0 && i < res->n_lines; i++, ++*written)
        fprintf(f, "%s\n", res->lines[i]);
    if (fclose(f) != 0 && rc == 0)
        rc = cli_fail(CLI_CLUSTER_ERROR, "cannot write '%s'", path);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = cli_fail(CLI_USER_ERROR, "cannot write '%s': %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

/* One result of the preview: the image, its model version, and its top
 * entry (index, label, probability) or first raw values, or the error. */
struct result_row {
    char image[256];
    char version[16], top[160], p[96];
};

/* Reads the JSON string at s (after its opening quote) into out. */
static void json_string_at(const char *s, char *out, size_t len)
{
    size_t n = 0;
    for (; *s && *s != '"' && *s != '\n'; s++) {
        if (*s == '\\' && s[1] && s[1] != '\n')
            s++;
        if (n + 1 < len)
            out[n++] = *s;
    }
    out[n] = '\0';
}

/* Where key ("\"name\":") is in the line starting at line, or NULL. */
static const char *field_at(const char *line, const char *key)
{
    const char *nl = strchr(line, '\n'), *f = strstr(line, key);
    return f && (!nl || f < nl) ? f + strlen(key) : NULL;
}

/* A result line (infer/result.h's shape) as a preview row. */
static void row_of_line(const char *line, struct result_row *r)
{
    const char *im = field_at(line, "\"image\":\""), *ver = field_at(line, "\"version\":"),
               *idx = field_at(line, "\"top\":[{\"index\":"),
               *vals = field_at(line, "\"values\":["), *er = field_at(line, "\"error\":\"");
    json_string_at(im ? im : "?", r->image, sizeof r->image);
    snprintf(r->version, sizeof r->version, "%u", ver ? (unsigned)strtoul(ver, NULL, 10) : 0);
    const char *label = idx ? field_at(idx, "\"label\":") : NULL,
               *prob = idx ? field_at(idx, "\"probability\":") : NULL;
    if (idx && prob) {
        char name[96] = "";
        if (label && *label == '"')
            json_string_at(label + 1, name, sizeof name);
        snprintf(r->top, sizeof r->top, "%lu%s%s", strtoul(idx, NULL, 10), name[0] ? " " : "",
                 name);
        snprintf(r->p, sizeof r->p, "%.3f", strtod(prob, NULL));
    } else if (vals) {
        const char *end = strchr(vals, ']');
        int n = end ? (int)(end - vals) : 0;
        snprintf(r->top, sizeof r->top, "values");
        snprintf(r->p, sizeof r->p, "%.*s%s", n < 60 ? n : 60, vals, n > 60 ? "..." : "");
    } else {
        char text[64] = "?";
        if (er)
            json_string_at(er, text, sizeof text);
        snprintf(r->top, sizeof r->top, "-");
        snprintf(r->p, sizeof r->p, "error: %s", text);
    }
}

/* The job's first results, whatever its state: from its first parts, then
 * the pending ones. Returns how many (at most RESULTS_PREVIEW). */
static int preview(const struct cli_ctx *ctx, const Idunno__JobResults *res,
                   struct result_row rows[RESULTS_PREVIEW], size_t *n)
{
    char err[400];
    *n = 0;
    for (size_t i = 0; i < res->n_parts && *n < RESULTS_PREVIEW; i++) {
        char *buf;
        size_t len;
        if (fetch_part(ctx, res, i, &buf, &len, err, sizeof err) < 0)
            return cli_fail(CLI_CLUSTER_ERROR, "results: reading %s: %s", res->parts[i], err);
        for (const char *l = buf; *l && *n < RESULTS_PREVIEW; l = strchr(l, '\n') + 1) {
            row_of_line(l, &rows[(*n)++]);
            if (!strchr(l, '\n'))
                break;
        }
        free(buf);
    }
    for (size_t i = 0; i < res->n_lines && *n < RESULTS_PREVIEW; i++)
        row_of_line(res->lines[i], &rows[(*n)++]);
    return 0;
}

static void print_results(const struct cli_ctx *ctx, const Idunno__JobResults *res,
                          const char *path, size_t written, const struct result_row *rows, size_t n)
{
    const Idunno__JobInfo *j = res->job;
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("model", j->model);
        cli_json_u64("job", j->id);
        cli_json_u64("images", j->images);
        cli_json_u64("images_done", j->images_done);
        cli_json_u64("queries_done", j->queries_done);
        cli_json_u64("duplicates", j->duplicates);
        cli_json_begin_array("parts");
        for (size_t i = 0; i < res->n_parts; i++)
            cli_json_str(NULL, res->parts[i]);
        cli_json_end_array();
        cli_json_u64("pending_results", j->pending_results);
        if (path) {
            cli_json_str("file", path);
            cli_json_u64("results_written", written);
        } else {
            cli_json_begin_array("first");
            for (size_t i = 0; i < n; i++) {
                cli_json_begin_object();
                cli_json_str("image", rows[i].image);
                cli_json_str("version", rows[i].version);
                cli_json_str("top", rows[i].top);
                cli_json_str("p", rows[i].p);
                cli_json_end_object();
            }
            cli_json_end_array();
        }
        cli_json_end_object();
        cli_json_done();
        return;
    }
    printf("%s (job %u, %s): %llu of %llu images done in %llu queries; results in %zu SDFS "
           "part%s%s\n",
           j->model, j->id, j->state, (unsigned long long)j->images_done,
           (unsigned long long)j->images, (unsigned long long)j->queries_done, res->n_parts,
           res->n_parts == 1 ? "" : "s",
           j->pending_results ? " and the latest ones still at the coordinator" : "");
    if (path) {
        printf("wrote %zu results to %s\n", written, path);
        return;
    }
    if (n) {
        struct cli_table *t = cli_table_new(4, "IMAGE", "VERSION", "TOP", "P");
        for (size_t i = 0; i < n; i++)
            cli_table_row(t, rows[i].image, rows[i].version, rows[i].top, rows[i].p);
        printf("first results:\n");
        cli_table_print(t);
    } else {
        printf("no results yet\n");
    }
    printf("(idunno results %s FILE writes every result)\n", j->model);
}

static int cmd_results(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    if (argc != 2 && argc != 3)
        return cli_usage_error(cmd, "takes a model and optionally a local file");
    Idunno__JobQuery q = IDUNNO__JOB_QUERY__INIT;
    q.model = argv[1];
    q.max_results = argc == 3 ? 1000000 : RESULTS_PREVIEW;
    struct cli_reply r;
    int rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_JOB_RESULTS_REQ, &q.base, &r);
    if (rc)
        return rc;
    Idunno__JobResults *res = idunno__job_results__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!res || !res->job)
        return decode_fail(ctx);
    struct result_row rows[RESULTS_PREVIEW];
    size_t written = 0, n = 0;
    rc = argc == 3 ? write_results(ctx, res, argv[2], &written) : preview(ctx, res, rows, &n);
    if (rc == 0)
        print_results(ctx, res, argc == 3 ? argv[2] : NULL, written, rows, n);
    idunno__job_results__free_unpacked(res, NULL);
    return rc;
}
