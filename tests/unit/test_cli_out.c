/* test_cli_out.c — the CLI's output: the JSON writer always produces valid
 * JSON (escapes, invalid UTF-8, non-finite numbers, nesting), writes message
 * fields by name as the hand-written members did, and tables align. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "idunno.pb-c.h"

static char *captured;
static size_t captured_len;
static FILE *mem;

static void capture_begin(void)
{
    free(captured);
    captured = NULL;
    mem = open_memstream(&captured, &captured_len);
    assert_non_null(mem);
    cli_out_set(mem);
}

static const char *capture_end(void)
{
    cli_out_set(NULL);
    fclose(mem);
    mem = NULL;
    return captured;
}

static void test_json_escapes(void **state)
{
    (void)state;
    capture_begin();
    cli_json_begin_object();
    cli_json_str("quote\"key", "a \"b\" \\ c");
    cli_json_str("ctl", "tab\there\nnl\r\x01\x1f\b\f");
    cli_json_str("utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    cli_json_str("null_value", NULL);
    cli_json_end_object();
    cli_json_done();
    assert_string_equal(capture_end(), "{\"quote\\\"key\":\"a \\\"b\\\" \\\\ c\","
                                       "\"ctl\":\"tab\\there\\nnl\\r\\u0001\\u001f\\b\\f\","
                                       "\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\","
                                       "\"null_value\":\"\"}\n");
}

static void test_json_invalid_utf8_becomes_replacement(void **state)
{
    (void)state;
    capture_begin();
    cli_json_begin_array(NULL);
    cli_json_str(NULL, "\xff");             /* never valid */
    cli_json_str(NULL, "a\xc3");            /* truncated sequence at the end */
    cli_json_str(NULL, "\xc0\xaf");         /* overlong '/' */
    cli_json_str(NULL, "\xed\xa0\x80");     /* a UTF-16 surrogate */
    cli_json_str(NULL, "\xf4\x90\x80\x80"); /* above U+10FFFF */
    cli_json_str(NULL, "\xe2\x82x");        /* broken in the middle */
    cli_json_end_array();
    cli_json_done();
    assert_string_equal(capture_end(), "[\"\\ufffd\",\"a\\ufffd\",\"\\ufffd\\ufffd\","
                                       "\"\\ufffd\\ufffd\\ufffd\",\"\\ufffd\\ufffd\\ufffd\\ufffd\","
                                       "\"\\ufffd\\ufffdx\"]\n");
}

static void test_json_nesting_and_numbers(void **state)
{
    (void)state;
    capture_begin();
    cli_json_begin_object();
    cli_json_begin_array("nodes");
    for (int i = 0; i < 2; i++) {
        cli_json_begin_object();
        cli_json_u64("count", (uint64_t)i * 10);
        cli_json_begin_array("lines");
        cli_json_end_array();
        cli_json_end_object();
    }
    cli_json_end_array();
    cli_json_key_object("inner");
    cli_json_i64("neg", -5);
    cli_json_bool("t", 1);
    cli_json_end_object();
    cli_json_double("rate", 2.5);
    cli_json_double("nan", NAN);
    cli_json_double("inf", INFINITY);
    cli_json_u64("big", UINT64_MAX);
    cli_json_end_object();
    cli_json_done();
    assert_string_equal(capture_end(),
                        "{\"nodes\":[{\"count\":0,\"lines\":[]},{\"count\":10,\"lines\":[]}],"
                        "\"inner\":{\"neg\":-5,\"t\":true},\"rate\":2.5,\"nan\":null,\"inf\":null,"
                        "\"big\":18446744073709551615}\n");
    /* cli_json_done resets: a second document starts clean */
    capture_begin();
    cli_json_begin_object();
    cli_json_str("a", "b");
    cli_json_end_object();
    cli_json_done();
    assert_string_equal(capture_end(), "{\"a\":\"b\"}\n");
}

/* cli_json_fields against the members written one by one: strings, 32- and
 * 64-bit unsigned, bools, in the order named (not the message's order). */
static void test_json_fields_by_name(void **state)
{
    (void)state;
    Idunno__CtlServer s = IDUNNO__CTL_SERVER__INIT;
    s.name = "node\"1";
    s.addr = "127.0.0.1:7000";
    s.raft_addr = "";
    s.id = UINT64_MAX;
    s.role = "voter";
    s.leader = 1;
    Idunno__ModelInfo m = IDUNNO__MODEL_INFO__INIT;
    m.name = "tiny";
    m.input_size = 4000000000u;
    m.size = 7;
    for (int by_name = 0; by_name < 2; by_name++) {
        capture_begin();
        cli_json_begin_object();
        if (by_name) {
            cli_json_fields(&s.base, "leader  id name addr raft_addr role");
            cli_json_fields(&m.base, "input_size size name");
        } else {
            cli_json_bool("leader", s.leader);
            cli_json_u64("id", s.id);
            cli_json_str("name", s.name);
            cli_json_str("addr", s.addr);
            cli_json_str("raft_addr", s.raft_addr);
            cli_json_str("role", s.role);
            cli_json_u64("input_size", m.input_size);
            cli_json_u64("size", m.size);
            cli_json_str("name", m.name);
        }
        cli_json_end_object();
        cli_json_done();
        assert_string_equal(capture_end(),
                            "{\"leader\":true,\"id\":18446744073709551615,\"name\":\"node\\\"1\","
                            "\"addr\":\"127.0.0.1:7000\",\"raft_addr\":\"\",\"role\":\"voter\","
                            "\"input_size\":4000000000,\"size\":7,\"name\":\"tiny\"}\n");
    }
}

static void test_table_aligns(void **state)
{
    (void)state;
    capture_begin();
    struct cli_table *t = cli_table_new(3, "NODE", "MATCHES", "NOTE");
    cli_table_row(t, "node10", "7", "");
    cli_table_row(t, "n\xc3\xa9", "12345", NULL); /* 2 code points, 3 bytes */
    cli_table_print(t);
    assert_string_equal(capture_end(), "NODE    MATCHES  NOTE\n"
                                       "node10  7        \n"
                                       "n\xc3\xa9      12345    \n");
}

static void test_fmt_ms(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(cli_fmt_ms(999, b, sizeof b), "999ms");
    assert_string_equal(cli_fmt_ms(1500, b, sizeof b), "1.5s");
    assert_string_equal(cli_fmt_ms(125000, b, sizeof b), "2m5s");
    assert_string_equal(cli_fmt_ms(3 * 3600000 + 60000, b, sizeof b), "3h1m");
}

static int teardown_all(void **state)
{
    (void)state;
    free(captured);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_invalid_utf8_becomes_replacement),
        cmocka_unit_test(test_json_nesting_and_numbers),
        cmocka_unit_test(test_json_fields_by_name),
        cmocka_unit_test(test_table_aligns),
        cmocka_unit_test(test_fmt_ms),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
