/* cmd_logq.c — `idunno grep`: search every live member's log at once.
 *
 * The node given by -s fans the search out and answers with every node's lines
 * and exact counts; nodes that did not answer in time are named, not waited
 * for. Without --timeout each node gets the node's default wait (3 s) and this
 * client waits a little longer than that; with --timeout MS the whole command
 * takes at most MS, each node getting MS less a margin for the round trip.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "idunno.pb-c.h"

static int cmd_grep(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_logq_commands[] = {
    {"grep", "[-i] [-c] [-E] [--max-lines N] PATTERN",
     "search every live member's log: lines by node, then counts (-i case, -c count, -E regex)",
     cmd_grep},
    {NULL, NULL, NULL, NULL},
};

static void print_json(const Idunno__GrepResult *res, int count_only)
{
    cli_json_begin_object();
    cli_json_begin_array("nodes");
    for (size_t i = 0; i < res->n_nodes; i++) {
        const Idunno__GrepNodeResult *n = res->nodes[i];
        cli_json_begin_object();
        cli_json_str("node", n->node);
        cli_json_str("addr", n->addr);
        if (n->error && n->error[0]) {
            cli_json_str("error", n->error);
        } else {
            cli_json_u64("count", n->count);
            cli_json_bool("truncated", n->truncated);
            if (!count_only) {
                cli_json_begin_array("lines");
                for (size_t k = 0; k < n->n_lines; k++)
                    cli_json_str(NULL, n->lines[k]);
                cli_json_end_array();
            }
        }
        cli_json_end_object();
    }
    cli_json_end_array();
    cli_json_u64("total", res->total);
    cli_json_end_object();
    cli_json_done();
}

static void print_human(const Idunno__GrepResult *res, int count_only)
{
    if (!count_only)
        for (size_t i = 0; i < res->n_nodes; i++)
            for (size_t k = 0; k < res->nodes[i]->n_lines; k++)
                printf("%s: %s\n", res->nodes[i]->node, res->nodes[i]->lines[k]);
    struct cli_table *t = cli_table_new(3, "NODE", "MATCHES", "NOTE");
    size_t failed = 0;
    for (size_t i = 0; i < res->n_nodes; i++) {
        const Idunno__GrepNodeResult *n = res->nodes[i];
        char cnt[32];
        snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)n->count);
        if (n->error && n->error[0]) {
            failed++;
            cli_table_row(t, n->node, "-", n->error);
        } else {
            cli_table_row(t, n->node, cnt, n->truncated ? "lines truncated (count exact)" : "");
        }
    }
    char tot[32], note[64] = "";
    snprintf(tot, sizeof tot, "%llu", (unsigned long long)res->total);
    if (failed)
        snprintf(note, sizeof note, "%zu node%s not searched", failed, failed == 1 ? "" : "s");
    cli_table_row(t, "total", tot, note);
    cli_table_print(t);
}

static int cmd_grep(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    Idunno__GrepRequest g = IDUNNO__GREP_REQUEST__INIT;
    static const struct option opts[] = {{"max-lines", required_argument, NULL, 'm'},
                                         {NULL, 0, NULL, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+:icE", opts, NULL)) != -1) {
        switch (c) {
        case 'i': g.ignore_case = 1; break;
        case 'c': g.count_only = 1; break;
        case 'E': g.extended = 1; break;
        case 'm': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 1000000)
                return cli_usage_error(
                    cmd, "--max-lines takes a number of lines per node, 1 to 1000000");
            g.max_lines = (uint32_t)v;
            break;
        }
        case ':': return cli_usage_error(cmd, "--max-lines needs a value");
        default: return cli_usage_error(cmd, "got an unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(cmd, "takes exactly one PATTERN (quote it if it has spaces)");
    g.pattern = argv[optind];
    struct cli_ctx call_ctx = *ctx;
    if (ctx->timeout_set) {
        uint32_t margin = ctx->timeout_ms / 4 < 1000 ? ctx->timeout_ms / 4 : 1000;
        g.timeout_ms = ctx->timeout_ms - margin;
    } else {
        g.timeout_ms = 0; /* the node's default per-node wait, 3 s */
        if (call_ctx.timeout_ms < 5000)
            call_ctx.timeout_ms = 5000;
    }
    Idunno__GrepResult *res;
    int rc = cli_call_decode(&call_ctx, IDUNNO__MSG_TYPE__MSG_GREP_REQ, &g.base,
                             &idunno__grep_result__descriptor, &res);
    if (rc)
        return rc;
    if (ctx->json)
        print_json(res, g.count_only);
    else
        print_human(res, g.count_only);
    idunno__grep_result__free_unpacked(res, NULL);
    return 0;
}
