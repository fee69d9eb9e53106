/* reader.c — frame reassembly for TCP streams (see reader.h). */
#include "net/reader.h"

#include <stdlib.h>
#include <string.h>

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
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n)
            cap *= 2;
        uint8_t *nb = realloc(r->buf, cap);
        if (!nb)
            return ID_ENOMEM;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return 0;
}

int frame_reader_next(struct frame_reader *r, struct frame_header *h, const uint8_t **body)
{
    size_t avail = r->len - r->consumed;
    if (avail < FRAME_HEADER_LEN)
        return 0;
    const uint8_t *raw = r->buf + r->consumed;
    struct frame_header tmp;
    int rc = frame_decode_header(raw, r->max_body, &tmp, r->stats);
    if (rc)
        return rc;
    if (avail < FRAME_HEADER_LEN + (size_t)tmp.length)
        return 0;
    rc = frame_check_crc(&tmp, raw, raw + FRAME_HEADER_LEN, r->stats);
    if (rc)
        return rc;
    *h = tmp;
    *body = raw + FRAME_HEADER_LEN;
    r->consumed += FRAME_HEADER_LEN + tmp.length;
    if (r->consumed == r->len)
        r->consumed = r->len = 0; /* common case: nothing left, no memmove later */
    return 1;
}
