/* test_logq.c — distributed grep: the matcher (fixed, -i, -E), block search
 * against a line-by-line reference on seeded random logs, file search with its
 * bounds, the fast fixed-string kernel against a naive search, the mapped log
 * following its file (growth, truncation, replacement, SIGBUS, concurrent
 * searches), the merge of per-node answers, and one fan-out over loopback with a
 * dead peer and a silent one. Ports: IDUNNO_TEST_PORT_BASE + 20..29. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/err.h"
#include "idunno.pb-c.h"
#include "logq/grep.h"
#include "logq/logq.h"
#include "logq/merge.h"
#include "logq/strfind.h"
#include "net/net.h"

static struct grep_matcher compile(const char *pattern, int icase, int ere)
{
    struct grep_query q = {
        .pattern = pattern, .ignore_case = icase, .extended = ere, .max_lines = 1000};
    struct grep_matcher m;
    char err[256];
    if (grep_compile(&m, &q, err, sizeof err) != 0)
        fail_msg("compile '%s': %s", pattern, err);
    return m;
}

static int matches(const char *pattern, int icase, int ere, const char *line)
{
    struct grep_matcher m = compile(pattern, icase, ere);
    int hit = grep_match(&m, line, strlen(line));
    grep_matcher_free(&m);
    return hit;
}

static void test_match_modes(void **state)
{
    (void)state;
    const char *line = "2026-11-24T12:00:00.123Z node3 INFO swim: member node7#17 failed (a.b)";
    assert_true(matches("failed", 0, 0, line));
    assert_false(matches("FAILED", 0, 0, line));
    assert_true(matches("FAILED", 1, 0, line));
    assert_true(matches("NoDe7#", 1, 0, line));
    /* fixed strings are literal: regex characters mean themselves */
    assert_true(matches("(a.b)", 0, 0, line));
    assert_false(matches("a.c", 0, 0, line));
    assert_false(matches("node.*failed", 0, 0, line));
    /* -E */
    assert_true(matches("node[0-9]+#[0-9]+ failed", 0, 1, line));
    assert_true(matches("^2026-", 0, 1, line));
    assert_false(matches("^node", 0, 1, line));
    assert_true(matches("\\(a\\.b\\)$", 0, 1, line));
    assert_true(matches("INFO|ERROR", 0, 1, line));
    assert_true(matches("swim: MEMBER", 1, 1, line));
    assert_false(matches("swim: MEMBER", 0, 1, line));
    /* a NUL inside a line does not end it */
    const char with_nul[] = "abc\0def";
    struct grep_matcher m = compile("def", 0, 0);
    assert_true(grep_match(&m, with_nul, sizeof with_nul - 1));
    grep_matcher_free(&m);
    m = compile("de+f$", 0, 1); /* (POSIX '.' never matches a NUL itself) */
    assert_true(grep_match(&m, with_nul, sizeof with_nul - 1));
    grep_matcher_free(&m);
}

static void test_compile_rejects(void **state)
{
    (void)state;
    struct grep_matcher m;
    char err[256];
    struct grep_query q = {.pattern = "", .max_lines = 1};
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "empty"));
    q.pattern = "a\nb";
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "newline"));
    q.pattern = "needle-[";
    q.extended = 1;
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "regular expression"));
    q.extended = 0; /* the same text is a fine fixed string */
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
    grep_matcher_free(&m);

    /* Patterns that would take every node seconds or gigabytes to compile. */
    q.extended = 1;
    static const char *const costly[] = {
        "x++++++++++++++++++++++++++++++", "(x?|y*)+++++++++", "a*{2}", "a?*", "((x?|y*){30}){30}",
        "(((((((x?|y*)+)+)+)+)+)+)+",      "x{1000}",
    };
    for (size_t i = 0; i < sizeof costly / sizeof costly[0]; i++) {
        q.pattern = costly[i];
        if (grep_compile(&m, &q, err, sizeof err) != ID_EINVAL)
            fail_msg("'%s' was accepted", costly[i]);
        assert_true(strstr(err, "in a row") || strstr(err, "too costly"));
    }
    char deep[200] = "";
    for (int i = 0; i < 70; i++)
        strcat(deep, "(");
    strcat(deep, "a");
    for (int i = 0; i < 70; i++)
        strcat(deep, ")");
    q.pattern = deep;
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "nested"));
    /* Back-references backtrack exponentially: refused with their name. */
    static const char *const backrefs[] = {"(a)\\1", "(x*)(y*)\\2\\1", "((a|b)+)\\1\\1\\1\\1",
                                           "(.)\\9"};
    for (size_t i = 0; i < sizeof backrefs / sizeof backrefs[0]; i++) {
        q.pattern = backrefs[i];
        if (grep_compile(&m, &q, err, sizeof err) != ID_EINVAL)
            fail_msg("'%s' was accepted", backrefs[i]);
        assert_non_null(strstr(err, "back-reference"));
    }
    /* Ordinary log patterns stay accepted, brackets and escapes included. */
    static const char *const fine[] = {
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "(error|warn|fail)+ in [a-z_]+",
        "member node[0-9]+#[0-9]+ .* is (suspect|failed)",
        "[]+*?{]+x",
        "a\\+\\+\\+\\+",
        "x{2}y{3}z*",
        "[[:digit:]]+ ms",
        "^2026-1[12]-[0-3][0-9]T",
        "[\\1]x",
        "a\\\\1",
        "\\0",
        "x\\.1",
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        q.pattern = fine[i];
        if (grep_compile(&m, &q, err, sizeof err) != 0)
            fail_msg("'%s' was rejected: %s", fine[i], err);
        grep_matcher_free(&m);
    }
    char longp[5000];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    q.pattern = longp;
    q.extended = 0;
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "too long"));
}

struct lines_seen {
    size_t n;
    char got[64][64];
};

static int remember_line(void *ud, const char *line, size_t len)
{
    struct lines_seen *s = ud;
    if (s->n < 64)
        snprintf(s->got[s->n], sizeof s->got[0], "%.*s", (int)len, line);
    s->n++;
    return 0;
}

static void test_block_edges(void **state)
{
    (void)state;
    const char buf[] = "alpha one\nbeta two\n\ngamma alpha\nlast alpha"; /* no final newline */
    struct lines_seen s = {0};
    struct grep_matcher m = compile("alpha", 0, 0);
    assert_int_equal(grep_block(&m, buf, sizeof buf - 1, remember_line, &s), 0);
    grep_matcher_free(&m);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.got[0], "alpha one");
    assert_string_equal(s.got[1], "gamma alpha");
    assert_string_equal(s.got[2], "last alpha");

    /* a pattern matching the empty string matches every line, the empty one too */
    memset(&s, 0, sizeof s);
    m = compile("x*", 0, 1);
    grep_block(&m, buf, sizeof buf - 1, remember_line, &s);
    grep_matcher_free(&m);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.got[2], "");

    /* ^ anchors at every line start, $ at every line end; nothing spans lines */
    memset(&s, 0, sizeof s);
    m = compile("^(beta|gamma)", 0, 1);
    grep_block(&m, buf, sizeof buf - 1, remember_line, &s);
    grep_matcher_free(&m);
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof s);
    m = compile("one$", 0, 1);
    grep_block(&m, buf, sizeof buf - 1, remember_line, &s);
    grep_matcher_free(&m);
    assert_int_equal(s.n, 1);
    memset(&s, 0, sizeof s);
    m = compile("one.*beta", 0, 1);
    grep_block(&m, buf, sizeof buf - 1, remember_line, &s);
    grep_matcher_free(&m);
    assert_int_equal(s.n, 0);
    /* two hits on one line count the line once */
    memset(&s, 0, sizeof s);
    m = compile("a", 1, 0);
    grep_block(&m, "aAa\nbbb\n", 8, remember_line, &s);
    grep_matcher_free(&m);
    assert_int_equal(s.n, 1);
}

static int count_line(void *ud, const char *line, size_t len)
{
    (void)line;
    (void)len;
    (*(size_t *)ud)++;
    return 0;
}

/* Seeded random logs over a small alphabet, random patterns: the block search
 * finds exactly the lines a line-by-line check finds, in every mode. */
static void test_block_agrees_with_line_by_line(void **state)
{
    (void)state;
    uint64_t seed = 0x1d0ffee5ull;
#define RND() \
    (seed = seed * 6364136223846793005ull + 1442695040888963407ull, (unsigned)(seed >> 33))
    static const char alphabet[] = "abAB.x \t";
    static const char *const ere[] = {"a+b", "^A", "b$",  "(ab|BA)x", "[aA][bB]",
                                      "x.a", "^$", "a b", ".",        "\\."};
    char buf[4096];
    for (int round = 0; round < 300; round++) {
        size_t len = RND() % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = RND() % 7 == 0 ? '\n' : alphabet[RND() % (sizeof alphabet - 1)];
        char pat[16];
        int ere_mode = round % 3 == 2;
        if (ere_mode) {
            snprintf(pat, sizeof pat, "%s", ere[RND() % 10]);
        } else {
            size_t pl = 1 + RND() % 3;
            for (size_t i = 0; i < pl; i++)
                pat[i] = alphabet[RND() % (sizeof alphabet - 1)];
            pat[pl] = 0;
        }
        int icase = RND() % 2;
        struct grep_matcher m = compile(pat, icase, ere_mode);
        size_t block = 0, ref = 0;
        grep_block(&m, buf, len, count_line, &block);
        for (size_t s = 0; s <= len;) {
            const char *nl = memchr(buf + s, '\n', len - s);
            size_t e = nl ? (size_t)(nl - buf) : len;
            if (s < len) /* text after the last newline, if any, is the last line */
                ref += grep_match(&m, buf + s, e - s);
            if (!nl)
                break;
            s = e + 1;
        }
        grep_matcher_free(&m);
        if (block != ref)
            fail_msg("round %d pattern '%s' icase %d ere %d: block %zu, line by line %zu", round,
                     pat, icase, ere_mode, block, ref);
    }
#undef RND
}

static char tmpdir[64];

static const char *write_tmp(const char *name, const char *content, size_t len)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    fclose(f);
    return path;
}

static void test_file_bounds_and_counts(void **state)
{
    (void)state;
    /* 3,000 lines, every third matching, plus one 3 MiB line that matches:
     * one search window holds it whole. */
    size_t cap = 4u << 20, len = 0;
    char *content = malloc(cap);
    for (int i = 0; i < 3000; i++)
        len += (size_t)sprintf(content + len, "line %04d %s\n", i, i % 3 == 0 ? "needle" : "hay");
    memcpy(content + len, "needle ", 7);
    len += 7;
    memset(content + len, 'z', 3u << 20);
    len += 3u << 20;
    content[len++] = '\n';
    len += (size_t)sprintf(content + len, "final needle without newline");
    const char *path = write_tmp("big.log", content, len);
    free(content);

    struct grep_query q = {.pattern = "needle", .max_lines = 100};
    struct grep_matcher m;
    char err[256];
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
    struct grep_output out;
    assert_int_equal(grep_file(&m, path, &out), 0);
    assert_true(out.count == 1000 + 2);
    assert_int_equal(out.n_lines, 100);
    assert_true(out.truncated);
    assert_string_equal(out.lines[0], "line 0000 needle");
    assert_string_equal(out.lines[99], "line 0297 needle");
    grep_output_free(&out);
    grep_matcher_free(&m);

    /* a byte budget: whole lines only, count still exact */
    q.max_lines = 100000;
    q.max_bytes = 10 * (16 + GREP_LINE_OVERHEAD) + 5;
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
    assert_int_equal(grep_file(&m, path, &out), 0);
    assert_true(out.count == 1002);
    assert_int_equal(out.n_lines, 10);
    assert_true(out.bytes <= q.max_bytes);
    assert_true(out.truncated);
    grep_output_free(&out);
    grep_matcher_free(&m);

    /* -c: no lines kept; the unbounded case keeps the long and the last line */
    q.count_only = 1;
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
    assert_int_equal(grep_file(&m, path, &out), 0);
    assert_true(out.count == 1002);
    assert_int_equal(out.n_lines, 0);
    assert_false(out.truncated);
    grep_output_free(&out);
    grep_matcher_free(&m);
    q.count_only = 0;
    q.max_bytes = 0;
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
    assert_int_equal(grep_file(&m, path, &out), 0);
    assert_int_equal(out.n_lines, 1002);
    assert_int_equal(strlen(out.lines[1000]), 7 + (3u << 20));
    assert_string_equal(out.lines[1001], "final needle without newline");
    grep_output_free(&out);

    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such.log", tmpdir);
    assert_int_equal(grep_file(&m, missing, &out), ID_ENOTFOUND);
    grep_matcher_free(&m);
    unlink(path);
}

/* ---- strfind and the mapped log ---------------------------------------------------- */

/* The plain definition of a (case-folded) occurrence, to check both kernels. */
static const char *naive_find(const char *h, size_t hlen, const char *n, size_t nlen, int fold)
{
    if (nlen == 0)
        return NULL;
    for (size_t i = 0; i + nlen <= hlen; i++) {
        size_t k = 0;
        while (k < nlen) {
            unsigned char c = (unsigned char)h[i + k];
            if (fold && c >= 'A' && c <= 'Z')
                c |= 0x20;
            if (c != (unsigned char)n[k])
                break;
            k++;
        }
        if (k == nlen)
            return h + i;
    }
    return NULL;
}

struct stop_after {
    int calls, limit;
};

static int stop_after_calls(void *ud)
{
    struct stop_after *s = ud;
    return ++s->calls > s->limit;
}

/* A search asked to stop returns ID_ECANCELED with nothing kept, having
 * asked between windows; one never asked to stop reads the whole file. */
static void test_search_stops_when_asked(void **state)
{
    (void)state;
    /* Sparse hits: under ASan, regexec's interceptor measures the rest of
     * the mapping at every call. */
    size_t len = 0, cap = 12u << 20, needles = 0;
    char *content = malloc(cap);
    for (size_t i = 0; len + 64 < cap; i++) {
        int hit = i % 1000 == 0;
        needles += (size_t)hit;
        len += (size_t)sprintf(content + len, "line %09zu %s and hay\n", i,
                               hit ? "needle" : "straw");
    }
    const char *path = write_tmp("stop.log", content, len);
    free(content);
    for (int extended = 0; extended <= 1; extended++) {
        struct stop_after s = {.limit = 1};
        struct grep_query q = {.pattern = "needle",
                               .extended = extended,
                               .max_lines = 10,
                               .stop = stop_after_calls,
                               .stop_ud = &s};
        struct grep_matcher m;
        char err[256];
        assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
        struct grep_output out;
        assert_int_equal(grep_file(&m, path, &out), ID_ECANCELED);
        assert_int_equal(s.calls, 2); /* asked after each window until it said stop */
        assert_int_equal(out.n_lines, 0);
        grep_matcher_free(&m);

        s.limit = 1 << 30;
        s.calls = 0;
        assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
        assert_int_equal(grep_file(&m, path, &out), 0);
        assert_int_equal(out.count, needles);
        assert_true(s.calls >= 2); /* 12 MiB is several windows in either mode */
        grep_output_free(&out);
        grep_matcher_free(&m);
    }
}

static void test_strfind_agrees_with_naive(void **state)
{
    (void)state;
    /* A small alphabet makes near-misses common; the letters next to the case
     * bit ('@' '[' '`' '{') check that folding does not invent matches. */
    static const char alphabet[] = "aAbBzZ@[`{\n\0-";
    uint32_t seed = 7;
#define RND() (seed = seed * 1103515245u + 12345u, (seed >> 16) & 0x7fff)
    char hay[400], needle[12];
    for (int round = 0; round < 20000; round++) {
        size_t hlen = RND() % sizeof hay, nlen = 1 + RND() % (sizeof needle - 1);
        for (size_t i = 0; i < hlen; i++)
            hay[i] = alphabet[RND() % (sizeof alphabet - 1)];
        int fold = (int)(RND() & 1);
        for (size_t i = 0; i < nlen; i++) {
            char c = alphabet[RND() % (sizeof alphabet - 1)];
            needle[i] = fold && c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c;
        }
        if (hlen > nlen && RND() % 2) /* plant one, in the haystack's case */
            memcpy(hay + RND() % (hlen - nlen + 1), needle, nlen);
        const char *want = naive_find(hay, hlen, needle, nlen, fold);
        const char *fast = strfind(hay, hlen, needle, nlen, fold);
        const char *portable = strfind_portable(hay, hlen, needle, nlen, fold);
        if (fast != want || portable != want)
            fail_msg("round %d (hlen %zu nlen %zu fold %d): want %td, fast %td, portable %td",
                     round, hlen, nlen, fold, want ? want - hay : -1, fast ? fast - hay : -1,
                     portable ? portable - hay : -1);
    }
#undef RND
    assert_null(strfind("abc", 3, "", 0, 0));
    assert_null(strfind("ab", 2, "abc", 3, 0));
    const char *k = strfind_kernel();
    assert_true(strcmp(k, "avx2") == 0 || strcmp(k, "portable") == 0);
}

static uint64_t map_count(struct grep_map *gm, const char *pattern, int *status)
{
    struct grep_query q = {.pattern = pattern, .count_only = 1, .max_lines = 10};
    struct grep_matcher m;
    char err[256];
    assert_int_equal(grep_compile(&m, &q, err, sizeof err), 0);
    struct grep_output out;
    *status = grep_map_search(gm, &m, &out);
    uint64_t n = out.count;
    grep_output_free(&out);
    grep_matcher_free(&m);
    return n;
}

static void append(const char *path, const char *text)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_map_follows_the_file(void **state)
{
    (void)state;
    char path[128], other[128];
    snprintf(path, sizeof path, "%s/node.log", tmpdir);
    snprintf(other, sizeof other, "%s/node.log.new", tmpdir);
    struct grep_map *gm;
    int st;
    assert_int_equal(grep_map_open(&gm, path), 0);
    assert_int_equal(map_count(gm, "x", &st), 0); /* no log yet */
    assert_int_equal(st, ID_ENOTFOUND);

    write_tmp("node.log", "", 0); /* empty */
    assert_int_equal(map_count(gm, "needle", &st), 0);
    assert_int_equal(st, 0);
    append(path, "a needle\nhay\n");
    assert_int_equal(map_count(gm, "needle", &st), 1); /* grew into the room */
    assert_int_equal(st, 0);
    append(path, "needle two\nNEEDLE three (case)\nlast needle, no newline");
    assert_int_equal(map_count(gm, "needle", &st), 3);

    /* Grown past the room: mapped again. */
    size_t big = (300u << 20);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)big), 0); /* a hole of zeros */
    assert_int_equal(pwrite(fd, "\nneedle at the end\n", 19, (off_t)big), 19);
    close(fd);
    assert_int_equal(map_count(gm, "needle", &st), 4);
    assert_int_equal(st, 0);

    /* Truncated: only what is there now is searched. */
    assert_int_equal(truncate(path, 9), 0);
    assert_int_equal(map_count(gm, "needle", &st), 1);

    /* Replaced (rename over it, as log rotation does): the new file is searched. */
    FILE *f = fopen(other, "w");
    fputs("needle\nneedle\nneedle\nhay\n", f);
    fclose(f);
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(map_count(gm, "needle", &st), 3);
    unlink(path);
    assert_int_equal(map_count(gm, "needle", &st), 0);
    assert_int_equal(st, ID_ENOTFOUND);
    grep_map_close(gm);
}

static void test_mapped_block_survives_truncation(void **state)
{
    (void)state;
    /* Map two pages of lines, then cut the file: reading the mapping now
     * raises SIGBUS, which must become an error of that search. */
    size_t len = 8192;
    char *content = malloc(len);
    for (size_t i = 0; i < len; i++)
        content[i] = i % 64 == 63 ? '\n' : 'h';
    memcpy(content + len - 16, "needle", 6);
    const char *path = write_tmp("cut.log", content, len);
    free(content);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    const char *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(map != MAP_FAILED);
    struct grep_matcher m = compile("needle", 0, 0);
    size_t hits = 0;
    assert_int_equal(grep_mapped_block(&m, map, len, count_line, &hits), 0);
    assert_int_equal(hits, 1);
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(grep_mapped_block(&m, map, len, count_line, &hits), ID_EIO);
    /* and the guard is down again: an ordinary block still searches */
    hits = 0;
    assert_int_equal(grep_mapped_block(&m, "a needle\n", 9, count_line, &hits), 0);
    assert_int_equal(hits, 1);
    grep_matcher_free(&m);
    munmap((void *)map, len);
    close(fd);
    unlink(path);
}

/* Searches on several threads while the log grows: every search sees a
 * count between what was there before it started and what is there after. */
struct map_reader {
    struct grep_map *gm;
    const char *path;
    int failures;
};

static void *map_reader_run(void *arg)
{
    struct map_reader *r = arg;
    uint64_t last = 0;
    for (int i = 0; i < 200; i++) {
        int st;
        struct grep_query q = {.pattern = "needle", .count_only = 1, .max_lines = 10};
        struct grep_matcher m;
        char err[256];
        if (grep_compile(&m, &q, err, sizeof err) != 0) {
            r->failures++;
            break;
        }
        struct grep_output out;
        st = grep_map_search(r->gm, &m, &out);
        if (st != 0 || out.count < last)
            r->failures++;
        last = out.count;
        grep_output_free(&out);
        grep_matcher_free(&m);
    }
    return NULL;
}

static void test_map_concurrent_searches(void **state)
{
    (void)state;
    const char *path = write_tmp("busy.log", "needle 0\n", 9);
    struct grep_map *gm;
    assert_int_equal(grep_map_open(&gm, path), 0);
    struct map_reader readers[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        readers[i] = (struct map_reader){.gm = gm, .path = path};
        assert_int_equal(pthread_create(&th[i], NULL, map_reader_run, &readers[i]), 0);
    }
    FILE *f = fopen(path, "a");
    for (int i = 1; i <= 2000; i++) {
        fprintf(f, "line %d needle\n", i);
        fflush(f);
    }
    fclose(f);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(readers[i].failures, 0);
    }
    int st;
    assert_int_equal(map_count(gm, "needle", &st), 2001);
    grep_map_close(gm);
    unlink(path);
}

/* ---- merge ---------------------------------------------------------------------- */

static Idunno__GrepNodeResult *node_result(const char *name, uint64_t count, size_t n_lines,
                                           size_t line_len, const char *error)
{
    Idunno__GrepNodeResult *r = malloc(sizeof *r);
    idunno__grep_node_result__init(r);
    r->node = strdup(name);
    r->addr = strdup("127.0.0.1:1");
    r->count = count;
    r->error = strdup(error ? error : "");
    r->n_lines = n_lines;
    r->lines = calloc(n_lines ? n_lines : 1, sizeof *r->lines);
    for (size_t i = 0; i < n_lines; i++) {
        r->lines[i] = malloc(line_len + 1);
        memset(r->lines[i], 'l', line_len);
        r->lines[i][line_len] = 0;
    }
    return r;
}

static void test_names_in_natural_order(void **state)
{
    (void)state;
    assert_true(logq_name_cmp("node2", "node10") < 0);
    assert_true(logq_name_cmp("node10", "node2") > 0);
    assert_true(logq_name_cmp("node10", "node10") == 0);
    assert_true(logq_name_cmp("a", "b") < 0);
    assert_true(logq_name_cmp("node", "node1") < 0);
    assert_true(logq_name_cmp("rack2-node10", "rack10-node1") < 0);
    assert_true(logq_name_cmp("n01", "n1") != 0); /* a total order */
    assert_true(logq_name_cmp("n01", "n1") == -logq_name_cmp("n1", "n01"));
}

static void test_merge(void **state)
{
    (void)state;
    Idunno__GrepNodeResult *nodes[4] = {
        node_result("node10", 5, 5, 10, NULL),
        node_result("node2", 7, 7, 10, NULL),
        node_result("node3", 0, 0, 0, "unreachable: no answer in time"),
        node_result("node1", 1000, 100, 100, NULL),
    };
    /* budget: everything but node1's lines fits easily; node1 must be cut */
    size_t budget = 12 * (10 + GREP_LINE_OVERHEAD) + 30 * (100 + GREP_LINE_OVERHEAD);
    uint64_t total = logq_merge(nodes, 4, budget);
    assert_true(total == 1012); /* the unreachable node adds nothing; counts untouched */
    assert_string_equal(nodes[0]->node, "node1");
    assert_string_equal(nodes[1]->node, "node2");
    assert_string_equal(nodes[2]->node, "node3");
    assert_string_equal(nodes[3]->node, "node10");
    assert_true(nodes[0]->count == 1000);
    assert_true(nodes[0]->truncated);
    assert_true(nodes[0]->n_lines <= 30 && nodes[0]->n_lines >= 15); /* halved until it fits */
    assert_false(nodes[1]->truncated);
    assert_int_equal(nodes[1]->n_lines, 7);
    assert_int_equal(nodes[3]->n_lines, 5);
    for (int i = 0; i < 4; i++)
        idunno__grep_node_result__free_unpacked(nodes[i], NULL);

    assert_int_equal(logq_node_budget(1000, 300, 2), 300);
    assert_int_equal(logq_node_budget(1000, 300, 5), 200);
    assert_int_equal(logq_node_budget(1000, 0, 4), 250);
}

/* ---- fan-out over loopback ---------------------------------------------------------- */

static int port_base(void)
{
    const char *e = getenv("IDUNNO_TEST_PORT_BASE");
    return (e ? atoi(e) : 7100) + 20;
}

struct fan {
    char self[32], dead[32], silent[32];
};

static size_t three_peers(void *ud, struct logq_peer *out, size_t max)
{
    struct fan *f = ud;
    assert_true(max >= 4);
    snprintf(out[0].name, sizeof out[0].name, "self");
    snprintf(out[0].addr, sizeof out[0].addr, "%s", f->self);
    snprintf(out[1].name, sizeof out[1].name, "dead");
    snprintf(out[1].addr, sizeof out[1].addr, "%s", f->dead);
    snprintf(out[2].name, sizeof out[2].name, "silent");
    snprintf(out[2].addr, sizeof out[2].addr, "%s", f->silent);
    /* known down: named, never called (its address would hang if it were) */
    snprintf(out[3].name, sizeof out[3].name, "gone");
    snprintf(out[3].addr, sizeof out[3].addr, "%s", f->silent);
    snprintf(out[3].down, sizeof out[3].down, "failed (membership)");
    return 4;
}

static int fan_done;
static Idunno__GrepResult *fan_result;
static int fan_status;

static void on_grep_result(void *ud, const struct net_result *r)
{
    (void)ud;
    fan_status = r->status;
    if (r->status == 0)
        fan_result = idunno__grep_result__unpack(NULL, r->len, r->body);
    fan_done = 1;
}

static void test_fanout_names_dead_and_silent_peers(void **state)
{
    (void)state;
    struct fan f;
    snprintf(f.self, sizeof f.self, "127.0.0.1:%d", port_base());
    snprintf(f.dead, sizeof f.dead, "127.0.0.1:%d", port_base() + 1); /* nobody listens */
    snprintf(f.silent, sizeof f.silent, "127.0.0.1:%d",
             port_base() + 2); /* accepts, never answers */
    char log[] = "a needle\nno\nneedle two\n";
    const char *path = write_tmp("self.log", log, sizeof log - 1);
    char log_path[128];
    snprintf(log_path, sizeof log_path, "%s", path);

    int silent = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage sa;
    net_parse_addr(f.silent, &sa);
    int one = 1;
    setsockopt(silent, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(silent, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    assert_int_equal(listen(silent, 8), 0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct net *net;
    struct net_config nc = {.addr = f.self};
    assert_int_equal(net_create(&loop, &nc, &net), 0);
    assert_int_equal(net_start(net), 0);
    struct logq *q;
    assert_int_equal(logq_create(&loop, net, "self", log_path, &q), 0);
    logq_set_peers(q, three_peers, &f);

    Idunno__GrepRequest g = IDUNNO__GREP_REQUEST__INIT;
    g.pattern = "needle";
    g.timeout_ms = 300;
    fan_done = 0;
    uint64_t t0 = id_now_ms();
    assert_int_equal(net_call_pb(net, f.self, IDUNNO__MSG_TYPE__MSG_GREP_REQ, &g.base, 5000,
                                 on_grep_result, NULL),
                     0);
    while (!fan_done && id_now_ms() - t0 < 5000)
        uv_run(&loop, UV_RUN_ONCE);
    uint64_t took = id_now_ms() - t0;
    assert_int_equal(fan_status, 0);
    assert_non_null(fan_result);
    /* bounded: the silent peer cost its timeout, not the caller's 5 s */
    assert_true(took < 3000);
    assert_true(fan_result->total == 2);
    assert_int_equal(fan_result->n_nodes, 4);
    /* natural name order: dead, gone, self, silent */
    assert_string_equal(fan_result->nodes[0]->node, "dead");
    assert_non_null(strstr(fan_result->nodes[0]->error, "unreachable"));
    assert_string_equal(fan_result->nodes[1]->node, "gone");
    assert_string_equal(fan_result->nodes[1]->error, "not searched: failed (membership)");
    assert_string_equal(fan_result->nodes[2]->node, "self");
    assert_true(fan_result->nodes[2]->count == 2);
    assert_int_equal(fan_result->nodes[2]->n_lines, 2);
    assert_string_equal(fan_result->nodes[2]->lines[1], "needle two");
    assert_string_equal(fan_result->nodes[3]->node, "silent");
    assert_non_null(strstr(fan_result->nodes[3]->error, "no answer in time"));
    idunno__grep_result__free_unpacked(fan_result, NULL);
    fan_result = NULL;

    /* a bad regex is refused once, as the user's error */
    g.extended = 1;
    g.pattern = "needle-[";
    fan_done = 0;
    net_call_pb(net, f.self, IDUNNO__MSG_TYPE__MSG_GREP_REQ, &g.base, 5000, on_grep_result, NULL);
    while (!fan_done)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(fan_status, ID_EINVAL);

    logq_destroy(q);
    net_destroy(net, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(silent);
    unlink(log_path);
}

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_logq.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_modes),
        cmocka_unit_test(test_compile_rejects),
        cmocka_unit_test(test_block_edges),
        cmocka_unit_test(test_block_agrees_with_line_by_line),
        cmocka_unit_test(test_file_bounds_and_counts),
        cmocka_unit_test(test_search_stops_when_asked),
        cmocka_unit_test(test_strfind_agrees_with_naive),
        cmocka_unit_test(test_map_follows_the_file),
        cmocka_unit_test(test_mapped_block_survives_truncation),
        cmocka_unit_test(test_map_concurrent_searches),
        cmocka_unit_test(test_names_in_natural_order),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_fanout_names_dead_and_silent_peers),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
