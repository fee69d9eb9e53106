/* test_http.c — the HTTP endpoint on a real loopback socket (any free port):
 * what each endpoint answers, providers (order, replacement, removal, and
 * providers that write nothing, too much or leave containers open), the
 * readiness check, /healthz failing while the loop does not run (a wedged
 * loop), 404/405, the bearer token in front of state-changing requests
 * (401, 403 without a key), and the port released on destroy. */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/err.h"
#include "http/http.h"

/* ---- a blocking HTTP/1.0 client --------------------------------------------------------- */

struct reply {
    int status;
    char head[2048];
    char body[65536];
};

/* A request with "Authorization: <authz>" (NULL: none). */
static void request_auth(int port, const char *method, const char *path, const char *authz,
                         struct reply *r)
{
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[512], auth[200] = "";
    if (authz)
        snprintf(auth, sizeof auth, "Authorization: %s\r\n", authz);
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: test\r\n%s%s\r\n", method, path,
                     strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "", auth);
    assert_int_equal(write(fd, req, (size_t)n), n);
    static char buf[sizeof r->head + sizeof r->body];
    size_t len = 0;
    ssize_t k;
    while (len < sizeof buf - 1 && (k = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)k;
    buf[len] = 0;
    close(fd);
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &r->status), 1);
    char *sep = strstr(buf, "\r\n\r\n");
    assert_non_null(sep);
    snprintf(r->head, sizeof r->head, "%.*s", (int)(sep - buf), buf);
    snprintf(r->body, sizeof r->body, "%s", sep + 4);
}

static void request(int port, const char *method, const char *path, struct reply *r)
{
    request_auth(port, method, path, NULL, r);
}

/* ---- fixture ----------------------------------------------------------------------------- */

static uv_loop_t loop;

static void run_loop_ms(unsigned ms)
{
    uint64_t end = id_now_ms() + ms;
    while (id_now_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

static void destroy(struct http *h)
{
    http_destroy(h);
    uv_run(&loop, UV_RUN_NOWAIT); /* the close callback frees it */
}

struct counter {
    uint64_t renders;
};

static void render_alpha(void *ud, struct prom_out *m, struct json_out *j)
{
    struct counter *c = ud;
    c->renders++;
    prom_counter(m, "test_alpha_renders_total", "Renders of the alpha provider.", c->renders);
    json_out_begin_object(j, NULL);
    json_out_str(j, "who", "alpha");
    json_out_end(j);
}

static void render_beta(void *ud, struct prom_out *m, struct json_out *j)
{
    (void)ud;
    (void)m;
    json_out_begin_array(j, NULL);
    json_out_u64(j, NULL, 1);
    json_out_end(j);
}

static void render_alpha2(void *ud, struct prom_out *m, struct json_out *j)
{
    (void)ud;
    prom_gauge(m, "test_alpha2", "Replacement.", 2);
    json_out_str(j, NULL, "replaced");
}

static void render_nothing(void *ud, struct prom_out *m, struct json_out *j)
{
    (void)ud;
    (void)m;
    (void)j;
}

static void render_two(void *ud, struct prom_out *m, struct json_out *j)
{
    (void)ud;
    (void)m;
    json_out_u64(j, NULL, 1);
    json_out_u64(j, NULL, 2);
}

static void render_open(void *ud, struct prom_out *m, struct json_out *j)
{
    (void)ud;
    (void)m;
    json_out_begin_object(j, NULL);
    json_out_begin_array(j, "xs");
    json_out_u64(j, NULL, 7);
}

static int ready_value;

static int check_ready(void *ud, char *why, size_t len)
{
    (void)ud;
    if (!ready_value)
        snprintf(why, len, "waiting for \"x\"");
    return ready_value;
}

/* The servers' bearer token: 32 bytes of 0x42. */
static const uint8_t token[1][HTTP_TOKEN_LEN] = {{[0 ... HTTP_TOKEN_LEN - 1] = 0x42}};
#define BEARER "Bearer 4242424242424242424242424242424242424242424242424242424242424242"

static struct http *start(unsigned publish_ms, unsigned stale_ms)
{
    struct http_config cfg = {.addr = "127.0.0.1:0",
                              .publish_ms = publish_ms,
                              .stale_ms = stale_ms,
                              .tokens = token,
                              .n_tokens = 1};
    struct http *h;
    assert_int_equal(http_create(&loop, &cfg, &h), 0);
    assert_int_equal(http_port(h), 0);
    return h;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_endpoints_and_providers(void **state)
{
    (void)state;
    struct counter c = {0};
    struct http *h = start(50, 2000);
    assert_int_equal(http_add_provider(h, "alpha", render_alpha, &c), 0);
    assert_int_equal(http_add_provider(h, "beta", render_beta, NULL), 0);
    assert_int_equal(http_add_provider(h, "empty", render_nothing, NULL), 0);
    assert_int_equal(http_add_provider(h, "two", render_two, NULL), 0);
    assert_int_equal(http_add_provider(h, "open", render_open, NULL), 0);
    assert_int_equal(http_add_provider(h, "", render_nothing, NULL), ID_EINVAL);
    assert_int_equal(http_add_provider(h, "x", NULL, NULL), ID_EINVAL);
    ready_value = 0;
    http_set_ready_check(h, check_ready, NULL);
    assert_int_equal(http_start(h), 0);
    int port = http_port(h);
    assert_true(port > 0);

    struct reply r;
    request(port, "GET", "/api/status", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Type: application/json"));
    assert_non_null(strstr(r.body, "\"schema_version\":1,"));
    assert_non_null(
        strstr(r.body, "\"ready\":{\"ok\":false,\"reason\":\"waiting for \\\"x\\\"\"}"));
    /* Sections in the order added; "empty" left out, "two" null, "open" closed. */
    assert_non_null(strstr(r.body, ",\"alpha\":{\"who\":\"alpha\"},\"beta\":[1],\"two\":null,"
                                   "\"open\":{\"xs\":[7]}}"));
    assert_null(strstr(r.body, "\"empty\""));

    request(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(
        strstr(r.body, "# TYPE test_alpha_renders_total counter\ntest_alpha_renders_total 1\n"));
    assert_non_null(strstr(r.body, "idunno_http_provider_render_seconds{section=\"beta\"} "));
    assert_non_null(strstr(r.body, "\nidunno_http_publish_age_seconds "));

    request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: waiting for \"x\"\n");

    /* The loop publishes on its timer: readiness and renders move on. */
    ready_value = 1;
    run_loop_ms(120);
    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    assert_true(c.renders >= 2);

    request(port, "GET", "/", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Type: text/html"));
    assert_non_null(strstr(r.head, "Content-Security-Policy: default-src 'none'"));
    assert_non_null(strstr(r.body, "fetch(\"/api/status\""));
    request(port, "HEAD", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");

    request(port, "GET", "/nope", &r);
    assert_int_equal(r.status, 404);
    request(port, "GET", "/metrics/", &r);
    assert_int_equal(r.status, 404);
    /* Other methods: the token first (401 without it, with a JSON error),
     * then the routing (no endpoint takes them: 405). */
    request(port, "POST", "/metrics", &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.head, "WWW-Authenticate: Bearer"));
    assert_non_null(strstr(r.head, "Content-Type: application/json"));
    assert_non_null(
        strstr(r.body, "{\"error\":\"a state-changing request needs Authorization: Bearer"));
    request_auth(port, "POST", "/metrics", BEARER "00", &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "{\"error\":\"invalid bearer token\"}"));
    request_auth(port, "POST", "/metrics", BEARER, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.head, "Allow: GET, HEAD"));
    request_auth(port, "DELETE", "/api/status", BEARER, &r);
    assert_int_equal(r.status, 405);
    request_auth(port, "GET", "/healthz", "Bearer wrong", &r); /* reads: not checked */
    assert_int_equal(r.status, 200);

    /* Replacing keeps the position; removing drops the section. */
    assert_int_equal(http_add_provider(h, "alpha", render_alpha2, NULL), 0);
    assert_int_equal(http_remove_provider(h, "beta"), 0);
    assert_int_equal(http_remove_provider(h, "beta"), ID_ENOTFOUND);
    http_publish_now(h);
    request(port, "GET", "/api/status", &r);
    assert_non_null(strstr(r.body, ",\"alpha\":\"replaced\",\"two\":null,"));
    assert_null(strstr(r.body, "\"beta\""));
    request(port, "GET", "/metrics", &r);
    assert_non_null(strstr(r.body, "\ntest_alpha2 2\n"));
    assert_null(strstr(r.body, "test_alpha_renders_total"));
    /* Requests are counted by endpoint and code (as of the last publish). */
    assert_non_null(
        strstr(r.body, "idunno_http_requests_total{endpoint=\"none\",code=\"404\"} 2\n"));
    assert_non_null(
        strstr(r.body, "idunno_http_requests_total{endpoint=\"metrics\",code=\"405\"} 1\n"));
    assert_non_null(
        strstr(r.body, "idunno_http_requests_total{endpoint=\"metrics\",code=\"401\"} 2\n"));
    assert_non_null(strstr(r.body, "idunno_http_auth_refused_total{reason=\"missing\"} 1\n"));
    assert_non_null(strstr(r.body, "idunno_http_auth_refused_total{reason=\"bad\"} 1\n"));
    assert_non_null(strstr(r.body, "idunno_http_auth_refused_total{reason=\"no_key\"} 0\n"));
    assert_non_null(
        strstr(r.body, "idunno_http_requests_total{endpoint=\"readyz\",code=\"503\"} 1\n"));

    /* No HTTP (the node's --no-http): providers can still be added. */
    assert_int_equal(http_add_provider(NULL, "x", render_nothing, NULL), 0);
    assert_int_equal(http_remove_provider(NULL, "x"), 0);
    destroy(h);
}

static void test_wedged_loop_is_unhealthy(void **state)
{
    (void)state;
    struct http *h = start(50, 300);
    assert_int_equal(http_start(h), 0);
    int port = http_port(h);
    struct reply r;
    request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    /* The loop does not run: nothing is published, the HTTP thread notices. */
    usleep(450 * 1000);
    request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "the event loop last published"));
    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    /* Still served, with the figures' age saying how stale they are. */
    request(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    double age = 0;
    const char *a = strstr(r.body, "\nidunno_http_publish_age_seconds ");
    assert_non_null(a);
    assert_int_equal(sscanf(a, "\nidunno_http_publish_age_seconds %lf", &age), 1);
    assert_true(age >= 0.4);
    /* The loop runs again: healthy again. */
    run_loop_ms(100);
    request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    destroy(h);
}

static void test_port_in_use_and_released(void **state)
{
    (void)state;
    struct http *h = start(0, 0);
    assert_int_equal(http_start(h), 0);
    int port = http_port(h);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct http_config cfg = {.addr = addr};
    struct http *h2;
    assert_int_equal(http_create(&loop, &cfg, &h2), 0);
    assert_int_not_equal(http_start(h2), 0);
    assert_non_null(strstr(http_errmsg(h2), "in use"));
    assert_non_null(strstr(http_errmsg(h2), addr));
    destroy(h2);
    destroy(h);
    /* Closed on destroy: the port can be taken again at once. */
    assert_int_equal(http_create(&loop, &cfg, &h2), 0);
    assert_int_equal(http_start(h2), 0);
    assert_int_equal(http_port(h2), port);
    destroy(h2);

    struct http_config bad = {.addr = "nohost:1"};
    assert_int_equal(http_create(&loop, &bad, &h2), 0);
    assert_int_equal(http_start(h2), ID_EINVAL);
    destroy(h2);
}

/* Without a cluster key (no tokens) nothing state-changing is taken, token or
 * not; reads are served; more tokens than a ring holds are refused. */
static void test_no_key_refuses_state_changes(void **state)
{
    (void)state;
    struct http_config cfg = {.addr = "127.0.0.1:0"};
    struct http *h;
    assert_int_equal(http_create(&loop, &cfg, &h), 0);
    assert_int_equal(http_start(h), 0);
    int port = http_port(h);
    struct reply r;
    request_auth(port, "POST", "/metrics", BEARER, &r);
    assert_int_equal(r.status, 403);
    assert_null(strstr(r.head, "WWW-Authenticate"));
    assert_non_null(strstr(r.body, "no cluster key: state-changing HTTP requests are disabled"));
    request(port, "PUT", "/nope", &r);
    assert_int_equal(r.status, 403);
    request(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    http_publish_now(h);
    request(port, "GET", "/metrics", &r);
    assert_non_null(strstr(r.body, "idunno_http_auth_refused_total{reason=\"no_key\"} 2\n"));
    destroy(h);

    static const uint8_t many[HTTP_MAX_TOKENS + 1][HTTP_TOKEN_LEN];
    struct http_config over = {
        .addr = "127.0.0.1:0", .tokens = many, .n_tokens = HTTP_MAX_TOKENS + 1};
    assert_int_equal(http_create(&loop, &over, &h), ID_EINVAL);
}

static int setup(void **state)
{
    (void)state;
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    (void)state;
    return uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints_and_providers),
        cmocka_unit_test(test_wedged_loop_is_unhealthy),
        cmocka_unit_test(test_port_in_use_and_released),
        cmocka_unit_test(test_no_key_refuses_state_changes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
