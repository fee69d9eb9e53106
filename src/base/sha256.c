/* sha256.c — SHA-256 as specified in FIPS 180-4, section 6.2, in portable C
 * and, where the CPU has the SHA extensions, with them (SDFS checks every byte
 * it stores and serves, so the hash sits on the data path: the extensions are
 * several times faster). The two give identical digests (tests/unit/test_base.c
 * compares them on random input). */
#include "base/sha256.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define SHA256_HAVE_NI_CODE 1
#endif

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror32(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block_c(struct sha256 *s, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha256_k[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

/* Portable: n blocks of 64 bytes. */
static void sha256_blocks_c(struct sha256 *s, const uint8_t *p, size_t n)
{
    for (; n; n--, p += 64)
        sha256_block_c(s, p);
}

#ifdef SHA256_HAVE_NI_CODE
/* The SHA extensions keep the state in two registers, ABEF and CDGH (lanes
 * high to low), and run two rounds per sha256rnds2 with the message words
 * plus round constants in the low half of its third operand. */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_blocks_ni(struct sha256 *s,
                                                                         const uint8_t *p, size_t n)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abcd = _mm_loadu_si128((const __m128i *)&s->h[0]);
    __m128i efgh = _mm_loadu_si128((const __m128i *)&s->h[4]);
    __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);
    __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);
    __m128i state0 = _mm_alignr_epi8(badc, hgfe, 8);    /* ABEF */
    __m128i state1 = _mm_blend_epi16(hgfe, badc, 0xF0); /* CDGH */
    for (; n; n--, p += 64) {
        __m128i save0 = state0, save1 = state1;
        __m128i w[4];
        for (int i = 0; i < 4; i++)
            w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        for (int i = 0; i < 16; i++) {
            __m128i cur;
            if (i < 4) {
                cur = w[i];
            } else {
                /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four at a time. */
                __m128i t = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
                t = _mm_add_epi32(t, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
                cur = _mm_sha256msg2_epu32(t, w[(i + 3) & 3]);
                w[i & 3] = cur;
            }
            __m128i k = _mm_loadu_si128((const __m128i *)&sha256_k[4 * i]);
            __m128i m = _mm_add_epi32(cur, k);
            state1 = _mm_sha256rnds2_epu32(state1, state0, m);
            state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(m, 0x0E));
        }
        state0 = _mm_add_epi32(state0, save0);
        state1 = _mm_add_epi32(state1, save1);
    }
    __m128i feba = _mm_shuffle_epi32(state0, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(state1, 0xB1);
    _mm_storeu_si128((__m128i *)&s->h[0], _mm_blend_epi16(feba, dchg, 0xF0)); /* ABCD */
    _mm_storeu_si128((__m128i *)&s->h[4], _mm_alignr_epi8(dchg, feba, 8));    /* EFGH */
}
#endif

static void (*sha256_blocks)(struct sha256 *, const uint8_t *, size_t);

/* Picks the implementation once (the CPU does not change). Racing threads
 * would only both store the same pointer. */
static void sha256_pick(void)
{
#ifdef SHA256_HAVE_NI_CODE
    /* CPUID directly: not every compiler's __builtin_cpu_supports knows "sha".
     * Leaf 7 EBX bit 29: SHA; leaf 1 ECX bits 19 and 9: SSE4.1, SSSE3. */
    unsigned a, b, c, d;
    int sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 29 & 1);
    int sse = __get_cpuid(1, &a, &b, &c, &d) && (c >> 19 & 1) && (c >> 9 & 1);
    if (sha && sse) {
        __atomic_store_n(&sha256_blocks, sha256_blocks_ni, __ATOMIC_RELAXED);
        return;
    }
#endif
    __atomic_store_n(&sha256_blocks, sha256_blocks_c, __ATOMIC_RELAXED);
}

static void sha256_block(struct sha256 *s, const uint8_t *p, size_t n)
{
    void (*fn)(struct sha256 *, const uint8_t *, size_t) = __atomic_load_n(&sha256_blocks,
                                                                           __ATOMIC_RELAXED);
    if (!fn) {
        sha256_pick();
        fn = __atomic_load_n(&sha256_blocks, __ATOMIC_RELAXED);
    }
    fn(s, p, n);
}

int sha256_use_portable(int on)
{
    int was = __atomic_load_n(&sha256_blocks, __ATOMIC_RELAXED) == sha256_blocks_c;
    if (on)
        __atomic_store_n(&sha256_blocks, sha256_blocks_c, __ATOMIC_RELAXED);
    else
        sha256_pick();
    return was;
}

void sha256_init(struct sha256 *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->bytes = 0;
    s->fill = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (len == 0)
        return;
    s->bytes += len;
    if (s->fill) {
        size_t take = 64 - s->fill < len ? 64 - s->fill : len;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        len -= take;
        if (s->fill < 64)
            return;
        sha256_block(s, s->block, 1);
        s->fill = 0;
    }
    if (len >= 64) {
        sha256_block(s, p, len / 64);
        p += len - len % 64;
        len %= 64;
    }
    memcpy(s->block, p, len);
    s->fill = len;
}

void sha256_update_u64(struct sha256 *s, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    sha256_update(s, b, 8);
}

void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = s->fill < 56 ? 56 - s->fill : 120 - s->fill;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    /* update() would count the padding into s->bytes; that is harmless since
     * the length was captured above. */
    sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void sha256_hex(const uint8_t digest[SHA256_LEN], char out[2 * SHA256_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_LEN; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[2 * SHA256_LEN] = 0;
}
