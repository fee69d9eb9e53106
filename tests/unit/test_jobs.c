/* test_jobs.c — the replicated job state without I/O: model registration
 * and versions, launch/stop/relaunch, pins to versions, queued images, completions stored exactly once
 * (duplicates dropped and counted), statistics from the proposer's clock,
 * result parts, snapshots and restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "base/strbuf.h"
#include "ctl/sm.h"
#include "idunno.pb-c.h"
#include "sched/jobs.h"
#include "sched/qstats.h"

struct replica {
    struct sm sm;
    struct jobs *jobs;
};

static void replica_init(struct replica *r)
{
    sm_init(&r->sm);
    r->jobs = jobs_create();
    assert_non_null(r->jobs);
    assert_int_equal(sm_register(&r->sm, &jobs_sm_ops, r->jobs), 0);
}

static void replica_free(struct replica *r)
{
    jobs_destroy(r->jobs);
}

static int apply(struct replica *r, uint32_t type, const ProtobufCMessage *body, uint64_t time_ms)
{
    size_t n = protobuf_c_message_get_packed_size(body);
    uint8_t *buf = malloc(n ? n : 1);
    protobuf_c_message_pack(body, buf);
    struct sm_cmd cmd = {.type = type,
                         .version = 1,
                         .body = buf,
                         .len = n,
                         .origin = 1,
                         .seq = r->sm.applied + 1,
                         .time_ms = time_ms};
    void *entry;
    size_t len;
    assert_int_equal(sm_encode(&cmd, NULL, &entry, &len), 0);
    free(buf);
    struct sm_result res = {0};
    sm_apply_entry(&r->sm, entry, len, &res);
    free(entry);
    sm_result_clear(&res);
    return res.status;
}

static int add_model(struct replica *r, const char *name, uint32_t input)
{
    uint8_t sha[32] = {9};
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
    Idunno__ModelInfo m = IDUNNO__MODEL_INFO__INIT;
    m.name = (char *)name;
    m.file = "models/x.onnx";
    m.blob = "00000000000000aa";
    m.sha256.data = sha;
    m.sha256.len = 32;
    m.input_size = input;
    m.resize = input + 32;
    m.classes = 10;
    m.n_mean = m.n_std = 3;
    m.mean = mean;
    m.std = std;
    return apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_MODEL_ADD, &m.base, 1000);
}

static int job_cmd(struct replica *r, uint32_t type, const char *model, uint32_t batch,
                   double weight)
{
    Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
    l.model = (char *)model;
    l.batch = batch;
    l.weight = weight;
    return apply(r, type, &l.base, 2000);
}

static int queue_images(struct replica *r, const char *model, size_t n, const char *prefix)
{
    char **names = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        names[i] = malloc(64);
        snprintf(names[i], 64, "%s/img%zu.jpg", prefix, i);
    }
    Idunno__JobInference q = IDUNNO__JOB_INFERENCE__INIT;
    q.model = (char *)model;
    q.dataset = (char *)prefix;
    q.n_images = n;
    q.images = names;
    int rc = apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE, &q.base, 3000);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Completes images [first, first+n) of job as one query run by worker. */
static int complete(struct replica *r, uint32_t job, uint64_t query, uint32_t first, uint32_t n,
                    const char *worker, uint32_t duration, uint64_t now)
{
    Idunno__QueryResult *rows = calloc(n, sizeof *rows), **ptrs = calloc(n, sizeof *ptrs);
    uint32_t cls[5] = {1, 2, 3, 4, 5};
    float probs[5] = {0.5f, 0.2f, 0.1f, 0.1f, 0.1f};
    for (uint32_t i = 0; i < n; i++) {
        idunno__query_result__init(&rows[i]);
        rows[i].image = first + i;
        rows[i].n_classes = rows[i].n_probs = 5;
        rows[i].classes = cls;
        rows[i].probs = probs;
        ptrs[i] = &rows[i];
    }
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT;
    d.job = job;
    d.query = query;
    d.worker = (char *)worker;
    d.duration_ms = duration;
    d.n_results = n;
    d.results = ptrs;
    Idunno__QueryDone *dp = &d;
    Idunno__QueryDoneBatch b = IDUNNO__QUERY_DONE_BATCH__INIT;
    b.n_done = 1;
    b.done = &dp;
    int rc = apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, &b.base, now);
    free(rows);
    free(ptrs);
    return rc;
}

static void test_models(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(add_model(&r, "resnet50", 224), 0);
    assert_int_equal(add_model(&r, "bad name", 224), ID_EINVAL);
    assert_int_equal(add_model(&r, "tiny", 0), ID_EINVAL);
    assert_int_equal(jobs_model_count(r.jobs), 1);
    /* A second registration is the model's next version; the first stays. */
    assert_int_equal(add_model(&r, "resnet50", 299), 0);
    assert_int_equal(jobs_model_count(r.jobs), 1);
    assert_int_equal(jobs_model(r.jobs, "resnet50")->input_size, 299);
    assert_int_equal(jobs_model_version(r.jobs, "resnet50", 1)->input_size, 224);
    replica_free(&r);
}

static void test_launch_stop_relaunch(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    uint32_t L = IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH;
    assert_int_equal(job_cmd(&r, L, "tiny", 4, 1), ID_ENOTFOUND); /* no such model */
    add_model(&r, "tiny", 32);
    assert_int_equal(job_cmd(&r, L, "tiny", 0, 1), ID_EINVAL);
    assert_int_equal(job_cmd(&r, L, "tiny", JOBS_MAX_BATCH + 1, 1), ID_EINVAL);
    assert_int_equal(job_cmd(&r, L, "tiny", 4, -1), ID_EINVAL);
    assert_int_equal(job_cmd(&r, L, "tiny", 4, 0), 0); /* weight 0 means 1 */
    assert_true(jobs_of_model(r.jobs, "tiny")->weight == 1.0);
    assert_int_equal(job_cmd(&r, L, "tiny", 4, 1), ID_EEXIST);
    assert_int_equal(queue_images(&r, "tiny", 10, "set"), 0);
    assert_int_equal(queue_images(&r, "nope", 10, "set"), ID_ENOTFOUND);
    assert_int_equal(job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_BATCH, "tiny", 8, 0), 0);
    assert_int_equal(jobs_of_model(r.jobs, "tiny")->batch, 8);
    assert_int_equal(job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, "tiny", 0, 0), 0);
    assert_int_equal(job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, "tiny", 0, 0),
                     ID_ENOTFOUND);
    assert_int_equal(queue_images(&r, "tiny", 10, "set"), ID_ENOTFOUND); /* stopped */
    /* A relaunch replaces the stopped job with a new one. */
    assert_int_equal(job_cmd(&r, L, "tiny", 2, 3), 0);
    struct job_rec *job = jobs_of_model(r.jobs, "tiny");
    assert_int_equal(job->id, 2);
    assert_int_equal(job->n_images, 0);
    assert_int_equal(jobs_count(r.jobs), 1);
    /* Bad image names are refused as a whole. */
    Idunno__JobInference q = IDUNNO__JOB_INFERENCE__INIT;
    char *names[] = {"ok/a.jpg", "../etc/passwd"};
    q.model = "tiny";
    q.n_images = 2;
    q.images = names;
    assert_int_equal(apply(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE, &q.base, 1),
                     ID_EINVAL);
    assert_int_equal(job->n_images, 0);
    replica_free(&r);
}

static void test_results_exactly_once(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    add_model(&r, "tiny", 32);
    job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, "tiny", 4, 1);
    queue_images(&r, "tiny", 12, "set");
    struct job_rec *job = jobs_of_model(r.jobs, "tiny");
    assert_int_equal(complete(&r, job->id, 1, 0, 4, "w1", 100, 10000), 0);
    assert_int_equal(complete(&r, job->id, 2, 4, 4, "w2", 300, 10500), 0);
    /* Query 1 ran again elsewhere (requeued after a false alarm): dropped. */
    assert_int_equal(complete(&r, job->id, 1, 0, 4, "w3", 120, 10600), 0);
    /* A query overlapping done and new images keeps only the new ones. */
    assert_int_equal(complete(&r, job->id, 7, 6, 4, "w1", 200, 11000), 0);
    assert_int_equal(job->n_done, 10);
    assert_int_equal(job->n_pending, 10);
    assert_int_equal(job->duplicates, 4 + 2);
    assert_int_equal(job->queries_done, 3);
    for (size_t i = 0; i < 10; i++)
        assert_true(job_image_done(job, i));
    assert_false(job_image_done(job, 10));
    /* Statistics use the command's clock: three queries in the window. */
    struct qstats_summary s;
    qstats_all(job->stats, &s);
    assert_int_equal(s.count, 3);
    assert_true(s.mean_ms > 199.0 && s.mean_ms < 201.0);
    /* Images beyond the job's are ignored; an unknown job is ignored. */
    assert_int_equal(complete(&r, job->id, 8, 12, 2, "w1", 10, 12000), 0);
    assert_int_equal(complete(&r, 99, 9, 0, 2, "w1", 10, 12000), 0);
    assert_int_equal(job->n_done, 10);
    replica_free(&r);
}

static int flushed_as(struct replica *r, uint32_t job, uint64_t part, uint32_t n, const char *file)
{
    Idunno__JobFlushed f = IDUNNO__JOB_FLUSHED__INIT;
    f.job = job;
    f.part = part;
    f.results = n;
    f.file = (char *)file;
    return apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_FLUSHED, &f.base, 20000);
}

/* Part `part` of job 1 of model tiny as written in term 2 (sequence 1). */
static int flushed(struct replica *r, uint32_t job, uint64_t part, uint32_t n)
{
    char file[128];
    snprintf(file, sizeof file, "results/tiny/job%u/part-%06llu-t2-1.jsonl", job,
             (unsigned long long)part);
    return flushed_as(r, job, part, n, file);
}

static void test_parts(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    add_model(&r, "tiny", 32);
    job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, "tiny", 4, 1);
    queue_images(&r, "tiny", 8, "set");
    struct job_rec *job = jobs_of_model(r.jobs, "tiny");
    complete(&r, job->id, 1, 0, 8, "w1", 100, 10000);
    assert_int_equal(flushed(&r, job->id, 2, 3), ID_EINVAL); /* out of order */
    assert_int_equal(flushed(&r, job->id, 1, 9), ID_EINVAL); /* more than pending */
    assert_int_equal(flushed(&r, job->id, 1, 3), 0);
    assert_int_equal(job->n_pending, 5);
    assert_int_equal(job->pending[0].image, 3);
    assert_int_equal(flushed(&r, job->id, 1, 3), 0); /* a retry: nothing more removed */
    assert_int_equal(job->n_pending, 5);
    assert_int_equal(job->parts, 1);
    char name[128];
    jobs_part_name(job, 1, name, sizeof name);
    assert_string_equal(name, "results/tiny/job1/part-000001-t2-1.jsonl");
    jobs_part_name(job, 2, name, sizeof name); /* not committed: no name */
    assert_string_equal(name, "");
    /* A part's file must be named for its job and part. */
    assert_int_equal(flushed_as(&r, job->id, 2, 1, "results/x"), ID_EINVAL);
    assert_int_equal(flushed_as(&r, job->id, 2, 1, "results/tiny/job1/part-000003-t2-2.jsonl"),
                     ID_EINVAL);
    assert_int_equal(flushed_as(&r, job->id, 2, 1, "results/big/job1/part-000002-t2-2.jsonl"),
                     ID_EINVAL);
    assert_int_equal(flushed_as(&r, job->id, 2, 1, "results/tiny/job2/part-000002-t2-2.jsonl"),
                     ID_EINVAL);
    assert_int_equal(job->parts, 1);
    /* Commands of earlier versions: the name parts had then, or none at all. */
    assert_int_equal(flushed_as(&r, job->id, 2, 1, "results/tiny/job1/part-000002.jsonl"), 0);
    assert_int_equal(flushed_as(&r, job->id, 3, 1, ""), 0);
    jobs_part_name(job, 3, name, sizeof name);
    assert_string_equal(name, "results/tiny/job1/part-000003.jsonl");
    assert_int_equal(flushed_as(&r, job->id, 3, 1, ""), 0); /* its retry */
    assert_int_equal(job->n_pending, 3);
    replica_free(&r);
}

/* Successive coordinators write the same part: the first JOB_FLUSHED
 * committed for it names its file for good, and no other write of it is
 * ever taken for it. Before, every write of part P had the same name, the
 * later JOB_FLUSHED counted as a retry, and `results` read whichever version
 * of the name was newest: a deposed coordinator's shorter part lost the
 * results between the two. */
static void test_deposed_part_never_named(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    add_model(&r, "tiny", 32);
    job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, "tiny", 4, 1);
    queue_images(&r, "tiny", 40, "set");
    struct job_rec *job = jobs_of_model(r.jobs, "tiny");
    complete(&r, job->id, 1, 0, 24, "w1", 100, 10000);
    /* Term 5 wrote part 1 with 24 results and committed it; the deposed
     * coordinator of term 4 had written 8 and proposes them late. */
    const char *t5 = "results/tiny/job1/part-000001-t5-3.jsonl";
    const char *t4 = "results/tiny/job1/part-000001-t4-9.jsonl";
    assert_int_equal(flushed_as(&r, job->id, 1, 24, t5), 0);
    assert_int_equal(flushed_as(&r, job->id, 1, 8, t4), ID_EEXIST);
    assert_int_equal(job->parts, 1);
    assert_int_equal(job->n_pending, 0);
    char name[128];
    jobs_part_name(job, 1, name, sizeof name);
    assert_string_equal(name, t5);
    /* And the other way round: the 8 committed first, the 24 rejected, and
     * the 16 after them still pending for the next part. */
    complete(&r, job->id, 2, 24, 16, "w1", 100, 11000);
    assert_int_equal(flushed_as(&r, job->id, 2, 8, "results/tiny/job1/part-000002-t6-1.jsonl"), 0);
    assert_int_equal(flushed_as(&r, job->id, 2, 16, "results/tiny/job1/part-000002-t7-1.jsonl"),
                     ID_EEXIST);
    assert_int_equal(job->n_pending, 8);
    assert_int_equal(job->pending[0].image, 32);
    jobs_part_name(job, 2, name, sizeof name);
    assert_string_equal(name, "results/tiny/job1/part-000002-t6-1.jsonl");
    replica_free(&r);
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    add_model(&a, "tiny", 32);
    add_model(&a, "big", 224);
    job_cmd(&a, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, "tiny", 4, 1);
    job_cmd(&a, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, "big", 2, 2);
    queue_images(&a, "tiny", 30, "s1");
    queue_images(&a, "big", 17, "s2");
    struct job_rec *job = jobs_of_model(a.jobs, "tiny");
    complete(&a, job->id, 1, 0, 4, "w1", 100, 10000);
    complete(&a, job->id, 2, 8, 4, "w2", 140, 10400);
    flushed(&a, job->id, 1, 4);
    job_cmd(&a, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, "big", 0, 0);
    void *snap;
    size_t len;
    assert_int_equal(sm_snapshot(&a.sm, NULL, &snap, &len), 0);
    assert_int_equal(sm_restore(&b.sm, snap, len), 0);
    free(snap);
    char da[65], db[65];
    sm_digest_hex(&a.sm, da);
    sm_digest_hex(&b.sm, db);
    assert_string_equal(da, db);
    struct job_rec *jb = jobs_of_model(b.jobs, "tiny");
    assert_int_equal(jb->n_done, 8);
    assert_int_equal(jb->n_pending, 4);
    assert_true(jobs_of_model(b.jobs, "big")->stopped);
    char name[128];
    jobs_part_name(jb, 1, name, sizeof name);
    assert_string_equal(name, "results/tiny/job1/part-000001-t2-1.jsonl");
    assert_int_equal(jobs_part(jb, 1)->results, 4);
    /* Both continue identically; duplicates are still recognised. */
    complete(&a, job->id, 3, 8, 4, "w3", 10, 11000);
    complete(&b, jb->id, 3, 8, 4, "w3", 10, 11000);
    assert_int_equal(jb->duplicates, 4);
    sm_digest_hex(&a.sm, da);
    sm_digest_hex(&b.sm, db);
    assert_string_equal(da, db);
    /* Garbage and unknown layouts leave the state alone. */
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, b.jobs, 1, (const uint8_t *)"\x0a\xff\xff", 3),
                     ID_EPROTO);
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, b.jobs, 7, (const uint8_t *)"", 0), ID_EVERSION);
    assert_int_equal(jobs_of_model(b.jobs, "tiny")->n_done, 8);
    replica_free(&a);
    replica_free(&b);
}

/* A snapshot of an earlier version counts parts but lists none: they had the
 * names of then. A list that does not match the count is refused. */
static void test_snapshot_without_part_list(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    add_model(&a, "tiny", 32);
    job_cmd(&a, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, "tiny", 4, 1);
    queue_images(&a, "tiny", 8, "s1");
    struct job_rec *job = jobs_of_model(a.jobs, "tiny");
    complete(&a, job->id, 1, 0, 8, "w1", 100, 10000);
    assert_int_equal(flushed(&a, job->id, 1, 4), 0);
    assert_int_equal(flushed(&a, job->id, 2, 2), 0);
    struct sm_buf buf = {0};
    assert_int_equal(jobs_sm_ops.snapshot(a.jobs, &buf), 0);
    Idunno__JobsState *st = idunno__jobs_state__unpack(NULL, buf.len, buf.data);
    assert_non_null(st);
    assert_int_equal(st->jobs[0]->n_part_list, 2);
    st->jobs[0]->n_part_list = 1; /* does not match parts = 2 */
    uint8_t packed[4096];
    size_t n = idunno__jobs_state__pack(st, packed);
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, b.jobs, 1, packed, n), ID_EPROTO);
    st->jobs[0]->n_part_list = 0; /* as earlier versions wrote it */
    n = idunno__jobs_state__pack(st, packed);
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, b.jobs, 1, packed, n), 0);
    struct job_rec *jb = jobs_of_model(b.jobs, "tiny");
    char name[128];
    jobs_part_name(jb, 2, name, sizeof name);
    assert_string_equal(name, "results/tiny/job1/part-000002.jsonl");
    assert_int_equal(jobs_part(jb, 2)->results, 0);
    assert_false(jobs_part(jb, 2)->has_sha256);
    assert_int_equal(jb->n_pending, 2);
    st->jobs[0]->n_part_list = 2; /* so that all of it is freed */
    idunno__jobs_state__free_unpacked(st, NULL);
    free(buf.data);
    replica_free(&a);
    replica_free(&b);
}

/* ---- cards, versions and result shapes -------------------------------------------------------- */

#define CARD2                                                                                 \
    "{\"size\":\"48x192\",\"layout\":\"nchw\",\"channels\":\"rgb\",\"scale\":1,"              \
    "\"mean\":[0.5,0.5,0.5],\"std\":[0.5,0.5,0.5],\"resize\":\"stretch\",\"resize_side\":55," \
    "\"pad_value\":0,\"output\":\"probabilities\",\"output_name\":\"probs\",\"top_k\":2,"     \
    "\"labels\":[\"cat\",\"dog\"]}"

static int add_card_model(struct replica *r, const char *name, uint32_t classes, const char *card)
{
    uint8_t sha[32] = {9};
    Idunno__ModelInfo m = IDUNNO__MODEL_INFO__INIT;
    m.name = (char *)name;
    m.file = "models/x.onnx";
    m.blob = "00000000000000aa";
    m.sha256.data = sha;
    m.sha256.len = 32;
    m.classes = classes;
    m.card = (char *)card;
    m.version = 77; /* the caller's version is never taken */
    return apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_MODEL_ADD, &m.base, 1000);
}

/* One query of three images: a 2-entry top-k, a raw result of three values,
 * an error; each from model version `version`. */
static int complete_shapes(struct replica *r, uint32_t job, uint32_t version)
{
    Idunno__QueryResult rows[3], *ptrs[3];
    uint32_t cls[2] = {1, 0};
    float probs[2] = {0.75f, 0.25f}, values[3] = {-1.5f, 2.0f, 1000.0f};
    for (int i = 0; i < 3; i++) {
        idunno__query_result__init(&rows[i]);
        rows[i].image = (uint32_t)i;
        rows[i].version = version;
        ptrs[i] = &rows[i];
    }
    rows[0].n_classes = rows[0].n_probs = 2;
    rows[0].classes = cls;
    rows[0].probs = probs;
    rows[1].n_values = 3;
    rows[1].values = values;
    rows[2].error = "cannot decode";
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT, *dp = &d;
    d.job = job;
    d.query = 1;
    d.worker = "w1";
    d.n_results = 3;
    d.results = ptrs;
    Idunno__QueryDoneBatch b = IDUNNO__QUERY_DONE_BATCH__INIT;
    b.n_done = 1;
    b.done = &dp;
    return apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, &b.base, 5000);
}

static void test_card_stored(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    assert_int_equal(add_card_model(&a, "dyn", 2, CARD2), 0);
    const struct model_rec *m = jobs_model(a.jobs, "dyn");
    assert_int_equal(m->version, 1);
    assert_int_equal(m->card.height, 48);
    assert_int_equal(m->card.width, 192);
    assert_int_equal(m->card.n_labels, 2);
    assert_string_equal(m->card.labels[1], "dog");
    assert_int_equal(m->input_size, 0); /* not square */
    /* Training the name again makes the next version. */
    assert_int_equal(add_card_model(&a, "dyn", 2, CARD2), 0);
    assert_int_equal(jobs_model(a.jobs, "dyn")->version, 2);
    /* Cards that do not fit the record, or are no card, are refused. */
    assert_int_equal(add_card_model(&a, "x", 3, CARD2), ID_EINVAL); /* 2 labels, 3 classes */
    assert_int_equal(add_card_model(&a, "x", 1, CARD2), ID_EINVAL); /* top_k 2 > 1 class */
    assert_int_equal(add_card_model(&a, "x", 2, "{\"size\":"), ID_EINVAL);
    assert_int_equal(add_card_model(&a, "x", 2, "{\"colour\":\"red\"}"), ID_EINVAL);
    assert_int_equal(add_card_model(&a, "x", 100, "{\"size\":\"8x8\",\"output\":\"raw\"}"),
                     ID_EINVAL); /* raw output wider than a result */
    assert_null(jobs_model(a.jobs, "x"));
    /* The card and the version survive a snapshot. */
    void *snap;
    size_t len;
    assert_int_equal(sm_snapshot(&a.sm, NULL, &snap, &len), 0);
    assert_int_equal(sm_restore(&b.sm, snap, len), 0);
    free(snap);
    const struct model_rec *mb = jobs_model(b.jobs, "dyn");
    assert_non_null(mb);
    assert_int_equal(mb->version, 2);
    assert_string_equal(mb->card_json, jobs_model(a.jobs, "dyn")->card_json);
    assert_true(card_equal(&mb->card, &jobs_model(a.jobs, "dyn")->card));
    char da[65], db[65];
    sm_digest_hex(&a.sm, da);
    sm_digest_hex(&b.sm, db);
    assert_string_equal(da, db);
    replica_free(&a);
    replica_free(&b);
}

#define CARD2B                                                                              \
    "{\"size\":\"48x192\",\"resize\":\"stretch\",\"output\":\"probabilities\",\"top_k\":2," \
    "\"labels\":[\"ant\",\"bee\"]}"

/* JOB_LAUNCH (version: 0, the latest) or JOB_SET_VERSION. */
static int version_cmd(struct replica *r, uint32_t type, const char *model, uint32_t version)
{
    Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
    l.model = (char *)model;
    l.batch = 4;
    l.version = version;
    return apply(r, type, &l.base, 2000);
}

#define LAUNCH IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH
#define SET_VERSION IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_SET_VERSION

/* The kept versions of a model, as "1,2,3". */
static const char *kept(const struct replica *r, const char *model)
{
    static char out[64];
    size_t n, o = 0;
    const struct model_rec *v = jobs_model_versions(r->jobs, model, &n);
    out[0] = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%u", i ? "," : "", v[i].version);
    return out;
}

static void test_versions_kept_and_bounded(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2B), 0);
    assert_string_equal(kept(&r, "dyn"), "1,2");
    /* Each version keeps its own card. */
    assert_string_equal(jobs_model_version(r.jobs, "dyn", 1)->card.labels[0], "cat");
    assert_string_equal(jobs_model_version(r.jobs, "dyn", 2)->card.labels[0], "ant");
    assert_int_equal(jobs_model(r.jobs, "dyn")->version, 2);
    assert_null(jobs_model_version(r.jobs, "dyn", 3));
    /* No job: the oldest go first, JOBS_MAX_VERSIONS stay. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_int_equal(JOBS_MAX_VERSIONS, 5);
    assert_string_equal(kept(&r, "dyn"), "3,4,5,6,7");
    /* A job pinned to the oldest keeps it: the next oldest goes instead. */
    assert_int_equal(version_cmd(&r, LAUNCH, "dyn", 3), 0);
    assert_int_equal(jobs_of_model(r.jobs, "dyn")->version, 3);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_string_equal(kept(&r, "dyn"), "3,5,6,7,8");
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_string_equal(kept(&r, "dyn"), "3,6,7,8,9");
    /* A pin in the middle is kept too; a stopped job still pins (its
     * pending results are labelled by its version's card). */
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 7), 0);
    assert_int_equal(job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, "dyn", 0, 0), 0);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_string_equal(kept(&r, "dyn"), "6,7,8,9,10");
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_string_equal(kept(&r, "dyn"), "7,9,10,11,12");
    replica_free(&r);
}

static void test_pins_and_set_version(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    /* launch pins the latest version; a later train does not move it. */
    assert_int_equal(version_cmd(&r, LAUNCH, "dyn", 0), 0);
    struct job_rec *job = jobs_of_model(r.jobs, "dyn");
    assert_int_equal(job->version, 1);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2B), 0);
    assert_int_equal(job->version, 1);
    queue_images(&r, "dyn", 6, "s");
    /* Images 0..2 run on version 1, then the job is re-pinned; version 1's
     * answers are still labelled with its card, and version 2's with its. */
    assert_int_equal(complete_shapes(&r, job->id, 1), 0);
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 2), 0);
    assert_int_equal(job->version, 2);
    assert_int_equal(complete_shapes(&r, job->id, 2), 0); /* the same images again */
    assert_int_equal(job->duplicates, 3);                 /* dropped: exactly once */
    Idunno__QueryResult row = IDUNNO__QUERY_RESULT__INIT, *rp = &row;
    uint32_t cls[2] = {0, 1};
    float probs[2] = {0.9f, 0.1f};
    row.image = 3;
    row.version = 2;
    row.n_classes = row.n_probs = 2;
    row.classes = cls;
    row.probs = probs;
    Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT, *dp = &d;
    d.job = job->id;
    d.query = 2;
    d.worker = "w1";
    d.n_results = 1;
    d.results = &rp;
    Idunno__QueryDoneBatch b = IDUNNO__QUERY_DONE_BATCH__INIT;
    b.n_done = 1;
    b.done = &dp;
    assert_int_equal(apply(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, &b.base, 6000), 0);
    struct strbuf out = STRBUF_INIT;
    size_t n;
    assert_int_equal(jobs_render_results(r.jobs, job, 10, 1u << 20, &out, &n), 0);
    assert_int_equal(n, 4);
    const char *text = strbuf_str(&out);
    assert_non_null(strstr(text, "\"image\":\"s/img0.jpg\",\"model\":\"dyn\",\"version\":1,"
                                 "\"top\":[{\"index\":1,\"label\":\"dog\""));
    assert_non_null(strstr(text, "\"image\":\"s/img3.jpg\",\"model\":\"dyn\",\"version\":2,"
                                 "\"top\":[{\"index\":0,\"label\":\"ant\""));
    strbuf_free(&out);
    /* Back to version 1 is allowed: any kept version. */
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 1), 0);
    assert_int_equal(job->version, 1);
    /* A relaunch pins what it is asked for. */
    assert_int_equal(job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, "dyn", 0, 0), 0);
    assert_int_equal(version_cmd(&r, LAUNCH, "dyn", 2), 0);
    assert_int_equal(jobs_of_model(r.jobs, "dyn")->version, 2);
    replica_free(&r);
}

static void test_version_refusals(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_int_equal(add_card_model(&r, "dyn", 2, CARD2B), 0);
    /* launch of a version never made, or of no model */
    assert_int_equal(version_cmd(&r, LAUNCH, "dyn", 3), ID_ENOTFOUND);
    assert_int_equal(version_cmd(&r, LAUNCH, "none", 1), ID_ENOTFOUND);
    assert_null(jobs_of_model(r.jobs, "dyn"));
    /* set-model-version of a model without a job, or a stopped one */
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 1), ID_ENOTFOUND);
    assert_int_equal(version_cmd(&r, SET_VERSION, "none", 1), ID_ENOTFOUND);
    assert_int_equal(version_cmd(&r, LAUNCH, "dyn", 1), 0);
    /* of an unknown version, of 0, of a dropped one */
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 3), ID_ENOTFOUND);
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 0), ID_ENOTFOUND);
    for (int i = 0; i < 5; i++)
        assert_int_equal(add_card_model(&r, "dyn", 2, CARD2), 0);
    assert_string_equal(kept(&r, "dyn"), "1,4,5,6,7");
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 2), ID_ENOTFOUND);
    assert_int_equal(jobs_of_model(r.jobs, "dyn")->version, 1); /* unchanged by a refusal */
    assert_int_equal(job_cmd(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, "dyn", 0, 0), 0);
    assert_int_equal(version_cmd(&r, SET_VERSION, "dyn", 4), ID_ENOTFOUND);
    replica_free(&r);
}

/* Versions and pins survive a snapshot; a snapshot written before versions
 * (one record per model, no pins) restores with each job on its model's
 * only version; an inconsistent one is refused. */
static void test_versions_snapshot(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    assert_int_equal(add_card_model(&a, "dyn", 2, CARD2), 0);
    assert_int_equal(add_card_model(&a, "dyn", 2, CARD2B), 0);
    assert_int_equal(add_card_model(&a, "dyn", 2, CARD2), 0);
    assert_int_equal(add_model(&a, "tiny", 32), 0);
    assert_int_equal(version_cmd(&a, LAUNCH, "dyn", 2), 0);
    assert_int_equal(version_cmd(&a, LAUNCH, "tiny", 0), 0);
    void *snap;
    size_t len;
    assert_int_equal(sm_snapshot(&a.sm, NULL, &snap, &len), 0);
    assert_int_equal(sm_restore(&b.sm, snap, len), 0);
    free(snap);
    assert_string_equal(kept(&b, "dyn"), "1,2,3");
    assert_string_equal(kept(&b, "tiny"), "1");
    assert_int_equal(jobs_of_model(b.jobs, "dyn")->version, 2);
    assert_string_equal(jobs_model_version(b.jobs, "dyn", 2)->card.labels[1], "bee");
    char da[65], db[65];
    sm_digest_hex(&a.sm, da);
    sm_digest_hex(&b.sm, db);
    assert_string_equal(da, db);

    struct sm_buf buf = {0};
    assert_int_equal(jobs_sm_ops.snapshot(a.jobs, &buf), 0);
    Idunno__JobsState *st = idunno__jobs_state__unpack(NULL, buf.len, buf.data);
    assert_non_null(st);
    assert_int_equal(st->n_models, 2);
    assert_int_equal(st->n_earlier, 2);
    uint8_t packed[8192];
    struct replica c;
    replica_init(&c);
    /* A pin to a version not kept is refused. */
    uint32_t pin = st->jobs[0]->version;
    st->jobs[0]->version = 9;
    size_t n = idunno__jobs_state__pack(st, packed);
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, c.jobs, 1, packed, n), ID_EPROTO);
    st->jobs[0]->version = pin;
    /* An earlier version of no model, or newer than the latest, is refused. */
    char *name = st->earlier[0]->name;
    st->earlier[0]->name = "nobody";
    n = idunno__jobs_state__pack(st, packed);
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, c.jobs, 1, packed, n), ID_EPROTO);
    st->earlier[0]->name = name;
    uint32_t v0 = st->earlier[0]->version;
    st->earlier[0]->version = 4;
    n = idunno__jobs_state__pack(st, packed);
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, c.jobs, 1, packed, n), ID_EPROTO);
    st->earlier[0]->version = v0;
    /* As written before versions: no earlier versions, no pins. */
    size_t n_earlier = st->n_earlier;
    st->n_earlier = 0;
    for (size_t i = 0; i < st->n_jobs; i++)
        st->jobs[i]->version = 0;
    n = idunno__jobs_state__pack(st, packed);
    assert_int_equal(sm_ops_restore(&jobs_sm_ops, c.jobs, 1, packed, n), 0);
    assert_string_equal(kept(&c, "dyn"), "3");
    assert_int_equal(jobs_of_model(c.jobs, "dyn")->version, 3);
    assert_int_equal(jobs_of_model(c.jobs, "tiny")->version, 1);
    st->n_earlier = n_earlier;
    idunno__jobs_state__free_unpacked(st, NULL);
    free(buf.data);
    replica_free(&a);
    replica_free(&b);
    replica_free(&c);
}

static void test_result_shapes(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    assert_int_equal(add_card_model(&a, "dyn", 2, CARD2), 0);
    job_cmd(&a, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, "dyn", 4, 1);
    queue_images(&a, "dyn", 3, "s");
    struct job_rec *job = jobs_of_model(a.jobs, "dyn");
    assert_int_equal(complete_shapes(&a, job->id, 1), 0);
    assert_int_equal(job->n_pending, 3);
    assert_int_equal(job->pending[0].k, 2);
    assert_int_equal(job->pending[1].raw, 1);
    struct strbuf out = STRBUF_INIT;
    size_t n;
    assert_int_equal(jobs_render_results(a.jobs, job, 10, 1u << 20, &out, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(
        strbuf_str(&out),
        "{\"image\":\"s/img0.jpg\",\"model\":\"dyn\",\"version\":1,\"top\":["
        "{\"index\":1,\"label\":\"dog\",\"probability\":0.75},"
        "{\"index\":0,\"label\":\"cat\",\"probability\":0.25}]}\n"
        "{\"image\":\"s/img1.jpg\",\"model\":\"dyn\",\"version\":1,\"values\":[-1.5,2,1000]}\n"
        "{\"image\":\"s/img2.jpg\",\"model\":\"dyn\",\"version\":1,\"error\":\"cannot decode\"}\n");
    /* The pending results, their k and raw values survive a snapshot. */
    void *snap;
    size_t len;
    assert_int_equal(sm_snapshot(&a.sm, NULL, &snap, &len), 0);
    assert_int_equal(sm_restore(&b.sm, snap, len), 0);
    free(snap);
    struct strbuf out_b = STRBUF_INIT;
    assert_int_equal(
        jobs_render_results(b.jobs, jobs_of_model(b.jobs, "dyn"), 10, 1u << 20, &out_b, &n), 0);
    assert_string_equal(strbuf_str(&out_b), strbuf_str(&out));
    /* A later version does not relabel an earlier version's results: they
     * keep the labels of the version that ran them, which is kept. */
    assert_int_equal(add_card_model(&a, "dyn", 2, CARD2), 0);
    strbuf_reset(&out);
    assert_int_equal(jobs_render_results(a.jobs, job, 1, 1u << 20, &out, &n), 0);
    assert_non_null(
        strstr(strbuf_str(&out), "{\"index\":1,\"label\":\"dog\",\"probability\":0.75}"));
    strbuf_free(&out);
    strbuf_free(&out_b);
    replica_free(&a);
    replica_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_launch_stop_relaunch),
        cmocka_unit_test(test_results_exactly_once),
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_deposed_part_never_named),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_without_part_list),
        cmocka_unit_test(test_card_stored),
        cmocka_unit_test(test_result_shapes),
        cmocka_unit_test(test_versions_kept_and_bounded),
        cmocka_unit_test(test_pins_and_set_version),
        cmocka_unit_test(test_version_refusals),
        cmocka_unit_test(test_versions_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
