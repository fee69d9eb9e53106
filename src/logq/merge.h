/* merge.h — the contacted node's half of `idunno grep`: putting the per-node
 * answers together. Pure (no I/O, no loop), so unit tests drive it directly. */
#ifndef IDUNNO_LOGQ_MERGE_H
#define IDUNNO_LOGQ_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "idunno.pb-c.h"
#include "logq/grep.h"

/* Compares node names in natural order: "node2" < "node10" (digit runs are
 * compared as numbers), otherwise bytewise. */
int logq_name_cmp(const char *a, const char *b);

/* The share of a result budget each of n nodes may fill with lines:
 * min(per_node_max, total_budget / n). */
size_t logq_node_budget(size_t total_budget, size_t per_node_max, size_t n);

/* Orders nodes[0..n) by name (logq_name_cmp), returns the sum of the counts of
 * the nodes that answered (no error), and trims kept lines — from the node
 * holding the most line bytes first — until the lines of all nodes together
 * take at most max_line_bytes (text + GREP_LINE_OVERHEAD per line); a node that lost
 * lines is marked truncated. Counts are never changed: they stay exact.
 * Dropped lines are freed with free() (nodes from protobuf_c unpack with the
 * default allocator, or built with malloc). */
uint64_t logq_merge(Idunno__GrepNodeResult **nodes, size_t n, size_t max_line_bytes);

#endif
