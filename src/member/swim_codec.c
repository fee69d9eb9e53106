/* swim_codec.c — protobuf encoding of SWIM packets (see swim_codec.h). */
#include "member/swim_codec.h"

#include <string.h>

#include "base/err.h"
#include "idunno.pb-c.h"

int swim_encode(const struct swim_packet *p, uint8_t *buf, size_t cap)
{
    Idunno__SwimPacket m = IDUNNO__SWIM_PACKET__INIT;
    Idunno__SwimMember recs[SWIM_MAX_UPDATES];
    Idunno__SwimMember *ptrs[SWIM_MAX_UPDATES];
    m.kind = (uint32_t)p->kind;
    m.from_name = (char *)p->from_name;
    m.from_incarnation = p->from_incarnation;
    m.from_addr = (char *)p->from_addr;
    m.seq = p->seq;
    m.target_addr = (char *)p->target_addr;
    m.origin_addr = (char *)p->origin_addr;
    size_t n = p->n_updates < SWIM_MAX_UPDATES ? p->n_updates : SWIM_MAX_UPDATES;
    for (size_t i = 0; i < n; i++) {
        idunno__swim_member__init(&recs[i]);
        recs[i].name = (char *)p->updates[i].name;
        recs[i].addr = (char *)p->updates[i].addr;
        recs[i].incarnation = p->updates[i].incarnation;
        recs[i].heartbeat = p->updates[i].heartbeat;
        recs[i].state = (uint32_t)p->updates[i].state;
        recs[i].suspecter = (char *)p->updates[i].suspecter;
        ptrs[i] = &recs[i];
    }
    m.n_updates = n;
    m.updates = ptrs;
    size_t len = idunno__swim_packet__get_packed_size(&m);
    if (len > cap)
        return ID_ETOOBIG;
    return (int)idunno__swim_packet__pack(&m, buf);
}

static int copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return ID_EPROTO;
    memcpy(dst, src ? src : "", n + 1);
    return 0;
}

/* Addresses that may be absent, but never hold control characters. */
static int optional_addr_ok(const char *addr)
{
    return !addr[0] || swim_addr_valid(addr);
}

int swim_decode(const uint8_t *buf, size_t len, struct swim_packet *p)
{
    Idunno__SwimPacket *m = idunno__swim_packet__unpack(NULL, len, buf);
    if (!m)
        return ID_EPROTO;
    int rc = ID_EPROTO;
    memset(p, 0, sizeof *p);
    if (m->kind < SWIM_PING || m->kind > SWIM_NACK || m->n_updates > SWIM_MAX_UPDATES)
        goto out;
    p->kind = (enum swim_kind)m->kind;
    p->from_incarnation = m->from_incarnation;
    p->seq = m->seq;
    if (copy_field(p->from_name, sizeof p->from_name, m->from_name) ||
        copy_field(p->from_addr, sizeof p->from_addr, m->from_addr) ||
        copy_field(p->target_addr, sizeof p->target_addr, m->target_addr) ||
        copy_field(p->origin_addr, sizeof p->origin_addr, m->origin_addr) ||
        !swim_name_valid(p->from_name) || !optional_addr_ok(p->from_addr) ||
        !optional_addr_ok(p->target_addr) || !optional_addr_ok(p->origin_addr))
        goto out;
    for (size_t i = 0; i < m->n_updates; i++) {
        const Idunno__SwimMember *r = m->updates[i];
        struct swim_record *d = &p->updates[i];
        if (r->state > MEMBER_LEFT || copy_field(d->name, sizeof d->name, r->name) ||
            copy_field(d->addr, sizeof d->addr, r->addr) ||
            copy_field(d->suspecter, sizeof d->suspecter, r->suspecter) ||
            !swim_name_valid(d->name) || !swim_addr_valid(d->addr) ||
            (d->suspecter[0] && !swim_name_valid(d->suspecter)))
            goto out;
        d->incarnation = r->incarnation;
        d->heartbeat = r->heartbeat;
        d->state = (enum member_state)r->state;
    }
    p->n_updates = m->n_updates;
    rc = 0;
out:
    idunno__swim_packet__free_unpacked(m, NULL);
    return rc;
}
