/* logq.h — distributed grep (MP1) inside the node: serves searches of this
 * node's log, and fans a client's search out to every live peer.
 *
 * The log query layer does not know where the peer list comes from: the node
 * sets a callback (logq_set_peers) that membership answers. Without one, only
 * this node is searched.
 *
 * Threading: loop thread only; the searches themselves run on the layer's
 * own thread pool (base/workpool.h) and reply from the loop.
 */
#ifndef IDUNNO_LOGQ_LOGQ_H
#define IDUNNO_LOGQ_LOGQ_H

#include <stddef.h>
#include <uv.h>

struct net;
struct logq;

#define LOGQ_NAME_MAX 64
#define LOGQ_ADDR_MAX 64
/* The most peers one search fans out to. */
#define LOGQ_MAX_PEERS 1024

struct logq_peer {
    char name[LOGQ_NAME_MAX];
    char addr[LOGQ_ADDR_MAX]; /* "HOST:PORT", the peer's --addr */
    /* Empty: search this peer. Otherwise it is known to be down (e.g. "failed
     * (membership)"): it is named in the result with this note, not called. */
    char down[64];
};

/* Fills out[0..max) with the peers to search (this node included, if it
 * should be searched) and the known-down ones to name, and returns how many
 * it wrote. Called on the loop. */
typedef size_t (*logq_peers_fn)(void *ud, struct logq_peer *out, size_t max);

/* Registers the MSG_GREP_REQ and MSG_GREP_LOCAL_REQ handlers on `net`.
 * `node_name` and `log_path` are copied. On success *out is owned by the
 * caller; free it with logq_destroy(). Returns 0 or ID_ENOMEM / ID_EEXIST. */
int logq_create(uv_loop_t *loop, struct net *net, const char *node_name, const char *log_path,
                struct logq **out);

/* Where fan-outs get their peers. `fn` NULL: this node only. */
void logq_set_peers(struct logq *q, logq_peers_fn fn, void *ud);

/* Stops searches still running (at their next window of the log), answers
 * them and the queued ones as canceled, and frees the layer. Call before
 * net_destroy(); `net` must outlive the call. */
void logq_destroy(struct logq *q);

#endif
