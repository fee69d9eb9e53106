/* swim_int.h — the SWIM core's internals, shared by swim.c (member table,
 * gossip, join, leave) and swim_probe.c (probing, suspicion, local health).
 * Not for other modules: they use swim.h. Functions here are named swim__*.
 */
#ifndef IDUNNO_MEMBER_SWIM_INT_H
#define IDUNNO_MEMBER_SWIM_INT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "member/swim.h"

#define SWIM_MAX_FORWARDS 64      /* ping-reqs we help with at once */
#define SWIM_MAX_PROBES 16        /* the round-robin probe plus checks of suspects */
#define SWIM_MAX_CONFIRM 8        /* distinct suspecters remembered per suspicion */
#define SWIM_DEAD_KEEP_MS 300000u /* failed/left members stay listed this long */
#define SWIM_JOIN_RETRY_MS 500u
#define SWIM_DEAD_GOSSIP_MS 2000u /* how often a failed member is invited back */
#define SWIM_HEARD_MULT 2         /* a suspicion we only heard of: 2x the longest */
#define SWIM_MAX_HELPERS 8        /* ping-req helpers per probe (indirect_k is capped) */
#define SWIM_MAX_OWED 3           /* health owed by one silent helper, at most */

/* Our part in a suspicion. Only members with evidence of their own (a failed
 * probe) run the short, confirmation-driven timer; the others keep a long one
 * in case everybody with evidence died too. */
enum swim_sus_role { SUS_HEARD = 0, SUS_CONFIRMER = 1, SUS_ORIGIN = 2 };

struct swim_node {
    struct swim_record rec;
    uint64_t since;       /* now when it entered its state */
    unsigned gossip_left; /* piggyback transmissions still to do */
    /* Lifeguard: nacks this helper owed us and never sent. They count against
     * our health only once we hear from it again (it was alive, so the fault
     * was likely ours); a helper that died with the target owes nothing. */
    unsigned owed_health;
    /* suspicion, valid while rec.state == MEMBER_SUSPECT */
    enum swim_sus_role role;
    uint64_t sus_start;
    uint64_t sus_deadline;
    uint64_t next_notice; /* origin: when to tell the suspect again */
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
    unsigned helpers;
    char helper[SWIM_MAX_HELPERS][MEMBER_NAME_MAX];
    int nacked[SWIM_MAX_HELPERS];
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

static inline uint32_t name_hash(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 16777619u;
    return h;
}

static inline void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static inline int is_live(enum member_state st)
{
    return st == MEMBER_ALIVE || st == MEMBER_SUSPECT;
}

/* A duration stretched by our local health: a node that misses its own
 * deadlines gives the others more time before it accuses them. */
static inline uint64_t scaled(const struct swim *s, uint64_t ms)
{
    return ms * (1u + s->health);
}

/* ---- swim.c: the table and the wire ------------------------------------- */

uint64_t swim__rng_next(struct swim *s);
/* Retransmissions for a fresh update: lambda * ceil(log2(n + 2)). */
unsigned swim__gossip_budget(const struct swim *s);
/* The member named `name`, or NULL. The pointer is valid until a member is
 * added (the table may move) or reaped. */
struct swim_node *swim__find(struct swim *s, const char *name);
size_t swim__count_live(const struct swim *s);
void swim__packet_init(struct swim *s, struct swim_packet *p, enum swim_kind kind, uint64_t seq);
/* Sends p (piggybacking gossip into it if with_gossip). */
void swim__send_pkt(struct swim *s, const char *addr, struct swim_packet *p, int with_gossip);
void swim__send_record(struct swim *s, const char *addr, const struct swim_record *rec);
void swim__broadcast_record(struct swim *s, const struct swim_record *rec);
/* Changes n's state, resets its gossip budget and reports the change. */
void swim__set_state(struct swim *s, struct swim_node *n, enum member_state st, uint64_t now,
                     const char *by);

/* ---- swim_probe.c: failure detection ------------------------------------- */

void swim__health_add(struct swim *s, int delta);
/* We heard from n: it is alive, so the nacks it owed count against us now. */
void swim__heard_from(struct swim *s, struct swim_node *n);
uint64_t swim__suspicion_deadline(const struct swim *s, const struct swim_node *n);
/* Counts `who` as a suspecter of n; returns 1 if it is new. */
int swim__add_confirmation(struct swim *s, struct swim_node *n, const char *who);
struct swim_probe *swim__probe_of(struct swim *s, const char *name);
/* We heard of a suspicion of n raised by `by`: hold it and check n ourselves. */
void swim__suspect_heard(struct swim *s, struct swim_node *n, const char *by, uint64_t now);
/* One tick of failure detection: nacks due, probes, suspicion timers, and the
 * next round-robin probe when its time has come. */
void swim__detect_tick(struct swim *s, uint64_t now);
void swim__stall_shift(struct swim *s, uint64_t gap);
void swim__on_ack(struct swim *s, const struct swim_packet *p);
void swim__on_nack(struct swim *s, const struct swim_packet *p);
void swim__on_ping_req(struct swim *s, uint64_t now, const struct swim_packet *p);

#endif
