#!/usr/bin/env bash
# Forged gossip datagrams (tests/tools/swim_forge, built with the project's own
# codec) on 4 real daemons: "node3 left" with incarnation 2^64-1 changes
# nothing anywhere; "node3 left" at its true incarnation is refuted by node3
# itself, which comes back alive everywhere under a newer incarnation; a ping
# that names another node's address is answered to the real sender; a member
# name with control characters is never listed.
# timeout: 120
. "$(dirname "$0")/lib.sh"
FORGE="$ROOT/build/tests/tools/swim_forge"
[ -x "$FORGE" ] || fail "build the helper first: make all"

cluster up 4 >/dev/null
others=(node1 node2 node4)
inc3=$(incarnation_of node1 node3)
inc2=$(incarnation_of node1 node2)
[ "$inc3" -gt 0 ] || fail "node3 unknown"

# 1. Incarnation 2^64-1 and state left, "from node2", to every member but node3.
for o in "${others[@]}"; do
  "$FORGE" "$(addr "$o")" notice node2 "$inc2" "$(addr node2)" \
    node3 "$(addr node3)" 18446744073709551615 left
done
# Observe for 3 s: nobody may list node3 as anything but alive, same incarnation.
end=$(( $(date +%s) + 3 ))
while [ "$(date +%s)" -lt "$end" ]; do
  for o in "${others[@]}"; do
    [ "$(state_of "$o" node3)" = alive ] || fail "$o lists node3 as $(state_of "$o" node3) after a forged datagram"
    [ "$(incarnation_of "$o" node3)" = "$inc3" ] || fail "$o took node3's forged incarnation"
  done
done
! grep -h "member node3#.* is left" "$IDUNNO_RUN_DIR"/node*/idunnod.log || fail "a node logged node3 as left"

# 2. "node3 left" at its true incarnation: believed at first, then refuted by
# node3, which takes a newer incarnation that everyone adopts.
for o in "${others[@]}"; do
  "$FORGE" "$(addr "$o")" notice node2 "$inc2" "$(addr node2)" node3 "$(addr node3)" "$inc3" left
done
refuted() {
  for o in "${others[@]}"; do
    [ "$(state_of "$o" node3)" = alive ] && [ "$(incarnation_of "$o" node3)" -gt "$inc3" ] || return 1
  done
}
wait_until 10 refuted || fail "node3 did not come back alive everywhere after a forged leave"
grep -q "taking a new incarnation" "$IDUNNO_RUN_DIR/node3/idunnod.log" || fail "node3 did not log its refutation"

# 3. A ping naming node4's address, sent from this host's own socket: the ack
# comes back here, to the real source.
out=$(SWIM_FORGE_WAIT_MS=2000 "$FORGE" "$(addr node1)" ping node4 "$(incarnation_of node1 node4)" "$(addr node4)") ||
  fail "no answer to the real source: $out"
assert_eq "$out" "answer ack" "answer to a ping with a forged address"

# 4. A member name with an escape sequence is refused by every node.
for o in "${others[@]}"; do
  "$FORGE" "$(addr "$o")" notice node2 "$inc2" "$(addr node2)" 'evil\e[2J' 127.0.0.1:9 "$inc2" alive
done
for o in node1 node2 node3 node4; do
  n=$(cli "$o" --json list_mem | grep -o '"name":' | wc -l)
  [ "$n" -eq 4 ] || fail "$o lists $n members after a forged name"
done
echo "forged gossip: refused, refuted, answered to the sender"
