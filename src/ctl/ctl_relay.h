/* ctl_relay.h — the raft transport on PORT+1: libraft reads and writes its
 * messages on one end of a local socket pair; a relay owns the other end and
 * the real TCP connection. On the wire: the cluster key's handshake and sealed
 * records (seal.h) when there is a key, then our own bounded handshake
 * (raft_wire.h: id and address), then libraft's bytes. The accepting side
 * checks every message (raft_wire_scan_feed) before libraft sees it. The whole
 * handshake has a deadline and a byte bound; connections per source IP are
 * bounded. docs/control-plane.md, "Transport", and docs/security.md. */
#ifndef IDUNNO_CTL_CTL_RELAY_H
#define IDUNNO_CTL_CTL_RELAY_H

#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>
#include <uv.h>

#include "ctl/raft_wire.h"
#include "net/seal.h"

#define CTL_RELAY_HANDSHAKE_MS 3000
#define CTL_RELAY_MAX_PER_SOURCE 32
/* Bytes queued towards one side before the other side stops being read. */
#define CTL_RELAY_QUEUE_MAX (1u << 20)
/* Plaintext per sealed record. */
#define CTL_RELAY_CHUNK (64u * 1024u)

/* What the relay counts; read by the node's metrics. */
struct ctl_relay_stats {
    uint64_t bad_auth;      /* wrong key, or a record that fails to open */
    uint64_t bad_handshake; /* garbage, too long an address, … */
    uint64_t timed_out;     /* handshake not finished in time */
    uint64_t over_source;   /* refused: too many connections from one IP */
    uint64_t bad_frame;     /* a message refused by raft_wire (lengths) */
    uint64_t term_jump;     /* a term too far ahead from a non-voter */
};

/* Fills pol for a message from raft id `id` whose TCP peer is `peer_ip`. */
typedef void (*ctl_relay_policy_fn)(void *ud, uint64_t id, const char *peer_ip,
                                    struct raft_wire_policy *pol);

struct ctl_relay {
    struct raft_uv_transport outer; /* handed to raft_uv_init */
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    uint64_t id;
    char address[RAFT_WIRE_ADDR_MAX];
    const struct seal_keyring *keys; /* NULL: plaintext */
    unsigned rto_min_us;
    int warned;
    ctl_relay_policy_fn policy;
    void *policy_ud;
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    int closing;
    struct relay_conn *conns; /* every live connection */
    struct ctl_relay_stats stats;
};

/* Sets up the transport in caller-owned memory; keys may be NULL (plaintext)
 * and must outlive it. Nothing to free after: closing the raft io closes the
 * transport, its listener and its connections. */
void ctl_relay_init(struct ctl_relay *t, uv_loop_t *loop, unsigned rto_min_us,
                    const struct seal_keyring *keys, ctl_relay_policy_fn policy, void *ud);

#endif
