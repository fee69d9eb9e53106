/* jobs.h — IDunno's replicated state: models and jobs. A sub-state machine of
 * the control plane (ctl/sm.h), so a standby coordinator takes over with every
 * job's images, completions, statistics and unflushed results.
 *
 * A job runs one model over the images queued by `inference` calls (SDFS
 * names, in order; image i is the i-th queued). A query is a batch of images
 * cut by the coordinator at dispatch time (so `set-batch` applies to what is
 * not yet dispatched); which images are in flight where is the coordinator's
 * own bookkeeping (sched/dispatch.c), rebuilt after a failover from what workers
 * report. What is replicated is what must survive: each image's completion
 * (a bitmap), per-job statistics (sched/qstats.h) and results not yet written
 * to SDFS.
 *
 * Exactly once: a completion names its images; an image already done is
 * counted as a duplicate and its result dropped, so a query that ran twice
 * (requeued after a failure that was not one) is stored once.
 *
 * Models and versions: each train of a name adds its next version (1, 2, ...)
 * and keeps the earlier ones, at most JOBS_MAX_VERSIONS per model: a new one
 * drops the oldest version the model's job is not pinned to (jobs_models.c).
 * A job is pinned to one version, the one the queries dispatched now run.
 *
 * Commands (CTL_CMD_MODEL_ADD .. CTL_CMD_JOB_SET_QUEUE_DELAY in
 * proto/idunno.proto): MODEL_ADD (a new version of the name), JOB_LAUNCH (one
 * running job per model, pinned to the version asked for or the latest),
 * JOB_SET_VERSION (re-pin a running job to a kept version),
 * JOB_SET_QUEUE_DELAY (an online job's maximum queue delay), JOB_INFERENCE
 * (append images), JOB_SET_BATCH, JOB_STOP, JOB_DONE (a batch of completed
 * queries), JOB_FLUSHED (the oldest N pending results were written as part P,
 * in file F with SHA-256 H: the first JOB_FLUSHED for P commits F as part P,
 * the same one again is a no-op, any other for P is ID_EEXIST; F follows the
 * naming of sched/parts.h, so it names bytes written once).
 *
 * Threading: none (the ctl glue serialises calls on the loop thread).
 */
#ifndef IDUNNO_SCHED_JOBS_H
#define IDUNNO_SCHED_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "ctl/sm.h"
#include "infer/card.h"
#include "sdfs/catalog.h"

#define JOBS_NAME_MAX 64
#define JOBS_MAX_BATCH 256
#define JOBS_MAX_IMAGES 1000000
#define JOBS_MAX_MODELS 256
/* Versions kept per model (as SDFS keeps a file's last versions). */
#define JOBS_MAX_VERSIONS 5
/* A stored card's JSON is at most this long: it travels in every query's
 * ModelInfo and in Raft entries. Room for a thousand long labels. */
#define JOBS_MAX_CARD (256 * 1024)
/* An online job's maximum queue delay at most (JobLaunch.max_queue_delay_us):
 * a second is already far beyond what batching gains (docs/benchmarks.md). */
#define JOBS_MAX_QUEUE_DELAY_US 1000000
/* An online job's delay when `launch --online` names none: measured
 * (benchmarks.md, "The online job's queue delay"), 2 ms more than doubled a
 * tiny model's rate under 8 clients and halved its p99, and a lone client
 * does not wait (a request goes at once while none of its job runs). */
#define JOBS_DEFAULT_QUEUE_DELAY_US 2000

struct qstats;

struct model_rec {
    char name[JOBS_NAME_MAX];
    char file[SDFS_NAME_MAX + 1];
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t size;
    uint8_t sha256[32];
    uint32_t input_size, resize, classes; /* input_size: H when H = W, else 0 */
    float mean[3], std[3];
    uint64_t time_ms;
    uint32_t version; /* 1 at the first train of the name, +1 at each later one */
    /* The card resolved at train time (infer/card.h), as stored (owned; NULL
     * for a model registered before cards) and parsed (given = 0 without). */
    char *card_json;
    struct model_card card;
};

/* One image's result, waiting to be written to a part: k class indices with
 * their probabilities (the card's top_k), or a raw output's k values, or an
 * error. */
struct pending_result {
    uint32_t image;
    uint32_t version; /* the model version that ran it (0: not recorded) */
    uint16_t k;
    uint8_t raw;
    uint32_t *classes; /* k; NULL when raw (one allocation with probs) */
    float *probs;      /* k probabilities, or the raw values */
    char *error;       /* NULL if the image was classified */
};

/* A committed result part. */
struct job_part {
    char file[SDFS_NAME_MAX + 1];
    uint32_t results; /* 0: not recorded (committed by an earlier version) */
    int has_sha256;
    uint8_t sha256[32];
};

struct job_rec {
    uint32_t id;
    char model[JOBS_NAME_MAX];
    uint32_t batch;
    double weight;
    int stopped;
    char error[200];  /* why the cluster stopped it ("": running, or a user's stop) */
    uint32_t version; /* the model version it is pinned to: queries dispatched now run it */
    /* An online job: its queries are the model's online requests, queued by
     * the leader as they come (coord_online.c), not images of a data set;
     * `inference` refuses it, and each request answered counts one query. */
    int online;
    /* An online job's maximum queue delay: its oldest waiting request may be
     * held this long for a fuller batch (sched/dispatch.h; 0: never held). */
    uint32_t max_queue_delay_us;
    uint64_t created_ms;
    char **images;
    size_t n_images, cap_images;
    uint8_t *done; /* bitmap, (cap_images + 7) / 8 bytes */
    uint64_t n_done;
    uint64_t queries_done;
    uint64_t duplicates; /* image results that arrived again and were dropped */
    struct qstats *stats;
    struct pending_result *pending;
    size_t n_pending, cap_pending;
    uint64_t parts;             /* result parts committed */
    struct job_part *part_list; /* parts of them, part 1 first */
};

extern const struct sm_ops jobs_sm_ops;

/* An empty state (no models, no jobs); NULL if out of memory. Freed with
 * jobs_destroy. */
struct jobs *jobs_create(void);
void jobs_destroy(struct jobs *j);

/* Names of models: 1..63 of [A-Za-z0-9_.-]. */
int jobs_model_name_ok(const char *name);

/* Models, each by its latest version. */
size_t jobs_model_count(const struct jobs *j);
const struct model_rec *jobs_model_at(const struct jobs *j, size_t i);
const struct model_rec *jobs_model(const struct jobs *j, const char *name);
/* A kept version of a model (0: the latest), or NULL. */
const struct model_rec *jobs_model_version(const struct jobs *j, const char *name,
                                           uint32_t version);
/* The kept versions of a model, oldest first (*n of them; NULL, 0: none). */
const struct model_rec *jobs_model_versions(const struct jobs *j, const char *name, size_t *n);

size_t jobs_count(const struct jobs *j);
struct job_rec *jobs_at(const struct jobs *j, size_t i);
/* The job of a model (running or stopped), or NULL. */
struct job_rec *jobs_of_model(const struct jobs *j, const char *model);
struct job_rec *jobs_by_id(const struct jobs *j, uint32_t id);

static inline int job_image_done(const struct job_rec *job, size_t i)
{
    return (job->done[i >> 3] >> (i & 7)) & 1;
}

/* Fills m from r; m points into r, mean and std (3 floats each). */
struct Idunno__ModelInfo;
void jobs_model_to_pb(const struct model_rec *r, struct Idunno__ModelInfo *m, float *mean,
                      float *std);

/* The SDFS name of committed result part `part` (1..parts) of a job; "" for
 * any other. `results` reads exactly these files. */
void jobs_part_name(const struct job_rec *job, uint64_t part, char *out, size_t len);
/* Fills m from p (m points into p). */
struct Idunno__JobPart;
void jobs_part_to_pb(const struct job_part *p, struct Idunno__JobPart *m);
/* Appends the oldest pending results of a job (at most max, and no more once
 * out holds max_bytes) to out as JSON lines, a part's contents, in the shape
 * of infer/result.h; each result's labels come from the card of the version
 * that ran it. *n: how many. Returns 0 or ID_ENOMEM. */
struct strbuf;
int jobs_render_results(const struct jobs *j, const struct job_rec *job, size_t max,
                        size_t max_bytes, struct strbuf *out, size_t *n);
/* Committed part `part` (1..parts), or NULL. */
const struct job_part *jobs_part(const struct job_rec *job, uint64_t part);

#endif
