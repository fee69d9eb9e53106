/* store.h — one node's replica store: the blobs (version bytes) it holds, on
 * its own disk under DATA/sdfs.
 *
 *   DATA/sdfs/tmp/BLOB    a copy being written (never read by anyone)
 *   DATA/sdfs/blobs/BLOB  a sealed copy: complete, checksum verified, fsynced
 *   DATA/sdfs/bad/BLOB    a copy that failed a verification (kept for inspection)
 *
 * A copy is written in order, chunk by chunk, to tmp/; sealing checks its size
 * and SHA-256, fsyncs it, renames it into blobs/ and fsyncs the directory, so a
 * blob in blobs/ is whole and durable whatever crashes. A sealed blob is
 * immutable: no write or seal replaces it (ID_EEXIST); only a delete or a
 * failed verification removes it. Temporary copies left
 * by a crash are removed at start; ones abandoned by a failed put are removed
 * when idle for STORE_TMP_IDLE_MS.
 *
 * Every disk access runs on libuv's thread pool; callbacks run on the loop.
 * The writes of one copy run one at a time, in the order they were asked
 * for. Memory: each queued write holds its chunk, and the callers bound how
 * many chunks they send before an answer.
 *
 * Threading: loop thread only (the pool runs the I/O).
 */
#ifndef IDUNNO_SDFS_STORE_H
#define IDUNNO_SDFS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sdfs/catalog.h"

#define STORE_TMP_IDLE_MS 60000
#define STORE_MAX_READ (4u << 20)

struct store;

/* Creates the store over `dir` (made if missing), removes leftover temporaries
 * and indexes the sealed blobs. Returns 0 or ID_E* (the reason in errmsg). */
int store_create(uv_loop_t *loop, const char *dir, struct store **out, char *errmsg, size_t len);
/* Stops and frees the store once its queued disk work has finished. */
void store_destroy(struct store *s);

typedef void (*store_cb)(void *ud, int status);
/* crc32c: CRC-32C of the sealed copy (valid when status is 0). */
typedef void (*store_seal_cb)(void *ud, int status, uint32_t crc32c);
typedef void (*store_read_cb)(void *ud, int status, const uint8_t *data, size_t len);

/* Appends len bytes (copied) at `offset` of the temporary copy of blob. offset
 * 0 starts a new copy (dropping an older unfinished one); any other offset must
 * be where the copy ends, after earlier writes (ID_EINVAL otherwise). A blob
 * already sealed here gives ID_EEXIST. cb runs with 0, ID_ENOSPC (disk full),
 * ID_EIO or ID_EINVAL. */
int store_write(struct store *s, const char *blob, uint64_t offset, const uint8_t *data, size_t len,
                store_cb cb, void *ud);
/* store_write of a malloc'd buffer the store takes (and frees, also when it
 * refuses): for a replica that has just opened a sealed chunk into it. */
int store_write_take(struct store *s, const char *blob, uint64_t offset, uint8_t *data, size_t len,
                     store_cb cb, void *ud);

/* Seals the temporary copy: its size must be `size` and its SHA-256 `sha`
 * (ID_ECRC otherwise, and the copy is dropped). cb runs once it is durable in
 * blobs/, with the copy's CRC-32C (computed as it was written). Sealing a blob
 * already sealed gives ID_EEXIST at once (no callback); a sealed file found on
 * disk at the rename is not replaced either (cb gets ID_EEXIST). */
int store_seal(struct store *s, const char *blob, uint64_t size, const uint8_t sha[32],
               store_seal_cb cb, void *ud);

/* One copy of a batch (store_write_batch). The caller fills blob, data, len
 * and sha; the store sets status and crc32c. */
struct store_batch_file {
    char blob[SDFS_BLOB_LEN + 1];
    const uint8_t *data; /* the whole copy; the caller's, valid until the callback */
    size_t len;
    uint8_t sha[32]; /* of data, as the writer computed it */
    int status;      /* 0: durable in blobs/; else ID_E* */
    uint32_t crc32c; /* of the copy, when status is 0 */
};
typedef void (*store_batch_cb)(void *ud, struct store_batch_file *files, size_t n);

/* Writes n whole copies (a bulk put's share of this replica) and seals them
 * together: each is written to tmp/ by one of STORE_BATCH_THREADS threads
 * and checked (its SHA-256 must be `sha`: ID_ECRC otherwise), the data of
 * all is made durable by ONE syncfs (an error fails every copy; see
 * store_batch.c for why this is as durable as an fsync per copy), the good
 * ones are renamed into blobs/ (never over a sealed copy: ID_EEXIST) and the
 * directory is fsynced ONCE; then cb runs
 * with every file's status. A copy whose status is 0 is as durable as one
 * sealed by store_seal. Entries whose status is already set (< 0) are
 * skipped and keep it. files must stay valid until cb, which runs exactly
 * once unless an error is returned (ID_ESHUTDOWN, ID_EINVAL: n is 0 or
 * over SDFS_BATCH_MAX, ID_ENOMEM); a store destroyed meanwhile gives the
 * unfinished copies ID_ESHUTDOWN, from inside store_destroy. */
/* The writes are page-cache copies and checksums (the durability is one
 * syncfs), so a few threads suffice; more only contend for the tmp/
 * directory's lock while creating files (perf: 16 threads per replica spent
 * a third of the machine's CPU spinning on it). */
#define STORE_BATCH_THREADS 4
int store_write_batch(struct store *s, struct store_batch_file *files, size_t n, store_batch_cb cb,
                      void *ud);

/* Drops the temporary copy of blob, if any. */
void store_abort(struct store *s, const char *blob);

/* Reads up to len bytes (<= STORE_MAX_READ) at offset of a sealed blob. data is
 * valid during the callback. ID_ENOTFOUND if this store does not hold it. */
int store_read(struct store *s, const char *blob, uint64_t offset, size_t len, store_read_cb cb,
               void *ud);

/* Checks a sealed copy on the pool: its size must be `size` and its bytes
 * those sealed (their CRC-32C, recorded at seal or by an earlier
 * verification; the recorded SHA-256 must then be `sha`), or, when none is
 * recorded, their SHA-256 must be `sha`. cb runs with 0, ID_ENOTFOUND (the
 * file is gone: dropped from the index), ID_ECRC (a bad copy: moved to bad/
 * and dropped from the index if `quarantine`, else left alone) or ID_E*.
 * Returns 0 or ID_ENOTFOUND / ID_E* (then cb never runs). */
int store_verify(struct store *s, const char *blob, uint64_t size, const uint8_t sha[32],
                 int quarantine, store_cb cb, void *ud);

/* Removes a sealed blob (and any temporary copy); the unlink runs on the pool. */
void store_delete(struct store *s, const char *blob);

/* Sealed blobs: whether one is held (and its size), how many, their total
 * size, and their ids (up to max; returns the count). */
int store_has(const struct store *s, const char *blob, uint64_t *size);
size_t store_count(const struct store *s);
uint64_t store_bytes(const struct store *s);
size_t store_list(const struct store *s, char (*out)[SDFS_BLOB_LEN + 1], size_t max);
/* Milliseconds since blob was sealed here (or found at start, or last
 * touched); UINT64_MAX if not held. The coordinator does not delete very young
 * blobs: their commit may still be on its way, or (touched) a worker is using
 * its cached copy. */
uint64_t store_age_ms(const struct store *s, const char *blob);
/* Makes a held blob young again (no-op if not held). */
void store_touch(struct store *s, const char *blob);

/* The path of a sealed blob (for readers on other threads, such as the
 * inference worker); returns 0 or ID_ENOTFOUND. */
int store_path(const struct store *s, const char *blob, char *out, size_t len);

#endif
