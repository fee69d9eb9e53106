#!/usr/bin/env bash
# The whole suite (what `make test` runs): static checks (layers, format), unit
# tests (with the simulated cluster), the same under ASan+UBSan, cluster tests
# with real daemons, network-namespace fault tests. Every tier runs
# even when an earlier one failed; the last line sums them all.
set -u
cd "$(dirname "$0")/.."
export TEST_TALLY
TEST_TALLY=$(mktemp)
trap 'rm -f "$TEST_TALLY"' EXIT
status=0
tests/run-static.sh || status=1
make --no-print-directory unit || status=1
make --no-print-directory unit-asan || status=1
make --no-print-directory fuzz-run FUZZ_SECONDS=${FUZZ_SECONDS:-10} || status=1
make --no-print-directory cluster-test || status=1
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && command -v nft >/dev/null; then
  make --no-print-directory netns-test || status=1
else
  echo "netns tier needs root, unshare and nft; it is required in CI" >&2
  [ -n "${CI:-}" ] && status=1
fi
awk '{ p += $1; f += $2 } END { printf "total: %d passed, %d failed\n", p, f }' "$TEST_TALLY"
exit $status
