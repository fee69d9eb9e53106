#!/usr/bin/env bash
# Result parts across coordinator kills: a job of the tiny model runs while
# the coordinator is killed (kill -9) and restarted again and again, with a
# data set queued anew before each kill, so results are being written to
# SDFS by one coordinator when the next takes over. In the end every queued
# image has exactly one result line and none is an error, `results` reads
# exactly the committed parts (each checked against its committed SHA-256),
# and the files under results/ are exactly those parts: what a deposed
# coordinator wrote was deleted.
# timeout: 300
. "$(dirname "$0")/lib.sh"

cluster up 6 >/dev/null
wait_leader node6
leader() { cli node6 --json status 2>/dev/null | json 'd["leader"]'; }

D=$IDUNNO_RUN_DIR/data
SET=300
"$ROOT/scripts/make-data.sh" --synthetic "$SET" "$D/set" >/dev/null
cli node6 put-dir "$D/set" set >/dev/null
cli node6 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
cli node6 launch tiny_cnn 1 >/dev/null

jobinfo() { cli node6 --json jobs 2>/dev/null | json "[j for j in d['jobs'] if j['model'] == 'tiny_cnn'][0]['$1']"; }
images() { jobinfo images; }
done_images() { jobinfo images_done; }
at_least() { local n; n=$(done_images) && [ "${n:-0}" -ge "$1" ]; }
grown() { local n; n=$(images) && [ "${n:-0}" -gt "$1" ]; }

# Queues the data set once more. An answer lost in a coordinator change may
# hide a success: the image count decides, and the final check counts each
# image's results against how many times the set was really queued.
queue_set() {
  local before
  before=$(images)
  for _ in 1 2 3 4 5; do
    cli node6 inference tiny_cnn set >/dev/null 2>&1 || true
    wait_until 10 grown "$before" && return 0
  done
  fail "could not queue the data set again"
}

ROUNDS=5
for round in $(seq 1 "$ROUNDS"); do
  start=$(done_images)
  for _ in 1 2 3 4; do queue_set; done
  # Some progress first, so results are pending and being written (or the
  # job is done already: the tiny model is fast).
  want=$((start + 100)); [ "$want" -le "$(images)" ] || want=$(images)
  wait_until 60 at_least "$want" || fail "round $round: the job stalled at $(done_images)"
  L=$(leader)
  [ -n "$L" ] && [ "$L" != node6 ] || fail "round $round: unexpected leader '$L'"
  at=$(done_images)
  cluster kill "$L" >/dev/null
  new_leader() { local l; l=$(leader) && [ -n "$l" ] && [ "$l" != "$L" ]; }
  wait_until 20 new_leader || fail "round $round: no new coordinator after killing $L"
  cluster start "$L" >/dev/null
  # Back as a voter before the next kill, so the next leader has a quorum.
  caught_up() { cli "$L" --json status 2>/dev/null | json 'd["leader"]' | grep -q node; }
  wait_until 30 caught_up || fail "round $round: $L did not rejoin"
  echo "round $round: killed coordinator $L at $at of $(images) images; $(leader) leads"
done

TOTAL=$(images)
[ $((TOTAL % SET)) = 0 ] || fail "$TOTAL images queued: not whole sets of $SET"
wait_until 180 at_least "$TOTAL" || fail "job did not finish: $(done_images)/$TOTAL"
wait_until 30 sh -c "'$IDUNNO' -s $(addr node6) --json results tiny_cnn | grep -q '\"pending_results\":0'" ||
  fail "results not all written to SDFS"
cli node6 results tiny_cnn "$D/results.jsonl" >/dev/null
python3 - "$D/results.jsonl" "$TOTAL" "$SET" <<'PY'
import json, sys
from collections import Counter
rows = [json.loads(l) for l in open(sys.argv[1])]
total, per = int(sys.argv[2]), int(sys.argv[2]) // int(sys.argv[3])
errors = [r for r in rows if "error" in r]
assert not errors, f"{len(errors)} error results, e.g. {errors[:3]}"
count = Counter(r["image"] for r in rows)
wrong = {k: v for k, v in count.items() if v != per}
assert len(rows) == total and len(count) == int(sys.argv[3]) and not wrong, \
    f"{len(rows)} results for {total} queued images ({len(count)} names, each queued {per} times); " \
    f"names with another count: {sorted(wrong.items())[:10]}"
PY

# Only the committed parts stay under results/: the sweep deletes the rest.
parts() { cli node6 --json results tiny_cnn | json '"\n".join(sorted(d["parts"]))'; }
files() { cli node6 --json ls --prefix results/tiny_cnn/ | json '"\n".join(sorted(f["name"] for f in d["files"]))'; }
only_committed() { [ "$(parts)" = "$(files)" ]; }
wait_until 30 only_committed || fail "files under results/ besides the committed parts: $(comm -13 <(parts) <(files) | head -5)"

# `results MODEL` without a file shows the first results of a finished job.
out=$(cli node6 results tiny_cnn)
assert_contains "$out" "first results:" "results preview"
assert_contains "$out" "set/" "an image in the preview"
echo "ok ($TOTAL results in $(parts | wc -l) parts over $ROUNDS coordinator kills)"
