/* test_online_input.c — the leader's check of an online request's tensors
 * (src/sched/online_input.c): the shape per image each model takes (NCHW,
 * NHWC, grayscale, a model registered before cards), every refusal naming
 * the expected and the given shape, and the deadline read off an encoded
 * request without decoding it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "sched/online_input.h"

static struct model_rec card_model(int h, int w, enum card_layout layout, enum card_channels ch)
{
    struct model_rec m;
    memset(&m, 0, sizeof m);
    strcpy(m.name, "m");
    m.card.given = CARD_F_SIZE | CARD_F_LAYOUT | CARD_F_CHANNELS;
    m.card.height = h;
    m.card.width = w;
    m.card.layout = layout;
    m.card.channels = ch;
    m.input_size = h == w ? (uint32_t)h : 0;
    return m;
}

static void assert_dims(const struct model_rec *m, uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t d[3] = {0};
    assert_int_equal(online_model_input(m, d), 0);
    assert_int_equal(d[0], a);
    assert_int_equal(d[1], b);
    assert_int_equal(d[2], c);
}

static void test_model_input_shapes(void **state)
{
    (void)state;
    struct model_rec m = card_model(32, 32, CARD_NCHW, CARD_RGB);
    assert_dims(&m, 3, 32, 32);
    m = card_model(48, 192, CARD_NCHW, CARD_BGR);
    assert_dims(&m, 3, 48, 192);
    m = card_model(28, 20, CARD_NHWC, CARD_GRAY);
    assert_dims(&m, 28, 20, 1);
    m = card_model(224, 224, CARD_NHWC, CARD_RGB);
    assert_dims(&m, 224, 224, 3);
    /* before cards: square, RGB, NCHW; without even a size: unknown */
    memset(&m, 0, sizeof m);
    m.input_size = 224;
    assert_dims(&m, 3, 224, 224);
    m.input_size = 0;
    uint32_t d[3];
    assert_int_equal(online_model_input(&m, d), ID_ENOTFOUND);
    char why[300];
    Idunno__OnlineTensor t = IDUNNO__ONLINE_TENSOR__INIT;
    Idunno__OnlineTensor *one[1] = {&t};
    assert_int_equal(online_tensors_check(&m, one, 1, why, sizeof why), ID_EINVAL);
    assert_non_null(strstr(why, "no known input shape"));
}

static void test_tensors_checked(void **state)
{
    (void)state;
    struct model_rec m = card_model(32, 32, CARD_NCHW, CARD_RGB);
    static uint8_t data[4 * 3 * 32 * 32];
    uint32_t good[3] = {3, 32, 32};
    Idunno__OnlineTensor a = IDUNNO__ONLINE_TENSOR__INIT, b = IDUNNO__ONLINE_TENSOR__INIT;
    a.n_shape = b.n_shape = 3;
    a.shape = b.shape = good;
    a.data = b.data = (ProtobufCBinaryData){sizeof data, data};
    Idunno__OnlineTensor *two[2] = {&a, &b};
    char why[300] = "";
    assert_int_equal(online_tensors_check(&m, two, 2, why, sizeof why), 0);

    /* the second one's shape another model's: both shapes named */
    uint32_t hwc[3] = {32, 32, 3};
    b.shape = hwc;
    assert_int_equal(online_tensors_check(&m, two, 2, why, sizeof why), ID_EINVAL);
    assert_non_null(strstr(why, "shape per image is [32, 32, 3] but model m takes [3, 32, 32]"));
    assert_non_null(strstr(why, "[N, 3, 32, 32], NCHW"));
    /* and fits an NHWC model of that size */
    struct model_rec nhwc = card_model(32, 32, CARD_NHWC, CARD_RGB);
    assert_int_equal(online_tensors_check(&nhwc, &two[1], 1, why, sizeof why), 0);
    assert_int_equal(online_tensors_check(&nhwc, two, 1, why, sizeof why), ID_EINVAL);
    assert_non_null(strstr(why, "[N, 32, 32, 3], NHWC"));

    /* a rank other than one image's */
    uint32_t four[4] = {1, 3, 32, 32};
    b.shape = four;
    b.n_shape = 4;
    assert_int_equal(online_tensors_check(&m, two, 2, why, sizeof why), ID_EINVAL);
    assert_non_null(strstr(why, "[1, 3, 32, 32] but model m takes [3, 32, 32]"));
    b.n_shape = 0;
    assert_int_equal(online_tensors_check(&m, two, 2, why, sizeof why), ID_EINVAL);
    assert_non_null(strstr(why, "is [] but"));
    uint32_t many[12] = {3, 32, 32, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    b.shape = many;
    b.n_shape = 12;
    assert_int_equal(online_tensors_check(&m, two, 2, why, sizeof why), ID_EINVAL);
    assert_non_null(strstr(why, "[3, 32, 32, 1, 1, 1, 1, 1, ...]"));

    /* the data's length against the shape */
    b.shape = good;
    b.n_shape = 3;
    b.data.len = sizeof data - 1;
    assert_int_equal(online_tensors_check(&m, two, 2, why, sizeof why), ID_EINVAL);
    assert_non_null(
        strstr(why, "tensor 1 holds 12287 bytes but its shape [3, 32, 32] needs 12288"));
    b.data.len = 0;
    assert_int_equal(online_tensors_check(&m, two, 2, why, sizeof why), ID_EINVAL);
    assert_non_null(strstr(why, "tensor 1 holds 0 bytes"));
}

/* The deadline of a packed OnlineInfer: found past a megabyte of images and
 * other fields, 0 without one, and what the bytes said before they stop
 * making sense when truncated. */
static void test_request_deadline(void **state)
{
    (void)state;
    static uint8_t image[1 << 20];
    memset(image, 0xab, sizeof image);
    ProtobufCBinaryData imgs[2] = {{sizeof image, image}, {3, image}};
    Idunno__OnlineInfer in = IDUNNO__ONLINE_INFER__INIT;
    in.model = "resnet50";
    in.version = 3;
    in.n_images = 2;
    in.images = imgs;
    in.id = "r";
    in.key = 0x0123456789abcdefull;
    size_t n = idunno__online_infer__get_packed_size(&in);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    n = idunno__online_infer__pack(&in, buf);
    assert_int_equal(online_request_deadline_ms(buf, n), 0);
    in.deadline_ms = 45000;
    free(buf);
    n = idunno__online_infer__get_packed_size(&in);
    buf = malloc(n);
    assert_non_null(buf);
    n = idunno__online_infer__pack(&in, buf);
    assert_int_equal(online_request_deadline_ms(buf, n), 45000);
    /* Cut inside the first image: the rest is not there to read. */
    assert_int_equal(online_request_deadline_ms(buf, 100), 0);
    assert_int_equal(online_request_deadline_ms(buf, 0), 0);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_input_shapes),
        cmocka_unit_test(test_tensors_checked),
        cmocka_unit_test(test_request_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
