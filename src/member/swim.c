/* swim.c — the SWIM core of swim.h, first half: the member table and what is
 * applied to it, piggybacked gossip within a byte budget, join, leave, rejoin,
 * and the public entry points. Failure detection (probes, suspicion, local
 * health) is in swim_probe.c; the shared internals are in swim_int.h.
 *
 * Everything here is a function of (config, seed, inputs): no clock, no I/O.
 */
#include "member/swim_int.h"

#include <math.h>
#include <stdlib.h>

#include "base/array.h"

uint64_t swim__rng_next(struct swim *s)
{
    /* splitmix64: tiny, good enough for shuffles, deterministic for tests */
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

unsigned swim__gossip_budget(const struct swim *s)
{
    /* lambda * log(n): enough retransmissions to reach everybody w.h.p. */
    return s->cfg.gossip_lambda * (unsigned)ceil(log2((double)s->n_nodes + 2.0));
}

struct swim_node *swim__find(struct swim *s, const char *name)
{
    for (size_t i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i].rec.name, name) == 0)
            return &s->nodes[i];
    return NULL;
}

size_t swim__count_live(const struct swim *s)
{
    size_t live = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        live += is_live(s->nodes[i].rec.state);
    return live;
}

int swim_name_valid(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0 && n < MEMBER_NAME_MAX;
}

int swim_addr_valid(const char *addr)
{
    size_t n = 0;
    for (; addr[n]; n++)
        if (addr[n] <= ' ' || addr[n] > '~')
            return 0;
    return n > 0 && n < MEMBER_ADDR_MAX;
}

/* The highest incarnation we accept: a start time at most a minute ahead of
 * our clock. */
static uint64_t incarnation_limit(const struct swim *s)
{
    uint64_t base = s->env.wall_ms(s->env.ud);
    return base > UINT64_MAX - SWIM_INCARNATION_AHEAD_MS ? UINT64_MAX
                                                         : base + SWIM_INCARNATION_AHEAD_MS;
}

/* A record we may apply at all: well-formed names and address, a sane
 * incarnation. */
static int record_sane(const struct swim *s, const struct swim_record *r)
{
    return swim_name_valid(r->name) && swim_addr_valid(r->addr) && r->state <= MEMBER_LEFT &&
           (!r->suspecter[0] || swim_name_valid(r->suspecter)) && r->incarnation &&
           r->incarnation <= incarnation_limit(s);
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

void swim__packet_init(struct swim *s, struct swim_packet *p, enum swim_kind kind, uint64_t seq)
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

void swim__send_pkt(struct swim *s, const char *addr, struct swim_packet *p, int with_gossip)
{
    if (with_gossip)
        piggyback(s, p);
    s->stats.packets_sent++;
    s->env.send(s->env.ud, addr, p);
}

void swim__send_record(struct swim *s, const char *addr, const struct swim_record *rec)
{
    struct swim_packet p;
    swim__packet_init(s, &p, SWIM_NOTICE, 0);
    p.updates[0] = *rec;
    p.n_updates = 1;
    swim__send_pkt(s, addr, &p, 0);
}

/* Sends `rec` to every live member but its subject: joins, suspicions,
 * failures, leaves and refutations, which everyone should learn within a round
 * trip rather than a few gossip periods. O(n) datagrams, but only per event. */
void swim__broadcast_record(struct swim *s, const struct swim_record *rec)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct swim_node *n = &s->nodes[i];
        if (is_live(n->rec.state) && strcmp(n->rec.name, rec->name) != 0)
            swim__send_record(s, n->rec.addr, rec);
    }
}

/* May move s->nodes: callers must not hold node pointers across it. */
static struct swim_node *add_node(struct swim *s, const struct swim_record *r, uint64_t now)
{
    if (s->n_nodes == s->cap_nodes && s->cap_nodes >= SWIM_MAX_MEMBERS)
        return NULL;
    if (ARRAY_RESERVE(s->nodes, s->cap_nodes, s->n_nodes, 1, 16) < 0)
        return NULL;
    struct swim_node *n = &s->nodes[s->n_nodes++];
    memset(n, 0, sizeof *n);
    n->rec = *r;
    n->since = now;
    n->gossip_left = swim__gossip_budget(s);
    return n;
}

void swim__set_state(struct swim *s, struct swim_node *n, enum member_state st, uint64_t now,
                     const char *by)
{
    enum member_state old = n->rec.state;
    n->rec.state = st;
    n->since = now;
    n->gossip_left = swim__gossip_budget(s);
    if (st != MEMBER_SUSPECT)
        n->role = SUS_HEARD;
    if (st != MEMBER_ALIVE)
        n->owed_health = 0; /* a suspect or dead helper's silence says nothing of us */
    if (st == MEMBER_ALIVE || st == MEMBER_LEFT)
        n->rec.suspecter[0] = '\0';
    if (old != st)
        emit(s, n, old, by);
}

static void rejoin(struct swim *s, uint64_t now);

static void refute(struct swim *s, uint32_t heard_heartbeat)
{
    if (heard_heartbeat >= s->self.heartbeat)
        s->self.heartbeat = heard_heartbeat + 1;
    s->stats.refutations++;
    swim__health_add(s, 1); /* being suspected hints that we are the slow one */
    s->self_gossip_left = swim__gossip_budget(s);
    swim__broadcast_record(s, &s->self);
}

/* Someone says our identity ended (left) or was replaced (a newer
 * incarnation of our name): false, since only we end or replace it. Take an
 * incarnation above every claim and tell everyone; the others then see our
 * name restart, which supersedes the claim everywhere. */
static void reincarnate(struct swim *s, uint64_t above)
{
    uint64_t cur = s->self.incarnation > above ? s->self.incarnation : above;
    uint64_t inc = s->env.new_incarnation ? s->env.new_incarnation(s->env.ud, cur) : cur + 1;
    if (inc <= cur)
        inc = cur + 1;
    s->stats.reincarnations++;
    s->self.incarnation = inc;
    s->self.heartbeat = 0;
    s->self.state = MEMBER_ALIVE;
    s->self_gossip_left = swim__gossip_budget(s);
    swim__broadcast_record(s, &s->self);
}

/* News about our own name. Returns 1 if the sender holds a stale suspicion
 * of us (the caller answers it directly). */
static int apply_self_record(struct swim *s, const struct swim_record *r, uint64_t now, int trusted)
{
    if (s->left || r->incarnation < s->self.incarnation)
        return 0; /* an older life of our name */
    if (r->incarnation > s->self.incarnation) {
        reincarnate(s, r->incarnation);
        return 0;
    }
    switch (r->state) {
    case MEMBER_ALIVE: return 0;
    case MEMBER_SUSPECT:
        if (r->heartbeat > s->self.heartbeat + SWIM_HEARTBEAT_STEP) {
            s->stats.records_refused++; /* nobody can know a heartbeat we never had */
            refute(s, s->self.heartbeat);
            return 0;
        }
        if (r->heartbeat >= s->self.heartbeat) {
            refute(s, r->heartbeat);
            return 0;
        }
        return 1;
    case MEMBER_FAILED:
        if (trusted)
            rejoin(s, now);
        return 0;
    case MEMBER_LEFT: reincarnate(s, r->incarnation); return 0;
    }
    return 0;
}

/* A newer incarnation of n's name: the old identity is gone for good. */
static void adopt_identity(struct swim *s, struct swim_node *n, const struct swim_record *r,
                           uint64_t now)
{
    if (is_live(n->rec.state)) {
        copy_str(n->rec.suspecter, sizeof n->rec.suspecter, r->name);
        swim__set_state(s, n, MEMBER_FAILED, now, "restart");
    }
    n->rec = *r;
    n->since = now;
    n->role = SUS_HEARD;
    n->n_conf = 0;
    n->owed_health = 0;
    if (r->state == MEMBER_FAILED || r->state == MEMBER_LEFT)
        return; /* a newer identity we never saw alive: nothing to report */
    n->rec.state = MEMBER_ALIVE;
    n->rec.suspecter[0] = '\0';
    n->gossip_left = swim__gossip_budget(s);
    s->stats.updates_applied++;
    emit(s, n, MEMBER_ALIVE, "");
}

static void apply_updates(struct swim *s, const struct swim_packet *p, uint64_t now);

/* Applies one record heard from `from` (a member name). `trusted`: the news comes
 * from a member we consider live (or we know no live member at all); only
 * trusted news can make us rejoin, or a node returning from isolation would
 * talk the healthy majority into rejoining. Returns 1 if the sender holds a
 * stale suspicion of us (the caller answers it directly). */
static int apply_record(struct swim *s, const struct swim_record *r, uint64_t now, int trusted,
                        const char *from)
{
    if (!record_sane(s, r)) {
        s->stats.records_refused++;
        return 0;
    }
    if (strcmp(r->name, s->name) == 0)
        return apply_self_record(s, r, now, trusted);
    const char *by = r->suspecter[0] ? r->suspecter : from;
    struct swim_node *n = swim__find(s, r->name);
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
        if (is_live(n->rec.state) && (r->state == MEMBER_FAILED || r->state == MEMBER_LEFT)) {
            /* A newer life we never saw, already over, would end one we hold
             * live on hearsay alone: leave that to our own probes. */
            s->stats.records_refused++;
            return 0;
        }
        adopt_identity(s, n, r, now);
        if (r->state != MEMBER_SUSPECT)
            return 0;
    }
    enum member_state cur = n->rec.state;
    if (cur == MEMBER_FAILED || cur == MEMBER_LEFT)
        return 0; /* terminal for this identity */
    if (r->heartbeat > n->rec.heartbeat + SWIM_HEARTBEAT_STEP) {
        s->stats.records_refused++; /* would outbid every true refutation */
        return 0;
    }
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
            struct swim_probe *pr = swim__probe_of(s, n->rec.name);
            if (pr && pr->check)
                pr->used = 0;
            swim__set_state(s, n, MEMBER_ALIVE, now, r->name);
        } else
            n->gossip_left = swim__gossip_budget(s);
        return 0;
    case MEMBER_SUSPECT:
        if (r->heartbeat < n->rec.heartbeat)
            return 0;
        if (cur == MEMBER_ALIVE || r->heartbeat > n->rec.heartbeat) {
            s->stats.updates_applied++;
            n->rec.heartbeat = r->heartbeat;
            swim__suspect_heard(s, n, by, now);
        } else if (swim__add_confirmation(s, n, by)) {
            /* Another independent suspecter: shorter timeout, and spread it. */
            s->stats.updates_applied++;
            n->sus_deadline = swim__suspicion_deadline(s, n);
            copy_str(n->rec.suspecter, sizeof n->rec.suspecter, by);
            n->gossip_left = swim__gossip_budget(s);
        }
        return 0;
    case MEMBER_FAILED:
    case MEMBER_LEFT:
        s->stats.updates_applied++;
        n->rec.heartbeat = r->heartbeat > n->rec.heartbeat ? r->heartbeat : n->rec.heartbeat;
        copy_str(n->rec.suspecter, sizeof n->rec.suspecter, r->suspecter);
        swim__set_state(s, n, r->state, now, by);
        return 0;
    }
    return 0;
}

static void apply_updates(struct swim *s, const struct swim_packet *p, uint64_t now)
{
    const struct swim_node *from = swim__find(s, p->from_name);
    int trusted = !from || is_live(from->rec.state) ||
                  from->rec.incarnation < p->from_incarnation || swim__count_live(s) == 0;
    int stale_about_us = 0;
    for (size_t i = 0; i < p->n_updates && i < SWIM_MAX_UPDATES; i++) {
        const struct swim_record *r = &p->updates[i];
        if (strcmp(r->name, p->from_name) == 0 && strcmp(r->addr, p->from_addr) != 0) {
            /* The sender about itself must be where its packet came from. */
            s->stats.records_refused++;
            continue;
        }
        stale_about_us |= apply_record(s, r, now, trusted, p->from_name);
    }
    /* The sender still suspects an older heartbeat of ours: our refutation did
     * not reach it. Tell it directly rather than wait for gossip. */
    if (stale_about_us && p->from_addr[0] && !s->left)
        swim__send_record(s, p->from_addr, &s->self);
}

/* The sender of any packet is evidently alive: a member whose join notice we
 * missed is learned from its first packet. */
static void learn_sender(struct swim *s, const struct swim_packet *p, uint64_t now)
{
    if (!p->from_addr[0] || !p->from_incarnation)
        return;
    const struct swim_node *n = swim__find(s, p->from_name);
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
    swim__packet_init(s, &p, SWIM_SYNC, 0);
    bytes = swim_packet_wire_bound(&p);
    packet_add(&p, &bytes, &s->self);
    for (size_t i = 0; i < s->n_nodes; i++) {
        const struct swim_record *r = &s->nodes[i].rec;
        if (!is_live(r->state))
            continue;
        if (!packet_add(&p, &bytes, r)) {
            swim__send_pkt(s, addr, &p, 0);
            swim__packet_init(s, &p, SWIM_SYNC, 0);
            bytes = swim_packet_wire_bound(&p);
            packet_add(&p, &bytes, r);
        }
    }
    swim__send_pkt(s, addr, &p, 0);
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
    swim__packet_init(s, &p, SWIM_JOIN, 0);
    p.from_incarnation = me->incarnation;
    p.updates[0] = *me;
    p.n_updates = 1;
    swim__send_pkt(s, addr, &p, 0);
}

static void join_step(struct swim *s, uint64_t now)
{
    if ((!s->synced || !swim__count_live(s)) && now >= s->next_join_at) {
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
            send_join(s, s->nodes[cand[swim__rng_next(s) % nc]].rec.addr, &s->self);
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
    s->self_gossip_left = swim__gossip_budget(s);
    s->synced = 0;
    s->next_join_at = now;
    if (s->env.event) {
        struct member_view v;
        to_view(&s->self, now, &v);
        s->env.event(s->env.ud, &v, MEMBER_FAILED, MEMBER_ALIVE, s->name);
    }
}

struct swim *swim_create(const struct swim_config *cfg, const struct swim_env *env, uint64_t now)
{
    if (!env->send || !env->wall_ms || !cfg->name || !swim_name_valid(cfg->name))
        return NULL;
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
        swim__stall_shift(s, now - s->last_tick);
    s->last_tick = now;
    swim__detect_tick(s, now);
    join_step(s, now);
    reap(s, now);
}

/* `known`: the joiner was a live member of our table before this packet (a
 * retry, or an invitation answered): then only the table goes back. */
static void handle_join(struct swim *s, const struct swim_packet *p, int known)
{
    if (!p->from_addr[0] || !p->n_updates)
        return;
    send_sync(s, p->from_addr);
    struct swim_node *j = swim__find(s, p->from_name);
    if (!known && j && j->rec.incarnation == p->from_incarnation && is_live(j->rec.state))
        swim__broadcast_record(s, &j->rec);
}

/* A packet from an identity we hold dead, or from an older life of a name we
 * know by a newer one: tell it what we hold. A member cut off and declared
 * failed rejoins; a live member impersonated (said to have left, or
 * replaced by a forged newer incarnation) refutes. Returns 1 if the packet
 * was answered so and needs nothing more. */
static int answer_outdated_sender(struct swim *s, const struct swim_packet *p, uint64_t now)
{
    struct swim_node *sender = swim__find(s, p->from_name);
    if (!sender || sender->rec.incarnation < p->from_incarnation)
        return 0;
    if (sender->rec.incarnation == p->from_incarnation && is_live(sender->rec.state))
        return 0;
    if (sender->rec.incarnation == p->from_incarnation && sender->rec.state == MEMBER_FAILED &&
        swim__count_live(s) == 0) {
        /* We are the one that was cut off: its news about us counts. */
        apply_updates(s, p, now);
        return 1;
    }
    swim__send_record(s, p->from_addr, &sender->rec);
    return 1;
}

void swim_receive(struct swim *s, uint64_t now, const char *from_addr, const struct swim_packet *in)
{
    if (s->left || strcmp(in->from_name, s->name) == 0)
        return;
    const char *real = from_addr && from_addr[0] ? from_addr : in->from_addr;
    if (!swim_name_valid(in->from_name) || !swim_addr_valid(real) ||
        in->from_incarnation > incarnation_limit(s)) {
        s->stats.packets_refused++;
        return;
    }
    /* From here on the sender's address is where the packet came from. */
    struct swim_packet p = *in;
    copy_str(p.from_addr, sizeof p.from_addr, real);
    if (answer_outdated_sender(s, &p, now))
        return;
    struct swim_node *sender = swim__find(s, p.from_name);
    int known = sender && sender->rec.incarnation == p.from_incarnation &&
                is_live(sender->rec.state);
    apply_updates(s, &p, now);
    if (s->left)
        return;
    learn_sender(s, &p, now);
    sender = swim__find(s, p.from_name);
    if (sender && sender->rec.incarnation == p.from_incarnation &&
        sender->rec.state == MEMBER_ALIVE)
        swim__heard_from(s, sender);
    switch (p.kind) {
    case SWIM_PING: {
        struct swim_packet ack;
        swim__packet_init(s, &ack, SWIM_ACK, p.seq);
        swim__send_pkt(s, p.from_addr, &ack, 1);
        break;
    }
    case SWIM_ACK: swim__on_ack(s, &p); break;
    case SWIM_NACK: swim__on_nack(s, &p); break;
    case SWIM_PING_REQ: swim__on_ping_req(s, now, &p); break;
    case SWIM_JOIN: handle_join(s, &p, known); break;
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
    swim__broadcast_record(s, &s->self);
    swim__broadcast_record(s, &s->self);
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

void swim_self(const struct swim *s, struct member_view *out)
{
    to_view(&s->self, 0, out);
}

size_t swim_count_state(const struct swim *s, enum member_state st)
{
    size_t c = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        c += s->nodes[i].rec.state == st;
    return c;
}

unsigned swim_health(const struct swim *s)
{
    return s->health;
}

const struct swim_stats *swim_stats(const struct swim *s)
{
    return &s->stats;
}
