/* raft_wire.h — a pure, streaming checker of libraft 0.22's TCP wire format,
 * for the relay in front of the raft port (PORT+1). Bytes in, a decision out;
 * no I/O, no allocation.
 *
 * libraft's stock handshake (what a connecting node sends first):
 *   u64 protocol (1), u64 raft id, u64 address length L, L bytes of address,
 *   NUL-padded to a multiple of 8 by the sender.
 * Then a stream of messages, each:
 *   u64 type (bits 0-15: RAFT_APPEND_ENTRIES .. RAFT_TIMEOUT_NOW; bits 16-31:
 *   the message's format version, e.g. 2 for a RequestVote with flags; the
 *   upper half zero), u64 header length H,
 *   H bytes of header, then a payload whose length the header gives
 *   (AppendEntries: sum of its entries' sizes; InstallSnapshot: its data size).
 * All integers are little-endian. Every header starts with the sender's term.
 *
 * libraft trusts these lengths: it allocates whatever the handshake's address
 * length says, reads a header shorter than its type needs, and decodes an
 * InstallSnapshot configuration of any claimed length. This checker refuses
 * each of those before libraft sees the bytes, and refuses a term far beyond
 * the node's own from a sender that is not a verified voter
 * (docs/security.md, "The raft port").
 */
#ifndef IDUNNO_CTL_RAFT_WIRE_H
#define IDUNNO_CTL_RAFT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_WIRE_PROTOCOL 1
#define RAFT_WIRE_HELLO_FIXED 24
/* Longest address (with its NUL padding) a handshake may claim. */
#define RAFT_WIRE_ADDR_MAX 256
/* Largest header: an AppendEntries of 65,536 entries (16 bytes each). */
#define RAFT_WIRE_MAX_HEADER (40u + 16u * 65536u)
/* Largest InstallSnapshot configuration, and largest payload of any message. */
#define RAFT_WIRE_MAX_CONF (64u * 1024u)
#define RAFT_WIRE_MAX_PAYLOAD (256ull * 1024u * 1024u)
/* How far beyond the node's own term a non-voter's message may go (see
 * docs/security.md for why 1000). */
#define RAFT_WIRE_TERM_SLACK 1000u

/* A decoded handshake. addr is NUL-terminated, printable ASCII. */
struct raft_wire_hello {
    uint64_t id;
    char addr[RAFT_WIRE_ADDR_MAX + 1];
};

/* Decodes a handshake from the first len bytes received. Returns the number
 * of bytes it took (> 0) when complete, 0 when more bytes are needed, or a
 * negative ID_E* code: ID_EVERSION (protocol), ID_ETOOBIG (address length),
 * ID_EPROTO (id 0, address empty, not NUL-terminated or not printable). */
long raft_wire_hello_decode(const uint8_t *buf, size_t len, struct raft_wire_hello *out);

/* Encodes a handshake for id/addr into out (at least
 * RAFT_WIRE_HELLO_FIXED + RAFT_WIRE_ADDR_MAX bytes). Returns its length or
 * ID_ETOOBIG when addr does not fit. */
long raft_wire_hello_encode(uint64_t id, const char *addr, uint8_t *out);

/* What the receiving node knows when it checks a message. */
struct raft_wire_policy {
    uint64_t current_term;
    bool verified_voter; /* sender's id is a voter here and its IP matches */
};

enum raft_wire_verdict {
    RAFT_WIRE_OK = 0,
    RAFT_WIRE_BAD_TYPE,    /* unknown message type */
    RAFT_WIRE_BAD_HEADER,  /* header length wrong for its type, or too big */
    RAFT_WIRE_BAD_ENTRY,   /* AppendEntries count/type inconsistent */
    RAFT_WIRE_BAD_CONF,    /* InstallSnapshot configuration length insane */
    RAFT_WIRE_BAD_PAYLOAD, /* payload larger than RAFT_WIRE_MAX_PAYLOAD */
    RAFT_WIRE_TERM_JUMP,   /* term too far ahead from a non-voter */
};

/* Streaming state for one direction of one connection (zero-initialise). */
struct raft_wire_scan {
    int state;
    uint8_t acc[16];
    unsigned have; /* bytes in acc */
    uint64_t type;
    uint64_t hlen; /* header length */
    uint64_t hoff; /* bytes of header seen */
    uint64_t n_entries;
    uint64_t conf_len;
    uint64_t payload;  /* payload length, summed while reading the header */
    uint64_t left;     /* payload bytes still to skip */
    uint64_t term;     /* term of the current message (0 until read) */
    uint64_t messages; /* messages fully seen */
};

/* Feeds n bytes. Returns RAFT_WIRE_OK when all of them are acceptable so far,
 * otherwise the first refusal (the connection must be dropped; the scan is
 * then stuck on that verdict). *term_out, when non-NULL, gets the highest
 * term seen in this call (0 if none). */
enum raft_wire_verdict raft_wire_scan_feed(struct raft_wire_scan *s, const uint8_t *p, size_t n,
                                           const struct raft_wire_policy *pol, uint64_t *term_out);

/* A short name for a verdict, for logs and metric labels. */
const char *raft_wire_verdict_name(enum raft_wire_verdict v);

#endif
