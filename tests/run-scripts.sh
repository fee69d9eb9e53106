#!/usr/bin/env bash
# Runs every test script DIR/test_*.sh, each with a time limit. A script may set
# its own limit with a line "# timeout: SECONDS". Scripts find the binaries in
# bin/ and use scripts/cluster with a private run directory.
set -u
dir=${1:?usage: run-scripts.sh DIR}
tier=${TIER:-$(basename "$dir")}
. "$(dirname "$0")/lib-runner.sh"
for t in "$dir"/test_*.sh; do
  [ -f "$t" ] || continue
  limit=$(awk '/^# timeout: [0-9]+/ { print $3; exit }' "$t")
  run_one "$tier/$(basename "$t" .sh)" "${limit:-300}" bash "$t"
done
report "$tier"
