/* forward.c — coordinator requests forwarded to the leader (see
 * forward.h). One fwd_op per request in flight, with a timer for retries;
 * the op owns the caller's net_request until it is answered. */
#include "ctl/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "ctl/ctl.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"

#define CTL_FWD_MAX_TYPES 32

struct fwd_type {
    uint16_t type;
    ctl_fwd_handler fn;
    void *ud;
    ctl_fwd_wait_fn wait_of; /* set: a long-running request (ctl_fwd_set_long) */
};

struct fwd_serve_ud {
    struct ctl_fwd *f;
    uint16_t type;
};

struct fwd_op {
    struct ctl_fwd *f;
    struct net_request *req; /* NULL once answered */
    uint16_t type;
    uint8_t *body;
    size_t len;
    uint32_t hops;     /* relays before this node */
    uint64_t deadline; /* monotonic ms */
    unsigned attempt;
    int in_call; /* a net_call is outstanding */
    int closing;
    char avoid[CTL_ADDR_MAX]; /* refused us last time */
    uv_timer_t timer;
    struct fwd_op *prev, *next;
};

struct ctl_fwd {
    uv_loop_t *loop;
    struct net *net;
    struct ctl *ctl;
    struct member *member;
    char self[CTL_NAME_MAX];
    struct ctl_voter *voters;
    size_t n_voters;
    uint32_t wait_ms;
    struct fwd_type types[CTL_FWD_MAX_TYPES];
    size_t n_types;
    struct fwd_serve_ud serve[CTL_FWD_MAX_TYPES]; /* user data of net handlers */
    size_t n_serve;
    char hint[CTL_ADDR_MAX]; /* leader node address from an ENOTLEADER answer */
    /* Voters' node addresses as a voter last reported them (the configuration
     * changes when voters are replaced; --coordinators does not). */
    char learned[CTL_MAX_SERVERS][CTL_ADDR_MAX];
    size_t n_learned;
    struct fwd_op *ops;
    size_t n_closing;  /* released ops whose memory is not freed yet */
    int stopped;       /* new requests are refused */
    int destroy_asked; /* ctl_fwd_destroy() was called */
};

static void fwd_try(struct fwd_op *op);
static int fwd_member_addr(struct ctl_fwd *f, const char *name, char *out, size_t len);

static const struct fwd_type *fwd_find(const struct ctl_fwd *f, uint16_t type)
{
    for (size_t i = 0; i < f->n_types; i++)
        if (f->types[i].type == type)
            return &f->types[i];
    return NULL;
}

const char *ctl_fwd_leader_hint(const struct ctl_fwd *f)
{
    return f->hint;
}

void ctl_fwd_set_hint(struct ctl_fwd *f, const char *leader_addr)
{
    snprintf(f->hint, sizeof f->hint, "%s", leader_addr ? leader_addr : "");
}

void ctl_fwd_learn_voters(struct ctl_fwd *f, const char *const *addrs, size_t n)
{
    f->n_learned = 0;
    for (size_t i = 0; i < n && f->n_learned < CTL_MAX_SERVERS; i++)
        if (addrs[i] && addrs[i][0])
            snprintf(f->learned[f->n_learned++], CTL_ADDR_MAX, "%s", addrs[i]);
}

/* The other voters' node addresses known now: the configured ones (resolved
 * through membership) and those learned from a voter, without duplicates. */
size_t ctl_fwd_voter_addrs(struct ctl_fwd *f, char (*out)[CTL_ADDR_MAX], size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n_voters + f->n_learned && n < max; i++) {
        char addr[CTL_ADDR_MAX];
        if (i < f->n_voters) {
            const struct ctl_voter *cv = &f->voters[i];
            if (strcmp(cv->name, f->self) == 0)
                continue;
            if (cv->addr[0])
                snprintf(addr, sizeof addr, "%s", cv->addr);
            else if (!fwd_member_addr(f, cv->name, addr, sizeof addr))
                continue;
        } else {
            snprintf(addr, sizeof addr, "%s", f->learned[i - f->n_voters]);
        }
        int dup = 0;
        for (size_t k = 0; k < n; k++)
            dup |= strcmp(out[k], addr) == 0;
        if (!dup)
            snprintf(out[n++], CTL_ADDR_MAX, "%s", addr);
    }
    return n;
}

/* ---- op life cycle ------------------------------------------------------------------------ */

static void fwd_maybe_free_self(struct ctl_fwd *f)
{
    if (f->destroy_asked && !f->ops && f->n_closing == 0) {
        free(f->voters);
        free(f);
    }
}

static void fwd_after_timer_closed(uv_handle_t *h)
{
    struct fwd_op *op = h->data;
    struct ctl_fwd *f = op->f;
    free(op->body);
    free(op);
    f->n_closing--;
    fwd_maybe_free_self(f);
}

/* Unlinks and frees op (asynchronously: its timer must close first). An
 * outstanding net_call keeps it alive until its callback. */
static void fwd_release(struct fwd_op *op)
{
    if (op->closing)
        return;
    struct ctl_fwd *f = op->f;
    op->closing = 1;
    if (op->prev)
        op->prev->next = op->next;
    else
        f->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    f->n_closing++;
    uv_timer_stop(&op->timer);
    if (op->in_call)
        return; /* the call's callback closes the timer */
    uv_close((uv_handle_t *)&op->timer, fwd_after_timer_closed);
}

static void fwd_fail(struct fwd_op *op, int code, const char *msg)
{
    if (op->req) {
        const char *hint = op->f->hint[0] ? op->f->hint : NULL;
        net_reply_error(op->req, code, msg, hint);
        op->req = NULL;
    }
    fwd_release(op);
}

static void fwd_on_timer(uv_timer_t *t)
{
    fwd_try(t->data);
}

static void fwd_retry_later(struct fwd_op *op, uint64_t delay_ms)
{
    uv_timer_start(&op->timer, fwd_on_timer, delay_ms, 0);
}

/* ---- choosing where to send ------------------------------------------------------------- */

/* The address of the newest alive member called `name`, if any. */
static int fwd_member_addr(struct ctl_fwd *f, const char *name, char *out, size_t len)
{
    if (!f->member)
        return 0;
    struct member_view views[64];
    size_t n = member_snapshot(f->member, views, 64);
    uint64_t best = 0;
    int found = 0;
    for (size_t i = 0; i < n && i < 64; i++) {
        if (strcmp(views[i].name, name) == 0 && views[i].state == MEMBER_ALIVE &&
            views[i].incarnation >= best) {
            best = views[i].incarnation;
            snprintf(out, len, "%s", views[i].addr);
            found = 1;
        }
    }
    return found;
}

/* Fills target; returns 2 if it is the leader as far as we know, 1 if it is a
 * voter that will relay, 0 to wait. */
static int fwd_pick(struct fwd_op *op, char *target, size_t len)
{
    struct ctl_fwd *f = op->f;
    struct ctl_view v;
    ctl_view(f->ctl, &v);
    if (v.leader_id && v.leader_id != v.id && v.leader_addr[0]) {
        snprintf(target, len, "%s", v.leader_addr);
        return 2;
    }
    if (v.leader_id == v.id)
        return 0; /* we lead but do not serve yet: the start-of-term barrier */
    if (f->hint[0] && strcmp(f->hint, op->avoid) != 0) {
        snprintf(target, len, "%s", f->hint);
        return 2;
    }
    if (v.voter)
        return 0; /* an election is under way; raft will tell us the winner */
    /* A non-voter asks the voters in turn; each relays to the leader it knows. */
    char addrs[2 * CTL_MAX_SERVERS][CTL_ADDR_MAX];
    size_t n = ctl_fwd_voter_addrs(f, addrs, 2 * CTL_MAX_SERVERS);
    for (size_t k = 0; k < n; k++) {
        const char *addr = addrs[(op->attempt + k) % n];
        if (strcmp(addr, op->avoid) == 0 && n > 1)
            continue;
        op->attempt += (unsigned)k + 1;
        snprintf(target, len, "%s", addr);
        return 1;
    }
    return 0;
}

/* ---- forwarding ---------------------------------------------------------------------------- */

static void fwd_on_reply(void *ud, const struct net_result *res)
{
    struct fwd_op *op = ud;
    struct ctl_fwd *f = op->f;
    op->in_call = 0;
    LOG_DEBUG("fwd", "type %u via %s: %s%s%s", op->type, op->avoid,
              res->status ? id_errname(res->status) : "answered",
              res->leader && res->leader[0] ? ", leader hint " : "",
              res->leader ? res->leader : "");
    if (op->closing) {
        /* Released while the call was out (shutdown): finish freeing. */
        uv_close((uv_handle_t *)&op->timer, fwd_after_timer_closed);
        return;
    }
    if (res->status == 0) {
        net_reply(op->req, res->type, res->body, res->len);
        op->req = NULL;
        fwd_release(op);
        return;
    }
    if (res->leader && res->leader[0])
        snprintf(f->hint, sizeof f->hint, "%s", res->leader);
    switch (res->status) {
    case ID_ENOTLEADER:
    case ID_ENOLEADER:
    case ID_ECONNREFUSED:
    case ID_ECLOSED:
    case ID_ETIMEDOUT:
        /* Whoever we asked cannot help now; if it was our hint, forget it. */
        if ((!(res->leader && res->leader[0]) || res->status == ID_ETIMEDOUT) &&
            strcmp(f->hint, op->avoid) == 0)
            f->hint[0] = 0;
        /* A refused connection fails at once: try the next candidate soon. */
        fwd_retry_later(op, res->status == ID_ECONNREFUSED ? 2 : CTL_FWD_RETRY_MS);
        return;
    case ID_ESHUTDOWN:
        if (f->stopped) {
            fwd_fail(op, ID_ESHUTDOWN, "node shutting down");
            return;
        }
        fwd_retry_later(op, CTL_FWD_RETRY_MS);
        return;
    default:
        /* The leader's own answer (a rejected command, a missing key...). */
        if (op->req) {
            net_reply_error(op->req, res->status, res->errmsg, res->leader);
            op->req = NULL;
        }
        fwd_release(op);
    }
}

static void fwd_try(struct fwd_op *op)
{
    struct ctl_fwd *f = op->f;
    if (op->closing || !op->req)
        return;
    const struct fwd_type *t = fwd_find(f, op->type);
    if (ctl_is_serving(f->ctl) && t) {
        struct net_request *req = op->req;
        op->req = NULL;
        t->fn(t->ud, req, op->body, op->len);
        fwd_release(op);
        return;
    }
    uint64_t now = id_now_ms();
    if (now >= op->deadline) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "no coordinator: the control plane has no leader (waited %.1f s); try again",
                 (double)f->wait_ms / 1000.0);
        fwd_fail(op, ID_ENOLEADER, msg);
        return;
    }
    char target[CTL_ADDR_MAX];
    int kind = fwd_pick(op, target, sizeof target);
    if (!kind) {
        fwd_retry_later(op, CTL_FWD_RETRY_MS);
        return;
    }
    uint64_t remaining = op->deadline - now;
    /* A leader answers in milliseconds; one that does not may be cut off with
     * its packets dropped, so don't spend the whole budget on it. A relaying
     * voter may have to wait for an election (well under a second), but may be
     * cut off itself: it gets longer, not everything. */
    uint64_t cap = kind == 2 ? CTL_FWD_LEADER_TIMEOUT_MS : CTL_FWD_RELAY_TIMEOUT_MS;
    /* A long-running request's attempt waits longer for its answer (its run
     * takes time), not forever: a leader or relay cut off must not hold it
     * past its deadline. The leader runs a repeat once (ctl_fwd_set_long). */
    if (t && t->wait_of)
        cap = CTL_FWD_LONG_ATTEMPT_MS;
    uint64_t attempt_ms = remaining > cap ? cap : remaining;
    Idunno__CtlForward m = IDUNNO__CTL_FORWARD__INIT;
    m.type = op->type;
    m.body.data = op->body;
    m.body.len = op->len;
    m.hops = op->hops + 1;
    /* The relay gives up in time to answer us before this attempt expires. */
    m.wait_ms = attempt_ms > 300 ? (uint32_t)(attempt_ms - 200) : 100;
    snprintf(op->avoid, sizeof op->avoid, "%s", target);
    LOG_DEBUG("fwd", "type %u hop %u to %s (%s, %llu ms)", op->type, op->hops + 1, target,
              kind == 2 ? "leader" : "relay", (unsigned long long)attempt_ms);
    int rc = net_call_pb(f->net, target, IDUNNO__MSG_TYPE__MSG_CTL_FORWARD_REQ, &m.base,
                         (uint32_t)attempt_ms, fwd_on_reply, op);
    if (rc < 0) {
        fwd_retry_later(op, CTL_FWD_RETRY_MS);
        return;
    }
    op->in_call = 1;
}

static void fwd_start(struct ctl_fwd *f, struct net_request *req, uint16_t type,
                      const uint8_t *body, size_t len, uint32_t hops, uint32_t wait_ms)
{
    struct fwd_op *op = calloc(1, sizeof *op);
    uint8_t *copy = malloc(len ? len : 1);
    if (!op || !copy) {
        free(op);
        free(copy);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    if (len)
        memcpy(copy, body, len);
    op->f = f;
    op->req = req;
    op->type = type;
    op->body = copy;
    op->len = len;
    op->hops = hops;
    const struct fwd_type *t = fwd_find(f, type);
    if (t && t->wait_of) /* its own budget: from its body, or the relaying hop's */
        op->deadline = id_now_ms() + (hops ? wait_ms : t->wait_of(body, len));
    else
        op->deadline = id_now_ms() + (wait_ms && wait_ms < f->wait_ms ? wait_ms : f->wait_ms);
    uv_timer_init(f->loop, &op->timer);
    op->timer.data = op;
    op->next = f->ops;
    if (f->ops)
        f->ops->prev = op;
    f->ops = op;
    fwd_try(op);
}

void ctl_forward(struct ctl_fwd *f, struct net_request *req, uint16_t type, const uint8_t *body,
                 size_t len)
{
    if (f->stopped) {
        net_reply_error(req, ID_ESHUTDOWN, "node shutting down", NULL);
        return;
    }
    fwd_start(f, req, type, body, len, 0, 0);
}

/* A request relayed to us by another node. */
static void fwd_on_forward_req(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct ctl_fwd *f = ud;
    Idunno__CtlForward *m = idunno__ctl_forward__unpack(NULL, len, body);
    if (!m) {
        net_reply_error(req, ID_EPROTO, "malformed forwarded request", NULL);
        return;
    }
    const struct fwd_type *t = m->type <= UINT16_MAX ? fwd_find(f, (uint16_t)m->type) : NULL;
    if (f->stopped) {
        net_reply_error(req, ID_ESHUTDOWN, "node shutting down", NULL);
    } else if (!t) {
        net_reply_error(req, ID_EUNKNOWNTYPE, "not a coordinator request", NULL);
    } else if (ctl_is_serving(f->ctl)) {
        t->fn(t->ud, req, m->body.data, m->body.len);
    } else if (m->hops >= CTL_FWD_MAX_HOPS) {
        struct ctl_view v;
        ctl_view(f->ctl, &v);
        net_reply_error(req, ID_ENOTLEADER, "not the coordinator",
                        v.leader_addr[0] ? v.leader_addr : (f->hint[0] ? f->hint : NULL));
    } else {
        fwd_start(f, req, (uint16_t)m->type, m->body.data, m->body.len, m->hops, m->wait_ms);
    }
    idunno__ctl_forward__free_unpacked(m, NULL);
}

/* A new leader, or this node starting to serve: requests waiting for one go
 * now rather than at their next retry. */
static void fwd_on_leader_change(void *ud, const struct ctl_view *v)
{
    struct ctl_fwd *f = ud;
    if (f->stopped || (!v->leader_id && !v->serving))
        return;
    for (struct fwd_op *op = f->ops; op; op = op->next)
        if (!op->in_call && !op->closing && uv_is_active((uv_handle_t *)&op->timer))
            uv_timer_start(&op->timer, fwd_on_timer, 0, 0);
}

int ctl_fwd_create(uv_loop_t *loop, const struct ctl_fwd_config *cfg, struct ctl_fwd **out)
{
    struct ctl_fwd *f = calloc(1, sizeof *f);
    if (!f)
        return ID_ENOMEM;
    f->loop = loop;
    f->net = cfg->net;
    f->ctl = cfg->ctl;
    f->member = cfg->member;
    snprintf(f->self, sizeof f->self, "%s", cfg->self_name ? cfg->self_name : "");
    f->wait_ms = cfg->wait_ms ? cfg->wait_ms : CTL_FWD_WAIT_MS;
    if (cfg->n_voters) {
        f->voters = calloc(cfg->n_voters, sizeof *f->voters);
        if (!f->voters) {
            free(f);
            return ID_ENOMEM;
        }
        memcpy(f->voters, cfg->voters, cfg->n_voters * sizeof *f->voters);
        f->n_voters = cfg->n_voters;
    }
    int rc = net_on_request(f->net, IDUNNO__MSG_TYPE__MSG_CTL_FORWARD_REQ, fwd_on_forward_req, f);
    if (rc == 0)
        rc = ctl_on_leader_change(f->ctl, fwd_on_leader_change, f);
    if (rc < 0) {
        free(f->voters);
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int ctl_fwd_add(struct ctl_fwd *f, uint16_t type, ctl_fwd_handler fn, void *ud)
{
    if (fwd_find(f, type))
        return ID_EEXIST;
    if (f->n_types == CTL_FWD_MAX_TYPES)
        return ID_ENOMEM;
    f->types[f->n_types].type = type;
    f->types[f->n_types].fn = fn;
    f->types[f->n_types].ud = ud;
    f->n_types++;
    return 0;
}

int ctl_fwd_set_long(struct ctl_fwd *f, uint16_t type, ctl_fwd_wait_fn wait_of)
{
    for (size_t i = 0; i < f->n_types; i++)
        if (f->types[i].type == type) {
            f->types[i].wait_of = wait_of;
            return 0;
        }
    return ID_ENOTFOUND;
}

/* The net handler of ctl_fwd_serve'd types: serve here or forward. */
static void fwd_on_request(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct fwd_serve_ud *s = ud;
    const struct fwd_type *t = fwd_find(s->f, s->type);
    if (!s->f->stopped && t && ctl_is_serving(s->f->ctl))
        t->fn(t->ud, req, body, len);
    else
        ctl_forward(s->f, req, s->type, body, len);
}

int ctl_fwd_serve(struct ctl_fwd *f, uint16_t type, ctl_fwd_handler fn, void *ud)
{
    if (f->n_serve == CTL_FWD_MAX_TYPES)
        return ID_ENOMEM;
    int rc = ctl_fwd_add(f, type, fn, ud);
    if (rc < 0)
        return rc;
    struct fwd_serve_ud *s = &f->serve[f->n_serve++];
    s->f = f;
    s->type = type;
    return net_on_request(f->net, type, fwd_on_request, s);
}

void ctl_fwd_stop(struct ctl_fwd *f)
{
    if (!f || f->stopped)
        return;
    f->stopped = 1;
    while (f->ops)
        fwd_fail(f->ops, ID_ESHUTDOWN, "node shutting down");
}

void ctl_fwd_destroy(struct ctl_fwd *f)
{
    if (!f)
        return;
    ctl_fwd_stop(f);
    f->destroy_asked = 1;
    fwd_maybe_free_self(f);
}
