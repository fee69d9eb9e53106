/* test_gate.c — the host-wide limit on model runs (infer/gate.c): slots are
 * exclusive across open gates, a freed slot is taken again, several slots
 * admit that many runs, and a process that dies holding a slot frees it. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/err.h"
#include "infer/gate.h"

static char dir[256];

/* Whether slot k is free, asked through a descriptor of our own. */
static int slot_free(unsigned k)
{
    char path[400];
    snprintf(path, sizeof path, "%s/slot-%u", dir, k);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    int ok = flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (!ok)
        assert_int_equal(errno, EWOULDBLOCK);
    close(fd); /* releases the probe's lock, if it got one */
    return ok;
}

static void test_bad_slot_counts(void **state)
{
    (void)state;
    struct infer_gate *g = (struct infer_gate *)1;
    char err[200];
    assert_int_equal(infer_gate_open(dir, 0, &g, err, sizeof err), ID_EINVAL);
    assert_null(g);
    assert_int_equal(infer_gate_open(dir, INFER_GATE_MAX_SLOTS + 1, &g, err, sizeof err),
                     ID_EINVAL);
    assert_int_equal(infer_gate_open("/proc/no/such/dir", 1, &g, err, sizeof err) < 0, 1);
    assert_non_null(strstr(err, "cannot create"));
}

static void test_one_slot_is_exclusive(void **state)
{
    (void)state;
    struct infer_gate *a, *b;
    char err[200];
    assert_int_equal(infer_gate_open(dir, 1, &a, err, sizeof err), 0);
    assert_int_equal(infer_gate_open(dir, 1, &b, err, sizeof err), 0);
    assert_true(slot_free(0));
    int s = infer_gate_enter(a);
    assert_int_equal(s, 0);
    assert_false(slot_free(0));
    infer_gate_exit(a, s);
    assert_true(slot_free(0));
    /* The other gate (another node's, on the same host) takes it now. */
    s = infer_gate_enter(b);
    assert_int_equal(s, 0);
    assert_false(slot_free(0));
    infer_gate_exit(b, s);
    infer_gate_close(a);
    infer_gate_close(b);
}

static void test_two_slots_admit_two_runs(void **state)
{
    (void)state;
    struct infer_gate *a, *b;
    char err[200];
    assert_int_equal(infer_gate_open(dir, 2, &a, err, sizeof err), 0);
    assert_int_equal(infer_gate_open(dir, 2, &b, err, sizeof err), 0);
    int sa = infer_gate_enter(a), sb = infer_gate_enter(b);
    assert_true(sa >= 0 && sb >= 0 && sa != sb);
    assert_false(slot_free(0));
    assert_false(slot_free(1));
    infer_gate_exit(a, sa);
    assert_true(slot_free((unsigned)sa));
    assert_false(slot_free((unsigned)sb));
    infer_gate_exit(b, sb);
    infer_gate_close(a);
    infer_gate_close(b);
}

static void test_a_dead_holder_frees_its_slot(void **state)
{
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct infer_gate *g;
        char err[200];
        if (infer_gate_open(dir, 1, &g, err, sizeof err) < 0 || infer_gate_enter(g) != 0)
            _exit(1);
        (void)!write(ready[1], "x", 1);
        pause(); /* holds the slot until killed */
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_false(slot_free(0));
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(slot_free(0));
    close(ready[0]);
    close(ready[1]);
}

/* A gate directory someone else could write is refused with the reason:
 * writable by group or others, a link, or (when the test can arrange it, as
 * root) owned by another user. */
static void test_unsafe_dirs_refused(void **state)
{
    (void)state;
    struct infer_gate *g;
    char err[512], sub[400], link[400];
    snprintf(sub, sizeof sub, "%s/shared", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(infer_gate_open(sub, 1, &g, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "writable by others"));
    assert_int_equal(chmod(sub, 0770), 0);
    assert_int_equal(infer_gate_open(sub, 1, &g, err, sizeof err), ID_EINVAL);
    assert_int_equal(chmod(sub, 0755), 0);
    assert_int_equal(infer_gate_open(sub, 1, &g, err, sizeof err), 0);
    infer_gate_close(g);

    snprintf(link, sizeof link, "%s/link", dir);
    assert_int_equal(symlink(sub, link), 0);
    assert_int_equal(infer_gate_open(link, 1, &g, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "not a directory"));

    if (geteuid() == 0) {
        assert_int_equal(chown(sub, 1, 1), 0);
        assert_int_equal(infer_gate_open(sub, 1, &g, err, sizeof err), ID_EINVAL);
        assert_non_null(strstr(err, "belongs to uid 1"));
        assert_int_equal(chown(sub, 0, 0), 0);
    }
    unlink(link);
    char slot[500];
    snprintf(slot, sizeof slot, "%s/slot-0", sub);
    unlink(slot);
    rmdir(sub);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/idunno-test-gate.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_slot_counts),
        cmocka_unit_test(test_one_slot_is_exclusive),
        cmocka_unit_test(test_two_slots_admit_two_runs),
        cmocka_unit_test(test_a_dead_holder_frees_its_slot),
        cmocka_unit_test(test_unsafe_dirs_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
