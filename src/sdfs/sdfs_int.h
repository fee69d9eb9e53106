/* sdfs_int.h — what the files of SDFS on a node share (sdfs.c: replica
 * handlers, gets, life cycle; sdfs_put.c: the put path, client and internal;
 * sdfs_batch.c: the bulk put, gateway and replica; sdfs_lead.c: the
 * coordinator's requests, repairs and store reports). Not
 * for use outside src/sdfs.
 *
 * Threading: loop thread only.
 */
#ifndef IDUNNO_SDFS_INT_H
#define IDUNNO_SDFS_INT_H

#include <stdint.h>
#include <uv.h>

#include "ctl/service.h"
#include "idunno.pb-c.h"
#include "member/member.h"
#include "net/net.h"
#include "sdfs/sdfs.h"

#define SDFS_CALL_MS 10000
#define SDFS_FETCH_MS 120000
#define SDFS_FAILED_MEMORY 32
#define SDFS_MAX_ALIVE 256
/* Chunk writes in flight to one replica: enough to keep its disk busy during
 * the round trips, few enough to bound the gateway's memory. */
#define SDFS_TARGET_WINDOW 4

struct put_chunk;
struct put_session;
struct put_batch;

/* One replica of a put: its chunks go out one at a time, in order. */
struct put_target {
    struct put_session *ps;
    char name[SDFS_NODE_MAX];
    char addr[64];
    struct put_chunk **queue; /* ring of chunks still to send */
    size_t q_head, q_len, q_cap;
    int sending; /* writes in flight (the replica applies them in order) */
    int sealed;
};

struct put_chunk {
    uint64_t offset;
    uint8_t *data; /* the packed BLOB_WRITE body */
    size_t len;
    size_t size;   /* file bytes in it */
    uint32_t tail; /* with a key: the sealed payload data ends in (net_call_tail) */
    unsigned acks;
    unsigned refs;           /* targets that still hold it, plus the session */
    struct net_request *req; /* the client's request, answered at the last ack */
};

struct put_session {
    struct sdfs *s;
    uint64_t id;
    char name[SDFS_NAME_MAX + 1];
    char blob[SDFS_BLOB_LEN + 1];
    uint64_t size;
    uint64_t next_offset;
    size_t n_targets;
    struct put_target targets[SDFS_REPLICAS];
    int failed; /* an ID_E* once a replica failed */
    char failed_node[SDFS_NODE_MAX];
    char failed_msg[200];
    struct net_request *close_req;
    unsigned seals_pending;
    uint8_t sha[32];
    /* The CRC-32C the replicas computed while writing; recorded with the
     * version only if every replica reported the same one. */
    uint32_t crc32c;
    int crc_state; /* 0 none yet, 1 agreed so far, -1 missing or disagreeing */
    uint64_t last_ms;
    struct put_session *next;
};

struct repair_job {
    struct sdfs *s;
    char name[SDFS_NAME_MAX + 1];
    char blob[SDFS_BLOB_LEN + 1];
    char dead[SDFS_NODE_MAX];
    char target[SDFS_NODE_MAX];
    uint64_t started_ms;
    struct repair_job *next;
};

struct sdfs {
    uv_loop_t *loop;
    struct net *net;
    struct ctl *ctl;
    struct ctl_svc *svc; /* the leader operations */
    struct member *member;
    struct catalog *catalog;
    struct store *store;
    char name[SDFS_NODE_MAX];
    char addr[64];
    struct put_session *puts;
    struct put_batch *batches; /* bulk puts this gateway is serving */
    uint64_t young_ms;         /* sdfs_config.young_ms, or SDFS_YOUNG_MS */
    uint64_t next_session;
    struct {
        uint64_t session;
        char node[SDFS_NODE_MAX];
    } failed[SDFS_FAILED_MEMORY];
    unsigned failed_next;
    struct repair_job *repairs;
    size_t n_repairs;
    struct fetcher *fetcher;
    struct reconcile *reconcile; /* the leader's memory of store reports */
    uv_timer_t tick;
    uint64_t next_report_ms;
    int report_busy;
    uint64_t boot, report_seq, report_answered; /* numbering of this process's reports */
    int stopping;
    int tick_closed;     /* its close callback ran */
    int destroy_pending; /* sdfs_destroy ran: the tick's close callback frees */
    struct sdfs_stats stats;
};

/* sdfs.c */
void sdfs_random_blob(char out[SDFS_BLOB_LEN + 1]);

/* A chunk's data on a node with a key (PUT_DATA, BLOB_WRITE) is a payload
 * sealed end to end by whoever wrote the chunk (seal.h): the frame's sealed
 * tail, exactly the data field. Returns the payload's bytes in the body
 * (*payload) and the plaintext length (*plain), or ID_EPROTO if the request
 * does not carry its data so. Without a key: the data field as it is. */
int sdfs_chunk_payload(const struct sdfs *s, const struct net_request *req,
                       const Idunno__SdfsChunk *m, const uint8_t *body, size_t len,
                       const uint8_t **payload, size_t *plain);
const char *sdfs_addr_of(const struct member_view *alive, size_t n, const char *name);
int sdfs_call_leader(struct sdfs *s, uint16_t type, const ProtobufCMessage *msg, net_response_fn fn,
                     void *ud);

/* sdfs_put.c */
void sdfs_put_fail(struct put_session *ps, int code, const char *node, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sdfs_put_free(struct put_session *ps);
void sdfs_puts_expire(struct sdfs *s, uint64_t now);
void sdfs_on_put_open(void *ud, struct net_request *req, const uint8_t *body, size_t len);
void sdfs_on_put_data(void *ud, struct net_request *req, const uint8_t *body, size_t len);
void sdfs_on_put_close(void *ud, struct net_request *req, const uint8_t *body, size_t len);

/* sdfs_batch.c */
void sdfs_on_put_batch(void *ud, struct net_request *req, const uint8_t *body, size_t len);
void sdfs_on_blob_batch(void *ud, struct net_request *req, const uint8_t *body, size_t len);
/* Answers every bulk put in progress with ID_ESHUTDOWN. */
void sdfs_batches_stop(struct sdfs *s);

/* sdfs_lead.c */
extern const struct ctl_svc_op sdfs_lead_ops[];
extern const size_t sdfs_lead_n_ops;
void sdfs_on_list(void *ud, struct net_request *req, const uint8_t *body, size_t len);
void sdfs_repair_tick(struct sdfs *s);
void sdfs_repair_end(struct repair_job *j);
void sdfs_report_send(struct sdfs *s);

#endif
