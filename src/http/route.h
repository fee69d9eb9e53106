/* route.h — which endpoint a request names: the only decoding of network input
 * the HTTP endpoint does itself (libmicrohttpd parses the request line and
 * headers). Pure, and fuzzed (fuzz/fuzz_http.c). */
#ifndef IDUNNO_HTTP_ROUTE_H
#define IDUNNO_HTTP_ROUTE_H

enum http_route {
    HTTP_ROUTE_NONE = 0,  /* no such endpoint: 404 */
    HTTP_ROUTE_DASHBOARD, /* GET /            */
    HTTP_ROUTE_METRICS,   /* GET /metrics     */
    HTTP_ROUTE_HEALTHZ,   /* GET /healthz     */
    HTTP_ROUTE_READYZ,    /* GET /readyz      */
    HTTP_ROUTE_STATUS,    /* GET /api/status  */
    HTTP_ROUTE_V2,        /* /v2/...: the Open Inference Protocol (oip.h), counted as one */
    HTTP_ROUTE_COUNT
};

/* The endpoint of a request path (NULL: none). Matching is exact; a query
 * string ("?...") is ignored. /v2 paths are oip.h's to parse: this returns
 * HTTP_ROUTE_NONE for them. */
enum http_route http_route_match(const char *path);

/* True for the methods every endpoint answers: GET and HEAD (others get 405). */
int http_method_ok(const char *method);

/* A short stable name for metrics labels ("metrics", "none", ...). */
const char *http_route_name(enum http_route r);

#endif
