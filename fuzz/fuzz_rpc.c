/* fuzz_rpc.c — the TCP side: a byte stream through the frame reader, and every
 * frame body through the protobuf decoder of every message in the schema. */
#include <stddef.h>
#include <stdint.h>

#include "idunno.pb-c.h"
#include "net/reader.h"

static const ProtobufCMessageDescriptor *const descriptors[] = {
    &idunno__empty__descriptor,        &idunno__error_reply__descriptor,
    &idunno__ping__descriptor,         &idunno__node_info__descriptor,
    &idunno__swim_member__descriptor,  &idunno__swim_packet__descriptor,
    &idunno__member_info__descriptor,  &idunno__member_list__descriptor,
    &idunno__node_stats__descriptor,   &idunno__grep_request__descriptor,
    &idunno__grep_node_result__descriptor, &idunno__grep_result__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct frame_stats st = {0};
    struct frame_reader r;
    frame_reader_init(&r, 1 << 16, &st);
    /* feed in uneven pieces, as TCP would */
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
            for (size_t i = 0; i < sizeof descriptors / sizeof descriptors[0]; i++) {
                ProtobufCMessage *m = protobuf_c_message_unpack(descriptors[i], NULL, h.length, body);
                if (m)
                    protobuf_c_message_free_unpacked(m, NULL);
            }
        }
        if (rc < 0)
            break;
    }
    /* and the raw input as a body of every type */
    for (size_t i = 0; i < sizeof descriptors / sizeof descriptors[0]; i++) {
        ProtobufCMessage *m = protobuf_c_message_unpack(descriptors[i], NULL, size, data);
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
    }
    frame_reader_free(&r);
    return 0;
}
