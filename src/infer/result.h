/* result.h — one image's result as a JSON object: the single shape of the
 * cluster's result lines (SDFS result parts, `idunno results`) and of each
 * image of `idunno local-infer --json` (docs/protocol.md, "Result lines").
 *
 *   {"image": NAME, "model": MODEL, "version": V,
 *    "top": [{"index": I, "label": L, "probability": P}, ...]}
 *   {"image": NAME, "model": MODEL, "version": V, "values": [X, ...]}
 *   {"image": NAME, "model": MODEL, "version": V, "error": TEXT}
 *
 * "top" holds exactly the card's k entries, most probable first, never a
 * padding entry; "label" is null when the card has no labels. "values" is
 * a raw output's values in order. V is the model version that produced it
 * (0: a local file, which has none).
 *
 * Pure. */
#ifndef IDUNNO_INFER_RESULT_H
#define IDUNNO_INFER_RESULT_H

#include <stddef.h>
#include <stdint.h>

#include "base/json_out.h"

struct result_view {
    const char *image, *model;
    uint32_t version;
    const char *error; /* non-NULL: the image has no result, this says why */
    int raw;           /* values[k] are a raw output's; index is unused */
    size_t k;
    const uint32_t *index; /* k class indices (not read when raw) */
    const float *values;   /* k probabilities, or the raw values */
    char *const *labels;   /* n_labels names of classes; NULL: none */
    size_t n_labels;
};

/* Appends r as one JSON object (under key; NULL in an array or at the top). */
void result_json(struct json_out *j, const char *key, const struct result_view *r);

#endif
