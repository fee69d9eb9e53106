/* http.h — the node's HTTP endpoint (PORT+2): Prometheus metrics, health and
 * readiness checks, a JSON status document and the dashboard
 * (docs/http.md).
 *
 * Threading. Node state belongs to the loop thread, and libmicrohttpd serves
 * requests on a thread of its own, so the two never share node state: every
 * publish_ms the loop thread calls the registered providers, which render
 * their metric families and their section of the status document into
 * buffers; it then swaps those buffers with the published ones under a mutex.
 * The HTTP thread only ever copies the published buffers (under the same
 * mutex) and reads the time they were published. A loop that stops publishing
 * is therefore visible: /healthz answers 503 once the last publish is older
 * than stale_ms.
 *
 * Providers. A layer adds what it knows with http_add_provider(): a section
 * name (a key of the status document) and a render function that writes
 * metric families (prom.h) and one JSON value for its section (json_out.h).
 * See http_add_provider() for the rules.
 *
 * Every function here is called on the loop thread.
 */
#ifndef IDUNNO_HTTP_HTTP_H
#define IDUNNO_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/json_out.h"
#include "http/auth.h"
#include "http/prom.h"

struct http;

struct http_config {
    const char *addr; /* HOST:PORT to listen on; port 0: any free port */
    /* The bearer tokens state-changing requests must carry (auth.h), copied;
     * none: the node has no cluster key and refuses them all. */
    const uint8_t (*tokens)[HTTP_TOKEN_LEN];
    size_t n_tokens;
    /* Tuning; 0 picks the default in brackets. */
    unsigned publish_ms;        /* [250] how often the loop renders and publishes */
    unsigned stale_ms;          /* [2000] /healthz fails once the last publish is older */
    unsigned max_connections;   /* [256] open connections; more are refused */
    unsigned max_per_ip;        /* [16] open connections from one address */
    unsigned timeout_s;         /* [10] idle connections are closed after this */
    unsigned header_ms;         /* [5000] a request's header must be complete this
                                 long after the connection opened or its last
                                 answer was sent; else it is cut */
    size_t max_body;            /* [64 MiB] a request body beyond this is refused (413) */
    const char *server_version; /* what GET /v2 says the server's version is */
};

#define HTTP_DEFAULT_MAX_BODY ((size_t)64 << 20)

/* Renders one provider's part of a publish, on the loop thread.
 *
 *   metrics: append metric families (prom_family, then its samples). Family
 *            names are unique in the whole document: prefix them with the
 *            layer (idunno_sdfs_..., idunno_job_...).
 *   status:  write exactly one JSON value with a NULL key (an object, an
 *            array, ...): it becomes "SECTION": VALUE in the status
 *            document. Write nothing to leave the section out; containers
 *            left open are closed; more than one value is replaced by null
 *            (and logged).
 *
 * It must not block, and must not add or remove providers. */
typedef void (*http_render_fn)(void *ud, struct prom_out *metrics, struct json_out *status);

/* Says whether the node is ready (/readyz). Returns 1 if so; else 0 with the
 * reason written into why (len bytes). Called on the loop at every publish. */
typedef int (*http_ready_fn)(void *ud, char *why, size_t len);

/* Creates the endpoint (nothing listens until http_start). Returns 0 and sets
 * *out, or ID_EINVAL (bad address) or ID_ENOMEM. Release with http_destroy. */
int http_create(uv_loop_t *loop, const struct http_config *cfg, struct http **out);

/* Adds a provider of metrics and of the status section `section` (1..63
 * bytes, a JSON key). Providers render in the order they were added. A section
 * that already has a provider gets the new one instead (so the node can
 * register placeholders, such as an empty "jobs" array, that the layer owning
 * the section replaces). `ud` must stay valid until the provider is removed or
 * the endpoint destroyed. h may be NULL (the node runs without HTTP): then
 * nothing happens and 0 is returned, so layers need not check. Returns 0,
 * ID_EINVAL or ID_ENOMEM. Takes effect at the next publish. */
int http_add_provider(struct http *h, const char *section, http_render_fn render, void *ud);

/* Removes the provider of `section` (a layer stopping before the node does).
 * Returns 0, or ID_ENOTFOUND. h may be NULL (returns 0). */
int http_remove_provider(struct http *h, const char *section);

/* Sets the readiness check (none: always ready). */
void http_set_ready_check(struct http *h, http_ready_fn fn, void *ud);

/* Listens on cfg->addr, starts the HTTP thread and the publish timer, and
 * publishes once at once. Returns 0, or ID_E* with the detail in
 * http_errmsg() (address in use, ...). */
int http_start(struct http *h);

/* Renders and publishes now (tests; a layer after a big change). */
void http_publish_now(struct http *h);

/* Connections cut so far for sending their request header too slowly. */
uint64_t http_slow_cut(const struct http *h);

/* The port listened on (after http_start), 0 before. */
int http_port(const struct http *h);

const char *http_errmsg(const struct http *h);

/* ---- requests the loop answers --------------------------------------------------------------
 *
 * The /v2 endpoints that need the cluster (model metadata and readiness,
 * infer: oip.h) cannot be answered from published documents. For those the
 * HTTP thread reads the request's body (up to max_body), suspends its
 * connection and hands the request to the loop as a call; the handler set
 * here gets it on the loop thread and must answer it exactly once with
 * http_call_reply, at once or later (after cluster calls). The HTTP thread
 * then sends the answer. Without a handler such requests are answered 503.
 * A call answered after http_destroy is only freed (the endpoint answered
 * 503 for it when it stopped). */
struct http_call;
struct oip_target;
typedef void (*http_call_fn)(void *ud, struct http_call *call);
void http_set_call_handler(struct http *h, http_call_fn fn, void *ud);
const struct oip_target *http_call_target(const struct http_call *call);
/* The request body and its Inference-Header-Content-Length (0: absent). */
const uint8_t *http_call_body(const struct http_call *call, size_t *len, size_t *json_len);
/* Answers the call (body copied) and lets the HTTP thread send it. */
void http_call_reply(struct http_call *call, unsigned status, const char *content_type,
                     const char *body, size_t len);

/* Stops serving (joins the HTTP thread; connections are closed) and closes
 * the timer; the memory is freed once libuv has closed it. h may be NULL. */
void http_destroy(struct http *h);

#endif
