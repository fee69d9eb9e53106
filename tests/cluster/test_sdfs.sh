#!/usr/bin/env bash
# SDFS commands on 6 daemons: put/get through any node with content checked by
# sha256, versions (the last 5 kept, get-versions newest first), ls, ls NAME,
# store, put-dir, delete everywhere, an empty file, a file larger than a chunk,
# and bad input (names that escape, missing local files, unknown names) with
# exit status 1 and nothing stored.
# timeout: 240
. "$(dirname "$0")/lib.sh"

# Unnamed copies are removed 1 s after the catalog stops naming them, not 60 s.
export IDUNNOD_ARGS="--sdfs-delete-grace 1000"
cluster up 6 >/dev/null
wait_until 20 cli node1 status >/dev/null 2>&1 || fail "no coordinator"
wait_leader node1

T=$IDUNNO_RUN_DIR/files
mkdir -p "$T"
head -c 3500000 /dev/urandom >"$T/big"          # 4 chunks, the last one partial
: >"$T/empty"

# -- put and get through different nodes
cli node2 put "$T/big" big >/dev/null
cli node5 get big "$T/big.out" >/dev/null
assert_eq "$(sha256sum <"$T/big.out")" "$(sha256sum <"$T/big")" "get returns the bytes put"
cli node3 put "$T/empty" empty >/dev/null
cli node6 get empty "$T/empty.out" >/dev/null
[ -f "$T/empty.out" ] && [ ! -s "$T/empty.out" ] || fail "empty file round trip"

# -- 4 distinct replicas, all alive
reps=$(cli node4 --json ls big | json 'len(set(r["name"] for r in d["versions"][-1]["replicas"]))')
assert_eq "$reps" 4 "replicas of big"

# -- versions: 7 puts keep 5; get-versions gives the newest first
for i in 1 2 3 4 5 6 7; do echo "version text $i" >"$T/v$i"; cli node$(( (i % 6) + 1 )) put "$T/v$i" doc >/dev/null; done
assert_eq "$(cli node1 --json ls doc | json '[v["version"] for v in d["versions"]]')" "[3, 4, 5, 6, 7]" "kept versions"
# The CRC-32C that gets check was recorded from the replicas and is the file's.
crc_of() {
  python3 -c '
import sys
c = 0xFFFFFFFF
for b in open(sys.argv[1], "rb").read():
    c ^= b
    for _ in range(8):
        c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
print("%08x" % (c ^ 0xFFFFFFFF))' "$1"
}
assert_eq "$(cli node1 --json ls doc | json 'd["versions"][-1]["crc32c"]')" "$(crc_of "$T/v7")" "crc32c of doc"
cli node2 get doc "$T/doc.out" >/dev/null
assert_eq "$(cat "$T/doc.out")" "version text 7" "latest version"
cli node2 get doc "$T/doc4.out" --version 4 >/dev/null
assert_eq "$(cat "$T/doc4.out")" "version text 4" "get --version"
cli node3 get-versions doc 2 "$T/gv" >/dev/null
assert_eq "$(grep -c '^==== doc version' "$T/gv")" 2 "two delimiters"
assert_eq "$(sed -n 1p "$T/gv" | cut -d' ' -f2-4)" "doc version 7" "newest first"
assert_eq "$(sed -n 2p "$T/gv")" "version text 7" "content under its delimiter"
assert_eq "$(sed -n 4p "$T/gv")" "version text 6" "older version next"
set +e; cli node3 get doc "$T/x" --version 1 2>"$T/err"; rc=$?; set -e
assert_eq "$rc" 1 "a version no longer kept is a user error"
assert_contains "$(cat "$T/err")" "no version 1"

# -- put-dir, ls, store
mkdir -p "$T/set"
for i in $(seq 1 24); do head -c $((1000 + i * 500)) /dev/urandom >"$T/set/img$i.jpg"; done
cli node1 put-dir "$T/set" flowers/ >/dev/null
assert_eq "$(cli node2 --json ls --prefix flowers/ | json 'd["count"]')" 24 "put-dir stored all"
assert_eq "$(cli node2 --json ls | json 'd["count"]')" 27 "ls counts every file"
cli node4 get flowers/img7.jpg "$T/img7" >/dev/null
cmp -s "$T/img7" "$T/set/img7.jpg" || fail "put-dir content"
# Every copy is on some node's store; placement spreads them (27 files x 4 copies).
total=0; max=0
for k in 1 2 3 4 5 6; do
  n=$(cli node$k --json store | json 'd["count"]')
  total=$((total + n)); [ "$n" -gt "$max" ] && max=$n
done
[ "$total" -ge 108 ] || fail "stores hold $total files in all, expected >= 108"
[ "$max" -le 24 ] || fail "placement uneven: one node holds $max of 27 files"

# -- delete removes every version everywhere
cli node5 delete doc >/dev/null
set +e; cli node1 get doc "$T/gone" 2>/dev/null; rc=$?; set -e
assert_eq "$rc" 1 "get after delete"
[ ! -e "$T/gone" ] || fail "a failed get left a file"
# No node keeps a copy of doc's blobs: count blobs on disk against the catalog.
on_disk() { cat "$IDUNNO_RUN_DIR"/node*/sdfs/blobs/* 2>/dev/null | grep -c '^version text' || true; }
# A copy goes on the report after the one that first found it unnamed (reports
# every 10 s), and only once it is SDFS_YOUNG_MS (30 s) old.
no_copies() { [ "$(on_disk)" = 0 ]; }
wait_until 90 no_copies || fail "deleted versions still on disk: $(on_disk)"

# -- bad input: clear errors, exit 1, nothing stored
for bad in ../etc/passwd /abs a//b "a/./b" "with space" ""; do
  set +e; cli node1 put "$T/v1" "$bad" 2>"$T/err"; rc=$?; set -e
  assert_eq "$rc" 1 "put to '$bad'"
  assert_contains "$(cat "$T/err")" "not a valid SDFS name"
done
set +e; cli node1 put "$T/no-such-file" x 2>"$T/err"; rc=$?; set -e
assert_eq "$rc" 1 "missing local file"
assert_contains "$(cat "$T/err")" "cannot read"
set +e; cli node1 get no-such-name "$T/x" 2>"$T/err"; rc=$?; set -e
assert_eq "$rc" 1 "unknown name"
assert_contains "$(cat "$T/err")" "no SDFS file named"
set +e; cli node1 delete no-such-name 2>/dev/null; rc=$?; set -e
assert_eq "$rc" 1 "delete of an unknown name"
assert_eq "$(cli node2 --json ls | json 'd["count"]')" 26 "nothing stored by bad input"
echo ok
