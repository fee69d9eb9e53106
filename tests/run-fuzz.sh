#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz/ for SECONDS each, starting from its
# corpus in fuzz/corpus/<target>/ when there is one. A crash, leak or sanitizer
# report fails the target; the reproducer is left in build-fuzz/crashes/.
set -u
secs=${1:-20}
tier=${TIER:-fuzz}
cd "$(dirname "$0")/.."
. tests/lib-runner.sh
mkdir -p build-fuzz/crashes
for t in build-fuzz/fuzz_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  work=$(mktemp -d)
  [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/"
  run_one "$tier/$name" $((secs + 60)) "$t" -max_total_time="$secs" -max_len=4096 \
    -artifact_prefix=build-fuzz/crashes/"$name"- "$work"
  rm -rf "$work"
done
report "$tier"
