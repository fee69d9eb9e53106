#!/usr/bin/env bash
# Costly greps do not hold up SDFS: searches run on the log layer's own
# thread pool, not on libuv's, where SDFS's disk writes (fsync) run. Eight
# regex searches that each take a while on every node are started; an SDFS
# put made while they run must finish before any of them does. With the
# searches on libuv's 4 threads, the put's fsync queued behind all eight.
# Back-references, which backtrack exponentially, are refused.
# timeout: 240
. "$(dirname "$0")/lib.sh"

cluster up 4 >/dev/null
wait_leader node1

set +e
cli node1 grep -E '(a)\1' >/dev/null 2>"$IDUNNO_RUN_DIR/err"; rc=$?
set -e
assert_eq "$rc" 1 "exit status for a back-reference"
assert_contains "$(cat "$IDUNNO_RUN_DIR/err")" "back-reference"

# Lines that make 'a.*b' costly: every 'a' starts a match attempt that runs to
# the end of its 2,000-byte line (about 10 ms a line here). 256 lines: with 64
# the first grep ended only 0.4 s after the put, and a put slowed by other disk
# work (in CI) lost that race.
line="2026-01-01T00:00:00.000Z nodeX INFO test: $(head -c 2000 /dev/zero | tr '\0' a)"
for k in 1 2 3 4; do
  for i in $(seq 1 256); do echo "$line"; done >>"$IDUNNO_RUN_DIR/node$k/idunnod.log"
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$IDUNNO_RUN_DIR/$1/pid")/stat"; }
declare -A before
for k in 1 2 3 4; do before[node$k]=$(cpu_ticks node$k); done

G=$IDUNNO_RUN_DIR/greps
mkdir -p "$G"
for i in 1 2 3 4 5 6 7 8; do
  ( cli node$(( (i % 4) + 1 )) --timeout 200000 grep -E -c 'a.*b' >"$G/out$i" 2>&1; echo $? >"$G/rc$i" ) &
  TEST_PIDS+=($!)
done
# Every node busy searching: each has used 0.15 s more CPU than when idle
# (a search takes about 2.5 s of CPU).
searching() {
  local k
  for k in 1 2 3 4; do [ $(( $(cpu_ticks node$k) - ${before[node$k]} )) -ge 15 ] || return 1; done
}
wait_until 60 searching || fail "the nodes never started searching"
ls "$G"/rc* >/dev/null 2>&1 && fail "a grep finished before the put started: make the lines costlier ($(cat "$G"/out*))"

head -c 300000 /dev/urandom >"$IDUNNO_RUN_DIR/file"
cli node2 --timeout 120000 put "$IDUNNO_RUN_DIR/file" busy-file >/dev/null
done_before_put=$(ls "$G" | grep -c '^rc' || true)
assert_eq "$done_before_put" 0 "greps that finished before the put did"

wait_until 200 sh -c "[ \$(ls '$G' | grep -c '^rc') -eq 8 ]" || fail "the greps did not finish"
for i in 1 2 3 4 5 6 7 8; do
  assert_eq "$(cat "$G/rc$i")" 0 "grep $i exit status: $(cat "$G/out$i")"
  assert_contains "$(cat "$G/out$i")" "total"
done
cli node3 get busy-file "$IDUNNO_RUN_DIR/file.out" >/dev/null
assert_eq "$(sha256sum <"$IDUNNO_RUN_DIR/file.out")" "$(sha256sum <"$IDUNNO_RUN_DIR/file")" "the put's bytes"
echo "grep busy ok"
