#!/usr/bin/env bash
# Runs every unit test binary in DIR, each in its own process with a time limit.
set -u
dir=${1:?usage: run-unit.sh DIR}
tier=${TIER:-unit}
. "$(dirname "$0")/lib-runner.sh"
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  run_one "$tier/$(basename "$t")" "${UNIT_TIMEOUT:-120}" "$t"
done
report "$tier"
