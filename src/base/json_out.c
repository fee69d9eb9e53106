/* json_out.c — the JSON writer of json_out.h. */
#include "base/json_out.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void json_out_init(struct json_out *j, struct strbuf *sb)
{
    memset(j, 0, sizeof *j);
    j->sb = sb;
}

static void json_escape(struct strbuf *sb, const char *s)
{
    strbuf_putc(sb, '"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        const char *esc = NULL;
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) {
            strbuf_puts(sb, esc);
            p++;
        } else if (*p < 0x20) {
            strbuf_printf(sb, "\\u%04x", *p);
            p++;
        } else {
            size_t n = utf8_seq_len(p);
            if (n == 0) {
                strbuf_puts(sb, "\\ufffd");
                p++;
            } else {
                strbuf_append(sb, p, n);
                p += n;
            }
        }
    }
    strbuf_putc(sb, '"');
}

/* The comma before a value and its key. */
static void json_sep(struct json_out *j, const char *key)
{
    if (j->count[j->depth]) {
        strbuf_putc(j->sb, ',');
    }
    if (j->count[j->depth] < 2)
        j->count[j->depth]++;
    if (key) {
        json_escape(j->sb, key);
        strbuf_putc(j->sb, ':');
    }
}

static void json_open(struct json_out *j, const char *key, char open, char close)
{
    json_sep(j, key);
    if (j->depth == JSON_OUT_MAX_DEPTH) {
        j->sb->failed = 1;
        return;
    }
    strbuf_putc(j->sb, open);
    j->depth++;
    j->count[j->depth] = 0;
    j->closer[j->depth] = close;
}

void json_out_begin_object(struct json_out *j, const char *key)
{
    json_open(j, key, '{', '}');
}
void json_out_begin_array(struct json_out *j, const char *key)
{
    json_open(j, key, '[', ']');
}

void json_out_end(struct json_out *j)
{
    if (j->depth == 0)
        return;
    strbuf_putc(j->sb, j->closer[j->depth]);
    j->depth--;
}

void json_out_end_all(struct json_out *j)
{
    while (j->depth > 0)
        json_out_end(j);
}

void json_out_str(struct json_out *j, const char *key, const char *value)
{
    json_sep(j, key);
    json_escape(j->sb, value);
}

void json_out_u64(struct json_out *j, const char *key, uint64_t v)
{
    json_sep(j, key);
    strbuf_printf(j->sb, "%llu", (unsigned long long)v);
}

void json_out_i64(struct json_out *j, const char *key, int64_t v)
{
    json_sep(j, key);
    strbuf_printf(j->sb, "%lld", (long long)v);
}

void json_out_double(struct json_out *j, const char *key, double v)
{
    json_sep(j, key);
    if (isfinite(v))
        strbuf_printf(j->sb, "%.6g", v);
    else
        strbuf_puts(j->sb, "null"); /* JSON has no NaN or infinity */
}

void json_out_bool(struct json_out *j, const char *key, int v)
{
    json_sep(j, key);
    strbuf_puts(j->sb, v ? "true" : "false");
}

void json_out_null(struct json_out *j, const char *key)
{
    json_sep(j, key);
    strbuf_puts(j->sb, "null");
}

void json_out_raw(struct json_out *j, const char *key, const char *json, size_t len)
{
    json_sep(j, key);
    strbuf_append(j->sb, json, len);
}

unsigned json_out_top_count(const struct json_out *j)
{
    return j->count[0];
}
