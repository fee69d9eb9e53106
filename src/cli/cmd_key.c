/* cmd_key.c — the cluster key: `idunno keygen` writes a keyring file (see
 * src/net/seal.h and docs/security.md), `idunno token` prints the HTTP bearer
 * token derived from it (docs/http.md). Neither talks to a node. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "net/seal.h"

static int cmd_keygen(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_token(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_key_commands[] = {
    {"keygen", "[--force] [--rotate] [FILE]",
     "write a new cluster keyring to FILE (default $IDUNNO_KEY_FILE, then ./cluster.key), mode "
     "0600;\n--force replaces an existing file, --rotate puts a new key first and keeps FILE's "
     "keys after it",
     cmd_keygen},
    {"token", "[FILE]",
     "print the bearer token that state-changing HTTP requests to the nodes must carry\n"
     "(Authorization: Bearer TOKEN), derived from the first key of the keyring FILE (default\n"
     "$IDUNNO_KEY_FILE); the nodes accept the token of any key of their ring",
     cmd_token},
    {NULL, NULL, NULL, NULL},
};

static int cmd_keygen(struct cli_ctx *ctx, int argc, char **argv)
{
    (void)ctx;
    const struct cli_command *cmd = ctx->cmd;
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

static int cmd_token(struct cli_ctx *ctx, int argc, char **argv)
{
    (void)ctx;
    const struct cli_command *cmd = ctx->cmd;
    if (cli_wants_help(cmd, argc, argv))
        return CLI_OK;
    if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
        return cli_usage_error(cmd, "takes one FILE at most");
    const char *env = getenv("IDUNNO_KEY_FILE");
    const char *path = argc == 2 ? argv[1] : env && env[0] ? env : NULL;
    if (!path)
        return cli_fail(CLI_USER_ERROR,
                        "token: no keyring: give FILE or set $IDUNNO_KEY_FILE "
                        "(a node without a cluster key takes no state-changing HTTP "
                        "requests at all)");
    char err[ID_ERRMSG_LEN];
    struct seal_keyring kr;
    if (seal_init() < 0 || seal_keyring_load(path, &kr, err, sizeof err) < 0)
        return cli_fail(CLI_USER_ERROR, "token: %s", err);
    uint8_t token[SEAL_HTTP_TOKEN_LEN];
    char hex[2 * SEAL_HTTP_TOKEN_LEN + 1];
    seal_http_token(&kr, 0, token);
    sodium_bin2hex(hex, sizeof hex, token, sizeof token);
    seal_keyring_wipe(&kr);
    sodium_memzero(token, sizeof token);
    printf("%s\n", hex);
    sodium_memzero(hex, sizeof hex);
    return CLI_OK;
}
