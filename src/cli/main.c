/* main.c — idunno, the client: global options and command dispatch. Each area's
 * commands live in their own cmd_*.c table, listed once below; the interactive
 * shell is shell.c. */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* One line per area: its table of commands (cmd_<area>.c). */
static const struct cli_command *const command_tables[] = {
    cli_node_commands,  cli_member_commands,
    cli_ctl_commands,   cli_sdfs_commands,
    cli_model_commands, cli_job_commands,
    cli_logq_commands,  cli_infer_commands,
    cli_key_commands,   NULL,
};

static const struct cli_command *find_command(const char *name)
{
    for (size_t t = 0; command_tables[t]; t++)
        for (const struct cli_command *c = command_tables[t]; c->name; c++)
            if (strcmp(c->name, name) == 0)
                return c;
    return NULL;
}

const char *const *cli_command_names(void)
{
    static const char *names[256];
    if (!names[0]) {
        size_t n = 0;
        for (size_t t = 0; command_tables[t]; t++)
            for (const struct cli_command *c = command_tables[t]; c->name && n < 250; c++)
                names[n++] = c->name;
        names[n++] = "shell";
        names[n] = NULL;
    }
    return names;
}

void cli_print_help(void)
{
    printf("usage: idunno [-s HOST:PORT] [--json] [--timeout MS] COMMAND [ARGS]\n\n"
           "  -s HOST:PORT   the node to talk to (default $IDUNNO_SERVER, then 127.0.0.1:7000)\n"
           "  --json         print one JSON document instead of a table\n"
           "  --timeout MS   how long to wait for the cluster (default 5000)\n"
           "  --key-file F   the cluster keyring (default $IDUNNO_KEY_FILE; none: plaintext,\n"
           "                 for a cluster started without a key)\n\n"
           "commands:\n");
    int w = 12; /* the names' column: as wide as the longest name */
    for (size_t t = 0; command_tables[t]; t++)
        for (const struct cli_command *c = command_tables[t]; c->name; c++)
            if ((int)strlen(c->name) > w)
                w = (int)strlen(c->name);
    for (size_t t = 0; command_tables[t]; t++)
        for (const struct cli_command *c = command_tables[t]; c->name; c++)
            printf("  %-*s %s\n", w, c->name, c->summary);
    printf("  %-*s %s\n", w, "shell", "the same commands at a prompt, with history");
    printf("\n'idunno COMMAND --help' describes one command. Exit status: 0 ok, 1 user error,\n"
           "2 cluster error (unreachable, no coordinator, timeout).\n");
}

int cli_wants_help(const struct cli_command *cmd, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: idunno %s %s\n\n%s\n", cmd->name, cmd->args, cmd->summary);
            return 1;
        }
    }
    return 0;
}

int cli_usage_error(const struct cli_command *cmd, const char *what)
{
    return cli_fail(CLI_USER_ERROR, "%s %s (usage: idunno %s %s)", cmd->name, what, cmd->name,
                    cmd->args);
}

int cli_run_command(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *c = find_command(argv[0]);
    if (!c)
        return cli_fail(CLI_USER_ERROR, "unknown command '%s' (see idunno --help)", argv[0]);
    optind = 0; /* commands parse their own options with getopt: start afresh */
    ctx->cmd = c;
    return c->run(ctx, argc, argv);
}

int cli_parse_globals(struct cli_ctx *ctx, int argc, char **argv, int *cmd_index)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"key-file", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* full reset: the shell parses many lines */
    opterr = 0;
    int c;
    /* '+': stop at the command name; its own options follow it. */
    while ((c = getopt_long(argc, argv, "+:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': ctx->server = optarg; break;
        case 'j': ctx->json = 1; break;
        case 'k': cli_set_key_file(optarg); break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 3600000)
                return cli_fail(CLI_USER_ERROR,
                                "--timeout takes milliseconds, e.g. --timeout 3000");
            ctx->timeout_ms = (uint32_t)v;
            ctx->timeout_set = 1;
            break;
        }
        case 'h': cli_print_help(); return -1;
        case ':':
            return cli_fail(CLI_USER_ERROR, "%s needs a value (see idunno --help)",
                            argv[optind - 1]);
        default:
            return cli_fail(CLI_USER_ERROR, "unknown option '%s' (see idunno --help)",
                            argv[optind - 1]);
        }
    }
    *cmd_index = optind;
    return 0;
}

int main(int argc, char **argv)
{
    /* Transfers receive 1 MiB chunks: keep them on the heap, not in an mmap
     * (page faults) per chunk. */
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    struct cli_ctx ctx = {.server = getenv("IDUNNO_SERVER"), .timeout_ms = 5000};
    if (!ctx.server || !ctx.server[0])
        ctx.server = "127.0.0.1:7000";
    cli_set_key_file(getenv("IDUNNO_KEY_FILE"));
    int idx;
    int rc = cli_parse_globals(&ctx, argc, argv, &idx);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    if (idx >= argc) {
        cli_print_help();
        return CLI_USER_ERROR;
    }
    if (strcmp(argv[idx], "shell") == 0) {
        if (idx + 1 < argc &&
            (strcmp(argv[idx + 1], "--help") == 0 || strcmp(argv[idx + 1], "-h") == 0)) {
            printf("usage: idunno shell\n\nthe same commands at a prompt, with line editing and "
                   "history "
                   "(~/.idunno_history);\nglobal options may start any line; 'server HOST:PORT' "
                   "changes the node; 'exit' leaves\n");
            return CLI_OK;
        }
        return cli_shell(&ctx);
    }
    return cli_run_command(&ctx, argc - idx, argv + idx);
}
