/* worker.h — the inference worker on every node: runs the queries the
 * coordinator dispatches and returns their results.
 *
 * A RUN request is accepted at once (the coordinator keeps a small bounded
 * number of queries per worker in flight). The worker then makes the model
 * and the batch's images local (its own SDFS copies, or copies fetched from
 * replicas with sdfs_fetch_local), runs the batch on a pool thread — batches
 * run side by side only as the coordinator dispatched them (its slot, and a
 * spare slot for a job with nothing else running) — and sends the result as JOB_DONE straight to the coordinator that
 * dispatched the latest query, or, after a failed attempt, through this node
 * (which forwards it to whoever leads now). A result is retried until a
 * coordinator has committed it, so a coordinator change loses nothing; a new
 * coordinator asks WORKER_STATE and adopts what the worker holds.
 *
 * Images that cannot be fetched or decoded come back as per-image errors; a
 * model that cannot be loaded fails every image of the batch with its reason.
 *
 * Threading: loop thread only. Models run in their own processes
 * (infer/child.h), up to four runs at once each, with cfg->threads ONNX
 * Runtime threads per run (idunnod --infer-threads).
 */
#ifndef IDUNNO_SCHED_WORKER_H
#define IDUNNO_SCHED_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct net;
struct sdfs;
struct worker;

struct worker_config {
    uv_loop_t *loop;
    struct net *net;
    struct sdfs *sdfs;
    const char *name;
    const char *addr;
    int threads;          /* ONNX Runtime intra-op threads (0: 1) */
    int gate_slots;       /* model runs at once on this host (infer/gate.h); 0: no gate */
    const char *gate_dir; /* NULL or "": infer_gate_default_dir */
    int sched_batch;      /* run batches as SCHED_BATCH (see worker.c) */
    const char *log_path; /* the node's log, where its inference processes log too */
    const char *data_dir; /* the node's data: online runs' images go to DATA/online */
    int test_hooks;       /* inference processes honour idunno.test.crash (tests only) */
    uint32_t
        run_timeout_ms; /* a run longer than this kills its process (infer/child.h; 0: never) */
};

int worker_create(const struct worker_config *cfg, struct worker **out, char *errmsg, size_t len);
/* Stops accepting, closes the tick and kills the model processes; results not
 * yet delivered are lost with them (the coordinator requeues them when the
 * node leaves). Call before net_destroy; a second call does nothing. */
void worker_stop(struct worker *w);
/* After net_destroy (whose failed calls still reach w): stops w if that was
 * not done, and frees it, at once or when its tick's close callback runs. */
void worker_destroy(struct worker *w);

struct worker_stats {
    uint64_t accepted, completed, images, failed_images;
    uint64_t online;         /* online runs answered with results */
    uint64_t infer_ms_total; /* time spent running batches */
    size_t holding;          /* accepted and not yet acknowledged */
};
void worker_get_stats(struct worker *w, struct worker_stats *out);

#endif
