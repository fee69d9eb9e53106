/* array.h — the two things every growable array in the tree does: make room
 * (array_reserve, overflow-checked) and find a key in a sorted array
 * (array_search).
 *
 * Threading: none of its own; an array belongs to whoever owns its struct.
 */
#ifndef IDUNNO_BASE_ARRAY_H
#define IDUNNO_BASE_ARRAY_H

#include <stddef.h>

/* Makes room for `more` elements after the first n, each of `size` bytes, in
 * the array whose pointer is at *arrp (any element type) and whose capacity,
 * in elements, is *cap. The capacity starts at `first` and doubles, so
 * appending one element at a time costs amortised O(1). Returns 0 (the room
 * was there or was made) or ID_ENOMEM (realloc failed, or n + more elements
 * would not fit in size_t bytes); on failure *arrp and *cap are unchanged, so
 * the array is still valid. */
int array_reserve(void *arrp, size_t *cap, size_t n, size_t more, size_t size, size_t first);

/* array_reserve for an array `arr` (an lvalue of pointer type) with capacity
 * `cap` (an lvalue of type size_t). */
#define ARRAY_RESERVE(arr, cap, n, more, first) \
    array_reserve(&(arr), &(cap), (n), (more), sizeof *(arr), (first))

/* Binary search of the n elements of `size` bytes at base, sorted by cmp
 * (negative, 0, positive as for bsearch: key against element). Returns the
 * index of the element equal to key (*found 1), else the index where key would
 * be inserted to keep the order (*found 0). */
size_t array_search(const void *base, size_t n, size_t size, const void *key,
                    int (*cmp)(const void *key, const void *elem), int *found);

#endif
