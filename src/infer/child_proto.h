/* child_proto.h — the messages between a node and its inference processes
 * (child.h runs them, child_main.c is the process): frames with the wire
 * header of net/frame.h over a socket pair, protobuf bodies
 * (InferChild* in proto/idunno.proto).
 *
 *   node  -> child  INFER_CHILD_LOAD    first frame: the model file
 *   child -> node   INFER_CHILD_LOADED  its shape, or why it cannot be used
 *   node  -> child  INFER_CHILD_RUN     req_id = run id: image files (or files of
 *                                       the model's input itself, flagged per path;
 *                                       or either given as bytes in the frame)
 *   child -> node   INFER_CHILD_DONE    req_id = that run id: top-k per image
 *
 * The socket is a trust boundary both ways: a child running a broken model
 * may write anything before it dies, and the node must not believe it. So
 * every decoder here checks counts, class indices, probabilities and string
 * lengths against what was asked, and is fuzzed (fuzz/fuzz_infer_child.c).
 * Pure: no I/O. */
#ifndef IDUNNO_INFER_CHILD_PROTO_H
#define IDUNNO_INFER_CHILD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "idunno.pb-c.h"
#include "infer/infer.h"

enum infer_child_type {
    INFER_CHILD_LOAD = 1,
    INFER_CHILD_LOADED = 2,
    INFER_CHILD_RUN = 3,
    INFER_CHILD_DONE = 4,
};

/* Largest frame body either side accepts; a run's paths and its results fit
 * well below it. */
#define INFER_CHILD_MAX_FRAME (1u << 20)
#define INFER_CHILD_MAX_IMAGES 1024
#define INFER_CHILD_MAX_PATH 1024

/* Packs msg as one frame (header and body) into a malloc'd buffer. Returns 0,
 * ID_ETOOBIG or ID_ENOMEM. */
int infer_child_pack(uint16_t type, uint64_t id, const ProtobufCMessage *msg, uint8_t **out,
                     size_t *len);

/* Decoders of frame bodies. Each returns 0 with *out to free with the
 * message's free_unpacked, or ID_EPROTO for anything out of bounds. */
int infer_child_decode_load(const uint8_t *body, size_t len, Idunno__InferChildLoad **out);
int infer_child_decode_run(const uint8_t *body, size_t len, Idunno__InferChildRun **out);
int infer_child_decode_loaded(const uint8_t *body, size_t len, Idunno__InferChildLoaded **out);

/* What a run came to. */
struct infer_child_outcome {
    int status; /* 0, or the ID_E* with which the model failed the whole run */
    char error[200];
    uint64_t cpu_us;
};

/* Decodes the DONE of a run of n images through a model of `classes`
 * classes whose results hold top_k entries each (raw: its top_k = classes
 * values in order), as its LOADED said: *o, and when o->status is 0
 * results[0..n). Returns 0 or ID_EPROTO (then results may be partly written
 * and must be ignored). */
int infer_child_decode_done(const uint8_t *body, size_t len, size_t n, int classes, int top_k,
                            int raw, struct infer_child_outcome *o, struct infer_result *results);

/* Copies src into dst[len] with bytes outside printable ASCII replaced by
 * '?': a child's text goes into logs and results. */
void infer_child_clean_text(char *dst, size_t len, const char *src);

#endif
