#!/usr/bin/env bash
# The model card through the cluster (docs/inference.md, "Model card"): the
# dynamic-H/W two-class Softmax model (tools/gen_models.py tiny_dyn_softmax)
# is trained with a card from flags; train prints it, models shows it, the
# workers run the model with it, and every result line has exactly two
# labelled entries whose probabilities sum to 1 (no second softmax), one line
# per image. A label count that differs from the classes is refused naming
# the field, before anything reaches the cluster; a second train of the name
# makes version 2.
# timeout: 240
. "$(dirname "$0")/lib.sh"

cluster up 3 >/dev/null
wait_leader node1

D=$IDUNNO_RUN_DIR/data
mkdir -p "$D/models"
/usr/bin/python3 "$ROOT/tools/gen_models.py" --out "$D/models" --only tiny_dyn_softmax >/dev/null
M=$D/models/tiny_dyn_softmax.onnx
"$ROOT/scripts/make-data.sh" --synthetic 40 "$D/set" >/dev/null
cli node2 put-dir "$D/set" set >/dev/null
printf 'negative\npositive\n' >"$D/labels.txt"
printf 'a\nb\nc\n' >"$D/labels3.txt"
FLAGS=(--size 48x192 --resize stretch --output probabilities --labels "$D/labels.txt")

# -- refused: a label count that differs, the dynamic size not given
set +e; cli node1 train dyn --file "$M" --size 48x192 --labels "$D/labels3.txt" 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "train with three labels for two classes"
assert_contains "$(cat "$D/err")" "labels: 3 labels, but the model has 2 classes"
set +e; cli node1 train dyn --file "$M" 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "train of a dynamic model without a size"
assert_contains "$(cat "$D/err")" "size: the model's input is dynamic"
assert_eq "$(cli node1 --json models | json 'len(d["models"])')" 0 "nothing registered by a refusal"

# -- train prints the card it registered; models shows it
out=$(cli node1 train dyn --file "$M" "${FLAGS[@]}")
assert_contains "$out" "trained dyn version 1"
assert_contains "$out" '^card: {"size":"48x192",.*"resize":"stretch"'
assert_contains "$out" '"labels":\["negative","positive"\]'
cli node2 --json models dyn >"$D/model.json"
python3 - "$D/model.json" <<'PY' || fail "models dyn --json"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["name"] == "dyn" and m["version"] == 1 and m["classes"] == 2, m
c = m["card"]
assert c["size"] == "48x192" and c["resize"] == "stretch" and c["output"] == "probabilities", c
assert c["top_k"] == 2 and c["labels"] == ["negative", "positive"] and m["labels"] == 2, m
PY
assert_contains "$(cli node3 models)" "48x192 nchw rgb"
assert_contains "$(cli node3 models dyn)" "labels:  2 (negative, positive)"

# -- a job over the data set: exactly one two-entry labelled result per image
cli node1 launch dyn 4 >/dev/null
cli node2 inference dyn set >/dev/null
done_is() { [ "$(cli node3 --json qinfo dyn | json 'd["jobs"][0]["images_done"]')" = "$1" ]; }
wait_until 60 done_is 40 || fail "not every image answered"
wait_until 20 sh -c "'$IDUNNO' -s $(addr node1) --json results dyn | grep -q '\"pending_results\":0'" ||
  fail "results not written to SDFS"
cli node1 results dyn "$D/results.jsonl" >/dev/null
python3 - "$D/results.jsonl" <<'PY' || fail "result lines"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = [r["image"] for r in rows]
assert len(names) == 40 and len(set(names)) == 40, (len(names), len(set(names)))
labels = ["negative", "positive"]
for r in rows:
    assert "error" not in r, r
    assert r["model"] == "dyn" and r["version"] == 1, r
    top = r["top"]
    assert len(top) == 2, r
    assert sorted(e["index"] for e in top) == [0, 1], r
    assert all(e["label"] == labels[e["index"]] for e in top), r
    assert abs(sum(e["probability"] for e in top) - 1) < 1e-4, r
    assert top[0]["probability"] >= top[1]["probability"], r
PY
# the summary shows the first lines, the job finished and flushed
out=$(cli node2 results dyn)
assert_contains "$out" "first results:"
assert_contains "$out" " [01] \(negative\|positive\) "

# -- a second train of the name makes version 2
out=$(cli node1 train dyn --file "$M" "${FLAGS[@]}" --top-k 1)
assert_contains "$out" "trained dyn version 2"
assert_eq "$(cli node2 --json models dyn | json 'd["version"]')" 2 "version after a second train"
assert_eq "$(cli node2 --json models dyn | json 'd["card"]["top_k"]')" 1 "the new version's card"
echo ok
