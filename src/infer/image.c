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

/* One pass: each output pixel of the crop maps to a point of the resized image,
 * which maps back to the source with half-pixel centres; bilinear there. */
void image_preprocess(const struct image_rgb *img, const struct image_prep *p, float *out)
{
    int w = img->width, h = img->height;
    double scale = (double)p->resize / (w < h ? w : h);
    int rw = (int)lround(w * scale), rh = (int)lround(h * scale);
    if (rw < p->crop)
        rw = p->crop;
    if (rh < p->crop)
        rh = p->crop;
    int left = (rw - p->crop) / 2, top = (rh - p->crop) / 2;
    double sx = (double)w / rw, sy = (double)h / rh;
    size_t plane = (size_t)p->crop * (size_t)p->crop;
    float inv[3], sub[3];
    for (int c = 0; c < 3; c++) {
        inv[c] = 1.0f / (255.0f * p->std[c]);
        sub[c] = p->mean[c] / p->std[c];
    }
    for (int y = 0; y < p->crop; y++) {
        double fy = (y + top + 0.5) * sy - 0.5;
        if (fy < 0)
            fy = 0;
        int y0 = (int)fy;
        if (y0 > h - 1)
            y0 = h - 1;
        int y1 = y0 + 1 < h ? y0 + 1 : h - 1;
        float wy = (float)(fy - y0);
        const uint8_t *r0 = img->pixels + (size_t)y0 * w * 3,
                      *r1 = img->pixels + (size_t)y1 * w * 3;
        for (int x = 0; x < p->crop; x++) {
            double fx = (x + left + 0.5) * sx - 0.5;
            if (fx < 0)
                fx = 0;
            int x0 = (int)fx;
            if (x0 > w - 1)
                x0 = w - 1;
            int x1 = x0 + 1 < w ? x0 + 1 : w - 1;
            float wx = (float)(fx - x0);
            for (int c = 0; c < 3; c++) {
                float a = r0[x0 * 3 + c] + (r0[x1 * 3 + c] - r0[x0 * 3 + c]) * wx;
                float b = r1[x0 * 3 + c] + (r1[x1 * 3 + c] - r1[x0 * 3 + c]) * wx;
                float v = a + (b - a) * wy;
                out[c * plane + (size_t)y * p->crop + x] = v * inv[c] - sub[c];
            }
        }
    }
}

int image_load_tensor(const char *path, const struct image_prep *prep, float *out, char *errmsg,
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
    if (rc == 0) {
        struct image_rgb img;
        rc = image_decode(buf, len, &img, errmsg, errlen);
        if (rc == 0) {
            image_preprocess(&img, prep, out);
            image_free(&img);
        }
    }
    free(buf);
    return rc;
}
