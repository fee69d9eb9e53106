#!/usr/bin/env bash
# Distributed grep over 4 daemons: lines from every node with per-node counts,
# -c/-i/-E, and a killed node named as unreachable within a bounded time.
# timeout: 120
. "$(dirname "$0")/lib.sh"

cluster up 4 >/dev/null
# Plant known lines in every node's log.
for k in 1 2 3 4; do
  for i in $(seq 1 $((k * 3))); do
    echo "2026-01-01T00:00:00.000Z node$k INFO test: needle-$k line $i MiXeD" >>"$IDUNNO_RUN_DIR/node$k/idunnod.log"
  done
done

out=$(cli node2 grep needle-3)
assert_eq "$(grep -c '^node3: .*needle-3' <<<"$out")" 9 "lines from node3"
assert_contains "$out" "total"

json=$(cli node1 --json grep -c needle)
python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
counts = {n["node"]: n["count"] for n in r["nodes"]}
assert counts == {"node1": 3, "node2": 6, "node3": 9, "node4": 12}, counts
assert r["total"] == 30, r
assert all("lines" not in n for n in r["nodes"])
PY

assert_eq "$(cli node1 --json grep -c mixed | grep -o '"total":[0-9]*')" '"total":0' "case-sensitive"
assert_eq "$(cli node1 --json grep -i -c mixed | grep -o '"total":[0-9]*')" '"total":30' "-i"
assert_eq "$(cli node1 --json grep -E -c 'needle-[13] line' | grep -o '"total":[0-9]*')" '"total":12' "-E"

# A bad regex is the user's error: exit 1 and a message.
set +e
cli node1 grep -E 'needle-[' >/dev/null 2>"$IDUNNO_RUN_DIR/err"; rc=$?
set -e
assert_eq "$rc" 1 "exit status for a bad regex"
assert_contains "$(cat "$IDUNNO_RUN_DIR/err")" "regular expression"

# A frozen node (SIGSTOP): its kernel still accepts the connection but nobody
# answers, so only the bounded wait can end the search.
pid3=$(cat "$IDUNNO_RUN_DIR/node3/pid")
kill -STOP "$pid3"
start=$(date +%s%N)
out=$(cli node1 --timeout 3000 grep -c needle)
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
kill -CONT "$pid3"
[ "$elapsed_ms" -lt 5000 ] || fail "grep waited ${elapsed_ms} ms for a frozen node"
assert_contains "$(grep '^node3' <<<"$out")" "no answer in time"
assert_contains "$(grep '^node2' <<<"$out")" "6"

# A killed node, before the failure detector has noticed: named unreachable.
cluster kill node4
out=$(cli node1 --timeout 3000 grep -c needle)
assert_contains "$(grep '^node4' <<<"$out")" "unreachable"
echo "grep ok (frozen node: ${elapsed_ms} ms)"
