/* sm.c — the replicated state machine framework (see sm.h): entry and snapshot
 * codecs, dispatch in log order, digests. */
#include "ctl/sm.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"
#include "idunno.pb-c.h"

#define SM_SNAPSHOT_FORMAT 1

/* ---- buffers ------------------------------------------------------------------------------ */

static int sm_buf_reserve(struct sm_buf *b, size_t extra)
{
    return ARRAY_RESERVE(b->data, b->cap, b->len, extra, 256);
}

int sm_buf_append(struct sm_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (sm_buf_reserve(b, n) < 0)
        return ID_ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int sm_buf_append_pb(struct sm_buf *b, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n == 0) /* an all-default message packs to nothing; b->data may still be NULL */
        return 0;
    if (sm_buf_reserve(b, n) < 0)
        return ID_ENOMEM;
    b->len += protobuf_c_message_pack(m, b->data + b->len);
    return 0;
}

void sm_buf_free(struct sm_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void sm_result_clear(struct sm_result *res)
{
    free(res->body);
    res->body = NULL;
    res->len = 0;
}

/* ---- registration ------------------------------------------------------------------------- */

void sm_init(struct sm *sm)
{
    memset(sm, 0, sizeof *sm);
}

int sm_register(struct sm *sm, const struct sm_ops *ops, void *self)
{
    if (!ops || !ops->apply || !ops->snapshot || (!ops->restore && !ops->section) ||
        ops->type_lo > ops->type_hi || ops->id == 0)
        return ID_EINVAL;
    if (sm->n_subs == SM_MAX_SUBS)
        return ID_EINVAL;
    for (size_t i = 0; i < sm->n_subs; i++) {
        const struct sm_ops *o = sm->subs[i].ops;
        if (o->id == ops->id || !(ops->type_hi < o->type_lo || ops->type_lo > o->type_hi))
            return ID_EEXIST;
    }
    size_t at = sm->n_subs;
    while (at > 0 && sm->subs[at - 1].ops->id > ops->id) {
        sm->subs[at] = sm->subs[at - 1];
        at--;
    }
    sm->subs[at].ops = ops;
    sm->subs[at].self = self;
    sm->n_subs++;
    return 0;
}

static struct sm_sub *sm_owner(struct sm *sm, uint32_t type)
{
    for (size_t i = 0; i < sm->n_subs; i++)
        if (type >= sm->subs[i].ops->type_lo && type <= sm->subs[i].ops->type_hi)
            return &sm->subs[i];
    return NULL;
}

/* ---- entries ------------------------------------------------------------------------------ */

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Header + message + zero padding to a multiple of 8, in one buffer. */
static int sm_frame(uint32_t magic, const ProtobufCMessage *m, void *(*alloc)(size_t), void **out,
                    size_t *out_len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > UINT32_MAX - 16)
        return ID_ETOOBIG;
    size_t total = (SM_ENTRY_HEADER + n + 7) & ~(size_t)7;
    uint8_t *buf = (alloc ? alloc : malloc)(total);
    if (!buf)
        return ID_ENOMEM;
    put_le32(buf, magic);
    put_le32(buf + 4, (uint32_t)n);
    protobuf_c_message_pack(m, buf + SM_ENTRY_HEADER);
    memset(buf + SM_ENTRY_HEADER + n, 0, total - SM_ENTRY_HEADER - n);
    *out = buf;
    *out_len = total;
    return 0;
}

/* Checks header, length and padding; on success body and n locate the message. */
static int sm_unframe(uint32_t magic, const void *data, size_t len, size_t max,
                      const uint8_t **body, size_t *n)
{
    const uint8_t *p = data;
    if (!p || len < SM_ENTRY_HEADER || len % 8 != 0 || get_le32(p) != magic)
        return ID_EPROTO;
    size_t m = get_le32(p + 4);
    if (m > max || m > len - SM_ENTRY_HEADER || len - SM_ENTRY_HEADER - m >= 8)
        return ID_EPROTO;
    for (size_t i = SM_ENTRY_HEADER + m; i < len; i++)
        if (p[i] != 0)
            return ID_EPROTO;
    *body = p + SM_ENTRY_HEADER;
    *n = m;
    return 0;
}

int sm_encode(const struct sm_cmd *cmd, void *(*alloc)(size_t), void **out, size_t *out_len)
{
    if (cmd->len > SM_MAX_ENTRY - 64)
        return ID_ETOOBIG;
    Idunno__CtlCommand env = IDUNNO__CTL_COMMAND__INIT;
    env.type = cmd->type;
    env.version = cmd->version;
    env.body.data = (uint8_t *)cmd->body;
    env.body.len = cmd->len;
    env.origin = cmd->origin;
    env.seq = cmd->seq;
    env.time_ms = cmd->time_ms;
    return sm_frame(SM_ENTRY_MAGIC, &env.base, alloc, out, out_len);
}

int sm_decode(const void *entry, size_t len, struct sm_decoded *out)
{
    const uint8_t *body;
    size_t n;
    if (sm_unframe(SM_ENTRY_MAGIC, entry, len, SM_MAX_ENTRY, &body, &n) < 0)
        return ID_EPROTO;
    Idunno__CtlCommand *env = idunno__ctl_command__unpack(NULL, n, body);
    if (!env)
        return ID_EPROTO;
    memset(out, 0, sizeof *out);
    out->msg = env;
    out->cmd.type = env->type;
    out->cmd.version = env->version;
    out->cmd.body = env->body.data;
    out->cmd.len = env->body.len;
    out->cmd.origin = env->origin;
    out->cmd.seq = env->seq;
    out->cmd.time_ms = env->time_ms;
    return 0;
}

void sm_decoded_free(struct sm_decoded *d)
{
    if (d->msg)
        idunno__ctl_command__free_unpacked(d->msg, NULL);
    d->msg = NULL;
}

/* ---- apply -------------------------------------------------------------------------------- */

void sm_apply(struct sm *sm, struct sm_cmd *cmd, struct sm_result *res)
{
    res->status = 0;
    res->body = NULL;
    res->len = 0;
    cmd->applied = ++sm->applied;
    struct sm_sub *sub = sm_owner(sm, cmd->type);
    if (!sub) {
        res->status = ID_EUNKNOWNTYPE;
        return;
    }
    sub->ops->apply(sub->self, cmd, res);
    if (!res->want_body)
        sm_result_clear(res);
}

void sm_apply_malformed(struct sm *sm)
{
    sm->applied++;
    sm->malformed++;
}

int sm_apply_entry(struct sm *sm, const void *entry, size_t len, struct sm_result *res)
{
    struct sm_decoded d;
    int rc = sm_decode(entry, len, &d);
    if (rc < 0) {
        sm_apply_malformed(sm);
        res->status = rc;
        res->body = NULL;
        res->len = 0;
        return rc;
    }
    sm_apply(sm, &d.cmd, res);
    sm_decoded_free(&d);
    return 0;
}

/* ---- snapshots ---------------------------------------------------------------------------- */

int sm_snapshot(struct sm *sm, void *(*alloc)(size_t), void **out, size_t *out_len)
{
    struct sm_buf bufs[SM_MAX_SUBS];
    Idunno__CtlSnapshotSection secs[SM_MAX_SUBS];
    Idunno__CtlSnapshotSection *ptrs[SM_MAX_SUBS];
    memset(bufs, 0, sizeof bufs);
    int rc = 0;
    for (size_t i = 0; i < sm->n_subs && rc == 0; i++) {
        rc = sm->subs[i].ops->snapshot(sm->subs[i].self, &bufs[i]);
        idunno__ctl_snapshot_section__init(&secs[i]);
        secs[i].sm_id = sm->subs[i].ops->id;
        secs[i].version = sm->subs[i].ops->snapshot_version;
        secs[i].data.data = bufs[i].data;
        secs[i].data.len = bufs[i].len;
        ptrs[i] = &secs[i];
    }
    if (rc == 0) {
        Idunno__CtlSnapshot snap = IDUNNO__CTL_SNAPSHOT__INIT;
        snap.format = SM_SNAPSHOT_FORMAT;
        snap.applied = sm->applied;
        snap.n_sections = sm->n_subs;
        snap.sections = ptrs;
        rc = sm_frame(SM_SNAPSHOT_MAGIC, &snap.base, alloc, out, out_len);
    }
    for (size_t i = 0; i < sm->n_subs; i++)
        sm_buf_free(&bufs[i]);
    return rc;
}

int sm_restore(struct sm *sm, const void *data, size_t len)
{
    const uint8_t *body;
    size_t n;
    if (sm_unframe(SM_SNAPSHOT_MAGIC, data, len, SIZE_MAX, &body, &n) < 0)
        return ID_EPROTO;
    Idunno__CtlSnapshot *snap = idunno__ctl_snapshot__unpack(NULL, n, body);
    if (!snap)
        return ID_EPROTO;
    int rc = 0;
    if (snap->format != SM_SNAPSHOT_FORMAT)
        rc = ID_EVERSION;
    /* Every section must belong to a registered sub-state machine, once. */
    for (size_t i = 0; rc == 0 && i < snap->n_sections; i++) {
        int known = 0;
        for (size_t k = 0; k < sm->n_subs; k++)
            known |= sm->subs[k].ops->id == snap->sections[i]->sm_id;
        for (size_t j = 0; j < i; j++)
            if (snap->sections[j]->sm_id == snap->sections[i]->sm_id)
                rc = ID_EPROTO;
        if (!known)
            rc = ID_EVERSION;
    }
    for (size_t k = 0; rc == 0 && k < sm->n_subs; k++) {
        const Idunno__CtlSnapshotSection *sec = NULL;
        for (size_t i = 0; i < snap->n_sections; i++)
            if (snap->sections[i]->sm_id == sm->subs[k].ops->id)
                sec = snap->sections[i];
        /* A present but empty section restores from a zero-length buffer, which
         * is not the same as absent (NULL): pass a valid pointer. */
        static const uint8_t empty[1];
        rc = sec ? sm_ops_restore(sm->subs[k].ops, sm->subs[k].self, sec->version,
                                  sec->data.len ? sec->data.data : empty, sec->data.len)
                 : sm_ops_restore(sm->subs[k].ops, sm->subs[k].self, 0, NULL, 0);
    }
    if (rc == 0) {
        sm->applied = snap->applied;
        sm->malformed = 0;
    }
    idunno__ctl_snapshot__free_unpacked(snap, NULL);
    return rc;
}

/* ---- snapshot scratch --------------------------------------------------------------------- */

/* A block's header keeps what follows it aligned for any element type. */
union scratch_head {
    struct {
        void *prev;    /* the block before */
        void *adopted; /* a caller's allocation freed with this block */
    } h;
    max_align_t align;
};

void *sm_scratch_calloc(struct sm_scratch *s, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (size && n > (SIZE_MAX - sizeof(union scratch_head)) / size) {
        s->failed = 1;
        return NULL;
    }
    union scratch_head *h = calloc(1, sizeof *h + n * size);
    if (!h) {
        s->failed = 1;
        return NULL;
    }
    h->h.prev = s->blocks;
    s->blocks = h;
    return h + 1;
}

void sm_scratch_adopt(struct sm_scratch *s, void *p)
{
    if (!p)
        return;
    union scratch_head *h = calloc(1, sizeof *h);
    if (!h) {
        free(p);
        s->failed = 1;
        return;
    }
    h->h.adopted = p;
    h->h.prev = s->blocks;
    s->blocks = h;
}

void sm_scratch_free(struct sm_scratch *s)
{
    while (s->blocks) {
        union scratch_head *h = s->blocks;
        s->blocks = h->h.prev;
        free(h->h.adopted);
        free(h);
    }
    s->failed = 0;
}

int sm_scratch_pack(struct sm_scratch *s, struct sm_buf *out, const ProtobufCMessage *m)
{
    int rc = s->failed ? ID_ENOMEM : sm_buf_append_pb(out, m);
    sm_scratch_free(s);
    return rc;
}

/* ---- restore -------------------------------------------------------------------------------- */

/* The frame of sm_section, around s->build. */
static int restore_section(const struct sm_section *s, uint32_t want, void *state, uint32_t version,
                           const uint8_t *data, size_t len)
{
    if (!data) {
        s->clear(state);
        return 0;
    }
    if (version != want)
        return ID_EVERSION;
    ProtobufCMessage *msg = protobuf_c_message_unpack(s->desc, NULL, len, data);
    if (!msg)
        return ID_EPROTO;
    void (*release)(void *) = s->release ? s->release : s->clear;
    void *fresh = calloc(1, s->state_size);
    int rc = fresh ? s->build(fresh, msg) : ID_ENOMEM;
    protobuf_c_message_free_unpacked(msg, NULL);
    if (rc == 0) {
        release(state);
        memcpy(state, fresh, s->state_size);
    } else if (fresh) {
        release(fresh);
    }
    free(fresh);
    return rc;
}

int sm_ops_restore(const struct sm_ops *ops, void *self, uint32_t version, const uint8_t *data,
                   size_t len)
{
    if (ops->restore)
        return ops->restore(self, version, data, len);
    return restore_section(ops->section, ops->snapshot_version, self, version, data, len);
}

void sm_reset(struct sm *sm)
{
    for (size_t k = 0; k < sm->n_subs; k++)
        sm_ops_restore(sm->subs[k].ops, sm->subs[k].self, 0, NULL, 0);
    sm->applied = 0;
    sm->malformed = 0;
}

/* ---- digests ------------------------------------------------------------------------------ */

void sm_digest(struct sm *sm, uint8_t out[SHA256_LEN])
{
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, "IDSM1", 5);
    sha256_update_u64(&h, sm->applied);
    for (size_t k = 0; k < sm->n_subs; k++) {
        const struct sm_ops *o = sm->subs[k].ops;
        sha256_update_u64(&h, o->id);
        sha256_update_u64(&h, o->snapshot_version);
        if (o->digest) {
            o->digest(sm->subs[k].self, &h);
            continue;
        }
        struct sm_buf b = {0};
        if (o->snapshot(sm->subs[k].self, &b) < 0) {
            /* Out of memory: make the digest visibly unlike any replica's. */
            sha256_update(&h, "ENOMEM", 6);
        } else {
            sha256_update_u64(&h, b.len);
            sha256_update(&h, b.data, b.len);
        }
        sm_buf_free(&b);
    }
    sha256_final(&h, out);
}

void sm_digest_hex(struct sm *sm, char out[2 * SHA256_LEN + 1])
{
    uint8_t d[SHA256_LEN];
    sm_digest(sm, d);
    sha256_hex(d, out);
}
