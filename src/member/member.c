/* member.c — libuv glue around the SWIM core (see member.h and swim.h): a timer
 * drives the core, net.h datagrams carry its packets, and membership changes are
 * logged and handed to subscribers. */
#include "member/member.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "idunno.pb-c.h"
#include "member/swim.h"
#include "member/swim_codec.h"
#include "net/net.h"

_Static_assert(SWIM_MAX_PACKET_BYTES + FRAME_HEADER_LEN <= FRAME_MAX_DATAGRAM,
               "a SWIM packet and its frame header must fit one datagram");

#define MEMBER_TICK_MS 10
#define MEMBER_MAX_SUBSCRIBERS 8
#define MEMBER_LEAVE_LINGER_MS 300

struct subscriber {
    member_event_fn fn;
    void *ud;
};

struct member {
    uv_loop_t *loop;
    struct net *net;
    struct swim *swim;
    uv_timer_t tick;
    uv_timer_t leave_timer;
    int closing_handles;
    void (*leave_done)(void *);
    void *leave_ud;
    struct subscriber subs[MEMBER_MAX_SUBSCRIBERS];
    size_t n_subs;
    uint64_t bad_packets;
};

const char *member_state_name(enum member_state s)
{
    switch (s) {
    case MEMBER_ALIVE: return "alive";
    case MEMBER_SUSPECT: return "suspect";
    case MEMBER_FAILED: return "failed";
    case MEMBER_LEFT: return "left";
    }
    return "?";
}

static void on_swim_send(void *ud, const char *addr, const struct swim_packet *pkt)
{
    struct member *m = ud;
    uint8_t buf[FRAME_MAX_DATAGRAM];
    int len = swim_encode(pkt, buf, SWIM_MAX_PACKET_BYTES);
    if (len < 0) {
        LOG_WARN("member", "gossip packet too large for a datagram; dropped");
        return;
    }
    net_send_datagram(m->net, addr, IDUNNO__MSG_TYPE__MSG_SWIM, buf, (size_t)len);
}

static void on_swim_event(void *ud, const struct member_view *who, enum member_state old_state,
                          enum member_state new_state, const char *by)
{
    struct member *m = ud;
    /* `by` says whose report it was: the suspecter, the declarer, "restart" for
     * an identity replaced by a newer incarnation, the member itself for a
     * refutation or a leave. */
    if (old_state == new_state)
        LOG_INFO("member", "member %s#%llu at %s joined", who->name,
                 (unsigned long long)who->incarnation, who->addr);
    else
        LOG_INFO("member", "member %s#%llu at %s is %s (was %s%s%s)", who->name,
                 (unsigned long long)who->incarnation, who->addr, member_state_name(new_state),
                 member_state_name(old_state), by && by[0] ? "; by " : "", by ? by : "");
    for (size_t i = 0; i < m->n_subs; i++)
        m->subs[i].fn(m->subs[i].ud, who, old_state, new_state);
}

static uint64_t on_new_incarnation(void *ud, uint64_t current)
{
    (void)ud;
    uint64_t now = id_wall_ms();
    LOG_WARN("member", "another member reported this node failed, left or restarted; taking a "
                       "new incarnation");
    return now > current ? now : current + 1;
}

static uint64_t on_wall_ms(void *ud)
{
    (void)ud;
    return id_wall_ms();
}

/* 1 if a and b name the same endpoint ("localhost:7000" and "127.0.0.1:7000"). */
static int same_endpoint(const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return 1;
    struct sockaddr_storage x, y;
    if (net_parse_addr(a, &x) < 0 || net_parse_addr(b, &y) < 0 || x.ss_family != y.ss_family)
        return 0;
    if (x.ss_family == AF_INET) {
        const struct sockaddr_in *p = (const void *)&x, *q = (const void *)&y;
        return p->sin_port == q->sin_port && p->sin_addr.s_addr == q->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *p = (const void *)&x, *q = (const void *)&y;
    return p->sin6_port == q->sin6_port &&
           memcmp(&p->sin6_addr, &q->sin6_addr, sizeof p->sin6_addr) == 0;
}

static void on_datagram(void *ud, const char *from, const uint8_t *body, size_t len)
{
    struct member *m = ud;
    struct swim_packet p;
    if (swim_decode(body, len, &p) < 0) {
        m->bad_packets++;
        LOG_DEBUG("member", "malformed gossip packet from %s dropped", from);
        return;
    }
    /* The core answers the real source; the packet's own from_addr names the
     * same endpoint unless it was forged (or the sender is misconfigured). */
    swim_receive(m->swim, id_now_ms(), same_endpoint(p.from_addr, from) ? p.from_addr : from, &p);
}

static void on_tick(uv_timer_t *t)
{
    struct member *m = t->data;
    swim_tick(m->swim, id_now_ms());
}

int member_create(uv_loop_t *loop, struct net *net, const struct member_config *cfg,
                  struct member **out)
{
    struct member *m = calloc(1, sizeof *m);
    if (!m)
        return ID_ENOMEM;
    m->loop = loop;
    m->net = net;
    struct swim_config sc = {
        .name = cfg->name,
        .addr = cfg->addr,
        .incarnation = cfg->incarnation,
        .probe_interval_ms = cfg->probe_interval_ms,
        .probe_timeout_ms = cfg->probe_timeout_ms,
        .suspect_timeout_ms = cfg->suspect_timeout_ms,
        .seed = cfg->incarnation ^ ((uint64_t)(uintptr_t)m << 16),
        .join = cfg->join,
    };
    struct swim_env env = {.ud = m,
                           .send = on_swim_send,
                           .event = on_swim_event,
                           .new_incarnation = on_new_incarnation,
                           .wall_ms = on_wall_ms};
    m->swim = swim_create(&sc, &env, id_now_ms());
    if (!m->swim) {
        free(m);
        return ID_ENOMEM;
    }
    int rc = net_on_datagram(net, IDUNNO__MSG_TYPE__MSG_SWIM, on_datagram, m);
    if (rc < 0) {
        swim_destroy(m->swim);
        free(m);
        return rc;
    }
    uv_timer_init(loop, &m->tick);
    m->tick.data = m;
    uv_timer_init(loop, &m->leave_timer);
    m->leave_timer.data = m;
    *out = m;
    return 0;
}

int member_start(struct member *m)
{
    LOG_INFO("member", "starting membership as %s", net_addr(m->net));
    return uv_timer_start(&m->tick, on_tick, 0, MEMBER_TICK_MS) < 0 ? ID_EIO : 0;
}

static void on_leave_linger(uv_timer_t *t)
{
    struct member *m = t->data;
    if (m->leave_done)
        m->leave_done(m->leave_ud);
}

void member_leave(struct member *m, void (*done)(void *ud), void *ud)
{
    LOG_INFO("member", "leaving the group");
    swim_leave(m->swim, id_now_ms());
    uv_timer_stop(&m->tick);
    m->leave_done = done;
    m->leave_ud = ud;
    /* Datagrams were handed to the kernel already; a short linger lets the loop
     * flush them before the process goes away. */
    uv_timer_start(&m->leave_timer, on_leave_linger, MEMBER_LEAVE_LINGER_MS, 0);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct member *m = h->data;
    if (--m->closing_handles == 0) {
        swim_destroy(m->swim);
        free(m);
    }
}

void member_destroy(struct member *m)
{
    if (!m)
        return;
    m->closing_handles = 2;
    uv_close((uv_handle_t *)&m->tick, on_handle_closed);
    uv_close((uv_handle_t *)&m->leave_timer, on_handle_closed);
}

size_t member_alive(const struct member *m, struct member_view *out, size_t max)
{
    /* Snapshot straight into out and compact it in place; only a table with
     * more entries (dead ones included) than out holds needs a copy. */
    struct member_view *views = out, *heap = NULL;
    size_t n = member_snapshot(m, out, max);
    if (n > max) {
        heap = calloc(n, sizeof *heap);
        if (!heap)
            return 0;
        size_t got = member_snapshot(m, heap, n);
        n = got < n ? got : n;
        views = heap;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (views[i].state != MEMBER_ALIVE)
            continue;
        int dup = 0;
        for (size_t j = 0; j < k && !dup; j++)
            if (strcmp(out[j].name, views[i].name) == 0) {
                if (views[i].incarnation > out[j].incarnation)
                    out[j] = views[i];
                dup = 1;
            }
        if (!dup && k < max)
            out[k++] = views[i]; /* in place k <= i, so nothing unread is overwritten */
    }
    free(heap);
    return k;
}

size_t member_snapshot(const struct member *m, struct member_view *out, size_t max)
{
    return swim_snapshot(m->swim, id_now_ms(), out, max);
}

void member_self(const struct member *m, struct member_view *out)
{
    swim_self(m->swim, out);
}

int member_subscribe(struct member *m, member_event_fn fn, void *ud)
{
    if (m->n_subs == MEMBER_MAX_SUBSCRIBERS)
        return ID_ENOMEM;
    m->subs[m->n_subs].fn = fn;
    m->subs[m->n_subs].ud = ud;
    m->n_subs++;
    return 0;
}

uint64_t member_bad_packets(const struct member *m)
{
    return m->bad_packets;
}

void member_stats(const struct member *m, struct member_stats *out)
{
    const struct swim_stats *st = swim_stats(m->swim);
    out->health = swim_health(m->swim);
    out->suspicions = st->suspicions;
    out->confirmations = st->confirmations;
    out->refutations = st->refutations;
    out->failures_declared = st->failures_declared;
    out->stalls = st->stalls;
}
