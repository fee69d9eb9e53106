/* test_http_auth.c — the bearer token check of state-changing HTTP requests
 * (src/http/auth.c) and the token's derivation from the keyring
 * (seal_http_token). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "http/auth.h"
#include "net/seal.h"

static uint8_t tokens[2][HTTP_TOKEN_LEN];
static char hex0[2 * HTTP_TOKEN_LEN + 1], hex1[2 * HTTP_TOKEN_LEN + 1];

static int setup(void **state)
{
    (void)state;
    if (seal_init() < 0)
        return -1;
    char err[200];
    static const char ring[] = "1111111111111111111111111111111111111111111111111111111111111111\n"
                               "2222222222222222222222222222222222222222222222222222222222222222\n";
    struct seal_keyring kr;
    if (seal_keyring_parse(ring, sizeof ring - 1, &kr, err, sizeof err) < 0)
        return -1;
    seal_http_token(&kr, 0, tokens[0]);
    seal_http_token(&kr, 1, tokens[1]);
    seal_keyring_wipe(&kr);
    sodium_bin2hex(hex0, sizeof hex0, tokens[0], HTTP_TOKEN_LEN);
    sodium_bin2hex(hex1, sizeof hex1, tokens[1], HTTP_TOKEN_LEN);
    return 0;
}

static enum http_auth check(const char *method, const char *authz)
{
    return http_auth_check(method, authz, (const uint8_t(*)[HTTP_TOKEN_LEN])tokens, 2);
}

/* Each key its own token, and none of them the key itself. */
static void test_tokens_derived(void **state)
{
    (void)state;
    assert_memory_not_equal(tokens[0], tokens[1], HTTP_TOKEN_LEN);
    uint8_t key1[HTTP_TOKEN_LEN];
    memset(key1, 0x11, sizeof key1);
    assert_memory_not_equal(tokens[0], key1, HTTP_TOKEN_LEN);
}

static void test_reads_are_open(void **state)
{
    (void)state;
    assert_int_equal(check("GET", NULL), HTTP_AUTH_OK);
    assert_int_equal(check("HEAD", "Bearer nonsense"), HTTP_AUTH_OK);
    /* even without a cluster key */
    assert_int_equal(http_auth_check("GET", NULL, NULL, 0), HTTP_AUTH_OK);
}

static void test_state_changes_need_a_token(void **state)
{
    (void)state;
    char h[128];
    assert_int_equal(check("POST", NULL), HTTP_AUTH_MISSING);
    assert_int_equal(check(NULL, NULL), HTTP_AUTH_MISSING);
    snprintf(h, sizeof h, "Bearer %s", hex0);
    assert_int_equal(check("POST", h), HTTP_AUTH_OK);
    snprintf(h, sizeof h, "Bearer %s", hex1); /* the second key of the ring too */
    assert_int_equal(check("DELETE", h), HTTP_AUTH_OK);
    snprintf(h, sizeof h, "bearer   %s ", hex0); /* scheme's case, spaces */
    assert_int_equal(check("PUT", h), HTTP_AUTH_OK);
    /* wrong: another token, one digit short or long, flipped, other scheme, junk after */
    char flipped[sizeof hex0];
    memcpy(flipped, hex0, sizeof flipped);
    flipped[10] = flipped[10] == '0' ? '1' : '0';
    snprintf(h, sizeof h, "Bearer %s", flipped);
    assert_int_equal(check("POST", h), HTTP_AUTH_BAD);
    snprintf(h, sizeof h, "Bearer %.63s", hex0);
    assert_int_equal(check("POST", h), HTTP_AUTH_BAD);
    snprintf(h, sizeof h, "Bearer %s0", hex0);
    assert_int_equal(check("POST", h), HTTP_AUTH_BAD);
    snprintf(h, sizeof h, "Basic %s", hex0);
    assert_int_equal(check("POST", h), HTTP_AUTH_BAD);
    snprintf(h, sizeof h, "Bearer %s x", hex0);
    assert_int_equal(check("POST", h), HTTP_AUTH_BAD);
    snprintf(h, sizeof h, "Bearer%s", hex0);
    assert_int_equal(check("POST", h), HTTP_AUTH_BAD);
    assert_int_equal(check("POST", ""), HTTP_AUTH_BAD);
    assert_int_equal(check("POST", "Bearer "), HTTP_AUTH_BAD);
}

static void test_no_key_refuses_every_change(void **state)
{
    (void)state;
    char h[128];
    snprintf(h, sizeof h, "Bearer %s", hex0);
    assert_int_equal(http_auth_check("POST", h, NULL, 0), HTTP_AUTH_NO_KEY);
    assert_int_equal(http_auth_check("POST", NULL, NULL, 0), HTTP_AUTH_NO_KEY);
    assert_string_equal(http_auth_name(HTTP_AUTH_NO_KEY), "no_key");
    assert_string_equal(http_auth_name(HTTP_AUTH_MISSING), "missing");
    assert_string_equal(http_auth_name(HTTP_AUTH_BAD), "bad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens_derived),
        cmocka_unit_test(test_reads_are_open),
        cmocka_unit_test(test_state_changes_need_a_token),
        cmocka_unit_test(test_no_key_refuses_every_change),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
