/* ctl.c — the glue between a raft instance and the replicated state machine:
 * the FSM callbacks, proposals and their results, read barriers, and the
 * leadership bookkeeping that ctl_poll() does after raft has run. Works the same
 * with raft over libuv (ctl_uv.c) and with libraft's in-memory fixture. */
#include "ctl/ctl_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "idunno.pb-c.h"
#include "net/net.h"

/* ---- identities and addresses ----------------------------------------------------------- */

uint64_t ctl_id_of(const char *name)
{
    /* FNV-1a: stable across builds and hosts, which the raft id must be. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    h &= 0x7fffffffffffffffull;
    return h ? h : 1;
}

int ctl_raft_addr(const char *node_addr, char *out, size_t len)
{
    return net_shift_port(node_addr, 1, out, len);
}

int ctl_node_addr(const char *raft_addr, char *out, size_t len)
{
    return net_shift_port(raft_addr, -1, out, len);
}

int ctl_from_raft(int rv)
{
    switch (rv) {
    case 0: return 0;
    case RAFT_NOMEM: return ID_ENOMEM;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST: return ID_ENOTLEADER;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED: return ID_ESHUTDOWN;
    case RAFT_TOOBIG: return ID_ETOOBIG;
    case RAFT_NOSPACE: return ID_ENOSPC;
    case RAFT_NOCONNECTION: return ID_ECONNREFUSED;
    case RAFT_BUSY: return ID_EBUSY;
    case RAFT_IOERR:
    case RAFT_CORRUPT: return ID_EIO;
    case RAFT_NOTFOUND: return ID_ENOTFOUND;
    case RAFT_INVALID:
    case RAFT_BADID:
    case RAFT_BADROLE:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS: return ID_EINVAL;
    default: return ID_EINTERNAL;
    }
}

const char *ctl_state_name(int state)
{
    switch (state) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    default: return "unavailable";
    }
}

/* ---- the FSM -------------------------------------------------------------------------------- */

static struct ctl_proposal *ctl_find_proposal(struct ctl *c, uint64_t seq)
{
    for (struct ctl_proposal *p = c->props; p; p = p->next)
        if (p->seq == seq)
            return p;
    return NULL;
}

/* Never fails: libraft treats an FSM error as fatal, and a command that cannot
 * be applied is a deterministic rejection recorded in its result instead. */
static int ctl_fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct ctl *c = fsm->data;
    *result = NULL;
    struct sm_decoded d;
    if (sm_decode(buf->base, buf->len, &d) < 0) {
        sm_apply_malformed(&c->sm);
        LOG_WARN("ctl", "log entry of %zu bytes does not decode; skipped (counted)", buf->len);
        return 0;
    }
    struct ctl_proposal *p = d.cmd.origin == c->id ? ctl_find_proposal(c, d.cmd.seq) : NULL;
    struct sm_result res = {.want_body = p != NULL};
    sm_apply(&c->sm, &d.cmd, &res);
    if (p) {
        p->applied = 1;
        p->status = res.status;
        p->body = res.body;
        p->len = res.len;
    }
    sm_decoded_free(&d);
    return 0;
}

static int ctl_fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct ctl *c = fsm->data;
    void *data;
    size_t len;
    uint64_t t0 = id_now_us();
    int rc = sm_snapshot(&c->sm, raft_malloc, &data, &len);
    if (rc < 0)
        return RAFT_NOMEM;
    *bufs = raft_malloc(sizeof **bufs);
    if (!*bufs) {
        raft_free(data);
        return RAFT_NOMEM;
    }
    (*bufs)[0].base = data;
    (*bufs)[0].len = len;
    *n_bufs = 1;
    /* Taken on the loop: a slow one delays everything else, so say so. */
    double ms = (double)(id_now_us() - t0) / 1000.0;
    log_write(ms >= 20.0 ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, "ctl",
              "snapshot of %zu bytes after %llu commands took %.1f ms", len,
              (unsigned long long)c->sm.applied, ms);
    return 0;
}

/* On success the FSM owns buf->base (libraft's contract); on failure libraft
 * frees it. */
static int ctl_fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct ctl *c = fsm->data;
    uint64_t t0 = id_now_us();
    int rc = sm_restore(&c->sm, buf->base, buf->len);
    if (rc < 0) {
        LOG_ERROR("ctl", "cannot restore a snapshot of %zu bytes: %s", buf->len, id_strerror(rc));
        return RAFT_MALFORMED;
    }
    LOG_INFO("ctl", "restored a snapshot of %zu bytes (%llu commands) in %.1f ms", buf->len,
             (unsigned long long)c->sm.applied, (double)(id_now_us() - t0) / 1000.0);
    raft_free(buf->base);
    return 0;
}

/* ---- common set-up ---------------------------------------------------------------------- */

int ctl_init_common(struct ctl *c, const struct ctl_config *cfg)
{
    if (!cfg->name || !cfg->name[0] || strlen(cfg->name) >= CTL_NAME_MAX)
        return ID_EINVAL;
    c->cfg = *cfg;
    snprintf(c->name, sizeof c->name, "%s", cfg->name);
    if (cfg->node_addr)
        snprintf(c->node_addr, sizeof c->node_addr, "%s", cfg->node_addr);
    c->cfg.name = c->name;
    c->cfg.node_addr = c->node_addr;
    c->cfg.dir = NULL;
#define CTL_DEFAULT(f, v) \
    if (!c->cfg.f)        \
    c->cfg.f = (v)
    CTL_DEFAULT(election_timeout_ms, 200);
    CTL_DEFAULT(heartbeat_ms, 50);
    CTL_DEFAULT(install_snapshot_timeout_ms, 1000);
    CTL_DEFAULT(connect_retry_ms, 50);
    CTL_DEFAULT(snapshot_threshold, 1024);
    CTL_DEFAULT(snapshot_trailing, 512);
    CTL_DEFAULT(propose_timeout_ms, 5000);
    CTL_DEFAULT(tcp_rto_min_ms, 20);
#undef CTL_DEFAULT
    c->id = ctl_id_of(c->name);
    /* Wall-clock microseconds: a restarted node's sequence numbers never meet
     * those of its previous life still in the log. */
    c->next_seq = cfg->seq_base ? cfg->seq_base : id_wall_ms() * 1000;
    sm_init(&c->sm);
    c->kv = kv_create();
    c->meta = meta_create();
    if (!c->kv || !c->meta)
        return ID_ENOMEM;
    int rc = sm_register(&c->sm, &meta_sm_ops, c->meta);
    if (rc == 0)
        rc = sm_register(&c->sm, &kv_sm_ops, c->kv);
    if (rc < 0)
        return rc;
    c->fsm.version = 1;
    c->fsm.data = c;
    c->fsm.apply = ctl_fsm_apply;
    c->fsm.snapshot = ctl_fsm_snapshot;
    c->fsm.restore = ctl_fsm_restore;
    return 0;
}

void ctl_free_common(struct ctl *c)
{
    ctl_fail_all(c, ID_ESHUTDOWN);
    /* Proposals raft never called back (it was never started): answer and free. */
    while (c->props) {
        struct ctl_proposal *p = c->props;
        c->props = p->next;
        free(p->body);
        free(p);
    }
    kv_destroy(c->kv);
    meta_destroy(c->meta);
    c->kv = NULL;
    c->meta = NULL;
}

int ctl_register(struct ctl *c, const struct sm_ops *ops, void *self)
{
    return sm_register(&c->sm, ops, self);
}

const char *ctl_errmsg(const struct ctl *c)
{
    return c->errmsg;
}

/* ---- detached mode ---------------------------------------------------------------------- */

int ctl_create_detached(const struct ctl_config *cfg, struct ctl **out)
{
    struct ctl *c = calloc(1, sizeof *c);
    if (!c)
        return ID_ENOMEM;
    int rc = ctl_init_common(c, cfg);
    if (rc < 0) {
        ctl_free_common(c);
        free(c);
        return rc;
    }
    c->detached = 1;
    *out = c;
    return 0;
}

struct raft_fsm *ctl_fsm(struct ctl *c)
{
    return &c->fsm;
}

void ctl_attach(struct ctl *c, struct raft *r)
{
    c->raft = r;
    c->id = r->id;
    raft_set_election_timeout(r, c->cfg.election_timeout_ms);
    raft_set_heartbeat_timeout(r, c->cfg.heartbeat_ms);
    raft_set_install_snapshot_timeout(r, c->cfg.install_snapshot_timeout_ms);
    raft_set_pre_vote(r, true);
    raft_set_snapshot_threshold(r, c->cfg.snapshot_threshold);
    raft_set_snapshot_trailing(r, c->cfg.snapshot_trailing);
}

void ctl_destroy_detached(struct ctl *c)
{
    if (!c)
        return;
    c->closing = 1;
    ctl_free_common(c);
    free(c);
}

/* ---- proposals -------------------------------------------------------------------------- */

static uint64_t ctl_raft_now(struct ctl *c)
{
    return c->raft->io->time(c->raft->io);
}

static uint64_t ctl_clock(struct ctl *c)
{
    return c->cfg.clock_ms ? c->cfg.clock_ms(c->cfg.clock_ud) : id_wall_ms();
}

static void ctl_unlink(struct ctl *c, struct ctl_proposal *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        c->props = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void ctl_apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    struct ctl_proposal *p = req->data;
    struct ctl *c = p->c;
    ctl_unlink(c, p);
    if (!p->answered) {
        int st;
        if (p->applied)
            st = p->status; /* committed and applied here, whatever raft says now */
        else if (status == 0)
            st = ID_EINTERNAL; /* committed but never seen by our apply: a bug */
        else
            st = c->closing ? ID_ESHUTDOWN : ctl_from_raft(status);
        p->answered = 1;
        if (p->cb)
            p->cb(p->ud, st, p->applied ? p->body : NULL, p->applied ? p->len : 0);
    }
    free(p->body);
    free(p);
}

int ctl_propose_version(struct ctl *c, uint32_t type, uint32_t version, const void *body,
                        size_t len, ctl_propose_cb cb, void *ud)
{
    if (!c->raft || c->closing)
        return ID_ESHUTDOWN;
    if (raft_state(c->raft) != RAFT_LEADER)
        return ID_ENOTLEADER;
    struct ctl_proposal *p = calloc(1, sizeof *p);
    if (!p)
        return ID_ENOMEM;
    p->c = c;
    p->seq = c->next_seq++;
    p->cb = cb;
    p->ud = ud;
    p->req.data = p;
    struct sm_cmd cmd = {.type = type,
                         .version = version,
                         .body = body,
                         .len = len,
                         .origin = c->id,
                         .seq = p->seq,
                         .time_ms = ctl_clock(c)};
    struct raft_buffer buf;
    int rc = sm_encode(&cmd, raft_malloc, &buf.base, &buf.len);
    if (rc < 0) {
        free(p);
        return rc;
    }
    /* Linked before raft_apply so that the apply can find it whenever it runs. */
    p->next = c->props;
    if (c->props)
        c->props->prev = p;
    c->props = p;
    int rv = raft_apply(c->raft, &p->req, &buf, 1, ctl_apply_cb);
    if (rv != 0) {
        ctl_unlink(c, p);
        raft_free(buf.base);
        free(p);
        return ctl_from_raft(rv);
    }
    p->deadline = ctl_raft_now(c) + c->cfg.propose_timeout_ms;
    return 0;
}

int ctl_propose(struct ctl *c, uint32_t type, const void *body, size_t len, ctl_propose_cb cb,
                void *ud)
{
    return ctl_propose_version(c, type, 1, body, len, cb, ud);
}

/* ---- barriers and reads ------------------------------------------------------------------- */

static void ctl_finish_reads(struct ctl_read *r, int status)
{
    while (r) {
        struct ctl_read *next = r->next;
        r->cb(r->ud, status);
        free(r);
        r = next;
    }
}

static int ctl_submit_read_barrier(struct ctl *c);

static void ctl_barrier_cb(struct raft_barrier *req, int status)
{
    struct ctl_barrier *b = req->data;
    struct ctl *c = b->c;
    if (b->leader) {
        c->leader_barrier_inflight = 0;
        if (status == 0 && !c->closing && raft_state(c->raft) == RAFT_LEADER &&
            raft_current_term(c->raft) == b->term && c->leading_term == b->term) {
            c->serving = 1;
            LOG_INFO("ctl", "coordinator for term %llu: earlier entries applied, serving",
                     (unsigned long long)b->term);
            /* Announce ourselves in the log, so every replica learns the
             * coordinator's name and client address. */
            Idunno__CtlLeader l = IDUNNO__CTL_LEADER__INIT;
            l.term = b->term;
            l.name = c->name;
            l.addr = c->node_addr;
            l.raft_id = c->id;
            l.since_ms = ctl_clock(c);
            uint8_t body[256];
            size_t n = idunno__ctl_leader__get_packed_size(&l);
            if (n <= sizeof body) {
                idunno__ctl_leader__pack(&l, body);
                int rc = ctl_propose(c, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_LEADER, body, n, NULL,
                                     NULL);
                if (rc < 0)
                    LOG_WARN("ctl", "cannot announce leadership: %s", id_strerror(rc));
            }
        }
        free(b);
        return;
    }
    c->read_barrier = NULL;
    ctl_finish_reads(b->reads, status == 0 ? 0 : c->closing ? ID_ESHUTDOWN : ctl_from_raft(status));
    free(b);
    /* Reads that arrived while that barrier was in flight need one of their own. */
    if (c->waiting && !c->closing && ctl_submit_read_barrier(c) < 0) {
        struct ctl_read *w = c->waiting;
        c->waiting = c->waiting_tail = NULL;
        ctl_finish_reads(w, ID_ENOTLEADER);
    }
}

static int ctl_submit_read_barrier(struct ctl *c)
{
    struct ctl_barrier *b = calloc(1, sizeof *b);
    if (!b)
        return ID_ENOMEM;
    b->c = c;
    b->req.data = b;
    b->reads = c->waiting;
    int rv = raft_barrier(c->raft, &b->req, ctl_barrier_cb);
    if (rv != 0) {
        free(b);
        return ctl_from_raft(rv);
    }
    c->waiting = c->waiting_tail = NULL;
    c->read_barrier = b;
    return 0;
}

int ctl_read_barrier(struct ctl *c, ctl_read_cb cb, void *ud)
{
    if (!c->raft || c->closing)
        return ID_ESHUTDOWN;
    if (raft_state(c->raft) != RAFT_LEADER)
        return ID_ENOTLEADER;
    struct ctl_read *r = calloc(1, sizeof *r);
    if (!r)
        return ID_ENOMEM;
    r->cb = cb;
    r->ud = ud;
    if (c->waiting_tail)
        c->waiting_tail->next = r;
    else
        c->waiting = r;
    c->waiting_tail = r;
    if (!c->read_barrier) {
        /* Nothing in flight, so r is the only one waiting. */
        int rc = ctl_submit_read_barrier(c);
        if (rc < 0) {
            c->waiting = c->waiting_tail = NULL;
            free(r);
            return rc;
        }
    }
    return 0;
}

void ctl_fail_all(struct ctl *c, int status)
{
    struct ctl_read *w = c->waiting;
    c->waiting = c->waiting_tail = NULL;
    ctl_finish_reads(w, status);
    for (struct ctl_proposal *p = c->props; p; p = p->next) {
        if (!p->answered) {
            p->answered = 1;
            if (p->cb)
                p->cb(p->ud, status, NULL, 0);
        }
    }
}

/* ---- configuration changes -------------------------------------------------------------- */

static void ctl_change_done(struct raft_change *req, int status)
{
    struct ctl_change *ch = req->data;
    struct ctl *c = ch->c;
    c->changes_inflight--;
    int st = status == 0 ? 0 : c->closing ? ID_ESHUTDOWN : ctl_from_raft(status);
    if (st == 0)
        LOG_INFO("ctl", "configuration change committed");
    else
        LOG_WARN("ctl", "configuration change failed: %s", id_strerror(st));
    if (ch->cb)
        ch->cb(ch->ud, st);
    free(ch);
}

static struct ctl_change *ctl_change_new(struct ctl *c, ctl_change_cb cb, void *ud, int *rc)
{
    *rc = 0;
    if (!c->raft || c->closing) {
        *rc = ID_ESHUTDOWN;
        return NULL;
    }
    if (raft_state(c->raft) != RAFT_LEADER) {
        *rc = ID_ENOTLEADER;
        return NULL;
    }
    if (c->changes_inflight) {
        *rc = ID_EBUSY;
        return NULL;
    }
    struct ctl_change *ch = calloc(1, sizeof *ch);
    if (!ch) {
        *rc = ID_ENOMEM;
        return NULL;
    }
    ch->c = c;
    ch->cb = cb;
    ch->ud = ud;
    ch->req.data = ch;
    return ch;
}

static int ctl_change_submitted(struct ctl *c, struct ctl_change *ch, int rv)
{
    if (rv != 0) {
        free(ch);
        return rv == RAFT_CANTCHANGE ? ID_EBUSY : ctl_from_raft(rv);
    }
    c->changes_inflight++;
    return 0;
}

int ctl_change_add(struct ctl *c, uint64_t id, const char *raft_addr, ctl_change_cb cb, void *ud)
{
    int rc;
    struct ctl_change *ch = ctl_change_new(c, cb, ud, &rc);
    if (!ch)
        return rc;
    LOG_INFO("ctl", "adding server %llu at %s as a spare", (unsigned long long)id, raft_addr);
    return ctl_change_submitted(c, ch, raft_add(c->raft, &ch->req, id, raft_addr, ctl_change_done));
}

int ctl_change_assign(struct ctl *c, uint64_t id, int role, ctl_change_cb cb, void *ud)
{
    int rc;
    struct ctl_change *ch = ctl_change_new(c, cb, ud, &rc);
    if (!ch)
        return rc;
    LOG_INFO("ctl", "making server %llu a %s", (unsigned long long)id, raft_role_name(role));
    return ctl_change_submitted(c, ch, raft_assign(c->raft, &ch->req, id, role, ctl_change_done));
}

int ctl_change_remove(struct ctl *c, uint64_t id, ctl_change_cb cb, void *ud)
{
    int rc;
    struct ctl_change *ch = ctl_change_new(c, cb, ud, &rc);
    if (!ch)
        return rc;
    LOG_INFO("ctl", "removing server %llu", (unsigned long long)id);
    return ctl_change_submitted(c, ch, raft_remove(c->raft, &ch->req, id, ctl_change_done));
}

int ctl_change_pending(const struct ctl *c)
{
    return c->changes_inflight > 0;
}

/* ---- leadership and status ---------------------------------------------------------------- */

int ctl_on_leader_change(struct ctl *c, ctl_leader_fn fn, void *ud)
{
    if (c->n_subs == CTL_MAX_LEADER_SUBS)
        return ID_ENOMEM;
    c->subs[c->n_subs].fn = fn;
    c->subs[c->n_subs].ud = ud;
    c->n_subs++;
    return 0;
}

int ctl_is_serving(const struct ctl *c)
{
    return c->raft && !c->closing && c->serving && raft_state(c->raft) == RAFT_LEADER;
}

void ctl_view(struct ctl *c, struct ctl_view *v)
{
    memset(v, 0, sizeof *v);
    v->id = c->id;
    v->applied_commands = c->sm.applied;
    if (!c->raft)
        return;
    struct raft *r = c->raft;
    v->state = raft_state(r);
    v->serving = ctl_is_serving(c);
    v->voter = raft_role(r) == RAFT_VOTER;
    v->term = raft_current_term(r);
    v->commit_index = raft_commit_index(r);
    v->applied_index = raft_last_applied(r);
    v->last_index = raft_last_index(r);
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(r, &lid, &laddr);
    v->leader_id = lid;
    if (lid && laddr && ctl_node_addr(laddr, v->leader_addr, sizeof v->leader_addr) < 0)
        v->leader_addr[0] = 0;
    const struct meta_leader *ml = meta_last_leader(c->meta);
    if (lid && ml && ml->raft_id == lid) {
        snprintf(v->leader_name, sizeof v->leader_name, "%s", ml->name);
        v->leader_since_ms = ml->since_ms;
        if (!v->leader_addr[0])
            snprintf(v->leader_addr, sizeof v->leader_addr, "%s", ml->addr);
    }
}

size_t ctl_servers(struct ctl *c, struct ctl_server *out, size_t max)
{
    if (!c->raft)
        return 0;
    const struct raft_configuration *conf = &c->raft->configuration;
    for (unsigned i = 0; i < conf->n && i < max; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].id = conf->servers[i].id;
        out[i].role = conf->servers[i].role;
        snprintf(out[i].raft_addr, sizeof out[i].raft_addr, "%s", conf->servers[i].address);
        if (ctl_node_addr(out[i].raft_addr, out[i].node_addr, sizeof out[i].node_addr) < 0)
            out[i].node_addr[0] = 0;
    }
    return conf->n;
}

int ctl_match_index(struct ctl *c, uint64_t id, uint64_t *out)
{
    raft_index idx = 0;
    if (!c->raft || raft_state(c->raft) != RAFT_LEADER)
        return ID_ENOTLEADER;
    int rv = raft_match_index(c->raft, id, &idx);
    if (rv != 0)
        return ctl_from_raft(rv);
    *out = idx;
    return 0;
}

struct sm *ctl_sm(struct ctl *c)
{
    return &c->sm;
}

struct kv *ctl_kv(struct ctl *c)
{
    return c->kv;
}

struct meta *ctl_meta(struct ctl *c)
{
    return c->meta;
}

void ctl_digest_hex(struct ctl *c, char out[2 * SHA256_LEN + 1])
{
    sm_digest_hex(&c->sm, out);
}

/* ---- polling ------------------------------------------------------------------------------ */

static void ctl_start_term(struct ctl *c, uint64_t term)
{
    struct ctl_barrier *b = calloc(1, sizeof *b);
    if (!b)
        return; /* retried at the next poll */
    b->c = c;
    b->req.data = b;
    b->leader = 1;
    b->term = term;
    int rv = raft_barrier(c->raft, &b->req, ctl_barrier_cb);
    if (rv != 0) {
        free(b);
        return;
    }
    c->leader_barrier_inflight = 1;
}

static void ctl_report(struct ctl *c)
{
    struct ctl_view v;
    ctl_view(c, &v);
    if (v.serving == c->reported.serving && v.leader_id == c->reported.leader_id &&
        v.term == c->reported.term)
        return;
    if (v.leader_id != c->reported.leader_id && v.leader_id && v.leader_id != c->id)
        LOG_INFO("ctl", "coordinator is now %s (%s, term %llu); this node is a %s",
                 v.leader_name[0] ? v.leader_name : "a new leader",
                 v.leader_addr[0] ? v.leader_addr : "?", (unsigned long long)v.term,
                 v.voter ? "standby" : "non-voter");
    else if (v.leader_id != c->reported.leader_id && !v.leader_id)
        LOG_INFO("ctl", "no coordinator known (term %llu)", (unsigned long long)v.term);
    c->reported.serving = v.serving;
    c->reported.leader_id = v.leader_id;
    c->reported.term = v.term;
    for (size_t i = 0; i < c->n_subs; i++)
        c->subs[i].fn(c->subs[i].ud, &v);
}

void ctl_poll(struct ctl *c)
{
    if (!c->raft || c->closing)
        return;
    struct raft *r = c->raft;
    uint64_t term = raft_current_term(r);
    if (raft_state(r) == RAFT_LEADER) {
        if (c->leading_term != term) {
            c->leading_term = term;
            c->serving = 0;
            LOG_INFO("ctl", "won the election for term %llu; committing a barrier",
                     (unsigned long long)term);
        }
        if (!c->serving && !c->leader_barrier_inflight)
            ctl_start_term(c, term);
    } else if (c->leading_term) {
        LOG_INFO("ctl", "lost leadership of term %llu (now %s in term %llu)",
                 (unsigned long long)c->leading_term, ctl_state_name(raft_state(r)),
                 (unsigned long long)term);
        c->leading_term = 0;
        c->serving = 0;
        /* Reads not yet behind a barrier can no longer be served here; the one
         * in flight is failed by raft itself. */
        struct ctl_read *w = c->waiting;
        c->waiting = c->waiting_tail = NULL;
        ctl_finish_reads(w, ID_ENOTLEADER);
    }
    /* Expired proposals are answered now; raft's callback frees them later. */
    uint64_t now = ctl_raft_now(c);
    for (struct ctl_proposal *p = c->props; p; p = p->next) {
        if (!p->answered && p->deadline && now >= p->deadline) {
            p->answered = 1;
            if (p->cb)
                p->cb(p->ud, ID_ETIMEDOUT, NULL, 0);
        }
    }
    ctl_report(c);
}
