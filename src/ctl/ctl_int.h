/* ctl_int.h — the inside of struct ctl, shared by ctl.c (the glue to any raft
 * instance) and ctl_uv.c (raft over libuv). Not for other layers. */
#ifndef IDUNNO_CTL_CTL_INT_H
#define IDUNNO_CTL_CTL_INT_H

#include <raft.h>
#include <raft/uv.h>

#include "base/err.h"
#include "ctl/ctl.h"
#include "ctl/ctl_relay.h"
#include "ctl/kv.h"
#include "ctl/meta.h"
#include "ctl/sm.h"

#define CTL_MAX_LEADER_SUBS 8

/* A proposal waiting for raft's callback. Freed only then, even if the caller
 * was already answered (timeout), because raft holds &req until it fires. */
struct ctl_proposal {
    struct raft_apply req; /* req.data = this */
    struct ctl *c;
    uint64_t seq;
    uint64_t deadline; /* raft io time, ms */
    ctl_propose_cb cb;
    void *ud;
    int answered; /* cb already ran (timeout) */
    int applied;  /* the command was applied here: status/body are its result */
    int status;
    uint8_t *body;
    size_t len;
    struct ctl_proposal *prev, *next;
};

struct ctl_read {
    ctl_read_cb cb;
    void *ud;
    struct ctl_read *next;
};

/* A raft barrier: the start-of-term one (leader != 0) or one shared by reads. */
struct ctl_barrier {
    struct raft_barrier req; /* req.data = this */
    struct ctl *c;
    int leader;
    uint64_t term;
    struct ctl_read *reads;
};

struct ctl_change {
    struct raft_change req; /* req.data = this */
    struct ctl *c;
    ctl_change_cb cb;
    void *ud;
};

struct ctl_leader_sub {
    ctl_leader_fn fn;
    void *ud;
};

struct ctl {
    struct ctl_config cfg;
    char name[CTL_NAME_MAX];
    char node_addr[CTL_ADDR_MAX];
    char raft_addr[CTL_ADDR_MAX];
    char dir[512];
    uint64_t id;
    char errmsg[ID_ERRMSG_LEN];

    struct raft *raft; /* &own_raft, or the fixture's */
    struct raft_fsm fsm;
    struct sm sm;
    struct kv *kv;
    struct meta *meta;

    struct ctl_proposal *props; /* waiting for raft */
    uint64_t next_seq;

    struct ctl_read *waiting, *waiting_tail; /* reads needing a barrier submitted later */
    struct ctl_barrier *read_barrier;        /* in flight */
    int leader_barrier_inflight;
    int changes_inflight;

    uint64_t leading_term; /* term we lead in (0: not leader) */
    int serving;
    struct {
        int serving;
        uint64_t leader_id, term;
    } reported;
    struct ctl_leader_sub subs[CTL_MAX_LEADER_SUBS];
    size_t n_subs;

    int closing;
    int detached;

    /* libuv mode */
    uv_loop_t *loop;
    struct raft own_raft;
    struct raft_io io;
    struct ctl_relay transport;
    struct seal_keyring keys; /* the raft port's copy (keyed only) */
    int keyed;
    struct raft_tracer tracer;
    uv_check_t check;
    int fresh;   /* raft dir had no state at create */
    int inited;  /* raft_init succeeded */
    int started; /* raft_start succeeded */
    void (*close_done)(void *ud);
    void *close_ud;
};

/* ctl.c: common set-up and tear-down of both modes. */
int ctl_init_common(struct ctl *c, const struct ctl_config *cfg);
void ctl_free_common(struct ctl *c);
/* Fails queued reads and answers proposals still pending (closing). */
void ctl_fail_all(struct ctl *c, int status);

#endif
