/* meta.h — the control plane's own replicated records (sub-state machine
 * SM_ID_META): who led in which term.
 *
 * A node that wins an election first commits a raft barrier, then a
 * CTL_CMD_LEADER command naming itself (node name and HOST:PORT). Every replica
 * thus learns the coordinator's name and client address from the log itself,
 * and the history shows at most one leader per term. The last META_HISTORY
 * announcements are kept.
 */
#ifndef IDUNNO_CTL_META_H
#define IDUNNO_CTL_META_H

#include <stddef.h>
#include <stdint.h>

#include "ctl/sm.h"

#define META_HISTORY 16
#define META_NAME_MAX 64
#define META_ADDR_MAX 64

struct meta_leader {
    uint64_t term;
    uint64_t raft_id;
    uint64_t since_ms; /* the leader's wall clock when it took office */
    char name[META_NAME_MAX];
    char addr[META_ADDR_MAX];
};

struct meta;

extern const struct sm_ops meta_sm_ops;

/* An empty history (no leader announced yet); NULL if out of memory. Freed
 * with meta_destroy. */
struct meta *meta_create(void);
void meta_destroy(struct meta *m);

/* The latest announcement, or NULL if none was applied. Valid until the next
 * apply or restore. */
const struct meta_leader *meta_last_leader(const struct meta *m);

/* Announcements oldest first; returns how many (at most META_HISTORY). */
size_t meta_leaders(const struct meta *m, const struct meta_leader **out);

#endif
