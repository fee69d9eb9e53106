/* card.h — the model card: how images become a model's input and how its
 * output becomes a result (input size, layout, channel order, pixel scale,
 * mean and std; resize mode; which output, what it holds, top-k; labels).
 *
 * A card is assembled from layers, each giving some fields: the ONNX
 * metadata (lowest), a JSON file, command-line flags (highest), merged with
 * card_merge; card_resolve then fills what no layer gave from the model's
 * declared shapes and the defaults, and refuses anything inconsistent with
 * the model. Every refusal names the field. A resolved card serialises to
 * JSON (card_to_json) and parses back to an equal card, so it can be shown
 * and stored as it is.
 *
 * Pure: no I/O except card_load_file and card_load_labels, which read the
 * files they are given. */
#ifndef IDUNNO_INFER_CARD_H
#define IDUNNO_INFER_CARD_H

#include <stddef.h>
#include <stdint.h>

#include "infer/backend.h"

/* At most this many top-k entries or raw values per result: a result is a
 * fixed-size record, carried whole between processes. */
#define CARD_MAX_K 64
/* Labels longer than this are refused: a label is shown next to an index. */
#define CARD_MAX_LABEL 256

/* The zero value of every enum is today's behaviour, so a card nobody filled
 * in means what the engine always did. */
enum card_layout { CARD_NCHW = 0, CARD_NHWC };
enum card_channels { CARD_RGB = 0, CARD_BGR, CARD_GRAY };
enum card_resize { CARD_CROP = 0, CARD_STRETCH, CARD_PAD };
enum card_output { CARD_LOGITS = 0, CARD_PROBABILITIES, CARD_RAW };

/* Which fields a layer gives (struct model_card.given). */
enum card_field {
    CARD_F_SIZE = 1u << 0,
    CARD_F_LAYOUT = 1u << 1,
    CARD_F_CHANNELS = 1u << 2,
    CARD_F_SCALE = 1u << 3,
    CARD_F_MEAN = 1u << 4,
    CARD_F_STD = 1u << 5,
    CARD_F_RESIZE = 1u << 6,
    CARD_F_RESIZE_SIDE = 1u << 7,
    CARD_F_PAD_VALUE = 1u << 8,
    CARD_F_OUTPUT = 1u << 9,
    CARD_F_OUTPUT_NAME = 1u << 10,
    CARD_F_TOP_K = 1u << 11,
    CARD_F_LABELS = 1u << 12,
};
#define CARD_F_ALL ((1u << 13) - 1)

struct model_card {
    unsigned given; /* CARD_F_* of the fields below that hold a value */
    int height, width;
    enum card_layout layout;
    enum card_channels channels;
    int scale;         /* 1: a pixel v is fed as v/255 (0..1); 255: as v (0..255) */
    int n_mean, n_std; /* one per channel: 3, or 1 for grayscale */
    float mean[3], std[3];
    enum card_resize resize;
    int resize_side; /* crop: the shorter side is scaled to this, then the centre cut */
    int pad_value;   /* pad: the letterbox's pixel value, 0..255 before scaling */
    enum card_output output;
    char output_name[64];
    int top_k; /* entries per result; not for raw output */
    size_t n_labels;
    char **labels; /* owned; labels[i] names class i */
};

/* Releases the labels; the card is then empty (given = 0). */
void card_free(struct model_card *c);
/* A deep copy of src into *dst (which is overwritten, not freed). 0 or ID_ENOMEM. */
int card_copy(struct model_card *dst, const struct model_card *src);
/* Every field `over` gives replaces dst's. 0 or ID_ENOMEM. */
int card_merge(struct model_card *dst, const struct model_card *over);
/* 1 if a and b give the same fields with the same values. */
int card_equal(const struct model_card *a, const struct model_card *b);

/* Parses a card from JSON text: one object whose keys are the field names
 * (size "HxW", layout, channels, scale, mean, std, resize, resize_side,
 * pad_value, output, output_name, top_k, labels as an array of strings) or
 * labels_file, a path relative to base_dir (NULL: refused). Unknown keys,
 * wrong types and bad values are refused. 0 or ID_EINVAL with errmsg naming
 * the field; *out is filled (and owned by the caller) only on success. */
int card_parse_json(const char *text, size_t len, const char *base_dir, struct model_card *out,
                    char *errmsg, size_t errlen);
/* Reads and parses a JSON card file; labels_file is relative to its folder. */
int card_load_file(const char *path, struct model_card *out, char *errmsg, size_t errlen);

/* One field from its text form, as the command line gives it: name is the
 * flag without dashes (size, resize, mean, std, labels (a file), output,
 * layout, channels, scale, top-k, pad-value, output-name, resize-side).
 * 0 or ID_EINVAL with errmsg naming the field. */
int card_set(struct model_card *c, const char *name, const char *value, char *errmsg,
             size_t errlen);
/* Labels from a text file, one per line (a final newline is optional, CR LF
 * is accepted); an empty line or an over-long label is refused. */
int card_load_labels(struct model_card *c, const char *path, char *errmsg, size_t errlen);

/* One ONNX metadata entry (idunno.input_size, idunno.resize, idunno.mean,
 * idunno.std); other keys are ignored. A malformed value is refused naming
 * the key, never replaced by a default. 0 or ID_EINVAL. */
int card_from_metadata(struct model_card *c, const char *key, const char *value, char *errmsg,
                       size_t errlen);

/* Completes c against what the model declares: fields no layer gave come
 * from the model's shapes, then the defaults (crop, NCHW, RGB, scale 1,
 * ImageNet's mean and std, logits, top-k min(5, classes)); then everything is
 * checked against the model. On success every field is given, *output is the
 * index of the output tensor to read and *classes its per-image width.
 * 0 or ID_EMODEL with errmsg naming the field. */
int card_resolve(struct model_card *c, const struct infer_io *io, int *output, int *classes,
                 char *errmsg, size_t errlen);

/* The card as one JSON object (given fields only), malloc'd; NULL if out of
 * memory. card_parse_json of it gives back an equal card. */
char *card_to_json(const struct model_card *c);

/* Names of the enum values, as JSON and the flags spell them. */
const char *card_layout_name(enum card_layout v);
const char *card_channels_name(enum card_channels v);
const char *card_resize_name(enum card_resize v);
const char *card_output_name(enum card_output v);

#endif
