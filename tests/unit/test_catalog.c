/* test_catalog.c — SDFS metadata without I/O: name validation, version
 * bookkeeping (numbers, the last 5 kept, idempotent commits, dropped blobs),
 * deletes, replica changes, snapshots, and the placement and repair
 * decisions. */
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

/* ---- helpers ------------------------------------------------------------------------------ */

struct replica {
    struct sm sm;
    struct catalog *cat;
};

static void replica_init(struct replica *r)
{
    sm_init(&r->sm);
    r->cat = catalog_create();
    assert_non_null(r->cat);
    assert_int_equal(sm_register(&r->sm, &catalog_sm_ops, r->cat), 0);
}

static void replica_free(struct replica *r)
{
    catalog_destroy(r->cat);
}

/* Applies one command; returns its status and, if out is given, its result. */
static int apply(struct replica *r, uint32_t type, const ProtobufCMessage *body, uint64_t time_ms,
                 struct sm_result *out)
{
    uint8_t buf[4096];
    size_t n = protobuf_c_message_pack(body, buf);
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
    struct sm_result res = {.want_body = out != NULL};
    sm_apply_entry(&r->sm, entry, len, &res);
    free(entry);
    if (out)
        *out = res;
    else
        sm_result_clear(&res);
    return res.status;
}

/* Commits a version of name stored as blob on the given replicas; returns the
 * version number (0 on error) and fills dropped (may be NULL). */
static uint64_t commit_crc(struct replica *r, const char *name, const char *blob, const char *reps,
                           char *dropped, const uint8_t *crc, size_t crc_len)
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
    v.crc32c.data = (uint8_t *)crc;
    v.crc32c.len = crc_len;
    v.n_replicas = n;
    v.replicas = names;
    struct sm_result res;
    int rc = apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT, &v.base, 5000, &res);
    uint64_t version = 0;
    if (dropped)
        dropped[0] = 0;
    if (rc == 0) {
        Idunno__SdfsVersion *got = idunno__sdfs_version__unpack(NULL, res.len, res.body);
        assert_non_null(got);
        version = got->version;
        if (dropped && got->n_dropped)
            snprintf(dropped, SDFS_BLOB_LEN + 1, "%s", got->dropped[0]);
        idunno__sdfs_version__free_unpacked(got, NULL);
    }
    sm_result_clear(&res);
    return version;
}

static uint64_t commit(struct replica *r, const char *name, const char *blob, const char *reps,
                       char *dropped)
{
    return commit_crc(r, name, blob, reps, dropped, NULL, 0);
}

static int change(struct replica *r, const char *name, const char *blob, const char *remove,
                  const char *add)
{
    Idunno__SdfsReplicaChange c = IDUNNO__SDFS_REPLICA_CHANGE__INIT;
    c.name = (char *)name;
    c.blob = (char *)blob;
    c.remove = (char *)remove;
    c.add = (char *)add;
    return apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_REPLICA, &c.base, 6000, NULL);
}

static int del(struct replica *r, const char *name)
{
    Idunno__SdfsLookup l = IDUNNO__SDFS_LOOKUP__INIT;
    l.name = (char *)name;
    return apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_DELETE, &l.base, 7000, NULL);
}

static void blob_id(unsigned i, char out[SDFS_BLOB_LEN + 1])
{
    snprintf(out, SDFS_BLOB_LEN + 1, "%016x", i);
}

/* ---- names -------------------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    const char *good[] = {"a", "flowers/rose1.jpg", "x.y", "a/b/c", "..a", "a..", "a.b/c..d"};
    const char *bad[] = {"",     "/abs", "..",     ".",           "a/../b",    "a/./b",
                         "a//b", "a/",   "sp ace", "back\\slash", "tab\tname", "\x7f"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(sdfs_name_ok(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(sdfs_name_ok(bad[i]));
    char longname[SDFS_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname);
    longname[SDFS_NAME_MAX] = 0;
    assert_true(sdfs_name_ok(longname));
    longname[SDFS_NAME_MAX] = 'a';
    longname[SDFS_NAME_MAX + 1] = 0;
    assert_false(sdfs_name_ok(longname));
    assert_true(sdfs_blob_ok("0123456789abcdef"));
    assert_false(sdfs_blob_ok("0123456789ABCDEF"));
    assert_false(sdfs_blob_ok("0123"));
    assert_false(sdfs_blob_ok("../../etc/passwd"));
}

/* ---- versions ----------------------------------------------------------------------------- */

static void test_versions_keep_last_five(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    char blob[SDFS_BLOB_LEN + 1], dropped[SDFS_BLOB_LEN + 1];
    for (unsigned i = 1; i <= 7; i++) {
        blob_id(i, blob);
        assert_int_equal(commit(&r, "doc", blob, "n1,n2,n3,n4", dropped), i);
        if (i <= 5) {
            assert_string_equal(dropped, "");
        } else {
            char expect[SDFS_BLOB_LEN + 1];
            blob_id(i - 5, expect);
            assert_string_equal(dropped, expect);
        }
    }
    const struct sdfs_file *f = catalog_find(r.cat, "doc");
    assert_non_null(f);
    assert_int_equal(f->n_versions, SDFS_KEEP_VERSIONS);
    assert_int_equal(f->versions[0].version, 3);
    assert_int_equal(f->versions[4].version, 7);
    assert_int_equal(f->versions[4].time_ms, 5000);
    /* Loads count kept versions only. */
    assert_int_equal(catalog_node_load(r.cat, "n1"), 5);
    replica_free(&r);
}

static void test_commit_is_idempotent_by_blob(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(commit(&r, "a", "00000000000000aa", "n1,n2,n3,n4", NULL), 1);
    /* A retried commit (after a lost answer) gets the same version. */
    assert_int_equal(commit(&r, "a", "00000000000000aa", "n1,n2,n3,n4", NULL), 1);
    assert_int_equal(catalog_find(r.cat, "a")->n_versions, 1);
    /* Concurrent puts of one name: distinct blobs, distinct versions. */
    assert_int_equal(commit(&r, "a", "00000000000000bb", "n5,n6,n7,n8", NULL), 2);
    assert_int_equal(commit(&r, "a", "00000000000000cc", "n1,n6,n7,n8", NULL), 3);
    replica_free(&r);
}

static void test_commit_rejects_bad_input(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(commit(&r, "../x", "00000000000000aa", "n1", NULL), 0);
    assert_int_equal(commit(&r, "x", "not-a-blob", "n1", NULL), 0);
    assert_int_equal(commit(&r, "x", "00000000000000aa", "n1,n1", NULL), 0); /* duplicate */
    assert_int_equal(commit(&r, "x", "00000000000000aa", "", NULL), 0);      /* no replica */
    assert_int_equal(catalog_count(r.cat), 0);
    /* A garbage body is rejected, the state unchanged, and counted as applied. */
    uint8_t junk[] = {0xff, 0xff, 0xff};
    struct sm_cmd cmd = {.type = IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT,
                         .version = 1,
                         .body = junk,
                         .len = sizeof junk};
    struct sm_result res = {0};
    sm_apply(&r.sm, &cmd, &res);
    assert_int_equal(res.status, ID_EPROTO);
    /* An unknown command version too. */
    cmd.version = 2;
    sm_apply(&r.sm, &cmd, &res);
    assert_int_equal(res.status, ID_EVERSION);
    assert_int_equal(catalog_count(r.cat), 0);
    replica_free(&r);
}

static void test_delete(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    commit(&r, "b", "00000000000000b1", "n1,n2,n3,n4", NULL);
    commit(&r, "a", "00000000000000a1", "n1,n2,n3,n4", NULL);
    commit(&r, "c", "00000000000000c1", "n1,n2,n3,n4", NULL);
    assert_int_equal(del(&r, "b"), 0);
    assert_int_equal(del(&r, "b"), ID_ENOTFOUND);
    assert_int_equal(del(&r, "../b"), ID_ENOTFOUND);
    assert_int_equal(catalog_count(r.cat), 2);
    assert_string_equal(catalog_at(r.cat, 0)->name, "a");
    assert_string_equal(catalog_at(r.cat, 1)->name, "c");
    assert_int_equal(catalog_node_load(r.cat, "n1"), 2);
    /* A name put again after a delete starts over at version 1. */
    assert_int_equal(commit(&r, "b", "00000000000000b2", "n1", NULL), 1);
    replica_free(&r);
}

static void test_replica_changes(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    const char *b = "00000000000000a1";
    commit(&r, "a", b, "n1,n2,n3,n4", NULL);
    assert_int_equal(change(&r, "a", b, "n2", "n5"), 0);
    const struct sdfs_version *v = catalog_find_blob(r.cat, "a", b);
    assert_int_equal(v->n_replicas, 4);
    assert_string_equal(v->replicas[3], "n5");
    assert_int_equal(catalog_node_load(r.cat, "n2"), 0);
    assert_int_equal(catalog_node_load(r.cat, "n5"), 1);
    /* Applying the same change again changes nothing (retries). */
    assert_int_equal(change(&r, "a", b, "n2", "n5"), 0);
    assert_int_equal(catalog_find_blob(r.cat, "a", b)->n_replicas, 4);
    /* Remove only, then add only. */
    assert_int_equal(change(&r, "a", b, "n1", ""), 0);
    assert_int_equal(catalog_find_blob(r.cat, "a", b)->n_replicas, 3);
    assert_int_equal(change(&r, "a", b, "", "n6"), 0);
    assert_int_equal(catalog_find_blob(r.cat, "a", b)->n_replicas, 4);
    /* Never beyond 4 copies; never below 1. */
    assert_int_equal(change(&r, "a", b, "", "n7"), 0);
    assert_int_equal(catalog_find_blob(r.cat, "a", b)->n_replicas, 4);
    change(&r, "a", b, "n3", "");
    change(&r, "a", b, "n4", "");
    change(&r, "a", b, "n5", "");
    assert_int_equal(catalog_find_blob(r.cat, "a", b)->n_replicas, 1);
    assert_int_equal(change(&r, "a", b, "n6", ""), ID_EBUSY);
    assert_int_equal(catalog_find_blob(r.cat, "a", b)->n_replicas, 1);
    /* Unknown blob or name: nothing to do. */
    assert_int_equal(change(&r, "a", "00000000000000ff", "n6", "n1"), ID_ENOTFOUND);
    assert_int_equal(change(&r, "zz", b, "n6", "n1"), ID_ENOTFOUND);
    replica_free(&r);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

/* A version's CRC-32C is kept when given (4 bytes), absent when not, survives
 * a snapshot, and any other length is refused. */
static void test_commit_keeps_crc32c(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    const uint8_t crc[4] = {0xde, 0xad, 0xbe, 0xef};
    assert_int_equal(commit_crc(&a, "with", "00000000000000a1", "n1", NULL, crc, 4), 1);
    assert_int_equal(commit(&a, "without", "00000000000000a2", "n1", NULL), 1);
    assert_int_equal(commit_crc(&a, "bad", "00000000000000a3", "n1", NULL, crc, 3), 0);
    assert_null(catalog_find(a.cat, "bad"));
    void *snap;
    size_t len;
    assert_int_equal(sm_snapshot(&a.sm, NULL, &snap, &len), 0);
    assert_int_equal(sm_restore(&b.sm, snap, len), 0);
    free(snap);
    const struct replica *rs[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        const struct sdfs_file *f = catalog_find(rs[k]->cat, "with");
        assert_non_null(f);
        assert_true(f->versions[0].has_crc32c);
        assert_int_equal(sdfs_crc_decode(f->versions[0].crc32c_be), 0xdeadbeefu);
        f = catalog_find(rs[k]->cat, "without");
        assert_non_null(f);
        assert_false(f->versions[0].has_crc32c);
    }
    replica_free(&a);
    replica_free(&b);
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    char blob[SDFS_BLOB_LEN + 1];
    for (unsigned i = 1; i <= 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "set/f%u", i % 13);
        blob_id(i, blob);
        commit(&a, name, blob, i % 2 ? "n1,n2,n3,n4" : "n5,n6,n7,n8", NULL);
    }
    change(&a, "set/f1", "0000000000000001", "n1", "n9");
    del(&a, "set/f2");
    void *snap;
    size_t len;
    assert_int_equal(sm_snapshot(&a.sm, NULL, &snap, &len), 0);
    assert_int_equal(sm_restore(&b.sm, snap, len), 0);
    free(snap);
    char da[65], db[65];
    sm_digest_hex(&a.sm, da);
    sm_digest_hex(&b.sm, db);
    assert_string_equal(da, db);
    assert_int_equal(catalog_count(b.cat), catalog_count(a.cat));
    for (const char *n = "n1"; n; n = strcmp(n, "n1") == 0 ? "n9" : NULL)
        assert_int_equal(catalog_node_load(b.cat, n), catalog_node_load(a.cat, n));
    /* Both go on the same way after the restore. */
    blob_id(99, blob);
    assert_int_equal(commit(&a, "set/f3", blob, "n1", NULL),
                     commit(&b, "set/f3", blob, "n1", NULL));
    sm_digest_hex(&a.sm, da);
    sm_digest_hex(&b.sm, db);
    assert_string_equal(da, db);
    replica_free(&a);
    replica_free(&b);
}

static void test_restore_rejects_bad_sections(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    commit(&r, "keep", "00000000000000aa", "n1", NULL);
    /* Unsorted names: rejected, state unchanged. */
    Idunno__SdfsFileState f1 = IDUNNO__SDFS_FILE_STATE__INIT, f2 = IDUNNO__SDFS_FILE_STATE__INIT;
    uint8_t sha[32] = {0};
    char *reps[] = {"n1"};
    Idunno__SdfsVersion v = IDUNNO__SDFS_VERSION__INIT;
    v.version = 1;
    v.blob = "00000000000000bb";
    v.sha256.data = sha;
    v.sha256.len = 32;
    v.n_replicas = 1;
    v.replicas = reps;
    Idunno__SdfsVersion *vp[] = {&v};
    f1.name = "b";
    f2.name = "a";
    f1.last_version = f2.last_version = 1;
    f1.n_versions = f2.n_versions = 1;
    f1.versions = f2.versions = vp;
    Idunno__SdfsFileState *fp[] = {&f1, &f2};
    Idunno__SdfsCatalogState st = IDUNNO__SDFS_CATALOG_STATE__INIT;
    st.n_files = 2;
    st.files = fp;
    uint8_t buf[1024];
    size_t n = protobuf_c_message_pack(&st.base, buf);
    assert_int_equal(sm_ops_restore(&catalog_sm_ops, r.cat, 1, buf, n), ID_EPROTO);
    assert_non_null(catalog_find(r.cat, "keep"));
    /* A version above last_version: rejected. */
    fp[0] = &f2;
    st.n_files = 1;
    f2.last_version = 0;
    n = protobuf_c_message_pack(&st.base, buf);
    assert_int_equal(sm_ops_restore(&catalog_sm_ops, r.cat, 1, buf, n), ID_EPROTO);
    /* Valid: replaces the state. */
    f2.last_version = 3;
    n = protobuf_c_message_pack(&st.base, buf);
    assert_int_equal(sm_ops_restore(&catalog_sm_ops, r.cat, 1, buf, n), 0);
    assert_null(catalog_find(r.cat, "keep"));
    assert_non_null(catalog_find(r.cat, "a"));
    /* The next commit of "a" continues after last_version. */
    assert_int_equal(commit(&r, "a", "00000000000000cc", "n1", NULL), 4);
    /* Unknown layout version and garbage. */
    assert_int_equal(sm_ops_restore(&catalog_sm_ops, r.cat, 2, buf, n), ID_EVERSION);
    assert_int_equal(sm_ops_restore(&catalog_sm_ops, r.cat, 1, (const uint8_t *)"\xff\xff", 2),
                     ID_EPROTO);
    assert_non_null(catalog_find(r.cat, "a"));
    replica_free(&r);
}

/* ---- placement and repair ----------------------------------------------------------------- */

static void test_placement_spreads_evenly(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    struct sdfs_node nodes[10] = {{0}};
    char names[10][8];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "node%d", i + 1);
        nodes[i].name = names[i];
    }
    /* 1,000 files through placement and commit: loads stay within a few
     * copies of each other (4,000 copies over 10 nodes). */
    for (unsigned i = 0; i < 1000; i++) {
        char name[32], blob[SDFS_BLOB_LEN + 1], reps[128] = "";
        snprintf(name, sizeof name, "f%u", i);
        size_t out[SDFS_REPLICAS];
        assert_int_equal(catalog_place(r.cat, name, nodes, 10, NULL, 0, SDFS_REPLICAS, out),
                         SDFS_REPLICAS);
        for (int k = 0; k < SDFS_REPLICAS; k++) {
            for (int j = 0; j < k; j++)
                assert_true(out[j] != out[k]);
            strcat(reps, k ? "," : "");
            strcat(reps, names[out[k]]);
        }
        blob_id(i + 1, blob);
        assert_int_equal(commit(&r, name, blob, reps, NULL), 1);
    }
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 10; i++) {
        uint64_t l = catalog_node_load(r.cat, names[i]);
        lo = l < lo ? l : lo;
        hi = l > hi ? l : hi;
    }
    assert_true(hi - lo <= 2);
    /* avoid is honoured; fewer live nodes than replicas gives what there is. */
    const char *avoid[] = {"node1", "node2"};
    size_t out[SDFS_REPLICAS];
    size_t n = catalog_place(r.cat, "x", nodes, 3, avoid, 2, SDFS_REPLICAS, out);
    assert_int_equal(n, 1);
    assert_string_equal(nodes[out[0]].name, "node3");
    assert_int_equal(catalog_place(r.cat, "x", nodes, 0, NULL, 0, SDFS_REPLICAS, out), 0);
    replica_free(&r);
}

static int skip_blob_ff(void *ud, const char *blob)
{
    (void)ud;
    return strcmp(blob, "00000000000000ff") == 0;
}

static void test_repair_plans(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    commit(&r, "a", "00000000000000a1", "n1,n2,n3,n4", NULL);
    commit(&r, "b", "00000000000000b1", "n1,n2,n3,n5", NULL);
    commit(&r, "c", "00000000000000ff", "n1,n2,n3,n4", NULL);
    commit(&r, "d", "00000000000000d1", "n4,n5,n6,n7", NULL);
    /* n1, n2, n3 died: 3 files lost 3 copies each; d is untouched. */
    const char *live[] = {"n4", "n5", "n6", "n7", "n8"};
    struct sdfs_node alive[5] = {{0}};
    for (int i = 0; i < 5; i++)
        alive[i].name = live[i];
    struct sdfs_repair plan[16];
    size_t n = catalog_plan_repairs(r.cat, alive, 5, skip_blob_ff, NULL, plan, 16);
    /* One repair per version per round (c is skipped: already being fixed). */
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_true(strcmp(plan[i].dead, "n1") == 0);
        /* The target is alive and not already a replica. */
        const struct sdfs_version *v = plan[i].version;
        for (size_t k = 0; k < v->n_replicas; k++)
            assert_string_not_equal(v->replicas[k], plan[i].target);
        int is_live = 0;
        for (int k = 0; k < 5; k++)
            is_live |= strcmp(live[k], plan[i].target) == 0;
        assert_true(is_live);
    }
    /* The first target is the least loaded live node (n8 holds nothing). */
    assert_string_equal(plan[0].target, "n8");
    /* Executing rounds until nothing is left brings every version to 4 live copies. */
    for (int round = 0; round < 10; round++) {
        n = catalog_plan_repairs(r.cat, alive, 5, NULL, NULL, plan, 16);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(
                change(&r, plan[i].file->name, plan[i].version->blob, plan[i].dead, plan[i].target),
                0);
    }
    assert_int_equal(catalog_plan_repairs(r.cat, alive, 5, NULL, NULL, plan, 16), 0);
    for (size_t i = 0; i < catalog_count(r.cat); i++) {
        const struct sdfs_version *v = &catalog_at(r.cat, i)->versions[0];
        assert_int_equal(v->n_replicas, 4);
        for (size_t k = 0; k < 4; k++)
            assert_true(v->replicas[k][1] >= '4');
    }
    /* A version with no live copy at all cannot be repaired (no source). */
    commit(&r, "e", "00000000000000e1", "n1,n2", NULL);
    n = catalog_plan_repairs(r.cat, alive, 5, NULL, NULL, plan, 16);
    assert_int_equal(n, 0);
    replica_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_versions_keep_last_five),
        cmocka_unit_test(test_commit_is_idempotent_by_blob),
        cmocka_unit_test(test_commit_rejects_bad_input),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_replica_changes),
        cmocka_unit_test(test_commit_keeps_crc32c),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_restore_rejects_bad_sections),
        cmocka_unit_test(test_placement_spreads_evenly),
        cmocka_unit_test(test_repair_plans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
