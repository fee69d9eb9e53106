/* parts.c — result parts: when to write, under which name, what to delete
 * (see parts.h). */
#include "sched/parts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "sched/jobs.h"
#include "sdfs/catalog.h"

/* A job's flushing: its write in progress (0: none) and when the last began. */
struct pjob {
    uint32_t id;
    uint64_t write;
    uint64_t last_ms;
};

/* A write in progress: from its WRITE to its put's and then its commit's outcome. */
struct pwrite {
    uint64_t id;
    uint32_t job;
    uint64_t part, term;
    char file[PARTS_FILE_MAX];
};

struct parts {
    struct parts_config cfg;
    uint64_t term; /* 0: not leading */
    uint64_t seq;  /* the last write's id; never reset, so names never repeat */
    uint64_t next_sweep_ms;
    struct pjob *jobs;
    size_t n_jobs;
    struct pwrite *writes;
    size_t n_writes;
};

struct parts *parts_create(const struct parts_config *cfg)
{
    struct parts *p = calloc(1, sizeof *p);
    if (p)
        p->cfg = *cfg;
    return p;
}

void parts_destroy(struct parts *p)
{
    if (!p)
        return;
    free(p->jobs);
    free(p->writes);
    free(p);
}

static void forget_all(struct parts *p)
{
    free(p->jobs);
    free(p->writes);
    p->jobs = NULL;
    p->writes = NULL;
    p->n_jobs = p->n_writes = 0;
}

void parts_lead(struct parts *p, uint64_t term)
{
    forget_all(p);
    p->term = term;
    p->next_sweep_ms = 0; /* a new leader sweeps at once: its barrier decided every earlier term */
}

void parts_unlead(struct parts *p)
{
    forget_all(p);
    p->term = 0;
}

/* ---- names ------------------------------------------------------------------------------------ */

int parts_name_format(char *out, size_t len, const char *model, uint32_t job, uint64_t part,
                      uint64_t term, uint64_t seq)
{
    if (!jobs_model_name_ok(model) || part == 0 || term == 0 || seq == 0)
        return ID_EINVAL;
    int n = snprintf(out, len,
                     "results/%s/job%" PRIu32 "/part-%06" PRIu64 "-t%" PRIu64 "-%" PRIu64 ".jsonl",
                     model, job, part, term, seq);
    return n > 0 && (size_t)n < len ? 0 : ID_EINVAL;
}

void parts_legacy_name(char *out, size_t len, const char *model, uint32_t job, uint64_t part)
{
    snprintf(out, len, "results/%s/job%" PRIu32 "/part-%06" PRIu64 ".jsonl", model, job, part);
}

/* Reads a decimal number without sign or leading zeros (unless pad digits
 * are asked for) up to `stop`; returns the character after it, or NULL. */
static const char *read_num(const char *s, char stop, int pad, uint64_t *out)
{
    const char *start = s;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    size_t digits = (size_t)(s - start);
    if (*s != stop || digits == 0)
        return NULL;
    if (pad ? digits < (size_t)pad || (digits > (size_t)pad && *start == '0')
            : digits > 1 && *start == '0')
        return NULL;
    *out = v;
    return s + 1;
}

int parts_name_parse(const char *file, struct parts_name *out)
{
    static const char prefix[] = "results/";
    if (strncmp(file, prefix, sizeof prefix - 1) != 0)
        return ID_EINVAL;
    const char *model = file + sizeof prefix - 1, *slash = strchr(model, '/');
    if (!slash || (size_t)(slash - model) >= PARTS_MODEL_MAX)
        return ID_EINVAL;
    memcpy(out->model, model, (size_t)(slash - model));
    out->model[slash - model] = '\0';
    uint64_t job;
    const char *s = slash + 1;
    if (!jobs_model_name_ok(out->model) || strncmp(s, "job", 3) != 0 ||
        !(s = read_num(s + 3, '/', 0, &job)) || job > UINT32_MAX || strncmp(s, "part-", 5) != 0 ||
        !(s = read_num(s + 5, '-', 6, &out->part)) || *s++ != 't' ||
        !(s = read_num(s, '-', 0, &out->term)) || !(s = read_num(s, '.', 0, &out->seq)) ||
        strcmp(s, "jsonl") != 0 || out->part == 0 || out->term == 0 || out->seq == 0)
        return ID_EINVAL;
    out->job = (uint32_t)job;
    return 0;
}

/* ---- writes ----------------------------------------------------------------------------------- */

static struct pjob *pjob_get(struct parts *p, uint32_t id)
{
    for (size_t i = 0; i < p->n_jobs; i++)
        if (p->jobs[i].id == id)
            return &p->jobs[i];
    struct pjob *a = realloc(p->jobs, (p->n_jobs + 1) * sizeof *a);
    if (!a)
        return NULL;
    p->jobs = a;
    a[p->n_jobs] = (struct pjob){id, 0, 0};
    return &a[p->n_jobs++];
}

static struct pwrite *pwrite_find(struct parts *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_writes; i++)
        if (p->writes[i].id == id)
            return &p->writes[i];
    return NULL;
}

/* Ends a write: its job may start the next one. */
static void pwrite_end(struct parts *p, struct pwrite *w)
{
    for (size_t i = 0; i < p->n_jobs; i++)
        if (p->jobs[i].write == w->id)
            p->jobs[i].write = 0;
    *w = p->writes[--p->n_writes];
}

static int due(const struct parts *p, const struct pjob *pj, const struct job_rec *job,
               uint64_t now)
{
    if (!job->n_pending || pj->write)
        return 0;
    /* A stopped job's last results go at once: nothing more will come. */
    return job->stopped || job->n_pending >= p->cfg.flush_at ||
           now - pj->last_ms >= p->cfg.flush_ms;
}

size_t parts_tick(struct parts *p, uint64_t now, const struct jobs *jobs, struct parts_action *out,
                  size_t max)
{
    size_t k = 0;
    for (size_t i = 0; p->term && i < jobs_count(jobs) && k < max; i++) {
        const struct job_rec *job = jobs_at(jobs, i);
        struct pjob *pj = job->n_pending ? pjob_get(p, job->id) : NULL;
        if (!pj || !due(p, pj, job, now))
            continue;
        struct pwrite *a = realloc(p->writes, (p->n_writes + 1) * sizeof *a);
        if (!a)
            break;
        p->writes = a;
        struct pwrite *w = &a[p->n_writes];
        *w = (struct pwrite){p->seq + 1, job->id, job->parts + 1, p->term, ""};
        if (parts_name_format(w->file, sizeof w->file, job->model, w->job, w->part, w->term,
                              w->id) < 0)
            continue;
        p->seq++;
        p->n_writes++;
        pj->write = w->id;
        pj->last_ms = now;
        size_t results = job->n_pending < p->cfg.part_max ? job->n_pending : p->cfg.part_max;
        out[k] = (struct parts_action){PARTS_WRITE, w->id, w->job, w->part, (uint32_t)results, ""};
        memcpy(out[k].file, w->file, sizeof w->file);
        k++;
    }
    return k;
}

static void action_of(const struct pwrite *w, enum parts_op op, uint32_t results,
                      struct parts_action *out)
{
    *out = (struct parts_action){op, w->id, w->job, w->part, results, ""};
    memcpy(out->file, w->file, sizeof w->file);
}

int parts_stored(struct parts *p, uint64_t write, int status, uint32_t results, uint64_t term_now,
                 struct parts_action *out)
{
    struct pwrite *w = pwrite_find(p, write);
    if (!w)
        return 0;
    if (status == ID_ECANCELED) {
        pwrite_end(p, w);
        return 0;
    }
    /* A put that failed may still have left a version; a term that passed
     * means the name may no longer be proposed. Neither is ever committed. */
    if (status < 0 || term_now != w->term || results == 0) {
        action_of(w, PARTS_DELETE, 0, out);
        pwrite_end(p, w);
        return 1;
    }
    action_of(w, PARTS_PROPOSE, results, out);
    return 1;
}

int parts_outcome_open(int status)
{
    return status == ID_ENOTLEADER || status == ID_ETIMEDOUT || status == ID_ESHUTDOWN;
}

int parts_applied(struct parts *p, uint64_t write, int status, struct parts_action *out)
{
    struct pwrite *w = pwrite_find(p, write);
    if (!w)
        return 0;
    int rejected = status < 0 && !parts_outcome_open(status);
    if (rejected)
        action_of(w, PARTS_DELETE, 0, out);
    pwrite_end(p, w);
    return rejected;
}

/* ---- the sweep -------------------------------------------------------------------------------- */

int parts_is_garbage(const struct parts *p, const char *file, uint64_t committed,
                     const char *committed_file)
{
    struct parts_name n;
    if (!p->term || parts_name_parse(file, &n) < 0)
        return 0;
    for (size_t i = 0; i < p->n_writes; i++)
        if (strcmp(p->writes[i].file, file) == 0)
            return 0;
    if (n.part <= committed)
        return committed_file && strcmp(committed_file, file) != 0;
    return n.term < p->term;
}

size_t parts_sweep(struct parts *p, uint64_t now, const struct catalog *cat,
                   const struct jobs *jobs, char (*out)[PARTS_FILE_MAX], size_t max)
{
    if (!p->term || now < p->next_sweep_ms)
        return 0;
    p->next_sweep_ms = now + p->cfg.sweep_ms;
    static const char prefix[] = "results/";
    size_t k = 0;
    for (size_t i = catalog_lower_bound(cat, prefix); i < catalog_count(cat) && k < max; i++) {
        const char *file = catalog_at(cat, i)->name;
        if (strncmp(file, prefix, sizeof prefix - 1) != 0)
            break;
        struct parts_name n;
        const struct job_rec *job = parts_name_parse(file, &n) == 0 ? jobs_by_id(jobs, n.job)
                                                                    : NULL;
        if (!job || strcmp(job->model, n.model) != 0)
            continue; /* not a part of a job this state knows */
        const struct job_part *committed = jobs_part(job, n.part);
        if (parts_is_garbage(p, file, job->parts, committed ? committed->file : NULL))
            snprintf(out[k++], PARTS_FILE_MAX, "%s", file);
    }
    return k;
}
