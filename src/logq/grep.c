/* grep.c — fixed-string and regex search of a log file (see grep.h). */
#include "logq/grep.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int grep_compile(struct grep_matcher *m, const struct grep_query *q, char *errmsg, size_t len)
{
    memset(m, 0, sizeof *m);
    if (!q->pattern || !q->pattern[0]) {
        snprintf(errmsg, len, "empty pattern");
        return ID_EINVAL;
    }
    m->q = *q;
    m->plen = strlen(q->pattern);
    if (q->extended || q->ignore_case) {
        /* -i on a fixed string goes through regcomp too, with the pattern's
         * special characters escaped, so that case folding follows the locale's
         * rules in one place. */
        char *pat = (char *)q->pattern;
        char *escaped = NULL;
        if (!q->extended) {
            escaped = malloc(m->plen * 2 + 1);
            if (!escaped)
                return ID_ENOMEM;
            char *o = escaped;
            for (const char *p = q->pattern; *p; p++) {
                if (strchr("\\.[]()*+?{}|^$", *p))
                    *o++ = '\\';
                *o++ = *p;
            }
            *o = 0;
            pat = escaped;
        }
        int flags = REG_EXTENDED | REG_NOSUB | (q->ignore_case ? REG_ICASE : 0);
        int rc = regcomp(&m->re, pat, flags);
        free(escaped);
        if (rc != 0) {
            char buf[200];
            regerror(rc, &m->re, buf, sizeof buf);
            snprintf(errmsg, len, "bad regular expression: %s", buf);
            return ID_EINVAL;
        }
        m->have_re = 1;
    }
    return 0;
}

void grep_matcher_free(struct grep_matcher *m)
{
    if (m->have_re)
        regfree(&m->re);
    m->have_re = 0;
}

int grep_match(const struct grep_matcher *m, const char *line, size_t len)
{
    if (!m->have_re)
        return memmem(line, len, m->q.pattern, m->plen) != NULL;
    /* regexec needs a C string; log lines are short, so copy on the stack
     * unless one is unusually long. */
    char stackbuf[4096];
    char *s = len < sizeof stackbuf ? stackbuf : malloc(len + 1);
    if (!s)
        return 0;
    memcpy(s, line, len);
    s[len] = 0;
    int hit = regexec(&m->re, s, 0, NULL, 0) == 0;
    if (s != stackbuf)
        free(s);
    return hit;
}

static int add_line(struct grep_output *out, size_t max, const char *line, size_t len)
{
    if (out->n_lines >= max) {
        out->truncated = 1;
        return 0;
    }
    char **nl = realloc(out->lines, (out->n_lines + 1) * sizeof *nl);
    if (!nl)
        return ID_ENOMEM;
    out->lines = nl;
    char *copy = strndup(line, len);
    if (!copy)
        return ID_ENOMEM;
    out->lines[out->n_lines++] = copy;
    return 0;
}

int grep_file(const struct grep_matcher *m, const char *path, struct grep_output *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? ID_ENOTFOUND : ID_EIO;
    /* Read in large blocks and split lines in place: much faster than getline
     * on tens of megabytes. */
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return ID_ENOMEM;
    }
    int rc = 0;
    for (;;) {
        size_t n = fread(buf + have, 1, cap - have, f);
        have += n;
        int eof = n == 0;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(buf + start, '\n', have - start);
            if (!nl) {
                if (!eof)
                    break;
                if (start == have)
                    break;
                nl = buf + have; /* last line without a newline */
            }
            size_t len = (size_t)(nl - (buf + start));
            if (grep_match(m, buf + start, len)) {
                out->count++;
                if (!m->q.count_only && (rc = add_line(out, m->q.max_lines, buf + start, len)) < 0)
                    goto done;
            }
            start = (size_t)(nl - buf) + (nl < buf + have ? 1 : 0);
            if (nl == buf + have)
                break;
        }
        if (eof)
            break;
        memmove(buf, buf + start, have - start);
        have -= start;
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
