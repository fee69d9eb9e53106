/* fuzz_swim.c — the gossip decoder: arbitrary datagram bodies must decode to a
 * well-formed packet or be rejected, and a decoded packet fed to a live SWIM
 * core must never crash it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "member/swim.h"
#include "member/swim_codec.h"

static void drop_send(void *ud, const char *addr, const struct swim_packet *pkt)
{
    (void)ud;
    (void)addr;
    uint8_t buf[1400];
    /* whatever the core sends must encode again */
    if (swim_encode(pkt, buf, sizeof buf) < 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct swim *s;
    static uint64_t now = 1000;
    if (!s) {
        static const char *join[] = {"127.0.0.1:9", NULL};
        struct swim_config cfg = {.name = "fuzz", .addr = "127.0.0.1:7000", .incarnation = 1,
                                  .seed = 1, .join = join};
        struct swim_env env = {.send = drop_send};
        s = swim_create(&cfg, &env, now);
    }
    struct swim_packet p;
    if (swim_decode(data, size, &p) == 0) {
        if (p.n_updates > SWIM_MAX_UPDATES || memchr(p.from_name, 0, sizeof p.from_name) == NULL)
            __builtin_trap();
        swim_receive(s, now, "127.0.0.1:7001", &p);
        now += 7;
        swim_tick(s, now);
    }
    return 0;
}
