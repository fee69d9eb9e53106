/* test_frame.c — the wire header and CRC-32C. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "net/frame.h"

static void test_crc32c_known_vectors(void **state)
{
    (void)state;
    /* RFC 3720 B.4 check value and the all-zero vector. */
    assert_int_equal(crc32c("123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = {0};
    assert_int_equal(crc32c(zeros, sizeof zeros), 0x8A9136AAu);
}

/* The three-chain hardware path (buffers of 12 KiB and more) against the
 * table code, at every alignment and across the block boundaries. */
static void test_crc32c_fast_equals_portable(void **state)
{
    (void)state;
    enum { N = 3 * 4096 * 4 + 100 };
    unsigned char *buf = malloc(N);
    assert_non_null(buf);
    uint32_t x = 12345;
    for (size_t i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    const size_t lens[] = {0,    1, 7, 8, 4095, 3 * 4096 - 1, 3 * 4096, 3 * 4096 + 1, 6 * 4096 + 13,
                           N - 8};
    for (size_t off = 0; off < 8; off++)
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            size_t len = lens[k];
            assert_int_equal(crc32c_update(0xdeadbeefu, buf + off, len),
                             crc32c_update_portable(0xdeadbeefu, buf + off, len));
        }
    /* Pieces of any size give the whole's CRC. */
    uint32_t whole = crc32c(buf, N);
    uint32_t c = crc32c_update(0, buf, 5000);
    c = crc32c_update(c, buf + 5000, 20000);
    c = crc32c_update(c, buf + 25000, N - 25000);
    assert_int_equal(c, whole);
    free(buf);
}

static void test_crc32c_incremental_equals_whole(void **state)
{
    (void)state;
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    uint32_t whole = crc32c(buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut += 37) {
        uint32_t c = crc32c_update(0, buf, cut);
        c = crc32c_update(c, buf + cut, sizeof buf - cut);
        assert_int_equal(c, whole);
    }
}

static void test_frame_roundtrip(void **state)
{
    (void)state;
    uint8_t dgram[FRAME_HEADER_LEN + 5];
    memcpy(dgram + FRAME_HEADER_LEN, "hello", 5);
    frame_encode_header(dgram, 42, FRAME_F_RESPONSE, 0x0102030405060708ull,
                        dgram + FRAME_HEADER_LEN, 5);
    /* Big-endian on the wire, whatever the host. */
    assert_memory_equal(dgram, "IDNO", 4);
    assert_int_equal(dgram[7], 42);
    assert_int_equal(dgram[8], 0x01);

    struct frame_header h;
    const uint8_t *body = NULL;
    struct frame_stats st = {0};
    assert_int_equal(frame_decode_datagram(dgram, sizeof dgram, &h, &body, &st), 0);
    assert_int_equal(h.type, 42);
    assert_int_equal(h.flags, FRAME_F_RESPONSE);
    assert_true(h.req_id == 0x0102030405060708ull);
    assert_int_equal(h.length, 5);
    assert_memory_equal(body, "hello", 5);
}

static void test_frame_rejects_corruption(void **state)
{
    (void)state;
    uint8_t good[FRAME_HEADER_LEN + 8] = {0};
    memcpy(good + FRAME_HEADER_LEN, "abcdefgh", 8);
    frame_encode_header(good, 7, 0, 1, good + FRAME_HEADER_LEN, 8);

    struct frame_stats st = {0};
    struct frame_header h;
    const uint8_t *body;
    /* Every single-bit flip is caught, by magic, version, length or crc. */
    for (size_t byte = 0; byte < sizeof good; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t bad[sizeof good];
            memcpy(bad, good, sizeof good);
            bad[byte] ^= (uint8_t)(1u << bit);
            assert_true(frame_decode_datagram(bad, sizeof bad, &h, &body, &st) < 0);
        }
    }
    uint64_t counted = st.bad_magic + st.bad_version + st.too_big + st.bad_crc + st.bad_body;
    assert_int_equal(counted, sizeof good * 8);
    assert_true(st.bad_crc > 0 && st.bad_magic > 0 && st.bad_version > 0);

    /* Truncated and oversized datagrams. */
    assert_int_equal(frame_decode_datagram(good, 10, &h, &body, &st), ID_EPROTO);
    assert_int_equal(frame_decode_datagram(good, sizeof good - 1, &h, &body, &st), ID_EPROTO);
}

static void test_frame_header_length_limit(void **state)
{
    (void)state;
    uint8_t hdr[FRAME_HEADER_LEN];
    frame_encode_header(hdr, 1, 0, 0, NULL, 0);
    hdr[16] = 0x7f; /* claims a body of ~2 GB */
    struct frame_header h = {.type = 99};
    struct frame_stats st = {0};
    assert_int_equal(frame_decode_header(hdr, FRAME_MAX_BODY, &h, &st), ID_ETOOBIG);
    assert_int_equal(st.too_big, 1);
    assert_int_equal(h.type, 99); /* unchanged on error */
}

static void test_err_table(void **state)
{
    (void)state;
    assert_string_equal(id_strerror(ID_ENOLEADER), "no coordinator");
    assert_string_equal(id_errname(ID_ETIMEDOUT), "ID_ETIMEDOUT");
    assert_string_equal(id_strerror(-9999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known_vectors),
        cmocka_unit_test(test_crc32c_incremental_equals_whole),
        cmocka_unit_test(test_crc32c_fast_equals_portable),
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_frame_rejects_corruption),
        cmocka_unit_test(test_frame_header_length_limit),
        cmocka_unit_test(test_err_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
