/* image.c — the image pipeline of image.h. */
#include "infer/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "base/array.h"
#include "base/err.h"

static _Atomic uint64_t max_pixels = IMAGE_MAX_PIXELS;

int image_set_max_pixels(uint64_t max)
{
    if (max == 0 || max > IMAGE_MAX_PIXELS)
        return ID_EINVAL;
    atomic_store(&max_pixels, max);
    return 0;
}

uint64_t image_max_pixels(void)
{
    return atomic_load(&max_pixels);
}

/* The check both decoders make from the header alone. */
static int too_many_pixels(const char *kind, uint64_t w, uint64_t h, char *err, size_t el)
{
    uint64_t max = image_max_pixels();
    if (w && h && w * h <= max)
        return 0;
    snprintf(err, el, "%s of %llux%llu pixels refused: more than this node's limit of %llu pixels",
             kind, (unsigned long long)w, (unsigned long long)h, (unsigned long long)max);
    return 1;
}

static int decode_jpeg(const uint8_t *data, size_t len, struct image_rgb *out, char *err, size_t el)
{
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        snprintf(err, el, "cannot start the JPEG decoder");
        return ID_ENOMEM;
    }
    int w, h, subsamp, colorspace;
    int rc = ID_EIMAGE;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &colorspace) < 0) {
        snprintf(err, el, "not a valid JPEG: %s", tjGetErrorStr2(tj));
        goto out;
    }
    if (w <= 0 || h <= 0 || too_many_pixels("JPEG", (uint64_t)w, (uint64_t)h, err, el))
        goto out;
    out->pixels = malloc((size_t)w * (size_t)h * 3);
    if (!out->pixels) {
        rc = ID_ENOMEM;
        goto out;
    }
    /* Stop on warnings too: a truncated file decodes "successfully" with a grey
     * bottom otherwise, and a wrong answer is worse than an error. */
    if (tjDecompress2(tj, data, (unsigned long)len, out->pixels, w, 0, h, TJPF_RGB,
                      TJFLAG_STOPONWARNING) < 0) {
        snprintf(err, el, "corrupt or truncated JPEG: %s", tjGetErrorStr2(tj));
        free(out->pixels);
        out->pixels = NULL;
        goto out;
    }
    out->width = w;
    out->height = h;
    rc = 0;
out:
    tjDestroy(tj);
    return rc;
}

static int decode_png(const uint8_t *data, size_t len, struct image_rgb *out, char *err, size_t el)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, len)) {
        snprintf(err, el, "not a valid PNG: %s", img.message);
        return ID_EIMAGE;
    }
    if (too_many_pixels("PNG", img.width, img.height, err, el)) {
        png_image_free(&img);
        return ID_EIMAGE;
    }
    img.format = PNG_FORMAT_RGB;
    out->pixels = malloc(PNG_IMAGE_SIZE(img));
    if (!out->pixels) {
        png_image_free(&img);
        return ID_ENOMEM;
    }
    if (!png_image_finish_read(&img, NULL, out->pixels, 0, NULL)) {
        snprintf(err, el, "corrupt or truncated PNG: %s", img.message);
        free(out->pixels);
        out->pixels = NULL;
        png_image_free(&img);
        return ID_EIMAGE;
    }
    out->width = (int)img.width;
    out->height = (int)img.height;
    return 0;
}

int image_decode(const uint8_t *data, size_t len, struct image_rgb *out, char *errmsg,
                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(data, len, out, errmsg, errlen);
    if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
        return decode_png(data, len, out, errmsg, errlen);
    snprintf(errmsg, errlen, "not a JPEG or PNG image");
    return ID_EIMAGE;
}

void image_free(struct image_rgb *img)
{
    free(img->pixels);
    img->pixels = NULL;
}

size_t image_tensor_len(const struct model_card *c)
{
    return (size_t)c->height * (size_t)c->width * (c->channels == CARD_GRAY ? 1u : 3u);
}

/* Where the source image lands in the H x W output: scaled to rw x rh, its
 * top-left corner at (ox, oy) (negative when a crop cuts it). */
struct placement {
    int rw, rh, ox, oy;
};

static struct placement place(int w, int h, const struct model_card *c)
{
    struct placement p = {c->width, c->height, 0, 0};
    if (c->resize == CARD_STRETCH)
        return p;
    if (c->resize == CARD_PAD) {
        double s = fmin((double)c->width / w, (double)c->height / h);
        p.rw = (int)lround(w * s);
        p.rh = (int)lround(h * s);
        p.rw = p.rw < 1 ? 1 : p.rw > c->width ? c->width : p.rw;
        p.rh = p.rh < 1 ? 1 : p.rh > c->height ? c->height : p.rh;
        p.ox = (c->width - p.rw) / 2;
        p.oy = (c->height - p.rh) / 2;
        return p;
    }
    /* crop: the shorter side to resize_side, but never smaller than the
     * output in either direction (the aspect ratio is kept). */
    double s = (double)c->resize_side / (w < h ? w : h);
    s = fmax(s, fmax((double)c->width / w, (double)c->height / h));
    p.rw = (int)lround(w * s);
    p.rh = (int)lround(h * s);
    if (p.rw < c->width)
        p.rw = c->width;
    if (p.rh < c->height)
        p.rh = c->height;
    p.ox = -((p.rw - c->width) / 2);
    p.oy = -((p.rh - c->height) / 2);
    return p;
}

/* One pass: each output pixel maps to a point of the placed, scaled image,
 * which maps back to the source with half-pixel centres; bilinear there.
 * Output pixels outside the placed image (pad) take the pad value. */
void image_preprocess(const struct image_rgb *img, const struct model_card *c, float *out)
{
    int w = img->width, h = img->height, ow = c->width, oh = c->height;
    struct placement p = place(w, h, c);
    double sx = (double)w / p.rw, sy = (double)h / p.rh;
    int nch = c->channels == CARD_GRAY ? 1 : 3;
    size_t plane = (size_t)ow * (size_t)oh;
    float k = c->scale == 255 ? 1.0f : 255.0f;
    float inv[3], sub[3];
    for (int ch = 0; ch < nch; ch++) {
        inv[ch] = 1.0f / (k * c->std[ch]);
        sub[ch] = c->mean[ch] / c->std[ch];
    }
    for (int y = 0; y < oh; y++) {
        int yr = y - p.oy;
        int y_out = yr < 0 || yr >= p.rh;
        double fy = (yr + 0.5) * sy - 0.5;
        if (fy < 0)
            fy = 0;
        int y0 = (int)fy;
        if (y0 > h - 1)
            y0 = h - 1;
        int y1 = y0 + 1 < h ? y0 + 1 : h - 1;
        float wy = (float)(fy - y0);
        const uint8_t *r0 = img->pixels + (size_t)y0 * w * 3,
                      *r1 = img->pixels + (size_t)y1 * w * 3;
        for (int x = 0; x < ow; x++) {
            int xr = x - p.ox;
            float rgb[3];
            if (y_out || xr < 0 || xr >= p.rw) {
                rgb[0] = rgb[1] = rgb[2] = (float)c->pad_value;
            } else {
                double fx = (xr + 0.5) * sx - 0.5;
                if (fx < 0)
                    fx = 0;
                int x0 = (int)fx;
                if (x0 > w - 1)
                    x0 = w - 1;
                int x1 = x0 + 1 < w ? x0 + 1 : w - 1;
                float wx = (float)(fx - x0);
                for (int ch = 0; ch < 3; ch++) {
                    float a = r0[x0 * 3 + ch] + (r0[x1 * 3 + ch] - r0[x0 * 3 + ch]) * wx;
                    float b = r1[x0 * 3 + ch] + (r1[x1 * 3 + ch] - r1[x0 * 3 + ch]) * wx;
                    rgb[ch] = a + (b - a) * wy;
                }
            }
            float v[3];
            if (c->channels == CARD_GRAY) {
                /* ITU-R BT.601 luma, what PIL's convert("L") computes. */
                v[0] = 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2];
            } else {
                int bgr = c->channels == CARD_BGR;
                for (int ch = 0; ch < 3; ch++)
                    v[ch] = rgb[bgr ? 2 - ch : ch];
            }
            size_t px = (size_t)y * ow + x;
            for (int ch = 0; ch < nch; ch++) {
                float o = v[ch] * inv[ch] - sub[ch];
                if (c->layout == CARD_NHWC)
                    out[px * nch + ch] = o;
                else
                    out[ch * plane + px] = o;
            }
        }
    }
}

int image_bytes_tensor(const uint8_t *data, size_t len, const struct model_card *c, float *out,
                       char *errmsg, size_t errlen)
{
    struct image_rgb img;
    int rc = image_decode(data, len, &img, errmsg, errlen);
    if (rc == 0) {
        image_preprocess(&img, c, out);
        image_free(&img);
    }
    return rc;
}

int image_load_tensor(const char *path, const struct model_card *prep, float *out, char *errmsg,
                      size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(errmsg, errlen, "cannot open %s: %s", path, strerror(e));
        return e == ENOENT ? ID_ENOTFOUND : ID_EIO;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap && cap >= 256u * 1024 * 1024) {
            snprintf(errmsg, errlen, "%s is too large to be an image", path);
            rc = ID_EIMAGE;
            break;
        }
        if (ARRAY_RESERVE(buf, cap, len, 1, 1 << 16) < 0) {
            rc = ID_ENOMEM;
            break;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                snprintf(errmsg, errlen, "cannot read %s", path);
                rc = ID_EIO;
            }
            break;
        }
    }
    fclose(f);
    if (rc == 0)
        rc = image_bytes_tensor(buf, len, prep, out, errmsg, errlen);
    free(buf);
    return rc;
}
