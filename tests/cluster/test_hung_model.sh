#!/usr/bin/env bash
# A hung model costs one job, not a node (docs/inference.md, "Model
# processes", the run deadline). On 3 daemons started with --test-hooks and
# --infer-timeout 3: a model whose runs hang their inference process (the
# generator's bad_hang, honoured only with that flag) runs beside the good
# tiny CNN. A hung process is killed (its pid gone) once its run is 3 s old,
# its runs are handed back to run again, the job is stopped once its model
# timed out a node's process 3 times, with the timeout in `jobs`; every
# daemon keeps its pid, the store works (put, ls, get) and the good job
# answers every image exactly once.
# timeout: 300
. "$(dirname "$0")/lib.sh"

IDUNNOD_ARGS="--test-hooks --infer-timeout 3" cluster up 3 >/dev/null
wait_leader node1
pids() { for i in 1 2 3; do cat "$IDUNNO_RUN_DIR/node$i/pid"; done; }
PIDS_BEFORE=$(pids)

D=$IDUNNO_RUN_DIR/data
mkdir -p "$D/models"
/usr/bin/python3 "$ROOT/tools/gen_models.py" --out "$D/models" --only bad_hang >/dev/null
"$ROOT/scripts/make-data.sh" --synthetic 40 "$D/set" >/dev/null
cli node2 put-dir "$D/set" set >/dev/null

cli node3 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
cli node3 train hanger --file "$D/models/bad_hang.onnx" >/dev/null
cli node1 launch hanger 5 >/dev/null
cli node1 launch tiny_cnn 5 >/dev/null
cli node2 inference hanger set >/dev/null
cli node2 inference tiny_cnn set >/dev/null

# (grep on the files themselves: `cat | grep -q` fails under pipefail when grep exits early)
logs_have() { grep -q -- "$1" "$IDUNNO_RUN_DIR"/node*/idunnod.log; }
hanger_pids() { sed -n 's/.*inference process \([0-9]*\) started for model hanger@.*/\1/p' "$IDUNNO_RUN_DIR"/node*/idunnod.log; }
# -- the first process of the hanging model: it hangs, and is killed
wait_until 60 logs_have "started for model hanger@" || fail "no process started for the hanging model"
PIDS_HANGER=$(hanger_pids)
PID=${PIDS_HANGER%%[!0-9]*}
killed() { logs_have "inference process $PID of model hanger@.*past the deadline of 3000 ms"; }
wait_until 60 killed || fail "process $PID was not killed at the deadline"
gone() { ! kill -0 "$PID" 2>/dev/null; }
wait_until 10 gone || fail "process $PID is still there after its kill"
logs_have "asks this process to hang" || fail "no inference process ran the hang hook"
# its runs were handed back to run again, the reason being the deadline
requeued() { logs_have "inference process $PID of model hanger@.*: a run took longer than 3 s and was killed, with [0-9]* runs in it (crash 1 of 3): they run again"; }
wait_until 10 requeued || fail "the runs of process $PID were not handed back"

# -- after 3 timeouts on a node the job is stopped, the reason in `jobs`
bad_stopped() { [ "$(job_field node2 hanger state)" = stopped ]; }
wait_until 150 bad_stopped || fail "the hanging job was not stopped: $(cli node2 jobs)"
ERR=$(job_field node2 hanger error)
assert_contains "$ERR" "crashed its inference process 3 times (last: a run took longer than 3 s and was killed)" \
  "the stop reason"
assert_contains "$(cli node2 jobs)" "a run took longer than 3 s and was killed" "jobs prints the reason"
logs_have "crashed its inference process 3 times (last: a run took longer than 3 s" ||
  fail "no node logged giving the model up"
# no process of the hanging model is left behind
for p in $(hanger_pids); do
  gone_p() { ! kill -0 "$p" 2>/dev/null; }
  wait_until 10 gone_p || fail "inference process $p of the hanging model is still alive"
done

# -- the good job: done, every image exactly once, no errors
good_done() { [ "$(job_field node1 tiny_cnn images_done)" = 40 ]; }
wait_until 120 good_done || fail "the good job did not finish: $(job_field node1 tiny_cnn images_done)/40"
wait_until 20 sh -c "'$IDUNNO' -s $(addr node3) --json results tiny_cnn | grep -q '\"pending_results\":0'" ||
  fail "results not written to SDFS"
cli node3 results tiny_cnn "$D/results.jsonl" >/dev/null
python3 - "$D/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = [r["image"] for r in rows]
assert len(names) == 40 and len(set(names)) == 40, (len(names), len(set(names)))
for r in rows:
    assert "error" not in r, r
PY

# -- no daemon died, and the store serves
assert_eq "$(pids)" "$PIDS_BEFORE" "daemon pids"
for p in $PIDS_BEFORE; do kill -0 "$p" || fail "daemon $p is gone"; done
head -c 100000 /dev/urandom >"$D/blob"
cli node1 put "$D/blob" after-hang >/dev/null
assert_contains "$(cli node2 ls after-hang)" "node"
cli node3 get after-hang "$D/blob.out" >/dev/null
cmp "$D/blob" "$D/blob.out" || fail "get returned other bytes"
echo ok
