/* node_http.c — the node's own providers for the HTTP endpoint (node_http.h)
 * and its readiness rule:
 *
 *   ready  = not shutting down
 *          and membership sees this node alive and, if it was given --join, at
 *              least one other member alive (it has joined)
 *          and the control plane knows a coordinator.
 *
 * Everything here runs on the loop thread, from http.c's publish timer.
 */
#include "node/node_http.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <raft.h>

#include "base/clock.h"
#include "base/log.h"
#include "ctl/ctl.h"
#include "ctl/ctl_relay.h"
#include "http/http.h"
#include "member/member.h"
#include "net/frame.h"
#include "net/net.h"
#include "node/node.h"
#include "node/node_ctl.h"
#include "node/node_oip.h"
#include "sched/coord.h"
#include "sched/jobs.h"
#include "sched/qstats.h"
#include "sched/worker.h"
#include "sdfs/sdfs.h"

/* ---- the node ------------------------------------------------------------------------------- */

/* Resident set size from /proc/self/statm (memory only: no disk I/O). */
static uint64_t node_http_rss_bytes(void)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void node_http_render_node(void *ud, struct prom_out *m, struct json_out *j)
{
    struct node *node = ud;
    uint64_t uptime_ms = id_now_ms() - node->started_ms;
    uint64_t rss = node_http_rss_bytes();
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;

    prom_family(m, "idunno_node_info", PROM_GAUGE,
                "This node's name, address and version (always 1).");
    prom_sample(m,
                PROM_LABELS({"name", node->cfg.name}, {"addr", node->cfg.addr},
                            {"version", IDUNNO_VERSION}),
                1);
    prom_gauge(m, "idunno_node_uptime_seconds", "Time since this node started.",
               (double)uptime_ms / 1000.0);
    prom_gauge(m, "process_start_time_seconds",
               "Start time of the process since the Unix epoch (its incarnation).",
               (double)node->incarnation / 1000.0);
    prom_gauge(m, "process_resident_memory_bytes", "Resident memory size.", (double)rss);
    prom_family(m, "process_cpu_seconds_total", PROM_COUNTER, "User and system CPU time spent.");
    prom_sample(m, PROM_NO_LABELS, cpu);

    json_out_begin_object(j, NULL);
    json_out_str(j, "name", node->cfg.name);
    json_out_str(j, "addr", node->cfg.addr);
    json_out_u64(j, "incarnation", node->incarnation);
    json_out_str(j, "version", IDUNNO_VERSION);
    json_out_u64(j, "uptime_ms", uptime_ms);
    json_out_u64(j, "rss_bytes", rss);
    json_out_end(j);
}

/* ---- membership ---------------------------------------------------------------------------- */

static const enum member_state node_http_states[] = {MEMBER_ALIVE, MEMBER_SUSPECT, MEMBER_FAILED,
                                                     MEMBER_LEFT};
#define NODE_HTTP_NSTATES (sizeof node_http_states / sizeof node_http_states[0])

/* True if views[i] is the newest incarnation of its name: metrics show one
 * series per name, the member as it is now (a restarted node's old
 * incarnation stays listed, failed, for a while). */
static int node_http_newest(const struct member_view *views, size_t n, size_t i)
{
    for (size_t k = 0; k < n; k++)
        if (k != i && strcmp(views[k].name, views[i].name) == 0 &&
            (views[k].incarnation > views[i].incarnation ||
             (views[k].incarnation == views[i].incarnation && k < i)))
            return 0;
    return 1;
}

static void node_http_render_members(void *ud, struct prom_out *m, struct json_out *j)
{
    struct node *node = ud;
    if (!node->member)
        return;
    size_t n = member_snapshot(node->member, NULL, 0);
    struct member_view *views = calloc(n ? n : 1, sizeof *views);
    unsigned char *newest = calloc(n ? n : 1, 1);
    if (!views || !newest)
        goto out;
    n = member_snapshot(node->member, views, n);
    uint64_t counts[NODE_HTTP_NSTATES] = {0};
    for (size_t i = 0; i < n; i++) {
        newest[i] = (unsigned char)node_http_newest(views, n, i);
        if (newest[i] && views[i].state < NODE_HTTP_NSTATES)
            counts[views[i].state]++;
    }

    prom_family(m, "idunno_member_state", PROM_GAUGE,
                "Membership state of each member as this node sees it (1 for its current state; "
                "the newest incarnation of each name).");
    for (size_t i = 0; i < n; i++) {
        if (!newest[i])
            continue;
        for (size_t s = 0; s < NODE_HTTP_NSTATES; s++)
            prom_sample(m,
                        PROM_LABELS({"member", views[i].name},
                                    {"state", member_state_name(node_http_states[s])}),
                        views[i].state == node_http_states[s]);
    }
    prom_family(m, "idunno_members", PROM_GAUGE, "Members by state (self included).");
    for (size_t s = 0; s < NODE_HTTP_NSTATES; s++)
        prom_sample(m, PROM_LABELS({"state", member_state_name(node_http_states[s])}),
                    (double)counts[s]);

    struct member_stats ms;
    member_stats(node->member, &ms);
    prom_gauge(m, "idunno_swim_health", "Lifeguard local health score (0 = healthy).", ms.health);
    prom_counter(m, "idunno_swim_suspicions_total", "Suspicions this node raised.", ms.suspicions);
    prom_counter(m, "idunno_swim_confirmations_total",
                 "Suspicions of others that this node's own probes confirmed.", ms.confirmations);
    prom_counter(m, "idunno_swim_refutations_total",
                 "Times this node heard itself suspected and refuted it.", ms.refutations);
    prom_counter(m, "idunno_swim_failures_declared_total", "Members this node declared failed.",
                 ms.failures_declared);
    prom_counter(m, "idunno_swim_loop_stalls_total",
                 "Times the loop stalled (membership ticks more than 100 ms apart).", ms.stalls);

    prom_counter(m, "idunno_udp_sent_bytes_total", "Gossip bytes sent (UDP, headers included).",
                 net_udp_bytes_sent(node->net));
    prom_counter(m, "idunno_udp_received_bytes_total", "Gossip bytes received (UDP).",
                 net_udp_bytes_received(node->net));
    const struct frame_stats *fs = net_frame_stats(node->net);
    prom_family(m, "idunno_bad_frames_total", PROM_COUNTER,
                "Frames and datagrams rejected (counted, then dropped), by reason.");
    prom_sample_u64(m, PROM_LABELS({"reason", "bad_magic"}), fs->bad_magic);
    prom_sample_u64(m, PROM_LABELS({"reason", "bad_version"}), fs->bad_version);
    prom_sample_u64(m, PROM_LABELS({"reason", "too_big"}), fs->too_big);
    prom_sample_u64(m, PROM_LABELS({"reason", "bad_crc"}), fs->bad_crc);
    prom_sample_u64(m, PROM_LABELS({"reason", "bad_body"}), fs->bad_body);
    prom_sample_u64(m, PROM_LABELS({"reason", "unknown_type"}), fs->unknown_type);
    prom_sample_u64(m, PROM_LABELS({"reason", "bad_auth"}), fs->bad_auth);
    prom_sample_u64(m, PROM_LABELS({"reason", "replayed"}), fs->replayed);
    prom_sample_u64(m, PROM_LABELS({"reason", "unsealed"}), fs->unsealed);
    prom_sample_u64(m, PROM_LABELS({"reason", "gossip"}), member_bad_packets(node->member));
    const struct ctl_relay_stats *rs = ctl_raft_port_stats(node->ctl);
    struct ctl_relay_stats none = {0};
    rs = rs ? rs : &none;
    prom_sample_u64(m, PROM_LABELS({"reason", "raft_auth"}), rs->bad_auth);
    prom_sample_u64(m, PROM_LABELS({"reason", "raft_handshake"}), rs->bad_handshake);
    prom_sample_u64(m, PROM_LABELS({"reason", "raft_frame"}), rs->bad_frame);
    prom_sample_u64(m, PROM_LABELS({"reason", "raft_term"}), rs->term_jump);
    prom_counter(m, "idunno_tcp_closed_by_bound_total",
                 "Connections closed or refused by a transport bound (handshake or frame "
                 "timeout, per-source limit, read buffer budget; RPC and raft ports).",
                 fs->over_limit + rs->timed_out + rs->over_source);
    size_t incoming = 0;
    size_t open = net_open_connections(node->net, &incoming);
    prom_family(m, "idunno_tcp_connections", PROM_GAUGE,
                "Open TCP connections of the RPC transport.");
    prom_sample(m, PROM_LABELS({"direction", "incoming"}), (double)incoming);
    prom_sample(m, PROM_LABELS({"direction", "outgoing"}), (double)(open - incoming));

    /* The same rows as `idunno --json list_mem`. */
    uint64_t now = id_now_ms();
    json_out_begin_array(j, NULL);
    for (size_t i = 0; i < n; i++) {
        json_out_begin_object(j, NULL);
        json_out_str(j, "name", views[i].name);
        json_out_str(j, "addr", views[i].addr);
        json_out_u64(j, "incarnation", views[i].incarnation);
        json_out_str(j, "state", member_state_name(views[i].state));
        json_out_u64(j, "since_ms", i == 0 ? now - node->started_ms : now - views[i].since_ms);
        json_out_bool(j, "self", i == 0);
        json_out_str(j, "role", node_ctl_role(node, views[i].name, views[i].addr));
        json_out_end(j);
    }
    json_out_end(j);
out:
    free(views);
    free(newest);
}

/* ---- control plane ------------------------------------------------------------------------- */

static void node_http_render_ctl(void *ud, struct prom_out *m, struct json_out *j)
{
    struct node *node = ud;
    if (!node->ctl)
        return;
    struct ctl_view v;
    ctl_view(node->ctl, &v);
    char leader[CTL_NAME_MAX], leader_addr[CTL_ADDR_MAX];
    int known = node_ctl_leader(node, leader, sizeof leader, leader_addr, sizeof leader_addr);

    prom_family(m, "idunno_ctl_leader", PROM_GAUGE,
                "The coordinator (Raft leader) this node knows of (1; no sample if none).");
    if (known)
        prom_sample(m, PROM_LABELS({"leader", leader}, {"addr", leader_addr}), 1);
    prom_gauge(m, "idunno_ctl_has_leader", "1 if this node knows a coordinator.", known);
    prom_gauge(m, "idunno_ctl_is_leader", "1 if this node is the Raft leader.",
               v.state == RAFT_LEADER);
    prom_gauge(m, "idunno_ctl_serving",
               "1 if this node is the leader and serving (its start-of-term barrier applied).",
               v.serving);
    prom_gauge(m, "idunno_ctl_voter", "1 if this node is a voter of the current configuration.",
               v.voter);
    prom_family(m, "idunno_ctl_state", PROM_GAUGE,
                "This node's Raft state (1 for the current one).");
    prom_sample(m, PROM_LABELS({"state", ctl_state_name(v.state)}), 1);
    prom_gauge(m, "idunno_ctl_term", "Current Raft term.", (double)v.term);
    prom_gauge(m, "idunno_ctl_commit_index", "Highest log index known committed.",
               (double)v.commit_index);
    prom_gauge(m, "idunno_ctl_applied_index", "Highest log index applied here.",
               (double)v.applied_index);
    prom_gauge(m, "idunno_ctl_last_index", "Last index in this node's log.", (double)v.last_index);
    prom_counter(m, "idunno_ctl_applied_commands_total", "State machine commands applied here.",
                 v.applied_commands);

    json_out_begin_object(j, NULL);
    json_out_str(j, "leader", leader);
    json_out_str(j, "leader_addr", leader_addr);
    json_out_u64(j, "leader_since_ms", v.leader_since_ms);
    json_out_u64(j, "term", v.term);
    json_out_str(j, "state", ctl_state_name(v.state));
    json_out_bool(j, "voter", v.voter);
    json_out_bool(j, "serving", v.serving);
    json_out_u64(j, "commit_index", v.commit_index);
    json_out_u64(j, "applied_index", v.applied_index);
    json_out_begin_array(j, "servers");
    struct ctl_server servers[CTL_MAX_SERVERS];
    size_t ns = ctl_servers(node->ctl, servers, CTL_MAX_SERVERS);
    if (ns > CTL_MAX_SERVERS)
        ns = CTL_MAX_SERVERS;
    for (size_t i = 0; i < ns; i++) {
        json_out_begin_object(j, NULL);
        json_out_str(j, "name", node_ctl_server_name(node, servers[i].id, servers[i].node_addr));
        json_out_str(j, "addr", servers[i].node_addr);
        json_out_str(j, "role", node_ctl_role_name(servers[i].role));
        json_out_bool(j, "leader", servers[i].id == v.leader_id);
        json_out_end(j);
    }
    json_out_end(j);
    json_out_end(j);
}

/* ---- SDFS, the worker, jobs ----------------------------------------------------------------- */

static void node_http_render_sdfs(void *ud, struct prom_out *m, struct json_out *j)
{
    struct node *node = ud;
    if (!node->sdfs)
        return;
    struct sdfs_stats st;
    sdfs_get_stats(node->sdfs, &st);
    prom_gauge(m, "idunno_sdfs_files_held", "SDFS copies (versions) stored on this node",
               (double)st.files_held);
    prom_gauge(m, "idunno_sdfs_bytes_held", "Bytes of SDFS copies stored on this node",
               (double)st.bytes_held);
    prom_counter(m, "idunno_sdfs_puts_total", "Puts this node committed as gateway", st.puts);
    prom_counter(m, "idunno_sdfs_gets_total", "Reads served through this node as gateway", st.gets);
    prom_family(m, "idunno_sdfs_repairs_total", PROM_COUNTER,
                "Re-replications this node ran as coordinator");
    prom_sample_u64(m, PROM_LABELS({"result", "done"}), st.repairs_done);
    prom_sample_u64(m, PROM_LABELS({"result", "failed"}), st.repairs_failed);
    prom_counter(m, "idunno_sdfs_bad_copies_total", "Copies reported corrupt or missing",
                 st.bad_copies_reported);
    json_out_begin_object(j, NULL);
    json_out_u64(j, "files_held", st.files_held);
    json_out_u64(j, "bytes_held", st.bytes_held);
    json_out_end(j);
}

static void node_http_render_worker(void *ud, struct prom_out *m, struct json_out *j)
{
    struct node *node = ud;
    if (!node->worker)
        return;
    struct worker_stats st;
    worker_get_stats(node->worker, &st);
    prom_counter(m, "idunno_worker_queries_total", "Queries this worker ran", st.completed);
    prom_counter(m, "idunno_worker_images_total", "Images this worker ran", st.images);
    prom_counter(m, "idunno_worker_failed_images_total",
                 "Images that could not be read, decoded or run", st.failed_images);
    prom_family(m, "idunno_worker_inference_seconds_total", PROM_COUNTER,
                "Time this worker spent running batches, in seconds");
    prom_sample(m, PROM_NO_LABELS, (double)st.infer_ms_total / 1000.0);
    prom_gauge(m, "idunno_worker_holding", "Queries accepted and not yet acknowledged",
               (double)st.holding);
    json_out_begin_object(j, NULL);
    json_out_u64(j, "queries", st.completed);
    json_out_u64(j, "images", st.images);
    json_out_u64(j, "holding", st.holding);
    json_out_end(j);
}

/* One model's latency histogram sample of a family already begun: counted
 * in ms (qstats keeps ms), exported in seconds as Prometheus' conventions
 * want for a duration. */
static void latency_histogram(struct prom_out *m, const char *model, const struct qstats *q)
{
    static const uint32_t bounds_ms[] = {5,   10,   25,   50,   100,   250,
                                         500, 1000, 2500, 5000, 10000, 30000};
    enum { nb = sizeof bounds_ms / sizeof bounds_ms[0] };
    double bounds_s[nb];
    uint64_t counts[nb + 1], below = 0;
    for (size_t b = 0; b < nb; b++) {
        bounds_s[b] = bounds_ms[b] / 1000.0;
        uint64_t le = qstats_count_le(q, bounds_ms[b]);
        counts[b] = le - below;
        below = le;
    }
    counts[nb] = qstats_total(q) - below;
    struct prom_histogram h = {bounds_s, nb, counts, (double)qstats_sum_ms(q) / 1000.0};
    prom_histogram_sample(m, PROM_LABELS({"model", model}), &h);
}

/* Online requests (coord_online.c) answered by the serving coordinator, per
 * model: metric families, and the status section "online" (an array, empty
 * elsewhere) that the dashboard shows. Their statistics are the leader's
 * own, not replicated: a new coordinator counts afresh. */
static void node_http_render_online(void *ud, struct prom_out *m, struct json_out *j)
{
    struct node *node = ud;
    int leader = node->ctl && ctl_is_serving(node->ctl);
    struct coord_online_view v[COORD_ONLINE_MODELS];
    size_t n = leader && node->coord ? coord_online_view(node->coord, v, COORD_ONLINE_MODELS) : 0;
    json_out_begin_array(j, NULL);
    uint64_t now = id_wall_ms();
    for (size_t i = 0; i < n; i++) {
        struct qstats_summary w;
        qstats_window(v[i].stats, now, &w);
        json_out_begin_object(j, NULL);
        json_out_str(j, "model", v[i].model);
        json_out_u64(j, "requests", qstats_total(v[i].stats));
        json_out_u64(j, "failed", v[i].failed);
        json_out_double(j, "rate", qstats_rate(v[i].stats, now));
        json_out_double(j, "p50_ms", w.median_ms);
        json_out_double(j, "p99_ms", w.p99_ms);
        json_out_end(j);
    }
    json_out_end(j);
    if (!leader)
        return;
    prom_family(m, "idunno_online_requests_total", PROM_COUNTER,
                "Online requests answered with results by this coordinator");
    for (size_t i = 0; i < n; i++)
        prom_sample(m, PROM_LABELS({"model", v[i].model}), (double)qstats_total(v[i].stats));
    prom_family(m, "idunno_online_failed_total", PROM_COUNTER,
                "Online requests this coordinator answered with an error");
    for (size_t i = 0; i < n; i++)
        prom_sample(m, PROM_LABELS({"model", v[i].model}), (double)v[i].failed);
    prom_family(m, "idunno_online_request_seconds", PROM_HISTOGRAM,
                "Online request latency at the coordinator, received to answered, in seconds");
    for (size_t i = 0; i < n; i++)
        latency_histogram(m, v[i].model, v[i].stats);
}

/* Job metrics come from the replicated job state, which voters hold; only the
 * serving coordinator exports them, so a job's series appear once in a
 * cluster. Its status document lists the jobs on every voter. */
static void node_http_render_jobs(void *ud, struct prom_out *m, struct json_out *j)
{
    struct node *node = ud;
    struct coord_stats cs = {0};
    if (node->coord)
        coord_get_stats(node->coord, &cs);
    int leader = node->ctl && ctl_is_serving(node->ctl);
    uint64_t now = id_wall_ms();
    size_t n = node->jobs ? jobs_count(node->jobs) : 0;
    if (leader) {
        prom_gauge(m, "idunno_coordinator_active", "1 while this node dispatches queries",
                   cs.active);
        prom_counter(m, "idunno_coordinator_dispatched_total", "Queries dispatched by this node",
                     cs.dispatched);
        prom_counter(m, "idunno_coordinator_requeued_total",
                     "Queries put back at the head of their queue", cs.requeued);
        prom_counter(m, "idunno_coordinator_adopted_total",
                     "Queries adopted from workers when taking over", cs.adopted);
        prom_counter(m, "idunno_coordinator_online_received_total",
                     "Online requests this node received as coordinator", cs.online_requests);
        prom_counter(m, "idunno_coordinator_online_retried_total",
                     "Online requests moved to another run after a worker failed them",
                     cs.online_retried);
        prom_counter(m, "idunno_coordinator_online_repeats_total",
                     "Online requests that arrived again (forwarded anew) and were not run again",
                     cs.online_repeats);
        const char *names[] = {"idunno_job_queries_total", "idunno_job_images_done_total",
                               "idunno_job_images", "idunno_job_query_rate",
                               "idunno_job_duplicates_total"};
        const char *help[] = {"Queries completed", "Images with a stored result",
                              "Images queued so far", "Queries per second over the last 10 s",
                              "Results that arrived twice and were dropped"};
        const enum prom_type types[] = {PROM_COUNTER, PROM_COUNTER, PROM_GAUGE, PROM_GAUGE,
                                        PROM_COUNTER};
        for (int f = 0; f < 5; f++) {
            prom_family(m, names[f], types[f], help[f]);
            for (size_t i = 0; i < n; i++) {
                struct job_rec *job = jobs_at(node->jobs, i);
                double v = f == 0   ? (double)job->queries_done
                           : f == 1 ? (double)job->n_done
                           : f == 2 ? (double)job->n_images
                           : f == 3 ? qstats_rate(job->stats, now)
                                    : (double)job->duplicates;
                prom_sample(m, PROM_LABELS({"model", job->model}), v);
            }
        }
        prom_family(m, "idunno_job_processing_seconds", PROM_HISTOGRAM,
                    "Query processing time, dispatch to result, in seconds");
        for (size_t i = 0; i < n; i++) {
            struct job_rec *job = jobs_at(node->jobs, i);
            latency_histogram(m, job->model, job->stats);
        }
    }
    json_out_begin_array(j, NULL);
    for (size_t i = 0; i < n; i++) {
        struct job_rec *job = jobs_at(node->jobs, i);
        struct qstats_summary w;
        qstats_window(job->stats, now, &w);
        struct qstats_share shares[32];
        size_t ns = qstats_shares(job->stats, now, shares, 32);
        json_out_begin_object(j, NULL);
        json_out_str(j, "name", job->model);
        json_out_u64(j, "id", job->id);
        json_out_str(j, "state", job->stopped ? "stopped" : "running");
        json_out_str(j, "kind", job->online ? "online" : "batch");
        json_out_u64(j, "batch", job->batch);
        json_out_u64(j, "max_queue_delay_us", job->max_queue_delay_us);
        json_out_u64(j, "queries_done", job->queries_done);
        json_out_u64(j, "images", job->n_images);
        json_out_u64(j, "images_done", job->n_done);
        json_out_double(j, "rate", qstats_rate(job->stats, now));
        json_out_double(j, "p50_ms", w.median_ms);
        json_out_double(j, "p99_ms", w.p99_ms);
        json_out_begin_array(j, "workers");
        for (size_t k = 0; k < ns && k < 32; k++)
            json_out_str(j, NULL, shares[k].worker);
        json_out_end(j);
        json_out_end(j);
    }
    json_out_end(j);
}

/* ---- readiness ------------------------------------------------------------------------------ */

static int node_http_ready(void *ud, char *why, size_t len)
{
    struct node *node = ud;
    if (node->stopping) {
        snprintf(why, len, "shutting down");
        return 0;
    }
    if (!node->member || !node->ctl) {
        snprintf(why, len, "starting");
        return 0;
    }
    struct member_view self;
    member_self(node->member, &self);
    if (self.state != MEMBER_ALIVE) {
        snprintf(why, len, "this node is %s in its own membership view",
                 member_state_name(self.state));
        return 0;
    }
    if (node->cfg.join[0]) {
        size_t n = member_snapshot(node->member, NULL, 0);
        struct member_view *views = calloc(n ? n : 1, sizeof *views);
        if (!views) {
            snprintf(why, len, "out of memory");
            return 0;
        }
        n = member_snapshot(node->member, views, n);
        size_t others = 0;
        for (size_t i = 0; i < n; i++)
            others += views[i].state == MEMBER_ALIVE && !(strcmp(views[i].name, self.name) == 0 &&
                                                          views[i].incarnation == self.incarnation);
        free(views);
        if (others == 0) {
            snprintf(why, len, "not joined: no other member alive yet (joining through %s)",
                     node->cfg.join[0]);
            return 0;
        }
    }
    char leader[CTL_NAME_MAX], addr[CTL_ADDR_MAX];
    if (!node_ctl_leader(node, leader, sizeof leader, addr, sizeof addr)) {
        snprintf(why, len, "%s",
                 node_ctl_started(node) ? "no coordinator known yet"
                                        : "control plane waiting for the voters' addresses");
        return 0;
    }
    return 1;
}

/* ---- life cycle ------------------------------------------------------------------------------ */

int node_http_addr(const struct node_config *cfg, char *out, size_t len, char *errmsg,
                   size_t errlen)
{
    char shifted[80];
    if (net_shift_port(cfg->addr, 2, shifted, sizeof shifted) < 0) {
        snprintf(errmsg, errlen,
                 "--addr %s leaves no port for HTTP (PORT+2): use a lower port or --no-http",
                 cfg->addr);
        return ID_EINVAL;
    }
    if (!cfg->http_host[0]) {
        snprintf(out, len, "%s", shifted);
        return 0;
    }
    const char *port = strrchr(shifted, ':') + 1;
    const char *host = cfg->http_host;
    int v6 = strchr(host, ':') && host[0] != '[';
    snprintf(out, len, "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
    struct sockaddr_storage sa;
    if (net_parse_addr(out, &sa) < 0) {
        snprintf(errmsg, errlen, "--http-addr '%s' is not an IPv4 or IPv6 address", host);
        return ID_EINVAL;
    }
    return 0;
}

int node_http_start(struct node *node)
{
    if (node->cfg.no_http)
        return 0;
    char addr[80];
    int rc = node_http_addr(&node->cfg, addr, sizeof addr, node->errmsg, sizeof node->errmsg);
    if (rc < 0)
        return rc;
    struct http_config hc = {.addr = addr,
                             .tokens = (const uint8_t(*)[HTTP_TOKEN_LEN])node->http_tokens,
                             .n_tokens = node->n_http_tokens,
                             .server_version = IDUNNO_VERSION};
    rc = http_create(node->loop, &hc, &node->http);
    if (rc == 0)
        http_set_call_handler(node->http, node_oip_on_call, node);
    if (rc == 0)
        rc = http_add_provider(node->http, "node", node_http_render_node, node);
    if (rc == 0)
        rc = http_add_provider(node->http, "members", node_http_render_members, node);
    if (rc == 0)
        rc = http_add_provider(node->http, "coordinator", node_http_render_ctl, node);
    if (rc == 0)
        rc = http_add_provider(node->http, "jobs", node_http_render_jobs, node);
    if (rc == 0)
        rc = http_add_provider(node->http, "online", node_http_render_online, node);
    if (rc == 0)
        rc = http_add_provider(node->http, "sdfs", node_http_render_sdfs, node);
    if (rc == 0)
        rc = http_add_provider(node->http, "worker", node_http_render_worker, node);
    if (rc == 0) {
        http_set_ready_check(node->http, node_http_ready, node);
        rc = http_start(node->http);
    }
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "%s",
                 node->http && http_errmsg(node->http)[0] ? http_errmsg(node->http)
                                                          : id_strerror(rc));
        http_destroy(node->http);
        node->http = NULL;
        return rc;
    }
    LOG_INFO(
        "http",
        "metrics, health checks and the dashboard on http://%s/; state-changing requests %s", addr,
        node->n_http_tokens ? "need the bearer token (idunno token)" : "refused (no cluster key)");
    return 0;
}

void node_http_stop(struct node *node)
{
    http_destroy(node->http);
    node->http = NULL;
}
