#!/usr/bin/env bash
# Online requests (docs/scheduler.md, "Online requests"): `idunno predict`
# sends local images to any node; the coordinator has a worker run them now
# and the answer comes back with the worker's results, nothing stored.
#  - The answers are right: with the pretrained text_direction model, each
#    image's top-1 equals a bare ONNX Runtime run's (tests/tools/ref_classify),
#    with the card's labels, whichever node the request went to.
#  - Bad requests get clear errors: an unknown model or version, no image; a
#    file that is not an image is that image's error while the others answer.
#  - Requests keep being answered, each exactly once and right, while a worker
#    is killed with -9 and then while the coordinator is: a request in flight
#    on the dead worker is run again elsewhere (attempts > 1 shows it).
# timeout: 180
. "$(dirname "$0")/lib.sh"

N=24
text_lines "$N"

# check FILE: a predict --json answer: one result per image asked, each top-1
# equal to the reference, labelled; prints the number of images and attempts.
check() {
  python3 - "$1" "$D/ref.txt" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
ref = {os.path.basename(l.split()[0]): int(l.split()[1]) for l in open(sys.argv[2])}
assert d["model"] == "text_direction" and d["version"] == 1 and d["worker"].startswith("node"), d
for r in d["results"]:
    name = os.path.basename(r["image"])
    assert "error" not in r, r
    assert len(r["classes"]) == 2 and len(r["probs"]) == 2, r
    assert r["labels"] == [["0", "180"][c] for c in r["classes"]], r
    assert r["classes"][0] == ref[name], "%s: top-1 %d, the bare run says %d" % (name, r["classes"][0], ref[name])
print(len(d["results"]), d["attempts"])
PY
}

cluster up 4 >/dev/null
wait_leader node1
cli node1 train text_direction --file "$M" --card "$CARD" >/dev/null

# -- right answers, through every node
imgs=("$D"/lines/*.png)
for n in node1 node2 node3 node4; do
  cli "$n" --json predict --id "req-$n" text_direction "${imgs[@]:0:8}" >"$D/p-$n.json" ||
    fail "predict through $n: $(cat "$D/p-$n.json")"
  out=$(check "$D/p-$n.json") || fail "answer through $n"
  assert_eq "${out% *}" 8 "images answered through $n"
  assert_contains "$(cat "$D/p-$n.json")" "\"id\":\"req-$n\"" "the request id is echoed"
done
out=$(cli node2 predict text_direction "${imgs[0]}" 2>&1)
assert_contains "$out" "class .*  \(0\|180\)$" "predict prints the top-k with labels"

# -- errors
out=$(cli node3 predict nosuchmodel "${imgs[0]}" 2>&1) && fail "an unknown model was answered"
assert_contains "$out" "no such model"
out=$(cli node3 predict --version 7 text_direction "${imgs[0]}" 2>&1) && fail "an unknown version was answered"
assert_contains "$out" "no such version"
out=$(cli node3 predict text_direction 2>&1) && fail "a request without images was sent"
assert_contains "$out" "at least one IMAGE"
head -c 5000 /dev/urandom >"$D/noise.png"
cli node4 --json predict text_direction "${imgs[1]}" "$D/noise.png" "${imgs[2]}" >"$D/mixed.json" ||
  fail "a request with one bad image failed whole"
python3 - "$D/mixed.json" <<'PY' || fail "the bad image is not its own error"
import json, sys
r = json.load(open(sys.argv[1]))["results"]
assert len(r) == 3 and "error" not in r[0] and "error" in r[1] and "error" not in r[2], r
PY

# -- the coordinator's metrics count what it answered: 4 + 1 + 1 requests
L=$(cli node1 --json status | json 'd["leader"]')
assert_eq "$(metric "$L" idunno_online_requests_total model=text_direction)" 6 "online requests counted"
assert_eq "$(metric "$L" idunno_online_request_seconds_count model=text_direction)" 6 "latency histogram count"

# -- a slow request through a node that is not the coordinator: 16 ResNet50
# images take seconds on these cores, far beyond a forwarding attempt's usual
# 500 ms; it is answered, and the coordinator received it once (forwarded as
# a long-running request, never sent again while it runs)
"$ROOT/scripts/make-data.sh" --synthetic 16 "$D/photos" >/dev/null 2>&1 || fail "make-data"
cli node1 train resnet50 --file "$ROOT/models/resnet50.onnx" >/dev/null || fail "train resnet50"
via=node2; [ "$L" = node2 ] && via=node3
received=$(metric "$L" idunno_coordinator_online_received_total)
start=$(date +%s%N)
cli "$via" --json predict resnet50 "$D"/photos/* >"$D/slow.json" || fail "a slow request through $via: $(cat "$D/slow.json")"
took=$(( ($(date +%s%N) - start) / 1000000 ))
assert_eq "$(json 'len(d["results"])' <"$D/slow.json")" 16 "the slow request's results"
assert_eq "$(metric "$L" idunno_coordinator_online_received_total)" $((received + 1)) \
  "the coordinator received the slow request once (it took $took ms)"

# -- failover: clients keep asking while a worker, then the coordinator, die
# the clients talk to two nodes that are neither victim
victim=node4; [ "$L" = node4 ] && victim=node3
clients=(); for n in 1 2 3 4; do [ "node$n" != "$L" ] && [ "node$n" != "$victim" ] && clients+=("$n"); done
for c in "${clients[@]}"; do predict_loop "$c" loop 4 & done
# some answers first, then the worker dies, more answers, then the coordinator
wait_until 30 answers_at_least loop 6 || fail "no answers before the kills"
kill -9 "$(cat "$IDUNNO_RUN_DIR/$victim/pid")"
before=$(answers loop)
wait_until 60 answers_at_least loop $((before + 6)) || fail "no answers after the worker died"
kill -9 "$(cat "$IDUNNO_RUN_DIR/$L/pid")"
before=$(answers loop)
wait_until 30 leader_other_than "node${clients[0]}" "$L" || fail "no new coordinator"
wait_until 60 answers_at_least loop $((before + 6)) || fail "no answers after the coordinator died"
touch "$D/stop"
wait
[ ! -s "$D/failures" ] || fail "requests failed: $(cat "$D/failures")"
total=0
retried=0
for f in "$D"/loop.*.json; do
  out=$(check "$f") || fail "answer $f"
  assert_eq "${out% *}" 4 "images answered in $f"
  [ "${out#* }" = 1 ] || retried=$((retried + 1))
  total=$((total + 1))
done
echo "$total requests answered right during the kills ($retried on a second worker)"
echo ok
