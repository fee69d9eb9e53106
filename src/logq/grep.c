/* grep.c — fixed-string and regex search of a log file (see grep.h).
 *
 * The file is searched in place through a read-only mapping, in windows of
 * whole lines. Each window is searched as one string: a fixed pattern with
 * strfind (AVX2 where the CPU has it, ASCII case folding for -i), a regex with
 * one regexec per match using REG_NEWLINE so that it cannot span lines. Only
 * around a hit are line boundaries looked up. Log lines are sparse hits in
 * long files, so this does far less work than a call per line.
 *
 * Why a mapping kept between searches (struct grep_map): scanning 50 MB of
 * page cache takes ~4 ms, but read() copying it takes longer than the scan,
 * and so does mapping it afresh (page-table set-up and tear-down). A node maps
 * its log once, with room to grow, and later searches only scan.
 */
#include "logq/grep.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/array.h"
#include "base/err.h"
#include "logq/strfind.h"

/* Bounds on what a client may ask every node to compile (see ere_size). */
#define GREP_MAX_PATTERN 4096
#define GREP_MAX_ERE_COPIES 256
#define GREP_MAX_GROUP_DEPTH 64
/* grep_block gets at most this much at once (then up to the next newline),
 * and a search asked to stop (its request timed out, the node stopping) stops
 * between windows. A fixed string scans gigabytes a second, so 4 MiB is
 * soon done; a regex can cost milliseconds a line, so it gets 64 KiB. Both
 * are large enough that the calls between windows cost nothing measurable. */
#define GREP_WINDOW (4u << 20)
#define GREP_RE_WINDOW (64u << 10)
/* How far past the file's end a new mapping reaches: the log grows into it. */
#define GREP_MAP_ROOM ((size_t)256 << 20)

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* glibc's regcomp spells out repetitions (x+ becomes x x*, x{3,5} five copies
 * of x), so nested repetitions multiply, and its compile time grows faster
 * than the result's size where the repeated part can match empty: measured
 * here, "(x?|y*)+++++++++" takes 10 s and "x++++...+" (30 of them) gigabytes,
 * on every node, from one client's request. Two rules keep a pattern cheap:
 * no two repetition operators in a row (POSIX leaves their meaning undefined,
 * so no sane pattern needs them), and at most GREP_MAX_ERE_COPIES atoms
 * created by repetition, counting nested repetitions multiplied (the worst
 * accepted shape, six nested "(x?|y*)+", compiles in ~0.1 s). Alternatives
 * are added, not maxed: the estimate errs high. */
static int ere_check(const char *p, char *errmsg, size_t len)
{
    double stack[GREP_MAX_GROUP_DEPTH]; /* the size of each open group so far */
    int depth = 0, after_repeat = 0;
    double total = 0, last = 0, atoms = 0; /* this group's size, its last atom's; atoms written */
    for (; *p; p++) {
        double factor = -1;
        switch (*p) {
        case '\\':
            /* A back-reference makes regexec backtrack: its time grows
             * exponentially with the line, and four such searches once held
             * every worker of a node for a minute. */
            if (p[1] >= '1' && p[1] <= '9') {
                snprintf(errmsg, len,
                         "back-references (\\%c) are not supported in grep patterns: they can take "
                         "exponential time; match the text itself instead",
                         p[1]);
                return ID_EINVAL;
            }
            if (p[1])
                p++;
            break;
        case '[': {
            const char *q = p + 1;
            if (*q == '^')
                q++;
            if (*q == ']')
                q++;
            while (*q && *q != ']') {
                if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
                    const char *end = strchr(q + 2, q[1]);
                    q = end && end[1] == ']' ? end + 2 : q + 1;
                } else {
                    q++;
                }
            }
            p = *q ? q : q - 1;
            break;
        }
        case '(':
            if (depth == GREP_MAX_GROUP_DEPTH) {
                snprintf(
                    errmsg, len,
                    "regular expression too deeply nested: at most %d groups inside each other",
                    GREP_MAX_GROUP_DEPTH);
                return ID_EINVAL;
            }
            stack[depth++] = total;
            total = last = 0;
            after_repeat = 0;
            continue;
        case ')':
            if (depth == 0) /* a literal ')' in ERE */
                break;
            last = total + 1;
            total = stack[--depth] + last;
            after_repeat = 0;
            continue;
        case '*':
        case '?': factor = 1; break;
        case '+': factor = 2; break;
        case '{': {
            char *end;
            unsigned long lo = strtoul(p + 1, &end, 10), hi = lo;
            if (end == p + 1 && *end != ',')
                break; /* not an interval: a literal '{' */
            if (*end == ',') {
                char *end2;
                hi = strtoul(end + 1, &end2, 10);
                if (end2 == end + 1)
                    hi = lo + 1; /* {m,}: m copies and a star */
                end = end2;
            }
            if (*end != '}')
                break;
            factor = (double)(hi > lo ? hi : lo);
            if (factor < 1)
                factor = 1;
            p = end;
            break;
        }
        default: break;
        }
        if (factor < 0) { /* an atom */
            last = 1;
            total += 1;
            atoms += 1;
            after_repeat = 0;
            continue;
        }
        if (after_repeat) {
            snprintf(errmsg, len,
                     "two repetition operators in a row (like a++ or a*{2}): their meaning is "
                     "undefined in POSIX regular expressions; use one");
            return ID_EINVAL;
        }
        after_repeat = 1;
        total += last * factor - last;
        last *= factor;
    }
    while (depth > 0) /* unbalanced: regcomp will say so */
        total += stack[--depth];
    if (total - atoms > GREP_MAX_ERE_COPIES) {
        snprintf(errmsg, len,
                 "regular expression too costly: its repetitions would make more than %d copies "
                 "(nested repetitions multiply); simplify it",
                 GREP_MAX_ERE_COPIES);
        return ID_EINVAL;
    }
    return 0;
}

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
    if (strlen(q->pattern) > GREP_MAX_PATTERN) {
        snprintf(errmsg, len, "pattern too long: at most %d bytes", GREP_MAX_PATTERN);
        return ID_EINVAL;
    }
    if (q->extended && ere_check(q->pattern, errmsg, len) < 0)
        return ID_EINVAL;
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
    return strfind(buf + from, len - from, m->needle, m->plen, m->q.ignore_case);
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
    return strfind(line, len, m->needle, m->plen, m->q.ignore_case) != NULL;
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
    if (ARRAY_RESERVE(out->lines, c->cap, out->n_lines, 1, 64) < 0)
        return ID_ENOMEM;
    char *copy = strndup(line, len);
    if (!copy)
        return ID_ENOMEM;
    /* strndup stops at a NUL inside the line: count what was kept. */
    out->lines[out->n_lines++] = copy;
    out->bytes += strlen(copy) + GREP_LINE_OVERHEAD;
    return 0;
}

/* ---- searching a file in place ------------------------------------------------- */

/* A search touches the mapping only below the size it read at its start. If
 * the file is truncated under it (an operator's copy-and-truncate log
 * rotation, say), those pages are gone and reading them raises SIGBUS: the
 * handler turns that into an error of this search instead of a dead node. */
static __thread sigjmp_buf *bus_jump;
static struct sigaction bus_previous;
static pthread_mutex_t bus_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigbus(int sig, siginfo_t *info, void *uctx)
{
    (void)info;
    (void)uctx;
    if (bus_jump)
        siglongjmp(*bus_jump, 1);
    /* Not ours: put back what was there before and let the fault happen again. */
    sigaction(sig, &bus_previous, NULL);
}

/* Checked at every search rather than once: a handler set later by someone
 * else (a test harness, say) would otherwise silently disarm the guard. */
static void arm_sigbus(void)
{
    pthread_mutex_lock(&bus_lock);
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) == 0 &&
        !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &bus_previous);
    }
    pthread_mutex_unlock(&bus_lock);
}

int grep_mapped_block(const struct grep_matcher *m, const char *buf, size_t len, grep_line_fn fn,
                      void *ud)
{
    arm_sigbus();
    sigjmp_buf jump;
    if (sigsetjmp(jump, 1)) {
        bus_jump = NULL;
        return ID_EIO;
    }
    bus_jump = &jump;
    /* Windows of whole lines: regexec's offsets are ints. */
    size_t pos = 0, window = m->have_re ? GREP_RE_WINDOW : GREP_WINDOW;
    int rc = 0;
    while (pos < len && rc == 0) {
        size_t end = len - pos > window ? pos + window : len;
        if (end < len) {
            const char *nl = memchr(buf + end - 1, '\n', len - (end - 1));
            end = nl ? (size_t)(nl - buf) + 1 : len;
        }
        rc = grep_block(m, buf + pos, end - pos, fn, ud);
        pos = end;
        if (rc == 0 && pos < len && m->q.stop && m->q.stop(m->q.stop_ud))
            rc = ID_ECANCELED;
    }
    bus_jump = NULL;
    return rc;
}

struct grep_map {
    char *path;
    pthread_rwlock_t lock; /* searches read-lock; replacing the mapping write-locks */
    int fd;                /* the mapped file, or -1 */
    const char *base;
    size_t cap; /* bytes mapped: the size when mapped plus room to grow */
};

int grep_map_open(struct grep_map **out, const char *path)
{
    struct grep_map *gm = calloc(1, sizeof *gm);
    if (!gm || !(gm->path = strdup(path))) {
        free(gm);
        return ID_ENOMEM;
    }
    if (pthread_rwlock_init(&gm->lock, NULL) != 0) {
        free(gm->path);
        free(gm);
        return ID_ENOMEM;
    }
    gm->fd = -1;
    *out = gm;
    return 0;
}

static void unmap(struct grep_map *gm)
{
    if (gm->base)
        munmap((void *)gm->base, gm->cap);
    if (gm->fd >= 0)
        close(gm->fd);
    gm->base = NULL;
    gm->cap = 0;
    gm->fd = -1;
}

void grep_map_close(struct grep_map *gm)
{
    if (!gm)
        return;
    unmap(gm);
    pthread_rwlock_destroy(&gm->lock);
    free(gm->path);
    free(gm);
}

static int open_errno(int e)
{
    return e == ENOENT || e == ENOTDIR ? ID_ENOTFOUND : ID_EIO;
}

/* Does the mapping hold the file now at the path, at its current size? Sets
 * *size to that size when it does. Caller holds the lock. */
static int mapping_current(const struct grep_map *gm, const struct stat *at_path, size_t *size)
{
    struct stat now;
    if (gm->fd < 0 || fstat(gm->fd, &now) != 0)
        return 0;
    if (now.st_dev != at_path->st_dev || now.st_ino != at_path->st_ino ||
        (size_t)now.st_size > gm->cap)
        return 0;
    *size = (size_t)now.st_size;
    return 1;
}

/* Maps the file now at the path afresh, with room to grow. Caller holds the
 * write lock. */
static int remap(struct grep_map *gm)
{
    int fd = open(gm->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return open_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ID_EIO;
    }
    /* Pages past the end of the file read back once the file has grown into
     * them, so the room saves a remap per search while the log grows. */
    size_t size = (size_t)st.st_size;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t cap = size + (size > GREP_MAP_ROOM ? size : GREP_MAP_ROOM);
    cap = (cap + page - 1) / page * page;
    void *base = mmap(NULL, cap, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        return e == ENOMEM ? ID_ENOMEM : ID_EIO;
    }
    madvise(base, cap, MADV_SEQUENTIAL);
    unmap(gm);
    gm->fd = fd;
    gm->base = base;
    gm->cap = cap;
    return 0;
}

int grep_map_search(struct grep_map *gm, const struct grep_matcher *m, struct grep_output *out)
{
    memset(out, 0, sizeof *out);
    struct collect c = {.m = m, .out = out};
    /* A log replaced or grown past the room between our stat and our lock
     * makes us map again; a file that keeps changing that fast is an error. */
    for (int attempt = 0; attempt < 4; attempt++) {
        struct stat at_path;
        if (stat(gm->path, &at_path) != 0)
            return open_errno(errno);
        size_t size;
        pthread_rwlock_rdlock(&gm->lock);
        if (mapping_current(gm, &at_path, &size)) {
            int rc = grep_mapped_block(m, gm->base, size, collect_line, &c);
            pthread_rwlock_unlock(&gm->lock);
            if (rc < 0)
                grep_output_free(out);
            return rc;
        }
        pthread_rwlock_unlock(&gm->lock);
        pthread_rwlock_wrlock(&gm->lock);
        int rc = mapping_current(gm, &at_path, &size) ? 0 : remap(gm);
        pthread_rwlock_unlock(&gm->lock);
        if (rc < 0)
            return rc;
    }
    return ID_EIO;
}

int grep_file(const struct grep_matcher *m, const char *path, struct grep_output *out)
{
    struct grep_map *gm;
    int rc = grep_map_open(&gm, path);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    rc = grep_map_search(gm, m, out);
    grep_map_close(gm);
    return rc;
}

void grep_output_free(struct grep_output *out)
{
    for (size_t i = 0; i < out->n_lines; i++)
        free(out->lines[i]);
    free(out->lines);
    memset(out, 0, sizeof *out);
}
