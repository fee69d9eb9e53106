/* reader.h — reassembles frames from a TCP byte stream. Pure: no sockets, so the
 * fuzzer and the unit tests drive it with arbitrary bytes. */
#ifndef IDUNNO_NET_READER_H
#define IDUNNO_NET_READER_H

#include <stddef.h>
#include <stdint.h>

#include "net/frame.h"

struct frame_reader {
    uint8_t *buf;      /* owned; holds at most one frame beyond what was consumed */
    size_t len;        /* bytes held */
    size_t cap;
    size_t consumed;   /* bytes of buf already handed out and done with */
    uint32_t max_body;
    struct frame_stats *stats; /* where rejects are counted; may be NULL */
};

void frame_reader_init(struct frame_reader *r, uint32_t max_body, struct frame_stats *stats);
void frame_reader_free(struct frame_reader *r);

/* Appends stream bytes. Returns 0 or ID_ENOMEM. */
int frame_reader_feed(struct frame_reader *r, const void *data, size_t n);

/* Takes the next complete frame: returns 1 with *h, *raw_header and *body set
 * (valid until the next feed or next call), 0 when more bytes are needed, or a
 * negative ID_E* code when the stream is corrupt (the caller must drop the
 * connection: a byte stream cannot be resynchronised). */
int frame_reader_next(struct frame_reader *r, struct frame_header *h, const uint8_t **body);

#endif
