/* fuzz_seal.c — libFuzzer target for what a node decodes before it trusts a
 * peer: the handshake hello and reply, sealed TCP records through the frame
 * reader, and sealed datagrams. The first byte picks the path:
 *   0: raw bytes as an accepting node sees them (a hello, then records);
 *   1: raw bytes as a datagram;
 *   2: the bytes sealed with the right session key, so the frame decoding
 *      behind authentication is reached too, fed in chunks the input picks;
 *   3: a valid hello answered, then the rest as the connecting side's reply.
 * Any input: a clean accept or a counted reject, never a crash or a read
 * outside the buffers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/reader.h"
#include "net/seal.h"

static const char KEYS[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

static struct seal_keyring ring;

/* A frame handed out with a sealed tail: the tail lies inside the body, and
 * opening it as a payload (what a replica does) is safe whatever it holds. */
static void check_tail(const struct frame_header *h, const uint8_t *body)
{
    if (!h->sealed_tail)
        return;
    if (h->sealed_tail > h->length || h->sealed_tail < SEAL_PAYLOAD_OVERHEAD)
        __builtin_trap();
    uint8_t *out = malloc(h->sealed_tail);
    (void)seal_open_payload(&ring, 0, body + h->length - h->sealed_tail, h->sealed_tail, out);
    free(out);
}

static void drain(struct frame_reader *r)
{
    struct frame_header h;
    const uint8_t *body;
    while (frame_reader_next(r, &h, &body) == 1) {
        if (h.length > r->max_body)
            __builtin_trap();
        check_tail(&h, body);
    }
}

/* A hello, then sealed records, as an accepting node reads them. */
static void as_acceptor(const uint8_t *data, size_t size)
{
    struct frame_stats st = {0};
    struct frame_reader r;
    frame_reader_init(&r, 1 << 16, &st);
    frame_reader_feed(&r, data, size);
    const uint8_t *hello;
    struct seal_session s;
    uint8_t reply[SEAL_REPLY_LEN];
    if (frame_reader_take(&r, SEAL_HELLO_LEN, &hello) &&
        seal_accept(&ring, hello, reply, &s) == 0) {
        frame_reader_seal(&r, &s.rx);
        drain(&r);
    }
    frame_reader_free(&r);
}

static void as_datagram(const uint8_t *data, size_t size)
{
    static struct seal_replay rp;
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    const uint8_t *frame;
    size_t flen;
    if (seal_open_datagram(&ring, &rp, 1700000000000ull, copy, size, &frame, &flen) == 0 &&
        (frame < copy || frame + flen > copy + size))
        __builtin_trap();
    free(copy);
}

/* Records of the input's bytes sealed with the right key: each record takes
 * a length byte (its low 7 bits) and that many bytes as its "frame"; with
 * the top bit set, the next byte is the length of a tail (seal.h), and the
 * record is a tail record if that tail can be a payload of the frame. */
static void sealed_stream(const uint8_t *data, size_t size)
{
    struct seal_dir tx = {.seq = 0}, rx = {.seq = 0};
    memset(tx.key, 7, sizeof tx.key);
    memcpy(rx.key, tx.key, sizeof rx.key);
    uint8_t *stream = malloc(size * (1 + SEAL_RECORD_TAIL_OVERHEAD) +
                             64); /* one record per byte at most */
    size_t n = 0, pos = 0;
    while (pos < size) {
        uint8_t b = data[pos++];
        size_t len = b & 0x7f, tail = 0;
        if ((b & 0x80) && pos < size)
            tail = data[pos++];
        if (len > size - pos)
            len = size - pos;
        if (tail >= SEAL_PAYLOAD_OVERHEAD && tail <= len) {
            memcpy(stream + n + SEAL_RECORD_TAIL_PREFIX, data + pos, len);
            seal_record_tail(&tx, stream + n, (uint32_t)len, (uint32_t)tail);
            n += len + SEAL_RECORD_TAIL_OVERHEAD;
        } else {
            memcpy(stream + n + SEAL_RECORD_LEN_BYTES, data + pos, len);
            seal_record(&tx, stream + n, (uint32_t)len);
            n += len + SEAL_RECORD_OVERHEAD;
        }
        pos += len;
    }
    struct frame_stats st = {0};
    struct frame_reader r;
    frame_reader_init(&r, 1 << 16, &st);
    frame_reader_seal(&r, &rx);
    for (size_t off = 0, chunk = 1; off < n; off += chunk, chunk = chunk * 3 % 97 + 1) {
        if (chunk > n - off)
            chunk = n - off;
        frame_reader_feed(&r, stream + off, chunk);
        struct frame_header h;
        const uint8_t *body;
        int rc;
        while ((rc = frame_reader_next(&r, &h, &body)) == 1)
            check_tail(&h, body);
        if (rc < 0)
            break;
    }
    frame_reader_free(&r);
    free(stream);
}

static void as_connector(const uint8_t *data, size_t size)
{
    uint8_t hello[SEAL_HELLO_LEN];
    struct seal_session s;
    seal_hello(&ring, hello);
    if (size >= SEAL_REPLY_LEN)
        (void)seal_finish(&ring, hello, data, &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ring.n) {
        char err[64];
        if (seal_keyring_parse(KEYS, sizeof KEYS - 1, &ring, err, sizeof err) < 0)
            abort();
    }
    if (size == 0)
        return 0;
    switch (data[0] & 3) {
    case 0: as_acceptor(data + 1, size - 1); break;
    case 1: as_datagram(data + 1, size - 1); break;
    case 2: sealed_stream(data + 1, size - 1); break;
    case 3: as_connector(data + 1, size - 1); break;
    }
    return 0;
}
