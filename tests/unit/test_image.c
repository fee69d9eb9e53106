/* test_image.c — decoding and preprocessing against known pixel values, and
 * bad images: corrupt, truncated, not an image, missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <png.h>
#include <turbojpeg.h>

#include "base/err.h"
#include "infer/image.h"

static uint8_t *make_png(const uint8_t *rgb, int w, int h, size_t *len)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    assert_true(png_image_write_to_memory(&img, NULL, &size, 0, rgb, 0, NULL));
    uint8_t *buf = malloc(size);
    assert_true(png_image_write_to_memory(&img, buf, &size, 0, rgb, 0, NULL));
    *len = size;
    return buf;
}

static uint8_t *make_jpeg(const uint8_t *rgb, int w, int h, size_t *len)
{
    tjhandle tj = tjInitCompress();
    unsigned char *out = NULL;
    unsigned long size = 0;
    assert_int_equal(tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &out, &size, TJSAMP_444, 100, 0), 0);
    uint8_t *copy = malloc(size);
    memcpy(copy, out, size);
    tjFree(out);
    tjDestroy(tj);
    *len = size;
    return copy;
}

/* A card as the engine gets it: resolved, today's crop of a square. */
static const struct model_card unit_prep = {.height = 8,
                                            .width = 8,
                                            .resize_side = 8,
                                            .scale = 1,
                                            .n_mean = 3,
                                            .n_std = 3,
                                            .mean = {0.5f, 0.4f, 0.3f},
                                            .std = {0.2f, 0.25f, 0.5f}};

static void test_solid_png_normalises_exactly(void **state)
{
    (void)state;
    int w = 20, h = 12;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        rgb[i * 3] = 200;
        rgb[i * 3 + 1] = 100;
        rgb[i * 3 + 2] = 0;
    }
    size_t len;
    uint8_t *png = make_png(rgb, w, h, &len);
    struct image_rgb img;
    char err[200];
    assert_int_equal(image_decode(png, len, &img, err, sizeof err), 0);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    float out[3 * 8 * 8];
    image_preprocess(&img, &unit_prep, out);
    const float want[3] = {(200 / 255.0f - 0.5f) / 0.2f, (100 / 255.0f - 0.4f) / 0.25f,
                           (0 - 0.3f) / 0.5f};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 64; i++)
            assert_float_equal(out[c * 64 + i], want[c], 1e-5);
    image_free(&img);
    free(png);
    free(rgb);
}

static void test_crop_takes_the_centre(void **state)
{
    (void)state;
    /* 4x2 image, shorter side already 2: no scaling, crop 2x2 from columns 1-2. */
    uint8_t rgb[4 * 2 * 3];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * 4 + x) * 3 + c] = (uint8_t)(10 * x + 100 * y + c);
    struct image_rgb img = {.width = 4, .height = 2, .pixels = rgb};
    struct model_card p = {
        .height = 2, .width = 2, .resize_side = 2, .mean = {0, 0, 0}, .std = {1, 1, 1}};
    float out[3 * 4];
    image_preprocess(&img, &p, out);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 2; x++)
                assert_float_equal(out[c * 4 + y * 2 + x] * 255.0f, 10 * (x + 1) + 100 * y + c,
                                   1e-3);
}

static void test_downscale_is_bilinear(void **state)
{
    (void)state;
    /* 4x4 to 2x2: each output sits between two source pixels in each axis. */
    uint8_t rgb[4 * 4 * 3];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * 4 + x) * 3 + c] = (uint8_t)(x * 40 + y * 8);
    struct image_rgb img = {.width = 4, .height = 4, .pixels = rgb};
    struct model_card p = {
        .height = 2, .width = 2, .resize_side = 2, .mean = {0, 0, 0}, .std = {1, 1, 1}};
    float out[3 * 4];
    image_preprocess(&img, &p, out);
    /* output (0,0) samples source (0.5, 0.5): mean of pixels (0..1, 0..1) */
    assert_float_equal(out[0] * 255.0f, (0 + 40 + 8 + 48) / 4.0f, 1e-3);
    /* output (1,1) samples source (2.5, 2.5) */
    assert_float_equal(out[3] * 255.0f, 2.5f * 40 + 2.5f * 8, 1e-3);
}

static void test_jpeg_roundtrip(void **state)
{
    (void)state;
    int w = 32, h = 16;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        rgb[i * 3] = 30;
        rgb[i * 3 + 1] = 140;
        rgb[i * 3 + 2] = 230;
    }
    size_t len;
    uint8_t *jpg = make_jpeg(rgb, w, h, &len);
    struct image_rgb img;
    char err[200];
    assert_int_equal(image_decode(jpg, len, &img, err, sizeof err), 0);
    assert_int_equal(img.width, w);
    for (int i = 0; i < w * h * 3; i++)
        assert_true(abs((int)img.pixels[i] - (int)rgb[i]) <= 2);
    image_free(&img);

    /* Truncated: an error, not a picture with a grey bottom. */
    int rc = image_decode(jpg, len / 2, &img, err, sizeof err);
    assert_int_equal(rc, ID_EIMAGE);
    assert_null(img.pixels);
    /* Corrupted entropy data. */
    for (size_t i = len / 2; i < len - 2; i += 3)
        jpg[i] ^= 0x5a;
    rc = image_decode(jpg, len, &img, err, sizeof err);
    assert_int_equal(rc, ID_EIMAGE);
    free(jpg);
    free(rgb);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    struct image_rgb img;
    char err[200];
    const uint8_t text[] = "this is not an image at all";
    assert_int_equal(image_decode(text, sizeof text, &img, err, sizeof err), ID_EIMAGE);
    assert_non_null(strstr(err, "not a JPEG or PNG"));
    assert_int_equal(image_decode(text, 0, &img, err, sizeof err), ID_EIMAGE);

    uint8_t rgb[8 * 8 * 3] = {0};
    size_t len;
    uint8_t *png = make_png(rgb, 8, 8, &len);
    assert_int_equal(image_decode(png, len - 20, &img, err, sizeof err), ID_EIMAGE);
    assert_int_equal(image_decode(png, 30, &img, err, sizeof err), ID_EIMAGE);
    free(png);

    float out[3 * 8 * 8];
    assert_int_equal(image_load_tensor("/nonexistent/x.png", &unit_prep, out, err, sizeof err),
                     ID_ENOTFOUND);
}

/* CRC-32 of PNG chunks (bitwise: a test needs no table). */
static uint32_t png_crc(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG that claims w x h pixels and holds none of them: what a
 * decompression bomb's header looks like. Refused from the header, with the
 * limit named, not after an allocation of w*h*3 bytes. */
static void test_pixel_limit(void **state)
{
    (void)state;
    assert_int_equal(image_max_pixels(), IMAGE_MAX_PIXELS);
    assert_int_equal(image_set_max_pixels(0), ID_EINVAL);
    assert_int_equal(image_set_max_pixels((uint64_t)IMAGE_MAX_PIXELS + 1), ID_EINVAL);

    uint8_t bomb[8 + 25 + 12 + 12];
    memcpy(bomb, "\x89PNG\r\n\x1a\n", 8);
    put32(bomb + 8, 13);
    memcpy(bomb + 12, "IHDR", 4);
    put32(bomb + 16, 8000);
    put32(bomb + 20, 6000); /* 48 megapixels */
    memcpy(bomb + 24, "\x08\x02\x00\x00\x00", 5);
    put32(bomb + 29, png_crc(bomb + 12, 17));
    put32(bomb + 33, 0); /* an empty IDAT: where the pixels would start */
    memcpy(bomb + 37, "IDAT", 4);
    put32(bomb + 41, png_crc(bomb + 37, 4));
    put32(bomb + 45, 0);
    memcpy(bomb + 49, "IEND", 4);
    put32(bomb + 53, png_crc(bomb + 49, 4));
    struct image_rgb img;
    char err[256];
    assert_int_equal(image_decode(bomb, sizeof bomb, &img, err, sizeof err), ID_EIMAGE);
    if (!strstr(err, "8000x6000 pixels refused"))
        fail_msg("the bomb was not refused from its header: %s", err);
    assert_non_null(strstr(err, "40000000"));
    assert_null(img.pixels);

    /* A lowered limit applies to both formats; at the limit is fine. */
    uint8_t rgb[20 * 20 * 3];
    memset(rgb, 99, sizeof rgb);
    size_t plen, jlen;
    uint8_t *png = make_png(rgb, 20, 20, &plen), *jpg = make_jpeg(rgb, 20, 20, &jlen);
    assert_int_equal(image_set_max_pixels(399), 0);
    assert_int_equal(image_decode(png, plen, &img, err, sizeof err), ID_EIMAGE);
    assert_non_null(strstr(err, "limit of 399"));
    assert_int_equal(image_decode(jpg, jlen, &img, err, sizeof err), ID_EIMAGE);
    assert_non_null(strstr(err, "JPEG of 20x20 pixels refused"));
    assert_int_equal(image_set_max_pixels(400), 0);
    assert_int_equal(image_decode(png, plen, &img, err, sizeof err), 0);
    image_free(&img);
    assert_int_equal(image_decode(jpg, jlen, &img, err, sizeof err), 0);
    image_free(&img);
    assert_int_equal(image_set_max_pixels(IMAGE_MAX_PIXELS), 0);
    free(png);
    free(jpg);
}

/* ---- the card's resize modes, layouts and channel orders, on fixed pixels -------------- */

/* A card that feeds pixel values through unchanged (scale 255, mean 0,
 * std 1), so the expected values below are plain pixel arithmetic. */
static struct model_card identity_card(int h, int w, enum card_resize mode)
{
    struct model_card c = {.height = h,
                           .width = w,
                           .resize = mode,
                           .resize_side = h < w ? h : w,
                           .scale = 255,
                           .n_mean = 3,
                           .n_std = 3,
                           .std = {1, 1, 1}};
    return c;
}

static void test_stretch_to_non_square(void **state)
{
    (void)state;
    /* 2x2 to 2 rows x 4 columns: rows exact, columns sampled at source x =
     * 0 (clamped from -0.25), 0.25, 0.75 and 1 (clamped from 1.25). */
    uint8_t rgb[2 * 2 * 3];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * 2 + x) * 3 + c] = (uint8_t)(100 * x + 10 * y + c);
    struct image_rgb img = {.width = 2, .height = 2, .pixels = rgb};
    struct model_card card = identity_card(2, 4, CARD_STRETCH);
    float out[3 * 2 * 4];
    image_preprocess(&img, &card, out);
    const float col[4] = {0, 25, 75, 100};
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 4; x++)
                assert_float_equal(out[c * 8 + y * 4 + x], col[x] + 10 * y + c, 1e-4);
}

static void test_pad_letterboxes(void **state)
{
    (void)state;
    /* 4 wide x 2 high into 4 x 4: scale 1, one pad row above and below */
    uint8_t rgb[4 * 2 * 3];
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 3; c++)
            rgb[i * 3 + c] = (uint8_t)(20 * i + c);
    struct image_rgb img = {.width = 4, .height = 2, .pixels = rgb};
    struct model_card card = identity_card(4, 4, CARD_PAD);
    card.pad_value = 7;
    float out[3 * 16];
    image_preprocess(&img, &card, out);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                float want = y == 0 || y == 3 ? 7 : 20 * ((y - 1) * 4 + x) + c;
                assert_float_equal(out[c * 16 + y * 4 + x], want, 1e-4);
            }
    /* the same picture on its side, 2 wide x 4 high: pad columns left and right */
    struct image_rgb tall = {.width = 2, .height = 4, .pixels = rgb};
    image_preprocess(&tall, &card, out);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            float want = x == 0 || x == 3 ? 7 : 20 * (y * 2 + x - 1);
            assert_float_equal(out[y * 4 + x], want, 1e-4);
        }
    /* 2x smaller: scaled up by 2 into the middle; the pad value is a pixel,
     * normalised like every other */
    uint8_t one[3] = {50, 60, 70};
    struct image_rgb dot = {.width = 1, .height = 1, .pixels = one};
    struct model_card norm = card;
    norm.scale = 1;
    norm.mean[0] = 0.5f;
    norm.std[0] = 0.25f;
    struct model_card wide = norm;
    wide.height = 2;
    image_preprocess(&dot, &wide, out);
    /* 1x1 into 2 rows x 4: scale 2, columns 1-2 are the picture */
    for (int x = 0; x < 4; x++) {
        float v = x == 0 || x == 3 ? 7 : 50;
        assert_float_equal(out[x], (v / 255.0f - 0.5f) / 0.25f, 1e-5);
    }
}

static void test_crop_non_square(void **state)
{
    (void)state;
    /* 6x6 into 2 rows x 4 columns with the shorter side to 4: scaled by 2/3
     * to 4x4, then rows 1-2 kept. Output (y, x) samples source
     * (1.5 x + 0.25, 1.5 (y + 1) + 0.25); the picture is linear in x and y,
     * so bilinear sampling gives it exactly. */
    uint8_t rgb[6 * 6 * 3];
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * 6 + x) * 3 + c] = (uint8_t)(10 * x + 20 * y + c);
    struct image_rgb img = {.width = 6, .height = 6, .pixels = rgb};
    struct model_card card = identity_card(2, 4, CARD_CROP);
    card.resize_side = 4;
    float out[3 * 8];
    image_preprocess(&img, &card, out);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 4; x++) {
                double fx = 1.5 * x + 0.25, fy = 1.5 * (y + 1) + 0.25;
                assert_float_equal(out[c * 8 + y * 4 + x], 10 * fx + 20 * fy + c, 1e-3);
            }
}

static void test_layouts_and_channel_orders(void **state)
{
    (void)state;
    uint8_t rgb[2 * 3] = {10, 20, 30, 40, 50, 60};
    struct image_rgb img = {.width = 2, .height = 1, .pixels = rgb};
    struct {
        enum card_layout layout;
        enum card_channels channels;
        float want[6];
    } cases[] = {
        {CARD_NCHW, CARD_RGB, {10, 40, 20, 50, 30, 60}},
        {CARD_NHWC, CARD_RGB, {10, 20, 30, 40, 50, 60}},
        {CARD_NCHW, CARD_BGR, {30, 60, 20, 50, 10, 40}},
        {CARD_NHWC, CARD_BGR, {30, 20, 10, 60, 50, 40}},
    };
    float out[6];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct model_card card = identity_card(1, 2, CARD_STRETCH);
        card.layout = cases[i].layout;
        card.channels = cases[i].channels;
        image_preprocess(&img, &card, out);
        for (int k = 0; k < 6; k++)
            assert_float_equal(out[k], cases[i].want[k], 1e-4);
    }
    /* gray: BT.601 luma, one value per pixel, either layout */
    for (int l = 0; l < 2; l++) {
        struct model_card card = identity_card(1, 2, CARD_STRETCH);
        card.channels = CARD_GRAY;
        card.layout = l ? CARD_NHWC : CARD_NCHW;
        card.n_mean = card.n_std = 1;
        assert_int_equal(image_tensor_len(&card), 2);
        image_preprocess(&img, &card, out);
        assert_float_equal(out[0], 0.299 * 10 + 0.587 * 20 + 0.114 * 30, 1e-3);
        assert_float_equal(out[1], 0.299 * 40 + 0.587 * 50 + 0.114 * 60, 1e-3);
    }
    /* scale 255 with its own statistics: (v - 127.5) / 127.5 */
    struct model_card card = identity_card(1, 2, CARD_STRETCH);
    for (int c = 0; c < 3; c++) {
        card.mean[c] = 127.5f;
        card.std[c] = 127.5f;
    }
    image_preprocess(&img, &card, out);
    assert_float_equal(out[0], (10 - 127.5) / 127.5, 1e-5);
    assert_float_equal(out[5], (60 - 127.5) / 127.5, 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_solid_png_normalises_exactly),
        cmocka_unit_test(test_crop_takes_the_centre),
        cmocka_unit_test(test_downscale_is_bilinear),
        cmocka_unit_test(test_jpeg_roundtrip),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_pixel_limit),
        cmocka_unit_test(test_stretch_to_non_square),
        cmocka_unit_test(test_pad_letterboxes),
        cmocka_unit_test(test_crop_non_square),
        cmocka_unit_test(test_layouts_and_channel_orders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
