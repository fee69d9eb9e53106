# lib.sh — network-namespace tests (sourced). The test re-runs itself inside
# `unshare -m -n -p -f --kill-child`: a private network with no route out, a
# private /run/netns, and a pid namespace whose end kills every daemon.
if [ -z "${IDUNNO_IN_UNSHARE:-}" ]; then
  export IDUNNO_IN_UNSHARE=1
  exec unshare -m -n -p -f --kill-child --mount-proc bash "$0" "$@"
fi
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
export IDUNNO_BASE_PORT=7000
cluster() { "$ROOT/scripts/cluster" --netns "$@"; }
