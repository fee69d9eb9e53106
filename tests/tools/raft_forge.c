/* raft_forge.c — test helper: attacks a node's raft port (PORT+1) the way
 * anyone who reaches it could, speaking libraft's stock handshake and
 * messages. Used by tests/cluster/test_security_raft.sh.
 *
 *   raft_forge HOST:PORT ATTACK [TERM]
 *
 * ATTACK: vote (a RequestVote of term TERM), snapshot (an InstallSnapshot
 * whose configuration claims 2^40 bytes), huge-addr (a handshake claiming a
 * 1 GiB address, then a trickle of bytes), silent (connects, sends nothing).
 * With $IDUNNO_KEY_FILE set, the key handshake is done first and everything
 * after it is sealed: an insider that holds the key but is no voter.
 *
 * Then waits up to RAFT_FORGE_WAIT_MS (default 10000) for the node to close
 * the connection and prints "closed after N ms" (exit 0) or "still open"
 * (exit 3). Exit 2: could not connect or the key handshake failed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "ctl/raft_wire.h"
#include "net/seal.h"

static int sealed;
static struct seal_session ss;

static size_t put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 8;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends plaintext, sealed as one record when keyed. A refused send is not an
 * error here: the node may already have closed the connection. */
static void send_plain(int fd, const uint8_t *p, size_t n)
{
    if (!sealed) {
        (void)send_all(fd, p, n);
        return;
    }
    uint8_t *rec = malloc(n + SEAL_RECORD_OVERHEAD);
    memcpy(rec + SEAL_RECORD_LEN_BYTES, p, n);
    seal_record(&ss.tx, rec, (uint32_t)n);
    (void)send_all(fd, rec, n + SEAL_RECORD_OVERHEAD);
    free(rec);
}

static int recv_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int key_handshake(int fd, const char *path)
{
    struct seal_keyring kr;
    char err[256];
    if (seal_init() < 0 || seal_keyring_load(path, &kr, err, sizeof err) < 0) {
        fprintf(stderr, "raft_forge: %s\n", err);
        return -1;
    }
    uint8_t hello[SEAL_HELLO_LEN], reply[SEAL_REPLY_LEN];
    seal_hello(&kr, hello);
    if (send_all(fd, hello, sizeof hello) < 0 || recv_all(fd, reply, sizeof reply) < 0 ||
        seal_finish(&kr, hello, reply, &ss) < 0) {
        fprintf(stderr, "raft_forge: key handshake failed\n");
        return -1;
    }
    sealed = 1;
    return 0;
}

/* libraft's stock handshake from a made-up node. */
static void stock_hello(int fd)
{
    uint8_t b[RAFT_WIRE_HELLO_FIXED + RAFT_WIRE_ADDR_MAX];
    long n = raft_wire_hello_encode(0x0BADC0DE, "127.0.0.1:9", b);
    send_plain(fd, b, (size_t)n);
}

static void attack(int fd, const char *what, uint64_t term)
{
    uint8_t b[256];
    size_t n = 0;
    if (strcmp(what, "vote") == 0) {
        stock_hello(fd);
        n += put64(b + n, 3 | 2u << 16); /* RequestVote, format 2 */
        n += put64(b + n, 40);
        n += put64(b + n, term);
        n += put64(b + n, 0x0BADC0DE);
        n += put64(b + n, 1u << 30); /* a log longer than anyone's */
        n += put64(b + n, term);
        n += put64(b + n, 1); /* disrupt the leader */
    } else if (strcmp(what, "snapshot") == 0) {
        stock_hello(fd);
        n += put64(b + n, 5);
        n += put64(b + n, 56);
        n += put64(b + n, term);
        n += put64(b + n, 1000);
        n += put64(b + n, term);
        n += put64(b + n, 1000);
        n += put64(b + n, 1ull << 40); /* configuration length */
        n += put64(b + n, 0);
        n += put64(b + n, 0);
    } else if (strcmp(what, "huge-addr") == 0) {
        n += put64(b + n, 1);
        n += put64(b + n, 0x0BADC0DE);
        n += put64(b + n, 1ull << 30);
        memset(b + n, 'a', 64);
        n += 64;
    }
    if (n)
        send_plain(fd, b, n);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: raft_forge HOST:PORT vote|snapshot|huge-addr|silent [TERM]\n");
        return 1;
    }
    char host[64];
    snprintf(host, sizeof host, "%s", argv[1]);
    char *colon = strrchr(host, ':');
    if (!colon)
        return 1;
    *colon = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("raft_forge: connect");
        return 2;
    }
    const char *key = getenv("IDUNNO_KEY_FILE");
    if (key && key[0] && strcmp(argv[2], "silent") != 0 && key_handshake(fd, key) < 0)
        return 2;
    uint64_t t0 = id_now_ms();
    attack(fd, argv[2], argc > 3 ? strtoull(argv[3], NULL, 0) : 1);
    const char *w = getenv("RAFT_FORGE_WAIT_MS");
    uint64_t wait_ms = w ? strtoull(w, NULL, 10) : 10000;
    uint8_t sink[4096];
    for (;;) {
        uint64_t now = id_now_ms();
        if (now - t0 >= wait_ms)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(wait_ms - (now - t0))) <= 0)
            continue;
        ssize_t k = recv(fd, sink, sizeof sink, 0);
        if (k <= 0) {
            printf("closed after %llu ms\n", (unsigned long long)(id_now_ms() - t0));
            return 0;
        }
    }
    printf("still open\n");
    return 3;
}
