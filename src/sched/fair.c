/* fair.c — the fair-time dispatcher (see fair.h).
 *
 * Jobs live in an array sorted by id, workers in an array of pointers sorted by
 * name, so both lookups are binary searches and a tie on virtual time or load
 * falls to the lower id or name without extra work. Each job's queue is a ring
 * of query ids (push at either end, pop at the head). Queries in flight live in
 * one open-addressing table keyed by (job, query): completion, requeue and adopt
 * are O(1), and the rare whole-table scans (worker or job removal) touch only
 * what is in flight, which the slot bound keeps small.
 *
 * Virtual time. Each job has vt, the dispatches it has been charged divided by
 * its weight; a dispatch adds 1/weight, a requeue gives that charge back (the
 * query did not complete, so the job is not ahead by it). fair_next serves the
 * runnable job with the smallest vt. A job whose queue goes from empty to
 * non-empty has its vt raised to the floor: the smallest vt of the other
 * runnable jobs or, when none is runnable, the virtual time of the last dispatch
 * (vclock). That is the header's "starts at the current minimum": without the
 * vclock fallback a job that was idle while no one else was runnable either
 * would come back far behind and take every slot until it caught up. Ties on vt
 * go to the job with fewer queries running, then the lower id: a job woken at
 * the floor ties with the job that set it and, running nothing, gets the very
 * next free slot.
 *
 * fair_next cannot fail for want of memory: the in-flight table is sized when
 * workers are added (or a query adopted) to hold every slot at half load, and
 * the only allocation left, shrinking a drained queue, is best effort.
 */
#include "sched/fair.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"

/* ---- query rings ---------------------------------------------------------------------------- */

struct fair_ring {
    uint64_t *q;
    size_t head, len, cap; /* cap is 0 or a power of two */
};

#define FAIR_RING_MIN 16

static uint64_t *ring_at(struct fair_ring *r, size_t i)
{
    return &r->q[(r->head + i) & (r->cap - 1)];
}

/* Moves the ring into a buffer of cap (>= len), head at 0. */
static int ring_resize(struct fair_ring *r, size_t cap)
{
    uint64_t *q = malloc(cap * sizeof *q);
    if (!q)
        return ID_ENOMEM;
    for (size_t i = 0; i < r->len; i++)
        q[i] = *ring_at(r, i);
    free(r->q);
    r->q = q;
    r->head = 0;
    r->cap = cap;
    return 0;
}

/* Makes room for `more` pushes, so that the pushes themselves cannot fail. */
static int ring_reserve(struct fair_ring *r, size_t more)
{
    if (r->len + more <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : FAIR_RING_MIN;
    while (cap < r->len + more) {
        if (cap > SIZE_MAX / 2 / sizeof(uint64_t))
            return ID_ENOMEM;
        cap *= 2;
    }
    return ring_resize(r, cap);
}

static void ring_push_back(struct fair_ring *r, uint64_t q)
{
    *ring_at(r, r->len++) = q;
}

static void ring_push_front(struct fair_ring *r, uint64_t q)
{
    r->head = (r->head + r->cap - 1) & (r->cap - 1);
    r->len++;
    r->q[r->head] = q;
}

/* A drained burst should not pin its memory: shrink at a quarter full. A failed
 * shrink is harmless, the ring keeps its buffer. */
static void ring_maybe_shrink(struct fair_ring *r)
{
    if (r->cap > FAIR_RING_MIN && r->len < r->cap / 4)
        ring_resize(r, r->cap / 2);
}

static uint64_t ring_pop_front(struct fair_ring *r)
{
    uint64_t q = r->q[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
    ring_maybe_shrink(r);
    return q;
}

/* Removes element i, shifting the shorter side: a query near the head costs
 * little however long the queue behind it. */
static void ring_remove_at(struct fair_ring *r, size_t i)
{
    if (i < r->len / 2) {
        for (; i > 0; i--)
            *ring_at(r, i) = *ring_at(r, i - 1);
        r->head = (r->head + 1) & (r->cap - 1);
    } else {
        for (; i + 1 < r->len; i++)
            *ring_at(r, i) = *ring_at(r, i + 1);
    }
    r->len--;
    ring_maybe_shrink(r);
}

/* ---- jobs and workers ----------------------------------------------------------------------- */

struct fair_job {
    uint32_t id;
    double weight;
    double vt;           /* charged dispatches / weight, raised to the floor on wake-up */
    uint64_t dispatched; /* fair_next dispatches, re-dispatches included */
    size_t inflight;
    unsigned burst;  /* fair_job_set_burst; 0 and 1 both mean none */
    int needs_model; /* fair_job_needs_model: only workers holding its model take it */
    int held;        /* fair_job_hold: fair_next passes it over */
    uint64_t passed; /* the fair_next call that last passed it over (see there) */
    struct fair_ring queue;
};

struct fair_worker {
    char name[FAIR_NAME_MAX];
    unsigned slots;
    unsigned load; /* queries in flight; above slots through bursts and fair_adopt */
    /* solo_n of the queries in flight are of job solo_job: when solo_n equals
     * load, the worker runs that job alone and may take a burst of it. The
     * count only falls while other jobs' queries are in flight too, so it may
     * say "not alone" when it is; never the reverse. Reset at load 0. */
    uint32_t solo_job;
    unsigned solo_n;
    uint32_t *models; /* ids of jobs whose model it holds, sorted */
    size_t nmodels, models_cap;
};

/* One query in flight. used == 0 marks an empty table cell. */
struct fair_flight {
    uint64_t query;
    uint32_t job;
    uint32_t used;
    struct fair_worker *worker;
    uint64_t seq;  /* dispatch order, for requeueing in the original order */
    double charge; /* what was added to the job's vt, given back on requeue */
};

struct fair {
    struct fair_job *jobs; /* sorted by id */
    size_t njobs, jobs_cap;
    struct fair_worker **workers; /* sorted by name (strcmp) */
    size_t nworkers, workers_cap;
    struct fair_flight *fl; /* open addressing, linear probing; cap a power of two */
    size_t nfl, fl_cap;
    uint64_t seq;
    double vclock;       /* vt of the last dispatch: the floor when nothing is runnable */
    unsigned spare;      /* fair_set_spare: extra slots per worker for idle jobs */
    unsigned burst_cap;  /* the largest burst any job was given: the table's room */
    uint64_t next_calls; /* fair_next calls so far: marks the jobs one call passed over */
};

struct fair *fair_create(void)
{
    return calloc(1, sizeof(struct fair));
}

void fair_destroy(struct fair *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->njobs; i++)
        free(f->jobs[i].queue.q);
    for (size_t i = 0; i < f->nworkers; i++) {
        free(f->workers[i]->models);
        free(f->workers[i]);
    }
    free(f->jobs);
    free(f->workers);
    free(f->fl);
    free(f);
}

static struct fair_job *job_find(const struct fair *f, uint32_t id, size_t *pos)
{
    size_t lo = 0, hi = f->njobs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->jobs[mid].id == id) {
            if (pos)
                *pos = mid;
            return &f->jobs[mid];
        }
        if (f->jobs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return NULL;
}

static int name_ok(const char *name)
{
    return name && name[0] && strnlen(name, FAIR_NAME_MAX) < FAIR_NAME_MAX;
}

static struct fair_worker *worker_find(const struct fair *f, const char *name, size_t *pos)
{
    size_t lo = 0, hi = f->nworkers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->workers[mid]->name, name);
        if (c == 0) {
            if (pos)
                *pos = mid;
            return f->workers[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return NULL;
}

static int weight_ok(double w)
{
    return isfinite(w) && w >= FAIR_WEIGHT_MIN && w <= FAIR_WEIGHT_MAX;
}

/* Index of job in w->models, or where it would go (*found 0). */
static size_t model_find(const struct fair_worker *w, uint32_t job, int *found)
{
    size_t lo = 0, hi = w->nmodels;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->models[mid] == job) {
            *found = 1;
            return mid;
        }
        if (w->models[mid] < job)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static int worker_holds(const struct fair_worker *w, uint32_t job)
{
    int found;
    model_find(w, job, &found);
    return found;
}

static void forget_models(struct fair *f, uint32_t job)
{
    for (size_t i = 0; i < f->nworkers; i++) {
        struct fair_worker *w = f->workers[i];
        int found;
        size_t m = model_find(w, job, &found);
        if (found) {
            memmove(&w->models[m], &w->models[m + 1], (w->nmodels - m - 1) * sizeof *w->models);
            w->nmodels--;
        }
    }
}

/* ---- the in-flight table -------------------------------------------------------------------- */

static size_t flight_hash(uint32_t job, uint64_t query)
{
    /* splitmix64's finaliser: query ids are often sequential. */
    uint64_t x = query ^ ((uint64_t)job * 0x9E3779B97F4A7C15ull);
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return (size_t)x;
}

static struct fair_flight *flight_find(const struct fair *f, uint32_t job, uint64_t query)
{
    if (!f->fl_cap)
        return NULL;
    size_t mask = f->fl_cap - 1;
    for (size_t i = flight_hash(job, query) & mask;; i = (i + 1) & mask) {
        struct fair_flight *e = &f->fl[i];
        if (!e->used)
            return NULL;
        if (e->job == job && e->query == query)
            return e;
    }
}

/* Places an entry known to be absent; the table has room. */
static void flight_place(struct fair_flight *tab, size_t cap, const struct fair_flight *e)
{
    size_t mask = cap - 1;
    size_t i = flight_hash(e->job, e->query) & mask;
    while (tab[i].used)
        i = (i + 1) & mask;
    tab[i] = *e;
}

/* Grows the table so that `want` entries keep it at most half full. */
static int flight_reserve(struct fair *f, size_t want)
{
    size_t cap = f->fl_cap ? f->fl_cap : 16;
    while (cap / 2 < want) {
        if (cap > SIZE_MAX / 4 / sizeof(struct fair_flight))
            return ID_ENOMEM;
        cap *= 2;
    }
    if (cap == f->fl_cap)
        return 0;
    struct fair_flight *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return ID_ENOMEM;
    for (size_t i = 0; i < f->fl_cap; i++)
        if (f->fl[i].used)
            flight_place(tab, cap, &f->fl[i]);
    free(f->fl);
    f->fl = tab;
    f->fl_cap = cap;
    return 0;
}

/* The most queries a worker with `slots` can be given: its slots and the
 * spare ones, or the largest burst. */
static unsigned worker_room(const struct fair *f, unsigned slots)
{
    return slots + f->spare > f->burst_cap ? slots + f->spare : f->burst_cap;
}

/* The most queries that can be in flight: every worker at its slots, or above
 * them where adoption put it, with worker `w` taken as (load, slots) — or
 * added with those when it is not in the array yet. */
static size_t flight_need(const struct fair *f, const struct fair_worker *w, unsigned load,
                          unsigned slots)
{
    size_t need = 0;
    int seen = 0;
    for (size_t i = 0; i < f->nworkers; i++) {
        const struct fair_worker *x = f->workers[i];
        unsigned l = x == w ? load : x->load, s = worker_room(f, x == w ? slots : x->slots);
        seen |= x == w;
        need += l > s ? l : s;
    }
    if (!seen)
        need += load > worker_room(f, slots) ? load : worker_room(f, slots);
    return need;
}

/* Deletes the entry at e by backward shifting, so probes never need tombstones.
 * Entries after the hole move only towards it: a scan that deletes at i and then
 * looks at i again still sees every entry once or more, never skips one. */
static void flight_delete(struct fair *f, struct fair_flight *e)
{
    size_t mask = f->fl_cap - 1;
    size_t hole = (size_t)(e - f->fl);
    for (size_t j = (hole + 1) & mask; f->fl[j].used; j = (j + 1) & mask) {
        size_t home = flight_hash(f->fl[j].job, f->fl[j].query) & mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            f->fl[hole] = f->fl[j];
            hole = j;
        }
    }
    memset(&f->fl[hole], 0, sizeof f->fl[hole]);
    f->nfl--;
}

/* Takes a query out of flight, with its slot and the job's count. */
static void flight_drop(struct fair *f, struct fair_flight *e, struct fair_job *j)
{
    struct fair_worker *w = e->worker;
    if (w->solo_n && w->solo_job == e->job)
        w->solo_n--;
    if (w->load)
        w->load--;
    if (j && j->inflight)
        j->inflight--;
    flight_delete(f, e);
}

/* ---- virtual time --------------------------------------------------------------------------- */

/* The smallest vt among runnable jobs other than `self`, or vclock if none. */
static double fair_floor(const struct fair *f, const struct fair_job *self)
{
    int any = 0;
    double min = 0;
    for (size_t i = 0; i < f->njobs; i++) {
        const struct fair_job *j = &f->jobs[i];
        if (j == self || !j->queue.len)
            continue;
        if (!any || j->vt < min)
            min = j->vt;
        any = 1;
    }
    return any ? min : f->vclock;
}

/* Called just before a push onto an empty queue: the job becomes runnable. */
static void job_wake(struct fair *f, struct fair_job *j)
{
    if (j->queue.len)
        return;
    double lowest = fair_floor(f, j);
    if (j->vt < lowest)
        j->vt = lowest;
}

/* ---- jobs ----------------------------------------------------------------------------------- */

int fair_job_add(struct fair *f, uint32_t job, double weight)
{
    if (!weight_ok(weight))
        return ID_EINVAL;
    size_t pos;
    if (job_find(f, job, &pos))
        return ID_EEXIST;
    if (ARRAY_RESERVE(f->jobs, f->jobs_cap, f->njobs, 1, 16) < 0)
        return ID_ENOMEM;
    memmove(&f->jobs[pos + 1], &f->jobs[pos], (f->njobs - pos) * sizeof *f->jobs);
    f->njobs++;
    /* vt is set when the first query wakes the job. */
    f->jobs[pos] = (struct fair_job){.id = job, .weight = weight};
    return 0;
}

int fair_job_set_weight(struct fair *f, uint32_t job, double weight)
{
    if (!weight_ok(weight))
        return ID_EINVAL;
    struct fair_job *j = job_find(f, job, NULL);
    if (!j)
        return ID_ENOTFOUND;
    /* vt is kept: the new weight sets how fast it advances from here on. */
    j->weight = weight;
    return 0;
}

int fair_job_remove(struct fair *f, uint32_t job)
{
    size_t pos;
    struct fair_job *j = job_find(f, job, &pos);
    if (!j)
        return ID_ENOTFOUND;
    /* Forget its flights (their slots are free again); see flight_delete for why
     * re-examining the same cell is complete. */
    for (size_t i = 0; i < f->fl_cap && j->inflight;) {
        struct fair_flight *e = &f->fl[i];
        if (e->used && e->job == job)
            flight_drop(f, e, j);
        else
            i++;
    }
    /* And every worker's note that it holds the job's model, so a later job with
     * the same id starts clean. */
    forget_models(f, job);
    free(j->queue.q);
    memmove(&f->jobs[pos], &f->jobs[pos + 1], (f->njobs - pos - 1) * sizeof *f->jobs);
    f->njobs--;
    return 0;
}

int fair_enqueue(struct fair *f, uint32_t job, uint64_t query, int front)
{
    struct fair_job *j = job_find(f, job, NULL);
    if (!j)
        return ID_ENOTFOUND;
    /* Queued and in flight at once would let it run twice with one slot counted. */
    if (flight_find(f, job, query))
        return ID_EEXIST;
    int rc = ring_reserve(&j->queue, 1);
    if (rc)
        return rc;
    job_wake(f, j);
    if (front)
        ring_push_front(&j->queue, query);
    else
        ring_push_back(&j->queue, query);
    return 0;
}

size_t fair_queued(const struct fair *f, uint32_t job)
{
    const struct fair_job *j = job_find(f, job, NULL);
    return j ? j->queue.len : 0;
}

size_t fair_inflight(const struct fair *f, uint32_t job)
{
    const struct fair_job *j = job_find(f, job, NULL);
    return j ? j->inflight : 0;
}

int fair_job_set_burst(struct fair *f, uint32_t job, unsigned burst)
{
    if (burst == 0 || burst > FAIR_BURST_MAX)
        return ID_EINVAL;
    struct fair_job *j = job_find(f, job, NULL);
    if (!j)
        return ID_ENOTFOUND;
    if (burst > f->burst_cap) {
        /* Room for a burst on every worker, so that fair_next never allocates. */
        unsigned before = f->burst_cap;
        f->burst_cap = burst;
        int rc = flight_reserve(f, flight_need(f, NULL, 0, 0));
        if (rc) {
            f->burst_cap = before;
            return rc;
        }
    }
    /* Queries above a lowered burst keep running; no new ones until below. */
    j->burst = burst;
    return 0;
}

uint64_t fair_dispatched(const struct fair *f, uint32_t job)
{
    const struct fair_job *j = job_find(f, job, NULL);
    return j ? j->dispatched : 0;
}

/* ---- workers -------------------------------------------------------------------------------- */

int fair_set_spare(struct fair *f, unsigned spare)
{
    if (spare > FAIR_SPARE_MAX)
        return ID_EINVAL;
    unsigned before = f->spare;
    f->spare = spare;
    /* Room for the new bound on every worker, so that fair_next never allocates
     * (NULL: no worker taken differently; it counts one phantom worker's spare). */
    int rc = flight_reserve(f, flight_need(f, NULL, 0, 0));
    if (rc)
        f->spare = before;
    return rc;
}

int fair_worker_add(struct fair *f, const char *worker, unsigned slots)
{
    if (!name_ok(worker))
        return ID_EINVAL;
    if (slots == 0)
        slots = FAIR_DEFAULT_SLOTS;
    size_t pos;
    struct fair_worker *w = worker_find(f, worker, &pos);
    /* Room for every slot now, so that fair_next never has to allocate. */
    int rc = flight_reserve(f, flight_need(f, w, w ? w->load : 0, slots));
    if (rc)
        return rc;
    if (w) {
        /* Queries above a lowered bound keep running; no new ones until below. */
        w->slots = slots;
        return 0;
    }
    if (ARRAY_RESERVE(f->workers, f->workers_cap, f->nworkers, 1, 16) < 0)
        return ID_ENOMEM;
    w = calloc(1, sizeof *w);
    if (!w)
        return ID_ENOMEM;
    strcpy(w->name, worker);
    w->slots = slots;
    memmove(&f->workers[pos + 1], &f->workers[pos], (f->nworkers - pos) * sizeof *f->workers);
    f->workers[pos] = w;
    f->nworkers++;
    return 0;
}

static int flight_seq_cmp(const void *x, const void *y)
{
    const struct fair_flight *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int fair_worker_remove(struct fair *f, const char *worker)
{
    if (!name_ok(worker))
        return ID_ENOTFOUND;
    size_t pos;
    struct fair_worker *w = worker_find(f, worker, &pos);
    if (!w)
        return ID_ENOTFOUND;
    /* Copy its flights and reserve queue room first: past this point nothing
     * can fail, so a failure leaves everything as it was. */
    size_t n = 0;
    struct fair_flight *out = NULL;
    if (w->load) {
        out = malloc(w->load * sizeof *out);
        if (!out)
            return ID_ENOMEM;
        for (size_t i = 0; i < f->fl_cap; i++)
            if (f->fl[i].used && f->fl[i].worker == w && n < w->load)
                out[n++] = f->fl[i];
        qsort(out, n, sizeof *out, flight_seq_cmp);
        for (size_t i = 0; i < n; i++) {
            /* Reserving for every one of a job's flights in turn over-reserves
             * at most by that count; simpler than counting per job. */
            struct fair_job *j = job_find(f, out[i].job, NULL);
            if (j && ring_reserve(&j->queue, n)) {
                free(out);
                return ID_ENOMEM;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct fair_job *j = job_find(f, out[i].job, NULL);
        flight_drop(f, flight_find(f, out[i].job, out[i].query), j);
        if (j)
            j->vt -= out[i].charge;
    }
    /* Latest first onto the front, so the earliest dispatched ends up first. */
    for (size_t i = n; i-- > 0;) {
        struct fair_job *j = job_find(f, out[i].job, NULL);
        if (!j)
            continue;
        job_wake(f, j);
        ring_push_front(&j->queue, out[i].query);
    }
    free(out);
    free(w->models);
    free(w);
    memmove(&f->workers[pos], &f->workers[pos + 1], (f->nworkers - pos - 1) * sizeof *f->workers);
    f->nworkers--;
    return (int)n;
}

int fair_worker_set_model(struct fair *f, const char *worker, uint32_t job, int holds)
{
    struct fair_worker *w = name_ok(worker) ? worker_find(f, worker, NULL) : NULL;
    if (!w || !job_find(f, job, NULL))
        return ID_ENOTFOUND;
    int found;
    size_t m = model_find(w, job, &found);
    if (holds && !found) {
        if (ARRAY_RESERVE(w->models, w->models_cap, w->nmodels, 1, 8) < 0)
            return ID_ENOMEM;
        memmove(&w->models[m + 1], &w->models[m], (w->nmodels - m) * sizeof *w->models);
        w->models[m] = job;
        w->nmodels++;
    } else if (!holds && found) {
        memmove(&w->models[m], &w->models[m + 1], (w->nmodels - m - 1) * sizeof *w->models);
        w->nmodels--;
    }
    return 0;
}

int fair_job_needs_model(struct fair *f, uint32_t job, int on)
{
    struct fair_job *j = job_find(f, job, NULL);
    if (!j)
        return ID_ENOTFOUND;
    j->needs_model = on != 0;
    return 0;
}

int fair_job_forget_models(struct fair *f, uint32_t job)
{
    if (!job_find(f, job, NULL))
        return ID_ENOTFOUND;
    forget_models(f, job);
    return 0;
}

size_t fair_model_holders(const struct fair *f, uint32_t job)
{
    size_t n = 0;
    for (size_t i = 0; i < f->nworkers; i++)
        n += worker_holds(f->workers[i], job);
    return n;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

/* Is a (load a, slots sa) less loaded than b? Fractions compared exactly. */
static int less_loaded(const struct fair_worker *a, const struct fair_worker *b)
{
    uint64_t x = (uint64_t)a->load * b->slots, y = (uint64_t)b->load * a->slots;
    if (x != y)
        return x < y;
    return a->load < b->load;
}

/* The free worker for job j: holding its model, then least loaded, then first
 * by name (the array order, kept by strict comparisons). With extra > 0, a
 * worker counts as free up to that many queries beyond its slots; one running
 * j alone, up to j's burst. A job that needs its model loaded takes only a
 * worker holding it; *passed (if not NULL) then says whether a free worker
 * was passed over for not holding it. */
static struct fair_worker *pick_worker(const struct fair *f, const struct fair_job *j,
                                       unsigned extra, int *passed)
{
    uint32_t job = j->id;
    struct fair_worker *best = NULL;
    int best_holds = 0;
    for (size_t i = 0; i < f->nworkers; i++) {
        struct fair_worker *w = f->workers[i];
        int alone = w->load == 0 || (w->solo_job == job && w->solo_n == w->load);
        if (w->load >= w->slots + extra && !(alone && w->load < j->burst))
            continue;
        int holds = worker_holds(w, job);
        if (j->needs_model && !holds) {
            if (passed)
                *passed = 1;
            continue;
        }
        if (!best || holds > best_holds || (holds == best_holds && less_loaded(w, best))) {
            best = w;
            best_holds = holds;
        }
    }
    return best;
}

static void flight_insert(struct fair *f, struct fair_job *j, uint64_t query, struct fair_worker *w)
{
    struct fair_flight e = {.query = query,
                            .job = j->id,
                            .used = 1,
                            .worker = w,
                            .seq = f->seq++,
                            .charge = 1.0 / j->weight};
    flight_place(f->fl, f->fl_cap, &e);
    f->nfl++;
    if (w->load == 0) {
        w->solo_job = j->id;
        w->solo_n = 0;
    }
    if (w->solo_job == j->id)
        w->solo_n++;
    w->load++;
    j->inflight++;
    j->vt += e.charge;
}

static unsigned total_slots(const struct fair *f)
{
    unsigned n = 0;
    for (size_t i = 0; i < f->nworkers; i++)
        n += f->workers[i]->slots;
    return n;
}

int fair_next(struct fair *f, struct fair_dispatch *out)
{
    uint64_t call = ++f->next_calls;
    for (;;) {
        /* Smallest vt; on a tie the job with fewer queries running, which is how
         * a job just woken at the floor gets the very next slot; then the id.
         * Jobs this call passed over (no free worker holds their model) are
         * left out. */
        struct fair_job *best = NULL;
        for (size_t i = 0; i < f->njobs; i++) {
            struct fair_job *j = &f->jobs[i];
            if (!j->queue.len || j->passed == call || j->held)
                continue;
            if (!best || j->vt < best->vt || (j->vt == best->vt && j->inflight < best->inflight))
                best = j;
        }
        if (!best)
            return 0;
        int passed = 0;
        struct fair_worker *w = pick_worker(f, best, 0, &passed);
        /* No free slot: a job with nothing running may take a spare one. */
        if (!w && f->spare && best->inflight == 0)
            w = pick_worker(f, best, f->spare, &passed);
        if (!w && passed) {
            /* Free workers exist, but none holds its model yet: the next job
             * goes first. The wait banks at most one round of the cluster
             * (every slot once, at its weight): enough that the workers that
             * do hold its model serve it before the others' jobs (max-min:
             * what holds its rate back is how few have its model), not so much
             * that once its model is everywhere it holds every worker for
             * long while it catches up. */
            best->passed = call;
            double floor = f->vclock - (double)total_slots(f) / best->weight;
            if (best->vt < floor)
                best->vt = floor;
            continue;
        }
        /* The room check is a guard: worker_add reserved for every slot. */
        if (!w || f->nfl + 1 > f->fl_cap / 2)
            return 0;
        uint64_t query = ring_pop_front(&best->queue);
        /* A query queued twice whose first copy is still running: drop this copy
         * (results are keyed by query id, one run is enough). */
        if (flight_find(f, best->id, query))
            continue;
        if (best->vt > f->vclock)
            f->vclock = best->vt;
        best->dispatched++;
        flight_insert(f, best, query, w);
        out->job = best->id;
        out->query = query;
        strcpy(out->worker, w->name);
        return 1;
    }
}

/* The load up to which fair_take fills worker w with job j's queries: its
 * slots, or, on a worker running the job alone, the job's burst if larger
 * (the batch runs in one process where its queries would have run side by
 * side, and takes no more of the worker's share). */
static unsigned take_limit(const struct fair_worker *w, const struct fair_job *j)
{
    int alone = w->load == 0 || (w->solo_job == j->id && w->solo_n == w->load);
    return alone && j->burst > w->slots ? j->burst : w->slots;
}

int fair_job_hold(struct fair *f, uint32_t job, int on)
{
    struct fair_job *j = job_find(f, job, NULL);
    if (!j)
        return ID_ENOTFOUND;
    j->held = on != 0;
    return 0;
}

unsigned fair_room(const struct fair *f, uint32_t job)
{
    const struct fair_job *j = job_find(f, job, NULL);
    if (!j)
        return 0;
    /* The worker fair_next would pick, as it picks it. */
    const struct fair_worker *w = pick_worker(f, j, 0, NULL);
    if (!w && f->spare && j->inflight == 0)
        w = pick_worker(f, j, f->spare, NULL);
    if (!w)
        return 0;
    /* The first query goes even beyond the limit (a spare slot). */
    unsigned limit = take_limit(w, j);
    return limit > w->load + 1 ? limit - w->load : 1;
}

int fair_take(struct fair *f, uint32_t job, const char *worker, uint64_t *query)
{
    struct fair_job *j = job_find(f, job, NULL);
    struct fair_worker *w = name_ok(worker) ? worker_find(f, worker, NULL) : NULL;
    if (!j || !w)
        return ID_ENOTFOUND;
    while (j->queue.len) {
        /* Only into a free slot (or a burst's room), as fair_next would. */
        if (w->load >= take_limit(w, j))
            return 0;
        int rc = flight_reserve(f, flight_need(f, w, w->load + 1, w->slots));
        if (rc)
            return rc;
        uint64_t q = ring_pop_front(&j->queue);
        if (flight_find(f, j->id, q))
            continue; /* queued twice, the first copy running (see fair_next) */
        if (j->vt > f->vclock)
            f->vclock = j->vt;
        j->dispatched++;
        flight_insert(f, j, q, w);
        *query = q;
        return 1;
    }
    return 0;
}

int fair_complete(struct fair *f, uint32_t job, uint64_t query)
{
    struct fair_flight *e = flight_find(f, job, query);
    if (!e)
        return ID_ENOTFOUND;
    flight_drop(f, e, job_find(f, job, NULL));
    return 0;
}

int fair_requeue(struct fair *f, uint32_t job, uint64_t query)
{
    struct fair_flight *e = flight_find(f, job, query);
    struct fair_job *j = job_find(f, job, NULL);
    if (!e || !j)
        return ID_ENOTFOUND;
    int rc = ring_reserve(&j->queue, 1);
    if (rc)
        return rc;
    j->vt -= e->charge;
    flight_drop(f, e, j);
    job_wake(f, j);
    ring_push_front(&j->queue, query);
    return 0;
}

int fair_adopt(struct fair *f, uint32_t job, uint64_t query, const char *worker)
{
    struct fair_job *j = job_find(f, job, NULL);
    struct fair_worker *w = name_ok(worker) ? worker_find(f, worker, NULL) : NULL;
    if (!j || !w)
        return ID_ENOTFOUND;
    struct fair_flight *e = flight_find(f, job, query);
    if (e)
        return e->worker == w ? 0 : ID_EEXIST;
    /* The worker really runs it, so it may go above its slots (after a lowered
     * bound, say); the table must then grow beyond what the slots reserved. */
    int rc = flight_reserve(f, flight_need(f, w, w->load + 1, w->slots));
    if (rc)
        return rc;
    /* Searching the queue is linear, but adopts come only when a coordinator
     * takes over, a few per worker, and a requeued query sits near the head. */
    for (size_t i = 0; i < j->queue.len; i++) {
        if (*ring_at(&j->queue, i) == query) {
            ring_remove_at(&j->queue, i);
            break;
        }
    }
    flight_insert(f, j, query, w);
    return 0;
}
