/* swim_forge.c — test helper: sends one forged gossip datagram, built with the
 * project's own codec and framing, to a node, as an attacker on the network
 * could. Used by tests/cluster/test_membership_forged.sh to show that such a
 * datagram cannot evict a live member, and that answers go to the real sender.
 *
 *   swim_forge TO KIND FROM_NAME FROM_INC FROM_ADDR [NAME ADDR INC STATE [HEARTBEAT]]
 *
 * KIND: ping, notice or join; STATE: alive, suspect, failed or left. NAME may
 * hold escapes \e, \r, \n, \t and \a (control characters). With
 * SWIM_FORGE_WAIT_MS set, waits that long for an answer on the sending socket
 * and prints "answer KIND" (exit 0), or "no answer" (exit 3).
 *
 * With $IDUNNO_KEY_FILE set the datagram is sealed with that cluster key: the
 * forger is then an insider (a node that holds the key), whose lies the
 * membership core itself must refuse.
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
#include "idunno.pb-c.h"
#include "member/swim_codec.h"
#include "net/frame.h"
#include "net/net.h"
#include "net/seal.h"

static void unescape(const char *in, char *out, size_t cap)
{
    size_t k = 0;
    for (; *in && k + 1 < cap; in++) {
        if (*in != '\\' || !in[1]) {
            out[k++] = *in;
            continue;
        }
        in++;
        out[k++] = *in == 'e'   ? '\033'
                   : *in == 'r' ? '\r'
                   : *in == 'n' ? '\n'
                   : *in == 't' ? '\t'
                   : *in == 'a' ? '\a'
                                : *in;
    }
    out[k] = 0;
}

static int parse_state(const char *s)
{
    static const char *const names[] = {"alive", "suspect", "failed", "left"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static int parse_kind(const char *s)
{
    if (strcmp(s, "ping") == 0)
        return SWIM_PING;
    if (strcmp(s, "notice") == 0)
        return SWIM_NOTICE;
    if (strcmp(s, "join") == 0)
        return SWIM_JOIN;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 10 && argc != 11) {
        fprintf(stderr, "usage: swim_forge TO KIND FROM_NAME FROM_INC FROM_ADDR "
                        "[NAME ADDR INC STATE [HEARTBEAT]]\n");
        return 2;
    }
    struct swim_packet p;
    memset(&p, 0, sizeof p);
    int kind = parse_kind(argv[2]);
    if (kind < 0) {
        fprintf(stderr, "swim_forge: unknown kind %s\n", argv[2]);
        return 2;
    }
    p.kind = (enum swim_kind)kind;
    unescape(argv[3], p.from_name, sizeof p.from_name);
    p.from_incarnation = strtoull(argv[4], NULL, 10);
    snprintf(p.from_addr, sizeof p.from_addr, "%s", argv[5]);
    p.seq = 4242;
    if (argc >= 10) {
        struct swim_record *r = &p.updates[0];
        unescape(argv[6], r->name, sizeof r->name);
        snprintf(r->addr, sizeof r->addr, "%s", argv[7]);
        r->incarnation = strtoull(argv[8], NULL, 10);
        int st = parse_state(argv[9]);
        if (st < 0) {
            fprintf(stderr, "swim_forge: unknown state %s\n", argv[9]);
            return 2;
        }
        r->state = (enum member_state)st;
        r->heartbeat = argc == 11 ? (uint32_t)strtoul(argv[10], NULL, 10) : 0;
        p.n_updates = 1;
    }
    uint8_t dgram[FRAME_MAX_DATAGRAM];
    int len = swim_encode(&p, dgram + FRAME_HEADER_LEN, sizeof dgram - FRAME_HEADER_LEN);
    if (len < 0) {
        fprintf(stderr, "swim_forge: cannot encode\n");
        return 1;
    }
    frame_encode_header(dgram, IDUNNO__MSG_TYPE__MSG_SWIM, 0, 0, dgram + FRAME_HEADER_LEN,
                        (uint32_t)len);
    struct sockaddr_storage to;
    if (net_parse_addr(argv[1], &to) < 0) {
        fprintf(stderr, "swim_forge: bad address %s\n", argv[1]);
        return 2;
    }
    static struct seal_keyring ring;
    const struct seal_keyring *kr = NULL;
    const char *key_file = getenv("IDUNNO_KEY_FILE");
    if (key_file && key_file[0]) {
        char why[256] = "cannot initialise libsodium";
        if (seal_init() < 0 || seal_keyring_load(key_file, &ring, why, sizeof why) < 0) {
            fprintf(stderr, "swim_forge: %s\n", why);
            return 2;
        }
        kr = &ring;
    }
    uint8_t sealed[FRAME_MAX_DATAGRAM + SEAL_DGRAM_OVERHEAD];
    const uint8_t *out = dgram;
    size_t out_len = FRAME_HEADER_LEN + (size_t)len;
    if (kr) {
        struct seal_sender snd;
        seal_sender_init(&snd);
        out_len = seal_datagram(kr, &snd, id_wall_ms(), dgram, out_len, sealed);
        out = sealed;
    }
    int fd = socket(to.ss_family, SOCK_DGRAM, 0);
    if (fd < 0 || sendto(fd, out, out_len, 0, (struct sockaddr *)&to,
                         to.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                 : sizeof(struct sockaddr_in6)) < 0) {
        perror("swim_forge: sendto");
        return 1;
    }
    const char *wait = getenv("SWIM_FORGE_WAIT_MS");
    if (!wait)
        return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, atoi(wait)) <= 0) {
        printf("no answer\n");
        return 3;
    }
    uint8_t buf[FRAME_MAX_DATAGRAM + SEAL_DGRAM_OVERHEAD];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    const uint8_t *frame = buf;
    size_t frame_len = n > 0 ? (size_t)n : 0;
    if (kr && n > 0) {
        static struct seal_replay replay;
        if (seal_open_datagram(kr, &replay, id_wall_ms(), buf, (size_t)n, &frame, &frame_len) < 0) {
            printf("undecodable answer\n");
            return 1;
        }
    }
    struct frame_header h;
    const uint8_t *body;
    struct swim_packet a;
    if (n <= 0 || frame_decode_datagram(frame, frame_len, &h, &body, NULL) < 0 ||
        swim_decode(body, h.length, &a) < 0) {
        printf("undecodable answer\n");
        return 1;
    }
    printf("answer %s\n", a.kind == SWIM_ACK ? "ack" : a.kind == SWIM_SYNC ? "sync" : "other");
    close(fd);
    return 0;
}
