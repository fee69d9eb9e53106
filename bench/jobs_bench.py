#!/usr/bin/env python3
"""IDunno job benchmarks on a local 10-node cluster (real daemons, real ONNX
Runtime, the generated ResNet50 and InceptionV3, synthetic JPEG/PNG images).

  fair      Jobs run together for --seconds; every second each job's completed
            queries are sampled, and the query rate of every 10 s window
            (sliding by 1 s) after the first 10 s is compared: gap =
            (max - min) / max of the jobs' rates (of rate/weight with weights).
            Three runs: resnet50 + inception_v3; those two + tiny_cnn; and
            resnet50 with weight 2 against inception_v3 with weight 1.
  newjob    While a ResNet50 job keeps every worker busy, a tiny job is given
            images: the coordinator's time from queueing them to dispatching
            the first query (first_dispatch_ms), --trials times.
  worker    Worker kill -9 with 1, 20 and 100 jobs running (tiny model, one
            model name per job): from the coordinator declaring the worker
            failed to each of its queries being dispatched again (log).
  coord     Coordinator kill -9 with 1, 20 and 100 jobs: kill -> the new
            coordinator dispatching (its "dispatching" log line).
  capacity  Tiny model, batch 1, all workers, photos scaled to at most 48 px:
            completed queries per second; the median of --capacity-runs
            measurements of --capacity-seconds, each a fresh job; and the CPU
            time (all nodes and their inference processes) per query.
  throughput  ResNet50 alone, batch 8, every worker: images per second of the
            whole cluster over --seconds, against bare ONNX Runtime on the same
            two cores (build/bin/infer_bench model, 2 threads, batch 8, run
            with the cluster down, before and after it: the ratio is to the
            mean of the two).
  coldstart The demo's two generated models trained on a fresh cluster, both
            jobs launched right after the last train: each job's time from
            launch to its first result, and until every worker has its model
            loaded; --cold-trials fresh clusters.

Prints one JSON document. Usage:
bench/jobs_bench.py [fair|newjob|worker|coord|capacity|throughput|coldstart|all]
[--nodes 10] [--seconds 60] [--trials 10] [--base-port 7700]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import ROOT, VOTERS, Cluster, wait  # noqa: E402

MODELS = os.path.join(ROOT, "models")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def setup(c, images, models, max_side=0):
    d = os.path.join(c.dir, "images")
    subprocess.run([os.path.join(ROOT, "scripts", "make-data.sh"), "--synthetic", str(images), d,
                    "--max-side", str(max_side)], check=True, capture_output=True)
    c.cli("node10", "put-dir", d, "set", timeout_ms=600000, check=True)
    for m in models:
        c.cli("node10", "train", m, "--file", os.path.join(MODELS, f"{m}.onnx"),
              timeout_ms=120000, check=True)


def warm(c, models, timeout=180):
    """Loads each model on every worker before a measurement: models load
    where jobs need them (docs/scheduler.md, "Cold start"), so a job per
    model goes over the set until `jobs` says every worker has its model,
    and is stopped. Later jobs of the same model version find it loaded."""
    for m in models:
        c.cli("node10", "stop", m)
        c.cli("node10", "launch", m, "1", check=True)

    def all_loaded():
        st = jobs_state(c)
        for m in models:
            j = st.get(m, {})
            if j.get("workers_loaded", 0) >= len(c.addrs):
                continue
            if j.get("images_done", 0) >= j.get("images", 0):
                c.cli("node10", "inference", m, "set")
            return False
        return True
    if not wait(all_loaded, timeout, 0.5):
        log("warning: not every worker loaded every model")
    for m in models:
        c.cli("node10", "stop", m)


def jobs_state(c, via="node10"):
    d = c.cli(via, "jobs", timeout_ms=5000)
    return {j["model"]: j for j in d["jobs"]} if d else {}


def start_jobs(c, specs, repeat):
    for model, batch, weight in specs:
        c.cli("node10", "stop", model)
        c.cli("node10", "launch", model, str(batch), "--weight", str(weight), check=True)
    for _ in range(repeat):
        for model, _, _ in specs:
            c.cli("node10", "inference", model, "set", check=True)


def fairness_run(c, specs, seconds, repeat):
    start_jobs(c, specs, repeat)
    weights = {m: w for m, _, w in specs}
    samples = []  # (t, {model: queries_done})
    t0 = time.time()
    while time.time() - t0 < seconds:
        st = jobs_state(c)
        samples.append((time.time() - t0, {m: st[m]["queries_done"] for m in weights if m in st},
                        {m: st[m].get("dispatched", 0) for m in weights if m in st}))
        time.sleep(max(0, 1 - (time.time() - t0) % 1))
    for m in weights:
        c.cli("node10", "stop", m)
    windows = []
    for i, (t, counts, disp) in enumerate(samples):
        if t < 20:  # the first 10 s, then a full 10 s window
            continue
        j = max(k for k in range(i) if samples[k][0] <= t - 10)
        dt = t - samples[j][0]
        rates = {m: (counts[m] - samples[j][1][m]) / dt for m in weights}
        norm = [rates[m] / weights[m] for m in weights]
        gap = (max(norm) - min(norm)) / max(norm) if max(norm) > 0 else 1.0
        dispatched = {m: disp[m] - samples[j][2][m] for m in weights}
        windows.append({"t": round(t, 1), "rates": {m: round(r, 3) for m, r in rates.items()},
                        "dispatched": dispatched, "gap": round(gap, 4)})
    total = {m: samples[-1][1][m] for m in weights}
    return {"jobs": [{"model": m, "batch": b, "weight": w} for m, b, w in specs],
            "seconds": seconds, "queries": total,
            "max_gap": max(w["gap"] for w in windows) if windows else None,
            "median_gap": statistics.median(w["gap"] for w in windows) if windows else None,
            "windows": len(windows), "window_detail": windows}


def bench_fair(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        setup(c, 200, ["resnet50", "inception_v3", "tiny_cnn"])
        warm(c, ["resnet50", "inception_v3"])
        runs = {"two": [("resnet50", 1, 1), ("inception_v3", 1, 1)],
                "three": [("resnet50", 1, 1), ("inception_v3", 1, 1), ("tiny_cnn", 1, 1)],
                "weighted": [("resnet50", 1, 2), ("inception_v3", 1, 1)]}
        only = ["two"] if args.quick else [args.only] if args.only else list(runs)
        out = {}
        for name in only:
            out[name] = fairness_run(c, runs[name], args.seconds, 20)
            log(name, "max gap", out[name]["max_gap"], out[name]["queries"])
        return out
    finally:
        c.down()


def bench_newjob(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        setup(c, 200, ["resnet50", "tiny_cnn"])
        warm(c, ["resnet50", "tiny_cnn"])
        start_jobs(c, [("resnet50", 1, 1)], 20)
        time.sleep(5)
        res = []
        for _ in range(args.trials):
            c.cli("node10", "stop", "tiny_cnn")
            c.cli("node10", "launch", "tiny_cnn", "1", check=True)
            c.cli("node10", "inference", "tiny_cnn", "set", check=True)
            deadline = time.time() + 10
            v = r = st = -1
            while time.time() < deadline and (v < 0 or r < 0):
                tiny = jobs_state(c).get("tiny_cnn", {})
                v, r = tiny.get("first_dispatch_ms", -1), tiny.get("first_result_ms", -1)
                st = tiny.get("first_start_ms", -1)
                time.sleep(0.05)
            busy = jobs_state(c)["resnet50"]["inflight"]
            res.append({"first_dispatch_ms": v, "first_start_ms": st, "first_result_ms": r,
                        "resnet50_inflight": busy})
            log("new job:", res[-1])
            time.sleep(1)
        c.cli("node10", "stop", "resnet50")
        vals = [r["first_dispatch_ms"] for r in res if r["first_dispatch_ms"] >= 0]
        done = [r["first_result_ms"] for r in res if r["first_result_ms"] >= 0]
        started = [r["first_start_ms"] for r in res if r["first_start_ms"] >= 0]
        return {"trials": res, "median_ms": statistics.median(vals), "max_ms": max(vals),
                "first_start_median_ms": statistics.median(started) if started else None,
                "first_start_max_ms": max(started) if started else None,
                "first_result_median_ms": statistics.median(done) if done else None,
                "first_result_max_ms": max(done) if done else None,
                "target": "first query running <= 50 ms after inference"}
    finally:
        c.down()


# Small photos for the many-job runs: enough queued that every job is still
# busy when the kill comes, at the cluster's ~4,000-5,000 tiny queries/s.
MANY_IMAGES = 1000
MANY_QUEUED = 500000


def many_jobs(c, n):
    """n jobs of the tiny model under n names, MANY_QUEUED queries between them."""
    repeat = max(2, -(-MANY_QUEUED // (n * MANY_IMAGES)))
    for k in range(n):
        name = f"tiny{k}"
        if not c.cli("node10", "launch", name, "1"):
            c.cli("node10", "train", name, "--file", os.path.join(MODELS, "tiny_cnn.onnx"),
                  check=True)
            c.cli("node10", "launch", name, "1", check=True)
    for _ in range(repeat):
        for k in range(n):
            c.cli("node10", "inference", f"tiny{k}", "set", check=True)


def stop_jobs(c, n):
    for k in range(n):
        c.cli("node10", "stop", f"tiny{k}")


def busy_jobs(c, n):
    """Jobs with queries queued and running (from `idunno jobs`)."""
    d = c.cli("node10", "jobs", timeout_ms=5000) or {"jobs": []}
    return sum(1 for j in d["jobs"] if j["model"].startswith("tiny") and j["state"] == "running"
               and j.get("queued", 0) + j.get("running", 0) > 0)


def worker_kill_trial(c, victim):
    """Kills victim; returns when the leader has logged it gone and re-run its queries."""
    leader = c.wait_leader("node10")
    mark = time.time()
    c.kill(victim)
    failed, lines = [], []
    deadline = time.time() + 10
    while time.time() < deadline and not (failed and lines):
        time.sleep(0.2)
        failed = [t for t, l in c.log_lines(leader, rf"worker {victim} (failed|is gone|left|unreachable)")
                  if t >= mark]
        lines = [l for t, l in c.log_lines(leader, r"runs again on .* after its worker") if t >= mark]
    time.sleep(1)  # the rest of its queries
    lines = [l for t, l in c.log_lines(leader, r"runs again on .* after its worker") if t >= mark]
    ms = [float(l.split(", ")[-1].split(" ms")[0]) for l in lines]
    return {"requeued": len(ms), "detected_ms": round((failed[0] - mark) * 1000) if failed else None,
            "rerun_ms": ms}


def bench_worker(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        setup(c, MANY_IMAGES, [], max_side=48)
        out = {}
        for n in (1, 20, 100):
            many_jobs(c, n)
            time.sleep(3)
            trials = []
            for t in range(args.coord_trials):
                leader = c.wait_leader("node10")
                victim = [f"node{k}" for k in range(4, 10) if f"node{k}" != leader][t % 5]
                busy = busy_jobs(c, n)
                r = worker_kill_trial(c, victim)
                r.update(victim=victim, jobs_busy=busy)
                trials.append(r)
                c.start(victim)
                time.sleep(3)
            ms = [m for r in trials for m in r["rerun_ms"]]
            out[str(n)] = {"trials": trials, "rerun_max_ms": max(ms) if ms else None,
                           "rerun_median_ms": statistics.median(ms) if ms else None}
            log("worker kill,", n, "jobs:", out[str(n)])
            stop_jobs(c, n)
        return out
    finally:
        c.down()


def bench_coord(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        setup(c, MANY_IMAGES, [], max_side=48)
        out = {}
        for n in (1, 20, 100):
            many_jobs(c, n)
            time.sleep(3)
            trials = []
            for _ in range(args.coord_trials):
                busy = busy_jobs(c, n)
                leader = c.wait_leader("node10")
                mark = time.time()
                c.kill(leader)
                new = c.wait_leader("node10", other_than=leader)
                deadline = time.time() + 10
                lines = []
                while time.time() < deadline and not lines:
                    lines = [t for t, l in c.log_lines(new, r"coord: dispatching:") if t >= mark]
                    time.sleep(0.05)
                trials.append({"ms": round((lines[0] - mark) * 1000, 1) if lines else None,
                               "jobs_busy": busy})
                c.start(leader)
                time.sleep(4)
            ok = [t["ms"] for t in trials if t["ms"] is not None]
            out[str(n)] = {"trials": trials, "median_ms": statistics.median(ok) if ok else None,
                           "max_ms": max(ok) if ok else None}
            log("coordinator kill,", n, "jobs:", out[str(n)])
            stop_jobs(c, n)
        return out
    finally:
        c.down()


def steady_rate(c, model, counter, warmup, seconds):
    """The job's counter per second over `seconds` after `warmup`; stops the job."""
    time.sleep(warmup)
    a = jobs_state(c)[model][counter]
    t = time.time()
    time.sleep(seconds)
    b = jobs_state(c)[model][counter]
    rate = (b - a) / (time.time() - t)
    c.cli("node10", "stop", model)
    return rate


# Images in the capacity bench's data set, and the rate its queue is sized
# for: a queue that runs dry during the measurement would understate the rate.
CAPACITY_IMAGES = 5000
CAPACITY_QUEUE_RATE = 20000


def bench_capacity(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        # Small photos (at most 48 px, for the model's 32x32 input): the
        # figure is the dispatch path's, not JPEG decoding's.
        setup(c, CAPACITY_IMAGES, ["tiny_cnn"], max_side=48)
        warm(c, ["tiny_cnn"])
        # The figure moves by ±15% between runs on a shared 2-core machine:
        # several measurements on one cluster, each a fresh job, and their median.
        rates, cpu_us, drained = [], [], 0
        calls = -(-CAPACITY_QUEUE_RATE * int(args.capacity_seconds + 5) // CAPACITY_IMAGES)
        for _ in range(args.capacity_runs):
            start_jobs(c, [("tiny_cnn", 1, 1)], calls)
            time.sleep(3)
            a = jobs_state(c)["tiny_cnn"]["queries_done"]
            t, cpu = time.time(), c.cpu_seconds()
            time.sleep(args.capacity_seconds)
            st = jobs_state(c)["tiny_cnn"]
            cpu = c.cpu_seconds() - cpu
            rates.append(round((st["queries_done"] - a) / (time.time() - t), 1))
            cpu_us.append(round(cpu * 1e6 / max(1, st["queries_done"] - a), 1))
            if st["images_done"] >= st["images"]:
                drained += 1
                log("warning: the queue ran dry during the measurement: the rate is a lower bound")
            c.cli("node10", "stop", "tiny_cnn")
            log("capacity run:", rates[-1], "queries/s,", cpu_us[-1], "CPU us/query")
        # CPU per query (all nodes and their inference processes) is the
        # figure to compare builds by on a loaded host: the rate follows the
        # share of the cores the cluster gets, the cost per query much less.
        return {"queries_per_s": statistics.median(rates), "runs": rates,
                "cpu_us_per_query": statistics.median(cpu_us), "cpu_us_runs": cpu_us,
                "nodes": args.nodes,
                "images_max_side_px": 48, "runs_drained": drained}
    finally:
        c.down()


def bench_throughput(args):
    subprocess.run(["make", "-C", ROOT, "-s", "bench-bin"], check=True, capture_output=True)

    def bare():
        out = subprocess.run([os.path.join(ROOT, "build", "bin", "infer_bench"), "model",
                              os.path.join(MODELS, "resnet50.onnx"), "2", "8",
                              str(min(args.seconds, 30))],
                             check=True, capture_output=True, text=True)
        ips = json.loads(out.stdout)["images_per_s"]
        log("bare ONNX Runtime, 2 threads, batch 8:", ips, "images/s")
        return ips

    # The host's speed drifts by several percent within minutes: the bare
    # runtime is measured before and after the cluster, and the cluster's rate
    # is compared with the mean of the two.
    bare_before = bare()
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        setup(c, 200, ["resnet50"])
        warm(c, ["resnet50"])
        start_jobs(c, [("resnet50", 8, 1)], 30)
        ips = steady_rate(c, "resnet50", "images_done", 10, args.seconds)
    finally:
        c.down()
    bare_after = bare()
    bare_ips = (bare_before + bare_after) / 2
    return {"cluster_images_per_s": round(ips, 2), "bare_images_per_s": round(bare_ips, 2),
            "bare_before": round(bare_before, 2), "bare_after": round(bare_after, 2),
            "ratio": round(ips / bare_ips, 3), "nodes": args.nodes, "seconds": args.seconds}

COLD_MODELS = ["resnet50", "inception_v3"]
COLD_REPEAT = 5  # the set queued this often per job: work for every worker to load the model


def bench_coldstart(args):
    """Each trial on a fresh cluster: the demo's two generated models are
    trained, and right after the last `train` both jobs are launched and given
    the set. Per job: from `launch` to its first result (the coordinator's
    first_result_ms, from the images' queueing, plus the launch-to-queue time
    the bench measures; `jobs` is polled only every 250 ms, so the polling
    costs the cores little), and until every worker has logged loading its
    model."""
    trials = []
    for trial in range(args.cold_trials):
        c = Cluster(args.nodes, args.base_port)
        c.up()
        try:
            setup(c, 200, COLD_MODELS)
            t0, launch_to_queue = time.time(), {}
            for m in COLD_MODELS:
                t = time.time()
                c.cli("node10", "launch", m, "1", check=True)
                c.cli("node10", "inference", m, "set", check=True)
                launch_to_queue[m] = (time.time() - t) * 1000
            for _ in range(COLD_REPEAT - 1):
                for m in COLD_MODELS:
                    c.cli("node10", "inference", m, "set", check=True)
            first, warm = {}, {}

            def progress():
                st = jobs_state(c)
                for m in COLD_MODELS:
                    j = st.get(m, {})
                    if m not in first and j.get("first_result_ms", -1) >= 0:
                        first[m] = round(launch_to_queue[m] + j["first_result_ms"])
                    # Every worker logs the load (the same before and after
                    # loading followed demand, so both are timed alike).
                    if m not in warm and all(c.log_lines(n, rf"worker: model {m} loaded")
                                             for n in c.addrs):
                        warm[m] = round(time.time() - t0, 1)
                return len(first) == len(warm) == len(COLD_MODELS)
            wait(progress, 180, 0.25)
            trials.append({"first_result_ms": first, "all_workers_loaded_s": warm})
            log("cold start:", trials[-1])
            for m in COLD_MODELS:
                c.cli("node10", "stop", m)
        finally:
            c.down()
    worst = [max(t["first_result_ms"].values()) for t in trials
             if len(t["first_result_ms"]) == len(COLD_MODELS)]
    return {"nodes": args.nodes, "models": COLD_MODELS, "trials": trials,
            "slowest_job_first_result_ms_median": statistics.median(worst) if worst else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all",
                    choices=["fair", "newjob", "worker", "coord", "capacity", "throughput", "coldstart",
                             "all"])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--capacity-seconds", type=float, default=10)
    ap.add_argument("--capacity-runs", type=int, default=3)
    ap.add_argument("--coord-trials", type=int, default=3)
    ap.add_argument("--cold-trials", type=int, default=3)
    ap.add_argument("--base-port", type=int, default=7700)
    ap.add_argument("--quick", action="store_true", help="fair: only the two-job run")
    ap.add_argument("--only", choices=["two", "three", "weighted"], help="fair: only this run")
    args = ap.parse_args()
    out = {}
    for what, fn in (("fair", bench_fair), ("newjob", bench_newjob), ("worker", bench_worker),
                     ("coord", bench_coord), ("capacity", bench_capacity),
                     ("throughput", bench_throughput), ("coldstart", bench_coldstart)):
        if args.what in (what, "all"):
            out[what] = fn(args)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
