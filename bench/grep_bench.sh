#!/usr/bin/env bash
# grep over N nodes holding MB megabytes of log each, against a plain local
# `grep -c` of one node's log. Prints JSON.
#   bench/grep_bench.sh [NODES=10] [MB=50] [PATTERN=needle]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nodes=${1:-10}; mb=${2:-50}; pattern=${3:-needle}
export IDUNNO_RUN_DIR; IDUNNO_RUN_DIR=$(mktemp -d /tmp/idunno-grepbench.XXXXXX)
export IDUNNO_BASE_PORT=${IDUNNO_BASE_PORT:-8200}
export IDUNNO_KEY_FILE=$IDUNNO_RUN_DIR/cluster.key # written by scripts/cluster up
trap '"$root/scripts/cluster" down >/dev/null 2>&1; rm -rf "$IDUNNO_RUN_DIR"' EXIT
"$root/scripts/cluster" up "$nodes" >/dev/null
# One synthetic log in the node format, 1 line in 1000 matching; every node gets a copy.
sample="$IDUNNO_RUN_DIR/sample.log"
/usr/bin/python3 - "$sample" "$mb" <<'PY'
import sys, random
path, mb = sys.argv[1], int(sys.argv[2])
r = random.Random(1)
mods = ["member", "net", "sdfs", "sched", "infer", "ctl"]
with open(path, "w") as f:
    size, i = 0, 0
    while size < mb * 1024 * 1024:
        word = "needle" if i % 1000 == 0 else "hay%d" % r.randint(0, 99999)
        line = "2026-11-24T12:00:%02d.%03dZ node%d INFO %s: request %d handled %s in %d us\n" % (
            i % 60, i % 1000, 1 + i % 10, mods[i % 6], i, word, r.randint(1, 9999))
        f.write(line); size += len(line); i += 1
PY
for k in $(seq 1 "$nodes"); do cat "$sample" >>"$IDUNNO_RUN_DIR/node$k/idunnod.log"; done
sync
cat "$IDUNNO_RUN_DIR"/node*/idunnod.log >/dev/null # warm the page cache for both sides
# Output goes to a file, not /dev/null: GNU grep stops at the first match when it
# sees its output discarded, which would time nothing.
t() { local s e; s=$(date +%s%N); "$@" >"$IDUNNO_RUN_DIR/out"; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
best() { local b=999999 v; for _ in 1 2 3; do v=$(t "$@"); [ "$v" -lt "$b" ] && b=$v; done; echo "$b"; }
local_ms=$(best grep -c "$pattern" "$IDUNNO_RUN_DIR/node1/idunnod.log")
# The first search maps every node's log (later ones find it mapped): timed apart.
first_ms=$(t "$root/bin/idunno" -s 127.0.0.1:"$IDUNNO_BASE_PORT" --timeout 30000 grep -c "$pattern")
dist_ms=$(best "$root/bin/idunno" -s 127.0.0.1:"$IDUNNO_BASE_PORT" --timeout 30000 grep -c "$pattern")
total=$("$root/bin/idunno" -s 127.0.0.1:"$IDUNNO_BASE_PORT" --json --timeout 30000 grep -c "$pattern" | grep -o '"total":[0-9]*' | cut -d: -f2)
kernel=$(grep -h -o 'grep kernel [a-z0-9]*' "$IDUNNO_RUN_DIR/node1/idunnod.log" | head -n1 | cut -d' ' -f3)
cat <<JSON
{"nodes": $nodes, "mb_per_node": $mb, "matches_total": $total, "cores": $(nproc),
 "local_grep_c_one_node_ms": $local_ms, "idunno_grep_c_all_nodes_ms": $dist_ms,
 "idunno_first_search_ms": $first_ms, "search_kernel": "$kernel",
 "ratio": $(awk -v a="$dist_ms" -v b="$local_ms" 'BEGIN { printf "%.2f", a / b }'),
 "target": "ratio <= 1.5"}
JSON
