/* sdfs_forge.c — sends SDFS requests a well-behaved client never sends, for
 * the cluster tests of what a node does with hostile input:
 *
 *   sdfs_forge HOST:PORT bad NAME BLOB NODE   claim NODE's copy of BLOB is bad
 *   sdfs_forge HOST:PORT overwrite BLOB FILE  write FILE as BLOB and seal it
 *                                             (on a replica that sealed BLOB)
 *   sdfs_forge HOST:PORT plainwrite BLOB FILE a chunk write whose data is not
 *                                             sealed (on a cluster with a key)
 *   sdfs_forge HOST:PORT movedwrite BLOB FILE a chunk write whose data was
 *                                             sealed for offset 0, sent for 4096
 *   sdfs_forge HOST:PORT batch BLOB FILE      a bulk put's replica part alone:
 *                                             FILE sealed as BLOB by one raw
 *                                             BLOB_BATCH, never committed (what a
 *                                             gateway that died before its
 *                                             COMMIT_BATCH leaves behind)
 *
 * Prints each request's outcome ("STEP: ok" or "STEP: error: MESSAGE") and
 * exits 0 if every request was answered (accepted or refused), 2 if a node
 * could not be reached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/sha256.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"
#include "net/seal.h"

/* The answer to the request just sent (rc: how sending went), printed. */
static int answer(struct cli_conn *c, const char *step, int rc)
{
    struct cli_reply r = {0};
    uint64_t id;
    char err[300] = "";
    if (rc == 0)
        rc = cli_conn_recv(c, &r, &id, err, sizeof err);
    free(r.body);
    if (rc == ID_ECLOSED || rc == ID_ECONNREFUSED || rc == ID_ETIMEDOUT) {
        fprintf(stderr, "sdfs_forge: %s: %s\n", step, id_strerror(rc));
        return 2;
    }
    if (rc < 0)
        printf("%s: error: %s\n", step, err[0] ? err : id_strerror(rc));
    else
        printf("%s: ok\n", step);
    return 0;
}

static int call(struct cli_conn *c, const char *step, uint16_t type, const ProtobufCMessage *m)
{
    return answer(c, step, cli_conn_send(c, type, m, NULL));
}

static int forge_bad(struct cli_conn *c, char **argv)
{
    Idunno__SdfsBad b = IDUNNO__SDFS_BAD__INIT;
    b.name = argv[0];
    b.blob = argv[1];
    b.node = argv[2];
    b.reason = "forged claim";
    return call(c, "bad", IDUNNO__MSG_TYPE__MSG_SDFS_BAD_REQ, &b.base);
}

static size_t read_file(const char *path, uint8_t *data, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t n = fread(data, 1, cap, f);
    fclose(f);
    return n;
}

static int forge_overwrite(struct cli_conn *c, char **argv)
{
    /* Sent as a client sends a chunk: sealed end to end with the key. */
    static uint8_t buf[SEAL_PAYLOAD_OVERHEAD + (1 << 20)];
    uint8_t *data = buf + SEAL_PAYLOAD_HEAD;
    size_t n = read_file(argv[1], data, 1 << 20);
    Idunno__SdfsChunk w = IDUNNO__SDFS_CHUNK__INIT;
    w.blob = argv[0];
    int rc = answer(
        c, "write",
        cli_conn_send_chunk(c, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, &w, buf, n, NULL));
    if (rc)
        return rc;
    uint8_t sha[32];
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, data, n);
    sha256_final(&h, sha);
    Idunno__SdfsChunk s = IDUNNO__SDFS_CHUNK__INIT;
    s.blob = argv[0];
    s.size = n;
    s.sha256.data = sha;
    s.sha256.len = 32;
    return call(c, "seal", IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_SEAL_REQ, &s.base);
}

/* Chunk writes that a writer holding the key never sends: the data in
 * clear, or sealed for one offset and sent for another. */
static int forge_write(struct cli_conn *c, char **argv, int moved)
{
    static uint8_t buf[SEAL_PAYLOAD_OVERHEAD + (1 << 20)];
    uint8_t *data = buf + SEAL_PAYLOAD_HEAD;
    size_t n = read_file(argv[1], data, 1 << 20);
    Idunno__SdfsChunk w = IDUNNO__SDFS_CHUNK__INIT;
    w.blob = argv[0];
    if (!moved) {
        w.data.data = data;
        w.data.len = n;
        return call(c, "write", IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, &w.base);
    }
    struct seal_keyring kr;
    char err[200];
    if (seal_keyring_load(getenv("IDUNNO_KEY_FILE"), &kr, err, sizeof err) < 0) {
        fprintf(stderr, "sdfs_forge: %s\n", err);
        return 2;
    }
    seal_payload(&kr, 0, buf, n);
    w.offset = 4096;
    w.data.data = buf;
    w.data.len = n + SEAL_PAYLOAD_OVERHEAD;
    return answer(c, "write",
                  cli_conn_send_tail(c, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_WRITE_REQ, &w.base,
                                     (uint32_t)w.data.len, NULL));
}

static int forge_batch(struct cli_conn *c, char **argv)
{
    static uint8_t data[1 << 20];
    size_t n = read_file(argv[1], data, sizeof data);
    uint8_t sha[32];
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, data, n);
    sha256_final(&h, sha);
    Idunno__SdfsChunk copy = IDUNNO__SDFS_CHUNK__INIT;
    copy.blob = argv[0];
    copy.size = n;
    copy.data.data = data;
    copy.data.len = n;
    copy.sha256.data = sha;
    copy.sha256.len = 32;
    Idunno__SdfsChunk *copies[1] = {&copy};
    Idunno__SdfsBlobBatch b = IDUNNO__SDFS_BLOB_BATCH__INIT;
    b.n_blobs = 1;
    b.blobs = copies;
    struct cli_reply r = {0};
    uint64_t id;
    char err[300] = "";
    int rc = cli_conn_send(c, IDUNNO__MSG_TYPE__MSG_SDFS_BLOB_BATCH_REQ, &b.base, &id);
    if (rc == 0)
        rc = cli_conn_recv(c, &r, &id, err, sizeof err);
    if (rc == ID_ECLOSED || rc == ID_ECONNREFUSED || rc == ID_ETIMEDOUT) {
        fprintf(stderr, "sdfs_forge: batch: %s\n", id_strerror(rc));
        free(r.body);
        return 2;
    }
    /* The request is answered as a whole; the copy's own outcome is inside. */
    Idunno__SdfsBlobBatchResult *res = rc == 0 ? idunno__sdfs_blob_batch_result__unpack(NULL, r.len,
                                                                                        r.body)
                                               : NULL;
    if (rc < 0)
        printf("batch: error: %s\n", err[0] ? err : id_strerror(rc));
    else if (!res || res->n_blobs != 1)
        printf("batch: error: malformed answer\n");
    else if (res->blobs[0]->code < 0)
        printf("batch: error: %s\n", id_strerror(res->blobs[0]->code));
    else
        printf("batch: ok\n");
    if (res)
        idunno__sdfs_blob_batch_result__free_unpacked(res, NULL);
    free(r.body);
    return 0;
}

int main(int argc, char **argv)
{
    int bad = argc == 6 && strcmp(argv[2], "bad") == 0;
    int over = argc == 5 && strcmp(argv[2], "overwrite") == 0;
    int batch = argc == 5 && strcmp(argv[2], "batch") == 0;
    int plain = argc == 5 && strcmp(argv[2], "plainwrite") == 0;
    int moved = argc == 5 && strcmp(argv[2], "movedwrite") == 0;
    if (!bad && !over && !batch && !plain && !moved) {
        fprintf(stderr, "usage: sdfs_forge HOST:PORT bad NAME BLOB NODE\n"
                        "       sdfs_forge HOST:PORT overwrite BLOB FILE\n"
                        "       sdfs_forge HOST:PORT plainwrite BLOB FILE\n"
                        "       sdfs_forge HOST:PORT movedwrite BLOB FILE\n"
                        "       sdfs_forge HOST:PORT batch BLOB FILE\n");
        return 1;
    }
    /* With the cluster's key the forger is an insider: SDFS itself must refuse. */
    cli_set_key_file(getenv("IDUNNO_KEY_FILE"));
    struct cli_conn *c;
    int rc = cli_conn_open(argv[1], 10000, &c);
    if (rc < 0) {
        fprintf(stderr, "sdfs_forge: cannot connect to %s: %s\n", argv[1], id_strerror(rc));
        return 2;
    }
    if (bad)
        rc = forge_bad(c, argv + 3);
    else if (over)
        rc = forge_overwrite(c, argv + 3);
    else if (plain || moved)
        rc = forge_write(c, argv + 3, moved);
    else
        rc = forge_batch(c, argv + 3);
    cli_conn_close(c);
    return rc;
}
