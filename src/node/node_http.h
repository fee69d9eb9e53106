/* node_http.h — the node's HTTP endpoint (src/http) on HOST:PORT+2: the
 * providers of what the node itself knows (the node, membership, the control
 * plane, and a placeholder "jobs" section the jobs layer replaces) and the
 * readiness check behind /readyz. docs/http.md lists every metric and the
 * status document. */
#ifndef IDUNNO_NODE_NODE_HTTP_H
#define IDUNNO_NODE_NODE_HTTP_H

struct node;

/* Starts the endpoint (unless --no-http) with the node's providers. Returns 0
 * or ID_E* with node->errmsg set (the port is taken, ...). */
int node_http_start(struct node *node);

/* Stops it (joins the HTTP thread); node->http is NULL afterwards. */
void node_http_stop(struct node *node);

#endif
