/* sm.h — the replicated state machine of the control plane, without Raft.
 *
 * The coordinator's state is split into sub-state machines, one per layer (the
 * control plane's own records, SDFS metadata, models, jobs, a diagnostic
 * key-value store). Each registers a range of command types and four callbacks:
 * apply a command, serialise its state for a snapshot, restore it from one, and
 * (optionally) feed a digest. The framework decodes log entries, hands each
 * command to its owner in log order, and builds and restores whole-state
 * snapshots and a SHA-256 digest that replicas compare.
 *
 * A command is a type, a version and a protobuf body, wrapped in one CtlCommand
 * envelope (proto/idunno.proto) together with who proposed it and the proposer's
 * clock. In the log an entry is
 *
 *   offset size
 *   0      4    magic "IDCM"
 *   4      4    envelope length, little-endian
 *   8      n    CtlCommand
 *   8+n    0..7 zero bytes, so the entry is a multiple of 8 bytes long
 *
 * (libraft 0.15 corrupts its log with entries of other lengths; every version
 * gets padded entries from us.)
 *
 * Determinism rules for apply callbacks — every replica must reach the same
 * state from the same log:
 *   - read no clock but cmd->time_ms, no random numbers, no local files;
 *   - never fail the process: a command that cannot be applied sets
 *     res->status and leaves the state unchanged;
 *   - iterate containers in a defined order when the order shows in the state
 *     (serialise sorted).
 *
 * Versions: a sub-state machine accepts the command versions it knows and
 * answers ID_EVERSION to others (unchanged state, the same on every replica
 * that runs the same code). A new command version may be proposed only once
 * every voter runs code that knows it. A snapshot section carries its own
 * layout version, checked by restore.
 *
 * Threading: none; the caller (the ctl glue, on the loop thread) serialises
 * every call.
 */
#ifndef IDUNNO_CTL_SM_H
#define IDUNNO_CTL_SM_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sha256.h"

#define SM_MAX_SUBS 16
#define SM_ENTRY_HEADER 8
#define SM_ENTRY_MAGIC 0x4d434449u    /* "IDCM" read as little-endian */
#define SM_SNAPSHOT_MAGIC 0x53534449u /* "IDSS" */
/* Largest envelope accepted in a log entry; bulk data never goes through Raft. */
#define SM_MAX_ENTRY (4u << 20)

/* Section ids of the sub-state machines, also their order in snapshots and
 * digests. */
enum sm_id {
    SM_ID_META = 1,   /* the control plane's own records (ctl/meta.h) */
    SM_ID_SDFS = 2,   /* later: SDFS metadata */
    SM_ID_MODELS = 3, /* later: models */
    SM_ID_JOBS = 4,   /* later: jobs and queries */
    SM_ID_KV = 9,     /* diagnostics: ctl/kv.h */
};

/* A growable byte buffer (malloc'd). */
struct sm_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

/* Appends bytes; returns 0 or ID_ENOMEM (buffer unchanged then). */
int sm_buf_append(struct sm_buf *b, const void *p, size_t n);
/* Appends the protobuf encoding of m. */
int sm_buf_append_pb(struct sm_buf *b, const ProtobufCMessage *m);
void sm_buf_free(struct sm_buf *b);

/* One decoded command, as apply sees it. Pointers are valid during apply only. */
struct sm_cmd {
    uint32_t type;
    uint32_t version;
    const uint8_t *body;
    size_t len;
    uint64_t origin;  /* raft id of the proposer */
    uint64_t seq;     /* proposer's sequence number */
    uint64_t time_ms; /* proposer's wall clock: the only time apply may use */
    uint64_t applied; /* set by sm_apply: this command's position among applied ones */
};

/* What applying a command produced. `status` 0 means applied; a negative ID_E*
 * means rejected with the state unchanged. When `want_body` is set someone waits
 * for the outcome (the proposer), and apply may malloc a reply into body/len
 * (typically a packed protobuf); the framework's caller then owns it. */
struct sm_result {
    int status;
    int want_body;
    uint8_t *body;
    size_t len;
};

/* Frees res->body and clears it. */
void sm_result_clear(struct sm_result *res);

/* Scratch memory for building a snapshot message: the many arrays of pointers
 * and sub-messages a snapshot fills are taken from one list and freed together.
 * A zeroed struct is empty. An allocation failure is sticky (failed), so a
 * snapshot allocates everything and checks once. */
struct sm_scratch {
    void *blocks; /* the last block; each links to the one before */
    int failed;
};

/* n zeroed elements of `size` bytes (at least one, so a count of zero still
 * gives a valid pointer), or NULL with s->failed set (out of memory, or the
 * size overflows). */
void *sm_scratch_calloc(struct sm_scratch *s, size_t n, size_t size);

/* Hands p (from malloc; NULL is fine) to s, to be freed with it. If that
 * fails, p is freed now and s->failed set. */
void sm_scratch_adopt(struct sm_scratch *s, void *p);

/* Frees every block; s is empty again. */
void sm_scratch_free(struct sm_scratch *s);

/* The end of a snapshot: appends m to out unless an allocation failed (then
 * ID_ENOMEM), and frees the scratch either way. */
int sm_scratch_pack(struct sm_scratch *s, struct sm_buf *out, const ProtobufCMessage *m);

/* The frame every restore shares, for sub-state machines whose snapshot
 * section is one protobuf message (sm_ops.section): a NULL section empties the
 * state (clear); a layout other than sm_ops.snapshot_version is refused
 * (ID_EVERSION); a section that does not decode as a `desc` message is refused
 * (ID_EPROTO); otherwise build fills a zeroed state aside from the message,
 * and only once it succeeds does that state replace the current one, so a bad
 * snapshot changes nothing. */
struct sm_section {
    const ProtobufCMessageDescriptor *desc; /* the section's message */
    size_t state_size;                      /* bytes of the state struct */
    /* Empties a state, which stays usable (the NULL section). */
    void (*clear)(void *state);
    /* Frees all a state owns: the old state before it is overwritten, a fresh
     * one that failed. NULL: clear does. */
    void (*release)(void *state);
    /* Fills the zeroed `fresh` from msg; 0 or the code restore returns. */
    int (*build)(void *fresh, const ProtobufCMessage *msg);
};

struct sm_ops {
    const char *name;          /* for logs: "kv" */
    uint32_t id;               /* an enum sm_id; unique */
    uint32_t type_lo, type_hi; /* the CtlCommandType range it owns, inclusive */
    uint32_t snapshot_version; /* layout version of its snapshot section */
    /* Applies one command of its range (see the determinism rules above). */
    void (*apply)(void *self, const struct sm_cmd *cmd, struct sm_result *res);
    /* Appends a canonical serialisation of the whole state to out. Returns 0 or
     * ID_ENOMEM. Equal states must give equal bytes. */
    int (*snapshot)(void *self, struct sm_buf *out);
    /* Replaces the whole state by the one serialised in data (a section of
     * layout `version`). data == NULL means reset to the empty state. Must
     * validate before replacing: on error (ID_EPROTO, ID_EVERSION, ID_ENOMEM)
     * the state is unchanged. `data` is valid during the call only. */
    int (*restore)(void *self, uint32_t version, const uint8_t *data, size_t len);
    /* Or, with restore NULL, the frame of sm_section restores the state. */
    const struct sm_section *section;
    /* Optional: feeds a canonical description of the state to h. NULL: the
     * framework digests the snapshot bytes. */
    void (*digest)(void *self, struct sha256 *h);
};

/* Restores one sub-state machine: ops->restore, or the frame of ops->section.
 * Arguments and results as sm_ops.restore. */
int sm_ops_restore(const struct sm_ops *ops, void *self, uint32_t version, const uint8_t *data,
                   size_t len);

struct sm_sub {
    const struct sm_ops *ops;
    void *self;
};

struct sm {
    struct sm_sub subs[SM_MAX_SUBS]; /* sorted by ops->id */
    size_t n_subs;
    uint64_t applied;   /* commands applied (including rejected and malformed) */
    uint64_t malformed; /* entries that did not decode */
};

/* Initialises sm with no sub-state machines and nothing applied; register
 * them with sm_register before the first entry is applied. Owns no memory. */
void sm_init(struct sm *sm);

/* Registers a sub-state machine. `ops` must outlive sm; `self` is passed to
 * every callback and stays owned by the caller. Returns 0, ID_EEXIST (id or
 * type range overlaps another one) or ID_EINVAL. */
int sm_register(struct sm *sm, const struct sm_ops *ops, void *self);

/* Encodes a command into a log entry (header, envelope, padding). The buffer is
 * allocated with `alloc` (malloc if NULL; the ctl glue passes raft_malloc) and
 * owned by the caller. Returns 0, ID_ENOMEM or ID_ETOOBIG. */
int sm_encode(const struct sm_cmd *cmd, void *(*alloc)(size_t), void **out, size_t *out_len);

/* A decoded entry: `cmd` points into `msg`, which sm_decoded_free releases. */
struct sm_decoded {
    struct sm_cmd cmd;
    void *msg;
};

/* Decodes a log entry. Returns 0 or ID_EPROTO (bad magic, length, padding or
 * envelope); nothing to free on error. */
int sm_decode(const void *entry, size_t len, struct sm_decoded *out);
void sm_decoded_free(struct sm_decoded *d);

/* Applies one decoded command in log order: counts it and hands it to the owner
 * of its type (ID_EUNKNOWNTYPE in res if none). res->want_body is read, the
 * rest of res is filled in. */
void sm_apply(struct sm *sm, struct sm_cmd *cmd, struct sm_result *res);

/* Counts an entry that did not decode, so every replica stays in step. */
void sm_apply_malformed(struct sm *sm);

/* Decode + apply in one call (tests, tools). Returns what sm_decode returned. */
int sm_apply_entry(struct sm *sm, const void *entry, size_t len, struct sm_result *res);

/* Serialises the whole state (header + CtlSnapshot) into a buffer allocated with
 * `alloc` (malloc if NULL), owned by the caller. Returns 0 or ID_ENOMEM. */
int sm_snapshot(struct sm *sm, void *(*alloc)(size_t), void **out, size_t *out_len);

/* Replaces the whole state by a snapshot. Sub-state machines absent from it are
 * reset to empty. Returns 0, ID_EPROTO (malformed), ID_EVERSION (format or a
 * section this build does not know) — then nothing changed — or the error of a
 * sub-state machine's restore, after which the state is inconsistent and the
 * caller must not go on serving it. */
int sm_restore(struct sm *sm, const void *data, size_t len);

/* Resets every sub-state machine to its empty state and the counters to 0. */
void sm_reset(struct sm *sm);

/* SHA-256 over the applied count and every sub-state machine, in id order. */
void sm_digest(struct sm *sm, uint8_t out[SHA256_LEN]);
/* The same as 64 hex digits. */
void sm_digest_hex(struct sm *sm, char out[2 * SHA256_LEN + 1]);

#endif
