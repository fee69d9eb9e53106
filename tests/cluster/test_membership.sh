#!/usr/bin/env bash
# Membership on 5 real daemons: join, kill -9, restart as a new incarnation,
# graceful leave, list_self, and a join whose first seed is dead.
# timeout: 120
. "$(dirname "$0")/lib.sh"

cluster up 5 >/dev/null
others=(node1 node2 node4 node5)

# Everyone sees everyone alive (cluster up waited for that; check one view).
out=$(cli node5 list_mem)
for n in node1 node2 node3 node4 node5; do assert_contains "$out" "$n"; done
assert_eq "$(cli node2 --json list_mem | grep -o '"state":"alive"' | wc -l)" 5 "alive count"

self=$(cli node3 --json list_self)
assert_contains "$self" '"name":"node3"'
assert_contains "$self" '"self":true'

# kill -9: every other member declares node3 failed.
old_inc=$(incarnation_of node1 node3)
cluster kill node3
wait_until 5 all_see failed node3 "${others[@]}" || fail "node3 not failed everywhere"

# Restart: a new incarnation, alive everywhere; the old one stays failed.
cluster start node3
wait_until 10 all_see alive node3 "${others[@]}" || fail "restarted node3 not alive everywhere"
new_inc=$(incarnation_of node1 node3)
[ "$new_inc" -gt "$old_inc" ] || fail "restart kept incarnation $old_inc"
# The member table keeps one entry per name; the old identity's end is logged.
grep -q "member node3#$old_inc at .* is failed" "$IDUNNO_RUN_DIR/node1/idunnod.log" ||
  fail "node1's log should record the old node3 identity as failed"

# Graceful leave: listed as left, never as failed.
cli node4 leave >/dev/null
wait_until 5 all_see left node4 node1 node2 node3 node5 || fail "node4 not listed left"
pid=$(cat "$IDUNNO_RUN_DIR/node4/pid")
wait_until 5 bash -c "! kill -0 $pid 2>/dev/null || grep -q '^State:[[:space:]]*Z' /proc/$pid/status" || fail "node4 did not exit after leave"
sleep_check=$(cli node1 list_mem)
assert_contains "$sleep_check" "left"
# Join through a seed list whose first seed is dead: node5 restarts with seeds
# node1 (killed), node2, node3.
cluster kill node1
cluster kill node5
cluster start node5
wait_until 10 all_see alive node5 node2 node3 || fail "node5 did not rejoin past a dead first seed"
wait_until 5 all_see failed node1 node2 node3 || fail "node1 not failed"
st=$(state_of node5 node1)
[ "$st" = failed ] || [ "$st" = absent ] || fail "node5 lists the dead node1 as $st"
echo "membership ok"
