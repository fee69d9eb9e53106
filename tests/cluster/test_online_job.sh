#!/usr/bin/env bash
# Online jobs (docs/scheduler.md, "Online jobs"): `launch MODEL BATCH
# --online` charges the model's online requests to a job, so the fair-time
# scheduler dispatches them among the batch jobs' queries.
#  - The job shows as online in `jobs`; `inference` refuses it clearly.
#  - Requests are answered right (top-1 equal to a bare ONNX Runtime run's),
#    and each answered request counts exactly one query of the job: `jobs`
#    converges to the number of answers, `qjob` has their latencies and
#    `assign` the workers that ran them.
#  - Beside a batch job of another model, both progress.
#  - A worker killed with -9 while clients keep asking: no request fails,
#    each answer is right, and the job's count still equals the answers.
#  - Then the coordinator killed with -9: no request fails, each answer is
#    right, and the count is off by at most the requests in flight then.
#  - Stopping the job: the model's requests are answered again without a job.
# timeout: 240
. "$(dirname "$0")/lib.sh"

N=24
text_lines "$N"
imgs=("$D"/lines/*.png)


cluster up 4 >/dev/null
wait_leader node1
cli node1 train text_direction --file "$M" --card "$CARD" >/dev/null
out=$(cli node1 launch text_direction 8 --online --weight 2) || fail "launch --online: $out"
assert_contains "$out" "launched online job"
kind=$(cli node2 --json jobs | json '[j["kind"] for j in d["jobs"] if j["model"] == "text_direction"][0]')
assert_eq "$kind" online "jobs shows the job as online"
assert_contains "$(cli node2 jobs)" "online" "the jobs table marks it"
cli node1 put "${imgs[0]}" set/a.png >/dev/null || fail "put"
out=$(cli node1 inference text_direction set 2>&1) && fail "inference into an online job was accepted"
assert_contains "$out" "online job"

# -- requests from several clients at once, each answer right and counted once
batch() { # batch K: 6 predicts of 2 images through node K, answers kept
  for r in 1 2 3 4 5 6; do
    local s=$(( (r * 3 + $1) % (N - 2) ))
    cli "node$1" --json predict text_direction "${imgs[@]:$s:2}" >"$D/b$1.$r.json" ||
      echo "node$1 request $r: $(cat "$D/b$1.$r.json")" >>"$D/failures"
  done
}
for k in 1 2 3 4; do batch "$k" & done
wait
[ ! -s "$D/failures" ] || fail "requests failed: $(cat "$D/failures")"
for f in "$D"/b*.json; do
  out=$(check_text_answer "$f") || fail "answer $f"
  assert_eq "$out" 2 "images answered in $f"
done
wait_until 20 field_is node1 text_direction queries_done 24 ||
  fail "the online job counts $(job_field node1 text_direction queries_done) queries for 24 answers"
cli node3 --json qjob text_direction >"$D/qjob.json" || fail "qjob"
python3 - "$D/qjob.json" <<'PY' || fail "qjob has not the requests' latencies: $(cat "$D/qjob.json")"
import json, sys
d = json.load(open(sys.argv[1]))
j = d["jobs"][0] if "jobs" in d else d
s = j["all"]
assert s["count"] == 24 and s["median_ms"] > 0 and s["p99_ms"] >= s["median_ms"], s
PY
assign=$(cli node2 assign)
assert_contains "$assign" "text_direction" "assign shows the online job"

# -- beside a batch job of another model: both answered
cli node1 train text_b --file "$M" --card "$CARD" >/dev/null
for i in 1 2 3 4 5 6; do cli node1 put "${imgs[$i]}" set/$i.png >/dev/null || fail "put $i"; done
cli node1 launch text_b 1 >/dev/null || fail "launch text_b"
cli node1 inference text_b set >/dev/null || fail "inference text_b"
cli node2 --json predict text_direction "${imgs[@]:3:2}" >"$D/beside.json" || fail "predict beside a batch job: $(cat "$D/beside.json")"
check_text_answer "$D/beside.json" >/dev/null || fail "answer beside a batch job"
wait_until 60 field_is node1 text_b images_done 7 ||
  fail "the batch job did $(job_field node1 text_b images_done) of 7 images"

# -- a worker killed with -9 while clients ask: none fails, each counted once
base=$(job_field node1 text_direction queries_done)
L=$(cli node1 --json status | json 'd["leader"]')
victim=node4; [ "$L" = node4 ] && victim=node3
clients=(); for n in 1 2 3 4; do [ "node$n" != "$L" ] && [ "node$n" != "$victim" ] && clients+=("$n"); done
for c in "${clients[@]}"; do predict_loop "$c" loop 2 & done
wait_until 30 answers_at_least loop 6 || fail "no answers before the kill"
kill -9 "$(cat "$IDUNNO_RUN_DIR/$victim/pid")"
before=$(answers loop)
wait_until 60 answers_at_least loop $((before + 10)) || fail "no answers after the worker died"
stop_loops loop
answered=$checked
want=$((base + answered))
wait_until 20 field_is "node${clients[0]}" text_direction queries_done "$want" ||
  fail "the online job counts $(job_field "node${clients[0]}" text_direction queries_done) queries for $want answers"
echo "$answered requests answered right while $victim died, each counted once"

# -- then the coordinator killed with -9 while the clients ask: none fails,
# each answer is right. The count may differ from the answers by the requests
# in flight at the kill (an answer whose commit died with the coordinator, or
# a request run again under the next one after its answer was lost).
rm -f "$D/stop"
for c in "${clients[@]}"; do predict_loop "$c" cloop 2 & done
wait_until 30 answers_at_least cloop 4 || fail "no answers before the coordinator's kill"
kill -9 "$(cat "$IDUNNO_RUN_DIR/$L/pid")"
before=$(answers cloop)
wait_until 30 leader_other_than "node${clients[0]}" "$L" || fail "no new coordinator"
wait_until 60 answers_at_least cloop $((before + 8)) || fail "no answers after the coordinator died"
stop_loops cloop
again=$checked
lo=$((want + again - ${#clients[@]})) hi=$((want + again + ${#clients[@]}))
counted_near() { local n; n=$(job_field "node${clients[0]}" text_direction queries_done) && [ "$n" -ge "$lo" ] && [ "$n" -le "$hi" ]; }
wait_until 20 counted_near ||
  fail "the online job counts $(job_field "node${clients[0]}" text_direction queries_done) queries for $((want + again)) answers"
counted=$(job_field "node${clients[0]}" text_direction queries_done)
echo "$again requests answered right while the coordinator $L died (counted $counted of $((want + again)))"

# -- stopped: the model's requests run without a job again
cli "node${clients[0]}" stop text_direction >/dev/null || fail "stop"
cli "node${clients[0]}" --json predict text_direction "${imgs[0]}" >"$D/after.json" || fail "predict after the stop: $(cat "$D/after.json")"
check_text_answer "$D/after.json" >/dev/null || fail "answer after the stop"
echo ok
