#!/usr/bin/env bash
# A bulk put that stopped between its parts (docs/sdfs.md, "Batched writes"):
# replicas sealed a batch's copies, but no COMMIT_BATCH followed.
#  - A raw BLOB_BATCH (tests/tools/sdfs_forge), sealed on 4 replicas and never
#    committed: no version appears (ls lists exactly the files committed
#    before, none of them with that blob), and the store reports remove the
#    stray copies from every replica once they are older than --sdfs-young
#    and the delete grace has passed. The committed files keep their copies
#    and read back.
#  - The gateway killed (kill -9) while its replicas seal a batch: each file
#    of the put is listed whole (and reads back) or not at all, and once the
#    reports have run no live store holds a copy that no listed version names.
# timeout: 90
. "$(dirname "$0")/lib.sh"

FORGE=$ROOT/build/tests/tools/sdfs_forge
# Stray copies become deletable 2 s after their seal instead of 30 s.
export IDUNNOD_ARGS="--sdfs-delete-grace 1000 --sdfs-young 2000"
cluster up 5 >/dev/null
wait_leader node1

T=$IDUNNO_RUN_DIR/files
mkdir -p "$T/d1" "$T/d2"
blobs_of() { ls "$IDUNNO_RUN_DIR/$1/sdfs/blobs"; }
# listed_blobs PREFIX: the blob of every kept version of every file under PREFIX.
listed_blobs() {
  local f
  for f in $(cli node1 --json ls --prefix "$1" | json '" ".join(f["name"] for f in d["files"])'); do
    cli node1 --json ls "$f" | grep -o '"blob": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{16\}'
  done
}

# -- 1. a batch sealed on its replicas and never committed
for i in $(seq 1 20); do head -c $((i * 211)) /dev/urandom >"$T/d1/f$i"; done
out=$(cli node4 put-dir "$T/d1" set)
assert_contains "$out" "stored 20 files" "put-dir before the stray batch"
head -c 3000 /dev/urandom >"$T/stray"
stray=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
for n in node2 node3 node4 node5; do
  assert_eq "$("$FORGE" "$(addr "$n")" batch "$stray" "$T/stray")" "batch: ok" "raw BLOB_BATCH on $n"
  [ -f "$IDUNNO_RUN_DIR/$n/sdfs/blobs/$stray" ] || fail "$n did not seal the stray copy"
  cmp -s "$IDUNNO_RUN_DIR/$n/sdfs/blobs/$stray" "$T/stray" || fail "$n sealed other bytes"
done
assert_eq "$(cli node1 --json ls | json 'd["count"]')" 20 "files listed after the stray batch"
listed=$(listed_blobs set/)
assert_eq "$(echo "$listed" | grep -c .)" 20 "versions listed after the stray batch"
grep -qx "$stray" <<<"$listed" && fail "a version names the uncommitted blob"
wait_until 50 sh -c "! ls $IDUNNO_RUN_DIR/node*/sdfs/blobs/$stray >/dev/null 2>&1" ||
  fail "the stray copies are still held: $(ls $IDUNNO_RUN_DIR/node*/sdfs/blobs/$stray 2>&1)"
grep -q "deleting stale blob $stray" "$IDUNNO_RUN_DIR"/node*/idunnod.log ||
  fail "the stray copies went without a store report deleting them"
for b in $listed; do
  held=$(ls "$IDUNNO_RUN_DIR"/node*/sdfs/blobs/"$b" 2>/dev/null | wc -l)
  assert_eq "$held" 4 "copies of committed blob $b"
done
cli node2 get set/f17 "$T/f17.back" >/dev/null
cmp -s "$T/f17.back" "$T/d1/f17" || fail "a committed file does not read back"

# -- 2. the gateway killed while its replicas seal
for i in $(seq 1 40); do head -c $((i * 97)) /dev/urandom >"$T/d2/g$i"; done
set +e
cli node5 put-dir "$T/d2" kill >"$T/put2.out" 2>"$T/put2.err" &
put_pid=$!
TEST_PIDS+=("$put_pid")
# As soon as the gateway has the batch: its replicas may be sealing, or done
# with the commit not yet proposed, or (the kill landing late) committed.
wait_until 20 grep -q "putting a batch of" "$IDUNNO_RUN_DIR/node5/idunnod.log"
cluster kill node5 >/dev/null
wait "$put_pid"
set -e
# Every file of the put is listed with one whole version, or not at all.
stored=$(cli node1 --json ls --prefix kill/ | json '" ".join(f["name"][5:] for f in d["files"])')
echo "after the kill: $(wc -w <<<"$stored") of 40 files committed"
for f in $stored; do
  cli node2 get "kill/$f" "$T/back" >/dev/null || fail "kill/$f is listed but cannot be read"
  cmp -s "$T/back" "$T/d2/$f" || fail "kill/$f is listed but reads back different bytes"
done
# No live store keeps a copy that no listed version names. The versions are
# read once: repairs of node5's copies add replicas, not blobs.
all=$(listed_blobs "")
orphans() {
  local n b
  for n in node1 node2 node3 node4; do
    for b in $(blobs_of "$n"); do
      grep -qx "$b" <<<"$all" || echo "$n:$b"
    done
  done
}
no_orphans() { [ -z "$(orphans)" ]; }
wait_until 50 no_orphans || fail "copies no version names: $(orphans)"
echo ok
