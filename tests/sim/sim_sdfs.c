/* sim_sdfs.c — SDFS in the simulated cluster: every node's blob store (a set
 * of ids that survives crashes, like a disk), puts through a gateway,
 * deletes, reads, store reports, and on the serving leader the real
 * reconciliation core (reconcile.c) and repair planning (catalog.c), with
 * their catalog changes proposed through the real state machine.
 *
 * Invariants:
 *   - no acknowledged file lost: every version the leader's catalog names has
 *     a listed replica holding its blob, and every put the gateway saw
 *     committed is still in it (files under keep/ are never deleted and never
 *     get enough versions for one to fall out);
 *   - a node deletes a copy only when the catalog does not name it there: not
 *     the serving leader's, nor that of any replica that has applied as far as
 *     the leader that decided (replicas behind it apply the same log later);
 *   - a read that began on a listed copy finds it until it ends (reads last
 *     less than the delete grace);
 *   - at the end every version has all its replicas, each holding the copy.
 *
 * The timings are the real ones scaled down about tenfold (reports every
 * 1 s, young for 2 s, grace 6 s), so a schedule of seconds covers what takes
 * minutes on a cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "ctl/ctl.h"
#include "idunno.pb-c.h"
#include "sdfs/catalog.h"
#include "sdfs/reconcile.h"
#include "sim.h"

#define REPORT_MS 1000
#define YOUNG_MS 2000
#define REPAIR_TICK_MS 250
#define MAX_REPAIRS 16
#define FETCH_MS 2000 /* a repair's fetch gives up */
#define COMMIT_DEADLINE_MS 3000
#define ATTEMPT_MS 1000 /* a put attempt's writes give up */
#define MAX_PUTS 6      /* in progress per gateway */
#define MAX_LEDGER 256
#define MAX_READS 64
#define MAX_BLOBS 160 /* per node: a report must fit in a message */

enum {
    M_PLACE = SIM_MSG_SDFS,
    M_PLACED,
    M_WRITE,
    M_WRITTEN,
    M_COMMIT,
    M_COMMITTED,
    M_DELETE,
    M_REPORT,
    M_REPORTED,
    M_FETCH,
    M_FETCHED,
};

typedef char blob_id[SDFS_BLOB_LEN + 1];

struct blob {
    blob_id id;
    uint64_t stamp; /* sealed or last used: young until stamp + YOUNG_MS */
};

struct disk {
    struct blob b[MAX_BLOBS * 2];
    size_t n;
};

struct acked {
    char name[SIM_FILE_MAX];
    blob_id blob;
};

struct read {
    unsigned node;
    blob_id blob;
    char name[SIM_FILE_MAX];
    uint64_t end;
};

struct world;

struct put {
    int used;
    uint32_t id;
    char name[SIM_FILE_MAX];
    int phase; /* 1 place, 2 write, 3 commit */
    int attempt;
    blob_id blob;
    char replicas[SDFS_REPLICAS][8];
    int n_replicas, written;
    char avoid[SDFS_REPLICAS][8];
    int n_avoid;
    uint64_t phase_at, retry_at, deadline;
    uint64_t tag;
    sim_put_done done; /* a put of another service (result parts) */
};

struct repair {
    int used;
    uint32_t id;
    char name[SIM_FILE_MAX];
    blob_id blob;
    char dead[8], target[8];
    uint64_t started;
    int proposed;
};

struct fetch {
    int used;
    unsigned leader;
    uint32_t id;
    blob_id blob;
    char sources[SDFS_REPLICAS][8];
    int n_sources;
    uint64_t done_at;
};

/* A node's process. */
struct node {
    struct world *w;
    unsigned i;
    uint64_t boot, seq, answered, report_sent, next_report;
    int report_busy;
    struct put puts[MAX_PUTS];
    struct fetch fetches[MAX_REPAIRS];
    /* Leader side. */
    int leading;
    struct reconcile *rec; /* the process's, kept across terms as the real one is */
    struct repair repairs[MAX_REPAIRS];
    uint64_t next_repair;
};

struct world {
    struct sim *s;
    struct disk disk[SIM_NODES];
    struct node *node[SIM_NODES];
    struct acked acked[MAX_LEDGER];
    size_t n_acked;
    struct read reads[MAX_READS];
    size_t n_reads;
    uint32_t next_id;
    unsigned files;
    unsigned char keep_puts[MAX_LEDGER]; /* puts started per keep/ file */
    uint64_t next_put, next_delete, next_read;
    unsigned deletions, reports_decided, repairs_done, puts_acked;
    char why[200]; /* what settling waits for */
};

/* ---- messages ---------------------------------------------------------------------------- */

struct m_place {
    uint32_t put;
    char name[SIM_FILE_MAX];
    char avoid[SDFS_REPLICAS][8];
    int n_avoid;
};
struct m_placed {
    uint32_t put;
    int status;
    char replicas[SDFS_REPLICAS][8];
    int n;
};
struct m_write {
    uint32_t put;
    blob_id blob;
};
struct m_commit {
    uint32_t put;
    char name[SIM_FILE_MAX];
    blob_id blob;
    char replicas[SDFS_REPLICAS][8];
    int n;
};
struct m_committed {
    uint32_t put;
    int status;
};
struct m_delete {
    char name[SIM_FILE_MAX];
};
struct m_report {
    uint64_t boot, seq, answered, held;
    uint32_t n_old, n_young;
    blob_id ids[MAX_BLOBS];
};
struct m_reported {
    uint64_t seq;
    uint64_t decided_at; /* the deciding leader's applied index (a check, not protocol) */
    uint32_t n;
    blob_id ids[MAX_BLOBS];
};
struct m_fetch {
    uint32_t id;
    blob_id blob;
    char sources[SDFS_REPLICAS][8];
    int n_sources;
};
struct m_fetched {
    uint32_t id;
    int ok;
};

_Static_assert(sizeof(struct m_report) <= SIM_MSG_MAX, "a report fits a message");

/* ---- disks -------------------------------------------------------------------------------- */

static struct blob *disk_find(struct disk *d, const char *id)
{
    for (size_t k = 0; k < d->n; k++)
        if (strcmp(d->b[k].id, id) == 0)
            return &d->b[k];
    return NULL;
}

static void disk_put(struct disk *d, const char *id, uint64_t now)
{
    struct blob *b = disk_find(d, id);
    if (!b) {
        if (d->n == sizeof d->b / sizeof d->b[0])
            abort(); /* the workload is sized well below this */
        b = &d->b[d->n++];
        snprintf(b->id, sizeof b->id, "%s", id);
    }
    b->stamp = now;
}

static void disk_del(struct disk *d, const char *id)
{
    struct blob *b = disk_find(d, id);
    if (b)
        *b = d->b[--d->n];
}

/* ---- catalog helpers ---------------------------------------------------------------------- */

static int names_on(const struct sdfs_version *v, const char *node)
{
    for (size_t r = 0; r < v->n_replicas; r++)
        if (strcmp(v->replicas[r], node) == 0)
            return 1;
    return 0;
}

/* The file and version that stores `blob` with `node` listed, or NULL. */
static const struct sdfs_version *catalog_names(const struct catalog *c, const char *blob,
                                                const char *node, const char **file)
{
    for (size_t i = 0; i < catalog_count(c); i++) {
        const struct sdfs_file *f = catalog_at(c, i);
        for (size_t k = 0; k < f->n_versions; k++)
            if (strcmp(f->versions[k].blob, blob) == 0 &&
                (!node || names_on(&f->versions[k], node))) {
                if (file)
                    *file = f->name;
                return &f->versions[k];
            }
    }
    return NULL;
}

static void new_blob(struct world *w, blob_id out)
{
    snprintf(out, sizeof(blob_id), "%016llx", (unsigned long long)sim_rand(w->s));
}

/* ---- the leader: commits, deletes, reports, repairs --------------------------------------- */

struct commit_arg {
    unsigned gateway;
    uint32_t put;
};

static void on_commit(void *st, int status, const uint8_t *result, size_t len, const void *arg)
{
    (void)result;
    (void)len;
    struct node *n = st;
    const struct commit_arg *a = arg;
    if (!n)
        return;
    struct m_committed r = {a->put, status};
    sim_send(n->w->s, n->i, a->gateway, M_COMMITTED, &r, sizeof r);
}

static void lead_commit(struct node *n, unsigned from, const struct m_commit *m)
{
    struct sim *s = n->w->s;
    Idunno__SdfsVersion v = IDUNNO__SDFS_VERSION__INIT;
    uint8_t sha[32];
    memset(sha, 0x5a, sizeof sha);
    char *reps[SDFS_REPLICAS];
    for (int r = 0; r < m->n; r++)
        reps[r] = (char *)m->replicas[r];
    v.name = (char *)m->name;
    v.blob = (char *)m->blob;
    v.size = 1;
    v.sha256.data = sha;
    v.sha256.len = sizeof sha;
    v.n_replicas = (size_t)m->n;
    v.replicas = reps;
    uint8_t buf[512];
    size_t len = idunno__sdfs_version__pack(&v, buf);
    struct commit_arg a = {from, m->put};
    int rc = sim_propose(s, n->i, &sim_sdfs_ops, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT, buf,
                         len, on_commit, &a, sizeof a);
    if (rc < 0) {
        struct m_committed r = {m->put, rc};
        sim_send(s, n->i, from, M_COMMITTED, &r, sizeof r);
    }
}

static void on_ignored(void *st, int status, const uint8_t *result, size_t len, const void *arg)
{
    (void)st, (void)status, (void)result, (void)len, (void)arg;
}

static void propose_replica(struct node *n, const char *name, const char *blob, const char *remove,
                            const char *add, sim_propose_cb cb, const void *arg, size_t arg_len)
{
    Idunno__SdfsReplicaChange ch = IDUNNO__SDFS_REPLICA_CHANGE__INIT;
    ch.name = (char *)name;
    ch.blob = (char *)blob;
    ch.remove = (char *)remove;
    ch.add = (char *)add;
    uint8_t buf[256];
    size_t len = idunno__sdfs_replica_change__pack(&ch, buf);
    sim_propose(n->w->s, n->i, &sim_sdfs_ops, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_REPLICA, buf,
                len, cb, arg, arg_len);
}

static void lead_report(struct node *n, unsigned from, const struct m_report *m)
{
    struct sim *s = n->w->s;
    char *old[MAX_BLOBS], *young[MAX_BLOBS];
    blob_id ids[MAX_BLOBS];
    memcpy(ids, m->ids, sizeof ids);
    for (uint32_t k = 0; k < m->n_old; k++)
        old[k] = ids[k];
    for (uint32_t k = 0; k < m->n_young; k++)
        young[k] = ids[m->n_old + k];
    struct reconcile_report rep = {sim_name(from), m->boot, m->seq,    m->answered, m->held, old,
                                   m->n_old,       young,   m->n_young};
    struct reconcile_actions a;
    const struct catalog *c = sim_catalog(s, n->i);
    if (reconcile_report(n->rec, c, &rep, sim_now(s), &a) < 0)
        return;
    n->w->reports_decided++;
    for (size_t k = 0; k < a.n_missing; k++) {
        sim_log(s, "%s: %s lacks %s (%s): dropped from its set", sim_name(n->i), sim_name(from),
                a.missing[k].version->blob, a.missing[k].file->name);
        propose_replica(n, a.missing[k].file->name, a.missing[k].version->blob, sim_name(from), "",
                        on_ignored, NULL, 0);
    }
    struct m_reported r = {
        .seq = m->seq, .decided_at = sim_applied(s, n->i), .n = (uint32_t)a.n_del};
    for (size_t k = 0; k < a.n_del; k++)
        snprintf(r.ids[k], sizeof r.ids[k], "%s", a.del[k]);
    reconcile_actions_free(&a);
    sim_send(s, n->i, from, M_REPORTED, &r, sizeof r);
}

static int repair_running(void *ud, const char *blob)
{
    struct node *n = ud;
    for (int k = 0; k < MAX_REPAIRS; k++)
        if (n->repairs[k].used && strcmp(n->repairs[k].blob, blob) == 0)
            return 1;
    return 0;
}

static void on_repaired(void *st, int status, const uint8_t *result, size_t len, const void *arg)
{
    (void)result;
    (void)len;
    struct node *n = st;
    uint32_t id = *(const uint32_t *)arg;
    if (!n)
        return;
    for (int k = 0; k < MAX_REPAIRS; k++)
        if (n->repairs[k].used && n->repairs[k].id == id) {
            if (status == 0)
                n->w->repairs_done++;
            n->repairs[k].used = 0;
        }
}

static void repair_tick(struct node *n, uint64_t now)
{
    struct sim *s = n->w->s;
    for (int k = 0; k < MAX_REPAIRS; k++)
        if (n->repairs[k].used && !n->repairs[k].proposed && now - n->repairs[k].started > FETCH_MS)
            n->repairs[k].used = 0;
    if (now < n->next_repair)
        return;
    n->next_repair = now + REPAIR_TICK_MS;
    int free_slots = 0;
    for (int k = 0; k < MAX_REPAIRS; k++)
        free_slots += !n->repairs[k].used;
    struct sdfs_node members[SIM_NODES];
    size_t n_members = sim_members(s, members);
    struct sdfs_repair plan[MAX_REPAIRS];
    size_t np = catalog_plan_repairs(sim_catalog(s, n->i), members, n_members, repair_running, n,
                                     plan, (size_t)free_slots);
    for (size_t p = 0; p < np; p++) {
        struct repair *r = NULL;
        for (int k = 0; k < MAX_REPAIRS && !r; k++)
            if (!n->repairs[k].used)
                r = &n->repairs[k];
        if (!r)
            break;
        const struct sdfs_version *v = plan[p].version;
        *r = (struct repair){.used = 1, .id = ++n->w->next_id, .started = now};
        snprintf(r->name, sizeof r->name, "%s", plan[p].file->name);
        snprintf(r->blob, sizeof r->blob, "%s", v->blob);
        snprintf(r->dead, sizeof r->dead, "%s", plan[p].dead);
        snprintf(r->target, sizeof r->target, "%s", plan[p].target);
        struct m_fetch f = {.id = r->id};
        snprintf(f.blob, sizeof f.blob, "%s", v->blob);
        for (size_t q = 0; q < v->n_replicas; q++)
            snprintf(f.sources[f.n_sources++], 8, "%s", v->replicas[q]);
        sim_log(s, "%s: repair %s (%s): %s in place of %s", sim_name(n->i), r->blob, r->name,
                r->target, r->dead[0] ? r->dead : "(none)");
        sim_send(s, n->i, (unsigned)sim_node_of(r->target), M_FETCH, &f, sizeof f);
    }
}

static void lead_fetched(struct node *n, const struct m_fetched *m)
{
    for (int k = 0; k < MAX_REPAIRS; k++) {
        struct repair *r = &n->repairs[k];
        if (!r->used || r->id != m->id || r->proposed)
            continue;
        if (!m->ok) {
            r->used = 0;
            return;
        }
        r->proposed = 1;
        propose_replica(n, r->name, r->blob, r->dead, r->target, on_repaired, &r->id, sizeof r->id);
        return;
    }
}

static void lead_place(struct node *n, unsigned from, const struct m_place *m)
{
    struct sim *s = n->w->s;
    struct m_placed r = {.put = m->put};
    struct sdfs_node members[SIM_NODES], alive[SIM_NODES];
    size_t nm = sim_members(s, members), na = 0;
    for (size_t k = 0; k < nm; k++)
        if (!members[k].suspect)
            alive[na++] = members[k];
    const char *avoid[SDFS_REPLICAS];
    for (int k = 0; k < m->n_avoid; k++)
        avoid[k] = m->avoid[k];
    size_t idx[SDFS_REPLICAS];
    size_t got = catalog_place(sim_catalog(s, n->i), m->name, alive, na, avoid, (size_t)m->n_avoid,
                               SDFS_REPLICAS, idx);
    if (got < SDFS_REPLICAS && got < na) {
        r.status = ID_EBUSY;
    } else {
        for (size_t k = 0; k < got; k++)
            snprintf(r.replicas[r.n++], 8, "%s", alive[idx[k]].name);
        if (got == 0)
            r.status = ID_EBUSY;
    }
    sim_send(s, n->i, from, M_PLACED, &r, sizeof r);
}

/* ---- a node: gateway, replica, reporter, fetcher ----------------------------------------- */

static void report_send(struct node *n, uint64_t now)
{
    struct sim *s = n->w->s;
    int l = sim_leader_of(s, n->i);
    n->next_report = now + REPORT_MS;
    if (n->report_busy && now - n->report_sent > 2 * REPORT_MS)
        n->report_busy = 0; /* the call timed out; a late answer is dropped */
    if (n->report_busy || l < 0)
        return;
    struct disk *d = &n->w->disk[n->i];
    struct m_report r = {.boot = n->boot, .seq = ++n->seq, .answered = n->answered, .held = d->n};
    blob_id young[MAX_BLOBS];
    for (size_t k = 0; k < d->n && k < MAX_BLOBS; k++) {
        if (now - d->b[k].stamp < YOUNG_MS)
            snprintf(young[r.n_young++], sizeof young[0], "%s", d->b[k].id);
        else
            snprintf(r.ids[r.n_old++], sizeof r.ids[0], "%s", d->b[k].id);
    }
    memcpy(&r.ids[r.n_old], young, r.n_young * sizeof young[0]);
    n->report_busy = 1;
    n->report_sent = now;
    sim_send(s, n->i, (unsigned)l, M_REPORT, &r, sizeof r);
}

/* A copy is deleted: the invariant is checked against every catalog that
 * has seen as much of the log as the leader that decided. */
static void delete_copy(struct node *n, const char *blob, uint64_t decided_at)
{
    struct sim *s = n->w->s;
    const char *me = sim_name(n->i), *file = NULL;
    int l = sim_serving(s);
    if (l >= 0 && catalog_names(sim_catalog(s, (unsigned)l), blob, me, &file))
        sim_fail(s, "%s deleted its copy of %s (%s) while the leader %s's catalog names it there",
                 me, blob, file, sim_name((unsigned)l));
    for (unsigned j = 0; j < SIM_NODES && !sim_failed(s); j++)
        if (sim_applied(s, j) >= decided_at && catalog_names(sim_catalog(s, j), blob, me, &file))
            sim_fail(s,
                     "%s deleted its copy of %s (%s) while %s's catalog (applied %llu >= %llu) "
                     "names it there",
                     me, blob, file, sim_name(j), (unsigned long long)sim_applied(s, j),
                     (unsigned long long)decided_at);
    sim_log(s, "%s deletes %s", me, blob);
    disk_del(&n->w->disk[n->i], blob);
    n->w->deletions++;
}

static void on_reported(struct node *n, const struct m_reported *m)
{
    if (!n->report_busy || m->seq != n->seq)
        return; /* an answer to a call that timed out */
    n->report_busy = 0;
    n->answered = m->seq;
    uint64_t now = sim_now(n->w->s);
    for (uint32_t k = 0; k < m->n; k++) {
        struct blob *b = disk_find(&n->w->disk[n->i], m->ids[k]);
        /* Re-check the age: it may have been sealed again meanwhile. */
        if (b && now - b->stamp >= YOUNG_MS)
            delete_copy(n, m->ids[k], m->decided_at);
    }
}

static void fetch_tick(struct node *n, uint64_t now)
{
    struct sim *s = n->w->s;
    for (int k = 0; k < MAX_REPAIRS; k++) {
        struct fetch *f = &n->fetches[k];
        if (!f->used || now < f->done_at)
            continue;
        f->used = 0;
        /* The copy comes from a source that is up and reachable and has it. */
        int ok = 0;
        for (int q = 0; q < f->n_sources && !ok; q++) {
            int src = sim_node_of(f->sources[q]);
            ok = src >= 0 && sim_up(s, (unsigned)src) &&
                 disk_find(&n->w->disk[src], f->blob) != NULL;
        }
        if (ok)
            disk_put(&n->w->disk[n->i], f->blob, now);
        struct m_fetched r = {f->id, ok};
        sim_send(s, n->i, f->leader, M_FETCHED, &r, sizeof r);
    }
}

static void on_fetch(struct node *n, unsigned from, const struct m_fetch *m)
{
    for (int k = 0; k < MAX_REPAIRS; k++)
        if (!n->fetches[k].used) {
            struct fetch *f = &n->fetches[k];
            *f = (struct fetch){.used = 1,
                                .leader = from,
                                .id = m->id,
                                .n_sources = m->n_sources,
                                .done_at = sim_now(n->w->s) + sim_range(n->w->s, 20, 400)};
            memcpy(f->blob, m->blob, sizeof f->blob);
            memcpy(f->sources, m->sources, sizeof f->sources);
            return;
        }
}

static void put_start_attempt(struct node *n, struct put *p, uint64_t now)
{
    p->phase = 1;
    p->phase_at = now;
    p->retry_at = now;
    p->deadline = now + COMMIT_DEADLINE_MS;
    p->written = 0;
    new_blob(n->w, p->blob);
}

static void put_end(struct node *n, struct put *p, int status)
{
    sim_log(n->w->s, "%s: put %s (%s) %s", sim_name(n->i), p->name, p->blob,
            status == 0 ? "acknowledged" : id_strerror(status));
    if (status == 0 && n->w->n_acked < MAX_LEDGER) {
        struct acked *a = &n->w->acked[n->w->n_acked++];
        snprintf(a->name, sizeof a->name, "%s", p->name);
        memcpy(a->blob, p->blob, sizeof a->blob);
        n->w->puts_acked++;
    }
    p->used = 0;
    if (p->done)
        p->done(n->w->s, n->i, p->tag, status);
}

static void put_fail_attempt(struct node *n, struct put *p, uint64_t now)
{
    /* Replicas that did not answer are avoided by the next attempt. */
    p->n_avoid = 0;
    for (int r = 0; r < p->n_replicas; r++)
        if (!(p->written & (1 << r)) && p->n_avoid < SDFS_REPLICAS)
            memcpy(p->avoid[p->n_avoid++], p->replicas[r], sizeof p->avoid[0]);
    if (++p->attempt >= 3)
        put_end(n, p, ID_ETIMEDOUT);
    else
        put_start_attempt(n, p, now);
}

static void put_tick(struct node *n, struct put *p, uint64_t now)
{
    struct sim *s = n->w->s;
    int l = sim_leader_of(s, n->i);
    if (p->phase == 1 || p->phase == 3) {
        if (now >= p->deadline) {
            if (p->phase == 3)
                put_end(n, p, ID_ETIMEDOUT); /* it may still commit: not acknowledged */
            else
                put_fail_attempt(n, p, now);
            return;
        }
        if (now < p->retry_at || l < 0)
            return;
        p->retry_at = now + 300;
        if (p->phase == 1) {
            struct m_place m = {.put = p->id, .n_avoid = p->n_avoid};
            snprintf(m.name, sizeof m.name, "%s", p->name);
            memcpy(m.avoid, p->avoid, sizeof m.avoid);
            sim_send(s, n->i, (unsigned)l, M_PLACE, &m, sizeof m);
        } else {
            struct m_commit m = {.put = p->id, .n = p->n_replicas};
            snprintf(m.name, sizeof m.name, "%s", p->name);
            memcpy(m.blob, p->blob, sizeof m.blob);
            memcpy(m.replicas, p->replicas, sizeof m.replicas);
            sim_send(s, n->i, (unsigned)l, M_COMMIT, &m, sizeof m);
        }
    } else if (p->phase == 2 && now - p->phase_at > ATTEMPT_MS) {
        put_fail_attempt(n, p, now);
    }
}

static struct put *put_find(struct node *n, uint32_t id)
{
    for (int k = 0; k < MAX_PUTS; k++)
        if (n->puts[k].used && n->puts[k].id == id)
            return &n->puts[k];
    return NULL;
}

static void on_placed(struct node *n, const struct m_placed *m)
{
    struct put *p = put_find(n, m->put);
    if (!p || p->phase != 1 || m->status < 0)
        return;
    uint64_t now = sim_now(n->w->s);
    p->phase = 2;
    p->phase_at = now;
    p->n_replicas = m->n;
    memcpy(p->replicas, m->replicas, sizeof p->replicas);
    struct m_write w = {.put = p->id};
    memcpy(w.blob, p->blob, sizeof w.blob);
    for (int r = 0; r < m->n; r++)
        sim_send(n->w->s, n->i, (unsigned)sim_node_of(m->replicas[r]), M_WRITE, &w, sizeof w);
}

static void on_written(struct node *n, unsigned from, const struct m_write *m)
{
    struct put *p = put_find(n, m->put);
    if (!p || p->phase != 2 || strcmp(p->blob, m->blob) != 0)
        return;
    for (int r = 0; r < p->n_replicas; r++)
        if (sim_node_of(p->replicas[r]) == (int)from)
            p->written |= 1 << r;
    if (p->written == (1 << p->n_replicas) - 1) {
        uint64_t now = sim_now(n->w->s);
        p->phase = 3;
        p->phase_at = p->retry_at = now;
        p->deadline = now + COMMIT_DEADLINE_MS;
    }
}

static void on_committed(struct node *n, const struct m_committed *m)
{
    struct put *p = put_find(n, m->put);
    if (!p || p->phase != 3)
        return;
    if (m->status == 0)
        put_end(n, p, 0);
    else if (m->status != ID_ENOTLEADER)
        put_end(n, p, m->status);
    /* Not the leader (any more): the next retry goes to whoever leads. */
}

/* ---- the workload (clients), driven from the lowest node that is up ---------------------- */

static void workload_tick(struct world *w, uint64_t now)
{
    struct sim *s = w->s;
    int l = sim_serving(s);
    int active = now + 1500 < sim_config(s)->fault_ms;
    if (active && now >= w->next_put) {
        w->next_put = now + sim_range(s, 250, 900);
        unsigned g = (unsigned)sim_range(s, 0, SIM_NODES - 1);
        struct node *n = w->node[g];
        for (int k = 0; n && k < MAX_PUTS; k++) {
            if (n->puts[k].used)
                continue;
            struct put *p = &n->puts[k];
            *p = (struct put){.used = 1, .id = ++w->next_id};
            /* keep/ files: at most 3 versions, never deleted. tmp/ files:
             * versions fall out, names are deleted. */
            unsigned f = (unsigned)sim_range(s, 0, w->files);
            if (sim_chance(s, 50)) {
                /* Counted when started, not when committed: puts in flight
                 * would otherwise push a version out of a keep/ file. */
                if (w->keep_puts[f] >= 3 && w->files + 1 < MAX_LEDGER)
                    f = ++w->files;
                w->keep_puts[f]++;
                snprintf(p->name, sizeof p->name, "keep/f%u", f);
            } else {
                snprintf(p->name, sizeof p->name, "tmp/f%u", f % 4);
            }
            put_start_attempt(n, p, now);
            break;
        }
    }
    if (active && now >= w->next_delete) {
        w->next_delete = now + sim_range(s, 500, 2500);
        unsigned g = (unsigned)sim_range(s, 0, SIM_NODES - 1);
        int gl = w->node[g] ? sim_leader_of(s, g) : -1;
        if (gl >= 0) {
            struct m_delete m;
            snprintf(m.name, sizeof m.name, "tmp/f%u", (unsigned)sim_range(s, 0, 3));
            sim_send(s, g, (unsigned)gl, M_DELETE, &m, sizeof m);
        }
    }
    /* Reads: look the file up on the leader, then read from a listed replica
     * that holds it; the copy must stay until the read ends. */
    if (active && now >= w->next_read && l >= 0 && w->n_reads < MAX_READS) {
        w->next_read = now + sim_range(s, 100, 400);
        const struct catalog *c = sim_catalog(s, (unsigned)l);
        size_t nf = catalog_count(c);
        if (nf) {
            const struct sdfs_file *f = catalog_at(c, (size_t)sim_range(s, 0, nf - 1));
            const struct sdfs_version *v = &f->versions[sim_range(s, 0, f->n_versions - 1)];
            const char *r = v->replicas[sim_range(s, 0, v->n_replicas - 1)];
            int rn = sim_node_of(r);
            if (rn >= 0 && sim_up(s, (unsigned)rn) && disk_find(&w->disk[rn], v->blob)) {
                struct read *rd = &w->reads[w->n_reads++];
                rd->node = (unsigned)rn;
                memcpy(rd->blob, v->blob, sizeof rd->blob);
                snprintf(rd->name, sizeof rd->name, "%s", f->name);
                rd->end = now + sim_range(s, 20, 1500);
            }
        }
    }
    for (size_t k = 0; k < w->n_reads;) {
        struct read *rd = &w->reads[k];
        if (now < rd->end) {
            k++;
            continue;
        }
        if (!disk_find(&w->disk[rd->node], rd->blob))
            sim_fail(s, "a read of %s (blob %s) from %s lost its copy before it ended", rd->name,
                     rd->blob, sim_name(rd->node));
        *rd = w->reads[--w->n_reads];
    }
}

/* ---- for other services ---- */

int sim_sdfs_put(struct sim *s, unsigned gateway, const char *name, uint64_t tag, sim_put_done done)
{
    struct world *w = sim_world(s, &sim_sdfs_ops);
    struct node *n = w ? w->node[gateway] : NULL;
    for (int k = 0; n && k < MAX_PUTS; k++) {
        struct put *p = &n->puts[k];
        if (p->used)
            continue;
        *p = (struct put){.used = 1, .id = ++w->next_id, .tag = tag, .done = done};
        snprintf(p->name, sizeof p->name, "%s", name);
        put_start_attempt(n, p, sim_now(s));
        return 0;
    }
    return -1;
}

void sim_sdfs_delete(struct sim *s, unsigned from, const char *name)
{
    int l = sim_leader_of(s, from);
    struct m_delete m;
    snprintf(m.name, sizeof m.name, "%s", name);
    if (l >= 0)
        sim_send(s, from, (unsigned)l, M_DELETE, &m, sizeof m);
}

/* ---- service callbacks ------------------------------------------------------------------- */

static void *world_new(struct sim *s)
{
    struct world *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->s = s;
    return w;
}

static void world_free(void *p)
{
    free(p);
}

static void *node_start(void *world, unsigned i)
{
    struct world *w = world;
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        abort();
    n->w = w;
    n->i = i;
    n->boot = sim_now(w->s) + 1; /* a new process numbers its reports afresh */
    n->next_report = sim_now(w->s) + sim_range(w->s, 300, REPORT_MS);
    n->rec = reconcile_create(sim_config(w->s)->grace_ms);
    if (!n->rec)
        abort();
    w->node[i] = n;
    return n;
}

static void node_stop(void *st)
{
    struct node *n = st;
    n->w->node[n->i] = NULL;
    reconcile_destroy(n->rec);
    free(n);
}

static void node_lead(void *st, uint64_t term)
{
    (void)term;
    struct node *n = st;
    n->leading = 1;
    n->next_repair = 0;
}

static void node_unlead(void *st)
{
    struct node *n = st;
    n->leading = 0;
    memset(n->repairs, 0, sizeof n->repairs);
}

static int lowest_up(struct sim *s)
{
    for (unsigned i = 0; i < SIM_NODES; i++)
        if (sim_up(s, i))
            return (int)i;
    return -1;
}

static void node_tick(void *st, uint64_t now)
{
    struct node *n = st;
    if (lowest_up(n->w->s) == (int)n->i)
        workload_tick(n->w, now);
    if (now >= n->next_report)
        report_send(n, now);
    for (int k = 0; k < MAX_PUTS; k++)
        if (n->puts[k].used)
            put_tick(n, &n->puts[k], now);
    fetch_tick(n, now);
    if (n->leading && ctl_is_serving(sim_ctl(n->w->s, n->i)))
        repair_tick(n, now);
}

static void on_delete_req(void *st, int status, const uint8_t *result, size_t len, const void *arg)
{
    (void)result, (void)len, (void)arg;
    struct node *n = st;
    if (!n)
        return;
    sim_log(n->w->s, "%s: delete: %s", sim_name(n->i), status ? id_strerror(status) : "done");
}

static void node_recv(void *st, const struct sim_msg *m)
{
    struct node *n = st;
    struct sim *s = n->w->s;
    int serving = n->leading && ctl_is_serving(sim_ctl(s, n->i));
    switch (m->type) {
    case M_PLACE:
        if (serving)
            lead_place(n, m->from, (const struct m_place *)m->body);
        break;
    case M_PLACED: on_placed(n, (const struct m_placed *)m->body); break;
    case M_WRITE: {
        const struct m_write *w = (const void *)m->body;
        if (n->w->disk[n->i].n < MAX_BLOBS) { /* a full disk answers nothing */
            disk_put(&n->w->disk[n->i], w->blob, sim_now(s));
            sim_send(s, n->i, m->from, M_WRITTEN, w, sizeof *w);
        }
        break;
    }
    case M_WRITTEN: on_written(n, m->from, (const struct m_write *)m->body); break;
    case M_COMMIT:
        if (serving) {
            lead_commit(n, m->from, (const struct m_commit *)m->body);
        } else {
            struct m_committed r = {((const struct m_commit *)m->body)->put, ID_ENOTLEADER};
            sim_send(s, n->i, m->from, M_COMMITTED, &r, sizeof r);
        }
        break;
    case M_COMMITTED: on_committed(n, (const struct m_committed *)m->body); break;
    case M_DELETE:
        if (serving) {
            Idunno__SdfsLookup q = IDUNNO__SDFS_LOOKUP__INIT;
            q.name = (char *)((const struct m_delete *)m->body)->name;
            uint8_t buf[128];
            size_t len = idunno__sdfs_lookup__pack(&q, buf);
            sim_propose(s, n->i, &sim_sdfs_ops, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_DELETE, buf,
                        len, on_delete_req, NULL, 0);
        }
        break;
    case M_REPORT:
        if (serving)
            lead_report(n, m->from, (const struct m_report *)m->body);
        break;
    case M_REPORTED: on_reported(n, (const struct m_reported *)m->body); break;
    case M_FETCH: on_fetch(n, m->from, (const struct m_fetch *)m->body); break;
    case M_FETCHED:
        if (serving)
            lead_fetched(n, (const struct m_fetched *)m->body);
        break;
    }
}

/* ---- invariants -------------------------------------------------------------------------- */

static void check_catalog(struct world *w, unsigned l, int final)
{
    struct sim *s = w->s;
    const struct catalog *c = sim_catalog(s, l);
    for (size_t i = 0; i < catalog_count(c) && !sim_failed(s); i++) {
        const struct sdfs_file *f = catalog_at(c, i);
        for (size_t k = 0; k < f->n_versions; k++) {
            const struct sdfs_version *v = &f->versions[k];
            size_t held = 0;
            for (size_t r = 0; r < v->n_replicas; r++) {
                int rn = sim_node_of(v->replicas[r]);
                held += rn >= 0 && disk_find(&w->disk[rn], v->blob) != NULL;
            }
            if (held == 0)
                sim_fail(s, "%s version %llu (blob %s) lost: none of its %zu replicas holds it",
                         f->name, (unsigned long long)v->version, v->blob, v->n_replicas);
            else if (final && (held != v->n_replicas || v->n_replicas != SDFS_REPLICAS))
                sim_fail(s,
                         "%s version %llu (blob %s) not repaired: %zu replicas listed, %zu hold it",
                         f->name, (unsigned long long)v->version, v->blob, v->n_replicas, held);
        }
    }
    for (size_t a = 0; a < w->n_acked && !sim_failed(s); a++)
        if (strncmp(w->acked[a].name, "keep/", 5) == 0 &&
            !catalog_find_blob(c, w->acked[a].name, w->acked[a].blob))
            sim_fail(s, "acknowledged put of %s (blob %s) is not in the leader %s's catalog",
                     w->acked[a].name, w->acked[a].blob, sim_name(l));
}

static void sdfs_check(void *world)
{
    struct world *w = world;
    int l = sim_serving(w->s);
    if (l >= 0)
        check_catalog(w, (unsigned)l, 0);
}

static int sdfs_settled(void *world)
{
    struct world *w = world;
    int l = sim_serving(w->s);
    if (l < 0)
        return 0;
    const struct catalog *c = sim_catalog(w->s, (unsigned)l);
    for (size_t i = 0; i < catalog_count(c); i++) {
        const struct sdfs_file *f = catalog_at(c, i);
        for (size_t k = 0; k < f->n_versions; k++) {
            const struct sdfs_version *v = &f->versions[k];
            if (v->n_replicas != SDFS_REPLICAS) {
                snprintf(w->why, sizeof w->why, "%s %s has %zu replicas", f->name, v->blob,
                         v->n_replicas);
                return 0;
            }
            for (size_t r = 0; r < v->n_replicas; r++)
                if (!disk_find(&w->disk[sim_node_of(v->replicas[r])], v->blob)) {
                    snprintf(w->why, sizeof w->why, "%s %s lacks its copy on %s", f->name, v->blob,
                             v->replicas[r]);
                    return 0;
                }
        }
    }
    snprintf(w->why, sizeof w->why, "%zu reads", w->n_reads);
    return w->n_reads == 0;
}

static const char *sdfs_waiting(void *world)
{
    return ((struct world *)world)->why;
}

static void sdfs_final(void *world)
{
    struct world *w = world;
    for (unsigned i = 0; i < SIM_NODES; i++)
        check_catalog(w, i, 1);
    sim_log(w->s, "sdfs: %u puts acknowledged, %u reports decided, %u repairs, %u copies deleted",
            w->puts_acked, w->reports_decided, w->repairs_done, w->deletions);
}

const struct sim_service_ops sim_sdfs_ops = {
    .name = "sdfs",
    .type_lo = SIM_MSG_SDFS,
    .type_hi = SIM_MSG_SDFS_END,
    .world_new = world_new,
    .world_free = world_free,
    .start = node_start,
    .stop = node_stop,
    .lead = node_lead,
    .unlead = node_unlead,
    .tick = node_tick,
    .recv = node_recv,
    .check = sdfs_check,
    .settled = sdfs_settled,
    .waiting = sdfs_waiting,
    .final_check = sdfs_final,
};
