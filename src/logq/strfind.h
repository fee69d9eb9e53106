/* strfind.h — fixed-string search in a byte buffer, exact or ignoring ASCII
 * case: the inner loop of `idunno grep`. Pure; the AVX2 kernel is chosen at
 * run time when the CPU has it, otherwise a portable one runs. */
#ifndef IDUNNO_LOGQ_STRFIND_H
#define IDUNNO_LOGQ_STRFIND_H

#include <stddef.h>

/* The first occurrence of needle[0..nlen) in hay[0..hlen), or NULL (also for
 * an empty needle). With fold, ASCII letters match either case and the
 * needle must already be lower case. hay and needle may hold NUL bytes. */
const char *strfind(const char *hay, size_t hlen, const char *needle, size_t nlen, int fold);

/* The same with the portable kernel only: the reference that tests compare
 * the fast kernel with. */
const char *strfind_portable(const char *hay, size_t hlen, const char *needle, size_t nlen,
                             int fold);

/* Which kernel strfind uses on this CPU: "avx2" or "portable". */
const char *strfind_kernel(void);

#endif
