/* fuzz_raft_frame.c — libFuzzer target for the raft port's checker
 * (src/ctl/raft_wire.c): the handshake decoder and the message scanner. Any
 * bytes in, never a crash; the scanner's verdict must not depend on how the
 * bytes are split, and a decoded handshake's address is printable. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ctl/raft_wire.h"

static void check_hello(const uint8_t *data, size_t size)
{
    struct raft_wire_hello h;
    long n = raft_wire_hello_decode(data, size, &h);
    if (n <= 0)
        return;
    if ((size_t)n > size || n > RAFT_WIRE_HELLO_FIXED + RAFT_WIRE_ADDR_MAX || h.id == 0 ||
        h.addr[0] == 0)
        __builtin_trap();
    for (const char *c = h.addr; *c; c++)
        if (*c < 0x21 || *c > 0x7e)
            __builtin_trap();
    struct raft_wire_hello again;
    if (raft_wire_hello_decode(data, (size_t)n, &again) != n || strcmp(again.addr, h.addr) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_hello(data, size);
    if (size < 9)
        return 0;
    /* First 8 bytes choose the policy and a split point; the rest is the stream. */
    struct raft_wire_policy pol = {.current_term = (uint64_t)data[0] << 8 | data[1],
                                   .verified_voter = data[2] & 1};
    size_t split = ((size_t)data[3] << 8 | data[4]);
    data += 8;
    size -= 8;
    split = size ? split % size : 0;

    struct raft_wire_scan whole = {0}, parts = {0};
    enum raft_wire_verdict a = raft_wire_scan_feed(&whole, data, size, &pol, NULL);
    enum raft_wire_verdict b = raft_wire_scan_feed(&parts, data, split, &pol, NULL);
    if (b == RAFT_WIRE_OK)
        b = raft_wire_scan_feed(&parts, data + split, size - split, &pol, NULL);
    if (a != b || (a == RAFT_WIRE_OK && whole.messages != parts.messages))
        __builtin_trap();
    (void)raft_wire_verdict_name(a);
    return 0;
}
