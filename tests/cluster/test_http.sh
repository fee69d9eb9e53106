#!/usr/bin/env bash
# The HTTP endpoint on PORT+2 of a 3-node cluster: /healthz, /readyz once a
# coordinator exists, /metrics valid in the Prometheus text format (parsed by
# prometheus_client) with the node's families and values, the status document,
# a killed member shown failed and its restart alive, 404, 401 for a POST, --no-http, and a
# taken HTTP port.
# timeout: 150
. "$(dirname "$0")/lib.sh"
"$PY3" -c 'import prometheus_client' 2>/dev/null ||
  fail "python3-prometheus-client is missing (scripts/install-deps.sh installs it)"

cluster up 3 >/dev/null
nodes=(node1 node2 node3)
for n in "${nodes[@]}"; do
  wait_until 10 eval '[ "$(http_code '"$n"' /healthz)" = 200 ]' || fail "$n: /healthz not 200"
done
for n in "${nodes[@]}"; do
  wait_until 20 eval '[ "$(http_code '"$n"' /readyz)" = 200 ]' ||
    fail "$n: /readyz not 200: $(http_get "$n" /readyz | tail -n +3)"
done
assert_eq "$(http_get node1 /healthz | tail -n +3)" "ok" "healthz body"

# /metrics: every node's document parses and has the families of docs/http.md.
for n in "${nodes[@]}"; do
  http_get "$n" /metrics >"$IDUNNO_RUN_DIR/metrics-$n"
  assert_eq "$(sed -n 1p "$IDUNNO_RUN_DIR/metrics-$n")" 200 "$n /metrics status"
  assert_contains "$(sed -n 2p "$IDUNNO_RUN_DIR/metrics-$n")" "text/plain; version=0.0.4"
  tail -n +3 "$IDUNNO_RUN_DIR/metrics-$n" | "$PY3" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
want = {
    "idunno_node_info": "gauge", "idunno_node_uptime_seconds": "gauge",
    "process_resident_memory_bytes": "gauge", "process_start_time_seconds": "gauge",
    "process_cpu_seconds": "counter",
    "idunno_member_state": "gauge", "idunno_members": "gauge", "idunno_swim_health": "gauge",
    "idunno_swim_suspicions": "counter", "idunno_swim_failures_declared": "counter",
    "idunno_udp_sent_bytes": "counter", "idunno_udp_received_bytes": "counter",
    "idunno_bad_frames": "counter", "idunno_tcp_connections": "gauge",
    "idunno_ctl_leader": "gauge", "idunno_ctl_has_leader": "gauge", "idunno_ctl_is_leader": "gauge",
    "idunno_ctl_term": "gauge", "idunno_ctl_commit_index": "gauge", "idunno_ctl_applied_index": "gauge",
    "idunno_http_requests": "counter", "idunno_http_publish_age_seconds": "gauge",
}
for name, typ in want.items():
    assert name in fams, "missing family %s" % name
    assert fams[name].type == typ, (name, fams[name].type)
def one(sample, **labels):
    v = [s.value for f in fams.values() for s in f.samples
         if s.name == sample and all(s.labels.get(k) == x for k, x in labels.items())]
    assert len(v) == 1, (name, labels, v)
    return v[0]
me = sys.argv[1]
assert one("idunno_node_info", name=me) == 1
assert one("idunno_members", state="alive") == 3
for m in ("node1", "node2", "node3"):
    assert one("idunno_member_state", member=m, state="alive") == 1, m
    assert one("idunno_member_state", member=m, state="failed") == 0, m
assert one("idunno_udp_sent_bytes_total") > 0
assert one("idunno_udp_received_bytes_total") > 0
assert sum(s.value for s in fams["idunno_bad_frames"].samples) == 0
assert one("process_resident_memory_bytes") > 1 << 20
assert one("idunno_ctl_has_leader") == 1 and one("idunno_ctl_term") >= 1
assert one("idunno_http_publish_age_seconds") < 2
' "$n" || fail "$n: /metrics"
done

# One leader, and every node names it (labels of idunno_ctl_leader).
leaders=0
leader=""
for n in "${nodes[@]}"; do
  [ "$(metric "$n" idunno_ctl_is_leader)" = 1 ] && { leaders=$((leaders + 1)); leader=$n; }
done
assert_eq "$leaders" 1 "nodes that say they lead"
for n in "${nodes[@]}"; do
  assert_eq "$(metric "$n" idunno_ctl_leader leader="$leader" addr="$(addr "$leader")")" 1 "$n names the leader"
done

# /api/status: the JSON document of docs/http.md.
http_get node2 /api/status | tail -n +3 | "$PY3" -c '
import json, sys
st = json.load(sys.stdin)
leader = sys.argv[1]
assert st["schema_version"] == 1 and st["ready"] == {"ok": True, "reason": ""}, st["ready"]
assert st["node"]["name"] == "node2" and st["node"]["addr"] == sys.argv[2], st["node"]
ms = {m["name"]: m for m in st["members"]}
assert sorted(ms) == ["node1", "node2", "node3"], ms
assert all(m["state"] == "alive" for m in ms.values())
assert ms["node2"]["self"] and not ms["node1"]["self"]
assert ms[leader]["role"] == "coordinator", ms
assert sorted(m["role"] for m in ms.values()) == ["coordinator", "standby", "standby"], ms
c = st["coordinator"]
assert c["leader"] == leader and c["term"] >= 1 and c["voter"], c
assert sorted(s["name"] for s in c["servers"]) == ["node1", "node2", "node3"], c
assert st["jobs"] == [], st["jobs"]
' "$leader" "$(addr node2)" || fail "/api/status"

# Errors: unknown paths 404, other methods 405 (with Allow), HEAD as GET.
assert_eq "$(http_code node1 /nope)" 404 "unknown path"
assert_eq "$(http_code node1 /metrics/extra)" 404 "unknown path below /metrics"
# (test_http_auth.sh: without the bearer token they get 401 first)
assert_eq "$(http_code node1 /metrics POST)" 401 "POST /metrics without the token"
assert_eq "$(http_code node1 /api/status DELETE)" 401 "DELETE /api/status without the token"
assert_eq "$(http_code node1 /healthz HEAD)" 200 "HEAD /healthz"
wait_until 3 eval '[ "$(metric node1 idunno_http_requests_total endpoint=none code=404)" = 2 ]' ||
  fail "404s not counted"

# A killed member: another node's /metrics shows it failed.
cluster kill node3
wait_until 10 eval '[ "$(metric node1 idunno_member_state member=node3 state=failed)" = 1 ]' ||
  fail "node1 /metrics never showed node3 failed"
assert_eq "$(metric node1 idunno_member_state member=node3 state=alive)" 0 "node3 no longer alive"
wait_until 5 eval '[ "$(metric node2 idunno_members state=alive)" = 2 ]' || fail "node2: alive != 2"
assert_eq "$(http_code node3 /healthz)" 000 "a killed node's endpoint is gone"
# Whoever led, node1 and node2 have a coordinator again.
for n in node1 node2; do
  wait_until 10 eval '[ "$(http_code '"$n"' /readyz)" = 200 ]' ||
    fail "$n not ready after node3 was killed: $(http_get "$n" /readyz | tail -n +3)"
done

# Restarted, node3 is a new incarnation: one series per name, alive again
# (the old incarnation, still listed failed, is not counted).
cluster start node3
wait_until 15 eval '[ "$(metric node1 idunno_member_state member=node3 state=alive)" = 1 ]' ||
  fail "node1 never showed the restarted node3 alive: $(metric node1 idunno_member_state member=node3 state=alive)"
wait_until 5 eval '[ "$(metric node1 idunno_members state=alive)" = 3 ]' || fail "node1: alive != 3"
assert_eq "$(metric node1 idunno_members state=failed)" 0 "failed members after the restart"

# --no-http: no endpoint on PORT+2, the node runs.
port=$(( IDUNNO_BASE_PORT + 50 ))
"$ROOT/bin/idunnod" --name solo --addr "127.0.0.1:$port" --data "$IDUNNO_RUN_DIR/solo" --no-http \
  --key-file "$IDUNNO_KEY_FILE" \
  >"$IDUNNO_RUN_DIR/solo.out" 2>&1 &
solo=$!
TEST_PIDS+=("$solo")
wait_until 10 "$IDUNNO" -s "127.0.0.1:$port" --timeout 500 list_self >/dev/null || fail "solo node"
"$PY3" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
  $((port + 2)) 2>/dev/null && fail "--no-http node listens on PORT+2"
kill "$solo"
wait "$solo" || fail "--no-http node did not stop cleanly"

# PORT+2 taken: the node refuses to start and says why.
port=$(( IDUNNO_BASE_PORT + 60 ))
"$PY3" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' $((port + 2)) &
holder=$!
TEST_PIDS+=("$holder")
sleep 0.3
set +e
timeout 10 "$ROOT/bin/idunnod" --name busy --addr "127.0.0.1:$port" --data "$IDUNNO_RUN_DIR/busy" \
  >"$IDUNNO_RUN_DIR/busy.out" 2>&1
rc=$?
set -e
kill "$holder" 2>/dev/null || true
assert_eq "$rc" 2 "exit status with PORT+2 taken"
assert_contains "$(cat "$IDUNNO_RUN_DIR/busy.out")" "cannot listen for HTTP on 127.0.0.1:$((port + 2))"
echo "http ok (leader $leader)"
