/* test_parts.c — the result-part core (sched/parts.h) on a fake clock, with
 * the real replicated state (jobs and the SDFS catalog as sub-state machines)
 * and a fake SDFS holding each version's bytes: successive coordinators
 * writing the same part, the reader of the committed parts, the sweep, and
 * the rules of names, timing and outcomes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "base/sha256.h"
#include "base/strbuf.h"
#include "ctl/sm.h"
#include "idunno.pb-c.h"
#include "sched/jobs.h"
#include "sched/parts.h"
#include "sdfs/catalog.h"

#define IMAGES 40
#define SWEEP_MS 5000

static const struct parts_config cfg = {2000, 2000, 16384, SWEEP_MS};

/* ---- a replica of the state: jobs and the catalog, plus the bytes of every blob ---------------- */

struct blob {
    char id[SDFS_BLOB_LEN + 1];
    char *bytes;
    size_t len;
};

struct replica {
    struct sm sm;
    struct jobs *jobs;
    struct catalog *cat;
    struct blob blobs[64];
    size_t n_blobs;
};

static void replica_init(struct replica *r)
{
    memset(r, 0, sizeof *r);
    sm_init(&r->sm);
    r->jobs = jobs_create();
    r->cat = catalog_create();
    assert_non_null(r->jobs);
    assert_non_null(r->cat);
    assert_int_equal(sm_register(&r->sm, &jobs_sm_ops, r->jobs), 0);
    assert_int_equal(sm_register(&r->sm, &catalog_sm_ops, r->cat), 0);
}

static void replica_free(struct replica *r)
{
    for (size_t i = 0; i < r->n_blobs; i++)
        free(r->blobs[i].bytes);
    jobs_destroy(r->jobs);
    catalog_destroy(r->cat);
}

static int apply(struct replica *r, uint32_t type, const ProtobufCMessage *body)
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
                         .time_ms = 1000 + r->sm.applied};
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

/* A model, its job (batch 1) and IMAGES images. */
static struct job_rec *launch(struct replica *r)
{
    uint8_t sha[32] = {9};
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
    Idunno__ModelInfo m = IDUNNO__MODEL_INFO__INIT;
    m.name = "tiny";
    m.file = "models/tiny.onnx";
    m.blob = "00000000000000aa";
    m.sha256 = (ProtobufCBinaryData){32, sha};
    m.input_size = 32;
    m.resize = 64;
    m.classes = 10;
    m.n_mean = m.n_std = 3;
    m.mean = mean;
    m.std = std;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_MODEL_ADD, &m.base), 0);
    Idunno__JobLaunch l = IDUNNO__JOB_LAUNCH__INIT;
    l.model = "tiny";
    l.batch = 1;
    l.weight = 1;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_LAUNCH, &l.base), 0);
    char names[IMAGES][32], *ptrs[IMAGES];
    for (int i = 0; i < IMAGES; i++) {
        snprintf(names[i], sizeof names[i], "set/img%02d.jpg", i);
        ptrs[i] = names[i];
    }
    Idunno__JobInference q = IDUNNO__JOB_INFERENCE__INIT;
    q.model = "tiny";
    q.dataset = "set";
    q.n_images = IMAGES;
    q.images = ptrs;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_INFERENCE, &q.base), 0);
    return jobs_of_model(r->jobs, "tiny");
}

/* Images first..first+n-1 completed, one query each. */
static void complete(struct replica *r, uint32_t job, uint32_t first, uint32_t n)
{
    for (uint32_t i = first; i < first + n; i++) {
        uint32_t cls[5] = {i % 10, 1, 2, 3, 4};
        float probs[5] = {0.5f, 0.2f, 0.1f, 0.1f, 0.1f};
        Idunno__QueryResult res = IDUNNO__QUERY_RESULT__INIT;
        res.image = i;
        res.n_classes = res.n_probs = 5;
        res.classes = cls;
        res.probs = probs;
        Idunno__QueryResult *rp[] = {&res};
        Idunno__QueryDone d = IDUNNO__QUERY_DONE__INIT;
        d.job = job;
        d.query = 100 + i;
        d.worker = "w1";
        d.duration_ms = 10;
        d.n_results = 1;
        d.results = rp;
        Idunno__QueryDone *dp[] = {&d};
        Idunno__QueryDoneBatch b = IDUNNO__QUERY_DONE_BATCH__INIT;
        b.n_done = 1;
        b.done = dp;
        assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_DONE, &b.base), 0);
    }
}

/* ---- SDFS: a put commits a new version of the name with its bytes ---------------------------- */

static void sdfs_put(struct replica *r, const char *name, const char *bytes, size_t len)
{
    assert_true(r->n_blobs < sizeof r->blobs / sizeof r->blobs[0]);
    struct blob *b = &r->blobs[r->n_blobs++];
    snprintf(b->id, sizeof b->id, "%016zx", r->n_blobs);
    b->bytes = malloc(len + 1);
    memcpy(b->bytes, bytes, len);
    b->len = len;
    uint8_t sha[32];
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, bytes, len);
    sha256_final(&h, sha);
    char *reps[] = {"n1", "n2", "n3", "n4"};
    Idunno__SdfsVersion v = IDUNNO__SDFS_VERSION__INIT;
    v.name = (char *)name;
    v.blob = b->id;
    v.size = len;
    v.sha256 = (ProtobufCBinaryData){32, sha};
    v.n_replicas = 4;
    v.replicas = reps;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT, &v.base), 0);
}

static void sdfs_delete(struct replica *r, const char *name)
{
    Idunno__SdfsLookup l = IDUNNO__SDFS_LOOKUP__INIT;
    l.name = (char *)name;
    assert_int_equal(apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_DELETE, &l.base), 0);
}

/* The newest version's bytes of a name, as a get reads them. */
static const struct blob *sdfs_newest(const struct replica *r, const char *name)
{
    const struct sdfs_file *f = catalog_find(r->cat, name);
    assert_non_null(f);
    const char *id = f->versions[f->n_versions - 1].blob;
    for (size_t i = 0; i < r->n_blobs; i++)
        if (strcmp(r->blobs[i].id, id) == 0)
            return &r->blobs[i];
    fail_msg("no bytes for %s", name);
    return NULL;
}

static size_t sdfs_count_under(const struct replica *r, const char *prefix)
{
    size_t n = 0;
    for (size_t i = catalog_lower_bound(r->cat, prefix); i < catalog_count(r->cat); i++)
        n += strncmp(catalog_at(r->cat, i)->name, prefix, strlen(prefix)) == 0;
    return n;
}

/* ---- a coordinator: the core, and the state as this node has applied it ----------------------- */

/* Carries out a WRITE from `view` (what this coordinator has applied): the
 * part's bytes, to be put now or later. */
struct written {
    struct parts_action a;
    struct strbuf text;
    uint8_t sha[32];
};

static void render(struct replica *view, const struct parts_action *a, struct written *w)
{
    assert_int_equal(a->op, PARTS_WRITE);
    struct job_rec *job = jobs_by_id(view->jobs, a->job);
    size_t n;
    w->a = *a;
    w->text = (struct strbuf)STRBUF_INIT;
    assert_int_equal(jobs_render_results(view->jobs, job, a->results, 3u << 20, &w->text, &n), 0);
    w->a.results = (uint32_t)n;
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, strbuf_str(&w->text), w->text.len);
    sha256_final(&h, w->sha);
}

static int propose(struct replica *r, const struct written *w)
{
    Idunno__JobFlushed m = IDUNNO__JOB_FLUSHED__INIT;
    m.job = w->a.job;
    m.part = w->a.part;
    m.results = w->a.results;
    m.file = (char *)w->a.file;
    m.sha256 = (ProtobufCBinaryData){32, (uint8_t *)w->sha};
    return apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_FLUSHED, &m.base);
}

/* One tick that must write exactly one part. */
static void tick_one(struct parts *p, uint64_t now, struct replica *view, struct written *w)
{
    struct parts_action acts[4];
    assert_int_equal(parts_tick(p, now, view->jobs, acts, 4), 1);
    render(view, &acts[0], w);
}

/* ---- the reader: what `results` does with the committed parts ---------------------------------- */

/* Reads every committed part of the job as the coordinator lists them
 * (jobs_part, 1..parts), checks each against its committed SHA-256 and
 * count, and counts the results per image (plus the pending ones). Fails on
 * a file that is not committed. */
static void read_results(const struct replica *r, uint32_t job_id, unsigned count[IMAGES],
                         const char *never)
{
    const struct job_rec *job = jobs_by_id(r->jobs, job_id);
    memset(count, 0, IMAGES * sizeof *count);
    for (uint64_t p = 1; p <= job->parts; p++) {
        const struct job_part *part = jobs_part(job, p);
        assert_non_null(part);
        if (never)
            assert_string_not_equal(part->file, never);
        const struct blob *b = sdfs_newest(r, part->file);
        uint8_t sha[32];
        struct sha256 h;
        sha256_init(&h);
        sha256_update(&h, b->bytes, b->len);
        sha256_final(&h, sha);
        assert_true(part->has_sha256);
        assert_memory_equal(sha, part->sha256, 32);
        unsigned lines = 0;
        for (size_t i = 0; i < b->len; i++) {
            if (i == 0 || b->bytes[i - 1] == '\n') {
                int img;
                assert_int_equal(sscanf(b->bytes + i, "{\"image\":\"set/img%d.jpg\"", &img), 1);
                assert_true(img >= 0 && img < IMAGES);
                const char *end = memchr(b->bytes + i, '\n', b->len - i);
                assert_non_null(end); /* every line ends */
                assert_null(memmem(b->bytes + i, (size_t)(end - (b->bytes + i)), "\"error\"", 7));
                count[img]++;
                lines++;
            }
        }
        assert_int_equal(lines, part->results);
    }
    for (size_t i = 0; i < job->n_pending; i++)
        count[job->pending[i].image]++;
}

static void assert_each_once(const unsigned count[IMAGES], unsigned done)
{
    for (unsigned i = 0; i < IMAGES; i++)
        assert_int_equal(count[i], i < done ? 1 : 0);
}

/* ---- successive coordinators ------------------------------------------------------------------- */

/* The coordinator of term 4 writes part 1 from what it had applied (8
 * results) and is deposed; the one of term 5 writes part 1 with the 24
 * results committed by then and commits it. The deposed one's put lands last
 * (the newest version under its name) and its proposal is lost. Its part is
 * never counted, the sweep deletes it, and every image has one result. */
static void test_deposed_write_lands_last(void **state)
{
    (void)state;
    struct replica committed, stale;
    replica_init(&committed);
    replica_init(&stale);
    uint32_t job = launch(&committed)->id;
    launch(&stale);
    complete(&committed, job, 0, 24);
    complete(&stale, job, 0, 8);

    struct parts *a = parts_create(&cfg), *b = parts_create(&cfg);
    parts_lead(a, 4);
    struct written wa, wb;
    tick_one(a, 10000, &stale, &wa);
    assert_int_equal(wa.a.part, 1);
    assert_int_equal(wa.a.results, 8);

    parts_lead(b, 5);
    tick_one(b, 10000, &committed, &wb);
    assert_int_equal(wb.a.part, 1);
    assert_int_equal(wb.a.results, 24);
    assert_string_not_equal(wa.a.file, wb.a.file); /* the old scheme gave both one name */
    sdfs_put(&committed, wb.a.file, strbuf_str(&wb.text), wb.text.len);
    struct parts_action next;
    assert_int_equal(parts_stored(b, wb.a.write, 0, wb.a.results, 5, &next), 1);
    assert_int_equal(next.op, PARTS_PROPOSE);
    assert_int_equal(propose(&committed, &wb), 0);
    assert_int_equal(parts_applied(b, wb.a.write, 0, &next), 0);

    /* The deposed coordinator's put completes now; it still believes it
     * leads term 4, proposes, and hears ID_ENOTLEADER (the entry is lost). */
    sdfs_put(&committed, wa.a.file, strbuf_str(&wa.text), wa.text.len);
    assert_int_equal(parts_stored(a, wa.a.write, 0, wa.a.results, 4, &next), 1);
    assert_int_equal(next.op, PARTS_PROPOSE);
    assert_int_equal(parts_applied(a, wa.a.write, ID_ENOTLEADER, &next), 0); /* open: the sweep's */

    unsigned count[IMAGES];
    read_results(&committed, job, count, wa.a.file);
    assert_each_once(count, 24);

    /* The sweep of term 5 finds exactly the deposed part, once. */
    char garbage[8][PARTS_FILE_MAX];
    assert_int_equal(parts_sweep(b, 10000, committed.cat, committed.jobs, garbage, 8), 1);
    assert_string_equal(garbage[0], wa.a.file);
    sdfs_delete(&committed, garbage[0]);
    assert_int_equal(
        parts_sweep(b, 10000 + SWEEP_MS - 1, committed.cat, committed.jobs, garbage, 8),
        0); /* not due yet */
    assert_int_equal(parts_sweep(b, 10000 + SWEEP_MS, committed.cat, committed.jobs, garbage, 8),
                     0);
    assert_int_equal(sdfs_count_under(&committed, "results/"), 1);

    /* The rest of the job goes into part 2, after the flush interval. */
    complete(&committed, job, 24, IMAGES - 24);
    struct parts_action acts[4];
    assert_int_equal(parts_tick(b, 11999, committed.jobs, acts, 4), 0);
    struct written wc;
    tick_one(b, 12000, &committed, &wc);
    assert_int_equal(wc.a.part, 2);
    sdfs_put(&committed, wc.a.file, strbuf_str(&wc.text), wc.text.len);
    assert_int_equal(parts_stored(b, wc.a.write, 0, wc.a.results, 5, &next), 1);
    assert_int_equal(propose(&committed, &wc), 0);
    parts_applied(b, wc.a.write, 0, &next);
    read_results(&committed, job, count, wa.a.file);
    assert_each_once(count, IMAGES);
    assert_int_equal(jobs_by_id(committed.jobs, job)->n_pending, 0);

    strbuf_free(&wa.text);
    strbuf_free(&wb.text);
    strbuf_free(&wc.text);
    parts_destroy(a);
    parts_destroy(b);
    replica_free(&committed);
    replica_free(&stale);
}

/* The deposed coordinator's JOB_FLUSHED made it into the log and commits
 * before the new leader's barrier: its 8 results are part 1, and the new
 * leader writes the other 16 as part 2. Its own part-1 write of the same
 * term, with an outcome it never heard, is rejected when it is proposed. */
static void test_deposed_write_committed_first(void **state)
{
    (void)state;
    struct replica committed, stale;
    replica_init(&committed);
    replica_init(&stale);
    uint32_t job = launch(&committed)->id;
    launch(&stale);
    complete(&committed, job, 0, 24);
    complete(&stale, job, 0, 8);

    struct parts *a = parts_create(&cfg), *b = parts_create(&cfg);
    parts_lead(a, 4);
    struct written wa, wb, wb2;
    tick_one(a, 10000, &stale, &wa);
    sdfs_put(&committed, wa.a.file, strbuf_str(&wa.text), wa.text.len);
    struct parts_action next;
    assert_int_equal(parts_stored(a, wa.a.write, 0, wa.a.results, 4, &next), 1);
    assert_int_equal(propose(&committed, &wa), 0); /* committed under the next leader */
    assert_int_equal(parts_applied(a, wa.a.write, ID_ENOTLEADER, &next), 0);

    parts_lead(b, 5);
    char garbage[8][PARTS_FILE_MAX];
    assert_int_equal(parts_sweep(b, 10000, committed.cat, committed.jobs, garbage, 8), 0);
    tick_one(b, 10000, &committed, &wb);
    assert_int_equal(wb.a.part, 2);
    assert_int_equal(wb.a.results, 16);
    sdfs_put(&committed, wb.a.file, strbuf_str(&wb.text), wb.text.len);
    assert_int_equal(parts_stored(b, wb.a.write, 0, wb.a.results, 5, &next), 1);
    assert_int_equal(propose(&committed, &wb), 0);
    /* Its answer is lost (ID_ETIMEDOUT: it may have committed, and did). */
    assert_int_equal(parts_applied(b, wb.a.write, ID_ETIMEDOUT, &next), 0);
    /* Nothing is pending, so no part is due however long it waits. */
    struct parts_action acts[4];
    assert_int_equal(parts_tick(b, 60000, committed.jobs, acts, 4), 0);

    unsigned count[IMAGES];
    read_results(&committed, job, count, NULL);
    assert_each_once(count, 24);

    /* The same term writes part 3 twice (the first proposal timed out but
     * commits): the second is rejected and deleted at once. */
    complete(&committed, job, 24, 4);
    strbuf_free(&wb.text);
    tick_one(b, 70000, &committed, &wb);
    sdfs_put(&committed, wb.a.file, strbuf_str(&wb.text), wb.text.len);
    parts_stored(b, wb.a.write, 0, wb.a.results, 5, &next);
    assert_int_equal(parts_applied(b, wb.a.write, ID_ETIMEDOUT, &next), 0); /* not yet applied */
    tick_one(b, 80000, &committed, &wb2);
    assert_int_equal(wb2.a.part, 3);
    assert_string_not_equal(wb2.a.file, wb.a.file);
    sdfs_put(&committed, wb2.a.file, strbuf_str(&wb2.text), wb2.text.len);
    parts_stored(b, wb2.a.write, 0, wb2.a.results, 5, &next);
    assert_int_equal(propose(&committed, &wb), 0);          /* the first lands first */
    assert_int_equal(propose(&committed, &wb2), ID_EEXIST); /* the second is rejected */
    assert_int_equal(parts_applied(b, wb2.a.write, ID_EEXIST, &next), 1);
    assert_int_equal(next.op, PARTS_DELETE);
    assert_string_equal(next.file, wb2.a.file);
    sdfs_delete(&committed, next.file);
    read_results(&committed, job, count, wb2.a.file);
    assert_each_once(count, 28);
    assert_int_equal(sdfs_count_under(&committed, "results/"), 3);

    strbuf_free(&wa.text);
    strbuf_free(&wb.text);
    strbuf_free(&wb2.text);
    parts_destroy(a);
    parts_destroy(b);
    replica_free(&committed);
    replica_free(&stale);
}

/* What the sweep spares: a write in progress, the committed part, a later
 * part of the current term (it may still be proposed), names of another
 * scheme and of jobs the state does not know. */
static void test_sweep_spares(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    uint32_t job = launch(&r)->id;
    complete(&r, job, 0, 10);
    struct parts *p = parts_create(&cfg);
    parts_lead(p, 7);
    struct written w;
    tick_one(p, 5000, &r, &w); /* in progress */
    sdfs_put(&r, w.a.file, strbuf_str(&w.text), w.text.len);
    sdfs_put(&r, "results/tiny/job1/part-000001.jsonl", "x\n", 2);       /* legacy */
    sdfs_put(&r, "results/tiny/job1/part-000002-t7-99.jsonl", "x\n", 2); /* this term, later */
    sdfs_put(&r, "results/tiny/job9/part-000001-t3-1.jsonl", "x\n", 2);  /* unknown job */
    sdfs_put(&r, "results/other/job1/part-000001-t3-1.jsonl", "x\n", 2); /* another model */
    sdfs_put(&r, "results/tiny/job1/part-000002-t6-1.jsonl", "x\n", 2);  /* earlier term: garbage */
    sdfs_put(&r, "resultsx/tiny/job1/part-000001-t3-1.jsonl", "x\n", 2); /* not under results/ */
    char garbage[8][PARTS_FILE_MAX];
    assert_int_equal(parts_sweep(p, 5000, r.cat, r.jobs, garbage, 8), 1);
    assert_string_equal(garbage[0], "results/tiny/job1/part-000002-t6-1.jsonl");
    /* Not leading: no sweep, nothing is garbage. */
    parts_unlead(p);
    assert_int_equal(parts_sweep(p, 100000, r.cat, r.jobs, garbage, 8), 0);
    assert_false(parts_is_garbage(p, "results/tiny/job1/part-000002-t6-1.jsonl", 0, NULL));
    /* After leading again, the forgotten write of term 7 is garbage for term 8. */
    parts_lead(p, 8);
    assert_true(parts_is_garbage(p, w.a.file, 0, NULL));
    assert_false(parts_is_garbage(p, w.a.file, 1, w.a.file)); /* unless it is the committed one */
    /* The cap on one sweep. */
    assert_int_equal(parts_sweep(p, 100000, r.cat, r.jobs, garbage, 1), 1);
    strbuf_free(&w.text);
    parts_destroy(p);
    replica_free(&r);
}

/* ---- rules ------------------------------------------------------------------------------------- */

static void test_when_parts_are_due(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    uint32_t job = launch(&r)->id;
    struct parts_config small = {2000, 5, 3, SWEEP_MS};
    struct parts *p = parts_create(&small);
    struct parts_action acts[4];
    complete(&r, job, 0, 2);
    assert_int_equal(parts_tick(p, 100, r.jobs, acts, 4), 0); /* not leading */
    parts_lead(p, 2);
    /* A job seen for the first time has waited since 0. */
    assert_int_equal(parts_tick(p, 5000, r.jobs, acts, 4), 1);
    assert_int_equal(acts[0].results, 2);
    assert_int_equal(parts_tick(p, 9000, r.jobs, acts, 4), 0); /* one write at a time */
    struct parts_action next;
    assert_int_equal(parts_stored(p, acts[0].write, ID_ECANCELED, 0, 2, &next), 0);
    assert_int_equal(parts_tick(p, 6999, r.jobs, acts, 4), 0); /* 2 s after the last began */
    assert_int_equal(parts_tick(p, 7000, r.jobs, acts, 4), 1);
    parts_stored(p, acts[0].write, ID_ECANCELED, 0, 2, &next);
    /* Five pending: at once, at most three in a part. */
    complete(&r, job, 2, 3);
    assert_int_equal(parts_tick(p, 7001, r.jobs, acts, 4), 1);
    assert_int_equal(acts[0].results, 3);
    parts_stored(p, acts[0].write, ID_ECANCELED, 0, 2, &next);
    /* A stopped job's last results go at once. */
    complete(&r, job, 5, 1);
    struct written w;
    tick_one(p, 20000, &r, &w);
    strbuf_free(&w.text);
    assert_int_equal(parts_stored(p, w.a.write, 0, 3, 2, &next), 1);
    assert_int_equal(propose(&r, &w), 0); /* 3 of 6 committed */
    parts_applied(p, w.a.write, 0, &next);
    Idunno__JobLaunch stop = IDUNNO__JOB_LAUNCH__INIT;
    stop.model = "tiny";
    assert_int_equal(apply(&r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_STOP, &stop.base), 0);
    assert_int_equal(parts_tick(p, 20001, r.jobs, acts, 4), 1);
    assert_int_equal(acts[0].part, 2);
    parts_destroy(p);
    replica_free(&r);
}

static void test_outcomes(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    uint32_t job = launch(&r)->id;
    complete(&r, job, 0, 4);
    struct parts *p = parts_create(&cfg);
    parts_lead(p, 3);
    struct parts_action acts[4], next;
    /* A failed put may have left a version: deleted, and the job writes again. */
    assert_int_equal(parts_tick(p, 5000, r.jobs, acts, 4), 1);
    assert_int_equal(parts_stored(p, acts[0].write, ID_EUNAVAIL, 0, 3, &next), 1);
    assert_int_equal(next.op, PARTS_DELETE);
    assert_string_equal(next.file, acts[0].file);
    /* A put that ends after the term passed is never proposed. */
    assert_int_equal(parts_tick(p, 8000, r.jobs, acts, 4), 1);
    assert_int_equal(parts_stored(p, acts[0].write, 0, 4, 4, &next), 1);
    assert_int_equal(next.op, PARTS_DELETE);
    assert_int_equal(parts_stored(p, acts[0].write, 0, 4, 3, &next), 0); /* ended: forgotten */
    /* Never appended: deleted. Rejected: deleted. Open: left to the sweep. */
    assert_int_equal(parts_tick(p, 11000, r.jobs, acts, 4), 1);
    parts_stored(p, acts[0].write, 0, 4, 3, &next);
    assert_int_equal(parts_applied(p, acts[0].write, ID_ECANCELED, &next), 1);
    assert_int_equal(next.op, PARTS_DELETE);
    assert_int_equal(parts_tick(p, 14000, r.jobs, acts, 4), 1);
    parts_stored(p, acts[0].write, 0, 4, 3, &next);
    assert_int_equal(parts_applied(p, acts[0].write, ID_ESHUTDOWN, &next), 0);
    /* Outcomes of a write from before parts_lead are ignored. */
    assert_int_equal(parts_tick(p, 17000, r.jobs, acts, 4), 1);
    parts_lead(p, 4);
    assert_int_equal(parts_stored(p, acts[0].write, 0, 4, 4, &next), 0);
    assert_int_equal(parts_applied(p, acts[0].write, ID_EEXIST, &next), 0);
    parts_destroy(p);
    replica_free(&r);
}

static void test_names(void **state)
{
    (void)state;
    char buf[PARTS_FILE_MAX];
    struct parts_name n;
    assert_int_equal(parts_name_format(buf, sizeof buf, "resnet50", 1, 30, 3, 17), 0);
    assert_string_equal(buf, "results/resnet50/job1/part-000030-t3-17.jsonl");
    assert_int_equal(parts_name_parse(buf, &n), 0);
    assert_string_equal(n.model, "resnet50");
    assert_int_equal(n.job, 1);
    assert_int_equal(n.part, 30);
    assert_int_equal(n.term, 3);
    assert_int_equal(n.seq, 17);
    assert_int_equal(parts_name_format(buf, sizeof buf, "m", 4294967295u, 1234567, 1, 1), 0);
    assert_int_equal(parts_name_parse(buf, &n), 0);
    assert_int_equal(n.part, 1234567);
    assert_int_equal(n.job, 4294967295u);
    /* Bad models, zero fields, and a buffer too small are refused. */
    assert_int_equal(parts_name_format(buf, sizeof buf, "a/b", 1, 1, 1, 1), ID_EINVAL);
    assert_int_equal(parts_name_format(buf, sizeof buf, "m", 1, 0, 1, 1), ID_EINVAL);
    assert_int_equal(parts_name_format(buf, 20, "m", 1, 1, 1, 1), ID_EINVAL);
    /* Only exactly what format writes parses: one spelling per name. */
    const char *bad[] = {
        "results/tiny/job1/part-000001.jsonl",       /* the legacy scheme */
        "results/tiny/job01/part-000001-t2-1.jsonl", /* leading zero */
        "results/tiny/job1/part-00001-t2-1.jsonl",   /* too few digits */
        "results/tiny/job1/part-0000001-t2-1.jsonl", /* padded beyond six */
        "results/tiny/job1/part-000001-t02-1.jsonl",
        "results/tiny/job1/part-000001-t2-0.jsonl",
        "results/tiny/job1/part-000000-t2-1.jsonl",
        "results/tiny/job1/part-000001-t2-1.json",
        "results/tiny/job1/part-000001-t2-1.jsonl.x",
        "results/tiny/job4294967296/part-000001-t2-1.jsonl",
        "results/tiny/job1/part-000001-t99999999999999999999-1.jsonl",
        "results/ti ny/job1/part-000001-t2-1.jsonl",
        "results//job1/part-000001-t2-1.jsonl",
        "results/tiny/job1/x/part-000001-t2-1.jsonl",
        "other/tiny/job1/part-000001-t2-1.jsonl",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parts_name_parse(bad[i], &n), ID_EINVAL);
    parts_legacy_name(buf, sizeof buf, "resnet50", 1, 30);
    assert_string_equal(buf, "results/resnet50/job1/part-000030.jsonl");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deposed_write_lands_last),
        cmocka_unit_test(test_deposed_write_committed_first),
        cmocka_unit_test(test_sweep_spares),
        cmocka_unit_test(test_when_parts_are_due),
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
