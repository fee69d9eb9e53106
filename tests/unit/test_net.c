/* test_net.c — the transport on a real libuv loop over loopback: calls and
 * replies, late replies, remote errors, deadlines, refused and dropped
 * connections, datagrams, and garbage on the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/err.h"
#include "idunno.pb-c.h"
#include "net/net.h"

static int port_base(void)
{
    const char *e = getenv("IDUNNO_TEST_PORT_BASE");
    return e ? atoi(e) : 7900;
}

struct fixture {
    uv_loop_t loop;
    struct net *a, *b;
    char addr_a[32], addr_b[32];
    /* results */
    int calls_done;
    struct net_result last;
    char last_body[256];
    char last_err[256];
    struct net_request *held; /* a request answered later */
    int datagrams;
    char dgram_body[64];
};

static void run_until(struct fixture *f, int *flag, int want, uint64_t limit_ms)
{
    uint64_t deadline = id_now_ms() + limit_ms;
    while (*flag < want && id_now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void on_echo(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)ud;
    net_reply(req, IDUNNO__MSG_TYPE__MSG_PING_RESP, body, len);
}

static void on_hold(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct fixture *f = ud;
    f->held = req;
}

static void on_fail(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)ud;
    (void)body;
    (void)len;
    net_reply_error(req, ID_ENOLEADER, "no coordinator yet", "10.0.0.1:7000");
}

static void on_dgram(void *ud, const char *from, const uint8_t *body, size_t len)
{
    (void)from;
    struct fixture *f = ud;
    snprintf(f->dgram_body, sizeof f->dgram_body, "%.*s", (int)len, (const char *)body);
    f->datagrams++;
}

static void on_result(void *ud, const struct net_result *r)
{
    struct fixture *f = ud;
    f->last = *r;
    snprintf(f->last_body, sizeof f->last_body, "%.*s", (int)r->len, r->body ? (const char *)r->body : "");
    snprintf(f->last_err, sizeof f->last_err, "%s", r->errmsg ? r->errmsg : "");
    f->calls_done++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    snprintf(f->addr_a, sizeof f->addr_a, "127.0.0.1:%d", port_base());
    snprintf(f->addr_b, sizeof f->addr_b, "127.0.0.1:%d", port_base() + 1);
    struct net_config ca = {.addr = f->addr_a, .call_timeout_ms = 2000};
    struct net_config cb = {.addr = f->addr_b, .call_timeout_ms = 2000};
    assert_int_equal(net_create(&f->loop, &ca, &f->a), 0);
    assert_int_equal(net_create(&f->loop, &cb, &f->b), 0);
    assert_int_equal(net_start(f->a), 0);
    assert_int_equal(net_start(f->b), 0);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_PING_REQ, on_echo, f);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, on_hold, f);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_MEMBERS_REQ, on_fail, f);
    net_on_datagram(f->b, IDUNNO__MSG_TYPE__MSG_SWIM, on_dgram, f);
    *state = f;
    return 0;
}

static int closed_count;
static void on_closed(void *ud)
{
    (void)ud;
    closed_count++;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    closed_count = 0;
    if (f->a)
        net_close(f->a, on_closed, NULL);
    if (f->b)
        net_close(f->b, on_closed, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(closed_count, (f->a != NULL) + (f->b != NULL));
    assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle released */
    free(f);
    return 0;
}

static void test_call_and_reply(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 50; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "hello %d", i);
        assert_int_equal(net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, msg, strlen(msg), 0,
                                  on_result, f), 0);
        /* never called from inside net_call */
        assert_int_equal(f->calls_done, i);
        run_until(f, &f->calls_done, i + 1, 2000);
        assert_int_equal(f->last.status, 0);
        assert_int_equal(f->last.type, IDUNNO__MSG_TYPE__MSG_PING_RESP);
        assert_string_equal(f->last_body, msg);
    }
}

static void test_late_reply(void **state)
{
    struct fixture *f = *state;
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_result, f);
    while (!f->held)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->calls_done, 0);
    net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "later", 5);
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->last.status, 0);
    assert_string_equal(f->last_body, "later");
}

static void test_remote_error(void **state)
{
    struct fixture *f = *state;
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_MEMBERS_REQ, NULL, 0, 0, on_result, f);
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->last.status, ID_ENOLEADER);
    assert_string_equal(f->last_err, "no coordinator yet");
}

static void test_unknown_type_is_an_error(void **state)
{
    struct fixture *f = *state;
    net_call(f->a, f->addr_b, 499, NULL, 0, 0, on_result, f);
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->last.status, ID_EUNKNOWNTYPE);
    assert_int_equal(net_frame_stats(f->b)->unknown_type, 1);
}

static void test_deadline(void **state)
{
    struct fixture *f = *state;
    uint64_t t0 = id_now_ms();
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 100, on_result, f);
    run_until(f, &f->calls_done, 1, 3000);
    assert_int_equal(f->last.status, ID_ETIMEDOUT);
    assert_true(id_now_ms() - t0 >= 100);
    /* the late answer is dropped, not delivered to anyone */
    net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "late", 4);
    for (int i = 0; i < 5; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->calls_done, 1);
}

static void test_refused(void **state)
{
    struct fixture *f = *state;
    char nobody[32];
    snprintf(nobody, sizeof nobody, "127.0.0.1:%d", port_base() + 7);
    assert_int_equal(net_call(f->a, nobody, IDUNNO__MSG_TYPE__MSG_PING_REQ, NULL, 0, 0, on_result, f), 0);
    run_until(f, &f->calls_done, 1, 3000);
    assert_int_equal(f->last.status, ID_ECONNREFUSED);
    assert_int_equal(net_call(f->a, "not-an-address", 2, NULL, 0, 0, on_result, f), ID_EINVAL);
}

static void on_b_closed(void *ud)
{
    int *flag = ud;
    *flag = 1;
}

static void test_peer_dies_with_calls_pending(void **state)
{
    struct fixture *f = *state;
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_result, f);
    while (!f->held)
        uv_run(&f->loop, UV_RUN_ONCE);
    int closed = 0;
    net_close(f->b, on_b_closed, &closed);
    f->b = NULL;
    run_until(f, &f->calls_done, 1, 3000);
    assert_int_equal(f->calls_done, 1);
    assert_int_equal(f->last.status, ID_ECLOSED);
    run_until(f, &closed, 1, 3000);
    assert_int_equal(closed, 1);
    /* The handler still owns its request: answering it now is a clean no-op. */
    assert_int_equal(net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "z", 1), ID_ECLOSED);
}

static void test_datagram(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(net_send_datagram(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_SWIM, "gossip", 6), 0);
    run_until(f, &f->datagrams, 1, 2000);
    assert_string_equal(f->dgram_body, "gossip");
    char big[FRAME_MAX_DATAGRAM];
    memset(big, 'x', sizeof big);
    assert_int_equal(net_send_datagram(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_SWIM, big, sizeof big),
                     ID_ETOOBIG);
}

static void test_garbage_is_counted_and_dropped(void **state)
{
    struct fixture *f = *state;
    /* raw TCP garbage: the connection is closed, the node keeps serving */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage sa;
    net_parse_addr(f->addr_b, &sa);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    const char junk[] = "GET / HTTP/1.0\r\n\r\nthis is not a frame at all";
    assert_true(write(fd, junk, sizeof junk) > 0);
    uint64_t deadline = id_now_ms() + 2000;
    while (net_frame_stats(f->b)->bad_magic == 0 && id_now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(net_frame_stats(f->b)->bad_magic, 1);
    close(fd);
    /* UDP garbage */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(sendto(u, junk, sizeof junk, 0, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)) > 0);
    close(u);
    deadline = id_now_ms() + 2000;
    while (net_frame_stats(f->b)->bad_magic < 2 && id_now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(net_frame_stats(f->b)->bad_magic, 2);
    assert_int_equal(f->datagrams, 0);
    /* still serving */
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, "ok", 2, 0, on_result, f);
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->last.status, 0);
}

static void test_parse_addr(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    assert_int_equal(net_parse_addr("127.0.0.1:7000", &sa), 0);
    assert_int_equal(net_parse_addr("localhost:7000", &sa), 0);
    assert_int_equal(net_parse_addr("[::1]:7000", &sa), 0);
    assert_int_equal(net_parse_addr("127.0.0.1", &sa), ID_EINVAL);
    assert_int_equal(net_parse_addr("127.0.0.1:0", &sa), ID_EINVAL);
    assert_int_equal(net_parse_addr("127.0.0.1:70000", &sa), ID_EINVAL);
    assert_int_equal(net_parse_addr("host.example:7000", &sa), ID_EINVAL);
    assert_int_equal(net_parse_addr(":7000", &sa), ID_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_call_and_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_dies_with_calls_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datagram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_is_counted_and_dropped, setup, teardown),
        cmocka_unit_test(test_parse_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
