/* auth.h — who may change state through the HTTP endpoint: the bearer token
 * check. Pure (no I/O): method, Authorization header and the accepted tokens
 * in, a verdict out; http.c runs it before routing every request.
 *
 * GET and HEAD read and are open to anyone who reaches the port (bind it to a
 * trusted address: idunnod --http-addr). Any other method must carry
 * "Authorization: Bearer <64 hex digits>", the token of one of the keys of
 * the cluster keyring (seal_http_token, printed by `idunno token`); tokens
 * are compared in constant time. Without a cluster key there is no token,
 * and state-changing requests are refused outright. */
#ifndef IDUNNO_HTTP_AUTH_H
#define IDUNNO_HTTP_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_TOKEN_LEN 32
#define HTTP_MAX_TOKENS 8

enum http_auth {
    HTTP_AUTH_OK = 0,  /* a read, or a request with a valid token: route it */
    HTTP_AUTH_MISSING, /* no bearer token: 401 */
    HTTP_AUTH_BAD,     /* a token, but not one of ours (or malformed): 401 */
    HTTP_AUTH_NO_KEY,  /* the node has no cluster key: state changes are off, 403 */
    HTTP_AUTH_COUNT
};

/* The verdict on a request with `method` and `authorization` (the header's
 * value, NULL if absent), against tokens[n] (n == 0: no cluster key). */
enum http_auth http_auth_check(const char *method, const char *authorization,
                               const uint8_t (*tokens)[HTTP_TOKEN_LEN], size_t n);

/* A short stable name for metric labels ("missing", "bad", "no_key"). */
const char *http_auth_name(enum http_auth a);

#endif
