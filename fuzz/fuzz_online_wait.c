/* fuzz_online_wait.c — libFuzzer target for the forwarder's look at an online
 * request (sched/online_input.h, online_request_deadline_ms): it reads one
 * field of bytes off the network without decoding the rest. It must never
 * read out of bounds, and on any bytes protobuf-c decodes as an OnlineInfer
 * it must find the same deadline. */
#include <stddef.h>
#include <stdint.h>

#include "idunno.pb-c.h"
#include "sched/online_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t deadline = online_request_deadline_ms(data, size);
    Idunno__OnlineInfer *in = idunno__online_infer__unpack(NULL, size, data);
    if (in) {
        if ((uint32_t)deadline != in->deadline_ms)
            __builtin_trap();
        idunno__online_infer__free_unpacked(in, NULL);
    }
    return 0;
}
