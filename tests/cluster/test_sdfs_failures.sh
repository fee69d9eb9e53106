#!/usr/bin/env bash
# SDFS under failures, on 8 daemons: three replicas of a file killed at once
# (the file stays readable, every file gets back to 4 live replicas); the
# coordinator killed during a put (it completes or fails, never a partial
# version); a corrupted copy (detected on read, reported, replaced); a node
# restarted after its files changed (its stale copies are deleted, the rest
# kept: its disk ends up holding exactly what the catalog says).
# timeout: 360
. "$(dirname "$0")/lib.sh"

cluster up 8 >/dev/null
wait_leader node1
leader() { cli node8 --json status | json 'd["leader"]'; }

T=$IDUNNO_RUN_DIR/files
mkdir -p "$T"
for i in 1 2 3 4 5; do head -c $((i * 700000)) /dev/urandom >"$T/f$i"; cli node8 put "$T/f$i" f$i >/dev/null; done

# Live replicas of the latest version of NAME, as the coordinator sees them.
live_replicas() { cli "${2:-node8}" --json ls "$1" | json 'sum(1 for r in d["versions"][-1]["replicas"] if r["addr"])'; }
all_full() {
  local f
  for f in "$@"; do [ "$(live_replicas "$f" "$OBSERVER")" = 4 ] || return 1; done
}
replicas_of() { cli node8 --json ls "$1" | json '" ".join(r["name"] for r in d["versions"][-1]["replicas"])'; }
blob_of() { cli node8 --json ls "$1" | json 'd["versions"][-1]["blob"]'; }

# -- 1. three replicas of a file killed at once. The victims include at most
# one control-plane voter (node1..3): killing two voters would stop the
# coordinator itself, which needs a majority.
pick=""
for f in f1 f2 f3 f4 f5; do
  read -r -a reps <<<"$(replicas_of $f)"
  nonvoters=0
  for r in "${reps[@]}"; do case $r in node[123]) ;; *) nonvoters=$((nonvoters + 1)) ;; esac; done
  if [ "$nonvoters" -ge 2 ]; then pick=$f; break; fi
done
[ -n "$pick" ] || fail "no file with two non-voter replicas"
# Non-voters first, so the three victims hold at most one voter.
read -r -a reps <<<"$(for r in "${reps[@]}"; do case $r in node[123]) echo "1 $r" ;; *) echo "0 $r" ;; esac; done | sort | cut -d' ' -f2 | tr '\n' ' ')"
victims=("${reps[@]:0:3}")
keep=${reps[3]}
for v in "${victims[@]}"; do kill -9 "$(cat "$IDUNNO_RUN_DIR/$v/pid")"; done
OBSERVER=$keep
cli "$keep" get $pick "$T/$pick.out" >/dev/null
cmp -s "$T/$pick" "$T/$pick.out" || fail "$pick after killing ${victims[*]}"
wait_until 30 all_full f1 f2 f3 f4 f5 || fail "files not back to 4 live replicas"
for f in f1 f2 f3 f4 f5; do
  cli "$keep" get $f "$T/$f.out" >/dev/null
  cmp -s "$T/$f" "$T/$f.out" || fail "$f content after repair"
done
for v in "${victims[@]}"; do cluster start "$v" >/dev/null; done
wait_until 20 all_see alive "${victims[0]}" node8 || fail "victims back"

# -- 2. the coordinator killed during a put
OBSERVER=node8
head -c 60000000 /dev/urandom >"$T/large"
L=$(leader)
[ -n "$L" ] || fail "no leader before the put"
G=node8; [ "$L" = node8 ] && G=node7
set +e
cli "$G" put "$T/large" large >"$T/put.out" 2>&1 &
putpid=$!
sleep 0.3   # let the transfer start (the kill must land mid-put; either outcome is checked)
kill -9 "$(cat "$IDUNNO_RUN_DIR/$L/pid")"
wait $putpid; putrc=$?
set -e
wait_until 20 sh -c "[ -n \"\$('$IDUNNO' -s $(addr $G) --json status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"leader\"])')\" ]" ||
  fail "no new leader"
if [ "$putrc" = 0 ]; then
  cli "$G" get large "$T/large.out" >/dev/null
  cmp -s "$T/large" "$T/large.out" || fail "put acknowledged but content differs"
else
  # Failed cleanly: either no version, or (a commit that went through just
  # before the answer was lost) a complete one.
  set +e; cli "$G" get large "$T/large.out" 2>/dev/null; grc=$?; set -e
  if [ "$grc" = 0 ]; then cmp -s "$T/large" "$T/large.out" || fail "partial version visible"; fi
fi
cluster start "$L" >/dev/null

# -- 3. a corrupted copy: read through the node that holds it (local first)
read -r -a reps <<<"$(replicas_of f2)"
bad=${reps[0]}
b=$(blob_of f2)
printf 'garbage' | dd of="$IDUNNO_RUN_DIR/$bad/sdfs/blobs/$b" bs=1 seek=1000 conv=notrunc 2>/dev/null
cli "$bad" get f2 "$T/f2.out" 2>"$T/err" >/dev/null
cmp -s "$T/f2" "$T/f2.out" || fail "get of f2 with a corrupt copy"
assert_contains "$(cat "$T/err")" "does not match its checksum"
# Repaired: 4 live replicas again, and every copy on disk is whole.
copies_ok() {
  local n=0 r
  for r in $(replicas_of f2); do
    cmp -s "$IDUNNO_RUN_DIR/$r/sdfs/blobs/$b" "$T/f2" || return 1
    n=$((n + 1))
  done
  [ "$n" = 4 ]
}
wait_until 30 copies_ok || fail "corrupt copy of f2 not replaced"

# -- 4. a restarted node is reconciled
read -r -a reps <<<"$(replicas_of f4)"
X=${reps[0]}
cli node8 ls f5 >/dev/null
cluster kill "$X" >/dev/null
wait_until 10 all_see failed "$X" node8 || fail "$X not seen failed"
cli node8 delete f4 >/dev/null               # its copy of f4 is now stale
head -c 100000 /dev/urandom >"$T/f1b"
cli node8 put "$T/f1b" f1 >/dev/null         # a newer version of f1
wait_until 30 all_full f1 f2 f3 f5 || fail "not repaired while $X was down"
cluster start "$X" >/dev/null
# What the catalog lists for X, and what X's disk holds, must end up equal.
expected() {
  for f in $(cli node8 --json ls | json '" ".join(x["name"] for x in d["files"])'); do
    cli node8 --json ls "$f" | python3 -c '
import json, sys
for v in json.load(sys.stdin)["versions"]:
    if any(r["name"] == sys.argv[1] for r in v["replicas"]): print(v["blob"])' "$X"
  done | sort
}
held() { ls "$IDUNNO_RUN_DIR/$X/sdfs/blobs" | sort; }
reconciled() { [ "$(expected)" = "$(held)" ]; }
# Stale copies go only after 60 s unlisted on every report (a grace longer
# than any read in flight, RECONCILE_DELETE_GRACE_MS), reports every 10 s.
wait_until 120 reconciled || fail "$X holds $(held | tr '\n' ' ') but the catalog lists $(expected | tr '\n' ' ')"
echo ok
