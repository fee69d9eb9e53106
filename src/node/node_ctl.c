/* node_ctl.c — the node's control plane (see node_ctl.h): voters, start-up and
 * bootstrap, forwarding, and the handlers of `idunno status`, `ctl-put` and
 * `ctl-get`. The diagnostic kv requests run on the leader: a put is a proposed
 * command, a get waits for a read barrier so it sees every acknowledged put. */
#include "node/node_ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "base/clock.h"
#include "base/log.h"
#include "ctl/ctl.h"
#include "ctl/forward.h"
#include "ctl/kv.h"
#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "net/seal.h"
#include "node/node.h"
#include "sched/jobs.h"
#include "sdfs/catalog.h"

#define NODE_CTL_RETRY_MS 100
#define NODE_CTL_WAIT_LOG_MS 5000
#define NODE_CTL_PROBE_MS 1000

/* ---- voters ----------------------------------------------------------------------------------- */

static int node_ctl_name_ok(const char *s)
{
    if (!*s || strlen(s) >= CTL_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

int node_ctl_parse_voters(const char *spec, const char *self_name, const char *self_addr,
                          struct ctl_voter *out, size_t max, char *errmsg, size_t errlen)
{
    char copy[512];
    snprintf(copy, sizeof copy, "%s", spec);
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max) {
            snprintf(errmsg, errlen, "--coordinators names 1, 3 or 5 voters");
            return ID_EINVAL;
        }
        char *at = strchr(tok, '@');
        if (at)
            *at = 0;
        if (!node_ctl_name_ok(tok)) {
            snprintf(errmsg, errlen, "--coordinators: '%s' is not a node name", tok);
            return ID_EINVAL;
        }
        memset(&out[n], 0, sizeof out[n]);
        snprintf(out[n].name, sizeof out[n].name, "%s", tok);
        if (at) {
            struct sockaddr_storage sa;
            if (net_parse_addr(at + 1, &sa) < 0 || strlen(at + 1) >= CTL_ADDR_MAX) {
                snprintf(errmsg, errlen, "--coordinators: '%s' is not HOST:PORT", at + 1);
                return ID_EINVAL;
            }
            snprintf(out[n].addr, sizeof out[n].addr, "%s", at + 1);
        } else if (strcmp(tok, self_name) == 0) {
            snprintf(out[n].addr, sizeof out[n].addr, "%s", self_addr);
        }
        for (size_t k = 0; k < n; k++) {
            if (strcmp(out[k].name, out[n].name) == 0 ||
                ctl_id_of(out[k].name) == ctl_id_of(out[n].name)) {
                snprintf(errmsg, errlen, "--coordinators names %s twice", tok);
                return ID_EINVAL;
            }
        }
        n++;
    }
    if (n != 1 && n != 3 && n != 5) {
        snprintf(errmsg, errlen, "--coordinators names 1, 3 or 5 voters (got %zu)", n);
        return ID_EINVAL;
    }
    return (int)n;
}

static int node_ctl_is_voter(const struct node *node)
{
    for (size_t i = 0; i < node->nc.n_voters; i++)
        if (strcmp(node->nc.voters[i].name, node->cfg.name) == 0)
            return 1;
    return 0;
}

/* Fills in voters' addresses from membership; returns how many are still
 * unknown, naming them in missing. */
static size_t node_ctl_resolve(struct node *node, char *missing, size_t len)
{
    struct member_view views[256];
    size_t nv = member_snapshot(node->member, views, 256);
    if (nv > 256)
        nv = 256;
    size_t unknown = 0;
    missing[0] = 0;
    for (size_t i = 0; i < node->nc.n_voters; i++) {
        struct ctl_voter *v = &node->nc.voters[i];
        if (v->addr[0])
            continue;
        uint64_t best = 0;
        for (size_t k = 0; k < nv; k++)
            if (views[k].state == MEMBER_ALIVE && strcmp(views[k].name, v->name) == 0 &&
                views[k].incarnation >= best) {
                best = views[k].incarnation;
                snprintf(v->addr, sizeof v->addr, "%s", views[k].addr);
            }
        if (!v->addr[0]) {
            size_t used = strlen(missing);
            snprintf(missing + used, len - used, "%s%s", unknown ? ", " : "", v->name);
            unknown++;
        }
    }
    return unknown;
}

/* ---- start-up ---------------------------------------------------------------------------------- */

static void node_ctl_try_start(struct node *node)
{
    if (node->nc.started || node->stopping)
        return;
    if (ctl_needs_bootstrap(node->ctl) && node_ctl_is_voter(node)) {
        char missing[256];
        if (node_ctl_resolve(node, missing, sizeof missing) > 0) {
            uint64_t now = id_now_ms();
            if (!node->nc.wait_logged || now - node->nc.wait_logged >= NODE_CTL_WAIT_LOG_MS) {
                LOG_INFO("ctl",
                         "first start: waiting to learn the addresses of voters %s "
                         "(from membership) before bootstrapping",
                         missing);
                node->nc.wait_logged = now;
            }
            return;
        }
    }
    int rc = ctl_start(node->ctl, node->nc.voters, node->nc.n_voters);
    if (rc < 0) {
        LOG_ERROR("ctl", "cannot start the control plane: %s", ctl_errmsg(node->ctl));
        node_stop(node, 2);
        return;
    }
    node->nc.started = 1;
    uv_timer_stop(&node->nc.timer);
}

static void node_ctl_on_timer(uv_timer_t *t)
{
    node_ctl_try_start(t->data);
}

/* ---- status ------------------------------------------------------------------------------------- */

/* The name of the node with raft id `id`: a voter or a member whose name hashes
 * to it. */
static const char *node_ctl_name_of(struct node *node, uint64_t id, const char *addr,
                                    const struct member_view *views, size_t nv)
{
    for (size_t i = 0; i < node->nc.n_voters; i++)
        if (ctl_id_of(node->nc.voters[i].name) == id)
            return node->nc.voters[i].name;
    for (size_t k = 0; k < nv; k++)
        if (ctl_id_of(views[k].name) == id || (addr && strcmp(views[k].addr, addr) == 0))
            return views[k].name;
    return "";
}

const char *node_ctl_role_name(int role)
{
    switch (role) {
    case RAFT_VOTER: return "voter";
    case RAFT_STANDBY: return "standby";
    default: return "spare";
    }
}

static void node_ctl_status_local(void *ud, struct net_request *req, const uint8_t *body,
                                  size_t len)
{
    struct node *node = ud;
    Idunno__CtlStatusQuery *q = ctl_req_unpack(req, &idunno__ctl_status_query__descriptor, body,
                                               len, 0);
    if (!q)
        return;
    int want_digest = q->digest;
    idunno__ctl_status_query__free_unpacked(q, NULL);
    struct ctl_view v;
    ctl_view(node->ctl, &v);
    static struct member_view views[256];
    size_t nv = member_snapshot(node->member, views, 256);
    if (nv > 256)
        nv = 256;
    struct ctl_server servers[CTL_MAX_SERVERS];
    size_t ns = ctl_servers(node->ctl, servers, CTL_MAX_SERVERS);
    if (ns > CTL_MAX_SERVERS)
        ns = CTL_MAX_SERVERS;
    Idunno__CtlServer rows[CTL_MAX_SERVERS], *ptrs[CTL_MAX_SERVERS];
    for (size_t i = 0; i < ns; i++) {
        idunno__ctl_server__init(&rows[i]);
        rows[i].name = (char *)node_ctl_name_of(node, servers[i].id, servers[i].node_addr, views,
                                                nv);
        rows[i].addr = servers[i].node_addr;
        rows[i].raft_addr = servers[i].raft_addr;
        rows[i].id = servers[i].id;
        rows[i].role = (char *)node_ctl_role_name(servers[i].role);
        rows[i].leader = servers[i].id == v.leader_id;
        ptrs[i] = &rows[i];
    }
    char digest[2 * SHA256_LEN + 1] = "";
    if (want_digest) /* it serialises the whole state: only when asked */
        ctl_digest_hex(node->ctl, digest);
    Idunno__CtlStatus st = IDUNNO__CTL_STATUS__INIT;
    st.node = node->cfg.name;
    st.state = (char *)ctl_state_name(v.state);
    st.leader = v.leader_id
                    ? (char *)(v.leader_name[0]
                                   ? v.leader_name
                                   : node_ctl_name_of(node, v.leader_id, v.leader_addr, views, nv))
                    : "";
    st.leader_addr = v.leader_addr;
    st.term = v.term;
    st.commit_index = v.commit_index;
    st.applied_index = v.applied_index;
    st.last_index = v.last_index;
    st.n_servers = ns;
    st.servers = ptrs;
    for (size_t k = 0; k < nv; k++)
        st.members_alive += views[k].state == MEMBER_ALIVE;
    st.digest = digest;
    st.applied_commands = v.applied_commands;
    st.voter = v.voter;
    st.leader_since_ms = v.leader_since_ms;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_CTL_STATUS_RESP, &st.base);
}

/* A node in the group answers from its own view; one outside it (a non-voter)
 * asks the leader. */
static void node_ctl_on_status(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct node *node = ud;
    if (node->stopping || !node->ctl) {
        net_reply_error(req, ID_ESHUTDOWN, "node shutting down", NULL);
        return;
    }
    struct ctl_view v;
    ctl_view(node->ctl, &v);
    if (v.voter || v.leader_id)
        node_ctl_status_local(node, req, body, len);
    else
        ctl_forward(node->nc.fwd, req, IDUNNO__MSG_TYPE__MSG_CTL_STATUS_REQ, body, len);
}

/* ---- diagnostic kv --------------------------------------------------------------------------- */

struct kv_op {
    struct node *node;
    struct net_request *req;
    uint16_t type;
    uint8_t *body;
    size_t len;
    char key[KV_MAX_KEY + 1];
};

static struct kv_op *kv_op_new(struct node *node, struct net_request *req, uint16_t type,
                               const uint8_t *body, size_t len)
{
    struct kv_op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->body = malloc(len ? len : 1);
    if (!op->body) {
        free(op);
        return NULL;
    }
    if (len)
        memcpy(op->body, body, len);
    op->node = node;
    op->req = req;
    op->type = type;
    op->len = len;
    return op;
}

static void kv_op_free(struct kv_op *op)
{
    free(op->body);
    free(op);
}

/* This node stopped leading while the request was here: hand it to whoever
 * leads now (the put is idempotent). */
static void kv_op_reforward(struct kv_op *op)
{
    if (op->node->stopping)
        net_reply_error(op->req, ID_ESHUTDOWN, "node shutting down", NULL);
    else
        ctl_forward(op->node->nc.fwd, op->req, op->type, op->body, op->len);
    kv_op_free(op);
}

/* Handles the outcomes shared by put and get: leadership moved (send the request
 * on to the new leader) or a failure (answer it). Returns 1 if op is settled. */
static int kv_op_settled(struct kv_op *op, int status)
{
    if (status == ID_ENOTLEADER) {
        kv_op_reforward(op);
        return 1;
    }
    if (status < 0) {
        net_reply_error(op->req, status, id_strerror(status), NULL);
        kv_op_free(op);
        return 1;
    }
    return 0;
}

static void kv_put_done(void *ud, int status, const uint8_t *result, size_t len)
{
    struct kv_op *op = ud;
    if (kv_op_settled(op, status))
        return;
    Idunno__CtlKvPutResult *r = idunno__ctl_kv_put_result__unpack(NULL, len, result);
    Idunno__CtlKvPutResult out = IDUNNO__CTL_KV_PUT_RESULT__INIT;
    struct ctl_view v;
    ctl_view(op->node->ctl, &v);
    out.revision = r ? r->revision : 0;
    out.term = v.term;
    out.leader = op->node->cfg.name;
    net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_CTL_KV_PUT_RESP, &out.base);
    if (r)
        idunno__ctl_kv_put_result__free_unpacked(r, NULL);
    kv_op_free(op);
}

static void node_ctl_kv_put(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct node *node = ud;
    Idunno__CtlKvPut *p = idunno__ctl_kv_put__unpack(NULL, len, body);
    if (!p) {
        net_reply_error(req, ID_EINVAL, "malformed put", NULL);
        return;
    }
    int bad = !p->key || !p->key[0] || strlen(p->key) > KV_MAX_KEY || p->value.len > KV_MAX_VALUE;
    idunno__ctl_kv_put__free_unpacked(p, NULL);
    if (bad) {
        net_reply_error(req, ID_EINVAL, "keys are 1-256 bytes, values at most 64 KiB", NULL);
        return;
    }
    struct kv_op *op = kv_op_new(node, req, IDUNNO__MSG_TYPE__MSG_CTL_KV_PUT_REQ, body, len);
    if (!op) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    int rc = ctl_propose(node->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT, body, len,
                         kv_put_done, op);
    if (rc == ID_ENOTLEADER) {
        kv_op_reforward(op);
    } else if (rc < 0) {
        net_reply_error(req, rc, id_strerror(rc), NULL);
        kv_op_free(op);
    }
}

static void kv_get_done(void *ud, int status)
{
    struct kv_op *op = ud;
    if (kv_op_settled(op, status))
        return;
    Idunno__CtlKvValue out = IDUNNO__CTL_KV_VALUE__INIT;
    const uint8_t *value;
    size_t n;
    uint64_t rev;
    if (kv_get(ctl_kv(op->node->ctl), op->key, &value, &n, &rev) == 0) {
        out.found = 1;
        out.value.data = (uint8_t *)value;
        out.value.len = n;
        out.revision = rev;
    }
    out.store_revision = kv_revision(ctl_kv(op->node->ctl));
    net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_CTL_KV_GET_RESP, &out.base);
    kv_op_free(op);
}

static void node_ctl_kv_get(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct node *node = ud;
    Idunno__CtlKvGet *g = idunno__ctl_kv_get__unpack(NULL, len, body);
    if (!g || !g->key || !g->key[0] || strlen(g->key) > KV_MAX_KEY) {
        if (g)
            idunno__ctl_kv_get__free_unpacked(g, NULL);
        net_reply_error(req, ID_EINVAL, "keys are 1-256 bytes", NULL);
        return;
    }
    struct kv_op *op = kv_op_new(node, req, IDUNNO__MSG_TYPE__MSG_CTL_KV_GET_REQ, body, len);
    if (!op) {
        idunno__ctl_kv_get__free_unpacked(g, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    snprintf(op->key, sizeof op->key, "%s", g->key);
    idunno__ctl_kv_get__free_unpacked(g, NULL);
    int rc = ctl_read_barrier(node->ctl, kv_get_done, op);
    if (rc == ID_ENOTLEADER) {
        kv_op_reforward(op);
    } else if (rc < 0) {
        net_reply_error(req, rc, id_strerror(rc), NULL);
        kv_op_free(op);
    }
}

/* ---- non-voters learn the leader ----------------------------------------------------------- */

/* A node outside the raft group has no view of its own. Once a second it asks
 * a voter (which answers from its own view) and keeps the leader's address as
 * the forwarding hint and the voter set: requests then go straight to the
 * leader, and list_mem can name the coordinator. */
static void node_ctl_on_probe_reply(void *ud, const struct net_result *res)
{
    struct node *node = ud;
    node->nc.probe_busy = 0;
    if (node->stopping || !node->nc.fwd || res->status != 0)
        return;
    Idunno__CtlStatus *st = idunno__ctl_status__unpack(NULL, res->len, res->body);
    if (!st)
        return;
    if (st->leader_addr[0])
        ctl_fwd_set_hint(node->nc.fwd, st->leader_addr);
    const char *addrs[CTL_MAX_SERVERS];
    size_t n = 0;
    for (size_t i = 0; i < st->n_servers && n < CTL_MAX_SERVERS; i++)
        if (strcmp(st->servers[i]->role, "voter") == 0)
            addrs[n++] = st->servers[i]->addr;
    if (n)
        ctl_fwd_learn_voters(node->nc.fwd, addrs, n);
    idunno__ctl_status__free_unpacked(st, NULL);
}

static void node_ctl_on_replace(uv_timer_t *t)
{
    node_ctl_replace_tick(t->data);
}

void node_ctl_replace_soon(struct node *node)
{
    if (!node->stopping && node->nc.replace_inited)
        uv_timer_start(&node->nc.replace, node_ctl_on_replace, 0, NODE_CTL_REPLACE_TICK_MS);
}

static void node_ctl_on_probe(uv_timer_t *t)
{
    struct node *node = t->data;
    if (node->stopping || !node->ctl || node->nc.probe_busy)
        return;
    struct ctl_view v;
    ctl_view(node->ctl, &v);
    /* A voter that knows its leader needs no help. One that does not may be
     * electing (harmless to ask) or may have been removed from the group while
     * it was down, and then nobody will tell it but this. */
    if (v.voter && v.leader_id)
        return;
    char addrs[2 * CTL_MAX_SERVERS][64];
    size_t n = ctl_fwd_voter_addrs(node->nc.fwd, addrs, 2 * CTL_MAX_SERVERS);
    if (n == 0)
        return;
    const char *target = addrs[node->nc.probe_next++ % n];
    Idunno__Empty e = IDUNNO__EMPTY__INIT;
    if (net_call_pb(node->net, target, IDUNNO__MSG_TYPE__MSG_CTL_STATUS_REQ, &e.base, 500,
                    node_ctl_on_probe_reply, node) == 0)
        node->nc.probe_busy = 1;
}

/* ---- life cycle ------------------------------------------------------------------------------- */

int node_ctl_started(const struct node *node)
{
    return node->nc.started;
}

int node_ctl_start(struct node *node)
{
    const struct node_config *cfg = &node->cfg;
    if (cfg->coordinators[0]) {
        int n = node_ctl_parse_voters(cfg->coordinators, cfg->name, cfg->addr, node->nc.voters,
                                      NODE_MAX_VOTERS, node->errmsg, sizeof node->errmsg);
        if (n < 0)
            return n;
        node->nc.n_voters = (size_t)n;
    } else if (!cfg->join[0]) {
        /* Alone and told of no coordinators: a group of one. */
        snprintf(node->nc.voters[0].name, sizeof node->nc.voters[0].name, "%s", cfg->name);
        snprintf(node->nc.voters[0].addr, sizeof node->nc.voters[0].addr, "%s", cfg->addr);
        node->nc.n_voters = 1;
    } else {
        LOG_WARN("ctl", "no --coordinators: this node can reach the coordinator only through "
                        "voters it already knows (none)");
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/raft", cfg->data_dir);
    struct ctl_config cc = {.name = cfg->name,
                            .node_addr = cfg->addr,
                            .dir = dir,
                            .election_timeout_ms = cfg->election_timeout_ms,
                            .heartbeat_ms = cfg->heartbeat_ms,
                            .snapshot_threshold = cfg->snapshot_every,
                            .snapshot_trailing = cfg->snapshot_every / 2,
                            /* 0 in ctl_config means the default; "the kernel's" is < 0 */
                            .tcp_rto_min_ms = cfg->raft_rto_min_ms == 0  ? -1
                                              : cfg->raft_rto_min_ms < 0 ? 0
                                                                         : cfg->raft_rto_min_ms};
    struct seal_keyring keys;
    if (cfg->key_file[0]) {
        int krc = seal_keyring_load(cfg->key_file, &keys, node->errmsg, sizeof node->errmsg);
        if (krc < 0)
            return krc;
        cc.keys = &keys;
    }
    int rc = ctl_create(node->loop, &cc, &node->ctl);
    if (cc.keys)
        seal_keyring_wipe(&keys); /* the control plane keeps its own copy */
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "cannot create the control plane: %s",
                 id_strerror(rc));
        return rc;
    }
    if (node->catalog)
        rc = ctl_register(node->ctl, &catalog_sm_ops, node->catalog);
    if (rc == 0 && node->jobs)
        rc = ctl_register(node->ctl, &jobs_sm_ops, node->jobs);
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "cannot register a sub-state machine: %s",
                 id_strerror(rc));
        return rc;
    }
    struct ctl_fwd_config fc = {.net = node->net,
                                .ctl = node->ctl,
                                .member = node->member,
                                .self_name = cfg->name,
                                .voters = node->nc.voters,
                                .n_voters = node->nc.n_voters};
    rc = ctl_fwd_create(node->loop, &fc, &node->nc.fwd);
    if (rc == 0)
        rc = ctl_fwd_serve(node->nc.fwd, IDUNNO__MSG_TYPE__MSG_CTL_KV_PUT_REQ, node_ctl_kv_put,
                           node);
    if (rc == 0)
        rc = ctl_fwd_serve(node->nc.fwd, IDUNNO__MSG_TYPE__MSG_CTL_KV_GET_REQ, node_ctl_kv_get,
                           node);
    if (rc == 0)
        rc = ctl_fwd_add(node->nc.fwd, IDUNNO__MSG_TYPE__MSG_CTL_STATUS_REQ, node_ctl_status_local,
                         node);
    if (rc == 0)
        rc = net_on_request(node->net, IDUNNO__MSG_TYPE__MSG_CTL_STATUS_REQ, node_ctl_on_status,
                            node);
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "cannot register control-plane requests: %s",
                 id_strerror(rc));
        return rc;
    }
    uv_timer_init(node->loop, &node->nc.timer);
    node->nc.timer.data = node;
    node->nc.timer_inited = 1;
    uv_timer_init(node->loop, &node->nc.probe);
    node->nc.probe.data = node;
    node->nc.probe_inited = 1;
    uv_timer_start(&node->nc.probe, node_ctl_on_probe, 200, NODE_CTL_PROBE_MS);
    uv_timer_init(node->loop, &node->nc.replace);
    node->nc.replace.data = node;
    node->nc.replace_inited = 1;
    uv_timer_start(&node->nc.replace, node_ctl_on_replace, NODE_CTL_REPLACE_TICK_MS,
                   NODE_CTL_REPLACE_TICK_MS);
    node_ctl_try_start(node);
    if (!node->nc.started && !node->stopping)
        uv_timer_start(&node->nc.timer, node_ctl_on_timer, NODE_CTL_RETRY_MS, NODE_CTL_RETRY_MS);
    return 0;
}

/* The sub-state machines outlive ctl, which applies commands to them until it
 * has closed. */
static void node_ctl_closed(void *ud)
{
    struct node *node = ud;
    catalog_destroy(node->catalog);
    node->catalog = NULL;
    jobs_destroy(node->jobs);
    node->jobs = NULL;
}

void node_ctl_stop(struct node *node)
{
    if (node->nc.timer_inited) {
        uv_timer_stop(&node->nc.timer);
        uv_close((uv_handle_t *)&node->nc.timer, NULL);
        node->nc.timer_inited = 0;
    }
    if (node->nc.replace_inited) {
        uv_timer_stop(&node->nc.replace);
        uv_close((uv_handle_t *)&node->nc.replace, NULL);
        node->nc.replace_inited = 0;
    }
    if (node->nc.probe_inited) {
        uv_timer_stop(&node->nc.probe);
        uv_close((uv_handle_t *)&node->nc.probe, NULL);
        node->nc.probe_inited = 0;
    }
    ctl_fwd_stop(node->nc.fwd);
    if (node->ctl)
        ctl_destroy(node->ctl, node_ctl_closed, node);
    else
        node_ctl_closed(node);
    node->ctl = NULL;
}

void node_ctl_destroy(struct node *node)
{
    ctl_fwd_destroy(node->nc.fwd);
    node->nc.fwd = NULL;
}

const char *node_ctl_role(struct node *node, const char *name, const char *addr)
{
    if (!node->ctl)
        return "";
    struct ctl_view v;
    ctl_view(node->ctl, &v);
    uint64_t id = ctl_id_of(name);
    struct ctl_server servers[CTL_MAX_SERVERS];
    size_t ns = ctl_servers(node->ctl, servers, CTL_MAX_SERVERS);
    if (ns > CTL_MAX_SERVERS)
        ns = CTL_MAX_SERVERS;
    for (size_t i = 0; i < ns; i++) {
        if (servers[i].id != id && strcmp(servers[i].node_addr, addr) != 0)
            continue;
        if (servers[i].id == v.leader_id)
            return "coordinator";
        return servers[i].role == RAFT_VOTER ? "standby" : "";
    }
    if (ns)
        return "";
    /* Outside the group this node knows only the configured voters and the
     * last leader it was told of. */
    for (size_t i = 0; i < node->nc.n_voters; i++) {
        if (strcmp(node->nc.voters[i].name, name) != 0)
            continue;
        const char *hint = node->nc.fwd ? ctl_fwd_leader_hint(node->nc.fwd) : "";
        return hint[0] && strcmp(hint, addr) == 0 ? "coordinator" : "standby";
    }
    return "";
}

const char *node_ctl_server_name(struct node *node, uint64_t id, const char *addr)
{
    static struct member_view views[256];
    size_t nv = node->member ? member_snapshot(node->member, views, 256) : 0;
    if (nv > 256)
        nv = 256;
    return node_ctl_name_of(node, id, addr, views, nv);
}

int node_ctl_leader(struct node *node, char *name, size_t name_len, char *addr, size_t addr_len)
{
    name[0] = addr[0] = 0;
    if (!node->ctl)
        return 0;
    struct ctl_view v;
    ctl_view(node->ctl, &v);
    if (v.leader_id) {
        snprintf(addr, addr_len, "%s", v.leader_addr);
        snprintf(name, name_len, "%s",
                 v.leader_name[0] ? v.leader_name
                                  : node_ctl_server_name(node, v.leader_id, v.leader_addr));
        return 1;
    }
    const char *hint = node->nc.fwd ? ctl_fwd_leader_hint(node->nc.fwd) : "";
    if (v.voter || !hint[0])
        return 0;
    /* Outside the group: the leader a voter last named (node_ctl_on_probe). */
    snprintf(addr, addr_len, "%s", hint);
    snprintf(name, name_len, "%s", node_ctl_server_name(node, 0, hint));
    return 1;
}
