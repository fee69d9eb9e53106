/* prom.h — a writer of the Prometheus text exposition format, version 0.0.4
 * (what `GET /metrics` serves), into a strbuf.
 *
 * A metric family is started with prom_family() (its "# HELP" and "# TYPE"
 * lines); its samples follow at once, before the next family starts, and a
 * family name appears once per document. Names are the caller's constants:
 * characters the format does not allow in metric or label names are written
 * as '_', so a bad name cannot break the document. Label values and help text
 * are escaped as the format requires (backslash, double quote in label values,
 * newline), and invalid UTF-8 becomes U+FFFD.
 *
 * Conventions for IDunno's metrics: names start with idunno_<layer>_, counters
 * end in _total, units are base units (seconds, bytes) named in the suffix.
 *
 * Threading: none of its own; one writer belongs to one thread at a time.
 */
#ifndef IDUNNO_HTTP_PROM_H
#define IDUNNO_HTTP_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

#define PROM_NAME_MAX 128

enum prom_type { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM, PROM_UNTYPED };

struct prom_label {
    const char *name;
    const char *value; /* NULL: "" */
};

/* PROM_LABELS({"member", "node2"}, {"state", "alive"}) expands to the two
 * arguments `labels, n` of the sample functions. */
#define PROM_LABELS(...)                      \
    (const struct prom_label[]){__VA_ARGS__}, \
        (sizeof((const struct prom_label[]){__VA_ARGS__}) / sizeof(struct prom_label))
#define PROM_NO_LABELS NULL, 0

struct prom_out {
    struct strbuf *sb;          /* not owned */
    char family[PROM_NAME_MAX]; /* the family samples belong to ("" before the first) */
    enum prom_type type;
};

/* Starts a writer appending to sb (which stays the caller's). */
void prom_out_init(struct prom_out *p, struct strbuf *sb);

/* Starts a family: "# HELP name help" and "# TYPE name type". */
void prom_family(struct prom_out *p, const char *name, enum prom_type type, const char *help);

/* One sample of the current family (nothing before the first prom_family).
 * Values print exactly: integers as integers, other numbers in the shortest
 * form that reads back to the same double, NaN and +Inf/-Inf as the format
 * spells them. */
void prom_sample(struct prom_out *p, const struct prom_label *labels, size_t n, double v);
/* The same for a 64-bit count, exact beyond 2^53. */
void prom_sample_u64(struct prom_out *p, const struct prom_label *labels, size_t n, uint64_t v);

/* Shorthands: a family with one unlabelled sample. */
void prom_counter(struct prom_out *p, const char *name, const char *help, uint64_t v);
void prom_gauge(struct prom_out *p, const char *name, const char *help, double v);

/* A histogram's state, as its owner keeps it: per-bucket counts (not
 * cumulative; the writer sums them). */
struct prom_histogram {
    const double *bounds; /* n_bounds upper bounds, ascending; +Inf is implied */
    size_t n_bounds;
    const uint64_t *counts; /* n_bounds + 1: counts[i] are observations v with
                             * bounds[i-1] < v <= bounds[i]; counts[n_bounds]
                             * those above the last bound */
    double sum;             /* of every observation */
};

/* Writes one labelled histogram of the current family (a PROM_HISTOGRAM):
 * NAME_bucket{...,le="B"} with cumulative counts, le="+Inf" with the total,
 * then NAME_sum and NAME_count. */
void prom_histogram_sample(struct prom_out *p, const struct prom_label *labels, size_t n,
                           const struct prom_histogram *h);

/* Records one observation into counts (n_bounds + 1 entries) and *sum. */
void prom_histogram_observe(const double *bounds, size_t n_bounds, uint64_t *counts, double *sum,
                            double v);

/* Formats v as prom_sample() does; returns buf (at least 32 bytes). */
const char *prom_format_double(double v, char *buf, size_t len);

#endif
