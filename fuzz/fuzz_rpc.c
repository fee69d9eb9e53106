/* fuzz_rpc.c — the TCP side: a byte stream through the frame reader (fed in
 * uneven pieces, as TCP delivers it), and every frame body, then the raw input,
 * through the protobuf decoder of every message in the schema. The message list
 * is generated from the schema at build time (scripts/gen-pb-index.sh), so a
 * message added to proto/idunno.proto is covered without editing this file. */
#include <stddef.h>
#include <stdint.h>

#include "idunno.pb-c.h"
#include "idunno_pb_index.h"
#include "net/reader.h"

#define FUZZ_DESC(d) &d,
static const ProtobufCMessageDescriptor *const descriptors[] = {IDUNNO_PB_MESSAGES(FUZZ_DESC)};

static void unpack_all(const uint8_t *body, size_t len)
{
    for (size_t i = 0; i < sizeof descriptors / sizeof descriptors[0]; i++) {
        ProtobufCMessage *m = protobuf_c_message_unpack(descriptors[i], NULL, len, body);
        if (m) {
            /* A decoded message must pack back without trouble. */
            uint8_t out[8192];
            if (protobuf_c_message_get_packed_size(m) <= sizeof out)
                protobuf_c_message_pack(m, out);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct frame_stats st = {0};
    struct frame_reader r;
    frame_reader_init(&r, 1 << 16, &st);
    size_t off = 0, step = 1;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        if (frame_reader_feed(&r, data + off, n) < 0)
            break;
        off += n;
        step = step * 3 + 1;
        struct frame_header h;
        const uint8_t *body;
        int rc;
        while ((rc = frame_reader_next(&r, &h, &body)) == 1) {
            /* the body must lie inside the reader's buffer */
            if (body < r.buf || body + h.length > r.buf + r.cap)
                __builtin_trap();
            unpack_all(body, h.length);
        }
        if (rc < 0)
            break;
    }
    frame_reader_free(&r);
    unpack_all(data, size);
    return 0;
}
