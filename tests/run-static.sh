#!/usr/bin/env bash
# The static checks of the source tree, run first by `make test`: the layer
# order of src/ (tests/check-layers.sh: no include cycle between folders,
# nothing below node/ includes node/) and the formatting (scripts/check-format.sh:
# `make format` would change nothing).
set -u
cd "$(dirname "$0")/.."
tier=${TIER:-static}
. tests/lib-runner.sh
run_one "$tier/check-layers" 60 tests/check-layers.sh
run_one "$tier/check-format" 120 scripts/check-format.sh
report "$tier"
