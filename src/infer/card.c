/* card.c — the model card (card.h): parsing from JSON, flags and ONNX
 * metadata, merging, resolving against a model's shapes, serialising. JSON
 * goes through jansson; every value is then checked here, since jansson only
 * knows that it is JSON. */
#include "infer/card.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
/* A grayscale input has no ImageNet statistics of its own: the mean of the
 * three channels' is the usual stand-in. */
static const float gray_mean = 0.449f, gray_std = 0.226f;

static const char *const layout_names[] = {"nchw", "nhwc"};
static const char *const channels_names[] = {"rgb", "bgr", "gray"};
static const char *const resize_names[] = {"crop", "stretch", "pad"};
static const char *const output_names[] = {"logits", "probabilities", "raw"};
#define NAMES(a) (int)(sizeof a / sizeof a[0])

const char *card_layout_name(enum card_layout v)
{
    return (int)v >= 0 && (int)v < NAMES(layout_names) ? layout_names[v] : "?";
}
const char *card_channels_name(enum card_channels v)
{
    return (int)v >= 0 && (int)v < NAMES(channels_names) ? channels_names[v] : "?";
}
const char *card_resize_name(enum card_resize v)
{
    return (int)v >= 0 && (int)v < NAMES(resize_names) ? resize_names[v] : "?";
}
const char *card_output_name(enum card_output v)
{
    return (int)v >= 0 && (int)v < NAMES(output_names) ? output_names[v] : "?";
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t el, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, el, fmt, ap);
    va_end(ap);
    return ID_EINVAL;
}

/* ---- ownership -------------------------------------------------------------------------- */

static void free_labels(char **labels, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
}

void card_free(struct model_card *c)
{
    free_labels(c->labels, c->n_labels);
    memset(c, 0, sizeof *c);
}

static int copy_labels(char ***dst, char *const *src, size_t n)
{
    *dst = NULL;
    if (!n)
        return 0;
    char **l = calloc(n, sizeof *l);
    if (!l)
        return ID_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        l[i] = strdup(src[i]);
        if (!l[i]) {
            free_labels(l, i);
            return ID_ENOMEM;
        }
    }
    *dst = l;
    return 0;
}

int card_copy(struct model_card *dst, const struct model_card *src)
{
    *dst = *src;
    if (copy_labels(&dst->labels, src->labels, src->n_labels) < 0) {
        memset(dst, 0, sizeof *dst);
        return ID_ENOMEM;
    }
    return 0;
}

int card_merge(struct model_card *dst, const struct model_card *o)
{
    unsigned g = o->given;
    if (g & CARD_F_LABELS) {
        char **l;
        if (copy_labels(&l, o->labels, o->n_labels) < 0)
            return ID_ENOMEM;
        free_labels(dst->labels, dst->n_labels);
        dst->labels = l;
        dst->n_labels = o->n_labels;
    }
    if (g & CARD_F_SIZE) {
        dst->height = o->height;
        dst->width = o->width;
    }
    if (g & CARD_F_LAYOUT)
        dst->layout = o->layout;
    if (g & CARD_F_CHANNELS)
        dst->channels = o->channels;
    if (g & CARD_F_SCALE)
        dst->scale = o->scale;
    if (g & CARD_F_MEAN) {
        dst->n_mean = o->n_mean;
        memcpy(dst->mean, o->mean, sizeof dst->mean);
    }
    if (g & CARD_F_STD) {
        dst->n_std = o->n_std;
        memcpy(dst->std, o->std, sizeof dst->std);
    }
    if (g & CARD_F_RESIZE)
        dst->resize = o->resize;
    if (g & CARD_F_RESIZE_SIDE)
        dst->resize_side = o->resize_side;
    if (g & CARD_F_PAD_VALUE)
        dst->pad_value = o->pad_value;
    if (g & CARD_F_OUTPUT)
        dst->output = o->output;
    if (g & CARD_F_OUTPUT_NAME)
        memcpy(dst->output_name, o->output_name, sizeof dst->output_name);
    if (g & CARD_F_TOP_K)
        dst->top_k = o->top_k;
    dst->given |= g;
    return 0;
}

int card_equal(const struct model_card *a, const struct model_card *b)
{
    unsigned g = a->given;
    if (g != b->given)
        return 0;
    if ((g & CARD_F_SIZE) && (a->height != b->height || a->width != b->width))
        return 0;
    if ((g & CARD_F_LAYOUT) && a->layout != b->layout)
        return 0;
    if ((g & CARD_F_CHANNELS) && a->channels != b->channels)
        return 0;
    if ((g & CARD_F_SCALE) && a->scale != b->scale)
        return 0;
    if ((g & CARD_F_MEAN) && (a->n_mean != b->n_mean ||
                              memcmp(a->mean, b->mean, (size_t)a->n_mean * sizeof(float)) != 0))
        return 0;
    if ((g & CARD_F_STD) &&
        (a->n_std != b->n_std || memcmp(a->std, b->std, (size_t)a->n_std * sizeof(float)) != 0))
        return 0;
    if ((g & CARD_F_RESIZE) && a->resize != b->resize)
        return 0;
    if ((g & CARD_F_RESIZE_SIDE) && a->resize_side != b->resize_side)
        return 0;
    if ((g & CARD_F_PAD_VALUE) && a->pad_value != b->pad_value)
        return 0;
    if ((g & CARD_F_OUTPUT) && a->output != b->output)
        return 0;
    if ((g & CARD_F_OUTPUT_NAME) && strcmp(a->output_name, b->output_name) != 0)
        return 0;
    if ((g & CARD_F_TOP_K) && a->top_k != b->top_k)
        return 0;
    if (g & CARD_F_LABELS) {
        if (a->n_labels != b->n_labels)
            return 0;
        for (size_t i = 0; i < a->n_labels; i++)
            if (strcmp(a->labels[i], b->labels[i]) != 0)
                return 0;
    }
    return 1;
}

/* ---- values from text ------------------------------------------------------------------- */

static int find_name(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* A whole decimal integer in [lo, hi], nothing before or after it. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    if (!s || !*s || *s == ' ' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* "HxW", each 1..INFER_MAX_SIDE. */
static int parse_size(const char *s, int *h, int *w)
{
    const char *x = s ? strchr(s, 'x') : NULL;
    if (!x || x == s || strlen(x) > 16 || (size_t)(x - s) > 16)
        return -1;
    char hs[17];
    memcpy(hs, s, (size_t)(x - s));
    hs[x - s] = 0;
    return parse_int(hs, 1, INFER_MAX_SIDE, h) < 0 || parse_int(x + 1, 1, INFER_MAX_SIDE, w) < 0
               ? -1
               : 0;
}

/* "a,b,c" or "a": finite floats, 1 or 3 of them. */
static int parse_floats(const char *s, float out[3], int *n)
{
    int k = 0;
    if (!s)
        return -1;
    for (;;) {
        if (k == 3 || !*s || *s == ' ' || *s == ',')
            return -1;
        char *end;
        errno = 0;
        float v = strtof(s, &end);
        if (end == s || errno || !isfinite(v))
            return -1;
        out[k++] = v;
        if (!*end)
            break;
        if (*end != ',')
            return -1;
        s = end + 1;
    }
    if (k != 1 && k != 3)
        return -1;
    *n = k;
    return 0;
}

static int check_stats(const char *field, const float *v, int n, int positive, char *err, size_t el)
{
    for (int i = 0; i < n; i++)
        if (positive && !(v[i] > 0))
            return fail(err, el, "%s: every value must be above 0", field);
    return 0;
}

static int set_labels(struct model_card *c, char **labels, size_t n)
{
    free_labels(c->labels, c->n_labels);
    c->labels = labels;
    c->n_labels = n;
    c->given |= CARD_F_LABELS;
    return 0;
}

static int label_ok(const char *s, size_t len, char *err, size_t el, size_t line)
{
    if (len == 0)
        return fail(err, el, "labels: label %zu is empty", line);
    if (len > CARD_MAX_LABEL)
        return fail(err, el, "labels: label %zu is longer than %d bytes", line, CARD_MAX_LABEL);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(err, el, "labels: label %zu holds a control character", line);
    return 0;
}

int card_load_labels(struct model_card *c, const char *path, char *err, size_t el)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, el, "labels: cannot open %s: %s", path, strerror(errno));
    char **labels = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        if (len && line[len - 1] == '\r')
            line[--len] = 0;
        if ((rc = label_ok(line, (size_t)len, err, el, n + 1)))
            break;
        if (n == INFER_MAX_CLASSES) {
            rc = fail(err, el, "labels: more than %d labels", INFER_MAX_CLASSES);
            break;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **l = realloc(labels, nc * sizeof *l);
            if (!l) {
                rc = ID_ENOMEM;
                break;
            }
            labels = l;
            cap = nc;
        }
        if (!(labels[n] = strdup(line))) {
            rc = ID_ENOMEM;
            break;
        }
        n++;
    }
    free(line);
    if (!rc && ferror(f))
        rc = fail(err, el, "labels: cannot read %s", path);
    fclose(f);
    if (!rc && n == 0)
        rc = fail(err, el, "labels: %s holds no labels", path);
    if (rc) {
        free_labels(labels, n);
        return rc;
    }
    return set_labels(c, labels, n);
}

int card_set(struct model_card *c, const char *name, const char *v, char *err, size_t el)
{
    int i;
    if (strcmp(name, "size") == 0) {
        int h, w;
        if (parse_size(v, &h, &w) < 0)
            return fail(err, el, "size: '%s' is not HxW (each 1 to %d)", v, INFER_MAX_SIDE);
        c->height = h;
        c->width = w;
        c->given |= CARD_F_SIZE;
    } else if (strcmp(name, "layout") == 0) {
        if ((i = find_name(layout_names, NAMES(layout_names), v)) < 0)
            return fail(err, el, "layout: '%s' is not nchw or nhwc", v);
        c->layout = (enum card_layout)i;
        c->given |= CARD_F_LAYOUT;
    } else if (strcmp(name, "channels") == 0) {
        if ((i = find_name(channels_names, NAMES(channels_names), v)) < 0)
            return fail(err, el, "channels: '%s' is not rgb, bgr or gray", v);
        c->channels = (enum card_channels)i;
        c->given |= CARD_F_CHANNELS;
    } else if (strcmp(name, "scale") == 0) {
        if (parse_int(v, 1, 255, &i) < 0 || (i != 1 && i != 255))
            return fail(err, el, "scale: '%s' is not 1 (pixels as 0..1) or 255 (as 0..255)", v);
        c->scale = i;
        c->given |= CARD_F_SCALE;
    } else if (strcmp(name, "mean") == 0 || strcmp(name, "std") == 0) {
        int is_std = name[0] == 's', n;
        float f[3];
        if (parse_floats(v, f, &n) < 0)
            return fail(err, el, "%s: '%s' is not 1 or 3 comma-separated numbers", name, v);
        if (check_stats(name, f, n, is_std, err, el))
            return ID_EINVAL;
        memcpy(is_std ? c->std : c->mean, f, sizeof f);
        *(is_std ? &c->n_std : &c->n_mean) = n;
        c->given |= is_std ? CARD_F_STD : CARD_F_MEAN;
    } else if (strcmp(name, "resize") == 0) {
        if ((i = find_name(resize_names, NAMES(resize_names), v)) < 0)
            return fail(err, el, "resize: '%s' is not crop, stretch or pad", v);
        c->resize = (enum card_resize)i;
        c->given |= CARD_F_RESIZE;
    } else if (strcmp(name, "resize-side") == 0 || strcmp(name, "resize_side") == 0) {
        if (parse_int(v, 1, 2 * INFER_MAX_SIDE, &c->resize_side) < 0)
            return fail(err, el, "resize_side: '%s' is not a whole number from 1 to %d", v,
                        2 * INFER_MAX_SIDE);
        c->given |= CARD_F_RESIZE_SIDE;
    } else if (strcmp(name, "pad-value") == 0 || strcmp(name, "pad_value") == 0) {
        if (parse_int(v, 0, 255, &c->pad_value) < 0)
            return fail(err, el, "pad_value: '%s' is not a pixel value from 0 to 255", v);
        c->given |= CARD_F_PAD_VALUE;
    } else if (strcmp(name, "output") == 0) {
        if ((i = find_name(output_names, NAMES(output_names), v)) < 0)
            return fail(err, el, "output: '%s' is not logits, probabilities or raw", v);
        c->output = (enum card_output)i;
        c->given |= CARD_F_OUTPUT;
    } else if (strcmp(name, "output-name") == 0 || strcmp(name, "output_name") == 0) {
        if (!v[0] || strlen(v) >= sizeof c->output_name)
            return fail(err, el, "output_name: must be 1 to %zu bytes", sizeof c->output_name - 1);
        snprintf(c->output_name, sizeof c->output_name, "%s", v);
        c->given |= CARD_F_OUTPUT_NAME;
    } else if (strcmp(name, "top-k") == 0 || strcmp(name, "top_k") == 0) {
        if (parse_int(v, 1, CARD_MAX_K, &c->top_k) < 0)
            return fail(err, el, "top_k: '%s' is not a whole number from 1 to %d", v, CARD_MAX_K);
        c->given |= CARD_F_TOP_K;
    } else if (strcmp(name, "labels") == 0) {
        return card_load_labels(c, v, err, el);
    } else {
        return fail(err, el, "%s: no such card field", name);
    }
    return 0;
}

int card_from_metadata(struct model_card *c, const char *key, const char *value, char *err,
                       size_t el)
{
    int n;
    if (strcmp(key, "idunno.input_size") == 0) {
        if (parse_int(value, 1, INFER_MAX_SIDE, &n) < 0)
            return fail(err, el, "size: the model's metadata idunno.input_size '%s' is malformed",
                        value);
        c->height = c->width = n;
        c->given |= CARD_F_SIZE;
    } else if (strcmp(key, "idunno.resize") == 0) {
        if (parse_int(value, 1, 2 * INFER_MAX_SIDE, &c->resize_side) < 0)
            return fail(err, el,
                        "resize_side: the model's metadata idunno.resize '%s' is malformed", value);
        c->given |= CARD_F_RESIZE_SIDE;
    } else if (strcmp(key, "idunno.mean") == 0 || strcmp(key, "idunno.std") == 0) {
        int is_std = key[7] == 's';
        const char *field = is_std ? "std" : "mean";
        float f[3];
        if (parse_floats(value, f, &n) < 0)
            return fail(err, el, "%s: the model's metadata %s '%s' is malformed", field, key,
                        value);
        if (check_stats(field, f, n, is_std, err, el))
            return ID_EINVAL;
        memcpy(is_std ? c->std : c->mean, f, sizeof f);
        *(is_std ? &c->n_std : &c->n_mean) = n;
        c->given |= is_std ? CARD_F_STD : CARD_F_MEAN;
    }
    return 0;
}

/* ---- JSON ------------------------------------------------------------------------------- */

static int json_stats(struct model_card *c, const char *key, json_t *v, char *err, size_t el)
{
    int is_std = key[0] == 's';
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (n != 1 && n != 3)
        return fail(err, el, "%s: must be an array of 1 or 3 numbers", key);
    float f[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        double d = json_number_value(x);
        if (!json_is_number(x) || !isfinite(d) || fabs(d) > 1e30)
            return fail(err, el, "%s: must be an array of 1 or 3 numbers", key);
        f[i] = (float)d;
    }
    if (check_stats(key, f, (int)n, is_std, err, el))
        return ID_EINVAL;
    memcpy(is_std ? c->std : c->mean, f, sizeof f);
    *(is_std ? &c->n_std : &c->n_mean) = (int)n;
    c->given |= is_std ? CARD_F_STD : CARD_F_MEAN;
    return 0;
}

static int json_labels(struct model_card *c, json_t *v, char *err, size_t el)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_array(v) || n == 0)
        return fail(err, el, "labels: must be a non-empty array of strings");
    if (n > INFER_MAX_CLASSES)
        return fail(err, el, "labels: more than %d labels", INFER_MAX_CLASSES);
    char **l = calloc(n, sizeof *l);
    if (!l)
        return ID_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        int rc = !json_is_string(s)
                     ? fail(err, el, "labels: label %zu is not a string", i + 1)
                     : label_ok(json_string_value(s), json_string_length(s), err, el, i + 1);
        /* A NUL inside a JSON string would cut the label short unseen. */
        if (!rc && strlen(json_string_value(s)) != json_string_length(s))
            rc = fail(err, el, "labels: label %zu holds a control character", i + 1);
        if (!rc && !(l[i] = strdup(json_string_value(s))))
            rc = ID_ENOMEM;
        if (rc) {
            free_labels(l, i);
            return rc;
        }
    }
    return set_labels(c, l, n);
}

/* Fields whose JSON value is a string go through card_set, so that a file
 * and a flag accept exactly the same text. */
static int json_field(struct model_card *c, const char *key, json_t *v, const char *base_dir,
                      char *err, size_t el)
{
    static const char *const strings[] = {"size",   "layout", "channels",
                                          "resize", "output", "output_name"};
    static const char *const ints[] = {"scale", "resize_side", "pad_value", "top_k"};
    if (find_name(strings, NAMES(strings), key) >= 0) {
        const char *s = json_string_value(v);
        if (!json_is_string(v) || strlen(s) != json_string_length(v))
            return fail(err, el, "%s: must be a string", key);
        return card_set(c, key, s, err, el);
    }
    if (find_name(ints, NAMES(ints), key) >= 0) {
        if (!json_is_integer(v))
            return fail(err, el, "%s: must be a whole number", key);
        char buf[32];
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return card_set(c, key, buf, err, el);
    }
    if (strcmp(key, "mean") == 0 || strcmp(key, "std") == 0)
        return json_stats(c, key, v, err, el);
    if (strcmp(key, "labels") == 0)
        return json_labels(c, v, err, el);
    if (strcmp(key, "labels_file") == 0) {
        const char *s = json_string_value(v);
        if (!json_is_string(v) || !s[0] || strlen(s) != json_string_length(v))
            return fail(err, el, "labels_file: must be a file name");
        if (!base_dir)
            return fail(err, el, "labels_file: not allowed here; give the labels themselves");
        char path[4096];
        if (s[0] == '/')
            snprintf(path, sizeof path, "%s", s);
        else
            snprintf(path, sizeof path, "%s/%s", base_dir, s);
        return card_load_labels(c, path, err, el);
    }
    return fail(err, el, "%s: no such card field", key);
}

int card_parse_json(const char *text, size_t len, const char *base_dir, struct model_card *out,
                    char *err, size_t el)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(err, el, "card: not valid JSON: %s (line %d)", je.text, je.line);
    struct model_card c = {0};
    int rc = 0;
    if (!json_is_object(root))
        rc = fail(err, el, "card: must be a JSON object");
    const char *key;
    json_t *v;
    unsigned labels_seen = 0;
    json_object_foreach(root, key, v)
    {
        if (rc)
            break;
        /* labels and labels_file are one field given two ways: not both. */
        if (strcmp(key, "labels") == 0 || strcmp(key, "labels_file") == 0) {
            if (labels_seen++) {
                rc = fail(err, el, "labels: given both as labels and as labels_file");
                break;
            }
        }
        rc = json_field(&c, key, v, base_dir, err, el);
    }
    json_decref(root);
    if (rc) {
        card_free(&c);
        return rc;
    }
    *out = c;
    return 0;
}

int card_load_file(const char *path, struct model_card *out, char *err, size_t el)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, el, "card: cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= (64u << 20)) {
                rc = fail(err, el, "card: %s is larger than 64 MiB", path);
                break;
            }
            char *b = realloc(buf, cap ? cap * 2 : 4096);
            if (!b) {
                rc = ID_ENOMEM;
                break;
            }
            buf = b;
            cap = cap ? cap * 2 : 4096;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (!rc && ferror(f))
        rc = fail(err, el, "card: cannot read %s", path);
    fclose(f);
    if (!rc) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(dir, sizeof dir, ".");
        rc = card_parse_json(buf, len, slash == dir ? "/" : dir, out, err, el);
    }
    free(buf);
    return rc;
}

/* The fewest significant digits that read back to exactly v. */
static int float_digits(float v)
{
    char buf[32];
    for (int p = 1; p < 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v)
            return p;
    }
    return 9; /* always enough for a float */
}

char *card_to_json(const struct model_card *c)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    unsigned g = c->given;
    int bad = 0;
    char buf[48];
    /* Each setter is checked once at the end: jansson's _new functions
     * return NULL when out of memory, and json_object_set_new then fails. */
#define SET(k, v) bad |= json_object_set_new(o, k, v)
    if (g & CARD_F_SIZE) {
        snprintf(buf, sizeof buf, "%dx%d", c->height, c->width);
        SET("size", json_string(buf));
    }
    if (g & CARD_F_LAYOUT)
        SET("layout", json_string(card_layout_name(c->layout)));
    if (g & CARD_F_CHANNELS)
        SET("channels", json_string(card_channels_name(c->channels)));
    if (g & CARD_F_SCALE)
        SET("scale", json_integer(c->scale));
    for (int s = 0; s < 2; s++) {
        if (!(g & (s ? CARD_F_STD : CARD_F_MEAN)))
            continue;
        json_t *a = json_array();
        const float *v = s ? c->std : c->mean;
        for (int i = 0; a && i < (s ? c->n_std : c->n_mean); i++)
            bad |= json_array_append_new(a, json_real((double)v[i]));
        SET(s ? "std" : "mean", a);
    }
    if (g & CARD_F_RESIZE)
        SET("resize", json_string(card_resize_name(c->resize)));
    if (g & CARD_F_RESIZE_SIDE)
        SET("resize_side", json_integer(c->resize_side));
    if (g & CARD_F_PAD_VALUE)
        SET("pad_value", json_integer(c->pad_value));
    if (g & CARD_F_OUTPUT)
        SET("output", json_string(card_output_name(c->output)));
    if (g & CARD_F_OUTPUT_NAME)
        SET("output_name", json_string(c->output_name));
    if (g & CARD_F_TOP_K)
        SET("top_k", json_integer(c->top_k));
    if (g & CARD_F_LABELS) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < c->n_labels; i++)
            bad |= json_array_append_new(a, json_string(c->labels[i]));
        SET("labels", a);
    }
#undef SET
    /* Floats are written with the fewest digits that read back to the same
     * float (0.485, not 0.485000014), so a card reads as it was written and
     * survives any number of round trips unchanged. jansson takes one
     * precision for the whole text: the most any of them needs. */
    int digits = 1;
    for (int i = 0; i < 3; i++) {
        if ((g & CARD_F_MEAN) && i < c->n_mean && float_digits(c->mean[i]) > digits)
            digits = float_digits(c->mean[i]);
        if ((g & CARD_F_STD) && i < c->n_std && float_digits(c->std[i]) > digits)
            digits = float_digits(c->std[i]);
    }
    char *s = bad ? NULL
                  : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(digits));
    json_decref(o);
    return s;
}

/* ---- resolving against the model -------------------------------------------------------- */

static const char *dim_text(int64_t d, char *buf, size_t len)
{
    if (d < 0)
        snprintf(buf, len, "dynamic");
    else
        snprintf(buf, len, "%lld", (long long)d);
    return buf;
}

static int model_fail(char *err, size_t el, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int model_fail(char *err, size_t el, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, el, fmt, ap);
    va_end(ap);
    return ID_EMODEL;
}

static int resolve_input(struct model_card *c, const struct infer_tensor_decl *in, char *err,
                         size_t el)
{
    if (in->rank != 4 || !in->is_float)
        return model_fail(err, el, "input: the model's input '%s' is not a float tensor of rank 4",
                          in->name);
    const int64_t *d = in->dims;
    if (!(c->given & CARD_F_LAYOUT)) {
        /* Channels are 1 or 3 wide; the side that is holds them. */
        int first = d[1] == 1 || d[1] == 3, last = d[3] == 1 || d[3] == 3;
        c->layout = !first && last ? CARD_NHWC : CARD_NCHW;
    }
    int64_t ch = c->layout == CARD_NCHW ? d[1] : d[3];
    int64_t hd = c->layout == CARD_NCHW ? d[2] : d[1];
    int64_t wd = c->layout == CARD_NCHW ? d[3] : d[2];
    char b1[24], b2[24];
    if (c->given & CARD_F_CHANNELS) {
        int want = c->channels == CARD_GRAY ? 1 : 3;
        if (ch > 0 && ch != want)
            return model_fail(err, el,
                              "channels: the card says %s (%d channel%s) but the model's %s input "
                              "has %lld",
                              card_channels_name(c->channels), want, want == 1 ? "" : "s",
                              card_layout_name(c->layout), (long long)ch);
    } else if (ch == 1 || ch == 3) {
        c->channels = ch == 1 ? CARD_GRAY : CARD_RGB;
    } else {
        return model_fail(err, el,
                          "channels: the model's %s input has %s channels; 1 or 3 are supported",
                          card_layout_name(c->layout), dim_text(ch, b1, sizeof b1));
    }
    if (hd == 0 || wd == 0 || hd > INFER_MAX_SIDE || wd > INFER_MAX_SIDE)
        return model_fail(err, el,
                          "size: the model's input is %lldx%lld; at most %dx%d is supported",
                          (long long)hd, (long long)wd, INFER_MAX_SIDE, INFER_MAX_SIDE);
    if (c->given & CARD_F_SIZE) {
        if ((hd > 0 && hd != c->height) || (wd > 0 && wd != c->width))
            return model_fail(err, el, "size: the card says %dx%d but the model's input is %s x %s",
                              c->height, c->width, dim_text(hd, b1, sizeof b1),
                              dim_text(wd, b2, sizeof b2));
    } else if (hd > 0 && wd > 0) {
        c->height = (int)hd;
        c->width = (int)wd;
    } else {
        return model_fail(err, el,
                          "size: the model's input is %s x %s; give the size (--size HxW, or "
                          "\"size\" in the card)",
                          dim_text(hd, b1, sizeof b1), dim_text(wd, b2, sizeof b2));
    }
    int nch = c->channels == CARD_GRAY ? 1 : 3;
    if (!(c->given & CARD_F_SCALE))
        c->scale = 1;
    float k = c->scale == 255 ? 255.0f : 1.0f;
    for (int s = 0; s < 2; s++) {
        int *n = s ? &c->n_std : &c->n_mean;
        float *v = s ? c->std : c->mean;
        if (c->given & (s ? CARD_F_STD : CARD_F_MEAN)) {
            if (*n != nch)
                return model_fail(err, el, "%s: %d value%s for a %d-channel input",
                                  s ? "std" : "mean", *n, *n == 1 ? "" : "s", nch);
            continue;
        }
        /* The defaults are in 0..1 pixel units; a 0..255 input gets them
         * scaled alike. */
        *n = nch;
        for (int i = 0; i < nch; i++)
            v[i] = k *
                   (nch == 1 ? (s ? gray_std : gray_mean) : (s ? imagenet_std : imagenet_mean)[i]);
        for (int i = nch; i < 3; i++)
            v[i] = 0;
    }
    if (!(c->given & CARD_F_RESIZE))
        c->resize = CARD_CROP;
    if (!(c->given & CARD_F_RESIZE_SIDE)) {
        /* ImageNet's 256 for 224: the centre crop keeps 7/8 of the shorter side. */
        int s = c->height < c->width ? c->height : c->width;
        c->resize_side = (s * 8 + 6) / 7;
    }
    if (!(c->given & CARD_F_PAD_VALUE))
        c->pad_value = 0;
    return 0;
}

static int resolve_output(struct model_card *c, const struct infer_io *io, int *output,
                          int *classes, char *err, size_t el)
{
    if (io->n_outputs == 0)
        return model_fail(err, el, "output: the model has no outputs");
    size_t o = 0;
    if (c->given & CARD_F_OUTPUT_NAME) {
        for (o = 0; o < io->n_outputs; o++)
            if (strcmp(io->outputs[o].name, c->output_name) == 0)
                break;
        if (o == io->n_outputs) {
            char names[256] = "";
            for (size_t i = 0; i < io->n_outputs; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                         io->outputs[i].name);
            return model_fail(err, el, "output_name: the model has no output '%s' (it has %s)",
                              c->output_name, names);
        }
    } else {
        snprintf(c->output_name, sizeof c->output_name, "%s", io->outputs[0].name);
    }
    const struct infer_tensor_decl *t = &io->outputs[o];
    if (t->rank != 2 || !t->is_float)
        return model_fail(err, el,
                          "output_name: the model's output '%s' is not a float tensor of rank 2 "
                          "(images x values)",
                          t->name);
    int64_t w = t->dims[1];
    if (w <= 0)
        return model_fail(err, el, "output_name: the model's output '%s' has no fixed width",
                          t->name);
    if (w > INFER_MAX_CLASSES)
        return model_fail(err, el,
                          "output_name: the model's output '%s' declares %lld classes; at most %d "
                          "are supported",
                          t->name, (long long)w, INFER_MAX_CLASSES);
    int64_t in_batch = io->input.dims[0];
    if (t->dims[0] > 0 && in_batch > 0 && t->dims[0] != in_batch)
        return model_fail(err, el,
                          "output_name: the model takes batches of %lld images but '%s' returns "
                          "%lld rows",
                          (long long)in_batch, t->name, (long long)t->dims[0]);
    if (!(c->given & CARD_F_OUTPUT))
        c->output = CARD_LOGITS;
    if (c->output == CARD_RAW) {
        if (c->given & CARD_F_TOP_K)
            return model_fail(err, el,
                              "top_k: raw output has no top-k (every value is the result)");
        if (w > CARD_MAX_K)
            return model_fail(err, el,
                              "output: raw output of %lld values; at most %d are supported",
                              (long long)w, CARD_MAX_K);
        c->top_k = (int)w;
    } else if (c->given & CARD_F_TOP_K) {
        if (c->top_k > w)
            return model_fail(err, el, "top_k: %d, but the model has %lld classes", c->top_k,
                              (long long)w);
    } else {
        c->top_k = w < 5 ? (int)w : 5;
    }
    if ((c->given & CARD_F_LABELS) && c->n_labels != (size_t)w)
        return model_fail(err, el, "labels: %zu labels, but the model has %lld classes",
                          c->n_labels, (long long)w);
    *output = (int)o;
    *classes = (int)w;
    return 0;
}

int card_resolve(struct model_card *c, const struct infer_io *io, int *output, int *classes,
                 char *err, size_t el)
{
    int rc = resolve_input(c, &io->input, err, el);
    if (!rc)
        rc = resolve_output(c, io, output, classes, err, el);
    if (rc)
        return rc;
    /* Everything is decided now; labels stay optional. */
    c->given |= CARD_F_ALL & ~CARD_F_LABELS;
    /* A raw output's top_k is its width, decided here, not given. */
    if (c->output == CARD_RAW)
        c->given &= ~CARD_F_TOP_K;
    return 0;
}
