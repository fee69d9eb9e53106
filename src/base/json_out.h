/* json_out.h — a small, strict streaming JSON writer into a strbuf.
 *
 * Every string (keys too) is escaped; bytes that are not valid UTF-8 become
 * U+FFFD, so the document always parses whatever the input (log lines and
 * names can hold anything); non-finite numbers become null. Commas are placed
 * by the writer. A key is written when one is given: pass NULL inside arrays
 * and for the top-level value, a key inside objects.
 *
 * Used by the CLI (--json, through cli/out.c) and by the HTTP endpoint's
 * status document (http/http.h providers).
 *
 * Threading: none of its own; one writer belongs to one thread at a time.
 */
#ifndef IDUNNO_BASE_JSON_OUT_H
#define IDUNNO_BASE_JSON_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

/* Nesting deeper than this fails the document (strbuf's failed flag). */
#define JSON_OUT_MAX_DEPTH 32

struct json_out {
    struct strbuf *sb; /* not owned */
    int depth;         /* containers open */
    /* Per depth: values written so far (saturating) and the closing bracket. */
    unsigned char count[JSON_OUT_MAX_DEPTH + 1];
    char closer[JSON_OUT_MAX_DEPTH + 1];
};

/* Starts a writer appending to sb (which stays the caller's). */
void json_out_init(struct json_out *j, struct strbuf *sb);

void json_out_begin_object(struct json_out *j, const char *key);
void json_out_begin_array(struct json_out *j, const char *key);
/* Closes the innermost open object or array (nothing if none is open). */
void json_out_end(struct json_out *j);
/* Closes everything still open: the document is then complete. */
void json_out_end_all(struct json_out *j);

void json_out_str(struct json_out *j, const char *key, const char *value); /* NULL: "" */
void json_out_u64(struct json_out *j, const char *key, uint64_t v);
void json_out_i64(struct json_out *j, const char *key, int64_t v);
/* Six significant digits (for rates and latencies; counts go through u64). */
void json_out_double(struct json_out *j, const char *key, double v);
void json_out_bool(struct json_out *j, const char *key, int v);
void json_out_null(struct json_out *j, const char *key);
/* Appends json[0..len), which must be one complete JSON value, as a value. */
void json_out_raw(struct json_out *j, const char *key, const char *json, size_t len);

/* Values written at the top level so far (0, 1, or 2 meaning "more than one"). */
unsigned json_out_top_count(const struct json_out *j);

#endif
