/* names.c — name checks and escaping for printing (see names.h). */
#include "base/names.h"

#include <stdio.h>
#include <string.h>

size_t id_printable_seq(const unsigned char *p)
{
    unsigned c = p[0];
    if (c >= 0x20 && c < 0x7f)
        return 1;
    size_t n;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0; /* ASCII control, DEL, a continuation byte or an invalid lead */
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates, beyond U+10FFFF and the C1 controls. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return n;
}

int id_name_ok(const char *s, size_t max_len)
{
    if (!s || !s[0])
        return 0;
    size_t len = strlen(s);
    if (len > max_len)
        return 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = *p == ' ' ? 0 : id_printable_seq(p);
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

char *id_escape(const char *s, char *out, size_t len)
{
    if (len == 0)
        return out;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        char tmp[8];
        size_t n = *p == '\\' ? 0 : id_printable_seq(p);
        const char *piece = (const char *)p;
        size_t plen = n;
        if (n == 0) {
            plen = *p == '\\' ? 2 : 4;
            if (*p == '\\')
                memcpy(tmp, "\\\\", 3);
            else
                snprintf(tmp, sizeof tmp, "\\x%02x", *p);
            piece = tmp;
            n = 1;
        }
        if (o + plen >= len)
            break; /* truncate between characters, never inside one */
        memcpy(out + o, piece, plen);
        o += plen;
        p += n;
    }
    out[o] = 0;
    return out;
}
