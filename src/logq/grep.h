/* grep.h — searching one log file: the work each node does for `idunno grep`.
 * Pure and blocking: no loop, no sockets; runs on a worker thread in the node
 * and directly in unit tests. */
#ifndef IDUNNO_LOGQ_GREP_H
#define IDUNNO_LOGQ_GREP_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

/* What one kept line costs on the wire beyond its text (protobuf tag and
 * length, rounded up): line budgets count in these units. */
#define GREP_LINE_OVERHEAD 4

struct grep_query {
    const char *pattern;
    int ignore_case; /* ASCII case folding (the daemon runs in the C locale) */
    int extended;    /* POSIX ERE; otherwise a fixed string */
    int count_only;
    size_t max_lines; /* keep at most this many matching lines ... */
    size_t max_bytes; /* ... taking at most this many bytes, GREP_LINE_OVERHEAD
                         included per line (0: no limit) */
    /* Asked between windows of the file (see GREP_WINDOW); non-zero stops
     * the search with ID_ECANCELED. NULL: never stops. Runs on the searching
     * thread. */
    int (*stop)(void *ud);
    void *stop_ud;
};

struct grep_matcher {
    struct grep_query q;
    regex_t re;
    int have_re;
    size_t plen;
    char *needle; /* fixed string: the pattern (lower case with -i), owned */
};

struct grep_output {
    uint64_t count; /* exact, whatever was kept */
    char **lines;   /* at most max_lines / max_bytes of them, owned */
    size_t n_lines;
    size_t bytes;  /* the kept lines' lengths + GREP_LINE_OVERHEAD each */
    int truncated; /* some matching lines were not kept */
};

/* Compiles the query (the pattern is copied). Returns 0, ID_EINVAL (empty
 * pattern, a newline in it, a bad regex, or one too costly to run: see
 * ere_check in grep.c; back-references are refused) with the reason in
 * errmsg, or ID_ENOMEM. */
int grep_compile(struct grep_matcher *m, const struct grep_query *q, char *errmsg, size_t len);
void grep_matcher_free(struct grep_matcher *m);

/* Does the line (not NUL-terminated, without its newline, may hold NULs) match? */
int grep_match(const struct grep_matcher *m, const char *line, size_t len);

/* Calls fn for every matching line of buf[0..len), which holds whole lines
 * separated by '\n' (the last one may lack it). Searches the block as a whole,
 * which is far faster than line by line when matches are sparse. Stops early
 * and returns fn's value if fn returns non-zero; returns 0 otherwise. */
typedef int (*grep_line_fn)(void *ud, const char *line, size_t len);
int grep_block(const struct grep_matcher *m, const char *buf, size_t len, grep_line_fn fn,
               void *ud);

/* grep_block over a mapped buffer of any size (in windows of whole lines),
 * returning ID_EIO instead of dying should the mapped file shrink under it
 * (SIGBUS), and ID_ECANCELED when the query's stop callback says so between
 * windows. */
int grep_mapped_block(const struct grep_matcher *m, const char *buf, size_t len, grep_line_fn fn,
                      void *ud);

/* A file kept mapped between searches: a node's own log, searched on worker
 * threads, several at once. The mapping follows the file at the path: it is
 * extended as the file grows and redone if the file is replaced. Pages of the
 * mapping that were read count in the node's RSS (as file pages the kernel
 * may reclaim). */
struct grep_map;
int grep_map_open(struct grep_map **out, const char *path); /* maps nothing yet */
/* Searches the whole file as it is now. Returns 0, or ID_ENOTFOUND / ID_EIO /
 * ID_ENOMEM / ID_ECANCELED (then *out holds nothing). Thread-safe. */
int grep_map_search(struct grep_map *gm, const struct grep_matcher *m, struct grep_output *out);
void grep_map_close(struct grep_map *gm);

/* Searches a whole file once (a grep_map opened and closed). Same returns. */
int grep_file(const struct grep_matcher *m, const char *path, struct grep_output *out);
void grep_output_free(struct grep_output *out);

#endif
