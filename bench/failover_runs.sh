#!/usr/bin/env bash
# failover_runs.sh — the exactly-once target: tests/cluster/test_jobs_failover.sh
# (6 daemons, 9,000 single-image queries, a worker and then the coordinator
# killed with -9) run N times with random victims and kill moments
# (IDUNNO_FAILOVER_SEED=1..N). Each run checks that every image has exactly
# one result in SDFS. Prints one JSON document.
#
#   bench/failover_runs.sh [N]     (default 20; about a minute per run)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-20}
case $n in -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
passed=0; failed=0; dups=(); failures=()
for seed in $(seq 1 "$n"); do
  out=$(IDUNNO_FAILOVER_SEED=$seed bash "$root/tests/cluster/test_jobs_failover.sh" 2>&1)
  rc=$?
  echo "$out" | grep -E "^seed|^ok|FAIL|note" | sed "s/^/run $seed: /" >&2
  if [ $rc = 0 ]; then
    passed=$((passed + 1))
    dups+=("$(echo "$out" | sed -n 's/.*dropped: \([0-9]*\)).*/\1/p' | tail -1)")
  else
    failed=$((failed + 1)); failures+=("$seed")
  fi
done
printf '{"runs": %d, "passed": %d, "failed": %d, "failed_seeds": [%s], "duplicates_dropped": [%s]}\n' \
  "$n" "$passed" "$failed" "$(IFS=,; echo "${failures[*]:-}")" "$(IFS=,; echo "${dups[*]:-}")"
