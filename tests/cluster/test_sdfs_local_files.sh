#!/usr/bin/env bash
# The CLI's handling of local files around SDFS. put-dir checks every entry
# before storing any: names SDFS refuses (a space, a control character) and
# links out of the directory are all reported and nothing is stored; links
# inside the directory are stored; links out only with --follow-links. get
# writes through a temporary file it creates exclusively, so links planted
# under guessable temporary names are never followed, and a link at the
# destination is replaced, not written through.
# timeout: 150
. "$(dirname "$0")/lib.sh"

cluster up 4 >/dev/null
wait_leader node1
count_prefix() { cli node2 --json ls --prefix "$1" | json 'd["count"]'; }

T=$IDUNNO_RUN_DIR/files
mkdir -p "$T/set" "$T/outside"
echo "alpha" >"$T/set/a.txt"
echo "with space" >"$T/set/b c.txt"
echo "control" >"$T/set/$(printf 'bad\033[2Jname')"
echo "secret outside" >"$T/outside/secret"
ln -s "$T/outside/secret" "$T/set/out-link"
ln -s a.txt "$T/set/in-link"

set +e
cli node1 put-dir "$T/set" ds/ >/dev/null 2>"$IDUNNO_RUN_DIR/err"; rc=$?
set -e
err=$(cat "$IDUNNO_RUN_DIR/err")
assert_eq "$rc" 1 "put-dir exit status with bad entries"
assert_contains "$err" "nothing stored"
assert_contains "$err" "'b c.txt': contains a space"
assert_contains "$err" 'bad\\x1b\[2Jname'
assert_contains "$err" "'out-link': a link to a file outside the directory"
assert_contains "$err" "3 entries"
grep -q $'\033' <<<"$err" && fail "a control character reached the terminal"
assert_eq "$(count_prefix ds/)" 0 "nothing stored after bad entries"

# Fix the names; the link out of the directory still needs --follow-links.
mv "$T/set/b c.txt" "$T/set/b_c.txt"
rm "$T/set/$(printf 'bad\033[2Jname')"
set +e
cli node1 put-dir "$T/set" ds/ >/dev/null 2>"$IDUNNO_RUN_DIR/err"; rc=$?
set -e
assert_eq "$rc" 1 "put-dir with a link out of the directory"
assert_eq "$(count_prefix ds/)" 0 "nothing stored with a link out"
cli node1 put-dir --follow-links "$T/set" ds/ >/dev/null
assert_eq "$(count_prefix ds/)" 4 "a.txt, b_c.txt, in-link, out-link stored"
cli node3 get ds/in-link "$T/in.out" >/dev/null
cmp -s "$T/in.out" "$T/set/a.txt" || fail "a link inside the directory stores its target"
rm "$T/set/out-link"
cli node1 put-dir "$T/set" ds2/ >/dev/null
assert_eq "$(count_prefix ds2/)" 3 "without links out, no flag needed"

# get: links planted under every temporary name the old scheme could use
# (DEST.idunno-PID, for the next few thousand PIDs) must not be followed.
echo "victim" >"$T/victim"
dest="$T/dest"
last=$(cat /proc/sys/kernel/ns_last_pid)
for p in $(seq $((last + 1)) $((last + 3000))); do ln -s "$T/victim" "$dest.idunno-$p"; done
cli node2 get ds/a.txt "$dest" >/dev/null
assert_eq "$(cat "$T/victim")" "victim" "a planted link was followed"
assert_eq "$(cat "$dest")" "alpha" "get wrote the file"
[ -L "$dest" ] && fail "the destination is a link"
assert_eq "$(find "$T" -maxdepth 1 -name 'dest.idunno-*' ! -type l | wc -l)" 0 "temporary files left behind"
# A link at the destination itself is replaced, not written through.
rm -f "$dest".idunno-* "$dest"
ln -s "$T/victim" "$dest"
cli node2 get ds/a.txt "$dest" >/dev/null
assert_eq "$(cat "$T/victim")" "victim" "get wrote through a link at the destination"
[ -L "$dest" ] && fail "the destination is still a link"
assert_eq "$(stat -c %a "$dest")" "$(printf "%o" $(( 0666 & ~0$(umask) )))" "mode of the got file"
echo "sdfs local files ok"
