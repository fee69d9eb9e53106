/* child.h — models run in processes of their own: a bad model costs one job,
 * not a node.
 *
 * A node is also an SDFS replica and maybe a Raft voter; a model that crashes
 * ONNX Runtime (or lies about its output) must not take those down with it.
 * So the node runs each model in an `idunnod --infer-child` process
 * (child_main.c) that it starts with libuv, one per loaded model, and talks
 * to over a socket pair (child_proto.h). One process per model makes a
 * crash's culprit certain: only that model's runs were in it.
 *
 * When a process dies (its exit and the end of its socket both seen), each
 * run it held is handed back with ID_ECLOSED, for the caller to run again on
 * a fresh process; nothing it had finished is lost, since a DONE read before
 * the end of file was delivered. A death with runs in it counts as a crash
 * of the model (infer_crashes, below); at INFER_MAX_CRASHES the model is
 * given up: its runs come back with model_failed set, and later runs are
 * refused at once.
 *
 * A process that hangs (a model that never finishes, a deadlock in a
 * runtime) would hold its runs, and the worker slot waiting on them, for
 * ever: a run handed to a process more than run_timeout_ms ago gets the
 * process killed (SIGKILL), which then ends like any crash, counted against
 * the model and its runs handed back, the reason saying it timed out.
 *
 * Threading: the loop thread only.
 */
#ifndef IDUNNO_INFER_CHILD_H
#define IDUNNO_INFER_CHILD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "infer/infer.h"

#define INFER_MAX_CRASHES 3

/* ---- crash accounting (pure) ------------------------------------------------------------ */

#define INFER_KEY_MAX 96 /* "name@version" */

struct infer_crashes {
    struct infer_crash_entry {
        char key[INFER_KEY_MAX];
        unsigned crashes;
        char last[160]; /* why the last crash happened */
    } * e;
    size_t n;
};

/* Records a crash of model `key`, `why` it happened (NULL: unknown); returns
 * its crashes so far (0: out of memory, not recorded). */
unsigned infer_crashes_note(struct infer_crashes *c, const char *key, const char *why);
/* Why the last recorded crash of key happened ("" if none or unknown). */
const char *infer_crashes_last(const struct infer_crashes *c, const char *key);
/* Crashes recorded for key. */
unsigned infer_crashes_of(const struct infer_crashes *c, const char *key);
void infer_crashes_free(struct infer_crashes *c);

/* ---- the run deadline (pure) ------------------------------------------------------------- */

#define INFER_DEFAULT_TIMEOUT_S 300 /* docs/inference.md says why */

/* 1 if a run handed to its process at handed_ms is, at now_ms, past the
 * deadline timeout_ms (0: no deadline). */
int infer_run_overdue(uint64_t handed_ms, uint64_t now_ms, uint32_t timeout_ms);
/* How often a process's runs are checked against timeout_ms: a quarter of
 * it, between 50 ms and 1 s, so a hung process outlives the deadline by at
 * most a quarter more, and a long deadline costs a wake-up a second. */
uint64_t infer_deadline_check_ms(uint32_t timeout_ms);

/* ---- the processes ------------------------------------------------------------------------ */

struct infer_procs;

struct infer_procs_config {
    uv_loop_t *loop;
    const char *exe;      /* the idunnod binary; NULL: this process's own */
    const char *node;     /* the node's name, for the processes' log lines */
    const char *log_path; /* the node's log (NULL: the processes log to stderr) */
    int threads;          /* ONNX Runtime intra-op threads */
    int gate_slots;       /* infer/gate.h; 0: none */
    const char *gate_dir;
    int sched_batch;         /* runs as SCHED_BATCH */
    int test_hooks;          /* the processes honour idunno.test.crash (tests only) */
    size_t max_idle;         /* processes kept without runs, the least recently used stopped */
    uint32_t run_timeout_ms; /* a run in a process longer than this kills it (0: never) */
};

struct infer_procs_done {
    /* 0: results[n] hold the run's results. ID_EMODEL: the model could not be
     * loaded or failed the run (error says why). ID_ECLOSED: its process died
     * during the run; run it again. */
    int status;
    int model_failed; /* the model has crashed INFER_MAX_CRASHES processes: give it up */
    const char *error;
    const struct infer_result *results;
    uint64_t cpu_us; /* the run's CPU time in the process */
};

typedef void (*infer_procs_cb)(void *ud, const struct infer_procs_done *d);

/* Makes the supervisor; no process starts until the first run needs one. The
 * strings of cfg are copied (exe NULL: this program's own path). Returns 0,
 * ID_ENOMEM, or ID_EIO when the program's path cannot be found. Released with
 * infer_procs_destroy. */
int infer_procs_create(const struct infer_procs_config *cfg, struct infer_procs **out);

/* Runs in[n] (n may be 0: load only) through the model `key` (name@version)
 * whose file is `path` and whose stored card is `card` (JSON, card.h; NULL or
 * "": the model's metadata and shapes), in its process (started if need be;
 * the key names the version, so one key always comes with one card). Each
 * input is a file or bytes, an image or a tensor (infer.h, struct
 * infer_input); the bytes of a run must fit its frame (INFER_CHILD_MAX_FRAME,
 * else ID_ETOOBIG) and are copied. cb runs once, on the loop, never
 * inside this call. Returns 0, or ID_EMODEL with errmsg for a model given
 * up, ID_ENOMEM, ID_EIO (cannot start a process). */
int infer_procs_run(struct infer_procs *p, const char *key, const char *path, const char *card,
                    const struct infer_input *in, size_t n, infer_procs_cb cb, void *ud,
                    char *errmsg, size_t len);

/* Kills every process; pending runs are dropped without their callbacks (the
 * node is stopping). Memory is freed once libuv has closed the handles. */
void infer_procs_destroy(struct infer_procs *p);

struct infer_procs_stats {
    uint64_t started, crashes, failed_models;
    size_t running; /* processes alive */
};
void infer_procs_get_stats(const struct infer_procs *p, struct infer_procs_stats *out);

/* The entry point of `idunnod --infer-child ...` (child_main.c). */
int infer_child_main(int argc, char **argv);

#endif
