"""A local IDunno cluster for benchmarks: real daemons on 127.0.0.1 through
scripts/cluster, and the idunno client with --json."""
import json, os, re, subprocess, sys, tempfile, time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
IDUNNO = os.path.join(ROOT, "bin", "idunno")
VOTERS = {"node1", "node2", "node3"}


def wait(pred, timeout, step=0.05):
    """Polls pred every `step` s until it returns something true (returned)
    or `timeout` s have passed (None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


class Cluster:
    def __init__(self, n, base_port, prefix="idunno-bench."):
        self.n = n
        self.dir = tempfile.mkdtemp(prefix=prefix)
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
        self.wait_leader()

    def wait_leader(self, via="node1", timeout=30, other_than=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.cli(via, "status", timeout_ms=2000)
            if st and st.get("leader") and st["leader"] != other_than:
                return st["leader"]
            time.sleep(0.05)
        raise SystemExit("no coordinator")

    def down(self):
        self.run("down", check=False)
        subprocess.run(["rm", "-rf", self.dir])

    def cli(self, node, *args, timeout_ms=10000, check=False):
        p = subprocess.run([IDUNNO, "-s", self.addrs[node], "--json", "--timeout",
                            str(timeout_ms), *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise SystemExit(f"idunno {' '.join(args)}: {p.stderr.strip()}")
        if p.returncode != 0 or not p.stdout.strip():
            return None
        return json.loads(p.stdout)

    def pid(self, node):
        with open(os.path.join(self.dir, node, "pid")) as f:
            return int(f.read())

    def cpu_seconds(self):
        """CPU time (user + system) used so far by every node's process and
        its children still running (inference processes). On a shared host
        this is the cost of work done, less moved by other load than a rate."""
        roots = set()
        for k in range(1, self.n + 1):
            try:
                roots.add(self.pid(f"node{k}"))
            except (OSError, ValueError):
                pass
        tick, total = os.sysconf("SC_CLK_TCK"), 0
        for ent in os.listdir("/proc"):
            if not ent.isdigit():
                continue
            try:
                with open(f"/proc/{ent}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0] is the state (field 3); ppid is field 4, utime/stime 14/15.
            if int(ent) in roots or int(fields[1]) in roots:
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def kill(self, node):
        os.kill(self.pid(node), 9)

    def start(self, node, timeout=10):
        """Starts a killed node once its old process is gone (a process can
        take a moment to finish dying); says so if it does not go."""
        pid, deadline, state = self.pid(node), time.time() + timeout, ""
        while time.time() < deadline:
            try:
                with open(f"/proc/{pid}/status") as f:
                    state = next((l.split(None, 1)[1].strip() for l in f if l.startswith("State:")), "")
            except OSError:
                break
            if state.startswith("Z"):
                break
            time.sleep(0.05)
        else:
            sys.stderr.write(f"{node} (pid {pid}) still '{state}' {timeout} s after its kill\n")
        self.run("start", node)

    def log_lines(self, node, pattern):
        """(wall seconds, line) of every log line of node matching pattern."""
        out = []
        rx = re.compile(pattern)
        try:
            with open(os.path.join(self.dir, node, "idunnod.log"), errors="replace") as f:
                for line in f:
                    if rx.search(line):
                        ts = datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
                        out.append((ts.replace(tzinfo=timezone.utc).timestamp(), line.rstrip()))
        except FileNotFoundError:
            pass
        return out
