#!/usr/bin/env bash
# The bulk put (put-dir's batches, docs/sdfs.md "Batched writes") on 5
# daemons:
#  - a directory of a few hundred small files and some over 1 MiB: every file
#    reads back byte-identical, each small one with its own 4 replicas and a
#    CRC-32C, and the small ones went in batch requests;
#  - a batch mixing new files and new versions of existing ones;
#  - a replica killed (kill -9) in the middle of a batch put: the put
#    completes or names each file that failed, and every file it
#    acknowledged reads back.
# timeout: 120
. "$(dirname "$0")/lib.sh"

export IDUNNOD_ARGS="--sdfs-delete-grace 1000"
cluster up 5 >/dev/null
wait_leader node1

T=$IDUNNO_RUN_DIR/files
mkdir -p "$T"
logs_count() { cat "$IDUNNO_RUN_DIR"/node*/idunnod.log | grep -c -- "$1" || true; }

# small_files DIR N PREFIX: N files of 0..6000 random bytes named PREFIX1..N.
small_files() {
  mkdir -p "$1"
  python3 - "$1" "$2" "$3" <<'EOF'
import os, random, sys
d, n, p = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(1, n + 1):
    with open(os.path.join(d, f"{p}{i}"), "wb") as f:
        f.write(os.urandom(random.randrange(0, 6000)))
EOF
}

# read_back DIR PREFIX NAME...: gets every NAME (4 at a time) and compares it
# with DIR/NAME; prints the names that differ or cannot be read.
read_back() {
  local dir=$1 prefix=$2; shift 2
  local out=$T/readback.$$
  mkdir -p "$out"
  printf '%s\n' "$@" | xargs -P 4 -I{} sh -c \
    "'$IDUNNO' -s $(addr node2) get '$prefix/{}' '$out/{}' >/dev/null 2>&1 && cmp -s '$out/{}' '$dir/{}' || echo '{}'"
  rm -rf "$out"
}

# -- 1. a few hundred small files and some over 1 MiB
small_files "$T/d1" 300 f
for i in 1 2 3; do head -c $((1048576 + i * 300000)) /dev/urandom >"$T/d1/big$i"; done
before=$(logs_count "putting a batch of")
out=$(cli node4 put-dir "$T/d1" set)
assert_contains "$out" "stored 303 files" "put-dir stores every file"
[ "$(logs_count "putting a batch of")" -gt "$before" ] || fail "the small files did not go in batches"
listed=$(cli node1 --json ls --prefix set/ | json 'd["count"]')
assert_eq "$listed" 303 "files listed under set/"
bad=$(read_back "$T/d1" set $(ls "$T/d1"))
assert_eq "$bad" "" "files that did not read back identical"
reps=$(cli node3 --json ls set/f7 | json 'len(set(r["name"] for r in d["versions"][-1]["replicas"]))')
assert_eq "$reps" 4 "replicas of a batched file"
crc=$(cli node3 --json ls set/f7 | json 'd["versions"][-1].get("crc32c", "")')
[ -n "$crc" ] || fail "a batched file has no CRC-32C recorded"

# -- 2. one batch: new versions of existing files and new files
mkdir -p "$T/d2"
for i in $(seq 1 40); do head -c $((i * 37)) /dev/urandom >"$T/d2/f$i"; done
small_files "$T/d2" 40 g
out=$(cli node5 put-dir "$T/d2" set)
assert_contains "$out" "stored 80 files" "the mixed batch"
assert_eq "$(cli node1 --json ls set/f3 | json '[v["version"] for v in d["versions"]]')" "[1, 2]" \
  "an existing file gets a second version"
assert_eq "$(cli node1 --json ls set/g3 | json '[v["version"] for v in d["versions"]]')" "[1]" \
  "a new file gets its first"
assert_eq "$(cli node1 --json ls set/f200 | json '[v["version"] for v in d["versions"]]')" "[1]" \
  "a file not in the batch is untouched"
bad=$(read_back "$T/d2" set $(ls "$T/d2"))
assert_eq "$bad" "" "files of the mixed batch that did not read back identical"

# -- 3. a replica killed in the middle of a batch put
small_files "$T/d3" 1000 h
before=$(logs_count "putting a batch of")
set +e
cli node4 put-dir "$T/d3" kill >"$T/put3.out" 2>"$T/put3.err" &
put_pid=$!
TEST_PIDS+=("$put_pid")
wait_until 20 sh -c "[ \$(cat $IDUNNO_RUN_DIR/node*/idunnod.log | grep -c 'putting a batch of') -gt $before ]"
cluster kill node5 >/dev/null
wait "$put_pid"
rc=$?
set -e
# Every file is either acknowledged (listed) or named as failed, never both.
failed=$(grep -v 'retrying$' "$T/put3.err" | sed -n 's/^idunno: put-dir: kill\/\([^:]*\): .*/\1/p' | sort -u || true)
stored=$(cli node1 --json ls --prefix kill/ | json '"\n".join(f["name"][5:] for f in d["files"])' | sort)
if [ "$rc" -eq 0 ]; then
  assert_contains "$(cat "$T/put3.out")" "stored 1000 files" "put-dir after the kill"
  assert_eq "$(echo "$stored" | grep -c .)" 1000 "files listed after the kill"
else
  [ -n "$failed" ] || fail "put-dir failed (exit $rc) without naming a file: $(cat "$T/put3.err")"
  for f in $failed; do
    grep -qx "$f" <<<"$stored" && fail "$f is both listed and reported failed"
  done
fi
bad=$(read_back "$T/d3" kill $stored)
assert_eq "$bad" "" "acknowledged files that did not read back identical"
echo ok
