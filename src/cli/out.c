/* out.c — the CLI's output: aligned tables for people, JSON for programs.
 *
 * The JSON writer is deliberately tiny but strict: every string (keys too) is
 * escaped, bytes that are not valid UTF-8 (log lines can hold anything) become
 * U+FFFD so the document always parses, and non-finite numbers become null.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static FILE *cli_out_stream;

static FILE *out(void) { return cli_out_stream ? cli_out_stream : stdout; }

void cli_out_set(FILE *f) { cli_out_stream = f; }

/* ---- tables ----------------------------------------------------------------------------- */

struct cli_table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major, owned */
};

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort(); /* a CLI out of memory has nothing better to do */
    return d;
}

struct cli_table *cli_table_new(size_t ncols, ...)
{
    struct cli_table *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->ncols = ncols;
    t->cap = 16;
    t->cells = calloc(t->cap * ncols, sizeof *t->cells);
    if (!t->cells)
        abort();
    va_list ap;
    va_start(ap, ncols);
    for (size_t i = 0; i < ncols; i++)
        t->cells[i] = xstrdup(va_arg(ap, const char *));
    va_end(ap);
    t->nrows = 1;
    return t;
}

void cli_table_row(struct cli_table *t, ...)
{
    if (t->nrows == t->cap) {
        t->cap *= 2;
        char **cells = realloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
        if (!cells)
            abort();
        t->cells = cells;
    }
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = xstrdup(va_arg(ap, const char *));
    va_end(ap);
    t->nrows++;
}

/* Width on a terminal: code points, not bytes (names may be UTF-8). */
static size_t display_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        w += (*p & 0xC0) != 0x80;
    return w;
}

void cli_table_print(struct cli_table *t)
{
    FILE *o = out();
    size_t *w = calloc(t->ncols, sizeof *w);
    if (!w)
        abort();
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t l = display_width(t->cells[r * t->ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            fputs(s, o);
            if (c + 1 < t->ncols)
                fprintf(o, "%*s", (int)(w[c] - display_width(s) + 2), "");
        }
        fputc('\n', o);
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(w);
    free(t);
}

/* ---- JSON ------------------------------------------------------------------------------- */

#define JSON_MAX_DEPTH 32
static int json_need_comma[JSON_MAX_DEPTH];
static int json_depth;

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n;
    unsigned cp;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) { n = 2; cp = p[0] & 0x1Fu; }
    else if (p[0] >= 0xE0 && p[0] <= 0xEF) { n = 3; cp = p[0] & 0x0Fu; }
    else if (p[0] >= 0xF0 && p[0] <= 0xF4) { n = 4; cp = p[0] & 0x07u; }
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) /* also stops at the NUL terminator */
            return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static void json_escape(const char *s)
{
    FILE *o = out();
    fputc('"', o);
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        switch (*p) {
        case '"': fputs("\\\"", o); p++; continue;
        case '\\': fputs("\\\\", o); p++; continue;
        case '\n': fputs("\\n", o); p++; continue;
        case '\r': fputs("\\r", o); p++; continue;
        case '\t': fputs("\\t", o); p++; continue;
        case '\b': fputs("\\b", o); p++; continue;
        case '\f': fputs("\\f", o); p++; continue;
        default: break;
        }
        if (*p < 0x20) {
            fprintf(o, "\\u%04x", *p);
            p++;
            continue;
        }
        size_t n = utf8_seq_len(p);
        if (n == 0) {
            fputs("\\ufffd", o);
            p++;
        } else {
            fwrite(p, 1, n, o);
            p += n;
        }
    }
    fputc('"', o);
}

static void json_sep(const char *key)
{
    FILE *o = out();
    if (json_depth > 0 && json_need_comma[json_depth])
        fputc(',', o);
    if (json_depth > 0)
        json_need_comma[json_depth] = 1;
    if (key) {
        json_escape(key);
        fputc(':', o);
    }
}

static void json_open(const char *key, char c)
{
    json_sep(key);
    fputc(c, out());
    if (json_depth < JSON_MAX_DEPTH - 1)
        json_depth++;
    json_need_comma[json_depth] = 0;
}

static void json_close(char c)
{
    fputc(c, out());
    if (json_depth > 0)
        json_depth--;
}

void json_begin_object(void) { json_open(NULL, '{'); }
void json_key_object(const char *key) { json_open(key, '{'); }
void json_begin_array(const char *key) { json_open(key, '['); }
void json_end_object(void) { json_close('}'); }
void json_end_array(void) { json_close(']'); }
void json_str(const char *key, const char *value) { json_sep(key); json_escape(value); }
void json_u64(const char *key, uint64_t v) { json_sep(key); fprintf(out(), "%llu", (unsigned long long)v); }
void json_i64(const char *key, int64_t v) { json_sep(key); fprintf(out(), "%lld", (long long)v); }

void json_double(const char *key, double v)
{
    json_sep(key);
    if (isfinite(v))
        fprintf(out(), "%.6g", v);
    else
        fputs("null", out()); /* JSON has no NaN or infinity */
}

void json_bool(const char *key, int v) { json_sep(key); fputs(v ? "true" : "false", out()); }

void json_done(void)
{
    fputc('\n', out());
    json_depth = 0;
    memset(json_need_comma, 0, sizeof json_need_comma);
}

const char *cli_fmt_ms(uint64_t ms, char *buf, size_t len)
{
    if (ms < 1000)
        snprintf(buf, len, "%llums", (unsigned long long)ms);
    else if (ms < 60000)
        snprintf(buf, len, "%.1fs", ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, len, "%llum%llus", (unsigned long long)(ms / 60000), (unsigned long long)(ms / 1000 % 60));
    else
        snprintf(buf, len, "%lluh%llum", (unsigned long long)(ms / 3600000), (unsigned long long)(ms / 60000 % 60));
    return buf;
}
