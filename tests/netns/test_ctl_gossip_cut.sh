#!/usr/bin/env bash
# Gossip alone never swaps out a live voter: a voter whose UDP (gossip) is cut
# while its TCP (raft) still works is declared failed by membership, but the
# leader sees it replicate the log and keeps it, well past --voter-replace.
# When its gossip is back it is alive again and still a voter.
# timeout: 120
. "$(dirname "$0")/lib.sh"
export IDUNNOD_ARGS="--voter-replace 2000"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
leader() { cli node4 --json status 2>/dev/null | json 'd["leader"]'; }
has_leader() { [ -n "$(leader)" ]; }
voters() {
  cli "$(leader)" --json status 2>/dev/null |
    json '",".join(sorted(s["name"] for s in d["servers"] if s["role"] == "voter"))'
}

cluster up 5 >/dev/null
wait_until 15 has_leader || fail "no coordinator elected"
L=$(leader)
# The victim: a voter that is not the leader.
for V in node1 node2 node3; do [ "$V" != "$L" ] && break; done
assert_eq "$(voters)" "node1,node2,node3" "voters at the start"
ns="idn$(cat "$IDUNNO_RUN_DIR/netns")-${V#node}"
ip netns exec "$ns" nft add rule inet idn input meta l4proto udp drop
ip netns exec "$ns" nft add rule inet idn output meta l4proto udp drop
wait_until 10 all_see failed "$V" node4 node5 "$L" || fail "membership did not declare $V failed"
t_failed=$(date +%s)
wait_until 10 grep -q "membership says voter $V failed, but it still replicates" \
  "$IDUNNO_RUN_DIR/$L/idunnod.log" || fail "the leader did not check $V with raft"
# Four times --voter-replace: the voter set must not change.
while [ $(( $(date +%s) - t_failed )) -lt 8 ]; do
  assert_eq "$(voters)" "node1,node2,node3" "voters while $V's gossip is cut"
  sleep 0.5
done
cli node4 --timeout 8000 ctl-put during 1 >/dev/null || fail "no writes while $V's gossip is cut"
ip netns exec "$ns" nft flush chain inet idn input
ip netns exec "$ns" nft flush chain inet idn output
wait_until 20 all_see alive "$V" node4 node5 "$L" || fail "$V not alive again after the heal"
assert_eq "$(voters)" "node1,node2,node3" "voters after the heal"
echo "gossip cut: $V declared failed by membership, kept as a voter by raft"
