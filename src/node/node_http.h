/* node_http.h — the node's HTTP endpoint (src/http) on HOST:PORT+2: the
 * providers of what the node itself knows (the node, membership, the control
 * plane, and a placeholder "jobs" section the jobs layer replaces) and the
 * readiness check behind /readyz. docs/http.md lists every metric and the
 * status document. */
#ifndef IDUNNO_NODE_NODE_HTTP_H
#define IDUNNO_NODE_NODE_HTTP_H

#include <stddef.h>

struct node;
struct node_config;

/* The address the endpoint listens on: --http-addr's HOST (or --addr's)
 * with --addr's PORT+2, as HOST:PORT ([HOST]:PORT for IPv6). Returns 0, or
 * ID_EINVAL with the reason in errmsg (not an IP address, no port left). */
int node_http_addr(const struct node_config *cfg, char *out, size_t len, char *errmsg,
                   size_t errlen);

/* Starts the endpoint (unless --no-http) with the node's providers. Returns 0
 * or ID_E* with node->errmsg set (the port is taken, ...). */
int node_http_start(struct node *node);

/* Stops it (joins the HTTP thread); node->http is NULL afterwards. */
void node_http_stop(struct node *node);

#endif
