/* test_swim.c — the SWIM core in a simulated cluster: fake clock, fake network
 * with seeded loss and delay, every packet passed through the real codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "member/swim.h"
#include "member/swim_codec.h"

#define SIM_MAX_NODES 16
#define SIM_MAX_INFLIGHT 200000

struct sim_packet {
    uint64_t deliver_at;
    int to;
    char from_addr[MEMBER_ADDR_MAX];
    uint8_t bytes[1400];
    int len;
};

struct sim;

struct sim_node {
    struct sim *sim;
    int index;
    int up;          /* process running */
    int cut_off;     /* network isolated */
    char name[32], addr[32];
    uint64_t incarnation;
    struct swim *swim;
    /* when this node first saw each other node (by index) as failed */
    uint64_t saw_failed_at[SIM_MAX_NODES];
    int false_failures; /* failures declared about members that were up */
};

struct sim {
    uint64_t now;
    uint64_t rng;
    int loss_pct;
    int n;
    struct sim_node nodes[SIM_MAX_NODES];
    struct sim_packet *q;
    size_t nq;
    uint64_t packets, dropped, bytes;
    size_t max_packet;
};

static uint64_t sim_rand(struct sim *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static int addr_index(struct sim *s, const char *addr)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->nodes[i].addr, addr) == 0)
            return i;
    return -1;
}

static void sim_send(void *ud, const char *addr, const struct swim_packet *pkt)
{
    struct sim_node *from = ud;
    struct sim *s = from->sim;
    int to = addr_index(s, addr);
    uint8_t buf[1400];
    int len = swim_encode(pkt, buf, sizeof buf - 24);
    assert_true(len > 0); /* every packet fits a datagram with its header */
    s->packets++;
    s->bytes += (uint64_t)len;
    if ((size_t)len > s->max_packet)
        s->max_packet = (size_t)len;
    if (to < 0 || from->cut_off || s->nodes[to].cut_off || (int)(sim_rand(s) % 100) < s->loss_pct) {
        s->dropped++;
        return;
    }
    assert_true(s->nq < SIM_MAX_INFLIGHT);
    struct sim_packet *p = &s->q[s->nq++];
    p->deliver_at = s->now + 1 + sim_rand(s) % 5; /* 1-5 ms one way */
    p->to = to;
    snprintf(p->from_addr, sizeof p->from_addr, "%s", from->addr);
    memcpy(p->bytes, buf, (size_t)len);
    p->len = len;
}

static void sim_event(void *ud, const struct member_view *who, enum member_state old_state,
                      enum member_state new_state)
{
    (void)old_state;
    struct sim_node *me = ud;
    struct sim *s = me->sim;
    if (new_state != MEMBER_FAILED)
        return;
    for (int i = 0; i < s->n; i++) {
        struct sim_node *o = &s->nodes[i];
        if (strcmp(o->name, who->name) == 0 && o->incarnation == who->incarnation) {
            if (!me->saw_failed_at[i])
                me->saw_failed_at[i] = s->now;
            if (o->up && !o->cut_off)
                me->false_failures++;
        }
    }
}

static uint64_t sim_new_incarnation(void *ud, uint64_t current)
{
    struct sim_node *me = ud;
    me->incarnation = current + 1000;
    return me->incarnation;
}

static void sim_start_node(struct sim *s, int i, uint64_t incarnation, int join_first_alive)
{
    struct sim_node *nd = &s->nodes[i];
    nd->sim = s;
    nd->index = i;
    nd->up = 1;
    nd->incarnation = incarnation;
    memset(nd->saw_failed_at, 0, sizeof nd->saw_failed_at);
    snprintf(nd->name, sizeof nd->name, "n%d", i);
    snprintf(nd->addr, sizeof nd->addr, "10.0.0.%d:7000", i + 1);
    const char *join[4] = {NULL};
    static char seeds[3][32];
    int nj = 0;
    /* A dead first seed, then live ones: joining must not depend on one seed. */
    snprintf(seeds[nj], sizeof seeds[nj], "10.0.0.%d:7000", SIM_MAX_NODES); /* nobody */
    join[nj] = seeds[nj];
    nj++;
    for (int k = 0; k < s->n && nj < 3 && join_first_alive; k++) {
        if (k != i && s->nodes[k].up) {
            snprintf(seeds[nj], sizeof seeds[nj], "%s", s->nodes[k].addr);
            join[nj] = seeds[nj];
            nj++;
        }
    }
    struct swim_config cfg = {
        .name = nd->name, .addr = nd->addr, .incarnation = incarnation,
        .seed = 1234 + (uint64_t)i * 77 + incarnation, .join = join};
    struct swim_env env = {.ud = nd, .send = sim_send, .event = sim_event,
                           .new_incarnation = sim_new_incarnation};
    nd->swim = swim_create(&cfg, &env, s->now);
    assert_non_null(nd->swim);
}

static struct sim *sim_new(int n, int loss_pct, uint64_t seed)
{
    struct sim *s = calloc(1, sizeof *s);
    s->q = calloc(SIM_MAX_INFLIGHT, sizeof *s->q);
    s->rng = seed;
    s->loss_pct = loss_pct;
    s->n = n;
    s->now = 1000;
    for (int i = 0; i < n; i++) {
        s->nodes[i].up = 0;
        snprintf(s->nodes[i].addr, sizeof s->nodes[i].addr, "10.0.0.%d:7000", i + 1);
    }
    for (int i = 0; i < n; i++)
        sim_start_node(s, i, 5000 + (uint64_t)i, 1);
    return s;
}

static void sim_free(struct sim *s)
{
    for (int i = 0; i < s->n; i++)
        swim_destroy(s->nodes[i].swim);
    free(s->q);
    free(s);
}

/* Runs the simulation for `ms` of fake time, 1 ms steps. */
static void sim_run(struct sim *s, uint64_t ms)
{
    uint64_t end = s->now + ms;
    while (s->now < end) {
        s->now++;
        /* deliver due packets (order of arrival preserved per due time) */
        size_t w = 0;
        for (size_t r = 0; r < s->nq; r++) {
            struct sim_packet p = s->q[r];
            if (p.deliver_at > s->now) {
                s->q[w++] = p;
                continue;
            }
            struct sim_node *to = &s->nodes[p.to];
            if (!to->up)
                continue;
            struct swim_packet pkt;
            assert_int_equal(swim_decode(p.bytes, (size_t)p.len, &pkt), 0);
            swim_receive(to->swim, s->now, p.from_addr, &pkt);
        }
        /* Packets sent while delivering were appended and already kept by
         * the loop above (their due time is in the future). */
        s->nq = w;
        if (s->now % 10 == 0)
            for (int i = 0; i < s->n; i++)
                if (s->nodes[i].up)
                    swim_tick(s->nodes[i].swim, s->now);
    }
}

static int count_alive_seen(struct sim *s, int observer)
{
    struct member_view v[SIM_MAX_NODES * 2];
    size_t n = swim_snapshot(s->nodes[observer].swim, s->now, v, SIM_MAX_NODES * 2);
    int alive = 0;
    for (size_t i = 0; i < n && i < SIM_MAX_NODES * 2; i++)
        alive += v[i].state == MEMBER_ALIVE;
    return alive;
}

static enum member_state state_seen(struct sim *s, int observer, int target)
{
    struct member_view v[SIM_MAX_NODES * 2];
    size_t n = swim_snapshot(s->nodes[observer].swim, s->now, v, SIM_MAX_NODES * 2);
    for (size_t i = 0; i < n && i < SIM_MAX_NODES * 2; i++)
        if (strcmp(v[i].name, s->nodes[target].name) == 0 &&
            v[i].incarnation == s->nodes[target].incarnation)
            return v[i].state;
    return (enum member_state)-1;
}

static void assert_converged(struct sim *s)
{
    int up = 0;
    for (int i = 0; i < s->n; i++)
        up += s->nodes[i].up;
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].up)
            assert_int_equal(count_alive_seen(s, i), up);
}

static void test_join_converges(void **state)
{
    (void)state;
    struct sim *s = sim_new(10, 0, 42);
    sim_run(s, 2000);
    assert_converged(s);
    for (int i = 0; i < s->n; i++)
        assert_int_equal(s->nodes[i].false_failures, 0);
    sim_free(s);
}

static void test_crash_detected_by_all_quickly(void **state)
{
    (void)state;
    struct sim *s = sim_new(10, 0, 7);
    sim_run(s, 2000);
    assert_converged(s);
    for (int trial = 0; trial < 5; trial++) {
        int victim = 1 + trial;
        uint64_t killed_at = s->now;
        s->nodes[victim].up = 0;
        sim_run(s, 3000);
        uint64_t worst = 0;
        for (int i = 0; i < s->n; i++) {
            if (!s->nodes[i].up)
                continue;
            assert_int_equal(state_seen(s, i, victim), MEMBER_FAILED);
            uint64_t t = s->nodes[i].saw_failed_at[victim] - killed_at;
            if (t > worst)
                worst = t;
        }
        /* Protocol bound without loss: one round to be probed, one interval to
         * suspect, the suspicion timeout, then a direct notice. */
        assert_true(worst <= 2000);
    }
    for (int i = 0; i < s->n; i++)
        assert_int_equal(s->nodes[i].false_failures, 0);
    sim_free(s);
}

static void test_no_false_positive_under_loss(void **state)
{
    (void)state;
    /* 10% loss on every packet, 10 simulated minutes. */
    struct sim *s = sim_new(10, 10, 99);
    sim_run(s, 3000);
    sim_run(s, 600000);
    uint64_t suspicions = 0;
    for (int i = 0; i < s->n; i++)
        suspicions += swim_stats(s->nodes[i].swim)->suspicions;
    print_message("10%% loss, 10 min: %llu packets, %llu dropped, %llu suspicions raised and refuted\n",
                  (unsigned long long)s->packets, (unsigned long long)s->dropped,
                  (unsigned long long)suspicions);
    /* The loss really bit: probes failed and suspicions were raised... */
    assert_true(s->dropped > s->packets / 20);
    for (int i = 0; i < s->n; i++)
        assert_int_equal(s->nodes[i].false_failures, 0);
    assert_converged(s);
    /* ... and with loss a crash is still found by everyone. */
    s->nodes[3].up = 0;
    sim_run(s, 5000);
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].up)
            assert_int_equal(state_seen(s, i, 3), MEMBER_FAILED);
    sim_free(s);
}

static void test_restart_is_new_incarnation(void **state)
{
    (void)state;
    struct sim *s = sim_new(5, 0, 5);
    sim_run(s, 2000);
    uint64_t old_inc = s->nodes[2].incarnation;
    swim_destroy(s->nodes[2].swim);
    s->nodes[2].up = 0;
    sim_run(s, 100);
    sim_start_node(s, 2, old_inc + 50000, 1);
    sim_run(s, 2000);
    assert_converged(s);
    /* The old identity is gone from everyone's live set; the new one is alive. */
    for (int i = 0; i < s->n; i++) {
        if (i == 2)
            continue;
        assert_int_equal(state_seen(s, i, 2), MEMBER_ALIVE);
        assert_int_equal(count_alive_seen(s, i), 5);
    }
    sim_free(s);
}

static void test_graceful_leave(void **state)
{
    (void)state;
    struct sim *s = sim_new(6, 0, 11);
    sim_run(s, 2000);
    swim_leave(s->nodes[4].swim, s->now);
    sim_run(s, 50); /* one round trip: leaves go to every member directly */
    s->nodes[4].up = 0;
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].up)
            assert_int_equal(state_seen(s, i, 4), MEMBER_LEFT);
    sim_run(s, 3000);
    for (int i = 0; i < s->n; i++) {
        if (s->nodes[i].up)
            assert_int_equal(state_seen(s, i, 4), MEMBER_LEFT); /* never "failed" */
        assert_int_equal(s->nodes[i].false_failures, 0);
    }
    sim_free(s);
}

static void test_isolated_node_rejoins_after_heal(void **state)
{
    (void)state;
    struct sim *s = sim_new(6, 0, 3);
    sim_run(s, 2000);
    uint64_t inc_before = s->nodes[5].incarnation;
    s->nodes[5].cut_off = 1;
    sim_run(s, 3000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(state_seen(s, i, 5), MEMBER_FAILED);
    s->nodes[5].cut_off = 0;
    sim_run(s, 6000);
    /* It came back as a new member; the healthy five kept their identities. */
    assert_true(s->nodes[5].incarnation > inc_before);
    assert_converged(s);
    for (int i = 0; i < 5; i++)
        assert_true(s->nodes[i].incarnation == 5000 + (uint64_t)i);
    assert_int_equal(swim_stats(s->nodes[0].swim)->rejoins, 0);
    assert_int_equal(swim_stats(s->nodes[5].swim)->rejoins, 1);
    sim_free(s);
}

static void test_suspect_refutes(void **state)
{
    (void)state;
    struct sim *s = sim_new(4, 0, 8);
    sim_run(s, 2000);
    /* Cut node 1 off just long enough to be suspected, not declared failed. */
    s->nodes[1].cut_off = 1;
    uint64_t t0 = s->now;
    int suspected = 0;
    while (s->now - t0 < 1500 && !suspected) {
        sim_run(s, 10);
        for (int i = 0; i < s->n; i++)
            if (i != 1 && state_seen(s, i, 1) == MEMBER_SUSPECT)
                suspected = 1;
    }
    assert_true(suspected);
    s->nodes[1].cut_off = 0;
    sim_run(s, 2000);
    assert_converged(s);
    assert_true(swim_stats(s->nodes[1].swim)->refutations >= 1);
    for (int i = 0; i < s->n; i++)
        assert_int_equal(s->nodes[i].false_failures, 0);
    sim_free(s);
}

static void test_gossip_is_bounded(void **state)
{
    (void)state;
    /* Bytes per node per second stay flat as the cluster grows. */
    double per_node[2];
    int sizes[2] = {5, 15};
    for (int k = 0; k < 2; k++) {
        struct sim *s = sim_new(sizes[k], 0, 17);
        sim_run(s, 3000);
        uint64_t b0 = s->bytes;
        sim_run(s, 10000);
        per_node[k] = (double)(s->bytes - b0) / sizes[k] / 10.0;
        assert_true(s->max_packet < 1400 - 24);
        sim_free(s);
    }
    assert_true(per_node[1] < per_node[0] * 1.5);
}

static void test_codec_rejects_garbage(void **state)
{
    (void)state;
    struct swim_packet p;
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    assert_true(swim_decode(junk, sizeof junk, &p) < 0);
    /* a valid encoding with an out-of-range state is rejected */
    struct swim_packet ok = {.kind = SWIM_PING, .from_name = "a", .from_addr = "1.2.3.4:5"};
    ok.n_updates = 1;
    snprintf(ok.updates[0].name, sizeof ok.updates[0].name, "b");
    snprintf(ok.updates[0].addr, sizeof ok.updates[0].addr, "1.2.3.4:6");
    ok.updates[0].state = (enum member_state)7;
    uint8_t buf[1400];
    int len = swim_encode(&ok, buf, sizeof buf);
    assert_true(len > 0);
    assert_true(swim_decode(buf, (size_t)len, &p) < 0);
    ok.updates[0].state = MEMBER_SUSPECT;
    len = swim_encode(&ok, buf, sizeof buf);
    assert_int_equal(swim_decode(buf, (size_t)len, &p), 0);
    assert_string_equal(p.updates[0].name, "b");
    assert_int_equal(p.updates[0].state, MEMBER_SUSPECT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_converges),
        cmocka_unit_test(test_crash_detected_by_all_quickly),
        cmocka_unit_test(test_no_false_positive_under_loss),
        cmocka_unit_test(test_restart_is_new_incarnation),
        cmocka_unit_test(test_graceful_leave),
        cmocka_unit_test(test_isolated_node_rejoins_after_heal),
        cmocka_unit_test(test_suspect_refutes),
        cmocka_unit_test(test_gossip_is_bounded),
        cmocka_unit_test(test_codec_rejects_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
