/* fuzz_frame.c — libFuzzer target for the wire header decoder: any bytes in,
 * a clean accept or a counted reject out, never a crash. */
#include <stddef.h>
#include <stdint.h>

#include "net/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct frame_stats st = {0};
    struct frame_header h;
    const uint8_t *body;
    if (frame_decode_datagram(data, size, &h, &body, &st) == 0) {
        if (body + h.length != data + size)
            __builtin_trap();
    }
    if (size >= FRAME_HEADER_LEN && frame_decode_header(data, FRAME_MAX_BODY, &h, &st) == 0 &&
        h.length <= size - FRAME_HEADER_LEN)
        (void)frame_check_crc(&h, data, data + FRAME_HEADER_LEN, &st);
    return 0;
}
