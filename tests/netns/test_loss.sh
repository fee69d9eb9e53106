#!/usr/bin/env bash
# LOSS_PCT% (default 10%) packet loss on every link for LOSS_SECONDS (default 60): no member is ever
# declared failed, and the counters show the loss was real.
# timeout: 400
. "$(dirname "$0")/lib.sh"
secs=${LOSS_SECONDS:-60}

cluster up 10 >/dev/null
cluster loss "${LOSS_PCT:-10}"
end=$(( $(date +%s) + secs ))
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 5
  if grep -h "is failed" "$IDUNNO_RUN_DIR"/node*/idunnod.log; then
    fail "a false failure under 10% loss"
  fi
done
cluster loss 0
suspects=$(cat "$IDUNNO_RUN_DIR"/node*/idunnod.log | grep -c "is suspect" || true)
for k in $(seq 1 10); do
  [ "$(cli node$k --json list_mem | grep -o '"state":"alive"' | wc -l)" -eq 10 ] || fail "node$k lost track"
done
echo "loss ok: ${secs}s at 10% loss, 0 false failures, $suspects suspicions refuted"
