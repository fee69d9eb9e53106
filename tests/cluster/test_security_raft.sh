#!/usr/bin/env bash
# The raft port (PORT+1) behind the cluster key (docs/security.md, "The raft
# port"): against a keyed 3-node cluster, a plaintext RequestVote of term
# 2^64-1, a plaintext InstallSnapshot whose configuration claims 2^40 bytes, a
# handshake claiming a 1 GiB address, a connection that sends nothing, and a
# keyed insider (not a voter) sending a RequestVote of term +1,000,000 or an
# insane InstallSnapshot all fail: each connection is closed, the coordinator
# and the term stay, every node keeps answering, the refusals are counted.
# Then the same lies in a --no-key cluster are refused by the message checks.
# timeout: 150
. "$(dirname "$0")/lib.sh"

FORGE="$ROOT/build/tests/tools/raft_forge"
[ -x "$FORGE" ] || fail "missing $FORGE (make all builds it)"

json() { "$PY3" -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
leader() { cli node1 --json status 2>/dev/null | json 'd["leader"]'; }
term() { cli "$1" --json status 2>/dev/null | json 'd["term"]'; }
# settled: every node names the same coordinator in the same term (a first
# start may elect twice while the voters learn each other's addresses).
settled() {
  local seen="" k line
  for k in node1 node2 node3; do
    line=$(cli "$k" --json status 2>/dev/null | json 'd["leader"], d["term"]') || return 1
    case $line in None*|"") return 1 ;; esac
    [ -z "$seen" ] && seen=$line
    [ "$line" = "$seen" ] || return 1
  done
}
raft_addr() { local a; a=$(addr "$1"); echo "${a%:*}:$(( ${a##*:} + 1 ))"; }
count() { local v; v=$(metric "$1" "$2" ${3:+"$3"}); echo "${v%.*}"; }

# expect_closed NODE ATTACK [TERM]: the node closes the forger's connection
# (the forge polls for it; its own deadline is 10 s).
expect_closed() {
  local out
  out=$("$FORGE" "$(raft_addr "$1")" "$2" "${3:-1}") || fail "$2 on $1: connection not closed ($out)"
  assert_contains "$out" "closed after" "$2 on $1"
  echo "$out"
}
plain() { local -x IDUNNO_KEY_FILE=""; "$@"; } # the forge then speaks plaintext

# check_unharmed LEADER TERM: same coordinator, no term jump, all answer.
check_unharmed() {
  # A status call may find node1 between two heartbeats' worth of doubt;
  # the coordinator must be the same one once it answers.
  is_leader() { [ "$(leader)" = "$1" ]; }
  wait_until 5 is_leader "$1" || fail "coordinator after the attacks: expected $1, got '$(leader)'"
  for k in node1 node2 node3; do
    local t; t=$(term "$k") || fail "$k stopped answering"
    [ "$t" -lt $(( $2 + 1000 )) ] || fail "$k term jumped from $2 to $t"
  done
}

cluster up 3 >/dev/null
wait_until 30 settled || fail "no coordinator elected"
L=$(leader); T=$(term node1)
victim=node2; [ "$L" = node2 ] && victim=node3
hs0=$(count "$victim" idunno_bad_frames_total reason=raft_handshake)
bound0=$(count "$victim" idunno_tcp_closed_by_bound_total)
tj0=$(count "$victim" idunno_bad_frames_total reason=raft_term)
fr0=$(count "$victim" idunno_bad_frames_total reason=raft_frame)

# (a), (b), (c): plaintext, on the coordinator and on a follower.
for k in "$L" "$victim"; do
  plain expect_closed "$k" vote 18446744073709551615 >/dev/null
  plain expect_closed "$k" snapshot >/dev/null
  plain expect_closed "$k" huge-addr >/dev/null
done
# (d): silent: closed by the handshake deadline (3 s), not by the forge's 10 s.
out=$(plain expect_closed "$victim" silent)
ms=$(sed 's/closed after \([0-9]*\) ms/\1/' <<<"$out")
[ "$ms" -lt 9000 ] || fail "silent connection closed only after $ms ms"
# (e): an insider with the key but not a voter; and its insane messages.
expect_closed "$victim" vote $(( T + 1000000 )) >/dev/null
expect_closed "$victim" snapshot "$T" >/dev/null
expect_closed "$victim" huge-addr >/dev/null

check_unharmed "$L" "$T"
[ "$(count "$victim" idunno_bad_frames_total reason=raft_handshake)" -ge $(( hs0 + 4 )) ] ||
  fail "handshake refusals not counted"
[ "$(count "$victim" idunno_tcp_closed_by_bound_total)" -ge $(( bound0 + 1 )) ] ||
  fail "handshake timeout not counted"
[ "$(count "$victim" idunno_bad_frames_total reason=raft_term)" -ge $(( tj0 + 1 )) ] ||
  fail "term jump not counted"
[ "$(count "$victim" idunno_bad_frames_total reason=raft_frame)" -ge $(( fr0 + 1 )) ] ||
  fail "insane InstallSnapshot not counted"
grep -q "raft port: term jump from 127.0.0.1" "$IDUNNO_RUN_DIR/$victim/idunnod.log" ||
  fail "no WARN naming the term jump's source"
echo "keyed: coordinator $L kept term $T under every attack"

# The same cluster size without the key: the message checks alone refuse.
cluster down >/dev/null
cluster --no-key up 3 >/dev/null
unset IDUNNO_KEY_FILE
wait_until 30 settled || fail "no coordinator elected (--no-key)"
L=$(leader); T=$(term node1)
victim=node2; [ "$L" = node2 ] && victim=node3
plain expect_closed "$victim" vote 18446744073709551615 >/dev/null
plain expect_closed "$victim" snapshot "$T" >/dev/null
plain expect_closed "$victim" huge-addr >/dev/null
check_unharmed "$L" "$T"
[ "$(count "$victim" idunno_bad_frames_total reason=raft_term)" -ge 1 ] || fail "term jump not counted (--no-key)"
[ "$(count "$victim" idunno_bad_frames_total reason=raft_frame)" -ge 1 ] || fail "InstallSnapshot not counted (--no-key)"
echo "plaintext: coordinator $L kept term $T; raft port ok"
