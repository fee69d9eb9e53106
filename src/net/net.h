/* net.h — the node's transport: framed RPC over TCP and datagrams over UDP, both
 * on PORT of --addr, driven by the node's libuv loop.
 *
 * Every message is a frame (frame.h) whose body is a protobuf message of
 * proto/idunno.proto. Any node can call any node; connections are opened on first
 * use, reused for later calls and closed when idle. A call has a request id and a
 * deadline; its callback runs exactly once, on the loop thread: with the response,
 * with the remote's ErrorReply, or with a local error (timeout, refused, closed).
 *
 * Bad frames (magic, version, length, crc, undecodable body, unknown type) are
 * counted in net_frame_stats() and dropped; a TCP connection that sent one is
 * closed. Nothing that arrives from the network can crash the node.
 *
 * With a cluster key (net_config.keys) every TCP connection starts with the
 * handshake of seal.h and carries sealed records, and every datagram is sealed;
 * what fails authentication is counted (bad_auth, replayed, unsealed) and
 * dropped, and its connection closed. Bounds hold either way: a handshake or a
 * frame left unfinished is closed after its timeout, one source address may
 * hold only so many connections, and the read buffers of all connections
 * together only so many bytes (over_limit counts what these closed).
 *
 * Threading: every function here must be called on the loop thread.
 */
#ifndef IDUNNO_NET_NET_H
#define IDUNNO_NET_NET_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/frame.h"
#include "net/seal.h"

struct net;
struct net_request;

struct net_config {
    const char *addr;         /* "HOST:PORT" to bind TCP and UDP on */
    uint32_t call_timeout_ms; /* default deadline for net_call with timeout 0 */
    uint32_t idle_close_ms;   /* outgoing connections idle this long are closed */
    size_t max_connections;   /* accepted connections beyond this are refused */
    /* The cluster key (seal.h), copied: every connection and datagram is then
     * sealed, and nothing unsealed is accepted. NULL: plaintext, as a cluster
     * started without a key speaks. */
    const struct seal_keyring *keys;
    uint32_t handshake_timeout_ms; /* a connection not sealed by then is closed (5 s) */
    uint32_t frame_timeout_ms;     /* a frame begun and not finished by then: closed (30 s) */
    size_t max_per_source;         /* accepted connections from one IP address (256) */
    size_t max_buffered;           /* read buffers of all connections together (256 MiB) */
};

/* Creates the transport on `loop`. Nothing is bound until net_start().
 * On success *out owns everything; free it with net_destroy(). */
int net_create(uv_loop_t *loop, const struct net_config *cfg, struct net **out);

/* Binds TCP and UDP on cfg->addr and starts accepting. Returns 0 or ID_E*
 * (e.g. the port is in use); the message is in net_errmsg(). */
int net_start(struct net *net);

/* Fails every pending call with ID_ESHUTDOWN, closes every handle and frees the
 * transport once libuv has released them; `done` (may be NULL) runs then. */
void net_destroy(struct net *net, void (*done)(void *ud), void *ud);

const char *net_errmsg(const struct net *net);
const char *net_addr(const struct net *net);
const struct frame_stats *net_frame_stats(const struct net *net);

/* Open TCP connections, both directions; *incoming (may be NULL) gets the
 * accepted ones. For stats and for tests of pooling and idle close. */
size_t net_open_connections(const struct net *net, size_t *incoming);

/* ---- serving requests ---------------------------------------------------- */

/* Called for each request frame of `type`. The handler owns `req` and must
 * answer it exactly once with net_reply*() — at once or later (for example
 * after a worker thread or another call finished). `body` is valid only during
 * the call. */
typedef void (*net_request_fn)(void *ud, struct net_request *req, const uint8_t *body, size_t len);

/* One handler per type; registering a type twice returns ID_EEXIST. */
int net_on_request(struct net *net, uint16_t type, net_request_fn fn, void *ud);

/* Answers `req` with a message of `type` and frees `req`. If the connection
 * closed meanwhile the answer is dropped and ID_ECLOSED returned (req is freed
 * all the same). An answer over FRAME_MAX_BODY is not sent: the caller gets an
 * ErrorReply ID_ETOOBIG saying so, and ID_ETOOBIG is returned. */
int net_reply(struct net_request *req, uint16_t type, const void *body, size_t len);
int net_reply_pb(struct net_request *req, uint16_t type, const ProtobufCMessage *msg);

/* Answers `req` with an ErrorReply (FRAME_F_ERROR). `leader` may be NULL.
 * A handler whose body did not decode answers with code ID_EPROTO: that counts
 * the frame as bad_body in net_frame_stats(). */
int net_reply_error(struct net_request *req, int code, const char *message, const char *leader);

/* net_reply_error with a printf-style message. */
int net_reply_errorf(struct net_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The peer's address as "HOST:PORT" of its connection (not its --addr). */
const char *net_request_peer(const struct net_request *req);

/* Payloads sealed end to end (seal.h). On a node with a key, a put's chunk
 * travels from the client to the replicas sealed once, inside records that
 * encrypt only the rest of the frame. A type whose handler opens such a
 * payload itself says so with net_accept_tail (after net_on_request); the
 * frame of any other type that ends in one is refused. In a handler,
 * net_request_sealed_tail() is the number of the body's last bytes that are
 * such a payload, not yet authenticated (0: none). net_keys() is the node's
 * keyring, NULL without a key. */
int net_accept_tail(struct net *net, uint16_t type);
uint32_t net_request_sealed_tail(const struct net_request *req);
const struct seal_keyring *net_keys(const struct net *net);

/* ---- calling ------------------------------------------------------------- */

/* The outcome of a call. status 0: `type`/`body` are the response. Otherwise a
 * negative ID_E*: for a remote ErrorReply, its code, with `errmsg` its text and
 * `leader` its hint; for a local failure (ID_ETIMEDOUT, ID_ECONNREFUSED,
 * ID_ECLOSED, ID_ESHUTDOWN) errmsg says what happened. Pointers are valid only
 * during the callback. */
struct net_result {
    int status;
    uint16_t type;
    const uint8_t *body;
    size_t len;
    const char *errmsg;
    const char *leader;
};

typedef void (*net_response_fn)(void *ud, const struct net_result *res);

/* Sends a request to `addr` ("HOST:PORT"); `fn` runs exactly once, later, on
 * the loop (never from inside net_call); fn NULL sends and forgets the answer. timeout_ms 0 means the default.
 * Returns 0, or a negative ID_E* if the call could not even be queued (then
 * `fn` never runs): ID_EINVAL for a bad address, ID_ETOOBIG, ID_ESHUTDOWN,
 * ID_ENOMEM, or ID_EBUSY while the peer leaves 64 MiB of ours unread. */
int net_call(struct net *net, const char *addr, uint16_t type, const void *body, size_t len,
             uint32_t timeout_ms, net_response_fn fn, void *ud);
int net_call_pb(struct net *net, const char *addr, uint16_t type, const ProtobufCMessage *msg,
                uint32_t timeout_ms, net_response_fn fn, void *ud);
/* net_call whose body ends in a sealed payload of `tail` bytes (see
 * net_accept_tail): the record around it encrypts only the rest. Only on a
 * node with a key; ID_EINVAL otherwise, or for a tail that cannot be one. */
int net_call_tail(struct net *net, const char *addr, uint16_t type, const void *body, size_t len,
                  uint32_t tail, uint32_t timeout_ms, net_response_fn fn, void *ud);

/* ---- datagrams (gossip) -------------------------------------------------- */

typedef void (*net_datagram_fn)(void *ud, const char *from_addr, const uint8_t *body, size_t len);

int net_on_datagram(struct net *net, uint16_t type, net_datagram_fn fn, void *ud);

/* Sends one datagram; the body must fit FRAME_MAX_DATAGRAM with the header.
 * Fire and forget: returns 0 once queued, ID_ETOOBIG, or ID_EINVAL for a bad
 * address. Bytes sent are counted in net_udp_bytes_sent(). */
int net_send_datagram(struct net *net, const char *addr, uint16_t type, const void *body,
                      size_t len);
uint64_t net_udp_bytes_sent(const struct net *net);
uint64_t net_udp_bytes_received(const struct net *net);

/* Splits "HOST:PORT" into a sockaddr (numeric IPv4/IPv6 or "localhost").
 * Returns 0 or ID_EINVAL. */
int net_parse_addr(const char *addr, struct sockaddr_storage *out);

/* "HOST:PORT" -> "HOST:(PORT+delta)" (Raft is PORT+1, HTTP PORT+2). Returns 0,
 * or ID_EINVAL when addr has no port or the result is outside 1..65535 or
 * does not fit out. */
int net_shift_port(const char *addr, int delta, char *out, size_t len);

#endif
