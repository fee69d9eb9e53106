/* test_sm.c — the control plane's state machine framework without Raft: entry
 * codec and padding, dispatch in log order, versions, snapshots and restore,
 * digests, the kv and meta sub-state machines, and the snapshot scratch. */
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
#include "ctl/kv.h"
#include "ctl/meta.h"
#include "ctl/sm.h"
#include "idunno.pb-c.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* A replica: the framework with meta and kv registered. */
struct replica {
    struct sm sm;
    struct kv *kv;
    struct meta *meta;
};

static void replica_init(struct replica *r)
{
    sm_init(&r->sm);
    r->kv = kv_create();
    r->meta = meta_create();
    assert_non_null(r->kv);
    assert_non_null(r->meta);
    assert_int_equal(sm_register(&r->sm, &kv_sm_ops, r->kv), 0);
    assert_int_equal(sm_register(&r->sm, &meta_sm_ops, r->meta), 0);
}

static void replica_free(struct replica *r)
{
    kv_destroy(r->kv);
    meta_destroy(r->meta);
}

/* Encodes a command entry (malloc'd). */
static void *entry_of(uint32_t type, uint32_t version, const ProtobufCMessage *body, uint64_t seq,
                      size_t *len)
{
    uint8_t buf[70000];
    size_t n = body ? protobuf_c_message_pack(body, buf) : 0;
    struct sm_cmd cmd = {.type = type,
                         .version = version,
                         .body = buf,
                         .len = n,
                         .origin = 7,
                         .seq = seq,
                         .time_ms = 1000 + seq};
    void *out;
    assert_int_equal(sm_encode(&cmd, NULL, &out, len), 0);
    return out;
}

static void *put_entry(const char *key, const char *value, uint64_t seq, size_t *len)
{
    Idunno__CtlKvPut p = IDUNNO__CTL_KV_PUT__INIT;
    p.key = (char *)key;
    p.value.data = (uint8_t *)value;
    p.value.len = strlen(value);
    return entry_of(IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT, 1, &p.base, seq, len);
}

static void *leader_entry(uint64_t term, const char *name, size_t *len)
{
    /* Callers use announce(), which sequences the length correctly. */
    Idunno__CtlLeader l = IDUNNO__CTL_LEADER__INIT;
    l.term = term;
    l.name = (char *)name;
    l.addr = "127.0.0.1:7000";
    l.raft_id = term * 10;
    return entry_of(IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_LEADER, 1, &l.base, term, len);
}

/* Applies a leader announcement and returns the result status. */
static int apply(struct replica *r, void *entry, size_t len);
static int announce(struct replica *r, uint64_t term, const char *name)
{
    size_t len;
    void *e = leader_entry(term, name, &len);
    return apply(r, e, len);
}

/* Applies an entry and returns the result status. */
static int apply(struct replica *r, void *entry, size_t len)
{
    struct sm_result res = {0};
    sm_apply_entry(&r->sm, entry, len, &res);
    sm_result_clear(&res);
    free(entry);
    return res.status;
}

static int put(struct replica *r, const char *key, const char *value)
{
    size_t len;
    void *e = put_entry(key, value, r->sm.applied + 1, &len);
    return apply(r, e, len);
}

static void assert_value(struct replica *r, const char *key, const char *value)
{
    const uint8_t *v;
    size_t n;
    uint64_t rev;
    assert_int_equal(kv_get(r->kv, key, &v, &n, &rev), 0);
    assert_int_equal(n, strlen(value));
    assert_memory_equal(v, value, n);
}

static void assert_same_digest(struct replica *a, struct replica *b)
{
    char da[65], db[65];
    sm_digest_hex(&a->sm, da);
    sm_digest_hex(&b->sm, db);
    assert_string_equal(da, db);
}

/* ---- SHA-256 ------------------------------------------------------------------------------ */

static void hex_of(const char *msg, size_t len, char out[65])
{
    struct sha256 h;
    uint8_t d[SHA256_LEN];
    sha256_init(&h);
    sha256_update(&h, msg, len);
    sha256_final(&h, d);
    sha256_hex(d, out);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char out[65];
    hex_of("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(two, strlen(two), out);
    assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* One million 'a', fed in uneven pieces to exercise the partial block. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    struct sha256 h;
    uint8_t d[SHA256_LEN];
    sha256_init(&h);
    for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 3 % 997 + 1)
        sha256_update(&h, a + off, off + step > 1000000 ? 1000000 - off : step);
    sha256_final(&h, d);
    sha256_hex(d, out);
    assert_string_equal(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* ---- entries ------------------------------------------------------------------------------ */

static void test_entry_roundtrip_and_padding(void **state)
{
    (void)state;
    uint8_t body[64];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 7 + 1);
    for (size_t n = 0; n <= sizeof body; n++) {
        struct sm_cmd cmd = {.type = 900,
                             .version = 3,
                             .body = body,
                             .len = n,
                             .origin = 0x1122334455667788ull,
                             .seq = n + 1,
                             .time_ms = 42};
        void *e;
        size_t len;
        assert_int_equal(sm_encode(&cmd, NULL, &e, &len), 0);
        assert_int_equal(len % 8, 0);
        assert_memory_equal(e, "IDCM", 4);
        struct sm_decoded d;
        assert_int_equal(sm_decode(e, len, &d), 0);
        assert_int_equal(d.cmd.type, 900);
        assert_int_equal(d.cmd.version, 3);
        assert_int_equal(d.cmd.len, n);
        if (n)
            assert_memory_equal(d.cmd.body, body, n);
        assert_true(d.cmd.origin == 0x1122334455667788ull);
        assert_int_equal(d.cmd.seq, n + 1);
        assert_int_equal(d.cmd.time_ms, 42);
        sm_decoded_free(&d);
        free(e);
    }
}

static void test_entry_rejects_damage(void **state)
{
    (void)state;
    size_t len;
    uint8_t *e = put_entry("key", "value!", 1, &len);
    struct sm_decoded d;
    /* Length not a multiple of 8, too short, or truncated. */
    assert_int_equal(sm_decode(e, len - 1, &d), ID_EPROTO);
    assert_int_equal(sm_decode(e, 4, &d), ID_EPROTO);
    assert_int_equal(sm_decode(e, len - 8, &d), ID_EPROTO);
    assert_int_equal(sm_decode(NULL, 0, &d), ID_EPROTO);
    /* Bad magic. */
    e[0] ^= 1;
    assert_int_equal(sm_decode(e, len, &d), ID_EPROTO);
    e[0] ^= 1;
    /* A length field past the buffer. */
    e[5] = 0xff;
    assert_int_equal(sm_decode(e, len, &d), ID_EPROTO);
    free(e);
    /* Non-zero padding (find an entry with padding first). */
    e = put_entry("k", "v", 1, &len);
    uint32_t n = (uint32_t)e[4] | (uint32_t)e[5] << 8;
    if (SM_ENTRY_HEADER + n < len) {
        e[len - 1] = 1;
        assert_int_equal(sm_decode(e, len, &d), ID_EPROTO);
    }
    free(e);
    /* Random damage never crashes; a malformed entry still counts as applied,
     * so every replica stays at the same position. */
    struct replica r;
    replica_init(&r);
    uint32_t seed = 12345;
    for (int round = 0; round < 2000; round++) {
        e = put_entry("fuzz", "some value here", 1, &len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            e[(seed >> 8) % len] ^= (uint8_t)(1u << ((seed >> 4) % 8));
        }
        uint64_t before = r.sm.applied;
        apply(&r, e, len);
        assert_int_equal(r.sm.applied, before + 1);
    }
    replica_free(&r);
}

/* ---- registration and dispatch ------------------------------------------------------------ */

static void test_register_rejects_overlaps(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    struct sm_ops clash = kv_sm_ops;
    clash.id = 5; /* new id, but its type range overlaps kv's */
    assert_int_equal(sm_register(&r.sm, &clash, r.kv), ID_EEXIST);
    clash = meta_sm_ops;
    clash.type_lo = 500;
    clash.type_hi = 600; /* free range, but meta's id */
    assert_int_equal(sm_register(&r.sm, &clash, r.meta), ID_EEXIST);
    clash.id = 6;
    clash.type_lo = 600;
    clash.type_hi = 500; /* empty range */
    assert_int_equal(sm_register(&r.sm, &clash, r.meta), ID_EINVAL);
    /* Sub-state machines are kept in id order whatever the registration order. */
    assert_int_equal(r.sm.subs[0].ops->id, SM_ID_META);
    assert_int_equal(r.sm.subs[1].ops->id, SM_ID_KV);
    replica_free(&r);
}

static void test_apply_in_order_with_results(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(put(&r, "b", "1"), 0);
    assert_int_equal(put(&r, "a", "2"), 0);
    assert_int_equal(put(&r, "b", "3"), 0); /* overwrite: last write wins */
    assert_value(&r, "a", "2");
    assert_value(&r, "b", "3");
    assert_int_equal(kv_count(r.kv), 2);
    assert_int_equal(kv_revision(r.kv), 3);

    /* The proposer asks for the result body: the new revision. */
    size_t len;
    void *e = put_entry("c", "4", 9, &len);
    struct sm_decoded d;
    assert_int_equal(sm_decode(e, len, &d), 0);
    struct sm_result res = {.want_body = 1};
    sm_apply(&r.sm, &d.cmd, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(d.cmd.applied, 4);
    Idunno__CtlKvPutResult *pr = idunno__ctl_kv_put_result__unpack(NULL, res.len, res.body);
    assert_non_null(pr);
    assert_int_equal(pr->revision, 4);
    idunno__ctl_kv_put_result__free_unpacked(pr, NULL);
    sm_result_clear(&res);
    sm_decoded_free(&d);
    free(e);

    /* A follower applies without wanting a body: none is produced. */
    e = put_entry("d", "5", 10, &len);
    assert_int_equal(sm_decode(e, len, &d), 0);
    res = (struct sm_result){.want_body = 0};
    sm_apply(&r.sm, &d.cmd, &res);
    assert_int_equal(res.status, 0);
    assert_null(res.body);
    sm_decoded_free(&d);
    free(e);

    /* Delete. */
    Idunno__CtlKvGet g = IDUNNO__CTL_KV_GET__INIT;
    g.key = "a";
    e = entry_of(IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_DEL, 1, &g.base, 11, &len);
    assert_int_equal(apply(&r, e, len), 0);
    const uint8_t *v;
    size_t n;
    uint64_t rev;
    assert_int_equal(kv_get(r.kv, "a", &v, &n, &rev), ID_ENOTFOUND);
    e = entry_of(IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_DEL, 1, &g.base, 12, &len);
    assert_int_equal(apply(&r, e, len), ID_ENOTFOUND);
    replica_free(&r);
}

static void test_unknown_types_versions_and_bad_bodies(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_int_equal(put(&r, "k", "v"), 0);
    struct sm_buf before = {0};
    assert_int_equal(kv_sm_ops.snapshot(r.kv, &before), 0);

    size_t len;
    void *e = entry_of(4242, 1, NULL, 2, &len); /* no owner */
    assert_int_equal(apply(&r, e, len), ID_EUNKNOWNTYPE);
    Idunno__CtlKvPut p = IDUNNO__CTL_KV_PUT__INIT;
    p.key = "k";
    p.value.data = (uint8_t *)"new";
    p.value.len = 3;
    e = entry_of(IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT, 2, &p.base, 3,
                 &len); /* future version */
    assert_int_equal(apply(&r, e, len), ID_EVERSION);
    p.key = ""; /* invalid key */
    e = entry_of(IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT, 1, &p.base, 4, &len);
    assert_int_equal(apply(&r, e, len), ID_EINVAL);
    /* A body that is not a CtlKvPut. */
    struct sm_cmd cmd = {.type = IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT,
                         .version = 1,
                         .body = (const uint8_t *)"\xff\xff\xff",
                         .len = 3};
    assert_int_equal(sm_encode(&cmd, NULL, &e, &len), 0);
    assert_int_equal(apply(&r, e, len), ID_EPROTO);

    /* Rejected commands left the store as it was, but were counted. */
    struct sm_buf after = {0};
    assert_int_equal(kv_sm_ops.snapshot(r.kv, &after), 0);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    assert_int_equal(r.sm.applied, 5);
    sm_buf_free(&before);
    sm_buf_free(&after);
    replica_free(&r);
}

/* ---- replicas, snapshots, digests -------------------------------------------------------- */

static void test_replicas_same_log_same_digest(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    assert_same_digest(&a, &b);
    char empty[65], d[65];
    sm_digest_hex(&a.sm, empty);
    for (int i = 0; i < 300; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "k%d", i % 37);
        snprintf(val, sizeof val, "v%d", i);
        size_t len;
        void *e = put_entry(key, val, (uint64_t)i, &len);
        void *copy = malloc(len);
        memcpy(copy, e, len);
        apply(&a, e, len);
        apply(&b, copy, len);
    }
    assert_same_digest(&a, &b);
    sm_digest_hex(&a.sm, d);
    assert_string_not_equal(d, empty);
    /* One more command on one replica only: digests differ. */
    put(&a, "extra", "x");
    sm_digest_hex(&a.sm, d);
    char db[65];
    sm_digest_hex(&b.sm, db);
    assert_string_not_equal(d, db);
    replica_free(&a);
    replica_free(&b);
}

static void test_snapshot_restore(void **state)
{
    (void)state;
    struct replica a, b;
    replica_init(&a);
    replica_init(&b);
    assert_int_equal(announce(&a, 2, "node1"), 0);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof key, "key%02d", i);
        assert_int_equal(put(&a, key, key), 0);
    }
    /* b has unrelated state, which the restore must replace entirely. */
    put(&b, "stale", "x");
    void *snap;
    size_t slen;
    assert_int_equal(sm_snapshot(&a.sm, NULL, &snap, &slen), 0);
    assert_int_equal(slen % 8, 0);
    assert_int_equal(sm_restore(&b.sm, snap, slen), 0);
    assert_same_digest(&a, &b);
    assert_value(&b, "key07", "key07");
    const uint8_t *v;
    size_t n;
    uint64_t rev;
    assert_int_equal(kv_get(b.kv, "stale", &v, &n, &rev), ID_ENOTFOUND);
    assert_string_equal(meta_last_leader(b.meta)->name, "node1");
    assert_int_equal(b.sm.applied, a.sm.applied);

    /* Both go on from the snapshot with the same commands. */
    put(&a, "after", "1");
    put(&b, "after", "1");
    assert_same_digest(&a, &b);

    /* A damaged snapshot changes nothing. */
    char before[65], now[65];
    sm_digest_hex(&b.sm, before);
    uint8_t *bad = malloc(slen);
    memcpy(bad, snap, slen);
    bad[slen / 2] ^= 0x55;
    int rc = sm_restore(&b.sm, bad, slen);
    if (rc == 0) {
        /* The flip may land in a value byte and still decode; then the restore
         * is legal and must equal a's snapshot-time state, not b's. */
        sm_digest_hex(&b.sm, now);
        assert_string_not_equal(now, before);
    } else {
        sm_digest_hex(&b.sm, now);
        assert_string_equal(now, before);
    }
    assert_int_equal(sm_restore(&b.sm, snap, slen - 8), ID_EPROTO);
    free(bad);
    free(snap);
    replica_free(&a);
    replica_free(&b);
}

static void test_restore_absent_section_resets_and_unknown_section_fails(void **state)
{
    (void)state;
    /* A replica with only meta takes a snapshot; restoring it into a full
     * replica resets kv (absent section). */
    struct sm only_meta;
    sm_init(&only_meta);
    struct meta *m = meta_create();
    assert_int_equal(sm_register(&only_meta, &meta_sm_ops, m), 0);
    size_t len;
    void *e = leader_entry(3, "node2", &len);
    struct sm_result res = {0};
    sm_apply_entry(&only_meta, e, len, &res);
    free(e);
    void *snap;
    size_t slen;
    assert_int_equal(sm_snapshot(&only_meta, NULL, &snap, &slen), 0);

    struct replica r;
    replica_init(&r);
    put(&r, "k", "v");
    assert_int_equal(sm_restore(&r.sm, snap, slen), 0);
    assert_int_equal(kv_count(r.kv), 0);
    assert_string_equal(meta_last_leader(r.meta)->name, "node2");
    free(snap);

    /* The other way round: a snapshot with a kv section this build (only_meta)
     * does not know is refused, and nothing changes. */
    put(&r, "k2", "v");
    assert_int_equal(sm_snapshot(&r.sm, NULL, &snap, &slen), 0);
    assert_int_equal(sm_restore(&only_meta, snap, slen), ID_EVERSION);
    assert_string_equal(meta_last_leader(m)->name, "node2");
    free(snap);
    meta_destroy(m);
    replica_free(&r);
}

static void test_meta_one_leader_per_term(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    assert_null(meta_last_leader(r.meta));
    assert_int_equal(announce(&r, 2, "node1"), 0);
    assert_int_equal(announce(&r, 2, "node2"), ID_EEXIST);
    assert_int_equal(announce(&r, 1, "node3"), ID_EEXIST);
    assert_string_equal(meta_last_leader(r.meta)->name, "node1");
    for (uint64_t t = 3; t < 3 + 2 * META_HISTORY; t++)
        assert_int_equal(announce(&r, t, "nodeX"), 0);
    const struct meta_leader *all;
    size_t n = meta_leaders(r.meta, &all);
    assert_int_equal(n, META_HISTORY);
    for (size_t i = 1; i < n; i++)
        assert_true(all[i].term == all[i - 1].term + 1);
    assert_int_equal(meta_last_leader(r.meta)->term, 2 + 2 * META_HISTORY);
    replica_free(&r);
}

static void test_kv_limits(void **state)
{
    (void)state;
    struct replica r;
    replica_init(&r);
    char key[KV_MAX_KEY + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    assert_int_equal(put(&r, key, "v"), ID_EINVAL);
    key[KV_MAX_KEY] = 0;
    assert_int_equal(put(&r, key, "v"), 0);
    char *big = malloc(KV_MAX_VALUE + 2);
    memset(big, 'x', KV_MAX_VALUE + 1);
    big[KV_MAX_VALUE + 1] = 0;
    assert_int_equal(put(&r, "big", big), ID_EINVAL);
    big[KV_MAX_VALUE] = 0;
    assert_int_equal(put(&r, "big", big), 0);
    free(big);
    replica_free(&r);
}

/* Scratch blocks are zeroed, aligned, freed together (adopted ones too: the
 * ASan build checks for leaks); a failure is sticky and packs to ID_ENOMEM. */
static void test_scratch(void **state)
{
    (void)state;
    struct sm_scratch sc = {0};
    uint64_t *a = sm_scratch_calloc(&sc, 0, sizeof *a); /* zero elements: still one */
    assert_non_null(a);
    assert_int_equal(a[0], 0);
    assert_int_equal((uintptr_t)a % _Alignof(max_align_t), 0);
    double *d = sm_scratch_calloc(&sc, 1000, sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < 1000; i++)
        assert_true(d[i] == 0.0);
    sm_scratch_adopt(&sc, malloc(100));
    sm_scratch_adopt(&sc, NULL);
    assert_false(sc.failed);
    Idunno__CtlKvEntry e = IDUNNO__CTL_KV_ENTRY__INIT;
    e.key = "k";
    e.revision = 9;
    struct sm_buf out = {0};
    assert_int_equal(sm_scratch_pack(&sc, &out, &e.base), 0);
    assert_null(sc.blocks);
    Idunno__CtlKvEntry *back = idunno__ctl_kv_entry__unpack(NULL, out.len, out.data);
    assert_non_null(back);
    assert_string_equal(back->key, "k");
    assert_int_equal(back->revision, 9);
    idunno__ctl_kv_entry__free_unpacked(back, NULL);
    size_t before = out.len;
    assert_null(sm_scratch_calloc(&sc, SIZE_MAX / 2, 4)); /* overflows: refused */
    assert_true(sc.failed);
    assert_non_null(sm_scratch_calloc(&sc, 1, 8));                    /* later ones still work... */
    assert_int_equal(sm_scratch_pack(&sc, &out, &e.base), ID_ENOMEM); /* ...but it failed */
    assert_int_equal(out.len, before);
    assert_false(sc.failed);
    sm_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_entry_roundtrip_and_padding),
        cmocka_unit_test(test_entry_rejects_damage),
        cmocka_unit_test(test_register_rejects_overlaps),
        cmocka_unit_test(test_apply_in_order_with_results),
        cmocka_unit_test(test_unknown_types_versions_and_bad_bodies),
        cmocka_unit_test(test_replicas_same_log_same_digest),
        cmocka_unit_test(test_snapshot_restore),
        cmocka_unit_test(test_restore_absent_section_resets_and_unknown_section_fails),
        cmocka_unit_test(test_meta_one_leader_per_term),
        cmocka_unit_test(test_kv_limits),
        cmocka_unit_test(test_scratch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
