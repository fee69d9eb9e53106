/* test_net_sealed.c — the transport with a cluster key, on a real libuv loop
 * over loopback: keyed nodes talk; a node with another key, or none, can
 * neither call nor gossip to a keyed one (and is told why); and the transport
 * bounds: an unfinished handshake, a frame trickled in forever, too many
 * connections from one address, read buffers over budget, and an answer over
 * the frame limit; and a keyed node's calls to itself, sealed tails among
 * them, which keep their order. Ports: IDUNNO_TEST_PORT_BASE (default 7100) + 60..61. */
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

static const char KEY_A[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
static const char KEY_B[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n";

static int port_base(void)
{
    const char *e = getenv("IDUNNO_TEST_PORT_BASE");
    return (e ? atoi(e) : 7100) + 60;
}

struct fixture {
    uv_loop_t loop;
    struct net *a, *b;
    char addr_a[32], addr_b[32];
    int calls_done;
    struct net_result last;
    char last_body[64];
    char last_err[256];
    int datagrams;
};

static void on_echo(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)ud;
    net_reply(req, IDUNNO__MSG_TYPE__MSG_PING_RESP, body, len);
}

static void on_huge(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)ud;
    (void)body;
    (void)len;
    size_t n = FRAME_MAX_BODY + 1;
    uint8_t *big = calloc(1, n);
    assert_int_equal(net_reply(req, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, big, n), ID_ETOOBIG);
    free(big);
}

static void on_dgram(void *ud, const char *from, const uint8_t *body, size_t len)
{
    (void)from;
    (void)body;
    (void)len;
    struct fixture *f = ud;
    f->datagrams++;
}

static void on_result(void *ud, const struct net_result *r)
{
    struct fixture *f = ud;
    f->last = *r;
    snprintf(f->last_body, sizeof f->last_body, "%.*s", (int)r->len,
             r->body ? (const char *)r->body : "");
    snprintf(f->last_err, sizeof f->last_err, "%s", r->errmsg ? r->errmsg : "");
    f->calls_done++;
}

/* a and b, with keyring texts ka and kb (NULL: plaintext) and b's bounds. */
static struct fixture *make(const char *ka, const char *kb, const struct net_config *bounds)
{
    struct fixture *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    snprintf(f->addr_a, sizeof f->addr_a, "127.0.0.1:%d", port_base());
    snprintf(f->addr_b, sizeof f->addr_b, "127.0.0.1:%d", port_base() + 1);
    struct seal_keyring ra, rb;
    char err[128];
    struct net_config ca = {.addr = f->addr_a, .call_timeout_ms = 2000};
    struct net_config cb = bounds ? *bounds : (struct net_config){0};
    cb.addr = f->addr_b;
    cb.call_timeout_ms = 2000;
    if (ka) {
        assert_int_equal(seal_keyring_parse(ka, strlen(ka), &ra, err, sizeof err), 0);
        ca.keys = &ra;
    }
    if (kb) {
        assert_int_equal(seal_keyring_parse(kb, strlen(kb), &rb, err, sizeof err), 0);
        cb.keys = &rb;
    }
    assert_int_equal(net_create(&f->loop, &ca, &f->a), 0);
    assert_int_equal(net_create(&f->loop, &cb, &f->b), 0);
    assert_int_equal(net_start(f->a), 0);
    assert_int_equal(net_start(f->b), 0);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_PING_REQ, on_echo, f);
    net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, on_huge, f);
    net_on_datagram(f->b, IDUNNO__MSG_TYPE__MSG_SWIM, on_dgram, f);
    return f;
}

static int closed_count;
static void on_closed(void *ud)
{
    (void)ud;
    closed_count++;
}

static void destroy(struct fixture *f)
{
    closed_count = 0;
    net_destroy(f->a, on_closed, NULL);
    net_destroy(f->b, on_closed, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(closed_count, 2);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

/* Runs the loop until *flag reaches want or limit_ms passed. */
static void run_until(struct fixture *f, const int *flag, int want, uint64_t limit_ms)
{
    uint64_t deadline = id_now_ms() + limit_ms;
    while (*flag < want && id_now_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 2);
    }
}

static void ping(struct fixture *f, const char *msg)
{
    int before = f->calls_done;
    assert_int_equal(net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, msg, strlen(msg), 0,
                              on_result, f),
                     0);
    run_until(f, &f->calls_done, before + 1, 3000);
    assert_int_equal(f->calls_done, before + 1);
}

/* Datagrams a sends b, and whether any arrives within limit_ms. */
static int gossip_arrives(struct fixture *f, uint64_t limit_ms)
{
    uint64_t deadline = id_now_ms() + limit_ms;
    while (id_now_ms() < deadline && f->datagrams == 0) {
        assert_int_equal(net_send_datagram(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_SWIM, "g", 1), 0);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 5);
    }
    return f->datagrams > 0;
}

static void test_same_key_talks(void **state)
{
    (void)state;
    struct fixture *f = make(KEY_A, KEY_A, NULL);
    for (int i = 0; i < 20; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "sealed %d", i);
        ping(f, msg);
        assert_int_equal(f->last.status, 0);
        assert_string_equal(f->last_body, msg);
    }
    assert_true(gossip_arrives(f, 2000));
    const struct frame_stats *st = net_frame_stats(f->b);
    assert_int_equal(st->bad_auth + st->unsealed + st->replayed, 0);
    destroy(f);
}

/* What a tail handler saw, in order: each call's first body byte and its
 * sealed tail. */
static char seen_first[8];
static uint32_t seen_tail[8];
static int n_seen;

static void on_tail_seen(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)ud;
    if (n_seen < 8) {
        seen_first[n_seen] = len ? (char)body[0] : 0;
        seen_tail[n_seen++] = net_request_sealed_tail(req);
    }
    net_reply(req, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_RESP, NULL, 0);
}

/* A keyed node calling itself: a call ending in a sealed payload reaches its
 * handler with that tail, as over a connection, and calls with and without
 * a tail keep the order they were made in (an SDFS seal after its chunks). */
static void test_calls_to_itself_keep_order(void **state)
{
    (void)state;
    struct fixture *f = make(KEY_A, KEY_A, NULL);
    n_seen = 0;
    assert_int_equal(
        net_on_request(f->b, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, on_tail_seen, NULL), 0);
    assert_int_equal(net_accept_tail(f->b, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ), 0);
    uint8_t body[64];
    memset(body, 'x', sizeof body);
    body[0] = '1';
    assert_int_equal(net_call_tail(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, body,
                                   sizeof body, 40, 0, on_result, f),
                     0);
    body[0] = '2';
    assert_int_equal(net_call(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, body, 8,
                              0, on_result, f),
                     0);
    body[0] = '3';
    assert_int_equal(net_call_tail(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, body,
                                   sizeof body, 48, 0, on_result, f),
                     0);
    run_until(f, &f->calls_done, 3, 3000);
    assert_int_equal(f->calls_done, 3);
    assert_int_equal(n_seen, 3);
    assert_memory_equal(seen_first, "123", 3);
    assert_int_equal(seen_tail[0], 40);
    assert_int_equal(seen_tail[1], 0);
    assert_int_equal(seen_tail[2], 48);
    /* a type that takes no tail refuses one from itself too */
    assert_int_equal(net_call_tail(f->b, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, body,
                                   sizeof body, 40, 0, on_result, f),
                     0);
    run_until(f, &f->calls_done, 4, 3000);
    assert_int_equal(f->last.status, ID_EPROTO);
    destroy(f);
}

static void test_other_key_is_refused(void **state)
{
    (void)state;
    struct fixture *f = make(KEY_B, KEY_A, NULL);
    ping(f, "let me in");
    assert_true(f->last.status < 0);
    assert_true(net_frame_stats(f->b)->bad_auth >= 1);
    assert_false(gossip_arrives(f, 300));
    assert_true(net_frame_stats(f->b)->bad_auth >= 2);
    destroy(f);
}

static void test_no_key_is_refused_and_told(void **state)
{
    (void)state;
    struct fixture *f = make(NULL, KEY_A, NULL);
    ping(f, "let me in");
    assert_int_equal(f->last.status, ID_EAUTH);
    assert_non_null(strstr(f->last_err, "requires its key"));
    assert_false(gossip_arrives(f, 300));
    assert_true(net_frame_stats(f->b)->unsealed >= 2); /* the frame and the datagrams */
    destroy(f);
}

static void test_key_on_plain_node_fails(void **state)
{
    (void)state;
    struct fixture *f = make(KEY_A, NULL, NULL);
    ping(f, "hello?");
    assert_true(f->last.status < 0);
    assert_false(gossip_arrives(f, 300));
    destroy(f);
}

static void test_rotated_ring_talks_to_old(void **state)
{
    (void)state;
    char both[160];
    snprintf(both, sizeof both, "%s%s", KEY_B, KEY_A);
    struct fixture *f = make(KEY_A, both, NULL); /* b rotated to B, a still on A */
    ping(f, "old key");
    assert_int_equal(f->last.status, 0);
    assert_true(gossip_arrives(f, 2000));
    destroy(f);
}

/* A raw TCP connection to b. */
static int raw_connect(struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage sa;
    net_parse_addr(f->addr_b, &sa);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    return fd;
}

/* Runs the loop (calling tick every ~50 ms, if set) until b holds `want`
 * incoming connections or limit_ms passed; returns what it holds. */
static size_t run_until_incoming(struct fixture *f, size_t want, uint64_t limit_ms,
                                 void (*tick)(int), int fd)
{
    uint64_t deadline = id_now_ms() + limit_ms, next_tick = 0;
    size_t in = 0;
    while (id_now_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        net_open_connections(f->b, &in);
        if (in == want)
            break;
        if (tick && id_now_ms() >= next_tick) {
            tick(fd);
            next_tick = id_now_ms() + 50;
        }
        poll(NULL, 0, 5);
    }
    return in;
}

static void test_unfinished_handshake_is_closed(void **state)
{
    (void)state;
    struct net_config bounds = {.handshake_timeout_ms = 200};
    struct fixture *f = make(KEY_A, KEY_A, &bounds);
    int fd = raw_connect(f);
    assert_int_equal(write(fd, "IDNH", 4), 4); /* a hello begun, never finished */
    assert_int_equal(run_until_incoming(f, 1, 2000, NULL, -1), 1);
    assert_int_equal(run_until_incoming(f, 0, 3000, NULL, -1), 0);
    assert_int_equal(net_frame_stats(f->b)->over_limit, 1);
    close(fd);
    destroy(f);
}

static void trickle(int fd)
{
    (void)!write(fd, "", 1); /* one more byte of a frame that never ends */
}

static void test_trickled_frame_is_closed(void **state)
{
    (void)state;
    /* Plaintext, so the frame itself is what is trickled; idle close is far. */
    struct net_config bounds = {.frame_timeout_ms = 300, .idle_close_ms = 60000};
    struct fixture *f = make(NULL, NULL, &bounds);
    int fd = raw_connect(f);
    uint8_t hdr[FRAME_HEADER_LEN];
    uint8_t body[1000] = {0};
    frame_encode_header(hdr, IDUNNO__MSG_TYPE__MSG_PING_REQ, 0, 1, body, sizeof body);
    assert_int_equal(write(fd, hdr, sizeof hdr), (ssize_t)sizeof hdr);
    assert_int_equal(run_until_incoming(f, 1, 2000, NULL, -1), 1);
    assert_int_equal(run_until_incoming(f, 0, 3000, trickle, fd), 0);
    assert_int_equal(net_frame_stats(f->b)->over_limit, 1);
    close(fd);
    destroy(f);
}

static void test_per_source_limit(void **state)
{
    (void)state;
    struct net_config bounds = {.max_per_source = 3};
    struct fixture *f = make(NULL, NULL, &bounds);
    int fds[5];
    for (int i = 0; i < 5; i++)
        fds[i] = raw_connect(f);
    run_until_incoming(f, 99, 500, NULL, -1); /* let every accept happen */
    size_t in = 0;
    net_open_connections(f->b, &in);
    assert_int_equal(in, 3);
    assert_int_equal(net_frame_stats(f->b)->over_limit, 2);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    /* Calls from a still work once the raw ones are gone. */
    assert_int_equal(run_until_incoming(f, 0, 2000, NULL, -1), 0);
    ping(f, "after");
    assert_int_equal(f->last.status, 0);
    destroy(f);
}

static void test_read_budget(void **state)
{
    (void)state;
    struct net_config bounds = {.max_buffered = 64 * 1024};
    struct fixture *f = make(KEY_A, KEY_A, &bounds);
    size_t n = 1 << 20;
    char *big = calloc(1, n);
    int before = f->calls_done;
    assert_int_equal(
        net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_PING_REQ, big, n, 0, on_result, f), 0);
    run_until(f, &f->calls_done, before + 1, 3000);
    assert_true(f->last.status < 0);
    assert_true(net_frame_stats(f->b)->over_limit >= 1);
    free(big);
    /* Small calls still fit. */
    ping(f, "small");
    assert_int_equal(f->last.status, 0);
    destroy(f);
}

static void test_answer_over_limit_is_an_error(void **state)
{
    (void)state;
    struct fixture *f = make(KEY_A, KEY_A, NULL);
    int before = f->calls_done;
    assert_int_equal(
        net_call(f->a, f->addr_b, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, "x", 1, 0, on_result, f), 0);
    run_until(f, &f->calls_done, before + 1, 3000);
    assert_int_equal(f->last.status, ID_ETOOBIG);
    assert_non_null(strstr(f->last_err, "frame limit"));
    destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_key_talks),
        cmocka_unit_test(test_calls_to_itself_keep_order),
        cmocka_unit_test(test_other_key_is_refused),
        cmocka_unit_test(test_no_key_is_refused_and_told),
        cmocka_unit_test(test_key_on_plain_node_fails),
        cmocka_unit_test(test_rotated_ring_talks_to_old),
        cmocka_unit_test(test_unfinished_handshake_is_closed),
        cmocka_unit_test(test_trickled_frame_is_closed),
        cmocka_unit_test(test_per_source_limit),
        cmocka_unit_test(test_read_budget),
        cmocka_unit_test(test_answer_over_limit_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
