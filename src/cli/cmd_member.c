/* cmd_member.c — membership commands: list_mem, list_self, leave. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "idunno.pb-c.h"

static int cmd_list_mem(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_list_self(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_leave(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_command cli_member_commands[] = {
    {"list_mem", "", "the member list as the node given by -s sees it", cmd_list_mem},
    {"list_self", "", "the identity (name, address, incarnation) of the node given by -s",
     cmd_list_self},
    {"leave", "", "the node given by -s leaves the group gracefully and exits", cmd_leave},
    {NULL, NULL, NULL, NULL},
};

static int fetch(struct cli_ctx *ctx, Idunno__MemberList **out)
{
    Idunno__Empty e = IDUNNO__EMPTY__INIT;
    return cli_call_decode(ctx, IDUNNO__MSG_TYPE__MSG_MEMBERS_REQ, &e.base,
                           &idunno__member_list__descriptor, out);
}

static void print_members(const struct cli_ctx *ctx, Idunno__MemberInfo **m, size_t n)
{
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_begin_array("members");
        for (size_t i = 0; i < n; i++) {
            cli_json_begin_object();
            cli_json_str("name", m[i]->name);
            cli_json_str("addr", m[i]->addr);
            cli_json_u64("incarnation", m[i]->incarnation);
            cli_json_str("state", m[i]->state);
            cli_json_u64("since_ms", m[i]->since_ms);
            cli_json_bool("self", m[i]->self);
            cli_json_str("role", m[i]->role);
            cli_json_end_object();
        }
        cli_json_end_array();
        cli_json_end_object();
        cli_json_done();
        return;
    }
    struct cli_table *t = cli_table_new(6, "NAME", "ADDRESS", "INCARNATION", "STATE", "FOR",
                                        "ROLE");
    for (size_t i = 0; i < n; i++) {
        char inc[32], dur[32], name[80];
        snprintf(inc, sizeof inc, "%llu", (unsigned long long)m[i]->incarnation);
        snprintf(name, sizeof name, "%s%s", m[i]->name, m[i]->self ? " (self)" : "");
        cli_table_row(t, name, m[i]->addr, inc, m[i]->state,
                      cli_fmt_ms(m[i]->since_ms, dur, sizeof dur), m[i]->role);
    }
    cli_table_print(t);
}

static int cmd_list_mem(struct cli_ctx *ctx, int argc, char **argv)
{
    if (cli_wants_help(ctx->cmd, argc, argv))
        return 0;
    if (argc > 1)
        return cli_usage_error(ctx->cmd, "takes no arguments");
    Idunno__MemberList *l;
    int rc = fetch(ctx, &l);
    if (rc)
        return rc;
    print_members(ctx, l->members, l->n_members);
    idunno__member_list__free_unpacked(l, NULL);
    return 0;
}

static int cmd_list_self(struct cli_ctx *ctx, int argc, char **argv)
{
    if (cli_wants_help(ctx->cmd, argc, argv))
        return 0;
    if (argc > 1)
        return cli_usage_error(ctx->cmd, "takes no arguments");
    Idunno__MemberList *l;
    int rc = fetch(ctx, &l);
    if (rc)
        return rc;
    for (size_t i = 0; i < l->n_members; i++)
        if (l->members[i]->self)
            print_members(ctx, &l->members[i], 1);
    idunno__member_list__free_unpacked(l, NULL);
    return 0;
}

static int cmd_leave(struct cli_ctx *ctx, int argc, char **argv)
{
    if (cli_wants_help(ctx->cmd, argc, argv))
        return 0;
    if (argc > 1)
        return cli_usage_error(ctx->cmd, "takes no arguments");
    Idunno__Empty e = IDUNNO__EMPTY__INIT;
    struct cli_reply r;
    int rc = cli_call(ctx, IDUNNO__MSG_TYPE__MSG_LEAVE_REQ, &e.base, &r);
    if (rc)
        return rc;
    free(r.body);
    if (ctx->json) {
        cli_json_begin_object();
        cli_json_str("left", ctx->server);
        cli_json_end_object();
        cli_json_done();
    } else {
        printf("%s is leaving the group\n", ctx->server);
    }
    return 0;
}
