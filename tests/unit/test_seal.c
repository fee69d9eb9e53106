/* test_seal.c — the cluster key on the wire (src/net/seal.h) without sockets:
 * keyring files, the handshake, sealed records through the frame reader and
 * sealed datagrams, each against what must break it: a tampered byte, the
 * wrong key, a replayed or reordered record or datagram, a truncated or lying
 * record; and key rotation (an old key still opens what its holders send).
 * Records are sealed through OpenSSL: libsodium, used here directly on the
 * wire format seal.h documents, must open them and seal what they open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "base/err.h"
#include "net/frame.h"
#include "net/reader.h"
#include "net/seal.h"

static const char KEY_A[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
static const char KEY_B[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

static void ring(struct seal_keyring *kr, const char *text)
{
    char err[128];
    assert_int_equal(seal_keyring_parse(text, strlen(text), kr, err, sizeof err), 0);
}

static void test_keyring_parse(void **state)
{
    (void)state;
    struct seal_keyring kr;
    char err[128];
    char text[256];
    snprintf(text, sizeof text, "# comment\n\n  %s  \r\n%s\n", KEY_A, KEY_B);
    assert_int_equal(seal_keyring_parse(text, strlen(text), &kr, err, sizeof err), 0);
    assert_int_equal(kr.n, 2);
    assert_int_equal(kr.key[0][0], 0x00);
    assert_int_equal(kr.key[1][0], 0xff);
    assert_memory_not_equal(kr.id[0], kr.id[1], SEAL_KEY_ID_LEN);

    const char *bad[] = {"", "# only a comment\n", "0011\n",
                         "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(seal_keyring_parse(bad[i], strlen(bad[i]), &kr, err, sizeof err),
                         ID_EINVAL);
    snprintf(text, sizeof text, "%s\n%s\n", KEY_A, KEY_A);
    assert_int_equal(seal_keyring_parse(text, strlen(text), &kr, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "repeats"));
}

static void test_keygen_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/idunno-seal.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/k", dir);
    assert_int_equal(seal_keygen_file(path, NULL, 0, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    struct seal_keyring first, again, rotated;
    assert_int_equal(seal_keyring_load(path, &first, err, sizeof err), 0);
    assert_int_equal(first.n, 1);

    /* No overwrite without force; the file is unchanged. */
    assert_int_equal(seal_keygen_file(path, NULL, 0, err, sizeof err), ID_EEXIST);
    assert_int_equal(seal_keyring_load(path, &again, err, sizeof err), 0);
    assert_memory_equal(again.key[0], first.key[0], SEAL_KEY_LEN);

    /* Rotation: a fresh key first, the old one kept second. */
    assert_int_equal(seal_keygen_file(path, &first, 1, err, sizeof err), 0);
    assert_int_equal(seal_keyring_load(path, &rotated, err, sizeof err), 0);
    assert_int_equal(rotated.n, 2);
    assert_memory_not_equal(rotated.key[0], first.key[0], SEAL_KEY_LEN);
    assert_memory_equal(rotated.key[1], first.key[0], SEAL_KEY_LEN);

    /* A keyring others may read is refused. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(seal_keyring_load(path, &again, err, sizeof err), ID_EINVAL);
    assert_non_null(strstr(err, "chmod 600"));
    unlink(path);
    assert_true(seal_keyring_load(path, &again, err, sizeof err) < 0);
    rmdir(dir);
}

/* A handshake between a connecting ring and an accepting ring. */
static int handshake(const struct seal_keyring *cli, const struct seal_keyring *srv,
                     struct seal_session *c, struct seal_session *s)
{
    uint8_t hello[SEAL_HELLO_LEN], reply[SEAL_REPLY_LEN];
    seal_hello(cli, hello);
    int rc = seal_accept(srv, hello, reply, s);
    if (rc < 0)
        return rc;
    return seal_finish(cli, hello, reply, c);
}

static void test_handshake_keys_agree(void **state)
{
    (void)state;
    struct seal_keyring a, b;
    ring(&a, KEY_A);
    ring(&b, KEY_B);
    struct seal_session c, s, c2, s2;
    assert_int_equal(handshake(&a, &a, &c, &s), 0);
    assert_memory_equal(c.tx.key, s.rx.key, SEAL_KEY_LEN);
    assert_memory_equal(c.rx.key, s.tx.key, SEAL_KEY_LEN);
    assert_memory_not_equal(c.tx.key, c.rx.key, SEAL_KEY_LEN);
    /* Fresh nonces: a second connection has other keys. */
    assert_int_equal(handshake(&a, &a, &c2, &s2), 0);
    assert_memory_not_equal(c.tx.key, c2.tx.key, SEAL_KEY_LEN);
    /* The wrong key: the acceptor does not hold it. */
    assert_int_equal(handshake(&a, &b, &c, &s), ID_EAUTH);
}

static void test_handshake_forged_reply(void **state)
{
    (void)state;
    struct seal_keyring a, b;
    ring(&a, KEY_A);
    ring(&b, KEY_B);
    uint8_t hello[SEAL_HELLO_LEN], reply[SEAL_REPLY_LEN];
    struct seal_session c, s;
    seal_hello(&a, hello);
    assert_int_equal(seal_accept(&a, hello, reply, &s), 0);
    /* Every byte of the reply matters. */
    for (size_t i = 0; i < SEAL_REPLY_LEN; i++) {
        uint8_t bad[SEAL_REPLY_LEN];
        memcpy(bad, reply, sizeof bad);
        bad[i] ^= 0x20;
        assert_true(seal_finish(&a, hello, bad, &c) < 0);
    }
    /* A reply made for another hello (a replayed one) does not prove anything. */
    uint8_t hello2[SEAL_HELLO_LEN];
    seal_hello(&a, hello2);
    assert_int_equal(seal_finish(&a, hello2, reply, &c), ID_EAUTH);
    /* Garbage instead of a hello. */
    memset(hello2, 'x', sizeof hello2);
    assert_int_equal(seal_accept(&a, hello2, reply, &s), ID_EPROTO);
    assert_int_equal(seal_finish(&a, hello, reply, &c), 0);
}

static void test_rotation_old_key_still_opens(void **state)
{
    (void)state;
    char both[160];
    snprintf(both, sizeof both, "%s\n%s\n", KEY_B, KEY_A); /* new key B first, old A kept */
    struct seal_keyring old, rotated;
    ring(&old, KEY_A);
    ring(&rotated, both);
    struct seal_session c, s;
    /* A node still on the old key reaches a rotated one, and back. */
    assert_int_equal(handshake(&old, &rotated, &c, &s), 0);
    assert_int_equal(handshake(&rotated, &old, &c, &s), ID_EAUTH); /* B unknown to old */

    struct seal_replay rp;
    memset(&rp, 0, sizeof rp);
    struct seal_sender snd;
    seal_sender_init(&snd);
    uint8_t dg[256];
    const uint8_t *frame;
    size_t flen;
    size_t n = seal_datagram(&old, &snd, 1000000, (const uint8_t *)"ping", 4, dg);
    assert_int_equal(seal_open_datagram(&rotated, &rp, 1000000, dg, n, &frame, &flen), 0);
    assert_int_equal(flen, 4);
    assert_memory_equal(frame, "ping", 4);
}

/* One frame sealed into a record appended to out, as the transport seals it
 * (no CRC in the frame: the record's tag covers it); returns its size. */
static size_t sealed_frame(struct seal_dir *tx, uint64_t id, const char *body, uint8_t *out)
{
    size_t len = strlen(body);
    uint8_t *fr = out + SEAL_RECORD_LEN_BYTES;
    memcpy(fr + FRAME_HEADER_LEN, body, len);
    frame_encode_header_sealed(fr, 7, 0, id, (uint32_t)len);
    seal_record(tx, out, (uint32_t)(FRAME_HEADER_LEN + len));
    return SEAL_RECORD_OVERHEAD + FRAME_HEADER_LEN + len;
}

struct pair {
    struct seal_session c, s;
    struct frame_reader r;
    struct frame_stats st;
};

static void pair_init(struct pair *p)
{
    struct seal_keyring a;
    ring(&a, KEY_A);
    assert_int_equal(handshake(&a, &a, &p->c, &p->s), 0);
    memset(&p->st, 0, sizeof p->st);
    frame_reader_init(&p->r, 1024, &p->st);
    frame_reader_seal(&p->r, &p->s.rx);
}

static void test_records_through_reader(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p);
    uint8_t stream[1024];
    size_t n = 0;
    n += sealed_frame(&p.c.tx, 1, "first", stream + n);
    n += sealed_frame(&p.c.tx, 2, "", stream + n);
    n += sealed_frame(&p.c.tx, 3, "third one", stream + n);
    /* Byte by byte: whole frames only, in order. */
    const char *want[] = {"first", "", "third one"};
    int got = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(frame_reader_feed(&p.r, stream + i, 1), 0);
        struct frame_header h;
        const uint8_t *body;
        int rc;
        while ((rc = frame_reader_next(&p.r, &h, &body)) == 1) {
            assert_int_equal(h.req_id, (uint64_t)got + 1);
            assert_int_equal(h.length, strlen(want[got]));
            assert_memory_equal(body, want[got], h.length);
            got++;
        }
        assert_int_equal(rc, 0);
    }
    assert_int_equal(got, 3);
    assert_int_equal(frame_reader_pending(&p.r), 0);
    frame_reader_free(&p.r);
}

/* Feeds bytes to a fresh sealed reader; the first result that is not "more". */
static int feed_result(struct pair *p, const uint8_t *bytes, size_t n)
{
    assert_int_equal(frame_reader_feed(&p->r, bytes, n), 0);
    struct frame_header h;
    const uint8_t *body;
    int rc;
    while ((rc = frame_reader_next(&p->r, &h, &body)) == 1)
        ;
    return rc;
}

static void test_tampered_record_fails(void **state)
{
    (void)state;
    uint8_t rec[128];
    struct pair p;
    pair_init(&p);
    size_t n = sealed_frame(&p.c.tx, 1, "payload", rec);
    frame_reader_free(&p.r);
    /* Every byte after the length, the frame's header (crc field included)
     * and body among them: flipping it fails authentication. This is what
     * lets a frame inside a record go without its own CRC. */
    for (size_t i = SEAL_RECORD_LEN_BYTES; i < n; i++) {
        pair_init(&p);
        size_t m = sealed_frame(&p.c.tx, 1, "payload", rec);
        rec[i] ^= 0x01;
        assert_int_equal(feed_result(&p, rec, m), ID_EAUTH);
        assert_int_equal(p.st.bad_auth, 1);
        frame_reader_free(&p.r);
    }
    /* The length: shorter means a cut record (authentication fails), longer
     * waits for bytes that never complete it, far longer is refused. */
    pair_init(&p);
    n = sealed_frame(&p.c.tx, 1, "payload", rec);
    rec[3] -= 1;
    assert_int_equal(feed_result(&p, rec, n), ID_EAUTH);
    frame_reader_free(&p.r);
    pair_init(&p);
    n = sealed_frame(&p.c.tx, 1, "payload", rec);
    rec[3] += 1;
    assert_int_equal(feed_result(&p, rec, n), 0);
    assert_int_equal(frame_reader_pending(&p.r), n);
    frame_reader_free(&p.r);
    pair_init(&p);
    n = sealed_frame(&p.c.tx, 1, "payload", rec);
    rec[1] = 0x7f; /* beyond max_body */
    assert_int_equal(feed_result(&p, rec, n), ID_ETOOBIG);
    rec[0] = rec[1] = rec[2] = 0;
    rec[3] = FRAME_HEADER_LEN - 1; /* not even a frame header */
    frame_reader_free(&p.r);
    pair_init(&p);
    assert_int_equal(feed_result(&p, rec, n), ID_EPROTO);
    frame_reader_free(&p.r);
}

static void test_truncated_record_waits(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p);
    uint8_t rec[128];
    size_t n = sealed_frame(&p.c.tx, 1, "payload", rec);
    /* Everything but the last tag byte: no frame, nothing consumed. */
    assert_int_equal(feed_result(&p, rec, n - 1), 0);
    assert_int_equal(frame_reader_pending(&p.r), n - 1);
    assert_int_equal(p.st.bad_auth, 0);
    assert_int_equal(feed_result(&p, rec + n - 1, 1), 0);
    assert_int_equal(frame_reader_pending(&p.r), 0);
    frame_reader_free(&p.r);
}

static void test_replayed_or_reordered_record_fails(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p);
    uint8_t one[128], two[128];
    size_t n1 = sealed_frame(&p.c.tx, 1, "one", one);
    size_t n2 = sealed_frame(&p.c.tx, 2, "two", two);
    /* Out of order: the second record where the first is due. */
    assert_int_equal(feed_result(&p, two, n2), ID_EAUTH);
    frame_reader_free(&p.r);

    pair_init(&p);
    n1 = sealed_frame(&p.c.tx, 1, "one", one);
    assert_int_equal(feed_result(&p, one, n1), 0);
    assert_int_equal(frame_reader_pending(&p.r), 0);
    /* The same record again: its number is spent. */
    assert_int_equal(feed_result(&p, one, n1), ID_EAUTH);
    frame_reader_free(&p.r);

    /* A record of another connection (same key, other nonces). */
    struct pair q;
    pair_init(&p);
    pair_init(&q);
    n1 = sealed_frame(&q.c.tx, 1, "one", one);
    assert_int_equal(feed_result(&p, one, n1), ID_EAUTH);
    /* The server's own direction does not open the client's records either. */
    frame_reader_free(&p.r);
    frame_reader_free(&q.r);
}

/* The wire format of seal.h, built with libsodium alone: the nonce of record
 * number seq. */
static void wire_nonce(uint64_t seq, uint8_t nonce[12])
{
    memset(nonce, 0, 12);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
}

static void test_records_match_libsodium(void **state)
{
    (void)state;
    /* Lengths around ChaCha20's 64-byte blocks and the vector widths, and one
     * record of an SDFS chunk's size. */
    const uint32_t lens[] = {0,   1,   15,  16,   63,   64,        65,
                             255, 256, 257, 1000, 4096, 65536 + 7, 1u << 20};
    struct seal_keyring a;
    ring(&a, KEY_A);
    struct seal_session c, s;
    assert_int_equal(handshake(&a, &a, &c, &s), 0);
    uint8_t *plain = malloc((1u << 20) + 1);
    uint8_t *rec = malloc((1u << 20) + SEAL_RECORD_OVERHEAD);
    uint8_t *copy = malloc((1u << 20) + SEAL_RECORD_OVERHEAD);
    assert_non_null(plain);
    assert_non_null(rec);
    assert_non_null(copy);
    randombytes_buf(plain, (1u << 20) + 1);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint32_t len = lens[i];
        uint8_t nonce[12];
        /* Sealed here, opened by libsodium. */
        memcpy(rec + SEAL_RECORD_LEN_BYTES, plain, len);
        uint64_t seq = c.tx.seq;
        seal_record(&c.tx, rec, len);
        assert_int_equal(seal_record_frame_len(rec), len);
        if (len > 0)
            assert_memory_not_equal(rec + SEAL_RECORD_LEN_BYTES, plain, len < 16 ? len : 16);
        memcpy(copy, rec, len + SEAL_RECORD_OVERHEAD);
        wire_nonce(seq, nonce);
        uint8_t *ct = copy + SEAL_RECORD_LEN_BYTES;
        assert_int_equal(
            crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                ct, NULL, ct, len, ct + len, copy, SEAL_RECORD_LEN_BYTES, nonce, s.rx.key),
            0);
        if (len > 0)
            assert_memory_equal(ct, plain, len);
        /* And opened here, in step with the sender. */
        assert_int_equal(seal_open_record(&s.rx, rec, len), 0);
        if (len > 0)
            assert_memory_equal(rec + SEAL_RECORD_LEN_BYTES, plain, len);

        /* Sealed by libsodium (the other direction's key and number), opened here. */
        wire_nonce(s.tx.seq, nonce);
        rec[0] = (uint8_t)(len >> 24);
        rec[1] = (uint8_t)(len >> 16);
        rec[2] = (uint8_t)(len >> 8);
        rec[3] = (uint8_t)len;
        uint8_t *m = rec + SEAL_RECORD_LEN_BYTES;
        memcpy(m, plain + 1, len);
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(
            m, m + len, NULL, m, len, rec, SEAL_RECORD_LEN_BYTES, NULL, nonce, s.tx.key);
        s.tx.seq++;
        assert_int_equal(seal_open_record(&c.rx, rec, len), 0);
        if (len > 0)
            assert_memory_equal(m, plain + 1, len);
    }
    free(plain);
    free(rec);
    free(copy);
}

static void test_forged_record_leaves_no_plaintext(void **state)
{
    (void)state;
    struct seal_keyring a;
    ring(&a, KEY_A);
    struct seal_session c, s;
    assert_int_equal(handshake(&a, &a, &c, &s), 0);
    const char secret[] = "a secret that a forged tag must not reveal, 64 bytes or more.....";
    uint32_t len = (uint32_t)strlen(secret);
    uint8_t rec[256];
    memcpy(rec + SEAL_RECORD_LEN_BYTES, secret, len);
    seal_record(&c.tx, rec, len);
    rec[SEAL_RECORD_LEN_BYTES + len + 3] ^= 0x80; /* the tag */
    assert_int_equal(seal_open_record(&s.rx, rec, len), ID_EAUTH);
    assert_null(memmem(rec, sizeof rec, "secret", 6));
    for (uint32_t i = 0; i < len; i++)
        assert_int_equal(rec[SEAL_RECORD_LEN_BYTES + i], 0);
    /* The failure did not spend the number: the genuine record still opens. */
    memcpy(rec + SEAL_RECORD_LEN_BYTES, secret, len);
    c.tx.seq--;
    seal_record(&c.tx, rec, len);
    assert_int_equal(seal_open_record(&s.rx, rec, len), 0);
    assert_memory_equal(rec + SEAL_RECORD_LEN_BYTES, secret, len);
}

static void test_datagram_roundtrip_and_tamper(void **state)
{
    (void)state;
    struct seal_keyring a, b;
    ring(&a, KEY_A);
    ring(&b, KEY_B);
    struct seal_sender snd;
    seal_sender_init(&snd);
    struct seal_replay rp;
    memset(&rp, 0, sizeof rp);
    uint8_t dg[FRAME_MAX_DATAGRAM + SEAL_DGRAM_OVERHEAD], copy[sizeof dg];
    const uint8_t *frame;
    size_t flen;
    uint64_t now = 1700000000000ull;
    size_t n = seal_datagram(&a, &snd, now, (const uint8_t *)"gossip", 6, dg);
    assert_int_equal(n, 6 + SEAL_DGRAM_OVERHEAD);
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, dg, n);
        copy[i] ^= 0x80;
        assert_true(seal_open_datagram(&a, &rp, now, copy, n, &frame, &flen) < 0);
    }
    memcpy(copy, dg, n);
    assert_int_equal(seal_open_datagram(&b, &rp, now, copy, n, &frame, &flen), ID_EAUTH);
    assert_int_equal(seal_open_datagram(&a, &rp, now, copy, n - 1, &frame, &flen), ID_EAUTH);
    assert_int_equal(seal_open_datagram(&a, &rp, now, copy, 10, &frame, &flen), ID_EPROTO);
    memcpy(copy, dg, n);
    assert_int_equal(seal_open_datagram(&a, &rp, now, copy, n, &frame, &flen), 0);
    assert_int_equal(flen, 6);
    assert_memory_equal(frame, "gossip", 6);
}

static void test_datagram_replay_window(void **state)
{
    (void)state;
    struct seal_keyring a;
    ring(&a, KEY_A);
    struct seal_sender snd;
    seal_sender_init(&snd);
    struct seal_replay rp;
    memset(&rp, 0, sizeof rp);
    uint64_t now = 1700000000000ull;
    enum { N = 70 };
    static uint8_t dg[N][128];
    size_t len[N];
    for (int i = 0; i < N; i++)
        len[i] = seal_datagram(&a, &snd, now, (const uint8_t *)"x", 1, dg[i]);
    uint8_t copy[128];
    const uint8_t *frame;
    size_t flen;
#define OPEN(i, t) \
    (memcpy(copy, dg[i], len[i]), seal_open_datagram(&a, &rp, (t), copy, len[i], &frame, &flen))
    assert_int_equal(OPEN(5, now), 0);
    assert_int_equal(OPEN(5, now), ID_EEXIST); /* replayed */
    assert_int_equal(OPEN(3, now), 0);         /* late, in the window */
    assert_int_equal(OPEN(3, now), ID_EEXIST);
    assert_int_equal(OPEN(69, now), 0);
    assert_int_equal(OPEN(4, now), ID_EEXIST); /* fell out of the 64-wide window */
    assert_int_equal(OPEN(68, now), 0);
    assert_int_equal(OPEN(69, now), ID_EEXIST);
    /* Too old, or from too far in the future, by the receiver's clock. */
    assert_int_equal(OPEN(67, now + SEAL_DGRAM_WINDOW_MS + 1), ID_EEXIST);
    assert_int_equal(OPEN(66, now - SEAL_DGRAM_WINDOW_MS - 1), ID_EEXIST);
    assert_int_equal(OPEN(66, now + SEAL_DGRAM_WINDOW_MS), 0);
    /* Another sender has its own window. */
    struct seal_sender other;
    seal_sender_init(&other);
    uint8_t d2[128];
    size_t n2 = seal_datagram(&a, &other, now, (const uint8_t *)"y", 1, d2);
    assert_int_equal(seal_open_datagram(&a, &rp, now, d2, n2, &frame, &flen), 0);
#undef OPEN
}

/* ---- payloads sealed end to end, and the records that carry them ---------- */

#define PLAIN "the bytes of a chunk of some file"

/* A payload of PLAIN sealed with `kr` at `offset` into out; its length. */
static size_t sealed_payload(const struct seal_keyring *kr, uint64_t offset, uint8_t *out)
{
    memcpy(out + SEAL_PAYLOAD_HEAD, PLAIN, strlen(PLAIN));
    seal_payload(kr, offset, out, strlen(PLAIN));
    return strlen(PLAIN) + SEAL_PAYLOAD_OVERHEAD;
}

static void test_payload_roundtrip_and_tamper(void **state)
{
    (void)state;
    struct seal_keyring a, b, ba;
    ring(&a, KEY_A);
    ring(&b, KEY_B);
    char both[160];
    snprintf(both, sizeof both, "%s\n%s\n", KEY_B, KEY_A);
    ring(&ba, both);
    uint8_t p[128], out[128];
    size_t n = sealed_payload(&a, 4096, p);
    assert_memory_not_equal(p + SEAL_PAYLOAD_HEAD, PLAIN, strlen(PLAIN));
    assert_int_equal(seal_open_payload(&a, 4096, p, n, out), 0);
    assert_memory_equal(out, PLAIN, strlen(PLAIN));
    /* A ring that holds the key among others (a rotation) opens it too. */
    assert_int_equal(seal_open_payload(&ba, 4096, p, n, out), 0);
    /* Moved to another offset, or a ring without the key: refused, and
     * nothing unverified left in out. */
    assert_int_equal(seal_open_payload(&a, 0, p, n, out), ID_EAUTH);
    assert_true(sodium_is_zero(out, strlen(PLAIN)));
    assert_int_equal(seal_open_payload(&b, 4096, p, n, out), ID_EAUTH);
    assert_int_equal(seal_open_payload(&a, 4096, p, SEAL_PAYLOAD_OVERHEAD - 1, out), ID_EPROTO);
    /* Every byte counts: key id, salt, ciphertext, tag. */
    for (size_t i = 0; i < n; i++) {
        p[i] ^= 0x20;
        assert_int_equal(seal_open_payload(&a, 4096, p, n, out), ID_EAUTH);
        p[i] ^= 0x20;
    }
    /* Opened in place, where a replica's plaintext goes. */
    assert_int_equal(seal_open_payload(&a, 4096, p, n, p + SEAL_PAYLOAD_HEAD), 0);
    assert_memory_equal(p + SEAL_PAYLOAD_HEAD, PLAIN, strlen(PLAIN));
    /* Two seals of the same bytes differ (a fresh salt, so a fresh key). */
    uint8_t q[128];
    sealed_payload(&a, 4096, p);
    sealed_payload(&a, 4096, q);
    assert_memory_not_equal(p, q, n);
}

static void test_payload_matches_libsodium(void **state)
{
    (void)state;
    /* The format seal.h documents, rebuilt from libsodium's primitives. */
    struct seal_keyring a;
    ring(&a, KEY_A);
    uint8_t p[128];
    size_t n = sealed_payload(&a, 77, p);
    uint8_t key[32], ad[SEAL_PAYLOAD_HEAD + 8], nonce[12] = {0}, out[128];
    crypto_generichash(key, sizeof key, p + SEAL_KEY_ID_LEN, SEAL_PAYLOAD_SALT, a.payload_key[0],
                       SEAL_KEY_LEN);
    memcpy(ad, p, SEAL_PAYLOAD_HEAD);
    memset(ad + SEAL_PAYLOAD_HEAD, 0, 8);
    ad[SEAL_PAYLOAD_HEAD + 7] = 77;
    size_t len = n - SEAL_PAYLOAD_OVERHEAD;
    assert_int_equal(crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                         out, NULL, p + SEAL_PAYLOAD_HEAD, len, p + SEAL_PAYLOAD_HEAD + len, ad,
                         sizeof ad, nonce, key),
                     0);
    assert_memory_equal(out, PLAIN, len);
    assert_memory_equal(p, a.id[0], SEAL_KEY_ID_LEN);
}

/* A request frame whose body is "head:" and then a sealed payload, as a tail
 * record into out; its length. *tail gets the payload's length. */
static size_t tail_frame(struct seal_dir *tx, const struct seal_keyring *kr, uint64_t id,
                         uint8_t *out, uint32_t *tail)
{
    uint8_t *fr = out + SEAL_RECORD_TAIL_PREFIX;
    memcpy(fr + FRAME_HEADER_LEN, "head:", 5);
    size_t n = sealed_payload(kr, id, fr + FRAME_HEADER_LEN + 5);
    uint32_t len = (uint32_t)(5 + n);
    frame_encode_header_sealed(fr, 9, 0, id, len);
    seal_record_tail(tx, out, FRAME_HEADER_LEN + len, (uint32_t)n);
    *tail = (uint32_t)n;
    return SEAL_RECORD_TAIL_OVERHEAD + FRAME_HEADER_LEN + len;
}

static void test_tail_records_through_reader(void **state)
{
    (void)state;
    struct seal_keyring a;
    ring(&a, KEY_A);
    struct pair p;
    pair_init(&p);
    uint8_t stream[1024];
    uint32_t tail;
    size_t n = 0;
    n += sealed_frame(&p.c.tx, 1, "plain", stream + n);
    n += tail_frame(&p.c.tx, &a, 2, stream + n, &tail);
    n += sealed_frame(&p.c.tx, 3, "plain again", stream + n);
    int got = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(frame_reader_feed(&p.r, stream + i, 1), 0);
        struct frame_header h;
        const uint8_t *body;
        while (frame_reader_next(&p.r, &h, &body) == 1) {
            got++;
            assert_int_equal(h.req_id, (uint64_t)got);
            if (got != 2) {
                assert_int_equal(h.sealed_tail, 0);
                continue;
            }
            /* The head decrypted, the payload as it was sealed: it opens. */
            assert_int_equal(h.sealed_tail, tail);
            assert_int_equal(h.length, 5 + tail);
            assert_memory_equal(body, "head:", 5);
            uint8_t out[128];
            assert_int_equal(seal_open_payload(&a, 2, body + 5, tail, out), 0);
            assert_memory_equal(out, PLAIN, strlen(PLAIN));
        }
    }
    assert_int_equal(got, 3);
    assert_int_equal(p.st.bad_auth, 0);
    frame_reader_free(&p.r);
}

static void test_tampered_tail_record_fails(void **state)
{
    (void)state;
    struct seal_keyring a;
    ring(&a, KEY_A);
    uint8_t rec[256];
    uint32_t tail;
    struct pair p;
    pair_init(&p);
    size_t n = tail_frame(&p.c.tx, &a, 1, rec, &tail);
    frame_reader_free(&p.r);
    size_t pay = n - SEAL_TAG_LEN - tail; /* where the payload starts */
    /* Each byte: the lengths, the head, the payload's tag and the record's
     * tag are the record's to check; the rest of the payload (key id, salt,
     * ciphertext) passes the record and fails where the payload is opened. */
    for (size_t i = 0; i < n; i++) {
        pair_init(&p);
        tail_frame(&p.c.tx, &a, 1, rec, &tail);
        rec[i] ^= 0x01;
        assert_int_equal(frame_reader_feed(&p.r, rec, n), 0);
        struct frame_header h;
        const uint8_t *body;
        int rc = frame_reader_next(&p.r, &h, &body);
        if (i >= pay && i < pay + tail - SEAL_TAG_LEN) {
            assert_int_equal(rc, 1);
            uint8_t out[128];
            assert_int_equal(seal_open_payload(&a, 1, body + 5, tail, out), ID_EAUTH);
        } else if (i < SEAL_RECORD_TAIL_PREFIX) {
            /* a longer frame waits for more, a huge one is refused */
            assert_true(rc == ID_EAUTH || rc == ID_EPROTO || rc == ID_ETOOBIG || rc == 0);
        } else {
            assert_int_equal(rc, ID_EAUTH);
        }
        frame_reader_free(&p.r);
    }
    /* Tails that cannot be a payload of the frame: refused unopened. */
    uint32_t bad[] = {SEAL_PAYLOAD_OVERHEAD - 1, (uint32_t)(n - SEAL_RECORD_TAIL_OVERHEAD),
                      (uint32_t)(n - SEAL_RECORD_TAIL_OVERHEAD - FRAME_HEADER_LEN + 1)};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        pair_init(&p);
        tail_frame(&p.c.tx, &a, 1, rec, &tail);
        rec[4] = (uint8_t)(bad[k] >> 24);
        rec[5] = (uint8_t)(bad[k] >> 16);
        rec[6] = (uint8_t)(bad[k] >> 8);
        rec[7] = (uint8_t)bad[k];
        assert_int_equal(feed_result(&p, rec, n), ID_EPROTO);
        assert_int_equal(p.st.bad_auth, 0);
        frame_reader_free(&p.r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyring_parse),
        cmocka_unit_test(test_keygen_file),
        cmocka_unit_test(test_handshake_keys_agree),
        cmocka_unit_test(test_handshake_forged_reply),
        cmocka_unit_test(test_rotation_old_key_still_opens),
        cmocka_unit_test(test_records_through_reader),
        cmocka_unit_test(test_tampered_record_fails),
        cmocka_unit_test(test_truncated_record_waits),
        cmocka_unit_test(test_replayed_or_reordered_record_fails),
        cmocka_unit_test(test_records_match_libsodium),
        cmocka_unit_test(test_forged_record_leaves_no_plaintext),
        cmocka_unit_test(test_datagram_roundtrip_and_tamper),
        cmocka_unit_test(test_datagram_replay_window),
        cmocka_unit_test(test_payload_roundtrip_and_tamper),
        cmocka_unit_test(test_payload_matches_libsodium),
        cmocka_unit_test(test_tail_records_through_reader),
        cmocka_unit_test(test_tampered_tail_record_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
