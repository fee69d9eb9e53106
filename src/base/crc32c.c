/* crc32c.c — CRC-32C with the SSE4.2 instruction where the CPU has it (three
 * chains at once on long buffers) and a slicing-by-8 table otherwise. The
 * tables are built once, thread-safely. */
#include "base/crc32c.h"

#include <pthread.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;
static int crc_have_sse42;

#if defined(__x86_64__)
static void crc_shift_init(void);
#endif

static void crc_table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = (crc_table[t - 1][n] >> 8) ^ crc_table[0][crc_table[t - 1][n] & 0xff];
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_have_sse42 = __builtin_cpu_supports("sse4.2");
    if (crc_have_sse42)
        crc_shift_init();
#endif
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t len)
{
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc; /* little-endian host: the low bytes take the running crc */
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
/* One crc32 instruction takes 8 bytes but its result is ready only 3 cycles
 * later, so a single chain runs at a third of the instruction's throughput.
 * Long buffers are cut into blocks of three lanes of CRC_LANE bytes, each lane
 * its own chain; the lanes are joined with crc(A || B) = shift(crc(A), |B|) ^
 * crc0(B), where crc0 starts from 0 and shift multiplies by x^(8*CRC_LANE)
 * modulo the polynomial. shift is linear over GF(2), so it is a lookup per
 * byte of its argument in tables built once (crc_shift). */
#define CRC_LANE 4096

static uint32_t crc_shift[4][256];

__attribute__((target("sse4.2"))) static uint32_t crc_hw_chain(uint64_t c, const unsigned char *p,
                                                               size_t len)
{
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

/* The register after CRC_LANE zero bytes, from the single-bit values: with
 * the register linear in its start value, shift(x) is the XOR of the images
 * of x's bits, tabulated per byte. */
__attribute__((target("sse4.2"))) static void crc_shift_init(void)
{
    static const unsigned char zeros[CRC_LANE];
    uint32_t bit_image[32];
    for (int b = 0; b < 32; b++)
        bit_image[b] = crc_hw_chain(1ull << b, zeros, CRC_LANE);
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t img = 0;
            for (int j = 0; j < 8; j++)
                if (v & (1u << j))
                    img ^= bit_image[8 * k + j];
            crc_shift[k][v] = img;
        }
}

static inline uint32_t crc_shift_lane(uint32_t c)
{
    return crc_shift[0][c & 0xff] ^ crc_shift[1][(c >> 8) & 0xff] ^ crc_shift[2][(c >> 16) & 0xff] ^
           crc_shift[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p,
                                                         size_t len)
{
    while (len >= 3 * CRC_LANE) {
        uint64_t c0 = crc, c1 = 0, c2 = 0;
        const unsigned char *p1 = p + CRC_LANE, *p2 = p + 2 * CRC_LANE;
        for (size_t i = 0; i < CRC_LANE; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p1 + i, 8);
            memcpy(&w2, p2 + i, 8);
            c0 = __builtin_ia32_crc32di(c0, w0);
            c1 = __builtin_ia32_crc32di(c1, w1);
            c2 = __builtin_ia32_crc32di(c2, w2);
        }
        crc = crc_shift_lane(crc_shift_lane((uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * CRC_LANE;
        len -= 3 * CRC_LANE;
    }
    return crc_hw_chain(crc, p, len);
}
#endif

uint32_t crc32c_update_portable(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_table_once, crc_table_init);
    return ~crc_sw(~crc, buf, len);
}

uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_table_once, crc_table_init);
    crc = ~crc;
#if defined(__x86_64__)
    if (crc_have_sse42)
        return ~crc_hw(crc, buf, len);
#endif
    return ~crc_sw(crc, buf, len);
}
