/* fuzz_http.c — libFuzzer target for what the HTTP endpoint does with bytes
 * from outside: the request path and method (route.h; libmicrohttpd parses the
 * rest), the Authorization header (auth.h), and the writers that put
 * arbitrary strings (names, log text, job names) into its documents.
 * Properties checked, not just "no crash":
 *   - a route is matched only for one of the exact paths;
 *   - a state-changing request passes the token check only when its header is
 *     "Bearer" and the token's 64 hex digits, nothing else; reads always pass;
 *     without a cluster key nothing state-changing passes;
 *   - a JSON string written from any bytes is valid JSON and valid UTF-8;
 *   - a Prometheus label value written from any bytes has no raw newline or
 *     unescaped quote, is valid UTF-8, and unescapes back to its input when
 *     the input was valid UTF-8. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/json_out.h"
#include "base/strbuf.h"
#include "http/auth.h"
#include "http/prom.h"
#include "http/route.h"

static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len((const unsigned char *)s + i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

static void check_route(const char *path)
{
    enum http_route r = http_route_match(path);
    size_t n = strcspn(path, "?");
    static const char *const paths[] = {"/", "/metrics", "/healthz", "/readyz", "/api/status"};
    int exact = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        exact |= strlen(paths[i]) == n && memcmp(paths[i], path, n) == 0;
    if ((r != HTTP_ROUTE_NONE) != exact)
        __builtin_trap();
    (void)http_method_ok(path);
    (void)http_route_name(r);
}

static void check_auth(const char *s)
{
    static uint8_t token[1][HTTP_TOKEN_LEN];
    static const char hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    for (int i = 0; i < HTTP_TOKEN_LEN; i++)
        token[0][i] = (uint8_t)i;
    enum http_auth a = http_auth_check("POST", s, (const uint8_t(*)[HTTP_TOKEN_LEN])token, 1);
    if (a == HTTP_AUTH_OK) {
        /* "bearer" (any case), spaces, the hex digits (any case), spaces */
        if (strncasecmp(s, "Bearer ", 7) != 0)
            __builtin_trap();
        const char *t = s + 7 + strspn(s + 7, " ");
        if (strncasecmp(t, hex, 64) != 0 || t[64 + strspn(t + 64, " ")] != 0)
            __builtin_trap();
    } else if (a != HTTP_AUTH_BAD) {
        __builtin_trap(); /* a header was given: it is good or bad, never missing */
    }
    if (http_auth_check("GET", s, (const uint8_t(*)[HTTP_TOKEN_LEN])token, 1) != HTTP_AUTH_OK ||
        http_auth_check("HEAD", s, NULL, 0) != HTTP_AUTH_OK ||
        http_auth_check(s, s, NULL, 0) != (http_method_ok(s) ? HTTP_AUTH_OK : HTTP_AUTH_NO_KEY))
        __builtin_trap();
}

static void check_json(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    struct json_out j;
    json_out_init(&j, &sb);
    json_out_str(&j, NULL, s);
    const char *o = strbuf_str(&sb);
    size_t n = sb.len;
    if (n < 2 || o[0] != '"' || o[n - 1] != '"' || !valid_utf8(o, n))
        __builtin_trap();
    for (size_t i = 1; i < n - 1; i++) {
        unsigned char c = (unsigned char)o[i];
        if (c < 0x20 || c == '"')
            __builtin_trap();
        if (c == '\\') {
            char e = o[++i];
            if (e == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (!strchr("0123456789abcdef", o[i + k]) || !o[i + k])
                        __builtin_trap();
                i += 4;
            } else if (!strchr("\"\\/bfnrt", e) || !e) {
                __builtin_trap();
            }
        }
    }
    strbuf_free(&sb);
}

/* What a label value reads as once unescaped: the value itself, except that
 * control characters (C0, DEL, C1) stand as the text \xNN (prom.c). */
static const char *shown_as(const char *s)
{
    static struct strbuf out = STRBUF_INIT;
    strbuf_reset(&out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            strbuf_printf(&out, "\\x%02x", *++p);
        } else if ((*p < 0x20 && *p != '\n') || *p == 0x7f) {
            strbuf_printf(&out, "\\x%02x", *p);
        } else {
            strbuf_putc(&out, (char)*p);
        }
    }
    return strbuf_str(&out);
}

static void check_prom(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    struct prom_out p;
    prom_out_init(&p, &sb);
    prom_family(&p, s, PROM_GAUGE, s); /* names sanitised, help escaped */
    size_t head = sb.len;
    prom_sample(&p, PROM_LABELS({s, s}), 1);
    const char *o = strbuf_str(&sb);
    if (!valid_utf8(o, sb.len))
        __builtin_trap();
    /* Exactly three lines: HELP, TYPE, the sample. */
    size_t lines = 0;
    for (size_t i = 0; i < sb.len; i++)
        lines += o[i] == '\n';
    if (lines != 3 || o[sb.len - 1] != '\n')
        __builtin_trap();
    /* The label value: between =" and the closing quote, escapes undone. */
    const char *v = strstr(o + head, "=\"");
    if (!v)
        __builtin_trap();
    v += 2;
    struct strbuf un = STRBUF_INIT;
    for (; *v != '"'; v++) {
        if (*v == '\n' || !*v)
            __builtin_trap();
        if (*v == '\\') {
            v++;
            if (*v == 'n')
                strbuf_putc(&un, '\n');
            else if (*v == '\\' || *v == '"')
                strbuf_putc(&un, *v);
            else
                __builtin_trap();
        } else {
            strbuf_putc(&un, *v);
        }
    }
    if (strcmp(v, "\"} 1\n") != 0)
        __builtin_trap();
    if (valid_utf8(s, strlen(s)) && strcmp(strbuf_str(&un), shown_as(s)) != 0)
        __builtin_trap();
    strbuf_free(&un);
    strbuf_free(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0; /* the server sees NUL-terminated strings */
    check_route(s);
    check_auth(s);
    check_json(s);
    check_prom(s);
    free(s);
    return 0;
}
