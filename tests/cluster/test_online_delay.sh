#!/usr/bin/env bash
# An online job's maximum queue delay (docs/scheduler.md, "Online jobs"):
# `launch MODEL BATCH --online --max-queue-delay US` and `set-max-queue-delay`.
#  - Bad values are refused with a clear error: the option without --online,
#    a delay above 1,000,000 us or not a number, and a delay for a batch job
#    (the coordinator's refusal).
#  - The delay shows in `jobs` (text and --json) and in launch's answer;
#    without --max-queue-delay an online job gets the default, 2000 us.
#  - Requests from several clients at once are answered right (top-1 equal to
#    a bare ONNX Runtime run's) and each counted once.
#  - set-max-queue-delay changes it; after the coordinator is killed with -9,
#    the next one has the same delay (it is replicated with the job) and its
#    requests are answered right.
# timeout: 150
. "$(dirname "$0")/lib.sh"

N=12
text_lines "$N"
imgs=("$D"/lines/*.png)

# refused WHAT TEXT CMD...: CMD fails and says TEXT on stderr.
refused() {
  local what=$1 text=$2 out; shift 2
  out=$("$@" 2>&1) && fail "$what was accepted: $out"
  assert_contains "$out" "$text" "$what"
}

cluster up 4 >/dev/null
wait_leader node1
cli node1 train text_direction --file "$M" --card "$CARD" >/dev/null
cli node1 train text_b --file "$M" --card "$CARD" >/dev/null

# -- bad values
refused "a queue delay without --online" "for online jobs only" \
  cli node1 launch text_direction 8 --max-queue-delay 500
refused "a queue delay of 1000001 us" "at most 1000000 us" \
  cli node1 launch text_direction 8 --online --max-queue-delay 1000001
refused "a queue delay that is no number" "number of microseconds" \
  cli node1 launch text_direction 8 --online --max-queue-delay 2ms
refused "a negative queue delay" "number of microseconds" \
  cli node1 launch text_direction 8 --online --max-queue-delay -5
cli node1 launch text_b 4 >/dev/null || fail "launch of a batch job"
refused "set-max-queue-delay of a batch job" "not an online job" \
  cli node2 set-max-queue-delay text_b 500
refused "set-max-queue-delay of a model without a job" "no running job" \
  cli node2 set-max-queue-delay nojob 500
refused "set-max-queue-delay above the bound" "at most 1000000 us" \
  cli node2 set-max-queue-delay text_b 2000000
assert_eq "$(cli node1 --json jobs | json 'len(d["jobs"])')" 1 "jobs after the refused launches"

# -- launched with a delay: shown by launch and jobs
out=$(cli node1 launch text_direction 8 --online --max-queue-delay 2000) || fail "launch: $out"
assert_contains "$out" "max queue delay 2000 us"
assert_eq "$(job_field node2 text_direction max_queue_delay_us)" 2000 "jobs --json"
assert_eq "$(job_field node2 text_b max_queue_delay_us)" 0 "a batch job's delay in jobs --json"
assert_contains "$(cli node3 jobs)" " 8/2000us " "the jobs table shows the batch with the delay"

# -- launch --online without a delay takes the default of 2000 us; 0 turns it off
cli node1 train text_c --file "$M" --card "$CARD" >/dev/null
out=$(cli node1 launch text_c 4 --online) || fail "launch without a delay: $out"
assert_contains "$out" "max queue delay 2000 us"
out=$(cli node1 set-max-queue-delay text_c 0) || fail "set-max-queue-delay 0: $out"
assert_eq "$(job_field node2 text_c max_queue_delay_us)" 0 "the delay turned off"

# -- requests from several clients at once: answered right, each counted once
ask() { # ask K TAG: 4 predicts of 1 or 2 images through node K, answers kept
  for r in 1 2 3 4; do
    local s=$(( (r * 3 + $1) % (N - 2) )) n=$(( 1 + (r + $1) % 2 ))
    cli "node$1" --json predict text_direction "${imgs[@]:$s:$n}" >"$D/$2.$1.$r.json" ||
      echo "node$1 request $r: $(cat "$D/$2.$1.$r.json")" >>"$D/failures"
  done
}
for k in 1 2 3 4; do ask "$k" first & done
wait
[ ! -s "$D/failures" ] || fail "requests failed: $(cat "$D/failures")"
for f in "$D"/first.*.json; do check_text_answer "$f" >/dev/null || fail "answer $f"; done
wait_until 20 field_is node1 text_direction queries_done 16 ||
  fail "the online job counts $(job_field node1 text_direction queries_done) queries for 16 answers"

# -- changed, then the coordinator killed: the next one has the same delay
out=$(cli node2 set-max-queue-delay text_direction 5000) || fail "set-max-queue-delay: $out"
assert_contains "$out" "updated online job [0-9]* of text_direction: .*max queue delay 5000 us"
assert_eq "$(job_field node3 text_direction max_queue_delay_us)" 5000 "after set-max-queue-delay"
L=$(cli node1 --json status | json 'd["leader"]')
kill -9 "$(cat "$IDUNNO_RUN_DIR/$L/pid")"
other=node1; [ "$L" = node1 ] && other=node2
wait_until 30 leader_other_than "$other" "$L" || fail "no new coordinator"
assert_eq "$(job_field "$other" text_direction max_queue_delay_us)" 5000 "under the new coordinator"
n=0
for k in 1 2 3 4; do
  [ "node$k" = "$L" ] && continue
  n=$((n + 1))
  cli "node$k" --json predict text_direction "${imgs[@]:$k:2}" >"$D/after.$k.json" ||
    fail "predict through node$k under the new coordinator: $(cat "$D/after.$k.json")"
  check_text_answer "$D/after.$k.json" >/dev/null || fail "answer through node$k"
done
echo "$n requests answered right under the new coordinator, delay 5000 us kept"
echo ok
