/* qstats.c — per-job query statistics (see qstats.h).
 *
 * All-time: a count, exact sums (sum in 64 bits, sum of squares in 128, so the
 * mean and std dev are exact) and a log-linear histogram. Values below 128 ms
 * have a bucket each; above, every power of two is cut into 64 equal buckets,
 * so a bucket is at most 1/64 of its lower bound wide and its midpoint is within
 * 1/128 (0.8%) of any value in it. 1,728 buckets cover all of uint32.
 *
 * Window: a ring of completions (time, duration, index into a table of worker
 * names) in the order recorded, pruned from the head when the head falls out of
 * the window. Times come from whichever coordinator proposed them, so they may
 * step back across a failover: queries filter every entry by time rather than
 * trust the order, and the ring has a hard cap so a bad clock cannot grow it.
 *
 * Serialisation is canonical: names are written in order of first use in the
 * ring, only those used, and restore accepts exactly what serialise writes
 * (minimal varints, no trailing bytes), so bytes -> state -> bytes is identity.
 */
#include "sched/qstats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"

typedef unsigned __int128 u128;

#define QS_SUB_BITS 6
#define QS_SUB (1u << QS_SUB_BITS)                           /* buckets per power of two */
#define QS_LINEAR (2 * QS_SUB)                               /* values below are exact */
#define QS_BUCKETS (QS_LINEAR + (31 - QS_SUB_BITS) * QS_SUB) /* 1728 */
/* 10 s at 100,000 completions/s for one job: far above the cluster's capacity. */
#define QS_RING_MAX (1u << 20)
/* Distinct workers in one job's window; a cluster has tens. */
#define QS_NAMES_MAX 1024u
#define QS_VERSION 1

struct qs_rec {
    uint64_t time_ms;
    uint32_t duration_ms;
    uint32_t worker; /* index into names */
};

struct qstats {
    uint64_t total, sum;
    u128 sumsq;
    uint64_t first_ms; /* time of the first completion recorded; 0 while total is 0 */
    uint64_t hist[QS_BUCKETS];
    char (*names)[QSTATS_NAME_MAX];
    size_t nnames, names_cap;
    struct qs_rec *ring; /* cap is 0 or a power of two */
    size_t head, len, cap;
};

/* ---- histogram ------------------------------------------------------------------------------ */

static unsigned bucket_of(uint32_t v)
{
    if (v < QS_LINEAR)
        return v;
    unsigned e = 31 - (unsigned)__builtin_clz(v); /* >= 7 */
    unsigned shift = e - QS_SUB_BITS;
    return QS_LINEAR + (e - QS_SUB_BITS - 1) * QS_SUB + ((v >> shift) - QS_SUB);
}

/* The values bucket b holds: [*lo, *hi]. */
static void bucket_range(unsigned b, uint64_t *lo, uint64_t *hi)
{
    if (b < QS_LINEAR) {
        *lo = *hi = b;
        return;
    }
    unsigned k = b - QS_LINEAR;
    unsigned shift = k / QS_SUB + 1;
    *lo = (uint64_t)(QS_SUB + k % QS_SUB) << shift;
    *hi = *lo + ((uint64_t)1 << shift) - 1;
}

/* Nearest rank: the smallest recorded value with at least pct% of the values at
 * or below it, reported as its bucket's midpoint. */
static double hist_percentile(const uint64_t *h, uint64_t n, unsigned pct)
{
    if (!n)
        return 0;
    u128 rank = ((u128)n * pct + 99) / 100;
    if (rank == 0)
        rank = 1;
    u128 seen = 0;
    for (unsigned b = 0; b < QS_BUCKETS; b++) {
        seen += h[b];
        if (seen >= rank) {
            uint64_t lo, hi;
            bucket_range(b, &lo, &hi);
            return (double)lo + (double)(hi - lo) / 2;
        }
    }
    return 0; /* unreachable when n is the histogram's count */
}

/* Population std dev from exact sums: n*sumsq - sum^2 is computed exactly when
 * it fits 128 bits (always, short of 2^64 queries), else in long double. */
static double std_dev(uint64_t n, uint64_t sum, u128 sumsq)
{
    if (n < 2)
        return 0;
    u128 s2 = (u128)sum * sum;
    long double var;
    if (sumsq <= ~(u128)0 / n) {
        u128 nq = sumsq * n;
        if (nq <= s2)
            return 0;
        var = (long double)(nq - s2) / ((long double)n * (long double)n);
    } else {
        long double mean = (long double)sum / n;
        var = (long double)sumsq / n - mean * mean;
        if (var <= 0)
            return 0;
    }
    return (double)sqrtl(var);
}

static void summary_fill(struct qstats_summary *out, uint64_t n, uint64_t sum, u128 sumsq,
                         const uint64_t *h)
{
    memset(out, 0, sizeof *out);
    out->count = n;
    if (!n)
        return;
    out->mean_ms = (double)sum / (double)n;
    out->stddev_ms = std_dev(n, sum, sumsq);
    out->median_ms = hist_percentile(h, n, 50);
    out->p90_ms = hist_percentile(h, n, 90);
    out->p95_ms = hist_percentile(h, n, 95);
    out->p99_ms = hist_percentile(h, n, 99);
}

/* ---- ring and names ------------------------------------------------------------------------- */

static struct qs_rec *ring_at(const struct qstats *q, size_t i)
{
    return &q->ring[(q->head + i) & (q->cap - 1)];
}

static int ring_resize(struct qstats *q, size_t cap)
{
    struct qs_rec *r = malloc(cap * sizeof *r);
    if (!r)
        return ID_ENOMEM;
    for (size_t i = 0; i < q->len; i++)
        r[i] = *ring_at(q, i);
    free(q->ring);
    q->ring = r;
    q->head = 0;
    q->cap = cap;
    return 0;
}

static void ring_pop(struct qstats *q)
{
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
}

static int in_window(uint64_t t, uint64_t now)
{
    return t <= now && (now < QSTATS_WINDOW_MS || t > now - QSTATS_WINDOW_MS);
}

static size_t name_find(const struct qstats *q, const char *name)
{
    for (size_t i = 0; i < q->nnames; i++)
        if (strcmp(q->names[i], name) == 0)
            return i;
    return SIZE_MAX;
}

/* Drops names no completion in the ring refers to (workers long gone). */
static void names_compact(struct qstats *q)
{
    uint32_t map[QS_NAMES_MAX];
    memset(map, 0, sizeof map);
    for (size_t i = 0; i < q->len; i++)
        map[ring_at(q, i)->worker] = 1;
    uint32_t k = 0;
    for (size_t i = 0; i < q->nnames; i++) {
        if (!map[i])
            continue;
        if (k != i)
            memcpy(q->names[k], q->names[i], QSTATS_NAME_MAX);
        map[i] = k++;
    }
    for (size_t i = 0; i < q->len; i++) {
        struct qs_rec *r = ring_at(q, i);
        r->worker = map[r->worker];
    }
    q->nnames = k;
}

/* The index of name in the table, adding it if new; SIZE_MAX if out of room. */
static size_t name_intern(struct qstats *q, const char *name)
{
    size_t i = name_find(q, name);
    if (i != SIZE_MAX)
        return i;
    /* Drop names gone from the ring before growing the table: it stays about
     * twice the workers seen in the window, so the linear lookup stays short. */
    if (q->nnames == q->names_cap || q->nnames == QS_NAMES_MAX)
        names_compact(q);
    if (q->nnames == QS_NAMES_MAX)
        return SIZE_MAX;
    if (ARRAY_RESERVE(q->names, q->names_cap, q->nnames, 1, 16) < 0)
        return SIZE_MAX;
    memcpy(q->names[q->nnames], name, strlen(name) + 1);
    return q->nnames++;
}

/* ---- recording and reading ------------------------------------------------------------------ */

struct qstats *qstats_create(void)
{
    return calloc(1, sizeof(struct qstats));
}

static void qstats_free_parts(struct qstats *q)
{
    free(q->names);
    free(q->ring);
}

void qstats_destroy(struct qstats *q)
{
    if (!q)
        return;
    qstats_free_parts(q);
    free(q);
}

int qstats_record(struct qstats *q, uint64_t now_ms, uint32_t duration_ms, const char *worker)
{
    /* Names longer than a share can show are cut; NULL is the empty name. */
    char name[QSTATS_NAME_MAX];
    snprintf(name, sizeof name, "%s", worker ? worker : "");

    while (q->len && !in_window(ring_at(q, 0)->time_ms, now_ms) && ring_at(q, 0)->time_ms <= now_ms)
        ring_pop(q);
    if (q->len == QS_RING_MAX)
        ring_pop(q);
    /* Everything that can fail comes before the first change that counts. */
    if (q->len == q->cap && ring_resize(q, q->cap ? q->cap * 2 : 64))
        return ID_ENOMEM;
    size_t w = name_intern(q, name);
    if (w == SIZE_MAX)
        return ID_ENOMEM;
    if (q->cap > 64 && q->len < q->cap / 4)
        ring_resize(q, q->cap / 2); /* best effort */

    *ring_at(q, q->len++) = (struct qs_rec){now_ms, duration_ms, (uint32_t)w};
    if (!q->total)
        q->first_ms = now_ms;
    q->total++;
    q->sum += duration_ms;
    q->sumsq += (u128)duration_ms * duration_ms;
    q->hist[bucket_of(duration_ms)]++;
    return 0;
}

uint64_t qstats_total(const struct qstats *q)
{
    return q->total;
}

double qstats_rate(const struct qstats *q, uint64_t now_ms)
{
    if (!q->total)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i < q->len; i++)
        n += in_window(ring_at(q, i)->time_ms, now_ms);
    uint64_t span = QSTATS_WINDOW_MS;
    if (now_ms < q->first_ms + QSTATS_WINDOW_MS && q->first_ms + QSTATS_WINDOW_MS > q->first_ms) {
        /* A young job: over its age, with 1 ms as the least so that the first
         * completion's own instant does not divide by zero. */
        span = now_ms > q->first_ms ? now_ms - q->first_ms : 1;
    }
    return (double)n * 1000.0 / (double)span;
}

void qstats_all(const struct qstats *q, struct qstats_summary *out)
{
    summary_fill(out, q->total, q->sum, q->sumsq, q->hist);
}

void qstats_window(const struct qstats *q, uint64_t now_ms, struct qstats_summary *out)
{
    uint64_t h[QS_BUCKETS];
    memset(h, 0, sizeof h);
    uint64_t n = 0, sum = 0;
    u128 sumsq = 0;
    for (size_t i = 0; i < q->len; i++) {
        const struct qs_rec *r = ring_at(q, i);
        if (!in_window(r->time_ms, now_ms))
            continue;
        n++;
        sum += r->duration_ms;
        sumsq += (u128)r->duration_ms * r->duration_ms;
        h[bucket_of(r->duration_ms)]++;
    }
    summary_fill(out, n, sum, sumsq, h);
}

struct share_tmp {
    uint64_t count;
    const char *name;
};

static int share_cmp(const void *x, const void *y)
{
    const struct share_tmp *a = x, *b = y;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return strcmp(a->name, b->name);
}

size_t qstats_shares(const struct qstats *q, uint64_t now_ms, struct qstats_share *out, size_t max)
{
    uint64_t counts[QS_NAMES_MAX];
    memset(counts, 0, sizeof counts);
    uint64_t n = 0;
    for (size_t i = 0; i < q->len; i++) {
        const struct qs_rec *r = ring_at(q, i);
        if (in_window(r->time_ms, now_ms)) {
            counts[r->worker]++;
            n++;
        }
    }
    struct share_tmp s[QS_NAMES_MAX];
    size_t k = 0;
    for (size_t i = 0; i < q->nnames; i++)
        if (counts[i])
            s[k++] = (struct share_tmp){counts[i], q->names[i]};
    qsort(s, k, sizeof *s, share_cmp);
    for (size_t i = 0; i < k && i < max; i++) {
        snprintf(out[i].worker, sizeof out[i].worker, "%s", s[i].name);
        out[i].count = s[i].count;
        out[i].fraction = (double)s[i].count / (double)n;
    }
    return k;
}

/* ---- serialisation --------------------------------------------------------------------------- *
 *
 * Version 1, every integer an unsigned LEB128 varint in its shortest form:
 *   u8 version (1)
 *   total, sum, sumsq low 64 bits, sumsq high 64 bits, first_ms (0 if total is 0)
 *   nbuckets, then per non-zero bucket in increasing order:
 *       gap (index - previous index - 1; previous starts at -1), count (> 0)
 *   nnames, then per name: length (< QSTATS_NAME_MAX), bytes (no NUL), names
 *       distinct and in order of first use in the ring, every one used
 *   nring, then per completion, oldest first:
 *       time (the first absolute, then the zigzag of the 64-bit wrapping
 *       difference from the previous one), duration (<= UINT32_MAX), name index
 */

static uint8_t *put_var(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint64_t zigzag(uint64_t d)
{
    return (d << 1) ^ (0 - (d >> 63));
}

static uint64_t unzigzag(uint64_t z)
{
    return (z >> 1) ^ (0 - (z & 1));
}

int qstats_serialize(const struct qstats *q, uint8_t **out, size_t *len)
{
    /* Canonical name indices: order of first use in the ring. */
    uint32_t map[QS_NAMES_MAX];
    uint32_t order[QS_NAMES_MAX];
    uint32_t nused = 0;
    memset(map, 0xff, sizeof map);
    for (size_t i = 0; i < q->len; i++) {
        uint32_t w = ring_at(q, i)->worker;
        if (map[w] == UINT32_MAX) {
            map[w] = nused;
            order[nused++] = w;
        }
    }
    size_t nb = 0;
    for (unsigned b = 0; b < QS_BUCKETS; b++)
        nb += q->hist[b] != 0;
    size_t cap = 1 + 7 * 10 + nb * 20 + (size_t)nused * (10 + QSTATS_NAME_MAX) + q->len * 30;
    uint8_t *buf = malloc(cap), *p = buf;
    if (!buf)
        return ID_ENOMEM;
    *p++ = QS_VERSION;
    p = put_var(p, q->total);
    p = put_var(p, q->sum);
    p = put_var(p, (uint64_t)q->sumsq);
    p = put_var(p, (uint64_t)(q->sumsq >> 64));
    p = put_var(p, q->total ? q->first_ms : 0);
    p = put_var(p, nb);
    unsigned prev = UINT32_MAX; /* -1 */
    for (unsigned b = 0; b < QS_BUCKETS; b++) {
        if (!q->hist[b])
            continue;
        p = put_var(p, b - prev - 1);
        p = put_var(p, q->hist[b]);
        prev = b;
    }
    p = put_var(p, nused);
    for (uint32_t i = 0; i < nused; i++) {
        size_t n = strlen(q->names[order[i]]);
        p = put_var(p, n);
        memcpy(p, q->names[order[i]], n);
        p += n;
    }
    p = put_var(p, q->len);
    uint64_t t = 0;
    for (size_t i = 0; i < q->len; i++) {
        const struct qs_rec *r = ring_at(q, i);
        p = put_var(p, i ? zigzag(r->time_ms - t) : r->time_ms);
        p = put_var(p, r->duration_ms);
        p = put_var(p, map[r->worker]);
        t = r->time_ms;
    }
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}

struct reader {
    const uint8_t *p, *end;
    int bad;
};

/* A varint in its shortest form; anything else marks the reader bad. */
static uint64_t get_var(struct reader *r)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (r->bad || r->p >= r->end) {
            r->bad = 1;
            return 0;
        }
        uint8_t c = *r->p++;
        if (i == 9 && c > 1) {
            r->bad = 1; /* beyond 64 bits */
            return 0;
        }
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            if (i > 0 && c == 0)
                r->bad = 1; /* a redundant zero group */
            return v;
        }
    }
    r->bad = 1;
    return 0;
}

static size_t remaining(const struct reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Parses into t (zeroed by the caller); 0 or ID_EPROTO / ID_ENOMEM. */
static int parse(struct qstats *t, const uint8_t *data, size_t len)
{
    struct reader r = {data, data + len, 0};
    if (len < 1 || data[0] != QS_VERSION)
        return ID_EPROTO;
    r.p++;
    t->total = get_var(&r);
    t->sum = get_var(&r);
    uint64_t lo = get_var(&r), hi = get_var(&r);
    t->sumsq = ((u128)hi << 64) | lo;
    t->first_ms = get_var(&r);
    if (r.bad || (!t->total && t->first_ms))
        return ID_EPROTO;

    /* Histogram: its counts make up total, and the sums must be ones that
     * values inside its buckets could give. */
    uint64_t nb = get_var(&r);
    if (r.bad || nb > QS_BUCKETS)
        return ID_EPROTO;
    u128 count = 0, sum_lo = 0, sum_hi = 0, sq_lo = 0, sq_hi = 0;
    int sq_hi_sat = 0;
    uint64_t b = UINT64_MAX; /* -1 */
    for (uint64_t i = 0; i < nb; i++) {
        uint64_t gap = get_var(&r), c = get_var(&r);
        if (r.bad || c == 0 || gap >= QS_BUCKETS || b + 1 + gap >= QS_BUCKETS)
            return ID_EPROTO;
        b = b + 1 + gap;
        t->hist[b] = c;
        uint64_t vlo, vhi;
        bucket_range((unsigned)b, &vlo, &vhi);
        count += c; /* < 2^75: no overflow */
        sum_lo += (u128)c * vlo;
        sum_hi += (u128)c * vhi;
        /* c * v^2 fits 128 bits; the running sums may not: saturate. */
        u128 a = (u128)c * ((u128)vlo * vlo);
        sq_lo = sq_lo + a < sq_lo ? ~(u128)0 : sq_lo + a;
        a = (u128)c * ((u128)vhi * vhi);
        if (sq_hi + a < sq_hi)
            sq_hi_sat = 1;
        sq_hi += a;
    }
    if (count != t->total || t->sum < sum_lo || t->sum > sum_hi || t->sumsq < sq_lo ||
        (!sq_hi_sat && t->sumsq > sq_hi))
        return ID_EPROTO;

    uint64_t nn = get_var(&r);
    if (r.bad || nn > QS_NAMES_MAX || nn > remaining(&r))
        return ID_EPROTO;
    if (nn) {
        t->names = calloc(nn, QSTATS_NAME_MAX);
        if (!t->names)
            return ID_ENOMEM;
        t->names_cap = nn;
    }
    for (uint64_t i = 0; i < nn; i++) {
        uint64_t n = get_var(&r);
        if (r.bad || n >= QSTATS_NAME_MAX || n > remaining(&r) || memchr(r.p, 0, n))
            return ID_EPROTO;
        memcpy(t->names[i], r.p, n);
        t->names[i][n] = 0;
        r.p += n;
        if (name_find(t, t->names[i]) != SIZE_MAX)
            return ID_EPROTO;
        t->nnames++;
    }

    /* Each completion takes 3 bytes at least: check the count against what is
     * left before allocating for it. */
    uint64_t nr = get_var(&r);
    if (r.bad || nr > QS_RING_MAX || nr > t->total || nr > remaining(&r) / 3 || nn > nr)
        return ID_EPROTO;
    if (nr) {
        size_t cap = 64;
        while (cap < nr)
            cap *= 2;
        t->ring = malloc(cap * sizeof *t->ring);
        if (!t->ring)
            return ID_ENOMEM;
        t->cap = cap;
    }
    uint64_t time = 0;
    uint32_t seen = 0;
    for (uint64_t i = 0; i < nr; i++) {
        uint64_t tv = get_var(&r), d = get_var(&r), w = get_var(&r);
        if (r.bad || d > UINT32_MAX || w > seen || w >= nn)
            return ID_EPROTO;
        if (w == seen)
            seen++; /* names appear in order of first use */
        time = i ? time + unzigzag(tv) : tv;
        t->ring[i] = (struct qs_rec){time, (uint32_t)d, (uint32_t)w};
        t->len++;
    }
    if (seen != nn || r.p != r.end)
        return ID_EPROTO;
    return 0;
}

int qstats_restore(struct qstats *q, const uint8_t *data, size_t len)
{
    if (!data && len)
        return ID_EPROTO;
    struct qstats *t = qstats_create();
    if (!t)
        return ID_ENOMEM;
    int rc = parse(t, data ? data : (const uint8_t *)"", len);
    if (rc) {
        qstats_destroy(t);
        return rc;
    }
    qstats_free_parts(q);
    *q = *t;
    free(t);
    return 0;
}

_Static_assert(QSTATS_BUCKETS_MAX == QS_BUCKETS, "qstats.h says how many buckets there are");

size_t qstats_buckets(const struct qstats *q, struct qstats_bucket *out, size_t max)
{
    size_t n = 0;
    for (unsigned b = 0; b < QS_BUCKETS; b++) {
        if (!q->hist[b])
            continue;
        if (n < max) {
            uint64_t lo, hi;
            bucket_range(b, &lo, &hi);
            out[n] = (struct qstats_bucket){(uint32_t)lo, (uint32_t)hi, q->hist[b]};
        }
        n++;
    }
    return n;
}

uint64_t qstats_count_le(const struct qstats *q, uint32_t bound_ms)
{
    /* Whole buckets up to the one holding bound_ms; a bucket that straddles
     * the bound counts when its upper end is within it, so the answer is
     * exact for bounds on bucket edges (every value below QS_LINEAR ms, and
     * the edges above) and within the histogram's 1% otherwise. */
    uint64_t n = 0;
    for (unsigned b = 0; b < QS_BUCKETS; b++) {
        uint64_t lo, hi;
        bucket_range(b, &lo, &hi);
        if (lo > bound_ms)
            break;
        if (hi <= bound_ms || lo == hi)
            n += q->hist[b];
    }
    return n;
}

uint64_t qstats_sum_ms(const struct qstats *q)
{
    return q->sum;
}
