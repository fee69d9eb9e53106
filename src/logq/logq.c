/* logq.c — the node side of `idunno grep`.
 *
 * A client sends MSG_GREP_REQ to any node. That node (the contacted node) sends
 * MSG_GREP_LOCAL_REQ to every peer the peer callback names (itself included),
 * in parallel; each searches its own log on a worker thread and answers with
 * its matching lines and exact count. Searches run on the layer's own small
 * thread pool (workpool.h), never on libuv's, whose threads do SDFS's disk
 * I/O; a search still running when the asking node's timeout has passed
 * stops at its next window of the log. The contacted node waits for each peer at
 * most the request's timeout (3 s by default), then answers the client with
 * every node's result, naming the peers that did not answer instead of waiting
 * for them forever.
 *
 * Sizes are bounded end to end: the contacted node gives each peer a share of
 * one frame (logq_node_budget), the peer keeps at most that many bytes and
 * max_lines lines (counts stay exact and `truncated` says lines were dropped),
 * and logq_merge trims again should a peer ignore its share.
 */
#include "logq/logq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/workpool.h"
#include "idunno.pb-c.h"
#include "logq/grep.h"
#include "logq/merge.h"
#include "logq/strfind.h"
#include "net/frame.h"
#include "net/net.h"

#define LOGQ_DEFAULT_MAX_LINES 10000
#define LOGQ_DEFAULT_MAX_BYTES (1u << 20) /* of lines per node */
#define LOGQ_DEFAULT_TIMEOUT_MS 3000
/* Threads searching this node's log. Searches are CPU-bound and the log is
 * one file: more threads than this only queue behind each other on the
 * cores, and a pool of their own keeps them from libuv's, where SDFS's
 * fsyncs run. */
#define LOGQ_SEARCH_THREADS 2
/* What all nodes' lines together may take in the client's answer: one frame,
 * less room for the per-node fields. */
#define LOGQ_RESULT_LINE_BUDGET (FRAME_MAX_BODY - (1u << 20))

struct logq {
    uv_loop_t *loop;
    struct net *net;
    logq_peers_fn peers_fn;
    void *peers_ud;
    char name[LOGQ_NAME_MAX];
    char addr[LOGQ_ADDR_MAX];
    char log_path[600];
    struct grep_map *log_map; /* the log, kept mapped between searches */
    struct workpool *pool;    /* searches run here, not on libuv's pool */
};

static void logq_free(struct logq *q)
{
    grep_map_close(q->log_map);
    free(q);
}

/* ---- local search, on the search pool --------------------------------------------- */

struct local_job {
    struct workpool_job job; /* first: the pool's callbacks cast back */
    struct logq *q;
    struct net_request *req;
    struct grep_query query;
    char *pattern;
    uint64_t deadline_ms; /* the asking node stops waiting then: so do we */
    int status;
    char errmsg[256];
    struct grep_output out;
};

/* Between windows of the log: stop once nobody waits for the answer. */
static int local_should_stop(void *ud)
{
    struct local_job *j = ud;
    return workpool_job_cancelled(&j->job) || id_now_ms() >= j->deadline_ms;
}

/* Pool thread: touches only the job and the immutable log path. */
static void local_work(struct workpool_job *job)
{
    struct local_job *j = (struct local_job *)job;
    if (local_should_stop(j)) { /* waited in the queue past its deadline */
        j->status = ID_ECANCELED;
        return;
    }
    struct grep_matcher m;
    j->status = grep_compile(&m, &j->query, j->errmsg, sizeof j->errmsg);
    if (j->status < 0)
        return;
    j->status = grep_map_search(j->q->log_map, &m, &j->out);
    if (j->status < 0 && j->status != ID_ECANCELED)
        snprintf(j->errmsg, sizeof j->errmsg, "cannot read %s: %s", j->q->log_path,
                 id_strerror(j->status));
    grep_matcher_free(&m);
}

static void local_done(struct workpool_job *job, int status)
{
    struct local_job *j = (struct local_job *)job;
    struct logq *q = j->q;
    Idunno__GrepNodeResult r = IDUNNO__GREP_NODE_RESULT__INIT;
    r.node = q->name;
    r.addr = q->addr;
    if (status == ID_ECANCELED || j->status == ID_ECANCELED) {
        r.error = workpool_job_cancelled(job)
                      ? "search canceled: the node is shutting down"
                      : "search stopped: it outlasted the request's timeout";
    } else if (j->status < 0) {
        r.error = j->errmsg;
    } else {
        r.count = j->out.count;
        r.n_lines = j->out.n_lines;
        r.lines = j->out.lines;
        r.truncated = j->out.truncated;
    }
    /* After net_destroy the request's connection is gone and this is a no-op. */
    int rc = net_reply_pb(j->req, IDUNNO__MSG_TYPE__MSG_GREP_LOCAL_RESP, &r.base);
    if (rc < 0 && rc != ID_ECLOSED)
        LOG_WARN("logq", "cannot send the search result: %s", id_strerror(rc));
    grep_output_free(&j->out);
    free(j->pattern);
    free(j);
}

static void on_grep_local(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct logq *q = ud;
    Idunno__GrepRequest *g = idunno__grep_request__unpack(NULL, len, body);
    if (!g) {
        net_reply_error(req, ID_EPROTO, "malformed grep request", NULL);
        return;
    }
    struct local_job *j = calloc(1, sizeof *j);
    if (!j || !(j->pattern = strdup(g->pattern))) {
        free(j);
        idunno__grep_request__free_unpacked(g, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    j->q = q;
    j->req = req;
    j->query.pattern = j->pattern;
    j->query.ignore_case = g->ignore_case;
    j->query.extended = g->extended;
    j->query.count_only = g->count_only;
    j->query.max_lines = g->max_lines ? g->max_lines : LOGQ_DEFAULT_MAX_LINES;
    j->query.max_bytes = g->max_bytes && g->max_bytes < LOGQ_RESULT_LINE_BUDGET
                             ? g->max_bytes
                             : LOGQ_DEFAULT_MAX_BYTES;
    j->query.stop = local_should_stop;
    j->query.stop_ud = j;
    j->deadline_ms = id_now_ms() + (g->timeout_ms ? g->timeout_ms : LOGQ_DEFAULT_TIMEOUT_MS);
    idunno__grep_request__free_unpacked(g, NULL);
    if (workpool_submit(q->pool, &j->job, local_work, local_done) < 0) {
        net_reply_error(req, ID_ESHUTDOWN, "cannot queue the search: the node is shutting down",
                        NULL);
        free(j->pattern);
        free(j);
    }
}

/* ---- fan-out ---------------------------------------------------------------------- */

struct fanout;

struct fanout_peer {
    struct fanout *f;
    char name[LOGQ_NAME_MAX];
    char addr[LOGQ_ADDR_MAX];
    Idunno__GrepNodeResult *result; /* unpacked answer, or NULL */
    Idunno__GrepNodeResult failed;  /* the row used when result is NULL */
    char error[200];
};

struct fanout {
    struct net_request *req;
    size_t n, pending;
    struct fanout_peer peers[];
};

static void fanout_finish(struct fanout *f)
{
    Idunno__GrepNodeResult **rows = calloc(f->n ? f->n : 1, sizeof *rows);
    if (!rows) {
        net_reply_error(f->req, ID_ENOMEM, NULL, NULL);
        goto out;
    }
    for (size_t i = 0; i < f->n; i++) {
        struct fanout_peer *p = &f->peers[i];
        if (p->result) {
            rows[i] = p->result;
            p->result->node = p->name; /* the member's name, as the client knows it */
        } else {
            idunno__grep_node_result__init(&p->failed);
            p->failed.node = p->name;
            p->failed.addr = p->addr;
            p->failed.error = p->error;
            rows[i] = &p->failed;
        }
    }
    Idunno__GrepResult res = IDUNNO__GREP_RESULT__INIT;
    res.total = logq_merge(rows, f->n, LOGQ_RESULT_LINE_BUDGET);
    res.n_nodes = f->n;
    res.nodes = rows;
    int rc = net_reply_pb(f->req, IDUNNO__MSG_TYPE__MSG_GREP_RESP, &res.base);
    if (rc < 0 && rc != ID_ECLOSED)
        LOG_WARN("logq", "cannot send the grep result: %s", id_strerror(rc));
out:
    for (size_t i = 0; i < f->n; i++) {
        if (f->peers[i].result) {
            f->peers[i].result->node = NULL; /* ours, not the unpacker's */
            idunno__grep_node_result__free_unpacked(f->peers[i].result, NULL);
        }
    }
    free(rows);
    free(f);
}

static void on_peer_answer(void *ud, const struct net_result *r)
{
    struct fanout_peer *p = ud;
    struct fanout *f = p->f;
    if (r->status == 0) {
        p->result = idunno__grep_node_result__unpack(NULL, r->len, r->body);
        if (!p->result) {
            snprintf(p->error, sizeof p->error, "malformed answer");
        } else {
            /* The name shown is the member's; drop the one it sent. */
            free(p->result->node);
            p->result->node = NULL;
            if (p->result->error && p->result->error[0]) {
                snprintf(p->error, sizeof p->error, "%s", p->result->error);
                idunno__grep_node_result__free_unpacked(p->result, NULL);
                p->result = NULL;
            }
        }
    } else if (r->status == ID_ETIMEDOUT) {
        snprintf(p->error, sizeof p->error, "unreachable: no answer in time");
    } else {
        snprintf(p->error, sizeof p->error, "unreachable: %s",
                 r->errmsg && r->errmsg[0] ? r->errmsg : id_strerror(r->status));
    }
    if (--f->pending == 0)
        fanout_finish(f);
}

static void on_grep(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct logq *q = ud;
    Idunno__GrepRequest *g = idunno__grep_request__unpack(NULL, len, body);
    if (!g) {
        net_reply_error(req, ID_EPROTO, "malformed grep request", NULL);
        return;
    }
    /* A bad pattern is the user's to fix: say so once, not once per node. */
    char errmsg[256];
    struct grep_matcher m;
    struct grep_query gq = {
        .pattern = g->pattern, .ignore_case = g->ignore_case, .extended = g->extended};
    int rc = grep_compile(&m, &gq, errmsg, sizeof errmsg);
    if (rc < 0) {
        idunno__grep_request__free_unpacked(g, NULL);
        net_reply_error(req, rc, errmsg, NULL);
        return;
    }
    grep_matcher_free(&m);

    struct logq_peer *peers = calloc(LOGQ_MAX_PEERS, sizeof *peers);
    size_t np = 0;
    if (peers && q->peers_fn) {
        np = q->peers_fn(q->peers_ud, peers, LOGQ_MAX_PEERS);
    } else if (peers) {
        snprintf(peers[0].name, sizeof peers[0].name, "%s", q->name);
        snprintf(peers[0].addr, sizeof peers[0].addr, "%s", q->addr);
        np = 1;
    }
    struct fanout *f = peers ? calloc(1, sizeof *f + np * sizeof f->peers[0]) : NULL;
    if (!f) {
        free(peers);
        idunno__grep_request__free_unpacked(g, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    f->req = req;
    f->n = np;
    for (size_t i = 0; i < np; i++) {
        f->peers[i].f = f;
        snprintf(f->peers[i].name, sizeof f->peers[i].name, "%s", peers[i].name);
        snprintf(f->peers[i].addr, sizeof f->peers[i].addr, "%s", peers[i].addr);
    }

    /* What each peer may send back, so that all of it fits one answer. */
    g->max_bytes = (uint32_t)logq_node_budget(
        LOGQ_RESULT_LINE_BUDGET, g->max_bytes ? g->max_bytes : LOGQ_DEFAULT_MAX_BYTES, np);
    uint32_t timeout = g->timeout_ms ? g->timeout_ms : LOGQ_DEFAULT_TIMEOUT_MS;
    f->pending = f->n + 1; /* +1: no early finish while calls are still being made */
    for (size_t i = 0; i < f->n; i++) {
        struct fanout_peer *p = &f->peers[i];
        if (peers[i].down[0]) {
            snprintf(p->error, sizeof p->error, "not searched: %s", peers[i].down);
            f->pending--;
            continue;
        }
        rc = net_call_pb(q->net, p->addr, IDUNNO__MSG_TYPE__MSG_GREP_LOCAL_REQ, &g->base, timeout,
                         on_peer_answer, p);
        if (rc < 0) {
            snprintf(p->error, sizeof p->error, "unreachable: %s", id_strerror(rc));
            f->pending--;
        }
    }
    free(peers);
    idunno__grep_request__free_unpacked(g, NULL);
    LOG_DEBUG("logq", "grep fanned out to %zu nodes", f->n);
    if (--f->pending == 0)
        fanout_finish(f);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

int logq_create(uv_loop_t *loop, struct net *net, const char *node_name, const char *log_path,
                struct logq **out)
{
    struct logq *q = calloc(1, sizeof *q);
    if (!q)
        return ID_ENOMEM;
    q->loop = loop;
    q->net = net;
    snprintf(q->name, sizeof q->name, "%s", node_name);
    snprintf(q->addr, sizeof q->addr, "%s", net_addr(net));
    snprintf(q->log_path, sizeof q->log_path, "%s", log_path);
    int rc = grep_map_open(&q->log_map, q->log_path);
    if (rc < 0) {
        free(q);
        return rc;
    }
    rc = workpool_create(loop, "logq-search", LOGQ_SEARCH_THREADS, &q->pool);
    if (rc < 0) {
        logq_free(q);
        return rc;
    }
    rc = net_on_request(net, IDUNNO__MSG_TYPE__MSG_GREP_REQ, on_grep, q);
    if (rc == 0)
        rc = net_on_request(net, IDUNNO__MSG_TYPE__MSG_GREP_LOCAL_REQ, on_grep_local, q);
    if (rc < 0) {
        workpool_destroy(q->pool);
        logq_free(q);
        return rc;
    }
    LOG_INFO("logq", "grep kernel %s, searching %s", strfind_kernel(), q->log_path);
    *out = q;
    return 0;
}

void logq_set_peers(struct logq *q, logq_peers_fn fn, void *ud)
{
    q->peers_fn = fn;
    q->peers_ud = ud;
}

void logq_destroy(struct logq *q)
{
    if (!q)
        return;
    /* Stops the searches (between windows) and answers them as canceled;
     * nothing on the pool points at q afterwards. */
    q->peers_fn = NULL;
    workpool_destroy(q->pool);
    logq_free(q);
}
