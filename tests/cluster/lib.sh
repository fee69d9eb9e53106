# lib.sh — helpers for cluster test scripts (sourced). Each test gets its own
# run directory and port range, and its cluster is brought down on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IDUNNO="$ROOT/bin/idunno"
export IDUNNO_RUN_DIR
IDUNNO_RUN_DIR=$(mktemp -d /tmp/idunno-test.XXXXXX)
export IDUNNO_BASE_PORT=${IDUNNO_TEST_PORT_BASE:-7000}

cluster() { "$ROOT/scripts/cluster" "$@"; }
addr() { cluster addr "$1"; }
cli() { local node=$1; shift; "$IDUNNO" -s "$(addr "$node")" "$@"; }

cleanup() {
  local rc=$?
  cluster down >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    echo "--- test failed (exit $rc); node logs (last lines):"
    for d in "$IDUNNO_RUN_DIR"/node*; do
      [ -f "$d/idunnod.log" ] && { echo "== $d"; tail -n 15 "$d/idunnod.log"; }
      [ -s "$d/stderr" ] && { echo "== $d stderr"; tail -n 15 "$d/stderr"; }
    done
  fi
  rm -rf "$IDUNNO_RUN_DIR"
  exit "$rc"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
assert_eq() { [ "$1" = "$2" ] || fail "${3:-values differ}: expected '$2', got '$1'"; }
assert_contains() { grep -q -- "$2" <<<"$1" || fail "${3:-missing text}: '$2' not in: $1"; }

# wait_until SECONDS CMD...: polls CMD every 50 ms until it succeeds.
wait_until() {
  local limit=$1; shift
  local deadline=$(( $(date +%s%N) + limit * 1000000000 ))
  until "$@"; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# state_of OBSERVER NAME: the state OBSERVER lists for the newest member NAME.
state_of() {
  cli "$1" --json list_mem | python3 -c '
import json, sys
name = sys.argv[1]
ms = [m for m in json.load(sys.stdin)["members"] if m["name"] == name]
print(max(ms, key=lambda m: m["incarnation"])["state"] if ms else "absent")' "$2"
}
incarnation_of() {
  cli "$1" --json list_mem | python3 -c '
import json, sys
ms = [m for m in json.load(sys.stdin)["members"] if m["name"] == sys.argv[1]]
print(max(m["incarnation"] for m in ms) if ms else 0)' "$2"
}
all_see() { # all_see STATE NAME NODES...
  local st=$1 name=$2; shift 2
  for o in "$@"; do [ "$(state_of "$o" "$name")" = "$st" ] || return 1; done
}
