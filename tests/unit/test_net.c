/* test_net.c — the transport on a real libuv loop over loopback: calls and
 * replies, late and out-of-order replies, remote errors, deadlines, refused and
 * dropped connections, pooling and idle close, datagrams, garbage on the wire;
 * calls of a node to itself, which take no connection; and the frame reader
 * on its own. Ports: IDUNNO_TEST_PORT_BASE (default 7100)
 * up to +9. */
#include <errno.h>
#include <poll.h>
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
#include "net/reader.h"

static int port_base(void)
{
    const char *e = getenv("IDUNNO_TEST_PORT_BASE");
    return e ? atoi(e) : 7100;
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
    char last_leader[64];
    struct net_request *held; /* a request answered later */
    struct net_request *held_many[128];
    int n_held;
    char held_peer[64];
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
    snprintf(f->held_peer, sizeof f->held_peer, "%s", net_request_peer(req));
    if (f->n_held < 128)
        f->held_many[f->n_held++] = req;
}

static void on_bad_body(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)ud;
    (void)body;
    (void)len;
    net_reply_error(req, ID_EPROTO, "that body does not decode", NULL);
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
    snprintf(f->last_body, sizeof f->last_body, "%.*s", (int)r->len,
             r->body ? (const char *)r->body : "");
    snprintf(f->last_err, sizeof f->last_err, "%s", r->errmsg ? r->errmsg : "");
    snprintf(f->last_leader, sizeof f->last_leader, "%s", r->leader ? r->leader : "");
    f->calls_done++;
}

static int setup_with(void **state, uint32_t idle_close_ms)
{
    struct fixture *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    snprintf(f->addr_a, sizeof f->addr_a, "127.0.0.1:%d", port_base());
    snprintf(f->addr_b, sizeof f->addr_b, "127.0.0.1:%d", port_base() + 1);
    struct net_config ca = {
        .addr = f->addr_a, .call_timeout_ms = 2000, .idle_close_ms = idle_close_ms};
    struct net_config cb = {
        .addr = f->addr_b, .call_timeout_ms = 2000, .idle_close_ms = idle_close_ms};
    assert_int_equal(net_create(&f->loop, &ca, &f->a), 0);
    assert_int_equal(net_create(&f->loop, &cb, &f->b), 0);
    assert_int_equal(net_start(f->a), 0);
    assert_int_equal(net_start(f->b), 0);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_PING_REQ, on_echo, f);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, on_hold, f);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_MEMBERS_REQ, on_fail, f);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_STATS_REQ, on_bad_body, f);
    net_on_datagram(f->b, IDUNNO__MSG_TYPE__MSG_SWIM, on_dgram, f);
    assert_int_equal(net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_PING_REQ, on_echo, f), ID_EEXIST);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 0);
}
static int setup_fast_idle(void **state)
{
    return setup_with(state, 60);
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
        net_destroy(f->a, on_closed, NULL);
    if (f->b)
        net_destroy(f->b, on_closed, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(closed_count, (f->a != NULL) + (f->b != NULL));
    assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle released */
    free(f);
    return 0;
}

/* n echo calls from `from` to `to`, one after another, each answered with
 * its own body, and the callback never run from inside net_call. */
static void echo_calls(struct fixture *f, struct net *from, const char *to, int n)
{
    int before = f->calls_done;
    for (int i = 0; i < n; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "hello %d", i);
        assert_int_equal(
            net_call(from, to, IDUNNO__MSG_TYPE__MSG_PING_REQ, msg, strlen(msg), 0, on_result, f),
            0);
        assert_int_equal(f->calls_done, before + i);
        run_until(f, &f->calls_done, before + i + 1, 2000);
        assert_int_equal(f->last.status, 0);
        assert_int_equal(f->last.type, IDUNNO__MSG_TYPE__MSG_PING_RESP);
        assert_string_equal(f->last_body, msg);
    }
}

static void test_call_and_reply(void **state)
{
    struct fixture *f = *state;
    echo_calls(f, f->a, f->addr_b, 50);
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
    assert_int_equal(
        net_call(f->a, nobody, IDUNNO__MSG_TYPE__MSG_PING_REQ, NULL, 0, 0, on_result, f), 0);
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
    net_destroy(f->b, on_b_closed, &closed);
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
    assert_int_equal(net_send_datagram(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_SWIM, "gossip", 6),
                     0);
    run_until(f, &f->datagrams, 1, 2000);
    assert_string_equal(f->dgram_body, "gossip");
    char big[FRAME_MAX_DATAGRAM];
    memset(big, 'x', sizeof big);
    assert_int_equal(
        net_send_datagram(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_SWIM, big, sizeof big),
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
    assert_true(
        sendto(u, junk, sizeof junk, 0, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)) > 0);
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

/* ---- more transport behaviour ------------------------------------------------ */

static void test_connection_is_pooled(void **state)
{
    struct fixture *f = *state;
    /* 20 calls in flight at once, then 20 one after another: one connection. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(
            net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, "p", 1, 0, on_result, f), 0);
    run_until(f, &f->calls_done, 20, 3000);
    assert_int_equal(f->calls_done, 20);
    for (int i = 0; i < 20; i++) {
        net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, "q", 1, 0, on_result, f);
        run_until(f, &f->calls_done, 21 + i, 3000);
    }
    assert_int_equal(f->calls_done, 40);
    size_t in_a = 99, in_b = 99;
    assert_int_equal(net_open_connections(f->a, &in_a), 1);
    assert_int_equal(in_a, 0);
    assert_int_equal(net_open_connections(f->b, &in_b), 1);
    assert_int_equal(in_b, 1);
}

struct tagged {
    struct fixture *f;
    int expect;
    int got;
    int ok;
};

static void on_tagged(void *ud, const struct net_result *r)
{
    struct tagged *t = ud;
    char want[16];
    snprintf(want, sizeof want, "m%d", t->expect);
    t->ok = r->status == 0 && r->len == strlen(want) && memcmp(r->body, want, r->len) == 0;
    t->got++;
    t->f->calls_done++;
}

static void test_replies_in_any_order(void **state)
{
    struct fixture *f = *state;
    enum { N = 100 };
    struct tagged tags[N];
    for (int i = 0; i < N; i++) {
        tags[i] = (struct tagged){.f = f, .expect = i};
        net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_tagged,
                 &tags[i]);
    }
    uint64_t deadline = id_now_ms() + 3000;
    while (f->n_held < N && id_now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->n_held, N);
    /* Requests were held in arrival order, which is call order on one
     * connection; answer them newest first. */
    for (int i = N - 1; i >= 0; i--) {
        char body[16];
        snprintf(body, sizeof body, "m%d", i);
        assert_int_equal(
            net_reply(f->held_many[i], IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, body, strlen(body)),
            0);
    }
    run_until(f, &f->calls_done, N, 3000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(tags[i].got, 1);
        assert_true(tags[i].ok);
    }
}

static void test_idle_connection_closes_and_reconnects(void **state)
{
    struct fixture *f = *state; /* idle_close_ms = 60 */
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_result, f);
    run_until(f, &f->n_held, 1, 2000);
    char first_peer[64];
    snprintf(first_peer, sizeof first_peer, "%s", f->held_peer);
    net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "1", 1);
    f->held = NULL;
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->last.status, 0);
    /* Nothing in flight: the caller closes its idle connection, and the callee
     * then sees it go. */
    uint64_t deadline = id_now_ms() + 3000;
    while ((net_open_connections(f->a, NULL) || net_open_connections(f->b, NULL)) &&
           id_now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(net_open_connections(f->a, NULL), 0);
    assert_int_equal(net_open_connections(f->b, NULL), 0);
    /* The next call opens a new connection (a new source port). */
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "y", 1, 0, on_result, f);
    run_until(f, &f->n_held, 2, 2000);
    assert_int_equal(f->n_held, 2);
    assert_string_not_equal(f->held_peer, first_peer);
    net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "2", 1);
    run_until(f, &f->calls_done, 2, 2000);
    assert_int_equal(f->last.status, 0);
    assert_string_equal(f->last_body, "2");
}

static void test_incoming_half_frame_is_closed_when_idle(void **state)
{
    struct fixture *f = *state; /* idle_close_ms = 60 */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage sa;
    net_parse_addr(f->addr_b, &sa);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    uint8_t hdr[FRAME_HEADER_LEN];
    frame_encode_header(hdr, IDUNNO__MSG_TYPE__MSG_PING_REQ, 0, 1, NULL, 0);
    assert_int_equal(write(fd, hdr, 10), 10); /* and never the rest */
    uint64_t deadline = id_now_ms() + 3000;
    size_t in = 0;
    while (id_now_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        net_open_connections(f->b, &in);
        if (in == 0)
            break;
        poll(NULL, 0, 5);
    }
    assert_int_equal(in, 0);
    close(fd);
}

/* Sends raw bytes on a fresh connection to b, then runs the loop until b
 * has closed it; returns 1 if it did. */
static int raw_send_until_closed(struct fixture *f, const void *bytes, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage sa;
    net_parse_addr(f->addr_b, &sa);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    uint64_t deadline = id_now_ms() + 3000;
    int closed = 0;
    while (!closed && id_now_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            closed = 1;
        else
            poll(NULL, 0, 2);
    }
    close(fd);
    return closed;
}

static void test_bad_headers_are_counted_and_closed(void **state)
{
    struct fixture *f = *state;
    uint8_t frame[FRAME_HEADER_LEN + 4];
    memcpy(frame + FRAME_HEADER_LEN, "ping", 4);

    frame_encode_header(frame, IDUNNO__MSG_TYPE__MSG_PING_REQ, 0, 1, frame + FRAME_HEADER_LEN, 4);
    frame[FRAME_HEADER_LEN] ^= 0x20; /* body changed after the crc */
    assert_true(raw_send_until_closed(f, frame, sizeof frame));
    assert_int_equal(net_frame_stats(f->b)->bad_crc, 1);

    frame_encode_header(frame, IDUNNO__MSG_TYPE__MSG_PING_REQ, 0, 1, frame + FRAME_HEADER_LEN, 4);
    frame[16] = 0x10; /* claims 256 MiB */
    assert_true(raw_send_until_closed(f, frame, FRAME_HEADER_LEN));
    assert_int_equal(net_frame_stats(f->b)->too_big, 1);

    frame_encode_header(frame, IDUNNO__MSG_TYPE__MSG_PING_REQ, 0, 1, frame + FRAME_HEADER_LEN, 4);
    frame[4] = 9;
    assert_true(raw_send_until_closed(f, frame, sizeof frame));
    assert_int_equal(net_frame_stats(f->b)->bad_version, 1);

    /* A response nobody asked for, on a connection we accepted. */
    frame_encode_header(frame, IDUNNO__MSG_TYPE__MSG_PING_RESP, FRAME_F_RESPONSE, 5,
                        frame + FRAME_HEADER_LEN, 4);
    uint64_t before = net_frame_stats(f->b)->bad_body;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage sa;
    net_parse_addr(f->addr_b, &sa);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    assert_int_equal(write(fd, frame, sizeof frame), (ssize_t)sizeof frame);
    uint64_t deadline = id_now_ms() + 2000;
    while (net_frame_stats(f->b)->bad_body == before && id_now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(net_frame_stats(f->b)->bad_body, before + 1);
    close(fd);
}

static void test_frame_split_into_single_bytes(void **state)
{
    struct fixture *f = *state;
    /* Two requests sent one byte per write: reassembled and both answered. */
    uint8_t two[2][FRAME_HEADER_LEN + 3];
    for (int k = 0; k < 2; k++) {
        memcpy(two[k] + FRAME_HEADER_LEN, k ? "bbb" : "aaa", 3);
        frame_encode_header(two[k], IDUNNO__MSG_TYPE__MSG_PING_REQ, 0, (uint64_t)(k + 1),
                            two[k] + FRAME_HEADER_LEN, 3);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage sa;
    net_parse_addr(f->addr_b, &sa);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    const uint8_t *p = &two[0][0];
    for (size_t i = 0; i < sizeof two; i++) {
        assert_int_equal(write(fd, p + i, 1), 1);
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    /* Read both responses back and check their ids and bodies. */
    struct frame_reader r;
    frame_reader_init(&r, FRAME_MAX_BODY, NULL);
    int got = 0;
    uint64_t deadline = id_now_ms() + 3000;
    while (got < 2 && id_now_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        uint8_t buf[256];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            assert_int_equal(frame_reader_feed(&r, buf, (size_t)n), 0);
        struct frame_header h;
        const uint8_t *body;
        while (frame_reader_next(&r, &h, &body) == 1) {
            assert_true(h.flags & FRAME_F_RESPONSE);
            assert_int_equal(h.type, IDUNNO__MSG_TYPE__MSG_PING_RESP);
            assert_true(h.req_id == (uint64_t)(got + 1));
            assert_memory_equal(body, got ? "bbb" : "aaa", 3);
            got++;
        }
        if (n <= 0)
            poll(NULL, 0, 2);
    }
    assert_int_equal(got, 2);
    frame_reader_free(&r);
    close(fd);
    assert_int_equal(net_frame_stats(f->b)->bad_magic + net_frame_stats(f->b)->bad_crc, 0);
}

static void test_undecodable_body_is_counted(void **state)
{
    struct fixture *f = *state;
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_STATS_REQ, "\xff\xff", 2, 0, on_result, f);
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->last.status, ID_EPROTO);
    assert_int_equal(net_frame_stats(f->b)->bad_body, 1);
}

static int shut_done;
static void on_a_closed(void *ud)
{
    (void)ud;
    shut_done = 1;
}

static void test_close_fails_own_calls_with_shutdown(void **state)
{
    struct fixture *f = *state;
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_result, f);
    run_until(f, &f->n_held, 1, 2000);
    shut_done = 0;
    net_destroy(f->a, on_a_closed, NULL);
    f->a = NULL;
    assert_int_equal(f->calls_done, 0); /* not from inside net_destroy */
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->last.status, ID_ESHUTDOWN);
    run_until(f, &shut_done, 1, 2000);
    assert_int_equal(shut_done, 1);
    /* b saw the connection go; its handler still answers, harmlessly. */
    uint64_t deadline = id_now_ms() + 2000;
    while (net_open_connections(f->b, NULL) && id_now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "z", 1), ID_ECLOSED);
}

/* A node calling its own address is answered without a connection, with
 * what a call over one gives: the reply (never inside net_call), a later
 * reply, an error reply with its leader hint, an unknown type, the deadline
 * (a reply after it is dropped), and ID_ESHUTDOWN when the node stops. */
static void test_call_to_itself(void **state)
{
    struct fixture *f = *state;
    echo_calls(f, f->b, f->addr_b, 20);
    assert_int_equal(net_open_connections(f->b, NULL), 0); /* no connection to itself */
    net_call(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_result, f);
    run_until(f, &f->n_held, 1, 2000);
    assert_string_equal(f->held_peer, f->addr_b);
    assert_int_equal(f->calls_done, 20);
    net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "later", 5);
    assert_int_equal(f->calls_done, 20); /* not inside the handler's reply */
    run_until(f, &f->calls_done, 21, 2000);
    assert_string_equal(f->last_body, "later");
    net_call(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_MEMBERS_REQ, NULL, 0, 0, on_result, f);
    run_until(f, &f->calls_done, 22, 2000);
    assert_int_equal(f->last.status, ID_ENOLEADER);
    assert_string_equal(f->last_err, "no coordinator yet");
    assert_string_equal(f->last_leader, "10.0.0.1:7000");
    net_call(f->b, f->addr_b, 499, NULL, 0, 0, on_result, f);
    run_until(f, &f->calls_done, 23, 2000);
    assert_int_equal(f->last.status, ID_EUNKNOWNTYPE);
    uint64_t t0 = id_now_ms();
    net_call(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "y", 1, 100, on_result, f);
    run_until(f, &f->calls_done, 24, 3000);
    assert_int_equal(f->last.status, ID_ETIMEDOUT);
    assert_true(id_now_ms() - t0 >= 100);
    assert_int_equal(net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "late", 4), 0);
    for (int i = 0; i < 5; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->calls_done, 24); /* the late answer went to no one */
    /* stopping: the pending call fails with ID_ESHUTDOWN, after net_destroy
     * returned; the handler's later answer is dropped */
    net_call(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "z", 1, 0, on_result, f);
    run_until(f, &f->n_held, 3, 2000);
    shut_done = 0;
    net_destroy(f->b, on_a_closed, NULL);
    f->b = NULL;
    assert_int_equal(f->calls_done, 24);
    run_until(f, &f->calls_done, 25, 2000);
    assert_int_equal(f->last.status, ID_ESHUTDOWN);
    assert_int_equal(net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "z", 1), ID_ECLOSED);
    run_until(f, &shut_done, 1, 2000);
    assert_int_equal(shut_done, 1);
}

/* Frames are corked per loop iteration and written together: calls issued in
 * one go, large ones among small ones, far more than a socket buffer takes at
 * once, all arrive whole and in order (the echo answers each with its own
 * body, and the peer sees requests in the order they were sent). */
struct echo_check {
    struct fixture *f;
    uint8_t *body;
    size_t len;
    int ok;
};

static void on_echo_checked(void *ud, const struct net_result *r)
{
    struct echo_check *e = ud;
    e->ok = r->status == 0 && r->len == e->len && memcmp(r->body, e->body, e->len) == 0;
    e->f->calls_done++;
}

static void test_corked_frames_whole_and_in_order(void **state)
{
    struct fixture *f = *state;
    enum { N = 40, BIG = 1 << 20 };
    struct echo_check ck[N];
    for (int i = 0; i < N; i++) {
        size_t len = i % 2 ? BIG : 8;
        ck[i] = (struct echo_check){.f = f, .body = malloc(len), .len = len};
        assert_non_null(ck[i].body);
        for (size_t k = 0; k < len; k++)
            ck[i].body[k] = (uint8_t)(i * 31 + k * 7);
        assert_int_equal(net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, ck[i].body, len,
                                  5000, on_echo_checked, &ck[i]),
                         0);
    }
    /* And requests held by the peer: they reach it in call order. */
    for (int i = 0; i < 10; i++) {
        char body[8];
        snprintf(body, sizeof body, "h%d", i);
        net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, body, strlen(body), 5000,
                 on_result, f);
    }
    run_until(f, &f->calls_done, N, 10000);
    assert_int_equal(f->calls_done, N);
    for (int i = 0; i < N; i++) {
        assert_true(ck[i].ok);
        free(ck[i].body);
    }
    run_until(f, &f->n_held, 10, 3000);
    assert_int_equal(f->n_held, 10);
    for (int i = 0; i < 10; i++) {
        char body[8];
        snprintf(body, sizeof body, "%d", i);
        assert_int_equal(
            net_reply(f->held_many[i], IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, body, strlen(body)),
            0);
    }
    run_until(f, &f->calls_done, N + 10, 3000);
    assert_int_equal(f->calls_done, N + 10);
    assert_string_equal(f->last_body, "9"); /* answers, corked together, in order too */
}

/* An answer given just before its node closes the transport still goes out:
 * the reply to a stop request, say, is written before the connection closes. */
static void test_answer_before_close_is_sent(void **state)
{
    struct fixture *f = *state;
    net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_result, f);
    run_until(f, &f->n_held, 1, 2000);
    assert_int_equal(f->n_held, 1);
    assert_int_equal(net_reply(f->held, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, "bye", 3), 0);
    net_destroy(f->b, NULL, NULL);
    f->b = NULL;
    run_until(f, &f->calls_done, 1, 2000);
    assert_int_equal(f->calls_done, 1);
    assert_int_equal(f->last.status, 0);
    assert_string_equal(f->last_body, "bye");
}

/* ---- the frame reader alone ---------------------------------------------------- */

static size_t make_frame(uint8_t *out, uint64_t id, const char *body)
{
    size_t n = strlen(body);
    memcpy(out + FRAME_HEADER_LEN, body, n);
    frame_encode_header(out, 7, 0, id, out + FRAME_HEADER_LEN, (uint32_t)n);
    return FRAME_HEADER_LEN + n;
}

static void test_reader_reassembles(void **state)
{
    (void)state;
    uint8_t stream[512];
    size_t len = 0;
    len += make_frame(stream + len, 1, "first");
    len += make_frame(stream + len, 2, "");
    len += make_frame(stream + len, 3, "third body");
    struct frame_stats st = {0};
    struct frame_reader r;
    /* every split point, fed as two pieces */
    for (size_t cut = 0; cut <= len; cut++) {
        frame_reader_init(&r, 1024, &st);
        uint64_t want = 1;
        for (int piece = 0; piece < 2; piece++) {
            const uint8_t *p = piece ? stream + cut : stream;
            size_t n = piece ? len - cut : cut;
            assert_int_equal(frame_reader_feed(&r, p, n), 0);
            struct frame_header h;
            const uint8_t *body;
            int rc;
            while ((rc = frame_reader_next(&r, &h, &body)) == 1) {
                assert_true(h.req_id == want);
                const char *exp = want == 1 ? "first" : want == 2 ? "" : "third body";
                assert_int_equal(h.length, strlen(exp));
                assert_memory_equal(body, exp, h.length);
                want++;
            }
            assert_int_equal(rc, 0);
        }
        assert_true(want == 4);
        frame_reader_free(&r);
    }
    assert_int_equal(st.bad_magic + st.bad_crc + st.too_big + st.bad_version, 0);
}

static void test_reader_rejects(void **state)
{
    (void)state;
    uint8_t fr[128];
    size_t n = make_frame(fr, 1, "payload");
    struct frame_stats st = {0};
    struct frame_reader r;
    struct frame_header h;
    const uint8_t *body;

    frame_reader_init(&r, 1024, &st);
    fr[n - 1] ^= 1;
    frame_reader_feed(&r, fr, n);
    assert_int_equal(frame_reader_next(&r, &h, &body), ID_ECRC);
    assert_int_equal(st.bad_crc, 1);
    frame_reader_free(&r);

    /* too big is refused from the header alone, before any body arrives */
    n = make_frame(fr, 1, "payload");
    frame_reader_init(&r, 4, &st);
    frame_reader_feed(&r, fr, FRAME_HEADER_LEN);
    assert_int_equal(frame_reader_next(&r, &h, &body), ID_ETOOBIG);
    assert_int_equal(st.too_big, 1);
    frame_reader_free(&r);

    frame_reader_init(&r, 1024, &st);
    frame_reader_feed(&r, "IDNX", 4);
    assert_int_equal(frame_reader_next(&r, &h, &body), 0); /* too short to judge */
    frame_reader_feed(&r, fr + 4, FRAME_HEADER_LEN - 4);
    assert_int_equal(frame_reader_next(&r, &h, &body), ID_EPROTO);
    assert_int_equal(st.bad_magic, 1);
    frame_reader_free(&r);
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
        cmocka_unit_test_setup_teardown(test_connection_is_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replies_in_any_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_closes_and_reconnects, setup_fast_idle,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_incoming_half_frame_is_closed_when_idle,
                                        setup_fast_idle, teardown),
        cmocka_unit_test_setup_teardown(test_bad_headers_are_counted_and_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_split_into_single_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_body_is_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_fails_own_calls_with_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corked_frames_whole_and_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_before_close_is_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_to_itself, setup, teardown),
        cmocka_unit_test(test_reader_reassembles),
        cmocka_unit_test(test_reader_rejects),
        cmocka_unit_test(test_parse_addr),
    };
    /* IDUNNO_TEST_FILTER=test_deadline runs one test (a glob), for debugging. */
    if (getenv("IDUNNO_TEST_FILTER"))
        cmocka_set_test_filter(getenv("IDUNNO_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
