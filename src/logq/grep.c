/* grep.c — fixed-string and regex search of a log file (see grep.h).
 *
 * The file is read in 1 MiB blocks of whole lines. Each block is searched as
 * one string: a fixed pattern with memmem (or an ASCII case-folding scan for
 * -i), a regex with one regexec per match using REG_NEWLINE so that it cannot
 * span lines. Only around a hit are line boundaries looked up. Log lines are
 * sparse hits in long files, so this does far less work than a call per line.
 */
#include "logq/grep.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define GREP_BLOCK (1u << 20)

static unsigned char ascii_lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c; }

int grep_compile(struct grep_matcher *m, const struct grep_query *q, char *errmsg, size_t len)
{
    memset(m, 0, sizeof *m);
    if (!q->pattern || !q->pattern[0]) {
        snprintf(errmsg, len, "empty pattern: give the text to search for");
        return ID_EINVAL;
    }
    if (strchr(q->pattern, '\n')) {
        snprintf(errmsg, len, "the pattern may not contain a newline: log lines never do");
        return ID_EINVAL;
    }
    m->q = *q;
    m->q.pattern = NULL; /* the caller's; the needle or the regex is kept instead */
    if (q->extended) {
        /* No REG_NOSUB: the block search needs the match position. */
        int flags = REG_EXTENDED | REG_NEWLINE | (q->ignore_case ? REG_ICASE : 0);
        int rc = regcomp(&m->re, q->pattern, flags);
        if (rc != 0) {
            char buf[200];
            regerror(rc, &m->re, buf, sizeof buf);
            regfree(&m->re);
            snprintf(errmsg, len, "bad regular expression: %s", buf);
            return ID_EINVAL;
        }
        m->have_re = 1;
        return 0;
    }
    m->plen = strlen(q->pattern);
    m->needle = malloc(m->plen + 1);
    if (!m->needle) {
        snprintf(errmsg, len, "out of memory");
        return ID_ENOMEM;
    }
    for (size_t i = 0; i <= m->plen; i++) {
        unsigned char c = (unsigned char)q->pattern[i];
        m->needle[i] = (char)(q->ignore_case ? ascii_lower(c) : c);
    }
    return 0;
}

void grep_matcher_free(struct grep_matcher *m)
{
    if (m->have_re)
        regfree(&m->re);
    m->have_re = 0;
    free(m->needle);
    m->needle = NULL;
}

/* First occurrence of the lower-case needle in hay, ignoring ASCII case. */
static const char *casemem(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0 || hlen < nlen)
        return NULL;
    const unsigned char *h = (const unsigned char *)hay;
    const unsigned char *n = (const unsigned char *)needle;
    unsigned char first = n[0];
    unsigned char first_up = first >= 'a' && first <= 'z' ? (unsigned char)(first - 32) : first;
    size_t last = hlen - nlen;
    for (size_t i = 0; i <= last; i++) {
        if (h[i] != first && h[i] != first_up)
            continue;
        size_t k = 1;
        while (k < nlen && ascii_lower(h[i + k]) == n[k])
            k++;
        if (k == nlen)
            return hay + i;
    }
    return NULL;
}

/* Where the next match starts in buf[from..len), or NULL. */
static const char *find_next(const struct grep_matcher *m, const char *buf, size_t from, size_t len)
{
    if (m->have_re) {
        regmatch_t pm = {.rm_so = (regoff_t)from, .rm_eo = (regoff_t)len};
        /* REG_STARTEND: the range is explicit, NUL bytes are ordinary. Lines
         * start where we resume, so ^ applies there (REG_NEWLINE). */
        if (regexec(&m->re, buf, 1, &pm, REG_STARTEND) != 0)
            return NULL;
        return buf + pm.rm_so;
    }
    if (!m->q.ignore_case)
        return memmem(buf + from, len - from, m->needle, m->plen);
    return casemem(buf + from, len - from, m->needle, m->plen);
}

int grep_block(const struct grep_matcher *m, const char *buf, size_t len, grep_line_fn fn, void *ud)
{
    size_t pos = 0;
    while (pos <= len) {
        const char *hit = find_next(m, buf, pos, len);
        if (!hit)
            return 0;
        size_t at = (size_t)(hit - buf);
        /* The hit's line: back to the previous newline, on to the next. */
        const char *start = at > pos ? memrchr(buf + pos, '\n', at - pos) : NULL;
        size_t ls = start ? (size_t)(start - buf) + 1 : pos;
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t le = nl ? (size_t)(nl - buf) : len;
        if (at == len && ls == len) /* an empty match after the last newline */
            return 0;
        int rc = fn(ud, buf + ls, le - ls);
        if (rc)
            return rc;
        pos = le + 1;
        if (!nl)
            return 0;
    }
    return 0;
}

int grep_match(const struct grep_matcher *m, const char *line, size_t len)
{
    if (m->have_re) {
        regmatch_t pm = {.rm_so = 0, .rm_eo = (regoff_t)len};
        return regexec(&m->re, line, 1, &pm, REG_STARTEND) == 0;
    }
    if (!m->q.ignore_case)
        return memmem(line, len, m->needle, m->plen) != NULL;
    return casemem(line, len, m->needle, m->plen) != NULL;
}

struct collect {
    const struct grep_matcher *m;
    struct grep_output *out;
    size_t cap;
};

static int collect_line(void *ud, const char *line, size_t len)
{
    struct collect *c = ud;
    struct grep_output *out = c->out;
    out->count++;
    if (c->m->q.count_only)
        return 0;
    if (out->n_lines >= c->m->q.max_lines ||
        (c->m->q.max_bytes && out->bytes + len + GREP_LINE_OVERHEAD > c->m->q.max_bytes)) {
        out->truncated = 1;
        return 0;
    }
    if (out->n_lines == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        char **nl = realloc(out->lines, cap * sizeof *nl);
        if (!nl)
            return ID_ENOMEM;
        out->lines = nl;
        c->cap = cap;
    }
    char *copy = strndup(line, len);
    if (!copy)
        return ID_ENOMEM;
    /* strndup stops at a NUL inside the line: count what was kept. */
    out->lines[out->n_lines++] = copy;
    out->bytes += strlen(copy) + GREP_LINE_OVERHEAD;
    return 0;
}

int grep_file(const struct grep_matcher *m, const char *path, struct grep_output *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? ID_ENOTFOUND : ID_EIO;
    size_t cap = GREP_BLOCK, have = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return ID_ENOMEM;
    }
    struct collect c = {.m = m, .out = out};
    int rc = 0;
    for (;;) {
        size_t n = fread(buf + have, 1, cap - have, f);
        have += n;
        int eof = n == 0;
        /* Search up to the last newline; keep the partial line for next time
         * (at EOF the rest is the last line, newline or not). */
        size_t upto = have;
        if (!eof) {
            char *last_nl = memrchr(buf, '\n', have);
            upto = last_nl ? (size_t)(last_nl - buf) + 1 : 0;
        }
        if (upto > 0 && (rc = grep_block(m, buf, upto, collect_line, &c)) < 0)
            goto done;
        if (eof)
            break;
        memmove(buf, buf + upto, have - upto);
        have -= upto;
        if (have == cap) { /* one line longer than the buffer: grow */
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = ID_ENOMEM;
                goto done;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(f))
        rc = ID_EIO;
done:
    free(buf);
    fclose(f);
    if (rc < 0)
        grep_output_free(out);
    return rc;
}

void grep_output_free(struct grep_output *out)
{
    for (size_t i = 0; i < out->n_lines; i++)
        free(out->lines[i]);
    free(out->lines);
    memset(out, 0, sizeof *out);
}
