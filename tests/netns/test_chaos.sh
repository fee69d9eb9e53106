#!/usr/bin/env bash
# The chaos suite, short: one seed of bench/chaos.py (6 nodes in network
# namespaces, a ResNet50 and a tiny-model job, SDFS writes) under about 90 s of
# faults (kills, the coordinator killed and isolated, one-way blocks, loss,
# three nodes at once). Passes only if every image has exactly its results, no
# error result, every acknowledged file reads back with its SHA-256, and all
# nodes agree on one coordinator. The full version: docs/benchmarks.md.
# timeout: 600
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
seed=${CHAOS_SEED:-1}
rc=0
python3 "$root/bench/chaos.py" --seed "$seed" --seconds "${CHAOS_SECONDS:-90}" --nodes 6 \
  --models resnet50,tiny_cnn --images 120,300 --warmup 10 --drain 300 --out "$out" || rc=$?

[ -s "$out" ] || { echo "FAIL: chaos.py wrote no report (exit $rc)"; exit 1; }
python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert "error" not in r, r["error"]
assert len(r["faults"]) >= 3, f"only {len(r['faults'])} faults struck"
for m, j in r["jobs"].items():
    assert j["read"] and j["finished"], f"{m}: job did not finish or its results could not be read"
    assert j["lost"] == 0 and j["duplicated"] == 0, f"{m}: {j['lost']} lost, {j['duplicated']} duplicated"
    assert j["errors"] == 0, f"{m}: {j['errors']} error results: {j['first_errors']}"
    assert j["results"] == j["images_queued"], f"{m}: {j['results']} results for {j['images_queued']} images"
f = r["files"]
assert not f["missing"] and not f["mismatched"], f"files missing {f['missing'][:5]} mismatched {f['mismatched'][:5]}"
assert f["verified"] == f["before_run"] + f["acked_during_run"] and f["acked_during_run"] > 0, f
assert r["coordinator"]["agreed"], r["coordinator"]
assert r["ok"]
print(f"chaos ok: seed {r['seed']}, {len(r['faults'])} faults, "
      + ", ".join(f"{m} {j['results']} results" for m, j in r["jobs"].items())
      + f", {f['verified']} files verified, terms {r['term_before']}->{r['term_after']}")
PY
[ "$rc" -eq 0 ] || { echo "FAIL: chaos.py exit $rc"; exit 1; }
