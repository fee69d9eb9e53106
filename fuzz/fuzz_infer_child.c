/* fuzz_infer_child.c — libFuzzer target for the node <-> inference process
 * decoders (infer/child_proto.h), both directions: the first byte picks the
 * decoder and the run's size, the rest is a frame body; the same bytes also go
 * through a frame reader as a stream. Any bytes in, a clean accept or
 * ID_EPROTO out, never a crash; accepted results are within bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "infer/child_proto.h"
#include "net/reader.h"

static void check_done(const uint8_t *body, size_t len, size_t n, int classes, int raw)
{
    struct infer_result res[16];
    struct infer_child_outcome o;
    int top_k = raw ? classes : (classes < INFER_TOPK ? classes : INFER_TOPK);
    if (infer_child_decode_done(body, len, n, classes, top_k, raw, &o, res) != 0)
        return;
    if (o.status > 0)
        __builtin_trap();
    for (size_t i = 0; o.status == 0 && i < n; i++) {
        if (res[i].status == 0 && res[i].k != top_k)
            __builtin_trap();
        for (int k = 0; k < INFER_MAX_K; k++)
            if (res[i].status == 0 && (res[i].top_class[k] < -1 || res[i].top_class[k] >= classes))
                __builtin_trap();
    }
}

static void decode_as(uint8_t sel, const uint8_t *body, size_t len)
{
    switch (sel & 3) {
    case 0: {
        Idunno__InferChildLoad *m;
        if (infer_child_decode_load(body, len, &m) == 0)
            idunno__infer_child_load__free_unpacked(m, NULL);
        break;
    }
    case 1: {
        Idunno__InferChildRun *m;
        if (infer_child_decode_run(body, len, &m) == 0) {
            if (m->n_paths > INFER_CHILD_MAX_IMAGES ||
                (m->n_tensor != 0 && m->n_tensor != m->n_paths) ||
                (m->n_data != 0 && m->n_data != m->n_paths))
                __builtin_trap();
            /* each input is a path or bytes, never neither */
            for (size_t i = 0; i < m->n_paths; i++)
                if (!m->paths[i][0] && !(m->n_data && m->data[i].len))
                    __builtin_trap();
            idunno__infer_child_run__free_unpacked(m, NULL);
        }
        break;
    }
    case 2: {
        Idunno__InferChildLoaded *m;
        if (infer_child_decode_loaded(body, len, &m) == 0)
            idunno__infer_child_loaded__free_unpacked(m, NULL);
        break;
    }
    default: check_done(body, len, (sel >> 2) & 15, 1 + (sel >> 6) * 3, (sel >> 7) & 1); break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    decode_as(data[0], data + 1, size - 1);
    struct frame_reader r;
    frame_reader_init(&r, INFER_CHILD_MAX_FRAME, NULL);
    if (frame_reader_feed(&r, data, size) == 0) {
        struct frame_header h;
        const uint8_t *body;
        while (frame_reader_next(&r, &h, &body) == 1)
            decode_as((uint8_t)h.type, body, h.length);
    }
    frame_reader_free(&r);
    return 0;
}
