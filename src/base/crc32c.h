/* crc32c.h — CRC-32C (Castagnoli), the checksum of every frame and SDFS block. */
#ifndef IDUNNO_BASE_CRC32C_H
#define IDUNNO_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC-32C over buf[0..len). Start with crc = 0; feeding a buffer in
 * pieces gives the same result as feeding it whole. */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);

/* The same by the portable table code alone (tests compare the two). */
uint32_t crc32c_update_portable(uint32_t crc, const void *buf, size_t len);

static inline uint32_t crc32c(const void *buf, size_t len)
{
    return crc32c_update(0, buf, len);
}

#endif
