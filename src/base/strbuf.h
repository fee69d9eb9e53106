/* strbuf.h — a growable, always NUL-terminated byte string.
 *
 * Writers append without checking each call: an allocation failure sets a
 * sticky flag (strbuf_failed), later appends do nothing, and whoever finishes
 * the buffer checks the flag once. A zeroed struct (STRBUF_INIT) is an empty
 * buffer; strbuf_free releases it and leaves it empty again.
 *
 * Threading: none of its own; a buffer belongs to one thread at a time.
 */
#ifndef IDUNNO_BASE_STRBUF_H
#define IDUNNO_BASE_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
    char *data; /* NULL until the first append; then NUL-terminated, owned */
    size_t len; /* bytes before the terminator */
    size_t cap; /* bytes allocated */
    int failed; /* an append ran out of memory; the content is truncated */
};

#define STRBUF_INIT   \
    {                 \
        NULL, 0, 0, 0 \
    }

/* Empties sb but keeps its memory for reuse (and clears the failed flag). */
void strbuf_reset(struct strbuf *sb);

/* Releases the memory; sb is then empty (STRBUF_INIT). */
void strbuf_free(struct strbuf *sb);

void strbuf_append(struct strbuf *sb, const void *p, size_t n);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_putc(struct strbuf *sb, char c);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap);

/* The content, never NULL ("" while empty); valid until the next append,
 * reset or free. */
const char *strbuf_str(const struct strbuf *sb);

/* 0, or ID_ENOMEM if an append failed since the last reset. */
int strbuf_failed(const struct strbuf *sb);

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one:
 * overlong forms, UTF-16 surrogates, code points above U+10FFFF and sequences
 * cut short (by the NUL terminator too) are not. For writers that must emit
 * valid UTF-8 whatever they are given. */
size_t utf8_seq_len(const unsigned char *p);

#endif
