#!/usr/bin/env bash
# demo.sh — the main job (`make demo`): a local cluster doing real work on
# defaults. Installs what is missing, builds, starts NODES nodes (default 10),
# shows the members, searches every node's log, kills a node and shows the
# failure detector at work, restarts it, and stops the cluster.
#
#   scripts/demo.sh [--nodes N] [--keep]   (--keep leaves the cluster running)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
nodes=10; keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1" >&2; exit 1 ;;
  esac
done
[ "$nodes" -ge 3 ] || { echo "demo: --nodes must be at least 3" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
scripts/install-deps.sh --check || { step "installing dependencies"; scripts/install-deps.sh; }
step "building"
make -j2 --no-print-directory all >/dev/null
export IDUNNO_RUN_DIR=${IDUNNO_RUN_DIR:-$root/run}
cluster() { scripts/cluster "$@"; }
[ "$keep" -eq 1 ] || trap 'step "stopping the cluster"; cluster down' EXIT
cluster down >/dev/null 2>&1 || true

step "starting $nodes nodes on 127.0.0.1"
cluster up "$nodes"
step "members as node1 sees them (idunno list_mem)"
bin/idunno list_mem
step "every node's log, searched at once (idunno grep -c joined)"
bin/idunno grep -c joined

victim=node$(( nodes / 2 + 1 ))
step "kill -9 $victim, then wait for the failure detector"
start=$(date +%s%N)
cluster kill "$victim"
until bin/idunno --json list_mem | /usr/bin/python3 -c '
import json, sys
ms = json.load(sys.stdin)["members"]
sys.exit(0 if any(m["name"] == sys.argv[1] and m["state"] == "failed" for m in ms) else 1)' "$victim"; do
  sleep 0.05
done
echo "node1 declared $victim failed after $(( ($(date +%s%N) - start) / 1000000 )) ms"
bin/idunno list_mem
step "where did the news come from? (idunno grep \"$victim.* is (suspect|failed)\")"
bin/idunno grep -E "$victim#[0-9]+ at .* is (suspect|failed)" | head -n 12

step "restart $victim: it comes back as a new incarnation"
cluster start "$victim"
cluster wait 20
bin/idunno list_mem
[ "$keep" -eq 1 ] && echo "cluster left running: scripts/cluster down stops it"
exit 0
