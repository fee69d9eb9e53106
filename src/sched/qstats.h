/* qstats.h — per-job query statistics for `qinfo` (C1), `qjob` (C2) and
 * `assign` (C5). Pure, deterministic data: it lives in the replicated state
 * machine (every replica records the same completions with the proposer's
 * timestamps), so it serialises to bytes and back, and a standby coordinator
 * takes over with identical statistics.
 *
 * It keeps
 *   - the total count and a histogram of processing times (dispatch to result,
 *     ms) over all queries: log-linear buckets, relative error <= 1%, from which
 *     mean, std dev (from exact sums), median, p90, p95, p99 are computed;
 *   - the completions of the last QSTATS_WINDOW_MS (time, duration, worker) in a
 *     ring, pruned by time, for the rate and the same statistics over the window
 *     and for each worker's share of the job's completions in the window.
 */
#ifndef IDUNNO_SCHED_QSTATS_H
#define IDUNNO_SCHED_QSTATS_H

#include <stddef.h>
#include <stdint.h>

#define QSTATS_WINDOW_MS 10000
#define QSTATS_NAME_MAX 64

struct qstats;

struct qstats_summary {
    uint64_t count;
    double mean_ms, stddev_ms, median_ms, p90_ms, p95_ms, p99_ms;
};

struct qstats_share {
    char worker[QSTATS_NAME_MAX];
    uint64_t count;  /* completions by this worker in the window */
    double fraction; /* of the job's completions in the window */
};

/* Empty statistics; NULL if out of memory. Freed with qstats_destroy. */
struct qstats *qstats_create(void);
void qstats_destroy(struct qstats *q);

/* Records one completed query at time now_ms (the proposer's clock), which took
 * duration_ms, run by worker. Returns 0 or ID_ENOMEM (also when 1,024 distinct
 * workers are in the window). Names are cut to QSTATS_NAME_MAX - 1 bytes; NULL
 * is the empty name. */
int qstats_record(struct qstats *q, uint64_t now_ms, uint32_t duration_ms, const char *worker);

uint64_t qstats_total(const struct qstats *q);
/* Completions (all time) that took at most bound_ms, and the sum of all
 * durations: a cumulative histogram for metrics. */
uint64_t qstats_count_le(const struct qstats *q, uint32_t bound_ms);
uint64_t qstats_sum_ms(const struct qstats *q);
/* The all-time histogram's non-empty buckets, in order: each holds count
 * durations in [lo_ms, hi_ms] (one value each below 128 ms, at most 1/64 of
 * lo wide above). Returns how many there are (fills at most max; out may be
 * NULL with max 0, to count them). */
struct qstats_bucket {
    uint32_t lo_ms, hi_ms;
    uint64_t count;
};
size_t qstats_buckets(const struct qstats *q, struct qstats_bucket *out, size_t max);
#define QSTATS_BUCKETS_MAX 1728
/* Completions per second over the window ending at now_ms (count in
 * (now-W, now] divided by W seconds, or by the time since the first completion
 * if the job is younger than W). */
double qstats_rate(const struct qstats *q, uint64_t now_ms);
/* Percentiles are nearest-rank, reported as their bucket's midpoint (within 1%);
 * the std dev is the population one. */
void qstats_all(const struct qstats *q, struct qstats_summary *out);
void qstats_window(const struct qstats *q, uint64_t now_ms, struct qstats_summary *out);
/* Workers' shares in the window, sorted by count (desc) then name; returns the
 * number of workers (fills at most max). */
size_t qstats_shares(const struct qstats *q, uint64_t now_ms, struct qstats_share *out, size_t max);

/* Canonical serialisation (equal states give equal bytes) and restore (validates
 * before replacing; on error ID_EPROTO and q unchanged). *out is malloc'd, the
 * caller frees it; serialise returns 0 or ID_ENOMEM. Restore accepts exactly the
 * bytes serialise writes; it returns ID_ENOMEM (q unchanged) if memory runs out. */
int qstats_serialize(const struct qstats *q, uint8_t **out, size_t *len);
int qstats_restore(struct qstats *q, const uint8_t *data, size_t len);

#endif
