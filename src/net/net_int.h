/* net_int.h — the transport's internals, shared by the files of net.h's
 * implementation: net.c (addresses, lifecycle, handler registration),
 * net_conn.c (TCP connections: connect, accept, handshake, reads, corked
 * writes, bounds), net_rpc.c (calls and their deadlines, requests and their
 * replies) and net_udp.c (datagrams). Not for other modules: they use net.h.
 * Functions here are named net__*.
 *
 * Threading: as net.h, everything on the loop thread.
 */
#ifndef IDUNNO_NET_NET_INT_H
#define IDUNNO_NET_NET_INT_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "net/net.h"
#include "net/reader.h"

/* An entry of a doubly linked list whose head is a struct net_link pointer:
 * the connections of a transport, and the calls and the requests of a
 * connection, each need removal from the middle in O(1). */
struct net_link {
    struct net_link *next, *prev;
};

/* The struct of type `type` whose member `link` is l. */
#define NET_ENTRY(l, type) ((type *)((char *)(l)-offsetof(type, link)))

static inline void net_link_push(struct net_link **head, struct net_link *l)
{
    l->prev = NULL;
    l->next = *head;
    if (*head)
        (*head)->prev = l;
    *head = l;
}

static inline void net_link_remove(struct net_link **head, struct net_link *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        *head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->next = l->prev = NULL;
}

#define NET_MAX_TYPES 512
#define NET_ADDR_LEN 64
#define NET_READ_CHUNK 65536
/* A call is refused with ID_EBUSY while its connection has this much unsent:
 * the peer is not reading, and queueing more would only grow memory. */
#define NET_MAX_WRITE_QUEUE (64u * 1024u * 1024u)
#define NET_CALL_TAB_MIN 64
#define NET_BOUNDS_CHECK_MS 1000

struct net_call;

struct net_conn {
    struct net_link link; /* on net->conns */
    struct net *net;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    int outgoing;
    int connected;
    int closing;
    int ready;                 /* connected, and sealed if the node has a key */
    char peer[NET_ADDR_LEN];   /* target addr (outgoing) or peer sockaddr (incoming) */
    char source[NET_ADDR_LEN]; /* incoming: the peer's IP address alone */
    struct frame_reader reader;
    size_t reader_counted; /* reader.cap as counted in net->buffered */
    struct seal_session seal;
    uint8_t hello[SEAL_HELLO_LEN]; /* outgoing: the hello we sent */
    uint64_t opened_ms;
    uint64_t partial_since_ms;    /* a frame began then and is not complete (0: none) */
    struct net_link *calls;       /* outgoing: calls waiting for their response */
    struct net_link *requests;    /* incoming: requests not yet answered */
    struct pending_write *queued; /* outgoing: frames written before connect finished */
    struct pending_write **queued_tail;
    struct pending_write *corked; /* frames of this loop iteration, not yet written */
    struct pending_write **corked_tail;
    size_t corked_bytes;
    struct net_conn *cork_next; /* on net->corked exactly while corked != NULL */
    uint64_t last_used_ms;
};

/* An outgoing frame in one malloc: the write request, then room for a record
 * around the frame (seal.h; a tail record's longer prefix fits too), so it is
 * sealed in place when written. */
struct pending_write {
    uv_write_t req;
    uv_buf_t buf;
    struct pending_write *next;
    uint32_t frame_len; /* 0: raw bytes (a handshake message), never sealed */
    uint32_t tail;      /* the frame ends in a sealed payload of this many bytes */
};

/* A frame of a call to this node itself (net_call to its own address):
 * kept in memory and handled on the loop's next turn (net__local_run), with
 * no connection, sealing or system call. The caller and the handler see
 * what a call over a connection gives them. */
struct local_frame {
    struct local_frame *next;
    uint64_t req_id;
    uint16_t type;
    uint8_t flags; /* FRAME_F_*: 0 for a request */
    uint32_t tail; /* a request's sealed payload at the body's end (net_call_tail) */
    size_t len;
    uint8_t body[];
};

struct net_call {
    struct net_link link; /* on conn->calls */
    struct net *net;
    struct net_conn *conn;
    int local; /* to this node itself: no connection */
    uint64_t req_id;
    uv_timer_t timer;
    net_response_fn fn;
    void *ud;
    struct net_call *hnext; /* in net->call_tab */
    int done;
    int fail_status;      /* set: fail with this on the next timer tick */
    const char *fail_msg; /* static text */
};

struct net_request {
    struct net_link link; /* on conn->requests, or net->local_requests */
    struct net *net;
    struct net_conn *conn; /* NULL once the connection closed */
    int local;             /* from this node itself, until the transport stops */
    uint64_t req_id;
    uint16_t type;
    uint32_t sealed_tail; /* frame_header.sealed_tail of the request */
    char peer[NET_ADDR_LEN];
};

struct handler {
    net_request_fn req_fn;
    void *req_ud;
    net_datagram_fn dg_fn;
    void *dg_ud;
    int takes_tail; /* its requests may end in a sealed payload (net_accept_tail) */
};

struct net {
    uv_loop_t *loop;
    struct net_config cfg;
    char addr[NET_ADDR_LEN];
    char errmsg[ID_ERRMSG_LEN];
    uv_tcp_t listener;
    uv_udp_t udp;
    uv_timer_t idle_timer;
    /* Frames are corked for the rest of a loop iteration and written per
     * connection in one system call (on_flush): the several messages a
     * handler sends one peer, and the answers to several requests that came
     * in one read, leave together. An idle handle runs the flush: it runs
     * before the loop would block, and while it is active the loop does not. */
    uv_idle_t flush;
    struct net_conn *corked;
    int started;
    int closing;
    int open_handles;
    void (*close_done)(void *);
    void *close_ud;
    struct handler handlers[NET_MAX_TYPES];
    struct net_link *conns;
    size_t n_incoming, n_outgoing;
    uint64_t next_req_id;
    struct local_frame *local, **local_tail; /* frames to this node itself */
    struct net_link *local_requests;         /* their requests not yet answered */
    struct net_call **call_tab;              /* by req_id; size a power of two */
    size_t call_tab_size, n_calls;
    struct frame_stats stats;
    uint64_t udp_sent, udp_received;
    int sealed; /* keys holds the cluster key */
    struct seal_keyring keys;
    struct seal_sender udp_sender;
    struct seal_replay udp_replay;
    size_t buffered; /* sum of the connections' read buffers */
    char read_buf[NET_READ_CHUNK];
    int read_buf_busy;
};

/* ---- net.c ---- */

/* The ID_E* code for a libuv error. */
int net__uv_to_id(int uverr);
/* "ip:port" or "[ip6]:port". */
void net__format_sockaddr(const struct sockaddr *sa, char *out, size_t len);
/* A libuv handle the transport opened was closed; the last one after
 * net_destroy() frees the transport. */
void net__handle_released(struct net *net);

/* ---- net_conn.c ---- */

/* A frame in one malloc, ready for net__conn_write (NULL: out of memory).
 * tail: the body's last `tail` bytes are a sealed payload (net_call_tail). */
struct pending_write *net__frame_build(const struct net *net, uint16_t type, uint8_t flags,
                                       uint64_t req_id, const void *body, size_t len,
                                       uint32_t tail);
/* Makes the flush (the corked frames' writes, the local frames) run
 * before the loop next blocks. */
void net__flush_arm(struct net *net);
/* Queues w on c (which takes it, also on failure); 0 or ID_ECLOSED. */
int net__conn_write(struct net_conn *c, struct pending_write *w);
/* Closes c, failing its calls with `reason` (0: ID_ECLOSED); idempotent. */
void net__conn_close(struct net_conn *c, int reason);
/* The pooled outgoing connection to addr, opened if need be; NULL with *err. */
struct net_conn *net__conn_get(struct net *net, const char *addr, int *err);
void net__on_accept(uv_stream_t *server, int status);
void net__on_idle_timer(uv_timer_t *t);

/* ---- net_rpc.c ---- */

void net__call_fail_later(struct net_call *call, int status, const char *msg);
void net__deliver_response(struct net_conn *c, const struct frame_header *h, const uint8_t *body);
/* Detaches req from its connection: its reply, if ever sent, is dropped. */
void net__request_unlink(struct net_request *req);
/* Handles the frames of calls to this node itself queued so far (requests
 * to their handlers, replies to their calls); run from the flush. */
void net__local_run(struct net *net);
/* The transport stops: queued frames are dropped, local calls fail with
 * ID_ESHUTDOWN and the replies of local requests will be dropped. */
void net__local_stop(struct net *net);
void net__dispatch_request(struct net_conn *c, const struct frame_header *h, const uint8_t *body);

/* ---- net_udp.c ---- */

void net__on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void net__on_udp_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                      unsigned flags);

#endif
