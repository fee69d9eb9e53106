#!/usr/bin/env bash
# The cold start (docs/scheduler.md, "Cold start"): `train` loads the model
# on one worker; a launched job loads it further where its queries need it,
# in a slow start, and its queries go only to workers that have it loaded: no worker
# ever receives a query of a model version it has not loaded (each worker
# logs it if one does). `jobs` counts the workers with the job's version
# loaded. A new version pinned under load starts over the same way, and a
# new coordinator learns from the workers what they have (it dispatches
# without loading anything again). Every image is answered exactly once.
# timeout: 180
. "$(dirname "$0")/lib.sh"

logs() { cat "$IDUNNO_RUN_DIR"/node*/idunnod.log; }
leader() { cli node5 --json status | json 'd["leader"]'; }
cluster up 5 >/dev/null
wait_leader node1

D=$IDUNNO_RUN_DIR/data
"$ROOT/scripts/make-data.sh" --synthetic 200 "$D/set" >/dev/null
cli node2 put-dir "$D/set" set >/dev/null
M=$ROOT/models/tiny_cnn.onnx

cli node1 train tiny --file "$M" >/dev/null
# At train time one worker loads it, ahead of a job; no other does until a
# job needs it.
loaded_here() { [ "$(logs | grep -c "worker: model tiny loaded")" -ge 1 ]; }
wait_until 20 loaded_here || fail "no worker loaded the new model ahead of its job"
assert_eq "$(logs | grep -c "worker: model tiny loaded")" 1 "workers that loaded the model at train time"
assert_eq "$(logs | grep -c "loading model tiny@[0-9a-f]*\.1 on node[0-9], ahead of its job")" 1 \
  "loads at train time"
assert_eq "$(cli node3 --json models | json 'len(d["models"])')" 1 "models after train"

cli node1 launch tiny 1 >/dev/null
for _ in 1 2 3; do cli node2 inference tiny set >/dev/null; done
# done: every image queued so far answered, nothing queued or running
drained() {
  cli "$1" --json jobs | json 'int(d["jobs"][0]["images_done"] == d["jobs"][0]["images"] == '"$2"' and d["jobs"][0]["queued"] + d["jobs"][0]["inflight"] == 0)' | grep -q 1
}
wait_until 60 drained node3 600 || fail "the set was not answered 3 times"

# One load first: the coordinator's log starts one, and starts no other
# until an answer came.
# (The coordinator's own log, in its order: lines of one millisecond would
# not sort in it.)
first=$(grep -m2 -E "loading model tiny@|model tiny@.* loaded on" "$IDUNNO_RUN_DIR/$(leader)/idunnod.log" || true)
assert_eq "$(grep -c "loading model" <<<"$first")" 1 "loads before the first one was answered"
loaded=$(cli node3 --json jobs | json 'd["jobs"][0]["workers_loaded"]')
[ "$loaded" -ge 1 ] && [ "$loaded" -le 5 ] || fail "workers_loaded $loaded"
assert_contains "$(cli node3 jobs)" "LOADED"

# -- a new version pinned: it is loaded afresh (test_model_versions switches
#    under load)
cli node1 train tiny --file "$M" >/dev/null
cli node3 set-model-version tiny 2 >/dev/null
cli node2 inference tiny set >/dev/null
wait_until 60 drained node3 800 || fail "the set was not answered after the switch"
logs | grep -q "loading model tiny@[0-9a-f]*\.2 on" || fail "version 2 was never loaded"

# -- a coordinator change: the new one knows who has version 2 from the
#    workers and loads nothing again before dispatching
old=$(leader)
before=$(logs | grep -c "loading model tiny@[0-9a-f]*\.2 on")
kill -9 "$(cat "$IDUNNO_RUN_DIR/$old/pid")"
new_leader() {
  local l
  l=$(cli node5 --json status 2>/dev/null | json 'd.get("leader", "")') || return 1
  [ -n "$l" ] && [ "$l" != "$old" ]
}
wait_until 30 new_leader || fail "no new coordinator"
new=$(leader)
cli node5 inference tiny set >/dev/null
wait_until 60 drained node5 1000 || fail "the set was not answered after the coordinator change"
after=$(grep -c "loading model tiny@[0-9a-f]*\.2 on" "$IDUNNO_RUN_DIR/$new/idunnod.log" || true)
loaded=$(cli node5 --json jobs | json 'd["jobs"][0]["workers_loaded"]')
[ "$loaded" -ge 1 ] || fail "the new coordinator counts no worker with the model"
# The new coordinator started loads only on workers that had none (the one
# it replaced had loaded version 2 on $before workers, one of them itself).
[ "$after" -le $((5 - before + 1)) ] || fail "the new coordinator loaded again: $after loads"

# -- the invariant: no query reached a worker without its model loaded
if logs | grep "was not loaded here"; then fail "a query went to a worker without its model"; fi

# -- every image once per `inference` call: 5 calls, 1,000 result lines
wait_until 30 sh -c "'$IDUNNO' -s $(addr node5) --json results tiny | grep -q '\"pending_results\":0'" ||
  fail "results not written to SDFS"
cli node5 results tiny "$D/results.jsonl" >/dev/null
python3 - "$D/results.jsonl" <<'PY' || fail "result lines"
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 1000, len(rows)
names = collections.Counter(r["image"] for r in rows)
assert len(names) == 200 and set(names.values()) == {5}, collections.Counter(names.values())
versions = collections.Counter(r["version"] for r in rows)
assert versions[1] == 600 and versions[2] == 400, versions
assert all("error" not in r for r in rows), [r for r in rows if "error" in r][:3]
PY
echo ok
