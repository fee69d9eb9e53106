#!/usr/bin/env bash
# False positives under packet loss: a 10-node namespace cluster with PCT% loss
# on every link for SECONDS (default 10% for 300 s). Prints JSON.
#   bench/member_loss.sh [SECONDS=300] [PCT=10]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-300}; pct=${2:-10}
out=$(mktemp)
export LOSS_SECONDS=$secs LOSS_PCT=$pct
if timeout $((secs + 120)) bash "$root/tests/netns/test_loss.sh" >"$out" 2>&1; then ok=true; else ok=false; fi
summary=$(grep '^loss ok' "$out" || tail -n 3 "$out" | tr '\n' ' ')
suspicions=$(sed -n 's/.* \([0-9]*\) suspicions refuted.*/\1/p' "$out")
rm -f "$out"
printf '{"nodes": 10, "loss_pct": %s, "seconds": %s, "zero_false_failures": %s, "suspicions_refuted": %s, "summary": "%s"}\n' \
  "$pct" "$secs" "$ok" "${suspicions:-null}" "$summary"
