/* test_base.c — base utilities: SHA-256 against the FIPS 180-4 examples, with
 * the portable code and with the CPU's SHA extensions (when it has them), and
 * the two against each other on random input split at random points; the
 * array helpers (growth, its overflow checks, sorted search). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/array.h"
#include "base/err.h"
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

/* Growing one element at a time: capacities first, 2 * first, ...; the
 * content survives every move. */
static void test_array_reserve_doubles(void **state)
{
    (void)state;
    uint32_t *a = NULL;
    size_t n = 0, cap = 0;
    for (uint32_t i = 0; i < 1000; i++) {
        assert_int_equal(ARRAY_RESERVE(a, cap, n, 1, 8), 0);
        assert_true(cap > n);
        assert_true(cap == 8 || (cap & (cap - 1)) == 0);
        a[n++] = i;
    }
    assert_int_equal(cap, 1024);
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(a[i], i);
    free(a);
}

/* Room that is there already costs nothing; a larger request jumps straight
 * to the first power-of-two multiple of the old capacity that holds it. */
static void test_array_reserve_bulk(void **state)
{
    (void)state;
    char *b = NULL;
    size_t cap = 0;
    assert_int_equal(ARRAY_RESERVE(b, cap, 0, 0, 64), 0);
    assert_null(b);
    assert_int_equal(cap, 0);
    assert_int_equal(ARRAY_RESERVE(b, cap, 0, 100, 64), 0);
    assert_int_equal(cap, 128);
    char *before = b;
    assert_int_equal(ARRAY_RESERVE(b, cap, 100, 28, 64), 0);
    assert_ptr_equal(b, before);
    assert_int_equal(cap, 128);
    assert_int_equal(ARRAY_RESERVE(b, cap, 128, 1000, 64), 0);
    assert_int_equal(cap, 2048);
    free(b);
}

/* Sizes that do not fit are refused before any allocation, and leave the
 * array as it was. */
static void test_array_reserve_overflow(void **state)
{
    (void)state;
    uint64_t *a = NULL;
    size_t cap = 0;
    assert_int_equal(ARRAY_RESERVE(a, cap, 0, 4, 4), 0);
    uint64_t *kept = a;
    assert_int_equal(ARRAY_RESERVE(a, cap, SIZE_MAX, 1, 4), ID_ENOMEM);
    assert_int_equal(ARRAY_RESERVE(a, cap, 4, SIZE_MAX - 3, 4), ID_ENOMEM);
    assert_int_equal(ARRAY_RESERVE(a, cap, 0, SIZE_MAX / 8 + 1, 4), ID_ENOMEM);
    assert_int_equal(ARRAY_RESERVE(a, cap, 0, SIZE_MAX / 2 + 2, 4), ID_ENOMEM);
    assert_ptr_equal(a, kept);
    assert_int_equal(cap, 4);
    free(a);
}

struct named {
    const char *name;
    int value;
};

static int named_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct named *)elem)->name);
}

static void test_array_search(void **state)
{
    (void)state;
    static const struct named e[] = {{"b", 1}, {"d", 2}, {"f", 3}, {"h", 4}};
    const char *keys[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        int found = -1;
        size_t at = array_search(e, 4, sizeof *e, keys[k], named_cmp, &found);
        assert_int_equal(found, k % 2);
        assert_int_equal(at, k / 2);
        if (found)
            assert_string_equal(e[at].name, keys[k]);
        else if (at < 4)
            assert_true(strcmp(keys[k], e[at].name) < 0);
    }
    int found = -1;
    assert_int_equal(array_search(NULL, 0, sizeof *e, "x", named_cmp, &found), 0);
    assert_int_equal(found, 0);
    /* Every length from 0 to 4: each present key found, each gap placed. */
    for (size_t n = 0; n <= 4; n++)
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(array_search(e, n, sizeof *e, e[i].name, named_cmp, &found), i);
            assert_int_equal(found, 1);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_portable),
        cmocka_unit_test(test_sha256_fastest),
        cmocka_unit_test(test_sha256_implementations_agree),
        cmocka_unit_test(test_array_reserve_doubles),
        cmocka_unit_test(test_array_reserve_bulk),
        cmocka_unit_test(test_array_reserve_overflow),
        cmocka_unit_test(test_array_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
