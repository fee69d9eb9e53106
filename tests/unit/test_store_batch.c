/* test_store_batch.c — the replica's batch writer (store_write_batch) on a
 * real disk (a temporary directory, real fsyncs) and a real libuv loop:
 * every good copy ends in blobs/ with its bytes and CRC-32C, known to the
 * index and to a store reopened over the directory; a copy with the wrong
 * SHA-256, an already sealed blob, a bad id or an entry refused by the
 * caller fails alone; nothing is left in tmp/; and a store destroyed in the
 * middle of a batch still calls back once, acknowledging only copies that
 * reached blobs/. Also put-dir's grouping of files into batch requests. */
#include <dirent.h>
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

#include "base/crc32c.h"
#include "base/err.h"
#include "base/sha256.h"
#include "cli/cmd_sdfs.h"
#include "sdfs/store.h"

struct env {
    uv_loop_t loop;
    char dir[256];
    struct store *s;
};

struct batch {
    struct store_batch_file *files;
    uint8_t **data;
    size_t n;
    int calls; /* callbacks seen */
};

static void on_batch(void *ud, struct store_batch_file *files, size_t n)
{
    struct batch *b = ud;
    assert_ptr_equal(files, b->files);
    assert_int_equal(n, b->n);
    b->calls++;
}

static void sha_of(const uint8_t *data, size_t n, uint8_t out[32])
{
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, data, n);
    sha256_final(&h, out);
}

/* n copies of pseudo-random sizes (0 up to ~6 KB) and bytes, ids from `base`. */
static void batch_make(struct batch *b, size_t n, unsigned base)
{
    b->n = n;
    b->calls = 0;
    b->files = calloc(n, sizeof *b->files);
    b->data = calloc(n, sizeof *b->data);
    assert_non_null(b->files);
    assert_non_null(b->data);
    uint32_t x = 2463534242u + base;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        size_t len = i == 0 ? 0 : x % 6000;
        b->data[i] = malloc(len ? len : 1);
        for (size_t k = 0; k < len; k++)
            b->data[i][k] = (uint8_t)(x >> (k % 24)) ^ (uint8_t)k;
        snprintf(b->files[i].blob, sizeof b->files[i].blob, "%016x", base + (unsigned)i);
        b->files[i].data = b->data[i];
        b->files[i].len = len;
        sha_of(b->data[i], len, b->files[i].sha);
    }
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->data[i]);
    free(b->data);
    free(b->files);
}

static void run_batch(struct env *e, struct batch *b)
{
    assert_int_equal(store_write_batch(e->s, b->files, b->n, on_batch, b), 0);
    while (b->calls == 0)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(b->calls, 1);
}

/* The file's bytes in blobs/ are the copy's. */
static void assert_sealed_on_disk(const struct env *e, const struct store_batch_file *f)
{
    char path[400];
    snprintf(path, sizeof path, "%s/blobs/%s", e->dir, f->blob);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t *buf = malloc(f->len + 1);
    size_t got = fread(buf, 1, f->len + 1, fp);
    fclose(fp);
    assert_int_equal(got, f->len);
    assert_memory_equal(buf, f->data, f->len);
    free(buf);
}

static size_t entries_in(const struct env *e, const char *sub)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", e->dir, sub);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void env_open(struct env *e)
{
    char err[200];
    assert_int_equal(store_create(&e->loop, e->dir, &e->s, err, sizeof err), 0);
}

static void env_close(struct env *e)
{
    store_destroy(e->s);
    e->s = NULL;
    uv_run(&e->loop, UV_RUN_DEFAULT);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    snprintf(e->dir, sizeof e->dir, "/tmp/idunno-store-batch-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    env_open(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->s)
        env_close(e);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static void test_good_batch_is_sealed_and_indexed(void **state)
{
    struct env *e = *state;
    struct batch b;
    batch_make(&b, 300, 0x1000);
    run_batch(e, &b);
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.files[i].status, 0);
        assert_int_equal(b.files[i].crc32c, crc32c_update(0, b.data[i], b.files[i].len));
        uint64_t size = 0;
        assert_true(store_has(e->s, b.files[i].blob, &size));
        assert_int_equal(size, b.files[i].len);
        assert_sealed_on_disk(e, &b.files[i]);
    }
    assert_int_equal(store_count(e->s), b.n);
    assert_int_equal(entries_in(e, "tmp"), 0);
    /* Durable names: a store reopened over the directory finds every copy. */
    env_close(e);
    env_open(e);
    assert_int_equal(store_count(e->s), b.n);
    for (size_t i = 0; i < b.n; i++)
        assert_true(store_has(e->s, b.files[i].blob, NULL));
    batch_free(&b);
}

static void test_bad_entries_fail_alone(void **state)
{
    struct env *e = *state;
    struct batch first;
    batch_make(&first, 3, 0x2000);
    run_batch(e, &first);
    struct batch b;
    batch_make(&b, 40, 0x3000);
    b.files[5].sha[0] ^= 1; /* not the bytes sent */
    snprintf(b.files[6].blob, sizeof b.files[6].blob, "%s", first.files[1].blob); /* sealed */
    snprintf(b.files[7].blob, sizeof b.files[7].blob, "../escape");
    b.files[8].status = ID_EINVAL; /* refused by the caller: left alone */
    run_batch(e, &b);
    assert_int_equal(b.files[5].status, ID_ECRC);
    assert_int_equal(b.files[6].status, ID_EEXIST);
    assert_int_equal(b.files[7].status, ID_EINVAL);
    assert_int_equal(b.files[8].status, ID_EINVAL);
    assert_false(store_has(e->s, b.files[5].blob, NULL));
    assert_false(store_has(e->s, b.files[8].blob, NULL));
    assert_sealed_on_disk(e, &first.files[1]); /* the sealed copy is untouched */
    size_t good = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (i >= 5 && i <= 8)
            continue;
        assert_int_equal(b.files[i].status, 0);
        assert_sealed_on_disk(e, &b.files[i]);
        good++;
    }
    assert_int_equal(store_count(e->s), first.n + good);
    assert_int_equal(entries_in(e, "tmp"), 0);
    assert_int_equal(store_write_batch(e->s, b.files, 0, on_batch, &b), ID_EINVAL);
    batch_free(&first);
    batch_free(&b);
}

/* A store destroyed with a batch in flight calls back once, from inside
 * store_destroy at the latest; a copy reported durable is in blobs/. */
static void test_destroy_during_batch(void **state)
{
    struct env *e = *state;
    struct batch b;
    batch_make(&b, 2000, 0x4000);
    assert_int_equal(store_write_batch(e->s, b.files, b.n, on_batch, &b), 0);
    store_destroy(e->s);
    e->s = NULL;
    assert_int_equal(b.calls, 1);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(b.calls, 1);
    for (size_t i = 0; i < b.n; i++) {
        assert_true(b.files[i].status == 0 || b.files[i].status == ID_ESHUTDOWN);
        if (b.files[i].status == 0)
            assert_sealed_on_disk(e, &b.files[i]);
    }
    batch_free(&b);
}

static void test_grouping(void **state)
{
    (void)state;
    enum { N = 10000 };
    uint64_t *sizes = calloc(N, sizeof *sizes);
    size_t *queue = calloc(N, sizeof *queue);
    assert_non_null(sizes);
    assert_non_null(queue);
    for (size_t i = 0; i < N; i++) {
        sizes[i] = 1000;
        queue[i] = i;
    }
    assert_int_equal(cli_sdfs__batch_take(sizes, queue, 0), 0);
    assert_int_equal(cli_sdfs__batch_take(sizes, queue, 3), 3);
    /* Small files: the count is the limit. */
    assert_int_equal(cli_sdfs__batch_take(sizes, queue, N), CLI_SDFS_BATCH_FILES);
    /* Files of the largest batchable size: the bytes are. */
    for (size_t i = 0; i < N; i++)
        sizes[i] = SDFS_BATCH_FILE_MAX;
    assert_int_equal(cli_sdfs__batch_take(sizes, queue, N),
                     SDFS_BATCH_BYTES_MAX / SDFS_BATCH_FILE_MAX);
    /* Every batch stays within both limits, and the batches cover the queue in order. */
    uint32_t x = 88172645u;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        sizes[i] = x % (SDFS_BATCH_FILE_MAX + 1) / (i % 3 ? 64 : 1);
        queue[i] = N - 1 - i;
    }
    size_t at = 0;
    while (at < N) {
        size_t k = cli_sdfs__batch_take(sizes, queue + at, N - at);
        assert_true(k >= 1 && k <= CLI_SDFS_BATCH_FILES);
        uint64_t bytes = 0;
        for (size_t j = 0; j < k; j++)
            bytes += sizes[queue[at + j]];
        assert_true(bytes <= SDFS_BATCH_BYTES_MAX);
        if (at + k < N) /* it stopped only because the next file would not fit */
            assert_true(k == CLI_SDFS_BATCH_FILES ||
                        bytes + sizes[queue[at + k]] > SDFS_BATCH_BYTES_MAX);
        at += k;
    }
    assert_int_equal(at, N);
    free(sizes);
    free(queue);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_batch_is_sealed_and_indexed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_entries_fail_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_during_batch, setup, teardown),
        cmocka_unit_test(test_grouping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
