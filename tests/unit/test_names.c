/* test_names.c — the name rule and the escaping of printed text: names with
 * control characters, spaces, invalid UTF-8 or too many bytes are refused;
 * what is printed anyway (log lines, /metrics label values, CLI tables)
 * carries no control character, and escaping is reversible enough to read
 * (\xNN, \\). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"
#include "base/names.h"
#include "base/strbuf.h"
#include "cli/cli.h"
#include "http/prom.h"

static int has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            return 1;
        if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9f)
            return 1;
    }
    return 0;
}

static void test_name_rule(void **state)
{
    (void)state;
    static const char *const good[] = {"node1", "node-2.example", "a", "Zürich", "节点", "x_y:z"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!id_name_ok(good[i], 64))
            fail_msg("'%s' refused", good[i]);
    static const char *const bad[] = {
        "",           "node\x1b[2J", "a\rb",    "tab\there",         "with space",     "del\x7f",
        "c1\xc2\x9b", "\xff\xfe",    "bad\xc3", "over\xe0\x80\xafx", "sur\xed\xa0\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (id_name_ok(bad[i], 64))
            fail_msg("bad name %zu accepted", i);
    assert_false(id_name_ok(NULL, 64));
    assert_true(id_name_ok("abcd", 4));
    assert_false(id_name_ok("abcde", 4));
}

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(id_escape("plain Zürich", out, sizeof out), "plain Zürich");
    assert_string_equal(id_escape("a\x1b[2Jb", out, sizeof out), "a\\x1b[2Jb");
    assert_string_equal(id_escape("back\\slash\r\n", out, sizeof out), "back\\\\slash\\x0d\\x0a");
    assert_string_equal(id_escape("c1\xc2\x9b"
                                  "end",
                                  out, sizeof out),
                        "c1\\xc2\\x9bend");
    assert_string_equal(id_escape("\xff", out, sizeof out), "\\xff");
    /* Truncated between characters, never inside an escape or a sequence. */
    assert_string_equal(id_escape("ab\x1b", out, 5), "ab");
    assert_string_equal(id_escape("aü", out, 3), "a");
    assert_string_equal(id_escape(NULL, out, sizeof out), "");
}

static void test_log_lines_are_escaped(void **state)
{
    (void)state;
    char path[] = "/tmp/test_names_log.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(log_open(path, "node1", 0), 0);
    log_write(LOG_LEVEL_WARN, "test", "member %s joined\r\nFAKE line", "evil\x1b]0;title\x07");
    log_close();
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    unlink(path);
    buf[n] = 0;
    assert_false(has_control(buf, n));
    assert_non_null(strstr(buf, "evil\\x1b]0;title\\x07"));
    assert_int_equal(strchr(buf, '\n') - buf, (long)n - 1); /* one line */
}

static void test_metrics_labels_are_escaped(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    struct prom_out p;
    prom_out_init(&p, &sb);
    prom_family(&p, "idunno_member_state", PROM_GAUGE, "help\x1b[31m text");
    prom_sample(&p, PROM_LABELS({"member", "n\x1b[2J\"q\"\x7f\xc2\x85"}), 1);
    assert_false(has_control(sb.data, sb.len));
    assert_non_null(strstr(sb.data, "member=\"n\\\\x1b[2J\\\"q\\\"\\\\x7f\\\\x85\""));
    assert_non_null(strstr(sb.data, "help\\\\x1b[31m text"));
    strbuf_free(&sb);
}

static void test_cli_tables_are_escaped(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cli_out_set(f);
    struct cli_table *t = cli_table_new(2, "NAME", "STATE");
    cli_table_row(t, "node\x1b[2J", "alive\r");
    cli_table_print(t);
    fclose(f);
    cli_out_set(NULL);
    assert_false(has_control(text, len));
    assert_non_null(strstr(text, "node\\x1b[2J"));
    assert_non_null(strstr(text, "alive\\x0d"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_rule),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_log_lines_are_escaped),
        cmocka_unit_test(test_metrics_labels_are_escaped),
        cmocka_unit_test(test_cli_tables_are_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
