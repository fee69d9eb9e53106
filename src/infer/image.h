/* image.h — decoding and preprocessing of one image into a model's input:
 * JPEG (turbojpeg) or PNG (libpng) → RGB → bilinear resize of the shorter side →
 * centre crop → per-channel (v/255 - mean) / std → planar float (CHW).
 * Blocking and thread-safe: runs on worker threads. */
#ifndef IDUNNO_INFER_IMAGE_H
#define IDUNNO_INFER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Pixels beyond this are refused (a decompression bomb, not a photo). */
#define IMAGE_MAX_PIXELS (64u * 1024u * 1024u)

struct image_prep {
    int resize;   /* shorter side is scaled to this */
    int crop;     /* then a crop x crop square from the centre */
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
int image_decode(const uint8_t *data, size_t len, struct image_rgb *out, char *errmsg, size_t errlen);
void image_free(struct image_rgb *img);

/* Resizes, crops and normalises img into out[3 * crop * crop] (CHW). */
void image_preprocess(const struct image_rgb *img, const struct image_prep *prep, float *out);

/* Reads a file and does both. Returns 0 or ID_ENOTFOUND / ID_EIO / ID_EIMAGE. */
int image_load_tensor(const char *path, const struct image_prep *prep, float *out, char *errmsg,
                      size_t errlen);

#endif
