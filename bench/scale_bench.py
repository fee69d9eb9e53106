#!/usr/bin/env python3
"""Data sets at scale: a local cluster storing and processing N generated images.

For each size N (--images, e.g. 10000,30000,100000) a fresh cluster of --nodes
nodes (voters node1..node3):

  1. trains the tiny model, then kills voter node3, which will come back far
     behind;
  2. stores N small images with put-dir (the batched path): files/s;
  3. times `ls --prefix`, `store` and `jobs` (median of 5 each);
  4. restarts node3 and times its catch-up: restart -> its applied index
     reaches the leader's commit index (a snapshot install when the log it
     missed was compacted);
  5. runs the tiny model over all N images (batch 8) and kills the coordinator
     when half are done: takeover = kill -> the new coordinator's first
     dispatch, with the job's pending state; then waits for the job to finish;
  6. fetches the results and checks that every image has exactly one;
  7. reports every node's resident memory (daemon and its model process) and
     the control-plane snapshot: size on disk, the time to take one (log) and
     to install one on node3 (log, when it was sent one). --snapshot-every N
     makes the nodes snapshot every N entries instead of their default 1024.

Images are made once for the largest N (scripts/make-data.sh --synthetic, at
most 48 px) and hard-linked for the smaller ones. Prints one JSON document.

Usage: bench/scale_bench.py [--images 10000,30000,100000] [--nodes 5]
       [--base-port 27500] [--snapshot-every N] [--keep-images DIR]
"""
import argparse, glob, json, os, re, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster, ROOT, wait  # noqa: E402

MODEL = os.path.join(ROOT, "models", "tiny_cnn.onnx")


def log(*a):
    print("scale_bench:", *a, file=sys.stderr, flush=True)


def now_ms():
    return time.monotonic() * 1000


def timed(fn):
    t = now_ms()
    out = fn()
    return now_ms() - t, out


def make_images(root, n):
    """A directory of the first n images of the master set, as hard links."""
    master = os.path.join(root, "master")
    have = len(os.listdir(master)) if os.path.isdir(master) else 0
    if have < n:
        log(f"generating {n} images in {master}")
        subprocess.run([os.path.join(ROOT, "scripts", "make-data.sh"), "--synthetic", str(n),
                        master, "--max-side", "48"], check=True, capture_output=True)
    d = os.path.join(root, f"set{n}")
    if not os.path.isdir(d) or len(os.listdir(d)) != n:
        subprocess.run(["rm", "-rf", d], check=True)
        os.makedirs(d)
        for name in sorted(os.listdir(master))[:n]:
            os.link(os.path.join(master, name), os.path.join(d, name))
    return d


def rss_mb(pid):
    """Resident memory of a process and its children (the model process), MB."""
    def one(p):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return round(one(pid) + sum(one(k) for k in kids), 1)


def median_ms(fn, n=5):
    return round(statistics.median(timed(fn)[0] for _ in range(n)), 1)


def jobs_of(c, via):
    d = c.cli(via, "jobs", timeout_ms=5000)
    return {j["model"]: j for j in d["jobs"]} if d else {}


def snapshot_bytes(c, node):
    files = [f for f in glob.glob(os.path.join(c.dir, node, "raft", "snapshot-*"))
             if not f.endswith(".meta")]
    return max((os.path.getsize(f) for f in files), default=0)


def one_size(args, n, images_root, port):
    c = Cluster(args.nodes, port, prefix="idunno-scale.")
    out = {"images": n, "nodes": args.nodes}
    gw = f"node{args.nodes}"
    try:
        c.up()
        d = make_images(images_root, n)
        c.cli(gw, "train", "tiny_cnn", "--file", MODEL, timeout_ms=120000, check=True)
        leader = c.wait_leader(gw)
        behind = next(v for v in ("node3", "node2", "node1") if v != leader)
        c.kill(behind)
        log(f"{n}: {behind} killed; storing")

        ms, _ = timed(lambda: c.cli(gw, "put-dir", d, "set", timeout_ms=3600000, check=True))
        out["put_dir_s"] = round(ms / 1000, 2)
        out["put_dir_files_per_s"] = round(n / (ms / 1000))
        log(f"{n}: put-dir {out['put_dir_s']} s ({out['put_dir_files_per_s']} files/s)")

        out["ls_prefix_ms"] = median_ms(lambda: c.cli(gw, "ls", "--prefix", "set/",
                                                       timeout_ms=60000, check=True))
        out["store_ms"] = median_ms(lambda: c.cli(gw, "store", timeout_ms=60000, check=True))
        out["jobs_ms"] = median_ms(lambda: c.cli(gw, "jobs", timeout_ms=60000, check=True))

        st = c.cli(gw, "status", check=True)
        target = st["commit_index"]
        t0 = now_ms()
        c.start(behind)
        caught = wait(lambda: (s := c.cli(behind, "status", timeout_ms=500)) and
                      s["answered_by"]["applied_index"] >= target, 60)
        out["voter_catchup_ms"] = round(now_ms() - t0) if caught else None
        out["commit_index"] = target
        restored = c.log_lines(behind, r"restored a snapshot of (\d+) bytes .* in ([\d.]+) ms")
        if restored:
            m = re.search(r"restored a snapshot of (\d+) bytes .* in ([\d.]+) ms", restored[-1][1])
            out["snapshot_install"] = {"bytes": int(m.group(1)), "ms": float(m.group(2))}
        log(f"{n}: {behind} caught up in {out['voter_catchup_ms']} ms")

        # The job, with a coordinator kill half-way.
        c.cli(gw, "launch", "tiny_cnn", "8", check=True)
        t_job = now_ms()
        c.cli(gw, "inference", "tiny_cnn", "set", timeout_ms=600000, check=True)
        half = wait(lambda: jobs_of(c, gw).get("tiny_cnn", {}).get("images_done", 0) >= n // 2,
                    3600, step=0.2)
        takeover = None
        if half:
            old = c.wait_leader(gw)
            pending = jobs_of(c, gw)["tiny_cnn"]
            mark = time.time()
            c.kill(old)
            new = c.wait_leader(gw, other_than=old)
            lines = wait(lambda: [t for t, _ in c.log_lines(new, r"coord: dispatching:")
                                  if t >= mark], 30)
            takeover = {"ms": round((lines[0] - mark) * 1000) if lines else None,
                        "killed": old, "new": new,
                        "images_pending": pending["images"] - pending["images_done"]}
            if lines:
                # The new coordinator's control-plane and coordinator lines
                # from the kill to its first dispatch: where the time went.
                takeover["log"] = [f"+{round((t - mark) * 1000)} ms {l[24:]}"
                                   for t, l in c.log_lines(new, r" (ctl|coord): ")
                                   if mark <= t <= lines[0]]
            c.start(old)
        out["coordinator_takeover"] = takeover
        done = wait(lambda: (j := jobs_of(c, gw).get("tiny_cnn")) and
                    j["images_done"] >= j["images"], 3600, step=0.2)
        out["job_s"] = round((now_ms() - t_job) / 1000, 2) if done else None
        log(f"{n}: job {out['job_s']} s, takeover {takeover}")

        wait(lambda: (r := c.cli(gw, "results", "tiny_cnn", timeout_ms=60000)) and
             r.get("pending_results") == 0, 120, step=0.5)
        res = os.path.join(c.dir, "results.jsonl")
        ms, _ = timed(lambda: c.cli(gw, "results", "tiny_cnn", res, timeout_ms=600000, check=True))
        out["results_ms"] = round(ms)
        per_image = {}
        with open(res) as f:
            for line in f:
                r = json.loads(line)
                per_image[r["image"]] = per_image.get(r["image"], 0) + 1
        out["results_images"] = len(per_image)
        out["results_not_once"] = sum(1 for v in per_image.values() if v != 1)

        out["ls_prefix_ms_after_job"] = median_ms(lambda: c.cli(gw, "ls", "--prefix", "set/",
                                                                timeout_ms=60000, check=True))
        out["jobs_ms_after_job"] = median_ms(lambda: c.cli(gw, "jobs", timeout_ms=60000,
                                                           check=True))
        out["rss_mb"] = {f"node{k}": rss_mb(c.pid(f"node{k}")) for k in range(1, args.nodes + 1)}
        leader = c.wait_leader(gw)
        out["snapshot_bytes_on_disk"] = snapshot_bytes(c, leader)
        taken = [l for _, l in c.log_lines(leader, r"snapshot of \d+ bytes after")]
        if taken:
            m = re.search(r"snapshot of (\d+) bytes after (\d+) commands took ([\d.]+) ms", taken[-1])
            out["snapshot_take"] = {"bytes": int(m.group(1)), "ms": float(m.group(3))}
        return out
    finally:
        c.down()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="10000,30000,100000",
                    help="comma-separated data set sizes (default 10000,30000,100000)")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--base-port", type=int, default=27500)
    ap.add_argument("--snapshot-every", type=int, default=0,
                    help="control-plane entries between snapshots (idunnod --snapshot-every; "
                         "default: the node's, 1024; a smaller value makes the far-behind "
                         "voter catch up through a snapshot install)")
    ap.add_argument("--keep-images", default="",
                    help="where the generated images live between runs (default: a temporary "
                         "directory, removed at the end)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.images.split(",")]
    if args.snapshot_every:
        os.environ["IDUNNOD_ARGS"] = (os.environ.get("IDUNNOD_ARGS", "") +
                                      f" --snapshot-every {args.snapshot_every}").strip()
    images_root = args.keep_images or os.path.join("/tmp", f"idunno-scale-images.{os.getpid()}")
    os.makedirs(images_root, exist_ok=True)
    results = []
    try:
        for i, n in enumerate(sizes):
            results.append(one_size(args, n, images_root, args.base_port + 100 * i))
    finally:
        if not args.keep_images:
            subprocess.run(["rm", "-rf", images_root])
    print(json.dumps({"scale": results}, indent=1))


if __name__ == "__main__":
    main()
