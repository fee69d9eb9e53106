#!/usr/bin/env python3
"""Control-plane failover benchmark on a local cluster (real daemons, 127.0.0.1).

Each trial: a steady stream of sequential writes (`idunno ctl-load`, through a
non-voter, so the client's own node never dies) while the leader is killed
with SIGKILL. Measured:
  failover_ms  kill -> first write acknowledged by the new leader (a newer term)
  catchup_ms   restart of the killed voter -> its applied index reaches the
               leader's commit index of that moment
At the end, every acknowledged write is read back (linearizable reads), every
term must have had one acknowledging leader, and all nodes must reach the same
state digest.

Prints one JSON document. Usage: bench/ctl_bench.py [--nodes 5] [--trials 20]
[--base-port 7300] [--interval-ms 2]
"""
import argparse, json, os, re, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
IDUNNO = os.path.join(ROOT, "bin", "idunno")
PUT_RE = re.compile(r'\{"key":"([^"]*)","ok":(true|false),"sent_ms":(\d+),"done_ms":(\d+)'
                    r'(?:,"revision":(\d+),"term":(\d+),"leader":"([^"]*)")?\}')


def now_ms():
    return time.time() * 1000


class Cluster:
    def __init__(self, n, base_port):
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="idunno-ctlbench.")
        self.env = dict(os.environ, IDUNNO_RUN_DIR=self.dir, IDUNNO_BASE_PORT=str(base_port))
        # scripts/cluster up keys the cluster (docs/security.md); IDUNNO_NO_KEY=1
        # runs it in plaintext, for comparison.
        if os.environ.get("IDUNNO_NO_KEY") != "1":
            os.environ["IDUNNO_KEY_FILE"] = os.path.join(self.dir, "cluster.key")
        self.addrs = {}

    def run(self, *args, check=True):
        return subprocess.run([CLUSTER, *args], env=self.env, check=check,
                              capture_output=True, text=True).stdout

    def up(self):
        self.run("up", str(self.n))
        for k in range(1, self.n + 1):
            self.addrs[f"node{k}"] = self.run("addr", f"node{k}").strip()

    def down(self):
        self.run("down", check=False)
        subprocess.run(["rm", "-rf", self.dir])

    def cli(self, node, *args, timeout_ms=3000):
        p = subprocess.run([IDUNNO, "-s", self.addrs[node], "--json", "--timeout",
                            str(timeout_ms), *args], capture_output=True, text=True)
        if p.returncode not in (0, 1) or not p.stdout.strip():
            return None
        return json.loads(p.stdout)

    def pid(self, node):
        with open(os.path.join(self.dir, node, "pid")) as f:
            return int(f.read())


def wait(cond, limit_s, step=0.02):
    deadline = time.time() + limit_s
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def leader_of(c, via):
    st = c.cli(via, "status")
    if st and st["leader"]:
        return st["leader"], st["term"], st["commit_index"]
    return None


def trial(c, via, interval_ms, k):
    ld = wait(lambda: leader_of(c, via), 10)
    if not ld:
        raise RuntimeError("no leader before the trial")
    leader, term, _ = ld
    load = subprocess.Popen([IDUNNO, "-s", c.addrs[via], "--json", "--timeout", "5000",
                             "ctl-load", f"t{k}", "1000000", str(interval_ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    fd = load.stdout.fileno()
    os.set_blocking(fd, False)
    buf = ""
    puts = []

    def drain():
        nonlocal buf
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            chunk = b""
        buf += chunk.decode() if chunk else ""
        for m in PUT_RE.finditer(buf):
            puts.append(m.groups())
        last = buf.rfind("}")
        buf = buf[last + 1:] if last >= 0 else buf

    wait(lambda: (drain(), len(puts) >= 50)[1], 5)
    victim_pid = c.pid(leader)
    t_kill = now_ms()
    os.kill(victim_pid, signal.SIGKILL)

    def new_term_ack():
        drain()
        return next((p for p in puts if p[1] == "true" and p[5] and int(p[5]) > term
                     and int(p[3]) >= t_kill), None)

    first = wait(new_term_ack, 8, step=0.005)
    time.sleep(0.2)
    drain()
    load.send_signal(signal.SIGTERM)
    load.wait()
    drain()
    # Restart the victim and time its catch-up.
    st = c.cli(via, "status")
    target = st["commit_index"] if st else 0
    t_start = now_ms()
    c.run("start", leader)

    def caught_up():
        s = c.cli(leader, "status", timeout_ms=500)
        return s and s["answered_by"]["applied_index"] >= target

    caught = wait(caught_up, 10)
    catchup = now_ms() - t_start if caught else None
    return {
        "killed": leader, "old_term": term,
        "failover_ms": round(int(first[3]) - t_kill) if first else None,
        "new_leader": first[6] if first else None,
        "catchup_ms": round(catchup) if catchup is not None else None,
        "puts": puts,
    }


def summary(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "max": max(xs), "min": min(xs), "n": len(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--base-port", type=int, default=int(os.environ.get("IDUNNO_BASE_PORT", 7300)))
    ap.add_argument("--interval-ms", type=int, default=2)
    a = ap.parse_args()
    if a.nodes < 4:
        sys.exit("needs at least 4 nodes (3 voters and a non-voter to write through)")
    c = Cluster(a.nodes, a.base_port)
    try:
        c.up()
        via = "node4"
        trials = [trial(c, via, a.interval_ms, k) for k in range(a.trials)]
        acked = [p[0] for t in trials for p in t["puts"] if p[1] == "true"]
        failed = sum(1 for t in trials for p in t["puts"] if p[1] == "false")
        leaders = {}
        for t in trials:
            for p in t["puts"]:
                if p[1] == "true":
                    leaders.setdefault(int(p[5]), set()).add(p[6])
        lost = 0
        for i in range(0, len(acked), 400):
            r = c.cli(via, "ctl-get", *acked[i:i + 400], timeout_ms=10000)
            lost += sum(1 for x in r["keys"] if not x["found"]) if r else len(acked[i:i + 400])

        def same_state():
            views = [c.cli(f"node{k}", "status") for k in range(1, a.nodes + 1)]
            if any(v is None for v in views):
                return None
            voters = [v["answered_by"] for v in views if v["answered_by"]["voter"]]
            idx = {v["applied_index"] for v in voters}
            dig = {v["digest"] for v in voters}
            return (len(voters), dig.pop()) if len(idx) == 1 and len(dig) == 1 else None

        same = wait(same_state, 15, step=0.1)
        out = {
            "nodes": a.nodes, "voters": 3, "trials": a.trials,
            "failover_ms": summary([t["failover_ms"] for t in trials]),
            "catchup_ms": summary([t["catchup_ms"] for t in trials]),
            "acked_writes": len(acked), "lost_acked_writes": lost, "failed_puts": failed,
            "max_leaders_per_term": max(len(v) for v in leaders.values()),
            "voter_digests_equal": bool(same), "digest": same[1] if same else None,
            "per_trial": [{k: v for k, v in t.items() if k != "puts"} for t in trials],
        }
        print(json.dumps(out, indent=1))
    finally:
        c.down()


if __name__ == "__main__":
    main()
