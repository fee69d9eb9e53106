/* cmd_logq.c — `idunno grep`: search every live member's log. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "idunno.pb-c.h"

static int cmd_grep(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_logq_commands[] = {
    {"grep", "[-i] [-c] [-E] [--max-lines N] PATTERN",
     "search every live member's log; lines prefixed by node, then counts", cmd_grep},
    {NULL, NULL, NULL, NULL},
};

static int cmd_grep(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *cmd = &cli_logq_commands[0];
    if (cli_wants_help(cmd, argc, argv))
        return 0;
    Idunno__GrepRequest g = IDUNNO__GREP_REQUEST__INIT;
    static const struct option opts[] = {{"max-lines", required_argument, NULL, 'm'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "+icE", opts, NULL)) != -1) {
        switch (c) {
        case 'i': g.ignore_case = 1; break;
        case 'c': g.count_only = 1; break;
        case 'E': g.extended = 1; break;
        case 'm': g.max_lines = (uint32_t)strtoul(optarg, NULL, 10); break;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(cmd, "takes exactly one PATTERN");
    g.pattern = argv[optind];
    /* Each node gets a bounded wait; the CLI waits a little longer than that. */
    g.timeout_ms = ctx->timeout_ms > 1000 ? ctx->timeout_ms - 1000 : ctx->timeout_ms / 2;
    struct cli_reply r;
    int rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_GREP_REQ, &g.base, &r);
    if (rc)
        return rc;
    Idunno__GrepResult *res = idunno__grep_result__unpack(NULL, r.len, r.body);
    free(r.body);
    if (!res)
        return cli_fail(CLI_CLUSTER_ERROR, "malformed answer from %s", ctx->server);
    int unreachable = 0;
    if (ctx->json) {
        json_begin_object();
        json_begin_array("nodes");
        for (size_t i = 0; i < res->n_nodes; i++) {
            Idunno__GrepNodeResult *n = res->nodes[i];
            json_begin_object();
            json_str("node", n->node);
            json_str("addr", n->addr);
            if (n->error && n->error[0]) {
                json_str("error", n->error);
                unreachable++;
            } else {
                json_u64("count", n->count);
                json_bool("truncated", n->truncated);
                if (!g.count_only) {
                    json_begin_array("lines");
                    for (size_t k = 0; k < n->n_lines; k++)
                        json_str(NULL, n->lines[k]);
                    json_end_array();
                }
            }
            json_end_object();
        }
        json_end_array();
        json_u64("total", res->total);
        json_end_object();
        json_done();
    } else {
        if (!g.count_only)
            for (size_t i = 0; i < res->n_nodes; i++)
                for (size_t k = 0; k < res->nodes[i]->n_lines; k++)
                    printf("%s: %s\n", res->nodes[i]->node, res->nodes[i]->lines[k]);
        struct cli_table *t = cli_table_new(3, "NODE", "MATCHES", "NOTE");
        for (size_t i = 0; i < res->n_nodes; i++) {
            Idunno__GrepNodeResult *n = res->nodes[i];
            char cnt[32];
            snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)n->count);
            if (n->error && n->error[0]) {
                unreachable++;
                cli_table_row(t, n->node, "-", n->error);
            } else {
                cli_table_row(t, n->node, cnt, n->truncated ? "lines truncated (count exact)" : "");
            }
        }
        char tot[32];
        snprintf(tot, sizeof tot, "%llu", (unsigned long long)res->total);
        cli_table_row(t, "total", tot, unreachable ? "some nodes could not be searched" : "");
        cli_table_print(t);
    }
    idunno__grep_result__free_unpacked(res, NULL);
    return 0;
}
