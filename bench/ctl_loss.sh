#!/usr/bin/env bash
# Control-plane stability under packet loss: a 5-node namespace cluster (3
# voters) with PCT% loss on every link (nftables, inbound at every node) for
# SECONDS. Counts elections (the raft term's rise) and coordinator changes
# (a voter's "coordinator for term N ... serving" log line) while the loss
# lasts; then, still under the same loss, kills the coordinator KILLS times and
# times each takeover (kill -9 -> the new coordinator's "serving" line, both
# wall-clock ms on this host), restarting the victim between kills. Prints JSON.
#   bench/ctl_loss.sh [SECONDS=300] [PCT=10] [KILLS=5]
# Daemon flags go in IDUNNOD_ARGS, e.g. IDUNNOD_ARGS="--raft-rto-min 0".
. "$(dirname "$0")/../tests/netns/lib.sh"
secs=${1:-300}; pct=${2:-10}; kills=${3:-5}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
status_of() { cli "$1" --json --timeout 1000 status 2>/dev/null | json "$2"; }
leader() { status_of node4 'd["leader"] or ""'; }
term() { status_of node4 'd["term"]'; }
has_leader() { [ -n "$(leader)" ]; }
wins() { cat "$IDUNNO_RUN_DIR"/node[123]/idunnod.log | grep -c "won the election" || true; }
servings() { cat "$IDUNNO_RUN_DIR"/node[123]/idunnod.log | grep -c "earlier entries applied, serving" || true; }
# serving_after TERM T0: wall ms of the first "serving" line of a term above
# TERM, logged at T0 or later.
# current_coordinator: "NODE TERM" of the newest "serving" line (the voters'
# logs are the truth; a non-voter's status may lag an election).
current_coordinator() {
  grep -H "earlier entries applied, serving" "$IDUNNO_RUN_DIR"/node[123]/idunnod.log |
    sed -n 's|.*/\(node[0-9]*\)/idunnod.log:.*coordinator for term \([0-9]*\):.*|\1 \2|p' |
    sort -k2,2n | tail -n 1
}
serving_after() {
  cat "$IDUNNO_RUN_DIR"/node[123]/idunnod.log | python3 -c '
import datetime, re, sys
best = None
for line in sys.stdin:
    m = re.match(r"(\S+)Z .*coordinator for term (\d+): earlier entries applied, serving", line)
    if m and int(m.group(2)) > int(sys.argv[1]):
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
        ms = int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
        if ms >= int(sys.argv[2]):
            best = ms if best is None else min(best, ms)
if best is None:
    sys.exit(1)
print(best)' "$1" "$2"
}
suspicions() { cat "$IDUNNO_RUN_DIR"/node*/idunnod.log | grep -c "is suspect" || true; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

load0=$(cut -d' ' -f1 /proc/loadavg)
cluster up 5 >/dev/null
wait_until 15 has_leader || fail "no coordinator elected"
# Quiet first: the start-up elections are not counted.
sleep 2
term0=$(term); wins0=$(wins); serv0=$(servings); sus0=$(suspicions); leader0=$(leader)
cluster loss "$pct"
end=$(( $(date +%s) + secs ))
samples=0; leaderless=0; changes=0; prev=$leader0
while [ "$(date +%s)" -lt "$end" ]; do
  l=$(leader)
  samples=$((samples + 1))
  if [ -z "$l" ]; then leaderless=$((leaderless + 1)); elif [ "$l" != "$prev" ]; then changes=$((changes + 1)); prev=$l; fi
  sleep 0.2
done
term1=$(term); wins1=$(wins); serv1=$(servings); sus1=$(suspicions)

# Takeovers under the same loss.
takeovers=()
for i in $(seq 1 "$kills"); do
  wait_until 15 has_leader || fail "no coordinator before kill $i"
  sleep 2
  read -r L T <<<"$(current_coordinator)"
  [ "$(leader)" = "$L" ] || { sleep 1; read -r L T <<<"$(current_coordinator)"; }
  t0=$(now_ms)
  cluster kill "$L"
  wait_until 20 serving_after "$T" "$t0" >/dev/null || fail "no new coordinator within 20 s after killing $L"
  takeovers+=($(( $(serving_after "$T" "$t0") - t0 )))
  cluster start "$L" >/dev/null
done
cluster loss 0
# The elections, for the record (stderr).
grep -h "won the election\|lost leadership" "$IDUNNO_RUN_DIR"/node[123]/idunnod.log | sort >&2

LOAD0=$load0 LOAD1=$(cut -d' ' -f1 /proc/loadavg) python3 - "$pct" "$secs" "$term0" "$term1" "$wins0" "$wins1" "$changes" "$samples" "$leaderless" \
  "$sus0" "$sus1" "$serv0" "$serv1" "${IDUNNOD_ARGS:-}" "${takeovers[@]}" <<'EOF'
import json, os, statistics, sys
a = sys.argv[1:]
pct, secs, term0, term1, wins0, wins1, changes, samples, leaderless, sus0, sus1, serv0, serv1 = map(int, a[:13])
flags, takeovers = a[13], [int(x) for x in a[14:]]
print(json.dumps({
    "nodes": 5, "voters": 3, "loss_pct": pct, "seconds": secs, "daemon_flags": flags,
    "load_avg_1min": [float(os.environ["LOAD0"]), float(os.environ["LOAD1"])],
    "elections": term1 - term0, "elections_won": wins1 - wins0,
    "coordinator_changes": serv1 - serv0,
    "leader_changes_seen": changes, "leaderless_samples": leaderless, "samples": samples,
    "swim_suspicions": sus1 - sus0,
    "takeover_ms": {"median": statistics.median(takeovers), "max": max(takeovers),
                    "all": takeovers} if takeovers else None,
}))
EOF
