/* gate.h — a host-wide limit on model runs at once.
 *
 * Every node runs its own inference worker. On a machine that holds several
 * nodes (a local cluster: ten daemons on two cores) each would run its batch
 * at the same time, and ten CPU-bound sessions time-slicing two cores, each
 * with its own 100 MB of weights going through the caches, get less done than
 * two running at a time. The gate admits `slots` model runs at once across
 * every process on the host that opens the same directory: one lock file per
 * slot, held with flock(2) while a session runs. A process that dies holding
 * a slot releases it with its file descriptors, so a kill -9 never leaks one.
 * Decoding stays outside the gate; it overlaps the runs.
 *
 * On a machine with one node the gate is never contended, and costs two
 * flock calls per batch.
 *
 * Threading: enter/exit from any thread, but a gate admits one run at a time
 * per process on each slot it holds: locks belong to the process's open files,
 * so two threads of one process sharing a gate would share a slot. The worker
 * runs one batch at a time, which fits; a process with several runners opens
 * one gate for each.
 */
#ifndef IDUNNO_INFER_GATE_H
#define IDUNNO_INFER_GATE_H

#include <stddef.h>

#define INFER_GATE_MAX_SLOTS 64

struct infer_gate;

/* Opens (creating) DIR/slot-K for K < slots. Returns 0 or ID_E* with errmsg. */
int infer_gate_open(const char *dir, unsigned slots, struct infer_gate **out, char *errmsg,
                    size_t len);
void infer_gate_close(struct infer_gate *g);

/* Waits for a free slot and holds it; returns its index (never fails: if
 * locking is impossible the run goes ahead ungated, returning -1). */
int infer_gate_enter(struct infer_gate *g);
void infer_gate_exit(struct infer_gate *g, int slot);

/* The default directory: $XDG_RUNTIME_DIR, /dev/shm or /tmp, then
 * idunno-infer-gate.UID. */
void infer_gate_default_dir(char *out, size_t len);

#endif
