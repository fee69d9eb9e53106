/* swim.c — the SWIM core of swim.h. */
#include "member/swim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWIM_MAX_FORWARDS 64
#define SWIM_DEAD_KEEP_MS 300000u   /* failed/left members stay listed this long */
#define SWIM_JOIN_RETRY_MS 500u
#define SWIM_DEAD_GOSSIP_MS 2000u   /* how often a failed member is invited back */
#define SWIM_SYNC_PER_PACKET SWIM_MAX_UPDATES

struct swim_node {
    struct swim_record rec;
    uint64_t since;              /* now when it entered its state */
    int suspect_origin;          /* we raised this suspicion: we decide */
    uint64_t suspect_deadline;
    uint64_t next_notice;        /* origin: when to re-tell the suspect */
    unsigned gossip_left;        /* piggyback transmissions still to do */
};

struct forward {
    int used;
    uint64_t seq;         /* our probe id toward the target */
    uint64_t origin_seq;  /* the requester's probe id */
    char origin[MEMBER_ADDR_MAX];
    uint64_t deadline;
};

struct swim {
    struct swim_config cfg;
    struct swim_env env;
    char name[MEMBER_NAME_MAX];
    char addr[MEMBER_ADDR_MAX];
    char **join;
    size_t n_join;
    struct swim_record self;
    int left;
    uint64_t rng;
    uint64_t next_seq;

    struct swim_node *nodes;
    size_t n_nodes, cap_nodes;

    /* probe state */
    char **order;             /* names in this round's probe order */
    size_t n_order, pos_order;
    uint64_t next_probe_at;
    int probing;
    uint64_t probe_seq;
    uint64_t probe_started;
    int probe_indirect_sent;
    char probe_target[MEMBER_NAME_MAX];

    struct forward fwd[SWIM_MAX_FORWARDS];
    uint64_t next_join_at;
    uint64_t next_dead_gossip_at;
    unsigned self_gossip_left;
    struct swim_stats stats;
};

/* ---- small helpers -------------------------------------------------------------- */

static uint64_t rng_next(struct swim *s)
{
    /* splitmix64: tiny, fast, and deterministic for the tests */
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static unsigned gossip_budget(const struct swim *s)
{
    /* lambda * log(n): enough retransmissions to reach everybody w.h.p. */
    return 3u * (unsigned)ceil(log2((double)s->n_nodes + 2.0));
}

static int is_live(enum member_state st) { return st == MEMBER_ALIVE || st == MEMBER_SUSPECT; }

static struct swim_node *find(struct swim *s, const char *name)
{
    for (size_t i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i].rec.name, name) == 0)
            return &s->nodes[i];
    return NULL;
}

static void to_view(const struct swim_record *r, uint64_t since, struct member_view *v)
{
    copy_str(v->name, sizeof v->name, r->name);
    copy_str(v->addr, sizeof v->addr, r->addr);
    v->incarnation = r->incarnation;
    v->state = r->state;
    v->since_ms = since;
}

static void emit(struct swim *s, const struct swim_node *n, enum member_state old_state)
{
    if (!s->env.event)
        return;
    struct member_view v;
    to_view(&n->rec, n->since, &v);
    s->env.event(s->env.ud, &v, old_state, n->rec.state);
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

/* Piggybacks the updates most in need of spreading (highest budget left). */
static void piggyback(struct swim *s, struct swim_packet *p)
{
    if (s->self_gossip_left && p->n_updates < SWIM_MAX_UPDATES) {
        p->updates[p->n_updates++] = s->self;
        s->self_gossip_left--;
    }
    while (p->n_updates < SWIM_MAX_UPDATES) {
        struct swim_node *best = NULL;
        for (size_t i = 0; i < s->n_nodes; i++) {
            struct swim_node *n = &s->nodes[i];
            if (!n->gossip_left)
                continue;
            int taken = 0;
            for (size_t k = 0; k < p->n_updates; k++)
                if (strcmp(p->updates[k].name, n->rec.name) == 0)
                    taken = 1;
            if (!taken && (!best || n->gossip_left > best->gossip_left))
                best = n;
        }
        if (!best)
            break;
        p->updates[p->n_updates++] = best->rec;
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

/* Sends `rec` to every live member now (and to `extra` if not NULL): used for
 * joins, failures, leaves and refutations, which everyone should learn within a
 * round trip rather than a few gossip periods. */
static void broadcast_record(struct swim *s, const struct swim_record *rec, const char *extra)
{
    struct swim_packet p;
    packet_init(s, &p, SWIM_NOTICE, 0);
    p.updates[0] = *rec;
    p.n_updates = 1;
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct swim_node *n = &s->nodes[i];
        if (is_live(n->rec.state) && strcmp(n->rec.name, rec->name) != 0)
            send_pkt(s, n->rec.addr, &p, 0);
    }
    if (extra)
        send_pkt(s, extra, &p, 0);
}

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

static void set_state(struct swim *s, struct swim_node *n, enum member_state st, uint64_t now)
{
    enum member_state old = n->rec.state;
    n->rec.state = st;
    n->since = now;
    n->gossip_left = gossip_budget(s);
    if (st != MEMBER_SUSPECT)
        n->suspect_origin = 0;
    if (old != st)
        emit(s, n, old);
}

/* ---- applying what we hear ---------------------------------------------------------- */

static void rejoin(struct swim *s, uint64_t now);

static void refute(struct swim *s, uint32_t heard_heartbeat)
{
    if (heard_heartbeat >= s->self.heartbeat)
        s->self.heartbeat = heard_heartbeat + 1;
    s->stats.refutations++;
    s->self_gossip_left = gossip_budget(s);
    broadcast_record(s, &s->self, NULL);
}

/* Does `r` (same identity as n) carry newer news than what we hold? */
static int supersedes(const struct swim_record *r, const struct swim_record *cur)
{
    if (cur->state == MEMBER_FAILED || cur->state == MEMBER_LEFT)
        return 0; /* terminal for this identity */
    switch (r->state) {
    case MEMBER_ALIVE: return r->heartbeat > cur->heartbeat;
    case MEMBER_SUSPECT:
        return r->heartbeat > cur->heartbeat ||
               (r->heartbeat == cur->heartbeat && cur->state == MEMBER_ALIVE);
    case MEMBER_FAILED:
    case MEMBER_LEFT: return 1;
    }
    return 0;
}

/* `trusted`: the news comes from a member we consider live (or we know no live
 * member at all). Only trusted news can make us rejoin: otherwise a node that was
 * cut off would, on its return, talk the healthy majority into rejoining. */
static void apply_record(struct swim *s, const struct swim_record *r, uint64_t now, int trusted)
{
    if (!r->name[0] || !r->addr[0] || r->state > MEMBER_LEFT)
        return;
    if (strcmp(r->name, s->name) == 0) {
        if (r->incarnation != s->self.incarnation || s->left)
            return; /* an older (or someone else's) idea of our name */
        if (r->state == MEMBER_SUSPECT && r->heartbeat >= s->self.heartbeat)
            refute(s, r->heartbeat);
        else if (r->state == MEMBER_FAILED && trusted)
            rejoin(s, now);
        return;
    }
    struct swim_node *n = find(s, r->name);
    if (!n) {
        if (r->state == MEMBER_FAILED || r->state == MEMBER_LEFT)
            return; /* news about a member we never knew: nothing to update */
        n = add_node(s, r, now);
        if (!n)
            return;
        s->stats.updates_applied++;
        emit(s, n, MEMBER_ALIVE);
        if (r->state == MEMBER_SUSPECT)
            n->suspect_deadline = now + 4ull * s->cfg.suspect_timeout_ms;
        return;
    }
    if (r->incarnation < n->rec.incarnation)
        return; /* stale identity */
    if (r->incarnation > n->rec.incarnation) {
        /* The node restarted: its old identity is gone for good. */
        if (is_live(n->rec.state))
            set_state(s, n, MEMBER_FAILED, now);
        if (r->state == MEMBER_FAILED || r->state == MEMBER_LEFT) {
            n->rec = *r;
            n->since = now;
            return;
        }
        n->rec = *r;
        n->since = now;
        n->suspect_origin = 0;
        n->gossip_left = gossip_budget(s);
        s->stats.updates_applied++;
        emit(s, n, MEMBER_ALIVE);
        return;
    }
    if (!supersedes(r, &n->rec))
        return;
    s->stats.updates_applied++;
    n->rec.heartbeat = r->heartbeat;
    copy_str(n->rec.addr, sizeof n->rec.addr, r->addr);
    if (r->state == MEMBER_SUSPECT && n->rec.state != MEMBER_SUSPECT) {
        /* Heard, not raised by us: wait long, in case the suspecter dies. */
        set_state(s, n, MEMBER_SUSPECT, now);
        n->suspect_deadline = now + 4ull * s->cfg.suspect_timeout_ms;
    } else if (r->state != n->rec.state) {
        set_state(s, n, r->state, now);
    } else {
        n->gossip_left = gossip_budget(s);
    }
}

static size_t count_live(const struct swim *s)
{
    size_t live = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        live += is_live(s->nodes[i].rec.state);
    return live;
}

static void apply_updates(struct swim *s, const struct swim_packet *p, uint64_t now)
{
    const struct swim_node *from = find(s, p->from_name);
    int trusted = !from || is_live(from->rec.state) || from->rec.incarnation < p->from_incarnation ||
                  count_live(s) == 0;
    for (size_t i = 0; i < p->n_updates && i < SWIM_MAX_UPDATES; i++)
        apply_record(s, &p->updates[i], now, trusted);
}

/* Sends our whole member table to addr, SWIM_SYNC_PER_PACKET records a packet. */
static void send_sync(struct swim *s, const char *addr)
{
    struct swim_packet p;
    packet_init(s, &p, SWIM_SYNC, 0);
    p.updates[p.n_updates++] = s->self;
    for (size_t i = 0; i <= s->n_nodes; i++) {
        if (p.n_updates == SWIM_SYNC_PER_PACKET || (i == s->n_nodes && p.n_updates)) {
            send_pkt(s, addr, &p, 0);
            packet_init(s, &p, SWIM_SYNC, 0);
        }
        if (i < s->n_nodes)
            p.updates[p.n_updates++] = s->nodes[i].rec;
    }
}

/* ---- probing ---------------------------------------------------------------------- */

static void build_order(struct swim *s)
{
    for (size_t i = 0; i < s->n_order; i++)
        free(s->order[i]);
    free(s->order);
    s->order = NULL;
    s->n_order = s->pos_order = 0;
    size_t live = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        live += is_live(s->nodes[i].rec.state);
    if (!live)
        return;
    s->order = calloc(live, sizeof *s->order);
    if (!s->order)
        return;
    for (size_t i = 0; i < s->n_nodes; i++)
        if (is_live(s->nodes[i].rec.state))
            s->order[s->n_order++] = strdup(s->nodes[i].rec.name);
    for (size_t i = s->n_order; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rng_next(s) % i);
        char *t = s->order[i - 1];
        s->order[i - 1] = s->order[j];
        s->order[j] = t;
    }
}

static struct swim_node *next_target(struct swim *s)
{
    for (int pass = 0; pass < 2; pass++) {
        while (s->pos_order < s->n_order) {
            const char *name = s->order[s->pos_order++];
            struct swim_node *n = name ? find(s, name) : NULL;
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

static void start_probe(struct swim *s, uint64_t now)
{
    struct swim_node *t = next_target(s);
    s->next_probe_at = now + s->cfg.probe_interval_ms;
    if (!t) {
        s->probing = 0;
        return;
    }
    s->probing = 1;
    s->probe_seq = ++s->next_seq;
    s->probe_started = now;
    s->probe_indirect_sent = 0;
    copy_str(s->probe_target, sizeof s->probe_target, t->rec.name);
    s->stats.probes++;
    send_ping(s, t->rec.addr, s->probe_seq);
}

static void send_indirect(struct swim *s, struct swim_node *t)
{
    /* Pick up to k random live helpers other than the target. */
    size_t cand[SWIM_MAX_MEMBERS];
    size_t nc = 0;
    for (size_t i = 0; i < s->n_nodes && nc < SWIM_MAX_MEMBERS; i++)
        if (s->nodes[i].rec.state == MEMBER_ALIVE && &s->nodes[i] != t)
            cand[nc++] = i;
    for (uint32_t k = 0; k < s->cfg.indirect_k && nc; k++) {
        size_t j = (size_t)(rng_next(s) % nc);
        struct swim_node *h = &s->nodes[cand[j]];
        cand[j] = cand[--nc];
        struct swim_packet p;
        packet_init(s, &p, SWIM_PING_REQ, s->probe_seq);
        copy_str(p.target_addr, sizeof p.target_addr, t->rec.addr);
        send_pkt(s, h->rec.addr, &p, 1);
        s->stats.indirect_probes++;
    }
    /* A second direct try too: one lost datagram should not cost a suspicion. */
    send_ping(s, t->rec.addr, s->probe_seq);
}

static void suspect(struct swim *s, struct swim_node *t, uint64_t now)
{
    if (t->rec.state != MEMBER_ALIVE)
        return;
    s->stats.suspicions++;
    set_state(s, t, MEMBER_SUSPECT, now);
    t->suspect_origin = 1;
    t->suspect_deadline = now + s->cfg.suspect_timeout_ms;
    t->next_notice = now; /* tells the suspect right away, so it can refute */
}

static void declare_failed(struct swim *s, struct swim_node *n, uint64_t now)
{
    s->stats.failures_declared++;
    set_state(s, n, MEMBER_FAILED, now);
    broadcast_record(s, &n->rec, NULL);
}

static void probe_step(struct swim *s, uint64_t now)
{
    if (!s->probing)
        return;
    struct swim_node *t = find(s, s->probe_target);
    if (!t || !is_live(t->rec.state)) {
        s->probing = 0;
        return;
    }
    if (!s->probe_indirect_sent && now >= s->probe_started + s->cfg.probe_timeout_ms) {
        s->probe_indirect_sent = 1;
        send_indirect(s, t);
    }
    if (now >= s->probe_started + s->cfg.probe_interval_ms) {
        s->probing = 0;
        suspect(s, t, now);
    }
}

static void suspicion_step(struct swim *s, uint64_t now)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct swim_node *n = &s->nodes[i];
        if (n->rec.state != MEMBER_SUSPECT)
            continue;
        if (now >= n->suspect_deadline) {
            declare_failed(s, n, now);
            continue;
        }
        if (n->suspect_origin && now >= n->next_notice) {
            /* Keep telling the suspect until it refutes or is declared failed:
             * under packet loss one notice may not arrive. */
            struct swim_packet p;
            packet_init(s, &p, SWIM_NOTICE, 0);
            p.updates[0] = n->rec;
            p.n_updates = 1;
            send_pkt(s, n->rec.addr, &p, 0);
            n->next_notice = now + s->cfg.probe_timeout_ms;
        }
    }
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

static void join_step(struct swim *s, uint64_t now)
{
    if (!count_live(s) && s->n_join && now >= s->next_join_at) {
        /* Alone: ask every seed; the first to answer brings the whole table. */
        struct swim_packet p;
        packet_init(s, &p, SWIM_JOIN, 0);
        p.updates[0] = s->self;
        p.n_updates = 1;
        for (size_t i = 0; i < s->n_join; i++)
            if (strcmp(s->join[i], s->addr) != 0)
                send_pkt(s, s->join[i], &p, 0);
        s->next_join_at = now + SWIM_JOIN_RETRY_MS;
    }
    if (now >= s->next_dead_gossip_at) {
        /* Invite one failed member back: after a partition heals, this is how the
         * two sides find each other again. */
        s->next_dead_gossip_at = now + SWIM_DEAD_GOSSIP_MS;
        size_t cand[SWIM_MAX_MEMBERS], nc = 0;
        for (size_t i = 0; i < s->n_nodes && nc < SWIM_MAX_MEMBERS; i++)
            if (s->nodes[i].rec.state == MEMBER_FAILED)
                cand[nc++] = i;
        if (nc) {
            struct swim_node *n = &s->nodes[cand[rng_next(s) % nc]];
            struct swim_packet p;
            packet_init(s, &p, SWIM_JOIN, 0);
            p.updates[0] = s->self;
            p.n_updates = 1;
            send_pkt(s, n->rec.addr, &p, 0);
        }
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
    /* Everyone we knew is a possible seed for the rejoin. */
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct swim_node *n = &s->nodes[i];
        enum member_state old = n->rec.state;
        if (is_live(old)) {
            n->rec.state = MEMBER_FAILED;
            emit(s, n, old);
        }
        struct swim_packet p;
        packet_init(s, &p, SWIM_JOIN, 0);
        p.from_incarnation = inc;
        struct swim_record me = s->self;
        me.incarnation = inc;
        me.heartbeat = 0;
        p.updates[0] = me;
        p.n_updates = 1;
        send_pkt(s, n->rec.addr, &p, 0);
    }
    s->n_nodes = 0;
    s->self.incarnation = inc;
    s->self.heartbeat = 0;
    s->self.state = MEMBER_ALIVE;
    s->self_gossip_left = gossip_budget(s);
    s->probing = 0;
    s->next_join_at = now;
    if (s->env.event) {
        struct member_view v;
        to_view(&s->self, now, &v);
        s->env.event(s->env.ud, &v, MEMBER_FAILED, MEMBER_ALIVE);
    }
}

/* ---- public ------------------------------------------------------------------------- */

struct swim *swim_create(const struct swim_config *cfg, const struct swim_env *env, uint64_t now)
{
    struct swim *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->env = *env;
    copy_str(s->name, sizeof s->name, cfg->name);
    copy_str(s->addr, sizeof s->addr, cfg->addr);
    if (!s->cfg.probe_interval_ms) s->cfg.probe_interval_ms = 200;
    if (!s->cfg.probe_timeout_ms) s->cfg.probe_timeout_ms = 80;
    if (!s->cfg.suspect_timeout_ms) s->cfg.suspect_timeout_ms = 600;
    if (!s->cfg.indirect_k) s->cfg.indirect_k = 3;
    s->cfg.name = s->name;
    s->cfg.addr = s->addr;
    s->cfg.join = NULL;
    s->rng = cfg->seed ? cfg->seed : 0x1dd0;
    for (const char *const *j = cfg->join; j && *j; j++)
        s->n_join++;
    s->join = calloc(s->n_join + 1, sizeof *s->join);
    if (!s->join) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < s->n_join; i++)
        s->join[i] = strdup(cfg->join[i]);
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
    for (size_t i = 0; i < s->n_order; i++)
        free(s->order[i]);
    free(s->order);
    free(s->nodes);
    free(s);
}

void swim_tick(struct swim *s, uint64_t now)
{
    if (s->left)
        return;
    probe_step(s, now);
    suspicion_step(s, now);
    if (now >= s->next_probe_at)
        start_probe(s, now);
    join_step(s, now);
    for (size_t i = 0; i < SWIM_MAX_FORWARDS; i++)
        if (s->fwd[i].used && now > s->fwd[i].deadline)
            s->fwd[i].used = 0;
    reap(s, now);
}

static void handle_ack(struct swim *s, uint64_t now, const struct swim_packet *p)
{
    (void)now;
    if (s->probing && p->seq == s->probe_seq) {
        s->probing = 0;
        s->stats.acks++;
        return;
    }
    for (size_t i = 0; i < SWIM_MAX_FORWARDS; i++) {
        struct forward *f = &s->fwd[i];
        if (f->used && f->seq == p->seq) {
            struct swim_packet ack;
            packet_init(s, &ack, SWIM_ACK, f->origin_seq);
            send_pkt(s, f->origin, &ack, 1);
            f->used = 0;
            return;
        }
    }
}

static void handle_ping_req(struct swim *s, uint64_t now, const struct swim_packet *p)
{
    if (!p->target_addr[0] || !p->from_addr[0])
        return;
    struct forward *slot = NULL;
    for (size_t i = 0; i < SWIM_MAX_FORWARDS && !slot; i++)
        if (!s->fwd[i].used)
            slot = &s->fwd[i];
    if (!slot)
        return; /* too many at once: the requester has other helpers */
    slot->used = 1;
    slot->seq = ++s->next_seq;
    slot->origin_seq = p->seq;
    copy_str(slot->origin, sizeof slot->origin, p->from_addr);
    slot->deadline = now + s->cfg.probe_interval_ms;
    send_ping(s, p->target_addr, slot->seq);
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
        struct swim_packet n;
        packet_init(s, &n, SWIM_NOTICE, 0);
        n.updates[0] = sender->rec;
        n.n_updates = 1;
        send_pkt(s, p->from_addr, &n, 0);
        return;
    }
    apply_updates(s, p, now);
    switch (p->kind) {
    case SWIM_PING: {
        if (!p->from_addr[0])
            return;
        struct swim_packet ack;
        packet_init(s, &ack, SWIM_ACK, p->seq);
        send_pkt(s, p->from_addr, &ack, 1);
        break;
    }
    case SWIM_ACK: handle_ack(s, now, p); break;
    case SWIM_PING_REQ: handle_ping_req(s, now, p); break;
    case SWIM_JOIN: {
        if (!p->from_addr[0] || !p->n_updates)
            return;
        struct swim_node *j = find(s, p->from_name);
        if (j && j->rec.incarnation == p->from_incarnation && is_live(j->rec.state))
            ; /* already known: just resend the table below */
        else if (j && j->rec.incarnation == p->from_incarnation)
            return; /* handled above (failed identity) */
        send_sync(s, p->from_addr);
        j = find(s, p->from_name);
        if (j && is_live(j->rec.state))
            broadcast_record(s, &j->rec, NULL);
        break;
    }
    case SWIM_SYNC:
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
    broadcast_record(s, &s->self, NULL);
    broadcast_record(s, &s->self, NULL);
    s->left = 1;
}

size_t swim_snapshot(const struct swim *s, uint64_t now, struct member_view *out, size_t max)
{
    size_t k = 0;
    if (k < max) {
        to_view(&s->self, now, &out[k]);
        out[k].since_ms = 0;
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

const struct swim_stats *swim_stats(const struct swim *s) { return &s->stats; }
