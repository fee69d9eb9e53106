/* frame.c — encoding and checking of the wire header (see frame.h). */
#include "net/frame.h"

#include "base/crc32c.h"
#include "base/err.h"

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4);
}

static uint32_t frame_crc(const uint8_t raw[FRAME_HEADER_LEN], const void *body, uint32_t len)
{
    uint32_t c = crc32c_update(0, raw, 20);
    return len ? crc32c_update(c, body, len) : c;
}

void frame_encode_header_sealed(uint8_t out[FRAME_HEADER_LEN], uint16_t type, uint8_t flags,
                                uint64_t req_id, uint32_t len)
{
    put_u32(out, FRAME_MAGIC);
    out[4] = FRAME_VERSION;
    out[5] = flags;
    put_u16(out + 6, type);
    put_u64(out + 8, req_id);
    put_u32(out + 16, len);
    put_u32(out + 20, 0);
}

void frame_encode_header(uint8_t out[FRAME_HEADER_LEN], uint16_t type, uint8_t flags,
                         uint64_t req_id, const void *body, uint32_t len)
{
    frame_encode_header_sealed(out, type, flags, req_id, len);
    put_u32(out + 20, frame_crc(out, body, len));
}

int frame_decode_header(const uint8_t *buf, uint32_t max_body, struct frame_header *h,
                        struct frame_stats *stats)
{
    if (get_u32(buf) != FRAME_MAGIC) {
        if (stats)
            stats->bad_magic++;
        return ID_EPROTO;
    }
    if (buf[4] != FRAME_VERSION) {
        if (stats)
            stats->bad_version++;
        return ID_EVERSION;
    }
    uint32_t len = get_u32(buf + 16);
    if (len > max_body) {
        if (stats)
            stats->too_big++;
        return ID_ETOOBIG;
    }
    h->version = buf[4];
    h->flags = buf[5];
    h->type = get_u16(buf + 6);
    h->req_id = get_u64(buf + 8);
    h->length = len;
    h->crc = get_u32(buf + 20);
    h->sealed_tail = 0;
    return 0;
}

int frame_check_crc(const struct frame_header *h, const uint8_t raw_header[FRAME_HEADER_LEN],
                    const void *body, struct frame_stats *stats)
{
    if (frame_crc(raw_header, body, h->length) != h->crc) {
        if (stats)
            stats->bad_crc++;
        return ID_ECRC;
    }
    return 0;
}

int frame_decode_datagram(const uint8_t *buf, size_t len, struct frame_header *h,
                          const uint8_t **body, struct frame_stats *stats)
{
    if (len < FRAME_HEADER_LEN) {
        if (stats)
            stats->bad_magic++;
        return ID_EPROTO;
    }
    struct frame_header tmp;
    int rc = frame_decode_header(buf, FRAME_MAX_DATAGRAM, &tmp, stats);
    if (rc)
        return rc;
    if ((size_t)tmp.length != len - FRAME_HEADER_LEN) {
        if (stats)
            stats->bad_body++;
        return ID_EPROTO;
    }
    rc = frame_check_crc(&tmp, buf, buf + FRAME_HEADER_LEN, stats);
    if (rc)
        return rc;
    *h = tmp;
    *body = buf + FRAME_HEADER_LEN;
    return 0;
}
