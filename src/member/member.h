/* member.h — membership as the rest of the node sees it: the libuv glue around the
 * pure SWIM core (swim.h). It sends and receives gossip through net.h datagrams,
 * drives the core's timers, and tells subscribers when members join, are
 * suspected, fail or leave.
 *
 * A member's identity is its name plus its incarnation (the node's start time in
 * ms since the epoch), so a restarted node is a new member.
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_MEMBER_MEMBER_H
#define IDUNNO_MEMBER_MEMBER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct net;
struct member;

enum member_state {
    MEMBER_ALIVE = 0,
    MEMBER_SUSPECT = 1,
    MEMBER_FAILED = 2,
    MEMBER_LEFT = 3,
};

#define MEMBER_NAME_MAX 64
#define MEMBER_ADDR_MAX 64

struct member_view {
    char name[MEMBER_NAME_MAX];
    char addr[MEMBER_ADDR_MAX]; /* "HOST:PORT", the node's --addr */
    uint64_t incarnation;       /* start time, ms since the epoch: the id with name */
    enum member_state state;
    uint64_t since_ms; /* monotonic ms when it entered this state */
};

struct member_config {
    const char *name;
    const char *addr;
    uint64_t incarnation;
    const char *const *join; /* NULL-terminated list of "HOST:PORT", may be empty */
    /* Protocol timing; 0 picks the defaults of swim.h (tuned for the 1 s / 2 s
     * detection targets in docs/membership.md and docs/benchmarks.md). */
    uint32_t probe_interval_ms;
    uint32_t probe_timeout_ms;
    uint32_t suspect_timeout_ms;
};

/* Makes the member and registers its datagram handler on net; nothing is sent
 * until member_start. cfg and its strings are copied. Returns 0, ID_ENOMEM,
 * or the error of registering the handler. */
int member_create(uv_loop_t *loop, struct net *net, const struct member_config *cfg,
                  struct member **out);

/* Starts probing and joins through cfg->join (tries each until one answers, and
 * keeps retrying in the background while it knows nobody). */
int member_start(struct member *m);

/* Announces a graceful leave, then `done` runs once the announcement has had a
 * chance to spread (bounded wait). */
void member_leave(struct member *m, void (*done)(void *ud), void *ud);

void member_destroy(struct member *m);

/* Copies up to `max` members (self included, every state) into out; returns how
 * many there are in all (may exceed max). */
size_t member_snapshot(const struct member *m, struct member_view *out, size_t max);

/* The members that are alive, one per name (its newest incarnation), self
 * first; up to max. Returns how many were written. */
size_t member_alive(const struct member *m, struct member_view *out, size_t max);

/* Self as the others see it. */
void member_self(const struct member *m, struct member_view *out);

/* Called on the loop for every state change of any member (a new member appears
 * as old_state == new_state == MEMBER_ALIVE). */
typedef void (*member_event_fn)(void *ud, const struct member_view *who,
                                enum member_state old_state, enum member_state new_state);
int member_subscribe(struct member *m, member_event_fn fn, void *ud);

const char *member_state_name(enum member_state s);

/* Gossip datagrams that did not decode (counted and dropped). */
uint64_t member_bad_packets(const struct member *m);

/* Protocol counters of this node, for `idunno stats`. */
struct member_stats {
    unsigned health;            /* Lifeguard local health score, 0 = healthy */
    uint64_t suspicions;        /* suspicions this node raised */
    uint64_t confirmations;     /* others' suspicions its own checks confirmed */
    uint64_t refutations;       /* times it heard itself suspected and refuted */
    uint64_t failures_declared; /* members it declared failed */
    uint64_t stalls;            /* its loop stalled (ticks > 100 ms apart) */
};
void member_stats(const struct member *m, struct member_stats *out);

#endif
