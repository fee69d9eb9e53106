/* logq.h — distributed grep (MP1) inside the node: serves searches of this
 * node's log, and fans a client's search out to every live member. */
#ifndef IDUNNO_LOGQ_LOGQ_H
#define IDUNNO_LOGQ_LOGQ_H

#include <uv.h>

struct net;
struct member;
struct logq;

/* log_path: this node's log; member: where the live members come from (may be
 * NULL: then only this node is searched). */
int logq_create(uv_loop_t *loop, struct net *net, struct member *member, const char *node_name,
                const char *log_path, struct logq **out);
void logq_destroy(struct logq *q);

#endif
