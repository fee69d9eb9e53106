/* image.h — decoding and preprocessing of one image into a model's input, as
 * its card (card.h) says: JPEG (turbojpeg) or PNG (libpng) → RGB → bilinear
 * resize to H x W (crop: shorter side to the card's side, centre cut;
 * stretch: to exactly H x W; pad: aspect kept, letterboxed) → RGB, BGR or
 * gray → per-channel (v/k - mean) / std with k = 255 or 1 → NCHW or NHWC.
 * Blocking and thread-safe: runs on worker threads. */
#ifndef IDUNNO_INFER_IMAGE_H
#define IDUNNO_INFER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "infer/card.h"

/* Pixels beyond this are refused, from the image's header before anything
 * is decoded: a 190 KiB PNG can claim a picture that takes 192 MiB to hold
 * (a decompression bomb, not a photo). 40 megapixels is past any camera a
 * classifier is fed from; a node may lower it (--max-image-pixels). */
#define IMAGE_MAX_PIXELS 40000000u

/* Sets the limit for every later decode in this process (1..IMAGE_MAX_PIXELS).
 * Returns 0 or ID_EINVAL. Thread-safe. */
int image_set_max_pixels(uint64_t max);
uint64_t image_max_pixels(void);

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

/* Floats one image takes under card c: height x width x channels. */
size_t image_tensor_len(const struct model_card *c);

/* Resizes, converts and normalises img into out[image_tensor_len(c)], as the
 * resolved card c says (its size, resize, resize_side, pad_value, layout,
 * channels, scale, mean and std; a scale other than 255 means 1). */
void image_preprocess(const struct image_rgb *img, const struct model_card *c, float *out);

/* Decodes an encoded image in memory and preprocesses it into out. Returns 0
 * or ID_EIMAGE. */
int image_bytes_tensor(const uint8_t *data, size_t len, const struct model_card *c, float *out,
                       char *errmsg, size_t errlen);

/* Reads a file and does both. Returns 0 or ID_ENOTFOUND / ID_EIO / ID_EIMAGE. */
int image_load_tensor(const char *path, const struct model_card *c, float *out, char *errmsg,
                      size_t errlen);

#endif
