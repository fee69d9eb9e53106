#!/usr/bin/env python3
"""Shards or files: the measurement behind docs/sdfs.md, "Shards".

Stores one set of N generated images (default 100,000, at most 48 px) into a
fresh cluster two ways, on the same cluster one after the other:

  files   put-dir: one SDFS file per image (the batched path);
  shards  the same images packed into tar shards of --shard-mb (in the manner
          of WebDataset), each shard one SDFS file put with `put`; the packing
          is timed too.

For each: the wall time, the control-plane entries it took (the leader's
commit index before and after), the voters' resident memory after it, and
the control-plane snapshot on disk. Then what a reader pays for one image:
`get` of one image file against `get` of the shard that holds it plus taking
the image out of it (median of --reads each).

Prints one JSON document. Usage:
bench/shard_bench.py [--images 100000] [--shard-mb 64] [--nodes 5]
                     [--base-port 27600] [--reads 5] [--keep-images DIR]
"""
import argparse, json, os, statistics, subprocess, sys, tarfile, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster  # noqa: E402
from scale_bench import make_images, rss_mb, snapshot_bytes  # noqa: E402


def log(*a):
    print("shard_bench:", *a, file=sys.stderr, flush=True)


def pack(src, out_dir, shard_bytes):
    """Packs src's files, in name order, into tar shards of about shard_bytes.
    Returns [(shard path, [member names])]."""
    shards, cur, names, size = [], None, [], 0
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if cur is None or size >= shard_bytes:
            if cur:
                cur.close()
                shards.append((cur.name, names))
            path = os.path.join(out_dir, f"shard-{len(shards):06d}.tar")
            cur, names, size = tarfile.open(path, "w"), [], 0
        cur.add(p, arcname=name)
        names.append(name)
        size += os.path.getsize(p) + 512
    if cur:
        cur.close()
        shards.append((cur.name, names))
    return shards


def voters_state(c):
    return {v: rss_mb(c.pid(v)) for v in ("node1", "node2", "node3")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100000)
    ap.add_argument("--shard-mb", type=int, default=64)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--base-port", type=int, default=27600)
    ap.add_argument("--reads", type=int, default=5)
    ap.add_argument("--keep-images", help="where the generated images stay between runs")
    args = ap.parse_args()
    images_root = args.keep_images or tempfile.mkdtemp(prefix="idunno-shard-images.")
    os.makedirs(images_root, exist_ok=True)
    src = make_images(images_root, args.images)
    total = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src))
    c = Cluster(args.nodes, args.base_port, prefix="idunno-shard.")
    gw = f"node{args.nodes}"
    out = {"images": args.images, "bytes": total, "nodes": args.nodes,
           "shard_mb": args.shard_mb}
    work = tempfile.mkdtemp(prefix="idunno-shards.")
    try:
        c.up()
        base = c.cli(gw, "status", check=True)["commit_index"]
        out["voters_rss_mb_empty"] = voters_state(c)

        t = time.monotonic()
        c.cli(gw, "put-dir", src, "files", timeout_ms=3600000, check=True)
        files_s = time.monotonic() - t
        after_files = c.cli(gw, "status", check=True)["commit_index"]
        out["files"] = {"seconds": round(files_s, 2),
                        "files_per_s": round(args.images / files_s),
                        "control_entries": after_files - base,
                        "voters_rss_mb": voters_state(c),
                        "snapshot_bytes": snapshot_bytes(c, "node1")}
        log("files:", out["files"])

        t = time.monotonic()
        shards = pack(src, work, args.shard_mb << 20)
        pack_s = time.monotonic() - t
        t = time.monotonic()
        for path, _ in shards:
            c.cli(gw, "put", path, f"shards/{os.path.basename(path)}", timeout_ms=600000,
                  check=True)
        put_s = time.monotonic() - t
        after_shards = c.cli(gw, "status", check=True)["commit_index"]
        out["shards"] = {"count": len(shards), "pack_seconds": round(pack_s, 2),
                         "put_seconds": round(put_s, 2),
                         "seconds": round(pack_s + put_s, 2),
                         "images_per_s": round(args.images / (pack_s + put_s)),
                         "control_entries": after_shards - after_files,
                         "voters_rss_mb": voters_state(c),
                         "snapshot_bytes": snapshot_bytes(c, "node1")}
        log("shards:", out["shards"])

        # One image read each way: an image in the middle of the last shard.
        path, members = shards[-1]
        name = members[len(members) // 2]
        dest = os.path.join(work, "read")

        def get_file():
            c.cli("node1", "get", f"files/{name}", dest, timeout_ms=60000, check=True)

        def get_from_shard():
            c.cli("node1", "get", f"shards/{os.path.basename(path)}", dest, timeout_ms=60000,
                  check=True)
            with tarfile.open(dest) as tf:
                tf.extractfile(name).read()

        def median_ms(fn):
            times = []
            for _ in range(args.reads):
                t0 = time.monotonic()
                fn()
                times.append((time.monotonic() - t0) * 1000)
                os.unlink(dest)
            return round(statistics.median(times), 1)
        out["read_one_image_ms"] = {"file": median_ms(get_file),
                                    "from_shard": median_ms(get_from_shard)}
        log("read one image:", out["read_one_image_ms"])
    finally:
        c.down()
        subprocess.run(["rm", "-rf", work])
        if not args.keep_images:
            subprocess.run(["rm", "-rf", images_root])
    print(json.dumps({"shards": out}, indent=1))


if __name__ == "__main__":
    main()
