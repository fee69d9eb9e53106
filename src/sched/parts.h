/* parts.h — result parts: the coordinator's decisions about writing a job's
 * pending results to SDFS. When a part is due, the name it is written under,
 * what follows a write's and a commit's outcome, and which files under
 * results/ no commit can ever name (to delete). Pure logic: no I/O, no clock
 * (times are arguments); the coordinator (sched/coord_parts.c) carries out the
 * actions and reports the outcomes.
 *
 * Every write gets a name no other write uses:
 *
 *     results/MODEL/jobJ/part-PPPPPP-tT-S.jsonl
 *
 * P is the part number (the job's committed parts + 1), T the Raft term of the
 * writing coordinator and S a sequence number of this core, which only grows
 * (one leader per term; a process's sequence never repeats). A name is
 * therefore written once, by one put, so its bytes are what was committed
 * (JOB_FLUSHED also carries their SHA-256). Part P's name is committed by the
 * first JOB_FLUSHED for P; any other write for P is rejected by the state
 * machine (jobs.c) and its file is garbage.
 *
 * A JOB_FLUSHED naming term T is only proposed while this node leads in term
 * T. Hence, for a leader of term T' past its start-of-term barrier, a file of
 * a term below T' that is not committed will never be: a sweep deletes it.
 * So is a file for a part already committed under another name.
 *
 * Threading: none.
 */
#ifndef IDUNNO_SCHED_PARTS_H
#define IDUNNO_SCHED_PARTS_H

#include <stddef.h>
#include <stdint.h>

#define PARTS_FILE_MAX 256
#define PARTS_MODEL_MAX 64

struct catalog;
struct jobs;
struct parts;

struct parts_config {
    uint64_t flush_ms; /* a job's results wait at most this long after its last part */
    size_t flush_at;   /* ... or until this many are pending */
    uint32_t part_max; /* results in one part at most */
    uint64_t sweep_ms; /* garbage sweeps at most this often */
};

enum parts_op {
    PARTS_WRITE = 1, /* render the oldest `results` (at most) pending results, put them as `file` */
    PARTS_PROPOSE,   /* propose JOB_FLUSHED(job, part, results, file) */
    PARTS_DELETE,    /* delete `file` from SDFS: certain never to be committed */
};

struct parts_action {
    enum parts_op op;
    uint64_t write; /* the write's id: hand it back with its outcome */
    uint32_t job;
    uint64_t part;
    uint32_t results;
    char file[PARTS_FILE_MAX];
};

/* A parsed part name. */
struct parts_name {
    char model[PARTS_MODEL_MAX];
    uint32_t job;
    uint64_t part, term, seq;
};

/* An empty core with the timings and sizes of *cfg (copied); NULL if out of
 * memory. Freed with parts_destroy. */
struct parts *parts_create(const struct parts_config *cfg);
void parts_destroy(struct parts *p);

/* Starts leading in `term` (past its barrier). Writes of before are
 * forgotten: their outcomes are then ignored, and their files left to the
 * sweep. */
void parts_lead(struct parts *p, uint64_t term);
/* Stops leading: the same forgetting. */
void parts_unlead(struct parts *p);

/* The writes due at `now` for the jobs of the replicated state, at most one
 * per job at a time, into out (at most max). Returns how many. */
size_t parts_tick(struct parts *p, uint64_t now, const struct jobs *jobs, struct parts_action *out,
                  size_t max);

/* A write's put ended with `status` (0 or ID_E*; ID_ECANCELED: nothing was
 * written), holding `results` results; term_now is the node's Raft term now
 * (0: not serving). Returns 1 with out set (PROPOSE, or DELETE of a put that
 * failed or whose term passed: never proposed), or 0 (no action). */
int parts_stored(struct parts *p, uint64_t write, int status, uint32_t results, uint64_t term_now,
                 struct parts_action *out);

/* A write's JOB_FLUSHED ended with `status`: 0 committed; a state machine
 * rejection (the part was committed under another name, ...) or ID_ECANCELED
 * (never appended) gives DELETE; a failure that leaves the outcome open
 * (ID_ENOTLEADER, ID_ETIMEDOUT, ID_ESHUTDOWN) leaves the file to the sweep.
 * Returns 1 with out set, or 0. */
int parts_applied(struct parts *p, uint64_t write, int status, struct parts_action *out);

/* The sweep, when one is due at `now` (every sweep_ms, and at once on
 * leading): the files of the SDFS catalog that parts_is_garbage finds
 * garbage for the job state, into out (at most max). Returns how many. */
size_t parts_sweep(struct parts *p, uint64_t now, const struct catalog *cat,
                   const struct jobs *jobs, char (*out)[PARTS_FILE_MAX], size_t max);

/* Whether SDFS file `file` is garbage for the leader: a part name (this
 * scheme) of a write not in progress here, for a part already committed under
 * another name, or of an earlier term and not committed. `committed`: the
 * job's committed parts; `committed_file`: the committed name of the file's
 * part (NULL if that part is not committed). Legacy and foreign names: never. */
int parts_is_garbage(const struct parts *p, const char *file, uint64_t committed,
                     const char *committed_file);

/* Formats a part name; ID_EINVAL if it does not fit or the model is bad. */
int parts_name_format(char *out, size_t len, const char *model, uint32_t job, uint64_t part,
                      uint64_t term, uint64_t seq);
/* Parses a name of this scheme (exactly as parts_name_format writes it).
 * Returns 0 or ID_EINVAL. */
int parts_name_parse(const char *file, struct parts_name *out);
/* The name parts had before this scheme (results/MODEL/jobJ/part-PPPPPP.jsonl),
 * still accepted for parts committed by earlier versions. */
void parts_legacy_name(char *out, size_t len, const char *model, uint32_t job, uint64_t part);

/* Whether a JOB_FLUSHED outcome leaves open whether the command commits. */
int parts_outcome_open(int status);

#endif
