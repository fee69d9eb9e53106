#!/usr/bin/env bash
# SDFS under faults and hostile requests, on 5 daemons:
#  - a sealed blob cannot be overwritten (a forged write and seal of a blob a
#    replica holds are refused; the bytes on disk stay);
#  - claims that every replica's copy is bad lose nothing: each replica
#    verifies its copy and keeps it; a claim about a copy that really is
#    corrupt moves it aside and the replica copies it again from the others;
#  - reads fall back: a job over images whose copies were deleted or
#    corrupted on every node but one replica gives the same results as before,
#    with no error result.
# timeout: 240
. "$(dirname "$0")/lib.sh"

FORGE=$ROOT/build/tests/tools/sdfs_forge
[ -x "$FORGE" ] || make -s -C "$ROOT" test-tools >/dev/null
cluster up 5 >/dev/null
wait_leader node1

T=$IDUNNO_RUN_DIR/files
mkdir -p "$T"
blob_of() { cli node1 --json ls "$1" | json 'd["versions"][-1]["blob"]'; }
replicas_of() { cli node1 --json ls "$1" | json '" ".join(r["name"] for r in d["versions"][-1]["replicas"])'; }
copy() { echo "$IDUNNO_RUN_DIR/$1/sdfs/blobs/$2"; }
sum() { sha256sum <"$1" | cut -d' ' -f1; }
log_has() { grep -q -- "$2" "$IDUNNO_RUN_DIR/$1/idunnod.log"; }

# -- a sealed blob is immutable
head -c 300000 /dev/urandom >"$T/f"
head -c 200000 /dev/urandom >"$T/other"
cli node2 put "$T/f" f >/dev/null
B=$(blob_of f)
read -r -a R <<<"$(replicas_of f)"
assert_eq "${#R[@]}" 4 "replicas of f"
out=$("$FORGE" "$(addr "${R[0]}")" overwrite "$B" "$T/other")
assert_contains "$out" "write: error: .*never replaced" "a write to a sealed blob is refused"
assert_contains "$out" "seal: error" "a seal over a sealed blob is refused"
assert_eq "$(sum "$(copy "${R[0]}" "$B")")" "$(sum "$T/f")" "the sealed copy is unchanged"
cli node5 get f "$T/f.out" >/dev/null
assert_eq "$(sum "$T/f.out")" "$(sum "$T/f")" "get after the forged overwrite"

# -- with the key a chunk's data is sealed end to end: data in clear, or
# sealed for another offset of the file, is refused before anything is written
out=$("$FORGE" "$(addr "${R[0]}")" plainwrite 00000000000000aa "$T/other")
assert_contains "$out" "write: error: .*must be a sealed payload" "a chunk in clear is refused"
out=$("$FORGE" "$(addr "${R[0]}")" movedwrite 00000000000000bb "$T/other")
assert_contains "$out" "write: error: .*fails authentication" "a chunk moved in its file is refused"
ls "$IDUNNO_RUN_DIR/${R[0]}/sdfs/tmp" | grep -q "00000000000000aa\|00000000000000bb" &&
  fail "a refused chunk left a temporary copy"

# -- every replica reported bad: each verifies its copy, nothing is deleted
for r in "${R[@]}"; do
  out=$("$FORGE" "$(addr node3)" bad f "$B" "$r")
  assert_eq "$out" "bad: ok" "a bad claim is answered"
done
for r in "${R[@]}"; do
  wait_until 20 log_has "$r" "blob $B verified" || fail "$r did not verify its copy"
done
for r in "${R[@]}"; do
  [ -f "$(copy "$r" "$B")" ] || fail "the copy on $r was deleted on a claim"
  assert_eq "$(sum "$(copy "$r" "$B")")" "$(sum "$T/f")" "copy on $r"
done
assert_eq "$(replicas_of f | wc -w)" 4 "replica set after the claims"
cli node4 get f "$T/f.out2" >/dev/null
assert_eq "$(sum "$T/f.out2")" "$(sum "$T/f")" "get after the claims"

# A claim about a copy that really is corrupt: it goes to bad/ and the
# replica copies it again from the others.
printf 'XXXXXXXX' | dd of="$(copy "${R[1]}" "$B")" bs=1 seek=1000 conv=notrunc status=none
"$FORGE" "$(addr node3)" bad f "$B" "${R[1]}" >/dev/null
wait_until 20 log_has "${R[1]}" "fetched blob $B" || fail "${R[1]} did not copy its bad copy again"
assert_eq "$(sum "$(copy "${R[1]}" "$B")")" "$(sum "$T/f")" "the corrupt copy was replaced"
[ -f "$IDUNNO_RUN_DIR/${R[1]}/sdfs/bad/$B" ] || fail "the corrupt copy was not kept in bad/"

# -- a job reads around missing and corrupt copies
D=$IDUNNO_RUN_DIR/data
"$ROOT/scripts/make-data.sh" --synthetic 20 "$D/set" >/dev/null
cli node2 put-dir "$D/set" set >/dev/null
cli node3 train before --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
cli node3 train after --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
run_job() { # run_job MODEL: the whole set through MODEL, results to $D/MODEL.jsonl
  cli node1 launch "$1" 2 >/dev/null
  cli node1 inference "$1" set >/dev/null
  local done_is="[ \"\$('$IDUNNO' -s $(addr node2) --json qinfo $1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"jobs\"][0][\"images_done\"])')\" = 20 ]"
  wait_until 60 sh -c "$done_is" || fail "job $1 did not finish"
  wait_until 20 sh -c "'$IDUNNO' -s $(addr node4) --json results $1 | grep -q '\"pending_results\":0'" ||
    fail "results of $1 not written"
  cli node4 results "$1" "$D/$1.jsonl" >/dev/null
}
run_job before
# Every image keeps one good copy (on its last replica); every other node's
# copy, replica or cached, is deleted or corrupted.
for f in "$D"/set/*; do
  name=set/$(basename "$f")
  b=$(blob_of "$name")
  read -r -a IR <<<"$(replicas_of "$name")"
  k=0
  for n in node1 node2 node3 node4 node5; do
    [ "$n" = "${IR[3]}" ] && continue
    p=$(copy "$n" "$b")
    [ -f "$p" ] || continue
    if [ $((k % 2)) = 0 ]; then rm -f "$p"; else printf 'garbage!' | dd of="$p" bs=1 seek=200 conv=notrunc status=none; fi
    k=$((k + 1))
  done
done
run_job after
python3 - "$D/before.jsonl" "$D/after.jsonl" <<'PY'
import json, sys
before = {r["image"]: r for r in map(json.loads, open(sys.argv[1]))}
after = {r["image"]: r for r in map(json.loads, open(sys.argv[2]))}
assert len(before) == 20 and set(after) == set(before), (len(before), len(after))
for name, r in after.items():
    assert "error" not in r, r
    b = before[name]
    assert "error" not in b, b
    assert [e["index"] for e in r["top"]] == [e["index"] for e in b["top"]], (name, r["top"], b["top"])
    assert all(abs(e["probability"] - f["probability"]) < 1e-4
               for e, f in zip(r["top"], b["top"])), (name, r, b)
PY
echo ok
