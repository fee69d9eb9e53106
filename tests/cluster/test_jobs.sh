#!/usr/bin/env bash
# IDunno end to end on 5 daemons with the tiny model: train, launch, queue a
# data set stored in SDFS, every image answered exactly once (results read
# back from SDFS), C1-C5 in JSON, the job metrics on the coordinator's
# /metrics, set-batch applying to what is not yet dispatched, two jobs sharing
# the workers, and clear errors for unknown models, missing data sets, a second
# launch and bad batch sizes.
# timeout: 240
. "$(dirname "$0")/lib.sh"

cluster up 5 >/dev/null
wait_leader node1

D=$IDUNNO_RUN_DIR/data
"$ROOT/scripts/make-data.sh" --synthetic 120 "$D/set" >/dev/null
cli node2 put-dir "$D/set" set >/dev/null

# -- errors first: nothing registered yet
set +e
cli node1 launch tiny_cnn 4 2>"$D/err"; rc=$?
set -e
assert_eq "$rc" 1 "launch of an unknown model"
assert_contains "$(cat "$D/err")" "no model 'tiny_cnn'"
set +e; cli node1 train tiny_cnn --file "$D/set/img0001.jpg" 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "train with a file that is not a model"
assert_contains "$(cat "$D/err")" "not a usable model"

cli node3 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
assert_eq "$(cli node4 --json models | json 'd["models"][0]["name"]')" tiny_cnn "models"
set +e; cli node1 inference tiny_cnn set 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "inference without a job"
cli node1 launch tiny_cnn 5 >/dev/null
set +e; cli node1 launch tiny_cnn 5 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "a second launch"
assert_contains "$(cat "$D/err")" "already running"
set +e; cli node1 set-batch tiny_cnn 100000 2>/dev/null; rc=$?; set -e
assert_eq "$rc" 1 "batch out of range"
set +e; cli node1 inference tiny_cnn no-such-set 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "an empty data set"
assert_contains "$(cat "$D/err")" "no SDFS files under"

# -- a job over the whole set
cli node5 inference tiny_cnn set >/dev/null
done_images() { cli node2 --json qinfo tiny_cnn | json 'd["jobs"][0]["images_done"]'; }
done_is() { [ "$(done_images)" = "$1" ]; }
wait_until 60 done_is 120 || fail "job did not finish: $(done_images)/120"
assert_eq "$(cli node1 --json qinfo | json 'd["jobs"][0]["queries_done"]')" 24 "120 images in queries of 5"
cli node1 --json qjob tiny_cnn | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]["all"]
assert j["count"] == 24, j
assert 0 < j["median_ms"] <= j["p90_ms"] <= j["p95_ms"] <= j["p99_ms"], j
assert j["mean_ms"] > 0 and j["stddev_ms"] >= 0, j'
cli node1 --json assign | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
assert abs(sum(s["fraction"] for s in j["shares"]) - 1) < 1e-5, j  # printed with 6 digits
assert len(j["shares"]) >= 3, j   # the work was spread'
# The whole latency distribution (jobs --histogram): every query once, in
# ordered buckets, consistent with the percentiles qjob gives.
cli node1 --json jobs --histogram | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
h = j["histogram"]
assert sum(c for _, _, c in h) == 24, h
assert all(lo <= hi for lo, hi, _ in h) and all(a[1] < b[0] for a, b in zip(h, h[1:])), h
assert all(c > 0 for _, _, c in h), h
assert h[0][0] <= j["all"]["median_ms"] <= h[-1][1], (h, j["all"])'
if cli node1 jobs --histogram 2>/dev/null; then fail "jobs --histogram without --json accepted"; fi
# The coordinator exports the job in Prometheus format (parsed by prometheus_client).
L=$(cli node1 --json status | json 'd["leader"]')
assert_eq "$(metric "$L" idunno_job_queries_total model=tiny_cnn)" 24 "job metric"
assert_eq "$(metric "$L" idunno_job_processing_seconds_count model=tiny_cnn)" 24 "latency histogram count"
assert_eq "$(metric "$L" idunno_job_processing_seconds_bucket model=tiny_cnn le=+Inf)" 24 "histogram +Inf bucket"
# Every node's /metrics follows Prometheus' naming and format rules, the
# coordinator's (with the job's families) included.
for k in 1 2 3 4 5; do
  page=$(http_get "node$k" /metrics)
  assert_eq "$(sed -n 1p <<<"$page")" 200 "node$k /metrics"
  lint=$(tail -n +3 <<<"$page" | "$ROOT/.deps/prometheus/bin/promtool" check metrics 2>&1) ||
    fail "promtool on node$k: $lint"
done
# Every image has exactly one result, read back from SDFS.
wait_until 20 sh -c "'$IDUNNO' -s $(addr node4) --json results tiny_cnn | grep -q '\"pending_results\":0'" ||
  fail "results not written to SDFS"
cli node4 results tiny_cnn "$D/results.jsonl" >/dev/null
python3 - "$D/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = [r["image"] for r in rows]
assert len(names) == 120 and len(set(names)) == 120, (len(names), len(set(names)))
assert all(n.startswith("set/img") for n in names)
for r in rows:
    assert "error" not in r, r
    # the shared result shape (docs/protocol.md): model, version, top-k objects
    assert r["model"] == "tiny_cnn" and r["version"] == 1, r
    top = r["top"]
    assert len(top) == 5 and all(0 <= e["index"] < 10 and e["label"] is None for e in top), r
    probs = [e["probability"] for e in top]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1, r
PY

# -- set-batch applies to queries not yet dispatched; appending a data set again
cli node2 set-batch tiny_cnn 20 >/dev/null
mkdir -p "$D/more"
for f in $(ls "$D/set" | head -10); do cp "$D/set/$f" "$D/more/"; done
cli node2 put-dir "$D/more" more >/dev/null
cli node3 inference tiny_cnn more >/dev/null
wait_until 30 done_is 130 || fail "appended images not done"
assert_eq "$(cli node1 --json qinfo | json 'd["jobs"][0]["queries_done"]')" 25 "10 more images in one query of 20"

# -- a second job shares the workers; stop keeps the results
cli node3 train tiny2 --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
cli node3 launch tiny2 3 >/dev/null
cli node1 inference tiny2 set >/dev/null
second_done_is() { [ "$(cli node2 --json qinfo tiny2 | json 'd["jobs"][0]["images_done"]')" = "$1" ]; }
wait_until 60 second_done_is 120 || fail "second job did not finish"
cli node5 stop tiny2 >/dev/null
assert_eq "$(cli node5 --json jobs | json '[j["state"] for j in d["jobs"] if j["model"]=="tiny2"][0]')" stopped "stopped"
assert_eq "$(cli node5 --json results tiny2 | json 'd["images_done"]')" 120 "results kept after stop"
# A stopped job's last results still go to SDFS (none left pending).
wait_until 20 sh -c "'$IDUNNO' -s $(addr node4) --json results tiny2 | grep -q '\"pending_results\":0'" ||
  fail "a stopped job's results were not all written to SDFS"
cli node5 results tiny2 "$D/tiny2.jsonl" >/dev/null
assert_eq "$(wc -l < "$D/tiny2.jsonl" | tr -d ' ')" 120 "result lines of the stopped job"
# No image was stored twice anywhere.
assert_eq "$(cli node5 --json jobs | json 'sum(j["duplicates"] for j in d["jobs"])')" 0 "duplicates"
echo ok
