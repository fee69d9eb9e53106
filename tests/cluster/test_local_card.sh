#!/usr/bin/env bash
# `idunno local-infer` with a model card (docs/inference.md, "Model card"), no
# daemons: the dynamic-H/W two-class Softmax model (tools/gen_models.py
# tiny_dyn_softmax) is refused without a size, runs at 48 x 192 with the
# issue's flags, prints the resolved card and labels next to indices, its
# probabilities sum to 1 (no second softmax), flags override a --card file,
# and inconsistent cards are refused naming the field.
# timeout: 120
. "$(dirname "$0")/lib.sh"

D=$IDUNNO_RUN_DIR/data
mkdir -p "$D/models"
/usr/bin/python3 "$ROOT/tools/gen_models.py" --out "$D/models" --only tiny_dyn_softmax >/dev/null
"$ROOT/scripts/make-data.sh" --synthetic 4 "$D/set" >/dev/null
M=$D/models/tiny_dyn_softmax.onnx
IMAGES=$(find "$D/set" -type f | sort)
N=$(wc -l <<<"$IMAGES" | tr -d ' ')
printf 'negative\npositive\n' >"$D/labels.txt"
# shellcheck disable=SC2086 # IMAGES is a list of paths without spaces
infer() { "$IDUNNO" "$@" $IMAGES; }

# -- no card: the dynamic H and W are refused, naming the field
set +e; infer local-infer "$M" >/dev/null 2>"$D/err"; rc=$?; set -e
assert_eq "$rc" 1 "local-infer of a dynamic model without a size"
assert_contains "$(cat "$D/err")" "size: the model's input is dynamic x dynamic"

# -- the issue's flags: the resolved card first, labels next to indices
FLAGS=(--size 48x192 --resize stretch --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5
       --labels "$D/labels.txt" --output probabilities)
out=$(infer local-infer "${FLAGS[@]}" "$M" 2>/dev/null)
assert_contains "$(head -n 1 <<<"$out")" '^card: {"size":"48x192",.*"resize":"stretch"'
assert_contains "$out" '"labels":\["negative","positive"\]'
assert_eq "$(grep -cE '^  [12]\. class [01] .*%  (negative|positive)$' <<<"$out")" $((2 * N)) \
  "two labelled entries per image"

# -- --json: two entries per image, each with its label, summing to 1
infer --json local-infer "${FLAGS[@]}" "$M" >"$D/out.json"
assert_eq "$(json 'd["card"]["output"]' <"$D/out.json")" probabilities "card in --json"
assert_eq "$(json 'len(d["images"])' <"$D/out.json")" "$N" "images in --json"
python3 - "$D/out.json" <<'PY' || fail "--json results"
import json, sys
d = json.load(open(sys.argv[1]))
labels = ["negative", "positive"]
for im in d["images"]:
    # the shape of the cluster's result lines (docs/protocol.md); a local file has version 0
    assert im["model"].startswith("tiny_dyn_softmax") and im["version"] == 0, im
    top = im["top"]
    assert len(top) == 2, im
    assert sorted(t["index"] for t in top) == [0, 1], im
    assert all(t["label"] == labels[t["index"]] for t in top), im
    assert abs(sum(t["probability"] for t in top) - 1) < 1e-5, im
    assert top[0]["probability"] >= top[1]["probability"], im
PY

# -- raw output: the model's values in order, no top-k
infer --json local-infer --size 48x192 --output raw "$M" >"$D/raw.json"
python3 - "$D/raw.json" <<'PY' || fail "raw output in --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert "top_k" not in d["card"], d["card"]
for im in d["images"]:
    assert "top" not in im and len(im["values"]) == 2, im
    assert abs(sum(im["values"]) - 1) < 1e-5, im  # the model's own Softmax
PY

# -- a card file, and flags over it whatever their order
cat >"$D/card.json" <<'CARD'
{"size": "48x192", "resize": "pad", "pad_value": 114, "mean": [0.5, 0.5, 0.5],
 "std": [0.5, 0.5, 0.5], "output": "probabilities", "labels_file": "labels.txt"}
CARD
out=$(infer local-infer --resize stretch --card "$D/card.json" "$M" 2>/dev/null)
assert_contains "$(head -n 1 <<<"$out")" '"resize":"stretch","resize_side":55,"pad_value":114'
cmp <(infer local-infer "${FLAGS[@]}" "$M" 2>/dev/null | tail -n +2) \
  <(tail -n +2 <<<"$out") >/dev/null || fail "the file plus a flag differs from the same flags"

# -- refusals name their field
refused() { # refused FIELD-MESSAGE ARGS...
  local want=$1; shift
  set +e; infer local-infer "$@" >/dev/null 2>"$D/err"; local rc=$?; set -e
  assert_eq "$rc" 1 "refused: $want"
  assert_contains "$(cat "$D/err")" "$want"
}
printf 'a\nb\nc\n' >"$D/three.txt"
refused "labels: 3 labels, but the model has 2 classes" --size 48x192 --labels "$D/three.txt" "$M"
refused "top_k: 3, but the model has 2 classes" --size 48x192 --top-k 3 "$M"
refused "channels: the card says gray" --size 48x192 --channels gray "$M"
refused "mean: '0.5,x' is not" --mean 0.5,x "$M"
echo '{"colour": "red"}' >"$D/bad.json"
refused "colour: no such card field" --card "$D/bad.json" "$M"
echo ok
