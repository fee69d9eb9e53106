#!/usr/bin/env bash
# A voter that stays failed is replaced by a live member (here after 3 s), so
# the group keeps three voters and survives one more failure; a replaced voter
# that comes back does not disturb the group.
# timeout: 150
. "$(dirname "$0")/lib.sh"
export IDUNNOD_ARGS="--voter-replace 3000"

leader() { cli node4 --json status 2>/dev/null | json 'd["leader"]'; }
has_leader() { [ -n "$(leader)" ]; }
# Names of the voters in the leader's configuration, sorted.
voters() {
  cli "$(leader)" --json status 2>/dev/null |
    json '",".join(sorted(s["name"] for s in d["servers"] if s["role"] == "voter"))'
}
voters_are() { [ "$(voters)" = "$1" ]; }

cluster up 5 >/dev/null
wait_until 10 has_leader || fail "no coordinator elected"
assert_eq "$(voters)" "node1,node2,node3" "initial voters"
L=$(leader)
others=()
for k in node1 node2 node3; do [ "$k" != "$L" ] && others+=("$k"); done
F=${others[0]}
G=${others[1]}
cli node5 ctl-put before 1 >/dev/null

# F fails for good: after 3 s node4 (first by name among the others) replaces it.
cluster kill "$F"
t0=$(date +%s%N)
want=$(printf '%s\n' "$L" "$G" node4 | sort | paste -sd,)
wait_until 30 voters_are "$want" || fail "voters are $(voters), expected $want"
took=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "replacing it by node4" "$IDUNNO_RUN_DIR/$L/idunnod.log" || fail "leader did not log the replacement"
assert_contains "$(cli node4 list_mem)" "standby" "node4 is a standby now"

# The group survives another failure: G goes, the leader and node4 are a majority.
cluster kill "$G"
cli node5 --timeout 8000 ctl-put after 1 >/dev/null || fail "no writes after a second failure"
out=$(cli node4 ctl-get before after)
assert_contains "$out" "before = 1" "old write kept"
assert_contains "$out" "after = 1" "new write"
# And G is replaced in turn by node5.
want=$(printf '%s\n' "$(leader)" node4 node5 | sort | paste -sd,)
wait_until 30 voters_are "$want" || fail "second replacement: voters are $(voters)"

# F comes back with its old data: outside the configuration, it changes nothing.
L2=$(leader)
cluster start "$F"
sleep 2
assert_eq "$(leader)" "$L2" "a returning replaced voter must not depose the leader"
assert_eq "$(voters)" "$want" "voters after F's return"
# Requests through F still reach the coordinator (F learns it from a voter).
cli "$F" --timeout 8000 ctl-put again 1 >/dev/null || fail "writes through the returned $F"
echo "replace ok: $F replaced by node4 in ${took} ms (limit 3000 ms + detection)"
