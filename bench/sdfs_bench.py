#!/usr/bin/env python3
"""SDFS benchmarks on a local cluster (real daemons on 127.0.0.1).

  repair  Three replicas of a file killed at once (SIGKILL; at most one of them
          a control-plane voter, since two dead voters stop the coordinator).
          Measured per trial: kill -> the file read back whole through a
          survivor (get_ms), and kill -> every stored file has 4 live replicas
          again (restored_ms). The victims are restarted between trials.
  put     A file of --size-mb put with 4 replicas, against writing and fsyncing
          4 copies of it locally on the same disk; got back, against reading it
          locally (page cache dropped on both sides first: posix_fadvise
          DONTNEED on the source and on every replica's blob), and against a
          cold local copy (read + write); the three alternate in --get-rounds
          rounds and the ratios are the medians of each round's own. Each node's peak RSS during the
          transfer above its RSS before it (VmHWM after clear_refs).
  ls      --files small files stored with put-dir; then `ls` and `store`
          through a non-leader node, each --reps times: the answer time the
          client measures (request sent -> answer read) and the whole command
          (process start and printing included).
  putdir  --images small images (scripts/make-data.sh --synthetic N DIR
          --max-side 48) stored with put-dir through a non-leader node,
          against a local baseline on the same disk: the same files written
          4 times into 4 directories, each directory made durable once
          (syncfs on it, then fsync of the directory). Files per second both
          ways and their ratio.
  keycost A plaintext and a keyed cluster side by side, --rounds rounds of a
          cold put of --size-mb into each (order flipped every round) and a
          cold get from each: the cluster key's cost, per round and overall.
  keyrate The same two clusters, sustained: --rounds blocks, each cluster in
          turn (the order flipped every block) putting --files-per-block
          different files of --size-mb back to back, then getting them back
          (replicas' page cache dropped first): each block's MB/s, and the
          keyed/plain ratio of the medians and of each block's own pair.

Prints one JSON document. Usage: bench/sdfs_bench.py [repair|put|ls|putdir|keycost|keyrate|all]
[--nodes 10] [--trials 5] [--size-mb 256] [--get-rounds 5] [--files 10000]
[--images 20000] [--rounds 10] [--base-port 7600]
"""
import argparse, glob, json, os, resource, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
IDUNNO = os.path.join(ROOT, "bin", "idunno")
VOTERS = {"node1", "node2", "node3"}


def now_ms():
    return time.monotonic() * 1000


class Cluster:
    def __init__(self, n, base_port, keyed=None):
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="idunno-sdfsbench.")
        # scripts/cluster up keys the cluster (docs/security.md); IDUNNO_NO_KEY=1
        # (or keyed=False) runs it in plaintext, for comparison.
        if keyed is None:
            keyed = os.environ.get("IDUNNO_NO_KEY") != "1"
        self.keyed = keyed
        self.env = dict(os.environ, IDUNNO_RUN_DIR=self.dir, IDUNNO_BASE_PORT=str(base_port),
                        IDUNNO_NO_KEY="0" if keyed else "1")
        self.cli_env = dict(os.environ)
        self.cli_env.pop("IDUNNO_KEY_FILE", None)
        if keyed:
            self.cli_env["IDUNNO_KEY_FILE"] = os.path.join(self.dir, "cluster.key")
        self.addrs = {}

    def run(self, *args, check=True):
        return subprocess.run([CLUSTER, *args], env=self.env, check=check,
                              capture_output=True, text=True).stdout

    def up(self):
        self.run("up", str(self.n))
        for k in range(1, self.n + 1):
            self.addrs[f"node{k}"] = self.run("addr", f"node{k}").strip()
        deadline = time.time() + 30
        while time.time() < deadline:
            st = self.cli("node1", "status")
            if st and st.get("leader"):
                return
            time.sleep(0.1)
        raise SystemExit("no coordinator")

    def down(self):
        self.run("down", check=False)
        subprocess.run(["rm", "-rf", self.dir])

    def cli(self, node, *args, timeout_ms=10000, check=False):
        p = subprocess.run([IDUNNO, "-s", self.addrs[node], "--json", "--timeout",
                            str(timeout_ms), *args], capture_output=True, text=True,
                           env=self.cli_env)
        if check and p.returncode != 0:
            raise SystemExit(f"idunno {' '.join(args)}: {p.stderr.strip()}")
        if p.returncode != 0 or not p.stdout.strip():
            return None
        return json.loads(p.stdout)

    def pid(self, node):
        with open(os.path.join(self.dir, node, "pid")) as f:
            return int(f.read())

    def cpu_seconds(self):
        """CPU time (user + system) the nodes' daemons have used so far."""
        tick, total = os.sysconf("SC_CLK_TCK"), 0
        for k in range(1, self.n + 1):
            with open(f"/proc/{self.pid(f'node{k}')}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick


def drop_cache(path):
    # Dirty pages are not dropped: write them back first. A copy may go away
    # meanwhile: after five blocks each put drops its name's oldest version.
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def summary(xs):
    xs = sorted(xs)
    return {"median": round(statistics.median(xs), 1), "max": round(xs[-1], 1),
            "min": round(xs[0], 1), "n": len(xs)} if xs else None


# ---- repair ---------------------------------------------------------------------------------

def live_replicas(c, observer, name, dead=()):
    """Replicas of the latest version that membership lists alive, not
    counting `dead` (just killed: until the kill is detected they still look
    alive, and a file would count as restored before anything happened)."""
    d = c.cli(observer, "ls", name, timeout_ms=3000)
    if not d:
        return -1
    return sum(1 for r in d["versions"][-1]["replicas"] if r["addr"] and r["name"] not in dead)


def bench_repair(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        tmp = tempfile.mkdtemp(prefix="sdfsbench-data.")
        names = []
        for i in range(args.repair_files):
            p = os.path.join(tmp, f"f{i}")
            with open(p, "wb") as f:
                f.write(os.urandom(1 << 20))
            c.cli("node10", "put", p, f"r/f{i}", check=True)
            names.append(f"r/f{i}")
        big = os.path.join(tmp, "big")
        with open(big, "wb") as f:
            f.write(os.urandom(32 << 20))
        c.cli("node10", "put", big, "r/big", check=True)
        names.append("r/big")
        trials = []
        for t in range(args.trials):
            # A file whose replicas include at least 3 non-voters, or 2 and a voter.
            pick = None
            for name in names:
                reps = [r["name"] for r in c.cli("node10", "ls", name)["versions"][-1]["replicas"]]
                nonvoters = [r for r in reps if r not in VOTERS]
                if len(nonvoters) >= 2:
                    victims = (nonvoters + [r for r in reps if r in VOTERS])[:3]
                    pick = name
                    break
            if not pick:
                raise SystemExit("no file with two non-voter replicas")
            survivor = next(r for r in reps if r not in victims)
            observer = next(f"node{k}" for k in range(args.nodes, 0, -1)
                            if f"node{k}" not in victims and f"node{k}" not in VOTERS - {survivor})
            t0 = now_ms()
            for v in victims:
                os.kill(c.pid(v), 9)
            out = os.path.join(tmp, "out")
            get_ms = None
            while get_ms is None and now_ms() - t0 < 30000:
                if c.cli(survivor, "get", pick, out, timeout_ms=3000):
                    get_ms = now_ms() - t0
            restored_ms = None
            pending = set(names)
            while pending and now_ms() - t0 < 60000:
                for name in sorted(pending):
                    if live_replicas(c, observer, name, victims) == 4:
                        pending.discard(name)
                if not pending:
                    restored_ms = now_ms() - t0
                else:
                    time.sleep(0.02)
            trials.append({"file": pick, "victims": victims, "get_ms": round(get_ms or -1, 1),
                           "restored_ms": round(restored_ms or -1, 1),
                           "unrestored": sorted(pending)})
            print(json.dumps(trials[-1]), file=sys.stderr)
            for v in victims:
                c.run("start", v)
            deadline = time.time() + 30
            while time.time() < deadline:  # victims back and seen alive
                mem = c.cli(observer, "list_mem") or {"members": []}
                alive = {m["name"] for m in mem["members"] if m["state"] == "alive"}
                if set(victims) <= alive:
                    break
                time.sleep(0.1)
        ok = [t for t in trials if t["restored_ms"] >= 0]
        return {"files": len(names), "trials": trials,
                "get_ms": summary([t["get_ms"] for t in trials if t["get_ms"] >= 0]),
                "restored_ms": summary([t["restored_ms"] for t in ok]),
                "all_restored": len(ok) == len(trials)}
    finally:
        c.down()


# ---- put / get ------------------------------------------------------------------------------

def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def bench_put(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    tmp = tempfile.mkdtemp(prefix="sdfsbench-put.", dir=c.dir)
    try:
        src = os.path.join(tmp, "src")
        chunk = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for _ in range(args.size_mb):
                f.write(chunk[:512 << 10] + os.urandom(512 << 10))
        size = os.path.getsize(src)
        # Baseline: 4 local copies written and fsynced, from a cold source.
        drop_cache(src)
        t0 = now_ms()
        with open(src, "rb") as f:
            data = f.read()
        for i in range(4):
            with open(os.path.join(tmp, f"copy{i}"), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        local_write_ms = now_ms() - t0
        del data
        for i in range(4):
            os.unlink(os.path.join(tmp, f"copy{i}"))
        # put through a node (the gateway), with peak RSS of every node.
        nodes = [f"node{k}" for k in range(1, args.nodes + 1)]
        before = {}
        for n in nodes:
            pid = c.pid(n)
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            before[n] = rss_kb(pid, "VmRSS")
        drop_cache(src)
        gw = f"node{args.nodes // 2 + 1}"
        t0 = now_ms()
        v = c.cli(gw, "put", src, "bench/big", timeout_ms=60000, check=True)
        put_ms = now_ms() - t0
        peak = {n: rss_kb(c.pid(n), "VmHWM") - before[n] for n in nodes}
        # get, everything cold, against a cold local read and a cold local copy
        # of the same file. The host's speed drifts between runs seconds apart,
        # so the three alternate in rounds and each round gives its own ratio.
        blobs = glob.glob(os.path.join(c.dir, "node*", "sdfs", "blobs", "*"))
        out = os.path.join(tmp, "out")
        read_ms, copy_ms, get_ms = [], [], []
        for _ in range(args.get_rounds):
            drop_cache(src)
            t0 = now_ms()
            with open(src, "rb") as f:
                while f.read(1 << 20):
                    pass
            read_ms.append(now_ms() - t0)
            drop_cache(src)
            t0 = now_ms()
            subprocess.run(["cp", src, os.path.join(tmp, "cp")], check=True)
            copy_ms.append(now_ms() - t0)
            os.unlink(os.path.join(tmp, "cp"))
            for b in blobs:
                drop_cache(b)
            # Into a new file, as the copy above: replacing an existing one
            # costs either the same on ext4 (auto_da_alloc starts writing the
            # new file back at the rename or the truncating close).
            if os.path.exists(out):
                os.unlink(out)
            t0 = now_ms()
            c.cli(gw, "get", "bench/big", out, timeout_ms=60000, check=True)
            get_ms.append(now_ms() - t0)
        local_read_ms = statistics.median(read_ms)
        local_copy_ms = statistics.median(copy_ms)
        same = subprocess.run(["cmp", "-s", src, out]).returncode == 0
        return {"size_mb": size >> 20, "replicas": v["replicas"],
                "local_4_copies_fsync_ms": round(local_write_ms, 1), "put_ms": round(put_ms, 1),
                "put_ratio": round(put_ms / local_write_ms, 2),
                "local_cold_read_ms": round(local_read_ms, 1),
                "local_cold_copy_ms": round(local_copy_ms, 1),
                "get_ms": summary(get_ms),
                "get_ratio_to_read": round(statistics.median(g / r for g, r in zip(get_ms, read_ms)), 2),
                "get_ratio_to_copy": round(statistics.median(g / k for g, k in zip(get_ms, copy_ms)), 2),
                "content_equal": same,
                "peak_rss_above_idle_mb": {n: round(kb / 1024, 1) for n, kb in peak.items()},
                "max_peak_rss_above_idle_mb": round(max(peak.values()) / 1024, 1)}
    finally:
        c.down()


# ---- keycost ---------------------------------------------------------------------------------

def children_cpu_seconds():
    """CPU time of this script's finished children (the client processes)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def two_clusters(args):
    """A plaintext cluster on --base-port and a keyed one 100 above, not up yet."""
    return {"plain": Cluster(args.nodes, args.base_port, keyed=False),
            "keyed": Cluster(args.nodes, args.base_port + 100, keyed=True)}


def key_setup(args, clusters):
    """Starts both clusters and writes a --size-mb file of random bytes;
    returns (scratch dir, the file, the node the client talks to)."""
    for c in clusters.values():
        c.up()
    tmp = tempfile.mkdtemp(prefix="sdfsbench-key.", dir=clusters["plain"].dir)
    src = os.path.join(tmp, "src")
    with open(src, "wb") as f:
        for _ in range(args.size_mb):
            f.write(os.urandom(1 << 20))
    return tmp, src, f"node{args.nodes // 2 + 1}"


def bench_keycost(args):
    """The cluster key's cost on puts and gets: a plaintext and a keyed cluster
    run side by side and take the same file in turns (the order flips every
    round), so the host's drift, which is larger than the difference sought,
    falls on both alike. Each round: a cold put into each, then a cold get
    from each; the file is deleted again so the disk does not fill."""
    clusters = two_clusters(args)
    try:
        tmp, src, gw = key_setup(args, clusters)
        put = {"plain": [], "keyed": []}
        get = {"plain": [], "keyed": []}
        # CPU ms per put, the daemons' and the client's: the cost of the
        # work itself, which the host's other load moves far less than time.
        put_cpu = {"plain": [], "keyed": []}
        for r in range(args.rounds):
            order = ("plain", "keyed") if r % 2 == 0 else ("keyed", "plain")
            for kind in order:
                c = clusters[kind]
                drop_cache(src)
                os.sync()  # the other put's writeback must not fall on this one
                t0, cpu0 = now_ms(), c.cpu_seconds() + children_cpu_seconds()
                c.cli(gw, "put", src, "bench/key", timeout_ms=60000, check=True)
                put[kind].append(now_ms() - t0)
                put_cpu[kind].append(1000 * (c.cpu_seconds() + children_cpu_seconds() - cpu0))
            for kind in order:
                c = clusters[kind]
                for b in glob.glob(os.path.join(c.dir, "node*", "sdfs", "blobs", "*")):
                    drop_cache(b)
                out = os.path.join(tmp, f"out-{kind}")
                t0 = now_ms()
                c.cli(gw, "get", "bench/key", out, timeout_ms=60000, check=True)
                get[kind].append(now_ms() - t0)
                if subprocess.run(["cmp", "-s", src, out]).returncode != 0:
                    raise SystemExit(f"round {r}: the {kind} cluster gave back other bytes")
                os.unlink(out)
                c.cli(gw, "delete", "bench/key", check=True)
            print(f"round {r + 1}: put plain {put['plain'][-1]:.0f} ms ({put_cpu['plain'][-1]:.0f} ms CPU), "
                  f"keyed {put['keyed'][-1]:.0f} ms ({put_cpu['keyed'][-1]:.0f} ms CPU); "
                  f"get plain {get['plain'][-1]:.0f} ms, keyed {get['keyed'][-1]:.0f} ms", file=sys.stderr)
        def ratios(d):
            return [k / p for k, p in zip(d["keyed"], d["plain"])]
        # A put right after the other cluster's put runs slower than one after
        # the gets (whatever the key): compare each position on its own too.
        first = {"plain": put["plain"][0::2], "keyed": put["keyed"][1::2]}
        second = {"plain": put["plain"][1::2], "keyed": put["keyed"][0::2]}
        return {"size_mb": args.size_mb, "rounds": args.rounds,
                "put_ms": {k: summary(v) for k, v in put.items()},
                "get_ms": {k: summary(v) for k, v in get.items()},
                "put_keyed_over_plain": {"median_of_rounds": round(statistics.median(ratios(put)), 3),
                                         "of_medians": round(statistics.median(put["keyed"]) /
                                                             statistics.median(put["plain"]), 3)},
                "put_cpu_ms": {k: summary(v) for k, v in put_cpu.items()},
                "put_cpu_keyed_over_plain": round(statistics.median(put_cpu["keyed"]) /
                                                  statistics.median(put_cpu["plain"]), 3),
                "put_first_in_round_ms": {k: summary(v) for k, v in first.items()},
                "put_second_in_round_ms": {k: summary(v) for k, v in second.items()},
                "get_keyed_over_plain": {"median_of_rounds": round(statistics.median(ratios(get)), 3),
                                         "of_medians": round(statistics.median(get["keyed"]) /
                                                             statistics.median(get["plain"]), 3)},
                "put_ms_rounds": {k: [round(x) for x in v] for k, v in put.items()},
                "get_ms_rounds": {k: [round(x) for x in v] for k, v in get.items()}}
    finally:
        for c in clusters.values():
            c.down()


def bench_keyrate(args):
    """The key's cost on sustained SDFS throughput (see the docstring)."""
    clusters = two_clusters(args)
    try:
        tmp, src, gw = key_setup(args, clusters)
        k = args.files_per_block
        mb = args.size_mb * k
        put = {"plain": [], "keyed": []}
        get = {"plain": [], "keyed": []}
        for r in range(args.rounds):
            order = ("plain", "keyed") if r % 2 == 0 else ("keyed", "plain")
            for kind in order:
                c = clusters[kind]
                os.sync()  # the other cluster's writeback must not fall on this block
                t0 = now_ms()
                for i in range(k):
                    c.cli(gw, "put", src, f"bench/rate{i}", timeout_ms=120000, check=True)
                put[kind].append(mb / ((now_ms() - t0) / 1000))
                for b in glob.glob(os.path.join(c.dir, "node*", "sdfs", "blobs", "*")):
                    drop_cache(b)
                t0 = now_ms()
                for i in range(k):
                    out = os.path.join(tmp, f"out-{kind}-{i}")
                    c.cli(gw, "get", f"bench/rate{i}", out, timeout_ms=120000, check=True)
                get[kind].append(mb / ((now_ms() - t0) / 1000))
                for i in range(k):
                    out = os.path.join(tmp, f"out-{kind}-{i}")
                    if subprocess.run(["cmp", "-s", src, out]).returncode != 0:
                        raise SystemExit(f"block {r}: the {kind} cluster gave back other bytes")
                    os.unlink(out)
                    c.cli(gw, "delete", f"bench/rate{i}", check=True)
            print(f"block {r + 1}: put plain {put['plain'][-1]:.0f} MB/s, keyed {put['keyed'][-1]:.0f}"
                  f" MB/s; get plain {get['plain'][-1]:.0f} MB/s, keyed {get['keyed'][-1]:.0f} MB/s",
                  file=sys.stderr)

        def cmp(d):
            return {"plain_mb_s": [round(x) for x in d["plain"]],
                    "keyed_mb_s": [round(x) for x in d["keyed"]],
                    "keyed_over_plain_of_medians": round(statistics.median(d["keyed"]) /
                                                         statistics.median(d["plain"]), 3),
                    "keyed_over_plain_median_of_blocks": round(statistics.median(
                        [kk / p for kk, p in zip(d["keyed"], d["plain"])]), 3)}
        return {"size_mb": args.size_mb, "files_per_block": k, "blocks": args.rounds,
                "put": cmp(put), "get": cmp(get)}
    finally:
        for c in clusters.values():
            c.down()


# ---- ls -------------------------------------------------------------------------------------

def bench_ls(args):
    c = Cluster(args.nodes, args.base_port)
    c.up()
    try:
        d = tempfile.mkdtemp(prefix="sdfsbench-ls.", dir=c.dir)
        for i in range(args.files):
            with open(os.path.join(d, f"img{i:05d}.jpg"), "wb") as f:
                f.write(os.urandom(64))
        t0 = now_ms()
        r = c.cli("node4", "put-dir", d, "many", timeout_ms=600000, check=True)
        put_dir_ms = now_ms() - t0
        res = {"files": r["files"], "put_dir_ms": round(put_dir_ms),
               "put_dir_files_per_s": round(r["files"] / (put_dir_ms / 1000), 1)}
        for what, cmd in (("ls", ["ls"]), ("store", ["store"])):
            times, answers = [], []
            for _ in range(args.reps):
                t0 = now_ms()
                out = c.cli("node5", *cmd, check=True)
                times.append(now_ms() - t0)
                answers.append(out["answer_ms"])
            res[what + "_command_ms"] = summary(times)  # the whole idunno process
            res[what + "_answer_ms"] = summary(answers)  # request -> answer, as the client sees it
            res[what + "_count"] = out["count"]
        return res
    finally:
        c.down()


def local_copies(src, dst_root, copies=4):
    """Writes every file of src into `copies` directories, one syncfs and one
    directory fsync per directory: the durable-write floor of this disk."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    names = sorted(os.listdir(src))
    data = []
    for n in names:
        with open(os.path.join(src, n), "rb") as f:
            data.append(f.read())
    t0 = now_ms()
    for k in range(copies):
        d = os.path.join(dst_root, f"copy{k}")
        os.mkdir(d)
        for n, b in zip(names, data):
            with open(os.path.join(d, n), "wb") as f:
                f.write(b)
        fd = os.open(d, os.O_RDONLY)
        if libc.syncfs(fd) != 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), "syncfs")
        os.fsync(fd)
        os.close(fd)
    return now_ms() - t0, len(names), sum(len(b) for b in data)


def bench_putdir(args):
    c = Cluster(args.nodes, args.base_port)
    try:
        c.up()
        src = os.path.join(c.dir, "images")
        subprocess.run([os.path.join(ROOT, "scripts", "make-data.sh"), "--synthetic",
                        str(args.images), src, "--max-side", "48"], check=True,
                       capture_output=True)
        t0 = now_ms()
        r = c.cli("node4", "put-dir", src, "set", timeout_ms=3600000, check=True)
        put_ms = now_ms() - t0
        local_ms, n, total = local_copies(src, tempfile.mkdtemp(prefix="local.", dir=c.dir))
        put_fps = r["files"] / (put_ms / 1000)
        local_fps = n / (local_ms / 1000)
        return {"files": r["files"], "bytes": total, "nodes": args.nodes,
                "put_dir_ms": round(put_ms), "put_dir_files_per_s": round(put_fps, 1),
                "local_4_copies_ms": round(local_ms),
                "local_files_per_s": round(local_fps, 1),
                "put_dir_vs_local": round(put_fps / local_fps, 3)}
    finally:
        c.down()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all", choices=["repair", "put", "ls", "putdir", "keycost", "keyrate",
                                                          "all"])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--repair-files", type=int, default=30)
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--get-rounds", type=int, default=5,
                    help="put: rounds of (local read, local copy, get), alternating")
    ap.add_argument("--images", type=int, default=20000, help="putdir: images to store")
    ap.add_argument("--rounds", type=int, default=10, help="keycost: rounds of a put and a get each way")
    ap.add_argument("--files-per-block", type=int, default=6, help="keyrate: files put per block")
    ap.add_argument("--base-port", type=int, default=7600,
                    help="the first node's port (keycost: the plaintext cluster; the keyed one is 100 above)")
    args = ap.parse_args()
    out = {}
    if args.what in ("repair", "all"):
        out["repair"] = bench_repair(args)
    if args.what in ("put", "all"):
        out["put"] = bench_put(args)
    if args.what in ("ls", "all"):
        out["ls"] = bench_ls(args)
    if args.what == "putdir":  # not in "all": it is the bulk-write figure on its own
        out["putdir"] = bench_putdir(args)
    if args.what == "keycost":  # not in "all": two clusters at once
        out["keycost"] = bench_keycost(args)
    if args.what == "keyrate":  # not in "all": two clusters at once
        out["keyrate"] = bench_keyrate(args)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
