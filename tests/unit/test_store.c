/* test_store.c — one replica's store on a real disk (a temporary directory)
 * and a real libuv loop: a verification passes for a good copy and keeps it,
 * fails for a corrupt or missing one (a corrupt one moves to bad/), never
 * moves a copy on an unchecked claim, and a sealed blob is never replaced by
 * a write, a seal or a file put in its place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/err.h"
#include "base/sha256.h"
#include "sdfs/store.h"

#define A "00000000000000a1"
#define B "00000000000000b1"

struct env {
    uv_loop_t loop;
    char dir[256];
    struct store *s;
};

static int status_of_cb = 1;

static void on_done(void *ud, int status)
{
    (void)ud;
    status_of_cb = status;
}

static void on_sealed(void *ud, int status, uint32_t crc)
{
    (void)ud;
    (void)crc;
    status_of_cb = status;
}

static void sha_of(const char *data, size_t n, uint8_t out[32])
{
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, data, n);
    sha256_final(&h, out);
}

static void env_open(struct env *e)
{
    char err[200];
    assert_int_equal(store_create(&e->loop, e->dir, &e->s, err, sizeof err), 0);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    snprintf(e->dir, sizeof e->dir, "/tmp/idunno-store-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    env_open(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    store_destroy(e->s);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

/* Runs the loop until the queued disk work is done; returns the callback's status. */
static int settle(struct env *e)
{
    uv_run(&e->loop, UV_RUN_DEFAULT);
    return status_of_cb;
}

static void put(struct env *e, const char *blob, const char *data)
{
    uint8_t sha[32];
    sha_of(data, strlen(data), sha);
    assert_int_equal(store_write(e->s, blob, 0, (const uint8_t *)data, strlen(data), on_done, NULL),
                     0);
    assert_int_equal(settle(e), 0);
    assert_int_equal(store_seal(e->s, blob, strlen(data), sha, on_sealed, NULL), 0);
    assert_int_equal(settle(e), 0);
}

static void path_of(const struct env *e, const char *sub, const char *blob, char *out, size_t len)
{
    snprintf(out, len, "%s/%s/%s", e->dir, sub, blob);
}

static void file_text(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(out, 1, len - 1, f);
    out[n] = 0;
    fclose(f);
}

static void overwrite_at(const char *path, long at, const char *bytes)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, at, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, strlen(bytes), f), strlen(bytes));
    fclose(f);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int verify(struct env *e, const char *blob, const char *as, int quarantine)
{
    uint8_t sha[32];
    sha_of(as, strlen(as), sha);
    status_of_cb = 1;
    int rc = store_verify(e->s, blob, strlen(as), sha, quarantine, on_done, NULL);
    return rc < 0 ? rc : settle(e);
}

static const char *const GOOD = "the bytes that were put, sealed and recorded";

/* A claim about a good copy: the verification passes and the copy stays. A
 * claim about a corrupted one: it fails, and the copy moves to bad/. */
static void test_verify_good_and_corrupt(void **state)
{
    struct env *e = *state;
    put(e, A, GOOD);
    char blob_path[512], bad_path[512], text[256];
    path_of(e, "blobs", A, blob_path, sizeof blob_path);
    path_of(e, "bad", A, bad_path, sizeof bad_path);
    assert_int_equal(verify(e, A, GOOD, 1), 0);
    assert_true(store_has(e->s, A, NULL));
    assert_true(exists(blob_path));
    overwrite_at(blob_path, 4, "XXXXX");
    assert_int_equal(verify(e, A, GOOD, 1), ID_ECRC);
    assert_false(store_has(e->s, A, NULL));
    assert_false(exists(blob_path));
    file_text(bad_path, text, sizeof text);
    assert_string_equal(text, "the XXXXX that were put, sealed and recorded");
    /* Gone from the index: a verification now says so. */
    assert_int_equal(verify(e, A, GOOD, 1), ID_ENOTFOUND);
}

/* Checked against other bytes than those sealed (an unchecked claim, such as
 * a forged seal's): it fails, and without `quarantine` nothing moves. */
static void test_verify_wrong_claim_moves_nothing(void **state)
{
    struct env *e = *state;
    put(e, A, GOOD);
    char blob_path[512], text[256];
    path_of(e, "blobs", A, blob_path, sizeof blob_path);
    assert_int_equal(verify(e, A, "some other bytes of another size", 0), ID_ECRC);
    assert_int_equal(verify(e, A, "THE bytes that were put, sealed and recorded", 0), ID_ECRC);
    assert_true(store_has(e->s, A, NULL));
    file_text(blob_path, text, sizeof text);
    assert_string_equal(text, GOOD);
    /* After a restart nothing is recorded: the SHA-256 decides, then is kept. */
    store_destroy(e->s);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    env_open(e);
    assert_int_equal(verify(e, A, "THE bytes that were put, sealed and recorded", 0), ID_ECRC);
    assert_int_equal(verify(e, A, GOOD, 0), 0);
    overwrite_at(blob_path, 0, "T");
    assert_int_equal(verify(e, A, GOOD, 0), ID_ECRC); /* by the recorded CRC */
    assert_true(store_has(e->s, A, NULL));
}

/* A copy deleted behind the store's back is reported missing, not read. */
static void test_verify_missing_file(void **state)
{
    struct env *e = *state;
    put(e, A, GOOD);
    char blob_path[512];
    path_of(e, "blobs", A, blob_path, sizeof blob_path);
    assert_int_equal(unlink(blob_path), 0);
    assert_int_equal(verify(e, A, GOOD, 1), ID_ENOTFOUND);
    assert_false(store_has(e->s, A, NULL));
}

/* A sealed blob is immutable: no write, no seal, and no rename over a file
 * found in its place. */
static void test_sealed_blob_is_immutable(void **state)
{
    struct env *e = *state;
    put(e, A, GOOD);
    const char *other = "other bytes";
    uint8_t sha[32];
    sha_of(other, strlen(other), sha);
    assert_int_equal(store_write(e->s, A, 0, (const uint8_t *)other, strlen(other), on_done, NULL),
                     ID_EEXIST);
    assert_int_equal(store_seal(e->s, A, strlen(other), sha, on_sealed, NULL), ID_EEXIST);
    char blob_path[512], text[256];
    path_of(e, "blobs", A, blob_path, sizeof blob_path);
    file_text(blob_path, text, sizeof text);
    assert_string_equal(text, GOOD);
    /* B is being written when a file appears in its place: the seal refuses
     * to rename over it. */
    assert_int_equal(store_write(e->s, B, 0, (const uint8_t *)other, strlen(other), on_done, NULL),
                     0);
    assert_int_equal(settle(e), 0);
    path_of(e, "blobs", B, blob_path, sizeof blob_path);
    FILE *f = fopen(blob_path, "wb");
    assert_non_null(f);
    fputs("already here", f);
    fclose(f);
    assert_int_equal(store_seal(e->s, B, strlen(other), sha, on_sealed, NULL), 0);
    assert_int_equal(settle(e), ID_EEXIST);
    file_text(blob_path, text, sizeof text);
    assert_string_equal(text, "already here");
    assert_false(store_has(e->s, B, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_good_and_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_wrong_claim_moves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_blob_is_immutable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
