/* sdfs_lead.c — SDFS on the coordinator (see sdfs.h): the leader operations
 * (placement, commit, lookup, delete, list, bad copies, store reports) as
 * ops of the leader-service layer (ctl/service.h; with the batch
 * placement and commit of bulk puts), the repair loop, and
 * every node's store report to the leader.
 *
 * Threading: loop thread only. */
#include "sdfs/sdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/err.h"
#include "base/log.h"
#include "base/sha256.h"
#include "ctl/ctl.h"
#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "sdfs/catalog.h"
#include "sdfs/fetch.h"
#include "sdfs/reconcile.h"
#include "sdfs/sdfs_int.h"
#include "sdfs/store.h"

/* ==== coordinator ============================================================================ */

/* Each request below is a ctl_op of the leader-service layer
 * (ctl/service.h): it decodes the request, hands it on if leadership moves,
 * and answers failed proposals. */

static void lead_place(struct ctl_op *op)
{
    struct sdfs *s = op->ud;
    const Idunno__SdfsPlace *m = op->msg;
    struct net_request *req = op->req;
    struct member_view alive[SDFS_MAX_ALIVE];
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    struct sdfs_node nodes[SDFS_MAX_ALIVE];
    for (size_t i = 0; i < n_alive; i++)
        nodes[i] = (struct sdfs_node){.name = alive[i].name};
    size_t chosen[SDFS_REPLICAS];
    size_t n = catalog_place(s->catalog, m->name, nodes, n_alive, (const char *const *)m->avoid,
                             m->n_avoid, SDFS_REPLICAS, chosen);
    if (n == 0) {
        net_reply_errorf(req, ID_EUNAVAIL, "no live node can take a replica of %s", m->name);
    } else {
        char *names[SDFS_REPLICAS], *addrs[SDFS_REPLICAS];
        for (size_t i = 0; i < n; i++) {
            names[i] = alive[chosen[i]].name;
            addrs[i] = alive[chosen[i]].addr;
        }
        Idunno__SdfsPlacement out = IDUNNO__SDFS_PLACEMENT__INIT;
        out.n_replicas = out.n_addrs = n;
        out.replicas = names;
        out.addrs = addrs;
        net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_RESP, &out.base);
    }
}

/* A bulk put's placement: each file as lead_place would place it, counting
 * the copies given to the batch's earlier files (not in the catalog yet) as
 * load, so that a batch spreads over the nodes as single puts would. */
static void lead_place_batch(struct ctl_op *op)
{
    struct sdfs *s = op->ud;
    const Idunno__SdfsPlaceBatch *m = op->msg;
    if (m->n_files == 0 || m->n_files > SDFS_BATCH_MAX) {
        net_reply_errorf(op->req, ID_EINVAL, "a batch places 1 to %d files, not %zu",
                         SDFS_BATCH_MAX, m->n_files);
        return;
    }
    struct member_view alive[SDFS_MAX_ALIVE];
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    struct sdfs_node nodes[SDFS_MAX_ALIVE];
    uint64_t extra[SDFS_MAX_ALIVE] = {0};
    for (size_t i = 0; i < n_alive; i++)
        nodes[i] = (struct sdfs_node){.name = alive[i].name};
    Idunno__SdfsPlacement *rows = calloc(m->n_files, sizeof *rows);
    Idunno__SdfsPlacement **rp = calloc(m->n_files, sizeof *rp);
    char **strs = calloc(m->n_files * 2 * SDFS_REPLICAS, sizeof *strs);
    if (!rows || !rp || !strs) {
        net_reply_error(op->req, ID_ENOMEM, NULL, NULL);
    } else {
        for (size_t f = 0; f < m->n_files; f++) {
            size_t chosen[SDFS_REPLICAS];
            size_t n = catalog_place_more(s->catalog, m->files[f]->name, nodes, n_alive,
                                          (const char *const *)m->avoid, m->n_avoid, SDFS_REPLICAS,
                                          extra, chosen);
            char **names = &strs[f * 2 * SDFS_REPLICAS], **addrs = names + SDFS_REPLICAS;
            for (size_t i = 0; i < n; i++) {
                names[i] = alive[chosen[i]].name;
                addrs[i] = alive[chosen[i]].addr;
            }
            idunno__sdfs_placement__init(&rows[f]);
            rows[f].n_replicas = rows[f].n_addrs = n;
            rows[f].replicas = names;
            rows[f].addrs = addrs;
            rp[f] = &rows[f];
        }
        Idunno__SdfsPlacementBatch out = IDUNNO__SDFS_PLACEMENT_BATCH__INIT;
        out.n_files = m->n_files;
        out.files = rp;
        net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_PLACE_BATCH_RESP, &out.base);
    }
    free(rows);
    free(rp);
    free(strs);
}

static void lead_commit_batch_done(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    Idunno__SdfsCommitBatch *b = idunno__sdfs_commit_batch__unpack(NULL, len, result);
    if (b) {
        LOG_INFO("sdfs", "committed a batch of %zu versions", b->n_versions);
        idunno__sdfs_commit_batch__free_unpacked(b, NULL);
    }
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_BATCH_RESP, result, len);
}

/* As lead_commit: the state machine validates the batch, all or none. */
static void lead_commit_batch(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT_BATCH, op->body, op->len);
}

static void lead_commit_done(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    Idunno__SdfsVersion *v = idunno__sdfs_version__unpack(NULL, len, result);
    if (v) {
        /* The versions it pushed out (v->dropped) are not deleted here: a
         * reader may be in the middle of one. The replicas' store reports
         * delete them after the grace period (reconcile.h). */
        LOG_INFO("sdfs", "committed %s version %llu (blob %s, %llu bytes)", v->name,
                 (unsigned long long)v->version, v->blob, (unsigned long long)v->size);
        idunno__sdfs_version__free_unpacked(v, NULL);
    }
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_COMMIT_RESP, result, len);
}

/* The body goes into the log as it came: the state machine validates it. */
static void lead_commit(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT, op->body, op->len);
}

/* Registered with CTL_OP_NOTFOUND_TO_DONE: a missing file is named. */
static void lead_delete_done(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    if (status == ID_ENOTFOUND) {
        Idunno__SdfsLookup *m = idunno__sdfs_lookup__unpack(NULL, op->len, op->body);
        net_reply_errorf(op->req, ID_ENOTFOUND, "no SDFS file named '%s'", m ? m->name : "?");
        if (m)
            idunno__sdfs_lookup__free_unpacked(m, NULL);
        return;
    }
    /* The copies stay until the replicas' store reports delete them after
     * the grace period (reconcile.h): a read in flight finishes first. */
    Idunno__SdfsFile *f = idunno__sdfs_file__unpack(NULL, len, result);
    if (f) {
        LOG_INFO("sdfs", "deleted %s (%zu versions)", f->name, f->n_versions);
        idunno__sdfs_file__free_unpacked(f, NULL);
    }
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_DELETE_RESP, result, len);
}

static void lead_delete(struct ctl_op *op)
{
    ctl_op_propose(op, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_DELETE, op->body, op->len);
}

/* Fills a version message with replica addresses of live nodes. */
static void version_msg(const struct sdfs_file *f, const struct sdfs_version *v,
                        const struct member_view *alive, size_t n_alive, Idunno__SdfsVersion *m,
                        char **names, char **addrs)
{
    catalog_version_to_pb(f->name, v, m, names);
    for (size_t r = 0; r < v->n_replicas; r++) {
        const char *a = sdfs_addr_of(alive, n_alive, v->replicas[r]);
        addrs[r] = (char *)(a ? a : "");
    }
    m->n_replica_addrs = v->n_replicas;
    m->replica_addrs = addrs;
}

static void lead_lookup_read(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    struct sdfs *s = op->ud;
    const Idunno__SdfsLookup *m = op->msg;
    const struct sdfs_file *f = catalog_find(s->catalog, m->name);
    if (!f) {
        net_reply_errorf(op->req, ID_ENOTFOUND, "no SDFS file named '%s'", m->name);
    } else {
        struct member_view alive[SDFS_MAX_ALIVE];
        size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
        Idunno__SdfsVersion rows[SDFS_KEEP_VERSIONS], *rp[SDFS_KEEP_VERSIONS];
        char *names[SDFS_KEEP_VERSIONS][SDFS_REPLICAS], *addrs[SDFS_KEEP_VERSIONS][SDFS_REPLICAS];
        size_t n = 0;
        for (size_t i = 0; i < f->n_versions; i++) {
            if (m->version && f->versions[i].version != m->version)
                continue;
            version_msg(f, &f->versions[i], alive, n_alive, &rows[n], names[n], addrs[n]);
            rp[n] = &rows[n];
            n++;
        }
        if (n == 0) {
            net_reply_errorf(op->req, ID_ENOTFOUND, "%s has no version %llu (kept: %llu..%llu)",
                             m->name, (unsigned long long)m->version,
                             (unsigned long long)f->versions[0].version,
                             (unsigned long long)f->versions[f->n_versions - 1].version);
        } else {
            Idunno__SdfsFile out = IDUNNO__SDFS_FILE__INIT;
            out.name = f->name;
            out.n_versions = n;
            out.versions = rp;
            net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_LOOKUP_RESP, &out.base);
        }
    }
}

static int version_on(const struct sdfs_version *v, const char *node)
{
    for (size_t r = 0; r < v->n_replicas; r++)
        if (strcmp(v->replicas[r], node) == 0)
            return 1;
    return 0;
}

static void lead_list_read(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    (void)status;
    (void)result;
    (void)len;
    const Idunno__SdfsList *m = op->msg;
    const struct catalog *c = ((struct sdfs *)op->ud)->catalog;
    size_t total = catalog_count(c), plen = strlen(m->prefix);
    Idunno__SdfsFileSummary *rows = calloc(total ? total : 1, sizeof *rows);
    Idunno__SdfsFileSummary **rp = calloc(total ? total : 1, sizeof *rp);
    char **names = calloc(total ? total * SDFS_REPLICAS : 1, sizeof *names);
    if (!rows || !rp || !names) {
        net_reply_error(op->req, ID_ENOMEM, NULL, NULL);
    } else {
        size_t n = 0;
        uint64_t bytes = 0;
        for (size_t i = catalog_lower_bound(c, m->prefix); i < total; i++) {
            const struct sdfs_file *f = catalog_at(c, i);
            if (strncmp(f->name, m->prefix, plen) != 0)
                break;
            const struct sdfs_version *v = &f->versions[f->n_versions - 1];
            if (m->node[0]) {
                int on = 0;
                for (size_t k = 0; k < f->n_versions && !on; k++)
                    on = version_on(&f->versions[k], m->node);
                if (!on)
                    continue;
            }
            idunno__sdfs_file_summary__init(&rows[n]);
            rows[n].name = f->name;
            rows[n].version = v->version;
            rows[n].size = v->size;
            rows[n].versions = (uint32_t)f->n_versions;
            rows[n].time_ms = v->time_ms;
            for (size_t r = 0; r < v->n_replicas; r++)
                names[n * SDFS_REPLICAS + r] = (char *)v->replicas[r];
            rows[n].n_replicas = v->n_replicas;
            rows[n].replicas = &names[n * SDFS_REPLICAS];
            rp[n] = &rows[n];
            bytes += v->size;
            n++;
        }
        Idunno__SdfsListing out = IDUNNO__SDFS_LISTING__INIT;
        out.n_files = n;
        out.files = rp;
        out.total_bytes = bytes;
        net_reply_pb(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_LIST_RESP, &out.base);
    }
    free(rows);
    free(rp);
    free(names);
}

/* `store` names the node it is sent to: that node fills itself in and sends the
 * request on towards the leader. */
void sdfs_on_list(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct sdfs *s = ud;
    Idunno__SdfsList *m = ctl_req_unpack(req, &idunno__sdfs_list__descriptor, body, len, 0);
    if (!m)
        return;
    if (m->here) {
        m->here = 0;
        m->node = s->name;
        size_t n = idunno__sdfs_list__get_packed_size(m);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf) {
            n = idunno__sdfs_list__pack(m, buf);
            ctl_svc_forward(s->svc, req, IDUNNO__MSG_TYPE__MSG_SDFS_LIST_REQ, buf, n);
        } else {
            net_reply_error(req, ID_ENOMEM, NULL, NULL);
        }
        free(buf);
        m->node = NULL; /* not ours to free */
        idunno__sdfs_list__free_unpacked(m, NULL);
        return;
    }
    idunno__sdfs_list__free_unpacked(m, NULL);
    ctl_svc_forward(s->svc, req, IDUNNO__MSG_TYPE__MSG_SDFS_LIST_REQ, body, len);
}

/* -- replica changes (repairs, bad copies, missing copies) -- */

static int propose_replica_change(struct sdfs *s, const char *name, const char *blob,
                                  const char *remove, const char *add, ctl_propose_cb cb, void *ud)
{
    Idunno__SdfsReplicaChange ch = IDUNNO__SDFS_REPLICA_CHANGE__INIT;
    ch.name = (char *)name;
    ch.blob = (char *)blob;
    ch.remove = (char *)remove;
    ch.add = (char *)add;
    uint8_t buf[1024];
    if (idunno__sdfs_replica_change__get_packed_size(&ch) > sizeof buf)
        return ID_ETOOBIG;
    size_t n = idunno__sdfs_replica_change__pack(&ch, buf);
    return ctl_propose(s->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_REPLICA, buf, n, cb, ud);
}

/* Has the replica `node` check its copy of v against the catalog's checksum:
 * a BLOB_FETCH naming the other live replicas as sources. A good copy stays;
 * a bad one is moved aside and copied again from the others. Nothing is
 * deleted on anyone's word, and the replica set does not change. */
static void verify_copy(struct sdfs *s, const struct sdfs_version *v, const char *node)
{
    struct member_view alive[SDFS_MAX_ALIVE];
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    const char *addr = sdfs_addr_of(alive, n_alive, node);
    if (!addr)
        return; /* not reachable now: its reports and the repair loop take over */
    char *sources[SDFS_REPLICAS];
    size_t n_src = 0;
    for (size_t r = 0; r < v->n_replicas; r++) {
        const char *a = strcmp(v->replicas[r], node) ? sdfs_addr_of(alive, n_alive, v->replicas[r])
                                                     : NULL;
        if (a)
            sources[n_src++] = (char *)a;
    }
    Idunno__SdfsFetch f = IDUNNO__SDFS_FETCH__INIT;
    f.blob = (char *)v->blob;
    f.size = v->size;
    f.sha256.data = (uint8_t *)v->sha256;
    f.sha256.len = 32;
    f.n_sources = n_src;
    f.sources = sources;
    net_call_pb(s->net, addr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_FETCH_REQ, &f.base, SDFS_FETCH_MS,
                NULL, NULL);
}

/* A reader says a replica's copy is bad. It may be wrong or hostile, so the
 * claim only makes that replica verify its copy. */
static void lead_bad(struct ctl_op *op)
{
    struct sdfs *s = op->ud;
    const Idunno__SdfsBad *m = op->msg;
    s->stats.bad_copies_reported++;
    const struct sdfs_version *v = catalog_find_blob(s->catalog, m->name, m->blob);
    if (v && version_on(v, m->node)) {
        LOG_WARN("sdfs", "copy of %s (blob %s) on %s reported bad (%s): %s verifies it", m->name,
                 m->blob, m->node, m->reason, m->node);
        verify_copy(s, v, m->node);
    }
    net_reply(op->req, IDUNNO__MSG_TYPE__MSG_SDFS_BAD_RESP, NULL, 0);
}

static void on_missing_dropped(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)ud;
    (void)status;
    (void)result;
    (void)len;
}

/* A replica's report: the reconciliation core (reconcile.h) says what it may
 * delete and which of its listed copies are missing (dropped from their sets,
 * so the repair loop replaces them). */
static void lead_report(struct ctl_op *op)
{
    struct sdfs *s = op->ud;
    const Idunno__SdfsStoreReport *m = op->msg;
    struct net_request *req = op->req;
    struct reconcile_report rep = {m->node,  m->boot,    m->seq,   m->answered_seq, m->held,
                                   m->blobs, m->n_blobs, m->young, m->n_young};
    struct reconcile_actions a;
    int rc = reconcile_report(s->reconcile, s->catalog, &rep, id_now_ms(), &a);
    if (rc < 0) {
        net_reply_error(req, rc, id_strerror(rc), NULL);
        return;
    }
    if (a.ignored)
        LOG_INFO("sdfs", "report %llu of %s ignored: incomplete or stale",
                 (unsigned long long)m->seq, m->node);
    for (size_t i = 0; i < a.n_missing; i++) {
        const struct sdfs_version *v = a.missing[i].version;
        LOG_WARN("sdfs",
                 "%s lacks its copy of %s version %llu (blob %s) on two reports: "
                 "replacing it",
                 m->node, a.missing[i].file->name, (unsigned long long)v->version, v->blob);
        propose_replica_change(s, a.missing[i].file->name, v->blob, m->node, "", on_missing_dropped,
                               NULL);
    }
    Idunno__SdfsBlobList out = IDUNNO__SDFS_BLOB_LIST__INIT;
    out.n_blobs = a.n_del;
    out.blobs = a.del;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_SDFS_REPORT_RESP, &out.base);
    reconcile_actions_free(&a);
}

/* -- the repair loop -- */

static int repair_running(void *ud, const char *blob)
{
    struct sdfs *s = ud;
    for (struct repair_job *j = s->repairs; j; j = j->next)
        if (strcmp(j->blob, blob) == 0)
            return 1;
    return 0;
}

void sdfs_repair_end(struct repair_job *j)
{
    struct sdfs *s = j->s;
    for (struct repair_job **pp = &s->repairs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            s->n_repairs--;
            break;
        }
    free(j);
}

static void on_repair_committed(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)result;
    (void)len;
    struct repair_job *j = ud;
    if (status == 0) {
        j->s->stats.repairs_done++;
        LOG_INFO("sdfs", "repaired %s (blob %s): copy on %s replaces %s in %llu ms", j->name,
                 j->blob, j->target, j->dead[0] ? j->dead : "(none)",
                 (unsigned long long)(id_now_ms() - j->started_ms));
    } else {
        j->s->stats.repairs_failed++;
    }
    sdfs_repair_end(j);
}

static void on_repair_fetched(void *ud, const struct net_result *res)
{
    struct repair_job *j = ud;
    struct sdfs *s = j->s;
    if (s->stopping) {
        sdfs_repair_end(j);
        return;
    }
    if (res->status < 0) {
        LOG_WARN("sdfs", "repair of %s (blob %s) on %s failed: %s", j->name, j->blob, j->target,
                 res->errmsg ? res->errmsg : id_strerror(res->status));
        s->stats.repairs_failed++;
        sdfs_repair_end(j);
        return;
    }
    if (propose_replica_change(s, j->name, j->blob, j->dead, j->target, on_repair_committed, j) < 0)
        sdfs_repair_end(j);
}

void sdfs_repair_tick(struct sdfs *s)
{
    if (!ctl_is_serving(s->ctl) || s->n_repairs >= SDFS_MAX_REPAIRS)
        return;
    /* Suspected members still hold their copies (reconcile.h): only failed
     * and departed ones are repaired away from. Sources and targets are
     * alive. */
    struct member_view members[SDFS_MAX_ALIVE], alive[SDFS_MAX_ALIVE];
    size_t n_members = member_snapshot(s->member, members, SDFS_MAX_ALIVE);
    size_t n_alive = member_alive(s->member, alive, SDFS_MAX_ALIVE);
    struct sdfs_node nodes[SDFS_MAX_ALIVE];
    size_t n_nodes = reconcile_repair_nodes(
        members, n_members < SDFS_MAX_ALIVE ? n_members : SDFS_MAX_ALIVE, nodes, SDFS_MAX_ALIVE);
    struct sdfs_repair plan[SDFS_MAX_REPAIRS];
    size_t n = catalog_plan_repairs(s->catalog, nodes, n_nodes, repair_running, s, plan,
                                    SDFS_MAX_REPAIRS - s->n_repairs);
    for (size_t i = 0; i < n; i++) {
        const struct sdfs_version *v = plan[i].version;
        struct repair_job *j = calloc(1, sizeof *j);
        if (!j)
            return;
        j->s = s;
        snprintf(j->name, sizeof j->name, "%s", plan[i].file->name);
        snprintf(j->blob, sizeof j->blob, "%s", v->blob);
        snprintf(j->dead, sizeof j->dead, "%s", plan[i].dead);
        snprintf(j->target, sizeof j->target, "%s", plan[i].target);
        j->started_ms = id_now_ms();
        char *sources[SDFS_REPLICAS];
        size_t n_src = 0;
        for (size_t r = 0; r < v->n_replicas; r++) {
            const char *a = sdfs_addr_of(alive, n_alive, v->replicas[r]);
            if (a)
                sources[n_src++] = (char *)a;
        }
        Idunno__SdfsFetch f = IDUNNO__SDFS_FETCH__INIT;
        f.blob = j->blob;
        f.size = v->size;
        f.sha256.data = (uint8_t *)v->sha256;
        f.sha256.len = 32;
        f.n_sources = n_src;
        f.sources = sources;
        const char *taddr = sdfs_addr_of(alive, n_alive, j->target);
        j->next = s->repairs;
        s->repairs = j;
        s->n_repairs++;
        if (!taddr || net_call_pb(s->net, taddr, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_FETCH_REQ, &f.base,
                                  SDFS_FETCH_MS, on_repair_fetched, j) < 0)
            sdfs_repair_end(j);
        else
            LOG_INFO("sdfs", "repairing %s version %llu (blob %s): %s copies it%s%s", j->name,
                     (unsigned long long)v->version, j->blob, j->target,
                     j->dead[0] ? " in place of " : "", j->dead);
    }
}

/* -- the store report (every node) -- */

static void on_report_answer(void *ud, const struct net_result *res)
{
    struct sdfs *s = ud;
    s->report_busy = 0;
    if (s->stopping || res->status < 0)
        return;
    s->report_answered = s->report_seq; /* the next report is built after this answer */
    Idunno__SdfsBlobList *m = idunno__sdfs_blob_list__unpack(NULL, res->len, res->body);
    if (!m)
        return;
    for (size_t i = 0; i < m->n_blobs; i++) {
        /* Re-check the age: it may have been sealed again meanwhile. */
        if (store_age_ms(s->store, m->blobs[i]) < s->young_ms)
            continue;
        LOG_INFO("sdfs", "deleting stale blob %s (no kept version lists it here)", m->blobs[i]);
        store_delete(s->store, m->blobs[i]);
    }
    idunno__sdfs_blob_list__free_unpacked(m, NULL);
}

void sdfs_report_send(struct sdfs *s)
{
    size_t n = store_count(s->store);
    char(*ids)[SDFS_BLOB_LEN + 1] = malloc((n ? n : 1) * sizeof *ids);
    char **old = calloc(n ? n : 1, sizeof *old), **young = calloc(n ? n : 1, sizeof *young);
    if (ids && old && young) {
        n = store_list(s->store, ids, n);
        Idunno__SdfsStoreReport r = IDUNNO__SDFS_STORE_REPORT__INIT;
        r.node = s->name;
        r.time_ms = id_wall_ms();
        r.seq = ++s->report_seq;
        r.answered_seq = s->report_answered;
        r.held = n;
        r.boot = s->boot;
        r.blobs = old;
        r.young = young;
        for (size_t i = 0; i < n; i++) {
            if (store_age_ms(s->store, ids[i]) < s->young_ms)
                young[r.n_young++] = ids[i];
            else
                old[r.n_blobs++] = ids[i];
        }
        if (sdfs_call_leader(s, IDUNNO__MSG_TYPE__MSG_SDFS_REPORT_REQ, &r.base, on_report_answer,
                             s) == 0)
            s->report_busy = 1;
    }
    free(ids);
    free(old);
    free(young);
}

#define SDFS_OP(t, d, start, done, flags)                                       \
    {                                                                           \
        IDUNNO__MSG_TYPE__MSG_SDFS_##t##_REQ, d, start, done, NULL, flags, NULL \
    }

const struct ctl_svc_op sdfs_lead_ops[] = {
    SDFS_OP(PLACE, &idunno__sdfs_place__descriptor, lead_place, NULL, 0),
    SDFS_OP(COMMIT, NULL, lead_commit, lead_commit_done, 0),
    SDFS_OP(PLACE_BATCH, &idunno__sdfs_place_batch__descriptor, lead_place_batch, NULL, 0),
    SDFS_OP(COMMIT_BATCH, NULL, lead_commit_batch, lead_commit_batch_done, 0),
    SDFS_OP(LOOKUP, &idunno__sdfs_lookup__descriptor, ctl_op_read, lead_lookup_read, 0),
    SDFS_OP(DELETE, NULL, lead_delete, lead_delete_done, CTL_OP_NOTFOUND_TO_DONE),
    SDFS_OP(REPORT, &idunno__sdfs_store_report__descriptor, lead_report, NULL, 0),
    SDFS_OP(BAD, &idunno__sdfs_bad__descriptor, lead_bad, NULL, 0),
    /* sdfs_on_list fills the request in and forwards it itself. */
    SDFS_OP(LIST, &idunno__sdfs_list__descriptor, ctl_op_read, lead_list_read, CTL_OP_NO_NET),
};
const size_t sdfs_lead_n_ops = sizeof sdfs_lead_ops / sizeof sdfs_lead_ops[0];
