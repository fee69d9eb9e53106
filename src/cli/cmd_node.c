/* cmd_node.c — commands about one node: ping, info, stats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"

static int cmd_ping(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_info(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_stats(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_node_commands[] = {
    {"ping", "", "round trip to the node given by -s", cmd_ping},
    {"info", "", "name, address, incarnation and uptime of the node", cmd_info},
    {"stats", "", "gossip traffic and rejected-frame counters of the node", cmd_stats},
    {NULL, NULL, NULL, NULL},
};

static int no_args(const struct cli_command *cmd, int argc, char **argv)
{
    if (cli_wants_help(cmd, argc, argv))
        return -1;
    if (argc > 1)
        return cli_usage_error(cmd, "takes no arguments");
    return 0;
}

static int cmd_ping(struct cli_ctx *ctx, int argc, char **argv)
{
    int rc = no_args(ctx->cmd, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    Idunno__Ping p = IDUNNO__PING__INIT;
    p.sent_us = id_now_us();
    struct cli_reply r;
    if ((rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_PING_REQ, &p.base, &r)))
        return rc;
    double ms = (double)(id_now_us() - p.sent_us) / 1000.0;
    free(r.body);
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("server", ctx->server);
        cli_json_double("rtt_ms", ms);
        cli_json_end_object();
        cli_json_done();
    } else {
        printf("%s answered in %.2f ms\n", ctx->server, ms);
    }
    return 0;
}

static int get_info(struct cli_ctx *ctx, Idunno__NodeInfo **out)
{
    Idunno__Empty e = IDUNNO__EMPTY__INIT;
    return cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_NODE_INFO_REQ, &e.base,
                           &idunno__node_info__descriptor, out);
}

static int cmd_info(struct cli_ctx *ctx, int argc, char **argv)
{
    int rc = no_args(ctx->cmd, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    Idunno__NodeInfo *info;
    if ((rc = get_info(ctx, &info)))
        return rc;
    char up[32];
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("name", info->name);
        cli_json_str("addr", info->addr);
        cli_json_u64("incarnation", info->incarnation);
        cli_json_str("version", info->version);
        cli_json_u64("uptime_ms", info->uptime_ms);
        cli_json_end_object();
        cli_json_done();
    } else {
        struct cli_table *t = cli_table_new(5, "NAME", "ADDRESS", "INCARNATION", "VERSION",
                                            "UPTIME");
        char inc[32];
        snprintf(inc, sizeof inc, "%llu", (unsigned long long)info->incarnation);
        cli_table_row(t, info->name, info->addr, inc, info->version,
                      cli_fmt_ms(info->uptime_ms, up, sizeof up));
        cli_table_print(t);
    }
    idunno__node_info__free_unpacked(info, NULL);
    return 0;
}

static int cmd_stats(struct cli_ctx *ctx, int argc, char **argv)
{
    int rc = no_args(ctx->cmd, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    Idunno__Empty e = IDUNNO__EMPTY__INIT;
    struct cli_reply r;
    if ((rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_STATS_REQ, &e.base, &r)))
        return rc;
    Idunno__NodeStats *st = idunno__node_stats__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!st || !st->node)
        return cli_fail(CLI_CLUSTER_ERROR, "malformed answer from %s", ctx->server);
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("name", st->node->name);
        cli_json_u64("uptime_ms", st->node->uptime_ms);
        cli_json_u64("udp_bytes_sent", st->udp_bytes_sent);
        cli_json_u64("udp_bytes_received", st->udp_bytes_received);
        cli_json_u64("bad_frames", st->bad_frames);
        cli_json_u64("members_alive", st->members_alive);
        cli_json_u64("swim_health", st->swim_health);
        cli_json_u64("swim_suspicions", st->swim_suspicions);
        cli_json_u64("swim_refutations", st->swim_refutations);
        cli_json_u64("swim_failures_declared", st->swim_failures_declared);
        cli_json_u64("swim_stalls", st->swim_stalls);
        cli_json_end_object();
        cli_json_done();
    } else {
        double secs = st->node->uptime_ms / 1000.0;
        printf("node            %s\n", st->node->name);
        printf("uptime          %.1f s\n", secs);
        printf("gossip sent     %llu bytes (%.0f B/s)\n", (unsigned long long)st->udp_bytes_sent,
               secs > 0 ? st->udp_bytes_sent / secs : 0.0);
        printf("gossip received %llu bytes\n", (unsigned long long)st->udp_bytes_received);
        printf("bad frames      %llu\n", (unsigned long long)st->bad_frames);
        printf("members alive   %llu\n", (unsigned long long)st->members_alive);
        printf("swim health     %u (0 = healthy; timeouts x%u)\n", st->swim_health,
               st->swim_health + 1);
        printf("swim raised     %llu suspicions, %llu failures; refuted %llu; %llu stalls\n",
               (unsigned long long)st->swim_suspicions,
               (unsigned long long)st->swim_failures_declared,
               (unsigned long long)st->swim_refutations, (unsigned long long)st->swim_stalls);
    }
    idunno__node_stats__free_unpacked(st, NULL);
    return 0;
}
