# lib.sh — helpers for cluster test scripts (sourced). Each test gets its own
# run directory and port range, and its cluster is brought down on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IDUNNO="$ROOT/bin/idunno"
export IDUNNO_RUN_DIR
IDUNNO_RUN_DIR=$(mktemp -d /tmp/idunno-test.XXXXXX)
export IDUNNO_BASE_PORT=${IDUNNO_TEST_PORT_BASE:-7000}
# scripts/cluster up writes the cluster key there; every client call uses it.
export IDUNNO_KEY_FILE="$IDUNNO_RUN_DIR/cluster.key"

cluster() { "$ROOT/scripts/cluster" "$@"; }
addr() { cluster addr "$1"; }
cli() { local node=$1; shift; "$IDUNNO" -s "$(addr "$node")" "$@"; }

# Processes a test starts itself (outside scripts/cluster): killed on exit.
TEST_PIDS=()
# Directories a test makes outside the run directory: removed on exit. (A test
# must not set its own EXIT trap: it would replace cleanup.)
TEST_DIRS=()

cleanup() {
  local rc=$?
  cluster down >/dev/null 2>&1 || true
  local p
  for p in "${TEST_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "--- test failed (exit $rc); node logs (last lines):"
    for d in "$IDUNNO_RUN_DIR"/node*; do
      [ -f "$d/idunnod.log" ] && { echo "== $d"; tail -n 15 "$d/idunnod.log"; }
      [ -s "$d/stderr" ] && { echo "== $d stderr"; tail -n 15 "$d/stderr"; }
    done
  fi
  rm -rf "$IDUNNO_RUN_DIR"
  for p in "${TEST_DIRS[@]}"; do rm -rf "$p"; done
  exit "$rc"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
# json EXPR: EXPR of the JSON document on stdin (as d), printed.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
# wait_leader NODE: returns once NODE's status names a coordinator (20 s at
# most, else the test fails).
wait_leader() {
  wait_until 20 sh -c "'$IDUNNO' -s $(addr "$1") --json status 2>/dev/null | grep -q '\"leader\":\"node'" ||
    fail "no leader"
}
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

# ---- the HTTP endpoint (PORT+2, docs/http.md) --------------------------------------------
# Debian's python3: it has python3-prometheus-client (scripts/install-deps.sh).
PY3=/usr/bin/python3

# text_lines N: for the pretrained text_direction model (M, its card CARD),
# N rendered text lines in $D/lines (up_* upright: "0", down_* upside down:
# "180"; tools/text_lines.py) and each one's top-1 from a bare ONNX Runtime
# run with its own preprocessing (REF, tests/tools/ref_classify) in
# $D/ref.txt. Sets M, CARD, REF and D ($IDUNNO_RUN_DIR/data).
text_lines() {
  M=$ROOT/models/text_direction.onnx
  CARD=$ROOT/models/text_direction.card.json
  REF=$ROOT/build/tests/tools/ref_classify
  [ -f "$M" ] && [ -f "$CARD" ] || fail "no $M (make models makes it)"
  [ -x "$REF" ] || fail "no $REF (make builds it)"
  D=$IDUNNO_RUN_DIR/data
  mkdir -p "$D"
  "$ROOT/scripts/make-data.sh" --text-lines "$1" "$D/lines" 2>/dev/null
  "$REF" "$M" 48x192 0.5 0.5 "$D"/lines/*.png >"$D/ref.txt"
  [ "$(wc -l <"$D/ref.txt")" = "$1" ] || fail "the reference answered $(wc -l <"$D/ref.txt") of $1"
}

# check_text_answer FILE: a predict --json answer of text_direction (after
# text_lines): no image failed, each top-1 equal to the bare run's; prints
# the number of images.
check_text_answer() {
  "$PY3" - "$1" "$D/ref.txt" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
ref = {os.path.basename(l.split()[0]): int(l.split()[1]) for l in open(sys.argv[2])}
assert d["model"] == "text_direction" and d["worker"].startswith("node"), d
assert d["batched"] >= 1, d
for r in d["results"]:
    assert "error" not in r, r
    name = os.path.basename(r["image"])
    assert r["classes"][0] == ref[name], "%s: top-1 %d, the bare run says %d" % (name, r["classes"][0], ref[name])
print(len(d["results"]))
PY
}

# predict_loop K TAG COUNT: text_direction predicts of COUNT images (after
# text_lines) through nodeK until $D/stop exists; each answer is kept as
# $D/TAG.K.N.json, each failure appended to $D/failures.
predict_loop() {
  local k=0 s lines=("$D"/lines/*.png)
  while [ ! -e "$D/stop" ]; do
    k=$((k + 1))
    s=$(( (k * $3 + $1) % (${#lines[@]} - $3) ))
    if cli "node$1" --json predict --deadline-ms 30000 text_direction "${lines[@]:$s:$3}" \
      >"$D/answer.$2.$1" 2>"$D/error.$2.$1"; then
      mv "$D/answer.$2.$1" "$D/$2.$1.$k.json"
    else
      echo "$2: node$1 request $k failed: $(cat "$D/error.$2.$1")" >>"$D/failures"
    fi
  done
}
# stop_loops TAG: ends the predict_loops, fails if a request failed, checks
# every answer kept for TAG (check_text_answer) and sets $checked to their
# number. Not in a subshell: it waits for this shell's loops.
stop_loops() {
  touch "$D/stop"
  wait
  [ ! -s "$D/failures" ] || fail "requests failed: $(cat "$D/failures")"
  checked=0
  local f
  for f in "$D/$1".*.json; do
    check_text_answer "$f" >/dev/null || fail "$1: answer $f"
    checked=$((checked + 1))
  done
}
# job_field NODE MODEL FIELD: the field of MODEL's job in `jobs --json`, asked
# of NODE ("" when MODEL has no job); field_is NODE MODEL FIELD VALUE.
job_field() {
  cli "$1" --json jobs | "$PY3" -c '
import json, sys
js = [j for j in json.load(sys.stdin)["jobs"] if j["model"] == sys.argv[1]]
print(js[0].get(sys.argv[2], "") if js else "")' "$2" "$3"
}
field_is() { [ "$(job_field "$1" "$2" "$3")" = "$4" ]; }
# answers TAG: the answers predict_loop kept for TAG; answers_at_least TAG N.
answers() { ls "$D/$1".*.json 2>/dev/null | wc -l; }
answers_at_least() { [ "$(answers "$1")" -ge "$2" ]; }
# leader_other_than NODE OLD: NODE's status names a coordinator, not OLD.
leader_other_than() {
  local l
  l=$(cli "$1" --json status 2>/dev/null | json 'd["leader"]') && [ -n "$l" ] && [ "$l" != "$2" ]
}

# http_addr NODE: HOST:PORT of the node's HTTP endpoint.
http_addr() { local a; a=$(addr "$1"); echo "${a%:*}:$(( ${a##*:} + 2 ))"; }

# http_get NODE PATH [METHOD]: the status code on the first line (000 if no
# answer), the Content-Type on the second, the body after.
http_get() {
  "$PY3" - "$(http_addr "$1")" "$2" "${3:-GET}" <<'PY'
import sys, urllib.request, urllib.error
addr, path, method = sys.argv[1:4]
req = urllib.request.Request("http://%s%s" % (addr, path), method=method,
                             data=b"x" if method in ("POST", "PUT") else None)
try:
    with urllib.request.urlopen(req, timeout=3) as r:
        code, ctype, body = r.status, r.headers.get("Content-Type", ""), r.read()
except urllib.error.HTTPError as e:
    code, ctype, body = e.code, e.headers.get("Content-Type", ""), e.read()
except OSError:
    code, ctype, body = 0, "", b""
sys.stdout.write("%03d\n%s\n" % (code, ctype))
sys.stdout.write(body.decode("utf-8", "replace"))
PY
}
http_code() { http_get "$@" | sed -n 1p; }

# metric NODE NAME [LABEL=VALUE ...]: the value of the one sample of NAME
# (a sample name: counters end in _total) with those labels in NODE's
# /metrics, parsed by prometheus_client; "absent" if there is none. Fails if
# the document does not parse.
metric() {
  local node=$1; shift
  http_get "$node" /metrics | tail -n +3 | "$PY3" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
name, want = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
vals = [s.value for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in want.items())]
print("absent" if not vals else ("%g" % vals[0] if len(vals) == 1 else "ambiguous"))' "$@"
}
