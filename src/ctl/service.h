/* service.h — the leader-service layer: coordinator requests served on the
 * leader, on top of the forwarder (forward.h).
 *
 * A layer (sdfs, coord) creates one service and registers its leader
 * operations by message type, each with a descriptor of its request, a start
 * function and, if it proposes or reads, a done function. For every request
 * that reaches the serving leader the service
 *
 *   - refuses it with ID_ESHUTDOWN once the layer stopped (ctl_svc_stop);
 *   - decodes it with the op's descriptor (ID_EPROTO "bad <Message>" if it
 *     does not decode);
 *   - keeps its body in a ctl_op, so the request can be handed on unchanged;
 *   - runs start(op), which answers at once or proposes a command / asks for
 *     a read barrier through ctl_op_propose / ctl_op_read;
 *   - when that settles, applies one rule (ctl_op_verdict): ID_ENOTLEADER
 *     re-forwards the request to the next leader (or refuses it while
 *     stopping), other errors are answered, success reaches done(op);
 *   - frees the op once nothing is outstanding.
 *
 * ID_ENOTFOUND from a proposal is an error like the others unless the op
 * declares CTL_OP_NOTFOUND_TO_DONE: then done() gets it and words the answer.
 *
 * ctl_req_unpack is the same prologue (shutdown refusal, decode) for plain
 * request handlers that are not leader operations (replica-side requests).
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_CTL_SERVICE_H
#define IDUNNO_CTL_SERVICE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ctl/forward.h"

struct ctl;
struct ctl_svc;
struct member;
struct net;
struct net_request;

/* What every leader service of a node (sdfs, coord) is built on: the node's
 * loop, transport, control plane, forwarder and membership, and the node's
 * own identity. The node fills one and hands it to each service's create; the
 * pointers are borrowed and the strings copied by the service. */
struct ctl_svc_env {
    uv_loop_t *loop;
    struct net *net;
    struct ctl *ctl;
    struct ctl_fwd *fwd; /* the node's forwarder: leader ops are served over it */
    struct member *member;
    const char *name;
    const char *addr;
};

/* ID_ENOTFOUND from the proposal reaches done() instead of being answered. */
#define CTL_OP_NOTFOUND_TO_DONE 1u
/* Registered with the forwarder only: the layer's own net handler receives
 * the request and forwards it (ctl_svc_forward), e.g. to fill it in first. */
#define CTL_OP_NO_NET 2u

/* One request being served on the leader. */
struct ctl_op {
    struct ctl_svc *svc;
    void *ud;                /* the service's user data (the layer) */
    struct net_request *req; /* NULL once answered or handed on */
    uint16_t type;
    const uint8_t *body; /* the request as received (a copy) */
    size_t len;
    void *msg; /* decoded with the op's descriptor, or NULL */
    const struct ctl_svc_op *def;
    int pending; /* a proposal or read barrier is outstanding */
};

typedef void (*ctl_op_start_fn)(struct ctl_op *op);
/* A proposal or barrier settled and the rule let it through: answer
 * op->req. status is 0, or ID_ENOTFOUND with CTL_OP_NOTFOUND_TO_DONE. */
typedef void (*ctl_op_done_fn)(struct ctl_op *op, int status, const uint8_t *result, size_t len);
/* The message of a failed op's answer (NULL: id_strerror). */
typedef const char *(*ctl_op_why_fn)(struct ctl_op *op, int status);

struct ctl_svc_op {
    uint16_t type;
    const ProtobufCMessageDescriptor *desc; /* NULL: the op reads op->body itself */
    ctl_op_start_fn start;                  /* NULL with raw */
    ctl_op_done_fn done;                    /* for ops that propose or read */
    ctl_op_why_fn why;                      /* optional */
    unsigned flags;                         /* CTL_OP_* */
    /* Instead of an op: a plain handler, run on the leader after the shutdown
     * check (for requests whose handler keeps the request itself). */
    ctl_fwd_handler raw;
    /* Set: a long-running request, forwarded with the budget this returns
     * (ctl_fwd_set_long). */
    ctl_fwd_wait_fn wait_of;
};

/* What the rule does with a settled status. Pure. */
enum ctl_verdict {
    CTL_VERDICT_DONE,    /* the op's done() answers */
    CTL_VERDICT_FORWARD, /* leadership moved: hand the request on */
    CTL_VERDICT_FAIL,    /* answer with the error */
};
enum ctl_verdict ctl_op_verdict(int status, unsigned flags);

/* Creates a service of `ud` over fwd and ctl. Returns 0 or ID_ENOMEM; *out is
 * freed by ctl_svc_destroy. */
int ctl_svc_create(struct ctl_fwd *fwd, struct ctl *ctl, void *ud, struct ctl_svc **out);

/* Registers n operations; `ops` must outlive the service (a static table).
 * Returns 0 or ID_E* (ID_EEXIST: a type already served). */
int ctl_svc_register(struct ctl_svc *svc, const struct ctl_svc_op *ops, size_t n);

/* Sends a request towards the leader (for CTL_OP_NO_NET types); takes req. */
void ctl_svc_forward(struct ctl_svc *svc, struct net_request *req, uint16_t type,
                     const uint8_t *body, size_t len);

/* Proposes command `cmd` for op (body: usually op->body). On settling the
 * rule runs, then def->done. An immediate failure is settled the same way. */
void ctl_op_propose(struct ctl_op *op, uint32_t cmd, const uint8_t *body, size_t len);

/* Waits for a read barrier, then def->done(op, 0, NULL, 0). */
void ctl_op_read(struct ctl_op *op);

/* Answers op with an error now (the op is freed when start/done returns). */
void ctl_op_fail(struct ctl_op *op, int status, const char *msg);

/* From now on requests are refused with ID_ESHUTDOWN and requests whose
 * leader moved are not handed on. */
void ctl_svc_stop(struct ctl_svc *svc);
int ctl_svc_stopping(const struct ctl_svc *svc);

/* Frees the service. Ops still outstanding must have settled (ctl shuts
 * down first and fails its proposals). */
void ctl_svc_destroy(struct ctl_svc *svc);

/* The prologue of a plain request handler: NULL (req answered) if stopping
 * (ID_ESHUTDOWN) or if body does not decode as desc (ID_EPROTO "bad
 * <Message>"); else the message, freed with protobuf_c_message_free_unpacked. */
void *ctl_req_unpack(struct net_request *req, const ProtobufCMessageDescriptor *desc,
                     const uint8_t *body, size_t len, int stopping);

#endif
