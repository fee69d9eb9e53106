/* fuzz_card.c — libFuzzer target for the model card's JSON parser
 * (infer/card.h), which reads files users write and, later, cards stored
 * with models: any bytes in, ID_EINVAL or a card out, never a crash. A card
 * it accepts must serialise, parse back to an equal card, and serialise to
 * the same text again; resolving it against a model must not crash either. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "infer/card.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct model_card c;
    char err[256];
    /* No base folder: a fuzzed labels_file must not read files. */
    int rc = card_parse_json((const char *)data, size, NULL, &c, err, sizeof err);
    if (rc != 0 && rc != ID_EINVAL && rc != ID_ENOMEM)
        __builtin_trap();
    if (rc != 0)
        return 0;
    char *a = card_to_json(&c);
    if (!a)
        __builtin_trap();
    struct model_card back;
    if (card_parse_json(a, strlen(a), NULL, &back, err, sizeof err) != 0 || !card_equal(&c, &back))
        __builtin_trap();
    char *b = card_to_json(&back);
    if (!b || strcmp(a, b) != 0)
        __builtin_trap();
    /* Resolved against a model with dynamic H and W and 3 classes: either
     * refused naming a field, or complete. */
    struct infer_io io = {.n_outputs = 1};
    io.input.rank = 4;
    io.input.is_float = 1;
    io.input.dims[0] = io.input.dims[2] = io.input.dims[3] = -1;
    io.input.dims[1] = 3;
    io.outputs[0].rank = 2;
    io.outputs[0].is_float = 1;
    io.outputs[0].dims[0] = -1;
    io.outputs[0].dims[1] = 3;
    int out, classes;
    rc = card_resolve(&back, &io, &out, &classes, err, sizeof err);
    if (rc != 0 && (rc != ID_EMODEL || !strchr(err, ':')))
        __builtin_trap();
    if (rc == 0 && (out != 0 || classes != 3 || back.top_k < 1 || back.top_k > 3))
        __builtin_trap();
    free(a);
    free(b);
    card_free(&c);
    card_free(&back);
    return 0;
}
