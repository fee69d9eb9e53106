/* test_cli_client.c — the CLI's answer to an answer too large for one frame:
 * a header announcing more than FRAME_MAX_BODY, or the node's ErrorReply
 * ID_ETOOBIG, is reported with a clear message naming the 16 MiB limit and
 * what to do (not a timeout or "malformed message"). The node is a plain
 * socket on 127.0.0.1 played by a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "cli/cli.h"
#include "idunno.pb-c.h"
#include "net/frame.h"

struct fake_node {
    int listen_fd;
    int port;
    int mode; /* 0: announce a 20 MiB answer; 1: ErrorReply ID_ETOOBIG */
    pthread_t tid;
};

static int read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void *fake_main(void *arg)
{
    struct fake_node *fn = arg;
    int fd = accept(fn->listen_fd, NULL, NULL);
    uint8_t hdr[FRAME_HEADER_LEN];
    struct frame_header h;
    if (fd < 0 || read_all(fd, hdr, sizeof hdr) < 0 ||
        frame_decode_header(hdr, FRAME_MAX_BODY, &h, NULL) < 0)
        return NULL;
    uint8_t *req = malloc(h.length + 1);
    read_all(fd, req, h.length);
    free(req);
    uint8_t out[FRAME_HEADER_LEN + 256];
    size_t len = FRAME_HEADER_LEN;
    if (fn->mode == 0) {
        frame_encode_header(out, h.type, FRAME_F_RESPONSE, h.req_id, "", 0);
        uint32_t big = 20u << 20; /* patch the length: big-endian at 16 */
        out[16] = (uint8_t)(big >> 24);
        out[17] = (uint8_t)(big >> 16);
        out[18] = (uint8_t)(big >> 8);
        out[19] = (uint8_t)big;
    } else {
        Idunno__ErrorReply er = IDUNNO__ERROR_REPLY__INIT;
        er.code = ID_ETOOBIG;
        er.message = "grep result";
        size_t blen = idunno__error_reply__pack(&er, out + FRAME_HEADER_LEN);
        frame_encode_header(out, h.type, FRAME_F_RESPONSE | FRAME_F_ERROR, h.req_id,
                            out + FRAME_HEADER_LEN, (uint32_t)blen);
        len += blen;
    }
    if (write(fd, out, len) != (ssize_t)len)
        return NULL;
    /* Hold the connection until the client gives up on it. */
    char c;
    while (read(fd, &c, 1) > 0) {
    }
    close(fd);
    return NULL;
}

static void fake_start(struct fake_node *fn, int mode)
{
    fn->mode = mode;
    fn->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fn->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fn->listen_fd, 4), 0);
    socklen_t sl = sizeof sa;
    getsockname(fn->listen_fd, (struct sockaddr *)&sa, &sl);
    fn->port = ntohs(sa.sin_port);
    pthread_create(&fn->tid, NULL, fake_main, fn);
}

static void fake_stop(struct fake_node *fn)
{
    pthread_join(fn->tid, NULL);
    close(fn->listen_fd);
}

/* Runs cli_call against the fake node with stderr captured into `err`. */
static int call_captured(struct fake_node *fn, char *err, size_t len)
{
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", fn->port);
    struct cli_ctx ctx = {.server = server, .timeout_ms = 5000};
    FILE *tmp = tmpfile();
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    struct cli_reply reply;
    Idunno__GrepRequest g = IDUNNO__GREP_REQUEST__INIT;
    g.pattern = "x";
    int st = cli_call(&ctx, IDUNNO__MSG_TYPE__MSG_GREP_REQ, &g.base, &reply);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(err, 1, len - 1, tmp);
    err[n] = 0;
    fclose(tmp);
    return st;
}

static void test_call_announcing_too_much(void **state)
{
    (void)state;
    struct fake_node fn;
    fake_start(&fn, 0);
    char err[1024];
    assert_int_equal(call_captured(&fn, err, sizeof err), CLI_CLUSTER_ERROR);
    fake_stop(&fn);
    assert_non_null(strstr(err, "20971520 bytes"));
    assert_non_null(strstr(err, "16 MiB"));
    assert_non_null(strstr(err, "ask for less"));
}

static void test_call_node_says_too_big(void **state)
{
    (void)state;
    struct fake_node fn;
    fake_start(&fn, 1);
    char err[1024];
    assert_int_equal(call_captured(&fn, err, sizeof err), CLI_CLUSTER_ERROR);
    fake_stop(&fn);
    assert_non_null(strstr(err, "grep result"));
    assert_non_null(strstr(err, "16 MiB"));
}

static void test_conn_recv_too_big(void **state)
{
    (void)state;
    for (int mode = 0; mode <= 1; mode++) {
        struct fake_node fn;
        fake_start(&fn, mode);
        char server[64];
        snprintf(server, sizeof server, "127.0.0.1:%d", fn.port);
        struct cli_conn *c;
        assert_int_equal(cli_conn_open(server, 5000, &c), 0);
        Idunno__GrepRequest g = IDUNNO__GREP_REQUEST__INIT;
        g.pattern = "x";
        assert_int_equal(cli_conn_send(c, IDUNNO__MSG_TYPE__MSG_GREP_REQ, &g.base, NULL), 0);
        struct cli_reply reply;
        char err[400];
        assert_int_equal(cli_conn_recv(c, &reply, NULL, err, sizeof err), ID_ETOOBIG);
        assert_non_null(strstr(err, "16 MiB"));
        cli_conn_close(c);
        fake_stop(&fn);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_announcing_too_much),
        cmocka_unit_test(test_call_node_says_too_big),
        cmocka_unit_test(test_conn_recv_too_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
