/* array.c — room-making and sorted search for plain C arrays (array.h). */
#include "base/array.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int array_reserve(void *arrp, size_t *cap, size_t n, size_t more, size_t size, size_t first)
{
    if (more > SIZE_MAX - n)
        return ID_ENOMEM;
    size_t need = n + more;
    if (need <= *cap)
        return 0;
    size_t grown_cap = *cap ? *cap : (first ? first : 1);
    while (grown_cap < need) {
        if (grown_cap > SIZE_MAX / 2)
            return ID_ENOMEM;
        grown_cap *= 2;
    }
    if (size && grown_cap > SIZE_MAX / size)
        return ID_ENOMEM;
    /* The caller's pointer is read and written through memcpy: its type is
     * whatever the caller's element type is, never void *. */
    void *old;
    memcpy(&old, arrp, sizeof old);
    void *grown = realloc(old, grown_cap * size);
    if (!grown)
        return ID_ENOMEM;
    memcpy(arrp, &grown, sizeof grown);
    *cap = grown_cap;
    return 0;
}

size_t array_search(const void *base, size_t n, size_t size, const void *key,
                    int (*cmp)(const void *key, const void *elem), int *found)
{
    const char *b = base;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp(key, b + mid * size);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}
