/* test_reconcile.c — the leader's pure decisions on store reports and repairs
 * (sdfs/reconcile.h): incomplete and stale reports decide nothing, a copy is
 * declared missing only on a report built after the one that raised the
 * suspicion, deletions wait for the grace period, the last copy is never
 * deleted, and a suspected member is not repaired away from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "ctl/sm.h"
#include "idunno.pb-c.h"
#include "sdfs/catalog.h"
#include "sdfs/reconcile.h"

/* ---- helpers ------------------------------------------------------------------------------ */

struct fixture {
    struct sm sm;
    struct catalog *cat;
    struct reconcile *rec;
};

static void fixture_init(struct fixture *f)
{
    sm_init(&f->sm);
    f->cat = catalog_create();
    f->rec = reconcile_create(RECONCILE_DELETE_GRACE_MS);
    assert_non_null(f->cat);
    assert_non_null(f->rec);
    assert_int_equal(sm_register(&f->sm, &catalog_sm_ops, f->cat), 0);
}

static void fixture_free(struct fixture *f)
{
    reconcile_destroy(f->rec);
    catalog_destroy(f->cat);
}

static int apply(struct fixture *f, uint32_t type, const ProtobufCMessage *body)
{
    uint8_t buf[4096];
    size_t n = protobuf_c_message_pack(body, buf);
    struct sm_cmd cmd = {.type = type,
                         .version = 1,
                         .body = buf,
                         .len = n,
                         .origin = 1,
                         .seq = f->sm.applied + 1,
                         .time_ms = 5000};
    void *entry;
    size_t len;
    assert_int_equal(sm_encode(&cmd, NULL, &entry, &len), 0);
    struct sm_result res = {0};
    sm_apply_entry(&f->sm, entry, len, &res);
    free(entry);
    sm_result_clear(&res);
    return res.status;
}

/* Commits name as blob on the comma-separated replicas. */
static void commit(struct fixture *f, const char *name, const char *blob, const char *reps)
{
    char copy[256], *names[SDFS_REPLICAS], *save = NULL;
    size_t n = 0;
    snprintf(copy, sizeof copy, "%s", reps);
    for (char *t = strtok_r(copy, ",", &save); t && n < SDFS_REPLICAS;
         t = strtok_r(NULL, ",", &save))
        names[n++] = t;
    uint8_t sha[32] = {1, 2, 3};
    Idunno__SdfsVersion v = IDUNNO__SDFS_VERSION__INIT;
    v.name = (char *)name;
    v.blob = (char *)blob;
    v.size = 100;
    v.sha256.data = sha;
    v.sha256.len = 32;
    v.n_replicas = n;
    v.replicas = names;
    assert_int_equal(apply(f, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT, &v.base), 0);
}

static int change(struct fixture *f, const char *name, const char *blob, const char *remove,
                  const char *add)
{
    Idunno__SdfsReplicaChange c = IDUNNO__SDFS_REPLICA_CHANGE__INIT;
    c.name = (char *)name;
    c.blob = (char *)blob;
    c.remove = (char *)remove;
    c.add = (char *)add;
    return apply(f, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_REPLICA, &c.base);
}

#define A "00000000000000a1"
#define B "00000000000000b1"
#define X "00000000000000ee" /* a blob no version lists */

/* A report of `node`: old and young blobs as comma-separated lists ("" for
 * none); held defaults to their count when negative. */
struct report {
    char *old[8], *young[8];
    char buf[256];
    struct reconcile_report r;
};

static struct reconcile_report *report(struct report *rp, const char *node, uint64_t seq,
                                       uint64_t answered, const char *old, const char *young,
                                       long held)
{
    memset(rp, 0, sizeof *rp);
    snprintf(rp->buf, sizeof rp->buf, "%s|%s", old, young);
    char *bar = strchr(rp->buf, '|');
    *bar = 0;
    size_t n_old = 0, n_young = 0;
    char *save = NULL;
    for (char *t = strtok_r(rp->buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        rp->old[n_old++] = t;
    save = NULL;
    for (char *t = strtok_r(bar + 1, ",", &save); t; t = strtok_r(NULL, ",", &save))
        rp->young[n_young++] = t;
    rp->r = (struct reconcile_report){
        node,    77,    seq,       answered, held < 0 ? n_old + n_young : (uint64_t)held,
        rp->old, n_old, rp->young, n_young};
    return &rp->r;
}

static int deletes(const struct reconcile_actions *a, const char *blob)
{
    for (size_t i = 0; i < a->n_del; i++)
        if (strcmp(a->del[i], blob) == 0)
            return 1;
    return 0;
}

/* ---- store reports ------------------------------------------------------------------------ */

/* A report that lists fewer blobs than the node holds decides nothing, however
 * often it comes: no copy is declared missing, nothing is deleted. */
static void test_incomplete_report_decides_nothing(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    commit(&f, "a", A, "n1,n2,n3,n4");
    struct report rp;
    struct reconcile_actions a;
    uint64_t now = 1000000;
    for (uint64_t seq = 1; seq <= 5; seq++) {
        /* n1 holds A and X but the report lost A (held says 2, one listed). */
        assert_int_equal(
            reconcile_report(f.rec, f.cat, report(&rp, "n1", seq, seq - 1, X, "", 2), now, &a), 0);
        assert_true(a.ignored);
        assert_int_equal(a.n_missing, 0);
        assert_int_equal(a.n_del, 0);
        reconcile_actions_free(&a);
        now += 2 * RECONCILE_DELETE_GRACE_MS;
    }
    /* An unnumbered report (an old sender) is no better. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", 0, 0, X, "", -1), now, &a),
                     0);
    assert_true(a.ignored);
    assert_int_equal(a.n_missing + a.n_del, 0);
    reconcile_actions_free(&a);
    /* The same situation on complete reports does act: A is declared missing
     * on the second, X deleted after the grace. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", 6, 5, X, "", -1), now, &a),
                     0);
    assert_false(a.ignored);
    assert_int_equal(a.n_missing, 0);
    assert_int_equal(a.suspected, 1);
    reconcile_actions_free(&a);
    now += RECONCILE_DELETE_GRACE_MS;
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", 7, 6, X, "", -1), now, &a),
                     0);
    assert_int_equal(a.n_missing, 1);
    assert_string_equal(a.missing[0].version->blob, A);
    assert_true(deletes(&a, X));
    reconcile_actions_free(&a);
    fixture_free(&f);
}

/* A report built before a repair put a copy on the node, and delivered after
 * the repair committed, must not accuse the node; nor may a report built
 * before the answer to the one that raised the suspicion, or one older than a
 * report already seen. */
static void test_stale_report_accuses_nobody(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    commit(&f, "a", A, "n1,n2,n3,n4");
    struct report rp;
    struct reconcile_actions a;
    uint64_t now = 1000000;
    /* n5 builds report 1 (empty); meanwhile the repair copies A to n5 and
     * commits; then report 1 arrives. */
    assert_int_equal(change(&f, "a", A, "n4", "n5"), 0);
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n5", 1, 0, "", "", -1), now, &a),
                     0);
    assert_int_equal(a.n_missing, 0);
    assert_int_equal(a.suspected, 1);
    reconcile_actions_free(&a);
    /* Report 2 was built before n5 had the answer to 1 (answered 0): still
     * nothing. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n5", 2, 0, "", "", -1), now, &a),
                     0);
    assert_int_equal(a.n_missing, 0);
    reconcile_actions_free(&a);
    /* A duplicate or reordered report is stale. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n5", 2, 1, "", "", -1), now, &a),
                     0);
    assert_true(a.ignored);
    assert_int_equal(a.n_missing, 0);
    reconcile_actions_free(&a);
    /* Report 3, built after the answer to 1, lists the copy: cleared. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n5", 3, 2, "", A, -1), now, &a),
                     0);
    assert_int_equal(a.n_missing + a.suspected, 0);
    reconcile_actions_free(&a);
    /* A later loss is suspected afresh, not declared at once. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n5", 4, 3, "", "", -1), now, &a),
                     0);
    assert_int_equal(a.n_missing, 0);
    reconcile_actions_free(&a);
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n5", 5, 4, "", "", -1), now, &a),
                     0);
    assert_int_equal(a.n_missing, 1);
    reconcile_actions_free(&a);
    /* A restarted node (new boot) numbers from 1 again: its memory starts over. */
    struct reconcile_report *r = report(&rp, "n5", 1, 0, "", "", -1);
    r->boot = 78;
    assert_int_equal(reconcile_report(f.rec, f.cat, r, now, &a), 0);
    assert_false(a.ignored);
    assert_int_equal(a.n_missing, 0);
    reconcile_actions_free(&a);
    fixture_free(&f);
}

/* A copy the catalog no longer names on a node is deleted only after it has
 * been unlisted on every report for the grace period; a young (in use) copy
 * restarts the clock, and a listed one is never deleted. */
static void test_grace_period_before_delete(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    commit(&f, "a", A, "n1,n2,n3,n4");
    commit(&f, "b", B, "n2,n3,n4,n5");
    struct report rp;
    struct reconcile_actions a;
    uint64_t t0 = 1000000;
    /* n1 holds A (listed) and B (a worker's cached copy: not listed on n1). */
    assert_int_equal(
        reconcile_report(f.rec, f.cat, report(&rp, "n1", 1, 0, A "," B, "", -1), t0, &a), 0);
    assert_int_equal(a.n_del, 0);
    reconcile_actions_free(&a);
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", 2, 1, A "," B, "", -1),
                                      t0 + RECONCILE_DELETE_GRACE_MS - 1, &a),
                     0);
    assert_int_equal(a.n_del, 0);
    reconcile_actions_free(&a);
    /* Used again: young on this report, so the clock restarts. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", 3, 2, A, B, -1),
                                      t0 + RECONCILE_DELETE_GRACE_MS, &a),
                     0);
    assert_int_equal(a.n_del, 0);
    reconcile_actions_free(&a);
    uint64_t t1 = t0 + RECONCILE_DELETE_GRACE_MS + 10000;
    assert_int_equal(
        reconcile_report(f.rec, f.cat, report(&rp, "n1", 4, 3, A "," B, "", -1), t1, &a), 0);
    assert_int_equal(a.n_del, 0);
    reconcile_actions_free(&a);
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", 5, 4, A "," B, "", -1),
                                      t1 + RECONCILE_DELETE_GRACE_MS, &a),
                     0);
    assert_int_equal(a.n_del, 1);
    assert_true(deletes(&a, B));
    assert_false(deletes(&a, A));
    reconcile_actions_free(&a);
    /* Once the catalog names n1 for B again (a repair chose it), B stays. */
    assert_int_equal(change(&f, "b", B, "n5", "n1"), 0);
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", 6, 5, A "," B, "", -1),
                                      t1 + 10 * RECONCILE_DELETE_GRACE_MS, &a),
                     0);
    assert_int_equal(a.n_del, 0);
    reconcile_actions_free(&a);
    fixture_free(&f);
}

/* The last copy of a version: its holder's reports never delete it, and the
 * catalog refuses to drop it from the replica set. */
static void test_last_copy_is_never_deleted(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    commit(&f, "a", A, "n1");
    struct report rp;
    struct reconcile_actions a;
    for (uint64_t seq = 1; seq <= 3; seq++) {
        assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n1", seq, seq - 1, A, "", -1),
                                          seq * 10 * RECONCILE_DELETE_GRACE_MS, &a),
                         0);
        assert_int_equal(a.n_del + a.n_missing, 0);
        reconcile_actions_free(&a);
    }
    /* Reports of other nodes that hold nothing never touch it either. */
    assert_int_equal(reconcile_report(f.rec, f.cat, report(&rp, "n2", 1, 0, "", "", -1), 1, &a), 0);
    assert_int_equal(a.n_del + a.n_missing + a.suspected, 0);
    reconcile_actions_free(&a);
    assert_int_equal(change(&f, "a", A, "n1", ""), ID_EBUSY);
    assert_int_equal(catalog_find(f.cat, "a")->versions[0].n_replicas, 1);
    fixture_free(&f);
}

/* ---- repairs: failures, not suspicions ---------------------------------------------------- */

static size_t plan(struct fixture *f, const struct member_view *m, size_t n,
                   struct sdfs_repair *out)
{
    struct sdfs_node nodes[16];
    size_t n_nodes = reconcile_repair_nodes(m, n, nodes, 16);
    return catalog_plan_repairs(f->cat, nodes, n_nodes, NULL, NULL, out, 16);
}

static void test_suspicion_refuted_is_not_repaired(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    commit(&f, "a", A, "n1,n2,n3,n4");
    struct member_view m[5];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 5; i++) {
        snprintf(m[i].name, sizeof m[i].name, "n%d", i + 1);
        m[i].incarnation = 100;
    }
    struct sdfs_repair out[16];
    /* n1 is suspected: it still holds its copy; nothing moves. */
    m[0].state = MEMBER_SUSPECT;
    assert_int_equal(plan(&f, m, 5, out), 0);
    /* The suspicion is refuted 187 ms later: still nothing. */
    m[0].state = MEMBER_ALIVE;
    assert_int_equal(plan(&f, m, 5, out), 0);
    /* Declared failed: now the copy is replaced, on the one node left (n5). */
    m[0].state = MEMBER_FAILED;
    assert_int_equal(plan(&f, m, 5, out), 1);
    assert_string_equal(out[0].dead, "n1");
    assert_string_equal(out[0].target, "n5");
    /* A suspected node is no target. */
    m[4].state = MEMBER_SUSPECT;
    assert_int_equal(plan(&f, m, 5, out), 0);
    /* Left is as good as failed; a newer incarnation of a name decides. */
    m[4].state = MEMBER_ALIVE;
    m[0].state = MEMBER_LEFT;
    assert_int_equal(plan(&f, m, 5, out), 1);
    struct member_view again[6];
    memcpy(again, m, sizeof m);
    again[5] = m[0];
    again[5].incarnation = 200;
    again[5].state = MEMBER_SUSPECT; /* n1 restarted and is now only suspected */
    assert_int_equal(plan(&f, again, 6, out), 0);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incomplete_report_decides_nothing),
        cmocka_unit_test(test_stale_report_accuses_nobody),
        cmocka_unit_test(test_grace_period_before_delete),
        cmocka_unit_test(test_last_copy_is_never_deleted),
        cmocka_unit_test(test_suspicion_refuted_is_not_repaired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
