/* test_catalog_batch.c — the SDFS batched commit (CTL_CMD_SDFS_COMMIT_BATCH)
 * without I/O: new files and new versions of existing files in one entry, a
 * name twice in one batch, all-or-nothing on a bad version, idempotent retries,
 * versions falling out of the kept window inside one batch. */
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

static int apply(struct replica *r, uint32_t type, const ProtobufCMessage *body,
                 struct sm_result *out)
{
    size_t n = protobuf_c_message_get_packed_size(body);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(body, buf);
    struct sm_cmd cmd = {.type = type,
                         .version = 1,
                         .body = buf,
                         .len = n,
                         .origin = 1,
                         .seq = r->sm.applied + 1,
                         .time_ms = 7000};
    void *entry;
    size_t len;
    assert_int_equal(sm_encode(&cmd, NULL, &entry, &len), 0);
    struct sm_result res = {.want_body = out != NULL};
    sm_apply_entry(&r->sm, entry, len, &res);
    free(entry);
    free(buf);
    if (out)
        *out = res;
    else
        sm_result_clear(&res);
    return res.status;
}

/* A request under construction: up to 16 versions on 2 fixed replicas. */
struct batch {
    Idunno__SdfsVersion v[16];
    Idunno__SdfsVersion *vp[16];
    uint8_t sha[16][32];
    uint8_t crc[16][4];
    size_t n;
};

static char *reps[] = {"n1", "n2"};

static void batch_add(struct batch *b, const char *name, const char *blob)
{
    Idunno__SdfsVersion *v = &b->v[b->n];
    idunno__sdfs_version__init(v);
    memset(b->sha[b->n], (int)b->n + 1, 32);
    sdfs_crc_encode(b->crc[b->n], 0xC0DE0000u + (uint32_t)b->n);
    v->name = (char *)name;
    v->blob = (char *)blob;
    v->size = 10 + b->n;
    v->sha256.data = b->sha[b->n];
    v->sha256.len = 32;
    v->crc32c.data = b->crc[b->n];
    v->crc32c.len = 4;
    v->n_replicas = 2;
    v->replicas = reps;
    b->vp[b->n] = v;
    b->n++;
}

/* Applies the batch; on success returns the unpacked result (caller frees). */
static Idunno__SdfsCommitBatch *commit_batch(struct replica *r, struct batch *b, int *status)
{
    Idunno__SdfsCommitBatch m = IDUNNO__SDFS_COMMIT_BATCH__INIT;
    m.n_versions = b->n;
    m.versions = b->vp;
    struct sm_result res;
    *status = apply(r, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT_BATCH, &m.base, &res);
    Idunno__SdfsCommitBatch *got = NULL;
    if (*status == 0) {
        got = idunno__sdfs_commit_batch__unpack(NULL, res.len, res.body);
        assert_non_null(got);
    }
    sm_result_clear(&res);
    return got;
}

static uint64_t latest(const struct replica *r, const char *name)
{
    const struct sdfs_file *f = catalog_find(r->cat, name);
    return f ? f->versions[f->n_versions - 1].version : 0;
}

static void test_new_files_and_new_versions(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    struct batch b1 = {0};
    batch_add(&b1, "d/a.jpg", "00000000000000a1");
    int st;
    Idunno__SdfsCommitBatch *got = commit_batch(&r, &b1, &st);
    assert_int_equal(st, 0);
    idunno__sdfs_commit_batch__free_unpacked(got, NULL);

    struct batch b2 = {0};
    batch_add(&b2, "d/c.jpg", "00000000000000c1");
    batch_add(&b2, "d/a.jpg", "00000000000000a2"); /* a new version of an existing file */
    batch_add(&b2, "d/b.jpg", "00000000000000b1");
    got = commit_batch(&r, &b2, &st);
    assert_int_equal(st, 0);
    assert_int_equal(got->n_versions, 3);
    assert_string_equal(got->versions[0]->name, "d/c.jpg");
    assert_int_equal(got->versions[0]->version, 1);
    assert_string_equal(got->versions[1]->name, "d/a.jpg");
    assert_int_equal(got->versions[1]->version, 2);
    assert_string_equal(got->versions[1]->blob, "00000000000000a2");
    assert_int_equal(got->versions[2]->version, 1);
    assert_int_equal(got->versions[2]->time_ms, 7000);
    idunno__sdfs_commit_batch__free_unpacked(got, NULL);

    assert_int_equal(catalog_count(r.cat), 3);
    assert_string_equal(catalog_at(r.cat, 0)->name, "d/a.jpg"); /* still sorted */
    assert_string_equal(catalog_at(r.cat, 1)->name, "d/b.jpg");
    assert_string_equal(catalog_at(r.cat, 2)->name, "d/c.jpg");
    const struct sdfs_version *v = catalog_find_blob(r.cat, "d/b.jpg", "00000000000000b1");
    assert_non_null(v);
    assert_int_equal(v->size, 12);
    assert_true(v->has_crc32c);
    assert_int_equal(sdfs_crc_decode(v->crc32c_be), 0xC0DE0002u);
    assert_int_equal(v->sha256[0], 3);
    assert_int_equal(catalog_node_load(r.cat, "n1"), 4);
    catalog_destroy(r.cat);
}

static void test_name_twice_in_one_batch(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    struct batch b = {0};
    batch_add(&b, "x", "0000000000000001");
    batch_add(&b, "x", "0000000000000002");
    int st;
    Idunno__SdfsCommitBatch *got = commit_batch(&r, &b, &st);
    assert_int_equal(st, 0);
    assert_int_equal(got->versions[0]->version, 1);
    assert_int_equal(got->versions[1]->version, 2);
    idunno__sdfs_commit_batch__free_unpacked(got, NULL);
    const struct sdfs_file *f = catalog_find(r.cat, "x");
    assert_non_null(f);
    assert_int_equal(f->n_versions, 2);
    assert_string_equal(f->versions[1].blob, "0000000000000002");
    assert_int_equal(catalog_count(r.cat), 1);
    catalog_destroy(r.cat);
}

static void test_bad_version_applies_nothing(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    struct batch ok = {0};
    batch_add(&ok, "keep", "00000000000000f1");
    int st;
    idunno__sdfs_commit_batch__free_unpacked(commit_batch(&r, &ok, &st), NULL);
    assert_int_equal(st, 0);

    const char *bad_blobs[] = {"NOT-A-BLOB", "00000000000000f2"};
    const char *bad_names[] = {"fine", "../escape"};
    for (int k = 0; k < 2; k++) {
        struct batch b = {0};
        batch_add(&b, "new1", "0000000000000011");
        batch_add(&b, "keep", "00000000000000f3");
        batch_add(&b, bad_names[k], bad_blobs[k]);
        assert_null(commit_batch(&r, &b, &st));
        assert_int_equal(st, ID_EINVAL);
        assert_int_equal(catalog_count(r.cat), 1);
        assert_null(catalog_find(r.cat, "new1"));
        assert_int_equal(latest(&r, "keep"), 1);
    }
    struct batch none = {0};
    assert_null(commit_batch(&r, &none, &st));
    assert_int_equal(st, ID_EINVAL);
    assert_int_equal(catalog_node_load(r.cat, "n1"), 1);
    catalog_destroy(r.cat);
}

static void test_retry_is_idempotent(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    struct batch b = {0};
    batch_add(&b, "p/1", "0000000000000101");
    batch_add(&b, "p/2", "0000000000000102");
    int st;
    Idunno__SdfsCommitBatch *first = commit_batch(&r, &b, &st);
    assert_int_equal(st, 0);
    Idunno__SdfsCommitBatch *again = commit_batch(&r, &b, &st); /* a retried proposal */
    assert_int_equal(st, 0);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(again->versions[i]->version, first->versions[i]->version);
    idunno__sdfs_commit_batch__free_unpacked(first, NULL);
    idunno__sdfs_commit_batch__free_unpacked(again, NULL);
    assert_int_equal(catalog_find(r.cat, "p/1")->n_versions, 1);
    assert_int_equal(catalog_node_load(r.cat, "n2"), 2);
    catalog_destroy(r.cat);
}

static void test_versions_fall_out_within_a_batch(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    static char blobs[SDFS_KEEP_VERSIONS + 2][SDFS_BLOB_LEN + 1];
    struct batch b = {0};
    for (int i = 0; i < SDFS_KEEP_VERSIONS + 2; i++) {
        snprintf(blobs[i], sizeof blobs[i], "%016x", 0x500 + i);
        batch_add(&b, "many", blobs[i]);
    }
    int st;
    Idunno__SdfsCommitBatch *got = commit_batch(&r, &b, &st);
    assert_int_equal(st, 0);
    assert_int_equal(got->versions[SDFS_KEEP_VERSIONS - 1]->n_dropped, 0);
    assert_int_equal(got->versions[SDFS_KEEP_VERSIONS]->n_dropped, 1);
    assert_string_equal(got->versions[SDFS_KEEP_VERSIONS]->dropped[0], blobs[0]);
    assert_string_equal(got->versions[SDFS_KEEP_VERSIONS + 1]->dropped[0], blobs[1]);
    assert_int_equal(got->versions[SDFS_KEEP_VERSIONS + 1]->version, SDFS_KEEP_VERSIONS + 2);
    idunno__sdfs_commit_batch__free_unpacked(got, NULL);
    const struct sdfs_file *f = catalog_find(r.cat, "many");
    assert_int_equal(f->n_versions, SDFS_KEEP_VERSIONS);
    assert_int_equal(catalog_node_load(r.cat, "n1"), SDFS_KEEP_VERSIONS);
    catalog_destroy(r.cat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_files_and_new_versions),
        cmocka_unit_test(test_name_twice_in_one_batch),
        cmocka_unit_test(test_bad_version_applies_nothing),
        cmocka_unit_test(test_retry_is_idempotent),
        cmocka_unit_test(test_versions_fall_out_within_a_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
