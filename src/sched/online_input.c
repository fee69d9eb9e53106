/* online_input.c — the shape of an online request's tensors (online_input.h). */
#include "sched/online_input.h"

#include <stdio.h>

#include "base/err.h"
#include "infer/card.h"

int online_model_input(const struct model_rec *m, uint32_t dims[3])
{
    return online_card_input(&m->card, m->input_size, dims);
}

int online_card_input(const struct model_card *c, uint32_t input_size, uint32_t dims[3])
{
    uint32_t h, w, ch = 3;
    int nhwc = 0;
    if ((c->given & CARD_F_SIZE) && c->height > 0 && c->width > 0) {
        h = (uint32_t)c->height;
        w = (uint32_t)c->width;
        ch = c->channels == CARD_GRAY ? 1 : 3;
        nhwc = c->layout == CARD_NHWC;
    } else if (input_size > 0) {
        h = w = input_size;
    } else {
        return ID_ENOTFOUND;
    }
    if (nhwc) {
        dims[0] = h;
        dims[1] = w;
        dims[2] = ch;
    } else {
        dims[0] = ch;
        dims[1] = h;
        dims[2] = w;
    }
    return 0;
}

int online_tensors_check(const struct model_rec *m, Idunno__OnlineTensor *const *t, size_t n,
                         char *why, size_t len)
{
    uint32_t want[3];
    if (online_model_input(m, want) < 0) {
        snprintf(why, len,
                 "model %s has no known input shape (no card): send it images, not tensors",
                 m->name);
        return ID_EINVAL;
    }
    int nhwc = (m->card.given & CARD_F_SIZE) && m->card.layout == CARD_NHWC;
    for (size_t i = 0; i < n; i++) {
        const Idunno__OnlineTensor *x = t[i];
        int same = x->n_shape == 3;
        for (size_t d = 0; same && d < 3; d++)
            same = x->shape[d] == want[d];
        if (!same) {
            char given[96] = "[";
            size_t pos = 1;
            for (size_t d = 0; d < x->n_shape && d < 8 && pos < sizeof given; d++)
                pos += (size_t)snprintf(given + pos, sizeof given - pos, "%s%u", d ? ", " : "",
                                        x->shape[d]);
            if (x->n_shape > 8 && pos < sizeof given)
                pos += (size_t)snprintf(given + pos, sizeof given - pos, ", ...");
            if (pos < sizeof given)
                snprintf(given + pos, sizeof given - pos, "]");
            snprintf(why, len,
                     "the tensor's shape per image is %s but model %s takes [%u, %u, %u] per "
                     "image (its input is [N, %u, %u, %u], %s)",
                     given, m->name, want[0], want[1], want[2], want[0], want[1], want[2],
                     nhwc ? "NHWC" : "NCHW");
            return ID_EINVAL;
        }
        /* The dims are the model's, so their product is small. */
        uint64_t bytes = 4ull * want[0] * want[1] * want[2];
        if (x->data.len != bytes) {
            snprintf(why, len,
                     "tensor %zu holds %zu bytes but its shape [%u, %u, %u] needs %llu (float32)",
                     i, x->data.len, want[0], want[1], want[2], (unsigned long long)bytes);
            return ID_EINVAL;
        }
    }
    return 0;
}

/* A varint at *p (below end), or -1 if truncated or over 64 bits. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

uint64_t online_request_deadline_ms(const uint8_t *body, size_t len)
{
    /* Field 5, a varint; the other fields are skipped by their wire types,
     * the images without being read. */
    uint64_t deadline = 0;
    const uint8_t *p = body, *end = body + len;
    while (p < end) {
        uint64_t key, v;
        if (read_varint(&p, end, &key) < 0)
            break;
        unsigned wire = (unsigned)(key & 7);
        if (wire == 0) {
            if (read_varint(&p, end, &v) < 0)
                break;
            if (key >> 3 == 5)
                deadline = v;
        } else if (wire == 2) {
            if (read_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
                break;
            p += v;
        } else if (wire == 1 || wire == 5) {
            size_t skip = wire == 1 ? 8 : 4;
            if ((size_t)(end - p) < skip)
                break;
            p += skip;
        } else {
            break; /* malformed: the leader will say so */
        }
    }
    return deadline;
}
