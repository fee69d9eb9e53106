/* sim.c — the simulated cluster of sim.h: the fixture with one ctl per node
 * (catalog and job state registered), the service message network, the fault
 * driver of a schedule, and the run loop that checks invariants as it goes.
 *
 * Time is the fixture's. The loop steps the fixture one event at a time
 * (ctl_poll on every live node after each, from the fixture hook), then
 * delivers the service messages that are due and runs the service ticks, the
 * fault driver and the checks whose time has come. Everything random comes
 * from one generator seeded by the schedule, and the fixture is
 * deterministic, so a seed replays exactly. */
#include "sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/fixture.h>

#include "base/err.h"
#include "ctl/ctl.h"
#include "sched/jobs.h"

#define SIM_CHECK_MS 50   /* whole-cluster invariants at least this often */
#define SIM_DETECT_MS 600 /* a node down this long is "failed" to membership */
#define SIM_MAX_SVCS 4
#define SIM_MAX_TERMS 4096

struct prop {
    struct sim *s;
    unsigned node, inc;
    const struct sim_service_ops *svc;
    sim_propose_cb cb;
    uint8_t arg[64];
    struct prop *prev, *next;
};

struct qmsg {
    uint64_t at, seq;
    struct sim_msg m;
};

struct sim {
    struct sim_config cfg;
    uint64_t rng;
    struct raft_fixture f;
    struct ctl *ctl[SIM_NODES];
    struct catalog *cat[SIM_NODES];
    struct jobs *jobs[SIM_NODES];
    int up[SIM_NODES];
    uint64_t down_since[SIM_NODES];
    unsigned inc[SIM_NODES];          /* process incarnation: bumped by every restart */
    int booting[SIM_NODES];           /* revived, its raft still leading: see node_revive */
    int fx_cut[SIM_NODES][SIM_NODES]; /* what the fixture was told */
    int serving[SIM_NODES];           /* what the services were last told */
    uint64_t lead_term[SIM_NODES];
    /* Services. */
    const struct sim_service_ops *svc[SIM_MAX_SVCS];
    void *world[SIM_MAX_SVCS];
    void *st[SIM_MAX_SVCS][SIM_NODES];
    size_t n_svc;
    /* The service network: queued messages sorted by (at, seq). */
    struct qmsg **q;
    size_t n_q, cap_q;
    uint64_t msg_seq;
    int cut[SIM_NODES][SIM_NODES]; /* i -> j delivers nothing */
    unsigned loss_pct;
    /* Fault driver. */
    int kind; /* this round's */
    uint64_t next_round, heal_at;
    int in_fault;
    unsigned rounds, leader_changes;
    /* Checks. */
    int fail;
    char failmsg[512];
    unsigned term_leader[SIM_MAX_TERMS]; /* node + 1 that led each term, 0: none seen */
    int last_leader;
    uint64_t next_check, next_tick;
    struct prop *props;
    int closing;
};

static struct sim *g_sim; /* the fixture hook has no user data */

static const char *const fault_names[SIM_FAULT_KINDS] = {
    "crash-voter", "crash-leader", "partition-leader", "one-way", "loss", "multi", "churn", "mixed",
};

const char *sim_fault_name(enum sim_fault k)
{
    return k < SIM_FAULT_KINDS ? fault_names[k] : "?";
}

/* ---- small things for services -------------------------------------------------------- */

uint64_t sim_now(const struct sim *s)
{
    return s->f.time;
}

/* splitmix64: small, fast, and every seed gives a different stream. */
uint64_t sim_rand(struct sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sim_range(struct sim *s, uint64_t lo, uint64_t hi)
{
    return hi <= lo ? lo : lo + sim_rand(s) % (hi - lo + 1);
}

int sim_chance(struct sim *s, unsigned percent)
{
    return sim_rand(s) % 100 < percent;
}

const struct sim_config *sim_config(const struct sim *s)
{
    return &s->cfg;
}

void sim_log(struct sim *s, const char *fmt, ...)
{
    if (!s->cfg.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%7llu] ", (unsigned long long)s->f.time);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void sim_fail(struct sim *s, const char *fmt, ...)
{
    if (s->fail)
        return;
    s->fail = 1;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->failmsg, sizeof s->failmsg, "t=%llu ms: ", (unsigned long long)s->f.time);
    vsnprintf(s->failmsg + n, sizeof s->failmsg - (size_t)n, fmt, ap);
    va_end(ap);
    sim_log(s, "FAIL %s", s->failmsg);
}

int sim_failed(const struct sim *s)
{
    return s->fail;
}

const char *sim_name(unsigned node)
{
    static const char *const names[SIM_NODES] = {"n1", "n2", "n3", "n4", "n5"};
    return node < SIM_NODES ? names[node] : "?";
}

int sim_node_of(const char *name)
{
    for (unsigned i = 0; i < SIM_NODES; i++)
        if (strcmp(name, sim_name(i)) == 0)
            return (int)i;
    return -1;
}

int sim_up(const struct sim *s, unsigned node)
{
    return node < SIM_NODES && s->up[node];
}
struct ctl *sim_ctl(struct sim *s, unsigned node)
{
    return s->ctl[node];
}
struct catalog *sim_catalog(struct sim *s, unsigned node)
{
    return s->cat[node];
}
struct jobs *sim_jobs(struct sim *s, unsigned node)
{
    return s->jobs[node];
}

uint64_t sim_applied(struct sim *s, unsigned node)
{
    return raft_last_applied(raft_fixture_get(&s->f, node));
}

int sim_leader_of(struct sim *s, unsigned node)
{
    struct ctl_view v;
    ctl_view(s->ctl[node], &v);
    if (v.state == RAFT_LEADER)
        return (int)node;
    /* The fixture's raft ids are 1..n in index order. */
    return v.leader_id >= 1 && v.leader_id <= SIM_NODES ? (int)v.leader_id - 1 : -1;
}

int sim_serving(struct sim *s)
{
    int best = -1;
    uint64_t best_term = 0;
    for (unsigned i = 0; i < SIM_NODES; i++) {
        if (!s->up[i] || !ctl_is_serving(s->ctl[i]))
            continue;
        struct ctl_view v;
        ctl_view(s->ctl[i], &v);
        if (best < 0 || v.term > best_term) {
            best = (int)i;
            best_term = v.term;
        }
    }
    return best;
}

size_t sim_members(struct sim *s, struct sdfs_node *out)
{
    size_t n = 0;
    for (unsigned i = 0; i < SIM_NODES; i++) {
        if (s->up[i])
            out[n++] = (struct sdfs_node){sim_name(i), 0};
        else if (s->f.time - s->down_since[i] < SIM_DETECT_MS)
            out[n++] = (struct sdfs_node){sim_name(i), 1};
    }
    return n;
}

void *sim_world(struct sim *s, const struct sim_service_ops *svc)
{
    for (size_t k = 0; k < s->n_svc; k++)
        if (s->svc[k] == svc)
            return s->world[k];
    return NULL;
}

/* ---- the service network --------------------------------------------------------------- */

static int link_ok(struct sim *s, unsigned from, unsigned to)
{
    return from == to || (s->up[from] && s->up[to] && !s->cut[from][to]);
}

int sim_send(struct sim *s, unsigned from, unsigned to, int type, const void *body, size_t len)
{
    if (len > SIM_MSG_MAX)
        return -1;
    /* Draw the randomness first, so a dropped message costs the same draws. */
    int lost = from != to && sim_chance(s, s->loss_pct);
    uint64_t latency = from == to ? 0 : sim_range(s, 1, 25);
    if (lost || !link_ok(s, from, to))
        return 0;
    struct qmsg *q = malloc(sizeof *q);
    if (!q)
        abort();
    q->at = s->f.time + latency;
    q->seq = ++s->msg_seq;
    q->m.from = from;
    q->m.to = to;
    q->m.type = type;
    q->m.len = len;
    memcpy(q->m.body, body, len);
    if (s->n_q == s->cap_q) {
        s->cap_q = s->cap_q ? 2 * s->cap_q : 64;
        s->q = realloc(s->q, s->cap_q * sizeof *s->q);
        if (!s->q)
            abort();
    }
    size_t at = s->n_q;
    while (at > 0 &&
           (s->q[at - 1]->at > q->at || (s->q[at - 1]->at == q->at && s->q[at - 1]->seq > q->seq)))
        at--;
    memmove(&s->q[at + 1], &s->q[at], (s->n_q - at) * sizeof *s->q);
    s->q[at] = q;
    s->n_q++;
    return 0;
}

static void deliver_due(struct sim *s)
{
    while (s->n_q && s->q[0]->at <= s->f.time && !s->fail) {
        struct qmsg *q = s->q[0];
        memmove(&s->q[0], &s->q[1], (s->n_q - 1) * sizeof *s->q);
        s->n_q--;
        /* A link cut while the message was on its way loses it too. */
        if (link_ok(s, q->m.from, q->m.to)) {
            for (size_t k = 0; k < s->n_svc; k++) {
                const struct sim_service_ops *o = s->svc[k];
                if (q->m.type >= o->type_lo && q->m.type <= o->type_hi && s->st[k][q->m.to])
                    o->recv(s->st[k][q->m.to], &q->m);
            }
        }
        free(q);
    }
}

/* ---- proposals ------------------------------------------------------------------------- */

static void on_prop(void *ud, int status, const uint8_t *result, size_t len)
{
    struct prop *p = ud;
    struct sim *s = p->s;
    if (p->prev)
        p->prev->next = p->next;
    else
        s->props = p->next;
    if (p->next)
        p->next->prev = p->prev;
    void *st = NULL;
    if (!s->closing && s->up[p->node] && s->inc[p->node] == p->inc)
        for (size_t k = 0; k < s->n_svc; k++)
            if (s->svc[k] == p->svc)
                st = s->st[k][p->node];
    p->cb(st, status, result, len, p->arg);
    free(p);
}

int sim_propose(struct sim *s, unsigned node, const struct sim_service_ops *svc, uint32_t type,
                const void *body, size_t len, sim_propose_cb cb, const void *arg, size_t arg_len)
{
    if (!s->up[node])
        return ID_ENOTLEADER;
    struct prop *p = calloc(1, sizeof *p);
    if (!p || arg_len > sizeof p->arg)
        abort();
    p->s = s;
    p->node = node;
    p->inc = s->inc[node];
    p->svc = svc;
    p->cb = cb;
    if (arg_len)
        memcpy(p->arg, arg, arg_len);
    int rc = ctl_propose(s->ctl[node], type, body, len, on_prop, p);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->next = s->props;
    if (s->props)
        s->props->prev = p;
    s->props = p;
    return 0;
}

/* ---- nodes: crash and restart ---------------------------------------------------------- */

static void services_start(struct sim *s, unsigned i)
{
    for (size_t k = 0; k < s->n_svc; k++)
        s->st[k][i] = s->svc[k]->start(s->world[k], i);
    s->serving[i] = 0;
}

static void services_stop(struct sim *s, unsigned i)
{
    for (size_t k = 0; k < s->n_svc; k++) {
        if (s->st[k][i])
            s->svc[k]->stop(s->st[k][i]);
        s->st[k][i] = NULL;
    }
    s->serving[i] = 0;
}

/* The fixture's links follow the schedule's cuts, and a booting node sends
 * nothing. */
static void sync_links(struct sim *s)
{
    for (unsigned i = 0; i < SIM_NODES; i++)
        for (unsigned j = 0; j < SIM_NODES; j++) {
            int want = i != j && (s->cut[i][j] || s->booting[i]);
            if (want == s->fx_cut[i][j])
                continue;
            s->fx_cut[i][j] = want;
            if (want)
                raft_fixture_disconnect(&s->f, i, j);
            else
                raft_fixture_reconnect(&s->f, i, j);
        }
}

static void node_kill(struct sim *s, unsigned i)
{
    if (s->booting[i]) {
        s->booting[i] = 0;
        raft_fixture_kill(&s->f, i);
        sync_links(s);
        return;
    }
    if (!s->up[i])
        return;
    sim_log(s, "crash %s", sim_name(i));
    services_stop(s, i);
    raft_fixture_kill(&s->f, i);
    s->up[i] = 0;
    s->down_since[i] = s->f.time;
}

static void node_start(struct sim *s, unsigned i)
{
    s->up[i] = 1;
    s->inc[i]++;
    services_start(s, i);
}

/* The fixture keeps a revived server's raft memory, as if its disk were
 * replayed, but a restarted process comes back as a follower: it may lead
 * only after winning a new term. A server revived while still the leader of
 * its term (it was down for less than an election timeout) is therefore
 * held mute until it has stepped down; its processes start then. Without
 * this, a new process would lead the old process's term and, for one, write
 * result parts under names the old one used. */
static void node_revive(struct sim *s, unsigned i)
{
    if (s->up[i] || s->booting[i])
        return;
    sim_log(s, "restart %s", sim_name(i));
    raft_fixture_revive(&s->f, i);
    if (raft_state(raft_fixture_get(&s->f, i)) == RAFT_LEADER) {
        s->booting[i] = 1;
        sync_links(s);
        return;
    }
    node_start(s, i);
}

static void boot_tick(struct sim *s)
{
    for (unsigned i = 0; i < SIM_NODES; i++)
        if (s->booting[i] && raft_state(raft_fixture_get(&s->f, i)) != RAFT_LEADER) {
            s->booting[i] = 0;
            sync_links(s);
            node_start(s, i);
        }
}

static void set_cut(struct sim *s, unsigned i, unsigned j, int on)
{
    if (i == j || s->cut[i][j] == on)
        return;
    s->cut[i][j] = on;
    sync_links(s);
}

static void heal_all(struct sim *s)
{
    for (unsigned i = 0; i < SIM_NODES; i++)
        for (unsigned j = 0; j < SIM_NODES; j++) {
            set_cut(s, i, j, 0);
            if (i != j && raft_fixture_saturated(&s->f, i, j))
                raft_fixture_desaturate(&s->f, i, j);
        }
    s->loss_pct = 0;
    for (unsigned i = 0; i < SIM_NODES; i++)
        node_revive(s, i);
}

/* ---- the fault driver ------------------------------------------------------------------ */

static unsigned pick_up(struct sim *s, int not )
{
    unsigned cand[SIM_NODES], n = 0;
    for (unsigned i = 0; i < SIM_NODES; i++)
        if (s->up[i] && (int)i != not )
            cand[n++] = i;
    return n ? cand[sim_rand(s) % n] : (unsigned)sim_rand(s) % SIM_NODES;
}

static void isolate(struct sim *s, unsigned i, int out, int in)
{
    for (unsigned j = 0; j < SIM_NODES; j++) {
        if (out)
            set_cut(s, i, j, 1);
        if (in)
            set_cut(s, j, i, 1);
    }
}

/* Starts one fault of kind k; returns how long it holds. */
static uint64_t fault_start(struct sim *s, int k)
{
    int l = sim_serving(s);
    unsigned victim;
    switch (k) {
    case SIM_CRASH_VOTER: node_kill(s, pick_up(s, l)); return sim_range(s, 300, 4000);
    case SIM_CRASH_LEADER:
        node_kill(s, l >= 0 ? (unsigned)l : pick_up(s, -1));
        return sim_range(s, 200, 4000);
    case SIM_PART_LEADER:
        victim = l >= 0 ? (unsigned)l : pick_up(s, -1);
        sim_log(s, "partition %s from the others", sim_name(victim));
        isolate(s, victim, 1, 1);
        return sim_range(s, 300, 4000);
    case SIM_ONE_WAY: {
        victim = l >= 0 ? (unsigned)l : pick_up(s, -1);
        unsigned how = (unsigned)sim_range(s, 0, 2);
        if (how == 0) {
            sim_log(s, "%s can receive but not send", sim_name(victim));
            isolate(s, victim, 1, 0);
        } else if (how == 1) {
            sim_log(s, "%s can send but not receive", sim_name(victim));
            isolate(s, victim, 0, 1);
        } else {
            for (int n = (int)sim_range(s, 1, 4); n > 0; n--) {
                unsigned a = (unsigned)sim_range(s, 0, SIM_NODES - 1);
                unsigned b = (unsigned)sim_range(s, 0, SIM_NODES - 1);
                sim_log(s, "link %s -> %s cut", sim_name(a), sim_name(b));
                set_cut(s, a, b, 1);
            }
        }
        return sim_range(s, 300, 3000);
    }
    case SIM_LOSS:
        s->loss_pct = (unsigned)sim_range(s, 5, 35);
        sim_log(s, "%u%% loss", s->loss_pct);
        return sim_range(s, 500, 4000);
    case SIM_MULTI: {
        unsigned how = (unsigned)sim_range(s, 0, 2);
        if (how == 0) {
            unsigned a = pick_up(s, -1);
            node_kill(s, a);
            node_kill(s, pick_up(s, (int)a));
        } else if (how == 1) {
            victim = l >= 0 ? (unsigned)l : pick_up(s, -1);
            node_kill(s, victim);
            node_kill(s, pick_up(s, (int)victim));
        } else {
            /* A 2|3 split: two random nodes on one side. */
            unsigned a = (unsigned)sim_range(s, 0, SIM_NODES - 1),
                     b = (a + 1 + (unsigned)sim_range(s, 0, SIM_NODES - 2)) % SIM_NODES;
            sim_log(s, "split {%s,%s} from the rest", sim_name(a), sim_name(b));
            for (unsigned i = 0; i < SIM_NODES; i++)
                for (unsigned j = 0; j < SIM_NODES; j++)
                    if ((i == a || i == b) != (j == a || j == b))
                        set_cut(s, i, j, 1);
        }
        return sim_range(s, 300, 4000);
    }
    case SIM_CHURN:
        /* Just long enough for the others to elect someone else. */
        victim = l >= 0 ? (unsigned)l : pick_up(s, -1);
        sim_log(s, "depose %s", sim_name(victim));
        isolate(s, victim, 1, 1);
        return sim_range(s, 250, 700);
    }
    return 0;
}

static void fault_tick(struct sim *s)
{
    uint64_t now = s->f.time;
    if (s->in_fault && now >= s->heal_at) {
        sim_log(s, "heal");
        heal_all(s);
        s->in_fault = 0;
        s->next_round = now +
                        (s->kind == SIM_CHURN ? sim_range(s, 100, 500) : sim_range(s, 200, 1500));
    }
    if (!s->in_fault && now >= s->next_round && now < s->cfg.fault_ms) {
        s->kind = s->cfg.fault == SIM_MIXED ? (int)sim_range(s, 0, SIM_MIXED - 1) : s->cfg.fault;
        s->heal_at = now + fault_start(s, s->kind);
        s->in_fault = 1;
        s->rounds++;
    }
    /* libraft draws a new random election timeout each time it resets its
     * timer; the fixture hands out a fixed one per server unless told. Fixed
     * ones can keep splitting the vote between the same candidates for ever
     * (a livelock real servers do not have), so draw afresh every tick. */
    for (unsigned i = 0; i < SIM_NODES; i++)
        raft_fixture_set_randomized_election_timeout(&s->f, i, (unsigned)sim_range(s, 200, 400));
    /* Loss also hits raft: each 10 ms slot saturates a link with that chance. */
    for (unsigned i = 0; i < SIM_NODES; i++)
        for (unsigned j = 0; j < SIM_NODES; j++) {
            if (i == j)
                continue;
            int drop = s->loss_pct && sim_chance(s, s->loss_pct);
            if (drop && !raft_fixture_saturated(&s->f, i, j))
                raft_fixture_saturate(&s->f, i, j);
            else if (!drop && raft_fixture_saturated(&s->f, i, j))
                raft_fixture_desaturate(&s->f, i, j);
        }
}

/* ---- checks ---------------------------------------------------------------------------- */

/* At most one leader per term (the fixture checks it too, and aborts). */
static void check_terms(struct sim *s)
{
    for (unsigned i = 0; i < SIM_NODES; i++) {
        struct ctl_view v;
        ctl_view(s->ctl[i], &v);
        if (v.state != RAFT_LEADER || v.term >= SIM_MAX_TERMS)
            continue;
        unsigned *t = &s->term_leader[v.term];
        if (*t && *t != i + 1)
            sim_fail(s, "two leaders in term %llu: %s and %s", (unsigned long long)v.term,
                     sim_name(*t - 1), sim_name(i));
        *t = i + 1;
    }
    int l = sim_serving(s);
    if (l >= 0 && l != s->last_leader) {
        s->leader_changes++;
        s->last_leader = l;
    }
}

static void check_all(struct sim *s)
{
    check_terms(s);
    for (size_t k = 0; k < s->n_svc && !s->fail; k++)
        if (s->svc[k]->check)
            s->svc[k]->check(s->world[k]);
}

/* Tells services about serving changes, then ticks them. */
static void services_tick(struct sim *s)
{
    for (unsigned i = 0; i < SIM_NODES; i++) {
        if (!s->up[i])
            continue;
        int serving = ctl_is_serving(s->ctl[i]);
        struct ctl_view v;
        ctl_view(s->ctl[i], &v);
        if (s->serving[i] && (!serving || v.term != s->lead_term[i])) {
            sim_log(s, "%s stops serving (term %llu)", sim_name(i),
                    (unsigned long long)s->lead_term[i]);
            for (size_t k = 0; k < s->n_svc; k++)
                if (s->svc[k]->unlead)
                    s->svc[k]->unlead(s->st[k][i]);
            s->serving[i] = 0;
        }
        if (!s->serving[i] && serving) {
            sim_log(s, "%s serves term %llu", sim_name(i), (unsigned long long)v.term);
            s->serving[i] = 1;
            s->lead_term[i] = v.term;
            for (size_t k = 0; k < s->n_svc; k++)
                if (s->svc[k]->lead)
                    s->svc[k]->lead(s->st[k][i], v.term);
        }
    }
    for (unsigned i = 0; i < SIM_NODES; i++)
        for (size_t k = 0; k < s->n_svc && s->up[i]; k++)
            if (s->svc[k]->tick)
                s->svc[k]->tick(s->st[k][i], s->f.time);
}

/* ---- the run --------------------------------------------------------------------------- */

static uint64_t fx_clock(void *ud)
{
    return ((struct raft_fixture *)ud)->time;
}

static void fx_hook(struct raft_fixture *f, struct raft_fixture_event *e)
{
    (void)e;
    for (unsigned i = 0; i < SIM_NODES; i++)
        if (raft_fixture_alive(f, i))
            ctl_poll(g_sim->ctl[i]);
}

static int sim_setup(struct sim *s)
{
    if (raft_fixture_init(&s->f) != 0)
        return -1;
    for (unsigned i = 0; i < SIM_NODES; i++) {
        struct ctl_config cfg = {.name = sim_name(i),
                                 .clock_ms = fx_clock,
                                 .clock_ud = &s->f,
                                 /* No snapshots: libraft 0.22.1's fixture copies a
                                  * compacted leader log past its end when it checks
                                  * that leaders only append (ASan: heap overflow in
                                  * raft_fixture_step), and a run stays far below
                                  * this many entries. */
                                 .snapshot_threshold = 1u << 20,
                                 .seq_base = 1000000ull * (i + 1)};
        if (ctl_create_detached(&cfg, &s->ctl[i]) < 0)
            return -1;
        s->cat[i] = catalog_create();
        s->jobs[i] = jobs_create();
        if (!s->cat[i] || !s->jobs[i] || ctl_register(s->ctl[i], &catalog_sm_ops, s->cat[i]) < 0 ||
            ctl_register(s->ctl[i], &jobs_sm_ops, s->jobs[i]) < 0)
            return -1;
        if (raft_fixture_grow(&s->f, ctl_fsm(s->ctl[i])) != 0)
            return -1;
    }
    for (unsigned i = 0; i < SIM_NODES; i++) {
        struct raft *r = raft_fixture_get(&s->f, i);
        ctl_attach(s->ctl[i], r);
        r->tracer = NULL;
        raft_fixture_set_randomized_election_timeout(&s->f, i, (unsigned)sim_range(s, 200, 400));
        raft_fixture_set_network_latency(&s->f, i, (unsigned)sim_range(s, 2, 15));
        raft_fixture_set_disk_latency(&s->f, i, (unsigned)sim_range(s, 1, 10));
    }
    struct raft_configuration conf;
    if (raft_fixture_configuration(&s->f, SIM_NODES, &conf) != 0)
        return -1;
    int rc = raft_fixture_bootstrap(&s->f, &conf);
    raft_configuration_close(&conf);
    if (rc != 0 || raft_fixture_start(&s->f) != 0)
        return -1;
    raft_fixture_hook(&s->f, fx_hook);
    for (unsigned i = 0; i < SIM_NODES; i++)
        s->up[i] = 1;
    return 0;
}

static void sim_teardown(struct sim *s)
{
    s->closing = 1;
    for (unsigned i = 0; i < SIM_NODES; i++)
        services_stop(s, i);
    raft_fixture_close(&s->f);
    for (unsigned i = 0; i < SIM_NODES; i++)
        ctl_destroy_detached(s->ctl[i]);
    /* Proposals whose callback never ran (a killed node's). */
    while (s->props) {
        struct prop *p = s->props;
        s->props = p->next;
        p->cb(NULL, ID_ESHUTDOWN, NULL, 0, p->arg);
        free(p);
    }
    for (unsigned i = 0; i < SIM_NODES; i++) {
        catalog_destroy(s->cat[i]);
        jobs_destroy(s->jobs[i]);
    }
    for (size_t k = 0; k < s->n_svc; k++)
        s->svc[k]->world_free(s->world[k]);
    for (size_t i = 0; i < s->n_q; i++)
        free(s->q[i]);
    free(s->q);
}

/* One step of everything: a fixture event, then what is due. */
static void sim_step(struct sim *s)
{
    raft_fixture_step(&s->f);
    deliver_due(s);
    while (s->next_tick <= s->f.time && !s->fail) {
        s->next_tick += SIM_TICK_MS;
        boot_tick(s);
        fault_tick(s);
        services_tick(s);
    }
    if (s->f.time >= s->next_check && !s->fail) {
        s->next_check = s->f.time + SIM_CHECK_MS;
        check_all(s);
    }
}

static int settled(struct sim *s)
{
    int l = sim_serving(s);
    if (l < 0)
        return 0;
    uint64_t a = sim_applied(s, (unsigned)l);
    for (unsigned i = 0; i < SIM_NODES; i++)
        if (sim_leader_of(s, i) != l || sim_applied(s, i) != a ||
            raft_commit_index(raft_fixture_get(&s->f, i)) != a)
            return 0;
    for (size_t k = 0; k < s->n_svc; k++)
        if (s->svc[k]->settled && !s->svc[k]->settled(s->world[k]))
            return 0;
    return 1;
}

static void final_checks(struct sim *s)
{
    /* One coordinator, and every replica the same state. */
    int l = sim_serving(s);
    for (unsigned i = 0; i < SIM_NODES; i++)
        if (i != (unsigned)l && ctl_is_serving(s->ctl[i]))
            sim_fail(s, "two nodes serve at the end: %s and %s", sim_name((unsigned)l),
                     sim_name(i));
    char d0[65], d[65];
    ctl_digest_hex(s->ctl[0], d0);
    for (unsigned i = 1; i < SIM_NODES; i++) {
        ctl_digest_hex(s->ctl[i], d);
        if (strcmp(d, d0) != 0)
            sim_fail(s, "replicas differ at the same index: %s and %s", sim_name(0), sim_name(i));
    }
    for (size_t k = 0; k < s->n_svc && !s->fail; k++)
        if (s->svc[k]->final_check)
            s->svc[k]->final_check(s->world[k]);
}

int sim_run(const struct sim_config *cfg, const struct sim_service_ops *const *svcs, size_t n_svcs,
            const char **msg)
{
    struct sim *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    g_sim = s;
    s->cfg = *cfg;
    if (!s->cfg.fault_ms)
        s->cfg.fault_ms = 12000;
    if (!s->cfg.settle_ms)
        s->cfg.settle_ms = 40000;
    if (!s->cfg.grace_ms)
        s->cfg.grace_ms = 6000;
    s->rng = cfg->seed * 0x2545f4914f6cdd1dull + 1;
    if (s->cfg.fault < 0)
        s->cfg.fault = (int)(cfg->seed % SIM_FAULT_KINDS);
    s->last_leader = -1;
    if (sim_setup(s) < 0) {
        sim_fail(s, "cannot set up the fixture");
    } else {
        for (size_t k = 0; k < n_svcs && k < SIM_MAX_SVCS; k++) {
            s->svc[k] = svcs[k];
            s->world[k] = svcs[k]->world_new(s);
        }
        s->n_svc = n_svcs;
        for (unsigned i = 0; i < SIM_NODES; i++)
            services_start(s, i);
        /* Faults start after a second or so, when a first leader serves (the
         * first election takes 200-400 ms), so every schedule is about
         * failures of a working cluster rather than of its bootstrap. */
        s->next_round = 1000 + sim_range(s, 0, 500);
        while (!s->fail && s->f.time < s->cfg.fault_ms)
            sim_step(s);
        if (!s->fail) {
            heal_all(s);
            s->in_fault = 0;
            uint64_t until = s->f.time + s->cfg.settle_ms;
            while (!s->fail && !settled(s) && s->f.time < until)
                sim_step(s);
            if (!s->fail && !settled(s)) {
                char what[400] = "";
                for (size_t k = 0; k < s->n_svc; k++)
                    if (s->svc[k]->settled && !s->svc[k]->settled(s->world[k]))
                        snprintf(what + strlen(what), sizeof what - strlen(what), " %s%s%s",
                                 s->svc[k]->name, s->svc[k]->waiting ? ": " : "",
                                 s->svc[k]->waiting ? s->svc[k]->waiting(s->world[k]) : "");
                for (unsigned i = 0; i < SIM_NODES; i++) {
                    struct ctl_view v;
                    ctl_view(s->ctl[i], &v);
                    sim_log(s, "%s: %s term %llu leader %llu commit %llu applied %llu last %llu%s",
                            sim_name(i), ctl_state_name(v.state), (unsigned long long)v.term,
                            (unsigned long long)v.leader_id, (unsigned long long)v.commit_index,
                            (unsigned long long)v.applied_index, (unsigned long long)v.last_index,
                            v.serving ? " serving" : "");
                }
                sim_fail(s, "did not settle within %llu ms after healing (leader %d;%s)",
                         (unsigned long long)s->cfg.settle_ms, sim_serving(s),
                         what[0] ? what : " raft");
            }
            if (!s->fail) {
                check_all(s);
                final_checks(s);
            }
        }
        sim_log(s, "end: %u fault rounds, %u leader changes, %llu log entries", s->rounds,
                s->leader_changes, (unsigned long long)sim_applied(s, 0));
    }
    static char out[512];
    snprintf(out, sizeof out, "%s", s->failmsg);
    int fail = s->fail;
    sim_teardown(s);
    free(s);
    g_sim = NULL;
    *msg = out;
    return fail ? -1 : 0;
}
