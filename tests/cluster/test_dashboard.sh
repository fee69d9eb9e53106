#!/usr/bin/env bash
# The dashboard in a real browser: headless Chromium loads a node's page
# (HTTP on PORT+2), its script fetches /api/status, and the rendered DOM lists
# every member with its state, the coordinator and "no jobs"; after a member
# is killed, a second load shows it failed. Chromium is required (installed
# by scripts/install-deps.sh): without it the test fails.
# timeout: 180
. "$(dirname "$0")/lib.sh"
command -v chromium >/dev/null || fail "chromium is missing (scripts/install-deps.sh installs it)"

# dom NODE: the DOM after the page's script ran (virtual time: about 5 polls).
dom() {
  timeout 60 chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir="$IDUNNO_RUN_DIR/chromium" --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-extensions --mute-audio \
    --virtual-time-budget=5000 --dump-dom "http://$(http_addr "$1")/" 2>>"$IDUNNO_RUN_DIR/chromium.log"
}

# check DOM_FILE LEADER STATE_OF_NODE3 SELF: the rendered page, parsed.
check() {
  "$PY3" - "$@" <<'PY'
import sys
from html.parser import HTMLParser
path, leader, node3_state, self_name = sys.argv[1:5]

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.members, self.text, self.hidden, self.stack = {}, {}, set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-member" in a:
            self.members[a["data-member"]] = a.get("data-state")
        if "hidden" in a and "id" in a:
            self.hidden.add(a["id"])
        self.stack.append(a.get("id"))
    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()
    def handle_data(self, data):
        for i in self.stack:
            if i:
                self.text[i] = self.text.get(i, "") + data

p = Page()
p.feed(open(path, encoding="utf-8").read())
want = {"node1": "alive", "node2": "alive", "node3": node3_state}
assert p.members == want, ("members", p.members, want)
assert p.text.get("leader", "").strip() == leader, ("leader", p.text.get("leader"))
assert p.text.get("node", "").startswith(self_name + " "), ("node", p.text.get("node"))
assert p.text.get("ready", "").strip() == "ready", ("ready", p.text.get("ready"))
assert "jobs-empty" not in p.hidden and "jobs" in p.hidden, ("jobs", p.hidden)
assert "No jobs" in p.text.get("jobs-empty", ""), p.text.get("jobs-empty")
PY
}

cluster up 3 >/dev/null
for n in node1 node2 node3; do
  wait_until 20 eval '[ "$(http_code '"$n"' /readyz)" = 200 ]' || fail "$n not ready"
done
leader_of() {
  http_get "$1" /api/status | tail -n +3 | "$PY3" -c 'import json, sys; print(json.load(sys.stdin)["coordinator"]["leader"])'
}
leader=$(leader_of node2)
[ -n "$leader" ] || fail "no leader in /api/status"

dom node2 >"$IDUNNO_RUN_DIR/dom1.html" || fail "chromium failed: $(tail -n 5 "$IDUNNO_RUN_DIR/chromium.log")"
check "$IDUNNO_RUN_DIR/dom1.html" "$leader" alive node2 || {
  echo "--- rendered DOM:"; cat "$IDUNNO_RUN_DIR/dom1.html"; fail "dashboard of node2"
}

# An online request shows on the coordinator's page, in the online table.
cli node1 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" >/dev/null || fail "train"
"$ROOT/scripts/make-data.sh" --synthetic 1 "$IDUNNO_RUN_DIR/img" >/dev/null
cli node2 predict tiny_cnn "$IDUNNO_RUN_DIR"/img/* >/dev/null || fail "predict"
online_counted() {
  http_get "$leader" /api/status | tail -n +3 |
    "$PY3" -c 'import json, sys; o = json.load(sys.stdin)["online"]; sys.exit(0 if o and o[0]["requests"] == 1 else 1)'
}
wait_until 10 online_counted || fail "the coordinator's status does not count the online request"
dom "$leader" >"$IDUNNO_RUN_DIR/dom-online.html" || fail "chromium failed: $(tail -n 5 "$IDUNNO_RUN_DIR/chromium.log")"
"$PY3" - "$IDUNNO_RUN_DIR/dom-online.html" <<'PY' || { cat "$IDUNNO_RUN_DIR/dom-online.html"; fail "online table"; }
import re, sys
html = open(sys.argv[1], encoding="utf-8").read()
rows = re.findall(r'<tr data-online="([^"]+)">(.*?)</tr>', html)
assert [r[0] for r in rows] == ["tiny_cnn"], rows
cells = re.findall(r'<td[^>]*>([^<]*)</td>', rows[0][1])
assert cells[0] == "tiny_cnn" and cells[1] == "1" and cells[2] == "0", cells
PY

# An online job: its requests are its queries, and the jobs table marks it.
cli node1 launch tiny_cnn 4 --online >/dev/null || fail "launch --online"
cli node3 predict tiny_cnn "$IDUNNO_RUN_DIR"/img/* >/dev/null || fail "predict to the online job"
job_counted() {
  http_get "$leader" /api/status | tail -n +3 |
    "$PY3" -c 'import json, sys; j = json.load(sys.stdin)["jobs"]; sys.exit(0 if j and j[0]["kind"] == "online" and j[0]["queries_done"] == 1 else 1)'
}
wait_until 10 job_counted || fail "the coordinator's status does not count the online job's request"
dom "$leader" >"$IDUNNO_RUN_DIR/dom-job.html" || fail "chromium failed: $(tail -n 5 "$IDUNNO_RUN_DIR/chromium.log")"
"$PY3" - "$IDUNNO_RUN_DIR/dom-job.html" <<'PY' || { cat "$IDUNNO_RUN_DIR/dom-job.html"; fail "jobs table"; }
import re, sys
html = open(sys.argv[1], encoding="utf-8").read()
rows = re.findall(r'<tr data-job="([^"]+)">(.*?)</tr>', html)
assert [r[0] for r in rows] == ["tiny_cnn"], rows
assert re.search(r'<span class="muted"> online</span>', rows[0][1]), rows[0][1]
cells = re.findall(r'<td[^>]*>([^<]*)</td>', rows[0][1])
assert cells[0] == "1", cells
PY

# Kill a member that does not lead; node1's page shows it failed.
victim=node3
[ "$leader" = node3 ] && victim=node2
watcher=node1
cluster kill "$victim"
wait_until 10 eval '[ "$(metric '"$watcher"' idunno_member_state member='"$victim"' state=failed)" = 1 ]' ||
  fail "$watcher never saw $victim failed"
dom "$watcher" >"$IDUNNO_RUN_DIR/dom2.html" || fail "chromium failed: $(tail -n 5 "$IDUNNO_RUN_DIR/chromium.log")"
"$PY3" - "$IDUNNO_RUN_DIR/dom2.html" "$victim" <<'PY' || { cat "$IDUNNO_RUN_DIR/dom2.html"; fail "dashboard after the kill"; }
import re, sys
html, victim = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2]
rows = dict(re.findall(r'<tr data-member="([^"]+)" data-state="([^"]+)"', html))
assert rows.get(victim) == "failed", rows
assert sorted(v for k, v in rows.items() if k != victim) == ["alive", "alive"], rows
PY
echo "dashboard ok (leader $leader, killed $victim)"
