/* child_main.c — the inference process: `idunnod --infer-child ...`, started
 * by its node (child.c) for one model. It owns that model's ONNX Runtime
 * session and runs the node's requests on it; if the model brings the
 * process down, the node loses nothing but this process (docs/inference.md).
 *
 * The socket to the node is file descriptor 3 (child_proto.h). The main
 * thread reads it and queues each RUN for the run threads (up to
 * CHILD_MAX_RUNS at once: the node's worker runs up to three batches side by
 * side, and ONNX Runtime runs one session from several threads); a run's
 * thread writes its DONE under a lock. The threads are started as runs need
 * them and then kept: a thread per run cost its creation on every online
 * request, a small part of a tiny model's run. End of file on the socket — the node closed
 * it or died — ends the process. Anything malformed from the node ends it
 * too: the node then starts a new one. */
#include "infer/child.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "infer/child_proto.h"
#include "infer/gate.h"
#include "infer/infer.h"
#include "net/reader.h"

#define CHILD_FD 3
#define CHILD_MAX_RUNS 4
/* Model runs yield the CPU to the node's event loops (heartbeats must not
 * wait behind a batch); the node's pool threads used the same value. */
#define CHILD_NICE 10

struct child_args {
    int threads;
    int gate_slots;
    char gate_dir[256];
    int sched_batch;
    int test_hooks;
    char log_path[512];
    char node[64];
    long parent;
};

static struct {
    struct child_args a;
    struct infer_model *model;
    struct infer_gate *gate;
    const char *crash_hook; /* test only: "abort", "segv" or "hang" on every run */
    pthread_mutex_t write_lock, lock;
    pthread_cond_t room; /* running dropped below CHILD_MAX_RUNS */
    pthread_cond_t work; /* a run was queued */
    int running;         /* runs queued or under way */
    int threads, idle;   /* run threads started; those waiting for work */
    struct run *queue, *queue_tail;
    int queued; /* runs in the queue, not yet taken by a thread */
} child = {
    .write_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .room = PTHREAD_COND_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
};

static void die(int code, const char *why)
{
    if (why)
        LOG_ERROR("infer", "inference process for %s ends: %s",
                  child.model ? infer_model_info(child.model)->name : "?", why);
    _exit(code);
}

static void send_frame(uint16_t type, uint64_t id, const ProtobufCMessage *msg)
{
    uint8_t *buf;
    size_t len;
    if (infer_child_pack(type, id, msg, &buf, &len) < 0)
        die(1, "cannot encode a reply");
    pthread_mutex_lock(&child.write_lock);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(CHILD_FD, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die(0, NULL); /* the node is gone */
        off += (size_t)w;
    }
    pthread_mutex_unlock(&child.write_lock);
    free(buf);
}

/* ---- runs ------------------------------------------------------------------------------------ */

struct run {
    uint64_t id;
    Idunno__InferChildRun *msg;
    struct run *next; /* in the queue */
};

static void reply_done(uint64_t id, int status, const char *error, uint64_t cpu_us,
                       const struct infer_result *res, size_t n)
{
    Idunno__InferChildDone d = IDUNNO__INFER_CHILD_DONE__INIT;
    d.status = status;
    d.error = (char *)error;
    d.cpu_us = cpu_us;
    Idunno__InferChildImage *rows = calloc(n ? n : 1, sizeof *rows);
    Idunno__InferChildImage **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    int32_t(*cls)[INFER_MAX_K] = calloc(n ? n : 1, sizeof *cls);
    float(*probs)[INFER_MAX_K] = calloc(n ? n : 1, sizeof *probs);
    if (!rows || !ptrs || !cls || !probs)
        die(1, "out of memory");
    for (size_t i = 0; status == 0 && i < n; i++) {
        idunno__infer_child_image__init(&rows[i]);
        rows[i].status = res[i].status;
        rows[i].error = (char *)res[i].error;
        if (res[i].status == 0) {
            for (int k = 0; k < res[i].k; k++) {
                cls[i][k] = res[i].top_class[k];
                probs[i][k] = res[i].top_prob[k];
            }
            rows[i].n_classes = rows[i].n_probs = (size_t)res[i].k;
            rows[i].classes = cls[i];
            rows[i].probs = probs[i];
        }
        ptrs[i] = &rows[i];
    }
    if (status == 0) {
        d.n_images = n;
        d.images = ptrs;
    }
    send_frame(INFER_CHILD_DONE, id, &d.base);
    free(rows);
    free(ptrs);
    free(cls);
    free(probs);
}

/* The test hook (--test-hooks only): a model asking for it brings the
 * process down the way a bug in a runtime would, or ("hang") blocks its run
 * forever the way a deadlock would, for the node's run deadline to end. */
static void test_crash(void)
{
    if (strcmp(child.crash_hook, "hang") == 0) {
        LOG_WARN("infer", "test hook: model %s asks this process to hang",
                 infer_model_info(child.model)->name);
        for (;;)
            pause();
    }
    LOG_WARN("infer", "test hook: model %s asks this process to crash (%s)",
             infer_model_info(child.model)->name, child.crash_hook);
    if (strcmp(child.crash_hook, "segv") == 0)
        raise(SIGSEGV);
    abort();
}

static void run_one(struct run *r)
{
    size_t n = r->msg->n_paths;
    uint64_t cpu0 = id_thread_cpu_us();
    struct infer_result *res = calloc(n ? n : 1, sizeof *res);
    char err[200] = "";
    int rc = res ? 0 : ID_ENOMEM;
    if (!rc && n && child.crash_hook)
        test_crash();
    struct infer_input *in = rc ? NULL : calloc(n ? n : 1, sizeof *in);
    if (!rc && !in)
        rc = ID_ENOMEM;
    /* Validated: one flag and one data entry per path, or none. */
    for (size_t i = 0; in && i < n; i++) {
        in[i].path = r->msg->paths[i];
        in[i].tensor = r->msg->n_tensor && r->msg->tensor[i];
        if (r->msg->n_data && r->msg->data[i].len) {
            in[i].data = r->msg->data[i].data;
            in[i].len = r->msg->data[i].len;
        }
    }
    if (!rc && n)
        rc = infer_run_inputs(child.model, in, n, n, res, err, sizeof err);
    free(in);
    if (rc < 0 && !err[0])
        snprintf(err, sizeof err, "%s", id_strerror(rc));
    reply_done(r->id, rc, err, id_thread_cpu_us() - cpu0, res, n);
    free(res);
    idunno__infer_child_run__free_unpacked(r->msg, NULL);
    free(r);
}

static void *run_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&child.lock);
    for (;;) {
        while (!child.queue) {
            child.idle++;
            pthread_cond_wait(&child.work, &child.lock);
            child.idle--;
        }
        struct run *r = child.queue;
        child.queue = r->next;
        if (!child.queue)
            child.queue_tail = NULL;
        child.queued--;
        pthread_mutex_unlock(&child.lock);
        run_one(r);
        pthread_mutex_lock(&child.lock);
        child.running--;
        pthread_cond_signal(&child.room);
    }
    return NULL;
}

/* Queues a run for a run thread, starting one if none waits (up to
 * CHILD_MAX_RUNS); waits first while that many runs are queued or under
 * way, which stops the reading of the node's socket. */
static void start_run(uint64_t id, Idunno__InferChildRun *msg)
{
    struct run *r = malloc(sizeof *r);
    if (!r)
        die(1, "out of memory");
    *r = (struct run){.id = id, .msg = msg};
    pthread_mutex_lock(&child.lock);
    while (child.running >= CHILD_MAX_RUNS)
        pthread_cond_wait(&child.room, &child.lock);
    child.running++;
    if (child.queue_tail)
        child.queue_tail->next = r;
    else
        child.queue = r;
    child.queue_tail = r;
    child.queued++;
    /* A thread woken but not yet running still counts as idle: compare with
     * the runs no thread has taken. */
    int start = child.queued > child.idle && child.threads < CHILD_MAX_RUNS;
    if (start)
        child.threads++;
    else
        pthread_cond_signal(&child.work);
    pthread_mutex_unlock(&child.lock);
    if (start) {
        pthread_attr_t at;
        pthread_t th;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &at, run_thread, NULL) != 0)
            die(1, "cannot start a thread");
        pthread_attr_destroy(&at);
    }
}

/* ---- the node's frames ----------------------------------------------------------------------- */

static void load(const Idunno__InferChildLoad *msg)
{
    Idunno__InferChildLoaded l = IDUNNO__INFER_CHILD_LOADED__INIT;
    char err[300] = "";
    struct infer_options opt = {.threads = child.a.threads, .gate = child.gate};
    /* The stored card was resolved against this very file at train time;
     * resolving it again here checks it still fits the bytes fetched. */
    struct model_card card = {0};
    l.status = 0;
    if (msg->card[0])
        l.status = card_parse_json(msg->card, strlen(msg->card), NULL, &card, err, sizeof err);
    if (l.status == 0)
        l.status = infer_model_open_card(msg->path, &opt, &card, &child.model, err, sizeof err);
    card_free(&card);
    l.error = err;
    if (l.status == 0) {
        const struct infer_model_info *in = infer_model_info(child.model);
        l.classes = (uint32_t)in->classes;
        l.input_size = (uint32_t)in->input_size;
        l.raw = in->card.output == CARD_RAW;
        l.top_k = (uint32_t)(l.raw ? in->classes : in->card.top_k);
        char *hook = child.a.test_hooks ? infer_model_metadata(child.model, "idunno.test.crash")
                                        : NULL;
        child.crash_hook = hook; /* kept for the process's life */
    }
    send_frame(INFER_CHILD_LOADED, 0, &l.base);
}

static void on_frame(const struct frame_header *h, const uint8_t *body)
{
    if (h->type == INFER_CHILD_LOAD && !child.model) {
        Idunno__InferChildLoad *m;
        if (infer_child_decode_load(body, h->length, &m) < 0)
            die(2, "malformed LOAD from the node");
        load(m);
        idunno__infer_child_load__free_unpacked(m, NULL);
        if (!child.model)
            die(0, NULL); /* the node was told why; nothing more to do */
    } else if (h->type == INFER_CHILD_RUN && child.model) {
        Idunno__InferChildRun *m;
        if (infer_child_decode_run(body, h->length, &m) < 0)
            die(2, "malformed RUN from the node");
        start_run(h->req_id, m);
    } else {
        die(2, "unexpected frame from the node");
    }
}

static void serve(void)
{
    struct frame_reader r;
    frame_reader_init(&r, INFER_CHILD_MAX_FRAME, NULL);
    static uint8_t buf[64 * 1024];
    for (;;) {
        ssize_t n = read(CHILD_FD, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die(0, NULL); /* the node closed the socket or died */
        if (frame_reader_feed(&r, buf, (size_t)n) < 0)
            die(1, "out of memory");
        struct frame_header h;
        const uint8_t *body;
        int rc;
        while ((rc = frame_reader_next(&r, &h, &body)) == 1)
            on_frame(&h, body);
        if (rc < 0)
            die(2, "corrupt stream from the node");
    }
}

/* ---- command line ---------------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, struct child_args *a)
{
    static const struct option opts[] = {
        {"infer-child", no_argument, NULL, 'C'},      {"threads", required_argument, NULL, 't'},
        {"gate-slots", required_argument, NULL, 's'}, {"gate-dir", required_argument, NULL, 'g'},
        {"sched-batch", no_argument, NULL, 'b'},      {"test-hooks", no_argument, NULL, 'T'},
        {"log", required_argument, NULL, 'l'},        {"node", required_argument, NULL, 'n'},
        {"parent", required_argument, NULL, 'p'},     {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    a->threads = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'C': break;
        case 't': a->threads = atoi(optarg); break;
        case 's': a->gate_slots = atoi(optarg); break;
        case 'g': snprintf(a->gate_dir, sizeof a->gate_dir, "%s", optarg); break;
        case 'b': a->sched_batch = 1; break;
        case 'T': a->test_hooks = 1; break;
        case 'l': snprintf(a->log_path, sizeof a->log_path, "%s", optarg); break;
        case 'n': snprintf(a->node, sizeof a->node, "%s", optarg); break;
        case 'p': a->parent = atol(optarg); break;
        default: return -1;
        }
    }
    if (optind != argc || a->threads < 1 || a->gate_slots < 0 ||
        a->gate_slots > INFER_GATE_MAX_SLOTS)
        return -1;
    return 0;
}

int infer_child_main(int argc, char **argv)
{
    if (parse_args(argc, argv, &child.a) < 0) {
        fprintf(stderr,
                "idunnod --infer-child: bad arguments (this mode is started by idunnod itself)\n");
        return 1;
    }
    /* Dies with its node even if the socket were somehow kept open. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (child.a.parent && getppid() != (pid_t)child.a.parent)
        return 0;
    if (child.a.log_path[0])
        log_open(child.a.log_path, child.a.node[0] ? child.a.node : "infer", 0);
    /* Nice and policy are per thread on Linux; set before any thread starts,
     * every run thread inherits them. */
    setpriority(PRIO_PROCESS, 0, CHILD_NICE);
    if (child.a.sched_batch) {
        struct sched_param sp = {0};
        sched_setscheduler(0, SCHED_BATCH, &sp);
    }
    if (child.a.gate_slots > 0) {
        char dir[300], err[400];
        if (child.a.gate_dir[0])
            snprintf(dir, sizeof dir, "%s", child.a.gate_dir);
        else
            infer_gate_default_dir(dir, sizeof dir);
        if (infer_gate_open(dir, (unsigned)child.a.gate_slots, &child.gate, err, sizeof err) < 0)
            LOG_WARN("infer", "no inference gate (%s): model runs are not limited on this host",
                     err);
    }
    serve();
    return 0;
}
