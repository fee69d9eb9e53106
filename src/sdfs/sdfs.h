/* sdfs.h — SDFS on a node: the replica, the gateway and the coordinator's part.
 *
 * Every node plays three parts (docs/sdfs.md has the flows):
 *   - replica: serves BLOB_* requests on its store (store.h): write a copy
 *     chunk by chunk, seal it, read it, delete it, fetch it from other
 *     replicas (repair);
 *   - gateway: serves the client's PUT_* and GET requests. A put asks the
 *     coordinator for 4 replicas, streams the client's chunks to all of them
 *     (each chunk is answered once every replica has it), seals the copies and
 *     asks the coordinator to commit the version. A get reads from the local
 *     store when it holds the blob, else from the listed replicas in order;
 *   - coordinator (on the serving leader only): PLACE, COMMIT, LOOKUP, DELETE,
 *     LIST, REPORT and BAD requests, forwarded to it from any node; every
 *     250 ms it plans repairs of versions that lost replicas and has live
 *     nodes fetch copies, then commits the new replica sets.
 * Every node also reports the blobs it holds to the coordinator (at start and
 * every SDFS_REPORT_MS); the leader's reconciliation core (reconcile.h)
 * answers which copies it may delete and which lacking copies are dropped
 * from their replica sets (and so repaired).
 *
 * Code: sdfs.c (replica, gets, life cycle), sdfs_put.c (puts), sdfs_lead.c
 * (the coordinator's part, as ops of ctl/service.h), sdfs_int.h (shared).
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_SDFS_SDFS_H
#define IDUNNO_SDFS_SDFS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ctl/service.h"

struct catalog;
struct ctl;
struct ctl_fwd;
struct member;
struct net;
struct sdfs;
struct store;

#define SDFS_CHUNK (1u << 20)
#define SDFS_REPORT_MS 10000
#define SDFS_REPAIR_TICK_MS 250
#define SDFS_MAX_REPAIRS 16
/* A blob sealed this recently is not deleted by a store report: its commit may
 * be on its way (a bulk put's commit follows the seal of its last copy, a
 * batch call of up to 30 s later). sdfs_config.young_ms overrides it. */
#define SDFS_YOUNG_MS 30000

struct sdfs_config {
    struct ctl_svc_env env;
    struct catalog *catalog;  /* registered with ctl by the caller */
    const char *data_dir;     /* the store goes in DATA/sdfs */
    uint64_t delete_grace_ms; /* unnamed copies live this long; 0: RECONCILE_DELETE_GRACE_MS */
    uint64_t young_ms;        /* copies sealed this recently are kept; 0: SDFS_YOUNG_MS */
};

int sdfs_create(const struct sdfs_config *cfg, struct sdfs **out, char *errmsg, size_t len);
/* Fails pending work, closes timers and the store. Call before net_destroy;
 * a second call does nothing. */
void sdfs_stop(struct sdfs *s);
/* After net_destroy (whose failed calls still reach s): stops s if that was
 * not done, and frees what is left, at once or when its tick's close callback
 * runs. */
void sdfs_destroy(struct sdfs *s);

struct store *sdfs_store(struct sdfs *s);

typedef void (*sdfs_done_fn)(void *ud, int status);

/* Makes a blob available in the local store (store_path() then names its
 * file), verified: a copy held here is checked against its checksum (fetch.h)
 * and, if it is missing or bad, copied again from `sources` (HOST:PORT of
 * replicas), as is a blob not here; a copy is sealed only if it matches size
 * and sha. cb runs with 0 or ID_E*, never before this returns. Copies this node is not a
 * replica of are deleted by the first store report after they have gone
 * SDFS_YOUNG_MS without being fetched again: this is a cache for the inference
 * worker, not a placement. Returns 0 or ID_E* (then
 * cb never runs). */
int sdfs_fetch_local(struct sdfs *s, const char *blob, uint64_t size, const uint8_t sha[32],
                     char *const *sources, size_t n_sources, sdfs_done_fn cb, void *ud);

/* Stores `len` bytes (copied; at most a few MiB: one chunk per replica) as a
 * new version of SDFS `name`, placed, sealed and committed like a client's
 * put. cb runs with 0 or ID_E*. Returns 0 or ID_E* (then cb never runs). */
int sdfs_put_bytes(struct sdfs *s, const char *name, const uint8_t *data, size_t len,
                   sdfs_done_fn cb, void *ud);

struct sdfs_stats {
    uint64_t files_held, bytes_held; /* sealed blobs in the local store */
    uint64_t puts, gets, repairs_done, repairs_failed;
    uint64_t bad_copies_reported;
};
void sdfs_get_stats(struct sdfs *s, struct sdfs_stats *out);

#endif
