/* out.c — the CLI's output: aligned tables for people, JSON for programs. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct cli_table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major, owned */
};

struct cli_table *cli_table_new(size_t ncols, ...)
{
    struct cli_table *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->ncols = ncols;
    va_list ap;
    va_start(ap, ncols);
    t->cap = 16;
    t->cells = calloc(t->cap * ncols, sizeof *t->cells);
    for (size_t i = 0; i < ncols; i++)
        t->cells[i] = strdup(va_arg(ap, const char *));
    t->nrows = 1;
    va_end(ap);
    return t;
}

void cli_table_row(struct cli_table *t, ...)
{
    if (t->nrows == t->cap) {
        t->cap *= 2;
        t->cells = realloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
        if (!t->cells)
            abort();
    }
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + i] = strdup(s ? s : "");
    }
    t->nrows++;
    va_end(ap);
}

void cli_table_print(struct cli_table *t)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t l = strlen(t->cells[r * t->ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c + 1 == t->ncols)
                printf("%s", s);
            else
                printf("%-*s  ", (int)w[c], s);
        }
        putchar('\n');
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(w);
    free(t);
}

/* ---- JSON ---------------------------------------------------------------------------- */

static int json_need_comma[32];
static int json_depth;

static void json_sep(const char *key)
{
    if (json_depth > 0 && json_need_comma[json_depth])
        putchar(',');
    if (json_depth > 0)
        json_need_comma[json_depth] = 1;
    if (key) {
        putchar('"');
        for (const unsigned char *p = (const unsigned char *)key; *p; p++)
            putchar(*p);
        fputs("\":", stdout);
    }
}

static void json_escape(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
    }
    putchar('"');
}

static void json_open(const char *key, char c)
{
    json_sep(key);
    putchar(c);
    if (json_depth < 31)
        json_depth++;
    json_need_comma[json_depth] = 0;
}

void json_begin_object(void) { json_open(NULL, '{'); }
void json_key_object(const char *key) { json_open(key, '{'); }
void json_begin_array(const char *key) { json_open(key, '['); }
void json_end_object(void) { putchar('}'); json_depth--; }
void json_end_array(void) { putchar(']'); json_depth--; }
void json_str(const char *key, const char *value) { json_sep(key); json_escape(value); }
void json_u64(const char *key, uint64_t v) { json_sep(key); printf("%llu", (unsigned long long)v); }
void json_i64(const char *key, int64_t v) { json_sep(key); printf("%lld", (long long)v); }
void json_double(const char *key, double v) { json_sep(key); printf("%.6g", v); }
void json_bool(const char *key, int v) { json_sep(key); fputs(v ? "true" : "false", stdout); }
void json_done(void)
{
    putchar('\n');
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
