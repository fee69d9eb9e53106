/* grep.h — searching one log file: the work each node does for `idunno grep`.
 * Blocking: runs on a worker thread, never on the loop. */
#ifndef IDUNNO_LOGQ_GREP_H
#define IDUNNO_LOGQ_GREP_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

struct grep_query {
    const char *pattern;
    int ignore_case;
    int extended;   /* POSIX ERE; otherwise a fixed string */
    int count_only;
    size_t max_lines;
};

struct grep_matcher {
    struct grep_query q;
    regex_t re;
    int have_re;
    size_t plen;
};

struct grep_output {
    uint64_t count;   /* exact */
    char **lines;     /* at most q.max_lines, owned */
    size_t n_lines;
    int truncated;
};

/* Compiles the query. Returns 0 or ID_EINVAL (bad regex or empty pattern) with
 * the reason in errmsg. */
int grep_compile(struct grep_matcher *m, const struct grep_query *q, char *errmsg, size_t len);
void grep_matcher_free(struct grep_matcher *m);

/* Does the line (not NUL-terminated, without its newline) match? */
int grep_match(const struct grep_matcher *m, const char *line, size_t len);

/* Searches a whole file. Returns 0, or ID_ENOTFOUND / ID_EIO / ID_ENOMEM. */
int grep_file(const struct grep_matcher *m, const char *path, struct grep_output *out);
void grep_output_free(struct grep_output *out);

#endif
