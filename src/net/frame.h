/* frame.h — the one wire header of IDunno, for TCP frames and UDP datagrams.
 *
 *   offset size field
 *   0      4    magic    0x49444E4F ("IDNO"), big-endian
 *   4      1    version  FRAME_VERSION
 *   5      1    flags    FRAME_F_*
 *   6      2    type     message type (enum Idunno__MsgType in proto/idunno.proto)
 *   8      8    req_id   request id chosen by the caller, echoed in the response;
 *                        0 for one-way messages
 *   16     4    length   body length in bytes
 *   20     4    crc      CRC-32C of bytes 0..19 followed by the body; 0 inside a
 *                        sealed record (seal.h), whose tag already authenticates
 *                        every byte of header and body, and not checked there
 *
 * All integers are big-endian. The body is the protobuf encoding of the message
 * named by `type` (proto/idunno.proto is the schema). Nothing is memcpy'd from a
 * struct. docs/protocol.md describes the message flows.
 */
#ifndef IDUNNO_NET_FRAME_H
#define IDUNNO_NET_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC 0x49444E4Fu
#define FRAME_VERSION 1
#define FRAME_HEADER_LEN 24
/* Largest body accepted on TCP. Bulk data moves in chunks far below this. */
#define FRAME_MAX_BODY (16u * 1024u * 1024u)
/* Largest UDP datagram we send or accept (header included). */
#define FRAME_MAX_DATAGRAM 1400u

enum frame_flags {
    FRAME_F_RESPONSE = 0x01, /* answers the request with the same req_id */
    FRAME_F_ERROR = 0x02,    /* body is an ErrorReply */
};

struct frame_header {
    uint8_t version;
    uint8_t flags;
    uint16_t type;
    uint64_t req_id;
    uint32_t length;
    uint32_t crc;
    /* Not on the wire: set by the reader (reader.h) when the frame came in a
     * tail record (seal.h), whose last sealed_tail body bytes are a payload
     * sealed end to end and not yet authenticated; 0 otherwise. */
    uint32_t sealed_tail;
};

/* Counters of frames that were rejected, by reason. Owned by whoever decodes. */
struct frame_stats {
    uint64_t bad_magic;
    uint64_t bad_version;
    uint64_t too_big;
    uint64_t bad_crc;
    uint64_t bad_body;     /* header fine, body did not decode as its type */
    uint64_t unknown_type; /* no handler for the type */
    uint64_t bad_auth;     /* sealed record, datagram or handshake failed authentication */
    uint64_t replayed;     /* sealed datagram seen before or outside the time window */
    uint64_t unsealed;     /* plaintext frame or datagram on a node that has a key */
    uint64_t over_limit;   /* connections closed by a transport bound (net.h) */
};

/* Writes the header for `body[0..len)` into out. */
void frame_encode_header(uint8_t out[FRAME_HEADER_LEN], uint16_t type, uint8_t flags,
                         uint64_t req_id, const void *body, uint32_t len);

/* Writes the header of a frame of `len` body bytes that will travel inside a
 * sealed record: crc 0. A CRC there would re-check what the record's
 * Poly1305 tag already proves, at the cost of one more pass over every bulk
 * byte on both ends (a 128 MB put crosses five connections). */
void frame_encode_header_sealed(uint8_t out[FRAME_HEADER_LEN], uint16_t type, uint8_t flags,
                                uint64_t req_id, uint32_t len);

/* Parses a header from buf (at least FRAME_HEADER_LEN bytes). Checks magic,
 * version and length against max_body; does not check the crc (the body may not
 * have arrived yet). Returns 0, ID_EPROTO (bad magic), ID_EVERSION or ID_ETOOBIG;
 * counts the failure in stats if stats is not NULL. `h` is unchanged on error. */
int frame_decode_header(const uint8_t *buf, uint32_t max_body, struct frame_header *h,
                        struct frame_stats *stats);

/* Checks the crc of a parsed header against its raw bytes and body.
 * Returns 0 or ID_ECRC (counted in stats if not NULL). */
int frame_check_crc(const struct frame_header *h, const uint8_t raw_header[FRAME_HEADER_LEN],
                    const void *body, struct frame_stats *stats);

/* Decodes one whole datagram: header, length equal to the bytes present, crc.
 * On success *body points into buf. Returns 0 or a negative ID_E* code. */
int frame_decode_datagram(const uint8_t *buf, size_t len, struct frame_header *h,
                          const uint8_t **body, struct frame_stats *stats);

#endif
