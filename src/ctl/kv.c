/* kv.c — the diagnostic key-value sub-state machine (see kv.h): a sorted array
 * of entries, binary search, protobuf snapshots. */
#include "ctl/kv.h"

#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"
#include "idunno.pb-c.h"

struct kv_entry {
    char *key;
    uint8_t *value;
    size_t len;
    uint64_t rev;
};

struct kv {
    struct kv_entry *e; /* sorted by key (strcmp) */
    size_t n, cap;
    uint64_t revision;
};

struct kv *kv_create(void)
{
    return calloc(1, sizeof(struct kv));
}

static void kv_clear(struct kv *kv)
{
    for (size_t i = 0; i < kv->n; i++) {
        free(kv->e[i].key);
        free(kv->e[i].value);
    }
    free(kv->e);
    kv->e = NULL;
    kv->n = kv->cap = 0;
    kv->revision = 0;
}

void kv_destroy(struct kv *kv)
{
    if (!kv)
        return;
    kv_clear(kv);
    free(kv);
}

static int key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct kv_entry *)elem)->key);
}

/* Index of key, or of where it would go (with *found 0). */
static size_t kv_find(const struct kv *kv, const char *key, int *found)
{
    return array_search(kv->e, kv->n, sizeof *kv->e, key, key_cmp, found);
}

int kv_get(const struct kv *kv, const char *key, const uint8_t **value, size_t *len, uint64_t *rev)
{
    int found;
    size_t i = kv_find(kv, key, &found);
    if (!found)
        return ID_ENOTFOUND;
    *value = kv->e[i].value;
    *len = kv->e[i].len;
    *rev = kv->e[i].rev;
    return 0;
}

uint64_t kv_revision(const struct kv *kv)
{
    return kv->revision;
}

size_t kv_count(const struct kv *kv)
{
    return kv->n;
}

static int kv_key_ok(const char *key)
{
    return key && key[0] && strlen(key) <= KV_MAX_KEY;
}

static int kv_put(struct kv *kv, const char *key, const uint8_t *value, size_t len)
{
    int found;
    size_t i = kv_find(kv, key, &found);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return ID_ENOMEM;
    if (len)
        memcpy(copy, value, len);
    if (found) {
        free(kv->e[i].value);
    } else {
        if (kv->n >= KV_MAX_ENTRIES) {
            free(copy);
            return ID_ENOSPC;
        }
        if (ARRAY_RESERVE(kv->e, kv->cap, kv->n, 1, 64) < 0) {
            free(copy);
            return ID_ENOMEM;
        }
        char *k = strdup(key);
        if (!k) {
            free(copy);
            return ID_ENOMEM;
        }
        memmove(&kv->e[i + 1], &kv->e[i], (kv->n - i) * sizeof *kv->e);
        kv->n++;
        kv->e[i].key = k;
    }
    kv->e[i].value = copy;
    kv->e[i].len = len;
    kv->e[i].rev = ++kv->revision;
    return 0;
}

static void kv_apply(void *self, const struct sm_cmd *cmd, struct sm_result *res)
{
    struct kv *kv = self;
    if (cmd->version != 1) {
        res->status = ID_EVERSION;
        return;
    }
    if (cmd->type == IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT) {
        Idunno__CtlKvPut *p = idunno__ctl_kv_put__unpack(NULL, cmd->len, cmd->body);
        if (!p) {
            res->status = ID_EPROTO;
            return;
        }
        if (!kv_key_ok(p->key) || p->value.len > KV_MAX_VALUE)
            res->status = ID_EINVAL;
        else
            res->status = kv_put(kv, p->key, p->value.data, p->value.len);
        idunno__ctl_kv_put__free_unpacked(p, NULL);
    } else if (cmd->type == IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_DEL) {
        Idunno__CtlKvGet *g = idunno__ctl_kv_get__unpack(NULL, cmd->len, cmd->body);
        if (!g) {
            res->status = ID_EPROTO;
            return;
        }
        int found;
        size_t i = kv_key_ok(g->key) ? kv_find(kv, g->key, &found) : (found = 0, 0);
        if (!found) {
            res->status = ID_ENOTFOUND;
        } else {
            free(kv->e[i].key);
            free(kv->e[i].value);
            memmove(&kv->e[i], &kv->e[i + 1], (kv->n - i - 1) * sizeof *kv->e);
            kv->n--;
            kv->revision++;
        }
        idunno__ctl_kv_get__free_unpacked(g, NULL);
    } else {
        res->status = ID_EUNKNOWNTYPE;
        return;
    }
    if (res->status == 0 && res->want_body) {
        Idunno__CtlKvPutResult r = IDUNNO__CTL_KV_PUT_RESULT__INIT;
        r.revision = kv->revision;
        size_t n = idunno__ctl_kv_put_result__get_packed_size(&r);
        res->body = malloc(n ? n : 1);
        if (res->body)
            res->len = idunno__ctl_kv_put_result__pack(&r, res->body);
    }
}

static int kv_build(void *self, const ProtobufCMessage *msg)
{
    struct kv *fresh = self;
    const Idunno__CtlKvState *st = (const Idunno__CtlKvState *)msg;
    for (size_t i = 0; i < st->n_entries; i++) {
        const Idunno__CtlKvEntry *e = st->entries[i];
        if (!kv_key_ok(e->key) || e->value.len > KV_MAX_VALUE ||
            (i > 0 && strcmp(st->entries[i - 1]->key, e->key) >= 0))
            return ID_EPROTO;
        int rc = kv_put(fresh, e->key, e->value.data, e->value.len);
        if (rc < 0)
            return rc;
        fresh->e[fresh->n - 1].rev = e->revision;
    }
    fresh->revision = st->revision;
    return 0;
}

static void kv_clear_any(void *self)
{
    kv_clear(self);
}

static const struct sm_section kv_section = {
    .desc = &idunno__ctl_kv_state__descriptor,
    .state_size = sizeof(struct kv),
    .clear = kv_clear_any,
    .build = kv_build,
};

static int kv_snapshot(void *self, struct sm_buf *out)
{
    struct kv *kv = self;
    Idunno__CtlKvEntry *rows = calloc(kv->n ? kv->n : 1, sizeof *rows);
    Idunno__CtlKvEntry **ptrs = calloc(kv->n ? kv->n : 1, sizeof *ptrs);
    int rc = ID_ENOMEM;
    if (rows && ptrs) {
        for (size_t i = 0; i < kv->n; i++) {
            idunno__ctl_kv_entry__init(&rows[i]);
            rows[i].key = kv->e[i].key;
            rows[i].value.data = kv->e[i].value;
            rows[i].value.len = kv->e[i].len;
            rows[i].revision = kv->e[i].rev;
            ptrs[i] = &rows[i];
        }
        Idunno__CtlKvState st = IDUNNO__CTL_KV_STATE__INIT;
        st.revision = kv->revision;
        st.n_entries = kv->n;
        st.entries = ptrs;
        rc = sm_buf_append_pb(out, &st.base);
    }
    free(rows);
    free(ptrs);
    return rc;
}

const struct sm_ops kv_sm_ops = {
    .name = "kv",
    .id = SM_ID_KV,
    .type_lo = IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_KV_PUT,
    .type_hi = 999,
    .snapshot_version = 1,
    .apply = kv_apply,
    .snapshot = kv_snapshot,
    .section = &kv_section,
    .digest = NULL,
};
