/* catalog.h — SDFS metadata: which files exist, their kept versions, and which
 * nodes hold each version's bytes. A sub-state machine of the control plane
 * (ctl/sm.h), so every coordinator replica has the same catalog, plus the pure
 * decisions the coordinator takes from it: where a new version goes and how a
 * version that lost replicas gets them back.
 *
 * The bytes of a version are a *blob*, named by a random 64-bit id (16 hex
 * digits) that the put's gateway draws. Replicas store blobs; the catalog maps
 * name + version to a blob, its size, its SHA-256 and its replica set (node
 * names, which survive restarts: a restarted node still has its disk).
 *
 * Commands (proto/idunno.proto, CTL_CMD_SDFS_*):
 *   COMMIT   a version whose replicas are durable becomes the name's latest.
 *            Idempotent by blob id: a retried commit answers the version it
 *            already got. Only the last SDFS_KEEP_VERSIONS are kept; the result
 *            lists the blobs of versions that fell out (to delete).
 *   DELETE   removes the name and every version.
 *   REPLICA  swaps one replica of a version (repair, or a bad copy dropped).
 *            A version never loses its last replica this way.
 *   COMMIT_BATCH  many COMMITs as one entry (bulk writes), applied in request
 *            order, all or none: every version is checked and every allocation
 *            made before the first is applied. A name may appear twice (two
 *            new versions, in order).
 *
 * Threading: none (the ctl glue serialises calls on the loop thread).
 */
#ifndef IDUNNO_SDFS_CATALOG_H
#define IDUNNO_SDFS_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "ctl/sm.h"
#include "idunno.pb-c.h"

#define SDFS_REPLICAS 4
#define SDFS_KEEP_VERSIONS 5
#define SDFS_NAME_MAX 255
#define SDFS_NODE_MAX 64
#define SDFS_BLOB_LEN 16
#define SDFS_MAX_FILES 1000000
#define SDFS_BATCH_MAX 4096 /* versions in one COMMIT_BATCH, files in one bulk-put request */
/* A bulk put (put-dir, docs/sdfs.md "Batched writes") sends files of at most
 * SDFS_BATCH_FILE_MAX bytes whole, up to SDFS_BATCH_MAX of them and
 * SDFS_BATCH_BYTES_MAX bytes of data per request (which keeps a request and
 * each replica's share of it under the 16 MiB frame limit); larger files
 * take the streaming single put. */
#define SDFS_BATCH_FILE_MAX (1u << 20)
#define SDFS_BATCH_BYTES_MAX (8u << 20)

struct catalog;

/* CRC-32C values travel as 4 big-endian bytes (an empty field: none). */
static inline void sdfs_crc_encode(uint8_t b[4], uint32_t crc)
{
    b[0] = (uint8_t)(crc >> 24);
    b[1] = (uint8_t)(crc >> 16);
    b[2] = (uint8_t)(crc >> 8);
    b[3] = (uint8_t)crc;
}
static inline uint32_t sdfs_crc_decode(const uint8_t b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

struct sdfs_version {
    uint64_t version;
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t size;
    uint8_t sha256[32];
    int has_crc32c;       /* versions written before CRCs were recorded have none */
    uint8_t crc32c_be[4]; /* CRC-32C of the whole file, big-endian as on the wire */
    uint64_t time_ms;
    size_t n_replicas;
    char replicas[SDFS_REPLICAS][SDFS_NODE_MAX];
};

struct sdfs_file {
    char *name;
    uint64_t last_version;
    size_t n_versions; /* oldest first */
    struct sdfs_version versions[SDFS_KEEP_VERSIONS];
};

extern const struct sm_ops catalog_sm_ops;

/* Fills a message that points into v (valid while v is); ptrs receives the
 * replica name pointers (SDFS_REPLICAS of them). */
void catalog_version_to_pb(const char *name, const struct sdfs_version *v, Idunno__SdfsVersion *m,
                           char **ptrs);

struct catalog *catalog_create(void);
void catalog_destroy(struct catalog *c);

/* True if name is a valid SDFS name: 1..SDFS_NAME_MAX bytes of printable ASCII
 * without spaces or backslashes, no leading '/', and no "." or ".." path
 * component (names may look like paths, "flowers/rose1.jpg", but never
 * escape anything). */
int sdfs_name_ok(const char *name);
/* True if s is a blob id (16 lowercase hex digits). */
int sdfs_blob_ok(const char *s);

/* Lookups; pointers stay valid until the next apply or restore. */
const struct sdfs_file *catalog_find(const struct catalog *c, const char *name);
size_t catalog_count(const struct catalog *c);
/* The i-th file in name order (i < catalog_count). */
const struct sdfs_file *catalog_at(const struct catalog *c, size_t i);
/* Index of the first file whose name is >= prefix (for prefix listings). */
size_t catalog_lower_bound(const struct catalog *c, const char *prefix);
/* Finds the version of `name` stored as `blob`. */
const struct sdfs_version *catalog_find_blob(const struct catalog *c, const char *name,
                                             const char *blob);
/* Replica copies held by a node (versions listing it), and in total. */
uint64_t catalog_node_load(const struct catalog *c, const char *node);

/* ---- decisions (pure; the coordinator acts on them) ----------------------------- */

/* A node as the coordinator sees it: alive, or suspected (it may still refute
 * the suspicion, so it keeps counting as holding its copies, but it is
 * chosen for nothing). Members declared failed or gone are not listed. */
struct sdfs_node {
    const char *name;
    int suspect;
};

/* Chooses up to `want` distinct nodes for a new version of `name` among `alive`
 * minus `avoid`: the least loaded first (replica copies held), ties broken by a
 * hash of file and node name so that equal nodes share files evenly. Writes
 * indices into alive to out; returns how many were chosen. */
size_t catalog_place(const struct catalog *c, const char *name, const struct sdfs_node *alive,
                     size_t n_alive, const char *const *avoid, size_t n_avoid, size_t want,
                     size_t *out);
/* catalog_place for one file of a batch: extra[i] (n_alive entries) counts the
 * copies already given to alive[i] by earlier files of the batch, which the
 * catalog does not hold yet; the chosen nodes' counts are incremented. */
size_t catalog_place_more(const struct catalog *c, const char *name, const struct sdfs_node *alive,
                          size_t n_alive, const char *const *avoid, size_t n_avoid, size_t want,
                          uint64_t *extra, size_t *out);

/* One repair: version `blob` of `name` should move a copy from `dead` (not
 * alive; "" when the set is just short) to `target`, copying from one of the
 * listed sources (live replicas). */
struct sdfs_repair {
    const struct sdfs_file *file;
    const struct sdfs_version *version;
    char dead[SDFS_NODE_MAX];
    char target[SDFS_NODE_MAX];
};

/* Plans repairs for versions with fewer than min(SDFS_REPLICAS, n_alive)
 * replicas on listed nodes, at most `max`, skipping blobs for which skip(ud,
 * blob) is true (repairs already under way). A suspected node still counts as
 * holding its copies: repair acts on failures, never on a suspicion. Each
 * planned target is a listed, unsuspected node that does not hold the
 * version, least loaded first (counting earlier plans). Returns how many were
 * written to out. */
size_t catalog_plan_repairs(const struct catalog *c, const struct sdfs_node *alive, size_t n_alive,
                            int (*skip)(void *ud, const char *blob), void *ud,
                            struct sdfs_repair *out, size_t max);

#endif
