/* auth.c — the bearer token check of state-changing HTTP requests (auth.h). */
#include "http/auth.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "http/route.h"

/* The 32 token bytes of "Bearer <64 hex digits>" (scheme case-insensitive,
 * RFC 7235; spaces around the token tolerated). Returns 0 or -1. */
static int parse_bearer(const char *v, uint8_t out[HTTP_TOKEN_LEN])
{
    if (strncasecmp(v, "Bearer ", 7) != 0)
        return -1;
    v += 7;
    v += strspn(v, " ");
    size_t hex = strspn(v, "0123456789abcdefABCDEF");
    if (hex != 2 * HTTP_TOKEN_LEN || v[hex + strspn(v + hex, " ")] != 0)
        return -1;
    size_t bin = 0;
    if (sodium_hex2bin(out, HTTP_TOKEN_LEN, v, hex, NULL, &bin, NULL) != 0 || bin != HTTP_TOKEN_LEN)
        return -1;
    return 0;
}

enum http_auth http_auth_check(const char *method, const char *authorization,
                               const uint8_t (*tokens)[HTTP_TOKEN_LEN], size_t n)
{
    if (http_method_ok(method))
        return HTTP_AUTH_OK;
    if (n == 0)
        return HTTP_AUTH_NO_KEY;
    if (!authorization)
        return HTTP_AUTH_MISSING;
    uint8_t given[HTTP_TOKEN_LEN];
    if (parse_bearer(authorization, given) < 0)
        return HTTP_AUTH_BAD;
    /* every token compared, in constant time, whichever matches */
    int match = 0;
    for (size_t i = 0; i < n && i < HTTP_MAX_TOKENS; i++)
        match |= sodium_memcmp(given, tokens[i], HTTP_TOKEN_LEN) == 0;
    sodium_memzero(given, sizeof given);
    return match ? HTTP_AUTH_OK : HTTP_AUTH_BAD;
}

const char *http_auth_name(enum http_auth a)
{
    static const char *const names[HTTP_AUTH_COUNT] = {"ok", "missing", "bad", "no_key"};
    return a >= 0 && a < HTTP_AUTH_COUNT ? names[a] : "bad";
}
