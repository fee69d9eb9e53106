/* cmd_key.c — the cluster key: `idunno keygen` writes a keyring file (see
 * src/net/seal.h and docs/security.md). It talks to no node. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "net/seal.h"

static int cmd_keygen(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_key_commands[] = {
    {"keygen", "[--force] [--rotate] [FILE]",
     "write a new cluster keyring to FILE (default $IDUNNO_KEY_FILE, then ./cluster.key), mode "
     "0600;\n--force replaces an existing file, --rotate puts a new key first and keeps FILE's "
     "keys after it",
     cmd_keygen},
    {NULL, NULL, NULL, NULL},
};

static int cmd_keygen(struct cli_ctx *ctx, int argc, char **argv)
{
    (void)ctx;
    const struct cli_command *cmd = &cli_key_commands[0];
    if (cli_wants_help(cmd, argc, argv))
        return CLI_OK;
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        {"rotate", no_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    int force = 0, rotate = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'f')
            force = 1;
        else if (c == 'r')
            rotate = 1;
        else
            return cli_usage_error(cmd, "has an unknown option");
    }
    if (argc - optind > 1)
        return cli_usage_error(cmd, "takes one FILE at most");
    const char *env = getenv("IDUNNO_KEY_FILE");
    const char *path = optind < argc ? argv[optind] : env && env[0] ? env : "cluster.key";
    char err[ID_ERRMSG_LEN];
    struct seal_keyring old;
    if (rotate && seal_keyring_load(path, &old, err, sizeof err) < 0)
        return cli_fail(CLI_USER_ERROR, "--rotate: %s", err);
    int rc = seal_keygen_file(path, rotate ? &old : NULL, force || rotate, err, sizeof err);
    if (rotate)
        seal_keyring_wipe(&old);
    if (rc < 0)
        return cli_fail(CLI_USER_ERROR, "keygen: %s", err);
    printf("%s %s\n", rotate ? "rotated" : "wrote", path);
    return CLI_OK;
}
