/* test_http_out.c — the output writers behind the HTTP endpoint: the growable
 * string, the Prometheus text format (HELP/TYPE lines, escaping, names,
 * number formats, cumulative histogram buckets) and the JSON writer (commas,
 * escaping, unbalanced and oversized documents), each against exact text. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/json_out.h"
#include "base/strbuf.h"
#include "http/prom.h"
#include "http/route.h"

/* ---- strbuf ------------------------------------------------------------------------------- */

static void test_strbuf_grows_and_resets(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    assert_string_equal(strbuf_str(&sb), "");
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    strbuf_printf(&sb, "%d-%s", 42, "a");
    strbuf_printf(&sb, "[%s]", big); /* longer than the first allocation */
    strbuf_putc(&sb, '!');
    assert_int_equal(sb.len, 4 + 2 + 999 + 1);
    assert_int_equal(strlen(strbuf_str(&sb)), sb.len);
    assert_memory_equal(strbuf_str(&sb), "42-a[xxx", 8);
    assert_string_equal(strbuf_str(&sb) + sb.len - 2, "]!");
    assert_int_equal(strbuf_failed(&sb), 0);
    size_t cap = sb.cap;
    strbuf_reset(&sb);
    assert_string_equal(strbuf_str(&sb), "");
    assert_int_equal(sb.cap, cap);   /* memory kept for reuse */
    strbuf_append(&sb, "ab\0cd", 5); /* bytes, NULs included */
    assert_int_equal(sb.len, 5);
    assert_memory_equal(sb.data, "ab\0cd", 6);
    strbuf_free(&sb);
    assert_null(sb.data);
    assert_int_equal(sb.len, 0);
}

/* ---- Prometheus ---------------------------------------------------------------------------- */

static void test_prom_counter_gauge_and_escaping(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    struct prom_out p;
    prom_out_init(&p, &sb);
    prom_counter(&p, "idunno_test_events_total", "Events seen.", 7);
    prom_family(&p, "idunno_test_state", PROM_GAUGE, "A help text with \\ and\na newline.");
    prom_sample(&p, PROM_LABELS({"member", "node\"1\""}, {"note", "back\\slash\nnewline"}), 1);
    prom_sample(&p, PROM_LABELS({"member", "caf\xc3\xa9"}, {"note", "bad \xff byte"}), 0);
    prom_sample(&p, PROM_LABELS({"member", NULL}), 2.5);
    prom_gauge(&p, "idunno_test_temperature_celsius", "", -3.25);
    assert_int_equal(strbuf_failed(&sb), 0);
    assert_string_equal(
        strbuf_str(&sb),
        "# HELP idunno_test_events_total Events seen.\n"
        "# TYPE idunno_test_events_total counter\n"
        "idunno_test_events_total 7\n"
        "# HELP idunno_test_state A help text with \\\\ and\\na newline.\n"
        "# TYPE idunno_test_state gauge\n"
        "idunno_test_state{member=\"node\\\"1\\\"\",note=\"back\\\\slash\\nnewline\"} 1\n"
        "idunno_test_state{member=\"caf\xc3\xa9\",note=\"bad \xef\xbf\xbd byte\"} 0\n"
        "idunno_test_state{member=\"\"} 2.5\n"
        "# HELP idunno_test_temperature_celsius \n"
        "# TYPE idunno_test_temperature_celsius gauge\n"
        "idunno_test_temperature_celsius -3.25\n");
    strbuf_free(&sb);
}

static void test_prom_names_are_sanitised(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    struct prom_out p;
    prom_out_init(&p, &sb);
    /* A bad name must not break the document: bad characters become '_'. */
    prom_family(&p, "9bad-name.x:ok", PROM_UNTYPED, "h");
    prom_sample(&p, PROM_LABELS({"le:x-1", "v"}, {"2", "w"}, {"", "z"}), 1);
    prom_family(&p, "", PROM_GAUGE, "h");
    prom_sample(&p, PROM_NO_LABELS, 0);
    assert_string_equal(strbuf_str(&sb), "# HELP _bad_name_x:ok h\n"
                                         "# TYPE _bad_name_x:ok untyped\n"
                                         "_bad_name_x:ok{le_x_1=\"v\",_=\"w\",_=\"z\"} 1\n"
                                         "# HELP _ h\n"
                                         "# TYPE _ gauge\n"
                                         "_ 0\n");
    strbuf_free(&sb);
}

static void test_prom_numbers(void **state)
{
    (void)state;
    char b[40];
    assert_string_equal(prom_format_double(0, b, sizeof b), "0");
    assert_string_equal(prom_format_double(-0.0, b, sizeof b), "0");
    assert_string_equal(prom_format_double(42, b, sizeof b), "42");
    assert_string_equal(prom_format_double(-7, b, sizeof b), "-7");
    assert_string_equal(prom_format_double(0.1, b, sizeof b), "0.1");
    assert_string_equal(prom_format_double(1e-05, b, sizeof b), "1e-05");
    assert_string_equal(prom_format_double(1795538615.856, b, sizeof b), "1795538615.856");
    assert_string_equal(prom_format_double(1.0 / 3, b, sizeof b), "0.3333333333333333");
    assert_string_equal(prom_format_double(1e300, b, sizeof b), "1e+300");
    assert_string_equal(prom_format_double(NAN, b, sizeof b), "NaN");
    assert_string_equal(prom_format_double(INFINITY, b, sizeof b), "+Inf");
    assert_string_equal(prom_format_double(-INFINITY, b, sizeof b), "-Inf");
    /* Every formatted value reads back to the same double. */
    const double vs[] = {0.1, 2.5e-7, 123456.789, 1.0 / 7, 9007199254740993.0, -1e-300};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
        assert_true(strtod(prom_format_double(vs[i], b, sizeof b), NULL) == vs[i]);

    /* Counts beyond 2^53 are exact. */
    struct strbuf sb = STRBUF_INIT;
    struct prom_out p;
    prom_out_init(&p, &sb);
    prom_sample_u64(&p, PROM_NO_LABELS, 5); /* before any family: nothing */
    prom_sample(&p, PROM_NO_LABELS, 5);
    assert_string_equal(strbuf_str(&sb), "");
    prom_counter(&p, "big_total", "h", UINT64_MAX);
    assert_string_equal(
        strbuf_str(&sb),
        "# HELP big_total h\n# TYPE big_total counter\nbig_total 18446744073709551615\n");
    strbuf_free(&sb);
}

static void test_prom_histogram_is_cumulative(void **state)
{
    (void)state;
    static const double bounds[] = {0.005, 0.01, 0.1, 1};
    uint64_t counts[5] = {0};
    double sum = 0;
    /* le is inclusive: an observation equal to a bound counts in its bucket. */
    const double obs[] = {0.001, 0.1, 0.05, 0.5, 1, 0.2, 2, 3, 10, 100};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        prom_histogram_observe(bounds, 4, counts, &sum, obs[i]);
    const uint64_t want[5] = {1, 0, 2, 3, 4};
    assert_memory_equal(counts, want, sizeof want);
    assert_true(fabs(sum - 116.851) < 1e-9);

    struct strbuf sb = STRBUF_INIT;
    struct prom_out p;
    prom_out_init(&p, &sb);
    prom_family(&p, "idunno_job_query_seconds", PROM_HISTOGRAM, "Query processing time.");
    struct prom_histogram h = {.bounds = bounds, .n_bounds = 4, .counts = counts, .sum = 16.5};
    prom_histogram_sample(&p, PROM_LABELS({"job", "resnet50"}), &h);
    static const uint64_t none[1] = {0};
    struct prom_histogram empty = {.bounds = NULL, .n_bounds = 0, .counts = none, .sum = 0};
    prom_histogram_sample(&p, PROM_NO_LABELS, &empty);
    assert_string_equal(strbuf_str(&sb),
                        "# HELP idunno_job_query_seconds Query processing time.\n"
                        "# TYPE idunno_job_query_seconds histogram\n"
                        "idunno_job_query_seconds_bucket{job=\"resnet50\",le=\"0.005\"} 1\n"
                        "idunno_job_query_seconds_bucket{job=\"resnet50\",le=\"0.01\"} 1\n"
                        "idunno_job_query_seconds_bucket{job=\"resnet50\",le=\"0.1\"} 3\n"
                        "idunno_job_query_seconds_bucket{job=\"resnet50\",le=\"1\"} 6\n"
                        "idunno_job_query_seconds_bucket{job=\"resnet50\",le=\"+Inf\"} 10\n"
                        "idunno_job_query_seconds_sum{job=\"resnet50\"} 16.5\n"
                        "idunno_job_query_seconds_count{job=\"resnet50\"} 10\n"
                        "idunno_job_query_seconds_bucket{le=\"+Inf\"} 0\n"
                        "idunno_job_query_seconds_sum 0\n"
                        "idunno_job_query_seconds_count 0\n");
    strbuf_free(&sb);
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void test_json_document(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    struct json_out j;
    json_out_init(&j, &sb);
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "name", "node\"1\"\n\x01");
    json_out_u64(&j, "big", UINT64_MAX);
    json_out_i64(&j, "neg", -3);
    json_out_double(&j, "rate", 4.25);
    json_out_double(&j, "nan", NAN);
    json_out_bool(&j, "ok", 0);
    json_out_null(&j, "none");
    json_out_begin_array(&j, "members");
    json_out_begin_object(&j, NULL);
    json_out_str(&j, "state", "alive");
    json_out_end(&j);
    json_out_str(&j, NULL, "\xff");
    json_out_begin_array(&j, NULL);
    json_out_end(&j);
    json_out_end(&j);
    json_out_raw(&j, "raw", "{\"a\":[1,2]}", 11);
    json_out_end(&j);
    json_out_end(&j); /* nothing left to close: ignored */
    assert_int_equal(json_out_top_count(&j), 1);
    assert_int_equal(strbuf_failed(&sb), 0);
    assert_string_equal(
        strbuf_str(&sb),
        "{\"name\":\"node\\\"1\\\"\\n\\u0001\",\"big\":18446744073709551615,"
        "\"neg\":-3,\"rate\":4.25,\"nan\":null,\"ok\":false,\"none\":null,"
        "\"members\":[{\"state\":\"alive\"},\"\\ufffd\",[]],\"raw\":{\"a\":[1,2]}}");
    strbuf_free(&sb);
}

static void test_json_unbalanced_and_too_deep(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    struct json_out j;
    json_out_init(&j, &sb);
    assert_int_equal(json_out_top_count(&j), 0);
    json_out_begin_object(&j, NULL);
    json_out_begin_array(&j, "a");
    json_out_begin_object(&j, NULL);
    json_out_end_all(&j); /* closes each with its own bracket */
    assert_string_equal(strbuf_str(&sb), "{\"a\":[{}]}");
    json_out_str(&j, NULL, "second");
    assert_int_equal(json_out_top_count(&j), 2);

    strbuf_reset(&sb);
    json_out_init(&j, &sb);
    for (int i = 0; i < JSON_OUT_MAX_DEPTH; i++)
        json_out_begin_array(&j, NULL);
    assert_int_equal(strbuf_failed(&sb), 0);
    json_out_begin_array(&j, NULL); /* one too deep: the document fails */
    assert_int_not_equal(strbuf_failed(&sb), 0);
    strbuf_free(&sb);
}

/* ---- routes ----------------------------------------------------------------------------------- */

static void test_routes(void **state)
{
    (void)state;
    assert_int_equal(http_route_match("/"), HTTP_ROUTE_DASHBOARD);
    assert_int_equal(http_route_match("/metrics"), HTTP_ROUTE_METRICS);
    assert_int_equal(http_route_match("/metrics?x=1"), HTTP_ROUTE_METRICS);
    assert_int_equal(http_route_match("/healthz"), HTTP_ROUTE_HEALTHZ);
    assert_int_equal(http_route_match("/readyz"), HTTP_ROUTE_READYZ);
    assert_int_equal(http_route_match("/api/status"), HTTP_ROUTE_STATUS);
    assert_int_equal(http_route_match("/metrics/"), HTTP_ROUTE_NONE);
    assert_int_equal(http_route_match("/metric"), HTTP_ROUTE_NONE);
    assert_int_equal(http_route_match("//"), HTTP_ROUTE_NONE);
    assert_int_equal(http_route_match(""), HTTP_ROUTE_NONE);
    assert_int_equal(http_route_match(NULL), HTTP_ROUTE_NONE);
    assert_true(http_method_ok("GET"));
    assert_true(http_method_ok("HEAD"));
    assert_false(http_method_ok("get"));
    assert_false(http_method_ok("POST"));
    assert_false(http_method_ok(NULL));
    assert_string_equal(http_route_name(HTTP_ROUTE_STATUS), "status");
    assert_string_equal(http_route_name((enum http_route)99), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strbuf_grows_and_resets),
        cmocka_unit_test(test_prom_counter_gauge_and_escaping),
        cmocka_unit_test(test_prom_names_are_sanitised),
        cmocka_unit_test(test_prom_numbers),
        cmocka_unit_test(test_prom_histogram_is_cumulative),
        cmocka_unit_test(test_json_document),
        cmocka_unit_test(test_json_unbalanced_and_too_deep),
        cmocka_unit_test(test_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
