/* result.c — the one JSON shape of an image's result (result.h). */
#include "infer/result.h"

void result_json(struct json_out *j, const char *key, const struct result_view *r)
{
    json_out_begin_object(j, key);
    json_out_str(j, "image", r->image);
    json_out_str(j, "model", r->model);
    json_out_u64(j, "version", r->version);
    if (r->error) {
        json_out_str(j, "error", r->error);
    } else if (r->raw) {
        json_out_begin_array(j, "values");
        for (size_t k = 0; k < r->k; k++)
            json_out_double(j, NULL, r->values[k]);
        json_out_end(j);
    } else {
        json_out_begin_array(j, "top");
        for (size_t k = 0; k < r->k; k++) {
            json_out_begin_object(j, NULL);
            json_out_u64(j, "index", r->index[k]);
            if (r->labels && r->index[k] < r->n_labels)
                json_out_str(j, "label", r->labels[r->index[k]]);
            else
                json_out_null(j, "label");
            json_out_double(j, "probability", r->values[k]);
            json_out_end(j);
        }
        json_out_end(j);
    }
    json_out_end(j);
}
