/* fuzz_swim.c — the gossip decoder: arbitrary datagram bodies must decode to a
 * well-formed packet or be rejected, and a decoded packet fed to a live SWIM
 * core (one that knows a few members, so suspicion, confirmation, refutation
 * and rejoin paths are reachable) must never crash it or make it send a packet
 * that does not fit a datagram. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "member/swim.h"
#include "member/swim_codec.h"

static void check_send(void *ud, const char *addr, const struct swim_packet *pkt)
{
    (void)ud;
    (void)addr;
    uint8_t buf[SWIM_MAX_PACKET_BYTES];
    /* whatever the core sends must encode within the datagram budget */
    int len = swim_encode(pkt, buf, sizeof buf);
    if (len < 0 || (size_t)len > swim_packet_wire_bound(pkt))
        __builtin_trap();
}

/* Incarnations up to a minute above this are accepted. */
static uint64_t fuzz_wall_ms(void *ud)
{
    (void)ud;
    return 1000000;
}

static struct swim *fuzz_core(uint64_t now)
{
    static const char *join[] = {"127.0.0.1:9", NULL};
    struct swim_config cfg = {
        .name = "fuzz", .addr = "127.0.0.1:7000", .incarnation = 1, .seed = 1, .join = join};
    struct swim_env env = {.send = check_send, .wall_ms = fuzz_wall_ms};
    struct swim *s = swim_create(&cfg, &env, now);
    /* A table of four members, as a join answer would bring it. */
    struct swim_packet sync = {
        .kind = SWIM_SYNC, .from_name = "m0", .from_incarnation = 5, .from_addr = "127.0.0.1:7010"};
    for (int i = 0; i < 4; i++) {
        struct swim_record *r = &sync.updates[sync.n_updates++];
        snprintf(r->name, sizeof r->name, "m%d", i);
        snprintf(r->addr, sizeof r->addr, "127.0.0.1:70%d0", i + 1);
        r->incarnation = 5;
    }
    swim_receive(s, now, "127.0.0.1:7010", &sync);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct swim *s;
    static uint64_t now = 1000;
    if (!s)
        s = fuzz_core(now);
    struct swim_packet p;
    if (swim_decode(data, size, &p) == 0) {
        if (p.n_updates > SWIM_MAX_UPDATES || memchr(p.from_name, 0, sizeof p.from_name) == NULL ||
            !swim_name_valid(p.from_name))
            __builtin_trap();
        for (size_t i = 0; i < p.n_updates; i++)
            if (!swim_name_valid(p.updates[i].name) || !swim_addr_valid(p.updates[i].addr))
                __builtin_trap(); /* the decoder refuses what the core must never see */
        swim_receive(s, now, "127.0.0.1:7001", &p);
        /* time moves on by an input-chosen step, stalls included */
        now += 1 + (size ? data[0] : 0);
        swim_tick(s, now);
    }
    return 0;
}
