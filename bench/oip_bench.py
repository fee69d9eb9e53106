#!/usr/bin/env python3
"""Online inference through the Open Inference Protocol (docs/http.md,
"Online inference"): a closed-loop load generator against a running local
cluster, and a bare ONNX Runtime loop over the same model and images on the
same cores for comparison.

  bench/oip_bench.py [--model resnet50] [--nodes 5] [--clients 8] [--seconds 20]
                     [--images 16] [--via all|one] [--online-job BATCH]
                     [--max-queue-delay US] [--kill-worker S] [--tensor] [--json]
                     [--python-clients] [--base-port 26700]

Each client is one keep-alive HTTP connection to a node (all nodes in turn,
or node1 only with --via one) sending binary infer requests of one image
(the binary tensor data extension) in a closed loop, each answer checked, for
--seconds after a warm-up that loads the model on every worker. Prints one
JSON document: requests/s, latency p50/p90/p99 (ms), failures, and the bare
runtime's images/s (bench/infer_bench.c `e2e`: the same JPEGs decoded and run
with 2 threads, batch 1), measured before and after the cluster.

The clients are bench/oip_load.c, one C process with all the connections
(it takes a few percent of a core where Python clients took a quarter of the
machine); --python-clients runs them as Python processes instead, as the
bench did before.
--json sends each request as JSON (the image base64 in a BYTES input, or
the tensor's values as numbers) instead of the binary extension.
--tensor sends each request as an FP32 tensor of the model's input shape
(binary, random values) instead of a JPEG: no decoding on the worker.
--online-job BATCH launches an online job of the model first (its requests
then go through the fair-time scheduler, up to BATCH run together;
docs/scheduler.md, "Online jobs"); --max-queue-delay US launches it with that
maximum queue delay (a request may wait up to US microseconds for others to
fill its batch). --kill-worker S kills a node that is
neither the coordinator nor one the clients talk to with -9, S seconds into
the measured run: every request must still be answered (failures counts
those that were not; each client's request has the cluster's default 30 s
deadline, far beyond a retry).
"""
import argparse, base64, json, multiprocessing, os, random, shutil, statistics, struct, subprocess, sys, tempfile, time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster, ROOT, wait  # noqa: E402

MODELS = os.path.join(ROOT, "models")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


ASK_TOP1 = [{"name": "classification", "parameters": {"classification": 1}}]


def infer_request(item, as_json=False):
    """One infer's (body, headers): item is an encoded image (a BYTES input)
    or a tensor (shape, float32 bytes); in the binary tensor data extension,
    or all JSON (the image base64, the tensor's values as numbers)."""
    tensor = isinstance(item, tuple)
    name, dt = ("input", "FP32") if tensor else ("image", "BYTES")
    shape = [1] + item[0] if tensor else [1]
    if as_json:
        data = (list(struct.unpack("<%df" % (len(item[1]) // 4), item[1])) if tensor
                else [base64.b64encode(item).decode()])
        body = json.dumps({"inputs": [{"name": name, "datatype": dt, "shape": shape,
                                       "data": data}], "outputs": ASK_TOP1}).encode()
        return body, {"Content-Type": "application/json"}
    blob = item[1] if tensor else struct.pack("<I", len(item)) + item
    head = json.dumps({"inputs": [{"name": name, "datatype": dt, "shape": shape,
                                   "parameters": {"binary_data_size": len(blob)}}],
                       "outputs": ASK_TOP1}).encode()
    return head + blob, {"Content-Type": "application/octet-stream",
                         "Inference-Header-Content-Length": str(len(head))}


def client(args):
    """One closed-loop client: (latencies in ms, failures, first error)."""
    addr, model, token, requests, until, warm = args
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    lat, failures, first_error, k = [], 0, None, 0
    path = "/v2/models/%s/infer" % model
    while time.time() < until:
        body, headers = requests[k % len(requests)]
        k += 1
        t = time.time()
        try:
            conn.request("POST", path, body, dict(headers, Authorization="Bearer " + token))
            r = conn.getresponse()
            body = r.read()
            ok = r.status == 200 and json.loads(body)["outputs"][0]["shape"] == [1, 1]
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            ok, body = False, str(e).encode()
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        if not ok:
            failures += 1
            first_error = first_error or body[:200].decode("utf-8", "replace")
        elif t >= warm:
            lat.append((time.time() - t) * 1000)
    return lat, failures, first_error


class CClients:
    """The clients as one bench/oip_load.c process: ready() and get() like a
    pool's pending result; get() gives one (latencies, failures, error) per
    process, with the percentiles oip_load measured."""

    def __init__(self, targets, model, token, reqs, clients, seconds, warm_s):
        subprocess.run(["make", "-C", ROOT, "-s", "bench-bin"], check=True, capture_output=True)
        self.dir = tempfile.mkdtemp(prefix="idunno-oip-load.")
        files = []
        for i, (body, headers) in enumerate(reqs):
            head = "POST /v2/models/%s/infer HTTP/1.1\r\nHost: localhost\r\n" % model
            head += "Authorization: Bearer %s\r\n" % token
            for k, v in headers.items():
                head += "%s: %s\r\n" % (k, v)
            head += "Content-Length: %d\r\n\r\n" % len(body)
            path = os.path.join(self.dir, "req%03d" % i)
            with open(path, "wb") as f:
                f.write(head.encode() + body)
            files.append(path)
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "build", "bin", "oip_load"), "--clients", str(clients),
             "--seconds", str(seconds), "--warm", str(warm_s), ",".join(targets)] + files,
            stdout=subprocess.PIPE, text=True)

    def ready(self):
        return self.proc.poll() is not None

    def get(self):
        out, _ = self.proc.communicate()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.proc.returncode != 0:
            raise SystemExit("oip_load failed (exit %d)" % self.proc.returncode)
        return json.loads(out)


def start_clients(targets, model, token, images, clients, seconds, warm_s, as_json=False,
                  python=False):
    """Starts `clients` closed-loop clients (on the targets in turn, each
    starting from another image) for warm_s + seconds: (the pool or None,
    the pending results, the start and end of the measured time)."""
    reqs = [infer_request(x, as_json) for x in images]
    start = time.time()
    until = start + warm_s + seconds
    if not python:
        return None, CClients(targets, model, token, reqs, clients, seconds, warm_s), \
            start + warm_s, until
    work = [(targets[i % len(targets)], model, token, reqs[i:] + reqs[:i], until,
             start + warm_s) for i in range(clients)]
    pool = multiprocessing.Pool(clients)
    return pool, pool.map_async(client, work), start + warm_s, until


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 2) if xs else None


def bare(model, seconds, image_dir):
    subprocess.run(["make", "-C", ROOT, "-s", "bench-bin"], check=True, capture_output=True)
    out = subprocess.run([os.path.join(ROOT, "build", "bin", "infer_bench"), "e2e",
                          os.path.join(MODELS, model + ".onnx"), "2", "1", str(seconds),
                          image_dir], check=True, capture_output=True, text=True)
    ips = json.loads(out.stdout)["images_per_s"]
    log("bare ONNX Runtime, 2 threads, batch 1, decoding the images:", ips, "images/s")
    return ips


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--via", choices=["all", "one"], default="all")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare runtime loop")
    ap.add_argument("--online-job", type=int, default=0, metavar="BATCH",
                    help="launch an online job of the model with this batch first")
    ap.add_argument("--max-queue-delay", type=int, default=None, metavar="US",
                    help="the online job's maximum queue delay in microseconds (launch's option)")
    ap.add_argument("--json", action="store_true",
                    help="requests all JSON (base64 image, tensor values) instead of binary")
    ap.add_argument("--tensor", action="store_true",
                    help="FP32 tensors of the model's input shape instead of JPEGs")
    ap.add_argument("--kill-worker", type=float, default=None, metavar="S",
                    help="kill -9 one worker S seconds into the measured run")
    ap.add_argument("--python-clients", action="store_true",
                    help="clients as Python processes instead of bench/oip_load.c")
    ap.add_argument("--base-port", type=int, default=26700)
    args = ap.parse_args()
    if args.max_queue_delay is not None and not args.online_job:
        ap.error("--max-queue-delay goes with --online-job")

    c = Cluster(args.nodes, args.base_port)
    img_dir = tempfile.mkdtemp(prefix="idunno-oip-images.")  # outlives the cluster's directory
    subprocess.run([os.path.join(ROOT, "scripts", "make-data.sh"), "--synthetic",
                    str(args.images), img_dir], check=True, capture_output=True)
    paths = sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir))
    images = [open(p, "rb").read() for p in paths]
    bare_before = None if args.no_bare else bare(args.model, min(args.seconds, 20), img_dir)
    c.up()
    try:
        c.cli("node1", "train", args.model, "--file", os.path.join(MODELS, args.model + ".onnx"),
              timeout_ms=120000, check=True)
        token = subprocess.run([os.path.join(ROOT, "bin", "idunno"), "token"], check=True,
                               capture_output=True, text=True).stdout.strip()
        http_addrs = []
        for k in range(1, args.nodes + 1):
            h, p = c.addrs["node%d" % k].rsplit(":", 1)
            http_addrs.append("%s:%d" % (h, int(p) + 2))
        if args.tensor:
            h, p = http_addrs[0].rsplit(":", 1)
            conn = http.client.HTTPConnection(h, int(p), timeout=30)
            conn.request("GET", "/v2/models/%s" % args.model)
            shape = json.loads(conn.getresponse().read())["inputs"][1]["shape"][1:]
            n = shape[0] * shape[1] * shape[2]
            rnd = random.Random(7)
            images = [(shape, struct.pack("<%df" % n, *[rnd.random() for _ in range(n)]))
                      for _ in range(len(images))]
        if args.online_job:
            delay = ([] if args.max_queue_delay is None
                     else ["--max-queue-delay", str(args.max_queue_delay)])
            c.cli("node1", "launch", args.model, str(args.online_job), "--online", *delay,
                  check=True)
        victim = None
        if args.kill_worker is not None:
            leader = c.wait_leader()
            victim = next("node%d" % k for k in range(args.nodes, 0, -1)
                          if "node%d" % k not in (leader, "node1"))
            # the clients talk to the nodes that stay up
            http_addrs = [a for k, a in enumerate(http_addrs, 1) if "node%d" % k != victim]
        targets = http_addrs if args.via == "all" else http_addrs[:1]
        # Warm-up: enough requests at once that every worker gets one and
        # loads the model (the coordinator spreads them, scheduler.md).
        warm_s = 15 if args.model != "tiny_cnn" else 3
        pool, pending, t0, _ = start_clients(targets, args.model, token, images, args.clients,
                                             args.seconds, warm_s, args.json,
                                             args.python_clients)
        # The cluster's CPU time over the measured run: a cost per request
        # that other load on the host moves less than it moves the rate.
        wait(lambda: pending.ready() or time.time() >= t0, warm_s + 60)
        cpu0 = c.cpu_seconds()
        if victim:
            wait(lambda: pending.ready() or time.time() >= t0 + args.kill_worker,
                 warm_s + args.seconds + 60)
            if not pending.ready():
                c.kill(victim)
                log("killed %s with -9 at %.1f s" % (victim, time.time() - t0))
        results = pending.get()
        cpu_s = c.cpu_seconds() - cpu0
        if pool:
            pool.close()
            lat = [x for r in results for x in r[0]]
            failures = sum(r[1] for r in results)
            errors = [r[2] for r in results if r[2]]
            n_req = len(lat)
            lat_ms = {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
                      "mean": round(statistics.mean(lat), 2) if lat else None}
        else:
            failures, n_req = results["failures"], results["requests"]
            errors = [results["first_error"]] if results["first_error"] else []
            lat_ms = results["latency_ms"] if n_req else {"p50": None}
        st = c.cli("node1", "status") or {}
        # Requests a failed run sent to another worker (the kill's victims).
        retried = None
        if st.get("leader"):
            h, p = c.addrs[st["leader"]].rsplit(":", 1)
            try:
                page = http.client.HTTPConnection(h, int(p) + 2, timeout=10)
                page.request("GET", "/metrics")
                for line in page.getresponse().read().decode().splitlines():
                    if line.startswith("idunno_coordinator_online_retried_total "):
                        retried = int(float(line.split()[1]))
            except (OSError, http.client.HTTPException, ValueError):
                pass
        # Leader changes during the run: an election under load shows here.
        elections = sum(len(c.log_lines("node%d" % k, "won the election"))
                        for k in range(1, args.nodes + 1))
    finally:
        c.down()
    bare_after = None if args.no_bare else bare(args.model, min(args.seconds, 20), img_dir)
    shutil.rmtree(img_dir, ignore_errors=True)
    rps = n_req / args.seconds
    out = {"model": args.model, "nodes": args.nodes, "clients": args.clients,
           "via": args.via, "seconds": args.seconds, "requests": n_req,
           "requests_per_s": round(rps, 1), "failures": failures,
           "first_error": errors[0] if errors else None,
           "latency_ms": lat_ms,
           "cluster_cpu_ms_per_request": round(cpu_s * 1000 / n_req, 3) if n_req else None,
           "clients_in": "python" if args.python_clients else "c",
           "leader": st.get("leader"), "elections": elections,
           "online_job_batch": args.online_job or None,
           "max_queue_delay_us": args.max_queue_delay, "killed": victim,
           "retried_on_another_worker": retried, "tensor": args.tensor,
           "json": args.json}
    if not args.no_bare:
        b = (bare_before + bare_after) / 2
        out.update({"bare_images_per_s": round(b, 1), "bare_before": bare_before,
                    "bare_after": bare_after, "ratio": round(rps / b, 3)})
    if n_req:
        out["p99_over_p50"] = round(out["latency_ms"]["p99"] / out["latency_ms"]["p50"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
