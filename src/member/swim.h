/* swim.h — the SWIM membership protocol as a pure core: packets and `now` in,
 * packets and membership events out. No sockets, no clocks, no threads; the
 * libuv glue (member.c) and the unit tests drive it the same way, and with the
 * same seed and the same inputs it sends the same packets.
 *
 * Protocol (docs/membership.md has the reasoning and the timing budget):
 *  - every probe interval a node pings the next member of a shuffled
 *    round-robin order; without an ack after the probe timeout it pings again
 *    and asks `indirect_k` others to ping the target for it (ping-req); a helper
 *    that gets no answer either says so (nack);
 *  - without any ack by the end of the interval it suspects the target: it tells
 *    the target (so it can refute) and every member (so they can check);
 *  - a member that hears of a suspicion probes the suspect itself at once; if
 *    that fails too it confirms the suspicion to the member that raised it;
 *  - Lifeguard suspicion: the suspecter declares the member failed after a
 *    timeout that starts long (suspect_timeout_ms * suspect_max_mult) and
 *    shrinks towards suspect_timeout_ms as independent confirmations arrive; a
 *    failure is sent to every member at once and gossiped;
 *  - Lifeguard local health: failed probes with missing nacks, having to refute,
 *    and stalls of this node's own loop raise a health score that stretches its
 *    own probe and suspicion timeouts, so a slow node does not accuse healthy
 *    ones; successful probes lower it again;
 *  - a member that hears itself suspected raises its heartbeat (its refutation
 *    counter, distinct from the incarnation) and tells everyone it is alive; one
 *    that hears itself declared failed rejoins as a new incarnation; one that
 *    hears itself said to have left, or hears of a newer incarnation of its
 *    own name, takes a newer incarnation and tells everyone (nobody but the
 *    member itself may end or replace its identity);
 *  - news is bounded: incarnations at most a minute ahead of our clock,
 *    heartbeats at most SWIM_HEARTBEAT_STEP above the known one, names and
 *    addresses printable (swim_name_valid); anything else is refused;
 *  - updates ride on pings, acks and ping-reqs (piggybacking), each sent
 *    lambda * ceil(log2(n + 2)) times, as many as fit the datagram;
 *  - a joining node asks every seed; the first to answer sends its whole table
 *    in datagram-sized pieces and tells every member about the newcomer.
 *
 * Identity: (name, incarnation), the incarnation being the node's start time. A
 * newer incarnation of a known name replaces the old member, which is reported
 * failed (or left) while the new one is reported joined.
 */
#ifndef IDUNNO_MEMBER_SWIM_H
#define IDUNNO_MEMBER_SWIM_H

#include <stddef.h>
#include <stdint.h>

#include "member/member.h"

/* A packet's encoded size never exceeds this: FRAME_MAX_DATAGRAM less the
 * frame header. The core counts bytes as it piggybacks, so long names simply
 * mean fewer updates per packet. */
#define SWIM_MAX_PACKET_BYTES 1376u
#define SWIM_MAX_UPDATES 24 /* records per packet (the byte budget binds first) */
#define SWIM_MAX_MEMBERS 1024

enum swim_kind {
    SWIM_PING = 1,
    SWIM_ACK = 2,
    SWIM_PING_REQ = 3,
    SWIM_JOIN = 4,
    SWIM_SYNC = 5,   /* a batch of member records (answer to a join) */
    SWIM_NOTICE = 6, /* direct notice of updates; no answer expected */
    SWIM_NACK = 7,   /* ping-req helper: the target did not answer me either */
};

struct swim_record {
    char name[MEMBER_NAME_MAX];
    char addr[MEMBER_ADDR_MAX];
    uint64_t incarnation;
    uint32_t heartbeat; /* refutation counter; only the member itself raises it */
    enum member_state state;
    /* SUSPECT: the member that raised or confirmed the suspicion; FAILED: the
     * member that declared it. Empty otherwise. */
    char suspecter[MEMBER_NAME_MAX];
};

struct swim_packet {
    enum swim_kind kind;
    char from_name[MEMBER_NAME_MAX];
    uint64_t from_incarnation;
    char from_addr[MEMBER_ADDR_MAX];
    uint64_t seq;                      /* probe id: acks and nacks echo it */
    char target_addr[MEMBER_ADDR_MAX]; /* ping-req: whom to probe */
    char origin_addr[MEMBER_ADDR_MAX]; /* unused today; kept for the schema */
    size_t n_updates;
    struct swim_record updates[SWIM_MAX_UPDATES];
};

/* Zero in any field picks the default shown. */
struct swim_config {
    const char *name;
    const char *addr;
    uint64_t incarnation;
    uint32_t probe_interval_ms;     /* 200 */
    uint32_t probe_timeout_ms;      /* 80: direct ping, then ping-req */
    uint32_t suspect_timeout_ms;    /* 400: a fully confirmed suspicion */
    uint32_t suspect_max_mult;      /* 4: an unconfirmed one lasts 4 * 400 ms */
    uint32_t suspect_confirmations; /* 3: confirmations for the shortest timeout */
    uint32_t indirect_k;            /* 3 */
    uint32_t gossip_lambda;         /* 3: retransmissions = lambda*ceil(log2(n+2)) */
    uint32_t health_max;            /* 8: timeouts stretch up to (1 + 8) times */
    uint32_t stall_ms;              /* 100: a tick later than this is a stall */
    uint64_t seed;                  /* PRNG seed: probe order, helpers */
    const char *const *join;        /* NULL-terminated seeds, may be NULL */
};

/* What the core asks of its environment. All calls happen inside swim_* calls;
 * pointers passed to them are valid only during the call. */
struct swim_env {
    void *ud;
    /* Send one packet to addr (best effort, like UDP). */
    void (*send)(void *ud, const char *addr, const struct swim_packet *pkt);
    /* A member changed state (a new member: old == new == MEMBER_ALIVE). `by`
     * names the member whose report caused it (suspecter, declarer), or is "". */
    void (*event)(void *ud, const struct member_view *who, enum member_state old_state,
                  enum member_state new_state, const char *by);
    /* A fresh incarnation for rejoining (wall-clock ms); must exceed the current.
     * May be NULL (then current + 1). */
    uint64_t (*new_incarnation)(void *ud, uint64_t current);
    /* The wall clock (ms since the epoch), which bounds the incarnations we
     * accept: an incarnation is a start time, so one more than
     * SWIM_INCARNATION_AHEAD_MS in the future is forged (or from a broken
     * clock). Required. */
    uint64_t (*wall_ms)(void *ud);
};

/* Incarnations this far ahead of our clock are refused (clock skew allowance). */
#define SWIM_INCARNATION_AHEAD_MS 60000u
/* A member's refutation counter never moves by more than this at once: only
 * the member raises it, by one per refutation. A larger jump is forged. */
#define SWIM_HEARTBEAT_STEP 1000u

/* 1 if name is a valid member name: 1..MEMBER_NAME_MAX-1 characters from
 * letters, digits, '-', '_' and '.' (what idunnod --name accepts). */
int swim_name_valid(const char *name);
/* 1 if addr is printable ASCII without spaces, and not empty. */
int swim_addr_valid(const char *addr);

struct swim;

/* Creates the core. Copies cfg (strings included); env is copied. Returns NULL
 * on ENOMEM, or if env lacks send or wall_ms, or cfg's name is not valid. Nothing is sent before the first swim_tick(). */
struct swim *swim_create(const struct swim_config *cfg, const struct swim_env *env, uint64_t now);
void swim_destroy(struct swim *s);

/* Advances timers to `now` (monotonic ms). Call every 10 ms or so: a gap longer
 * than stall_ms is taken as a stall of this node (its deadlines move by the gap
 * and its health score rises), not as silence of the others. */
void swim_tick(struct swim *s, uint64_t now);

/* Handles one decoded packet that arrived from `from_addr`, its real source
 * (the glue passes the packet's own from_addr when both name the same
 * endpoint). Every answer goes to the real source, never to an address
 * written inside the packet, and an address is learned only from a packet
 * that came from it: the group is no reflector. */
void swim_receive(struct swim *s, uint64_t now, const char *from_addr,
                  const struct swim_packet *pkt);

/* Tells every member that this node leaves; later ticks and packets do nothing. */
void swim_leave(struct swim *s, uint64_t now);

/* Copies members (self first) into out, up to max; returns the total count. */
size_t swim_snapshot(const struct swim *s, uint64_t now, struct member_view *out, size_t max);
void swim_self(const struct swim *s, struct member_view *out);
size_t swim_count_state(const struct swim *s, enum member_state st);

/* Local health score, 0 (healthy) .. health_max. */
unsigned swim_health(const struct swim *s);

/* An upper bound of a record's / a packet's protobuf size (swim_codec.c never
 * produces more; test_swim checks it). */
size_t swim_record_wire_bound(const struct swim_record *r);
size_t swim_packet_wire_bound(const struct swim_packet *p);

/* Protocol counters, for tests and metrics. */
struct swim_stats {
    uint64_t probes, acks, indirect_probes, nacks_sent, nacks_received, checks, confirmations,
        suspicions, refutations, failures_declared, rejoins, stalls, packets_sent, updates_applied,
        records_refused, packets_refused, reincarnations;
};
const struct swim_stats *swim_stats(const struct swim *s);

#endif
