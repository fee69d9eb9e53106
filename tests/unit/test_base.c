/* test_base.c — base utilities: SHA-256 against the FIPS 180-4 examples, with
 * the portable code and with the CPU's SHA extensions (when it has them), and
 * the two against each other on random input split at random points. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/sha256.h"

static void hex_of(const void *data, size_t len, char out[65])
{
    struct sha256 s;
    uint8_t d[32];
    sha256_init(&s);
    sha256_update(&s, data, len);
    sha256_final(&s, d);
    sha256_hex(d, out);
}

static void check_vectors(void)
{
    char h[65];
    hex_of("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m, strlen(m), h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* One million 'a', fed in uneven pieces. */
    struct sha256 s;
    uint8_t d[32], buf[1024]; /* steps below stay under 1010 bytes */
    memset(buf, 'a', sizeof buf);
    sha256_init(&s);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t n = step < left ? step : left;
        sha256_update(&s, buf, n);
        left -= n;
        step = step % 997 + 13;
    }
    sha256_final(&s, d);
    sha256_hex(d, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_sha256_portable(void **state)
{
    (void)state;
    int was = sha256_use_portable(1);
    check_vectors();
    sha256_use_portable(was);
}

static void test_sha256_fastest(void **state)
{
    (void)state;
    sha256_use_portable(0);
    check_vectors();
}

static void test_sha256_implementations_agree(void **state)
{
    (void)state;
    srand(7);
    static uint8_t buf[1 << 16];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)rand();
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)rand() % sizeof buf, cut = len ? (size_t)rand() % len : 0;
        uint8_t a[32], b[32];
        for (int portable = 1; portable >= 0; portable--) {
            sha256_use_portable(portable);
            struct sha256 s;
            sha256_init(&s);
            sha256_update(&s, buf, cut);
            sha256_update(&s, buf + cut, len - cut);
            sha256_final(&s, portable ? a : b);
        }
        assert_memory_equal(a, b, 32);
    }
    sha256_use_portable(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_portable),
        cmocka_unit_test(test_sha256_fastest),
        cmocka_unit_test(test_sha256_implementations_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
