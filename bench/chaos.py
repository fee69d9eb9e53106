#!/usr/bin/env python3
"""chaos.py — the exactly-once and no-lost-file guarantees under a seeded
random sequence of faults.

A cluster of real daemons runs in network namespaces (scripts/cluster --netns,
inside a private `unshare` of its own). Two jobs of real models run with
batch 1 while a writer stores files in SDFS, and the faults below strike one
after another, the coordinator being a frequent victim:

  kill        kill -9 a node, restart it after a while
  kill-coord  kill -9 the coordinator, restart it after a while
  kill3       kill -9 three nodes at once (one of them maybe a voter)
  isolate     cut a node (often the coordinator) off the network
  block       one node can no longer send to the coordinator (one-way link)
  loss        every node drops 10% of the packets it receives

Then everything is healed and restarted, the jobs finish, and the run checks:
every queued image has exactly as many results as it was queued (no loss, no
duplicate) and none is an error; every file stored before and during the run
that the cluster acknowledged reads back with its SHA-256; all nodes name the
same coordinator in the same term (and hold the same state where they have
applied the same log). It prints one JSON document and exits 0 only if every
check held.

  bench/chaos.py [--seed N] [--seconds S] [--nodes N] [--models M1,M2]
                 [--images N1,N2] [--out FILE]

Defaults are the full run (10 nodes, ResNet50 over 1,200 images and
InceptionV3 over 600, 300 s of faults). tests/netns/test_chaos.sh runs a
short one. Needs root (network namespaces).
"""
import argparse, hashlib, json, os, random, subprocess, sys, tempfile, threading, time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
IDUNNO = os.path.join(ROOT, "bin", "idunno")
VOTERS = ("node1", "node2", "node3")
MODEL_FILES = {}    # job's model name -> file under models/ (NAME:FILE in --models)


def log(msg):
    sys.stderr.write(f"chaos {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


class Cluster:
    """A --netns cluster of scripts/cluster, and what the run has done to it."""

    def __init__(self, n, run_dir):
        self.n = n
        self.names = [f"node{k}" for k in range(1, n + 1)]
        # scripts/cluster up writes the cluster key into the run directory.
        self.env = dict(os.environ, IDUNNO_RUN_DIR=run_dir, IDUNNO_BASE_PORT="7000",
                        IDUNNO_KEY_FILE=os.path.join(run_dir, "cluster.key"))
        self.dir = run_dir
        self.addrs = {}
        self.down = set()       # killed, not yet restarted
        self.cut = set()        # isolated, or not heard by someone
        self.lock = threading.Lock()
        self.last_error = ""

    def script(self, *args, check=True):
        p = subprocess.run([CLUSTER, "--netns", *args], env=self.env, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"cluster {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def up(self):
        self.script("up", str(self.n))
        for name in self.names:
            self.addrs[name] = self.script("addr", name).strip()

    def cli(self, node, *args, timeout_ms=5000, raw=False):
        """The client's JSON answer from NODE, or None when it failed."""
        argv = [IDUNNO, "-s", self.addrs[node], "--timeout", str(timeout_ms)]
        argv += list(args) if raw else ["--json", *args]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                               timeout=timeout_ms / 1000 + 30)
        except subprocess.TimeoutExpired:
            return None
        if p.returncode != 0:
            self.last_error = f"{' '.join(args[:2])}: {p.stderr.strip()}"
            return None
        if raw:
            return p.stdout
        try:
            return json.loads(p.stdout) if p.stdout.strip() else {}
        except json.JSONDecodeError:
            return None

    def reachable(self):
        with self.lock:
            return [k for k in self.names if k not in self.down and k not in self.cut]

    def any_cli(self, *args, rng=random, tries=3, **kw):
        """Asks a reachable node, another one if it fails."""
        for _ in range(tries):
            nodes = self.reachable()
            if not nodes:
                return None
            ans = self.cli(rng.choice(nodes), *args, **kw)
            if ans is not None:
                return ans
        return None

    def leader(self):
        st = self.any_cli("status", timeout_ms=2000)
        return st.get("leader") if st else None

    def pid(self, node):
        with open(os.path.join(self.dir, node, "pid")) as f:
            return int(f.read())

    def kill(self, node):
        with self.lock:
            self.down.add(node)
        try:
            os.kill(self.pid(node), 9)
        except ProcessLookupError:
            pass

    def restart(self, node):
        pid, deadline = self.pid(node), time.time() + 10
        while time.time() < deadline:       # a killed process can take a moment to go
            try:
                with open(f"/proc/{pid}/status") as f:
                    if any(l.startswith("State:") and "Z" in l.split()[1] for l in f):
                        break
            except OSError:
                break
            time.sleep(0.05)
        self.script("start", node)
        with self.lock:
            self.down.discard(node)


# ---------------------------------------------------------------- the faults

def pick_victim(c, rng, leader, coord_bias=0.5):
    live = [k for k in c.names if k not in c.down]
    if leader in live and rng.random() < coord_bias:
        return leader
    return rng.choice(live)


def fault_plan(rng, c, leader):
    """One fault: (kind, nodes, seconds held)."""
    kind = rng.choices(["kill", "kill-coord", "kill3", "isolate", "block", "loss"],
                       weights=[2, 3, 1, 2, 1, 1])[0]
    held = round(rng.uniform(4, 15), 1)
    if kind == "kill-coord":
        return kind, [leader or "node1"], held
    if kind == "kill":
        others = [k for k in c.names if k != leader]
        return kind, [rng.choice(others)], held
    if kind == "kill3":
        # Never two voters at once: the control plane needs a majority of 3 to
        # come back within the run (losing it is a stall, tested elsewhere).
        voters = [k for k in VOTERS if k in c.names]
        rest = [k for k in c.names if k not in VOTERS]
        victims = rng.sample(rest, 2) + [rng.choice(voters)] if len(rest) >= 2 else rng.sample(c.names, 3)
        return kind, victims, held
    if kind == "isolate":
        return kind, [pick_victim(c, rng, leader)], held
    if kind == "block":
        to = leader or "node1"
        frm = rng.choice([k for k in c.names if k != to])
        return kind, [frm, to], held
    return kind, [], round(rng.uniform(10, 30), 1)


def apply_fault(c, kind, nodes):
    if kind in ("kill", "kill-coord", "kill3"):
        for k in nodes:
            c.kill(k)
    elif kind == "isolate":
        with c.lock:
            c.cut.add(nodes[0])
        c.script("isolate", nodes[0])
    elif kind == "block":
        c.script("block", nodes[0], nodes[1])
    elif kind == "loss":
        c.script("loss", "10")


def heal_fault(c, kind, nodes):
    if kind in ("kill", "kill-coord", "kill3"):
        for k in nodes:
            c.restart(k)
    elif kind in ("isolate", "block"):
        c.script("heal-all")
        with c.lock:
            c.cut.clear()
    elif kind == "loss":
        c.script("loss", "0")


# ------------------------------------------------------------ the SDFS writer

class Writer(threading.Thread):
    """Stores a new file every ~0.5 s through a reachable node; remembers the
    SHA-256 of every file whose put the cluster acknowledged."""

    def __init__(self, c, seed, tmp):
        super().__init__(daemon=True)
        self.c, self.rng, self.tmp = c, random.Random(seed * 7919 + 1), tmp
        self.acked, self.failed, self.stop = {}, 0, threading.Event()

    def put(self, name, size):
        data = self.rng.randbytes(size)
        path = os.path.join(self.tmp, "w.bin")
        with open(path, "wb") as f:
            f.write(data)
        nodes = self.c.reachable()
        if not nodes:
            return False
        if self.c.cli(self.rng.choice(nodes), "put", path, name, timeout_ms=8000) is None:
            return False
        self.acked[name] = hashlib.sha256(data).hexdigest()
        return True

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            size = self.rng.choice([1, 1000, 50_000, 300_000, 2_000_000])
            if not self.put(f"chaos/w{i:05d}.bin", size):
                self.failed += 1
            self.stop.wait(0.5)


# --------------------------------------------------------------- the checks

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_files(c, expected, tmp, rng):
    """Every acknowledged file reads back whole: {verified, missing, mismatched}."""
    out = {"verified": 0, "missing": [], "mismatched": []}
    dst = os.path.join(tmp, "get.bin")
    for name, digest in sorted(expected.items()):
        if os.path.exists(dst):
            os.unlink(dst)
        if c.any_cli("get", name, dst, rng=rng, timeout_ms=20000) is None or not os.path.exists(dst):
            out["missing"].append(name)
        elif sha256_file(dst) != digest:
            out["mismatched"].append(name)
        else:
            out["verified"] += 1
    return out


def wait_jobs_done(c, models, limit_s):
    deadline = time.time() + limit_s
    last = None
    while time.time() < deadline:
        js = c.any_cli("jobs")
        if js:
            by_model = {j["model"]: j for j in js["jobs"] if j["model"] in models}
            last = by_model
            if len(by_model) == len(models) and all(
                    j["images_done"] >= j["images"] and j["pending_results"] == 0 for j in by_model.values()):
                return by_model
        time.sleep(1)
    return last


def check_results(c, model, names, job, tmp):
    """Each image of the data set has `rounds` results: {results, lost, duplicated, errors}."""
    rounds = job["images"] // len(names) if names else 0
    path = os.path.join(tmp, f"{model}.jsonl")
    if c.any_cli("results", model, path, timeout_ms=30000, raw=True) is None:
        return {"rounds": rounds, "read": False}
    rows = [json.loads(l) for l in open(path) if l.strip()]
    count = Counter(r["image"] for r in rows)
    lost = sum(max(0, rounds - count.get(n, 0)) for n in names)
    dup = sum(max(0, count.get(n, 0) - rounds) for n in names)
    strangers = sorted(set(count) - set(names))
    errors = [r for r in rows if "error" in r]
    return {"rounds": rounds, "images_queued": job["images"], "results": len(rows),
            "lost": lost, "duplicated": dup, "unknown_images": strangers[:5],
            "errors": len(errors), "first_errors": [r["error"] for r in errors[:3]],
            "job_duplicates_dropped": job.get("duplicates", 0), "read": True}


def check_coordinator(c, limit_s=20):
    """All nodes name one coordinator in one term; nodes at the same applied
    index hold the same state digest."""
    deadline, seen = time.time() + limit_s, {}
    while time.time() < deadline:
        seen = {k: c.cli(k, "status", timeout_ms=2000) for k in c.names}
        views = {(s.get("leader"), s.get("term")) for s in seen.values() if s}
        if all(seen.values()) and len(views) == 1 and None not in next(iter(views)):
            by_index = {}
            for s in seen.values():
                a = s.get("answered_by", {})
                by_index.setdefault(a.get("applied_index"), set()).add(a.get("digest"))
            split = [i for i, d in by_index.items() if len(d) > 1]
            leader, term = next(iter(views))
            return {"agreed": not split, "leader": leader, "term": term,
                    "state_digests_differ_at": split}
        time.sleep(0.5)
    return {"agreed": False, "views": {k: (s.get("leader"), s.get("term")) if s else None
                                       for k, s in seen.items()}}


# ------------------------------------------------------------------ the run

def setup_jobs(c, models, sizes, tmp):
    """Stores the data sets and models, launches the jobs. Returns
    {model: (dataset names, {name: sha256})}."""
    sets, files = {}, {}
    for model, n in zip(models, sizes):
        d = os.path.join(tmp, f"set-{model}")
        subprocess.run([os.path.join(ROOT, "scripts", "make-data.sh"), "--synthetic", str(n), d],
                       check=True, capture_output=True)
        names = sorted(os.listdir(d))
        if c.cli("node1", "put-dir", d, f"{model}-set", timeout_ms=120000, raw=True) is None:
            raise RuntimeError(f"put-dir of the {model} data set failed: {c.last_error}")
        sets[model] = [f"{model}-set/{x}" for x in names]
        for x in names:
            files[f"{model}-set/{x}"] = sha256_file(os.path.join(d, x))
        mfile = os.path.join(ROOT, "models", f"{MODEL_FILES.get(model, model)}.onnx")
        if c.cli("node1", "train", model, "--file", mfile, timeout_ms=120000, raw=True) is None:
            raise RuntimeError(f"train {model} failed: {c.last_error}")
        if c.cli("node1", "launch", model, "1", raw=True) is None:
            raise RuntimeError(f"launch {model} failed: {c.last_error}")
    return sets, files


def queue_rounds(c, models, sets, seconds, warmup_s):
    """Queues each data set once, measures the rate for warmup_s, then queues
    enough further rounds that the work outlasts the faults. Everything is
    queued before the first fault, so how often each image must appear is
    known exactly."""
    for m in models:
        if c.cli("node1", "inference", m, f"{m}-set", raw=True) is None:
            raise RuntimeError(f"inference {m} failed: {c.last_error}")
    def done():
        js = c.cli("node1", "jobs") or {"jobs": []}
        return {j["model"]: j["images_done"] for j in js["jobs"]}

    # Workers load the models first: the rate counts from every job's first result.
    deadline = time.time() + 300
    while not all(done().get(m, 0) > 0 for m in models):
        if time.time() > deadline:
            raise RuntimeError("no results 300 s after the jobs were queued")
        time.sleep(0.5)
    t0, start = time.time(), done()
    time.sleep(warmup_s)
    now = done()
    for m in models:
        rate = (now[m] - start[m]) / (time.time() - t0)
        extra = min(50, int(rate * seconds * 1.1 / len(sets[m])))
        for _ in range(extra):
            if c.cli("node1", "inference", m, f"{m}-set", raw=True) is None:
                raise RuntimeError(f"inference {m} failed: {c.last_error}")
        log(f"{m}: {rate:.1f} images/s in the warm-up, {1 + extra} rounds queued")


def run(args):
    rng = random.Random(args.seed)
    models = list(MODEL_FILES)
    sizes = [int(x) for x in args.images.split(",")]
    tmp = tempfile.mkdtemp(prefix="idunno-chaos.")
    c = Cluster(args.nodes, os.path.join(tmp, "run"))
    report = {"seed": args.seed, "seconds": args.seconds, "nodes": args.nodes, "models": models}
    writer = None
    try:
        c.up()
        sets, before = setup_jobs(c, models, sizes, tmp)
        st = c.cli("node1", "status")
        report["term_before"] = st and st.get("term")
        queue_rounds(c, models, sets, args.seconds, args.warmup)
        writer = Writer(c, args.seed, tmp)
        writer.start()
        faults, t0 = [], time.time()
        while time.time() - t0 < args.seconds:
            kind, nodes, held = fault_plan(rng, c, c.leader())
            at = round(time.time() - t0, 1)
            log(f"t={at}s {kind} {' '.join(nodes)} for {held}s")
            apply_fault(c, kind, nodes)
            time.sleep(held)
            heal_fault(c, kind, nodes)
            faults.append({"at_s": at, "kind": kind, "nodes": nodes, "held_s": held})
            time.sleep(rng.uniform(2, 6))
        writer.stop.set()
        writer.join()
        report["faults"] = faults
        c.script("heal-all")
        for k in sorted(c.down):
            c.restart(k)
        c.script("wait", "60", check=False)
        log("faults over; waiting for the jobs to finish")
        jobs = wait_jobs_done(c, models, args.drain)
        report["jobs"] = {}
        for m in models:
            j = (jobs or {}).get(m)
            if not j:
                report["jobs"][m] = {"read": False}
                continue
            res = check_results(c, m, sets[m], j, tmp)
            res["finished"] = j["images_done"] >= j["images"] and j["pending_results"] == 0
            report["jobs"][m] = res
        log("checking files")
        expected = dict(before)
        expected.update(writer.acked)
        files = check_files(c, expected, tmp, rng)
        files.update({"before_run": len(before), "acked_during_run": len(writer.acked),
                      "puts_not_acked": writer.failed})
        report["files"] = files
        report["coordinator"] = check_coordinator(c)
        report["term_after"] = report["coordinator"].get("term")
    except Exception as e:  # the report says what broke; the exit status fails the run
        report["error"] = f"{type(e).__name__}: {e}"
    finally:
        if writer:
            writer.stop.set()
        c.script("down", check=False)
        if not args.keep:
            subprocess.run(["rm", "-rf", tmp])
        else:
            report["run_dir"] = tmp
    jobs_ok = bool(report.get("jobs")) and all(
        j.get("read") and j.get("finished") and j["lost"] == 0 and j["duplicated"] == 0 and
        j["errors"] == 0 and not j["unknown_images"] for j in report["jobs"].values())
    f = report.get("files", {})
    files_ok = bool(f) and not f["missing"] and not f["mismatched"]
    report["ok"] = "error" not in report and jobs_ok and files_ok and \
        report.get("coordinator", {}).get("agreed", False)
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=300, help="how long faults strike (default 300)")
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--models", default="resnet50,inception_v3",
                    help="the two jobs' models: NAME or NAME:FILE (models/FILE.onnx)")
    ap.add_argument("--images", default="1200,600", help="images per model's data set")
    ap.add_argument("--warmup", type=float, default=15, help="seconds to measure the rate before faults")
    ap.add_argument("--drain", type=float, default=900, help="seconds the jobs may take after the faults")
    ap.add_argument("--out", help="also write the JSON report here")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("chaos.py needs root (network namespaces)")
    if not os.environ.get("IDUNNO_IN_UNSHARE"):
        # A private network, mount and pid namespace; bash as its first process
        # reaps the daemons the faults kill, and its end kills every daemon.
        env = dict(os.environ, IDUNNO_IN_UNSHARE="1")
        cmd = ["unshare", "-m", "-n", "-p", "-f", "--kill-child", "--mount-proc",
               "bash", "-c", 'python3 "$0" "$@"', os.path.abspath(__file__), *sys.argv[1:]]
        sys.exit(subprocess.run(cmd, env=env).returncode)
    for m in args.models.split(","):
        name, _, file = m.partition(":")
        MODEL_FILES[name] = file or name
        if not os.path.exists(os.path.join(ROOT, "models", f"{MODEL_FILES[name]}.onnx")):
            sys.exit(f"chaos.py: no models/{MODEL_FILES[name]}.onnx (make models)")
    report = run(args)
    text = json.dumps(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
