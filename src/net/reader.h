/* reader.h — reassembles frames from a TCP byte stream, plain or sealed (each
 * frame inside one record of seal.h). Pure: no sockets, so the fuzzer and the
 * unit tests drive it with arbitrary bytes. */
#ifndef IDUNNO_NET_READER_H
#define IDUNNO_NET_READER_H

#include <stddef.h>
#include <stdint.h>

#include "net/frame.h"
#include "net/seal.h"

/* A buffer grown past this for one large frame is given back once that frame
 * is consumed, so an idle connection holds little memory. */
#define FRAME_READER_KEEP (256u * 1024u)

struct frame_reader {
    uint8_t *buf; /* owned; holds at most one frame beyond what was consumed */
    size_t len;   /* bytes held */
    size_t cap;
    size_t consumed; /* bytes of buf already handed out and done with */
    uint32_t max_body;
    struct frame_stats *stats; /* where rejects are counted; may be NULL */
    struct seal_dir *rx;       /* set: the stream is sealed records */
};

/* An empty reader of plaintext frames with bodies up to max_body bytes
 * (larger ones are rejected and counted in stats, which may be NULL). Set rx
 * once a handshake makes the stream sealed. frame_reader_free releases its
 * buffer. */
void frame_reader_init(struct frame_reader *r, uint32_t max_body, struct frame_stats *stats);
void frame_reader_free(struct frame_reader *r);

/* From now on the stream is sealed records opened with rx (owned by the
 * caller, outliving the reader). */
void frame_reader_seal(struct frame_reader *r, struct seal_dir *rx);

/* Appends stream bytes. Returns 0 or ID_ENOMEM. */
int frame_reader_feed(struct frame_reader *r, const void *data, size_t n);

/* Takes the next complete frame: returns 1 with *h, *raw_header and *body set
 * (valid until the next feed or next call), 0 when more bytes are needed, or a
 * negative ID_E* code when the stream is corrupt or forged (ID_EAUTH; the
 * caller must drop the connection: a byte stream cannot be resynchronised). */
int frame_reader_next(struct frame_reader *r, struct frame_header *h, const uint8_t **body);

/* Takes exactly n raw bytes (a handshake message): returns 1 with *out set
 * (valid until the next feed or call), or 0 while fewer are held. */
int frame_reader_take(struct frame_reader *r, size_t n, const uint8_t **out);

/* The bytes held and not yet taken (frame_reader_pending() of them). */
const uint8_t *frame_reader_peek(const struct frame_reader *r);

/* Bytes held that are not yet a whole frame (or handshake message). */
size_t frame_reader_pending(const struct frame_reader *r);

/* Returns the buffer if it grew past FRAME_READER_KEEP and holds nothing. */
void frame_reader_trim(struct frame_reader *r);

#endif
