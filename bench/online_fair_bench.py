#!/usr/bin/env python3
"""An online job beside a batch job (docs/scheduler.md, "Online jobs"): does
the fair-time scheduler give online requests their share of a saturated
cluster, and what does the load do to their latency?

  bench/online_fair_bench.py [--model resnet50] [--nodes 5] [--clients 8]
                             [--seconds 30] [--weight 1] [--online-batch 8]
                             [--base-port 26900]

On one local cluster: the model is registered twice, as MODEL (a batch job,
batch 1, over a data set queued many times over, so it never runs dry) and
as MODEL_online (an online job of --weight, batch --online-batch). First the
online job alone: --clients closed-loop clients send binary /v2 infer
requests of one image for --seconds (the unloaded latency). Then the batch
job is started, and once it runs on every worker the same clients run again
for --seconds while `jobs` is read every second: each job's query rate over
the last 10 s, from the coordinator. Prints one JSON document: both phases'
latencies (p50/p90/p99), the online and batch rates (the mean of the 10 s
rates sampled after the first 10 s of the loaded phase, and the queries each
job did over that window), their ratio, p99 loaded over p99 unloaded, and
failures.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster, ROOT, wait  # noqa: E402
from oip_bench import start_clients, pct, log, MODELS  # noqa: E402


def job(c, model):
    js = c.cli("node1", "jobs") or {}
    return next((j for j in js.get("jobs", []) if j["model"] == model), None)


def summary(results, seconds):
    """The clients' figures: bench/oip_load.c's (a dict, as it printed them)
    or the Python clients' (one (latencies, failures, error) each)."""
    if isinstance(results, dict):
        return {k: results[k] for k in ("requests", "requests_per_s", "failures", "first_error",
                                        "latency_ms")}
    lat = [x for r in results for x in r[0]]
    return {"requests": len(lat), "requests_per_s": round(len(lat) / seconds, 2),
            "failures": sum(r[1] for r in results),
            "first_error": next((r[2] for r in results if r[2]), None),
            "latency_ms": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
                           "mean": round(statistics.mean(lat), 1) if lat else None}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--weight", type=float, default=1)
    ap.add_argument("--online-batch", type=int, default=8)
    ap.add_argument("--dataset", type=int, default=64, help="images in the batch job's data set")
    ap.add_argument("--base-port", type=int, default=26900)
    args = ap.parse_args()
    online = args.model + "_online"

    c = Cluster(args.nodes, args.base_port)
    img_dir = tempfile.mkdtemp(prefix="idunno-fair-images.")
    subprocess.run([os.path.join(ROOT, "scripts", "make-data.sh"), "--synthetic",
                    str(args.dataset), img_dir], check=True, capture_output=True)
    paths = sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir))
    images = [open(p, "rb").read() for p in paths[:16]]
    c.up()
    try:
        onnx = os.path.join(MODELS, args.model + ".onnx")
        for name in (args.model, online):
            c.cli("node1", "train", name, "--file", onnx, timeout_ms=120000, check=True)
        c.cli("node1", "put-dir", img_dir, "fairset", timeout_ms=120000, check=True)
        c.cli("node1", "launch", online, str(args.online_batch), "--online", "--weight",
              str(args.weight), check=True)
        token = subprocess.run([os.path.join(ROOT, "bin", "idunno"), "token"], check=True,
                               capture_output=True, text=True).stdout.strip()
        targets = []
        for k in range(1, args.nodes + 1):
            h, p = c.addrs["node%d" % k].rsplit(":", 1)
            targets.append("%s:%d" % (h, int(p) + 2))

        log("online job alone: %d clients for %g s" % (args.clients, args.seconds))
        pool, res, _, _ = start_clients(targets, online, token, images, args.clients,
                                      args.seconds, 15)
        alone = summary(res.get(), args.seconds)
        if pool:
            pool.close()
        log(json.dumps(alone))

        log("batch job %s started" % args.model)
        c.cli("node1", "launch", args.model, "1", "--weight", str(args.weight), check=True)
        # queued over and over: it must not run dry before the end
        need = int(40 * (args.seconds + 40) / args.dataset) + 1
        for _ in range(need):
            c.cli("node1", "inference", args.model, "fairset", timeout_ms=30000, check=True)
        if not wait(lambda: (job(c, args.model) or {}).get("workers_loaded", 0) >= args.nodes, 120,
                    step=0.5):
            log("the batch job's model is not loaded on every worker")

        log("online job beside the batch job: %d clients for %g s" % (args.clients, args.seconds))
        pool, res, t0, t1 = start_clients(targets, online, token, images, args.clients,
                                        args.seconds, 15)
        samples, marks = [], {}
        while not res.ready():
            now = time.time()
            jo, jb = job(c, online), job(c, args.model)
            if jo and jb and now >= t0 + 10 and now <= t1:
                samples.append((jo["rate"], jb["rate"]))
                marks.setdefault("first", (now, jo["queries_done"], jb["queries_done"]))
                marks["last"] = (now, jo["queries_done"], jb["queries_done"])
            time.sleep(1)
        loaded = summary(res.get(), args.seconds)
        if pool:
            pool.close()
        batch_left = job(c, args.model)
        elections = sum(len(c.log_lines("node%d" % k, "won the election"))
                        for k in range(1, args.nodes + 1))
    finally:
        c.down()
        shutil.rmtree(img_dir, ignore_errors=True)

    out = {"model": args.model, "nodes": args.nodes, "clients": args.clients,
           "seconds": args.seconds, "weight": args.weight, "online_batch": args.online_batch,
           "alone": alone, "beside_batch": loaded, "elections": elections,
           "batch_images_left": batch_left["images"] - batch_left["images_done"]
           if batch_left else None}
    if samples:
        ro = statistics.mean(s[0] for s in samples)
        rb = statistics.mean(s[1] for s in samples)
        out["rate_10s"] = {"online": round(ro, 2), "batch": round(rb, 2),
                           "online_over_batch": round(ro / rb, 3) if rb else None,
                           "samples": len(samples)}
        (ta, oa, ba), (tb, ob, bb) = marks["first"], marks["last"]
        if tb > ta:
            out["window"] = {"seconds": round(tb - ta, 1),
                             "online_per_s": round((ob - oa) / (tb - ta), 2),
                             "batch_per_s": round((bb - ba) / (tb - ta), 2),
                             "online_over_batch": round((ob - oa) / (bb - ba), 3)
                             if bb > ba else None}
    if alone["latency_ms"]["p99"] and loaded["latency_ms"]["p99"]:
        out["p99_loaded_over_alone"] = round(loaded["latency_ms"]["p99"] /
                                             alone["latency_ms"]["p99"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
