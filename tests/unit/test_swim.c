/* test_swim.c — the SWIM core in a simulated cluster: a fake clock, a fake
 * network with seeded loss and delay, nodes that crash, stall, get cut off or
 * restart, and every packet passed through the real codec. Deterministic: the
 * same seeds give the same run. Times asserted are simulated protocol times. */
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

#define SIM_MAX_NODES 64
#define SIM_TICK_MS 10

struct sim_packet {
    uint64_t deliver_at;
    int to;
    char from_addr[MEMBER_ADDR_MAX];
    uint16_t len;
    uint8_t bytes[SWIM_MAX_PACKET_BYTES];
};

struct sim;

struct sim_node {
    struct sim *sim;
    int index;
    int up;                 /* process running */
    int cut_off;            /* network isolated */
    int loss_pct;           /* extra loss on every packet to or from it (a flaky node) */
    uint64_t stalled_until; /* loop frozen: no ticks, packets wait unread */
    int resumed;            /* tick before reading, as a libuv loop does after a stall */
    char name[MEMBER_NAME_MAX], addr[MEMBER_ADDR_MAX];
    uint64_t incarnation;
    struct swim *swim;
    uint64_t saw_failed_at[SIM_MAX_NODES]; /* when it first saw each node failed */
    uint64_t saw_joined_at[SIM_MAX_NODES];
    int false_failures; /* failures of members that were fine */
    char last_failed_by[MEMBER_NAME_MAX];
};

struct sim {
    uint64_t now;
    uint64_t rng;
    int loss_pct;
    int n;
    int long_names;
    struct sim_node nodes[SIM_MAX_NODES];
    struct sim_packet *q;
    size_t nq, capq;
    uint64_t packets, dropped, bytes;
    size_t max_packet;
    /* Packets sent to spy_addr (an outsider: nothing delivers there). */
    char spy_addr[MEMBER_ADDR_MAX];
    int spy_packets, spy_acks;
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

static int sim_lost(struct sim *s, const struct sim_node *from, int to)
{
    if (to < 0 || from->cut_off || s->nodes[to].cut_off)
        return 1;
    int pct = s->loss_pct;
    if ((int)(sim_rand(s) % 100) < pct)
        return 1;
    pct = from->loss_pct > s->nodes[to].loss_pct ? from->loss_pct : s->nodes[to].loss_pct;
    return pct && (int)(sim_rand(s) % 100) < pct;
}

static void sim_send(void *ud, const char *addr, const struct swim_packet *pkt)
{
    struct sim_node *from = ud;
    struct sim *s = from->sim;
    int to = addr_index(s, addr);
    if (s->spy_addr[0] && strcmp(addr, s->spy_addr) == 0) {
        s->spy_packets++;
        s->spy_acks += pkt->kind == SWIM_ACK;
    }
    uint8_t buf[SWIM_MAX_PACKET_BYTES];
    int len = swim_encode(pkt, buf, sizeof buf);
    assert_true(len > 0); /* every packet fits a datagram with its header */
    assert_true((size_t)len <= swim_packet_wire_bound(pkt));
    s->packets++;
    s->bytes += (uint64_t)len;
    if ((size_t)len > s->max_packet)
        s->max_packet = (size_t)len;
    if (sim_lost(s, from, to)) {
        s->dropped++;
        return;
    }
    if (s->nq == s->capq) {
        s->capq = s->capq ? s->capq * 2 : 1024;
        s->q = realloc(s->q, s->capq * sizeof *s->q);
        assert_non_null(s->q);
    }
    struct sim_packet *p = &s->q[s->nq++];
    p->deliver_at = s->now + 1 + sim_rand(s) % 5; /* 1-5 ms one way */
    p->to = to;
    snprintf(p->from_addr, sizeof p->from_addr, "%s", from->addr);
    memcpy(p->bytes, buf, (size_t)len);
    p->len = (uint16_t)len;
}

static void sim_event(void *ud, const struct member_view *who, enum member_state old_state,
                      enum member_state new_state, const char *by)
{
    struct sim_node *me = ud;
    struct sim *s = me->sim;
    for (int i = 0; i < s->n; i++) {
        struct sim_node *o = &s->nodes[i];
        if (strcmp(o->name, who->name) != 0)
            continue;
        if (new_state == MEMBER_FAILED)
            snprintf(me->last_failed_by, sizeof me->last_failed_by, "%s", by);
        if (o->incarnation != who->incarnation)
            continue;
        if (old_state == new_state && new_state == MEMBER_ALIVE && !me->saw_joined_at[i])
            me->saw_joined_at[i] = s->now;
        if (new_state != MEMBER_FAILED)
            continue;
        if (!me->saw_failed_at[i])
            me->saw_failed_at[i] = s->now;
        if (o->up && !o->cut_off && !o->loss_pct && o != me)
            me->false_failures++;
    }
}

static uint64_t sim_new_incarnation(void *ud, uint64_t current)
{
    struct sim_node *me = ud;
    me->incarnation = current + 1000;
    return me->incarnation;
}

/* The simulated wall clock: far above every incarnation the tests use. */
#define SIM_WALL_BASE 1000000000ull
static uint64_t sim_wall_ms(void *ud)
{
    struct sim_node *me = ud;
    return SIM_WALL_BASE + me->sim->now;
}

static void sim_name(struct sim *s, int i, char *name, size_t cap)
{
    if (s->long_names) /* 63 characters: the longest a name may be */
        snprintf(name, cap, "n%02d-%0*d", i, MEMBER_NAME_MAX - 5, i);
    else
        snprintf(name, cap, "n%d", i);
}

/* Starts node i with the given seeds (NULL-terminated; NULL: a dead seed, then
 * up to two live nodes). */
static void sim_start_node(struct sim *s, int i, uint64_t incarnation, const char *const *seeds)
{
    struct sim_node *nd = &s->nodes[i];
    nd->sim = s;
    nd->index = i;
    nd->up = 1;
    nd->cut_off = 0;
    nd->stalled_until = 0;
    nd->incarnation = incarnation;
    memset(nd->saw_failed_at, 0, sizeof nd->saw_failed_at);
    memset(nd->saw_joined_at, 0, sizeof nd->saw_joined_at);
    sim_name(s, i, nd->name, sizeof nd->name);
    const char *join[4] = {NULL};
    static char buf[3][MEMBER_ADDR_MAX];
    if (!seeds) {
        int nj = 0;
        /* A dead first seed: joining must not depend on one seed. */
        snprintf(buf[nj], sizeof buf[nj], "10.9.9.9:7000");
        join[nj] = buf[nj];
        nj++;
        for (int k = 0; k < s->n && nj < 3; k++) {
            if (k != i && s->nodes[k].up) {
                snprintf(buf[nj], sizeof buf[nj], "%s", s->nodes[k].addr);
                join[nj] = buf[nj];
                nj++;
            }
        }
        seeds = join;
    }
    struct swim_config cfg = {.name = nd->name,
                              .addr = nd->addr,
                              .incarnation = incarnation,
                              .seed = 1234 + (uint64_t)i * 77 + incarnation,
                              .join = seeds};
    struct swim_env env = {.ud = nd,
                           .send = sim_send,
                           .event = sim_event,
                           .new_incarnation = sim_new_incarnation,
                           .wall_ms = sim_wall_ms};
    nd->swim = swim_create(&cfg, &env, s->now);
    assert_non_null(nd->swim);
}

static struct sim *sim_alloc(int n, int loss_pct, uint64_t seed, int long_names)
{
    assert_true(n <= SIM_MAX_NODES);
    struct sim *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->rng = seed;
    s->loss_pct = loss_pct;
    s->n = n;
    s->now = 1000;
    s->long_names = long_names;
    for (int i = 0; i < n; i++)
        snprintf(s->nodes[i].addr, sizeof s->nodes[i].addr, "10.0.%d.%d:7000", i / 200,
                 i % 200 + 1);
    return s;
}

static struct sim *sim_new(int n, int loss_pct, uint64_t seed)
{
    struct sim *s = sim_alloc(n, loss_pct, seed, 0);
    for (int i = 0; i < n; i++)
        sim_start_node(s, i, 5000 + (uint64_t)i, NULL);
    return s;
}

static void sim_free(struct sim *s)
{
    for (int i = 0; i < s->n; i++)
        swim_destroy(s->nodes[i].swim);
    free(s->q);
    free(s);
}

static void sim_stop(struct sim *s, int i)
{
    s->nodes[i].up = 0;
    swim_destroy(s->nodes[i].swim);
    s->nodes[i].swim = NULL;
}

static int sim_stalled(const struct sim *s, const struct sim_node *nd)
{
    return nd->stalled_until > s->now;
}

static void sim_tick_node(struct sim *s, struct sim_node *nd)
{
    swim_tick(nd->swim, s->now);
    nd->resumed = 0;
}

/* Runs the simulation for `ms` of fake time in 1 ms steps. Each node ticks every
 * 10 ms at its own phase; a node back from a stall ticks before it reads. */
static void sim_run(struct sim *s, uint64_t ms)
{
    uint64_t end = s->now + ms;
    while (s->now < end) {
        s->now++;
        for (int i = 0; i < s->n; i++) {
            struct sim_node *nd = &s->nodes[i];
            if (nd->up && !sim_stalled(s, nd) && nd->resumed)
                sim_tick_node(s, nd);
        }
        size_t w = 0, count = s->nq;
        for (size_t r = 0; r < count; r++) {
            struct sim_packet *p = &s->q[r];
            struct sim_node *to = &s->nodes[p->to];
            if (p->deliver_at > s->now || (to->up && sim_stalled(s, to))) {
                if (w != r)
                    s->q[w] = *p;
                w++;
                continue;
            }
            if (!to->up)
                continue;
            struct swim_packet pkt;
            assert_int_equal(swim_decode(p->bytes, p->len, &pkt), 0);
            swim_receive(to->swim, s->now, p->from_addr, &pkt);
        }
        /* Packets sent while delivering were appended after `count`. */
        for (size_t r = count; r < s->nq; r++)
            s->q[w++] = s->q[r];
        s->nq = w;
        for (int i = 0; i < s->n; i++) {
            struct sim_node *nd = &s->nodes[i];
            if (!nd->up)
                continue;
            if (sim_stalled(s, nd)) {
                nd->resumed = 1;
                continue;
            }
            if ((s->now + (uint64_t)i) % SIM_TICK_MS == 0)
                sim_tick_node(s, nd);
        }
    }
}

static enum member_state state_seen(struct sim *s, int observer, int target)
{
    struct member_view v[SIM_MAX_NODES * 2];
    size_t n = swim_snapshot(s->nodes[observer].swim, s->now, v, SIM_MAX_NODES * 2);
    for (size_t i = 0; i < n && i < SIM_MAX_NODES * 2; i++)
        if (strcmp(v[i].name, s->nodes[target].name) == 0 &&
            v[i].incarnation == s->nodes[target].incarnation)
            return v[i].state;
    return (enum member_state) - 1;
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

/* Every running node sees every running node alive, and nothing else alive. */
static int sim_converged(struct sim *s)
{
    int up = 0;
    for (int i = 0; i < s->n; i++)
        up += s->nodes[i].up;
    for (int i = 0; i < s->n; i++) {
        if (!s->nodes[i].up)
            continue;
        if (count_alive_seen(s, i) != up)
            return 0;
        for (int j = 0; j < s->n; j++)
            if (s->nodes[j].up && state_seen(s, i, j) != MEMBER_ALIVE)
                return 0;
    }
    return 1;
}

static int total_false_failures(struct sim *s)
{
    int f = 0;
    for (int i = 0; i < s->n; i++)
        f += s->nodes[i].false_failures;
    return f;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_join_converges(void **state)
{
    (void)state;
    /* Nodes join one after another through seed lists whose first seed is dead. */
    struct sim *s = sim_alloc(10, 0, 42, 0);
    for (int i = 0; i < s->n; i++) {
        sim_start_node(s, i, 5000 + (uint64_t)i, NULL);
        sim_run(s, 100);
    }
    sim_run(s, 1000);
    assert_true(sim_converged(s));
    /* A join is seen by all within one second of the newcomer's start. */
    uint64_t started_last = 1000 + 900;
    for (int i = 0; i < s->n - 1; i++) {
        assert_true(s->nodes[i].saw_joined_at[9] > 0);
        assert_true(s->nodes[i].saw_joined_at[9] - started_last <= 1000);
    }
    assert_int_equal(total_false_failures(s), 0);
    sim_free(s);
}

static void test_join_through_any_seed(void **state)
{
    (void)state;
    struct sim *s = sim_alloc(4, 0, 43, 0);
    static const char *const none[] = {NULL};
    sim_start_node(s, 0, 100, none); /* a group of one */
    sim_run(s, 500);
    /* Two dead seeds before the live one, then a seed that is node 1 itself. */
    const char *seeds1[] = {"10.9.9.1:7000", "10.9.9.2:7000", s->nodes[0].addr, NULL};
    sim_start_node(s, 1, 101, seeds1);
    sim_run(s, 300);
    assert_int_equal(state_seen(s, 0, 1), MEMBER_ALIVE);
    assert_int_equal(state_seen(s, 1, 0), MEMBER_ALIVE);
    /* Node 2 knows only node 1; node 3 only node 2: no fixed introducer. */
    const char *seeds2[] = {s->nodes[2].addr, s->nodes[1].addr, NULL};
    sim_start_node(s, 2, 102, seeds2);
    sim_run(s, 300);
    const char *seeds3[] = {"10.9.9.3:7000", s->nodes[2].addr, NULL};
    sim_start_node(s, 3, 103, seeds3);
    sim_run(s, 1000);
    assert_true(sim_converged(s));
    sim_free(s);
}

/* kill -9 of a random node, `trials` times, restarting it in between; returns
 * the time until the last other member saw it failed, per trial. */
static void measure_detection(struct sim *s, int trials, uint64_t *all_ms)
{
    for (int trial = 0; trial < trials; trial++) {
        int victim = 1 + (int)(sim_rand(s) % (uint64_t)(s->n - 1));
        uint64_t killed_at = s->now;
        for (int i = 0; i < s->n; i++)
            s->nodes[i].saw_failed_at[victim] = 0;
        sim_stop(s, victim);
        uint64_t worst = 0;
        for (int step = 0; step < 500; step++) {
            sim_run(s, 10);
            int all = 1;
            for (int i = 0; i < s->n && all; i++)
                if (s->nodes[i].up && !s->nodes[i].saw_failed_at[victim])
                    all = 0;
            if (all)
                break;
        }
        for (int i = 0; i < s->n; i++) {
            if (!s->nodes[i].up)
                continue;
            assert_int_equal(state_seen(s, i, victim), MEMBER_FAILED);
            uint64_t t = s->nodes[i].saw_failed_at[victim] - killed_at;
            worst = t > worst ? t : worst;
        }
        all_ms[trial] = worst;
        sim_start_node(s, victim, s->nodes[victim].incarnation + 100000, NULL);
        sim_run(s, 3000);
        if (!sim_converged(s)) {
            for (int i = 0; i < s->n; i++) {
                struct member_view v[SIM_MAX_NODES];
                size_t n = swim_snapshot(s->nodes[i].swim, s->now, v, SIM_MAX_NODES);
                for (size_t k = 0; k < n; k++)
                    print_message("trial %d victim %d: n%d sees %s#%llu %s\n", trial, victim, i,
                                  v[k].name, (unsigned long long)v[k].incarnation,
                                  member_state_name(v[k].state));
            }
        }
        assert_true(sim_converged(s));
    }
}

static void test_crash_detected_by_all_quickly(void **state)
{
    (void)state;
    struct sim *s = sim_new(10, 0, 7);
    sim_run(s, 2000);
    assert_true(sim_converged(s));
    uint64_t t[40];
    measure_detection(s, 40, t);
    qsort(t, 40, sizeof t[0], cmp_u64);
    print_message("kill detected by all (no loss, 40 trials): min %llu, median %llu, max %llu ms\n",
                  (unsigned long long)t[0], (unsigned long long)t[20], (unsigned long long)t[39]);
    /* The detection target: median <= 1 s, max <= 2 s (docs/membership.md: the budget). */
    assert_true(t[20] <= 1000);
    assert_true(t[39] <= 2000);
    assert_int_equal(total_false_failures(s), 0);
    sim_free(s);
}

static void test_crash_detected_under_loss(void **state)
{
    (void)state;
    struct sim *s = sim_new(10, 10, 8);
    sim_run(s, 3000);
    assert_true(sim_converged(s));
    uint64_t t[40];
    measure_detection(s, 40, t);
    qsort(t, 40, sizeof t[0], cmp_u64);
    print_message(
        "kill detected by all (10%% loss, 40 trials): min %llu, median %llu, max %llu ms\n",
        (unsigned long long)t[0], (unsigned long long)t[20], (unsigned long long)t[39]);
    assert_true(t[20] <= 1000);
    assert_true(t[39] <= 2000);
    assert_int_equal(total_false_failures(s), 0);
    sim_free(s);
}

static void test_no_false_positive_under_loss(void **state)
{
    (void)state;
    /* 10% loss on every packet, 10 simulated minutes. */
    struct sim *s = sim_new(10, 10, 99);
    sim_run(s, 3000);
    assert_true(sim_converged(s));
    sim_run(s, 600000);
    uint64_t suspicions = 0, refutations = 0;
    for (int i = 0; i < s->n; i++) {
        suspicions += swim_stats(s->nodes[i].swim)->suspicions;
        refutations += swim_stats(s->nodes[i].swim)->refutations;
    }
    print_message(
        "10%% loss, 10 min: %llu packets, %llu dropped, %llu suspicions, %llu refutations\n",
        (unsigned long long)s->packets, (unsigned long long)s->dropped,
        (unsigned long long)suspicions, (unsigned long long)refutations);
    /* The loss really bit: suspicions were raised, and every one was refuted. */
    assert_true(s->dropped > s->packets / 20);
    assert_true(suspicions > 0);
    assert_true(refutations > 0);
    assert_int_equal(total_false_failures(s), 0);
    assert_true(sim_converged(s));
    sim_free(s);
}

/* Kills `victims` nodes at once (the highest-numbered ones) and returns, in
 * t[], the time each survivor took to see each victim failed (simulated ms). */
static size_t kill_several(struct sim *s, int victims, uint64_t *t)
{
    uint64_t killed_at = s->now;
    for (int v = s->n - victims; v < s->n; v++)
        sim_stop(s, v);
    for (int step = 0; step < 1000; step++) {
        sim_run(s, 10);
        int all = 1;
        for (int i = 0; i < s->n - victims && all; i++)
            for (int v = s->n - victims; v < s->n && all; v++)
                all = s->nodes[i].saw_failed_at[v] != 0;
        if (all)
            break;
    }
    size_t k = 0;
    for (int i = 0; i < s->n - victims; i++)
        for (int v = s->n - victims; v < s->n; v++) {
            assert_int_equal(state_seen(s, i, v), MEMBER_FAILED);
            t[k++] = s->nodes[i].saw_failed_at[v] - killed_at;
        }
    qsort(t, k, sizeof t[0], cmp_u64);
    return k;
}

static void test_several_crashes_at_once(void **state)
{
    (void)state;
    /* 3 of 5 die at once: the two survivors must not blame themselves for the
     * silence of helpers that died too, nor wait for confirmations that only
     * one other member can give. Then 3 of 10. */
    for (uint64_t seed = 1; seed <= 5; seed++) {
        struct sim *s = sim_new(5, 0, 600 + seed);
        sim_run(s, 2000);
        assert_true(sim_converged(s));
        uint64_t t[6];
        size_t k = kill_several(s, 3, t);
        assert_int_equal(k, 6);
        print_message("3 of 5 killed (seed %llu): detected by both survivors after %llu..%llu ms\n",
                      (unsigned long long)seed, (unsigned long long)t[0],
                      (unsigned long long)t[k - 1]);
        assert_true(t[k - 1] <= 2000);
        assert_int_equal(total_false_failures(s), 0);
        sim_free(s);
    }
    for (uint64_t seed = 1; seed <= 5; seed++) {
        struct sim *s = sim_new(10, 0, 700 + seed);
        sim_run(s, 2000);
        assert_true(sim_converged(s));
        uint64_t t[21];
        size_t k = kill_several(s, 3, t);
        assert_int_equal(k, 21);
        print_message("3 of 10 killed (seed %llu): median %llu, max %llu ms\n",
                      (unsigned long long)seed, (unsigned long long)t[k / 2],
                      (unsigned long long)t[k - 1]);
        assert_true(t[k / 2] <= 1000);
        assert_true(t[k - 1] <= 2000);
        assert_int_equal(total_false_failures(s), 0);
        sim_free(s);
    }
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
        sim_run(s, 5);
        for (int i = 0; i < s->n; i++)
            if (i != 1 && state_seen(s, i, 1) == MEMBER_SUSPECT)
                suspected = 1;
    }
    assert_true(suspected);
    uint64_t inc1 = s->nodes[1].incarnation;
    s->nodes[1].cut_off = 0;
    sim_run(s, 2000);
    assert_true(sim_converged(s));
    assert_true(swim_stats(s->nodes[1].swim)->refutations >= 1);
    assert_int_equal(total_false_failures(s), 0);
    /* Refuted in time: nobody ever declared it failed, and it kept its
     * identity (no rejoin, no new incarnation). */
    for (int i = 0; i < s->n; i++)
        assert_int_equal(s->nodes[i].saw_failed_at[1], 0);
    assert_true(s->nodes[1].incarnation == inc1);
    assert_int_equal(swim_stats(s->nodes[1].swim)->rejoins, 0);
    sim_free(s);
}

static void test_graceful_leave(void **state)
{
    (void)state;
    struct sim *s = sim_new(6, 0, 11);
    sim_run(s, 2000);
    swim_leave(s->nodes[4].swim, s->now);
    sim_run(s, 50); /* one round trip: leaves go to every member directly */
    sim_stop(s, 4);
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].up)
            assert_int_equal(state_seen(s, i, 4), MEMBER_LEFT);
    sim_run(s, 5000);
    for (int i = 0; i < s->n; i++) {
        if (s->nodes[i].up)
            assert_int_equal(state_seen(s, i, 4), MEMBER_LEFT); /* never "failed" */
        assert_int_equal(s->nodes[i].saw_failed_at[4], 0);
    }
    assert_true(sim_converged(s));
    sim_free(s);
}

static void test_restart_is_new_incarnation(void **state)
{
    (void)state;
    struct sim *s = sim_new(5, 0, 5);
    sim_run(s, 2000);
    uint64_t old_inc = s->nodes[2].incarnation;
    sim_stop(s, 2);
    sim_run(s, 100); /* back before anyone noticed it was gone */
    sim_start_node(s, 2, old_inc + 50000, NULL);
    sim_run(s, 2000);
    assert_true(sim_converged(s));
    for (int i = 0; i < s->n; i++) {
        if (i == 2)
            continue;
        /* One entry per name: the new identity alive, the old one reported failed. */
        struct member_view v[16];
        size_t n = swim_snapshot(s->nodes[i].swim, s->now, v, 16);
        int entries = 0;
        for (size_t k = 0; k < n; k++)
            if (strcmp(v[k].name, s->nodes[2].name) == 0) {
                entries++;
                assert_true(v[k].incarnation == old_inc + 50000);
            }
        assert_int_equal(entries, 1);
        assert_string_equal(s->nodes[i].last_failed_by, "restart");
    }
    assert_int_equal(total_false_failures(s), 0);
    sim_free(s);
}

static void test_isolated_node_rejoins_after_heal(void **state)
{
    (void)state;
    struct sim *s = sim_new(6, 0, 3);
    sim_run(s, 2000);
    uint64_t inc_before = s->nodes[5].incarnation;
    s->nodes[5].cut_off = 1;
    sim_run(s, 5000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(state_seen(s, i, 5), MEMBER_FAILED);
    s->nodes[5].cut_off = 0;
    sim_run(s, 6000);
    /* It came back as a new member; the healthy five kept their identities. */
    assert_true(s->nodes[5].incarnation > inc_before);
    assert_true(sim_converged(s));
    for (int i = 0; i < 5; i++) {
        assert_true(s->nodes[i].incarnation == 5000 + (uint64_t)i);
        assert_int_equal(swim_stats(s->nodes[i].swim)->rejoins, 0);
    }
    assert_int_equal(swim_stats(s->nodes[5].swim)->rejoins, 1);
    sim_free(s);
}

static void test_confirmations_shorten_suspicion(void **state)
{
    (void)state;
    /* A crash: the others' checks confirm the suspicion, so the originator
     * decides after the short timeout (400 ms), not the long one (1600 ms). */
    struct sim *s = sim_new(10, 0, 21);
    sim_run(s, 2000);
    sim_stop(s, 6);
    uint64_t first_suspect = 0;
    while (!s->nodes[0].saw_failed_at[6]) {
        sim_run(s, 1);
        for (int i = 0; i < s->n && !first_suspect; i++)
            if (s->nodes[i].up && state_seen(s, i, 6) == MEMBER_SUSPECT)
                first_suspect = s->now;
        assert_true(s->now < 20000);
    }
    uint64_t confirmations = 0, checks = 0;
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].up) {
            confirmations += swim_stats(s->nodes[i].swim)->confirmations;
            checks += swim_stats(s->nodes[i].swim)->checks;
        }
    uint64_t took = s->nodes[0].saw_failed_at[6] - first_suspect;
    print_message("suspicion to failure with %llu confirmations: %llu ms\n",
                  (unsigned long long)confirmations, (unsigned long long)took);
    assert_true(checks >= 3);
    assert_true(confirmations >= 3);
    assert_true(took >= 400 && took < 700);
    sim_free(s);
}

static void test_flaky_node_does_not_accuse_healthy_ones(void **state)
{
    (void)state;
    /* Node 0 loses 50% of its packets: it will suspect others often. Their
     * checks succeed, nobody confirms, the suspects refute in time — and node
     * 0's health score rises so it backs off. */
    struct sim *s = sim_new(8, 0, 31);
    sim_run(s, 2000);
    s->nodes[0].loss_pct = 50;
    unsigned max_health = 0;
    for (int k = 0; k < 1200; k++) {
        sim_run(s, 100);
        unsigned h = swim_health(s->nodes[0].swim);
        max_health = h > max_health ? h : max_health;
    }
    const struct swim_stats *st = swim_stats(s->nodes[0].swim);
    print_message("flaky node, 2 min: %llu suspicions raised, health up to %u\n",
                  (unsigned long long)st->suspicions, max_health);
    assert_true(st->suspicions > 0);
    assert_true(max_health > 0);
    /* Nobody declared a healthy member failed (node 0 itself may have been). */
    for (int i = 0; i < s->n; i++)
        for (int j = 1; j < s->n; j++)
            assert_int_equal(s->nodes[i].saw_failed_at[j], 0);
    sim_free(s);
}

static void test_stalled_node_keeps_its_peers(void **state)
{
    (void)state;
    /* Node 3's loop freezes for 300 ms every 3 s (a starved CPU). When it wakes,
     * its timers run before it reads the acks waiting in its socket; it must
     * not take its own stall for the others' silence. */
    struct sim *s = sim_new(6, 0, 41);
    sim_run(s, 2000);
    for (int k = 0; k < 40; k++) {
        s->nodes[3].stalled_until = s->now + 300;
        sim_run(s, 3000);
    }
    assert_true(swim_stats(s->nodes[3].swim)->stalls >= 40);
    assert_int_equal(total_false_failures(s), 0);
    assert_int_equal(swim_stats(s->nodes[3].swim)->suspicions, 0);
    assert_true(sim_converged(s));
    sim_free(s);
}

static void test_gossip_is_bounded(void **state)
{
    (void)state;
    /* Bytes per node per second stay flat as the cluster grows. */
    double per_node[3];
    int sizes[3] = {5, 10, 20};
    for (int k = 0; k < 3; k++) {
        struct sim *s = sim_new(sizes[k], 0, 17);
        sim_run(s, 3000);
        assert_true(sim_converged(s));
        uint64_t b0 = s->bytes;
        sim_run(s, 10000);
        per_node[k] = (double)(s->bytes - b0) / sizes[k] / 10.0;
        assert_true(s->max_packet <= SWIM_MAX_PACKET_BYTES);
        sim_free(s);
    }
    print_message("gossip bytes/s per node: N=5 %.0f, N=10 %.0f, N=20 %.0f\n", per_node[0],
                  per_node[1], per_node[2]);
    assert_true(per_node[2] < per_node[0] * 1.5);
}

static void test_big_table_syncs_in_pieces(void **state)
{
    (void)state;
    /* 60 members with 63-character names: the join answer needs several
     * datagrams, and every packet (gossip included) stays within the budget. */
    struct sim *s = sim_alloc(60, 0, 51, 1);
    for (int i = 0; i < 59; i++) {
        sim_start_node(s, i, 5000 + (uint64_t)i, NULL);
        sim_run(s, 20);
    }
    sim_run(s, 3000);
    uint64_t p0 = s->packets;
    const char *seeds[] = {s->nodes[17].addr, NULL};
    sim_start_node(s, 59, 9000, seeds);
    sim_run(s, 40);
    assert_int_equal(count_alive_seen(s, 59), 60); /* from the sync alone */
    assert_true(s->packets - p0 > 2);
    sim_run(s, 3000);
    assert_true(sim_converged(s));
    assert_true(s->max_packet <= SWIM_MAX_PACKET_BYTES);
    assert_true(s->max_packet > 1000); /* the budget was really exercised */
    assert_int_equal(total_false_failures(s), 0);
    sim_free(s);
}

static void test_determinism(void **state)
{
    (void)state;
    uint64_t packets[2], bytes[2];
    for (int k = 0; k < 2; k++) {
        struct sim *s = sim_new(8, 10, 77);
        sim_run(s, 20000);
        packets[k] = s->packets;
        bytes[k] = s->bytes;
        sim_free(s);
    }
    assert_true(packets[0] == packets[1]);
    assert_true(bytes[0] == bytes[1]);
}

static void test_codec_roundtrip_and_rejects(void **state)
{
    (void)state;
    struct swim_packet p;
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    assert_true(swim_decode(junk, sizeof junk, &p) < 0);
    struct swim_packet ok = {
        .kind = SWIM_NACK, .from_name = "a", .from_addr = "1.2.3.4:5", .seq = 9};
    ok.n_updates = 1;
    snprintf(ok.updates[0].name, sizeof ok.updates[0].name, "b");
    snprintf(ok.updates[0].addr, sizeof ok.updates[0].addr, "1.2.3.4:6");
    snprintf(ok.updates[0].suspecter, sizeof ok.updates[0].suspecter, "c");
    ok.updates[0].state = MEMBER_SUSPECT;
    ok.updates[0].heartbeat = 3;
    uint8_t buf[SWIM_MAX_PACKET_BYTES];
    int len = swim_encode(&ok, buf, sizeof buf);
    assert_true(len > 0);
    assert_int_equal(swim_decode(buf, (size_t)len, &p), 0);
    assert_int_equal(p.kind, SWIM_NACK);
    assert_true(p.seq == 9);
    assert_string_equal(p.updates[0].name, "b");
    assert_string_equal(p.updates[0].suspecter, "c");
    assert_int_equal(p.updates[0].state, MEMBER_SUSPECT);
    assert_int_equal(p.updates[0].heartbeat, 3);
    /* out-of-range state, unknown kind: rejected */
    ok.updates[0].state = (enum member_state)7;
    len = swim_encode(&ok, buf, sizeof buf);
    assert_true(swim_decode(buf, (size_t)len, &p) < 0);
    ok.updates[0].state = MEMBER_ALIVE;
    ok.kind = (enum swim_kind)99;
    len = swim_encode(&ok, buf, sizeof buf);
    assert_true(swim_decode(buf, (size_t)len, &p) < 0);
    /* a truncated valid packet is rejected, never half-read */
    ok.kind = SWIM_PING;
    len = swim_encode(&ok, buf, sizeof buf);
    assert_true(swim_decode(buf, (size_t)len - 3, &p) < 0);
    /* too big for the buffer: an error, not an overflow */
    assert_int_equal(swim_encode(&ok, buf, 10), -6 /* ID_ETOOBIG */);
}

/* ---- forged packets -------------------------------------------------------- */

#define OUTSIDER "10.66.0.1:9999"

/* A packet as a forger would send it: claiming to come from node `as`
 * (its name, incarnation and address), carrying one record. */
static struct swim_packet forged(struct sim *s, int as, enum swim_kind kind,
                                 const struct swim_record *r)
{
    struct swim_packet p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    snprintf(p.from_name, sizeof p.from_name, "%s", s->nodes[as].name);
    p.from_incarnation = s->nodes[as].incarnation;
    snprintf(p.from_addr, sizeof p.from_addr, "%s", s->nodes[as].addr);
    p.seq = 4242;
    if (r) {
        p.updates[0] = *r;
        p.n_updates = 1;
    }
    return p;
}

static struct swim_record record_of(struct sim *s, int who, uint64_t incarnation,
                                    enum member_state st)
{
    struct swim_record r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", s->nodes[who].name);
    snprintf(r.addr, sizeof r.addr, "%s", s->nodes[who].addr);
    r.incarnation = incarnation;
    r.state = st;
    return r;
}

/* Delivers p to node `to` through the codec, from the real source `src`. */
static void inject(struct sim *s, int to, const char *src, const struct swim_packet *p)
{
    uint8_t buf[SWIM_MAX_PACKET_BYTES];
    int len = swim_encode(p, buf, sizeof buf);
    assert_true(len > 0);
    struct swim_packet d;
    assert_int_equal(swim_decode(buf, (size_t)len, &d), 0);
    swim_receive(s->nodes[to].swim, s->now, src, &d);
}

static uint64_t refused_total(struct sim *s)
{
    uint64_t r = 0;
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].up)
            r += swim_stats(s->nodes[i].swim)->records_refused;
    return r;
}

static void test_forged_huge_incarnation_refused(void **state)
{
    (void)state;
    /* One datagram to every member but the victim: "n2, incarnation 2^64-1,
     * left". It must change nothing anywhere; nor may an incarnation just past
     * a minute ahead of the clock, or a suspicion with a heartbeat the victim
     * never had. */
    struct sim *s = sim_new(5, 0, 61);
    sim_run(s, 2000);
    assert_true(sim_converged(s));
    uint64_t inc2 = s->nodes[2].incarnation;
    struct swim_record bad[3] = {
        record_of(s, 2, UINT64_MAX, MEMBER_LEFT),
        record_of(s, 2, SIM_WALL_BASE + s->now + SWIM_INCARNATION_AHEAD_MS + 1000, MEMBER_FAILED),
        record_of(s, 2, inc2, MEMBER_SUSPECT),
    };
    bad[2].heartbeat = UINT32_MAX;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < s->n; i++)
            if (i != 2) {
                struct swim_packet p = forged(s, (i + 1) % s->n == 2 ? 3 : (i + 1) % s->n,
                                              SWIM_NOTICE, &bad[k]);
                inject(s, i, p.from_addr, &p);
            }
    assert_true(refused_total(s) >= 12);
    for (int i = 0; i < s->n; i++)
        if (i != 2)
            assert_int_equal(state_seen(s, i, 2), MEMBER_ALIVE);
    sim_run(s, 5000);
    assert_true(s->nodes[2].incarnation == inc2); /* never even had to refute */
    assert_true(sim_converged(s));
    for (int i = 0; i < s->n; i++)
        assert_int_equal(s->nodes[i].saw_failed_at[2], 0);
    /* A packet whose sender claims an incarnation from the far future is
     * dropped whole. */
    struct swim_packet p = forged(s, 1, SWIM_PING, NULL);
    p.from_incarnation = UINT64_MAX;
    inject(s, 0, s->nodes[1].addr, &p);
    assert_true(swim_stats(s->nodes[0].swim)->packets_refused >= 1);
    sim_free(s);
}

static void test_forged_left_is_refuted(void **state)
{
    (void)state;
    /* "n2 left", at n2's true incarnation, sent to everyone but n2: the others
     * believe it at first, but n2 hears of it (its next packets are answered
     * with the record) and takes a new incarnation, which all adopt. */
    struct sim *s = sim_new(5, 0, 62);
    sim_run(s, 2000);
    assert_true(sim_converged(s));
    uint64_t inc2 = s->nodes[2].incarnation;
    struct swim_record r = record_of(s, 2, inc2, MEMBER_LEFT);
    for (int i = 0; i < s->n; i++)
        if (i != 2) {
            struct swim_packet p = forged(s, i == 1 ? 3 : 1, SWIM_NOTICE, &r);
            inject(s, i, p.from_addr, &p);
        }
    assert_int_equal(state_seen(s, 0, 2), MEMBER_LEFT);
    sim_run(s, 3000);
    assert_true(swim_stats(s->nodes[2].swim)->reincarnations >= 1);
    assert_true(s->nodes[2].incarnation > inc2);
    assert_true(sim_converged(s)); /* n2 alive everywhere, at its new incarnation */
    assert_int_equal(total_false_failures(s), 0);
    /* "n2 restarted, and that life is over already": no member holding n2
     * live takes that on hearsay. */
    uint64_t inc_now = s->nodes[2].incarnation;
    r = record_of(s, 2, inc_now + 5, MEMBER_LEFT);
    for (int i = 0; i < s->n; i++)
        if (i != 2) {
            struct swim_packet p = forged(s, i == 1 ? 3 : 1, SWIM_NOTICE, &r);
            inject(s, i, p.from_addr, &p);
            assert_int_equal(state_seen(s, i, 2), MEMBER_ALIVE);
        }
    sim_run(s, 3000);
    assert_true(s->nodes[2].incarnation == inc_now);
    assert_true(sim_converged(s));
    assert_int_equal(total_false_failures(s), 0);
    /* "n2 restarted, at an address of mine": believed (a restart looks just
     * so), but n2 hears of it and goes above it, and all follow. */
    r = record_of(s, 2, inc_now + 5, MEMBER_ALIVE);
    snprintf(r.addr, sizeof r.addr, OUTSIDER);
    for (int i = 0; i < s->n; i++)
        if (i != 2) {
            struct swim_packet p = forged(s, i == 1 ? 3 : 1, SWIM_NOTICE, &r);
            inject(s, i, p.from_addr, &p);
        }
    sim_run(s, 3000);
    assert_true(s->nodes[2].incarnation > inc_now + 5);
    assert_true(sim_converged(s));
    for (int i = 0; i < s->n; i++) {
        struct member_view v[16];
        size_t n = swim_snapshot(s->nodes[i].swim, s->now, v, 16);
        for (size_t k = 0; k < n; k++)
            assert_string_not_equal(v[k].addr, OUTSIDER);
    }
    sim_free(s);
}

static void test_replies_go_to_the_real_source(void **state)
{
    (void)state;
    /* A ping claiming to be from n1 but arriving from an outsider: the ack goes
     * to the outsider (who sent it), not to n1 (whom it names). A join and a
     * ping-req likewise answer the real source, and a ping-req for an address
     * that is no member is not carried out. */
    struct sim *s = sim_new(4, 0, 63);
    sim_run(s, 2000);
    assert_true(sim_converged(s));
    snprintf(s->spy_addr, sizeof s->spy_addr, OUTSIDER);
    uint64_t sent_before = s->packets;
    struct swim_packet p = forged(s, 1, SWIM_PING, NULL);
    inject(s, 0, OUTSIDER, &p);
    assert_int_equal(s->spy_acks, 1);
    /* Nothing else was sent for it: in particular no ack to n1. */
    assert_true(s->packets - sent_before == 1);
    /* The address inside the packet was not learned for n1 either way. */
    struct member_view v[8];
    size_t n = swim_snapshot(s->nodes[0].swim, s->now, v, 8);
    for (size_t k = 0; k < n; k++)
        assert_string_not_equal(v[k].addr, OUTSIDER);

    /* A join from the outsider naming a new member at n3's address: the table
     * goes to the outsider; n3's address is not given to the stranger's name. */
    s->spy_packets = 0;
    struct swim_packet j;
    memset(&j, 0, sizeof j);
    j.kind = SWIM_JOIN;
    snprintf(j.from_name, sizeof j.from_name, "stranger");
    j.from_incarnation = 77;
    snprintf(j.from_addr, sizeof j.from_addr, "%s", s->nodes[3].addr);
    j.updates[0] = record_of(s, 3, 77, MEMBER_ALIVE);
    snprintf(j.updates[0].name, sizeof j.updates[0].name, "stranger");
    j.n_updates = 1;
    inject(s, 0, OUTSIDER, &j);
    assert_true(s->spy_packets >= 1);
    n = swim_snapshot(s->nodes[0].swim, s->now, v, 8);
    for (size_t k = 0; k < n; k++)
        if (strcmp(v[k].name, "stranger") == 0)
            assert_string_equal(v[k].addr, OUTSIDER);

    /* A ping-req whose target is no member: no ping leaves for it. */
    s->spy_packets = 0;
    snprintf(s->spy_addr, sizeof s->spy_addr, "10.66.0.2:53");
    struct swim_packet pr = forged(s, 1, SWIM_PING_REQ, NULL);
    snprintf(pr.target_addr, sizeof pr.target_addr, "10.66.0.2:53");
    inject(s, 0, s->nodes[1].addr, &pr);
    sim_run(s, 500);
    assert_int_equal(s->spy_packets, 0);
    sim_free(s);
}

static void test_names_with_control_characters_refused(void **state)
{
    (void)state;
    assert_true(swim_name_valid("node-1.a_b"));
    assert_false(swim_name_valid(""));
    assert_false(swim_name_valid("evil\033[2J"));
    assert_false(swim_name_valid("tab\there"));
    assert_false(swim_name_valid("sp ace"));
    assert_false(swim_addr_valid("1.2.3.4:5\n"));
    assert_true(swim_addr_valid("[::1]:7000"));
    /* The decoder refuses such a packet whole... */
    struct swim_packet p = {.kind = SWIM_NOTICE, .from_name = "a", .from_addr = "1.2.3.4:5"};
    p.n_updates = 1;
    snprintf(p.updates[0].name, sizeof p.updates[0].name, "bad\rname");
    snprintf(p.updates[0].addr, sizeof p.updates[0].addr, "1.2.3.4:6");
    p.updates[0].incarnation = 9;
    uint8_t buf[SWIM_MAX_PACKET_BYTES];
    struct swim_packet d;
    int len = swim_encode(&p, buf, sizeof buf);
    assert_true(len > 0);
    assert_true(swim_decode(buf, (size_t)len, &d) < 0);
    snprintf(p.updates[0].name, sizeof p.updates[0].name, "ok");
    snprintf(p.from_name, sizeof p.from_name,
             "\a"
             "bell");
    len = swim_encode(&p, buf, sizeof buf);
    assert_true(swim_decode(buf, (size_t)len, &d) < 0);
    /* ...and the core, handed one directly, applies none of it. */
    struct sim *s = sim_new(3, 0, 64);
    sim_run(s, 1500);
    snprintf(p.from_name, sizeof p.from_name, "%s", s->nodes[1].name);
    p.from_incarnation = s->nodes[1].incarnation;
    snprintf(p.from_addr, sizeof p.from_addr, "%s", s->nodes[1].addr);
    snprintf(p.updates[0].name, sizeof p.updates[0].name, "bad\rname");
    uint64_t refused = swim_stats(s->nodes[0].swim)->records_refused;
    swim_receive(s->nodes[0].swim, s->now, s->nodes[1].addr, &p);
    assert_true(swim_stats(s->nodes[0].swim)->records_refused == refused + 1);
    assert_int_equal(count_alive_seen(s, 0), 3);
    sim_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_converges),
        cmocka_unit_test(test_join_through_any_seed),
        cmocka_unit_test(test_crash_detected_by_all_quickly),
        cmocka_unit_test(test_crash_detected_under_loss),
        cmocka_unit_test(test_no_false_positive_under_loss),
        cmocka_unit_test(test_several_crashes_at_once),
        cmocka_unit_test(test_suspect_refutes),
        cmocka_unit_test(test_graceful_leave),
        cmocka_unit_test(test_restart_is_new_incarnation),
        cmocka_unit_test(test_isolated_node_rejoins_after_heal),
        cmocka_unit_test(test_confirmations_shorten_suspicion),
        cmocka_unit_test(test_flaky_node_does_not_accuse_healthy_ones),
        cmocka_unit_test(test_stalled_node_keeps_its_peers),
        cmocka_unit_test(test_gossip_is_bounded),
        cmocka_unit_test(test_big_table_syncs_in_pieces),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_codec_roundtrip_and_rejects),
        cmocka_unit_test(test_forged_huge_incarnation_refused),
        cmocka_unit_test(test_forged_left_is_refuted),
        cmocka_unit_test(test_replies_go_to_the_real_source),
        cmocka_unit_test(test_names_with_control_characters_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
