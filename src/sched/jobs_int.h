/* jobs_int.h — what the two halves of the jobs state machine share: the
 * state's layout, and the model records' side (jobs_models.c: records,
 * versions, MODEL_ADD, their snapshot section) as jobs.c (jobs, the other
 * commands, the snapshot frame) calls it. Not for other files. */
#ifndef IDUNNO_SCHED_JOBS_INT_H
#define IDUNNO_SCHED_JOBS_INT_H

#include "idunno.pb-c.h"
#include "sched/jobs.h"

/* The kept versions of one model, oldest first: v[n - 1] is the latest. */
struct model_hist {
    struct model_rec *v; /* JOBS_MAX_VERSIONS slots */
    size_t n;
};

struct jobs {
    struct model_hist *models; /* JOBS_MAX_MODELS slots */
    size_t n_models;
    struct job_rec **jobs; /* by id, increasing */
    size_t n_jobs, cap_jobs;
    uint32_t next_job;
};

/* Packs m into res->body when someone waits for it. */
void jobs_result_pb(struct sm_result *res, const ProtobufCMessage *m);

/* Empties the model records (the slots stay allocated). */
void jobs_models_clear(struct jobs *j);

/* MODEL_ADD: a new version of a model (or its first). */
void jobs_apply_model_add(struct jobs *j, const struct sm_cmd *cmd, struct sm_result *res);

/* The model records of a snapshot section into a fresh state (its slots
 * allocated); 0, ID_ENOMEM or ID_EPROTO. */
int jobs_models_restore(struct jobs *fresh, const Idunno__JobsState *st);
/* Fills st's models and earlier from j, with storage from sc (sc->failed
 * says if that ran out). */
void jobs_models_snapshot(const struct jobs *j, struct sm_scratch *sc, Idunno__JobsState *st);

#endif
