/* node_oip.c — the /v2 requests the HTTP endpoint hands to the loop
 * (http.h, "Requests the loop answers"): model metadata and readiness, and
 * infer. The protocol's parsing and answers are http/oip.c's; this file only
 * asks the cluster, through this node as any client would: an infer becomes
 * an online request (ONLINE_INFER, sched/coord_online.c), forwarded to the
 * coordinator wherever the HTTP request landed, and the model questions a
 * JOB_MODELS read. docs/http.md, "Online inference", is the contract.
 *
 * Threading: loop thread only.
 */
#include "node/node_oip.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/strbuf.h"
#include "http/http.h"
#include "http/oip.h"
#include "idunno.pb-c.h"
#include "infer/card.h"
#include "net/net.h"
#include "node/node.h"
#include "sched/online_input.h"

/* How long the cluster may take for an infer (attempts included), and a
 * little more for the answer that says it passed. */
#define OIP_DEADLINE_MS 30000
#define OIP_ANSWER_MS 5000
#define OIP_MODELS_CALL_MS 10000

struct oip_call {
    struct node *node;
    struct http_call *call;
    struct oip_target target;
    struct oip_infer_request req;  /* infer only */
    Idunno__OnlineTensor *tensors; /* req's images as the cluster carries them (a tensor request) */
    uint64_t deadline_ms;          /* monotonic: no new attempt after it */
    uint64_t key;                  /* OnlineInfer.key: the same on every attempt */
};

static int send_infer(struct oip_call *oc);

static void reply_error(struct http_call *call, unsigned status, const char *msg)
{
    struct strbuf sb = STRBUF_INIT;
    oip_error(&sb, msg);
    http_call_reply(call, status, "application/json", strbuf_str(&sb), sb.len);
    strbuf_free(&sb);
}

static void reply_json(struct http_call *call, unsigned status, struct strbuf *sb)
{
    if (strbuf_failed(sb))
        reply_error(call, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    else
        http_call_reply(call, status, "application/json", strbuf_str(sb), sb->len);
    strbuf_free(sb);
}

/* The HTTP status of a cluster error: the protocol's 400 for what the client
 * sent, 404 for what does not exist, 503 when the cluster cannot answer now,
 * 500 for a model that fails. */
static unsigned status_of(int code)
{
    switch (code) {
    case ID_EINVAL:
    case ID_ETOOBIG:
    case ID_EPROTO: return MHD_HTTP_BAD_REQUEST;
    case ID_ENOTFOUND: return MHD_HTTP_NOT_FOUND;
    case ID_EMODEL: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    default: return MHD_HTTP_SERVICE_UNAVAILABLE;
    }
}

static void oip_call_free(struct oip_call *oc)
{
    free(oc->tensors);
    oip_infer_free(&oc->req);
    free(oc);
}

/* ---- model metadata and readiness ------------------------------------------------------------ */

static void on_models(void *ud, const struct net_result *res)
{
    struct oip_call *oc = ud;
    Idunno__ModelList *ml = res->status == 0 ? idunno__model_list__unpack(NULL, res->len, res->body)
                                             : NULL;
    if (!ml) {
        reply_error(oc->call, status_of(res->status < 0 ? res->status : ID_EPROTO),
                    res->errmsg ? res->errmsg : "the cluster cannot list its models now");
        oip_call_free(oc);
        return;
    }
    const char *name = oc->target.model;
    uint32_t versions[64];
    size_t n = 0;
    const Idunno__ModelInfo *chosen = NULL;
    for (size_t i = 0; i < ml->n_versions; i++) {
        const Idunno__ModelInfo *m = ml->versions[i];
        if (strcmp(m->name, name) != 0)
            continue;
        if (n < sizeof versions / sizeof versions[0])
            versions[n++] = m->version;
        if (!oc->target.version || m->version == oc->target.version)
            chosen = m; /* the asked version, else the latest (listed last) */
    }
    if (!chosen) {
        reply_error(oc->call, MHD_HTTP_NOT_FOUND,
                    n ? "no such version of the model" : "no such model");
    } else if (oc->target.route == OIP_MODEL_READY) {
        /* Kept and registered: the workers load it at its first request. */
        struct strbuf sb = STRBUF_INIT;
        struct json_out j;
        json_out_init(&j, &sb);
        json_out_begin_object(&j, NULL);
        json_out_str(&j, "name", name);
        json_out_bool(&j, "ready", 1);
        json_out_end_all(&j);
        reply_json(oc->call, MHD_HTTP_OK, &sb);
    } else {
        struct model_card card = {0};
        char err[200];
        int have_card = chosen->card && chosen->card[0] &&
                        card_parse_json(chosen->card, strlen(chosen->card), NULL, &card, err,
                                        sizeof err) == 0;
        struct oip_model_meta meta = {
            .name = name,
            .versions = versions,
            .n_versions = n,
            .classes = chosen->classes,
            .raw = have_card && card.output == CARD_RAW,
            .output = have_card ? card.output_name : NULL,
        };
        struct model_card none = {0};
        if (online_card_input(have_card ? &card : &none, chosen->input_size, meta.input) < 0)
            meta.input[0] = meta.input[1] = meta.input[2] = 0;
        struct strbuf sb = STRBUF_INIT;
        oip_model_metadata(&sb, &meta);
        reply_json(oc->call, MHD_HTTP_OK, &sb);
        card_free(&card);
    }
    idunno__model_list__free_unpacked(ml, NULL);
    oip_call_free(oc);
}

/* ---- infer ------------------------------------------------------------------------------------ */

static void on_inferred(void *ud, const struct net_result *res)
{
    struct oip_call *oc = ud;
    /* No coordinator for the forwarder's whole wait (an election that takes
     * long on loaded cores): the request is asked again while its deadline
     * allows, so the client sees an answer, not the gap. */
    if ((res->status == ID_ENOLEADER || res->status == ID_ENOTLEADER) &&
        id_now_ms() + 1000 < oc->deadline_ms && send_infer(oc) == 0)
        return;
    Idunno__OnlineResult *r = res->status == 0
                                  ? idunno__online_result__unpack(NULL, res->len, res->body)
                                  : NULL;
    if (!r || r->n_results != oc->req.n_images) {
        const char *why = res->errmsg ? res->errmsg : "malformed answer from the cluster";
        char msg[600];
        if (res->status == ID_EINVAL && oc->tensors) {
            /* The cluster names the shape per image; the client sent this. */
            char shape[128];
            size_t pos = 0;
            for (size_t i = 0; i < oc->req.rank && pos < sizeof shape; i++)
                pos += (size_t)snprintf(shape + pos, sizeof shape - pos, "%s%lld", i ? ", " : "",
                                        (long long)oc->req.shape[i]);
            snprintf(msg, sizeof msg, "%s; the request's shape is [%s]", why, shape);
            why = msg;
        }
        reply_error(oc->call, status_of(res->status < 0 ? res->status : ID_EPROTO), why);
        if (r)
            idunno__online_result__free_unpacked(r, NULL);
        oip_call_free(oc);
        return;
    }
    struct oip_result rows[OIP_MAX_IMAGES];
    const char *labels[OIP_MAX_IMAGES][64];
    for (size_t i = 0; i < r->n_results; i++) {
        const Idunno__QueryResult *q = r->results[i];
        if (q->error && q->error[0]) {
            /* The protocol has no per-element errors: the request fails,
             * naming the element. */
            char msg[300];
            snprintf(msg, sizeof msg, "input element %zu: %s", i, q->error);
            reply_error(oc->call, MHD_HTTP_BAD_REQUEST, msg);
            idunno__online_result__free_unpacked(r, NULL);
            oip_call_free(oc);
            return;
        }
        size_t k = q->n_classes < q->n_probs ? q->n_classes : q->n_probs;
        if (k > 64)
            k = 64;
        for (size_t e = 0; e < k; e++)
            labels[i][e] = e < q->n_labels ? q->labels[e] : "";
        rows[i] = (struct oip_result){.k = k,
                                      .classes = q->classes,
                                      .probs = q->probs,
                                      .labels = labels[i],
                                      .n_values = q->n_values,
                                      .values = q->values};
    }
    struct strbuf sb = STRBUF_INIT;
    int rc = oip_infer_response(&sb, r->model, r->version, oc->req.id, oc->req.output_name,
                                oc->req.classification, rows, r->n_results);
    if (rc < 0) {
        strbuf_free(&sb);
        reply_error(oc->call, MHD_HTTP_INTERNAL_SERVER_ERROR,
                    "the results cannot be put in one output");
    } else {
        reply_json(oc->call, MHD_HTTP_OK, &sb);
    }
    idunno__online_result__free_unpacked(r, NULL);
    oip_call_free(oc);
}

/* Sends the parsed request as an online request through this node: it is
 * forwarded to the coordinator wherever that is. Returns 0, or ID_E* with
 * the call not made. */
static int send_infer(struct oip_call *oc)
{
    ProtobufCBinaryData images[OIP_MAX_IMAGES];
    for (size_t i = 0; i < oc->req.n_images; i++)
        images[i] = (ProtobufCBinaryData){oc->req.images[i].len, (uint8_t *)oc->req.images[i].data};
    Idunno__OnlineTensor *tensor_ptrs[OIP_MAX_IMAGES];
    Idunno__OnlineInfer in = IDUNNO__ONLINE_INFER__INIT;
    in.model = oc->target.model;
    in.version = oc->target.version;
    if (oc->tensors) {
        for (size_t i = 0; i < oc->req.n_images; i++)
            tensor_ptrs[i] = &oc->tensors[i];
        in.n_tensors = oc->req.n_images;
        in.tensors = tensor_ptrs;
    } else {
        in.n_images = oc->req.n_images;
        in.images = images;
    }
    in.id = oc->req.id;
    in.key = oc->key;
    uint64_t now = id_now_ms();
    uint64_t left = oc->deadline_ms > now ? oc->deadline_ms - now : 1;
    in.deadline_ms = (uint32_t)left;
    return net_call_pb(oc->node->net, oc->node->cfg.addr, IDUNNO__MSG_TYPE__MSG_ONLINE_INFER_REQ,
                       &in.base, (uint32_t)left + OIP_ANSWER_MS, on_inferred, oc);
}

/* A tensor request's images as the cluster carries them (OnlineTensor: one
 * image's dims, its floats little-endian), pointing into req.values, whose
 * bytes are put in that order in place (nothing to do on a little-endian
 * host). Returns 0 or ID_ENOMEM. */
static int tensors_make(struct oip_call *oc)
{
    struct oip_infer_request *r = &oc->req;
    oc->tensors = calloc(r->n_images, sizeof *oc->tensors);
    if (!oc->tensors)
        return ID_ENOMEM;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    for (size_t i = 0; i < r->n_images * r->image_len; i++) {
        uint32_t u;
        memcpy(&u, &r->values[i], sizeof u);
        u = __builtin_bswap32(u);
        memcpy(&r->values[i], &u, sizeof u);
    }
#endif
    for (size_t i = 0; i < r->n_images; i++) {
        Idunno__OnlineTensor *t = &oc->tensors[i];
        idunno__online_tensor__init(t);
        t->n_shape = 3;
        t->shape = r->image_dims;
        t->data.len = r->image_len * sizeof(float);
        t->data.data = (uint8_t *)(r->values + i * r->image_len);
    }
    return 0;
}

/* A request key (OnlineInfer.key): unique per request across the cluster,
 * so that the leader tells a repeat from a new request. A random seed per
 * process, then splitmix64 over a counter (a bijection: no two requests of
 * this node share a key) instead of a getrandom call per request. 0 if
 * the seed could not be had: the leader then cannot tell repeats. */
static uint64_t request_key(void)
{
    static uint64_t seed, counter;
    static int seeded;
    if (!seeded) {
        if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
            return 0;
        seeded = 1;
    }
    uint64_t z = seed + ++counter * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}

static void start_infer(struct oip_call *oc)
{
    size_t len, json_len;
    const uint8_t *body = http_call_body(oc->call, &len, &json_len);
    char err[300];
    int rc = oip_parse_infer(body, len, json_len, &oc->req, err, sizeof err);
    if (rc < 0) {
        reply_error(oc->call,
                    rc == ID_ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST,
                    rc == ID_ENOMEM ? "out of memory" : err);
        oip_call_free(oc);
        return;
    }
    if (oc->req.datatype != OIP_BYTES && tensors_make(oc) < 0) {
        reply_error(oc->call, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        oip_call_free(oc);
        return;
    }
    oc->deadline_ms = id_now_ms() + OIP_DEADLINE_MS;
    oc->key = request_key();
    rc = send_infer(oc);
    if (rc < 0) {
        reply_error(oc->call,
                    rc == ID_ETOOBIG ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_SERVICE_UNAVAILABLE,
                    rc == ID_ETOOBIG ? "the request's inputs are over the cluster's 16 MiB frames"
                                     : id_strerror(rc));
        oip_call_free(oc);
    }
}

void node_oip_on_call(void *ud, struct http_call *call)
{
    struct node *node = ud;
    struct oip_call *oc = calloc(1, sizeof *oc);
    if (!oc) {
        reply_error(call, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return;
    }
    oc->node = node;
    oc->call = call;
    oc->target = *http_call_target(call);
    if (oc->target.route == OIP_INFER) {
        start_infer(oc);
        return;
    }
    Idunno__Empty e = IDUNNO__EMPTY__INIT;
    int rc = net_call_pb(node->net, node->cfg.addr, IDUNNO__MSG_TYPE__MSG_JOB_MODELS_REQ, &e.base,
                         OIP_MODELS_CALL_MS, on_models, oc);
    if (rc < 0) {
        reply_error(call, MHD_HTTP_SERVICE_UNAVAILABLE, id_strerror(rc));
        oip_call_free(oc);
    }
}
