/* node.c — start-up, request handlers of the node itself, and shutdown.
 *
 * Start-up order: data dir, log, transport, then the layers in dependency order
 * (node_start_layers: membership, log query, control plane, HTTP, and the
 * marked places for the layers above it). Shutdown is the reverse
 * (node_stop_layers) and is triggered by SIGTERM/SIGINT or by `idunno leave`:
 * the node tells the group it leaves, then closes every handle so uv_run
 * returns. A watchdog ends the process if a layer never finishes closing.
 */
#include "node/node.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "ctl/ctl.h"
#include "ctl/ctl_relay.h"
#include "idunno.pb-c.h"
#include "infer/child.h"
#include "infer/gate.h"
#include "infer/image.h"
#include "logq/logq.h"
#include "member/member.h"
#include "net/net.h"
#include "node/node_ctl.h"
#include "node/node_http.h"
#include "sched/coord.h"
#include "sched/jobs.h"
#include "sched/worker.h"
#include "sdfs/catalog.h"
#include "sdfs/sdfs.h"

/* How long a clean shutdown may take before the watchdog ends the process. */
#define NODE_STOP_WATCHDOG_MS 5000

static const char usage[] =
    "usage: idunnod --name NAME --addr HOST:PORT [options]\n"
    "\n"
    "Runs one IDunno node: a member of the gossip group, a file store replica and an\n"
    "inference worker. TCP and UDP on PORT carry RPC and gossip, TCP on PORT+1 the\n"
    "control plane (Raft), HTTP on PORT+2 metrics, health checks and a dashboard.\n"
    "\n"
    "  --name NAME            this node's name (unique in the cluster)\n"
    "  --addr HOST:PORT       address to listen on and to be reached at\n"
    "  --join HOST:PORT,...   members to join through (any of them; none: start alone)\n"
    "  --data DIR             data directory (default ./run/NAME)\n"
    "  --coordinators A,B,C   the control-plane voters (1, 3 or 5); NAME@HOST:PORT gives a\n"
    "                         voter's address, otherwise membership tells it (default:\n"
    "                         this node alone if there is no --join, else none)\n"
    "  --log-level LEVEL      debug, info, warn or error (default info)\n"
    "  --log-stderr           copy log lines to stderr\n"
    "  --probe-interval MS    SWIM probe interval (default 200)\n"
    "  --probe-timeout MS     SWIM direct-probe timeout (default 80)\n"
    "  --suspect-timeout MS   SWIM suspicion timeout once confirmed by others (default 400;\n"
    "                         an unconfirmed suspicion lasts 4 times as long)\n"
    "  --voter-replace MS     a voter failed this long is replaced by a live member\n"
    "                         (default 30000)\n"
    "  --election-timeout MS  Raft election timeout (default 200; see docs/control-plane.md)\n"
    "  --heartbeat MS         Raft heartbeat interval (default 50)\n"
    "  --raft-rto-min MS      minimum TCP retransmission timeout of the Raft connections\n"
    "                         (default 20; 0: the kernel's own, 200)\n"
    "  --snapshot-every N     control-plane entries between snapshots (default 1024;\n"
    "                         16 to 1000000; half as many are kept after one)\n"
    "  --infer-slots N        at most N model runs at once across the nodes on this host,\n"
    "                         shared through lock files (default 0: no limit; see\n"
    "                         docs/inference.md for when it helps and what it costs)\n"
    "  --infer-gate DIR       where those lock files are (default $XDG_RUNTIME_DIR, /dev/shm\n"
    "                         or /tmp, then idunno-infer-gate.UID)\n"
    "  --max-image-pixels N   refuse images of more than N pixels, from their header\n"
    "                         (default and most 40000000)\n"
    "  --infer-sched POLICY   how the kernel schedules model runs: normal (default) or batch\n"
    "                         (SCHED_BATCH: more throughput when many workers share cores,\n"
    "                         less even rates between jobs; docs/inference.md has figures)\n"
    "  --sdfs-delete-grace MS a copy that the catalog no longer names here (deleted, dropped\n"
    "                         or moved) is removed after MS (default 60000: longer than\n"
    "                         any read in flight; tests use less)\n"
    "  --sdfs-young MS        a copy sealed less than MS ago is never deleted as unnamed: its\n"
    "                         commit may be on its way (default 30000; tests use less)\n"
    "  --infer-threads N      ONNX Runtime threads per model run, in the model's own\n"
    "                         process (default 1: the nodes of a local cluster share the\n"
    "                         machine's cores; on a machine of its own a node may use up\n"
    "                         to the number of cores, which is also the most)\n"
    "  --infer-timeout SECS   a model run (a batch) still unfinished in its inference\n"
    "                         process after SECS seconds gets the process killed; that\n"
    "                         counts as a crash of the model (default 300; 1 to 86400)\n"
    "  --test-hooks           tests only: inference processes honour a model's\n"
    "                         idunno.test.crash metadata and crash or hang on its runs\n"
    "  --key-file FILE        the cluster keyring (idunno keygen writes one): every RPC\n"
    "                         connection and gossip datagram is then authenticated and\n"
    "                         encrypted, and nothing without the key is accepted. Without\n"
    "                         it the node speaks plaintext and trusts anyone who reaches\n"
    "                         PORT (docs/security.md)\n"
    "  --no-http              no HTTP endpoint (metrics, health checks, status, dashboard;\n"
    "                         otherwise served on HOST:PORT+2, see docs/http.md)\n"
    "  --http-addr HOST       the IP address the HTTP endpoint listens on, PORT+2 still\n"
    "                         (default: --addr's HOST), e.g. a management network's.\n"
    "                         GET/HEAD are open to whoever reaches it; other methods need\n"
    "                         the bearer token `idunno token` prints (docs/operations.md)\n"
    "  --help                 this text\n";

static int parse_ms(const char *s, uint32_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v <= 0 || v > 600000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int node_parse_args(int argc, char **argv, struct node_config *cfg, char *errmsg, size_t len)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},
        {"addr", required_argument, NULL, 'a'},
        {"join", required_argument, NULL, 'j'},
        {"data", required_argument, NULL, 'd'},
        {"coordinators", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {"log-stderr", no_argument, NULL, 'e'},
        {"probe-interval", required_argument, NULL, 'P'},
        {"probe-timeout", required_argument, NULL, 'T'},
        {"suspect-timeout", required_argument, NULL, 'S'},
        {"voter-replace", required_argument, NULL, 'R'},
        {"election-timeout", required_argument, NULL, 'E'},
        {"heartbeat", required_argument, NULL, 'K'},
        {"raft-rto-min", required_argument, NULL, 'O'},
        {"snapshot-every", required_argument, NULL, 'V'},
        {"no-http", no_argument, NULL, 'H'},
        {"http-addr", required_argument, NULL, 'A'},
        {"key-file", required_argument, NULL, 'k'},
        {"infer-slots", required_argument, NULL, 'I'},
        {"infer-gate", required_argument, NULL, 'G'},
        {"infer-sched", required_argument, NULL, 'B'},
        {"max-image-pixels", required_argument, NULL, 'X'},
        {"sdfs-delete-grace", required_argument, NULL, 'D'},
        {"sdfs-young", required_argument, NULL, 'Y'},
        {"test-hooks", no_argument, NULL, 'Z'},
        {"infer-timeout", required_argument, NULL, 'W'},
        {"infer-threads", required_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->raft_rto_min_ms = -1;
    cfg->infer_timeout_s = INFER_DEFAULT_TIMEOUT_S;
    optind = 1;
    opterr = 0; /* one message of our own, naming the option */
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'n': snprintf(cfg->name, sizeof cfg->name, "%s", optarg); break;
        case 'a': snprintf(cfg->addr, sizeof cfg->addr, "%s", optarg); break;
        case 'd': snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", optarg); break;
        case 'c': snprintf(cfg->coordinators, sizeof cfg->coordinators, "%s", optarg); break;
        case 'e': cfg->log_stderr = 1; break;
        case 'H': cfg->no_http = 1; break;
        case 'A':
            if (strlen(optarg) >= sizeof cfg->http_host) {
                snprintf(errmsg, len, "--http-addr '%.40s...' is too long for an IP address",
                         optarg);
                return ID_EINVAL;
            }
            snprintf(cfg->http_host, sizeof cfg->http_host, "%s", optarg);
            break;
        case 'Z': cfg->test_hooks = 1; break;
        case 'k': snprintf(cfg->key_file, sizeof cfg->key_file, "%s", optarg); break;
        case 'I': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > INFER_GATE_MAX_SLOTS) {
                snprintf(errmsg, len, "--infer-slots takes 0 to %d", INFER_GATE_MAX_SLOTS);
                return ID_EINVAL;
            }
            cfg->infer_slots = (int)v;
            break;
        }
        case 'W': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 86400) {
                snprintf(errmsg, len, "--infer-timeout takes 1 to 86400 (seconds)");
                return ID_EINVAL;
            }
            cfg->infer_timeout_s = (uint32_t)v;
            break;
        }
        case 'N': {
            char *end;
            long v = strtol(optarg, &end, 10);
            long cores = (long)uv_available_parallelism();
            if (*end || end == optarg || v < 1 || v > cores) {
                snprintf(errmsg, len, "--infer-threads takes 1 to %ld (the cores here)", cores);
                return ID_EINVAL;
            }
            cfg->infer_threads = (int)v;
            break;
        }
        case 'G': snprintf(cfg->infer_gate_dir, sizeof cfg->infer_gate_dir, "%s", optarg); break;
        case 'X': {
            /* The decoder's limit is process-wide: one node per process. */
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (*end || end == optarg || optarg[0] == '-' || image_set_max_pixels(v) < 0) {
                snprintf(errmsg, len, "--max-image-pixels takes 1 to %u", IMAGE_MAX_PIXELS);
                return ID_EINVAL;
            }
            break;
        }
        case 'B':
            if (strcmp(optarg, "batch") == 0) {
                cfg->infer_sched_batch = 1;
            } else if (strcmp(optarg, "normal") == 0) {
                cfg->infer_sched_batch = 0;
            } else {
                snprintf(errmsg, len, "--infer-sched takes batch or normal");
                return ID_EINVAL;
            }
            break;
        case 'l':
            cfg->log_level = log_level_parse(optarg);
            if (cfg->log_level < 0) {
                snprintf(errmsg, len, "--log-level takes debug, info, warn or error");
                return ID_EINVAL;
            }
            break;
        case 'j': {
            char *copy = strdup(optarg), *save = NULL;
            size_t n = 0;
            while (cfg->join[n])
                n++;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                struct sockaddr_storage sa;
                if (net_parse_addr(tok, &sa) < 0) {
                    snprintf(errmsg, len, "--join: '%s' is not HOST:PORT", tok);
                    free(copy);
                    return ID_EINVAL;
                }
                if (n < NODE_MAX_JOIN)
                    cfg->join[n++] = strdup(tok);
            }
            free(copy);
            break;
        }
        case 'O': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 1000) {
                snprintf(errmsg, len, "--raft-rto-min takes 0 to 1000 (ms)");
                return ID_EINVAL;
            }
            cfg->raft_rto_min_ms = (int)v;
            break;
        }
        case 'V': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 16 || v > 1000000) {
                snprintf(errmsg, len, "--snapshot-every takes 16 to 1000000 (entries)");
                return ID_EINVAL;
            }
            cfg->snapshot_every = (unsigned)v;
            break;
        }
        case 'D':
            if (parse_ms(optarg, &cfg->sdfs_delete_grace_ms) < 0) {
                snprintf(errmsg, len, "--sdfs-delete-grace takes 1 to 600000 (ms)");
                return ID_EINVAL;
            }
            break;
        case 'Y':
            if (parse_ms(optarg, &cfg->sdfs_young_ms) < 0) {
                snprintf(errmsg, len, "--sdfs-young takes 1 to 600000 (ms)");
                return ID_EINVAL;
            }
            break;
        case 'E':
        case 'K':
        case 'P':
        case 'T':
        case 'R':
        case 'S': {
            uint32_t v;
            if (parse_ms(optarg, &v) < 0) {
                snprintf(errmsg, len, "timing options take a number of milliseconds");
                return ID_EINVAL;
            }
            if (c == 'P')
                cfg->probe_interval_ms = v;
            if (c == 'T')
                cfg->probe_timeout_ms = v;
            if (c == 'S')
                cfg->suspect_timeout_ms = v;
            if (c == 'R')
                cfg->voter_replace_ms = v;
            if (c == 'E')
                cfg->election_timeout_ms = v;
            if (c == 'K')
                cfg->heartbeat_ms = v;
            break;
        }
        case 'h': fputs(usage, stdout); return 1;
        case ':':
            snprintf(errmsg, len, "%s needs a value (see idunnod --help)", argv[optind - 1]);
            return ID_EINVAL;
        default:
            snprintf(errmsg, len, "unknown option '%s' (see idunnod --help)", argv[optind - 1]);
            return ID_EINVAL;
        }
    }
    if (optind < argc) {
        snprintf(errmsg, len, "unexpected argument '%s' (see idunnod --help)", argv[optind]);
        return ID_EINVAL;
    }
    if (!cfg->name[0] || !cfg->addr[0]) {
        snprintf(errmsg, len, "--name and --addr are required (see idunnod --help)");
        return ID_EINVAL;
    }
    for (const char *p = cfg->name; *p; p++) {
        if (!(p[0] == '-' || p[0] == '_' || p[0] == '.' || (p[0] >= '0' && p[0] <= '9') ||
              (p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z'))) {
            snprintf(errmsg, len, "--name may use letters, digits, '-', '_' and '.' only");
            return ID_EINVAL;
        }
    }
    struct sockaddr_storage sa;
    if (net_parse_addr(cfg->addr, &sa) < 0) {
        snprintf(errmsg, len, "--addr '%s' is not HOST:PORT with a numeric host", cfg->addr);
        return ID_EINVAL;
    }
    char http_addr[80];
    if (!cfg->no_http && node_http_addr(cfg, http_addr, sizeof http_addr, errmsg, len) < 0)
        return ID_EINVAL;
    if (!cfg->data_dir[0])
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "run/%s", cfg->name);
    return 0;
}

void node_config_free(struct node_config *cfg)
{
    for (size_t i = 0; cfg->join[i]; i++) {
        free(cfg->join[i]);
        cfg->join[i] = NULL;
    }
}

static int mkdir_p(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return id_from_errno(errno);
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return id_from_errno(errno);
    return 0;
}

/* ---- the node's own requests ----------------------------------------------------------- */

static void fill_info(struct node *node, Idunno__NodeInfo *info)
{
    idunno__node_info__init(info);
    info->name = node->cfg.name;
    info->addr = node->cfg.addr;
    info->incarnation = node->incarnation;
    info->version = IDUNNO_VERSION;
    info->uptime_ms = id_now_ms() - node->started_ms;
}

static void on_ping(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)ud;
    net_reply(req, IDUNNO__MSG_TYPE__MSG_PING_RESP, body, len);
}

static void on_info(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    Idunno__NodeInfo info;
    fill_info(ud, &info);
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_NODE_INFO_RESP, &info.base);
}

static void on_members(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct node *node = ud;
    size_t n = member_snapshot(node->member, NULL, 0);
    struct member_view *views = calloc(n ? n : 1, sizeof *views);
    Idunno__MemberInfo *rows = calloc(n ? n : 1, sizeof *rows);
    Idunno__MemberInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!views || !rows || !ptrs) {
        net_reply_error(req, ID_ENOMEM, NULL, NULL);
        goto out;
    }
    n = member_snapshot(node->member, views, n);
    uint64_t now = id_now_ms();
    for (size_t i = 0; i < n; i++) {
        idunno__member_info__init(&rows[i]);
        rows[i].name = views[i].name;
        rows[i].addr = views[i].addr;
        rows[i].incarnation = views[i].incarnation;
        rows[i].state = (char *)member_state_name(views[i].state);
        rows[i].since_ms = i == 0 ? now - node->started_ms : now - views[i].since_ms;
        rows[i].self = i == 0;
        rows[i].role = (char *)node_ctl_role(node, views[i].name, views[i].addr);
        ptrs[i] = &rows[i];
    }
    Idunno__MemberList list = IDUNNO__MEMBER_LIST__INIT;
    list.n_members = n;
    list.members = ptrs;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_MEMBERS_RESP, &list.base);
out:
    free(views);
    free(rows);
    free(ptrs);
}

static void on_stats(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct node *node = ud;
    Idunno__NodeInfo info;
    fill_info(node, &info);
    Idunno__NodeStats st = IDUNNO__NODE_STATS__INIT;
    st.node = &info;
    st.udp_bytes_sent = net_udp_bytes_sent(node->net);
    st.udp_bytes_received = net_udp_bytes_received(node->net);
    const struct frame_stats *fs = net_frame_stats(node->net);
    st.bad_frames = fs->bad_magic + fs->bad_version + fs->too_big + fs->bad_crc + fs->bad_body +
                    fs->unknown_type + fs->bad_auth + fs->replayed + fs->unsealed +
                    member_bad_packets(node->member);
    struct member_view views[256];
    size_t n = member_snapshot(node->member, views, 256);
    for (size_t i = 0; i < n && i < 256; i++)
        st.members_alive += views[i].state == MEMBER_ALIVE;
    struct member_stats ms;
    member_stats(node->member, &ms);
    st.swim_health = ms.health;
    st.swim_suspicions = ms.suspicions;
    st.swim_refutations = ms.refutations;
    st.swim_failures_declared = ms.failures_declared;
    st.swim_stalls = ms.stalls;
    net_reply_pb(req, IDUNNO__MSG_TYPE__MSG_STATS_RESP, &st.base);
}

static void on_leave(void *ud, struct net_request *req, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct node *node = ud;
    net_reply(req, IDUNNO__MSG_TYPE__MSG_LEAVE_RESP, NULL, 0);
    node_stop(node, 0);
}

/* ---- layers ------------------------------------------------------------------------------ */

static int node_member_is_up(enum member_state s)
{
    return s == MEMBER_ALIVE || s == MEMBER_SUSPECT;
}

/* The peers `idunno grep` searches: every member that is alive or suspect (a
 * suspect may still answer, and the search waits for it only a bounded time).
 * Failed members are named as down, once per name and only while no newer
 * incarnation of that name is up; members that left are not mentioned. */
static size_t node_grep_peers(void *ud, struct logq_peer *out, size_t max)
{
    struct node *node = ud;
    size_t n = member_snapshot(node->member, NULL, 0);
    struct member_view *views = calloc(n ? n : 1, sizeof *views);
    if (!views)
        return 0;
    n = member_snapshot(node->member, views, n);
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        const struct member_view *v = &views[i];
        if (v->state == MEMBER_FAILED) {
            int shadowed = 0;
            for (size_t j = 0; j < n && !shadowed; j++)
                shadowed = strcmp(views[j].name, v->name) == 0 &&
                           (node_member_is_up(views[j].state) ||
                            (views[j].state == MEMBER_FAILED && j < i));
            if (shadowed)
                continue;
            snprintf(out[k].down, sizeof out[k].down, "failed (membership)");
        } else if (!node_member_is_up(v->state)) {
            continue;
        }
        snprintf(out[k].name, sizeof out[k].name, "%s", v->name);
        snprintf(out[k].addr, sizeof out[k].addr, "%s", v->addr);
        k++;
    }
    free(views);
    return k;
}

/* Creates and starts every layer above the transport, in dependency order.
 * Each layer is one block here and one in node_stop_layers (in reverse). */
static int node_start_layers(struct node *node)
{
    const struct node_config *cfg = &node->cfg;
    int rc;

    /* -- membership (src/member): SWIM over UDP datagrams of net -- */
    struct member_config mc = {
        .name = cfg->name,
        .addr = cfg->addr,
        .incarnation = node->incarnation,
        .join = (const char *const *)node->cfg.join,
        .probe_interval_ms = cfg->probe_interval_ms,
        .probe_timeout_ms = cfg->probe_timeout_ms,
        .suspect_timeout_ms = cfg->suspect_timeout_ms,
    };
    rc = member_create(node->loop, node->net, &mc, &node->member);
    if (rc == 0)
        rc = member_start(node->member);
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "cannot start membership: %s", id_strerror(rc));
        return rc;
    }

    /* -- log query (src/logq): searches every live member's log -- */
    rc = logq_create(node->loop, node->net, cfg->name, node->log_path, &node->logq);
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "cannot start log query: %s", id_strerror(rc));
        return rc;
    }
    logq_set_peers(node->logq, node_grep_peers, node);

    /* -- control plane (src/ctl): the Raft group of cfg->coordinators on TCP
     * PORT+1; node_ctl.c wires it to membership and forwards requests. The
     * sub-state machines of the layers above are created first: ctl applies
     * commands to them from its start. -- */
    node->catalog = catalog_create();
    node->jobs = jobs_create();
    if (!node->catalog || !node->jobs) {
        snprintf(node->errmsg, sizeof node->errmsg, "out of memory");
        return ID_ENOMEM;
    }
    rc = node_ctl_start(node);
    if (rc < 0)
        return rc;

    /* -- HTTP (src/http): metrics, health checks, the status document and the
     * dashboard on PORT+2, rendered on this loop by providers (node_http.c has
     * the node's own). The layers below add theirs to node->http -- */
    rc = node_http_start(node);
    if (rc < 0)
        return rc;

    /* What both leader services (SDFS and the coordinator) are built on. */
    struct ctl_svc_env env = {
        .loop = node->loop,
        .net = node->net,
        .ctl = node->ctl,
        .fwd = node->nc.fwd,
        .member = node->member,
        .name = cfg->name,
        .addr = cfg->addr,
    };

    /* -- SDFS (src/sdfs): replica store under DATA/sdfs, gateway, and the
     * coordinator's part (served on the leader) -- */
    struct sdfs_config sc = {
        .env = env,
        .catalog = node->catalog,
        .data_dir = cfg->data_dir,
        .delete_grace_ms = cfg->sdfs_delete_grace_ms,
        .young_ms = cfg->sdfs_young_ms,
    };
    rc = sdfs_create(&sc, &node->sdfs, node->errmsg, sizeof node->errmsg);
    if (rc < 0)
        return rc;

    /* -- IDunno worker (src/sched/worker.c): runs dispatched queries with the
     * inference engine (src/infer), inputs from SDFS -- */
    struct worker_config wc = {.loop = node->loop,
                               .net = node->net,
                               .sdfs = node->sdfs,
                               .name = cfg->name,
                               .addr = cfg->addr,
                               .gate_slots = cfg->infer_slots,
                               .gate_dir = cfg->infer_gate_dir,
                               .sched_batch = cfg->infer_sched_batch,
                               .log_path = node->log_path,
                               .data_dir = cfg->data_dir,
                               .test_hooks = cfg->test_hooks,
                               .run_timeout_ms = cfg->infer_timeout_s * 1000,
                               .threads = cfg->infer_threads};
    rc = worker_create(&wc, &node->worker, node->errmsg, sizeof node->errmsg);
    if (rc < 0)
        return rc;

    /* -- IDunno coordinator (src/sched/coord.c): job requests and dispatch,
     * active while this node is the serving leader -- */
    struct coord_config oc = {
        .env = env,
        .jobs = node->jobs,
        .catalog = node->catalog,
        .sdfs = node->sdfs,
    };
    rc = coord_create(&oc, &node->coord, node->errmsg, sizeof node->errmsg);
    if (rc < 0)
        return rc;

    return 0;
}

/* Stops the layers in the reverse order of node_start_layers. */
static void node_stop_layers(struct node *node)
{
    coord_stop(node->coord);
    worker_stop(node->worker);
    sdfs_stop(node->sdfs);
    node_http_stop(node);
    node_ctl_stop(node);
    logq_destroy(node->logq);
    node->logq = NULL;
    member_destroy(node->member);
    node->member = NULL;
}

/* ---- start and stop ---------------------------------------------------------------------- */

static void on_signal(uv_signal_t *s, int signum)
{
    struct node *node = s->data;
    if (node->stopping) {
        /* A second signal: the operator does not want to wait. */
        LOG_WARN("node", "signal %d during shutdown: exiting now", signum);
        log_close();
        _exit(1);
    }
    LOG_INFO("node", "signal %d: shutting down", signum);
    node_stop(node, 0);
}

static void on_stop_watchdog(uv_timer_t *t)
{
    struct node *node = t->data;
    LOG_ERROR("node", "shutdown did not finish in %d ms: exiting", NODE_STOP_WATCHDOG_MS);
    log_close();
    _exit(node->exit_code ? node->exit_code : 1);
}

int node_start(struct node *node, uv_loop_t *loop, const struct node_config *cfg)
{
    memset(node, 0, sizeof *node);
    node->loop = loop;
    node->cfg = *cfg;
    node->incarnation = id_wall_ms();
    node->started_ms = id_now_ms();
    int rc = mkdir_p(cfg->data_dir);
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "cannot create data dir %s: %s", cfg->data_dir,
                 id_strerror(rc));
        return rc;
    }
    snprintf(node->log_path, sizeof node->log_path, "%s/idunnod.log", cfg->data_dir);
    log_set_level((enum log_level)cfg->log_level);
    rc = log_open(node->log_path, cfg->name, cfg->log_stderr);
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "cannot open log %s: %s", node->log_path,
                 id_strerror(rc));
        return rc;
    }
    LOG_INFO("node", "starting %s at %s, incarnation %llu, data %s", cfg->name, cfg->addr,
             (unsigned long long)node->incarnation, cfg->data_dir);

    struct seal_keyring keys;
    struct net_config nc = {.addr = cfg->addr};
    if (cfg->key_file[0]) {
        rc = seal_keyring_load(cfg->key_file, &keys, node->errmsg, sizeof node->errmsg);
        if (rc < 0)
            return rc;
        nc.keys = &keys;
        for (size_t i = 0; i < keys.n; i++)
            seal_http_token(&keys, i, node->http_tokens[i]);
        node->n_http_tokens = keys.n;
        LOG_INFO("node", "cluster key from %s (%zu key%s)", cfg->key_file, keys.n,
                 keys.n == 1 ? "" : "s");
    } else {
        LOG_WARN("node", "no --key-file: RPC and gossip are plaintext and unauthenticated");
    }
    rc = net_create(loop, &nc, &node->net);
    if (nc.keys)
        seal_keyring_wipe(&keys); /* the transport keeps its own copy */
    if (rc == 0)
        rc = net_start(node->net);
    if (rc < 0) {
        snprintf(node->errmsg, sizeof node->errmsg, "%s",
                 node->net && net_errmsg(node->net)[0] ? net_errmsg(node->net) : id_strerror(rc));
        return rc;
    }
    net_on_request(node->net, IDUNNO__MSG_TYPE__MSG_PING_REQ, on_ping, node);
    net_on_request(node->net, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, on_info, node);
    net_on_request(node->net, IDUNNO__MSG_TYPE__MSG_MEMBERS_REQ, on_members, node);
    net_on_request(node->net, IDUNNO__MSG_TYPE__MSG_STATS_REQ, on_stats, node);
    net_on_request(node->net, IDUNNO__MSG_TYPE__MSG_LEAVE_REQ, on_leave, node);

    rc = node_start_layers(node);
    if (rc < 0)
        return rc;

    uv_signal_init(loop, &node->sig_term);
    node->sig_term.data = node;
    uv_signal_start(&node->sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &node->sig_int);
    node->sig_int.data = node;
    uv_signal_start(&node->sig_int, on_signal, SIGINT);
    uv_timer_init(loop, &node->exit_timer);
    node->exit_timer.data = node;
    LOG_INFO("node", "ready");
    return 0;
}

static void after_net_closed(void *ud)
{
    struct node *node = ud;
    coord_destroy(node->coord);
    node->coord = NULL;
    worker_destroy(node->worker);
    node->worker = NULL;
    sdfs_destroy(node->sdfs);
    node->sdfs = NULL;
    node_ctl_destroy(node);
    LOG_INFO("node", "stopped");
}

static void after_leave(void *ud)
{
    struct node *node = ud;
    node_stop_layers(node);
    net_destroy(node->net, after_net_closed, node);
    node->net = NULL;
    uv_close((uv_handle_t *)&node->sig_term, NULL);
    uv_close((uv_handle_t *)&node->sig_int, NULL);
    uv_close((uv_handle_t *)&node->exit_timer, NULL);
}

void node_stop(struct node *node, int exit_code)
{
    if (node->stopping)
        return;
    node->stopping = 1;
    node->exit_code = exit_code;
    /* Unreferenced: it fires only if something else still holds the loop. */
    uv_timer_start(&node->exit_timer, on_stop_watchdog, NODE_STOP_WATCHDOG_MS, 0);
    uv_unref((uv_handle_t *)&node->exit_timer);
    if (node->member)
        member_leave(node->member, after_leave, node);
    else
        after_leave(node);
}
