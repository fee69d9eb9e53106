#!/usr/bin/env bash
# demo.sh — the main job (`make demo`): a local cluster doing real work on
# defaults. Installs what is missing, builds, generates the models and the demo
# data, starts NODES nodes (default 10), runs a ResNet50 and an InceptionV3 job
# side by side with a live view, kills a worker and then the coordinator (and
# brings them back), prints C1-C5, writes run/report/report.md with plots, and
# stops the cluster. Under 5 minutes on a 2-core machine. ResNet50 and
# InceptionV3 carry generated weights (their answers mean nothing); beside them
# the pretrained text_direction model goes over rendered text lines with known
# answers, and the demo prints the accuracy the cluster reached.
#
#   scripts/demo.sh [--nodes N] [--seconds S] [--keep]
#     --nodes N     cluster size (default 10, at least 5)
#     --seconds S   how long the jobs run (default 150)
#     --keep        leave the cluster running afterwards (scripts/cluster down stops it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --nodes|--seconds) args+=("$1" "$2"); shift 2 ;;
    --keep) args+=("$1"); shift ;;
    -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1 (see scripts/demo.sh --help)" >&2; exit 1 ;;
  esac
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
scripts/install-deps.sh --check || { step "installing dependencies"; scripts/install-deps.sh; }
step "building"
make -j2 --no-print-directory all >/dev/null
step "models (generated once: make models) and demo data (make data)"
make --no-print-directory models data >/dev/null
export IDUNNO_RUN_DIR=${IDUNNO_RUN_DIR:-$root/run}
# scripts/cluster up writes the cluster key there (docs/security.md); the
# demo's client calls use it.
export IDUNNO_KEY_FILE=$IDUNNO_RUN_DIR/cluster.key
[ "${IDUNNO_NO_KEY:-0}" = 1 ] && unset IDUNNO_KEY_FILE
exec /usr/bin/python3 tools/demo.py "${args[@]}"
