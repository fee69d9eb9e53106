/* prom.c — the Prometheus text format writer of prom.h. */
#include "http/prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_out_init(struct prom_out *p, struct strbuf *sb)
{
    memset(p, 0, sizeof *p);
    p->sb = sb;
}

/* A metric name is [a-zA-Z_:][a-zA-Z0-9_:]*, a label name the same without
 * colons; any other character is written as '_'. */
static char prom_name_char(char c, size_t i, int colon_ok)
{
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (colon_ok && c == ':') || (i > 0 && c >= '0' && c <= '9');
    return ok ? c : '_';
}

static void prom_put_label_name(struct strbuf *sb, const char *name)
{
    const char *s = name && name[0] ? name : "_";
    for (size_t i = 0; s[i]; i++)
        strbuf_putc(sb, prom_name_char(s[i], i, 0));
}

/* Escapes a label value (quote too) or help text (backslash and newline
 * only, as the format defines). Other control characters (from a name a peer
 * sent, say) are written as the text \xNN, so that they never reach whoever
 * displays the metrics; invalid UTF-8 becomes U+FFFD. */
static void prom_put_escaped(struct strbuf *sb, const char *s, int is_label)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        if (*p == '\\') {
            strbuf_puts(sb, "\\\\");
            p++;
        } else if (*p == '\n') {
            strbuf_puts(sb, "\\n");
            p++;
        } else if (*p == '"' && is_label) {
            strbuf_puts(sb, "\\\"");
            p++;
        } else if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) {
            char hex[8];
            size_t n = *p == 0xc2 ? 2 : 1;
            snprintf(hex, sizeof hex, "\\\\x%02x", p[n - 1]);
            strbuf_puts(sb, hex);
            p += n;
        } else {
            size_t n = utf8_seq_len(p);
            if (n == 0) {
                strbuf_puts(sb, "\xef\xbf\xbd"); /* U+FFFD */
                p++;
            } else {
                strbuf_append(sb, p, n);
                p += n;
            }
        }
    }
}

static const char *prom_type_name(enum prom_type t)
{
    switch (t) {
    case PROM_COUNTER: return "counter";
    case PROM_GAUGE: return "gauge";
    case PROM_HISTOGRAM: return "histogram";
    default: return "untyped";
    }
}

void prom_family(struct prom_out *p, const char *name, enum prom_type type, const char *help)
{
    /* The name as written, kept for the samples. */
    const char *s = name && name[0] ? name : "_";
    size_t i = 0;
    for (; s[i] && i < sizeof p->family - 1; i++)
        p->family[i] = prom_name_char(s[i], i, 1);
    p->family[i] = 0;
    p->type = type;
    strbuf_printf(p->sb, "# HELP %s ", p->family);
    prom_put_escaped(p->sb, help, 0);
    strbuf_printf(p->sb, "\n# TYPE %s %s\n", p->family, prom_type_name(type));
}

const char *prom_format_double(double v, char *buf, size_t len)
{
    if (isnan(v))
        snprintf(buf, len, "NaN");
    else if (isinf(v))
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    else if (v == 0)
        snprintf(buf, len, "0"); /* never "-0" */
    else if (fabs(v) < 9007199254740992.0 && v == trunc(v))
        snprintf(buf, len, "%.0f", v);
    else
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    return buf;
}

/* NAME[SUFFIX]{labels[,le="LE"]} */
static void prom_put_series(struct prom_out *p, const char *suffix, const struct prom_label *labels,
                            size_t n, const char *le)
{
    strbuf_puts(p->sb, p->family);
    strbuf_puts(p->sb, suffix);
    if (n == 0 && !le)
        return;
    strbuf_putc(p->sb, '{');
    for (size_t i = 0; i < n; i++) {
        if (i)
            strbuf_putc(p->sb, ',');
        prom_put_label_name(p->sb, labels[i].name);
        strbuf_puts(p->sb, "=\"");
        prom_put_escaped(p->sb, labels[i].value, 1);
        strbuf_putc(p->sb, '"');
    }
    if (le)
        strbuf_printf(p->sb, "%sle=\"%s\"", n ? "," : "", le);
    strbuf_putc(p->sb, '}');
}

void prom_sample(struct prom_out *p, const struct prom_label *labels, size_t n, double v)
{
    if (!p->family[0])
        return;
    char num[40];
    prom_put_series(p, "", labels, n, NULL);
    strbuf_printf(p->sb, " %s\n", prom_format_double(v, num, sizeof num));
}

void prom_sample_u64(struct prom_out *p, const struct prom_label *labels, size_t n, uint64_t v)
{
    if (!p->family[0])
        return;
    prom_put_series(p, "", labels, n, NULL);
    strbuf_printf(p->sb, " %llu\n", (unsigned long long)v);
}

void prom_counter(struct prom_out *p, const char *name, const char *help, uint64_t v)
{
    prom_family(p, name, PROM_COUNTER, help);
    prom_sample_u64(p, PROM_NO_LABELS, v);
}

void prom_gauge(struct prom_out *p, const char *name, const char *help, double v)
{
    prom_family(p, name, PROM_GAUGE, help);
    prom_sample(p, PROM_NO_LABELS, v);
}

void prom_histogram_sample(struct prom_out *p, const struct prom_label *labels, size_t n,
                           const struct prom_histogram *h)
{
    if (!p->family[0])
        return;
    char le[40], num[40];
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        prom_put_series(p, "_bucket", labels, n, prom_format_double(h->bounds[i], le, sizeof le));
        strbuf_printf(p->sb, " %llu\n", (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    prom_put_series(p, "_bucket", labels, n, "+Inf");
    strbuf_printf(p->sb, " %llu\n", (unsigned long long)cum);
    prom_put_series(p, "_sum", labels, n, NULL);
    strbuf_printf(p->sb, " %s\n", prom_format_double(h->sum, num, sizeof num));
    prom_put_series(p, "_count", labels, n, NULL);
    strbuf_printf(p->sb, " %llu\n", (unsigned long long)cum);
}

void prom_histogram_observe(const double *bounds, size_t n_bounds, uint64_t *counts, double *sum,
                            double v)
{
    size_t i = 0;
    while (i < n_bounds && v > bounds[i])
        i++;
    counts[i]++;
    *sum += v;
}
