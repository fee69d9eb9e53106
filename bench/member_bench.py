#!/usr/bin/env python3
"""Membership benchmarks on a local cluster (real daemons on 127.0.0.1).

  detect  N-node cluster, TRIALS kill -9 of a random non-first node: time from the
          kill until every other member has logged it failed (log timestamps, ms).
  multi   several kill -9 at once: a 5-node cluster losing 3, and a 10-node one
          losing 3 (--kill sets how many); for every survivor and victim, the time
          from the kills until that survivor logged that victim failed.
  join    time from starting a new node until every member has logged its join.
  gossip  UDP bytes/s sent per node at steady state, for 5, 10, 20 and --nodes nodes.

Prints one JSON document. Usage: bench/member_bench.py [detect|multi|join|gossip|all]
[--nodes 10] [--trials 20] [--kill 3] [--base-port 7800]
"""
import argparse, datetime, json, os, random, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
IDUNNO = os.path.join(ROOT, "bin", "idunno")


class Cluster:
    def __init__(self, n, base_port):
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="idunno-bench.")
        self.env = dict(os.environ, IDUNNO_RUN_DIR=self.dir, IDUNNO_BASE_PORT=str(base_port))
        # scripts/cluster up keys the cluster (docs/security.md); IDUNNO_NO_KEY=1
        # runs it in plaintext, for comparison.
        if os.environ.get("IDUNNO_NO_KEY") != "1":
            os.environ["IDUNNO_KEY_FILE"] = os.path.join(self.dir, "cluster.key")

    def run(self, *args, check=True):
        return subprocess.run([CLUSTER, *args], env=self.env, check=check,
                              capture_output=True, text=True).stdout

    def up(self):
        self.run("up", str(self.n))

    def down(self):
        self.run("down", check=False)
        subprocess.run(["rm", "-rf", self.dir])

    def addr(self, node):
        return self.run("addr", node).strip()

    def cli(self, node, *args):
        out = subprocess.run([IDUNNO, "-s", self.addr(node), "--json", *args],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def log(self, node):
        with open(os.path.join(self.dir, node, "idunnod.log")) as f:
            return f.read()


def log_times(text, pattern):
    """Epoch-ms timestamps of the log lines matching pattern."""
    out = []
    for line in text.splitlines():
        if re.search(pattern, line):
            ts = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            out.append(ts.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
    return out


def now_ms():
    return time.time() * 1000


def wait(cond, limit):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def bench_detect(n, trials, base_port):
    c = Cluster(n, base_port)
    c.up()
    results = []
    try:
        for t in range(trials):
            victim = f"node{random.Random(t).randint(2, n)}"
            inc = [m for m in c.cli("node1", "list_mem")["members"] if m["name"] == victim][0]["incarnation"]
            others = [f"node{k}" for k in range(1, n + 1) if f"node{k}" != victim]
            killed = now_ms()
            c.run("kill", victim)
            pat = rf"member {victim}#{inc} at .* is failed"
            ok = wait(lambda: all(log_times(c.log(o), pat) for o in others), 10)
            if not ok:
                results.append(None)
            else:
                results.append(max(log_times(c.log(o), pat)[0] for o in others) - killed)
            c.run("start", victim)
            c.run("wait", "20")
    finally:
        c.down()
    done = [r for r in results if r is not None]
    return {"nodes": n, "trials": trials, "missed": len(results) - len(done),
            "all_members_ms": {"median": round(statistics.median(done)), "max": round(max(done)),
                               "min": round(min(done))},
            "target": "median <= 1000, max <= 2000"}


def gone(pid):
    """True once the process has exited (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()
    except OSError:
        return True


def bench_multi(n, kill, trials, base_port):
    """Kills `kill` random non-first nodes at once, `trials` times (restarting
    them in between); per (survivor, victim) pair the ms from the kill until
    the survivor logged the victim failed."""
    c = Cluster(n, base_port)
    c.up()
    pairs, per_trial, missed = [], [], 0
    try:
        for t in range(trials):
            victims = random.Random(1000 + t).sample([f"node{k}" for k in range(2, n + 1)], kill)
            members = {m["name"]: m["incarnation"] for m in c.cli("node1", "list_mem")["members"]}
            survivors = [f"node{k}" for k in range(1, n + 1) if f"node{k}" not in victims]
            pids = [int(open(os.path.join(c.dir, v, "pid")).read()) for v in victims]
            killed = now_ms()
            for pid in pids:  # as close to "at once" as signals go
                os.kill(pid, 9)
            pats = {v: rf"member {v}#{members[v]} at .* is failed" for v in victims}
            wait(lambda: all(log_times(c.log(o), pats[v]) for o in survivors for v in victims), 15)
            worst = 0
            for o in survivors:
                text = c.log(o)
                for v in victims:
                    ts = log_times(text, pats[v])
                    if not ts:
                        missed += 1
                        continue
                    pairs.append(ts[0] - killed)
                    worst = max(worst, ts[0] - killed)
            per_trial.append(round(worst))
            for v, pid in zip(victims, pids):
                # A process killed in the middle of an fsync lingers until it
                # returns: start the node again only once it is gone.
                wait(lambda: gone(pid), 10)
                started = wait(lambda: subprocess.run([CLUSTER, "start", v], env=c.env,
                                                      capture_output=True).returncode == 0, 10)
                if not started:
                    raise SystemExit(f"cannot restart {v}: {c.run('status', check=False)}")
            c.run("wait", "20")
    finally:
        c.down()
    return {"nodes": n, "killed_at_once": kill, "trials": trials, "missed": missed,
            "survivor_victim_ms": {"median": round(statistics.median(pairs)), "max": round(max(pairs)),
                                   "min": round(min(pairs)), "n": len(pairs)},
            "worst_per_trial_ms": per_trial}


def bench_join(n, trials, base_port):
    c = Cluster(n, base_port)
    c.up()
    times = []
    try:
        for t in range(trials):
            victim = f"node{n}"
            c.run("kill", victim)
            others = [f"node{k}" for k in range(1, n)]
            wait(lambda: all(c.cli(o, "list_mem") and any(
                m["name"] == victim and m["state"] == "failed" for m in c.cli(o, "list_mem")["members"])
                for o in others), 10)
            started = now_ms()
            c.run("start", victim)
            def joined_everywhere():
                try:
                    inc = c.cli(victim, "list_self")["members"][0]["incarnation"]
                except Exception:
                    return False
                return all(log_times(c.log(o), rf"member {victim}#{inc} at .* joined") for o in others)
            if wait(joined_everywhere, 10):
                inc = c.cli(victim, "list_self")["members"][0]["incarnation"]
                times.append(max(log_times(c.log(o), rf"member {victim}#{inc} at .* joined")[0]
                                 for o in others) - started)
    finally:
        c.down()
    return {"nodes": n, "trials": trials, "seen_by_all_ms": {
        "median": round(statistics.median(times)), "max": round(max(times))}, "target": "<= 1000",
        "note": "includes process start-up"}


def bench_gossip(sizes, base_port, seconds=20):
    out = []
    for n in sizes:
        c = Cluster(n, base_port)
        c.up()
        try:
            time.sleep(3)  # let the join burst pass
            before = {f"node{k}": c.cli(f"node{k}", "stats") for k in range(1, n + 1)}
            time.sleep(seconds)
            after = {f"node{k}": c.cli(f"node{k}", "stats") for k in range(1, n + 1)}
            rates = []
            for k, a in after.items():
                b = before[k]
                dt = (a["uptime_ms"] - b["uptime_ms"]) / 1000
                rates.append((a["udp_bytes_sent"] - b["udp_bytes_sent"]) / dt)
            out.append({"nodes": n, "bytes_per_s_per_node": {"mean": round(statistics.mean(rates)),
                                                             "max": round(max(rates))}})
        finally:
            c.down()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=["detect", "multi", "join", "gossip", "all"])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--kill", type=int, default=3)
    ap.add_argument("--base-port", type=int, default=7800)
    a = ap.parse_args()
    res = {"load_before": os.getloadavg()[0]}
    if a.what in ("detect", "all"):
        res["failure_detection"] = bench_detect(a.nodes, a.trials, a.base_port)
    if a.what in ("multi", "all"):
        res["several_failures"] = [bench_multi(5, a.kill, min(a.trials, 10), a.base_port),
                                   bench_multi(10, a.kill, min(a.trials, 10), a.base_port)]
    if a.what in ("join", "all"):
        res["join"] = bench_join(a.nodes, min(a.trials, 10), a.base_port)
    if a.what in ("gossip", "all"):
        res["gossip"] = bench_gossip(sorted({5, 10, 20, a.nodes}), a.base_port)
    json.dump(res, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
