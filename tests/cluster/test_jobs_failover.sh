#!/usr/bin/env bash
# No query lost, none stored twice, across failures on 6 daemons: a job of
# 9,000 single-image queries (a data set of 600 images queued 15 times, tiny
# model) while a worker is killed (its queries run
# again elsewhere) and then the coordinator itself (a standby takes over,
# adopts what the workers hold and goes on). Every image ends with exactly one
# result in SDFS, and the statistics carry over.
#
# With IDUNNO_FAILOVER_SEED=N (bench/failover_runs.sh runs it so, 20 times)
# the victim and the moments of both kills are drawn from that seed;
# without it the run is the fixed one below.
# timeout: 240
. "$(dirname "$0")/lib.sh"

cluster up 6 >/dev/null
wait_leader node1
leader() { cli "$1" --json status 2>/dev/null | json 'd["leader"]'; }

D=$IDUNNO_RUN_DIR/data
"$ROOT/scripts/make-data.sh" --synthetic 600 "$D/set" >/dev/null
cli node6 put-dir "$D/set" set >/dev/null
cli node6 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
cli node6 launch tiny_cnn 1 >/dev/null
for i in $(seq 1 15); do cli node6 inference tiny_cnn set >/dev/null; done
TOTAL=9000

done_images() { cli "$1" --json qinfo tiny_cnn 2>/dev/null | json 'd["jobs"][0]["images_done"]'; }
at_least() { local n; n=$(done_images "$1") && [ "${n:-0}" -ge "$2" ]; }

seed=${IDUNNO_FAILOVER_SEED:-}
first=200; gap=300
if [ -n "$seed" ]; then
  RANDOM=$seed
  first=$((200 + RANDOM % 3000)); gap=$((100 + RANDOM % 2000))
fi

# -- a worker dies mid-job: not a voter (a standby and then the coordinator
# dead would leave one voter of three, no quorum until the 30 s voter
# replacement), not the node we talk to
wait_until 60 at_least node6 "$first" || fail "job did not reach $first images"
L=$(leader node6)
victim=node5; [ "$L" = node5 ] && victim=node4
if [ -n "$seed" ] && [ $((RANDOM % 2)) = 1 ] && [ "$L" != node4 ]; then victim=node4; fi
kill -9 "$(cat "$IDUNNO_RUN_DIR/$victim/pid")"
before=$(done_images node6)
[ -z "$seed" ] || echo "seed $seed: worker $victim killed at $before images"

# -- then the coordinator dies mid-job
next=$((before + gap)); [ "$next" -le "$TOTAL" ] || next=$TOTAL
wait_until 60 at_least node6 "$next" || fail "job stalled after the worker kill at $before"
[ "$(done_images node6)" -lt "$TOTAL" ] || echo "note: the job finished before the coordinator was killed"
L=$(leader node6)
[ -n "$L" ] && [ "$L" != node6 ] || fail "unexpected leader '$L'"
kill -9 "$(cat "$IDUNNO_RUN_DIR/$L/pid")"
[ -z "$seed" ] || echo "seed $seed: coordinator $L killed at $(done_images node6) images"
new_leader() { local l; l=$(leader node6) && [ -n "$l" ] && [ "$l" != "$L" ]; }
wait_until 20 new_leader || fail "no new coordinator"
wait_until 120 at_least node6 "$TOTAL" || fail "job did not finish: $(done_images node6)/$TOTAL"
wait_until 30 sh -c "'$IDUNNO' -s $(addr node6) --json results tiny_cnn | grep -q '\"pending_results\":0'" ||
  fail "results not all written to SDFS"
cli node6 results tiny_cnn "$D/results.jsonl" >/dev/null
python3 - "$D/results.jsonl" <<'PY'
import json, sys
from collections import Counter
rows = [json.loads(l) for l in open(sys.argv[1])]
# Each of the 600 names was queued 15 times: 15 results each, no more, no less.
count = Counter(r["image"] for r in rows)
assert len(count) == 600 and set(count.values()) == {15}, \
    f"{len(rows)} results for {len(count)} names; counts {sorted(set(count.values()))}"
assert not any("error" in r for r in rows), [r for r in rows if "error" in r][:3]
PY
# The statistics survived the coordinator change.
assert_eq "$(cli node6 --json qjob tiny_cnn | json 'd["jobs"][0]["all"]["count"]')" \
          "$(cli node6 --json qinfo tiny_cnn | json 'd["jobs"][0]["queries_done"]')" "stats count"
echo "ok (duplicates computed and dropped: $(cli node6 --json jobs | json 'd["jobs"][0]["duplicates"]'))"
