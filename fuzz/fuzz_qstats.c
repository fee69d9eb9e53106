/* fuzz_qstats.c — libFuzzer target for the query statistics' restore, which
 * is fed snapshots from the network: any bytes in, ID_EPROTO or a state out,
 * never a crash. Restore accepts only canonical bytes, so a state it accepts
 * must serialise back to exactly the input, and restore from those again. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "sched/qstats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qstats *q = qstats_create();
    if (!q)
        return 0;
    int rc = qstats_restore(q, data, size);
    if (rc != 0 && rc != ID_EPROTO && rc != ID_ENOMEM)
        __builtin_trap();
    if (rc == 0) {
        uint8_t *a, *b;
        size_t na, nb;
        if (qstats_serialize(q, &a, &na) != 0)
            __builtin_trap();
        if (na != size || memcmp(a, data, size) != 0)
            __builtin_trap();
        struct qstats *r = qstats_create();
        if (qstats_restore(r, a, na) != 0 || qstats_serialize(r, &b, &nb) != 0)
            __builtin_trap();
        if (na != nb || memcmp(a, b, na) != 0)
            __builtin_trap();
        /* The readers must cope with whatever was accepted. */
        struct qstats_summary s;
        struct qstats_share sh[4];
        uint64_t now = size >= 9 ? data[1] * 1000ull : 0;
        qstats_all(q, &s);
        qstats_window(q, now, &s);
        qstats_shares(q, now, sh, 4);
        (void)qstats_rate(q, now);
        rc = qstats_record(q, now, 5, "fuzz"); /* ENOMEM: 1024 names all in use */
        if (rc != 0 && rc != ID_ENOMEM)
            __builtin_trap();
        free(a);
        free(b);
        qstats_destroy(r);
    }
    qstats_destroy(q);
    return 0;
}
