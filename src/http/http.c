/* http.c — the HTTP endpoint of http.h on libmicrohttpd.
 *
 * Two threads and one rule: the loop thread renders (providers), the HTTP
 * thread serves (copies of what was published). `lock` guards only `pub`;
 * it is held for a pointer swap on the loop side and for a memcpy on the HTTP
 * side, never while rendering or doing I/O. Request counters are atomics that
 * the HTTP thread increments and the loop reads when it renders metrics.
 *
 * libmicrohttpd runs with one internal polling thread (epoll where it can:
 * every answer is a memcpy of a published buffer, so one thread keeps up), a
 * bounded number of connections, a bound per client address, an idle timeout
 * and a per-connection memory limit (which bounds the request line and
 * headers). The listening socket is made here, so that a failure names its
 * reason (address in use).
 *
 * Slow clients. An idle timeout alone does not stop a client that sends its
 * header a byte every few seconds: each byte restarts the timeout, and a few
 * dozen such connections used to fill every slot, so /healthz went
 * unanswered. So the endpoint also gives each request a deadline for its
 * whole header (header_ms from the connection's start or its previous
 * answer): libmicrohttpd tells us when connections open and close and when
 * answers complete, and the loop's publish tick shuts down (shutdown(2)) the
 * sockets past their deadline, which libmicrohttpd then closes. The
 * per-address bound keeps one client from taking the slots of others while
 * its connections wait for their deadline.
 */
#include "http/http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/array.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "http/dashboard.h"
#include "http/oip.h"
#include "http/route.h"
#include "net/net.h"

#define HTTP_SECTION_MAX 64
#define HTTP_STATUS_SCHEMA 1
#define HTTP_CONN_MEMORY (16 * 1024)

/* One open connection, for the header deadline. Linked on http.conns while
 * libmicrohttpd has it open; guarded by http.conns_lock. */
struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    uint64_t waiting_since_ms; /* waiting for a request header since; 0: answering one */
    int cut;                   /* shut down by us already */
};

/* Status codes the endpoint answers with, for the request counters. */
enum {
    HTTP_C200,
    HTTP_C404,
    HTTP_C405,
    HTTP_C503,
    HTTP_C500,
    HTTP_C401,
    HTTP_C403,
    HTTP_C400,
    HTTP_C413,
    HTTP_NCODES
};
static const unsigned http_codes[HTTP_NCODES] = {200, 404, 405, 503, 500, 401, 403, 400, 413};

/* A request the loop answers (http.h, "Requests the loop answers"). Its
 * life: READING its body (HTTP thread), then QUEUED with its connection
 * suspended while the loop works on it, then ANSWERED (the loop resumed the
 * connection), then SENT. It is freed once both sides are done with it:
 * libmicrohttpd (the request completed or the connection closed) and the
 * loop (it replied, or was never given the call). */
enum http_call_state { CALL_READING, CALL_QUEUED, CALL_ANSWERED, CALL_SENT };

struct http_call {
    struct http *h; /* NULL once the endpoint is gone and only the loop holds the call */
    struct MHD_Connection *conn;
    struct oip_target target;
    uint8_t *body; /* the request body (owned) */
    size_t len, cap;
    size_t json_len; /* Inference-Header-Content-Length, 0 when absent */
    int too_big;     /* the body passed max_body: answered 413 once read */
    enum http_call_state state;
    /* The answer (guarded by calls_lock while the HTTP thread runs). */
    unsigned status;
    char *resp;
    size_t resp_len;
    char ctype[48];
    int mhd_done, loop_done;
    struct http_call *next; /* on the inbox or the live list */
    struct http_call *prev; /* on the live list */
};

struct http_provider {
    char section[HTTP_SECTION_MAX];
    http_render_fn render;
    void *ud;
    uint64_t render_us; /* the last render's duration */
    int warned;         /* wrote more than one value (logged once) */
};

/* What the HTTP thread serves; guarded by http.lock. */
struct http_published {
    struct strbuf metrics;
    struct strbuf status;
    uint64_t at_ms; /* monotonic; 0: never */
    int ready;
    char why[256];
};

struct http {
    uv_loop_t *loop;
    char addr[64];
    unsigned publish_ms, stale_ms, max_connections, max_per_ip, timeout_s, header_ms;
    uv_timer_t timer;
    int listen_fd;
    int port;
    struct MHD_Daemon *mhd;
    struct http_provider *providers;
    size_t n_providers, cap_providers;
    http_ready_fn ready_fn;
    void *ready_ud;
    /* Loop thread: the buffers being rendered (swapped with pub's). */
    struct strbuf next_metrics, next_status, scratch;
    uint64_t render_us, publishes, render_failures;
    pthread_mutex_t lock;
    struct http_published pub;
    _Atomic uint64_t requests[HTTP_ROUTE_COUNT][HTTP_NCODES];
    pthread_mutex_t conns_lock;
    struct http_conn *conns;
    _Atomic uint64_t slow_cut;
    uint8_t tokens[HTTP_MAX_TOKENS][HTTP_TOKEN_LEN]; /* written before the HTTP thread starts */
    size_t n_tokens;
    _Atomic uint64_t auth_refused[HTTP_AUTH_COUNT];
    /* Requests the loop answers: the HTTP thread puts them in the inbox and
     * wakes the loop (async); the loop keeps the ones it owes an answer on
     * `live`. */
    size_t max_body;
    char server_version[32];
    http_call_fn call_fn;
    void *call_ud;
    uv_async_t async;
    int handles_open; /* timer and async: the last close frees */
    pthread_mutex_t calls_lock;
    struct http_call *inbox; /* newest first; guarded by calls_lock */
    struct http_call *live;  /* loop thread only */
    char errmsg[ID_ERRMSG_LEN];
};

/* ---- configuration and providers ---------------------------------------------------------- */

static void http_on_async(uv_async_t *a);

int http_create(uv_loop_t *loop, const struct http_config *cfg, struct http **out)
{
    if (!cfg || !cfg->addr || strlen(cfg->addr) >= sizeof((struct http *)0)->addr ||
        cfg->n_tokens > HTTP_MAX_TOKENS || (cfg->n_tokens && !cfg->tokens))
        return ID_EINVAL;
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return ID_ENOMEM;
    h->loop = loop;
    snprintf(h->addr, sizeof h->addr, "%s", cfg->addr);
    h->publish_ms = cfg->publish_ms ? cfg->publish_ms : 250;
    h->stale_ms = cfg->stale_ms ? cfg->stale_ms : 2000;
    h->max_connections = cfg->max_connections ? cfg->max_connections : 256;
    h->max_per_ip = cfg->max_per_ip ? cfg->max_per_ip : 16;
    h->timeout_s = cfg->timeout_s ? cfg->timeout_s : 10;
    h->header_ms = cfg->header_ms ? cfg->header_ms : 5000;
    h->listen_fd = -1;
    h->max_body = cfg->max_body ? cfg->max_body : HTTP_DEFAULT_MAX_BODY;
    snprintf(h->server_version, sizeof h->server_version, "%s",
             cfg->server_version ? cfg->server_version : "");
    if (cfg->n_tokens)
        memcpy(h->tokens, cfg->tokens, cfg->n_tokens * HTTP_TOKEN_LEN);
    h->n_tokens = cfg->n_tokens;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->conns_lock, NULL);
    pthread_mutex_init(&h->calls_lock, NULL);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_async_init(loop, &h->async, http_on_async);
    h->async.data = h;
    h->handles_open = 2;
    *out = h;
    return 0;
}

static struct http_provider *http_find(struct http *h, const char *section)
{
    for (size_t i = 0; i < h->n_providers; i++)
        if (strcmp(h->providers[i].section, section) == 0)
            return &h->providers[i];
    return NULL;
}

int http_add_provider(struct http *h, const char *section, http_render_fn render, void *ud)
{
    if (!h)
        return 0;
    if (!section || !section[0] || strlen(section) >= HTTP_SECTION_MAX || !render)
        return ID_EINVAL;
    struct http_provider *p = http_find(h, section);
    if (!p) {
        if (ARRAY_RESERVE(h->providers, h->cap_providers, h->n_providers, 1, 8) < 0)
            return ID_ENOMEM;
        p = &h->providers[h->n_providers++];
    }
    memset(p, 0, sizeof *p);
    snprintf(p->section, sizeof p->section, "%s", section);
    p->render = render;
    p->ud = ud;
    return 0;
}

int http_remove_provider(struct http *h, const char *section)
{
    if (!h)
        return 0;
    struct http_provider *p = section ? http_find(h, section) : NULL;
    if (!p)
        return ID_ENOTFOUND;
    size_t i = (size_t)(p - h->providers);
    memmove(p, p + 1, (h->n_providers - i - 1) * sizeof *p);
    h->n_providers--;
    return 0;
}

void http_set_ready_check(struct http *h, http_ready_fn fn, void *ud)
{
    if (!h)
        return;
    h->ready_fn = fn;
    h->ready_ud = ud;
}

int http_port(const struct http *h)
{
    return h ? h->port : 0;
}

const char *http_errmsg(const struct http *h)
{
    return h ? h->errmsg : "";
}

/* ---- rendering and publishing (loop thread) ------------------------------------------------ */

static void http_render_own_metrics(struct http *h, struct prom_out *pm)
{
    prom_family(pm, "idunno_http_requests_total", PROM_COUNTER,
                "HTTP requests answered, by endpoint and status code.");
    for (int r = 0; r < HTTP_ROUTE_COUNT; r++)
        for (int c = 0; c < HTTP_NCODES; c++) {
            uint64_t n = atomic_load_explicit(&h->requests[r][c], memory_order_relaxed);
            if (!n)
                continue;
            char code[8];
            snprintf(code, sizeof code, "%u", http_codes[c]);
            prom_sample_u64(
                pm, PROM_LABELS({"endpoint", http_route_name((enum http_route)r)}, {"code", code}),
                n);
        }
    prom_family(pm, "idunno_http_auth_refused_total", PROM_COUNTER,
                "State-changing requests refused: no bearer token (missing), a wrong one (bad), "
                "or the node has no cluster key (no_key).");
    for (int a = HTTP_AUTH_OK + 1; a < HTTP_AUTH_COUNT; a++)
        prom_sample_u64(pm, PROM_LABELS({"reason", http_auth_name((enum http_auth)a)}),
                        atomic_load_explicit(&h->auth_refused[a], memory_order_relaxed));
    prom_family(pm, "idunno_http_provider_render_seconds", PROM_GAUGE,
                "Loop time the last publish spent in each provider.");
    for (size_t i = 0; i < h->n_providers; i++)
        prom_sample(pm, PROM_LABELS({"section", h->providers[i].section}),
                    (double)h->providers[i].render_us / 1e6);
    prom_gauge(pm, "idunno_http_render_seconds", "Loop time the previous publish took in all.",
               (double)h->render_us / 1e6);
    prom_counter(pm, "idunno_http_slow_connections_cut_total",
                 "Connections cut because their request header did not arrive in time.",
                 atomic_load(&h->slow_cut));
    prom_counter(pm, "idunno_http_publishes_total",
                 "Times the loop published metrics and status for the HTTP thread.", h->publishes);
    prom_counter(pm, "idunno_http_render_failures_total",
                 "Publishes skipped because rendering ran out of memory.", h->render_failures);
}

/* One provider's section: rendered apart, so that a provider that writes
 * nothing, too much or leaves containers open cannot break the document. */
static void http_render_section(struct http *h, struct http_provider *p, struct prom_out *pm,
                                struct json_out *js)
{
    strbuf_reset(&h->scratch);
    struct json_out sj;
    json_out_init(&sj, &h->scratch);
    uint64_t t0 = id_now_us();
    p->render(p->ud, pm, &sj);
    p->render_us = id_now_us() - t0;
    json_out_end_all(&sj);
    unsigned values = json_out_top_count(&sj);
    if (values == 1 && !strbuf_failed(&h->scratch)) {
        json_out_raw(js, p->section, strbuf_str(&h->scratch), h->scratch.len);
    } else if (values > 1) {
        if (!p->warned)
            LOG_WARN("http", "provider '%s' wrote more than one JSON value; its section is null",
                     p->section);
        p->warned = 1;
        json_out_null(js, p->section);
    }
}

static void http_publish(struct http *h)
{
    uint64_t t0 = id_now_us();
    strbuf_reset(&h->next_metrics);
    strbuf_reset(&h->next_status);
    struct prom_out pm;
    prom_out_init(&pm, &h->next_metrics);
    struct json_out js;
    json_out_init(&js, &h->next_status);

    char why[sizeof h->pub.why] = "";
    int ready = h->ready_fn ? h->ready_fn(h->ready_ud, why, sizeof why) : 1;
    json_out_begin_object(&js, NULL);
    json_out_u64(&js, "schema_version", HTTP_STATUS_SCHEMA);
    json_out_u64(&js, "generated_ms", id_wall_ms());
    json_out_begin_object(&js, "ready");
    json_out_bool(&js, "ok", ready);
    json_out_str(&js, "reason", ready ? "" : why);
    json_out_end(&js);
    for (size_t i = 0; i < h->n_providers; i++)
        http_render_section(h, &h->providers[i], &pm, &js);
    json_out_end_all(&js);
    http_render_own_metrics(h, &pm);

    if (strbuf_failed(&h->next_metrics) || strbuf_failed(&h->next_status)) {
        /* Publish nothing: /healthz turns 503 if this goes on. */
        if (h->render_failures++ == 0)
            LOG_WARN("http", "out of memory rendering metrics and status; not published");
        return;
    }
    uint64_t now = id_now_ms();
    pthread_mutex_lock(&h->lock);
    struct strbuf t = h->pub.metrics;
    h->pub.metrics = h->next_metrics;
    h->next_metrics = t;
    t = h->pub.status;
    h->pub.status = h->next_status;
    h->next_status = t;
    h->pub.at_ms = now ? now : 1;
    h->pub.ready = ready;
    snprintf(h->pub.why, sizeof h->pub.why, "%s", why);
    pthread_mutex_unlock(&h->lock);
    h->publishes++;
    h->render_us = id_now_us() - t0;
}

void http_publish_now(struct http *h)
{
    if (h)
        http_publish(h);
}

/* ---- the header deadline (HTTP thread: notifications; loop: the cut) ------------------------- */

static void http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                               enum MHD_ConnectionNotificationCode toe)
{
    struct http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
            conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct http_conn *c = ci ? calloc(1, sizeof *c) : NULL;
        *socket_context = c;
        if (!c)
            return; /* untracked: only the idle timeout applies to it */
        c->fd = ci->connect_fd;
        c->waiting_since_ms = id_now_ms();
        pthread_mutex_lock(&h->conns_lock);
        c->next = h->conns;
        if (h->conns)
            h->conns->prev = c;
        h->conns = c;
        pthread_mutex_unlock(&h->conns_lock);
        return;
    }
    /* Closed: libmicrohttpd notifies before it closes the socket, so the
     * loop never shuts down a descriptor that has been reused. */
    struct http_conn *c = *socket_context;
    if (!c)
        return;
    pthread_mutex_lock(&h->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&h->conns_lock);
    free(c);
    *socket_context = NULL;
}

/* Sets when the connection of `conn` started waiting for a header (0: it has
 * one and is being answered). */
static void http_conn_waiting(struct http *h, struct MHD_Connection *conn, uint64_t since)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
        conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct http_conn *c = ci ? ci->socket_context : NULL;
    if (!c)
        return;
    pthread_mutex_lock(&h->conns_lock);
    c->waiting_since_ms = since;
    pthread_mutex_unlock(&h->conns_lock);
}

/* An answer was sent (or the request ended): the next header's deadline runs. */
static void http_call_free(struct http_call *c)
{
    free(c->body);
    free(c->resp);
    free(c);
}

static void http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    struct http *h = cls;
    struct http_call *c = *con_cls;
    *con_cls = NULL;
    if (c) {
        pthread_mutex_lock(&h->calls_lock);
        c->mhd_done = 1;
        int done = c->loop_done;
        pthread_mutex_unlock(&h->calls_lock);
        if (done)
            http_call_free(c);
    }
    http_conn_waiting(h, conn, id_now_ms());
}

/* Loop thread, every tick: cuts connections past their header deadline. */
static void http_cut_slow(struct http *h)
{
    uint64_t now = id_now_ms();
    pthread_mutex_lock(&h->conns_lock);
    for (struct http_conn *c = h->conns; c; c = c->next) {
        if (c->cut || !c->waiting_since_ms || now - c->waiting_since_ms < h->header_ms)
            continue;
        shutdown(c->fd, SHUT_RDWR);
        c->cut = 1;
        atomic_fetch_add(&h->slow_cut, 1);
    }
    pthread_mutex_unlock(&h->conns_lock);
}

uint64_t http_slow_cut(const struct http *h)
{
    return h ? atomic_load(&h->slow_cut) : 0;
}

static void http_on_tick(uv_timer_t *t)
{
    http_cut_slow(t->data);
    http_publish(t->data);
}

/* ---- serving (HTTP thread) ------------------------------------------------------------------ */

static int http_code_index(unsigned status)
{
    for (int c = 0; c < HTTP_NCODES; c++)
        if (http_codes[c] == status)
            return c;
    return HTTP_C500;
}

/* Queues a response. `body` is copied (MHD_RESPMEM_MUST_COPY), taken
 * (MUST_FREE: freed here on failure) or static (PERSISTENT). */
static enum MHD_Result http_reply(struct http *h, struct MHD_Connection *conn, enum http_route r,
                                  unsigned status, const char *type, const char *body, size_t len,
                                  enum MHD_ResponseMemoryMode mode)
{
    atomic_fetch_add_explicit(&h->requests[r][http_code_index(status)], 1, memory_order_relaxed);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free((void *)body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"idunno\"");
    if (r == HTTP_ROUTE_DASHBOARD && status == MHD_HTTP_OK)
        MHD_add_response_header(resp, "Content-Security-Policy", HTTP_DASHBOARD_CSP);
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result http_reply_text(struct http *h, struct MHD_Connection *conn,
                                       enum http_route r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static enum MHD_Result http_reply_text(struct http *h, struct MHD_Connection *conn,
                                       enum http_route r, unsigned status, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof text)
        n = sizeof text - 1;
    return http_reply(h, conn, r, status, "text/plain; charset=utf-8", text, (size_t)n,
                      MHD_RESPMEM_MUST_COPY);
}

/* A copy of a published document, with the publish time; NULL when out of
 * memory. For /metrics the age of the data is appended, computed now: it is
 * the one figure that must not come from the loop. */
static char *http_copy_published(struct http *h, int metrics, size_t *len, uint64_t *at_ms)
{
    pthread_mutex_lock(&h->lock);
    const struct strbuf *src = metrics ? &h->pub.metrics : &h->pub.status;
    size_t n = src->len;
    char *copy = malloc(n + 256);
    if (copy)
        memcpy(copy, strbuf_str(src), n);
    *at_ms = h->pub.at_ms;
    pthread_mutex_unlock(&h->lock);
    if (copy && metrics) {
        double age = *at_ms ? (double)(id_now_ms() - *at_ms) / 1000.0 : -1;
        n += (size_t)snprintf(copy + n, 256,
                              "# HELP idunno_http_publish_age_seconds Age of these figures: time "
                              "since the loop thread published them.\n"
                              "# TYPE idunno_http_publish_age_seconds gauge\n"
                              "idunno_http_publish_age_seconds %.3f\n",
                              age);
    }
    *len = n;
    return copy;
}

/* The gate in front of every route: reads pass, a state-changing request
 * passes only with a valid bearer token (auth.h). Returns 1 and sets *ret
 * (the refusal queued) when the request is refused, 0 when it may be routed.
 * Routes that change state (the coming POST endpoints) rely on this having
 * run: nothing reaches them unauthenticated. */
static int http_refuse_unauthorized(struct http *h, struct MHD_Connection *conn, enum http_route r,
                                    const char *method, enum MHD_Result *ret)
{
    const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_AUTHORIZATION);
    enum http_auth a = http_auth_check(method, authz, (const uint8_t(*)[HTTP_TOKEN_LEN])h->tokens,
                                       h->n_tokens);
    if (a == HTTP_AUTH_OK)
        return 0;
    atomic_fetch_add_explicit(&h->auth_refused[a], 1, memory_order_relaxed);
    static const char no_key[] =
        "{\"error\":\"no cluster key: state-changing HTTP requests are disabled "
        "(start the node with --key-file)\"}\n";
    static const char missing[] =
        "{\"error\":\"a state-changing request needs Authorization: Bearer TOKEN "
        "(idunno token prints it)\"}\n";
    static const char bad[] = "{\"error\":\"invalid bearer token\"}\n";
    const char *body = a == HTTP_AUTH_NO_KEY ? no_key : a == HTTP_AUTH_MISSING ? missing : bad;
    *ret = http_reply(h, conn, r,
                      a == HTTP_AUTH_NO_KEY ? MHD_HTTP_FORBIDDEN : MHD_HTTP_UNAUTHORIZED,
                      "application/json", body, strlen(body), MHD_RESPMEM_PERSISTENT);
    return 1;
}

/* ---- the Open Inference Protocol (oip.h): /v2 ------------------------------------------------ */

static enum MHD_Result http_reply_json(struct http *h, struct MHD_Connection *conn, unsigned status,
                                       struct strbuf *sb)
{
    if (strbuf_failed(sb)) {
        strbuf_free(sb);
        static const char oom[] = "{\"error\":\"out of memory\"}";
        return http_reply(h, conn, HTTP_ROUTE_V2, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "application/json", oom, sizeof oom - 1, MHD_RESPMEM_PERSISTENT);
    }
    size_t len = sb->len;
    char *body = sb->data; /* taken: freed by libmicrohttpd */
    *sb = (struct strbuf)STRBUF_INIT;
    if (!body)
        return http_reply(h, conn, HTTP_ROUTE_V2, status, "application/json", "", 0,
                          MHD_RESPMEM_PERSISTENT);
    return http_reply(h, conn, HTTP_ROUTE_V2, status, "application/json", body, len,
                      MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result http_reply_oip_error(struct http *h, struct MHD_Connection *conn,
                                            unsigned status, const char *msg)
{
    struct strbuf sb = STRBUF_INIT;
    oip_error(&sb, msg);
    return http_reply_json(h, conn, status, &sb);
}

/* The readiness the loop last published, as /readyz sees it: 1 ready; else
 * 0 with the reason. */
static int http_published_ready(struct http *h, char *why, size_t len)
{
    pthread_mutex_lock(&h->lock);
    uint64_t at = h->pub.at_ms;
    int ready = h->pub.ready;
    snprintf(why, len, "%s", h->pub.why);
    pthread_mutex_unlock(&h->lock);
    uint64_t age = id_now_ms() - at;
    if (!at || age > h->stale_ms) {
        snprintf(why, len, "the event loop last published %llu ms ago",
                 (unsigned long long)(at ? age : 0));
        return 0;
    }
    return ready;
}

/* A decimal header value (Inference-Header-Content-Length, Content-Length):
 * 0 with *out, or -1 if it is not a plain number that fits. */
static int http_header_size(const char *v, size_t *out)
{
    if (!v || !*v || strlen(v) > 19)
        return -1;
    size_t n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (size_t)(*p - '0');
    }
    *out = n;
    return 0;
}

/* The first call for a /v2 request: answered here when the HTTP thread can
 * (health, server metadata, errors), else a call for the loop is started
 * and its body read in the calls that follow. */
static enum MHD_Result http_v2_start(struct http *h, struct MHD_Connection *conn,
                                     const struct oip_target *t, const char *method, void **con_cls)
{
    if (t->route == OIP_NOT_FOUND)
        return http_reply_oip_error(h, conn, MHD_HTTP_NOT_FOUND,
                                    "no such endpoint (docs/http.md lists the /v2 ones)");
    if (!oip_method_ok(t->route, method))
        return http_reply_oip_error(h, conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                    t->route == OIP_INFER ? "use POST" : "use GET");
    struct strbuf sb = STRBUF_INIT;
    char why[256];
    switch (t->route) {
    case OIP_LIVE:
        strbuf_puts(&sb, "{\"live\":true}");
        return http_reply_json(h, conn, MHD_HTTP_OK, &sb);
    case OIP_READY:
        if (http_published_ready(h, why, sizeof why)) {
            strbuf_puts(&sb, "{\"ready\":true}");
            return http_reply_json(h, conn, MHD_HTTP_OK, &sb);
        } else {
            struct json_out j;
            json_out_init(&j, &sb);
            json_out_begin_object(&j, NULL);
            json_out_bool(&j, "ready", 0);
            json_out_str(&j, "error", why);
            json_out_end_all(&j);
            return http_reply_json(h, conn, MHD_HTTP_SERVICE_UNAVAILABLE, &sb);
        }
    case OIP_SERVER:
        oip_server_metadata(&sb, h->server_version);
        return http_reply_json(h, conn, MHD_HTTP_OK, &sb);
    default: break;
    }
    if (!h->call_fn)
        return http_reply_oip_error(h, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                    "this node does not serve models");
    size_t declared = 0, json_len = 0;
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && http_header_size(cl, &declared) == 0 && declared > h->max_body)
        return http_reply_oip_error(h, conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                    "the request body is over this node's limit");
    const char *ih = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 "Inference-Header-Content-Length");
    if (ih && http_header_size(ih, &json_len) < 0)
        return http_reply_oip_error(h, conn, MHD_HTTP_BAD_REQUEST,
                                    "Inference-Header-Content-Length is not a number");
    struct http_call *c = calloc(1, sizeof *c);
    if (!c)
        return http_reply_oip_error(h, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    c->h = h;
    c->conn = conn;
    c->target = *t;
    c->json_len = json_len;
    c->loop_done = 1; /* until the loop is given the call */
    *con_cls = c;
    return MHD_YES;
}

/* The later calls of a /v2 request the loop answers: the body's bytes, then
 * its end (the call goes to the loop, the connection waits), then, once the
 * loop resumed the connection, the answer. */
static enum MHD_Result http_v2_continue(struct http *h, struct MHD_Connection *conn,
                                        struct http_call *c, const char *data, size_t *size)
{
    if (c->state == CALL_READING && *size) {
        size_t n = *size;
        *size = 0;
        if (c->too_big || c->len + n > h->max_body) {
            c->too_big = 1; /* read to the end, kept no more */
            return MHD_YES;
        }
        if (ARRAY_RESERVE(c->body, c->cap, c->len, n, 4096) < 0) {
            c->too_big = 1;
            return MHD_YES;
        }
        memcpy(c->body + c->len, data, n);
        c->len += n;
        return MHD_YES;
    }
    if (c->state == CALL_READING) {
        if (c->too_big) {
            c->state = CALL_SENT;
            return http_reply_oip_error(h, conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                        "the request body is over this node's limit");
        }
        /* Suspended before the loop can see it, and never under our lock:
         * libmicrohttpd's own locks are taken inside. */
        MHD_suspend_connection(conn);
        pthread_mutex_lock(&h->calls_lock);
        c->state = CALL_QUEUED;
        c->loop_done = 0;
        c->next = h->inbox;
        h->inbox = c;
        pthread_mutex_unlock(&h->calls_lock);
        uv_async_send(&h->async);
        return MHD_YES;
    }
    pthread_mutex_lock(&h->calls_lock);
    int answered = c->state == CALL_ANSWERED;
    char *resp = answered ? c->resp : NULL;
    if (answered) {
        c->state = CALL_SENT;
        c->resp = NULL;
    }
    pthread_mutex_unlock(&h->calls_lock);
    if (!answered)
        return MHD_YES;
    if (!resp)
        return http_reply_oip_error(h, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return http_reply(h, conn, HTTP_ROUTE_V2, c->status, c->ctype, resp, c->resp_len,
                      MHD_RESPMEM_MUST_FREE);
}

/* ---- the loop's side of the calls ------------------------------------------------------------ */

static void http_live_remove(struct http *h, struct http_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (h->live == c)
        h->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

/* Takes the calls the HTTP thread handed over (oldest first) and gives them
 * to the handler. */
static void http_on_async(uv_async_t *a)
{
    struct http *h = a->data;
    pthread_mutex_lock(&h->calls_lock);
    struct http_call *in = h->inbox;
    h->inbox = NULL;
    pthread_mutex_unlock(&h->calls_lock);
    struct http_call *fifo = NULL;
    while (in) { /* newest first: reverse */
        struct http_call *next = in->next;
        in->next = fifo;
        fifo = in;
        in = next;
    }
    while (fifo) {
        struct http_call *c = fifo;
        fifo = c->next;
        c->prev = NULL;
        c->next = h->live;
        if (h->live)
            h->live->prev = c;
        h->live = c;
        static const char none[] = "{\"error\":\"this node does not serve models\"}";
        if (h->call_fn)
            h->call_fn(h->call_ud, c);
        else
            http_call_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", none,
                            sizeof none - 1);
    }
}

void http_set_call_handler(struct http *h, http_call_fn fn, void *ud)
{
    if (!h)
        return;
    h->call_fn = fn;
    h->call_ud = ud;
}

const struct oip_target *http_call_target(const struct http_call *c)
{
    return &c->target;
}

const uint8_t *http_call_body(const struct http_call *c, size_t *len, size_t *json_len)
{
    *len = c->len;
    *json_len = c->json_len;
    return c->body;
}

void http_call_reply(struct http_call *c, unsigned status, const char *content_type,
                     const char *body, size_t len)
{
    struct http *h = c->h;
    if (!h) {
        /* The endpoint stopped meanwhile and answered the client itself. */
        c->loop_done = 1;
        if (c->mhd_done)
            http_call_free(c);
        return;
    }
    http_live_remove(h, c);
    char *copy = malloc(len ? len : 1);
    if (copy && len)
        memcpy(copy, body, len);
    struct MHD_Connection *conn = c->conn;
    pthread_mutex_lock(&h->calls_lock);
    c->status = status;
    c->resp = copy;
    c->resp_len = copy ? len : 0;
    snprintf(c->ctype, sizeof c->ctype, "%s", content_type);
    c->state = CALL_ANSWERED;
    c->loop_done = 1;
    pthread_mutex_unlock(&h->calls_lock);
    /* The connection stays suspended until this, so the HTTP thread cannot
     * complete the request and free the call before: c is not touched after. */
    MHD_resume_connection(conn);
}

static enum MHD_Result http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_data_size,
                                       void **con_cls)
{
    (void)version;
    struct http *h = cls;
    if (*con_cls)
        return http_v2_continue(h, conn, *con_cls, upload_data, upload_data_size);
    http_conn_waiting(h, conn, 0); /* its header is complete */
    struct oip_target t;
    enum http_route r = oip_parse_path(url, &t) != OIP_NONE ? HTTP_ROUTE_V2 : http_route_match(url);
    enum MHD_Result refused;
    if (http_refuse_unauthorized(h, conn, r, method, &refused))
        return refused;
    if (r == HTTP_ROUTE_V2)
        return http_v2_start(h, conn, &t, method, con_cls);
    if (r == HTTP_ROUTE_NONE)
        return http_reply_text(h, conn, r, MHD_HTTP_NOT_FOUND,
                               "not found: try /, /metrics, /healthz, /readyz or /api/status\n");
    if (!http_method_ok(method))
        return http_reply_text(h, conn, r, MHD_HTTP_METHOD_NOT_ALLOWED,
                               "method not allowed: use GET\n");
    if (r == HTTP_ROUTE_DASHBOARD)
        return http_reply(h, conn, r, MHD_HTTP_OK, "text/html; charset=utf-8", http_dashboard_html,
                          http_dashboard_len, MHD_RESPMEM_PERSISTENT);
    if (r == HTTP_ROUTE_METRICS || r == HTTP_ROUTE_STATUS) {
        size_t len;
        uint64_t at;
        char *doc = http_copy_published(h, r == HTTP_ROUTE_METRICS, &len, &at);
        if (!doc)
            return http_reply_text(h, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return http_reply(h, conn, r, MHD_HTTP_OK,
                          r == HTTP_ROUTE_METRICS ? "text/plain; version=0.0.4; charset=utf-8"
                                                  : "application/json",
                          doc, len, MHD_RESPMEM_MUST_FREE);
    }
    /* healthz, readyz */
    pthread_mutex_lock(&h->lock);
    uint64_t at = h->pub.at_ms;
    int ready = h->pub.ready;
    char why[sizeof h->pub.why];
    memcpy(why, h->pub.why, sizeof why);
    pthread_mutex_unlock(&h->lock);
    uint64_t age = id_now_ms() - at;
    if (!at || age > h->stale_ms)
        return http_reply_text(h, conn, r, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "unhealthy: the event loop last published %llu ms ago "
                               "(limit %u ms)\n",
                               (unsigned long long)(at ? age : 0), h->stale_ms);
    if (r == HTTP_ROUTE_HEALTHZ)
        return http_reply_text(h, conn, r, MHD_HTTP_OK, "ok\n");
    if (!ready)
        return http_reply_text(h, conn, r, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s\n", why);
    return http_reply_text(h, conn, r, MHD_HTTP_OK, "ready\n");
}

static void http_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    LOG_WARN("http", "libmicrohttpd: %s", line);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

/* HOST:PORT into a sockaddr; port 0 is allowed (any free port). */
static int http_parse_addr(const char *addr, struct sockaddr_storage *sa)
{
    const char *colon = strrchr(addr, ':');
    if (colon && strcmp(colon, ":0") == 0) {
        char tmp[80];
        snprintf(tmp, sizeof tmp, "%.*s:1", (int)(colon - addr), addr);
        if (net_parse_addr(tmp, sa) < 0)
            return ID_EINVAL;
        if (sa->ss_family == AF_INET)
            ((struct sockaddr_in *)sa)->sin_port = 0;
        else
            ((struct sockaddr_in6 *)sa)->sin6_port = 0;
        return 0;
    }
    return net_parse_addr(addr, sa);
}

static int http_listen(struct http *h)
{
    struct sockaddr_storage sa;
    if (http_parse_addr(h->addr, &sa) < 0) {
        snprintf(h->errmsg, sizeof h->errmsg, "HTTP address '%s' is not HOST:PORT", h->addr);
        return ID_EINVAL;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t salen = sa.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                              : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, 64) < 0)
        goto fail;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) < 0)
        goto fail;
    h->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                               : ((struct sockaddr_in6 *)&bound)->sin6_port);
    h->listen_fd = fd;
    return 0;
fail:;
    int err = errno;
    if (fd >= 0)
        close(fd);
    snprintf(h->errmsg, sizeof h->errmsg, "cannot listen for HTTP on %s: %s", h->addr,
             strerror(err));
    return id_from_errno(err);
}

int http_start(struct http *h)
{
    int rc = http_listen(h);
    if (rc < 0)
        return rc;
    /* Something to serve from the first request on. */
    http_publish(h);
    /* The HTTP thread inherits a mask with every signal blocked: signals are
     * the loop thread's business. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    h->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG |
            MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO,
        0, NULL, NULL, http_on_request, h, MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, h->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)h->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)h->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)h->timeout_s,
        MHD_OPTION_NOTIFY_CONNECTION, http_on_connection, h, MHD_OPTION_NOTIFY_COMPLETED,
        http_on_completed, h, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
        MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->mhd) {
        close(h->listen_fd);
        h->listen_fd = -1;
        snprintf(h->errmsg, sizeof h->errmsg, "cannot start the HTTP server on %s", h->addr);
        return ID_EIO;
    }
    h->listen_fd = -1; /* libmicrohttpd owns and closes it */
    uv_timer_start(&h->timer, http_on_tick, h->publish_ms, h->publish_ms);
    return 0;
}

static void http_on_closed(uv_handle_t *handle)
{
    struct http *h = handle->data;
    if (--h->handles_open > 0)
        return;
    strbuf_free(&h->next_metrics);
    strbuf_free(&h->next_status);
    strbuf_free(&h->scratch);
    strbuf_free(&h->pub.metrics);
    strbuf_free(&h->pub.status);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->conns_lock);
    pthread_mutex_destroy(&h->calls_lock);
    free(h->providers);
    free(h);
}

/* Before the HTTP thread stops: every request waiting for the loop is
 * answered 503 and its connection resumed (libmicrohttpd cannot stop with
 * suspended connections); the loop's holder of each call still replies
 * later, to a call that no longer names the endpoint. */
static void http_cancel_one(struct http *h, struct http_call *c, int loop_holds)
{
    static const char gone[] = "{\"error\":\"the node is stopping\"}";
    char *copy = strdup(gone);
    pthread_mutex_lock(&h->calls_lock);
    c->status = MHD_HTTP_SERVICE_UNAVAILABLE;
    c->resp = copy;
    c->resp_len = copy ? sizeof gone - 1 : 0;
    snprintf(c->ctype, sizeof c->ctype, "application/json");
    c->state = CALL_ANSWERED;
    c->h = NULL;
    c->loop_done = !loop_holds; /* else its holder's reply frees it */
    c->next = c->prev = NULL;
    struct MHD_Connection *conn = c->conn;
    pthread_mutex_unlock(&h->calls_lock);
    MHD_resume_connection(conn);
}

static void http_cancel_calls(struct http *h)
{
    pthread_mutex_lock(&h->calls_lock);
    struct http_call *in = h->inbox;
    h->inbox = NULL;
    pthread_mutex_unlock(&h->calls_lock);
    for (struct http_call *c = in, *next; c; c = next) {
        next = c->next;
        http_cancel_one(h, c, 0); /* never given to the loop */
    }
    for (struct http_call *c = h->live, *next; c; c = next) {
        next = c->next;
        http_cancel_one(h, c, 1);
    }
    h->live = NULL;
}

void http_destroy(struct http *h)
{
    if (!h)
        return;
    if (h->mhd) {
        http_cancel_calls(h);
        MHD_stop_daemon(h->mhd); /* joins the HTTP thread */
    }
    h->mhd = NULL;
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    h->listen_fd = -1;
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, http_on_closed);
    uv_close((uv_handle_t *)&h->async, http_on_closed);
}
