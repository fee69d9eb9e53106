/* seal.c — the cluster key, the TCP handshake and sealed records and datagrams
 * (see seal.h). Well-kept libraries' primitives only: libsodium's BLAKE2b
 * (keyed) and its KDF for deriving keys, XChaCha20-Poly1305 for datagrams and
 * randombytes for nonces and keys; ChaCha20-Poly1305 (RFC 8439) for records,
 * through OpenSSL's implementation where it can (see "TCP records"). */
#include "net/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

/* Context strings for crypto_kdf (8 bytes each, fixed by the protocol). */
#define KDF_CTX_KEY "idn-key1"  /* key id, datagram key */
#define KDF_CTX_TCP "idn-tcp1"  /* session keys and proof */
#define KDF_CTX_HTTP "idn-http" /* HTTP bearer tokens */
enum {
    SUB_KEY_ID = 1,
    SUB_UDP = 2,
    SUB_PAYLOAD = 3,
    SUB_C2S = 1,
    SUB_S2C = 2,
    SUB_PROOF = 3,
    SUB_HTTP_TOKEN = 1
};

#define KEYRING_MAX_FILE 4096

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

static uint64_t get_u64(const uint8_t *p)
{
    return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4);
}

int seal_init(void)
{
    return sodium_init() < 0 ? ID_EINTERNAL : 0;
}

/* ---- keyring ------------------------------------------------------------- */

void seal_http_token(const struct seal_keyring *kr, size_t i, uint8_t out[SEAL_HTTP_TOKEN_LEN])
{
    /* A context of its own: knowing a token tells nothing of the key or of
     * the other subkeys (the KDF is one-way per context and id). */
    crypto_kdf_derive_from_key(out, SEAL_HTTP_TOKEN_LEN, SUB_HTTP_TOKEN, KDF_CTX_HTTP, kr->key[i]);
}

static int keyring_add(struct seal_keyring *kr, const uint8_t key[SEAL_KEY_LEN], char *err,
                       size_t errlen)
{
    if (kr->n == SEAL_MAX_KEYS) {
        snprintf(err, errlen, "more than %d keys", SEAL_MAX_KEYS);
        return ID_EINVAL;
    }
    uint8_t sub[SEAL_KEY_LEN];
    crypto_kdf_derive_from_key(sub, sizeof sub, SUB_KEY_ID, KDF_CTX_KEY, key);
    for (size_t i = 0; i < kr->n; i++)
        if (memcmp(kr->id[i], sub, SEAL_KEY_ID_LEN) == 0) {
            snprintf(err, errlen, "key %zu repeats key %zu (or shares its id)", kr->n + 1, i + 1);
            sodium_memzero(sub, sizeof sub);
            return ID_EINVAL;
        }
    memcpy(kr->key[kr->n], key, SEAL_KEY_LEN);
    memcpy(kr->id[kr->n], sub, SEAL_KEY_ID_LEN);
    crypto_kdf_derive_from_key(kr->udp_key[kr->n], SEAL_KEY_LEN, SUB_UDP, KDF_CTX_KEY, key);
    crypto_kdf_derive_from_key(kr->payload_key[kr->n], SEAL_KEY_LEN, SUB_PAYLOAD, KDF_CTX_KEY, key);
    kr->n++;
    sodium_memzero(sub, sizeof sub);
    return 0;
}

int seal_keyring_parse(const char *text, size_t len, struct seal_keyring *kr, char *err,
                       size_t errlen)
{
    if (seal_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return ID_EINTERNAL;
    }
    memset(kr, 0, sizeof *kr);
    size_t pos = 0;
    int line_no = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        line_no++;
        /* Trim blanks around the line; skip comments and empty lines. */
        size_t a = pos, b = end;
        while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r'))
            a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
            b--;
        pos = end + 1;
        if (a == b || text[a] == '#')
            continue;
        uint8_t key[SEAL_KEY_LEN];
        size_t got = 0;
        const char *hex_end = NULL;
        if (b - a != 2 * SEAL_KEY_LEN ||
            sodium_hex2bin(key, sizeof key, text + a, b - a, NULL, &got, &hex_end) != 0 ||
            got != SEAL_KEY_LEN) {
            snprintf(err, errlen, "line %d is not a key (64 hex digits)", line_no);
            seal_keyring_wipe(kr);
            return ID_EINVAL;
        }
        int rc = keyring_add(kr, key, err, errlen);
        sodium_memzero(key, sizeof key);
        if (rc < 0) {
            seal_keyring_wipe(kr);
            return rc;
        }
    }
    if (kr->n == 0) {
        snprintf(err, errlen, "no key in it");
        return ID_EINVAL;
    }
    return 0;
}

int seal_keyring_load(const char *path, struct seal_keyring *kr, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return id_from_errno(errno);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "key file %s is not a regular file", path);
        return ID_EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        snprintf(err, errlen, "key file %s may be read by others (mode %03o): chmod 600 %s", path,
                 (unsigned)(st.st_mode & 0777), path);
        return ID_EINVAL;
    }
    char text[KEYRING_MAX_FILE];
    ssize_t n = read(fd, text, sizeof text);
    close(fd);
    if (n < 0 || n == (ssize_t)sizeof text) {
        snprintf(err, errlen, "cannot read key file %s: %s", path,
                 n < 0 ? strerror(errno) : "larger than a keyring can be");
        sodium_memzero(text, sizeof text);
        return n < 0 ? ID_EIO : ID_EINVAL;
    }
    char why[128];
    int rc = seal_keyring_parse(text, (size_t)n, kr, why, sizeof why);
    sodium_memzero(text, sizeof text);
    if (rc < 0)
        snprintf(err, errlen, "key file %s: %s", path, why);
    return rc;
}

int seal_keygen_file(const char *path, const struct seal_keyring *keep, int force, char *err,
                     size_t errlen)
{
    if (seal_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return ID_EINTERNAL;
    }
    size_t n_keep = keep ? keep->n : 0;
    if (n_keep >= SEAL_MAX_KEYS)
        n_keep = SEAL_MAX_KEYS - 1; /* the oldest falls off */
    char text[KEYRING_MAX_FILE];
    size_t len = (size_t)snprintf(
        text, sizeof text, "# IDunno cluster keyring: the first key seals, every key opens.\n");
    for (size_t i = 0; i <= n_keep; i++) {
        uint8_t fresh[SEAL_KEY_LEN];
        const uint8_t *k = fresh;
        if (i == 0)
            randombytes_buf(fresh, sizeof fresh);
        else
            k = keep->key[i - 1];
        sodium_bin2hex(text + len, 2 * SEAL_KEY_LEN + 1, k, SEAL_KEY_LEN);
        len += 2 * SEAL_KEY_LEN;
        text[len++] = '\n';
        sodium_memzero(fresh, sizeof fresh);
    }
    /* Written beside the target and renamed over it, so a reader never sees
     * half a keyring. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    if (!force && access(path, F_OK) == 0) {
        sodium_memzero(text, sizeof text);
        snprintf(err, errlen, "%s already exists (--force replaces it)", path);
        return ID_EEXIST;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int e = 0;
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
        e = errno ? errno : EIO;
    if (fd >= 0 && close(fd) < 0 && !e)
        e = errno;
    sodium_memzero(text, sizeof text);
    /* link, unlike rename, fails if the file appeared meanwhile. */
    if (!e && (force ? rename(tmp, path) : link(tmp, path)) < 0)
        e = errno;
    if (fd >= 0 && (e || !force))
        unlink(tmp);
    if (e) {
        snprintf(err, errlen, "cannot write %s: %s", path,
                 e == EEXIST ? "it already exists" : strerror(e));
        return e == EEXIST ? ID_EEXIST : id_from_errno(e);
    }
    return 0;
}

void seal_keyring_wipe(struct seal_keyring *kr)
{
    sodium_memzero(kr, sizeof *kr);
}

/* The key of the ring with this id, or -1. */
static int key_index(const struct seal_keyring *kr, const uint8_t id[SEAL_KEY_ID_LEN])
{
    for (size_t i = 0; i < kr->n; i++)
        if (memcmp(kr->id[i], id, SEAL_KEY_ID_LEN) == 0)
            return (int)i;
    return -1;
}

/* ---- TCP handshake ------------------------------------------------------- */

static void hello_write(const struct seal_keyring *kr, uint8_t out[SEAL_HELLO_LEN])
{
    put_u32(out, SEAL_HELLO_MAGIC);
    out[4] = SEAL_VERSION;
    out[5] = out[6] = out[7] = 0;
    memcpy(out + 8, kr->id[0], SEAL_KEY_ID_LEN);
    randombytes_buf(out + 8 + SEAL_KEY_ID_LEN, SEAL_NONCE_LEN);
}

/* Checks a hello (or the first part of a reply); the index of its key. */
static int hello_check(const struct seal_keyring *kr, const uint8_t in[SEAL_HELLO_LEN], int *key)
{
    if (get_u32(in) != SEAL_HELLO_MAGIC)
        return ID_EPROTO;
    if (in[4] != SEAL_VERSION)
        return ID_EVERSION;
    *key = key_index(kr, in + 8);
    return *key < 0 ? ID_EAUTH : 0;
}

/* Both sides: everything from the key and the two hellos. */
static void session_derive(const uint8_t key[SEAL_KEY_LEN], const uint8_t hello[SEAL_HELLO_LEN],
                           const uint8_t reply[SEAL_HELLO_LEN], uint8_t c2s[SEAL_KEY_LEN],
                           uint8_t s2c[SEAL_KEY_LEN], uint8_t proof[32])
{
    uint8_t master[crypto_kdf_KEYBYTES];
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, SEAL_KEY_LEN, sizeof master);
    crypto_generichash_update(&st, hello, SEAL_HELLO_LEN);
    crypto_generichash_update(&st, reply, SEAL_HELLO_LEN);
    crypto_generichash_final(&st, master, sizeof master);
    crypto_kdf_derive_from_key(c2s, SEAL_KEY_LEN, SUB_C2S, KDF_CTX_TCP, master);
    crypto_kdf_derive_from_key(s2c, SEAL_KEY_LEN, SUB_S2C, KDF_CTX_TCP, master);
    crypto_kdf_derive_from_key(proof, 32, SUB_PROOF, KDF_CTX_TCP, master);
    sodium_memzero(master, sizeof master);
    sodium_memzero(&st, sizeof st);
}

void seal_hello(const struct seal_keyring *kr, uint8_t hello[SEAL_HELLO_LEN])
{
    hello_write(kr, hello);
}

int seal_accept(const struct seal_keyring *kr, const uint8_t hello[SEAL_HELLO_LEN],
                uint8_t reply[SEAL_REPLY_LEN], struct seal_session *s)
{
    int k;
    int rc = hello_check(kr, hello, &k);
    if (rc < 0)
        return rc;
    /* Answer with the key the caller chose, so a ring being rotated talks to
     * nodes that do not hold the new key yet. */
    hello_write(kr, reply);
    memcpy(reply + 8, kr->id[k], SEAL_KEY_ID_LEN);
    memset(s, 0, sizeof *s);
    session_derive(kr->key[k], hello, reply, s->rx.key, s->tx.key, reply + SEAL_HELLO_LEN);
    return 0;
}

int seal_finish(const struct seal_keyring *kr, const uint8_t hello[SEAL_HELLO_LEN],
                const uint8_t reply[SEAL_REPLY_LEN], struct seal_session *s)
{
    int k;
    int rc = hello_check(kr, reply, &k);
    if (rc < 0)
        return rc;
    if (memcmp(reply + 8, hello + 8, SEAL_KEY_ID_LEN) != 0)
        return ID_EAUTH; /* the acceptor must use the key we chose */
    uint8_t proof[32];
    memset(s, 0, sizeof *s);
    session_derive(kr->key[k], hello, reply, s->tx.key, s->rx.key, proof);
    rc = sodium_memcmp(proof, reply + SEAL_HELLO_LEN, sizeof proof) == 0 ? 0 : ID_EAUTH;
    sodium_memzero(proof, sizeof proof);
    if (rc < 0)
        sodium_memzero(s, sizeof *s);
    return rc;
}

/* ---- TCP records --------------------------------------------------------- */

/* Records carry every byte of SDFS traffic, so their cipher is what the key
 * costs a put (docs/benchmarks.md, "The cluster key"). They are sealed with
 * ChaCha20-Poly1305 as RFC 8439 defines it, through OpenSSL's EVP interface:
 * on hosts with AVX2 or AVX-512 its vectorised code runs 3-5 times faster than
 * libsodium's. It is the same construction, so a record sealed by either
 * library opens with the other (test_seal checks both ways) and the protocol
 * does not change; libsodium remains the fallback whenever OpenSSL cannot be
 * used (no context could be made, a frame beyond INT_MAX bytes, a failed call).
 *
 * One EVP context per thread, made on first use and freed when the thread
 * ends: per record only the key and nonce are set, never a cipher fetched. */
static pthread_key_t aead_ctx_key;
static pthread_once_t aead_ctx_once = PTHREAD_ONCE_INIT;
static int aead_ctx_key_ok;

static void aead_ctx_free(void *ctx)
{
    EVP_CIPHER_CTX_free(ctx);
}

static void aead_ctx_key_make(void)
{
    aead_ctx_key_ok = pthread_key_create(&aead_ctx_key, aead_ctx_free) == 0;
}

/* This thread's ChaCha20-Poly1305 context, or NULL (use libsodium). */
static EVP_CIPHER_CTX *aead_ctx(void)
{
    static __thread EVP_CIPHER_CTX *ctx;
    static __thread int failed;
    if (ctx || failed)
        return ctx;
    pthread_once(&aead_ctx_once, aead_ctx_key_make);
    EVP_CIPHER_CTX *c = aead_ctx_key_ok ? EVP_CIPHER_CTX_new() : NULL;
    if (!c || EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, NULL, NULL, 1) != 1 ||
        pthread_setspecific(aead_ctx_key, c) != 0) {
        EVP_CIPHER_CTX_free(c);
        failed = 1;
        return NULL;
    }
    ctx = c;
    return ctx;
}

/* OpenSSL's AVX-512 ChaCha20-Poly1305 returns with the upper halves of the
 * vector registers dirty; until something clears them, every SSE instruction
 * after it pays a state-transition penalty. On this project's hosts that made
 * the SHA-256 (SHA-NI) of the very chunks just opened 40% slower, costing a
 * keyed put more than the cipher itself (docs/benchmarks.md, "The cluster
 * key"). VZEROUPPER clears them; it exists only on CPUs with AVX, which are
 * the only ones where OpenSSL takes such a path. */
static void clear_upper_vector_state(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx"))
        __asm__ volatile("vzeroupper" ::: "memory");
#endif
}

/* What evp_seal and evp_open return when OpenSSL could not be used. */
#define EVP_UNUSABLE 1

/* Encrypts m[0..len) in place and writes the tag; 0, or EVP_UNUSABLE with
 * m[0..len) as it was (the caller seals with libsodium instead). */
static int evp_seal(const uint8_t key[SEAL_KEY_LEN], const uint8_t *nonce, const uint8_t *ad,
                    size_t ad_len, uint8_t *m, uint32_t len, uint8_t tag[SEAL_TAG_LEN])
{
    EVP_CIPHER_CTX *c = aead_ctx();
    int n, fin;
    if (!c || len > INT_MAX)
        return EVP_UNUSABLE;
    if (EVP_CipherInit_ex(c, NULL, NULL, key, nonce, 1) != 1 ||
        EVP_CipherUpdate(c, NULL, &n, ad, (int)ad_len) != 1)
        return EVP_UNUSABLE; /* before any byte of m was touched */
    /* A stream cipher's update encrypts all of its input or fails outright;
     * a partly encrypted buffer could be neither sent nor restored. */
    if (EVP_CipherUpdate(c, m, &n, m, (int)len) != 1 || n != (int)len)
        abort();
    int ok = EVP_CipherFinal_ex(c, m + n, &fin) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, SEAL_TAG_LEN, tag) == 1;
    clear_upper_vector_state();
    if (!ok) {
        /* XOR the same keystream again (RFC 8439: the payload starts at block
         * 1) to give the caller its plaintext back. */
        crypto_stream_chacha20_ietf_xor_ic(m, m, len, nonce, 1, key);
        return EVP_UNUSABLE;
    }
    return 0;
}

/* Decrypts in[0..len) into out[0..len) (the same buffer, or one not
 * overlapping it) if the tag verifies. 0, ID_EAUTH (forged: out is wiped, no
 * unverified byte is left in it), or EVP_UNUSABLE (nothing written: the
 * caller opens it with libsodium). */
static int evp_open(const uint8_t key[SEAL_KEY_LEN], const uint8_t *nonce, const uint8_t *ad,
                    size_t ad_len, const uint8_t *in, uint8_t *out, uint32_t len,
                    const uint8_t tag[SEAL_TAG_LEN])
{
    EVP_CIPHER_CTX *x = aead_ctx();
    int n;
    if (!x || len > INT_MAX)
        return EVP_UNUSABLE;
    if (EVP_CipherInit_ex(x, NULL, NULL, key, nonce, 0) != 1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, SEAL_TAG_LEN, (void *)tag) != 1 ||
        EVP_CipherUpdate(x, NULL, &n, ad, (int)ad_len) != 1)
        return EVP_UNUSABLE; /* before any byte of out was touched */
    int ok = EVP_CipherUpdate(x, out, &n, in, (int)len) == 1 &&
             EVP_CipherFinal_ex(x, out + n, &n) == 1;
    clear_upper_vector_state();
    if (!ok) {
        sodium_memzero(out, len);
        return ID_EAUTH;
    }
    return 0;
}

/* ChaCha20-Poly1305 (RFC 8439) in place, the tag after the text: through
 * OpenSSL where it can be used, else libsodium (the same bytes either way). */
static void aead_seal(const uint8_t key[SEAL_KEY_LEN], const uint8_t *nonce, const uint8_t *ad,
                      size_t ad_len, uint8_t *m, size_t len, uint8_t tag[SEAL_TAG_LEN])
{
    if (len > UINT32_MAX || evp_seal(key, nonce, ad, ad_len, m, (uint32_t)len, tag) != 0)
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(m, tag, NULL, m, len, ad, ad_len, NULL,
                                                           nonce, key);
}

/* Opens in[0..len) into out (the same buffer, or one not overlapping it) if
 * the tag verifies: 0, or ID_EAUTH. */
static int aead_open(const uint8_t key[SEAL_KEY_LEN], const uint8_t *nonce, const uint8_t *ad,
                     size_t ad_len, const uint8_t *in, uint8_t *out, size_t len,
                     const uint8_t tag[SEAL_TAG_LEN])
{
    int rc = len > UINT32_MAX ? EVP_UNUSABLE
                              : evp_open(key, nonce, ad, ad_len, in, out, (uint32_t)len, tag);
    if (rc == EVP_UNUSABLE)
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, in, len, tag, ad, ad_len,
                                                                nonce, key) == 0
                 ? 0
                 : ID_EAUTH;
    return rc == 0 ? 0 : ID_EAUTH;
}

static void record_nonce(uint64_t seq, uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES])
{
    memset(nonce, 0, crypto_aead_chacha20poly1305_IETF_NPUBBYTES);
    put_u64(nonce + 4, seq);
}

void seal_record(struct seal_dir *tx, uint8_t *rec, uint32_t len)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    record_nonce(tx->seq++, nonce);
    put_u32(rec, len);
    uint8_t *m = rec + SEAL_RECORD_LEN_BYTES;
    aead_seal(tx->key, nonce, rec, SEAL_RECORD_LEN_BYTES, m, len, m + len);
}

uint32_t seal_record_frame_len(const uint8_t rec[SEAL_RECORD_LEN_BYTES])
{
    return get_u32(rec);
}

int seal_open_record(struct seal_dir *rx, uint8_t *rec, uint32_t len)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    record_nonce(rx->seq, nonce);
    uint8_t *c = rec + SEAL_RECORD_LEN_BYTES;
    if (aead_open(rx->key, nonce, rec, SEAL_RECORD_LEN_BYTES, c, c, len, c + len) != 0)
        return ID_EAUTH;
    rx->seq++;
    return 0;
}

/* A record whose frame ends in a payload sealed end to end (seal.h): the
 * frame's head is encrypted, the payload is not touched, and the associated
 * data binds both lengths and the payload's own tag, so the payload can be
 * neither changed (its tag fails where it is opened) nor swapped for another
 * (this record's tag fails). */
static void tail_ad(const uint8_t *rec, uint32_t len,
                    uint8_t ad[SEAL_RECORD_TAIL_PREFIX + SEAL_TAG_LEN])
{
    memcpy(ad, rec, SEAL_RECORD_TAIL_PREFIX);
    memcpy(ad + SEAL_RECORD_TAIL_PREFIX, rec + SEAL_RECORD_TAIL_PREFIX + len - SEAL_TAG_LEN,
           SEAL_TAG_LEN);
}

void seal_record_tail(struct seal_dir *tx, uint8_t *rec, uint32_t len, uint32_t tail)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    record_nonce(tx->seq++, nonce);
    put_u32(rec, len | SEAL_RECORD_F_TAIL);
    put_u32(rec + SEAL_RECORD_LEN_BYTES, tail);
    uint8_t ad[SEAL_RECORD_TAIL_PREFIX + SEAL_TAG_LEN];
    tail_ad(rec, len, ad);
    uint8_t *m = rec + SEAL_RECORD_TAIL_PREFIX;
    uint32_t head = len - tail;
    aead_seal(tx->key, nonce, ad, sizeof ad, m, head, m + len);
}

int seal_record_is_tail(const uint8_t rec[SEAL_RECORD_LEN_BYTES])
{
    return (get_u32(rec) & SEAL_RECORD_F_TAIL) != 0;
}

int seal_record_tail_check(const uint8_t rec[SEAL_RECORD_TAIL_PREFIX], uint32_t *len,
                           uint32_t *tail)
{
    *len = get_u32(rec) & ~SEAL_RECORD_F_TAIL;
    *tail = get_u32(rec + SEAL_RECORD_LEN_BYTES);
    return *tail >= SEAL_PAYLOAD_OVERHEAD && *tail <= *len ? 0 : ID_EPROTO;
}

int seal_open_record_tail(struct seal_dir *rx, uint8_t *rec, uint32_t len, uint32_t tail)
{
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    record_nonce(rx->seq, nonce);
    uint8_t ad[SEAL_RECORD_TAIL_PREFIX + SEAL_TAG_LEN];
    tail_ad(rec, len, ad);
    uint8_t *c = rec + SEAL_RECORD_TAIL_PREFIX;
    uint32_t head = len - tail;
    if (aead_open(rx->key, nonce, ad, sizeof ad, c, c, head, c + len) != 0)
        return ID_EAUTH;
    rx->seq++;
    return 0;
}

/* ---- payloads sealed end to end ----------------------------------------- */

/* The payload's own key: the ring's payload subkey hashed with the salt, so
 * every payload has a key used once (the nonce can then be fixed) and no
 * counter has to be kept between the client and the replicas. */
static void payload_key(const uint8_t master[SEAL_KEY_LEN], const uint8_t *salt,
                        uint8_t key[SEAL_KEY_LEN])
{
    crypto_generichash(key, SEAL_KEY_LEN, salt, SEAL_PAYLOAD_SALT, master, SEAL_KEY_LEN);
}

static void payload_ad(const uint8_t *p, uint64_t offset, uint8_t ad[SEAL_PAYLOAD_HEAD + 8])
{
    memcpy(ad, p, SEAL_PAYLOAD_HEAD);
    put_u64(ad + SEAL_PAYLOAD_HEAD, offset);
}

static const uint8_t payload_nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];

void seal_payload(const struct seal_keyring *kr, uint64_t offset, uint8_t *p, size_t len)
{
    memcpy(p, kr->id[0], SEAL_KEY_ID_LEN);
    randombytes_buf(p + SEAL_KEY_ID_LEN, SEAL_PAYLOAD_SALT);
    uint8_t key[SEAL_KEY_LEN], ad[SEAL_PAYLOAD_HEAD + 8];
    payload_key(kr->payload_key[0], p + SEAL_KEY_ID_LEN, key);
    payload_ad(p, offset, ad);
    uint8_t *m = p + SEAL_PAYLOAD_HEAD;
    aead_seal(key, payload_nonce, ad, sizeof ad, m, len, m + len);
    sodium_memzero(key, sizeof key);
}

int seal_open_payload(const struct seal_keyring *kr, uint64_t offset, const uint8_t *p, size_t n,
                      uint8_t *out)
{
    if (n < SEAL_PAYLOAD_OVERHEAD)
        return ID_EPROTO;
    int k = key_index(kr, p);
    if (k < 0)
        return ID_EAUTH;
    size_t len = n - SEAL_PAYLOAD_OVERHEAD;
    uint8_t key[SEAL_KEY_LEN], ad[SEAL_PAYLOAD_HEAD + 8];
    payload_key(kr->payload_key[k], p + SEAL_KEY_ID_LEN, key);
    payload_ad(p, offset, ad);
    const uint8_t *c = p + SEAL_PAYLOAD_HEAD;
    int rc = aead_open(key, payload_nonce, ad, sizeof ad, c, out, len, c + len);
    sodium_memzero(key, sizeof key);
    return rc;
}

/* ---- UDP datagrams ------------------------------------------------------- */

#define DG_HEAD (4 + SEAL_KEY_ID_LEN) /* magic, key id: associated data */
#define DG_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define DG_INNER 24 /* sender, seq, wall ms */

void seal_sender_init(struct seal_sender *s)
{
    randombytes_buf(&s->id, sizeof s->id);
    s->seq = 1;
}

size_t seal_datagram(const struct seal_keyring *kr, struct seal_sender *snd, uint64_t wall_ms,
                     const uint8_t *frame, size_t len, uint8_t *out)
{
    put_u32(out, SEAL_DGRAM_MAGIC);
    memcpy(out + 4, kr->id[0], SEAL_KEY_ID_LEN);
    uint8_t *nonce = out + DG_HEAD;
    randombytes_buf(nonce, DG_NONCE);
    uint8_t *m = nonce + DG_NONCE;
    put_u64(m, snd->id);
    put_u64(m + 8, snd->seq++);
    put_u64(m + 16, wall_ms);
    memcpy(m + DG_INNER, frame, len);
    size_t mlen = DG_INNER + len;
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(m, m + mlen, NULL, m, mlen, out, DG_HEAD,
                                                        NULL, nonce, kr->udp_key[0]);
    return DG_HEAD + DG_NONCE + mlen + SEAL_TAG_LEN;
}

static struct seal_replay_entry *replay_slot(struct seal_replay *rp, uint64_t sender)
{
    struct seal_replay_entry *oldest = NULL;
    for (size_t i = 0; i < rp->n; i++) {
        if (rp->e[i].sender == sender)
            return &rp->e[i];
        if (!oldest || rp->e[i].wall_ms < oldest->wall_ms)
            oldest = &rp->e[i];
    }
    if (rp->n < SEAL_REPLAY_SENDERS)
        oldest = &rp->e[rp->n++];
    /* A full table evicts the sender heard from longest ago. That is safe once
     * its newest datagram is older than the window (a replay of it is refused
     * as too old); more live senders than the table holds would reopen the
     * evicted one's window (docs/security.md). */
    memset(oldest, 0, sizeof *oldest);
    oldest->sender = sender;
    return oldest;
}

/* Records seq for the sender; ID_EEXIST if it was seen or is out of the window. */
static int replay_check(struct seal_replay *rp, uint64_t sender, uint64_t seq, uint64_t sent_ms)
{
    struct seal_replay_entry *e = replay_slot(rp, sender);
    if (e->top == 0) { /* new sender */
        e->top = seq;
        e->seen = 1;
    } else if (seq > e->top) {
        uint64_t shift = seq - e->top;
        e->seen = shift >= 64 ? 1 : (e->seen << shift) | 1;
        e->top = seq;
    } else {
        uint64_t back = e->top - seq;
        if (back >= 64 || (e->seen & (1ull << back)))
            return ID_EEXIST;
        e->seen |= 1ull << back;
    }
    if (sent_ms > e->wall_ms)
        e->wall_ms = sent_ms;
    return 0;
}

int seal_open_datagram(const struct seal_keyring *kr, struct seal_replay *rp, uint64_t wall_ms,
                       uint8_t *buf, size_t len, const uint8_t **frame, size_t *frame_len)
{
    if (len < SEAL_DGRAM_OVERHEAD || get_u32(buf) != SEAL_DGRAM_MAGIC)
        return ID_EPROTO;
    int k = key_index(kr, buf + 4);
    if (k < 0)
        return ID_EAUTH;
    uint8_t *nonce = buf + DG_HEAD;
    uint8_t *c = nonce + DG_NONCE;
    size_t clen = len - DG_HEAD - DG_NONCE - SEAL_TAG_LEN;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(c, NULL, c, clen, c + clen, buf,
                                                            DG_HEAD, nonce, kr->udp_key[k]) != 0)
        return ID_EAUTH;
    uint64_t sender = get_u64(c), seq = get_u64(c + 8), sent_ms = get_u64(c + 16);
    if (seq == 0)
        return ID_EPROTO;
    uint64_t skew = sent_ms > wall_ms ? sent_ms - wall_ms : wall_ms - sent_ms;
    if (skew > SEAL_DGRAM_WINDOW_MS)
        return ID_EEXIST;
    int rc = replay_check(rp, sender, seq, sent_ms);
    if (rc < 0)
        return rc;
    *frame = c + DG_INNER;
    *frame_len = clen - DG_INNER;
    return 0;
}
