#!/usr/bin/env bash
# Who may change state through the HTTP endpoint (docs/http.md,
# "Authentication"). On a keyed cluster: a POST without a token, with a
# wrong one, a malformed one or another scheme gets 401 with a JSON error and
# WWW-Authenticate: Bearer, counted by reason; with the token `idunno token`
# prints it passes the check (405 today: no endpoint takes POST yet); GET
# stays open. After a key rotation a node whose ring holds both keys accepts
# both tokens, one holding only the old key only the old one. A plaintext
# cluster refuses every POST with 403; `idunnod --http-addr` moves the
# endpoint to that address (and off --addr's), and an address that does not
# parse stops the daemon at start-up with the reason.
# timeout: 150
. "$(dirname "$0")/lib.sh"

# req NODE_OR_HOSTPORT METHOD PATH [AUTHORIZATION]: status code on the first
# line, WWW-Authenticate on the second, Content-Type on the third, body after.
req() {
  local a=$1
  [[ $a == node* ]] && a=$(http_addr "$a")
  "$PY3" - "$a" "$2" "$3" "${4:-}" <<'PY'
import sys, urllib.request, urllib.error
addr, method, path, authz = sys.argv[1:5]
r = urllib.request.Request("http://%s%s" % (addr, path), method=method,
                           data=b"{}" if method in ("POST", "PUT") else None)
if authz:
    r.add_header("Authorization", authz)
try:
    with urllib.request.urlopen(r, timeout=3) as resp:
        code, h, body = resp.status, resp.headers, resp.read()
except urllib.error.HTTPError as e:
    code, h, body = e.code, e.headers, e.read()
except OSError:
    code, h, body = 0, {}, b""
sys.stdout.write("%03d\n%s\n%s\n" % (code, h.get("WWW-Authenticate", ""), h.get("Content-Type", "")))
sys.stdout.write(body.decode("utf-8", "replace"))
PY
}
code_of() { req "$@" | sed -n 1p; }

cluster up 2 >/dev/null
for n in node1 node2; do
  wait_until 10 eval '[ "$(http_code '"$n"' /healthz)" = 200 ]' || fail "$n: /healthz not 200"
done
TOKEN=$("$IDUNNO" token)
[[ $TOKEN =~ ^[0-9a-f]{64}$ ]] || fail "idunno token printed '$TOKEN', not 64 hex digits"
assert_eq "$("$IDUNNO" token "$IDUNNO_KEY_FILE")" "$TOKEN" "token of FILE and of \$IDUNNO_KEY_FILE"

# -- refused: no token, a wrong one, a malformed one, another scheme
R=$(req node1 POST /metrics)
assert_eq "$(sed -n 1p <<<"$R")" 401 "POST without a token"
assert_contains "$(sed -n 2p <<<"$R")" "^Bearer" "WWW-Authenticate"
assert_eq "$(sed -n 3p <<<"$R")" "application/json" "401 body type"
tail -n +4 <<<"$R" | "$PY3" -c 'import json,sys; e=json.load(sys.stdin)["error"]; assert "Bearer" in e, e' ||
  fail "401 body is not a JSON error naming the scheme: $R"
WRONG=$(printf '%064d' 0)
assert_eq "$(code_of node1 POST /metrics "Bearer $WRONG")" 401 "a wrong token"
assert_eq "$(code_of node1 POST /api/status "Bearer ${TOKEN:0:63}")" 401 "a token one digit short"
assert_eq "$(code_of node1 DELETE /api/status "Bearer ${TOKEN}00")" 401 "a token two digits long"
assert_eq "$(code_of node1 PUT /metrics "Basic $TOKEN")" 401 "another scheme"
assert_eq "$(code_of node1 POST /nope)" 401 "no token on an unknown path"
wait_until 3 eval '[ "$(metric node1 idunno_http_auth_refused_total reason=missing)" = 2 ]' ||
  fail "refusals without a token not counted: $(metric node1 idunno_http_auth_refused_total reason=missing)"
assert_eq "$(metric node1 idunno_http_auth_refused_total reason=bad)" 4 "refusals of bad tokens"

# -- accepted: the check passes, the routing answers (no endpoint takes POST yet)
R=$(req node1 POST /metrics "Bearer $TOKEN")
assert_eq "$(sed -n 1p <<<"$R")" 405 "POST with the token"
assert_eq "$(code_of node2 DELETE /api/status "bearer  $TOKEN")" 405 "scheme in lower case, two spaces"
assert_eq "$(code_of node2 POST /nope "Bearer $TOKEN")" 404 "an unknown path with the token"
# reads need none
assert_eq "$(code_of node1 GET /api/status)" 200 "GET without a token"
assert_eq "$(code_of node1 HEAD /healthz)" 200 "HEAD without a token"
assert_eq "$(code_of node2 GET /metrics "Bearer $WRONG")" 200 "GET with a wrong token (not checked)"

# -- key rotation: node2 restarted with the ring [new, old] takes both tokens,
# node1 (old key only) only the old one; the token printed is the first key's
"$IDUNNO" keygen --rotate >/dev/null
NEW=$("$IDUNNO" token)
[ "$NEW" != "$TOKEN" ] || fail "the rotated ring prints the old token"
cluster kill node2
cluster start node2 >/dev/null
wait_until 20 eval '[ "$(http_code node2 /healthz)" = 200 ]' || fail "node2 not back"
assert_eq "$(code_of node2 POST /metrics "Bearer $NEW")" 405 "new token, ring of both keys"
assert_eq "$(code_of node2 POST /metrics "Bearer $TOKEN")" 405 "old token, ring of both keys"
assert_eq "$(code_of node1 POST /metrics "Bearer $NEW")" 401 "new token, ring of the old key only"
assert_eq "$(code_of node1 POST /metrics "Bearer $TOKEN")" 405 "old token, ring of the old key only"

# -- a bad --http-addr stops the daemon at start-up, saying why
set +e
OUT=$("$ROOT/bin/idunnod" --name bad --addr "127.0.0.1:$((IDUNNO_BASE_PORT + 90))" \
  --data "$IDUNNO_RUN_DIR/bad" --http-addr not-an-ip 2>&1)
rc=$?
set -e
assert_eq "$rc" 1 "exit status with --http-addr not-an-ip"
assert_contains "$OUT" "--http-addr 'not-an-ip' is not an IPv4 or IPv6 address"

# -- plaintext, the endpoint on another address: state changes are off
cluster down >/dev/null
IDUNNOD_ARGS="--http-addr 127.0.0.2" cluster --no-key up 1 >/dev/null
A=$(addr node1)
ALT="127.0.0.2:$(( ${A##*:} + 2 ))"
wait_until 10 eval '[ "$(code_of '"$ALT"' GET /healthz)" = 200 ]' || fail "no HTTP on $ALT"
assert_eq "$(code_of "$(http_addr node1)" GET /healthz)" 000 "HTTP still on --addr's host"
R=$(req "$ALT" POST /metrics "Bearer $TOKEN")
assert_eq "$(sed -n 1p <<<"$R")" 403 "POST to a node without a cluster key"
assert_contains "$(tail -n +4 <<<"$R")" "no cluster key: state-changing HTTP requests are disabled"
assert_eq "$(code_of "$ALT" GET /api/status)" 200 "GET on a plaintext node"
set +e
OUT=$(env -u IDUNNO_KEY_FILE "$IDUNNO" token 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "idunno token without a keyring succeeded: $OUT"
assert_contains "$OUT" "no keyring"
echo ok
