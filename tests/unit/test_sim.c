/* test_sim.c — the simulated-cluster tier (tests/sim/, docs/testing.md): five
 * nodes' control plane on libraft's fixture with SDFS, workers and the
 * leader's dispatch as services, run through seeded fault schedules.
 *
 * Seed N runs fault kind N % 8 (crash of a voter, of the leader, partition of
 * the leader, one-way links, loss, several nodes at once, leader churn, all
 * mixed); each kind gets its own test over its share of the seeds.
 *
 *   SIM_SCHEDULES=N   how many seeds in all [200; 24 under ASan]
 *   SIM_SEED=N        run only seed N, printing its events (replay)
 *   SIM_VERBOSE=0|1   print events (default: 1 with SIM_SEED)
 *
 * A failing schedule prints its seed and the broken invariant. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../sim/sim.h"
#include "base/log.h"

extern unsigned long sim_jobs_duplicates_total, sim_jobs_reforwards_total, sim_jobs_requeues_total;

static const struct sim_service_ops *const services[] = {&sim_sdfs_ops, &sim_worker_ops,
                                                         &sim_dispatch_ops};

static volatile sig_atomic_t g_seed_running = -1;

/* libraft's fixture aborts when two servers lead the same term: say which
 * schedule did it. */
static void on_abort(int sig)
{
    char buf[96];
    int n = snprintf(buf, sizeof buf, "\nsim: schedule seed %d aborted; replay with SIM_SEED=%d\n",
                     (int)g_seed_running, (int)g_seed_running);
    if (n > 0 && write(2, buf, (size_t)n) < 0)
        _exit(134);
    signal(sig, SIG_DFL);
    raise(sig);
}

static unsigned long env_num(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 10) : dflt;
}

static unsigned schedules(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return (unsigned)env_num("SIM_SCHEDULES", 24);
#else
    return (unsigned)env_num("SIM_SCHEDULES", 200);
#endif
}

static int run_seed(uint64_t seed, int verbose)
{
    struct sim_config cfg = {.seed = seed, .fault = -1, .verbose = verbose};
    const char *msg;
    g_seed_running = (sig_atomic_t)seed;
    int rc = sim_run(&cfg, services, sizeof services / sizeof services[0], &msg);
    g_seed_running = -1;
    if (rc < 0)
        fprintf(stderr,
                "sim: schedule seed %llu (%s) failed: %s\n"
                "sim: replay with SIM_SEED=%llu build/tests/test_sim\n",
                (unsigned long long)seed, sim_fault_name((enum sim_fault)(seed % SIM_FAULT_KINDS)),
                msg, (unsigned long long)seed);
    return rc;
}

/* Every seed of one fault kind among the first SIM_SCHEDULES. */
static void run_kind(enum sim_fault kind)
{
    if (getenv("SIM_SEED"))
        skip();
    unsigned n = schedules(), failed = 0, ran = 0;
    for (uint64_t seed = kind; seed < n; seed += SIM_FAULT_KINDS, ran++)
        failed += run_seed(seed, (int)env_num("SIM_VERBOSE", 0)) < 0;
    if (failed)
        fail_msg("%u of %u %s schedules failed (seeds above)", failed, ran, sim_fault_name(kind));
}

static void test_crash_voter(void **state)
{
    (void)state;
    run_kind(SIM_CRASH_VOTER);
}
static void test_crash_leader(void **state)
{
    (void)state;
    run_kind(SIM_CRASH_LEADER);
}
static void test_partition_leader(void **state)
{
    (void)state;
    run_kind(SIM_PART_LEADER);
}
static void test_one_way(void **state)
{
    (void)state;
    run_kind(SIM_ONE_WAY);
}
static void test_loss(void **state)
{
    (void)state;
    run_kind(SIM_LOSS);
}
static void test_multi(void **state)
{
    (void)state;
    run_kind(SIM_MULTI);
}
static void test_churn(void **state)
{
    (void)state;
    run_kind(SIM_CHURN);
}
static void test_mixed(void **state)
{
    (void)state;
    run_kind(SIM_MIXED);
}

/* The duplicate paths were exercised: otherwise "exactly one result" would
 * prove little. */
static void test_duplicates_exercised(void **state)
{
    (void)state;
    if (getenv("SIM_SEED"))
        skip();
    fprintf(stderr,
            "sim: %lu duplicate results dropped by the state machine, %lu completions "
            "re-forwarded, %lu requeues over all schedules\n",
            sim_jobs_duplicates_total, sim_jobs_reforwards_total, sim_jobs_requeues_total);
    assert_true(sim_jobs_duplicates_total > 0);
}

static void test_replay(void **state)
{
    (void)state;
    const char *v = getenv("SIM_SEED");
    if (!v)
        skip();
    uint64_t seed = strtoull(v, NULL, 10);
    assert_int_equal(run_seed(seed, (int)env_num("SIM_VERBOSE", 1)), 0);
}

int main(void)
{
    log_set_level(LOG_LEVEL_ERROR);
    signal(SIGABRT, on_abort);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay),       cmocka_unit_test(test_crash_voter),
        cmocka_unit_test(test_crash_leader), cmocka_unit_test(test_partition_leader),
        cmocka_unit_test(test_one_way),      cmocka_unit_test(test_loss),
        cmocka_unit_test(test_multi),        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_mixed),        cmocka_unit_test(test_duplicates_exercised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
