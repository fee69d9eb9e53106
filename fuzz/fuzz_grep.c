/* fuzz_grep.c — libFuzzer target for the search a node runs on a pattern that
 * came off the network: the AVX2 kernel must agree with the portable one on
 * any needle and haystack, and grep_block over any bytes with any fixed or
 * ERE pattern must return without a crash, reporting lines inside the block.
 * An ERE with a back-reference (\\1..\\9 outside a bracket) is never
 * accepted: regexec would backtrack exponentially on the haystack.
 * Input: flags byte, needle length byte, needle, haystack. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logq/grep.h"
#include "logq/strfind.h"

struct bounds {
    const char *buf;
    size_t len;
};

/* Does an ERE without brackets hold a back-reference? (With a bracket the
 * escape rules differ; the compiler's own check covers those.) */
static int has_backref(const char *p)
{
    if (strchr(p, '['))
        return 0;
    for (; *p; p++) {
        if (*p != '\\')
            continue;
        if (p[1] >= '1' && p[1] <= '9')
            return 1;
        if (p[1])
            p++;
    }
    return 0;
}

static int check_line(void *ud, const char *line, size_t len)
{
    const struct bounds *b = ud;
    if (line < b->buf || line + len > b->buf + b->len || memchr(line, '\n', len))
        __builtin_trap();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int fold = data[0] & 1, ere = (data[0] >> 1) & 1;
    size_t nlen = data[1] % 32;
    if (nlen > size - 2)
        nlen = size - 2;
    const char *needle = (const char *)data + 2;
    const char *hay = needle + nlen;
    size_t hlen = size - 2 - nlen;

    char lower[32];
    for (size_t i = 0; i < nlen; i++)
        lower[i] = (char)(fold && needle[i] >= 'A' && needle[i] <= 'Z' ? needle[i] | 0x20
                                                                       : needle[i]);
    if (strfind(hay, hlen, lower, nlen, fold) != strfind_portable(hay, hlen, lower, nlen, fold))
        __builtin_trap();

    char pattern[33];
    memcpy(pattern, needle, nlen);
    pattern[nlen] = 0;
    struct grep_query q = {
        .pattern = pattern, .ignore_case = fold, .extended = ere, .max_lines = 100};
    struct grep_matcher m;
    char err[256];
    /* A NUL after the block for the sanitizer's regexec interceptor, which
     * measures the string with strlen even under REG_STARTEND (glibc itself
     * reads only the given range). */
    char *block = malloc(hlen + 1);
    if (block && grep_compile(&m, &q, err, sizeof err) == 0) {
        if (ere && has_backref(pattern))
            __builtin_trap();
        memcpy(block, hay, hlen);
        block[hlen] = 0;
        struct bounds b = {block, hlen};
        (void)grep_block(&m, block, hlen, check_line, &b);
        grep_matcher_free(&m);
    }
    free(block);
    return 0;
}
