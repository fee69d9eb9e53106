/* kv.h — a diagnostic key-value store replicated by the control plane.
 *
 * Used by tests and benchmarks only (`idunno ctl-put`, `ctl-get`): it gives
 * failover measurements a write to time and a value to check, without
 * depending on the later layers. Keys are strings up to KV_MAX_KEY bytes,
 * values bytes up to KV_MAX_VALUE. Every put raises the store's revision; a
 * put's result (CtlKvPutResult) carries the new revision.
 *
 * Commands: CTL_CMD_KV_PUT (CtlKvPut, version 1), CTL_CMD_KV_DEL (CtlKvGet,
 * version 1). Snapshot section: CtlKvState, version 1, sorted by key.
 */
#ifndef IDUNNO_CTL_KV_H
#define IDUNNO_CTL_KV_H

#include <stddef.h>
#include <stdint.h>

#include "ctl/sm.h"

#define KV_MAX_KEY 256
#define KV_MAX_VALUE 65536
#define KV_MAX_ENTRIES 200000

struct kv;

/* The operations to register with sm_register(sm, &kv_sm_ops, kv). */
extern const struct sm_ops kv_sm_ops;

/* Returns a new empty store or NULL; free with kv_destroy(). */
struct kv *kv_create(void);
void kv_destroy(struct kv *kv);

/* Looks a key up. On success *value points into the store (valid until the next
 * apply or restore) and *rev is the revision of the key's last put. Returns 0
 * or ID_ENOTFOUND. */
int kv_get(const struct kv *kv, const char *key, const uint8_t **value, size_t *len, uint64_t *rev);

uint64_t kv_revision(const struct kv *kv);
size_t kv_count(const struct kv *kv);

#endif
