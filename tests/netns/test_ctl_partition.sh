#!/usr/bin/env bash
# The coordinator cut off from the network (nftables in its namespace): it
# stops acknowledging writes (a client on its own host gets "no coordinator"),
# the majority elects a new coordinator that goes on acknowledging, and after
# the heal nothing acknowledged is lost, the cut-off leader's uncommitted write
# is gone, every voter has the same state, and no term had two leaders.
# timeout: 180
. "$(dirname "$0")/lib.sh"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
leader() { cli node4 --json status 2>/dev/null | json 'd["leader"]'; }
has_leader_other_than() { local l; l=$(leader) && [ -n "$l" ] && [ "$l" != "$1" ]; }
voters_agree() {
  local seen="" k line
  for k in node1 node2 node3; do
    line=$(cli "$k" --json status 2>/dev/null |
           json 'd["answered_by"]["applied_index"], d["answered_by"]["digest"]') || return 1
    [ -z "$seen" ] && seen=$line
    [ "$line" = "$seen" ] || return 1
  done
}

cluster up 5 >/dev/null
wait_until 15 has_leader_other_than none || fail "no coordinator elected"
L=$(leader)
k=${L#node}
ns="idn$(cat "$IDUNNO_RUN_DIR/netns")-$k"
cli node4 ctl-put before 1 >/dev/null || fail "write before the partition"

# A stream of writes through node4 (a non-voter that stays connected).
cli node4 --json --timeout 8000 ctl-load p 800 5 >"$IDUNNO_RUN_DIR/load.json" 2>/dev/null &
load=$!
sleep 0.5
cluster isolate "$L"
t_cut=$(date +%s%N)
# A client on the cut-off leader's host still reaches it (over loopback).
ip netns exec "$ns" "$IDUNNO" -s "$(addr "$L")" --timeout 8000 ctl-put isolated 1 \
  >"$IDUNNO_RUN_DIR/isolated.out" 2>&1 &
iso=$!
wait_until 10 has_leader_other_than "$L" || fail "the majority elected no new coordinator"
elect_ms=$(( ($(date +%s%N) - t_cut) / 1000000 ))
set +e
wait $iso
iso_rc=$?
set -e
[ "$iso_rc" -ne 0 ] || fail "the cut-off leader acknowledged a write: $(cat "$IDUNNO_RUN_DIR/isolated.out")"
assert_contains "$(cat "$IDUNNO_RUN_DIR/isolated.out")" "no coordinator" "cut-off leader's answer"
grep -q "lost leadership" "$IDUNNO_RUN_DIR/$L/idunnod.log" || fail "$L did not step down"

cluster heal "$L"
failed_puts() {
  python3 -c 'import json,sys; print([p for p in json.load(open(sys.argv[1]))["puts"] if not p["ok"]])' "$1"
}
wait $load || fail "writes through the majority failed: $(failed_puts "$IDUNNO_RUN_DIR/load.json"); t_cut $((t_cut / 1000000))"

wait_until 20 voters_agree || fail "voters did not converge after the heal"

python3 - "$IDUNNO_RUN_DIR/load.json" "$IDUNNO" "$(addr node5)" <<'EOF' || fail "acknowledged writes lost or a term with two leaders"
import json, subprocess, sys
doc, idunno, server = sys.argv[1:]
puts = [p for p in json.load(open(doc))["puts"] if p["ok"]]
terms = {}
for p in puts:
    terms.setdefault(p["term"], set()).add(p["leader"])
assert all(len(v) == 1 for v in terms.values()), terms
assert len(terms) >= 2, f"expected writes in two terms, got {terms}"
keys = [p["key"] for p in puts] + ["before"]
for i in range(0, len(keys), 300):
    out = subprocess.run([idunno, "-s", server, "--json", "ctl-get", *keys[i:i + 300]],
                         capture_output=True, text=True).stdout
    lost = [k["key"] for k in json.loads(out)["keys"] if not k["found"]]
    assert not lost, f"lost {lost[:5]}"
gap = max(b["done_ms"] - a["done_ms"] for a, b in zip(puts, puts[1:]))
print(f"{len(puts)} acknowledged writes in terms {sorted(terms)}: none lost; "
      f"longest pause between acknowledgements {gap} ms")
EOF
out=$(cli node5 ctl-get isolated 2>&1 || true)
assert_contains "$out" "not found" "the cut-off leader's uncommitted write is discarded"
# Leadership as the nodes logged it: at most one node took office per term.
dup=$(grep -ho "coordinator for term [0-9]*" "$IDUNNO_RUN_DIR"/node*/idunnod.log | sort | uniq -d)
[ -z "$dup" ] || fail "two coordinators in one term: $dup"
echo "ctl partition ok: new coordinator $(leader), seen through node4 ${elect_ms} ms after the cut"
