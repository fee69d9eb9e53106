/* cmd_sdfs.h — what the files of the SDFS commands share: cmd_sdfs.c (the
 * table, gateway calls, lookups, printing, delete/ls/store), cmd_sdfs_put.c
 * (put, put-dir) and cmd_sdfs_get.c (get, get-versions). Not for other
 * commands: they use cli.h. Functions here are named cli_sdfs__*.
 *
 * Threading: the client's thread.
 */
#ifndef IDUNNO_CLI_CMD_SDFS_H
#define IDUNNO_CLI_CMD_SDFS_H

#include <stddef.h>
#include <stdint.h>

#include "cli/cli.h"
#include "idunno.pb-c.h"

#define CLI_SDFS_WINDOW 8
#define CLI_SDFS_ATTEMPTS 3
#define CLI_SDFS_TIMEOUT_MS 30000
/* put-dir's batch requests: at most CLI_SDFS_BATCH_FILES files each (the
 * gateway takes up to SDFS_BATCH_MAX), CLI_SDFS_BATCH_WINDOW of them in
 * flight. Smaller batches, more of them at once, keep every stage busy (the
 * client reading, the gateway sending, the replicas writing, syncing and
 * committing) instead of each waiting for a whole 4096-file batch, while a
 * replica's syncfs still covers hundreds of copies. Measured with 20,000
 * small files on 5 nodes (docs/benchmarks.md, "Bulk put"): 1024 x 4 did
 * better than 4096 x 2, 2048 x 3, 512 x 8 and 1024 x 8. */
#define CLI_SDFS_BATCH_FILES 1024
#define CLI_SDFS_BATCH_WINDOW 4

/* The commands of cli_sdfs_commands that live in the other files. */
int cli_sdfs__cmd_put(struct cli_ctx *ctx, int argc, char **argv);
int cli_sdfs__cmd_put_dir(struct cli_ctx *ctx, int argc, char **argv);
int cli_sdfs__cmd_get(struct cli_ctx *ctx, int argc, char **argv);
int cli_sdfs__cmd_get_versions(struct cli_ctx *ctx, int argc, char **argv);

/* --timeout, else CLI_SDFS_TIMEOUT_MS. */
uint32_t cli_sdfs__timeout_of(const struct cli_ctx *ctx);
/* Whether a failed transfer is worth another attempt. */
int cli_sdfs__retryable(int code);
/* "1.5 MiB" */
void cli_sdfs__fmt_size(uint64_t b, char *buf, size_t len);
/* ISO 8601, UTC */
void cli_sdfs__fmt_time(uint64_t ms, char *buf, size_t len);
/* One call on a connection, no pipelining; 0 or ID_E* with the reason in err. */
int cli_sdfs__conn_call(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg,
                        struct cli_reply *r, char *err, size_t errlen);
/* The catalog's entry for name (version 0: all kept versions), in *out (free
 * with idunno__sdfs_file__free_unpacked); 0 or ID_E* with the reason in err. */
int cli_sdfs__lookup(const struct cli_ctx *ctx, struct cli_conn *conn, const char *name,
                     uint64_t version, Idunno__SdfsFile **out, char *err, size_t errlen);
/* What a put or get did, as a line or a JSON document. local_from: for a get,
 * the replica whose file on this host was copied ("" when the bytes came over
 * the network); NULL for a put. */
void cli_sdfs__print_version(const struct cli_ctx *ctx, const char *verb,
                             const Idunno__SdfsVersion *v, uint64_t ms, const char *local_from);

/* put-dir's grouping: how many files from the head of `queue` (indices
 * into sizes, n of them) make the next batch request: at most
 * CLI_SDFS_BATCH_FILES files and SDFS_BATCH_BYTES_MAX bytes, and at least one
 * (each file is at most SDFS_BATCH_FILE_MAX bytes). 0 when n is 0. */
size_t cli_sdfs__batch_take(const uint64_t *sizes, const size_t *queue, size_t n);

/* Progress on a terminal for transfers that take a while. */
struct progress {
    int on;
    uint64_t total, start_ms, last_ms;
    const char *what;
};

/* Redraws p's line (at most every 200 ms unless final); nothing when !p->on. */
void cli_sdfs__progress_show(struct progress *p, uint64_t done, int final);

#endif
