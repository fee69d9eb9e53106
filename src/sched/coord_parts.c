/* coord_parts.c — the coordinator writing results to SDFS: it carries out
 * what the result-part core (parts.h) decides (render and put a part,
 * propose JOB_FLUSHED, delete garbage) and reports each outcome back.
 *
 * Threading: loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/strbuf.h"
#include "ctl/ctl.h"
#include "idunno.pb-c.h"
#include "net/net.h"
#include "sched/coord_int.h"
#include "sched/jobs.h"
#include "sched/parts.h"
#include "sdfs/sdfs.h"

/* A write of a part, from its put to its JOB_FLUSHED's outcome. */
struct part_call {
    struct coord *c;
    struct parts_action a; /* the WRITE, with the results the part holds */
    uint8_t sha256[SHA256_LEN];
};

static void on_part_deleted(void *ud, const struct net_result *res)
{
    if (res->status < 0 && res->status != ID_ENOTFOUND)
        LOG_WARN("coord", "cannot delete %s: %s (the next sweep tries again)", (char *)ud,
                 id_strerror(res->status));
    free(ud);
}

/* Deletes a result file that no commit names (parts.h), through this node's
 * SDFS coordinator. */
static void part_delete(struct coord *c, const char *file)
{
    Idunno__SdfsLookup m = IDUNNO__SDFS_LOOKUP__INIT;
    m.name = strdup(file);
    LOG_INFO("coord", "deleting %s: no committed result part", file);
    if (m.name && net_call_pb(c->net, c->addr, IDUNNO__MSG_TYPE__MSG_SDFS_DELETE_REQ, &m.base,
                              COORD_RUN_TIMEOUT_MS, on_part_deleted, m.name) < 0)
        free(m.name);
}

static void on_part_committed(void *ud, int status, const uint8_t *result, size_t len)
{
    (void)result;
    (void)len;
    struct part_call *pc = ud;
    struct parts_action del;
    LOG_INFO("coord", "job %u: part %llu (%u results) as %s: %s", pc->a.job,
             (unsigned long long)pc->a.part, pc->a.results, pc->a.file,
             status == 0 ? "committed" : id_strerror(status));
    if (parts_applied(pc->c->parts, pc->a.write, status, &del))
        part_delete(pc->c, del.file);
    free(pc);
}

static void on_part_stored(void *ud, int status)
{
    struct part_call *pc = ud;
    struct coord *c = pc->c;
    if (status < 0)
        LOG_WARN("coord", "cannot store %s: %s (written again)", pc->a.file, id_strerror(status));
    /* A JOB_FLUSHED naming term T is only ever appended in term T (parts.h):
     * the core checks the term, and proposing follows at once on the loop. */
    uint64_t term = !c->stopping && ctl_is_serving(c->ctl) ? coord_current_term(c) : 0;
    struct parts_action next;
    if (!parts_stored(c->parts, pc->a.write, status, pc->a.results, term, &next)) {
        free(pc);
    } else if (next.op == PARTS_DELETE) {
        part_delete(c, next.file);
        free(pc);
    } else {
        Idunno__JobFlushed m = IDUNNO__JOB_FLUSHED__INIT;
        m.job = pc->a.job;
        m.part = pc->a.part;
        m.results = pc->a.results;
        m.file = pc->a.file;
        m.sha256 = (ProtobufCBinaryData){sizeof pc->sha256, pc->sha256};
        uint8_t buf[PARTS_FILE_MAX + 128];
        size_t n = idunno__job_flushed__pack(&m, buf);
        if (ctl_propose(c->ctl, IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_JOB_FLUSHED, buf, n,
                        on_part_committed, pc) < 0)
            on_part_committed(pc, ID_ECANCELED, NULL, 0); /* never appended */
    }
}

/* Writes a job's oldest pending results, one JSON line each, as a->file. */
static void part_write(struct coord *c, const struct parts_action *a)
{
    struct job_rec *job = jobs_by_id(c->jobs, a->job);
    struct part_call *pc = calloc(1, sizeof *pc);
    struct strbuf text = STRBUF_INIT;
    size_t n = 0;
    int rc = job && pc ? jobs_render_results(c->jobs, job, a->results, COORD_PART_BYTES, &text, &n)
                       : ID_ENOMEM;
    if (rc == 0) {
        *pc = (struct part_call){c, *a, {0}};
        pc->a.results = (uint32_t)n;
        struct sha256 h;
        sha256_init(&h);
        sha256_update(&h, strbuf_str(&text), text.len);
        sha256_final(&h, pc->sha256);
        rc = sdfs_put_bytes(c->sdfs, a->file, (const uint8_t *)strbuf_str(&text), text.len,
                            on_part_stored, pc);
    }
    strbuf_free(&text);
    if (rc < 0) {
        struct parts_action none;
        parts_stored(c->parts, a->write, ID_ECANCELED, 0, 0, &none); /* nothing was written */
        free(pc);
    }
}

void coord_flush_results(struct coord *c)
{
    uint64_t now = id_now_ms();
    struct parts_action acts[16];
    size_t k = parts_tick(c->parts, now, c->jobs, acts, sizeof acts / sizeof acts[0]);
    for (size_t i = 0; i < k; i++)
        part_write(c, &acts[i]);
    /* What no commit can ever name: a deposed coordinator's writes, and this
     * one's rejected or abandoned ones. */
    char garbage[COORD_SWEEP_MAX][PARTS_FILE_MAX];
    k = parts_sweep(c->parts, now, c->catalog, c->jobs, garbage, COORD_SWEEP_MAX);
    for (size_t i = 0; i < k; i++)
        part_delete(c, garbage[i]);
}
