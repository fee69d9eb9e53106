/* service.c — leader operations (see service.h). One ctl_op per request
 * served here; it owns a copy of the request's body, so the request can be
 * handed on unchanged if leadership moves before its proposal settles.
 *
 * Threading: loop thread only. */
#include "ctl/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "ctl/ctl.h"
#include "net/net.h"

#define CTL_SVC_MAX_OPS 16

/* The forwarder's user data for one registered type. */
struct svc_entry {
    struct ctl_svc *svc;
    const struct ctl_svc_op *def;
};

struct ctl_svc {
    struct ctl_fwd *fwd;
    struct ctl *ctl;
    void *ud;
    int stopping;
    struct svc_entry entries[CTL_SVC_MAX_OPS];
    size_t n_entries;
};

enum ctl_verdict ctl_op_verdict(int status, unsigned flags)
{
    if (status == ID_ENOTLEADER)
        return CTL_VERDICT_FORWARD;
    if (status == ID_ENOTFOUND && (flags & CTL_OP_NOTFOUND_TO_DONE))
        return CTL_VERDICT_DONE;
    return status < 0 ? CTL_VERDICT_FAIL : CTL_VERDICT_DONE;
}

void *ctl_req_unpack(struct net_request *req, const ProtobufCMessageDescriptor *desc,
                     const uint8_t *body, size_t len, int stopping)
{
    if (stopping) {
        net_reply_error(req, ID_ESHUTDOWN, "node shutting down", NULL);
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, body);
    if (!m)
        net_reply_errorf(req, ID_EPROTO, "bad %s", desc->short_name);
    return m;
}

/* ---- op life cycle ------------------------------------------------------------------------ */

static void op_free(struct ctl_op *op)
{
    if (op->msg)
        protobuf_c_message_free_unpacked(op->msg, NULL);
    free((void *)op->body);
    free(op);
}

/* Frees op unless a proposal or barrier still refers to it. */
static void op_maybe_free(struct ctl_op *op)
{
    if (!op->pending)
        op_free(op);
}

void ctl_op_fail(struct ctl_op *op, int status, const char *msg)
{
    if (!op->req)
        return;
    net_reply_errorf(op->req, status, "%s", msg ? msg : id_strerror(status));
    op->req = NULL;
}

/* The one rule. Returns 1 if it answered or handed on the request. */
static int op_settle(struct ctl_op *op, int status)
{
    switch (ctl_op_verdict(status, op->def->flags)) {
    case CTL_VERDICT_FORWARD:
        if (op->svc->stopping)
            net_reply_error(op->req, ID_ESHUTDOWN, "node shutting down", NULL);
        else
            ctl_forward(op->svc->fwd, op->req, op->type, op->body, op->len);
        op->req = NULL;
        return 1;
    case CTL_VERDICT_FAIL:
        ctl_op_fail(op, status, op->def->why ? op->def->why(op, status) : NULL);
        return 1;
    default: return 0;
    }
}

static void op_on_settled(struct ctl_op *op, int status, const uint8_t *result, size_t len)
{
    op->pending = 0;
    if (!op_settle(op, status))
        op->def->done(op, status, result, len);
    op_maybe_free(op);
}

static void op_on_proposed(void *ud, int status, const uint8_t *result, size_t len)
{
    op_on_settled(ud, status, result, len);
}

static void op_on_read(void *ud, int status)
{
    op_on_settled(ud, status, NULL, 0);
}

void ctl_op_propose(struct ctl_op *op, uint32_t cmd, const uint8_t *body, size_t len)
{
    int rc = ctl_propose(op->svc->ctl, cmd, body, len, op_on_proposed, op);
    if (rc == 0) {
        op->pending = 1;
        return;
    }
    /* Nothing was proposed: whatever the rule says, done() is not run. */
    if (!op_settle(op, rc))
        ctl_op_fail(op, rc, NULL);
}

void ctl_op_read(struct ctl_op *op)
{
    int rc = ctl_read_barrier(op->svc->ctl, op_on_read, op);
    if (rc == 0) {
        op->pending = 1;
        return;
    }
    if (!op_settle(op, rc))
        ctl_op_fail(op, rc, NULL);
}

/* ---- serving ------------------------------------------------------------------------------ */

static void svc_on_request(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    struct svc_entry *e = ud;
    const struct ctl_svc_op *def = e->def;
    if (e->svc->stopping) {
        net_reply_error(req, ID_ESHUTDOWN, "node shutting down", NULL);
        return;
    }
    if (def->raw) {
        def->raw(e->svc->ud, req, body, len);
        return;
    }
    void *msg = NULL;
    if (def->desc && !(msg = ctl_req_unpack(req, def->desc, body, len, 0)))
        return;
    struct ctl_op *op = calloc(1, sizeof *op);
    uint8_t *copy = malloc(len ? len : 1);
    if (!op || !copy) {
        free(op);
        free(copy);
        if (msg)
            protobuf_c_message_free_unpacked(msg, NULL);
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        return;
    }
    if (len)
        memcpy(copy, body, len);
    *op = (struct ctl_op){.svc = e->svc,
                          .ud = e->svc->ud,
                          .req = req,
                          .type = def->type,
                          .body = copy,
                          .len = len,
                          .msg = msg,
                          .def = def};
    def->start(op);
    op_maybe_free(op);
}

int ctl_svc_create(struct ctl_fwd *fwd, struct ctl *ctl, void *ud, struct ctl_svc **out)
{
    struct ctl_svc *svc = calloc(1, sizeof *svc);
    if (!svc)
        return ID_ENOMEM;
    svc->fwd = fwd;
    svc->ctl = ctl;
    svc->ud = ud;
    *out = svc;
    return 0;
}

int ctl_svc_register(struct ctl_svc *svc, const struct ctl_svc_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (svc->n_entries == CTL_SVC_MAX_OPS)
            return ID_ENOMEM;
        struct svc_entry *e = &svc->entries[svc->n_entries++];
        *e = (struct svc_entry){svc, &ops[i]};
        int rc = ops[i].flags & CTL_OP_NO_NET
                     ? ctl_fwd_add(svc->fwd, ops[i].type, svc_on_request, e)
                     : ctl_fwd_serve(svc->fwd, ops[i].type, svc_on_request, e);
        if (rc == 0 && ops[i].wait_of)
            rc = ctl_fwd_set_long(svc->fwd, ops[i].type, ops[i].wait_of);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void ctl_svc_forward(struct ctl_svc *svc, struct net_request *req, uint16_t type,
                     const uint8_t *body, size_t len)
{
    ctl_forward(svc->fwd, req, type, body, len);
}

void ctl_svc_stop(struct ctl_svc *svc)
{
    if (svc)
        svc->stopping = 1;
}

int ctl_svc_stopping(const struct ctl_svc *svc)
{
    return svc->stopping;
}

void ctl_svc_destroy(struct ctl_svc *svc)
{
    free(svc);
}
