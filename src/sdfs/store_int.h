/* store_int.h — what store.c (the replica store) and store_batch.c (its
 * batches of whole copies) share: the store itself and its index of sealed
 * blobs. Not for use outside those two files.
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_SDFS_STORE_INT_H
#define IDUNNO_SDFS_STORE_INT_H

#include <stdint.h>
#include <uv.h>

#include "sdfs/store.h"

struct blob_entry;
struct tmp_copy;
struct workpool;

struct store {
    uv_loop_t *loop;
    char dir[512];
    int blobs_fd; /* blobs/, for fsync after renames */
    struct blob_entry *e;
    size_t n, cap;
    uint64_t bytes;
    struct tmp_copy *copies;
    uint64_t tmp_seq;
    struct workpool *batch_pool; /* store_batch.c's writers, made at the first batch */
    struct workpool *seal_pool;  /* and its seals (syncfs, renames, directory fsync) */
    int batch_syncfs;            /* 1: a batch is made durable by one syncfs */
    uint64_t batch_seq;
    uv_timer_t idle_timer;
    unsigned pending; /* queued pool work */
    int closing;
    int timer_closed;
};

/* Adds (or refreshes) a sealed blob in the index: young, sums unknown. */
int store_index_add(struct store *s, const char *blob, uint64_t size);
/* Records the checksums a blob was sealed with. */
void store_index_set_sums(struct store *s, const char *blob, const uint8_t sha[32], uint32_t crc);

#endif
