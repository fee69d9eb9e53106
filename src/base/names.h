/* names.h — the one rule for names that people read: member, replica, file
 * and model names, and how any other text is made safe to print.
 *
 * A name travels to terminals, log lines and /metrics. A control character in
 * one (an escape sequence, a carriage return) would rewrite what an operator
 * sees, so names are checked where they enter, and whatever text is printed
 * anyway (names from older or forged peers, error messages) is escaped. */
#ifndef IDUNNO_BASE_NAMES_H
#define IDUNNO_BASE_NAMES_H

#include <stddef.h>

/* Is s a name of 1..max_len bytes of printable characters: valid UTF-8 with
 * no space, no C0 or C1 control character and no DEL? Returns 1 or 0. */
int id_name_ok(const char *s, size_t max_len);

/* Copies s into out (len bytes, always NUL-terminated, truncated to fit) with
 * every control character, DEL, backslash and byte of invalid UTF-8 written
 * as \xNN (backslash as \\). Returns out. */
char *id_escape(const char *s, char *out, size_t len);

/* The length of the UTF-8 sequence at p if it is valid and printable (not a
 * C1 control), else 0. For escapers that write into their own buffers. */
size_t id_printable_seq(const unsigned char *p);

#endif
