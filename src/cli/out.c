/* out.c — the CLI's output: aligned tables for people, JSON for programs.
 *
 * The JSON is base/json_out.h's strict writer (every string escaped, invalid
 * UTF-8 as U+FFFD, non-finite numbers as null) behind the global calls of
 * cli.h, streamed to the output as it is written.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#include "base/array.h"
#include "base/json_out.h"
#include "base/names.h"
#include "base/strbuf.h"

static FILE *cli_out_stream;

static FILE *out(void)
{
    return cli_out_stream ? cli_out_stream : stdout;
}

void cli_out_set(FILE *f)
{
    cli_out_stream = f;
}

/* ---- tables ----------------------------------------------------------------------------- */

struct cli_table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major, owned */
};

/* A cell, escaped: names and messages come from the cluster, and a control
 * character in one must not reach the terminal (base/names.h). */
static char *xstrdup(const char *s)
{
    size_t cap = 4 * strlen(s ? s : "") + 1;
    char *d = malloc(cap);
    if (!d)
        abort(); /* a CLI out of memory has nothing better to do */
    return id_escape(s, d, cap);
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
    /* The cells are counted in rows: one element is a row of ncols pointers. */
    if (array_reserve(&t->cells, &t->cap, t->nrows, 1, t->ncols * sizeof *t->cells, 16) < 0)
        abort();
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

/* The writer of base/json_out.h; each call's output goes to the stream at once. */
static struct strbuf cli_json_buf = STRBUF_INIT;
static struct json_out cli_json = {.sb = &cli_json_buf};

static void json_flush(void)
{
    if (strbuf_failed(&cli_json_buf))
        abort(); /* a CLI out of memory has nothing better to do */
    fwrite(strbuf_str(&cli_json_buf), 1, cli_json_buf.len, out());
    strbuf_reset(&cli_json_buf);
}

void cli_json_begin_object(void)
{
    json_out_begin_object(&cli_json, NULL);
    json_flush();
}
void cli_json_key_object(const char *key)
{
    json_out_begin_object(&cli_json, key);
    json_flush();
}
void cli_json_begin_array(const char *key)
{
    json_out_begin_array(&cli_json, key);
    json_flush();
}
void cli_json_end_object(void)
{
    json_out_end(&cli_json);
    json_flush();
}
void cli_json_end_array(void)
{
    json_out_end(&cli_json);
    json_flush();
}
void cli_json_str(const char *key, const char *value)
{
    json_out_str(&cli_json, key, value);
    json_flush();
}
void cli_json_u64(const char *key, uint64_t v)
{
    json_out_u64(&cli_json, key, v);
    json_flush();
}
void cli_json_i64(const char *key, int64_t v)
{
    json_out_i64(&cli_json, key, v);
    json_flush();
}
void cli_json_double(const char *key, double v)
{
    json_out_double(&cli_json, key, v);
    json_flush();
}
void cli_json_bool(const char *key, int v)
{
    json_out_bool(&cli_json, key, v);
    json_flush();
}

void cli_json_raw(const char *key, const char *json)
{
    json_out_raw(&cli_json, key, json, strlen(json));
    json_flush();
}

/* One field of m as a member under its own name. */
static void json_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = (const char *)m + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        abort();
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: cli_json_str(f->name, *(char *const *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: cli_json_u64(f->name, *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: cli_json_u64(f->name, *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: cli_json_i64(f->name, *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: cli_json_i64(f->name, *(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT: cli_json_double(f->name, *(const float *)p); break;
    case PROTOBUF_C_TYPE_DOUBLE: cli_json_double(f->name, *(const double *)p); break;
    case PROTOBUF_C_TYPE_BOOL: cli_json_bool(f->name, *(const protobuf_c_boolean *)p); break;
    default: abort(); /* enums, bytes, messages: not plain members */
    }
}

void cli_json_fields(const ProtobufCMessage *m, const char *names)
{
    for (const char *p = names; *p;) {
        size_t n = strcspn(p, " ");
        char name[64];
        if (n >= sizeof name)
            abort();
        memcpy(name, p, n);
        name[n] = 0;
        p += n + (p[n] == ' ');
        if (n == 0)
            continue; /* two spaces in a row */
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
            m->descriptor, name);
        if (!f)
            abort();
        json_field(m, f);
    }
}

void cli_json_done(void)
{
    fputc('\n', out());
    json_out_init(&cli_json, &cli_json_buf);
}

const char *cli_fmt_ms(uint64_t ms, char *buf, size_t len)
{
    if (ms < 1000)
        snprintf(buf, len, "%llums", (unsigned long long)ms);
    else if (ms < 60000)
        snprintf(buf, len, "%.1fs", ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, len, "%llum%llus", (unsigned long long)(ms / 60000),
                 (unsigned long long)(ms / 1000 % 60));
    else
        snprintf(buf, len, "%lluh%llum", (unsigned long long)(ms / 3600000),
                 (unsigned long long)(ms / 60000 % 60));
    return buf;
}
