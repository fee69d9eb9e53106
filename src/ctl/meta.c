/* meta.c — the control plane's own sub-state machine (see meta.h). */
#include "ctl/meta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "idunno.pb-c.h"

struct meta {
    struct meta_leader leaders[META_HISTORY]; /* oldest first */
    size_t n;
};

struct meta *meta_create(void)
{
    return calloc(1, sizeof(struct meta));
}

void meta_destroy(struct meta *m)
{
    free(m);
}

const struct meta_leader *meta_last_leader(const struct meta *m)
{
    return m->n ? &m->leaders[m->n - 1] : NULL;
}

size_t meta_leaders(const struct meta *m, const struct meta_leader **out)
{
    *out = m->leaders;
    return m->n;
}

static int meta_valid(const Idunno__CtlLeader *l)
{
    return l->name && l->addr && strlen(l->name) < META_NAME_MAX &&
           strlen(l->addr) < META_ADDR_MAX && l->term > 0;
}

static void meta_push(struct meta *m, const Idunno__CtlLeader *l)
{
    if (m->n == META_HISTORY) {
        memmove(&m->leaders[0], &m->leaders[1], (META_HISTORY - 1) * sizeof m->leaders[0]);
        m->n--;
    }
    struct meta_leader *d = &m->leaders[m->n++];
    memset(d, 0, sizeof *d);
    d->term = l->term;
    d->raft_id = l->raft_id;
    d->since_ms = l->since_ms;
    snprintf(d->name, sizeof d->name, "%s", l->name);
    snprintf(d->addr, sizeof d->addr, "%s", l->addr);
}

static void meta_apply(void *self, const struct sm_cmd *cmd, struct sm_result *res)
{
    struct meta *m = self;
    if (cmd->type != IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_LEADER) {
        res->status = ID_EUNKNOWNTYPE;
        return;
    }
    if (cmd->version != 1) {
        res->status = ID_EVERSION;
        return;
    }
    Idunno__CtlLeader *l = idunno__ctl_leader__unpack(NULL, cmd->len, cmd->body);
    if (!l) {
        res->status = ID_EPROTO;
        return;
    }
    if (!meta_valid(l))
        res->status = ID_EINVAL;
    else if (m->n && l->term <= m->leaders[m->n - 1].term)
        /* Log order follows terms, so this only happens to a forged or
         * duplicated entry; ignoring it keeps "one leader per term". */
        res->status = ID_EEXIST;
    else
        meta_push(m, l);
    idunno__ctl_leader__free_unpacked(l, NULL);
}

static int meta_build(void *self, const ProtobufCMessage *msg)
{
    struct meta *fresh = self;
    const Idunno__CtlMetaState *st = (const Idunno__CtlMetaState *)msg;
    if (st->n_leaders > META_HISTORY)
        return ID_EPROTO;
    for (size_t i = 0; i < st->n_leaders; i++)
        if (!meta_valid(st->leaders[i]) ||
            (i > 0 && st->leaders[i]->term <= st->leaders[i - 1]->term))
            return ID_EPROTO;
    for (size_t i = 0; i < st->n_leaders; i++)
        meta_push(fresh, st->leaders[i]);
    return 0;
}

/* The history owns no memory: emptying it is zeroing it. */
static void meta_clear(void *self)
{
    memset(self, 0, sizeof(struct meta));
}

static const struct sm_section meta_section = {
    .desc = &idunno__ctl_meta_state__descriptor,
    .state_size = sizeof(struct meta),
    .clear = meta_clear,
    .build = meta_build,
};

static int meta_snapshot(void *self, struct sm_buf *out)
{
    struct meta *m = self;
    Idunno__CtlLeader rows[META_HISTORY];
    Idunno__CtlLeader *ptrs[META_HISTORY];
    for (size_t i = 0; i < m->n; i++) {
        idunno__ctl_leader__init(&rows[i]);
        rows[i].term = m->leaders[i].term;
        rows[i].raft_id = m->leaders[i].raft_id;
        rows[i].since_ms = m->leaders[i].since_ms;
        rows[i].name = m->leaders[i].name;
        rows[i].addr = m->leaders[i].addr;
        ptrs[i] = &rows[i];
    }
    Idunno__CtlMetaState st = IDUNNO__CTL_META_STATE__INIT;
    st.n_leaders = m->n;
    st.leaders = ptrs;
    return sm_buf_append_pb(out, &st.base);
}

const struct sm_ops meta_sm_ops = {
    .name = "meta",
    .id = SM_ID_META,
    .type_lo = 1,
    .type_hi = 99,
    .snapshot_version = 1,
    .apply = meta_apply,
    .snapshot = meta_snapshot,
    .section = &meta_section,
    .digest = NULL,
};
