/* sha256.h — SHA-256 (FIPS 180-4), for state digests that replicas compare.
 * Incremental: init, update any number of times, final. */
#ifndef IDUNNO_BASE_SHA256_H
#define IDUNNO_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256 {
    uint32_t h[8];
    uint64_t bytes;    /* total length so far */
    uint8_t block[64]; /* partial block */
    size_t fill;       /* bytes used in block */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);

/* Feeds an integer in a fixed (big-endian) byte order, so digests do not depend
 * on the host. */
void sha256_update_u64(struct sha256 *s, uint64_t v);

/* Tests: 1 forces the portable code, 0 returns to the fastest the CPU has.
 * Returns whether the portable code was in use. */
int sha256_use_portable(int on);

/* Writes 64 lowercase hex digits and a NUL into out (at least 65 bytes). */
void sha256_hex(const uint8_t digest[SHA256_LEN], char out[2 * SHA256_LEN + 1]);

#endif
