/* gate.c — the host-wide limit on model runs (see gate.h). */
#include "infer/gate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

struct infer_gate {
    unsigned slots;
    int fd[INFER_GATE_MAX_SLOTS];
    atomic_uint next_wait; /* which slot a waiter queues on, round robin */
};

void infer_gate_default_dir(char *out, size_t len)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (!base || !base[0] || stat(base, &st) < 0)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(out, len, "%s/idunno-infer-gate.%u", base, (unsigned)getuid());
}

int infer_gate_open(const char *dir, unsigned slots, struct infer_gate **out, char *errmsg,
                    size_t len)
{
    *out = NULL;
    if (slots == 0 || slots > INFER_GATE_MAX_SLOTS) {
        snprintf(errmsg, len, "the inference gate takes 1 to %d slots", INFER_GATE_MAX_SLOTS);
        return ID_EINVAL;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(errmsg, len, "cannot create %s: %s", dir, id_strerror(id_from_errno(errno)));
        return id_from_errno(errno);
    }
    /* Anyone who can write the directory can swap the lock files under us
     * and stall or overrun every model run on the host: only ours will do. */
    struct stat st;
    if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errmsg, len,
                 "inference gate directory %s is not a directory (a link is not accepted)", dir);
        return ID_EINVAL;
    }
    if (st.st_uid != geteuid()) {
        snprintf(errmsg, len,
                 "inference gate directory %s belongs to uid %u, not to this user (uid %u): "
                 "choose another with --infer-gate",
                 dir, (unsigned)st.st_uid, (unsigned)geteuid());
        return ID_EINVAL;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(errmsg, len,
                 "inference gate directory %s is writable by others (mode %03o): "
                 "chmod go-w it or choose another with --infer-gate",
                 dir, (unsigned)(st.st_mode & 0777));
        return ID_EINVAL;
    }
    struct infer_gate *g = calloc(1, sizeof *g);
    if (!g)
        return ID_ENOMEM;
    g->slots = slots;
    for (unsigned k = 0; k < slots; k++) {
        char path[600];
        snprintf(path, sizeof path, "%s/slot-%u", dir, k);
        g->fd[k] = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (g->fd[k] < 0) {
            int rc = id_from_errno(errno);
            snprintf(errmsg, len, "cannot open %s: %s", path, id_strerror(rc));
            g->slots = k;
            infer_gate_close(g);
            return rc;
        }
    }
    *out = g;
    return 0;
}

void infer_gate_close(struct infer_gate *g)
{
    if (!g)
        return;
    for (unsigned k = 0; k < g->slots; k++)
        close(g->fd[k]);
    free(g);
}

int infer_gate_enter(struct infer_gate *g)
{
    for (unsigned k = 0; k < g->slots; k++)
        if (flock(g->fd[k], LOCK_EX | LOCK_NB) == 0)
            return (int)k;
    /* All taken: wait on one of them. Waiters spread round robin, so a slot
     * that frees wakes one of them while the others wait on theirs. */
    unsigned k = atomic_fetch_add(&g->next_wait, 1) % g->slots;
    int rc;
    while ((rc = flock(g->fd[k], LOCK_EX)) < 0 && errno == EINTR)
        ;
    return rc == 0 ? (int)k : -1;
}

void infer_gate_exit(struct infer_gate *g, int slot)
{
    if (slot >= 0 && (unsigned)slot < g->slots)
        flock(g->fd[slot], LOCK_UN);
}
