/* shell.c — `idunno shell`: the same commands at a prompt (the MP style).
 *
 * Line editing, tab completion of command names and history come from libedit's
 * readline interface; history persists in ~/.idunno_history (the last 1,000
 * lines, rewritten after every command so a killed shell loses nothing). When
 * stdin is not a terminal the shell just reads lines, with no prompt, so it can
 * run scripts: `idunno shell < commands.txt`.
 *
 * A line is `[GLOBAL OPTIONS] COMMAND [ARGS]`, split like a shell would split it
 * (quotes, no command substitution); its global options apply to that line only.
 * Built-ins: help, history, server [HOST:PORT], exit/quit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wordexp.h>

#include <editline/readline.h>

#include "cli/cli.h"

#define SHELL_HISTORY_MAX 1000

static char *history_file(void)
{
    const char *home = getenv("HOME");
    if (!home || !home[0])
        return NULL;
    size_t n = strlen(home) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/.idunno_history", home);
    return p;
}

/* Completes the first word from the command names; later words from files. */
static char *complete_command(const char *text, int state)
{
    static size_t next;
    static size_t len;
    if (state == 0) {
        next = 0;
        len = strlen(text);
    }
    const char *const *names = cli_command_names();
    static const char *const builtins[] = {"help", "history", "server", "exit", "quit", NULL};
    for (;;) {
        const char *name = NULL;
        size_t n_names = 0;
        while (names[n_names])
            n_names++;
        if (next < n_names)
            name = names[next];
        else if (builtins[next - n_names])
            name = builtins[next - n_names];
        else
            return NULL;
        next++;
        if (strncmp(name, text, len) == 0)
            return strdup(name);
    }
}

static char **shell_complete(const char *text, int start, int end)
{
    (void)end;
    if (start != 0)
        return NULL; /* default: file names */
    return rl_completion_matches(text, complete_command);
}

static void print_history(void)
{
    for (int i = 0; i < history_length; i++) {
        HIST_ENTRY *h = history_get(history_base + i);
        if (h)
            printf("%5d  %s\n", i + 1, h->line);
    }
}

/* Reads one line: with editing on a terminal, plainly otherwise. NULL at EOF.
 * The caller frees it. */
static char *shell_read(int tty, const char *prompt)
{
    if (tty)
        return readline(prompt);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    return line;
}

/* Runs one parsed line (argv[0] is the program name). Returns its exit status;
 * *quit set by exit/quit. */
static int shell_line(struct cli_ctx *ctx, int argc, char **argv, int *quit, char **server_owned)
{
    struct cli_ctx line_ctx = *ctx;
    int idx;
    int rc = cli_parse_globals(&line_ctx, argc, argv, &idx);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    if (idx >= argc)
        return CLI_OK;
    const char *cmd = argv[idx];
    if (strcmp(cmd, "exit") == 0 || strcmp(cmd, "quit") == 0) {
        *quit = 1;
        return CLI_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        cli_print_help();
        printf("\nshell built-ins: help, history, server [HOST:PORT], exit\n");
        return CLI_OK;
    }
    if (strcmp(cmd, "history") == 0) {
        print_history();
        return CLI_OK;
    }
    if (strcmp(cmd, "server") == 0) {
        if (idx + 1 < argc) {
            char *s = strdup(argv[idx + 1]);
            if (!s)
                return cli_fail(CLI_USER_ERROR, "out of memory");
            free(*server_owned);
            *server_owned = s;
            ctx->server = s;
        }
        printf("%s\n", ctx->server);
        return CLI_OK;
    }
    if (strcmp(cmd, "shell") == 0)
        return cli_fail(CLI_USER_ERROR, "already in the shell");
    return cli_run_command(&line_ctx, argc - idx, argv + idx);
}

int cli_shell(struct cli_ctx *ctx)
{
    int tty = isatty(STDIN_FILENO);
    char *hist = history_file();
    char *server_owned = NULL;
    if (tty) {
        rl_readline_name = "idunno";
        rl_attempted_completion_function = shell_complete;
        stifle_history(SHELL_HISTORY_MAX);
        if (hist)
            read_history(hist);
    }
    int last = CLI_OK, quit = 0;
    while (!quit) {
        char prompt[128];
        snprintf(prompt, sizeof prompt, "idunno %s> ", ctx->server);
        char *line = shell_read(tty, prompt);
        if (!line)
            break;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#') {
            free(line);
            continue;
        }
        if (tty) {
            add_history(line);
            if (hist)
                write_history(hist);
        }
        /* One reserved slot in front: argv[0] is the program name, as getopt
         * expects, and the words follow. */
        wordexp_t we = {.we_offs = 1};
        int wrc = wordexp(line, &we, WRDE_NOCMD | WRDE_DOOFFS);
        if (wrc != 0) {
            last = cli_fail(CLI_USER_ERROR,
                            "cannot split that line (unbalanced quotes or $(...)?)");
        } else {
            if (we.we_wordc > 0) {
                we.we_wordv[0] = (char *)"idunno";
                last = shell_line(ctx, (int)we.we_wordc + 1, we.we_wordv, &quit, &server_owned);
                we.we_wordv[0] = NULL; /* not wordexp's to free */
            }
            wordfree(&we);
        }
        free(line);
        fflush(stdout);
    }
    if (tty)
        putchar('\n');
    /* ctx->server may point at server_owned: the caller exits right after. */
    free(hist);
    return last;
}
