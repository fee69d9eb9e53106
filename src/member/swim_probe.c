/* swim_probe.c — the SWIM core's failure detector: shuffled round-robin
 * probes with ping-req and nacks, checks of suspects heard of, Lifeguard
 * suspicion timeouts that shrink with independent confirmations, and the local
 * health score with stall awareness (see swim.h and docs/membership.md).
 */
#include "member/swim_int.h"

#include <math.h>
#include <stdlib.h>

void swim__health_add(struct swim *s, int delta)
{
    int h = (int)s->health + delta;
    if (h < 0)
        h = 0;
    if (h > (int)s->cfg.health_max)
        h = (int)s->cfg.health_max;
    s->health = (unsigned)h;
}

void swim__heard_from(struct swim *s, struct swim_node *n)
{
    if (n->owed_health) {
        swim__health_add(s, (int)n->owed_health);
        n->owed_health = 0;
    }
}

/* Members that could still confirm a suspicion: alive, not suspected. */
static size_t count_alive(const struct swim *s)
{
    size_t c = 0;
    for (size_t i = 0; i < s->n_nodes; i++)
        c += s->nodes[i].rec.state == MEMBER_ALIVE;
    return c;
}

/* Deadline of n's suspicion: min * (max/min) shrinking logarithmically with the
 * number of independent suspecters, as in Lifeguard:
 *   t(C) = max - (max - min) * log(C + 1) / log(K + 1), t >= min,
 * K being the confirmations expected: at most the members that could give
 * one, i.e. those alive and not suspected themselves. When several members
 * die at once, each suspicion lowers K for the others (the deadline is
 * recomputed every tick), so the survivors need not wait for confirmations
 * only the dead could give. With nobody left to confirm, the longest timeout. */
uint64_t swim__suspicion_deadline(const struct swim *s, const struct swim_node *n)
{
    double min = s->cfg.suspect_timeout_ms;
    double max = min * s->cfg.suspect_max_mult;
    double t;
    size_t others = count_alive(s); /* the suspect is not among them */
    unsigned k = s->cfg.suspect_confirmations;
    if (others < (size_t)k)
        k = (unsigned)others;
    int confirmed = n->role != SUS_HEARD && k > 0 && n->n_conf >= k;
    if (n->role == SUS_HEARD)
        t = max * SWIM_HEARD_MULT;
    else if (confirmed)
        t = min;
    else if (k == 0)
        t = max;
    else
        t = max - (max - min) * log((double)n->n_conf + 1.0) / log((double)k + 1.0);
    if (t < min)
        t = min;
    /* Our own poor health stretches a suspicion that rests on our word; once
     * K others have confirmed it, the evidence is theirs and the timeout is
     * not ours to stretch. */
    if (!confirmed)
        t *= 1.0 + s->health;
    /* A confirmer's timer is the backup for a dead originator: a probe interval
     * of grace lets a live originator's verdict arrive first, so one failure is
     * broadcast once rather than by every confirmer. */
    if (n->role == SUS_CONFIRMER)
        t += s->cfg.probe_interval_ms;
    return n->sus_start + (uint64_t)t;
}

/* Counts `who` as a suspecter of n; returns 1 if it is new. */
int swim__add_confirmation(struct swim *s, struct swim_node *n, const char *who)
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

struct swim_probe *swim__probe_of(struct swim *s, const char *name)
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
    swim__set_state(s, n, MEMBER_SUSPECT, now, s->name);
    n->role = SUS_ORIGIN;
    n->sus_start = now;
    n->sus_deadline = swim__suspicion_deadline(s, n);
    n->next_notice = now;               /* tells the suspect at the next tick, so it can refute */
    swim__broadcast_record(s, &n->rec); /* ...and the others, so they can check */
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
    n->sus_deadline = swim__suspicion_deadline(s, n);
    copy_str(n->rec.suspecter, sizeof n->rec.suspecter, s->name);
    n->gossip_left = swim__gossip_budget(s);
    struct swim_node *o = swim__find(s, n->origin);
    if (o && o != n && is_live(o->rec.state))
        swim__send_record(s, o->rec.addr, &n->rec);
}

static void probe_begin(struct swim *s, struct swim_node *t, uint64_t now, int check);

/* We heard of a suspicion we did not raise: hold it, and check for ourselves. */
void swim__suspect_heard(struct swim *s, struct swim_node *n, const char *by, uint64_t now)
{
    n->n_conf = 0;
    swim__add_confirmation(s, n, by);
    copy_str(n->origin, sizeof n->origin, by);
    copy_str(n->rec.suspecter, sizeof n->rec.suspecter, by);
    swim__set_state(s, n, MEMBER_SUSPECT, now, by);
    n->role = SUS_HEARD;
    n->sus_start = now;
    n->sus_deadline = swim__suspicion_deadline(s, n);
    if (!swim__probe_of(s, n->rec.name)) {
        s->stats.checks++;
        probe_begin(s, n, now, 1);
    }
}

static void declare_failed(struct swim *s, struct swim_node *n, uint64_t now)
{
    s->stats.failures_declared++;
    copy_str(n->rec.suspecter, sizeof n->rec.suspecter, s->name);
    swim__set_state(s, n, MEMBER_FAILED, now, s->name);
    swim__broadcast_record(s, &n->rec);
}

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
        size_t j = (size_t)(swim__rng_next(s) % i);
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
            struct swim_node *n = swim__find(s, s->order[s->pos_order++]);
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
    swim__packet_init(s, &p, SWIM_PING, seq);
    swim__send_pkt(s, addr, &p, 1);
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
    if (t && !swim__probe_of(s, t->rec.name))
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
    for (uint32_t k = 0; k < s->cfg.indirect_k && k < SWIM_MAX_HELPERS && nc; k++) {
        size_t j = (size_t)(swim__rng_next(s) % nc);
        struct swim_node *h = &s->nodes[cand[j]];
        cand[j] = cand[--nc];
        struct swim_packet p;
        swim__packet_init(s, &p, SWIM_PING_REQ, pr->seq);
        copy_str(p.target_addr, sizeof p.target_addr, t->rec.addr);
        swim__send_pkt(s, h->rec.addr, &p, 1);
        s->stats.indirect_probes++;
        copy_str(pr->helper[pr->helpers], MEMBER_NAME_MAX, h->rec.name);
        pr->nacked[pr->helpers++] = 0;
    }
    /* A second direct try too: one lost datagram should not cost a suspicion. */
    send_ping(s, t->rec.addr, pr->seq);
}

static void probe_failed(struct swim *s, struct swim_probe *pr, struct swim_node *t, uint64_t now)
{
    /* Lifeguard: helpers that did not even nack suggest our own link or CPU is
     * the problem, not the target — if they are alive. Each silent helper owes
     * a point, paid when we next hear from it; one that died with the target
     * (several members failing at once) never pays, so it does not slow our
     * detection of the others. With no helpers we cannot tell. */
    if (!pr->helpers)
        swim__health_add(s, 1);
    for (unsigned i = 0; i < pr->helpers; i++) {
        struct swim_node *h = pr->nacked[i] ? NULL : swim__find(s, pr->helper[i]);
        if (h && h->rec.state == MEMBER_ALIVE && h->owed_health < SWIM_MAX_OWED)
            h->owed_health++;
    }
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
        struct swim_node *t = swim__find(s, pr->target);
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
        n->sus_deadline = swim__suspicion_deadline(s, n);
        if (now >= n->sus_deadline) {
            declare_failed(s, n, now);
            continue;
        }
        if (n->role == SUS_ORIGIN && now >= n->next_notice) {
            /* Keep telling the suspect until it refutes or is declared failed:
             * under packet loss one notice may not arrive. */
            swim__send_record(s, n->rec.addr, &n->rec);
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
            swim__packet_init(s, &p, SWIM_NACK, f->origin_seq);
            swim__send_pkt(s, f->origin, &p, 0);
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
void swim__stall_shift(struct swim *s, uint64_t gap)
{
    s->stats.stalls++;
    swim__health_add(s, 1);
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++) {
        s->probes[i].indirect_at += gap;
        s->probes[i].end_at += gap;
    }
    for (size_t i = 0; i < SWIM_MAX_FORWARDS; i++) {
        s->fwd[i].nack_at += gap;
        s->fwd[i].deadline += gap;
    }
    for (size_t i = 0; i < s->n_nodes; i++)
        s->nodes[i].sus_start += gap; /* the deadline counts from it */
}

void swim__on_ack(struct swim *s, const struct swim_packet *p)
{
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++) {
        struct swim_probe *pr = &s->probes[i];
        if (pr->used && pr->seq == p->seq) {
            pr->used = 0;
            s->stats.acks++;
            if (!pr->check)
                swim__health_add(s, -1);
            return;
        }
    }
    for (size_t i = 0; i < SWIM_MAX_FORWARDS; i++) {
        struct swim_forward *f = &s->fwd[i];
        if (f->used && f->seq == p->seq) {
            /* Relay even after a nack: a late ack still spares a suspicion. */
            struct swim_packet ack;
            swim__packet_init(s, &ack, SWIM_ACK, f->origin_seq);
            swim__send_pkt(s, f->origin, &ack, 1);
            f->used = 0;
            return;
        }
    }
}

void swim__on_nack(struct swim *s, const struct swim_packet *p)
{
    for (size_t i = 0; i < SWIM_MAX_PROBES; i++)
        if (s->probes[i].used && s->probes[i].seq == p->seq) {
            struct swim_probe *pr = &s->probes[i];
            for (unsigned k = 0; k < pr->helpers; k++)
                if (strcmp(pr->helper[k], p->from_name) == 0)
                    pr->nacked[k] = 1;
            s->stats.nacks_received++;
            return;
        }
}

void swim__on_ping_req(struct swim *s, uint64_t now, const struct swim_packet *p)
{
    if (!p->target_addr[0] || !p->from_addr[0])
        return;
    /* Only members we hold live are probed for others: we are nobody's means
     * of sending pings to an address of their choosing. */
    int member = 0;
    for (size_t i = 0; i < s->n_nodes && !member; i++)
        member = is_live(s->nodes[i].rec.state) &&
                 strcmp(s->nodes[i].rec.addr, p->target_addr) == 0;
    if (!member)
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

void swim__detect_tick(struct swim *s, uint64_t now)
{
    forward_step(s, now);
    probe_step(s, now);
    suspicion_step(s, now);
    if (now >= s->next_probe_at)
        start_probe(s, now);
}
