/* seal.h — the cluster key and what it protects on the wire: the keyring file,
 * the TCP handshake, sealed TCP records and sealed UDP datagrams. Pure: no
 * sockets, no clocks (callers pass `now`), so unit tests and the fuzzer drive it
 * with arbitrary bytes. Every primitive is libsodium's, except that records are
 * sealed through OpenSSL's ChaCha20-Poly1305 where it can (the same RFC 8439
 * construction, faster); docs/security.md gives the design and the threat model.
 *
 * Keyring: a text file of one or more keys, one per line as 64 hex digits ('#'
 * comments and blank lines ignored). The first key seals everything sent; a
 * receiver accepts any key of its ring (found by the key id every handshake and
 * datagram carries), so a key is rotated by adding the new one to every ring
 * second, then moving it first everywhere, then removing the old one.
 *
 * TCP: the connecting side sends a hello (fresh nonce), the accepting side a
 * reply (its fresh nonce and a proof that it holds the key). Both derive one
 * key per direction from the cluster key and both nonces. Then every frame
 * (frame.h, header and body) travels as one record:
 *
 *   len u32 BE (frame bytes) | frame encrypted (ChaCha20-Poly1305-IETF) | tag 16
 *
 * with the length as associated data and the record's number in its direction
 * as the nonce, so a record replayed, reordered, cut or moved to another
 * connection fails authentication.
 *
 * UDP: each datagram is sealed on its own with XChaCha20-Poly1305 and a random
 * nonce; inside, before the frame, the sender's random id, its sequence number
 * and its wall clock. A receiver refuses a datagram older than the window and,
 * per sender, one whose sequence number it has seen (a 64-wide sliding window).
 */
#ifndef IDUNNO_NET_SEAL_H
#define IDUNNO_NET_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_LEN 32
#define SEAL_KEY_ID_LEN 4
#define SEAL_MAX_KEYS 8
#define SEAL_NONCE_LEN 32 /* handshake nonces */
#define SEAL_TAG_LEN 16

/* The handshake: hello from the connecting side, reply from the accepting one.
 *   hello: magic "IDNH" | version 2 | 3 zero bytes | key id 4 | nonce 32
 *   reply: the same 44 bytes of the acceptor (its nonce) | proof 32 */
#define SEAL_HELLO_MAGIC 0x49444E48u
#define SEAL_VERSION 2
#define SEAL_HELLO_LEN 44
#define SEAL_REPLY_LEN (SEAL_HELLO_LEN + 32)

/* A TCP record around a frame of n bytes is n + SEAL_RECORD_OVERHEAD. */
#define SEAL_RECORD_LEN_BYTES 4
#define SEAL_RECORD_OVERHEAD (SEAL_RECORD_LEN_BYTES + SEAL_TAG_LEN)

/* A UDP datagram: magic "IDNU" | key id 4 | nonce 24 | sealed(sender 8 |
 * seq 8 | wall ms 8 | frame) | tag 16. */
#define SEAL_DGRAM_MAGIC 0x49444E55u
#define SEAL_DGRAM_OVERHEAD (4 + SEAL_KEY_ID_LEN + 24 + 24 + SEAL_TAG_LEN)
/* A datagram whose wall clock is further than this from the receiver's is
 * refused: the replay window, and the clock skew tolerated between hosts. */
#define SEAL_DGRAM_WINDOW_MS 60000u
/* Senders whose replay windows a receiver keeps (more live senders than this
 * evicts the longest silent one; see docs/security.md). */
#define SEAL_REPLAY_SENDERS 512

struct seal_keyring {
    size_t n;
    uint8_t key[SEAL_MAX_KEYS][SEAL_KEY_LEN];
    uint8_t id[SEAL_MAX_KEYS][SEAL_KEY_ID_LEN];
    uint8_t udp_key[SEAL_MAX_KEYS][SEAL_KEY_LEN];     /* derived: datagrams only */
    uint8_t payload_key[SEAL_MAX_KEYS][SEAL_KEY_LEN]; /* derived: payloads only */
};

/* One direction of a connection: its key and the number of the next record. */
struct seal_dir {
    uint8_t key[SEAL_KEY_LEN];
    uint64_t seq;
};

struct seal_session {
    struct seal_dir tx, rx;
};

/* Initialises libsodium (idempotent). Returns 0 or ID_EINTERNAL. */
int seal_init(void);

/* Parses keyring text. Returns 0, or ID_EINVAL with the reason in err. */
int seal_keyring_parse(const char *text, size_t len, struct seal_keyring *kr, char *err,
                       size_t errlen);

/* Reads a keyring file; refuses one that others than its owner may read.
 * Returns 0, or ID_E* with the reason (naming the file) in err. */
int seal_keyring_load(const char *path, struct seal_keyring *kr, char *err, size_t errlen);

/* Writes a keyring file (mode 0600) whose first key is a fresh random one,
 * followed by the keys of `keep` (may be NULL). Refuses to replace an existing
 * file unless `force`. Returns 0 or ID_E* with the reason in err. */
int seal_keygen_file(const char *path, const struct seal_keyring *keep, int force, char *err,
                     size_t errlen);

void seal_keyring_wipe(struct seal_keyring *kr);

/* The HTTP bearer token of key i of the ring (i < kr->n): a subkey of its own
 * context, printed as 64 hex digits by `idunno token` and required by the
 * node's HTTP endpoint for every state-changing request (docs/http.md). */
#define SEAL_HTTP_TOKEN_LEN 32
void seal_http_token(const struct seal_keyring *kr, size_t i, uint8_t out[SEAL_HTTP_TOKEN_LEN]);

/* ---- TCP handshake ------------------------------------------------------- */

/* The connecting side: a hello with a fresh nonce, sent first. */
void seal_hello(const struct seal_keyring *kr, uint8_t hello[SEAL_HELLO_LEN]);

/* The accepting side: checks a hello and writes the reply and the session.
 * Returns 0, ID_EPROTO (not a hello), ID_EVERSION or ID_EAUTH (a key this
 * ring does not hold). */
int seal_accept(const struct seal_keyring *kr, const uint8_t hello[SEAL_HELLO_LEN],
                uint8_t reply[SEAL_REPLY_LEN], struct seal_session *s);

/* The connecting side: checks the reply to its hello (the acceptor's proof
 * that it holds the key) and writes the session. Returns 0, ID_EPROTO,
 * ID_EVERSION or ID_EAUTH. */
int seal_finish(const struct seal_keyring *kr, const uint8_t hello[SEAL_HELLO_LEN],
                const uint8_t reply[SEAL_REPLY_LEN], struct seal_session *s);

/* ---- TCP records --------------------------------------------------------- */

/* Seals, in place, the frame of `len` bytes at rec + SEAL_RECORD_LEN_BYTES:
 * writes the length before it and the tag after it (rec must have
 * len + SEAL_RECORD_OVERHEAD bytes). */
void seal_record(struct seal_dir *tx, uint8_t *rec, uint32_t len);

/* The frame length a record announces (its first 4 bytes). */
uint32_t seal_record_frame_len(const uint8_t rec[SEAL_RECORD_LEN_BYTES]);

/* Opens, in place, a whole record of `len` frame bytes (as announced): the
 * frame is then at rec + SEAL_RECORD_LEN_BYTES. Returns 0 or ID_EAUTH. */
int seal_open_record(struct seal_dir *rx, uint8_t *rec, uint32_t len);

/* ---- records whose frame ends in a sealed payload ------------------------ */

/* A put's chunk is sealed once, by the client, as a payload (below), and
 * opened only by the replicas that store it: the gateway between them
 * forwards it without touching it. The frame carrying it travels in a record
 * that encrypts only the frame's head and binds the payload by its tag:
 *
 *   len u32 BE | F_TAIL | tail u32 BE | head (len - tail bytes) encrypted |
 *   tail (the payload, as it is) | tag 16
 *
 * with associated data the 8 length bytes and the payload's last 16 bytes
 * (its own tag). Bit 31 of a record's length is F_TAIL; a reader that does
 * not expect such records sees a length over any limit and refuses it. */
#define SEAL_RECORD_F_TAIL 0x80000000u
#define SEAL_RECORD_TAIL_PREFIX (SEAL_RECORD_LEN_BYTES + 4)
#define SEAL_RECORD_TAIL_OVERHEAD (SEAL_RECORD_TAIL_PREFIX + SEAL_TAG_LEN)

/* Seals, in place, the frame of `len` bytes at rec + SEAL_RECORD_TAIL_PREFIX
 * whose last `tail` bytes are a sealed payload (SEAL_PAYLOAD_OVERHEAD <= tail
 * <= len); rec has len + SEAL_RECORD_TAIL_OVERHEAD bytes. */
void seal_record_tail(struct seal_dir *tx, uint8_t *rec, uint32_t len, uint32_t tail);

/* Whether the record starting at rec (its first 4 bytes) has a tail. */
int seal_record_is_tail(const uint8_t rec[SEAL_RECORD_LEN_BYTES]);

/* The frame and tail lengths a tail record announces (its first 8 bytes).
 * Returns 0, or ID_EPROTO if the tail cannot be a payload of that frame. */
int seal_record_tail_check(const uint8_t rec[SEAL_RECORD_TAIL_PREFIX], uint32_t *len,
                           uint32_t *tail);

/* Opens, in place, a whole tail record: the frame is then at
 * rec + SEAL_RECORD_TAIL_PREFIX, its head decrypted and its tail still the
 * sealed payload. Returns 0 or ID_EAUTH. */
int seal_open_record_tail(struct seal_dir *rx, uint8_t *rec, uint32_t len, uint32_t tail);

/* ---- payloads sealed end to end ------------------------------------------ */

/* A payload: key id 4 | salt 16 | ciphertext | tag 16. The cipher is
 * ChaCha20-Poly1305 under a key used for this payload only (BLAKE2b of the
 * key's payload subkey and the random salt), the associated data the key id,
 * the salt and the payload's offset in its file, 8 bytes big-endian (so a
 * chunk cannot be moved to another place of the file). */
#define SEAL_PAYLOAD_SALT 16
#define SEAL_PAYLOAD_HEAD (SEAL_KEY_ID_LEN + SEAL_PAYLOAD_SALT)
#define SEAL_PAYLOAD_OVERHEAD (SEAL_PAYLOAD_HEAD + SEAL_TAG_LEN)

/* Seals, in place, the len plaintext bytes at p + SEAL_PAYLOAD_HEAD with the
 * first key of the ring (p has len + SEAL_PAYLOAD_OVERHEAD bytes). */
void seal_payload(const struct seal_keyring *kr, uint64_t offset, uint8_t *p, size_t len);

/* Opens the payload p[0..n) into out (n - SEAL_PAYLOAD_OVERHEAD bytes; out
 * may be p + SEAL_PAYLOAD_HEAD, or not overlap p). Returns 0, ID_EPROTO (too
 * short) or ID_EAUTH (forged, moved, or a key this ring does not hold: out
 * is then wiped). */
int seal_open_payload(const struct seal_keyring *kr, uint64_t offset, const uint8_t *p, size_t n,
                      uint8_t *out);

/* ---- UDP datagrams ------------------------------------------------------- */

struct seal_sender {
    uint64_t id;  /* random per process */
    uint64_t seq; /* of the next datagram */
};

struct seal_replay_entry {
    uint64_t sender;
    uint64_t top;     /* highest sequence number accepted */
    uint64_t seen;    /* bit i: top - i accepted */
    uint64_t wall_ms; /* newest sender clock accepted */
};

struct seal_replay {
    struct seal_replay_entry e[SEAL_REPLAY_SENDERS];
    size_t n;
};

/* A fresh sender: a random id and sequence numbers from 1, so receivers keep
 * a new replay window for it (every process start is a new sender). */
void seal_sender_init(struct seal_sender *s);

/* Seals `frame` into out (room for len + SEAL_DGRAM_OVERHEAD) and returns the
 * datagram's length. */
size_t seal_datagram(const struct seal_keyring *kr, struct seal_sender *snd, uint64_t wall_ms,
                     const uint8_t *frame, size_t len, uint8_t *out);

/* Opens a datagram in place: on success *frame and *frame_len are the frame inside
 * buf. Returns 0, ID_EPROTO (not a sealed datagram), ID_EAUTH (forged, or a
 * key this ring does not hold) or ID_EEXIST (a replay, or too old or new). */
int seal_open_datagram(const struct seal_keyring *kr, struct seal_replay *rp, uint64_t wall_ms,
                       uint8_t *buf, size_t len, const uint8_t **frame, size_t *frame_len);

#endif
