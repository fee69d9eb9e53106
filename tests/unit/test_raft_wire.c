/* test_raft_wire.c — the checker of libraft's wire format in front of the
 * raft port: handshake bounds, message lengths and the term rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "ctl/raft_wire.h"

static size_t put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 8;
}

/* A RequestVote as libraft 0.22 sends it: preamble then five words. */
static size_t request_vote(uint8_t *b, uint64_t term)
{
    size_t n = put64(b, 3 | 2u << 16); /* libraft 0.22: version 2 in bits 16-31 */
    n += put64(b + n, 40);
    n += put64(b + n, term);
    n += put64(b + n, 2);
    n += put64(b + n, 10);
    n += put64(b + n, 4);
    n += put64(b + n, 0);
    return n;
}

/* An InstallSnapshot with the given configuration length claim; conf_room
 * is how many configuration bytes the header really carries. */
static size_t install_snapshot(uint8_t *b, uint64_t term, uint64_t conf_len, uint64_t conf_room,
                               uint64_t data_len)
{
    size_t n = put64(b, 5);
    n += put64(b + n, 48 + conf_room);
    n += put64(b + n, term);
    n += put64(b + n, 100);
    n += put64(b + n, term);
    n += put64(b + n, 90);
    n += put64(b + n, conf_len);
    memset(b + n, 0, conf_room);
    n += conf_room;
    n += put64(b + n, data_len);
    return n;
}

static const struct raft_wire_policy stranger = {.current_term = 7, .verified_voter = false};
static const struct raft_wire_policy voter = {.current_term = 7, .verified_voter = true};

static void test_hello_roundtrip(void **state)
{
    (void)state;
    uint8_t b[RAFT_WIRE_HELLO_FIXED + RAFT_WIRE_ADDR_MAX];
    long n = raft_wire_hello_encode(42, "127.0.0.1:31001", b);
    assert_int_equal(n, 24 + 16);
    struct raft_wire_hello h;
    for (long k = 0; k < n; k++)
        assert_int_equal(raft_wire_hello_decode(b, (size_t)k, &h), 0);
    assert_int_equal(raft_wire_hello_decode(b, (size_t)n, &h), n);
    assert_int_equal(h.id, 42);
    assert_string_equal(h.addr, "127.0.0.1:31001");
}

static void test_hello_refuses_huge_address(void **state)
{
    (void)state;
    uint8_t b[24];
    put64(b, 1);
    put64(b + 8, 9);
    put64(b + 16, 1ull << 30);
    struct raft_wire_hello h;
    assert_int_equal(raft_wire_hello_decode(b, sizeof b, &h), ID_ETOOBIG);
}

static void test_hello_refuses_garbage(void **state)
{
    (void)state;
    uint8_t b[64] = {0};
    struct raft_wire_hello h;
    put64(b, 2);
    assert_int_equal(raft_wire_hello_decode(b, 8, &h), ID_EVERSION);
    put64(b, 1);
    put64(b + 8, 0);
    assert_int_equal(raft_wire_hello_decode(b, 16, &h), ID_EPROTO);
    put64(b + 8, 5);
    put64(b + 16, 16);
    memcpy(b + 24, "ab\ncd", 5); /* control character */
    assert_int_equal(raft_wire_hello_decode(b, 40, &h), ID_EPROTO);
    assert_int_equal(raft_wire_hello_decode(b, 27, &h), ID_EPROTO); /* refused early */
    memcpy(b + 24, "abcdefghijklmnop", 16);                         /* no NUL */
    assert_int_equal(raft_wire_hello_decode(b, 40, &h), ID_EPROTO);
    memset(b + 24, 0, 16);
    b[24] = 'a';
    b[30] = 'x'; /* bytes after the NUL */
    assert_int_equal(raft_wire_hello_decode(b, 40, &h), ID_EPROTO);
    put64(b + 16, 0);
    assert_int_equal(raft_wire_hello_decode(b, 24, &h), ID_EPROTO);
}

static void test_term_rule(void **state)
{
    (void)state;
    uint8_t b[64];
    uint64_t top;
    struct raft_wire_scan s = {0};
    size_t n = request_vote(b, 7 + RAFT_WIRE_TERM_SLACK);
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &stranger, &top), RAFT_WIRE_OK);
    assert_int_equal(top, 7 + RAFT_WIRE_TERM_SLACK);
    assert_int_equal(s.messages, 1);

    memset(&s, 0, sizeof s);
    n = request_vote(b, 7 + RAFT_WIRE_TERM_SLACK + 1);
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &stranger, NULL), RAFT_WIRE_TERM_JUMP);
    /* Stuck on the verdict: nothing more is accepted. */
    assert_int_equal(raft_wire_scan_feed(&s, b, 1, &stranger, NULL), RAFT_WIRE_TERM_JUMP);

    memset(&s, 0, sizeof s);
    n = request_vote(b, UINT64_MAX);
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &stranger, NULL), RAFT_WIRE_TERM_JUMP);
    memset(&s, 0, sizeof s);
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &voter, NULL), RAFT_WIRE_OK);
}

static void test_header_lengths(void **state)
{
    (void)state;
    uint8_t b[16];
    struct raft_wire_scan s = {0};
    put64(b, 3);
    put64(b + 8, 8); /* a RequestVote header too short to hold its fields */
    assert_int_equal(raft_wire_scan_feed(&s, b, 16, &voter, NULL), RAFT_WIRE_BAD_HEADER);
    memset(&s, 0, sizeof s);
    put64(b, 9);
    put64(b + 8, 24);
    assert_int_equal(raft_wire_scan_feed(&s, b, 16, &voter, NULL), RAFT_WIRE_BAD_TYPE);
    memset(&s, 0, sizeof s);
    put64(b, 3 | 1ull << 40); /* upper half not zero */
    put64(b + 8, 40);
    assert_int_equal(raft_wire_scan_feed(&s, b, 16, &voter, NULL), RAFT_WIRE_BAD_TYPE);
    memset(&s, 0, sizeof s);
    put64(b, 1);
    put64(b + 8, 1ull << 40);
    assert_int_equal(raft_wire_scan_feed(&s, b, 16, &voter, NULL), RAFT_WIRE_BAD_HEADER);
}

static void test_install_snapshot_conf_length(void **state)
{
    (void)state;
    uint8_t b[256];
    struct raft_wire_scan s = {0};
    size_t n = install_snapshot(b, 7, 1ull << 40, 16, 0);
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &voter, NULL), RAFT_WIRE_BAD_CONF);
    memset(&s, 0, sizeof s);
    n = install_snapshot(b, 7, 24, 16, 0); /* longer than the header holds */
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &voter, NULL), RAFT_WIRE_BAD_CONF);
    memset(&s, 0, sizeof s);
    n = install_snapshot(b, 7, 16, 16, 1ull << 40);
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &voter, NULL), RAFT_WIRE_BAD_PAYLOAD);
    /* A sane one, then its payload byte by byte, then another message. */
    memset(&s, 0, sizeof s);
    n = install_snapshot(b, 7, 16, 16, 5);
    memset(b + n, 0xAA, 5);
    n += 5;
    n += request_vote(b + n, 8);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(raft_wire_scan_feed(&s, b + i, 1, &stranger, NULL), RAFT_WIRE_OK);
    assert_int_equal(s.messages, 2);
}

static void test_append_entries(void **state)
{
    (void)state;
    uint8_t b[256];
    size_t n = put64(b, 1);
    n += put64(b + n, 48 + 32); /* 2 entries, with libraft's trailing word */
    n += put64(b + n, 7);
    n += put64(b + n, 3);
    n += put64(b + n, 6);
    n += put64(b + n, 2);
    n += put64(b + n, 2);
    for (int e = 0; e < 2; e++) {
        n += put64(b + n, 7);
        n += put64(b + n, 1 | (8ull << 32));
    }
    n += put64(b + n, 0);
    memset(b + n, 0x55, 16);
    n += 16;
    struct raft_wire_scan s = {0};
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &stranger, NULL), RAFT_WIRE_OK);
    assert_int_equal(s.messages, 1);
    /* A count that does not match the header length. */
    memset(&s, 0, sizeof s);
    put64(b + 16 + 32, 3);
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &stranger, NULL), RAFT_WIRE_BAD_ENTRY);
    /* An entry of an unknown type. */
    memset(&s, 0, sizeof s);
    put64(b + 16 + 32, 2);
    put64(b + 16 + 48, 9 | (8ull << 32));
    assert_int_equal(raft_wire_scan_feed(&s, b, n, &stranger, NULL), RAFT_WIRE_BAD_ENTRY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_roundtrip),
        cmocka_unit_test(test_hello_refuses_huge_address),
        cmocka_unit_test(test_hello_refuses_garbage),
        cmocka_unit_test(test_term_rule),
        cmocka_unit_test(test_header_lengths),
        cmocka_unit_test(test_install_snapshot_conf_length),
        cmocka_unit_test(test_append_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
