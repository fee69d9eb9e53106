/* fuzz_fair.c — libFuzzer target for the fair dispatcher: the bytes are a
 * sequence of operations (jobs, workers, queries, failures, adoption, batches
 * taken onto a worker, holds), checked
 * against a shadow of what is in flight where. Any disagreement, a dispatch
 * beyond a worker's slots other than by the spare rule or a burst (the job's
 * own queries alone on the worker, fewer than its burst), a dispatch of a
 * held job, or a query in flight twice is a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "sched/fair.h"

#define NJOBS 6
#define NWORKERS 5
#define MAXFL 4096

struct shadow {
    uint32_t job;
    uint64_t query;
    int worker;
};

static struct shadow fl[MAXFL];
static size_t nfl;
static int present[NWORKERS];
static unsigned slots[NWORKERS];
static unsigned load[NWORKERS];
static int jobs[NJOBS];
static unsigned burst[NJOBS];
static int held[NJOBS];
static unsigned spare;

static size_t job_inflight(uint32_t job)
{
    size_t n = 0;
    for (size_t i = 0; i < nfl; i++)
        n += fl[i].job == job;
    return n;
}

/* Does worker w hold queries of `job` only? */
static int holds_only(int w, uint32_t job)
{
    for (size_t i = 0; i < nfl; i++)
        if (fl[i].worker == w && fl[i].job != job)
            return 0;
    return 1;
}

/* Does some present worker have a regular slot free? */
static int regular_free(void)
{
    for (int w = 0; w < NWORKERS; w++)
        if (present[w] && load[w] < slots[w])
            return 1;
    return 0;
}

static void name_of(int w, char *buf)
{
    snprintf(buf, 8, "w%d", w);
}

static int find(uint32_t job, uint64_t query)
{
    for (size_t i = 0; i < nfl; i++)
        if (fl[i].job == job && fl[i].query == query)
            return (int)i;
    return -1;
}

static void drop(size_t i)
{
    load[fl[i].worker]--;
    fl[i] = fl[--nfl];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fair *f = fair_create();
    if (!f)
        return 0;
    nfl = 0;
    memset(present, 0, sizeof present);
    memset(load, 0, sizeof load);
    memset(jobs, 0, sizeof jobs);
    memset(burst, 0, sizeof burst);
    memset(held, 0, sizeof held);
    spare = 0;
    uint64_t next_q = 1000;
    char name[8];
    for (size_t k = 0; k + 1 < size; k += 2) {
        uint8_t op = data[k] % 14, b = data[k + 1];
        uint32_t job = b % NJOBS;
        int w = b % NWORKERS;
        name_of(w, name);
        int rc;
        switch (op) {
        case 0:
            rc = fair_job_add(f, job, 1 + b % 3);
            if (rc != (jobs[job] ? ID_EEXIST : 0))
                __builtin_trap();
            if (!jobs[job])
                held[job] = 0; /* a new job starts unheld */
            jobs[job] = 1;
            break;
        case 1:
            rc = fair_job_remove(f, job);
            if (rc != (jobs[job] ? 0 : ID_ENOTFOUND))
                __builtin_trap();
            jobs[job] = 0;
            burst[job] = 0;
            held[job] = 0;
            for (size_t i = 0; i < nfl;)
                if (fl[i].job == job)
                    drop(i);
                else
                    i++;
            break;
        case 2: {
            /* Small ids repeat, so duplicates and in-flight ids come up. */
            uint64_t q = (b & 0x80) ? next_q++ : (b >> 3) % 8;
            rc = fair_enqueue(f, job, q, b & 0x40);
            int want = !jobs[job] ? ID_ENOTFOUND : find(job, q) >= 0 ? ID_EEXIST : 0;
            if (rc != want)
                __builtin_trap();
            break;
        }
        case 3:
            if (fair_worker_add(f, name, b >> 6) != 0)
                __builtin_trap();
            present[w] = 1;
            slots[w] = (b >> 6) ? (unsigned)(b >> 6) : FAIR_DEFAULT_SLOTS;
            break;
        case 4: {
            rc = fair_worker_remove(f, name);
            int want = 0;
            for (size_t i = 0; i < nfl; i++)
                want += fl[i].worker == w;
            if (rc != (present[w] ? want : ID_ENOTFOUND))
                __builtin_trap();
            present[w] = 0;
            for (size_t i = 0; i < nfl;)
                if (fl[i].worker == w)
                    drop(i);
                else
                    i++;
            break;
        }
        case 5:
            rc = fair_worker_set_model(f, name, job, b & 0x80);
            if (rc != (present[w] && jobs[job] ? 0 : ID_ENOTFOUND))
                __builtin_trap();
            break;
        case 6:
            for (int n = 0; n <= b % 4; n++) {
                struct fair_dispatch d;
                if (fair_next(f, &d) != 1)
                    break;
                int dw = d.worker[0] == 'w' ? d.worker[1] - '0' : -1;
                if (dw < 0 || dw >= NWORKERS || !present[dw] || d.job >= NJOBS || !jobs[d.job] ||
                    held[d.job] || find(d.job, d.query) >= 0 || nfl == MAXFL)
                    __builtin_trap();
                /* Beyond the slots only into a spare, only for a job with
                 * nothing in flight, only when no regular slot is free; or
                 * as a burst of a job alone on the worker. */
                int by_spare = load[dw] < slots[dw] + spare && job_inflight(d.job) == 0 &&
                               !regular_free();
                int by_burst = load[dw] < burst[d.job] && holds_only(dw, d.job);
                if (load[dw] >= slots[dw] && !by_spare && !by_burst)
                    __builtin_trap();
                fl[nfl++] = (struct shadow){d.job, d.query, dw};
                load[dw]++;
            }
            break;
        case 7:
        case 8:
            if (nfl && (b & 1)) {
                size_t i = (b >> 1) % nfl;
                rc = op == 7 ? fair_complete(f, fl[i].job, fl[i].query)
                             : fair_requeue(f, fl[i].job, fl[i].query);
                if (rc != 0)
                    __builtin_trap();
                drop(i);
            } else {
                uint64_t q = (b >> 3) % 8;
                int i = find(job, q);
                rc = op == 7 ? fair_complete(f, job, q) : fair_requeue(f, job, q);
                if (rc != (i >= 0 ? 0 : ID_ENOTFOUND))
                    __builtin_trap();
                if (i >= 0)
                    drop((size_t)i);
            }
            break;
        case 13:
            rc = fair_job_hold(f, job, b & 0x80);
            if (rc != (jobs[job] ? 0 : ID_ENOTFOUND))
                __builtin_trap();
            if (rc == 0)
                held[job] = (b & 0x80) != 0;
            break;
        case 10:
            if (fair_set_spare(f, b % 3) != 0)
                __builtin_trap();
            spare = b % 3;
            break;
        case 11:
            rc = fair_job_set_burst(f, job, (b >> 3) % 5);
            if (rc != ((b >> 3) % 5 == 0 ? ID_EINVAL : jobs[job] ? 0 : ID_ENOTFOUND))
                __builtin_trap();
            if (rc == 0)
                burst[job] = (b >> 3) % 5;
            break;
        case 12: {
            /* A batch joining a dispatch: only into a free slot or a burst's
             * room, never a query already in flight. */
            uint64_t q;
            rc = fair_take(f, job, name, &q);
            if (!jobs[job] || !present[w]) {
                if (rc != ID_ENOTFOUND)
                    __builtin_trap();
                break;
            }
            if (rc == 1) {
                int room = load[w] < slots[w] || (load[w] < burst[job] && holds_only(w, job));
                if (!room || find(job, q) >= 0 || nfl == MAXFL)
                    __builtin_trap();
                fl[nfl++] = (struct shadow){job, q, w};
                load[w]++;
            } else if (rc != 0) {
                __builtin_trap();
            }
            break;
        }
        case 9: {
            uint64_t q = (b >> 3) % 8;
            rc = fair_adopt(f, job, q, name);
            int i = find(job, q);
            int want = !jobs[job] || !present[w] ? ID_ENOTFOUND
                       : i < 0                   ? 0
                       : fl[i].worker == w       ? 0
                                                 : ID_EEXIST;
            if (rc != want || (rc == 0 && i < 0 && nfl == MAXFL))
                __builtin_trap();
            if (rc == 0 && i < 0) {
                fl[nfl++] = (struct shadow){job, q, w};
                load[w]++;
            }
            break;
        }
        }
        size_t total = 0;
        for (uint32_t j = 0; j < NJOBS; j++)
            total += fair_inflight(f, j);
        if (total != nfl)
            __builtin_trap();
    }
    fair_destroy(f);
    return 0;
}
