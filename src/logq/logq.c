/* logq.c — the node side of `idunno grep`.
 *
 * A client sends MSG_GREP_REQ to any node. That node sends MSG_GREP_LOCAL_REQ to
 * every live member (itself included), each of which searches its own log on a
 * worker thread and answers with its matches and exact count. The fan-out waits
 * for each member at most the request's timeout, then reports the missing ones by
 * name instead of waiting for them forever.
 */
#include "logq/logq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "idunno.pb-c.h"
#include "logq/grep.h"
#include "net/net.h"

#define LOGQ_DEFAULT_MAX_LINES 10000
#define LOGQ_DEFAULT_TIMEOUT_MS 3000

struct logq {
    uv_loop_t *loop;
    struct net *net;
    logq_peers_fn peers_fn;
    void *peers_ud;
    char name[64];
    char log_path[600];
};

/* ---- local search, on a worker thread ------------------------------------------- */

struct local_job {
    uv_work_t work;
    struct logq *q;
    struct net_request *req;
    struct grep_query query;
    char *pattern;
    int status;
    char errmsg[256];
    struct grep_output out;
};

static void local_work(uv_work_t *w)
{
    struct local_job *j = w->data;
    struct grep_matcher m;
    j->status = grep_compile(&m, &j->query, j->errmsg, sizeof j->errmsg);
    if (j->status < 0)
        return;
    j->status = grep_file(&m, j->q->log_path, &j->out);
    if (j->status < 0)
        snprintf(j->errmsg, sizeof j->errmsg, "cannot read %s: %s", j->q->log_path,
                 id_strerror(j->status));
    grep_matcher_free(&m);
}

static void local_done(uv_work_t *w, int status)
{
    (void)status;
    struct local_job *j = w->data;
    Idunno__GrepNodeResult r = IDUNNO__GREP_NODE_RESULT__INIT;
    r.node = j->q->name;
    r.addr = (char *)net_addr(j->q->net);
    if (j->status < 0) {
        r.error = j->errmsg;
    } else {
        r.count = j->out.count;
        r.n_lines = j->out.n_lines;
        r.lines = j->out.lines;
        r.truncated = j->out.truncated;
    }
    net_reply_pb(j->req, IDUNNO__MSG_TYPE__MSG_GREP_LOCAL_RESP, &r.base);
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
    idunno__grep_request__free_unpacked(g, NULL);
    j->work.data = j;
    if (uv_queue_work(q->loop, &j->work, local_work, local_done) < 0) {
        net_reply_error(req, ID_EINTERNAL, "cannot queue the search", NULL);
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
    char error[200];
};

struct fanout {
    struct net_request *req;
    size_t n, pending;
    struct fanout_peer peers[];
};

static void fanout_finish(struct fanout *f)
{
    Idunno__GrepResult res = IDUNNO__GREP_RESULT__INIT;
    Idunno__GrepNodeResult *rows = calloc(f->n, sizeof *rows);
    Idunno__GrepNodeResult **ptrs = calloc(f->n, sizeof *ptrs);
    if (!rows || !ptrs) {
        net_reply_error(f->req, ID_ENOMEM, NULL, NULL);
        goto out;
    }
    for (size_t i = 0; i < f->n; i++) {
        struct fanout_peer *p = &f->peers[i];
        if (p->result) {
            ptrs[i] = p->result;
            p->result->node = p->name; /* the member's name, as the client knows it */
            res.total += p->result->count;
        } else {
            idunno__grep_node_result__init(&rows[i]);
            rows[i].node = p->name;
            rows[i].addr = p->addr;
            rows[i].error = p->error;
            ptrs[i] = &rows[i];
        }
    }
    res.n_nodes = f->n;
    res.nodes = ptrs;
    if (net_reply_pb(f->req, IDUNNO__MSG_TYPE__MSG_GREP_RESP, &res.base) == ID_ETOOBIG)
        LOG_WARN("logq", "grep result too large to send");
out:
    for (size_t i = 0; i < f->n; i++) {
        if (f->peers[i].result) {
            f->peers[i].result->node = NULL; /* not ours to free twice */
            idunno__grep_node_result__free_unpacked(f->peers[i].result, NULL);
        }
    }
    free(rows);
    free(ptrs);
    free(f);
}

static void on_peer_answer(void *ud, const struct net_result *r)
{
    struct fanout_peer *p = ud;
    struct fanout *f = p->f;
    if (r->status == 0) {
        p->result = idunno__grep_node_result__unpack(NULL, r->len, r->body);
        if (!p->result)
            snprintf(p->error, sizeof p->error, "malformed answer");
        else if (p->result->node) {
            /* keep our own copy of the name; the unpacked one is replaced */
            free(p->result->node);
            p->result->node = NULL;
        }
    } else if (r->status == ID_ETIMEDOUT) {
        snprintf(p->error, sizeof p->error, "unreachable: no answer in time");
    } else {
        snprintf(p->error, sizeof p->error, "unreachable: %s", r->errmsg ? r->errmsg : id_strerror(r->status));
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
    char errmsg[256];
    struct grep_matcher m;
    struct grep_query gq = {.pattern = g->pattern, .ignore_case = g->ignore_case, .extended = g->extended};
    if (grep_compile(&m, &gq, errmsg, sizeof errmsg) < 0) {
        idunno__grep_request__free_unpacked(g, NULL);
        net_reply_error(req, ID_EINVAL, errmsg, NULL);
        return;
    }
    grep_matcher_free(&m);

    struct logq_peer *views = calloc(LOGQ_MAX_PEERS, sizeof *views);
    size_t nv = 0;
    if (views && q->peers_fn)
        nv = q->peers_fn(q->peers_ud, views, LOGQ_MAX_PEERS);
    else if (views) {
        snprintf(views[0].name, sizeof views[0].name, "%s", q->name);
        snprintf(views[0].addr, sizeof views[0].addr, "%s", net_addr(q->net));
        nv = 1;
    }
    struct fanout *f = views ? calloc(1, sizeof *f + nv * sizeof f->peers[0]) : NULL;
    if (!f) {
        free(views);
        idunno__grep_request__free_unpacked(g, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    f->req = req;
    uint32_t timeout = g->timeout_ms ? g->timeout_ms : LOGQ_DEFAULT_TIMEOUT_MS;
    for (size_t i = 0; i < nv; i++) {
        struct fanout_peer *p = &f->peers[f->n++];
        p->f = f;
        snprintf(p->name, sizeof p->name, "%s", views[i].name);
        snprintf(p->addr, sizeof p->addr, "%s", views[i].addr);
    }
    free(views);
    f->pending = f->n;
    for (size_t i = 0; i < f->n; i++) {
        struct fanout_peer *p = &f->peers[i];
        int rc = net_call_pb(q->net, p->addr, IDUNNO__MSG_TYPE__MSG_GREP_LOCAL_REQ, &g->base, timeout,
                             on_peer_answer, p);
        if (rc < 0) {
            snprintf(p->error, sizeof p->error, "unreachable: %s", id_strerror(rc));
            f->pending--;
        }
    }
    idunno__grep_request__free_unpacked(g, NULL);
    if (f->pending == 0)
        fanout_finish(f);
}

int logq_create(uv_loop_t *loop, struct net *net, const char *node_name, const char *log_path,
                struct logq **out)
{
    struct logq *q = calloc(1, sizeof *q);
    if (!q)
        return ID_ENOMEM;
    q->loop = loop;
    q->net = net;
    snprintf(q->name, sizeof q->name, "%s", node_name);
    snprintf(q->log_path, sizeof q->log_path, "%s", log_path);
    int rc = net_on_request(net, IDUNNO__MSG_TYPE__MSG_GREP_REQ, on_grep, q);
    if (rc == 0)
        rc = net_on_request(net, IDUNNO__MSG_TYPE__MSG_GREP_LOCAL_REQ, on_grep_local, q);
    if (rc < 0) {
        free(q);
        return rc;
    }
    *out = q;
    return 0;
}

void logq_set_peers(struct logq *q, logq_peers_fn fn, void *ud)
{
    q->peers_fn = fn;
    q->peers_ud = ud;
}

void logq_destroy(struct logq *q) { free(q); }
