#!/usr/bin/env bash
# A real Prometheus server (Debian's, from .deps/prometheus: scripts/install-
# deps.sh) scrapes every node of a running cluster: every target is up with no
# scrape error, its queries see the nodes' own series (one leader among
# them) and the coordinator's
# job families with the values `jobs` gives (a job's completed queries, its
# latency histogram's count), and promtool's linter passes on every page.
# The server listens on loopback only, in this test's port range, and is
# stopped with the test.
# timeout: 120
. "$(dirname "$0")/lib.sh"

BIN=$ROOT/.deps/prometheus/bin
[ -x "$BIN/prometheus" ] && [ -x "$BIN/promtool" ] ||
  fail "no prometheus in $BIN (scripts/install-deps.sh installs it)"
cluster up 3 >/dev/null
wait_leader node1

# A job's families on the coordinator: 40 images, one per query.
D=$IDUNNO_RUN_DIR/data
"$ROOT/scripts/make-data.sh" --synthetic 40 "$D/set" >/dev/null
cli node2 put-dir "$D/set" set >/dev/null
cli node1 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" >/dev/null
cli node1 launch tiny_cnn 1 >/dev/null
cli node3 inference tiny_cnn set >/dev/null
done_is() { [ "$(cli node2 --json jobs | json 'd["jobs"][0]["queries_done"]')" = 40 ]; }
wait_until 60 done_is || fail "the job did not finish"

# -- Prometheus, scraping the three HTTP ports every second
PROM_PORT=$((IDUNNO_BASE_PORT + 95))
PROM=http://127.0.0.1:$PROM_PORT
targets=""
for k in 1 2 3; do targets+="'$(http_addr "node$k")', "; done
cat >"$D/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: idunno
    static_configs:
      - targets: [${targets%, }]
EOF
"$BIN/promtool" check config "$D/prometheus.yml" >/dev/null || fail "promtool rejects the config"
"$BIN/prometheus" --config.file="$D/prometheus.yml" --storage.tsdb.path="$D/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$D/prometheus.log" 2>&1 &
TEST_PIDS+=($!)

api() { python3 - "$PROM" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
base, q = sys.argv[1:3]
with urllib.request.urlopen(base + "/api/v1/query?query=" + urllib.parse.quote(q), timeout=3) as r:
    d = json.load(r)
assert d["status"] == "success", d
print(json.dumps(d["data"]["result"]))
PY
}
# Every target scraped at least once, healthy, with no error.
all_up() {
  python3 - "$PROM" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/api/v1/targets", timeout=3) as r:
        t = json.load(r)["data"]["activeTargets"]
except OSError:
    sys.exit(1)
sys.exit(0 if len(t) == 3 and all(x["health"] == "up" and not x["lastError"] for x in t) else 1)
PY
}
wait_until 30 all_up || fail "prometheus did not scrape every node: $(tail -5 "$D/prometheus.log")"

# up is 1 for each node; each node's own series are there.
assert_eq "$(api 'sum(up{job="idunno"})' | json 'd[0]["value"][1]')" 3 "targets up"
assert_eq "$(api 'count(idunno_ctl_term{job="idunno"})' | json 'd[0]["value"][1]')" 3 "nodes exporting their term"
# One coordinator, as Prometheus sees the cluster.
assert_eq "$(api 'sum(idunno_ctl_is_leader{job="idunno"})' | json 'd[0]["value"][1]')" 1 "leaders"
# The job's families: from the coordinator only, with the values jobs gives.
want=$(cli node2 --json jobs | json 'd["jobs"][0]["queries_done"]')
got() { api "$1" | json 'd[0]["value"][1] if d else "none"'; }
scraped() { [ "$(got 'sum(idunno_job_queries_total{model="tiny_cnn"})')" = "$want" ]; }
wait_until 10 scraped || fail "idunno_job_queries_total: $(got 'sum(idunno_job_queries_total{model="tiny_cnn"})'), want $want"
assert_eq "$(got 'sum(idunno_job_processing_seconds_count{model="tiny_cnn"})')" "$want" \
  "histogram count as scraped"
assert_eq "$(api 'count(idunno_job_queries_total{model="tiny_cnn"})' | json 'd[0]["value"][1]')" 1 \
  "job series (the coordinator's only)"
# A quantile over the scraped histogram lies within its buckets' range.
q=$(got 'histogram_quantile(0.5, sum by (le) (idunno_job_processing_seconds_bucket{model="tiny_cnn"}))')
python3 -c "import sys; v = float(sys.argv[1]); assert 0 < v < 60, v" "$q" || fail "median $q s"

# -- and promtool's linter on every page, as Prometheus read them
for k in 1 2 3; do
  page=$(http_get "node$k" /metrics)
  lint=$(tail -n +3 <<<"$page" | "$BIN/promtool" check metrics 2>&1) || fail "promtool on node$k: $lint"
done
echo ok
