/* test_qstats.c — per-job query statistics: percentiles from the histogram
 * against exact ones (within 1%), exact mean and std dev, the 10 s window with
 * its pruning, rate and worker shares, and the canonical serialisation: round
 * trips byte for byte, equal states give equal bytes, and restore refuses any
 * damaged input without touching the state. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "sched/qstats.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state = rnd_state * 6364136223846793005ull + 1442695040888963407ull;
    return rnd_state >> 17;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* Nearest rank, the definition qstats documents. */
static double exact_pct(const uint32_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (n * pct + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

static void assert_within(double got, double want, double rel)
{
    if (fabs(got - want) > rel * fabs(want))
        fail_msg("got %.4f, want %.4f (within %.2f%%)", got, want, rel * 100);
}

static void serialize(const struct qstats *q, uint8_t **buf, size_t *len)
{
    assert_int_equal(qstats_serialize(q, buf, len), 0);
}

static void assert_same_summary(const struct qstats_summary *a, const struct qstats_summary *b)
{
    assert_int_equal(a->count, b->count);
    assert_true(a->mean_ms == b->mean_ms);
    assert_true(a->stddev_ms == b->stddev_ms);
    assert_true(a->median_ms == b->median_ms);
    assert_true(a->p90_ms == b->p90_ms);
    assert_true(a->p95_ms == b->p95_ms);
    assert_true(a->p99_ms == b->p99_ms);
}

/* ---- all-time statistics -------------------------------------------------------------------- */

static void check_against_exact(const uint32_t *v, size_t n)
{
    struct qstats *q = qstats_create();
    assert_non_null(q);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(qstats_record(q, 1000 + i, v[i], "w"), 0);
        sum += v[i];
    }
    uint32_t *s = malloc(n * sizeof *s);
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_u32);
    long double mean = (long double)sum / n, ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += ((long double)v[i] - mean) * ((long double)v[i] - mean);
    double sd = (double)sqrtl(ss / n);

    struct qstats_summary a;
    qstats_all(q, &a);
    assert_int_equal(a.count, n);
    assert_int_equal(qstats_total(q), n);
    assert_true(a.mean_ms == (double)sum / (double)n); /* exact */
    assert_within(a.stddev_ms, sd, 1e-9);
    assert_within(a.median_ms, exact_pct(s, n, 50), 0.01);
    assert_within(a.p90_ms, exact_pct(s, n, 90), 0.01);
    assert_within(a.p95_ms, exact_pct(s, n, 95), 0.01);
    assert_within(a.p99_ms, exact_pct(s, n, 99), 0.01);
    free(s);
    qstats_destroy(q);
}

static void test_percentiles_within_one_percent(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint32_t *v = malloc(N * sizeof *v);
    /* Log-uniform over 1 ms .. ~16 min: every histogram octave is used. */
    rnd_state = 1;
    for (size_t i = 0; i < N; i++) {
        double x = exp((double)(rnd() % 1000000) / 1000000.0 * log(1e6));
        v[i] = (uint32_t)x;
    }
    check_against_exact(v, N);
    /* Narrow around a large value: a bucket's width matters most here. */
    for (size_t i = 0; i < N; i++)
        v[i] = 50000 + (uint32_t)(rnd() % 3000);
    check_against_exact(v, N);
    /* All equal: std dev exactly 0, no cancellation noise. */
    for (size_t i = 0; i < N; i++)
        v[i] = 123457;
    check_against_exact(v, N);
    /* Each power of two alone: the lower edge of a bucket, where reporting the
     * bucket's midpoint is furthest off (0.8%). */
    for (unsigned e = 0; e < 32; e++) {
        uint32_t one[3] = {(uint32_t)1 << e, (uint32_t)1 << e, (uint32_t)1 << e};
        check_against_exact(one, 3);
    }
    /* The extremes of uint32. */
    uint32_t ext[] = {0, 1, UINT32_MAX, UINT32_MAX - 1, 127, 128, 129, 255, 256};
    check_against_exact(ext, sizeof ext / sizeof ext[0]);
    free(v);
}

static void test_small_values_exact(void **state)
{
    (void)state;
    struct qstats *q = qstats_create();
    /* 1..100 once each: below 128 every value has its own bucket. */
    for (uint32_t i = 1; i <= 100; i++)
        assert_int_equal(qstats_record(q, i, i, "w"), 0);
    struct qstats_summary a;
    qstats_all(q, &a);
    assert_true(a.mean_ms == 50.5);
    assert_true(a.median_ms == 50);
    assert_true(a.p90_ms == 90);
    assert_true(a.p95_ms == 95);
    assert_true(a.p99_ms == 99);
    assert_within(a.stddev_ms, sqrt((100.0 * 100 - 1) / 12), 1e-12);
    qstats_destroy(q);

    /* Empty: all zero. */
    q = qstats_create();
    qstats_all(q, &a);
    assert_int_equal(a.count, 0);
    assert_true(a.mean_ms == 0 && a.stddev_ms == 0 && a.p99_ms == 0);
    assert_true(qstats_rate(q, 5000) == 0);
    assert_int_equal(qstats_shares(q, 5000, NULL, 0), 0);
    qstats_destroy(q);
}

/* ---- the window ----------------------------------------------------------------------------- */

static void test_window_rate_and_pruning(void **state)
{
    (void)state;
    struct qstats *q = qstats_create();
    /* One completion every 10 ms from t=100000: 100 per second. The first
     * 10 s take 100 ms each, the rest 200 ms. */
    uint64_t t0 = 100000;
    for (uint64_t i = 0; i <= 500; i++)
        assert_int_equal(qstats_record(q, t0 + 10 * i, 100, "w"), 0);
    /* A young job (5 s old): 501 completions over 5 s. */
    assert_within(qstats_rate(q, t0 + 5000), 501.0 / 5, 1e-12);
    for (uint64_t i = 501; i < 3000; i++)
        assert_int_equal(qstats_record(q, t0 + 10 * i, i < 1000 ? 100 : 200, "w"), 0);
    uint64_t now = t0 + 10 * 2999;
    /* The window (now-10 s, now]: 1000 completions, all of 200 ms. */
    assert_within(qstats_rate(q, now), 100.0, 1e-12);
    struct qstats_summary w, a;
    qstats_window(q, now, &w);
    assert_int_equal(w.count, 1000);
    assert_true(w.mean_ms == 200 && w.stddev_ms == 0);
    assert_within(w.median_ms, 200, 0.01); /* 200 shares a bucket with 201 */
    qstats_all(q, &a);
    assert_int_equal(a.count, 3000);
    assert_within(a.mean_ms, (1000.0 * 100 + 2000.0 * 200) / 3000, 1e-12);
    /* The window's edges: a query later by 5 s sees half of it. */
    qstats_window(q, now + 5000, &w);
    assert_int_equal(w.count, 500);
    assert_within(qstats_rate(q, now + 5000), 50.0, 1e-12);
    qstats_window(q, now + 10000, &w);
    assert_int_equal(w.count, 0);
    /* And a time before them all counts nothing (the window ends at now). */
    qstats_window(q, t0 - 1, &w);
    assert_int_equal(w.count, 0);

    /* Pruning keeps the ring to the window: a long run at 100/s serialises to
     * about the same size as ten seconds of it. */
    uint8_t *buf;
    size_t len10, len;
    serialize(q, &buf, &len10);
    free(buf);
    for (uint64_t i = 3000; i < 200000; i++)
        assert_int_equal(qstats_record(q, t0 + 10 * i, 200, "w"), 0);
    serialize(q, &buf, &len);
    free(buf);
    assert_true(len < len10 + 64);
    /* A record far in the future prunes everything before it. */
    assert_int_equal(qstats_record(q, t0 + 10000000, 300, "w"), 0);
    serialize(q, &buf, &len);
    free(buf);
    assert_true(len < 200);
    assert_int_equal(qstats_total(q), 200001);
    qstats_destroy(q);
}

static void test_clock_steps_back(void **state)
{
    (void)state;
    struct qstats *q = qstats_create();
    /* A new coordinator's clock is 3 s behind the old one's. */
    assert_int_equal(qstats_record(q, 50000, 10, "a"), 0);
    assert_int_equal(qstats_record(q, 51000, 10, "a"), 0);
    assert_int_equal(qstats_record(q, 48000, 10, "b"), 0);
    assert_int_equal(qstats_record(q, 49000, 10, "b"), 0);
    struct qstats_summary w;
    qstats_window(q, 49000, &w);
    assert_int_equal(w.count, 2); /* 50000 and 51000 are after now */
    qstats_window(q, 58500, &w);
    assert_int_equal(w.count, 3); /* 48000 fell out */
    qstats_window(q, 60000, &w);
    assert_int_equal(w.count, 1); /* 51000 only */
    qstats_destroy(q);
}

static void test_shares(void **state)
{
    (void)state;
    struct qstats *q = qstats_create();
    /* "old" ran only before the window. */
    for (int i = 0; i < 50; i++)
        assert_int_equal(qstats_record(q, 1000 + i, 5, "old"), 0);
    const char *names[] = {"n2", "n1", "n3", "n4"};
    const int counts[] = {30, 60, 30, 10};
    uint64_t t = 20000;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < counts[k]; i++)
            assert_int_equal(qstats_record(q, t++, 5, names[k]), 0);
    struct qstats_share s[8];
    size_t n = qstats_shares(q, t, s, 8);
    assert_int_equal(n, 4);
    /* By count, then name. */
    assert_string_equal(s[0].worker, "n1");
    assert_string_equal(s[1].worker, "n2");
    assert_string_equal(s[2].worker, "n3");
    assert_string_equal(s[3].worker, "n4");
    assert_int_equal(s[0].count, 60);
    assert_int_equal(s[1].count, 30);
    assert_int_equal(s[3].count, 10);
    assert_within(s[0].fraction, 60.0 / 130, 1e-12);
    assert_within(s[3].fraction, 10.0 / 130, 1e-12);
    /* Fewer slots than workers: the top ones, and the full count. */
    memset(s, 0, sizeof s);
    assert_int_equal(qstats_shares(q, t, s, 2), 4);
    assert_string_equal(s[1].worker, "n2");
    assert_int_equal(s[2].count, 0);
    /* Long names are cut to fit; NULL is the empty name. */
    char longname[100];
    memset(longname, 'x', 99);
    longname[99] = 0;
    assert_int_equal(qstats_record(q, t, 5, longname), 0);
    assert_int_equal(qstats_record(q, t, 5, NULL), 0);
    n = qstats_shares(q, t, s, 8);
    assert_int_equal(n, 6);
    assert_int_equal(strlen(s[4].worker), 0);
    assert_int_equal(strlen(s[5].worker), QSTATS_NAME_MAX - 1);
    qstats_destroy(q);
}

/* Many workers over time: names of workers gone from the window are dropped
 * when the table fills, and recording goes on. */
static void test_many_workers_over_time(void **state)
{
    (void)state;
    struct qstats *q = qstats_create();
    char name[32];
    for (uint64_t i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "worker-%llu", (unsigned long long)i);
        assert_int_equal(qstats_record(q, i * 1000, 7, name), 0);
    }
    struct qstats_share s[16];
    assert_int_equal(qstats_shares(q, 4999 * 1000, s, 16), 10);
    assert_string_equal(s[0].worker, "worker-4990");
    uint8_t *buf;
    size_t len;
    serialize(q, &buf, &len);
    struct qstats *r = qstats_create();
    assert_int_equal(qstats_restore(r, buf, len), 0);
    free(buf);
    assert_int_equal(qstats_shares(r, 4999 * 1000, s, 16), 10);
    qstats_destroy(r);
    qstats_destroy(q);
}

/* ---- serialisation -------------------------------------------------------------------------- */

static struct qstats *sample(void)
{
    struct qstats *q = qstats_create();
    rnd_state = 7;
    const char *w[] = {"node1", "node2", "node10", "n\xc3\xa9"};
    uint64_t t = 1700000000000ull;
    for (int i = 0; i < 3000; i++) {
        t += rnd() % 20;
        if (i == 2000)
            t -= 4000; /* a failover to a clock behind */
        assert_int_equal(qstats_record(q, t, (uint32_t)(rnd() % 100000), w[rnd() % 4]), 0);
    }
    return q;
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct qstats *q = sample();
    uint8_t *a, *b;
    size_t na, nb;
    serialize(q, &a, &na);
    struct qstats *r = qstats_create();
    assert_int_equal(qstats_record(r, 5, 5, "junk"), 0); /* replaced wholesale */
    assert_int_equal(qstats_restore(r, a, na), 0);
    serialize(r, &b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    /* Same answers from both. */
    struct qstats_summary x, y;
    qstats_all(q, &x);
    qstats_all(r, &y);
    assert_same_summary(&x, &y);
    uint64_t now = 1700000000000ull + 3000 * 10;
    qstats_window(q, now, &x);
    qstats_window(r, now, &y);
    assert_same_summary(&x, &y);
    assert_true(qstats_rate(q, now) == qstats_rate(r, now));
    struct qstats_share sq[8], sr[8];
    size_t n = qstats_shares(q, now, sq, 8);
    assert_int_equal(qstats_shares(r, now, sr, 8), n);
    assert_true(n == 4);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(sq[i].worker, sr[i].worker);
        assert_int_equal(sq[i].count, sr[i].count);
    }
    /* Both go on identically. */
    assert_int_equal(qstats_record(q, now + 1, 42, "node2"), 0);
    assert_int_equal(qstats_record(r, now + 1, 42, "node2"), 0);
    free(a);
    free(b);
    serialize(q, &a, &na);
    serialize(r, &b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);

    /* Empty round-trips too. */
    struct qstats *e = qstats_create();
    serialize(e, &a, &na);
    assert_int_equal(qstats_restore(r, a, na), 0);
    assert_int_equal(qstats_total(r), 0);
    serialize(r, &b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    qstats_destroy(e);
    qstats_destroy(r);
    qstats_destroy(q);
}

/* Two histories that end in the same state (a worker long gone in one, a
 * different one in the other) give the same bytes. */
static void test_equal_states_equal_bytes(void **state)
{
    (void)state;
    struct qstats *a = qstats_create(), *b = qstats_create();
    assert_int_equal(qstats_record(a, 1000, 5, "gone"), 0);
    assert_int_equal(qstats_record(b, 1000, 5, "other"), 0);
    const char *order_a[] = {"x", "y", "z"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qstats_record(a, 900000, 7, order_a[i]), 0);
        assert_int_equal(qstats_record(b, 900000, 7, order_a[i]), 0);
    }
    uint8_t *x, *y;
    size_t nx, ny;
    serialize(a, &x, &nx);
    serialize(b, &y, &ny);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x);
    free(y);
    /* Different rings differ. */
    assert_int_equal(qstats_record(a, 900001, 7, "x"), 0);
    assert_int_equal(qstats_record(b, 900001, 7, "y"), 0);
    serialize(a, &x, &nx);
    serialize(b, &y, &ny);
    assert_true(nx != ny || memcmp(x, y, nx) != 0);
    free(x);
    free(y);
    qstats_destroy(a);
    qstats_destroy(b);
}

/* Restore into q must fail with ID_EPROTO and leave q's bytes as they were. */
static void assert_rejected(struct qstats *q, const uint8_t *data, size_t len)
{
    uint8_t *before, *after;
    size_t nb, na;
    serialize(q, &before, &nb);
    assert_int_equal(qstats_restore(q, data, len), ID_EPROTO);
    serialize(q, &after, &na);
    assert_int_equal(nb, na);
    assert_memory_equal(before, after, nb);
    free(before);
    free(after);
}

static void test_restore_rejects_damage(void **state)
{
    (void)state;
    struct qstats *q = sample();
    uint8_t *good;
    size_t n;
    serialize(q, &good, &n);
    struct qstats *t = qstats_create();
    assert_int_equal(qstats_record(t, 77, 77, "keep"), 0);

    /* Every truncation. */
    for (size_t len = 0; len < n; len++)
        assert_rejected(t, good, len);
    assert_rejected(t, NULL, 0);
    /* A trailing byte. */
    uint8_t *buf = malloc(n + 16);
    memcpy(buf, good, n);
    buf[n] = 0;
    assert_rejected(t, buf, n + 1);
    /* Another version. */
    buf[0] = 2;
    assert_rejected(t, buf, n);
    buf[0] = 0;
    assert_rejected(t, buf, n);
    /* A total that disagrees with the histogram (total is the byte after the
     * version: 3000 is 0xb8 0x17). */
    memcpy(buf, good, n);
    assert_int_equal(buf[1], 0xb8);
    assert_int_equal(buf[2], 0x17);
    buf[1] = 0xb9;
    assert_rejected(t, buf, n);
    /* The same total in a longer varint (0xb8 0x97 0x00) is not canonical. */
    buf[0] = 1;
    memcpy(buf + 1, (const uint8_t[]){0xb8, 0x97, 0x00}, 3);
    memcpy(buf + 4, good + 3, n - 3);
    assert_rejected(t, buf, n + 1);
    /* Two names alike. */
    struct qstats *two = qstats_create();
    assert_int_equal(qstats_record(two, 100, 5, "a"), 0);
    assert_int_equal(qstats_record(two, 101, 5, "b"), 0);
    uint8_t *tb;
    size_t tn;
    serialize(two, &tb, &tn);
    uint8_t *nb = memmem(tb, tn,
                         "\x01"
                         "a"
                         "\x01"
                         "b",
                         4);
    assert_non_null(nb);
    nb[3] = 'a';
    assert_rejected(t, tb, tn);
    nb[3] = 0; /* a NUL inside a name */
    assert_rejected(t, tb, tn);
    nb[3] = 'b';
    assert_int_equal(qstats_restore(t, tb, tn), 0); /* and the original is fine */
    assert_int_equal(qstats_restore(t, good, n), 0);
    free(tb);
    qstats_destroy(two);
    qstats_destroy(t);
    t = qstats_create();
    assert_int_equal(qstats_record(t, 77, 77, "keep"), 0);
    /* Every single-byte change to a small state is caught or round-trips to
     * exactly those bytes; never anything in between. */
    struct qstats *small = qstats_create();
    assert_int_equal(qstats_record(small, 100, 1000, "a"), 0);
    assert_int_equal(qstats_record(small, 200, 3, "b"), 0);
    assert_int_equal(qstats_record(small, 150, 70000, "a"), 0);
    uint8_t *sb;
    size_t sn;
    serialize(small, &sb, &sn);
    for (size_t i = 0; i < sn; i++) {
        for (int v = 0; v < 256; v++) {
            if (v == sb[i])
                continue;
            memcpy(buf, sb, sn);
            buf[i] = (uint8_t)v;
            struct qstats *r = qstats_create();
            int rc = qstats_restore(r, buf, sn);
            if (rc == 0) {
                uint8_t *again;
                size_t an;
                serialize(r, &again, &an);
                assert_int_equal(an, sn);
                assert_memory_equal(again, buf, sn);
                free(again);
            } else {
                assert_int_equal(rc, ID_EPROTO);
                assert_rejected(t, buf, sn);
            }
            qstats_destroy(r);
        }
    }
    /* Random garbage. */
    rnd_state = 99;
    for (int k = 0; k < 2000; k++) {
        size_t len = (size_t)(rnd() % 64);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rnd();
        buf[0] = 1;
        struct qstats *r = qstats_create();
        int rc = qstats_restore(r, buf, len);
        assert_true(rc == 0 || rc == ID_EPROTO);
        qstats_destroy(r);
    }
    /* The untouched state is still the one it was. */
    assert_int_equal(qstats_total(t), 1);
    free(sb);
    free(buf);
    free(good);
    qstats_destroy(small);
    qstats_destroy(t);
    qstats_destroy(q);
}

/* The exported histogram: non-empty buckets in order, every value in its
 * bucket's range, exact below 128 ms, at most 1/64 of lo wide above, and the
 * counts adding up to the total. */
static void test_buckets_export(void **state)
{
    (void)state;
    struct qstats *q = qstats_create();
    assert_non_null(q);
    struct qstats_bucket b[QSTATS_BUCKETS_MAX];
    assert_int_equal(qstats_buckets(q, b, QSTATS_BUCKETS_MAX), 0);
    uint32_t v[] = {5, 5, 127, 128, 1000, 1007, 4000000000u};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal(qstats_record(q, 1000 + i, v[i], "w"), 0);
    size_t n = qstats_buckets(q, b, QSTATS_BUCKETS_MAX);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(b[i].lo_ms <= b[i].hi_ms);
        assert_true(b[i].count > 0);
        if (i)
            assert_true(b[i - 1].hi_ms < b[i].lo_ms);
        if (b[i].lo_ms >= 128)
            assert_true((uint64_t)(b[i].hi_ms - b[i].lo_ms + 1) * 64 <= b[i].lo_ms);
        total += b[i].count;
    }
    assert_int_equal(total, qstats_total(q));
    /* 5 twice, exact; 1000 and 1007 share a bucket 8 wide; the largest is last */
    assert_int_equal(b[0].lo_ms, 5);
    assert_int_equal(b[0].hi_ms, 5);
    assert_int_equal(b[0].count, 2);
    assert_int_equal(n, 5);
    assert_int_equal(b[3].count, 2);
    assert_true(b[3].lo_ms <= 1000 && 1007 <= b[3].hi_ms);
    assert_true(b[4].lo_ms <= 4000000000u && 4000000000u <= b[4].hi_ms);
    /* A short array gets the first ones, and the count of all. */
    assert_int_equal(qstats_buckets(q, b, 2), 5);
    assert_int_equal(b[1].lo_ms, 127);
    qstats_destroy(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles_within_one_percent),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_window_rate_and_pruning),
        cmocka_unit_test(test_clock_steps_back),
        cmocka_unit_test(test_shares),
        cmocka_unit_test(test_many_workers_over_time),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_buckets_export),
        cmocka_unit_test(test_equal_states_equal_bytes),
        cmocka_unit_test(test_restore_rejects_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
