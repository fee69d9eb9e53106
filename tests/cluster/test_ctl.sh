#!/usr/bin/env bash
# The control plane on real daemons: a coordinator and two standbys among five
# nodes; writes through any node; the leader and then a follower killed under
# a stream of writes (none acknowledged is lost, every voter ends with the same
# state digest, one leader per term); no majority -> "no coordinator" after a
# bounded wait; restarted voters recover from their data.
# timeout: 180
. "$(dirname "$0")/lib.sh"

leader() { cli node4 --json status 2>/dev/null | json 'd["leader"]'; }
term() { cli "$1" --json status | json 'd["term"]'; }
has_leader_other_than() { local l; l=$(leader) && [ -n "$l" ] && [ "$l" != "$1" ]; }

# All running voters report the same applied index and digest.
voters_agree() {
  local seen="" k line
  for k in "$@"; do
    line=$(cli "$k" --json status 2>/dev/null |
           json 'd["answered_by"]["applied_index"], d["answered_by"]["digest"]') || return 1
    [ -z "$seen" ] && seen=$line
    [ "$line" = "$seen" ] || return 1
  done
}

# Reads back every key a ctl-load document acknowledged; prints how many are missing.
missing_acked() {
  python3 - "$1" "$IDUNNO" "$(addr node5)" <<'EOF'
import json, subprocess, sys
doc, idunno, server = sys.argv[1:]
keys = [p["key"] for p in json.load(open(doc))["puts"] if p["ok"]]
missing = 0
for i in range(0, len(keys), 300):
    out = subprocess.run([idunno, "-s", server, "--json", "ctl-get", *keys[i:i + 300]],
                         capture_output=True, text=True).stdout
    missing += sum(1 for k in json.loads(out)["keys"] if not k["found"])
print(missing)
EOF
}

# Each term was acknowledged by one leader only.
one_leader_per_term() {
  python3 - "$@" <<'EOF'
import json, sys
terms = {}
for doc in sys.argv[1:]:
    for p in json.load(open(doc))["puts"]:
        if p["ok"]:
            terms.setdefault(p["term"], set()).add(p["leader"])
bad = {t: sorted(l) for t, l in terms.items() if len(l) > 1}
print("ok" if not bad else bad)
EOF
}

cluster up 5 >/dev/null
wait_until 10 has_leader_other_than none || fail "no coordinator elected"
st=$(cli node5 status)
assert_contains "$st" "standbys" "status shows standbys"
assert_contains "$(cli node2 list_mem)" "coordinator" "list_mem marks the coordinator"
L=$(leader)
case $L in node1|node2|node3) ;; *) fail "leader $L is not a voter" ;; esac

# Writes through a voter and a non-voter; linearizable reads through others.
cli node5 ctl-put alpha 1 >/dev/null || fail "put through a non-voter"
cli node2 ctl-put beta 2 >/dev/null || fail "put through a voter"
out=$(cli node4 ctl-get alpha beta)
assert_contains "$out" "alpha = 1" "read back alpha"
assert_contains "$out" "beta = 2" "read back beta"
cli node1 ctl-get nosuchkey >/dev/null 2>&1 && fail "a missing key must exit non-zero"

# Kill the leader under a stream of writes through node4.
t0=$(term node4)
cli node4 --json --timeout 8000 ctl-load a 400 2 >"$IDUNNO_RUN_DIR/load-a.json" 2>/dev/null &
load=$!
sleep 0.5
cluster kill "$L"
wait_until 10 has_leader_other_than "$L" || fail "no new coordinator after killing $L"
wait $load || fail "writes failed across the leader's failure: $(tail -c 300 "$IDUNNO_RUN_DIR/load-a.json")"
[ "$(term node4)" -gt "$t0" ] || fail "the term did not advance"
L2=$(leader)
echo "leader $L killed, $L2 took over (term $(term node4))"

# The old leader comes back: it recovers from its data and catches up.
cluster start "$L"
wait_until 20 voters_agree node1 node2 node3 || fail "restarted $L did not catch up"
grep -q "recovering raft state" "$IDUNNO_RUN_DIR/$L/idunnod.log" || fail "$L did not recover from its data"

# Kill a follower (standby) under writes.
F=""
for k in node1 node2 node3; do [ "$k" != "$L" ] && [ "$k" != "$L2" ] && F=$k; done
cli node5 --json --timeout 8000 ctl-load b 300 2 >"$IDUNNO_RUN_DIR/load-b.json" 2>/dev/null &
load=$!
sleep 0.3
cluster kill "$F"
wait $load || fail "writes failed across a follower's failure"
[ "$(leader)" = "$L2" ] || fail "losing a follower must not change the coordinator"

cluster start "$F"
wait_until 20 voters_agree node1 node2 node3 || fail "voters did not converge to one digest"
[ "$(missing_acked "$IDUNNO_RUN_DIR/load-a.json")" = 0 ] || fail "acknowledged writes lost (leader kill)"
[ "$(missing_acked "$IDUNNO_RUN_DIR/load-b.json")" = 0 ] || fail "acknowledged writes lost (follower kill)"
assert_eq "$(one_leader_per_term "$IDUNNO_RUN_DIR/load-a.json" "$IDUNNO_RUN_DIR/load-b.json")" ok \
  "one leader per term"

# No majority: two voters down -> a bounded wait, then "no coordinator" (exit 2).
L3=$(leader)
down=()
for k in node1 node2 node3; do [ "$k" != "$L3" ] && down+=("$k"); done
cluster kill "${down[0]}"
cluster kill "${down[1]}"
start=$(date +%s%N)
set +e
err=$(cli node4 --timeout 8000 ctl-put lonely 1 2>&1 >/dev/null)
rc=$?
set -e
took=$(( ($(date +%s%N) - start) / 1000000 ))
assert_eq "$rc" 2 "exit status without a coordinator"
assert_contains "$err" "no coordinator" "error names the problem"
[ "$took" -lt 7000 ] || fail "waited ${took} ms; the wait must be bounded"
cluster start "${down[0]}"
cluster start "${down[1]}"
wait_until 15 has_leader_other_than none || fail "no coordinator after the voters came back"
cli node5 ctl-put back 1 >/dev/null || fail "writes after recovery"
wait_until 20 voters_agree node1 node2 node3 || fail "voters did not converge after recovery"
echo "ctl ok: leader kill, follower kill, no-majority wait ${took} ms, recovery"
