/* cli.h — what every `idunno` command shares: global options, the call to a
 * node, output in tables or JSON, and the exit-status rule
 * (0 ok, 1 user error, 2 cluster error). */
#ifndef IDUNNO_CLI_CLI_H
#define IDUNNO_CLI_CLI_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_OK 0
#define CLI_USER_ERROR 1
#define CLI_CLUSTER_ERROR 2

struct cli_command;

struct cli_ctx {
    const char *server; /* HOST:PORT */
    int json;
    uint32_t timeout_ms;
    int timeout_set;               /* --timeout was given (else timeout_ms is the default) */
    const struct cli_command *cmd; /* the command running (set by cli_run_command) */
};

/* Parses the global options at the front of argv (-s, --json, --timeout,
 * --help) into ctx. Returns the index of the command word (argc if none), -1
 * after printing the help, or an exit status > 0 after an error message. */
int cli_parse_globals(struct cli_ctx *ctx, int argc, char **argv, int *cmd_index);

/* Runs one command line (argv[0] is the command name). Returns its exit status. */
int cli_run_command(struct cli_ctx *ctx, int argc, char **argv);

/* The interactive shell (shell.c): a prompt with line editing and history in
 * ~/.idunno_history; each line is a command with optional global options in
 * front. Returns the status of the last command. */
int cli_shell(struct cli_ctx *ctx);

/* Every command name, for help and completion; NULL-terminated, static. */
const char *const *cli_command_names(void);
void cli_print_help(void);

struct cli_command {
    const char *name;
    const char *args;                                       /* usage after the name */
    const char *summary;                                    /* one line */
    int (*run)(struct cli_ctx *ctx, int argc, char **argv); /* argv[0] is the name */
};

/* A response frame: type and body (owned, free with free()). */
struct cli_reply {
    uint16_t type;
    uint8_t *body;
    size_t len;
};

/* The cluster keyring every connection is sealed with from now on (loaded on
 * first use); NULL or "" for none. main() sets $IDUNNO_KEY_FILE, --key-file
 * overrides it. */
void cli_set_key_file(const char *path);

/* Sends one request to ctx->server and waits for its answer. Returns 0, or a
 * CLI exit status after printing a one-line error: 2 for transport failures and
 * cluster errors, 1 for errors that are the user's to fix (ID_EINVAL,
 * ID_ENOTFOUND, ID_EEXIST). */
int cli_call(const struct cli_ctx *ctx, uint16_t type, const ProtobufCMessage *req,
             struct cli_reply *reply);

/* cli_call, then the answer decoded as a message of `desc` into *out (out is
 * the address of the caller's typed message pointer; free the message with its
 * free_unpacked). Returns 0, cli_call's status, or CLI_CLUSTER_ERROR after
 * printing that the answer was malformed. */
int cli_call_decode(const struct cli_ctx *ctx, uint16_t type, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *desc, void *out);

/* A connection for commands that make many calls (SDFS transfers): requests
 * may be pipelined, answers are matched by request id. Errors are returned, not
 * printed, so the caller can retry. */
struct cli_conn;

/* Connects to server. Returns 0 or ID_E* (ID_EINVAL: not HOST:PORT). */
int cli_conn_open(const char *server, uint32_t timeout_ms, struct cli_conn **out);
void cli_conn_close(struct cli_conn *c);
/* Sends one request; *req_id (may be NULL) gets its id. Returns 0 or ID_E*. */
int cli_conn_send(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg, uint64_t *req_id);
/* Sends an SDFS chunk write (PUT_DATA, or BLOB_WRITE by a test's forger)
 * whose data are the n bytes at buf + SEAL_PAYLOAD_HEAD (buf has n +
 * SEAL_PAYLOAD_OVERHEAD bytes: net/seal.h). On a connection sealed with the
 * cluster key the data is first sealed in place as a payload that only the
 * replicas open (docs/security.md); msg->data is set either way, and no
 * field numbered after data may be set. Returns 0 or ID_E*. */
struct Idunno__SdfsChunk;
int cli_conn_send_chunk(struct cli_conn *c, uint16_t type, struct Idunno__SdfsChunk *msg,
                        uint8_t *buf, size_t n, uint64_t *req_id);
/* cli_conn_send of a message whose last `tail` bytes packed are a payload
 * the caller sealed (net/seal.h); ID_EINVAL on a connection without the key. */
int cli_conn_send_tail(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg,
                       uint32_t tail, uint64_t *req_id);
/* Waits for the next answer. Returns 0 with the answer in reply (owned) and its
 * request id in *req_id; or the remote's error code with its message in errmsg;
 * or a local ID_E* (then the connection is unusable). */
int cli_conn_recv(struct cli_conn *c, struct cli_reply *reply, uint64_t *req_id, char *errmsg,
                  size_t errlen);
/* Exit status for a failed call's code: 1 for the user's errors, else 2. */
int cli_status_of(int code);

/* Prints "idunno: <msg>" to stderr and returns status. */
int cli_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True if argv has -h or --help; prints the command's usage then. */
int cli_wants_help(const struct cli_command *cmd, int argc, char **argv);
int cli_usage_error(const struct cli_command *cmd, const char *what);

/* ---- output ---------------------------------------------------------------------- */

/* Where tables and JSON go (default stdout; tests point it at a memory stream). */
void cli_out_set(FILE *f);

/* Aligned tables: add a header row then data rows, then print. */
struct cli_table;
struct cli_table *cli_table_new(size_t ncols, ...);
void cli_table_row(struct cli_table *t, ...); /* ncols const char * */
void cli_table_print(struct cli_table *t);    /* prints and frees */

/* The JSON writer of base/json_out.h, streamed to the output (one document
 * per cli_json_done). */
void cli_json_begin_object(void);
void cli_json_end_object(void);
void cli_json_begin_array(const char *key);
void cli_json_end_array(void);
void cli_json_key_object(const char *key);
void cli_json_str(const char *key, const char *value);
void cli_json_u64(const char *key, uint64_t value);
void cli_json_i64(const char *key, int64_t value);
void cli_json_double(const char *key, double value);
void cli_json_bool(const char *key, int value);
/* json: one complete JSON value, written as it is (a stored card). */
void cli_json_raw(const char *key, const char *json);
void cli_json_done(void); /* newline; resets state */
/* Members of the open object from the singular scalar fields of m named in
 * `names` (separated by spaces), each under its field name, with the writer
 * its type calls for: strings, integers, floating point, bools. A name the
 * message lacks, or a field of another kind, is a programming error: abort. */
void cli_json_fields(const ProtobufCMessage *m, const char *names);

/* Human-friendly durations ("1.2s", "3m4s"). Returns buf. */
const char *cli_fmt_ms(uint64_t ms, char *buf, size_t len);

/* The command tables of each area. */
extern const struct cli_command cli_node_commands[];
extern const struct cli_command cli_key_commands[];
extern const struct cli_command cli_member_commands[];
extern const struct cli_command cli_logq_commands[];
extern const struct cli_command cli_infer_commands[];
extern const struct cli_command cli_ctl_commands[];
extern const struct cli_command cli_sdfs_commands[];
extern const struct cli_command cli_model_commands[];
extern const struct cli_command cli_job_commands[];

/* Puts the local file as SDFS `name` through ctx->server, reusing *conn (opened
 * if NULL; may be replaced after a failed attempt). On success *out is the
 * committed version (idunno__sdfs_version__free_unpacked). Returns 0 or ID_E*
 * with the reason in err. */
struct Idunno__SdfsVersion;
int cli_sdfs_put(const struct cli_ctx *ctx, struct cli_conn **conn, const char *local,
                 const char *name, struct Idunno__SdfsVersion **out, char *err, size_t errlen);

/* Appends the latest version of SDFS `name` to fd (for `results`), verified
 * like `get`. Returns 0 or ID_E* with the reason in err. */
int cli_sdfs_get_to_fd(const struct cli_ctx *ctx, const char *name, int fd, char *err, size_t len);

#endif
