#!/usr/bin/env bash
# A node cut off from the network (nftables in its namespace) is declared failed
# by the rest; after the heal it rejoins as a new incarnation.
# timeout: 120
. "$(dirname "$0")/lib.sh"

cluster up 5 >/dev/null
rest=(node1 node2 node3 node5)
old_inc=$(incarnation_of node1 node4)
cluster isolate node4
wait_until 5 all_see failed node4 "${rest[@]}" || fail "isolated node4 not declared failed by all"
# The others still agree among themselves.
for o in "${rest[@]}"; do
  for n in "${rest[@]}"; do [ "$(state_of "$o" "$n")" = alive ] || fail "$o sees $n not alive"; done
done
cluster heal node4
wait_until 15 all_see alive node4 "${rest[@]}" || fail "node4 did not rejoin after heal"
new_inc=$(incarnation_of node1 node4)
[ "$new_inc" -gt "$old_inc" ] || fail "node4 should rejoin as a new incarnation"
# The healthy majority kept its identities.
for n in "${rest[@]}"; do
  grep -q "rejoining" "$IDUNNO_RUN_DIR/$n/idunnod.log" && fail "$n rejoined but was never cut off"
done
echo "isolate ok: node4 $old_inc -> $new_inc"
