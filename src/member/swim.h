/* swim.h — the SWIM membership protocol as a pure core: packets and `now` in,
 * packets and membership events out. No sockets, no clocks, no threads; the
 * libuv glue (member.c) and the unit tests drive it the same way.
 *
 * Protocol (docs/membership.md has the reasoning and the timing budget):
 *  - every probe_interval_ms a node pings the next member of a shuffled
 *    round-robin order; without an ack after probe_timeout_ms it pings again and
 *    asks `indirect_k` others to ping the target for it (ping-req);
 *  - without any ack by the end of the interval it suspects the target, tells the
 *    target directly (so it can refute) and gossips the suspicion;
 *  - the node that raised a suspicion declares the member failed when
 *    suspect_timeout_ms pass without a refutation, and tells every member at
 *    once; others that only heard the suspicion wait longer before deciding on
 *    their own (they only matter if the suspecter itself died);
 *  - a member that hears itself suspected raises its heartbeat and tells
 *    everyone it is alive; one that hears itself declared failed rejoins as a new
 *    incarnation (a failed identity never comes back);
 *  - updates ride on pings and acks (piggybacking), each sent a bounded number of
 *    times; joins, failures and leaves are also sent to every member directly so
 *    that all members learn them within one round trip.
 *
 * Identity: (name, incarnation), the incarnation being the node's start time. A
 * newer incarnation of a known name replaces the old member.
 */
#ifndef IDUNNO_MEMBER_SWIM_H
#define IDUNNO_MEMBER_SWIM_H

#include <stddef.h>
#include <stdint.h>

#include "member/member.h"

#define SWIM_MAX_UPDATES 12 /* piggybacked per packet: keeps datagrams < 1400 B */
#define SWIM_MAX_MEMBERS 1024

enum swim_kind {
    SWIM_PING = 1,
    SWIM_ACK = 2,
    SWIM_PING_REQ = 3,
    SWIM_JOIN = 4,
    SWIM_SYNC = 5,   /* a batch of member records (join answer, direct notices) */
    SWIM_NOTICE = 6, /* direct notice of updates; no answer expected */
};

struct swim_record {
    char name[MEMBER_NAME_MAX];
    char addr[MEMBER_ADDR_MAX];
    uint64_t incarnation;
    uint32_t heartbeat;
    enum member_state state;
};

struct swim_packet {
    enum swim_kind kind;
    char from_name[MEMBER_NAME_MAX];
    uint64_t from_incarnation;
    char from_addr[MEMBER_ADDR_MAX];
    uint64_t seq;
    char target_addr[MEMBER_ADDR_MAX];
    char origin_addr[MEMBER_ADDR_MAX];
    size_t n_updates;
    struct swim_record updates[SWIM_MAX_UPDATES];
};

struct swim_config {
    const char *name;
    const char *addr;
    uint64_t incarnation;
    uint32_t probe_interval_ms;  /* default 200 */
    uint32_t probe_timeout_ms;   /* default 80 */
    uint32_t suspect_timeout_ms; /* default 600 */
    uint32_t indirect_k;         /* default 3 */
    uint64_t seed;               /* PRNG seed: probe order, ping-req helpers */
    const char *const *join;     /* NULL-terminated seeds */
};

/* What the core asks of its environment. All calls happen inside swim_* calls. */
struct swim_env {
    void *ud;
    /* Send one packet to addr (best effort, like UDP). */
    void (*send)(void *ud, const char *addr, const struct swim_packet *pkt);
    /* A member changed state (a new member: old == new == MEMBER_ALIVE). */
    void (*event)(void *ud, const struct member_view *who, enum member_state old_state,
                  enum member_state new_state);
    /* A fresh incarnation for rejoining (wall-clock ms); must exceed the current. */
    uint64_t (*new_incarnation)(void *ud, uint64_t current);
};

struct swim;

/* Creates the core. Copies cfg; env must stay valid. Returns NULL on ENOMEM. */
struct swim *swim_create(const struct swim_config *cfg, const struct swim_env *env, uint64_t now);
void swim_destroy(struct swim *s);

/* Advances timers to `now` (monotonic ms). Call at least every 10-20 ms. */
void swim_tick(struct swim *s, uint64_t now);

/* Handles one packet that arrived from `from_addr`. */
void swim_receive(struct swim *s, uint64_t now, const char *from_addr, const struct swim_packet *pkt);

/* Tells every member that this node leaves; later ticks do nothing. */
void swim_leave(struct swim *s, uint64_t now);

/* Copies members (self first) into out; returns the total count. */
size_t swim_snapshot(const struct swim *s, uint64_t now, struct member_view *out, size_t max);
void swim_self(const struct swim *s, struct member_view *out);
size_t swim_count_state(const struct swim *s, enum member_state st);

/* Protocol counters, for tests and metrics. */
struct swim_stats {
    uint64_t probes, acks, indirect_probes, suspicions, refutations, failures_declared,
        rejoins, packets_sent, updates_applied;
};
const struct swim_stats *swim_stats(const struct swim *s);

#endif
