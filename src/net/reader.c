/* reader.c — frame reassembly for TCP streams, plain or sealed (see reader.h). */
#include "net/reader.h"

#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"

void frame_reader_init(struct frame_reader *r, uint32_t max_body, struct frame_stats *stats)
{
    memset(r, 0, sizeof *r);
    r->max_body = max_body;
    r->stats = stats;
}

void frame_reader_free(struct frame_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = r->consumed = 0;
}

void frame_reader_seal(struct frame_reader *r, struct seal_dir *rx)
{
    r->rx = rx;
}

int frame_reader_feed(struct frame_reader *r, const void *data, size_t n)
{
    if (n == 0)
        return 0; /* nothing to add (and buf may still be NULL) */
    /* Drop consumed bytes first so the buffer never grows past one frame plus
     * one read's worth. */
    if (r->consumed) {
        memmove(r->buf, r->buf + r->consumed, r->len - r->consumed);
        r->len -= r->consumed;
        r->consumed = 0;
    }
    if (ARRAY_RESERVE(r->buf, r->cap, r->len, n, 4096) < 0)
        return ID_ENOMEM;
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return 0;
}

static void consume(struct frame_reader *r, size_t n)
{
    r->consumed += n;
    if (r->consumed == r->len)
        r->consumed = r->len = 0; /* common case: nothing left, no memmove later */
}

/* The frame at raw (avail bytes present): header, length and, for a plain
 * stream, the crc (a sealed record's tag already authenticated it). */
static int check_frame(struct frame_reader *r, const uint8_t *raw, size_t avail,
                       struct frame_header *out)
{
    struct frame_header tmp;
    int rc = frame_decode_header(raw, r->max_body, &tmp, r->stats);
    if (rc)
        return rc;
    if (avail < FRAME_HEADER_LEN + (size_t)tmp.length)
        return 0;
    if (!r->rx) {
        rc = frame_check_crc(&tmp, raw, raw + FRAME_HEADER_LEN, r->stats);
        if (rc)
            return rc;
    }
    *out = tmp;
    return 1;
}

/* The frame inside a record of flen frame bytes whose prefix (4 bytes, or 8
 * for a tail record) is at rec, its tag after the frame. */
static int next_sealed(struct frame_reader *r, struct frame_header *h, const uint8_t **body)
{
    size_t avail = r->len - r->consumed;
    if (avail < SEAL_RECORD_LEN_BYTES)
        return 0;
    uint8_t *rec = r->buf + r->consumed;
    int has_tail = seal_record_is_tail(rec);
    size_t prefix = has_tail ? SEAL_RECORD_TAIL_PREFIX : SEAL_RECORD_LEN_BYTES;
    if (avail < prefix)
        return 0;
    uint32_t flen = seal_record_frame_len(rec), tail = 0;
    if (has_tail && seal_record_tail_check(rec, &flen, &tail) < 0) {
        if (r->stats)
            r->stats->bad_body++;
        return ID_EPROTO;
    }
    if (flen < FRAME_HEADER_LEN + tail || flen - FRAME_HEADER_LEN > r->max_body) {
        if (r->stats) {
            if (flen < FRAME_HEADER_LEN + tail)
                r->stats->bad_body++;
            else
                r->stats->too_big++;
        }
        return flen < FRAME_HEADER_LEN + tail ? ID_EPROTO : ID_ETOOBIG;
    }
    if (avail < prefix + SEAL_TAG_LEN + (size_t)flen)
        return 0;
    int opened = has_tail ? seal_open_record_tail(r->rx, rec, flen, tail)
                          : seal_open_record(r->rx, rec, flen);
    if (opened < 0) {
        if (r->stats)
            r->stats->bad_auth++;
        return ID_EAUTH;
    }
    const uint8_t *raw = rec + prefix;
    int rc = check_frame(r, raw, flen, h);
    if (rc == 0 || (rc == 1 && h->length != flen - FRAME_HEADER_LEN)) {
        if (r->stats)
            r->stats->bad_body++; /* the record and its frame disagree on the length */
        return ID_EPROTO;
    }
    if (rc < 0)
        return rc;
    h->sealed_tail = tail;
    *body = raw + FRAME_HEADER_LEN;
    consume(r, prefix + SEAL_TAG_LEN + (size_t)flen);
    return 1;
}

int frame_reader_next(struct frame_reader *r, struct frame_header *h, const uint8_t **body)
{
    if (r->rx)
        return next_sealed(r, h, body);
    size_t avail = r->len - r->consumed;
    if (avail < FRAME_HEADER_LEN)
        return 0;
    const uint8_t *raw = r->buf + r->consumed;
    int rc = check_frame(r, raw, avail, h);
    if (rc <= 0)
        return rc;
    h->sealed_tail = 0;
    *body = raw + FRAME_HEADER_LEN;
    consume(r, FRAME_HEADER_LEN + h->length);
    return 1;
}

int frame_reader_take(struct frame_reader *r, size_t n, const uint8_t **out)
{
    if (r->len - r->consumed < n)
        return 0;
    *out = r->buf + r->consumed;
    consume(r, n);
    return 1;
}

const uint8_t *frame_reader_peek(const struct frame_reader *r)
{
    return r->buf + r->consumed;
}

size_t frame_reader_pending(const struct frame_reader *r)
{
    return r->len - r->consumed;
}

void frame_reader_trim(struct frame_reader *r)
{
    if (r->cap > FRAME_READER_KEEP && r->len == r->consumed)
        frame_reader_free(r);
}
