#!/usr/bin/env bash
# The pretrained model end to end (docs/inference.md, "The pretrained model"):
# text_direction (scripts/fetch-models.sh) over rendered text lines whose
# right answers are in their names (tools/text_lines.py: up_* is "0", down_*
# is "180"). local-infer with the model's card, then train with the card,
# put-dir, launch, inference and results on a cluster; each side's top-1 must
# equal that of a bare ONNX Runtime run with its own preprocessing
# (tests/tools/ref_classify) on every image, every image must have exactly
# one labelled result, and the accuracy against the known answers must be at
# least 0.95 (printed).
# timeout: 120
. "$(dirname "$0")/lib.sh"

N=100
text_lines "$N"

# check FILE SIDE: the JSON result lines (or local-infer's document) against
# the reference and the known answers; prints the accuracy.
check() {
  python3 - "$1" "$D/ref.txt" "$N" "$2" <<'PY'
import json, os, sys
path, ref_path, n, side = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
text = open(path).read()
rows = json.loads(text)["images"] if side == "local-infer" else [json.loads(l) for l in text.splitlines()]
ref = {os.path.basename(l.split()[0]): int(l.split()[1]) for l in open(ref_path)}
names = [os.path.basename(r["image"]) for r in rows]
assert len(names) == n and set(names) == set(ref), (side, len(names), len(set(names)))
labels = ["0", "180"]
right, differ = 0, []
for r in rows:
    name = os.path.basename(r["image"])
    assert "error" not in r, r
    top = r["top"]
    assert len(top) == 2 and all(e["label"] == labels[e["index"]] for e in top), r
    if side != "local-infer":
        assert r["model"] == "text_direction" and r["version"] == 1, r
    if top[0]["index"] != ref[name]:
        differ.append(name)
    right += top[0]["label"] == ("0" if name.startswith("up_") else "180")
assert not differ, "%s: top-1 differs from the bare ONNX Runtime run on %s" % (side, differ)
acc = right / n
print("%s: %d images, top-1 equal to the bare ONNX Runtime run on all, accuracy %.3f (%d/%d)"
      % (side, n, acc, right, n))
assert acc >= 0.95, "accuracy %.3f below 0.95" % acc
PY
}

# -- on one node, no cluster
"$IDUNNO" --json local-infer --card "$CARD" "$M" "$D"/lines/*.png >"$D/local.json"
check "$D/local.json" local-infer || fail "local-infer"

# -- on a cluster
cluster up 3 >/dev/null
wait_leader node1
out=$(cli node1 train text_direction --file "$M" --card "$CARD")
assert_contains "$out" "trained text_direction version 1"
assert_contains "$out" '"labels":\["0","180"\]'
assert_contains "$out" '"size":"48x192"'
cli node2 put-dir "$D/lines" lines >/dev/null
cli node1 launch text_direction 4 >/dev/null
cli node2 inference text_direction lines >/dev/null
done_is() {
  [ "$(cli node3 --json qinfo text_direction |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["images_done"])')" = "$1" ]
}
wait_until 60 done_is "$N" || fail "not every image answered"
wait_until 20 sh -c "'$IDUNNO' -s $(addr node1) --json results text_direction | grep -q '\"pending_results\":0'" ||
  fail "results not written to SDFS"
cli node1 results text_direction "$D/results.jsonl" >/dev/null
check "$D/results.jsonl" cluster || fail "cluster results"
assert_contains "$(cli node2 results text_direction)" " 1 180 "
echo ok
