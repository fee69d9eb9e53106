/* main.c — idunno, the client: global options, command dispatch, and the
 * interactive shell. Each area's commands live in their own cmd_*.c table. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wordexp.h>

#include "cli/cli.h"

static const struct cli_command *const command_tables[] = {
    cli_node_commands,
    cli_member_commands,
    cli_ctl_commands,
    cli_logq_commands,
    cli_infer_commands,
    NULL,
};

static const struct cli_command *find_command(const char *name)
{
    for (size_t t = 0; command_tables[t]; t++)
        for (const struct cli_command *c = command_tables[t]; c->name; c++)
            if (strcmp(c->name, name) == 0)
                return c;
    return NULL;
}

static void print_help(void)
{
    printf("usage: idunno [-s HOST:PORT] [--json] [--timeout MS] COMMAND [ARGS]\n\n"
           "  -s HOST:PORT   the node to talk to (default $IDUNNO_SERVER, then 127.0.0.1:7000)\n"
           "  --json         print one JSON document instead of a table\n"
           "  --timeout MS   how long to wait for the cluster (default 5000)\n\n"
           "commands:\n");
    for (size_t t = 0; command_tables[t]; t++)
        for (const struct cli_command *c = command_tables[t]; c->name; c++)
            printf("  %-12s %s\n", c->name, c->summary);
    printf("  %-12s %s\n", "shell", "the same commands at a prompt, with history");
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

static int run_command(struct cli_ctx *ctx, int argc, char **argv)
{
    const struct cli_command *c = find_command(argv[0]);
    if (!c)
        return cli_fail(CLI_USER_ERROR, "unknown command '%s' (see idunno --help)", argv[0]);
    return c->run(ctx, argc, argv);
}

static char *history_path(void)
{
    const char *home = getenv("HOME");
    if (!home)
        return NULL;
    size_t n = strlen(home) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/.idunno_history", home);
    return p;
}

/* The shell: a prompt, the same commands, and a history file that later
 * sessions can read back with `history`. */
static int run_shell(struct cli_ctx *ctx)
{
    char *hist = history_path();
    FILE *hf = hist ? fopen(hist, "a") : NULL;
    char *line = NULL;
    size_t cap = 0;
    int last = 0;
    int tty = isatty(0);
    for (;;) {
        if (tty) {
            printf("idunno %s> ", ctx->server);
            fflush(stdout);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (!line[0])
            continue;
        if (strcmp(line, "exit") == 0 || strcmp(line, "quit") == 0)
            break;
        if (hf) {
            fprintf(hf, "%s\n", line);
            fflush(hf);
        }
        if (strcmp(line, "help") == 0) {
            print_help();
            continue;
        }
        if (strcmp(line, "history") == 0) {
            FILE *r = hist ? fopen(hist, "r") : NULL;
            char buf[1024];
            int k = 1;
            while (r && fgets(buf, sizeof buf, r))
                printf("%5d  %s", k++, buf);
            if (r)
                fclose(r);
            continue;
        }
        wordexp_t we;
        if (wordexp(line, &we, WRDE_NOCMD) != 0) {
            cli_fail(CLI_USER_ERROR, "cannot parse that line");
            continue;
        }
        if (we.we_wordc > 0)
            last = run_command(ctx, (int)we.we_wordc, we.we_wordv);
        wordfree(&we);
        fflush(stdout);
    }
    free(line);
    if (hf)
        fclose(hf);
    free(hist);
    return last;
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx = {.server = getenv("IDUNNO_SERVER"), .timeout_ms = 5000};
    if (!ctx.server || !ctx.server[0])
        ctx.server = "127.0.0.1:7000";
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    /* '+': stop at the command name; its own options follow it. */
    while ((c = getopt_long(argc, argv, "+s:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': ctx.server = optarg; break;
        case 'j': ctx.json = 1; break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0)
                return cli_fail(CLI_USER_ERROR, "--timeout takes milliseconds");
            ctx.timeout_ms = (uint32_t)v;
            break;
        }
        case 'h': print_help(); return 0;
        default: return cli_fail(CLI_USER_ERROR, "unknown option (see idunno --help)");
        }
    }
    if (optind >= argc) {
        print_help();
        return CLI_USER_ERROR;
    }
    if (strcmp(argv[optind], "shell") == 0)
        return run_shell(&ctx);
    return run_command(&ctx, argc - optind, argv + optind);
}
