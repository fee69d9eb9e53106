#!/usr/bin/env bash
# The cluster key (docs/security.md): a client without the key, or with
# another one, can neither read (ls, get, list_mem) nor change anything (put,
# a LEAVE) while the keyed client can; a node without the key, or with
# another one, cannot join; every refusal is counted on the node.
# timeout: 150
. "$(dirname "$0")/lib.sh"

cluster up 3 >/dev/null
[ -f "$IDUNNO_KEY_FILE" ] || fail "scripts/cluster up wrote no key"
assert_eq "$(stat -c %a "$IDUNNO_KEY_FILE")" 600 "key file mode"
wrong="$IDUNNO_RUN_DIR/wrong.key"
"$IDUNNO" keygen "$wrong" >/dev/null
# keygen never overwrites a key by accident.
if "$IDUNNO" keygen "$wrong" 2>/dev/null; then fail "keygen replaced an existing file"; fi

# The keyed client works.
printf 'secret payload\n' >"$IDUNNO_RUN_DIR/in.txt"
cli node1 put "$IDUNNO_RUN_DIR/in.txt" doc >/dev/null
assert_contains "$(cli node2 ls doc)" "node"

# no_key / wrong_key CMD...: runs a client command without the key, or with
# the wrong one; it must fail with the cluster-error status 2.
no_key() { local rc=0; env -u IDUNNO_KEY_FILE "$IDUNNO" "$@" >"$IDUNNO_RUN_DIR/out" 2>&1 || rc=$?; echo "$rc"; }
wrong_key() { local rc=0; IDUNNO_KEY_FILE=$wrong "$IDUNNO" "$@" >"$IDUNNO_RUN_DIR/out" 2>&1 || rc=$?; echo "$rc"; }

n1=$(addr node1); n2=$(addr node2)
for run in no_key wrong_key; do
  assert_eq "$($run -s "$n1" ls doc)" 2 "$run ls"
  assert_eq "$($run -s "$n1" list_mem)" 2 "$run list_mem"
  assert_eq "$($run -s "$n1" get doc "$IDUNNO_RUN_DIR/got-$run")" 2 "$run get"
  [ -s "$IDUNNO_RUN_DIR/got-$run" ] && fail "$run get wrote the file"
  assert_eq "$($run -s "$n1" put "$IDUNNO_RUN_DIR/in.txt" "forged-$run")" 2 "$run put"
  assert_eq "$($run -s "$n2" leave)" 2 "$run leave"
done
# The plaintext client is told what is missing.
no_key -s "$n1" ls doc >/dev/null
assert_contains "$(cat "$IDUNNO_RUN_DIR/out")" "requires its key"

# Nothing changed: no forged file, node2 still a live member.
assert_eq "$(cli node1 --json ls forged-no_key >/dev/null 2>&1; echo $?)" 1 "forged-no_key exists"
assert_eq "$(cli node1 --json ls forged-wrong_key >/dev/null 2>&1; echo $?)" 1 "forged-wrong_key exists"
assert_eq "$(state_of node1 node2)" alive "node2 after forged LEAVEs"
cli node2 list_self >/dev/null || fail "node2 stopped answering"
cli node3 get doc "$IDUNNO_RUN_DIR/got" >/dev/null
cmp -s "$IDUNNO_RUN_DIR/in.txt" "$IDUNNO_RUN_DIR/got" || fail "keyed get returned other bytes"

# Nodes without the key, or with another one, try to join through node1.
port=$(( IDUNNO_BASE_PORT + 70 ))
"$ROOT/bin/idunnod" --name intruder --addr "127.0.0.1:$port" --data "$IDUNNO_RUN_DIR/intruder" \
  --join "$n1" --no-http >"$IDUNNO_RUN_DIR/intruder.out" 2>&1 &
TEST_PIDS+=("$!")
"$ROOT/bin/idunnod" --name impostor --addr "127.0.0.1:$((port + 10))" --data "$IDUNNO_RUN_DIR/impostor" \
  --join "$n1" --no-http --key-file "$wrong" >"$IDUNNO_RUN_DIR/impostor.out" 2>&1 &
TEST_PIDS+=("$!")
# Both run and keep trying: wait until node1 has refused each several times.
refused() { # refused NODE: unsealed + bad_auth frames NODE counted
  local u b; u=$(metric "$1" idunno_bad_frames_total reason=unsealed); b=$(metric "$1" idunno_bad_frames_total reason=bad_auth)
  echo $(( ${u%.*} + ${b%.*} ))
}
base=$(refused node1)
wait_until 20 eval '[ "$(refused node1)" -ge $((base + 6)) ]' || fail "node1 did not see the intruders: $(refused node1)"
[ "$(metric node1 idunno_bad_frames_total reason=unsealed)" != 0 ] || fail "no unsealed frame counted"
[ "$(metric node1 idunno_bad_frames_total reason=bad_auth)" != 0 ] || fail "no bad_auth frame counted"
for k in node1 node2 node3; do
  for who in intruder impostor; do
    assert_eq "$(state_of "$k" "$who")" absent "$k lists $who"
  done
done
keyless_members=$(env -u IDUNNO_KEY_FILE "$IDUNNO" -s "127.0.0.1:$port" --json list_mem 2>/dev/null || true)
grep -q '"node1"' <<<"$keyless_members" && fail "the keyless node learned the members"

# The keyed client's LEAVE works: the same request, with the key, is obeyed.
cli node2 leave >/dev/null
wait_until 10 eval '[ "$(state_of node1 node2)" = left ]' || fail "keyed leave: node2 is $(state_of node1 node2)"
echo "security ok"
