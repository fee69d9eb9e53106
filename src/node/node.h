/* node.h — one idunnod process: its configuration and the layers it runs, all
 * owned by one libuv loop thread. */
#ifndef IDUNNO_NODE_NODE_H
#define IDUNNO_NODE_NODE_H

#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "ctl/ctl.h"
#include "net/seal.h"
#include "node/node_ctl.h"

#define NODE_MAX_JOIN 16
#define IDUNNO_VERSION "0.1.0"

struct node_config {
    char name[64];
    char addr[64]; /* HOST:PORT: TCP RPC and UDP gossip */
    char data_dir[512];
    char *join[NODE_MAX_JOIN + 1]; /* NULL-terminated seeds, owned */
    char coordinators[256];        /* comma-separated voter names (control plane) */
    int log_level;
    int log_stderr;
    /* Membership timing overrides (0: defaults). */
    uint32_t probe_interval_ms, probe_timeout_ms, suspect_timeout_ms;
    /* A voter failed this long is replaced by a live member (0: default 30 s). */
    uint32_t voter_replace_ms;
    /* Raft timing overrides (0: ctl.h defaults); raft_rto_min_ms < 0: default,
     * 0: the kernel's own retransmission timeout. */
    uint32_t election_timeout_ms, heartbeat_ms;
    int raft_rto_min_ms;
    unsigned snapshot_every;       /* entries between snapshots (0: ctl.h's default) */
    int infer_slots;               /* model runs at once on this host (0: no gate) */
    uint32_t sdfs_delete_grace_ms; /* 0: SDFS's default (--sdfs-delete-grace) */
    uint32_t sdfs_young_ms;        /* 0: SDFS_YOUNG_MS (--sdfs-young) */
    int infer_sched_batch;         /* model runs as SCHED_BATCH (--infer-sched batch) */
    char infer_gate_dir[256];      /* the gate's lock files ("" : infer_gate_default_dir) */
    int no_http;                   /* --no-http: no HTTP endpoint on PORT+2 */
    char http_host[64];            /* --http-addr: the HTTP endpoint's host ("": --addr's) */
    int test_hooks;                /* --test-hooks: inference processes honour test metadata */
    int infer_threads;             /* --infer-threads: ONNX Runtime threads per run (0: 1) */
    uint32_t infer_timeout_s;      /* --infer-timeout: a model run's deadline (infer/child.h) */
    char key_file[512];            /* --key-file: the cluster keyring ("": none) */
};

struct node {
    uv_loop_t *loop;
    struct node_config cfg;
    uint64_t incarnation; /* wall-clock ms at start: name + this is the member id */
    uint64_t started_ms;  /* monotonic */
    char log_path[600];
    struct net *net;
    struct member *member;
    struct logq *logq;
    /* HTTP endpoint on PORT+2 (node_http.c); NULL with --no-http. Layers add
     * their metrics and status sections with http_add_provider(node->http, ...),
     * which accepts NULL. */
    struct http *http;
    /* The bearer tokens of the keyring's keys (seal_http_token), for HTTP
     * requests that change state; none without a cluster key. */
    uint8_t http_tokens[SEAL_MAX_KEYS][SEAL_HTTP_TOKEN_LEN];
    size_t n_http_tokens;
    /* Control plane (node_ctl.c); its own state in nc. */
    struct ctl *ctl;
    struct node_ctl_state nc;
    /* Sub-state machines of the layers above, registered with ctl at its
     * creation and destroyed once it has closed. */
    struct catalog *catalog; /* SDFS metadata */
    struct jobs *jobs;       /* models and jobs */
    /* SDFS (src/sdfs): replica, gateway and the coordinator's part. */
    struct sdfs *sdfs;
    /* IDunno (src/sched): the inference worker, and the coordinator's part
     * (active on the leader). */
    struct worker *worker;
    struct coord *coord;
    uv_signal_t sig_term, sig_int;
    uv_timer_t exit_timer;
    int stopping;
    int exit_code;
    char errmsg[ID_ERRMSG_LEN];
};

/* Parses argv into cfg. Returns 0, 1 when --help was printed, or a negative
 * ID_E* with the reason in errmsg. */
int node_parse_args(int argc, char **argv, struct node_config *cfg, char *errmsg, size_t len);

void node_config_free(struct node_config *cfg);

/* Opens the data dir and log, binds the transport and starts every layer.
 * Returns 0 or ID_E* with node->errmsg set. */
int node_start(struct node *node, uv_loop_t *loop, const struct node_config *cfg);

/* Starts a clean shutdown (leave the group, close every handle); the loop then
 * runs dry and uv_run returns. */
void node_stop(struct node *node, int exit_code);

#endif
