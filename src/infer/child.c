/* child.c — the node's side of its inference processes (child.h): starting
 * one per model, the socket's frames, crash accounting, and handing runs
 * back when a process dies. libuv glue around child_proto.c's codec. */
#include "infer/child.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "infer/child_proto.h"
#include "net/frame.h"
#include "net/reader.h"

/* ---- crash accounting ---------------------------------------------------------------------- */

unsigned infer_crashes_of(const struct infer_crashes *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, key) == 0)
            return c->e[i].crashes;
    return 0;
}

const char *infer_crashes_last(const struct infer_crashes *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, key) == 0)
            return c->e[i].last;
    return "";
}

unsigned infer_crashes_note(struct infer_crashes *c, const char *key, const char *why)
{
    size_t i = 0;
    while (i < c->n && strcmp(c->e[i].key, key) != 0)
        i++;
    if (i == c->n) {
        struct infer_crash_entry *e = realloc(c->e, (c->n + 1) * sizeof *e);
        if (!e)
            return 0;
        c->e = e;
        snprintf(e[i].key, sizeof e[i].key, "%s", key);
        e[i].crashes = 0;
        c->n++;
    }
    snprintf(c->e[i].last, sizeof c->e[i].last, "%s", why ? why : "");
    return ++c->e[i].crashes;
}

void infer_crashes_free(struct infer_crashes *c)
{
    free(c->e);
    c->e = NULL;
    c->n = 0;
}

/* ---- the run deadline ---------------------------------------------------------------------- */

int infer_run_overdue(uint64_t handed_ms, uint64_t now_ms, uint32_t timeout_ms)
{
    return timeout_ms && now_ms >= handed_ms && now_ms - handed_ms >= timeout_ms;
}

uint64_t infer_deadline_check_ms(uint32_t timeout_ms)
{
    uint64_t every = timeout_ms / 4;
    return every < 50 ? 50 : every > 1000 ? 1000 : every;
}

/* ---- processes ------------------------------------------------------------------------------ */

struct prun {
    uint64_t id;
    uint8_t *frame; /* the RUN frame, until written */
    size_t frame_len;
    size_t n;
    uint64_t handed_ms; /* loop time it was given to the process (the deadline counts from it) */
    infer_procs_cb cb;
    void *ud;
    struct prun *next;
};

struct mproc {
    struct infer_procs *p;
    char key[INFER_KEY_MAX];
    uv_process_t proc;
    uv_pipe_t pipe;
    uv_timer_t deadline; /* checks its runs against cfg.run_timeout_ms */
    int pid;
    int loaded, classes;
    int top_k, raw; /* what each image's result holds (LOADED) */
    int exited, eof, dead;
    int retiring;  /* stopped on purpose: its end is no crash */
    int violated;  /* it sent something malformed and was killed */
    int timed_out; /* a run outlived the deadline and it was killed */
    int64_t exit_status;
    int term_signal;
    unsigned handles; /* libuv handles not yet closed */
    struct frame_reader reader;
    struct prun *runs; /* FIFO: written (once loaded) or waiting for the load */
    uint64_t last_used;
    struct mproc *next;
};

struct infer_procs {
    struct infer_procs_config cfg;
    char exe[1024], node[64], log_path[512], gate_dir[256];
    struct mproc *procs;
    struct infer_crashes crashes;
    uint64_t next_id, clock;
    int closing;
    struct infer_procs_stats stats;
};

struct write_req {
    uv_write_t req;
    uint8_t *buf;
};

static void procs_maybe_free(struct infer_procs *p)
{
    if (p->closing && !p->procs) {
        infer_crashes_free(&p->crashes);
        free(p);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct mproc *mp = h->data;
    if (--mp->handles)
        return;
    struct infer_procs *p = mp->p;
    for (struct mproc **pp = &p->procs; *pp; pp = &(*pp)->next)
        if (*pp == mp) {
            *pp = mp->next;
            break;
        }
    frame_reader_free(&mp->reader);
    free(mp);
    procs_maybe_free(p);
}

static void close_handles(struct mproc *mp)
{
    if (!uv_is_closing((uv_handle_t *)&mp->proc))
        uv_close((uv_handle_t *)&mp->proc, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&mp->pipe))
        uv_close((uv_handle_t *)&mp->pipe, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&mp->deadline))
        uv_close((uv_handle_t *)&mp->deadline, on_handle_closed);
}

static void run_free(struct prun *r)
{
    free(r->frame);
    free(r);
}

static void kill_proc(struct mproc *mp)
{
    if (!mp->exited)
        uv_process_kill(&mp->proc, SIGKILL);
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct mproc *mp = req->handle->data;
    free(w->buf);
    free(w);
    if (status < 0 && !mp->dead)
        kill_proc(mp); /* its end shows as EOF and exit */
}

/* Writes buf (taken) to the process. */
static void send_buf(struct mproc *mp, uint8_t *buf, size_t len)
{
    struct write_req *w = malloc(sizeof *w);
    if (!w) {
        free(buf);
        kill_proc(mp);
        return;
    }
    w->buf = buf;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&mp->pipe, &b, 1, on_written) < 0) {
        free(buf);
        free(w);
        kill_proc(mp);
    }
}

static void send_run(struct mproc *mp, struct prun *r)
{
    send_buf(mp, r->frame, r->frame_len);
    r->frame = NULL;
}

/* Why a process ended, for logs and errors. */
static void describe_end(const struct mproc *mp, char *out, size_t len)
{
    uint32_t t = mp->p->cfg.run_timeout_ms;
    if (mp->timed_out && t % 1000 == 0)
        snprintf(out, len, "a run took longer than %u s and was killed", t / 1000);
    else if (mp->timed_out)
        snprintf(out, len, "a run took longer than %u ms and was killed", t);
    else if (mp->violated)
        snprintf(out, len, "it sent a malformed reply and was killed");
    else if (mp->term_signal)
        snprintf(out, len, "killed by signal %d (%s)", mp->term_signal, strsignal(mp->term_signal));
    else
        snprintf(out, len, "exited with status %lld", (long long)mp->exit_status);
}

/* The process is gone once both its exit and the end of its socket are seen:
 * every DONE it wrote has then been read. Runs still in it are handed back. */
static void maybe_finish(struct mproc *mp)
{
    if (!mp->exited || !mp->eof || mp->dead)
        return;
    struct infer_procs *p = mp->p;
    mp->dead = 1;
    p->stats.running--;
    struct prun *runs = mp->runs;
    mp->runs = NULL;
    close_handles(mp); /* mp stays valid until all its handles closed: after this function */
    if (!runs)
        return;
    size_t n = 0;
    for (struct prun *r = runs; r; r = r->next)
        n++;
    char how[160], msg[300];
    describe_end(mp, how, sizeof how);
    unsigned crashes = 0;
    if (!mp->retiring) {
        crashes = infer_crashes_note(&p->crashes, mp->key, how);
        p->stats.crashes++;
    }
    int failed = crashes >= INFER_MAX_CRASHES;
    if (failed) {
        p->stats.failed_models++;
        snprintf(msg, sizeof msg,
                 "model %s crashed its inference process %u times (last: %s); it is given up",
                 mp->key, crashes, how);
        LOG_ERROR("infer", "%s", msg);
    } else {
        snprintf(msg, sizeof msg, "the inference process of model %s died: %s", mp->key, how);
        LOG_WARN("infer",
                 "inference process %d of model %s: %s, with %zu runs in it (crash %u of %d): "
                 "they run again in a new process",
                 mp->pid, mp->key, how, n, crashes, INFER_MAX_CRASHES);
    }
    while (runs) {
        struct prun *r = runs;
        runs = r->next;
        struct infer_procs_done d = {
            .status = failed ? ID_EMODEL : ID_ECLOSED, .model_failed = failed, .error = msg};
        if (!p->closing)
            r->cb(r->ud, &d);
        run_free(r);
    }
}

static void on_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    struct mproc *mp = proc->data;
    mp->exited = 1;
    mp->exit_status = exit_status;
    mp->term_signal = term_signal;
    maybe_finish(mp);
}

/* The deadline's tick: a run in the process for too long means the process
 * hangs (or is as good as hung); killing it is the only way to get the slot
 * and the other runs back. Its end is then a crash like any other. */
static void on_deadline_tick(uv_timer_t *t)
{
    struct mproc *mp = t->data;
    if (mp->dead || mp->timed_out || mp->exited)
        return;
    uint64_t now = uv_now(t->loop);
    for (struct prun *r = mp->runs; r; r = r->next) {
        if (!infer_run_overdue(r->handed_ms, now, mp->p->cfg.run_timeout_ms))
            continue;
        LOG_WARN("infer",
                 "inference process %d of model %s: a run of %zu images has been in it %llu ms, "
                 "past the deadline of %u ms (--infer-timeout): killed",
                 mp->pid, mp->key, r->n, (unsigned long long)(now - r->handed_ms),
                 mp->p->cfg.run_timeout_ms);
        mp->timed_out = 1;
        uv_timer_stop(t);
        kill_proc(mp);
        return;
    }
}

static void violation(struct mproc *mp, const char *what)
{
    LOG_WARN("infer", "inference process %d of model %s: %s: killed", mp->pid, mp->key, what);
    mp->violated = 1;
    uv_read_stop((uv_stream_t *)&mp->pipe);
    mp->eof = 1;
    kill_proc(mp);
}

static void on_loaded(struct mproc *mp, const uint8_t *body, size_t len)
{
    Idunno__InferChildLoaded *m;
    if (infer_child_decode_loaded(body, len, &m) < 0) {
        violation(mp, "malformed LOADED");
        return;
    }
    if (m->status < 0) {
        char err[300], clean[200];
        infer_child_clean_text(clean, sizeof clean, m->error);
        snprintf(err, sizeof err, "model %s: %s", mp->key,
                 clean[0] ? clean : id_strerror(m->status));
        LOG_WARN("infer", "cannot load %s", err);
        struct prun *runs = mp->runs;
        mp->runs = NULL;
        mp->retiring = 1; /* the process ends by itself; nothing of it is a crash */
        while (runs) {
            struct prun *r = runs;
            runs = r->next;
            struct infer_procs_done d = {.status = ID_EMODEL, .error = err};
            r->cb(r->ud, &d);
            run_free(r);
        }
    } else {
        mp->loaded = 1;
        mp->classes = (int)m->classes;
        mp->top_k = (int)m->top_k;
        mp->raw = m->raw;
        for (struct prun *r = mp->runs; r; r = r->next)
            send_run(mp, r);
    }
    idunno__infer_child_loaded__free_unpacked(m, NULL);
}

static void on_done(struct mproc *mp, uint64_t id, const uint8_t *body, size_t len)
{
    struct prun **pp = &mp->runs;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    struct prun *r = *pp;
    if (!r || r->frame) {
        violation(mp, "a DONE for no run it was given");
        return;
    }
    struct infer_result *res = calloc(r->n ? r->n : 1, sizeof *res);
    struct infer_child_outcome o;
    if (!res ||
        infer_child_decode_done(body, len, r->n, mp->classes, mp->top_k, mp->raw, &o, res) < 0) {
        free(res);
        violation(mp, "malformed DONE");
        return;
    }
    *pp = r->next;
    mp->last_used = ++mp->p->clock;
    char err[300];
    if (o.status < 0)
        snprintf(err, sizeof err, "model %s: %s", mp->key,
                 o.error[0] ? o.error : id_strerror(o.status));
    struct infer_procs_done d = {.status = o.status < 0 ? ID_EMODEL : 0,
                                 .error = o.status < 0 ? err : NULL,
                                 .results = res,
                                 .cpu_us = o.cpu_us};
    r->cb(r->ud, &d);
    free(res);
    run_free(r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char space[64 * 1024]; /* the loop thread's; consumed before the next read */
    *buf = uv_buf_init(space, sizeof space);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct mproc *mp = s->data;
    if (nread < 0) {
        uv_read_stop(s);
        mp->eof = 1;
        kill_proc(mp);
        maybe_finish(mp);
        return;
    }
    if (nread == 0 || mp->violated)
        return;
    if (frame_reader_feed(&mp->reader, buf->base, (size_t)nread) < 0) {
        violation(mp, "out of memory reading its replies");
        return;
    }
    struct frame_header h;
    const uint8_t *body;
    int rc = 0;
    while (!mp->violated && (rc = frame_reader_next(&mp->reader, &h, &body)) == 1) {
        if (h.type == INFER_CHILD_LOADED && !mp->loaded && !mp->retiring)
            on_loaded(mp, body, h.length);
        else if (h.type == INFER_CHILD_DONE && mp->loaded)
            on_done(mp, h.req_id, body, h.length);
        else
            violation(mp, "an unexpected frame");
    }
    if (!mp->violated && rc < 0)
        violation(mp, "a corrupt stream");
}

/* Stops the least recently used process without runs while more than
 * max_idle are alive. */
static void retire_idle(struct infer_procs *p)
{
    for (;;) {
        size_t alive = 0;
        struct mproc *lru = NULL;
        for (struct mproc *mp = p->procs; mp; mp = mp->next) {
            if (mp->dead || mp->retiring)
                continue;
            alive++;
            if (!mp->runs && (!lru || mp->last_used < lru->last_used))
                lru = mp;
        }
        if (alive <= p->cfg.max_idle || !lru)
            return;
        lru->retiring = 1;
        kill_proc(lru);
    }
}

static int spawn(struct infer_procs *p, const char *key, const char *path, const char *card,
                 struct mproc **out, char *errmsg, size_t len)
{
    struct mproc *mp = calloc(1, sizeof *mp);
    if (!mp)
        return ID_ENOMEM;
    mp->p = p;
    snprintf(mp->key, sizeof mp->key, "%s", key);
    frame_reader_init(&mp->reader, INFER_CHILD_MAX_FRAME, NULL);
    char threads[16], parent[24], slots[16];
    snprintf(threads, sizeof threads, "%d", p->cfg.threads > 0 ? p->cfg.threads : 1);
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    snprintf(slots, sizeof slots, "%d", p->cfg.gate_slots);
    char *args[20];
    int a = 0;
    args[a++] = p->exe;
    args[a++] = "--infer-child";
    args[a++] = "--threads";
    args[a++] = threads;
    args[a++] = "--parent";
    args[a++] = parent;
    if (p->cfg.gate_slots > 0) {
        args[a++] = "--gate-slots";
        args[a++] = slots;
        if (p->gate_dir[0]) {
            args[a++] = "--gate-dir";
            args[a++] = p->gate_dir;
        }
    }
    if (p->cfg.sched_batch)
        args[a++] = "--sched-batch";
    if (p->cfg.test_hooks)
        args[a++] = "--test-hooks";
    if (p->log_path[0]) {
        args[a++] = "--log";
        args[a++] = p->log_path;
    }
    if (p->node[0]) {
        args[a++] = "--node";
        args[a++] = p->node;
    }
    args[a] = NULL;
    uv_pipe_init(p->cfg.loop, &mp->pipe, 0);
    uv_timer_init(p->cfg.loop, &mp->deadline);
    mp->pipe.data = mp;
    mp->proc.data = mp;
    mp->deadline.data = mp;
    uv_stdio_container_t stdio[4];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = 1;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
    stdio[3].data.stream = (uv_stream_t *)&mp->pipe;
    uv_process_options_t opt = {
        .file = p->exe, .args = args, .exit_cb = on_exit_cb, .stdio_count = 4, .stdio = stdio};
    mp->handles = 3;
    mp->next = p->procs;
    p->procs = mp;
    int rc = uv_spawn(p->cfg.loop, &mp->proc, &opt);
    if (rc < 0) {
        snprintf(errmsg, len, "cannot start an inference process (%s): %s", p->exe,
                 uv_strerror(rc));
        mp->dead = 1;
        close_handles(mp);
        return ID_EIO;
    }
    mp->pid = mp->proc.pid;
    p->stats.started++;
    p->stats.running++;
    uv_read_start((uv_stream_t *)&mp->pipe, on_alloc, on_read);
    if (p->cfg.run_timeout_ms) {
        uint64_t every = infer_deadline_check_ms(p->cfg.run_timeout_ms);
        uv_timer_start(&mp->deadline, on_deadline_tick, every, every);
    }
    Idunno__InferChildLoad l = IDUNNO__INFER_CHILD_LOAD__INIT;
    l.path = (char *)path;
    l.card = (char *)(card ? card : "");
    uint8_t *buf;
    size_t blen;
    if (infer_child_pack(INFER_CHILD_LOAD, 0, &l.base, &buf, &blen) == 0)
        send_buf(mp, buf, blen);
    else
        kill_proc(mp);
    LOG_INFO("infer", "inference process %d started for model %s", mp->pid, key);
    *out = mp;
    return 0;
}

int infer_procs_create(const struct infer_procs_config *cfg, struct infer_procs **out)
{
    struct infer_procs *p = calloc(1, sizeof *p);
    if (!p)
        return ID_ENOMEM;
    p->cfg = *cfg;
    size_t n = sizeof p->exe;
    if (cfg->exe)
        snprintf(p->exe, sizeof p->exe, "%s", cfg->exe);
    else if (uv_exepath(p->exe, &n) < 0) {
        free(p);
        return ID_EIO;
    }
    snprintf(p->node, sizeof p->node, "%s", cfg->node ? cfg->node : "");
    snprintf(p->log_path, sizeof p->log_path, "%s", cfg->log_path ? cfg->log_path : "");
    snprintf(p->gate_dir, sizeof p->gate_dir, "%s", cfg->gate_dir ? cfg->gate_dir : "");
    p->cfg.node = p->cfg.log_path = p->cfg.gate_dir = p->cfg.exe = NULL;
    if (!p->cfg.max_idle)
        p->cfg.max_idle = 1;
    *out = p;
    return 0;
}

int infer_procs_run(struct infer_procs *p, const char *key, const char *path, const char *card,
                    const struct infer_input *in, size_t n, infer_procs_cb cb, void *ud,
                    char *errmsg, size_t len)
{
    unsigned crashes = infer_crashes_of(&p->crashes, key);
    if (crashes >= INFER_MAX_CRASHES) {
        /* the same reason as the runs given up at the last crash had */
        const char *last = infer_crashes_last(&p->crashes, key);
        if (last[0])
            snprintf(errmsg, len,
                     "model %s crashed its inference process %u times (last: %s); it is given up",
                     key, crashes, last);
        else
            snprintf(errmsg, len, "model %s crashed its inference process %u times; it is given up",
                     key, crashes);
        return ID_EMODEL;
    }
    if (n > INFER_CHILD_MAX_IMAGES)
        return ID_EINVAL;
    struct prun *r = calloc(1, sizeof *r);
    if (!r)
        return ID_ENOMEM;
    r->id = ++p->next_id;
    r->n = n;
    r->handed_ms = uv_now(p->cfg.loop);
    r->cb = cb;
    r->ud = ud;
    Idunno__InferChildRun m = IDUNNO__INFER_CHILD_RUN__INIT;
    char **paths = calloc(n ? n : 1, sizeof *paths);
    protobuf_c_boolean *flags = calloc(n ? n : 1, sizeof *flags);
    ProtobufCBinaryData *data = calloc(n ? n : 1, sizeof *data);
    int any_tensor = 0, any_data = 0, rc = paths && flags && data ? 0 : ID_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        paths[i] = (char *)(in[i].data ? "" : in[i].path);
        flags[i] = in[i].tensor != 0;
        any_tensor |= flags[i];
        if (in[i].data) {
            data[i] = (ProtobufCBinaryData){in[i].len, (uint8_t *)in[i].data};
            any_data = 1;
        }
    }
    m.n_paths = n;
    m.paths = paths;
    if (any_tensor) {
        m.n_tensor = n;
        m.tensor = flags;
    }
    if (any_data) {
        m.n_data = n;
        m.data = data;
    }
    if (!rc)
        rc = infer_child_pack(INFER_CHILD_RUN, r->id, &m.base, &r->frame, &r->frame_len);
    free(paths);
    free(flags);
    free(data);
    if (rc < 0) {
        free(r);
        snprintf(errmsg, len, "cannot encode the run: %s", id_strerror(rc));
        return rc;
    }
    struct mproc *mp = p->procs;
    while (mp && (mp->dead || mp->retiring || strcmp(mp->key, key) != 0))
        mp = mp->next;
    if (!mp && (rc = spawn(p, key, path, card, &mp, errmsg, len)) < 0) {
        run_free(r);
        return rc;
    }
    mp->last_used = ++p->clock;
    struct prun **pp = &mp->runs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = r;
    if (mp->loaded)
        send_run(mp, r);
    retire_idle(p);
    return 0;
}

void infer_procs_destroy(struct infer_procs *p)
{
    if (!p)
        return;
    p->closing = 1;
    for (struct mproc *mp = p->procs; mp; mp = mp->next) {
        while (mp->runs) {
            struct prun *r = mp->runs;
            mp->runs = r->next;
            run_free(r);
        }
        if (!mp->dead) {
            kill_proc(mp);
            mp->dead = 1;
            close_handles(mp);
        }
    }
    procs_maybe_free(p);
}

void infer_procs_get_stats(const struct infer_procs *p, struct infer_procs_stats *out)
{
    *out = p->stats;
}
