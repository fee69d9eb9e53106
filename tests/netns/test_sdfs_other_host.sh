#!/usr/bin/env bash
# A get on the nodes' own host copies a replica's file in the kernel; a get
# from a client that cannot open the replicas' files (another host: here a
# mount namespace that hides the run directory) reads over the network. Both
# give the bytes put; a corrupt replica file is caught on the local path,
# reported, and the get still succeeds from another replica.
# timeout: 120
. "$(dirname "$0")/lib.sh"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
cluster up 4 >/dev/null
wait_until 20 sh -c "'$IDUNNO' -s $(addr node1) --json status 2>/dev/null | grep -q '\"leader\":\"node'" ||
  fail "no leader"
# Outside the run directory: the "other host" below hides that directory.
T=$(mktemp -d /tmp/idunno-other-host.XXXXXX)
TEST_DIRS+=("$T")
head -c 3000000 /dev/urandom >"$T/f"
cli node1 put "$T/f" f >/dev/null

# -- on this host: copied from a replica's file
src=$(cli node2 --json get f "$T/f.local" | json 'd["source"] + " " + d.get("copied_from", "")')
assert_eq "${src%% *}" local "a get on the replicas' host copies locally"
cmp -s "$T/f" "$T/f.local" || fail "local get content"

# -- from "another host": the replicas' files cannot be opened there (the
# cluster key, kept in the run directory, goes along as a client's would)
cp "$IDUNNO_KEY_FILE" "$T/cluster.key"
remote=$(unshare -m sh -c "mount -t tmpfs none '$IDUNNO_RUN_DIR' &&
  IDUNNO_KEY_FILE='$T/cluster.key' exec '$IDUNNO' -s '$(addr node2)' --json get f '$T/f.remote'") ||
  fail "get without access to the stores"
assert_eq "$(echo "$remote" | json 'd["source"]')" network "a get from elsewhere reads over the network"
cmp -s "$T/f" "$T/f.remote" || fail "network get content"

# -- a corrupt file on the local path: reported, read from another replica
from=${src#* }
b=$(cli node1 --json ls f | json 'd["versions"][-1]["blob"]')
printf 'garbage' | dd of="$IDUNNO_RUN_DIR/$from/sdfs/blobs/$b" bs=1 seek=100 conv=notrunc 2>/dev/null
cli "$from" get f "$T/f.again" 2>"$T/err" >/dev/null || fail "get with a corrupt local copy"
cmp -s "$T/f" "$T/f.again" || fail "content after a corrupt local copy"
assert_contains "$(cat "$T/err")" "the copy on $from does not match its checksum"
echo ok
