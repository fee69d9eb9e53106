/* client.c — the CLI's blocking request/response over one TCP connection.
 * The CLI makes one call at a time, so plain sockets with poll() deadlines are
 * simpler here than an event loop. With a cluster key (--key-file or
 * $IDUNNO_KEY_FILE) each connection starts with the handshake of
 * src/net/seal.h and carries sealed records, as the nodes' own connections do. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"
#include "net/frame.h"
#include "net/net.h"
#include "net/seal.h"

int cli_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("idunno: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = id_now_ms();
        if (now >= deadline)
            return ID_ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc > 0)
            return 0;
        if (rc == 0)
            return ID_ETIMEDOUT;
        if (errno != EINTR)
            return ID_EIO;
    }
}

static int io_all(int fd, void *buf, size_t len, int writing, uint64_t deadline)
{
    uint8_t *p = buf;
    while (len) {
        int rc = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline);
        if (rc < 0)
            return rc;
        ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n == 0)
            return ID_ECLOSED;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return errno == ECONNRESET || errno == EPIPE ? ID_ECLOSED : ID_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int connect_to(const char *server, uint64_t deadline, int *fd_out)
{
    struct sockaddr_storage sa;
    if (net_parse_addr(server, &sa) < 0)
        return ID_EINVAL;
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ID_EIO;
    socklen_t salen = sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
    if (connect(fd, (struct sockaddr *)&sa, salen) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return e == ECONNREFUSED ? ID_ECONNREFUSED : ID_EIO;
    }
    int rc = wait_fd(fd, POLLOUT, deadline);
    if (rc == 0) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err)
            rc = err == ECONNREFUSED ? ID_ECONNREFUSED : ID_EIO;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* An answer larger than one frame: the node could not send it (it answers
 * ID_ETOOBIG) or sent a header announcing it. Either way the user must ask
 * for less, and is told so rather than left with a timeout. */
#define CLI_TOOBIG_HINT                                                                          \
    "more than the %u MiB one answer may carry; ask for less (a narrower name, fewer versions, " \
    "grep -c)"

static void toobig_announced_message(char *buf, size_t len, uint32_t announced)
{
    snprintf(buf, len, "the answer is %u bytes, " CLI_TOOBIG_HINT, announced, FRAME_MAX_BODY >> 20);
}

static void toobig_reply_message(char *buf, size_t len, const char *detail)
{
    snprintf(buf, len, "%s%sthe answer would be " CLI_TOOBIG_HINT, detail ? detail : "",
             detail && detail[0] ? ": " : "", FRAME_MAX_BODY >> 20);
}

/* ---- the cluster key ------------------------------------------------------------------------ */

static const char *key_path; /* NULL or "": no key */
static struct seal_keyring key_ring;
static int key_loaded; /* 1: key_ring holds key_path's keys; -1: it failed */
static char key_loaded_path[512];

void cli_set_key_file(const char *path)
{
    key_path = path && path[0] ? path : NULL;
}

/* The keyring to seal with (loaded on first use), NULL for none, or
 * ID_EAUTH via *err after printing why it cannot be read. */
static const struct seal_keyring *cli_keys(int *err)
{
    *err = 0;
    if (!key_path)
        return NULL;
    if (key_loaded && strcmp(key_loaded_path, key_path) == 0) {
        if (key_loaded > 0)
            return &key_ring;
        *err = ID_EAUTH;
        return NULL;
    }
    snprintf(key_loaded_path, sizeof key_loaded_path, "%s", key_path);
    char why[ID_ERRMSG_LEN];
    if (seal_keyring_load(key_path, &key_ring, why, sizeof why) < 0) {
        cli_fail(CLI_USER_ERROR, "%s", why);
        key_loaded = -1;
        *err = ID_EAUTH;
        return NULL;
    }
    key_loaded = 1;
    return &key_ring;
}

/* ---- a connection: plain or sealed ------------------------------------------------------------ */

struct chan {
    int fd;
    int sealed;
    struct seal_session seal;
};

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Connects and, with a key, runs the handshake. */
static int chan_open(const char *server, uint64_t deadline, struct chan *ch)
{
    memset(ch, 0, sizeof *ch);
    int rc = connect_to(server, deadline, &ch->fd);
    if (rc < 0)
        return rc;
    /* The key after the connection: an unreachable node is reported as such. */
    const struct seal_keyring *kr = cli_keys(&rc);
    if (rc < 0)
        close(ch->fd);
    if (rc < 0 || !kr)
        return rc;
    uint8_t hello[SEAL_HELLO_LEN], reply[SEAL_REPLY_LEN];
    seal_hello(kr, hello);
    rc = io_all(ch->fd, hello, sizeof hello, 1, deadline);
    if (rc == 0)
        rc = io_all(ch->fd, reply, sizeof reply, 0, deadline);
    if (rc == ID_ECLOSED)
        rc = ID_EAUTH; /* a node without our key closes on our hello */
    if (rc == 0)
        rc = seal_finish(kr, hello, reply, &ch->seal);
    if (rc < 0) {
        close(ch->fd);
        return rc == ID_EPROTO || rc == ID_EVERSION ? ID_EAUTH : rc;
    }
    ch->sealed = 1;
    return 0;
}

static void chan_close(struct chan *ch)
{
    close(ch->fd);
    sodium_memzero(&ch->seal, sizeof ch->seal);
}

/* Sends one request frame, sealed if the channel is. On a sealed channel
 * `tail` (> 0) says the body's last tail bytes are a sealed payload: the
 * record then encrypts only the rest (seal.h). */
static int chan_send(struct chan *ch, uint16_t type, uint64_t req_id, const ProtobufCMessage *msg,
                     uint32_t tail, uint64_t deadline)
{
    size_t blen = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    if (blen > FRAME_MAX_BODY)
        return ID_ETOOBIG;
    if (tail && (!ch->sealed || tail > blen))
        return ID_EINVAL;
    uint8_t *buf = malloc(SEAL_RECORD_TAIL_OVERHEAD + FRAME_HEADER_LEN + blen);
    if (!buf)
        return ID_ENOMEM;
    uint8_t *frame = buf + SEAL_RECORD_TAIL_PREFIX;
    uint32_t flen = (uint32_t)(FRAME_HEADER_LEN + blen);
    if (msg)
        protobuf_c_message_pack(msg, frame + FRAME_HEADER_LEN);
    int rc;
    if (ch->sealed && tail) {
        frame_encode_header_sealed(frame, type, 0, req_id, (uint32_t)blen);
        seal_record_tail(&ch->seal.tx, buf, flen, tail);
        rc = io_all(ch->fd, buf, SEAL_RECORD_TAIL_OVERHEAD + (size_t)flen, 1, deadline);
    } else if (ch->sealed) {
        uint8_t *rec = frame - SEAL_RECORD_LEN_BYTES;
        frame_encode_header_sealed(frame, type, 0, req_id, (uint32_t)blen);
        seal_record(&ch->seal.tx, rec, flen);
        rc = io_all(ch->fd, rec, SEAL_RECORD_OVERHEAD + (size_t)flen, 1, deadline);
    } else {
        frame_encode_header(frame, type, 0, req_id, frame + FRAME_HEADER_LEN, (uint32_t)blen);
        rc = io_all(ch->fd, frame, flen, 1, deadline);
    }
    free(buf);
    return rc;
}

/* Receives one frame: *body (owned) holds h->length bytes. */
static int chan_recv(struct chan *ch, struct frame_header *h, uint8_t **body, uint64_t deadline)
{
    *body = NULL;
    if (!ch->sealed) {
        uint8_t hdr[FRAME_HEADER_LEN];
        int rc = io_all(ch->fd, hdr, sizeof hdr, 0, deadline);
        if (rc == 0)
            rc = frame_decode_header(hdr, FRAME_MAX_BODY, h, NULL);
        if (rc == ID_ETOOBIG)
            h->length = be32(hdr + 16); /* the header's length field (frame.h), for the message */
        uint8_t *b = NULL;
        if (rc == 0) {
            b = malloc(h->length ? h->length : 1);
            rc = b ? io_all(ch->fd, b, h->length, 0, deadline) : ID_ENOMEM;
        }
        if (rc == 0)
            rc = frame_check_crc(h, hdr, b, NULL);
        if (rc < 0) {
            free(b);
            return rc;
        }
        *body = b;
        return 0;
    }
    uint8_t lenb[SEAL_RECORD_LEN_BYTES];
    int rc = io_all(ch->fd, lenb, sizeof lenb, 0, deadline);
    if (rc < 0)
        return rc;
    uint32_t flen = be32(lenb);
    if (flen < FRAME_HEADER_LEN)
        return ID_EPROTO;
    if (flen - FRAME_HEADER_LEN > FRAME_MAX_BODY) {
        h->length = flen - FRAME_HEADER_LEN;
        return ID_ETOOBIG;
    }
    uint8_t *rec = malloc(SEAL_RECORD_OVERHEAD + (size_t)flen);
    if (!rec)
        return ID_ENOMEM;
    memcpy(rec, lenb, sizeof lenb);
    rc = io_all(ch->fd, rec + sizeof lenb, flen + SEAL_TAG_LEN, 0, deadline);
    if (rc == 0)
        rc = seal_open_record(&ch->seal.rx, rec, flen);
    const uint8_t *frame = rec + SEAL_RECORD_LEN_BYTES;
    if (rc == 0)
        rc = frame_decode_header(frame, FRAME_MAX_BODY, h, NULL);
    if (rc == 0 && h->length != flen - FRAME_HEADER_LEN)
        rc = ID_EPROTO;
    /* No crc check: the record's tag covered the frame (frame.h). */
    if (rc < 0) {
        free(rec);
        return rc;
    }
    memmove(rec, frame + FRAME_HEADER_LEN, h->length); /* the body, at the start of its buffer */
    *body = rec;
    return 0;
}

static int user_error_code(int code)
{
    return code == ID_EINVAL || code == ID_ENOTFOUND || code == ID_EEXIST || code == ID_EMODEL;
}

int cli_call(const struct cli_ctx *ctx, uint16_t type, const ProtobufCMessage *req,
             struct cli_reply *reply)
{
    memset(reply, 0, sizeof *reply);
    uint64_t deadline = id_now_ms() + ctx->timeout_ms;
    struct chan ch;
    int rc = chan_open(ctx->server, deadline, &ch);
    if (rc == ID_EINVAL)
        return cli_fail(CLI_USER_ERROR, "'%s' is not HOST:PORT (use -s HOST:PORT)", ctx->server);
    if (rc == ID_EAUTH && key_loaded < 0)
        return CLI_USER_ERROR; /* the key file's problem, already printed */
    if (rc == ID_EAUTH)
        return cli_fail(CLI_CLUSTER_ERROR,
                        "%s refused our cluster key (does it run with the same --key-file?)",
                        ctx->server);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s (is idunnod running there?)",
                        ctx->server, id_strerror(rc));
    /* One call per connection, so any id would do; a distinct one makes a
     * confused peer's stray frame detectable. */
    uint64_t req_id = ((uint64_t)getpid() << 32) | (id_now_us() & 0xffffffffu);
    if (!req_id)
        req_id = 1;
    rc = chan_send(&ch, type, req_id, req, 0, deadline);
    struct frame_header h;
    uint8_t *body = NULL;
    if (rc == 0)
        rc = chan_recv(&ch, &h, &body, deadline);
    if (rc == 0 && (!(h.flags & FRAME_F_RESPONSE) || h.req_id != req_id))
        rc = ID_EPROTO; /* not the answer to our request */
    chan_close(&ch);
    if (rc == ID_ETOOBIG) {
        char msg[300];
        toobig_announced_message(msg, sizeof msg, h.length);
        return cli_fail(CLI_CLUSTER_ERROR, "%s: %s", ctx->server, msg);
    }
    if (rc < 0) {
        free(body);
        if (rc == ID_ETIMEDOUT)
            return cli_fail(CLI_CLUSTER_ERROR, "%s did not answer within %u ms (try --timeout)",
                            ctx->server, ctx->timeout_ms);
        return cli_fail(CLI_CLUSTER_ERROR, "no valid answer from %s: %s", ctx->server,
                        id_strerror(rc));
    }
    if (h.flags & FRAME_F_ERROR) {
        Idunno__ErrorReply *er = idunno__error_reply__unpack(NULL, h.length, body);
        free(body);
        if (!er)
            return cli_fail(CLI_CLUSTER_ERROR, "undecodable error from %s", ctx->server);
        int status = user_error_code(er->code) ? CLI_USER_ERROR : CLI_CLUSTER_ERROR;
        if (er->code == ID_ETOOBIG) {
            char msg[600];
            toobig_reply_message(msg, sizeof msg, er->message);
            cli_fail(status, "%s", msg);
        } else {
            cli_fail(status, "%s",
                     er->message && er->message[0] ? er->message : id_strerror(er->code));
        }
        idunno__error_reply__free_unpacked(er, NULL);
        return status;
    }
    reply->type = h.type;
    reply->body = body;
    reply->len = h.length;
    return 0;
}

int cli_call_decode(const struct cli_ctx *ctx, uint16_t type, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *desc, void *out)
{
    struct cli_reply r;
    int rc = cli_call(ctx, type, req, &r);
    if (rc)
        return rc;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, r.len, r.body);
    free(r.body);
    if (!m)
        return cli_fail(CLI_CLUSTER_ERROR, "malformed answer from %s", ctx->server);
    /* The caller's pointer has its message's type: written through memcpy. */
    memcpy(out, &m, sizeof m);
    return 0;
}

/* ---- connections with pipelined calls -------------------------------------------------------- */

struct cli_conn {
    struct chan ch;
    uint32_t timeout_ms;
    uint64_t next_id;
};

int cli_status_of(int code)
{
    return user_error_code(code) ? CLI_USER_ERROR : CLI_CLUSTER_ERROR;
}

int cli_conn_open(const char *server, uint32_t timeout_ms, struct cli_conn **out)
{
    struct cli_conn *c = calloc(1, sizeof *c);
    if (!c)
        return ID_ENOMEM;
    c->timeout_ms = timeout_ms;
    c->next_id = ((uint64_t)getpid() << 32) | 1;
    int rc = chan_open(server, id_now_ms() + timeout_ms, &c->ch);
    if (rc < 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cli_conn_close(struct cli_conn *c)
{
    if (!c)
        return;
    chan_close(&c->ch);
    free(c);
}

int cli_conn_send(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg, uint64_t *req_id)
{
    uint64_t id = c->next_id++;
    int rc = chan_send(&c->ch, type, id, msg, 0, id_now_ms() + c->timeout_ms);
    if (rc == 0 && req_id)
        *req_id = id;
    return rc;
}

int cli_conn_send_chunk(struct cli_conn *c, uint16_t type, Idunno__SdfsChunk *msg, uint8_t *buf,
                        size_t n, uint64_t *req_id)
{
    uint32_t tail = 0;
    msg->data.data = buf + SEAL_PAYLOAD_HEAD;
    msg->data.len = n;
    if (c->ch.sealed) {
        int err;
        const struct seal_keyring *kr = cli_keys(&err);
        if (!kr)
            return err < 0 ? err : ID_EAUTH;
        seal_payload(kr, msg->offset, buf, n);
        msg->data.data = buf;
        msg->data.len = n + SEAL_PAYLOAD_OVERHEAD;
        tail = (uint32_t)msg->data.len; /* data (field 4) is the last field packed */
    }
    return cli_conn_send_tail(c, type, &msg->base, tail, req_id);
}

int cli_conn_send_tail(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg,
                       uint32_t tail, uint64_t *req_id)
{
    uint64_t id = c->next_id++;
    int rc = chan_send(&c->ch, type, id, msg, tail, id_now_ms() + c->timeout_ms);
    if (rc == 0 && req_id)
        *req_id = id;
    return rc;
}

int cli_conn_recv(struct cli_conn *c, struct cli_reply *reply, uint64_t *req_id, char *errmsg,
                  size_t errlen)
{
    memset(reply, 0, sizeof *reply);
    if (errlen)
        errmsg[0] = 0;
    struct frame_header h;
    uint8_t *body = NULL;
    int rc = chan_recv(&c->ch, &h, &body, id_now_ms() + c->timeout_ms);
    if (rc == 0 && !(h.flags & FRAME_F_RESPONSE))
        rc = ID_EPROTO;
    if (rc == ID_ETOOBIG) {
        toobig_announced_message(errmsg, errlen, h.length);
        return rc;
    }
    if (rc < 0) {
        free(body);
        snprintf(errmsg, errlen, "%s", id_strerror(rc));
        return rc;
    }
    if (req_id)
        *req_id = h.req_id;
    if (h.flags & FRAME_F_ERROR) {
        Idunno__ErrorReply *er = idunno__error_reply__unpack(NULL, h.length, body);
        free(body);
        if (!er) {
            snprintf(errmsg, errlen, "undecodable error reply");
            return ID_EPROTO;
        }
        int code = er->code < 0 ? er->code : ID_EINTERNAL;
        if (code == ID_ETOOBIG)
            toobig_reply_message(errmsg, errlen, er->message);
        else
            snprintf(errmsg, errlen, "%s",
                     er->message && er->message[0] ? er->message : id_strerror(code));
        idunno__error_reply__free_unpacked(er, NULL);
        return code;
    }
    reply->type = h.type;
    reply->body = body;
    reply->len = h.length;
    return 0;
}
