/* image.h — decoding and preprocessing of one image into a model's input:
 * JPEG (turbojpeg) or PNG (libpng) → RGB → bilinear resize of the shorter side →
 * centre crop → per-channel (v/255 - mean) / std → planar float (CHW).
 * Blocking and thread-safe: runs on worker threads. */
#ifndef IDUNNO_INFER_IMAGE_H
#define IDUNNO_INFER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Pixels beyond this are refused, from the image's header before anything
 * is decoded: a 190 KiB PNG can claim a picture that takes 192 MiB to hold
 * (a decompression bomb, not a photo). 40 megapixels is past any camera a
 * classifier is fed from; a node may lower it (--max-image-pixels). */
#define IMAGE_MAX_PIXELS 40000000u

/* Sets the limit for every later decode in this process (1..IMAGE_MAX_PIXELS).
 * Returns 0 or ID_EINVAL. Thread-safe. */
int image_set_max_pixels(uint64_t max);
uint64_t image_max_pixels(void);

struct image_prep {
    int resize; /* shorter side is scaled to this */
    int crop;   /* then a crop x crop square from the centre */
    float mean[3];
    float std[3];
};

struct image_rgb {
    int width, height;
    uint8_t *pixels; /* width*height*3, row-major RGB; owned */
};

/* Decodes JPEG or PNG bytes (sniffed by signature). Truncated or corrupt data is
 * an error, never a partial picture. Returns 0 or ID_EIMAGE / ID_ENOMEM with the
 * reason in errmsg. */
int image_decode(const uint8_t *data, size_t len, struct image_rgb *out, char *errmsg,
                 size_t errlen);
void image_free(struct image_rgb *img);

/* Resizes, crops and normalises img into out[3 * crop * crop] (CHW). */
void image_preprocess(const struct image_rgb *img, const struct image_prep *prep, float *out);

/* Reads a file and does both. Returns 0 or ID_ENOTFOUND / ID_EIO / ID_EIMAGE. */
int image_load_tensor(const char *path, const struct image_prep *prep, float *out, char *errmsg,
                      size_t errlen);

#endif
