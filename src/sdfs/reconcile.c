/* reconcile.c — the leader's decisions on store reports (see reconcile.h): a
 * small table of reporting nodes, each with the copies it holds unlisted
 * (since when) and the copies it is suspected to lack (since which report). */
#include "sdfs/reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"

struct unlisted {
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t since_ms;
};

struct suspect {
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t seq; /* the report that first lacked it */
};

struct rnode {
    char name[SDFS_NODE_MAX];
    uint64_t boot, last_seq, last_ms;
    struct unlisted *unl; /* sorted by blob */
    size_t n_unl;
    struct suspect *sus; /* sorted by blob */
    size_t n_sus;
};

struct reconcile {
    uint64_t grace_ms;
    struct rnode nodes[RECONCILE_MAX_NODES];
    size_t n;
};

struct reconcile *reconcile_create(uint64_t grace_ms)
{
    struct reconcile *r = calloc(1, sizeof *r);
    if (r)
        r->grace_ms = grace_ms;
    return r;
}

static void rnode_clear(struct rnode *n)
{
    free(n->unl);
    free(n->sus);
    n->unl = NULL;
    n->sus = NULL;
    n->n_unl = n->n_sus = 0;
    n->last_seq = 0;
}

void reconcile_destroy(struct reconcile *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        rnode_clear(&r->nodes[i]);
    free(r);
}

void reconcile_actions_free(struct reconcile_actions *a)
{
    free(a->del);
    a->del = NULL;
    a->n_del = 0;
}

/* The node's memory, made if new; the least recently heard node gives way
 * when the table is full (it only forgets, which delays, never hastens). */
static struct rnode *rnode_get(struct reconcile *r, const char *name, uint64_t now_ms)
{
    size_t oldest = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->nodes[i].name, name) == 0)
            return &r->nodes[i];
        if (r->nodes[i].last_ms < r->nodes[oldest].last_ms)
            oldest = i;
    }
    struct rnode *n = r->n < RECONCILE_MAX_NODES ? &r->nodes[r->n++] : &r->nodes[oldest];
    rnode_clear(n);
    snprintf(n->name, sizeof n->name, "%s", name);
    n->boot = 0;
    n->last_ms = now_ms;
    return n;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static long find_str(char **list, size_t n, const char *s)
{
    if (n == 0)
        return -1;
    char **hit = bsearch(&s, list, n, sizeof *list, str_cmp);
    return hit ? (long)(hit - list) : -1;
}

static int blob_cmp(const void *key, const void *elem)
{
    return strcmp(key, elem); /* both entry types start with the blob id */
}

static const struct unlisted *find_unlisted(const struct rnode *n, const char *blob)
{
    return n->n_unl ? bsearch(blob, n->unl, n->n_unl, sizeof *n->unl, blob_cmp) : NULL;
}

static const struct suspect *find_suspect(const struct rnode *n, const char *blob)
{
    return n->n_sus ? bsearch(blob, n->sus, n->n_sus, sizeof *n->sus, blob_cmp) : NULL;
}

static int suspect_cmp(const void *a, const void *b)
{
    return strcmp(((const struct suspect *)a)->blob, ((const struct suspect *)b)->blob);
}

static int version_on(const struct sdfs_version *v, const char *node)
{
    for (size_t r = 0; r < v->n_replicas; r++)
        if (strcmp(v->replicas[r], node) == 0)
            return 1;
    return 0;
}

/* Copies the catalog names on the node: marks the ones reported old in kept,
 * and for the lacking ones declares or (re)suspects. */
static int check_listed(const struct catalog *c, const struct reconcile_report *rep,
                        const struct rnode *n, uint8_t *kept, struct suspect **sus, size_t *n_sus,
                        struct reconcile_actions *out)
{
    size_t cap = 0;
    for (size_t i = 0; i < catalog_count(c); i++) {
        const struct sdfs_file *f = catalog_at(c, i);
        for (size_t k = 0; k < f->n_versions; k++) {
            const struct sdfs_version *v = &f->versions[k];
            if (!version_on(v, rep->node))
                continue;
            long at = find_str(rep->blobs, rep->n_blobs, v->blob);
            if (at >= 0) {
                kept[at] = 1;
                continue;
            }
            if (find_str(rep->young, rep->n_young, v->blob) >= 0)
                continue;
            const struct suspect *old = find_suspect(n, v->blob);
            if (old && rep->answered_seq >= old->seq && out->n_missing < RECONCILE_MAX_MISSING) {
                out->missing[out->n_missing++] = (struct reconcile_missing){f, v};
                continue;
            }
            if (ARRAY_RESERVE(*sus, cap, *n_sus, 1, 16) < 0)
                return ID_ENOMEM;
            struct suspect *s = &(*sus)[(*n_sus)++];
            snprintf(s->blob, sizeof s->blob, "%s", v->blob);
            s->seq = old ? old->seq : rep->seq;
            out->suspected++;
        }
    }
    return 0;
}

/* Held copies the catalog does not name on the node: deletable once unlisted
 * for the grace period. */
static int check_unlisted(const struct reconcile_report *rep, const struct rnode *n,
                          const uint8_t *kept, uint64_t grace_ms, uint64_t now_ms,
                          struct unlisted **unl, size_t *n_unl, struct reconcile_actions *out)
{
    *unl = calloc(rep->n_blobs ? rep->n_blobs : 1, sizeof **unl);
    out->del = calloc(rep->n_blobs ? rep->n_blobs : 1, sizeof *out->del);
    if (!*unl || !out->del)
        return ID_ENOMEM;
    for (size_t i = 0; i < rep->n_blobs; i++) {
        if (kept[i])
            continue;
        const struct unlisted *old = find_unlisted(n, rep->blobs[i]);
        uint64_t since = old ? old->since_ms : now_ms;
        if (now_ms - since >= grace_ms)
            out->del[out->n_del++] = rep->blobs[i];
        struct unlisted *u = &(*unl)[(*n_unl)++];
        snprintf(u->blob, sizeof u->blob, "%s", rep->blobs[i]);
        u->since_ms = since;
    }
    return 0;
}

int reconcile_report(struct reconcile *r, const struct catalog *c,
                     const struct reconcile_report *rep, uint64_t now_ms,
                     struct reconcile_actions *out)
{
    memset(out, 0, sizeof *out);
    if (rep->seq == 0 || rep->n_blobs + rep->n_young != rep->held) {
        out->ignored = 1; /* unnumbered or incomplete: it proves nothing */
        return 0;
    }
    struct rnode *n = rnode_get(r, rep->node, now_ms);
    if (n->boot != rep->boot) {
        rnode_clear(n); /* a restarted process numbers from 1 again */
        n->boot = rep->boot;
    }
    if (rep->seq <= n->last_seq) {
        out->ignored = 1; /* stale: a newer report was already seen */
        return 0;
    }
    /* An empty list may be NULL, which qsort must not be given. */
    if (rep->n_blobs > 1)
        qsort(rep->blobs, rep->n_blobs, sizeof *rep->blobs, str_cmp);
    if (rep->n_young > 1)
        qsort(rep->young, rep->n_young, sizeof *rep->young, str_cmp);
    uint8_t *kept = calloc(rep->n_blobs ? rep->n_blobs : 1, 1);
    struct suspect *sus = NULL;
    struct unlisted *unl = NULL;
    size_t n_sus = 0, n_unl = 0;
    int rc = kept ? check_listed(c, rep, n, kept, &sus, &n_sus, out) : ID_ENOMEM;
    if (rc == 0)
        rc = check_unlisted(rep, n, kept, r->grace_ms, now_ms, &unl, &n_unl, out);
    free(kept);
    if (rc < 0) {
        free(sus);
        free(unl);
        reconcile_actions_free(out);
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (n_sus > 1)
        qsort(sus, n_sus, sizeof *sus, suspect_cmp);
    free(n->sus);
    free(n->unl);
    n->sus = sus;
    n->n_sus = n_sus;
    n->unl = unl;
    n->n_unl = n_unl;
    n->last_seq = rep->seq;
    n->last_ms = now_ms;
    return 0;
}

size_t reconcile_repair_nodes(const struct member_view *members, size_t n, struct sdfs_node *out,
                              size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        const struct member_view *m = &members[i];
        int superseded = 0;
        for (size_t j = 0; j < n && !superseded; j++)
            superseded = j != i && strcmp(members[j].name, m->name) == 0 &&
                         (members[j].incarnation > m->incarnation ||
                          (members[j].incarnation == m->incarnation && j < i));
        if (superseded || (m->state != MEMBER_ALIVE && m->state != MEMBER_SUSPECT))
            continue;
        out[k].name = m->name;
        out[k].suspect = m->state == MEMBER_SUSPECT;
        k++;
    }
    return k;
}
