/* swim.c — the SWIM core of swim.h: the member table, probing with ping-req and
 * nacks, Lifeguard suspicion (timeouts that shrink with confirmations) and local
 * health, piggybacked gossip within a byte budget, join, leave and rejoin.
 *
 * Everything here is a function of (config, seed, inputs): no clock, no I/O.
 */
#include "member/swim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWIM_MAX_FORWARDS 64      /* ping-reqs we help with at once */
#define SWIM_MAX_PROBES 16        /* the round-robin probe plus checks of suspects */
#define SWIM_MAX_CONFIRM 8        /* distinct suspecters remembered per suspicion */
#define SWIM_DEAD_KEEP_MS 300000u /* failed/left members stay listed this long */
#define SWIM_JOIN_RETRY_MS 500u
#define SWIM_DEAD_GOSSIP_MS 2000u /* how often a failed member is invited back */
#define SWIM_HEARD_MULT 2         /* a suspicion we only heard of: 2x the longest */

/* Our part in a suspicion. Only members with evidence of their own (a failed
 * probe) run the short, confirmation-driven timer; the others keep a long one
 * in case everybody with evidence died too. */
enum swim_sus_role { SUS_HEARD = 0, SUS_CONFIRMER = 1, SUS_ORIGIN = 2 };

struct swim_node {
    struct swim_record rec;
    uint64_t since;        /* now when it entered its state */
    unsigned gossip_left;  /* piggyback transmissions still to do */
    /* suspicion, valid while rec.state == MEMBER_SUSPECT */
    enum swim_sus_role role;
    uint64_t sus_start;
    uint64_t sus_deadline;
    uint64_t next_notice;  /* origin: when to tell the suspect again */
    unsigned n_conf;
    uint32_t conf[SWIM_MAX_CONFIRM]; /* name hashes of the other suspecters */
    char origin[MEMBER_NAME_MAX];    /* who raised it: our confirmation goes there */
};

struct swim_probe {
    int used;
    int check; /* started because we heard of a suspicion, not round-robin */
    char target[MEMBER_NAME_MAX];
    uint64_t target_inc;
    uint64_t seq;
    uint64_t indirect_at, end_at;
    int indirect_sent;
    unsigned helpers, nacks;
};

struct swim_forward {
    int used;
    int answered;        /* a nack went back already */
    uint64_t seq;        /* our ping toward the target */
    uint64_t origin_seq; /* the requester's probe id */
    char origin[MEMBER_ADDR_MAX];
    uint64_t nack_at, deadline;
};

struct swim {
    struct swim_config cfg;
    struct swim_env env;
    char name[MEMBER_NAME_MAX];
    char addr[MEMBER_ADDR_MAX];
    char **join;
    size_t n_join;
    struct swim_record self;
    unsigned self_gossip_left;
    uint32_t self_hash;
    int left;
    int synced; /* a member's table arrived (or we are the first member) */
    uint64_t rng;
    uint64_t next_seq;

    struct swim_node *nodes;
    size_t n_nodes, cap_nodes;

    char (*order)[MEMBER_NAME_MAX]; /* this round's shuffled probe order */
    size_t n_order, pos_order, cap_order;
    uint64_t next_probe_at;
    struct swim_probe probes[SWIM_MAX_PROBES];
    struct swim_forward fwd[SWIM_MAX_FORWARDS];

    uint64_t next_join_at;
    uint64_t next_dead_gossip_at;
    uint64_t last_tick;
    unsigned health;
    struct swim_stats stats;
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t rng_next(struct swim *s)
{
    /* splitmix64: tiny, good enough for shuffles, deterministic for tests */
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t name_hash(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 16777619u;
    return h;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static int is_live(enum member_state st) { return st == MEMBER_ALIVE || st == MEMBER_SUSPECT; }

/* A duration stretched by our local health: a node that misses its own
 * deadlines gives the others more time before it accuses them. */
static uint64_t scaled(const struct swim *s, uint64_t ms) { return ms * (1u + s->health); }

static void health_add(struct swim *s, int delta)
{
    int h = (int)s->health + delta;
    if (h < 0)
        h = 0;
    if (h > (int)s->cfg.health_max)
        h = (int)s->cfg.health_max;
    s->health = (unsigned)h;
}

static unsigned gossip_budget(const struct swim *s)
{
    /* lambda * log(n): enough retransmissions to reach everybody w.h.p. */
    return s->cfg.gossip_lambda * (unsigned)ceil(log2((double)s->n_nodes + 2.0));
}

static struct swim_node *find(struct swim *s, const char *name)
{
    for (size_t i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i].rec.name, name) == 0)
            return &s->nodes[i];
    return NULL;
}

static size_t count_live(const struct swim *s)
{
    size_t live = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        live += is_live(s->nodes[i].rec.state);
    return live;
}

static void to_view(const struct swim_record *r, uint64_t since, struct member_view *v)
{
    copy_str(v->name, sizeof v->name, r->name);
    copy_str(v->addr, sizeof v->addr, r->addr);
    v->incarnation = r->incarnation;
    v->state = r->state;
    v->since_ms = since;
}

static void emit(struct swim *s, const struct swim_node *n, enum member_state old_state,
                 const char *by)
{
    if (!s->env.event)
        return;
    struct member_view v;
    to_view(&n->rec, n->since, &v);
    s->env.event(s->env.ud, &v, old_state, n->rec.state, by ? by : "");
}

size_t swim_record_wire_bound(const struct swim_record *r)
{
    /* 3 strings (tag + 2-byte length), two 10-byte varints... see swim.h */
    return strlen(r->name) + strlen(r->addr) + strlen(r->suspecter) + 35;
}

size_t swim_packet_wire_bound(const struct swim_packet *p)
{
    size_t b = strlen(p->from_name) + strlen(p->from_addr) + strlen(p->target_addr) +
               strlen(p->origin_addr) + 40;
    for (size_t i = 0; i < p->n_updates && i < SWIM_MAX_UPDATES; i++)
        b += swim_record_wire_bound(&p->updates[i]);
    return b;
}

/* Appends r if it fits the packet's count and byte budgets. */
static int packet_add(struct swim_packet *p, size_t *bytes, const struct swim_record *r)
{
    size_t rb = swim_record_wire_bound(r);
    if (p->n_updates >= SWIM_MAX_UPDATES || *bytes + rb > SWIM_MAX_PACKET_BYTES)
        return 0;
    p->updates[p->n_updates++] = *r;
    *bytes += rb;
    return 1;
}

static void packet_init(struct swim *s, struct swim_packet *p, enum swim_kind kind, uint64_t seq)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    copy_str(p->from_name, sizeof p->from_name, s->name);
    p->from_incarnation = s->self.incarnation;
    copy_str(p->from_addr, sizeof p->from_addr, s->addr);
    p->seq = seq;
}

/* Piggybacks the updates most in need of spreading (most budget left), as
 * many as fit the datagram. */
static void piggyback(struct swim *s, struct swim_packet *p)
{
    size_t bytes = swim_packet_wire_bound(p);
    if (s->self_gossip_left && packet_add(p, &bytes, &s->self))
        s->self_gossip_left--;
    while (p->n_updates < SWIM_MAX_UPDATES) {
        struct swim_node *best = NULL;
        for (size_t i = 0; i < s->n_nodes; i++) {
            struct swim_node *n = &s->nodes[i];
            if (!n->gossip_left || (best && n->gossip_left <= best->gossip_left))
                continue;
            int taken = 0;
            for (size_t k = 0; k < p->n_updates && !taken; k++)
                taken = strcmp(p->updates[k].name, n->rec.name) == 0;
            if (!taken)
                best = n;
        }
        if (!best || !packet_add(p, &bytes, &best->rec))
            break;
        best->gossip_left--;
    }
}

static void send_pkt(struct swim *s, const char *addr, struct swim_packet *p, int with_gossip)
{
    if (with_gossip)
        piggyback(s, p);
    s->stats.packets_sent++;
    s->env.send(s->env.ud, addr, p);
}

static void send_record(struct swim *s, const char *addr, const struct swim_record *rec)
{
    struct swim_packet p;
    packet_init(s, &p, SWIM_NOTICE, 0);
    p.updates[0] = *rec;
    p.n_updates = 1;
    send_pkt(s, addr, &p, 0);
}

/* Sends `rec` to every live member but its subject: joins, suspicions,
 * failures, leaves and refutations, which everyone should learn within a round
 * trip rather than a few gossip periods. O(n) datagrams, but only per event. */
static void broadcast_record(struct swim *s, const struct swim_record *rec)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct swim_node *n = &s->nodes[i];
        if (is_live(n->rec.state) && strcmp(n->rec.name, rec->name) != 0)
            send_record(s, n->rec.addr, rec);
    }
}

/* May move s->nodes: callers must not hold node pointers across it. */
static struct swim_node *add_node(struct swim *s, const struct swim_record *r, uint64_t now)
{
    if (s->n_nodes == s->cap_nodes) {
        if (s->cap_nodes >= SWIM_MAX_MEMBERS)
            return NULL;
        size_t cap = s->cap_nodes ? s->cap_nodes * 2 : 16;
        struct swim_node *nn = realloc(s->nodes, cap * sizeof *nn);
        if (!nn)
            return NULL;
        s->nodes = nn;
        s->cap_nodes = cap;
    }
    struct swim_node *n = &s->nodes[s->n_nodes++];
    memset(n, 0, sizeof *n);
    n->rec = *r;
    n->since = now;
    n->gossip_left = gossip_budget(s);
    return n;
}

static void set_state(struct swim *s, struct swim_node *n, enum member_state st, uint64_t now,
                      const char *by)
{
    enum member_state old = n->rec.state;
    n->rec.state = st;
    n->since = now;
    n->gossip_left = gossip_budget(s);
    if (st != MEMBER_SUSPECT)
        n->role = SUS_HEARD;
    if (st == MEMBER_ALIVE || st == MEMBER_LEFT)
        n->rec.suspecter[0] = '\0';
    if (old != st)
        emit(s, n, old, by);
}

/* ---- suspicion (Lifeguard) ----------------------------------------------- */

/* Deadline of n's suspicion: min * (max/min) shrinking logarithmically with the
 * number of independent suspecters, as in Lifeguard:
 *   t(C) = max - (max - min) * log(C + 1) / log(K + 1), t >= min,
 * K being the confirmations expected (fewer in a small group). */
static uint64_t suspicion_deadline(const struct swim *s, const struct swim_node *n)
{
    double min = s->cfg.suspect_timeout_ms;
    double max = min * s->cfg.suspect_max_mult;
    double t;
    size_t others = count_live(s); /* includes the suspect */
    unsigned k = s->cfg.suspect_confirmations;
    if (others < 1 + (size_t)k)
        k = others ? (unsigned)(others - 1) : 0;
    if (n->role == SUS_HEARD)
        t = max * SWIM_HEARD_MULT;
    else if (k == 0 || n->n_conf >= k)
        t = min;
    else
        t = max - (max - min) * log((double)n->n_conf + 1.0) / log((double)k + 1.0);
    if (t < min)
        t = min;
    /* A confirmer's timer is the backup for a dead originator: a probe interval
     * of grace lets a live originator's verdict arrive first, so one failure is
     * broadcast once rather than by every confirmer. */
    if (n->role == SUS_CONFIRMER)
        t += s->cfg.probe_interval_ms;
    return n->sus_start + scaled(s, (uint64_t)t);
}

/* Counts `who` as a suspecter of n; returns 1 if it is new. */
static int add_confirmation(struct swim *s, struct swim_node *n, const char *who)
{
    if (!who[0] || strcmp(who, n->rec.name) == 0)
        return 0;
    uint32_t h = name_hash(who);
    if (h == s->self_hash)
        return 0;
    for (unsigned i = 0; i < n->n_conf; i++)
        if (n->conf[i] == h)
            return 0;
    if (n->n_conf == SWIM_MAX_CONFIRM)
        return 0;
    n->conf[n->n_conf++] = h;
    return 1;
}

static void probe_begin(struct swim *s, struct swim_node *t, uint64_t now, int check);

static struct swim_probe *probe_of(struct swim *s, const char *name)
{
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++)
        if (s->probes[i].used && strcmp(s->probes[i].target, name) == 0)
            return &s->probes[i];
    return NULL;
}

/* Our own probe of n failed while we held it alive: raise the suspicion. */
static void suspect_origin(struct swim *s, struct swim_node *n, uint64_t now)
{
    s->stats.suspicions++;
    copy_str(n->rec.suspecter, sizeof n->rec.suspecter, s->name);
    copy_str(n->origin, sizeof n->origin, s->name);
    n->n_conf = 0;
    set_state(s, n, MEMBER_SUSPECT, now, s->name);
    n->role = SUS_ORIGIN;
    n->sus_start = now;
    n->sus_deadline = suspicion_deadline(s, n);
    n->next_notice = now; /* tells the suspect at the next tick, so it can refute */
    broadcast_record(s, &n->rec); /* ...and the others, so they can check */
}

/* Our own probe of a member someone else suspects failed too: confirm it to
 * the member that raised the suspicion (and gossip it). */
static void suspect_confirm(struct swim *s, struct swim_node *n, uint64_t now)
{
    (void)now;
    if (n->role != SUS_HEARD)
        return;
    s->stats.confirmations++;
    n->role = SUS_CONFIRMER;
    n->sus_deadline = suspicion_deadline(s, n);
    copy_str(n->rec.suspecter, sizeof n->rec.suspecter, s->name);
    n->gossip_left = gossip_budget(s);
    struct swim_node *o = find(s, n->origin);
    if (o && o != n && is_live(o->rec.state))
        send_record(s, o->rec.addr, &n->rec);
}

/* We heard of a suspicion we did not raise: hold it, and check for ourselves. */
static void suspect_heard(struct swim *s, struct swim_node *n, const char *by, uint64_t now)
{
    n->n_conf = 0;
    add_confirmation(s, n, by);
    copy_str(n->origin, sizeof n->origin, by);
    copy_str(n->rec.suspecter, sizeof n->rec.suspecter, by);
    set_state(s, n, MEMBER_SUSPECT, now, by);
    n->role = SUS_HEARD;
    n->sus_start = now;
    n->sus_deadline = suspicion_deadline(s, n);
    if (!probe_of(s, n->rec.name)) {
        s->stats.checks++;
        probe_begin(s, n, now, 1);
    }
}

static void declare_failed(struct swim *s, struct swim_node *n, uint64_t now)
{
    s->stats.failures_declared++;
    copy_str(n->rec.suspecter, sizeof n->rec.suspecter, s->name);
    set_state(s, n, MEMBER_FAILED, now, s->name);
    broadcast_record(s, &n->rec);
}

/* ---- applying what we hear ----------------------------------------------- */

static void rejoin(struct swim *s, uint64_t now);

static void refute(struct swim *s, uint32_t heard_heartbeat)
{
    if (heard_heartbeat >= s->self.heartbeat)
        s->self.heartbeat = heard_heartbeat + 1;
    s->stats.refutations++;
    health_add(s, 1); /* being suspected hints that we are the slow one */
    s->self_gossip_left = gossip_budget(s);
    broadcast_record(s, &s->self);
}

/* A newer incarnation of n's name: the old identity is gone for good. */
static void adopt_identity(struct swim *s, struct swim_node *n, const struct swim_record *r,
                           uint64_t now)
{
    if (is_live(n->rec.state)) {
        copy_str(n->rec.suspecter, sizeof n->rec.suspecter, r->name);
        set_state(s, n, MEMBER_FAILED, now, "restart");
    }
    n->rec = *r;
    n->since = now;
    n->role = SUS_HEARD;
    n->n_conf = 0;
    if (r->state == MEMBER_FAILED || r->state == MEMBER_LEFT)
        return; /* a newer identity we never saw alive: nothing to report */
    n->rec.state = MEMBER_ALIVE;
    n->rec.suspecter[0] = '\0';
    n->gossip_left = gossip_budget(s);
    s->stats.updates_applied++;
    emit(s, n, MEMBER_ALIVE, "");
}

/* Applies one record heard from `from` (a member name). `trusted`: the news comes
 * from a member we consider live (or we know no live member at all); only
 * trusted news can make us rejoin, or a node returning from isolation would
 * talk the healthy majority into rejoining. Returns 1 if the sender holds a
 * stale suspicion of us (the caller answers it directly). */
static int apply_record(struct swim *s, const struct swim_record *r, uint64_t now, int trusted,
                        const char *from)
{
    if (!r->name[0] || !r->addr[0] || r->state > MEMBER_LEFT)
        return 0;
    if (strcmp(r->name, s->name) == 0) {
        if (r->incarnation != s->self.incarnation || s->left)
            return 0; /* an older (or someone else's) idea of our name */
        if (r->state == MEMBER_SUSPECT) {
            if (r->heartbeat >= s->self.heartbeat) {
                refute(s, r->heartbeat);
                return 0;
            }
            return 1;
        }
        if (r->state == MEMBER_FAILED && trusted)
            rejoin(s, now);
        return 0;
    }
    const char *by = r->suspecter[0] ? r->suspecter : from;
    struct swim_node *n = find(s, r->name);
    if (!n) {
        if (r->state == MEMBER_FAILED || r->state == MEMBER_LEFT)
            return 0; /* news about a member we never knew: nothing to update */
        n = add_node(s, r, now);
        if (!n)
            return 0;
        n->rec.state = MEMBER_ALIVE;
        n->rec.suspecter[0] = '\0';
        s->stats.updates_applied++;
        emit(s, n, MEMBER_ALIVE, "");
        if (r->state == MEMBER_ALIVE)
            return 0;
        /* a suspect newcomer: go on and hold the suspicion too */
    } else if (r->incarnation < n->rec.incarnation) {
        return 0; /* stale identity */
    } else if (r->incarnation > n->rec.incarnation) {
        adopt_identity(s, n, r, now);
        if (r->state != MEMBER_SUSPECT)
            return 0;
    }
    enum member_state cur = n->rec.state;
    if (cur == MEMBER_FAILED || cur == MEMBER_LEFT)
        return 0; /* terminal for this identity */
    switch (r->state) {
    case MEMBER_ALIVE:
        if (r->heartbeat <= n->rec.heartbeat)
            return 0;
        s->stats.updates_applied++;
        n->rec.heartbeat = r->heartbeat;
        copy_str(n->rec.addr, sizeof n->rec.addr, r->addr);
        if (cur == MEMBER_SUSPECT) {
            /* Refuted. A check still running belongs to the old suspicion; if
             * it failed late it would start a new one for nothing. */
            struct swim_probe *pr = probe_of(s, n->rec.name);
            if (pr && pr->check)
                pr->used = 0;
            set_state(s, n, MEMBER_ALIVE, now, r->name);
        } else
            n->gossip_left = gossip_budget(s);
        return 0;
    case MEMBER_SUSPECT:
        if (r->heartbeat < n->rec.heartbeat)
            return 0;
        if (cur == MEMBER_ALIVE || r->heartbeat > n->rec.heartbeat) {
            s->stats.updates_applied++;
            n->rec.heartbeat = r->heartbeat;
            suspect_heard(s, n, by, now);
        } else if (add_confirmation(s, n, by)) {
            /* Another independent suspecter: shorter timeout, and spread it. */
            s->stats.updates_applied++;
            n->sus_deadline = suspicion_deadline(s, n);
            copy_str(n->rec.suspecter, sizeof n->rec.suspecter, by);
            n->gossip_left = gossip_budget(s);
        }
        return 0;
    case MEMBER_FAILED:
    case MEMBER_LEFT:
        s->stats.updates_applied++;
        n->rec.heartbeat = r->heartbeat > n->rec.heartbeat ? r->heartbeat : n->rec.heartbeat;
        copy_str(n->rec.suspecter, sizeof n->rec.suspecter, r->suspecter);
        set_state(s, n, r->state, now, by);
        return 0;
    }
    return 0;
}

static void apply_updates(struct swim *s, const struct swim_packet *p, uint64_t now)
{
    const struct swim_node *from = find(s, p->from_name);
    int trusted = !from || is_live(from->rec.state) || from->rec.incarnation < p->from_incarnation ||
                  count_live(s) == 0;
    int stale_about_us = 0;
    for (size_t i = 0; i < p->n_updates && i < SWIM_MAX_UPDATES; i++)
        stale_about_us |= apply_record(s, &p->updates[i], now, trusted, p->from_name);
    /* The sender still suspects an older heartbeat of ours: our refutation did
     * not reach it. Tell it directly rather than wait for gossip. */
    if (stale_about_us && p->from_addr[0] && !s->left)
        send_record(s, p->from_addr, &s->self);
}

/* The sender of any packet is evidently alive: a member whose join notice we
 * missed is learned from its first packet. */
static void learn_sender(struct swim *s, const struct swim_packet *p, uint64_t now)
{
    if (!p->from_addr[0] || !p->from_incarnation)
        return;
    const struct swim_node *n = find(s, p->from_name);
    if (n && n->rec.incarnation >= p->from_incarnation)
        return;
    struct swim_record r;
    memset(&r, 0, sizeof r);
    copy_str(r.name, sizeof r.name, p->from_name);
    copy_str(r.addr, sizeof r.addr, p->from_addr);
    r.incarnation = p->from_incarnation;
    r.state = MEMBER_ALIVE;
    apply_record(s, &r, now, 1, p->from_name);
}

/* Sends our live members to addr, in as many datagrams as they need. */
static void send_sync(struct swim *s, const char *addr)
{
    struct swim_packet p;
    size_t bytes;
    packet_init(s, &p, SWIM_SYNC, 0);
    bytes = swim_packet_wire_bound(&p);
    packet_add(&p, &bytes, &s->self);
    for (size_t i = 0; i < s->n_nodes; i++) {
        const struct swim_record *r = &s->nodes[i].rec;
        if (!is_live(r->state))
            continue;
        if (!packet_add(&p, &bytes, r)) {
            send_pkt(s, addr, &p, 0);
            packet_init(s, &p, SWIM_SYNC, 0);
            bytes = swim_packet_wire_bound(&p);
            packet_add(&p, &bytes, r);
        }
    }
    send_pkt(s, addr, &p, 0);
}

/* ---- probing ------------------------------------------------------------- */

static void build_order(struct swim *s)
{
    s->n_order = s->pos_order = 0;
    if (s->cap_order < s->n_nodes) {
        void *o = realloc(s->order, s->n_nodes * sizeof *s->order);
        if (!o)
            return;
        s->order = o;
        s->cap_order = s->n_nodes;
    }
    for (size_t i = 0; i < s->n_nodes; i++)
        if (is_live(s->nodes[i].rec.state))
            copy_str(s->order[s->n_order++], MEMBER_NAME_MAX, s->nodes[i].rec.name);
    for (size_t i = s->n_order; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rng_next(s) % i);
        char t[MEMBER_NAME_MAX];
        memcpy(t, s->order[i - 1], sizeof t);
        memcpy(s->order[i - 1], s->order[j], sizeof t);
        memcpy(s->order[j], t, sizeof t);
    }
}

/* The next live member of the shuffled round-robin; a new shuffle per round
 * bounds the time until any member is probed to two rounds. */
static struct swim_node *next_target(struct swim *s)
{
    for (int pass = 0; pass < 2; pass++) {
        while (s->pos_order < s->n_order) {
            struct swim_node *n = find(s, s->order[s->pos_order++]);
            if (n && is_live(n->rec.state))
                return n;
        }
        build_order(s);
    }
    return NULL;
}

static void send_ping(struct swim *s, const char *addr, uint64_t seq)
{
    struct swim_packet p;
    packet_init(s, &p, SWIM_PING, seq);
    send_pkt(s, addr, &p, 1);
}

static void probe_begin(struct swim *s, struct swim_node *t, uint64_t now, int check)
{
    struct swim_probe *p = NULL;
    for (size_t i = 0; i < SWIM_MAX_PROBES && !p; i++)
        if (!s->probes[i].used)
            p = &s->probes[i];
    if (!p)
        return; /* many checks at once: the others' confirmations will do */
    memset(p, 0, sizeof *p);
    p->used = 1;
    p->check = check;
    copy_str(p->target, sizeof p->target, t->rec.name);
    p->target_inc = t->rec.incarnation;
    p->seq = ++s->next_seq;
    p->indirect_at = now + scaled(s, s->cfg.probe_timeout_ms);
    p->end_at = now + scaled(s, s->cfg.probe_interval_ms);
    s->stats.probes++;
    send_ping(s, t->rec.addr, p->seq);
}

static void start_probe(struct swim *s, uint64_t now)
{
    s->next_probe_at = now + scaled(s, s->cfg.probe_interval_ms);
    struct swim_node *t = next_target(s);
    if (t && !probe_of(s, t->rec.name))
        probe_begin(s, t, now, 0);
}

static void send_indirect(struct swim *s, struct swim_probe *pr, struct swim_node *t)
{
    /* Up to k random alive helpers other than the target. */
    size_t cand[SWIM_MAX_MEMBERS];
    size_t nc = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].rec.state == MEMBER_ALIVE && &s->nodes[i] != t)
            cand[nc++] = i;
    for (uint32_t k = 0; k < s->cfg.indirect_k && nc; k++) {
        size_t j = (size_t)(rng_next(s) % nc);
        struct swim_node *h = &s->nodes[cand[j]];
        cand[j] = cand[--nc];
        struct swim_packet p;
        packet_init(s, &p, SWIM_PING_REQ, pr->seq);
        copy_str(p.target_addr, sizeof p.target_addr, t->rec.addr);
        send_pkt(s, h->rec.addr, &p, 1);
        s->stats.indirect_probes++;
        pr->helpers++;
    }
    /* A second direct try too: one lost datagram should not cost a suspicion. */
    send_ping(s, t->rec.addr, pr->seq);
}

static void probe_failed(struct swim *s, struct swim_probe *pr, struct swim_node *t, uint64_t now)
{
    /* Lifeguard: helpers that did not even nack suggest our own link or CPU is
     * the problem, not the target. With no helpers we cannot tell. */
    if (pr->helpers)
        health_add(s, (int)(pr->helpers - (pr->nacks < pr->helpers ? pr->nacks : pr->helpers)));
    else
        health_add(s, 1);
    if (t->rec.state == MEMBER_ALIVE)
        suspect_origin(s, t, now);
    else if (t->rec.state == MEMBER_SUSPECT)
        suspect_confirm(s, t, now);
}

static void probe_step(struct swim *s, uint64_t now)
{
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++) {
        struct swim_probe *pr = &s->probes[i];
        if (!pr->used)
            continue;
        struct swim_node *t = find(s, pr->target);
        if (!t || t->rec.incarnation != pr->target_inc || !is_live(t->rec.state)) {
            pr->used = 0;
            continue;
        }
        if (!pr->indirect_sent && now >= pr->indirect_at) {
            pr->indirect_sent = 1;
            send_indirect(s, pr, t);
        }
        if (now >= pr->end_at) {
            pr->used = 0;
            probe_failed(s, pr, t, now);
        }
    }
}

static void suspicion_step(struct swim *s, uint64_t now)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct swim_node *n = &s->nodes[i];
        if (n->rec.state != MEMBER_SUSPECT)
            continue;
        if (now >= n->sus_deadline) {
            declare_failed(s, n, now);
            continue;
        }
        if (n->role == SUS_ORIGIN && now >= n->next_notice) {
            /* Keep telling the suspect until it refutes or is declared failed:
             * under packet loss one notice may not arrive. */
            send_record(s, n->rec.addr, &n->rec);
            n->next_notice = now + scaled(s, s->cfg.probe_timeout_ms);
        }
    }
}

static void forward_step(struct swim *s, uint64_t now)
{
    for (size_t i = 0; i < SWIM_MAX_FORWARDS; i++) {
        struct swim_forward *f = &s->fwd[i];
        if (!f->used)
            continue;
        if (!f->answered && now >= f->nack_at) {
            struct swim_packet p;
            packet_init(s, &p, SWIM_NACK, f->origin_seq);
            send_pkt(s, f->origin, &p, 0);
            f->answered = 1;
            s->stats.nacks_sent++;
        }
        if (now >= f->deadline)
            f->used = 0;
    }
}

/* Our own loop did not run for a while (CPU starvation, a long callback, a
 * paused VM): acks may be waiting unread in the socket. Move every deadline by
 * the gap so that the packets get a chance before we judge anyone. */
static void stall_shift(struct swim *s, uint64_t gap)
{
    s->stats.stalls++;
    health_add(s, 1);
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++) {
        s->probes[i].indirect_at += gap;
        s->probes[i].end_at += gap;
    }
    for (size_t i = 0; i < SWIM_MAX_FORWARDS; i++) {
        s->fwd[i].nack_at += gap;
        s->fwd[i].deadline += gap;
    }
    for (size_t i = 0; i < s->n_nodes; i++)
        s->nodes[i].sus_deadline += gap;
}

/* Forgets failed and left members after a while, so the table stays bounded. */
static void reap(struct swim *s, uint64_t now)
{
    for (size_t i = 0; i < s->n_nodes;) {
        struct swim_node *n = &s->nodes[i];
        if (!is_live(n->rec.state) && now - n->since > SWIM_DEAD_KEEP_MS)
            s->nodes[i] = s->nodes[--s->n_nodes];
        else
            i++;
    }
}

static void send_join(struct swim *s, const char *addr, const struct swim_record *me)
{
    struct swim_packet p;
    packet_init(s, &p, SWIM_JOIN, 0);
    p.from_incarnation = me->incarnation;
    p.updates[0] = *me;
    p.n_updates = 1;
    send_pkt(s, addr, &p, 0);
}

static void join_step(struct swim *s, uint64_t now)
{
    if ((!s->synced || !count_live(s)) && now >= s->next_join_at) {
        /* Not joined yet, or alone: ask every seed, and the few members we
         * may have heard from already; whichever answers first brings its
         * whole table, so a dead seed costs nothing. */
        for (size_t i = 0; i < s->n_join; i++)
            if (strcmp(s->join[i], s->addr) != 0)
                send_join(s, s->join[i], &s->self);
        for (size_t i = 0, sent = 0; i < s->n_nodes && sent < 3; i++)
            if (s->nodes[i].rec.state == MEMBER_ALIVE) {
                send_join(s, s->nodes[i].rec.addr, &s->self);
                sent++;
            }
        s->next_join_at = now + SWIM_JOIN_RETRY_MS;
    }
    if (now >= s->next_dead_gossip_at) {
        /* Invite one failed member back: after a partition heals, this is how the
         * two sides find each other again. */
        s->next_dead_gossip_at = now + SWIM_DEAD_GOSSIP_MS;
        size_t cand[SWIM_MAX_MEMBERS], nc = 0;
        for (size_t i = 0; i < s->n_nodes; i++)
            if (s->nodes[i].rec.state == MEMBER_FAILED)
                cand[nc++] = i;
        if (nc)
            send_join(s, s->nodes[cand[rng_next(s) % nc]].rec.addr, &s->self);
    }
}

/* We were declared failed while alive (a partition, a long pause): that identity
 * is dead for everyone, so come back as a new member with a clean table. */
static void rejoin(struct swim *s, uint64_t now)
{
    uint64_t inc = s->env.new_incarnation ? s->env.new_incarnation(s->env.ud, s->self.incarnation)
                                          : s->self.incarnation + 1;
    if (inc <= s->self.incarnation)
        inc = s->self.incarnation + 1;
    s->stats.rejoins++;
    struct swim_record me = s->self;
    me.incarnation = inc;
    me.heartbeat = 0;
    /* Everyone we knew is a possible seed for the rejoin. */
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct swim_node *n = &s->nodes[i];
        enum member_state old = n->rec.state;
        if (is_live(old)) {
            n->rec.state = MEMBER_FAILED;
            emit(s, n, old, s->name);
        }
        send_join(s, n->rec.addr, &me);
    }
    s->n_nodes = 0;
    s->n_order = s->pos_order = 0;
    memset(s->probes, 0, sizeof s->probes);
    memset(s->fwd, 0, sizeof s->fwd);
    s->self = me;
    s->self.state = MEMBER_ALIVE;
    s->self_gossip_left = gossip_budget(s);
    s->synced = 0;
    s->next_join_at = now;
    if (s->env.event) {
        struct member_view v;
        to_view(&s->self, now, &v);
        s->env.event(s->env.ud, &v, MEMBER_FAILED, MEMBER_ALIVE, s->name);
    }
}

/* ---- public -------------------------------------------------------------- */

struct swim *swim_create(const struct swim_config *cfg, const struct swim_env *env, uint64_t now)
{
    struct swim *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->env = *env;
    copy_str(s->name, sizeof s->name, cfg->name);
    copy_str(s->addr, sizeof s->addr, cfg->addr);
#define SWIM_DEFAULT(field, v) \
    if (!s->cfg.field)         \
        s->cfg.field = (v);
    SWIM_DEFAULT(probe_interval_ms, 200)
    SWIM_DEFAULT(probe_timeout_ms, 80)
    SWIM_DEFAULT(suspect_timeout_ms, 400)
    SWIM_DEFAULT(suspect_max_mult, 4)
    SWIM_DEFAULT(suspect_confirmations, 3)
    SWIM_DEFAULT(indirect_k, 3)
    SWIM_DEFAULT(gossip_lambda, 3)
    SWIM_DEFAULT(health_max, 8)
    SWIM_DEFAULT(stall_ms, 100)
#undef SWIM_DEFAULT
    if (s->cfg.probe_timeout_ms >= s->cfg.probe_interval_ms)
        s->cfg.probe_timeout_ms = s->cfg.probe_interval_ms / 2;
    s->cfg.name = s->name;
    s->cfg.addr = s->addr;
    s->cfg.join = NULL;
    s->rng = cfg->seed ? cfg->seed : 0x1dd0;
    s->self_hash = name_hash(s->name);
    for (const char *const *j = cfg->join; j && *j; j++)
        s->n_join++;
    s->synced = s->n_join == 0; /* no seeds: we found the group */
    s->join = calloc(s->n_join + 1, sizeof *s->join);
    if (!s->join) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < s->n_join; i++) {
        s->join[i] = strdup(cfg->join[i]);
        if (!s->join[i]) {
            s->n_join = i;
            swim_destroy(s);
            return NULL;
        }
    }
    copy_str(s->self.name, sizeof s->self.name, s->name);
    copy_str(s->self.addr, sizeof s->self.addr, s->addr);
    s->self.incarnation = cfg->incarnation;
    s->self.state = MEMBER_ALIVE;
    s->next_probe_at = now;
    s->next_join_at = now;
    s->next_dead_gossip_at = now + SWIM_DEAD_GOSSIP_MS;
    return s;
}

void swim_destroy(struct swim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_join; i++)
        free(s->join[i]);
    free(s->join);
    free(s->order);
    free(s->nodes);
    free(s);
}

void swim_tick(struct swim *s, uint64_t now)
{
    if (s->left)
        return;
    if (s->last_tick && now > s->last_tick + s->cfg.stall_ms)
        stall_shift(s, now - s->last_tick);
    s->last_tick = now;
    forward_step(s, now);
    probe_step(s, now);
    suspicion_step(s, now);
    if (now >= s->next_probe_at)
        start_probe(s, now);
    join_step(s, now);
    reap(s, now);
}

static void handle_ack(struct swim *s, const struct swim_packet *p)
{
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++) {
        struct swim_probe *pr = &s->probes[i];
        if (pr->used && pr->seq == p->seq) {
            pr->used = 0;
            s->stats.acks++;
            if (!pr->check)
                health_add(s, -1);
            return;
        }
    }
    for (size_t i = 0; i < SWIM_MAX_FORWARDS; i++) {
        struct swim_forward *f = &s->fwd[i];
        if (f->used && f->seq == p->seq) {
            /* Relay even after a nack: a late ack still spares a suspicion. */
            struct swim_packet ack;
            packet_init(s, &ack, SWIM_ACK, f->origin_seq);
            send_pkt(s, f->origin, &ack, 1);
            f->used = 0;
            return;
        }
    }
}

static void handle_nack(struct swim *s, const struct swim_packet *p)
{
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++)
        if (s->probes[i].used && s->probes[i].seq == p->seq) {
            s->probes[i].nacks++;
            s->stats.nacks_received++;
            return;
        }
}

static void handle_ping_req(struct swim *s, uint64_t now, const struct swim_packet *p)
{
    if (!p->target_addr[0] || !p->from_addr[0])
        return;
    struct swim_forward *f = NULL;
    for (size_t i = 0; i < SWIM_MAX_FORWARDS && !f; i++)
        if (!s->fwd[i].used)
            f = &s->fwd[i];
    if (!f)
        return; /* too many at once: the requester has other helpers */
    memset(f, 0, sizeof *f);
    f->used = 1;
    f->seq = ++s->next_seq;
    f->origin_seq = p->seq;
    copy_str(f->origin, sizeof f->origin, p->from_addr);
    /* The nack must reach the requester before its probe ends. */
    f->nack_at = now + scaled(s, s->cfg.probe_timeout_ms) * 4 / 5;
    f->deadline = now + scaled(s, s->cfg.probe_interval_ms);
    send_ping(s, p->target_addr, f->seq);
}

/* `known`: the joiner was a live member of our table before this packet (a
 * retry, or an invitation answered): then only the table goes back. */
static void handle_join(struct swim *s, const struct swim_packet *p, int known)
{
    if (!p->from_addr[0] || !p->n_updates)
        return;
    send_sync(s, p->from_addr);
    struct swim_node *j = find(s, p->from_name);
    if (!known && j && j->rec.incarnation == p->from_incarnation && is_live(j->rec.state))
        broadcast_record(s, &j->rec);
}

void swim_receive(struct swim *s, uint64_t now, const char *from_addr, const struct swim_packet *p)
{
    (void)from_addr; /* replies go to from_addr inside the packet: the node's --addr */
    if (s->left || !p->from_name[0] || strcmp(p->from_name, s->name) == 0)
        return;
    /* A packet from an identity we declared failed: tell it, so it rejoins. */
    struct swim_node *sender = find(s, p->from_name);
    if (sender && sender->rec.incarnation == p->from_incarnation &&
        sender->rec.state == MEMBER_FAILED && p->from_addr[0]) {
        if (count_live(s) == 0) {
            /* We are the one that was cut off: its news about us counts. */
            apply_updates(s, p, now);
            return;
        }
        send_record(s, p->from_addr, &sender->rec);
        return;
    }
    int known = sender && sender->rec.incarnation == p->from_incarnation &&
                is_live(sender->rec.state);
    apply_updates(s, p, now);
    if (s->left)
        return;
    learn_sender(s, p, now);
    switch (p->kind) {
    case SWIM_PING:
        if (p->from_addr[0]) {
            struct swim_packet ack;
            packet_init(s, &ack, SWIM_ACK, p->seq);
            send_pkt(s, p->from_addr, &ack, 1);
        }
        break;
    case SWIM_ACK: handle_ack(s, p); break;
    case SWIM_NACK: handle_nack(s, p); break;
    case SWIM_PING_REQ: handle_ping_req(s, now, p); break;
    case SWIM_JOIN: handle_join(s, p, known); break;
    case SWIM_SYNC: s->synced = 1; break;
    case SWIM_NOTICE: break;
    }
}

void swim_leave(struct swim *s, uint64_t now)
{
    (void)now;
    if (s->left)
        return;
    s->self.state = MEMBER_LEFT;
    s->self.heartbeat++;
    /* Twice: a lost datagram would leave a member to find out by suspicion. */
    broadcast_record(s, &s->self);
    broadcast_record(s, &s->self);
    s->left = 1;
}

size_t swim_snapshot(const struct swim *s, uint64_t now, struct member_view *out, size_t max)
{
    (void)now;
    size_t k = 0;
    if (k < max) {
        to_view(&s->self, 0, &out[k]);
    }
    k++;
    for (size_t i = 0; i < s->n_nodes; i++, k++)
        if (k < max)
            to_view(&s->nodes[i].rec, s->nodes[i].since, &out[k]);
    return k;
}

void swim_self(const struct swim *s, struct member_view *out) { to_view(&s->self, 0, out); }

size_t swim_count_state(const struct swim *s, enum member_state st)
{
    size_t c = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        c += s->nodes[i].rec.state == st;
    return c;
}

unsigned swim_health(const struct swim *s) { return s->health; }

const struct swim_stats *swim_stats(const struct swim *s) { return &s->stats; }
