/* merge.c — aggregation of per-node grep answers (see merge.h). */
#include "logq/merge.h"

#include <stdlib.h>
#include <string.h>

int logq_name_cmp(const char *a, const char *b)
{
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    while (*p && *q) {
        if (*p >= '0' && *p <= '9' && *q >= '0' && *q <= '9') {
            /* Compare the digit runs as numbers: skip leading zeros, then the
             * longer run is larger, then the first differing digit decides. */
            while (*p == '0')
                p++;
            while (*q == '0')
                q++;
            size_t lp = 0, lq = 0;
            while (p[lp] >= '0' && p[lp] <= '9')
                lp++;
            while (q[lq] >= '0' && q[lq] <= '9')
                lq++;
            if (lp != lq)
                return lp < lq ? -1 : 1;
            int c = memcmp(p, q, lp);
            if (c)
                return c < 0 ? -1 : 1;
            p += lp;
            q += lq;
            continue;
        }
        if (*p != *q)
            return *p < *q ? -1 : 1;
        p++;
        q++;
    }
    if (*p || *q)
        return *p ? 1 : -1;
    return strcmp(a, b) < 0 ? -1 : strcmp(a, b) > 0; /* "n01" vs "n1": still a total order */
}

size_t logq_node_budget(size_t total_budget, size_t per_node_max, size_t n)
{
    size_t share = n ? total_budget / n : total_budget;
    return per_node_max && per_node_max < share ? per_node_max : share;
}

static int node_cmp(const void *x, const void *y)
{
    const Idunno__GrepNodeResult *a = *(Idunno__GrepNodeResult *const *)x;
    const Idunno__GrepNodeResult *b = *(Idunno__GrepNodeResult *const *)y;
    return logq_name_cmp(a->node ? a->node : "", b->node ? b->node : "");
}

static size_t node_line_bytes(const Idunno__GrepNodeResult *r)
{
    size_t b = 0;
    for (size_t i = 0; i < r->n_lines; i++)
        b += strlen(r->lines[i]) + GREP_LINE_OVERHEAD;
    return b;
}

uint64_t logq_merge(Idunno__GrepNodeResult **nodes, size_t n, size_t max_line_bytes)
{
    qsort(nodes, n, sizeof *nodes, node_cmp);
    uint64_t total = 0;
    size_t all = 0;
    for (size_t i = 0; i < n; i++) {
        if (!nodes[i]->error || !nodes[i]->error[0])
            total += nodes[i]->count;
        all += node_line_bytes(nodes[i]);
    }
    /* Normally every node kept within its share and this loop never runs; it
     * guards against a node that ignored its budget. Halving the biggest
     * node's lines each round keeps it to a few rounds. */
    while (all > max_line_bytes) {
        size_t big = 0, big_bytes = 0;
        for (size_t i = 0; i < n; i++) {
            size_t b = node_line_bytes(nodes[i]);
            if (b > big_bytes) {
                big = i;
                big_bytes = b;
            }
        }
        if (big_bytes == 0)
            break;
        Idunno__GrepNodeResult *r = nodes[big];
        size_t keep = r->n_lines / 2;
        for (size_t k = keep; k < r->n_lines; k++) {
            all -= strlen(r->lines[k]) + GREP_LINE_OVERHEAD;
            free(r->lines[k]);
            r->lines[k] = NULL;
        }
        r->n_lines = keep;
        r->truncated = 1;
    }
    return total;
}
