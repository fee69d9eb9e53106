/* catalog.c — SDFS metadata as a sub-state machine (see catalog.h): a sorted
 * array of files with their kept versions, a per-node replica count derived
 * from it (rebuilt on restore, never serialised), and the placement and repair
 * decisions. */
#include "sdfs/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/err.h"
#include "idunno.pb-c.h"

#define CATALOG_SNAPSHOT_VERSION 1

struct node_load {
    char name[SDFS_NODE_MAX];
    uint64_t copies;
};

struct catalog {
    struct sdfs_file *files; /* sorted by name (strcmp) */
    size_t n, cap;
    struct node_load *loads; /* unsorted; a cluster has few nodes */
    size_t n_loads, cap_loads;
};

struct catalog *catalog_create(void)
{
    return calloc(1, sizeof(struct catalog));
}

static void catalog_clear(struct catalog *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->files[i].name);
    free(c->files);
    free(c->loads);
    c->files = NULL;
    c->loads = NULL;
    c->n = c->cap = c->n_loads = c->cap_loads = 0;
}

void catalog_destroy(struct catalog *c)
{
    if (!c)
        return;
    catalog_clear(c);
    free(c);
}

/* ---- names ---------------------------------------------------------------------------------- */

int sdfs_name_ok(const char *name)
{
    if (!name || !name[0] || name[0] == '/')
        return 0;
    size_t len = strlen(name);
    if (len > SDFS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~' || name[i] == '\\')
            return 0;
    /* No component may be "." or ".." (nor empty, which "a//b" would be). */
    const char *p = name;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (!slash)
            return 1;
        p = slash + 1;
    }
}

int sdfs_blob_ok(const char *s)
{
    if (!s || strlen(s) != SDFS_BLOB_LEN)
        return 0;
    for (size_t i = 0; i < SDFS_BLOB_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int node_name_ok(const char *s)
{
    return s && s[0] && strlen(s) < SDFS_NODE_MAX;
}

/* ---- lookups -------------------------------------------------------------------------------- */

static int name_cmp(const void *name, const void *elem)
{
    return strcmp(name, ((const struct sdfs_file *)elem)->name);
}

/* Index of name, or of where it would go (with *found 0). */
static size_t catalog_index(const struct catalog *c, const char *name, int *found)
{
    return array_search(c->files, c->n, sizeof *c->files, name, name_cmp, found);
}

const struct sdfs_file *catalog_find(const struct catalog *c, const char *name)
{
    int found;
    size_t i = catalog_index(c, name, &found);
    return found ? &c->files[i] : NULL;
}

size_t catalog_count(const struct catalog *c)
{
    return c->n;
}

const struct sdfs_file *catalog_at(const struct catalog *c, size_t i)
{
    return i < c->n ? &c->files[i] : NULL;
}

size_t catalog_lower_bound(const struct catalog *c, const char *prefix)
{
    int found;
    return catalog_index(c, prefix, &found);
}

static struct sdfs_version *file_find_blob(struct sdfs_file *f, const char *blob)
{
    for (size_t i = 0; i < f->n_versions; i++)
        if (strcmp(f->versions[i].blob, blob) == 0)
            return &f->versions[i];
    return NULL;
}

const struct sdfs_version *catalog_find_blob(const struct catalog *c, const char *name,
                                             const char *blob)
{
    struct sdfs_file *f = (struct sdfs_file *)catalog_find(c, name);
    return f ? file_find_blob(f, blob) : NULL;
}

/* ---- per-node load -------------------------------------------------------------------------- */

static struct node_load *load_slot(struct catalog *c, const char *node, int create)
{
    for (size_t i = 0; i < c->n_loads; i++)
        if (strcmp(c->loads[i].name, node) == 0)
            return &c->loads[i];
    if (!create)
        return NULL;
    if (ARRAY_RESERVE(c->loads, c->cap_loads, c->n_loads, 1, 16) < 0)
        return NULL;
    struct node_load *l = &c->loads[c->n_loads++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", node);
    return l;
}

/* The load table is only a placement hint: if it cannot grow (out of memory)
 * placement is merely less even, never wrong, so a failure is ignored. */
static void load_add(struct catalog *c, const struct sdfs_version *v, int sign)
{
    for (size_t r = 0; r < v->n_replicas; r++) {
        struct node_load *l = load_slot(c, v->replicas[r], sign > 0);
        if (l)
            l->copies = sign > 0 ? l->copies + 1 : (l->copies ? l->copies - 1 : 0);
    }
}

uint64_t catalog_node_load(const struct catalog *c, const char *node)
{
    struct node_load *l = load_slot((struct catalog *)c, node, 0);
    return l ? l->copies : 0;
}

/* ---- versions from and to protobuf ---------------------------------------------------------- */

/* Checks a version message and copies it into v. version_required: snapshots
 * carry numbers, commit requests do not. */
static int version_from_pb(const Idunno__SdfsVersion *m, struct sdfs_version *v,
                           int version_required)
{
    if (!sdfs_blob_ok(m->blob) || m->sha256.len != 32 ||
        (m->crc32c.len != 0 && m->crc32c.len != 4) || m->n_replicas < 1 ||
        m->n_replicas > SDFS_REPLICAS || (version_required && m->version == 0))
        return ID_EINVAL;
    memset(v, 0, sizeof *v);
    v->version = m->version;
    memcpy(v->blob, m->blob, SDFS_BLOB_LEN + 1);
    v->size = m->size;
    memcpy(v->sha256, m->sha256.data, 32);
    if (m->crc32c.len == 4) {
        v->has_crc32c = 1;
        memcpy(v->crc32c_be, m->crc32c.data, 4);
    }
    v->time_ms = m->time_ms;
    for (size_t r = 0; r < m->n_replicas; r++) {
        if (!node_name_ok(m->replicas[r]))
            return ID_EINVAL;
        for (size_t k = 0; k < r; k++)
            if (strcmp(m->replicas[k], m->replicas[r]) == 0)
                return ID_EINVAL;
        snprintf(v->replicas[r], SDFS_NODE_MAX, "%s", m->replicas[r]);
    }
    v->n_replicas = m->n_replicas;
    return 0;
}

void catalog_version_to_pb(const char *name, const struct sdfs_version *v, Idunno__SdfsVersion *m,
                           char **ptrs)
{
    idunno__sdfs_version__init(m);
    m->name = (char *)name;
    m->version = v->version;
    m->blob = (char *)v->blob;
    m->size = v->size;
    m->sha256.data = (uint8_t *)v->sha256;
    m->sha256.len = 32;
    if (v->has_crc32c) {
        m->crc32c.data = (uint8_t *)v->crc32c_be;
        m->crc32c.len = 4;
    }
    m->time_ms = v->time_ms;
    for (size_t r = 0; r < v->n_replicas; r++)
        ptrs[r] = (char *)v->replicas[r];
    m->n_replicas = v->n_replicas;
    m->replicas = ptrs;
}

static void result_pb(struct sm_result *res, const ProtobufCMessage *m)
{
    if (!res->want_body)
        return;
    size_t n = protobuf_c_message_get_packed_size(m);
    res->body = malloc(n ? n : 1);
    if (res->body)
        res->len = protobuf_c_message_pack(m, res->body);
}

/* ---- commands ------------------------------------------------------------------------------- */

static int catalog_insert(struct catalog *c, size_t at, const char *name)
{
    if (c->n >= SDFS_MAX_FILES)
        return ID_ENOSPC;
    if (ARRAY_RESERVE(c->files, c->cap, c->n, 1, 64) < 0)
        return ID_ENOMEM;
    char *copy = strdup(name);
    if (!copy)
        return ID_ENOMEM;
    memmove(&c->files[at + 1], &c->files[at], (c->n - at) * sizeof *c->files);
    c->n++;
    memset(&c->files[at], 0, sizeof c->files[at]);
    c->files[at].name = copy;
    return 0;
}

static void apply_commit(struct catalog *c, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__SdfsVersion *m = idunno__sdfs_version__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct sdfs_version v;
    if (!sdfs_name_ok(m->name) || version_from_pb(m, &v, 0) < 0) {
        res->status = ID_EINVAL;
        goto out;
    }
    int found;
    size_t i = catalog_index(c, m->name, &found);
    if (!found && (res->status = catalog_insert(c, i, m->name)) < 0)
        goto out;
    struct sdfs_file *f = &c->files[i];
    struct sdfs_version *done = file_find_blob(f, v.blob);
    char dropped[SDFS_BLOB_LEN + 1] = "";
    if (!done) {
        if (f->n_versions == SDFS_KEEP_VERSIONS) {
            memcpy(dropped, f->versions[0].blob, sizeof dropped);
            load_add(c, &f->versions[0], -1);
            memmove(&f->versions[0], &f->versions[1],
                    (SDFS_KEEP_VERSIONS - 1) * sizeof f->versions[0]);
            f->n_versions--;
        }
        v.version = ++f->last_version;
        v.time_ms = cmd->time_ms;
        f->versions[f->n_versions++] = v;
        load_add(c, &v, +1);
        done = &f->versions[f->n_versions - 1];
    }
    char *ptrs[SDFS_REPLICAS], *drop_ptr = dropped;
    Idunno__SdfsVersion r;
    catalog_version_to_pb(f->name, done, &r, ptrs);
    if (dropped[0]) {
        r.n_dropped = 1;
        r.dropped = &drop_ptr;
    }
    result_pb(res, &r.base);
out:
    idunno__sdfs_version__free_unpacked(m, NULL);
}

static void apply_delete(struct catalog *c, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__SdfsLookup *m = idunno__sdfs_lookup__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    int found = 0;
    size_t i = sdfs_name_ok(m->name) ? catalog_index(c, m->name, &found) : 0;
    if (!found) {
        res->status = ID_ENOTFOUND;
        goto out;
    }
    struct sdfs_file *f = &c->files[i];
    if (res->want_body) {
        Idunno__SdfsVersion rows[SDFS_KEEP_VERSIONS], *rp[SDFS_KEEP_VERSIONS];
        char *ptrs[SDFS_KEEP_VERSIONS][SDFS_REPLICAS];
        for (size_t k = 0; k < f->n_versions; k++) {
            catalog_version_to_pb(f->name, &f->versions[k], &rows[k], ptrs[k]);
            rp[k] = &rows[k];
        }
        Idunno__SdfsFile r = IDUNNO__SDFS_FILE__INIT;
        r.name = f->name;
        r.n_versions = f->n_versions;
        r.versions = rp;
        result_pb(res, &r.base);
    }
    for (size_t k = 0; k < f->n_versions; k++)
        load_add(c, &f->versions[k], -1);
    free(f->name);
    memmove(&c->files[i], &c->files[i + 1], (c->n - i - 1) * sizeof *c->files);
    c->n--;
out:
    idunno__sdfs_lookup__free_unpacked(m, NULL);
}

static int version_has(const struct sdfs_version *v, const char *node)
{
    for (size_t r = 0; r < v->n_replicas; r++)
        if (strcmp(v->replicas[r], node) == 0)
            return (int)r + 1;
    return 0;
}

static void apply_replica(struct catalog *c, const struct sm_cmd *cmd, struct sm_result *res)
{
    Idunno__SdfsReplicaChange *m = idunno__sdfs_replica_change__unpack(NULL, cmd->len, cmd->body);
    if (!m) {
        res->status = ID_EPROTO;
        return;
    }
    struct sdfs_version *v = NULL;
    if (sdfs_name_ok(m->name) && sdfs_blob_ok(m->blob)) {
        struct sdfs_file *f = (struct sdfs_file *)catalog_find(c, m->name);
        v = f ? file_find_blob(f, m->blob) : NULL;
    }
    if (!v) {
        res->status = ID_ENOTFOUND; /* deleted or dropped meanwhile: nothing to do */
        goto out;
    }
    if ((m->remove[0] && !node_name_ok(m->remove)) || (m->add[0] && !node_name_ok(m->add)) ||
        (!m->remove[0] && !m->add[0])) {
        res->status = ID_EINVAL;
        goto out;
    }
    int at = m->remove[0] ? version_has(v, m->remove) : 0;
    int adding = m->add[0] && !version_has(v, m->add);
    /* Never remove the last copy without a replacement. */
    if (at && !adding && v->n_replicas == 1) {
        res->status = ID_EBUSY;
        goto out;
    }
    load_add(c, v, -1);
    if (at) {
        memmove(&v->replicas[at - 1], &v->replicas[at],
                (v->n_replicas - (size_t)at) * sizeof v->replicas[0]);
        v->n_replicas--;
    }
    if (adding && v->n_replicas < SDFS_REPLICAS)
        snprintf(v->replicas[v->n_replicas++], SDFS_NODE_MAX, "%s", m->add);
    load_add(c, v, +1);
out:
    idunno__sdfs_replica_change__free_unpacked(m, NULL);
}

/* ---- batched commits ------------------------------------------------------------------------ */

/* One SdfsCommitBatch: every version is checked and every allocation made
 * before the first one is applied, so a batch changes all its names or none. */
struct commit_batch {
    Idunno__SdfsCommitBatch *m;
    struct sdfs_version *in;  /* parsed request, request order */
    struct sdfs_version *out; /* as committed */
    char (*dropped)[SDFS_BLOB_LEN + 1];
    char **new_names; /* strdup'ed names not yet in the catalog */
    size_t n_new;
};

static void commit_batch_free(struct commit_batch *b)
{
    for (size_t i = 0; i < b->n_new; i++)
        free(b->new_names[i]);
    free(b->new_names);
    free(b->in);
    free(b->out);
    free(b->dropped);
    idunno__sdfs_commit_batch__free_unpacked(b->m, NULL);
}

static int batch_name_is_new(const struct commit_batch *b, const char *name)
{
    for (size_t k = 0; k < b->n_new; k++)
        if (strcmp(b->new_names[k], name) == 0)
            return 0;
    return 1;
}

/* Validates every version and reserves room (array slots, name copies) for the
 * names the batch creates. Touches no catalog state visible to readers. */
static int commit_batch_prepare(struct catalog *c, struct commit_batch *b)
{
    size_t n = b->m->n_versions;
    if (n == 0 || n > SDFS_BATCH_MAX)
        return ID_EINVAL;
    b->in = calloc(n, sizeof *b->in);
    b->out = calloc(n, sizeof *b->out);
    b->dropped = calloc(n, sizeof *b->dropped);
    b->new_names = calloc(n, sizeof *b->new_names);
    if (!b->in || !b->out || !b->dropped || !b->new_names)
        return ID_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const Idunno__SdfsVersion *v = b->m->versions[i];
        if (!sdfs_name_ok(v->name) || version_from_pb(v, &b->in[i], 0) < 0)
            return ID_EINVAL;
        if (catalog_find(c, v->name) || !batch_name_is_new(b, v->name))
            continue;
        if (!(b->new_names[b->n_new] = strdup(v->name)))
            return ID_ENOMEM;
        b->n_new++;
    }
    if (c->n + b->n_new > SDFS_MAX_FILES)
        return ID_ENOSPC;
    return ARRAY_RESERVE(c->files, c->cap, c->n, b->n_new, 64);
}

/* Inserts a file whose name copy was made beforehand (cannot fail: the array
 * has room). */
static size_t batch_file(struct catalog *c, struct commit_batch *b, const char *name)
{
    int found;
    size_t at = catalog_index(c, name, &found);
    if (found)
        return at;
    for (size_t k = 0; k < b->n_new; k++) {
        if (!b->new_names[k] || strcmp(b->new_names[k], name) != 0)
            continue;
        memmove(&c->files[at + 1], &c->files[at], (c->n - at) * sizeof *c->files);
        c->n++;
        memset(&c->files[at], 0, sizeof c->files[at]);
        c->files[at].name = b->new_names[k];
        b->new_names[k] = NULL; /* owned by the catalog now */
        break;
    }
    return at;
}

/* The same bookkeeping as a single commit: idempotent by blob id, the oldest
 * kept version falls out past SDFS_KEEP_VERSIONS. */
static void batch_apply_one(struct catalog *c, struct commit_batch *b, size_t i, uint64_t time_ms)
{
    struct sdfs_file *f = &c->files[batch_file(c, b, b->m->versions[i]->name)];
    struct sdfs_version *done = file_find_blob(f, b->in[i].blob);
    if (!done) {
        if (f->n_versions == SDFS_KEEP_VERSIONS) {
            memcpy(b->dropped[i], f->versions[0].blob, SDFS_BLOB_LEN + 1);
            load_add(c, &f->versions[0], -1);
            memmove(&f->versions[0], &f->versions[1],
                    (SDFS_KEEP_VERSIONS - 1) * sizeof f->versions[0]);
            f->n_versions--;
        }
        struct sdfs_version v = b->in[i];
        v.version = ++f->last_version;
        v.time_ms = time_ms;
        f->versions[f->n_versions++] = v;
        load_add(c, &v, +1);
        done = &f->versions[f->n_versions - 1];
    }
    b->out[i] = *done; /* a copy: later inserts move the files array */
}

static void commit_batch_result(struct commit_batch *b, struct sm_result *res)
{
    size_t n = b->m->n_versions;
    Idunno__SdfsVersion *vs = calloc(n, sizeof *vs);
    Idunno__SdfsVersion **vp = calloc(n, sizeof *vp);
    char **ptrs = calloc(n * (SDFS_REPLICAS + 1), sizeof *ptrs);
    if (!vs || !vp || !ptrs) {
        res->status = res->want_body ? ID_ENOMEM : 0; /* applied all the same */
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char **p = &ptrs[i * (SDFS_REPLICAS + 1)];
        catalog_version_to_pb(b->m->versions[i]->name, &b->out[i], &vs[i], p);
        if (b->dropped[i][0]) {
            p[SDFS_REPLICAS] = b->dropped[i];
            vs[i].n_dropped = 1;
            vs[i].dropped = &p[SDFS_REPLICAS];
        }
        vp[i] = &vs[i];
    }
    Idunno__SdfsCommitBatch r = IDUNNO__SDFS_COMMIT_BATCH__INIT;
    r.n_versions = n;
    r.versions = vp;
    result_pb(res, &r.base);
out:
    free(vs);
    free(vp);
    free(ptrs);
}

static void apply_commit_batch(struct catalog *c, const struct sm_cmd *cmd, struct sm_result *res)
{
    struct commit_batch b = {.m = idunno__sdfs_commit_batch__unpack(NULL, cmd->len, cmd->body)};
    if (!b.m) {
        res->status = ID_EPROTO;
        return;
    }
    if ((res->status = commit_batch_prepare(c, &b)) == 0) {
        for (size_t i = 0; i < b.m->n_versions; i++)
            batch_apply_one(c, &b, i, cmd->time_ms);
        commit_batch_result(&b, res);
    }
    commit_batch_free(&b);
}

static void catalog_apply(void *self, const struct sm_cmd *cmd, struct sm_result *res)
{
    struct catalog *c = self;
    if (cmd->version != 1) {
        res->status = ID_EVERSION;
        return;
    }
    switch (cmd->type) {
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT: apply_commit(c, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_DELETE: apply_delete(c, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_REPLICA: apply_replica(c, cmd, res); break;
    case IDUNNO__CTL_COMMAND_TYPE__CTL_CMD_SDFS_COMMIT_BATCH:
        apply_commit_batch(c, cmd, res);
        break;
    default: res->status = ID_EUNKNOWNTYPE; break;
    }
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static int catalog_build(void *self, const ProtobufCMessage *msg)
{
    struct catalog *fresh = self;
    const Idunno__SdfsCatalogState *st = (const Idunno__SdfsCatalogState *)msg;
    int rc = 0;
    if (st->n_files > SDFS_MAX_FILES)
        rc = ID_EPROTO;
    for (size_t i = 0; rc == 0 && i < st->n_files; i++) {
        const Idunno__SdfsFileState *fs = st->files[i];
        /* Sorted, unique, valid names; 1..SDFS_KEEP_VERSIONS increasing versions. */
        if (!sdfs_name_ok(fs->name) || (i > 0 && strcmp(st->files[i - 1]->name, fs->name) >= 0) ||
            fs->n_versions < 1 || fs->n_versions > SDFS_KEEP_VERSIONS) {
            rc = ID_EPROTO;
            break;
        }
        if ((rc = catalog_insert(fresh, fresh->n, fs->name)) < 0)
            break;
        struct sdfs_file *f = &fresh->files[fresh->n - 1];
        f->last_version = fs->last_version;
        for (size_t j = 0; rc == 0 && j < fs->n_versions; j++) {
            struct sdfs_version *v = &f->versions[j];
            if (version_from_pb(fs->versions[j], v, 1) < 0 || v->version > f->last_version ||
                (j > 0 && v->version <= f->versions[j - 1].version)) {
                rc = ID_EPROTO;
                break;
            }
            f->n_versions++;
            load_add(fresh, v, +1);
        }
    }
    return rc == 0 || rc == ID_ENOMEM ? rc : ID_EPROTO;
}

static void catalog_clear_any(void *self)
{
    catalog_clear(self);
}

static const struct sm_section catalog_section = {
    .desc = &idunno__sdfs_catalog_state__descriptor,
    .state_size = sizeof(struct catalog),
    .clear = catalog_clear_any,
    .build = catalog_build,
};

static int catalog_snapshot(void *self, struct sm_buf *out)
{
    struct catalog *c = self;
    size_t nv = 0;
    for (size_t i = 0; i < c->n; i++)
        nv += c->files[i].n_versions;
    struct sm_scratch sc = {0};
    Idunno__SdfsFileState *files = sm_scratch_calloc(&sc, c->n, sizeof *files);
    Idunno__SdfsFileState **fp = sm_scratch_calloc(&sc, c->n, sizeof *fp);
    Idunno__SdfsVersion *vers = sm_scratch_calloc(&sc, nv, sizeof *vers);
    Idunno__SdfsVersion **vp = sm_scratch_calloc(&sc, nv, sizeof *vp);
    char **names = sm_scratch_calloc(&sc, nv * SDFS_REPLICAS, sizeof *names);
    Idunno__SdfsCatalogState st = IDUNNO__SDFS_CATALOG_STATE__INIT;
    if (!sc.failed) {
        size_t k = 0;
        for (size_t i = 0; i < c->n; i++) {
            const struct sdfs_file *f = &c->files[i];
            idunno__sdfs_file_state__init(&files[i]);
            files[i].name = f->name;
            files[i].last_version = f->last_version;
            files[i].n_versions = f->n_versions;
            files[i].versions = &vp[k];
            for (size_t j = 0; j < f->n_versions; j++, k++) {
                /* The name is implied by the file: left empty to keep snapshots small. */
                catalog_version_to_pb("", &f->versions[j], &vers[k], &names[k * SDFS_REPLICAS]);
                vp[k] = &vers[k];
            }
            fp[i] = &files[i];
        }
        st.n_files = c->n;
        st.files = fp;
    }
    return sm_scratch_pack(&sc, out, &st.base);
}

const struct sm_ops catalog_sm_ops = {
    .name = "sdfs",
    .id = SM_ID_SDFS,
    .type_lo = 100,
    .type_hi = 199,
    .snapshot_version = CATALOG_SNAPSHOT_VERSION,
    .apply = catalog_apply,
    .snapshot = catalog_snapshot,
    .section = &catalog_section,
    .digest = NULL,
};

/* ---- placement and repair ------------------------------------------------------------------- */

/* FNV-1a over file and node name: the tie-break that spreads files over
 * equally loaded nodes, the same on every call. */
static uint64_t spread_hash(const char *file, const char *node)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = file; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = node; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

static int name_in(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

/* Picks the best of `alive` for `file`: not excluded, least (load + extra),
 * then by hash. Returns its index or -1. */
static long pick_node(const struct catalog *c, const char *file, const struct sdfs_node *alive,
                      size_t n_alive, int (*excluded)(void *ud, size_t i), void *ud,
                      const uint64_t *extra)
{
    long best = -1;
    uint64_t best_load = 0, best_hash = 0;
    for (size_t i = 0; i < n_alive; i++) {
        if (excluded(ud, i))
            continue;
        uint64_t load = catalog_node_load(c, alive[i].name) + (extra ? extra[i] : 0);
        uint64_t h = spread_hash(file, alive[i].name);
        if (best < 0 || load < best_load || (load == best_load && h < best_hash)) {
            best = (long)i;
            best_load = load;
            best_hash = h;
        }
    }
    return best;
}

struct place_ctx {
    const struct sdfs_node *alive;
    const char *const *avoid;
    size_t n_avoid;
    const size_t *chosen;
    size_t n_chosen;
};

static int place_excluded(void *ud, size_t i)
{
    struct place_ctx *p = ud;
    for (size_t k = 0; k < p->n_chosen; k++)
        if (p->chosen[k] == i)
            return 1;
    return p->alive[i].suspect || name_in(p->alive[i].name, p->avoid, p->n_avoid);
}

size_t catalog_place_more(const struct catalog *c, const char *name, const struct sdfs_node *alive,
                          size_t n_alive, const char *const *avoid, size_t n_avoid, size_t want,
                          uint64_t *extra, size_t *out)
{
    struct place_ctx p = {alive, avoid, n_avoid, out, 0};
    while (p.n_chosen < want) {
        long i = pick_node(c, name, alive, n_alive, place_excluded, &p, extra);
        if (i < 0)
            break;
        out[p.n_chosen++] = (size_t)i;
    }
    for (size_t k = 0; extra && k < p.n_chosen; k++)
        extra[out[k]]++;
    return p.n_chosen;
}

size_t catalog_place(const struct catalog *c, const char *name, const struct sdfs_node *alive,
                     size_t n_alive, const char *const *avoid, size_t n_avoid, size_t want,
                     size_t *out)
{
    return catalog_place_more(c, name, alive, n_alive, avoid, n_avoid, want, NULL, out);
}

struct repair_ctx {
    const struct sdfs_node *alive;
    const struct sdfs_version *v;
};

static int repair_excluded(void *ud, size_t i)
{
    struct repair_ctx *r = ud;
    return r->alive[i].suspect || version_has(r->v, r->alive[i].name) != 0;
}

static int node_alive(const struct sdfs_node *alive, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(alive[i].name, name) == 0)
            return 1;
    return 0;
}

size_t catalog_plan_repairs(const struct catalog *c, const struct sdfs_node *alive, size_t n_alive,
                            int (*skip)(void *ud, const char *blob), void *ud,
                            struct sdfs_repair *out, size_t max)
{
    size_t want = n_alive < SDFS_REPLICAS ? n_alive : SDFS_REPLICAS;
    uint64_t *extra = calloc(n_alive ? n_alive : 1, sizeof *extra);
    if (!extra)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < c->n && k < max; i++) {
        const struct sdfs_file *f = &c->files[i];
        for (size_t j = 0; j < f->n_versions && k < max; j++) {
            const struct sdfs_version *v = &f->versions[j];
            size_t live = 0;
            const char *dead = "";
            for (size_t r = 0; r < v->n_replicas; r++) {
                if (node_alive(alive, n_alive, v->replicas[r]))
                    live++;
                else if (!dead[0])
                    dead = v->replicas[r];
            }
            if (live >= want || live == 0 || (skip && skip(ud, v->blob)))
                continue; /* healthy, lost for now (no source), or already being fixed */
            struct repair_ctx rc = {alive, v};
            long t = pick_node(c, f->name, alive, n_alive, repair_excluded, &rc, extra);
            if (t < 0)
                continue;
            extra[t]++;
            out[k].file = f;
            out[k].version = v;
            snprintf(out[k].dead, SDFS_NODE_MAX, "%s", dead);
            snprintf(out[k].target, SDFS_NODE_MAX, "%s", alive[t].name);
            k++;
        }
    }
    free(extra);
    return k;
}
