/* ctl_replace.c — the serving leader replaces a voter that stays failed, so the
 * group keeps its size (rule and safety argument: docs/control-plane.md).
 *
 * Stateless between ticks: each tick reads the raft configuration (committed
 * in the log, so a new leader resumes where the old one stopped) and
 * membership, and starts at most one configuration change:
 *
 *   a spare or standby in the configuration that is alive -> its next role
 *     (spare -> standby -> voter; libraft catches it up before it votes), as
 *     long as a voter needs replacing; otherwise it is removed (left over);
 *   a non-voting server that is dead -> removed;
 *   more voters than the group's size and one failed for T -> remove it;
 *   a voter failed for T and the group at its size -> add the live member
 *     (alive for a while, not in the configuration) that sorts first by name.
 *
 * "Failed" takes two witnesses: membership (gossip) says so for T, and raft
 * itself has lost contact: the voter has not replicated a barrier this leader
 * appended REPLACE_CONTACT_MS ago. Gossip alone can be stale or forged; it
 * must never shrink a working group or swap out a live voter.
 */
#include <stdio.h>
#include <string.h>

#include <raft.h>

#include "base/clock.h"
#include "base/log.h"
#include "ctl/ctl.h"
#include "member/member.h"
#include "node/node.h"
#include "node/node_ctl.h"

#define REPLACE_DEFAULT_MS 30000u
/* A member promoted must have been alive this long (no flapping newcomer). */
#define REPLACE_STABLE_MS 5000u
/* A non-voting server in the configuration that is dead this long is removed. */
#define REPLACE_DEAD_SPARE_MS 5000u
/* A live voter replicates a fresh barrier within a few heartbeats. */
#define REPLACE_CONTACT_MS 2000u
/* A voter membership calls failed but raft still reaches is checked again
 * this often. */
#define REPLACE_RECHECK_MS 10000u

struct srv_state {
    struct ctl_server s;
    char name[MEMBER_NAME_MAX];
    int alive;
    uint64_t failed_for; /* ms; 0 if not failed */
};

static uint64_t *replace_missing_since(struct node *node, uint64_t id, uint64_t now)
{
    size_t n = sizeof node->nc.missing / sizeof node->nc.missing[0];
    for (size_t i = 0; i < n; i++)
        if (node->nc.missing[i].id == id)
            return &node->nc.missing[i].since;
    for (size_t i = 0; i < n; i++)
        if (node->nc.missing[i].id == 0) {
            node->nc.missing[i].id = id;
            node->nc.missing[i].since = now;
            return &node->nc.missing[i].since;
        }
    return NULL;
}

static void replace_forget_missing(struct node *node, uint64_t id)
{
    size_t n = sizeof node->nc.missing / sizeof node->nc.missing[0];
    for (size_t i = 0; i < n; i++)
        if (node->nc.missing[i].id == id)
            node->nc.missing[i].id = 0;
}

/* How membership sees the server: by address, newest incarnation. */
static void replace_assess(struct node *node, struct srv_state *st, const struct member_view *views,
                           size_t nv, uint64_t self_id, uint64_t now)
{
    const struct member_view *best = NULL;
    for (size_t k = 0; k < nv; k++)
        if ((strcmp(views[k].addr, st->s.node_addr) == 0 || ctl_id_of(views[k].name) == st->s.id) &&
            (!best || views[k].incarnation > best->incarnation))
            best = &views[k];
    if (best)
        snprintf(st->name, sizeof st->name, "%s", best->name);
    if (st->s.id == self_id ||
        (best && (best->state == MEMBER_ALIVE || best->state == MEMBER_SUSPECT))) {
        st->alive = 1;
        st->failed_for = 0;
        replace_forget_missing(node, st->s.id);
    } else if (best) {
        st->alive = 0;
        st->failed_for = now - best->since_ms;
        replace_forget_missing(node, st->s.id);
    } else {
        /* Never heard of (e.g. this leader started after it died). */
        uint64_t *since = replace_missing_since(node, st->s.id, now);
        st->alive = 0;
        st->failed_for = since ? now - *since : 0;
    }
}

static void replace_barrier_done(void *ud, int status)
{
    (void)ud;
    (void)status; /* only its place in the log matters */
}

/* Raft's own evidence that voter f is gone: returns 1 once it has not
 * replicated, for REPLACE_CONTACT_MS, a barrier appended after membership
 * called it failed. Starts that check on the first call. */
static int replace_contact_lost(struct node *node, const struct srv_state *f,
                                const struct ctl_view *v, uint64_t now)
{
    __typeof__(node->nc.contact) *k = &node->nc.contact;
    const char *name = f->name[0] ? f->name : f->s.node_addr;
    if (k->id != f->s.id || k->term != v->term) {
        k->id = f->s.id;
        k->term = v->term;
        k->target = v->last_index + 1;
        k->since = now;
        k->warned = 0;
        if (ctl_read_barrier(node->ctl, replace_barrier_done, NULL) < 0)
            k->id = 0; /* not leader any more: nothing to check */
        return 0;
    }
    uint64_t match = 0;
    if (ctl_match_index(node->ctl, f->s.id, &match) < 0)
        return 0;
    if (match >= k->target) {
        if (!k->warned)
            LOG_WARN("ctl",
                     "membership says voter %s failed, but it still replicates the log: "
                     "keeping it",
                     name);
        k->warned = 1;
        if (now - k->since >= REPLACE_RECHECK_MS)
            k->id = 0;
        return 0;
    }
    if (now - k->since < REPLACE_CONTACT_MS)
        return 0;
    return 1;
}

/* Logged by ctl. The next step starts at once rather than at the next tick
 * (from the timer: not from inside libraft's completion callback). */
static void replace_done(void *ud, int status)
{
    struct node *node = ud;
    (void)status;
    node_ctl_replace_soon(node);
}

void node_ctl_replace_tick(struct node *node)
{
    struct ctl *c = node->ctl;
    if (!c || node->stopping || !ctl_is_serving(c) || ctl_change_pending(c) ||
        node->nc.n_voters == 0)
        return;
    uint64_t t_replace = node->cfg.voter_replace_ms ? node->cfg.voter_replace_ms
                                                    : REPLACE_DEFAULT_MS;
    uint64_t now = id_now_ms();
    static struct member_view views[256];
    size_t nv = member_snapshot(node->member, views, 256);
    if (nv > 256)
        nv = 256;
    struct ctl_view v;
    ctl_view(c, &v);
    struct ctl_server servers[CTL_MAX_SERVERS];
    size_t ns = ctl_servers(c, servers, CTL_MAX_SERVERS);
    if (ns > CTL_MAX_SERVERS)
        ns = CTL_MAX_SERVERS;
    struct srv_state st[CTL_MAX_SERVERS];
    size_t voters = 0;
    const struct srv_state *failed = NULL; /* the voter failed longest, past T */
    for (size_t i = 0; i < ns; i++) {
        memset(&st[i], 0, sizeof st[i]);
        st[i].s = servers[i];
        replace_assess(node, &st[i], views, nv, v.id, now);
        if (st[i].s.role != RAFT_VOTER)
            continue;
        voters++;
        if (!st[i].alive && st[i].failed_for >= t_replace &&
            (!failed || st[i].failed_for > failed->failed_for))
            failed = &st[i];
    }
    /* Gossip called it failed; raft must agree before anything changes. */
    if (failed && !replace_contact_lost(node, failed, &v, now))
        failed = NULL;
    size_t size = node->nc.n_voters;
    int rc = 0;
    /* A newcomer on its way in: next step, or out if it is no longer needed. */
    for (size_t i = 0; i < ns; i++) {
        const struct srv_state *s = &st[i];
        if (s->s.role == RAFT_VOTER)
            continue;
        if (!s->alive && s->failed_for >= REPLACE_DEAD_SPARE_MS) {
            LOG_INFO("ctl", "removing non-voting server %s: failed",
                     s->name[0] ? s->name : s->s.node_addr);
            rc = ctl_change_remove(c, s->s.id, replace_done, node);
        } else if (s->alive && (failed || voters < size)) {
            int next = s->s.role == RAFT_SPARE ? RAFT_STANDBY : RAFT_VOTER;
            LOG_INFO("ctl", "promoting %s to %s", s->name[0] ? s->name : s->s.node_addr,
                     next == RAFT_VOTER ? "voter" : "standby (catching up)");
            rc = ctl_change_assign(c, s->s.id, next, replace_done, node);
        } else if (s->alive) {
            LOG_INFO("ctl", "removing %s: no voter needs replacing any more",
                     s->name[0] ? s->name : s->s.node_addr);
            rc = ctl_change_remove(c, s->s.id, replace_done, node);
        } else {
            continue;
        }
        if (rc < 0)
            LOG_WARN("ctl", "configuration change not started: %s", id_strerror(rc));
        return;
    }
    if (!failed)
        return;
    if (voters > size) {
        LOG_INFO("ctl", "removing voter %s, failed for %llu s; its replacement is a voter",
                 failed->name[0] ? failed->name : failed->s.node_addr,
                 (unsigned long long)(failed->failed_for / 1000));
        rc = ctl_change_remove(c, failed->s.id, replace_done, node);
        if (rc < 0)
            LOG_WARN("ctl", "cannot remove the failed voter: %s", id_strerror(rc));
        return;
    }
    /* Pick the replacement: alive and stable, not in the configuration, first
     * by name (so a new leader picks the same one). */
    const struct member_view *pick = NULL;
    for (size_t k = 0; k < nv; k++) {
        const struct member_view *m = &views[k];
        if (m->state != MEMBER_ALIVE || (k > 0 && now - m->since_ms < REPLACE_STABLE_MS))
            continue;
        uint64_t id = ctl_id_of(m->name);
        int in_conf = 0;
        for (size_t i = 0; i < ns; i++)
            in_conf |= st[i].s.id == id || strcmp(st[i].s.node_addr, m->addr) == 0;
        if (in_conf || (pick && strcmp(m->name, pick->name) >= 0))
            continue;
        pick = m;
    }
    if (!pick) {
        LOG_WARN("ctl", "voter %s failed for %llu s, and no live member can replace it",
                 failed->name[0] ? failed->name : failed->s.node_addr,
                 (unsigned long long)(failed->failed_for / 1000));
        return;
    }
    char raddr[CTL_ADDR_MAX];
    if (ctl_raft_addr(pick->addr, raddr, sizeof raddr) < 0)
        return;
    LOG_INFO("ctl", "voter %s failed for %llu s: replacing it by %s",
             failed->name[0] ? failed->name : failed->s.node_addr,
             (unsigned long long)(failed->failed_for / 1000), pick->name);
    rc = ctl_change_add(c, ctl_id_of(pick->name), raddr, replace_done, node);
    if (rc < 0)
        LOG_WARN("ctl", "cannot add %s: %s", pick->name, id_strerror(rc));
}
