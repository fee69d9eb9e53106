/* ctl_uv.c — the control plane on a libuv loop: raft over raft_uv (segments and
 * snapshots in DATA/raft, written by libraft off the loop thread) and its TCP
 * transport on PORT+1 (tuned for loss: ctl_tcp.h); bootstrap on a first start; shutdown. */
#include "ctl/ctl_int.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"

/* Open segments are preallocated at this size: small, since commands are small
 * and several nodes share one disk in local clusters. */
#define CTL_SEGMENT_SIZE (4u << 20)

static void ctl_trace(struct raft_tracer *t, int type, const void *data)
{
    (void)t;
    const struct raft_tracer_info *info = data;
    if (type != RAFT_TRACER_DIAGNOSTIC || !info)
        return;
    if (info->diagnostic.level <= 1)
        LOG_ERROR("raft", "%s", info->diagnostic.message);
    else if (info->diagnostic.level == 2)
        LOG_WARN("raft", "%s", info->diagnostic.message);
    else if (info->diagnostic.level <= 4)
        LOG_DEBUG("raft", "%s", info->diagnostic.message);
}

/* A fresh directory has neither metadata file (libraft writes them on
 * bootstrap and at its first term or vote). */
static int ctl_dir_is_fresh(const char *dir)
{
    char path[600];
    struct stat st;
    for (int i = 1; i <= 2; i++) {
        snprintf(path, sizeof path, "%s/metadata%d", dir, i);
        if (stat(path, &st) == 0)
            return 0;
    }
    return 1;
}

static void ctl_on_check(uv_check_t *h)
{
    ctl_poll(h->data);
}

/* The raft port's rule (docs/security.md): a sender is a verified voter when
 * its id is a voter of our current configuration and its TCP peer is that
 * voter's configured host. */
static void ctl_relay_policy(void *ud, uint64_t id, const char *peer_ip,
                             struct raft_wire_policy *pol)
{
    struct ctl *c = ud;
    const struct raft *r = &c->own_raft;
    pol->current_term = r->current_term;
    pol->verified_voter = 0;
    for (unsigned i = 0; i < r->configuration.n; i++) {
        const struct raft_server *s = &r->configuration.servers[i];
        if (s->id != id || s->role != RAFT_VOTER || !s->address)
            continue;
        const char *colon = strrchr(s->address, ':');
        size_t host_len = colon ? (size_t)(colon - s->address) : strlen(s->address);
        pol->verified_voter = strlen(peer_ip) == host_len &&
                              strncmp(s->address, peer_ip, host_len) == 0;
    }
}

const struct ctl_relay_stats *ctl_raft_port_stats(const struct ctl *c)
{
    return c && c->inited ? &c->transport.stats : NULL;
}

int ctl_create(uv_loop_t *loop, const struct ctl_config *cfg, struct ctl **out)
{
    *out = NULL;
    struct ctl *c = calloc(1, sizeof *c);
    if (!c)
        return ID_ENOMEM;
    c->loop = loop;
    int rc = ctl_init_common(c, cfg);
    if (rc < 0)
        goto fail_free;
    if (!cfg->dir || ctl_raft_addr(cfg->node_addr, c->raft_addr, sizeof c->raft_addr) < 0) {
        rc = ID_EINVAL;
        goto fail_free;
    }
    snprintf(c->dir, sizeof c->dir, "%s", cfg->dir);
    if (mkdir(c->dir, 0755) < 0 && errno != EEXIST) {
        rc = id_from_errno(errno);
        goto fail_free;
    }
    c->fresh = ctl_dir_is_fresh(c->dir);

    /* libraft writes to peers with write(2): when one dies, SIGPIPE would kill
     * this process. A process that has not chosen a policy gets "ignore". */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);

    /* libraft's transport and log write use rand(); two nodes started in the
     * same second must not share a sequence. */
    unsigned seed = (unsigned)(ctl_id_of(cfg->name) ^ ((uint64_t)getpid() << 16) ^ id_now_us());
    srand(seed);

    /* libraft checks that the caller filled in the interface versions. */
    c->io.version = 2;
    unsigned rto_us = c->cfg.tcp_rto_min_ms < 0 ? 0 : (unsigned)c->cfg.tcp_rto_min_ms * 1000u;
    if (cfg->keys) {
        c->keys = *cfg->keys;
        c->keyed = 1;
    }
    ctl_relay_init(&c->transport, loop, rto_us, c->keyed ? &c->keys : NULL, ctl_relay_policy, c);
    int rv = raft_uv_init(&c->io, loop, c->dir, &c->transport.outer);
    if (rv != 0) {
        snprintf(c->errmsg, sizeof c->errmsg, "raft data dir %s: %s", c->dir, c->io.errmsg);
        rc = ID_EIO;
        goto fail_free;
    }
    raft_uv_set_connect_retry_delay(&c->io, c->cfg.connect_retry_ms);
    raft_uv_set_segment_size(&c->io, CTL_SEGMENT_SIZE);
    rv = raft_init(&c->own_raft, &c->io, &c->fsm, c->id, c->raft_addr);
    if (rv != 0) {
        snprintf(c->errmsg, sizeof c->errmsg, "raft init: %s", raft_errmsg(&c->own_raft));
        raft_uv_close(&c->io);
        rc = ctl_from_raft(rv);
        goto fail_free;
    }
    c->inited = 1;
    ctl_attach(c, &c->own_raft);
    c->id = ctl_id_of(c->name);
    raft_seed(&c->own_raft, seed);
    /* Formatting every trace costs; only when someone reads debug lines. */
    c->tracer.impl = c;
    c->tracer.version = 2;
    c->tracer.emit = ctl_trace;
    c->own_raft.tracer = log_get_level() <= LOG_LEVEL_DEBUG ? &c->tracer : NULL;
    uv_check_init(loop, &c->check);
    c->check.data = c;
    *out = c;
    return 0;

fail_free:
    if (!c->errmsg[0])
        snprintf(c->errmsg, sizeof c->errmsg, "%s", id_strerror(rc));
    LOG_ERROR("ctl", "cannot create the control plane: %s", c->errmsg);
    ctl_free_common(c);
    seal_keyring_wipe(&c->keys);
    free(c);
    return rc;
}

int ctl_needs_bootstrap(const struct ctl *c)
{
    return c->fresh;
}

int ctl_start(struct ctl *c, const struct ctl_voter *voters, size_t n_voters)
{
    if (c->started || c->closing)
        return ID_EINVAL;
    int self = -1;
    for (size_t i = 0; i < n_voters; i++)
        if (strcmp(voters[i].name, c->name) == 0)
            self = (int)i;
    if (c->fresh && self >= 0) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        char list[512] = "";
        int rv = 0;
        for (size_t i = 0; i < n_voters && rv == 0; i++) {
            char raddr[CTL_ADDR_MAX];
            if (ctl_raft_addr(voters[i].addr, raddr, sizeof raddr) < 0) {
                snprintf(c->errmsg, sizeof c->errmsg, "voter %s has no valid address '%s'",
                         voters[i].name, voters[i].addr);
                raft_configuration_close(&conf);
                return ID_EINVAL;
            }
            rv = raft_configuration_add(&conf, ctl_id_of(voters[i].name), raddr, RAFT_VOTER);
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s@%s", i ? "," : "", voters[i].name,
                     raddr);
        }
        if (rv == 0)
            rv = raft_bootstrap(c->raft, &conf);
        raft_configuration_close(&conf);
        if (rv != 0) {
            snprintf(c->errmsg, sizeof c->errmsg, "bootstrap: %s (%s)", raft_strerror(rv),
                     raft_errmsg(c->raft));
            return ctl_from_raft(rv);
        }
        LOG_INFO("ctl", "bootstrapped a new group of %zu voters: %s", n_voters, list);
    } else if (c->fresh) {
        LOG_INFO("ctl", "not a voter; raft on %s waits to be added to the group", c->raft_addr);
    } else {
        LOG_INFO("ctl", "recovering raft state from %s", c->dir);
    }
    int rv = raft_start(c->raft);
    if (rv != 0) {
        snprintf(c->errmsg, sizeof c->errmsg, "raft start: %s (%s)", raft_strerror(rv),
                 raft_errmsg(c->raft));
        return ctl_from_raft(rv);
    }
    c->started = 1;
    c->fresh = 0;
    uv_check_start(&c->check, ctl_on_check);
    LOG_INFO("ctl", "raft %s id %llu at %s: term %llu, %llu entries, %llu applied", c->name,
             (unsigned long long)c->id, c->raft_addr,
             (unsigned long long)raft_current_term(c->raft),
             (unsigned long long)raft_last_index(c->raft),
             (unsigned long long)raft_last_applied(c->raft));
    return 0;
}

static void ctl_after_check_closed(uv_handle_t *h)
{
    struct ctl *c = h->data;
    void (*done)(void *) = c->close_done;
    void *ud = c->close_ud;
    ctl_free_common(c);
    free(c);
    if (done)
        done(ud);
}

/* The close callback finds the ctl through the struct that embeds the raft. */
static void ctl_on_raft_closed(struct raft *r)
{
    struct ctl *c = (struct ctl *)((char *)r - offsetof(struct ctl, own_raft));
    raft_uv_close(&c->io);
    uv_close((uv_handle_t *)&c->check, ctl_after_check_closed);
}

void ctl_destroy(struct ctl *c, void (*done)(void *ud), void *ud)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    c->close_done = done;
    c->close_ud = ud;
    c->serving = 0;
    uv_check_stop(&c->check);
    ctl_fail_all(c, ID_ESHUTDOWN);
    raft_close(c->raft, ctl_on_raft_closed);
}
