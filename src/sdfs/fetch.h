/* fetch.h — a blob made available in this node's store, verified. A copy
 * held here is checked against its checksum first (store_verify: every read
 * of it checks); a missing or bad one (moved to bad/) is copied again from
 * other replicas, chunk by chunk, switching source when one fails or sends
 * bytes that do not match, and sealed only if its SHA-256 matches. For a
 * repair or a bad-copy claim (BLOB_FETCH from the leader) or for this node's
 * own use (a worker's model or images, sdfs_fetch_local). Concurrent fetches
 * of one blob share one transfer: later askers wait on the first.
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_SDFS_FETCH_H
#define IDUNNO_SDFS_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct fetcher;
struct net;
struct net_request;
struct store;

typedef void (*fetch_done_fn)(void *ud, int status);

struct fetcher *fetcher_create(struct net *net, struct store *store);
/* The store is closing: fetches in flight end as their calls fail. */
void fetcher_stop(struct fetcher *fe);
/* After net_destroy (whose failed calls still reach the fetches). */
void fetcher_destroy(struct fetcher *fe);

/* Makes blob (size bytes, SHA-256 sha) available and verified here, copying
 * it from `sources` (HOST:PORT) if needed. The outcome goes to `req` (a
 * BLOB_FETCH, answered) or to cb(ud, 0 or ID_E*), never before this returns.
 * `repair` logs at info level. Returns 0 or ID_E* (then nothing is kept). */
int fetcher_get(struct fetcher *fe, const char *blob, uint64_t size, const uint8_t sha[32],
                char *const *sources, size_t n_sources, int repair, struct net_request *req,
                fetch_done_fn cb, void *ud);

#endif
