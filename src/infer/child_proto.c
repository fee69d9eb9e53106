/* child_proto.c — encoding and checked decoding of the node <-> inference
 * process messages (child_proto.h). */
#include "infer/child_proto.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "net/frame.h"

/* Statuses a child may report: 0 or one of err.h's codes, nothing else. */
#define STATUS_MIN (-1000)

int infer_child_pack(uint16_t type, uint64_t id, const ProtobufCMessage *msg, uint8_t **out,
                     size_t *len)
{
    size_t body = protobuf_c_message_get_packed_size(msg);
    if (body > INFER_CHILD_MAX_FRAME)
        return ID_ETOOBIG;
    uint8_t *buf = malloc(FRAME_HEADER_LEN + body);
    if (!buf)
        return ID_ENOMEM;
    protobuf_c_message_pack(msg, buf + FRAME_HEADER_LEN);
    frame_encode_header(buf, type, 0, id, buf + FRAME_HEADER_LEN, (uint32_t)body);
    *out = buf;
    *len = FRAME_HEADER_LEN + body;
    return 0;
}

void infer_child_clean_text(char *dst, size_t len, const char *src)
{
    if (!len)
        return;
    size_t i = 0;
    for (; src && src[i] && i + 1 < len; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = 0;
}

static int path_ok(const char *p)
{
    return p && p[0] == '/' && strnlen(p, INFER_CHILD_MAX_PATH) < INFER_CHILD_MAX_PATH;
}

int infer_child_decode_load(const uint8_t *body, size_t len, Idunno__InferChildLoad **out)
{
    Idunno__InferChildLoad *m = idunno__infer_child_load__unpack(NULL, len, body);
    if (!m)
        return ID_EPROTO;
    if (!path_ok(m->path)) {
        idunno__infer_child_load__free_unpacked(m, NULL);
        return ID_EPROTO;
    }
    *out = m;
    return 0;
}

int infer_child_decode_run(const uint8_t *body, size_t len, Idunno__InferChildRun **out)
{
    Idunno__InferChildRun *m = idunno__infer_child_run__unpack(NULL, len, body);
    if (!m)
        return ID_EPROTO;
    int ok = m->n_paths <= INFER_CHILD_MAX_IMAGES &&
             (m->n_tensor == 0 || m->n_tensor == m->n_paths) &&
             (m->n_data == 0 || m->n_data == m->n_paths);
    /* An input is a file (a path) or bytes given (no path), never both. */
    for (size_t i = 0; ok && i < m->n_paths; i++)
        ok = m->n_data && m->data[i].len ? m->paths[i][0] == 0 : path_ok(m->paths[i]);
    if (!ok) {
        idunno__infer_child_run__free_unpacked(m, NULL);
        return ID_EPROTO;
    }
    *out = m;
    return 0;
}

int infer_child_decode_loaded(const uint8_t *body, size_t len, Idunno__InferChildLoaded **out)
{
    Idunno__InferChildLoaded *m = idunno__infer_child_loaded__unpack(NULL, len, body);
    if (!m)
        return ID_EPROTO;
    int ok = m->status <= 0 && m->status > STATUS_MIN;
    /* A result's entries: a top-k of at most the classes, or, raw, every
     * value of an output no wider than a result holds. input_size is 0 for a
     * non-square input. */
    if (ok && m->status == 0)
        ok = m->classes >= 1 && m->classes <= INFER_MAX_CLASSES &&
             m->input_size <= INFER_MAX_SIDE && m->top_k >= 1 && m->top_k <= INFER_MAX_K &&
             m->top_k <= m->classes && (!m->raw || m->top_k == m->classes);
    if (!ok) {
        idunno__infer_child_loaded__free_unpacked(m, NULL);
        return ID_EPROTO;
    }
    *out = m;
    return 0;
}

/* One image's result, checked against what the model's card makes of it:
 * exactly top_k entries (never padding), each a real class with a
 * probability, or, raw, the output's top_k values in order. */
static int image_from_pb(const Idunno__InferChildImage *im, int classes, int top_k, int raw,
                         struct infer_result *r)
{
    memset(r, 0, sizeof *r);
    if (im->status > 0 || im->status <= STATUS_MIN)
        return ID_EPROTO;
    r->status = im->status;
    infer_child_clean_text(r->error, sizeof r->error, im->error);
    if (im->status < 0)
        return im->n_classes == 0 && im->n_probs == 0 ? 0 : ID_EPROTO;
    if (top_k < 1 || top_k > INFER_MAX_K || im->n_classes != im->n_probs ||
        im->n_classes != (size_t)top_k)
        return ID_EPROTO;
    for (int k = 0; k < INFER_MAX_K; k++)
        r->top_class[k] = -1;
    for (size_t k = 0; k < im->n_classes; k++) {
        int32_t c = im->classes[k];
        float p = im->probs[k];
        if (raw ? c != (int32_t)k || !isfinite(p)
                : c < 0 || c >= classes || !isfinite(p) || p < 0 || p > 1.0001f)
            return ID_EPROTO;
        r->top_class[k] = c;
        r->top_prob[k] = p;
    }
    r->k = (int)im->n_classes;
    r->raw = raw != 0;
    return 0;
}

int infer_child_decode_done(const uint8_t *body, size_t len, size_t n, int classes, int top_k,
                            int raw, struct infer_child_outcome *o, struct infer_result *results)
{
    Idunno__InferChildDone *m = idunno__infer_child_done__unpack(NULL, len, body);
    if (!m)
        return ID_EPROTO;
    int rc = 0;
    if (m->status > 0 || m->status <= STATUS_MIN || (m->status == 0 && m->n_images != n) ||
        (m->status < 0 && m->n_images != 0))
        rc = ID_EPROTO;
    for (size_t i = 0; !rc && m->status == 0 && i < n; i++)
        rc = image_from_pb(m->images[i], classes, top_k, raw, &results[i]);
    if (!rc) {
        o->status = m->status;
        infer_child_clean_text(o->error, sizeof o->error, m->error);
        o->cpu_us = m->cpu_us;
    }
    idunno__infer_child_done__free_unpacked(m, NULL);
    return rc;
}
