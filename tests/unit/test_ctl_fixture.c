/* test_ctl_fixture.c — the control plane glue (ctl.c) on libraft's in-memory
 * fixture: simulated time, network and disk, so every run takes the same path.
 * Elections, proposals through the state machine, read barriers, a partitioned
 * leader and the heal, timeouts, and a lagging node caught up by snapshot.
 * The fixture itself aborts if two leaders ever share a term. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/fixture.h>

#include "base/err.h"
#include "base/log.h"
#include "ctl/ctl.h"
#include "ctl/kv.h"
#include "ctl/meta.h"
#include "idunno.pb-c.h"

#define MAXN 5

struct fx {
    struct raft_fixture f;
    struct ctl *c[MAXN];
    unsigned n;
    unsigned leader_events[MAXN]; /* leader-change callbacks seen per node */
    int serving_seen[MAXN];
};

static struct fx *g_fx; /* the fixture hook has no user data */

static uint64_t fx_clock(void *ud)
{
    return ((struct raft_fixture *)ud)->time;
}

static void fx_hook(struct raft_fixture *f, struct raft_fixture_event *e)
{
    (void)e;
    for (unsigned i = 0; i < g_fx->n; i++)
        if (raft_fixture_alive(f, i))
            ctl_poll(g_fx->c[i]);
}

static void fx_on_leader(void *ud, const struct ctl_view *v)
{
    unsigned i = (unsigned)(uintptr_t)ud;
    g_fx->leader_events[i]++;
    if (v->serving)
        g_fx->serving_seen[i] = 1;
}

/* n servers, all voters; server i times out first if it has the lowest
 * election timeout, which is server 0's. */
static struct fx *fx_new(unsigned n, unsigned threshold, unsigned trailing, unsigned propose_ms)
{
    struct fx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    g_fx = x;
    x->n = n;
    assert_int_equal(raft_fixture_init(&x->f), 0);
    for (unsigned i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%u", i + 1);
        struct ctl_config cfg = {.name = name,
                                 .snapshot_threshold = threshold,
                                 .snapshot_trailing = trailing,
                                 .propose_timeout_ms = propose_ms,
                                 .clock_ms = fx_clock,
                                 .clock_ud = &x->f,
                                 .seq_base = 1000 * (i + 1)};
        assert_int_equal(ctl_create_detached(&cfg, &x->c[i]), 0);
        assert_int_equal(raft_fixture_grow(&x->f, ctl_fsm(x->c[i])), 0);
    }
    for (unsigned i = 0; i < n; i++) {
        struct raft *r = raft_fixture_get(&x->f, i);
        ctl_attach(x->c[i], r);
        r->tracer = NULL; /* the fixture's tracer prints every step */
        /* Within [T, 2T] of the 200 ms election timeout ctl sets. */
        raft_fixture_set_randomized_election_timeout(&x->f, i, 200 + 40 * i);
        assert_int_equal(ctl_on_leader_change(x->c[i], fx_on_leader, (void *)(uintptr_t)i), 0);
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&x->f, n, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&x->f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&x->f), 0);
    raft_fixture_hook(&x->f, fx_hook);
    return x;
}

static void fx_free(struct fx *x)
{
    raft_fixture_close(&x->f);
    for (unsigned i = 0; i < x->n; i++)
        ctl_destroy_detached(x->c[i]);
    free(x);
    g_fx = NULL;
}

static bool fx_serving(struct raft_fixture *f, void *arg)
{
    (void)f;
    struct ctl *c = arg;
    return ctl_is_serving(c);
}

/* Steps until c serves, at most ms of simulated time. */
static void fx_until_serving(struct fx *x, unsigned i, unsigned ms)
{
    assert_true(raft_fixture_step_until(&x->f, fx_serving, x->c[i], ms));
}

static unsigned fx_serving_index(struct fx *x)
{
    for (unsigned i = 0; i < x->n; i++)
        if (raft_fixture_alive(&x->f, i) && ctl_is_serving(x->c[i]))
            return i;
    return x->n;
}

static bool fx_any_serving_except(struct raft_fixture *f, void *arg)
{
    (void)f;
    unsigned skip = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < g_fx->n; i++)
        if (i != skip && raft_fixture_alive(f, i) && ctl_is_serving(g_fx->c[i]))
            return true;
    return false;
}

/* ---- proposals with recorded outcomes -------------------------------------------------- */

struct outcome {
    int calls;
    int status;
    uint64_t revision; /* from a kv put's result */
};

static void on_outcome(void *ud, int status, const uint8_t *result, size_t len)
{
    struct outcome *o = ud;
    o->calls++;
    o->status = status;
    if (status == 0 && result) {
        Idunno__CtlKvPutResult *r = idunno__ctl_kv_put_result__unpack(NULL, len, result);
        if (r) {
            o->revision = r->revision;
            idunno__ctl_kv_put_result__free_unpacked(r, NULL);
        }
    }
}

static int propose_put(struct ctl *c, const char *key, const char *value, struct outcome *o)
{
    Idunno__CtlKvPut p = IDUNNO__CTL_KV_PUT__INIT;
    p.key = (char *)key;
    p.value.data = (uint8_t *)value;
    p.value.len = strlen(value);
    uint8_t buf[512];
    size_t n = idunno__ctl_kv_put__pack(&p, buf);
    return ctl_propose(c, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT, buf, n, on_outcome, o);
}

static bool fx_answered(struct raft_fixture *f, void *arg)
{
    (void)f;
    return ((struct outcome *)arg)->calls > 0;
}

static void fx_until_answered(struct fx *x, struct outcome *o, unsigned ms)
{
    assert_true(raft_fixture_step_until(&x->f, fx_answered, o, ms));
}

/* Every live node has applied everything the most advanced one has. */
static bool fx_converged(struct raft_fixture *f, void *arg)
{
    (void)arg;
    raft_index max = 0;
    for (unsigned i = 0; i < g_fx->n; i++) {
        raft_index a = raft_last_applied(raft_fixture_get(f, i));
        if (raft_fixture_alive(f, i) && a > max)
            max = a;
    }
    for (unsigned i = 0; i < g_fx->n; i++)
        if (raft_fixture_alive(f, i) && (raft_last_applied(raft_fixture_get(f, i)) != max ||
                                         raft_commit_index(raft_fixture_get(f, i)) != max))
            return false;
    return true;
}

static void assert_digests_equal(struct fx *x)
{
    assert_true(raft_fixture_step_until(&x->f, fx_converged, NULL, 5000));
    char first[65], d[65];
    ctl_digest_hex(x->c[0], first);
    for (unsigned i = 1; i < x->n; i++) {
        ctl_digest_hex(x->c[i], d);
        assert_string_equal(d, first);
    }
}

static int has_key(struct ctl *c, const char *key, const char *value)
{
    const uint8_t *v;
    size_t n;
    uint64_t rev;
    if (kv_get(ctl_kv(c), key, &v, &n, &rev) < 0)
        return 0;
    return n == strlen(value) && memcmp(v, value, n) == 0;
}

static bool fx_all_announced(struct raft_fixture *f, void *arg)
{
    (void)f;
    (void)arg;
    for (unsigned i = 0; i < g_fx->n; i++)
        if (!meta_last_leader(ctl_meta(g_fx->c[i])))
            return false;
    return true;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_deterministic_election(void **state)
{
    (void)state;
    struct fx *x = fx_new(3, 0, 0, 0);
    /* Server 0 has the shortest election timeout: it wins term 2 (bootstrap is
     * term 1; pre-vote does not raise the term). */
    fx_until_serving(x, 0, 2000);
    struct ctl_view v;
    ctl_view(x->c[0], &v);
    assert_int_equal(v.state, RAFT_LEADER);
    assert_int_equal(v.term, 2);
    assert_true(v.voter);
    assert_true(x->serving_seen[0]);
    /* Followers learn the leader, then its announcement (name) from the log. */
    assert_true(raft_fixture_step_until(&x->f, fx_all_announced, NULL, 2000));
    assert_digests_equal(x);
    for (unsigned i = 1; i < 3; i++) {
        ctl_view(x->c[i], &v);
        assert_int_equal(v.state, RAFT_FOLLOWER);
        assert_int_equal(v.leader_id, 1);
        assert_string_equal(v.leader_name, "n1");
        assert_false(v.serving);
        assert_true(x->leader_events[i] > 0);
    }
    const struct meta_leader *ml = meta_last_leader(ctl_meta(x->c[2]));
    assert_non_null(ml);
    assert_int_equal(ml->term, 2);
    fx_free(x);
}

static void test_propose_commit_apply_and_read(void **state)
{
    (void)state;
    struct fx *x = fx_new(3, 0, 0, 0);
    fx_until_serving(x, 0, 2000);
    struct outcome o[10] = {0};
    for (int i = 0; i < 10; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(propose_put(x->c[0], key, val, &o[i]), 0);
    }
    fx_until_answered(x, &o[9], 2000);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, 0);
        assert_int_equal(o[i].revision, (uint64_t)i + 1); /* applied in proposal order */
    }
    /* A follower refuses at once, and its callback never runs. */
    struct outcome f = {0};
    assert_int_equal(propose_put(x->c[1], "x", "y", &f), ID_ENOTLEADER);
    assert_int_equal(ctl_read_barrier(x->c[1], NULL, NULL), ID_ENOTLEADER);
    /* A rejected command is committed, applied as a no-op, and reported. */
    struct outcome bad = {0};
    assert_int_equal(propose_put(x->c[0], "", "empty key", &bad), 0);
    fx_until_answered(x, &bad, 2000);
    assert_int_equal(bad.status, ID_EINVAL);
    assert_digests_equal(x);
    for (unsigned i = 0; i < 3; i++)
        assert_true(has_key(x->c[i], "k7", "v7"));
    raft_fixture_step_until_elapsed(&x->f, 10);
    assert_int_equal(f.calls, 0);
    fx_free(x);
}

struct read_state {
    int calls;
    int status;
    int saw_value; /* the value was visible when the read completed */
};

static void on_read(void *ud, int status)
{
    struct read_state *r = ud;
    r->calls++;
    r->status = status;
    r->saw_value = status == 0 && has_key(g_fx->c[0], "rk", "rv");
}

static bool fx_read_done(struct raft_fixture *f, void *arg)
{
    (void)f;
    return ((struct read_state *)arg)->calls > 0;
}

static void test_read_barrier_sees_earlier_writes(void **state)
{
    (void)state;
    struct fx *x = fx_new(3, 0, 0, 0);
    fx_until_serving(x, 0, 2000);
    struct outcome o = {0};
    assert_int_equal(propose_put(x->c[0], "rk", "rv", &o), 0);
    /* Reads issued right after the write, before it committed, complete only
     * once it is applied; two reads share one barrier. */
    struct read_state r1 = {0}, r2 = {0};
    assert_int_equal(ctl_read_barrier(x->c[0], on_read, &r1), 0);
    assert_int_equal(ctl_read_barrier(x->c[0], on_read, &r2), 0);
    assert_int_equal(r1.calls, 0);
    assert_true(raft_fixture_step_until(&x->f, fx_read_done, &r2, 2000));
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r1.status, 0);
    assert_true(r1.saw_value);
    assert_true(r2.saw_value);
    assert_int_equal(o.status, 0);
    fx_free(x);
}

static void isolate(struct fx *x, unsigned i)
{
    for (unsigned j = 0; j < x->n; j++)
        if (j != i) {
            raft_fixture_disconnect(&x->f, i, j);
            raft_fixture_disconnect(&x->f, j, i);
        }
}

static void heal(struct fx *x, unsigned i)
{
    for (unsigned j = 0; j < x->n; j++)
        if (j != i) {
            raft_fixture_reconnect(&x->f, i, j);
            raft_fixture_reconnect(&x->f, j, i);
        }
}

static void test_partitioned_leader(void **state)
{
    (void)state;
    struct fx *x = fx_new(3, 0, 0, 0);
    fx_until_serving(x, 0, 2000);
    struct outcome before = {0};
    assert_int_equal(propose_put(x->c[0], "before", "1", &before), 0);
    fx_until_answered(x, &before, 2000);
    assert_int_equal(before.status, 0);

    /* Cut the leader off. It accepts a proposal but cannot commit it. */
    isolate(x, 0);
    struct outcome lost = {0};
    assert_int_equal(propose_put(x->c[0], "lost", "1", &lost), 0);
    /* The majority elects a new leader, which commits its own writes. */
    assert_true(raft_fixture_step_until(&x->f, fx_any_serving_except, (void *)(uintptr_t)0, 5000));
    unsigned nl = fx_serving_index(x);
    assert_true(nl == 1 || nl == 2);
    struct outcome kept = {0};
    assert_int_equal(propose_put(x->c[nl], "kept", "1", &kept), 0);
    fx_until_answered(x, &kept, 2000);
    assert_int_equal(kept.status, 0);
    /* The old leader stepped down on its own (no contact with a majority) and
     * told its proposer; it never acknowledged the write. */
    fx_until_answered(x, &lost, 2000);
    assert_int_equal(lost.status, ID_ENOTLEADER);
    assert_false(ctl_is_serving(x->c[0]));
    struct ctl_view v0, vn;
    ctl_view(x->c[0], &v0);
    ctl_view(x->c[nl], &vn);
    assert_true(vn.term > 2);

    /* Heal: the old leader's uncommitted entry is discarded and every replica
     * ends with the same state. */
    heal(x, 0);
    assert_digests_equal(x);
    for (unsigned i = 0; i < 3; i++) {
        assert_true(has_key(x->c[i], "before", "1"));
        assert_true(has_key(x->c[i], "kept", "1"));
        assert_false(has_key(x->c[i], "lost", "1"));
    }
    /* The replicated history has one leader per term, in increasing terms. */
    const struct meta_leader *hist;
    size_t n = meta_leaders(ctl_meta(x->c[0]), &hist);
    assert_true(n >= 2);
    for (size_t i = 1; i < n; i++)
        assert_true(hist[i].term > hist[i - 1].term);
    assert_int_equal(lost.calls, 1);
    fx_free(x);
}

static void test_proposal_timeout_answers_once(void **state)
{
    (void)state;
    /* A proposal timeout shorter than the election timeout. */
    struct fx *x = fx_new(3, 0, 0, 100);
    fx_until_serving(x, 0, 2000);
    isolate(x, 0);
    struct outcome o = {0};
    assert_int_equal(propose_put(x->c[0], "t", "1", &o), 0);
    fx_until_answered(x, &o, 1000);
    assert_int_equal(o.status, ID_ETIMEDOUT);
    /* Raft later fails the same request (leadership lost); the caller is not
     * told twice. */
    raft_fixture_step_until_elapsed(&x->f, 1500);
    assert_int_equal(o.calls, 1);
    assert_false(ctl_is_serving(x->c[0]));
    heal(x, 0);
    assert_digests_equal(x);
    fx_free(x);
}

static void test_lagging_node_catches_up_by_snapshot(void **state)
{
    (void)state;
    /* Snapshots every 16 entries, keeping 4: a node that misses 100 entries
     * cannot be sent them from the log and gets a snapshot. */
    struct fx *x = fx_new(3, 16, 4, 0);
    fx_until_serving(x, 0, 2000);
    raft_fixture_kill(&x->f, 2);
    struct outcome o[100] = {0};
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof key, "s%03d", i);
        assert_int_equal(propose_put(x->c[0], key, key, &o[i]), 0);
        if (i % 10 == 9)
            fx_until_answered(x, &o[i], 2000);
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(o[i].status, 0);
    assert_int_equal(raft_fixture_n_recv(&x->f, 2, RAFT_INSTALL_SNAPSHOT), 0);
    raft_fixture_revive(&x->f, 2);
    assert_digests_equal(x);
    assert_true(raft_fixture_n_recv(&x->f, 2, RAFT_INSTALL_SNAPSHOT) >= 1);
    assert_true(has_key(x->c[2], "s000", "s000"));
    assert_true(has_key(x->c[2], "s099", "s099"));
    assert_int_equal(kv_count(ctl_kv(x->c[2])), 100);
    /* It goes on with the others after the snapshot. */
    struct outcome more = {0};
    assert_int_equal(propose_put(x->c[0], "after", "1", &more), 0);
    fx_until_answered(x, &more, 2000);
    assert_digests_equal(x);
    assert_true(has_key(x->c[2], "after", "1"));
    fx_free(x);
}

static void test_five_voters_survive_two_failures(void **state)
{
    (void)state;
    struct fx *x = fx_new(5, 0, 0, 0);
    fx_until_serving(x, 0, 2000);
    raft_fixture_kill(&x->f, 0); /* the leader */
    raft_fixture_kill(&x->f, 4);
    assert_true(raft_fixture_step_until(&x->f, fx_any_serving_except, (void *)(uintptr_t)0, 5000));
    unsigned nl = fx_serving_index(x);
    assert_true(nl >= 1 && nl <= 3);
    struct outcome o = {0};
    assert_int_equal(propose_put(x->c[nl], "k", "v", &o), 0);
    fx_until_answered(x, &o, 2000);
    assert_int_equal(o.status, 0);
    /* A third failure leaves no majority: the leader cannot commit. */
    unsigned third = nl == 1 ? 2 : 1;
    raft_fixture_kill(&x->f, third);
    struct outcome stuck = {0};
    assert_int_equal(propose_put(x->c[nl], "k2", "v", &stuck), 0);
    fx_until_answered(x, &stuck, 3000);
    assert_int_not_equal(stuck.status, 0);
    fx_free(x);
}

struct change_state {
    int calls;
    int status;
};

static void on_change(void *ud, int status)
{
    struct change_state *ch = ud;
    ch->calls++;
    ch->status = status;
}

static bool fx_change_done(struct raft_fixture *f, void *arg)
{
    (void)f;
    return ((struct change_state *)arg)->calls > 0;
}

/* One change on the leader, stepped to completion. */
static void change(struct fx *x, unsigned leader, int op, uint64_t id, int role)
{
    struct change_state ch = {0};
    int rc = op == 0   ? ctl_change_add(x->c[leader], id, "4", on_change, &ch)
             : op == 1 ? ctl_change_assign(x->c[leader], id, role, on_change, &ch)
                       : ctl_change_remove(x->c[leader], id, on_change, &ch);
    assert_int_equal(rc, 0);
    /* One change at a time. */
    assert_true(ctl_change_pending(x->c[leader]));
    assert_int_equal(ctl_change_remove(x->c[leader], 2, NULL, NULL), ID_EBUSY);
    assert_true(raft_fixture_step_until(&x->f, fx_change_done, &ch, 5000));
    assert_int_equal(ch.status, 0);
}

static void test_replace_a_dead_voter(void **state)
{
    (void)state;
    struct fx *x = fx_new(3, 0, 0, 0);
    fx_until_serving(x, 0, 2000);
    struct outcome o = {0};
    assert_int_equal(propose_put(x->c[0], "k1", "v", &o), 0);
    fx_until_answered(x, &o, 2000);
    raft_fixture_kill(&x->f, 2); /* voter 3 is gone for good */

    /* A fourth, empty server joins the fixture (raft id 4, address "4"). */
    struct ctl_config cfg = {
        .name = "n4", .clock_ms = fx_clock, .clock_ud = &x->f, .seq_base = 4000};
    assert_int_equal(ctl_create_detached(&cfg, &x->c[3]), 0);
    assert_int_equal(raft_fixture_grow(&x->f, ctl_fsm(x->c[3])), 0);
    struct raft *r4 = raft_fixture_get(&x->f, 3);
    ctl_attach(x->c[3], r4);
    r4->tracer = NULL;
    raft_fixture_set_randomized_election_timeout(&x->f, 3, 360);
    x->n = 4;
    assert_int_equal(raft_start(r4), 0);

    /* Followers and non-leaders cannot change the configuration. */
    assert_int_equal(ctl_change_add(x->c[1], 4, "4", NULL, NULL), ID_ENOTLEADER);
    /* Spare, then standby (it receives the log), then voter, then the dead
     * voter leaves: the group has three voters again. */
    change(x, 0, 0, 4, 0);
    change(x, 0, 1, 4, RAFT_STANDBY);
    change(x, 0, 1, 4, RAFT_VOTER);
    change(x, 0, 2, 3, 0);
    struct ctl_server servers[CTL_MAX_SERVERS];
    size_t ns = ctl_servers(x->c[0], servers, CTL_MAX_SERVERS);
    assert_int_equal(ns, 3);
    for (size_t i = 0; i < ns; i++) {
        assert_int_equal(servers[i].role, RAFT_VOTER);
        assert_true(servers[i].id != 3);
    }
    assert_true(has_key(x->c[3], "k1", "v")); /* the newcomer has the old state */

    /* With the new voter, the group survives one more failure. */
    raft_fixture_kill(&x->f, 1);
    struct outcome o2 = {0};
    assert_int_equal(propose_put(x->c[0], "k2", "v", &o2), 0);
    fx_until_answered(x, &o2, 3000);
    assert_int_equal(o2.status, 0);
    assert_true(raft_fixture_step_until(&x->f, fx_converged, NULL, 3000));
    char d0[65], d3[65];
    ctl_digest_hex(x->c[0], d0);
    ctl_digest_hex(x->c[3], d3);
    assert_string_equal(d0, d3);
    fx_free(x);
}

int main(void)
{
    log_set_level(LOG_LEVEL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_election),
        cmocka_unit_test(test_propose_commit_apply_and_read),
        cmocka_unit_test(test_read_barrier_sees_earlier_writes),
        cmocka_unit_test(test_partitioned_leader),
        cmocka_unit_test(test_proposal_timeout_answers_once),
        cmocka_unit_test(test_lagging_node_catches_up_by_snapshot),
        cmocka_unit_test(test_five_voters_survive_two_failures),
        cmocka_unit_test(test_replace_a_dead_voter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
