/* test_node.c — idunnod's command line: defaults, the join list, and every
 * rejection naming what to fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "base/log.h"
#include "node/node.h"

/* ARGS("--name", "x") expands to an argv (with the program name) and its argc. */
#define ARGS(...)                             \
    (char *[]){"idunnod", __VA_ARGS__, NULL}, \
        (int)(sizeof((char *[]){"idunnod", __VA_ARGS__}) / sizeof(char *))

static int parse(char **argv, int argc, struct node_config *cfg, char *err)
{
    err[0] = 0;
    return node_parse_args(argc, argv, cfg, err, 256);
}

static void test_defaults_and_join_list(void **state)
{
    (void)state;
    struct node_config cfg;
    char err[256];
    assert_int_equal(parse(ARGS("--name", "node3", "--addr", "127.0.0.1:7120", "--join",
                                "127.0.0.1:7100,127.0.0.1:7110", "--join", "[::1]:7130",
                                "--coordinators", "node1,node2,node3", "--log-level", "debug"),
                           &cfg, err),
                     0);
    assert_string_equal(cfg.name, "node3");
    assert_string_equal(cfg.addr, "127.0.0.1:7120");
    assert_string_equal(cfg.data_dir, "run/node3"); /* ./run/NAME */
    assert_string_equal(cfg.join[0], "127.0.0.1:7100");
    assert_string_equal(cfg.join[1], "127.0.0.1:7110");
    assert_string_equal(cfg.join[2], "[::1]:7130");
    assert_null(cfg.join[3]);
    assert_string_equal(cfg.coordinators, "node1,node2,node3");
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    node_config_free(&cfg);
    assert_null(cfg.join[0]);

    assert_int_equal(
        parse(ARGS("--addr", "127.0.0.1:7100", "--name", "a_b-c.d", "--data", "/tmp/x"), &cfg, err),
        0);
    assert_string_equal(cfg.data_dir, "/tmp/x");
    assert_null(cfg.join[0]);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_int_equal(cfg.no_http, 0); /* HTTP on PORT+2 unless --no-http */
    node_config_free(&cfg);

    assert_int_equal(parse(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--no-http"), &cfg, err),
                     0);
    assert_int_equal(cfg.no_http, 1);
    assert_int_equal(cfg.infer_sched_batch, 0); /* normal scheduling unless asked */
    node_config_free(&cfg);

    assert_int_equal(
        parse(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--infer-sched", "batch"), &cfg, err),
        0);
    assert_int_equal(cfg.infer_sched_batch, 1);
    assert_int_equal(cfg.infer_threads, 0); /* one ONNX Runtime thread unless asked */
    node_config_free(&cfg);

    assert_int_equal(
        parse(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--infer-threads", "1"), &cfg, err),
        0);
    assert_int_equal(cfg.infer_threads, 1);
    assert_int_equal(cfg.snapshot_every, 0); /* ctl's default unless asked */
    node_config_free(&cfg);

    assert_int_equal(
        parse(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--snapshot-every", "64"), &cfg, err),
        0);
    assert_int_equal(cfg.snapshot_every, 64);
    node_config_free(&cfg);
}

static void expect_reject(char **argv, int argc, const char *says)
{
    struct node_config cfg;
    char err[256];
    assert_int_equal(parse(argv, argc, &cfg, err), ID_EINVAL);
    if (!strstr(err, says))
        fail_msg("message '%s' does not mention '%s'", err, says);
    node_config_free(&cfg);
}

static void test_rejections_say_what_to_fix(void **state)
{
    (void)state;
    expect_reject(ARGS("--name", "x"), "--addr");
    expect_reject(ARGS("--addr", "127.0.0.1:7100"), "--name");
    expect_reject(ARGS("--name", "x", "--addr", "somehost:7100"), "HOST:PORT");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--infer-sched", "fast"),
                  "batch or normal");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1"), "HOST:PORT");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--infer-threads", "0"),
                  "the cores here");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--infer-threads", "100000"),
                  "the cores here");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--snapshot-every", "8"),
                  "16 to 1000000");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--snapshot-every", "many"),
                  "16 to 1000000");
    expect_reject(ARGS("--name", "bad name", "--addr", "127.0.0.1:7100"), "letters");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--join", "127.0.0.1:7110,nope"),
                  "nope");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--log-level", "loud"), "debug");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "extra"), "extra");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--probe-interval", "-5"),
                  "milliseconds");
    expect_reject(ARGS("--name", "x", "--addr", "127.0.0.1:7100", "--no-such-option"),
                  "'--no-such-option'");
    expect_reject(ARGS("--name", "x", "--addr"), "--addr needs a value");
}

static void test_help(void **state)
{
    (void)state;
    struct node_config cfg;
    char err[256];
    /* --help wins even without the required options (usage goes to stdout). */
    assert_int_equal(parse(ARGS("--help"), &cfg, err), 1);
    node_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_join_list),
        cmocka_unit_test(test_rejections_say_what_to_fix),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
