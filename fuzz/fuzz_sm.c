/* fuzz_sm.c — libFuzzer target for the control plane's log-entry and snapshot
 * decoders, applied to a replica (kv, meta, the SDFS catalog, jobs): any bytes in, a rejected entry or a changed
 * state out, never a crash. The first byte picks entry or snapshot. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/kv.h"
#include "ctl/meta.h"
#include "ctl/sm.h"
#include "sched/jobs.h"
#include "sdfs/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct sm sm;
    sm_init(&sm);
    struct kv *kv = kv_create();
    struct meta *meta = meta_create();
    struct catalog *catalog = catalog_create();
    struct jobs *jobs = jobs_create();
    sm_register(&sm, &kv_sm_ops, kv);
    sm_register(&sm, &meta_sm_ops, meta);
    sm_register(&sm, &catalog_sm_ops, catalog);
    sm_register(&sm, &jobs_sm_ops, jobs);
    /* Copy to an 8-aligned buffer, as libraft hands entries over. */
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    memcpy(buf, data + 1, n);
    if (data[0] & 1) {
        if (sm_restore(&sm, buf, n) == 0) {
            /* A restored state must snapshot and restore again. */
            void *snap;
            size_t len;
            if (sm_snapshot(&sm, NULL, &snap, &len) == 0) {
                if (sm_restore(&sm, snap, len) != 0)
                    __builtin_trap();
                free(snap);
            }
        }
    } else {
        struct sm_result res = {.want_body = 1};
        uint64_t before = sm.applied;
        sm_apply_entry(&sm, buf, n, &res);
        if (sm.applied != before + 1)
            __builtin_trap();
        sm_result_clear(&res);
    }
    free(buf);
    kv_destroy(kv);
    meta_destroy(meta);
    catalog_destroy(catalog);
    jobs_destroy(jobs);
    return 0;
}
