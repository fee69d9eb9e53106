#!/usr/bin/env bash
# Inference engine against ONNX Runtime driven from Node (onnxruntime-node), in one
# run, on the same .onnx files, threads and batch sizes. Prints JSON.
#   bench/infer_bench.sh [SECONDS=5] [ROUNDS=3]  (whole batches: short runs quantise the figure)
# This host's speed drifts by ±10% from one run to the next, so each
# configuration is measured ROUNDS times, the two runtimes alternating; a
# figure is the median over the rounds of the ratio within a round (runs
# seconds apart, so drift cancels). INFER_BENCH_ONLY=MODEL[:THREADS[:BATCH]]
# measures only the matching configurations (to add rounds to one of them).
# Model-only: pre-made tensors, both sides. End-to-end: our path from JPEG/PNG
# files (decoding overlapped with inference), against the reference's model-only
# figure. RSS: both models loaded in one process.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-5}; rounds=${2:-3}
make -s models bench-bin >/dev/null
[ -d data/flowers ] || scripts/make-data.sh >/dev/null
if [ ! -d .deps/node/node_modules/onnxruntime-node ]; then
  mkdir -p .deps/node
  (cd .deps/node && npm install --silent --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0 >/dev/null)
fi
export NODE_PATH=$root/.deps/node/node_modules
# The end-to-end set: the flowers photos, JPEG only.
e2e_dir=$(mktemp -d); trap 'rm -rf "$e2e_dir"' EXIT
cp data/flowers/*.jpg "$e2e_dir/"
b=build/bin/infer_bench
rows=()
for model in resnet50 inception_v3; do
  for threads in 1 2; do
    for batch in 1 8; do
      case "$model:$threads:$batch" in "${INFER_BENCH_ONLY:-}"*) ;; *) continue ;; esac
      for _ in $(seq "$rounds"); do
        c=$($b model "models/$model.onnx" "$threads" "$batch" "$secs")
        n=$(node bench/infer_ref.js "models/$model.onnx" "$threads" "$batch" "$secs")
        e=$($b e2e "models/$model.onnx" "$threads" "$batch" "$secs" "$e2e_dir")
        rows+=("{\"c\": $c, \"node\": $n, \"e2e\": $e}")
      done
    done
  done
done
rss=$($b rss models/resnet50.onnx models/inception_v3.onnx)
{
  printf '{"load_before": %s, "rows": [' "$(cut -d' ' -f1 /proc/loadavg)"
  (IFS=,; printf '%s' "${rows[*]}")
  printf '], "rss": %s}\n' "$rss"
} | /usr/bin/python3 -c '
import json, statistics, sys
d = json.load(sys.stdin)
out = {"load_before": d["load_before"], "configs": [], "rss": d["rss"]}
groups = {}
for r in d["rows"]:
    c = r["c"]
    groups.setdefault((c["model"], c["threads"], c["batch"]), []).append(r)
med = lambda xs: round(statistics.median(xs), 3)
for (model, threads, batch), rs in groups.items():
    c = [r["c"]["images_per_s"] for r in rs]
    n = [r["node"]["images_per_s"] for r in rs]
    e = [r["e2e"]["images_per_s"] for r in rs]
    out["configs"].append({"model": model, "threads": threads, "batch": batch, "rounds": len(rs),
        "c_model_only_ips": c, "node_model_only_ips": n, "c_end_to_end_ips": e,
        "model_only_ratio": med([x / y for x, y in zip(c, n)]),
        "end_to_end_ratio": med([x / y for x, y in zip(e, n)])})
out["targets"] = {"model_only_ratio": ">= 0.98", "end_to_end_ratio": ">= 0.90", "rss_mb_both_loaded": "<= 700"}
json.dump(out, sys.stdout, indent=1); print()'
