/* reconcile.h — the SDFS leader's pure decisions on what replicas report:
 * which copies a replica may delete, which copies it lacks, and which
 * members count as holding their copies when repairs are planned. Events and
 * `now` in, actions out; no I/O (sdfs.c does the sending and proposing).
 *
 * The rules (docs/sdfs.md, "Repair and reconciliation"):
 *   - Nothing is decided on an incomplete report (it lists fewer blobs than
 *     the node says it holds), on a stale one (not newer than the last one
 *     seen from that node), or on one from a sender that does not number its
 *     reports.
 *   - A copy is deleted only when no kept version names that node for it and
 *     it has been so on every report for the grace period (by default
 *     RECONCILE_DELETE_GRACE_MS): longer
 *     than any read in flight, so a reader that found the copy listed a moment
 *     ago finishes first. Copies in use (young) restart the clock.
 *   - A copy the catalog names on a node but its report lacks is only
 *     *suspected* missing. It is declared missing (and dropped from the
 *     replica set, so the repair loop replaces it) only if a later report,
 *     built after the node had the answer to the one that raised the
 *     suspicion, still lacks it: a report built before a repair committed a
 *     copy there, and delivered late, accuses nobody.
 *   - Repairs act on failures: a suspected member still holds its copies
 *     (the suspicion may be refuted); only failed and departed members do not.
 *
 * Memory: per reporting node, its last report number and two sorted lists
 * (copies unlisted since when, copies suspected missing since which report),
 * bounded by what that node holds. A new leader starts empty, which only
 * delays deletions and declarations by one grace period or one report.
 *
 * Threading: none (the caller serialises calls).
 */
#ifndef IDUNNO_SDFS_RECONCILE_H
#define IDUNNO_SDFS_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

#include "member/member.h"
#include "sdfs/catalog.h"

/* By default a copy stays this long after the catalog stopped naming it on
 * its node: longer than any read in flight (a get's chunk calls time out
 * after 10 s, a worker's query runs for seconds). */
#define RECONCILE_DELETE_GRACE_MS 60000
/* Copies declared missing per report: a bound on the proposals one report
 * causes; the rest wait for the next report. */
#define RECONCILE_MAX_MISSING 64
#define RECONCILE_MAX_NODES 256

struct reconcile;

/* One node's store report. The lists may be reordered in place. */
struct reconcile_report {
    const char *node;
    uint64_t boot;         /* the reporting process's start (ms); a new value resets its memory */
    uint64_t seq;          /* 1, 2, ... per process; 0: a sender that does not number (ignored) */
    uint64_t answered_seq; /* the last report whose answer the node had when building this one */
    uint64_t held;         /* sealed blobs the node holds in all */
    char **blobs;          /* held, sealed a while ago */
    size_t n_blobs;
    char **young; /* held, sealed or used moments ago: never deleted */
    size_t n_young;
};

/* A kept version the node lacks: drop the node from its replica set. */
struct reconcile_missing {
    const struct sdfs_file *file;
    const struct sdfs_version *version;
};

struct reconcile_actions {
    int ignored; /* 1: incomplete or stale, nothing decided */
    char **del;  /* blobs the node may delete (pointers into the report's lists) */
    size_t n_del;
    struct reconcile_missing missing[RECONCILE_MAX_MISSING];
    size_t n_missing;
    size_t suspected; /* copies lacking on this report, not (yet) declared */
};

/* grace_ms: how long a copy must have gone unnamed before it is deletable. */
struct reconcile *reconcile_create(uint64_t grace_ms);
void reconcile_destroy(struct reconcile *r);

/* Decides on a report against the catalog at `now_ms` (the leader's
 * monotonic clock). out->del is allocated (free it with
 * reconcile_actions_free). Returns 0 or ID_ENOMEM (then nothing is decided). */
int reconcile_report(struct reconcile *r, const struct catalog *c,
                     const struct reconcile_report *rep, uint64_t now_ms,
                     struct reconcile_actions *out);
void reconcile_actions_free(struct reconcile_actions *a);

/* The nodes that count for repairs, from a membership snapshot (several
 * incarnations of a name: the newest decides): alive ones, and suspected
 * ones flagged `suspect` (still holding their copies, no target). Failed and
 * departed members are left out. Names point into members. Returns how many
 * were written (at most max). */
size_t reconcile_repair_nodes(const struct member_view *members, size_t n, struct sdfs_node *out,
                              size_t max);

#endif
