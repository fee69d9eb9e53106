/* client.c — the CLI's blocking request/response over one TCP connection.
 * The CLI makes one call at a time, so plain sockets with poll() deadlines are
 * simpler here than an event loop. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
    socklen_t salen = sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
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
#define CLI_TOOBIG_HINT "more than the %u MiB one answer may carry; ask for less (a narrower name, fewer versions, grep -c)"

static void toobig_message(char *buf, size_t len, const uint8_t hdr[FRAME_HEADER_LEN])
{
    /* The length field of the header (frame.h): big-endian at offset 16. */
    uint32_t announced = (uint32_t)hdr[16] << 24 | (uint32_t)hdr[17] << 16 | (uint32_t)hdr[18] << 8 |
                         (uint32_t)hdr[19];
    snprintf(buf, len, "the answer is %u bytes, " CLI_TOOBIG_HINT, announced, FRAME_MAX_BODY >> 20);
}

static void toobig_reply_message(char *buf, size_t len, const char *detail)
{
    snprintf(buf, len, "%s%sthe answer would be " CLI_TOOBIG_HINT, detail ? detail : "",
             detail && detail[0] ? ": " : "", FRAME_MAX_BODY >> 20);
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
    int fd;
    int rc = connect_to(ctx->server, deadline, &fd);
    if (rc == ID_EINVAL)
        return cli_fail(CLI_USER_ERROR, "'%s' is not HOST:PORT (use -s HOST:PORT)", ctx->server);
    if (rc < 0)
        return cli_fail(CLI_CLUSTER_ERROR, "cannot reach %s: %s (is idunnod running there?)",
                        ctx->server, id_strerror(rc));
    size_t blen = req ? protobuf_c_message_get_packed_size(req) : 0;
    uint8_t *frame = malloc(FRAME_HEADER_LEN + blen);
    if (!frame) {
        close(fd);
        return cli_fail(CLI_CLUSTER_ERROR, "out of memory");
    }
    if (req)
        protobuf_c_message_pack(req, frame + FRAME_HEADER_LEN);
    /* One call per connection, so any id would do; a distinct one makes a
     * confused peer's stray frame detectable. */
    uint64_t req_id = ((uint64_t)getpid() << 32) | (id_now_us() & 0xffffffffu);
    if (!req_id)
        req_id = 1;
    frame_encode_header(frame, type, 0, req_id, frame + FRAME_HEADER_LEN, (uint32_t)blen);
    rc = io_all(fd, frame, FRAME_HEADER_LEN + blen, 1, deadline);
    free(frame);
    uint8_t hdr[FRAME_HEADER_LEN];
    struct frame_header h;
    if (rc == 0)
        rc = io_all(fd, hdr, sizeof hdr, 0, deadline);
    if (rc == 0)
        rc = frame_decode_header(hdr, FRAME_MAX_BODY, &h, NULL);
    uint8_t *body = NULL;
    if (rc == 0) {
        body = malloc(h.length ? h.length : 1);
        rc = body ? io_all(fd, body, h.length, 0, deadline) : ID_ENOMEM;
    }
    if (rc == 0)
        rc = frame_check_crc(&h, hdr, body, NULL);
    if (rc == 0 && (!(h.flags & FRAME_F_RESPONSE) || h.req_id != req_id))
        rc = ID_EPROTO; /* not the answer to our request */
    close(fd);
    if (rc == ID_ETOOBIG) {
        char msg[300];
        toobig_message(msg, sizeof msg, hdr);
        return cli_fail(CLI_CLUSTER_ERROR, "%s: %s", ctx->server, msg);
    }
    if (rc < 0) {
        free(body);
        if (rc == ID_ETIMEDOUT)
            return cli_fail(CLI_CLUSTER_ERROR, "%s did not answer within %u ms (try --timeout)",
                            ctx->server, ctx->timeout_ms);
        return cli_fail(CLI_CLUSTER_ERROR, "no valid answer from %s: %s", ctx->server, id_strerror(rc));
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
            cli_fail(status, "%s", er->message && er->message[0] ? er->message : id_strerror(er->code));
        }
        idunno__error_reply__free_unpacked(er, NULL);
        return status;
    }
    reply->type = h.type;
    reply->body = body;
    reply->len = h.length;
    return 0;
}

/* ---- connections with pipelined calls -------------------------------------------------------- */

struct cli_conn {
    int fd;
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
    int rc = connect_to(server, id_now_ms() + timeout_ms, &c->fd);
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
    close(c->fd);
    free(c);
}

int cli_conn_send(struct cli_conn *c, uint16_t type, const ProtobufCMessage *msg, uint64_t *req_id)
{
    size_t blen = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    if (blen > FRAME_MAX_BODY)
        return ID_ETOOBIG;
    uint8_t *frame = malloc(FRAME_HEADER_LEN + blen);
    if (!frame)
        return ID_ENOMEM;
    if (msg)
        protobuf_c_message_pack(msg, frame + FRAME_HEADER_LEN);
    uint64_t id = c->next_id++;
    frame_encode_header(frame, type, 0, id, frame + FRAME_HEADER_LEN, (uint32_t)blen);
    int rc = io_all(c->fd, frame, FRAME_HEADER_LEN + blen, 1, id_now_ms() + c->timeout_ms);
    free(frame);
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
    uint64_t deadline = id_now_ms() + c->timeout_ms;
    uint8_t hdr[FRAME_HEADER_LEN];
    struct frame_header h;
    int rc = io_all(c->fd, hdr, sizeof hdr, 0, deadline);
    if (rc == 0)
        rc = frame_decode_header(hdr, FRAME_MAX_BODY, &h, NULL);
    uint8_t *body = NULL;
    if (rc == 0) {
        body = malloc(h.length ? h.length : 1);
        rc = body ? io_all(c->fd, body, h.length, 0, deadline) : ID_ENOMEM;
    }
    if (rc == 0)
        rc = frame_check_crc(&h, hdr, body, NULL);
    if (rc == 0 && !(h.flags & FRAME_F_RESPONSE))
        rc = ID_EPROTO;
    if (rc == ID_ETOOBIG) {
        toobig_message(errmsg, errlen, hdr);
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
            snprintf(errmsg, errlen, "%s", er->message && er->message[0] ? er->message : id_strerror(code));
        idunno__error_reply__free_unpacked(er, NULL);
        return code;
    }
    reply->type = h.type;
    reply->body = body;
    reply->len = h.length;
    return 0;
}
