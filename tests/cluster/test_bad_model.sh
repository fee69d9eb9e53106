#!/usr/bin/env bash
# A bad model costs one job, not a node (docs/inference.md, "Model
# processes"). On 4 daemons started with --test-hooks: a model whose runs
# abort its inference process (the generator's bad_crash, honoured only with
# that flag) runs beside the good tiny CNN. Every daemon keeps its pid, the
# store and the control plane keep working (a put and a get), the bad job is
# stopped after its model crashed a node's process 3 times, with the reason
# in `jobs` and the logs, it stays stopped across a node's restart, and the
# good job answers every image exactly once. A model whose declared output
# cannot be served is refused by `train`.
# timeout: 300
. "$(dirname "$0")/lib.sh"

IDUNNOD_ARGS="--test-hooks" cluster up 4 >/dev/null
wait_leader node1
pids() { for i in 1 2 3 4; do cat "$IDUNNO_RUN_DIR/node$i/pid"; done; }
PIDS_BEFORE=$(pids)

D=$IDUNNO_RUN_DIR/data
mkdir -p "$D/models"
/usr/bin/python3 "$ROOT/tools/gen_models.py" --out "$D/models" --only bad_crash,bad_huge_classes >/dev/null
"$ROOT/scripts/make-data.sh" --synthetic 60 "$D/set" >/dev/null
cli node2 put-dir "$D/set" set >/dev/null

# -- a declared shape no buffer should be sized from is refused at train time
set +e; cli node1 train huge --file "$D/models/bad_huge_classes.onnx" 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "train of a model declaring 4294967306 classes"
assert_contains "$(cat "$D/err")" "4294967306 classes"

# -- the crashing model and the good one, side by side
cli node3 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
cli node3 train crasher --file "$D/models/bad_crash.onnx" >/dev/null
cli node1 launch crasher 5 >/dev/null
cli node1 launch tiny_cnn 5 >/dev/null
cli node4 inference crasher set >/dev/null
cli node4 inference tiny_cnn set >/dev/null

bad_stopped() { [ "$(job_field node2 crasher state)" = stopped ]; }
wait_until 120 bad_stopped || fail "the crashing job was not stopped: $(cli node2 jobs)"
ERR=$(job_field node2 crasher error)
assert_contains "$ERR" "crashed its inference process 3 times" "the stop reason"
assert_contains "$(cli node2 jobs)" "was stopped: model crasher@" "jobs prints the reason"

good_done() { [ "$(job_field node1 tiny_cnn images_done)" = 60 ]; }
wait_until 120 good_done || fail "the good job did not finish: $(job_field node1 tiny_cnn images_done)/60"

# -- no daemon died: same pids, each still running
assert_eq "$(pids)" "$PIDS_BEFORE" "daemon pids"
for p in $PIDS_BEFORE; do kill -0 "$p" || fail "daemon $p is gone"; done
# The crashes happened in inference processes and were logged as such; the
# node that gave the model up says so.
cat "$IDUNNO_RUN_DIR"/node*/idunnod.log >"$D/all.log"
grep -q "asks this process to crash" "$D/all.log" || fail "no inference process ran the crash hook"
grep -q "(crash 1 of 3): they run again in a new process" "$D/all.log" || fail "no crash logged"
grep -q "crashed its inference process 3 times" "$D/all.log" || fail "no node gave the model up"
grep -q "stopped: worker node[0-9] reports" "$D/all.log" || fail "the coordinator did not log the stop"

# -- the store and the control plane work
head -c 100000 /dev/urandom >"$D/blob"
cli node1 put "$D/blob" after-crashes >/dev/null
cli node4 get after-crashes "$D/blob.out" >/dev/null
cmp "$D/blob" "$D/blob.out" || fail "get returned other bytes"

# -- the good job: every image exactly once, no errors
wait_until 20 sh -c "'$IDUNNO' -s $(addr node4) --json results tiny_cnn | grep -q '\"pending_results\":0'" ||
  fail "results not written to SDFS"
cli node4 results tiny_cnn "$D/results.jsonl" >/dev/null
python3 - "$D/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = [r["image"] for r in rows]
assert len(names) == 60 and len(set(names)) == 60, (len(names), len(set(names)))
for r in rows:
    assert "error" not in r, r
    assert len(r["top"]) == 5, r
PY

# -- a restarted node does not bring the job back: it stays stopped
cluster kill node2
cluster start node2 >/dev/null
node2_back() { [ "$(job_field node2 crasher state 2>/dev/null)" = stopped ]; }
wait_until 30 node2_back || fail "after a restart the crashing job is not stopped"
assert_contains "$(job_field node2 crasher error)" "crashed its inference process 3 times" "reason kept"
echo ok
