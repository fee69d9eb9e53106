/* raft_wire.c — the pure checker of libraft's TCP wire format (raft_wire.h):
 * the handshake decoder/encoder and a streaming message scanner that reads
 * each message's preamble and header word by word, checks every length
 * against its type and the bounds, and judges the term. */
#include "ctl/raft_wire.h"

#include <string.h>

#include "base/err.h"

enum { ST_PRE = 0, ST_HDR, ST_PAY, ST_DEAD_BASE = 100 };

enum {
    T_APPEND_ENTRIES = 1,
    T_APPEND_ENTRIES_RESULT,
    T_REQUEST_VOTE,
    T_REQUEST_VOTE_RESULT,
    T_INSTALL_SNAPSHOT,
    T_TIMEOUT_NOW,
};

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

long raft_wire_hello_decode(const uint8_t *buf, size_t len, struct raft_wire_hello *out)
{
    if (len >= 8 && get64(buf) != RAFT_WIRE_PROTOCOL)
        return ID_EVERSION;
    if (len >= 8 + 8 && get64(buf + 8) == 0)
        return ID_EPROTO;
    if (len < RAFT_WIRE_HELLO_FIXED)
        return 0;
    uint64_t alen = get64(buf + 16);
    if (alen > RAFT_WIRE_ADDR_MAX)
        return ID_ETOOBIG;
    if (alen == 0)
        return ID_EPROTO;
    /* The address must be printable up to its NUL, and NUL-padded after it;
     * checked on what has arrived so far, so garbage is refused early. */
    size_t avail = len - RAFT_WIRE_HELLO_FIXED < alen ? len - RAFT_WIRE_HELLO_FIXED : (size_t)alen;
    const uint8_t *a = buf + RAFT_WIRE_HELLO_FIXED;
    size_t nul = avail;
    for (size_t i = 0; i < avail; i++) {
        if (nul == avail && a[i] == 0)
            nul = i;
        else if (nul == avail && (a[i] < 0x21 || a[i] > 0x7e))
            return ID_EPROTO;
        else if (nul != avail && a[i] != 0)
            return ID_EPROTO;
    }
    if (avail < alen)
        return 0;
    if (nul == 0 || nul == avail)
        return ID_EPROTO;
    out->id = get64(buf + 8);
    memcpy(out->addr, a, nul);
    out->addr[nul] = '\0';
    return (long)(RAFT_WIRE_HELLO_FIXED + alen);
}

long raft_wire_hello_encode(uint64_t id, const char *addr, uint8_t *out)
{
    size_t n = strlen(addr);
    size_t padded = (n + 1 + 7) / 8 * 8;
    if (n == 0 || padded > RAFT_WIRE_ADDR_MAX)
        return ID_ETOOBIG;
    put64(out, RAFT_WIRE_PROTOCOL);
    put64(out + 8, id);
    put64(out + 16, padded);
    memset(out + RAFT_WIRE_HELLO_FIXED, 0, padded);
    memcpy(out + RAFT_WIRE_HELLO_FIXED, addr, n);
    return (long)(RAFT_WIRE_HELLO_FIXED + padded);
}

/* Header length acceptable for the type? libraft decodes the fields a type
 * has without looking at the length, so a shorter header is refused; later
 * format versions append words (libraft 0.22 sends a 32-byte
 * AppendEntriesResult), so fixed-size types may carry up to two more.
 * AppendEntries and InstallSnapshot may carry one unwritten trailing word;
 * their exact checks come once the counts are read. */
static bool header_len_ok(uint64_t type, uint64_t hlen)
{
    if (hlen == 0 || hlen % 8 != 0)
        return false;
    switch (type) {
    case T_REQUEST_VOTE: return hlen >= 32 && hlen <= 32 + 16;
    case T_REQUEST_VOTE_RESULT: return hlen >= 16 && hlen <= 16 + 16;
    case T_APPEND_ENTRIES_RESULT:
    case T_TIMEOUT_NOW: return hlen >= 24 && hlen <= 24 + 16;
    case T_APPEND_ENTRIES: return hlen >= 40 && hlen <= RAFT_WIRE_MAX_HEADER + 8;
    case T_INSTALL_SNAPSHOT: return hlen >= 48 && hlen <= 56 + RAFT_WIRE_MAX_CONF;
    default: return false;
    }
}

static enum raft_wire_verdict check_term(struct raft_wire_scan *s, uint64_t term,
                                         const struct raft_wire_policy *pol)
{
    s->term = term;
    if (pol->verified_voter || term <= pol->current_term)
        return RAFT_WIRE_OK;
    return term - pol->current_term > RAFT_WIRE_TERM_SLACK ? RAFT_WIRE_TERM_JUMP : RAFT_WIRE_OK;
}

/* AppendEntries header: term, prev index, prev term, commit, entry count at
 * word 4, then two words per entry (term; type byte, 3 unused, u32 size). */
static enum raft_wire_verdict append_entries_word(struct raft_wire_scan *s, uint64_t w, uint64_t v)
{
    if (w == 4) {
        uint64_t body = s->hlen - 40;
        if (v > (RAFT_WIRE_MAX_HEADER - 40) / 16 || (body != 16 * v && body != 16 * v + 8))
            return RAFT_WIRE_BAD_ENTRY;
        s->n_entries = v;
        return RAFT_WIRE_OK;
    }
    if (w < 5 || w >= 5 + 2 * s->n_entries || (w - 5) % 2 == 0)
        return RAFT_WIRE_OK;
    uint8_t etype = (uint8_t)(v & 0xff);
    if (etype < 1 || etype > 3)
        return RAFT_WIRE_BAD_ENTRY;
    s->payload += v >> 32;
    return s->payload > RAFT_WIRE_MAX_PAYLOAD ? RAFT_WIRE_BAD_PAYLOAD : RAFT_WIRE_OK;
}

/* InstallSnapshot header: term, last index, last term, conf index, conf
 * length at word 4, the configuration, then the data length. */
static enum raft_wire_verdict install_snapshot_word(struct raft_wire_scan *s, uint64_t w,
                                                    uint64_t v)
{
    if (w == 4) {
        uint64_t room = s->hlen - 48;
        if (v % 8 != 0 || v > RAFT_WIRE_MAX_CONF || (room != v && room != v + 8))
            return RAFT_WIRE_BAD_CONF;
        s->conf_len = v;
        return RAFT_WIRE_OK;
    }
    if (w == 5 + s->conf_len / 8) {
        s->payload = v;
        if (v > RAFT_WIRE_MAX_PAYLOAD)
            return RAFT_WIRE_BAD_PAYLOAD;
    }
    return RAFT_WIRE_OK;
}

static enum raft_wire_verdict header_word(struct raft_wire_scan *s, uint64_t w, uint64_t v,
                                          const struct raft_wire_policy *pol)
{
    if (w == 0)
        return check_term(s, v, pol);
    if (s->type == T_APPEND_ENTRIES)
        return append_entries_word(s, w, v);
    if (s->type == T_INSTALL_SNAPSHOT)
        return install_snapshot_word(s, w, v);
    return RAFT_WIRE_OK;
}

static enum raft_wire_verdict preamble_done(struct raft_wire_scan *s)
{
    uint64_t word = get64(s->acc);
    s->type = word & 0xffff;
    s->hlen = get64(s->acc + 8);
    if (word >> 32 != 0 || s->type < T_APPEND_ENTRIES || s->type > T_TIMEOUT_NOW)
        return RAFT_WIRE_BAD_TYPE;
    if (!header_len_ok(s->type, s->hlen))
        return RAFT_WIRE_BAD_HEADER;
    s->hoff = 0;
    s->n_entries = 0;
    s->conf_len = 0;
    s->payload = 0;
    s->term = 0;
    s->state = ST_HDR;
    return RAFT_WIRE_OK;
}

static void message_done(struct raft_wire_scan *s)
{
    s->messages++;
    s->state = ST_PRE;
}

static void header_done(struct raft_wire_scan *s)
{
    s->left = s->payload;
    if (s->left == 0)
        message_done(s);
    else
        s->state = ST_PAY;
}

enum raft_wire_verdict raft_wire_scan_feed(struct raft_wire_scan *s, const uint8_t *p, size_t n,
                                           const struct raft_wire_policy *pol, uint64_t *term_out)
{
    uint64_t top = 0;
    size_t i = 0;
    enum raft_wire_verdict v = RAFT_WIRE_OK;
    if (s->state >= ST_DEAD_BASE)
        return (enum raft_wire_verdict)(s->state - ST_DEAD_BASE);
    while (i < n && v == RAFT_WIRE_OK) {
        if (s->state == ST_PAY) {
            size_t take = n - i < s->left ? n - i : (size_t)s->left;
            i += take;
            s->left -= take;
            if (s->left == 0)
                message_done(s);
            continue;
        }
        unsigned want = s->state == ST_PRE ? 16 : 8;
        s->acc[s->have++] = p[i++];
        if (s->have < want)
            continue;
        s->have = 0;
        if (s->state == ST_PRE) {
            v = preamble_done(s);
            continue;
        }
        v = header_word(s, s->hoff / 8, get64(s->acc), pol);
        if (s->hoff == 0 && s->term > top)
            top = s->term;
        s->hoff += 8;
        if (v == RAFT_WIRE_OK && s->hoff == s->hlen)
            header_done(s);
    }
    if (term_out)
        *term_out = top;
    if (v != RAFT_WIRE_OK)
        s->state = ST_DEAD_BASE + (int)v;
    return v;
}

const char *raft_wire_verdict_name(enum raft_wire_verdict v)
{
    switch (v) {
    case RAFT_WIRE_OK: return "ok";
    case RAFT_WIRE_BAD_TYPE: return "raft_type";
    case RAFT_WIRE_BAD_HEADER: return "raft_header";
    case RAFT_WIRE_BAD_ENTRY: return "raft_entries";
    case RAFT_WIRE_BAD_CONF: return "raft_conf";
    case RAFT_WIRE_BAD_PAYLOAD: return "raft_payload";
    case RAFT_WIRE_TERM_JUMP: return "raft_term";
    }
    return "unknown";
}
