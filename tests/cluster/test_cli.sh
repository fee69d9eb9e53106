#!/usr/bin/env bash
# The client's contract: --help everywhere, exit 1 for user errors, exit 2 when
# the cluster cannot be reached, and nodes that survive garbage on their port.
# timeout: 60
. "$(dirname "$0")/lib.sh"

# Outputs are captured before they are searched: `prog | grep -q` under
# pipefail fails whenever grep exits before prog has written everything.
overview=$("$IDUNNO" --help)
grep -q list_mem <<<"$overview" || fail "--help lists commands"
# Every command the overview lists answers --help with its own usage line.
cmds=$(awk '/^  [a-z]/ { print $1 }' <<<"$overview")
[ "$(echo "$cmds" | wc -l)" -ge 30 ] || fail "--help lists $(echo "$cmds" | wc -l) commands"
for c in $cmds; do
  usage=$("$IDUNNO" "$c" --help)
  grep -q -E "^usage: idunno $c( |$)" <<<"$usage" || fail "$c --help"
done
daemon_usage=$("$ROOT/bin/idunnod" --help)
grep -q -- --join <<<"$daemon_usage" || fail "idunnod --help"

set +e
"$IDUNNO" no_such_command 2>/dev/null; rc_unknown=$?
"$IDUNNO" -s 127.0.0.1:1 ping 2>/dev/null; rc_unreach=$?
"$IDUNNO" -s nonsense ping 2>/dev/null; rc_badaddr=$?
"$ROOT/bin/idunnod" --name x 2>/dev/null; rc_daemon=$?
set -e
assert_eq "$rc_unknown" 1 "unknown command"
assert_eq "$rc_unreach" 2 "unreachable node"
assert_eq "$rc_badaddr" 1 "bad -s"
assert_eq "$rc_daemon" 1 "idunnod without --addr"

cluster up 2 >/dev/null
# Garbage on the TCP and UDP port: counted, dropped, node keeps serving.
a=$(addr node1); host=${a%:*}; port=${a#*:}
python3 - "$host" "$port" <<'PY'
import socket, sys, os
host, port = sys.argv[1], int(sys.argv[2])
for payload in [b"GET / HTTP/1.0\r\n\r\n", os.urandom(4096), b"IDNO" + os.urandom(60)]:
    s = socket.create_connection((host, port)); s.sendall(payload); s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(payload[:1400], (host, port)); u.close()
PY
cli node1 ping >/dev/null || fail "node1 stopped answering after garbage"
bad=$(cli node1 --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["bad_frames"])')
[ "$bad" -ge 4 ] || fail "garbage frames not counted (bad_frames=$bad)"
[ "$(state_of node2 node1)" = alive ] || fail "node1 should still be alive"
echo "cli ok"
