/* test_infer_child.c — the node <-> inference process messages
 * (infer/child_proto.h): round trips, and every bound the decoders enforce
 * on what a broken process might send; the crash accounting of child.h. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "infer/child.h"
#include "infer/child_proto.h"
#include "net/frame.h"
#include "net/reader.h"

/* Packs msg and reads it back through a frame reader, as the other side does. */
static size_t roundtrip(uint16_t type, uint64_t id, const ProtobufCMessage *msg, uint8_t *body_out)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(infer_child_pack(type, id, msg, &buf, &len), 0);
    struct frame_reader r;
    frame_reader_init(&r, INFER_CHILD_MAX_FRAME, NULL);
    assert_int_equal(frame_reader_feed(&r, buf, len), 0);
    struct frame_header h;
    const uint8_t *body;
    assert_int_equal(frame_reader_next(&r, &h, &body), 1);
    assert_int_equal(h.type, type);
    assert_int_equal(h.req_id, id);
    memcpy(body_out, body, h.length);
    size_t n = h.length;
    frame_reader_free(&r);
    free(buf);
    return n;
}

static void test_run_roundtrip_and_bad_paths(void **state)
{
    (void)state;
    uint8_t body[4096];
    char *paths[] = {"/data/a.jpg", "/data/b.png"};
    Idunno__InferChildRun m = IDUNNO__INFER_CHILD_RUN__INIT;
    m.n_paths = 2;
    m.paths = paths;
    size_t n = roundtrip(INFER_CHILD_RUN, 77, &m.base, body);
    Idunno__InferChildRun *got;
    assert_int_equal(infer_child_decode_run(body, n, &got), 0);
    assert_int_equal(got->n_paths, 2);
    assert_string_equal(got->paths[1], "/data/b.png");
    idunno__infer_child_run__free_unpacked(got, NULL);
    /* a relative path is refused */
    char *rel[] = {"data/a.jpg"};
    m.n_paths = 1;
    m.paths = rel;
    n = roundtrip(INFER_CHILD_RUN, 1, &m.base, body);
    assert_int_equal(infer_child_decode_run(body, n, &got), ID_EPROTO);
    /* garbage is refused */
    assert_int_equal(infer_child_decode_run((const uint8_t *)"\xff\xff\xff", 3, &got), ID_EPROTO);
    /* tensor flags: one per path, or none */
    char *two[] = {"/data/a.jpg", "/data/online/7"};
    protobuf_c_boolean flags[3] = {0, 1, 1};
    m.n_paths = 2;
    m.paths = two;
    m.n_tensor = 2;
    m.tensor = flags;
    n = roundtrip(INFER_CHILD_RUN, 2, &m.base, body);
    assert_int_equal(infer_child_decode_run(body, n, &got), 0);
    assert_int_equal(got->n_tensor, 2);
    assert_false(got->tensor[0]);
    assert_true(got->tensor[1]);
    idunno__infer_child_run__free_unpacked(got, NULL);
    for (size_t k = 1; k <= 3; k += 2) {
        m.n_tensor = k;
        n = roundtrip(INFER_CHILD_RUN, 3, &m.base, body);
        assert_int_equal(infer_child_decode_run(body, n, &got), ID_EPROTO);
    }
    /* inputs given as bytes: one entry per path; a given input has no path,
     * and an input without bytes has one */
    m.n_tensor = 0;
    char *mixed[] = {"/data/a.jpg", ""};
    ProtobufCBinaryData data[3] = {{0, NULL}, {3, (uint8_t *)"abc"}, {1, (uint8_t *)"x"}};
    m.paths = mixed;
    m.n_data = 2;
    m.data = data;
    n = roundtrip(INFER_CHILD_RUN, 4, &m.base, body);
    assert_int_equal(infer_child_decode_run(body, n, &got), 0);
    assert_int_equal(got->n_data, 2);
    assert_int_equal(got->data[1].len, 3);
    assert_memory_equal(got->data[1].data, "abc", 3);
    idunno__infer_child_run__free_unpacked(got, NULL);
    char *both[] = {"/data/a.jpg", "/data/b.jpg"}; /* bytes and a path for input 1 */
    m.paths = both;
    n = roundtrip(INFER_CHILD_RUN, 5, &m.base, body);
    assert_int_equal(infer_child_decode_run(body, n, &got), ID_EPROTO);
    char *none[] = {"", ""}; /* input 0 has neither */
    m.paths = none;
    n = roundtrip(INFER_CHILD_RUN, 6, &m.base, body);
    assert_int_equal(infer_child_decode_run(body, n, &got), ID_EPROTO);
    for (size_t k = 1; k <= 3; k += 2) {
        m.paths = k == 1 ? mixed : (char *[]){"/a", "", "/b"};
        m.n_paths = 2;
        m.n_data = k;
        n = roundtrip(INFER_CHILD_RUN, 7, &m.base, body);
        assert_int_equal(infer_child_decode_run(body, n, &got), ID_EPROTO);
    }
}

/* A DONE for `n` images, each with the first k of the given class indices
 * and probabilities. */
static size_t make_done_k(uint8_t *body, int status, size_t n_images, int32_t cls0, float p0,
                          size_t k)
{
    Idunno__InferChildDone d = IDUNNO__INFER_CHILD_DONE__INIT;
    Idunno__InferChildImage rows[3], *ptrs[3];
    int32_t cls[INFER_TOPK] = {cls0, 1, 2, 3, -1};
    float probs[INFER_TOPK] = {p0, 0.2f, 0.1f, 0.05f, 0};
    for (size_t i = 0; i < n_images; i++) {
        idunno__infer_child_image__init(&rows[i]);
        rows[i].n_classes = rows[i].n_probs = k;
        rows[i].classes = cls;
        rows[i].probs = probs;
        ptrs[i] = &rows[i];
    }
    d.status = status;
    d.error = status ? "model failed" : "";
    d.cpu_us = 1234;
    d.n_images = n_images;
    d.images = ptrs;
    return roundtrip(INFER_CHILD_DONE, 5, &d.base, body);
}

static size_t make_done(uint8_t *body, int status, size_t n_images, int32_t cls0, float p0)
{
    return make_done_k(body, status, n_images, cls0, p0, 4);
}

static void test_done_checked_against_the_run(void **state)
{
    (void)state;
    uint8_t body[4096];
    struct infer_result res[3];
    struct infer_child_outcome o;
    size_t n = make_done(body, 0, 2, 7, 0.6f);
    assert_int_equal(infer_child_decode_done(body, n, 2, 10, 4, 0, &o, res), 0);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.cpu_us, 1234);
    assert_int_equal(res[1].top_class[0], 7);
    assert_int_equal(res[1].k, 4);
    assert_int_equal(res[1].top_class[4], -1);
    /* more entries than the model has classes, or than a top-5 holds */
    assert_int_equal(infer_child_decode_done(body, n, 2, 3, 4, 0, &o, res), ID_EPROTO);
    /* a -1 (no class) entry is never sent: a result has exactly k real ones */
    n = make_done_k(body, 0, 1, 7, 0.6f, 5);
    assert_int_equal(infer_child_decode_done(body, n, 1, 10, 4, 0, &o, res), ID_EPROTO);
    n = make_done_k(body, 0, 1, 7, 0.6f, 0);
    assert_int_equal(infer_child_decode_done(body, n, 1, 10, 4, 0, &o, res), ID_EPROTO);
    n = make_done(body, 0, 2, 7, 0.6f);
    assert_int_equal(infer_child_decode_done(body, n, 2, 10, 4, 0, &o, res), 0);
    assert_float_equal(res[0].top_prob[0], 0.6f, 1e-6);
    /* fewer or more results than images asked for */
    assert_int_equal(infer_child_decode_done(body, n, 3, 10, 4, 0, &o, res), ID_EPROTO);
    assert_int_equal(infer_child_decode_done(body, n, 1, 10, 4, 0, &o, res), ID_EPROTO);
    /* a class index beyond the model's classes */
    assert_int_equal(infer_child_decode_done(body, n, 2, 5, 4, 0, &o, res), ID_EPROTO);
    n = make_done(body, 0, 2, -2, 0.6f);
    assert_int_equal(infer_child_decode_done(body, n, 2, 10, 4, 0, &o, res), ID_EPROTO);
    /* a probability that is no probability */
    n = make_done(body, 0, 1, 3, 7.5f);
    assert_int_equal(infer_child_decode_done(body, n, 1, 10, 4, 0, &o, res), ID_EPROTO);
    n = make_done(body, 0, 1, 3, -0.5f);
    assert_int_equal(infer_child_decode_done(body, n, 1, 10, 4, 0, &o, res), ID_EPROTO);
    /* a failed run carries its error and no images */
    n = make_done(body, ID_EMODEL, 0, 0, 0);
    assert_int_equal(infer_child_decode_done(body, n, 4, 10, 4, 0, &o, res), 0);
    assert_int_equal(o.status, ID_EMODEL);
    assert_string_equal(o.error, "model failed");
    n = make_done(body, ID_EMODEL, 1, 0, 0.5f);
    assert_int_equal(infer_child_decode_done(body, n, 1, 10, 4, 0, &o, res), ID_EPROTO);
    /* a positive status is not one of ours */
    n = make_done(body, 3, 0, 0, 0);
    assert_int_equal(infer_child_decode_done(body, n, 0, 10, 4, 0, &o, res), ID_EPROTO);
}

static void test_loaded_bounds(void **state)
{
    (void)state;
    uint8_t body[512];
    Idunno__InferChildLoaded l = IDUNNO__INFER_CHILD_LOADED__INIT;
    l.classes = 10;
    l.input_size = 32;
    l.top_k = 5;
    Idunno__InferChildLoaded *got;
    size_t n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), 0);
    assert_int_equal(got->classes, 10);
    idunno__infer_child_loaded__free_unpacked(got, NULL);
    l.classes = INFER_MAX_CLASSES + 1;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), ID_EPROTO);
    l.classes = 0;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), ID_EPROTO);
    /* a non-square input reports no input_size */
    l.classes = 2;
    l.top_k = 2;
    l.input_size = 0;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), 0);
    idunno__infer_child_loaded__free_unpacked(got, NULL);
    /* a top-k wider than the classes, or none */
    l.top_k = 3;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), ID_EPROTO);
    l.top_k = 0;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), ID_EPROTO);
    /* raw: every value of an output no wider than a result */
    l.raw = 1;
    l.classes = 8;
    l.top_k = 8;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), 0);
    idunno__infer_child_loaded__free_unpacked(got, NULL);
    l.top_k = 5;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), ID_EPROTO);
    l.classes = l.top_k = INFER_MAX_K + 1;
    n = roundtrip(INFER_CHILD_LOADED, 0, &l.base, body);
    assert_int_equal(infer_child_decode_loaded(body, n, &got), ID_EPROTO);
}

/* Raw results: the values in order, indices 0..k-1, any finite value. */
static void test_done_raw(void **state)
{
    (void)state;
    uint8_t body[4096];
    struct infer_result res[2];
    struct infer_child_outcome o;
    Idunno__InferChildDone d = IDUNNO__INFER_CHILD_DONE__INIT;
    Idunno__InferChildImage row = IDUNNO__INFER_CHILD_IMAGE__INIT, *ptr = &row;
    int32_t idx[3] = {0, 1, 2};
    float vals[3] = {-3.5f, 12.0f, 0.25f};
    row.n_classes = row.n_probs = 3;
    row.classes = idx;
    row.probs = vals;
    d.n_images = 1;
    d.images = &ptr;
    size_t n = roundtrip(INFER_CHILD_DONE, 5, &d.base, body);
    assert_int_equal(infer_child_decode_done(body, n, 1, 3, 3, 1, &o, res), 0);
    assert_int_equal(res[0].raw, 1);
    assert_int_equal(res[0].k, 3);
    assert_float_equal(res[0].top_prob[1], 12.0f, 1e-6);
    /* the same values are no probabilities for a top-k */
    assert_int_equal(infer_child_decode_done(body, n, 1, 3, 3, 0, &o, res), ID_EPROTO);
    /* out of order, or not finite */
    idx[1] = 2;
    n = roundtrip(INFER_CHILD_DONE, 5, &d.base, body);
    assert_int_equal(infer_child_decode_done(body, n, 1, 3, 3, 1, &o, res), ID_EPROTO);
    idx[1] = 1;
    vals[2] = (float)NAN;
    n = roundtrip(INFER_CHILD_DONE, 5, &d.base, body);
    assert_int_equal(infer_child_decode_done(body, n, 1, 3, 3, 1, &o, res), ID_EPROTO);
}

static void test_clean_text(void **state)
{
    (void)state;
    char out[8];
    infer_child_clean_text(out, sizeof out,
                           "a\nb\x1b"
                           "cdefghij");
    assert_string_equal(out, "a?b?cde");
}

static void test_crash_accounting(void **state)
{
    (void)state;
    struct infer_crashes c = {0};
    assert_int_equal(infer_crashes_of(&c, "bad@1"), 0);
    assert_int_equal(infer_crashes_note(&c, "bad@1", "killed by signal 6"), 1);
    assert_int_equal(infer_crashes_note(&c, "good@1", NULL), 1);
    assert_string_equal(infer_crashes_last(&c, "good@1"), "");
    assert_int_equal(infer_crashes_note(&c, "bad@1", "killed by signal 11"), 2);
    assert_int_equal(infer_crashes_note(&c, "bad@1", "a run took longer than 60 s and was killed"),
                     INFER_MAX_CRASHES);
    assert_string_equal(infer_crashes_last(&c, "bad@1"),
                        "a run took longer than 60 s and was killed");
    assert_string_equal(infer_crashes_last(&c, "bad@2"), "");
    assert_int_equal(infer_crashes_of(&c, "good@1"), 1);
    assert_int_equal(infer_crashes_of(&c, "bad@2"), 0); /* a re-trained version starts clean */
    infer_crashes_free(&c);
}

/* The run deadline: a run is overdue from exactly timeout_ms after it was
 * handed over, never before, never with no deadline, and a clock that reads
 * earlier than the hand-over (it cannot, but) is not overdue. */
static void test_run_deadline(void **state)
{
    (void)state;
    assert_false(infer_run_overdue(1000, 1000, 2000));
    assert_false(infer_run_overdue(1000, 2999, 2000));
    assert_true(infer_run_overdue(1000, 3000, 2000));
    assert_true(infer_run_overdue(1000, 1000000, 2000));
    assert_false(infer_run_overdue(1000, 1000000, 0));
    assert_false(infer_run_overdue(5000, 1000, 2000));
    /* checked a quarter of the deadline apart, within [50 ms, 1 s] */
    assert_int_equal(infer_deadline_check_ms(2000), 500);
    assert_int_equal(infer_deadline_check_ms(100), 50);
    assert_int_equal(infer_deadline_check_ms(300000), 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_roundtrip_and_bad_paths),
        cmocka_unit_test(test_done_checked_against_the_run),
        cmocka_unit_test(test_loaded_bounds),
        cmocka_unit_test(test_done_raw),
        cmocka_unit_test(test_clean_text),
        cmocka_unit_test(test_crash_accounting),
        cmocka_unit_test(test_run_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
