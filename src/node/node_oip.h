/* node_oip.h — the node's answers to the /v2 requests that need the cluster
 * (the Open Inference Protocol: http/oip.h; docs/http.md). */
#ifndef IDUNNO_NODE_NODE_OIP_H
#define IDUNNO_NODE_NODE_OIP_H

struct http_call;

/* The HTTP endpoint's call handler (http_set_call_handler), ud the node:
 * model metadata and readiness from the coordinator's model list, infer as
 * an online request through this node. */
void node_oip_on_call(void *ud, struct http_call *call);

#endif
