/* coord_int.h — the coordinator's state, shared by its files and no one else:
 * coord.c (the wiring of dispatch and completions, the requests that change
 * jobs and models, the life cycle), coord_parts.c (writing results to SDFS)
 * and coord_views.c (the read-only requests).
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_SCHED_COORD_INT_H
#define IDUNNO_SCHED_COORD_INT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "member/member.h"
#include "sched/coord.h"

/* A RUN, a preload or a delete not answered in this time has failed. */
#define COORD_RUN_TIMEOUT_MS 5000
/* Model loads started per call of load_models at most (more follow on the
 * next answer or tick). */
#define COORD_LOADS_MAX 16
/* pump() asks which models to load at most this often: the question walks
 * every job's and worker's model state, and pump runs at each completion
 * (thousands a second). A load's answer and a new model ask at once. */
#define COORD_LOADS_EVERY_US 10000
/* Result files that no commit can name are looked for this often, and at
 * most this many deleted per look (parts.h). */
#define COORD_SWEEP_MS 5000
#define COORD_SWEEP_MAX 64

struct dispatch;
struct net_request;
struct parts;
struct model_rec;
struct Idunno__ModelInfo;
struct online_call;

/* Live members (at most this many) with their addresses: a dispatch's view. */
#define COORD_MAX_ALIVE 256
struct coord_alive {
    struct member_view v[COORD_MAX_ALIVE];
    size_t n;
};

/* Per model: the latency of its online requests answered by this leader
 * (received to answered) and how many failed, for the metrics
 * (coord_online.c). Not replicated: a new leader starts counting afresh. */
struct online_model {
    char name[64];
    struct qstats *stats;
    uint64_t failed;
};

struct coord {
    uv_loop_t *loop;
    struct net *net;
    struct ctl *ctl;
    struct ctl_svc *svc; /* the leader operations (ctl/service.h) */
    struct member *member;
    struct jobs *jobs;
    struct catalog *catalog;
    struct sdfs *sdfs;
    char name[64];
    char addr[64];
    struct dispatch *d;        /* the dispatch decisions (dispatch.h); lead while this node leads */
    struct parts *parts;       /* writing results to SDFS (parts.h); leads while dispatching */
    uint64_t epoch;            /* bumped at each (de)activation: stale callbacks check it */
    uint64_t loads_checked_us; /* the dispatcher last asked which models to load */
    uv_timer_t tick, batch_timer;
    /* Ends the hold of an online job's requests (its queue delay) on time,
     * rather than at the next tick or event (pump arms it). */
    uv_timer_t hold_timer;
    int stopping;
    int timers_closed;                  /* close callbacks run, of COORD_TIMERS */
    int destroy_pending;                /* coord_destroy ran: the last close callback frees */
    struct coord_stats stats;           /* what the wiring counts; the core counts the rest */
    struct online_call *online;         /* online requests under way (coord_online.c) */
    unsigned online_rr;                 /* where the next pick among equal workers starts */
    struct online_model *online_models; /* COORD_ONLINE_MODELS of them */
    size_t n_online_models;
    struct online_reply *online_replies; /* answers by request key, a ring (coord_online.c) */
    size_t online_reply_next;
};

void coord_alive_load(struct coord *c, struct coord_alive *a);
/* The address of a live member, or NULL. */
const char *coord_alive_addr(const struct coord_alive *a, const char *name);
/* Fills the model part of a dispatch, with the live replicas holding its file
 * (mean and std: 3 floats each; sources: SDFS_REPLICAS). ID_ENOTFOUND if the
 * catalog has no such version of the file. */
int coord_model_msg(struct coord *c, const struct model_rec *m, const struct coord_alive *a,
                    struct Idunno__ModelInfo *out, float *mean, float *std, char **sources);

/* coord_online.c: an ONLINE_INFER request, on the leader. */
void coord_lead_online(void *ud, struct net_request *req, const uint8_t *body, size_t len);
/* How long forwarding an ONLINE_INFER may take: its deadline and a margin
 * for the answer's way back (ctl_fwd_set_long). Reads only that field. */
uint32_t coord_online_wait_ms(const uint8_t *body, size_t len);
/* Answers the online requests under way (the coordinator stops) and lets
 * their calls end without it. */
void coord_online_stop(struct coord *c);
/* An online job's request came out of the dispatcher (dispatch_next) for
 * q->worker: sends it, with the job's other waiting requests, as one run. */
struct dispatch_run;
void coord_online_dispatched(struct coord *c, const struct dispatch_run *q,
                             const struct coord_alive *a);
/* The dispatcher stops leading: requests waiting in it are answered
 * ID_ENOTLEADER (their senders try the next leader). Before dispatch_unlead. */
void coord_online_unlead(struct coord *c);
/* Answers charged requests past their deadline or whose job stopped. */
void coord_online_tick(struct coord *c);
/* coord.c: dispatches what can be now; holds a completion (owned) for the
 * next JOB_DONE command, answering req (NULL: none) when it commits. */
void coord_pump(struct coord *c);
struct Idunno__QueryDone;
void coord_hold_done(struct coord *c, struct Idunno__QueryDone *done, struct net_request *req);
/* Releases the online statistics (not the array). */
void coord_online_free(struct coord *c);

/* The node's Raft term now (0 if out of memory). */
uint64_t coord_current_term(struct coord *c);

/* coord_parts.c: the part writes and sweeps due now (the tick). */
void coord_flush_results(struct coord *c);

/* coord_views.c: answers with the job of `model` as JobInfo (type: the
 * response type), and the reads served after a read barrier. */
void coord_reply_job(struct coord *c, struct net_request *req, uint16_t type, const char *model);
void coord_read_models(struct coord *c, struct net_request *req);
void coord_read_jobs(struct coord *c, struct net_request *req, const uint8_t *body, size_t len);
void coord_read_results(struct coord *c, struct net_request *req, const uint8_t *body, size_t len);

#endif
