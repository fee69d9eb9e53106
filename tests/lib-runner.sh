# lib-runner.sh — shared by the test runners: run one test under a watchdog and
# keep the tally. Sourced, not run.
#
# A test passes when it exits 0 within its time limit. Its output goes to
# $TEST_LOG_DIR/<name>.log and is printed only when it fails.

TEST_LOG_DIR=${TEST_LOG_DIR:-$(pwd)/build/test-logs}
mkdir -p "$TEST_LOG_DIR"
passed=0
failed=0
failed_names=()

# run_one NAME TIMEOUT_S CMD...
run_one() {
  local name=$1 limit=$2
  shift 2
  local log="$TEST_LOG_DIR/${name//\//_}.log" start end rc
  start=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 </dev/null
  rc=$?
  end=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    printf 'PASS  %-40s %6ss\n' "$name" "$secs"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo "(timed out after ${limit}s)" >>"$log"
    printf 'FAIL  %-40s %6ss (exit %d)\n' "$name" "$secs" "$rc"
    sed 's/^/    | /' "$log" | tail -n 60
  fi
}

# report TIER: prints the tier's closing line and appends the tally for run-all.
report() {
  local tier=$1
  if [ "${#failed_names[@]}" -gt 0 ]; then
    echo "$tier failures: ${failed_names[*]}"
  fi
  echo "$tier: $passed passed, $failed failed"
  if [ -n "${TEST_TALLY:-}" ]; then
    echo "$passed $failed" >>"$TEST_TALLY"
  fi
  [ "$failed" -eq 0 ]
}
