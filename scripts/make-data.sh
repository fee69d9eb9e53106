#!/usr/bin/env bash
# make-data.sh — demo data sets from real photos that Debian packages ship
# (scikit-image's data/ and scikit-learn's datasets/images/), taken with
# `apt-get download` + `dpkg -x`, never installed; and a rendered set whose
# right answers are known, for the pretrained text direction model.
#
#   scripts/make-data.sh [--per-set N] [--out DIR]   data/flowers, data/cats_and_dogs (N images each, default 40)
#                                                      and data/text_direction (200 lines, tools/text_lines.py)
#   scripts/make-data.sh --synthetic N DIR           N images for load tests in DIR
#   scripts/make-data.sh --text-lines N DIR          N text lines in DIR, half turned 180° (up_*.png / down_*.png)
#   ... --max-side PX                                  scale images down to at most PX on their longer side
#                                                      (small inputs for the tiny model's dispatch benchmarks)
#
# Sets are made of crops, flips and rescales of the photos, written as JPEG and
# PNG, deterministically (the same files on every run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.deps/photos"
out="$root/data"
per_set=40
synthetic=0; syn_dir=""; max_side=0; text_lines=0; text_dir=""
while [ $# -gt 0 ]; do
  case $1 in
    --per-set) per_set=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --max-side) max_side=$2; shift 2 ;;
    --synthetic) synthetic=$2; syn_dir=${3:?usage: --synthetic N DIR}; shift 3 ;;
    --text-lines) text_lines=$2; text_dir=${3:?usage: --text-lines N DIR}; shift 3 ;;
    -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "make-data: unknown option $1" >&2; exit 1 ;;
  esac
done

# Rendered, no photos needed.
if [ "$text_lines" -gt 0 ]; then
  exec /usr/bin/python3 "$root/tools/text_lines.py" "$text_lines" "$text_dir"
fi

if [ ! -f "$cache/.done" ]; then
  echo "make-data: fetching the photo packages (python3-skimage, python3-sklearn)" >&2
  rm -rf "$cache"; mkdir -p "$cache/debs" "$cache/x"
  (cd "$cache/debs" && apt-get download python3-skimage python3-sklearn >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$cache/debs" && apt-get download python3-skimage python3-sklearn); }
  for d in "$cache"/debs/*.deb; do dpkg -x "$d" "$cache/x"; done
  mkdir -p "$cache/photos"
  for f in chelsea.png astronaut.png coffee.png rocket.jpg motorcycle_left.png horse.png \
           hubble_deep_field.jpg retina.jpg immunohistochemistry.png; do
    p=$(find "$cache/x" -path "*skimage/data/$f" | head -1)
    [ -n "$p" ] && cp "$p" "$cache/photos/"
  done
  find "$cache/x" -path '*datasets/images/*.jpg' -exec cp {} "$cache/photos/" \;
  # A truncated JPEG ships there too: handy for failure tests.
  p=$(find "$cache/x" -path '*skimage/data/truncated.jpg' | head -1); [ -n "$p" ] && cp "$p" "$cache/truncated.jpg"
  rm -rf "$cache/x" "$cache/debs"
  touch "$cache/.done"
fi

/usr/bin/python3 - "$cache/photos" "$out" "$per_set" "$synthetic" "$syn_dir" "$max_side" <<'PY'
import os, random, sys
from PIL import Image, ImageOps
photos, out, per_set, synthetic, syn_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
max_side = int(sys.argv[6])
sets = {
    "flowers": ["flower.jpg", "china.jpg", "coffee.png", "retina.jpg"],
    "cats_and_dogs": ["chelsea.png", "astronaut.png", "horse.png", "motorcycle_left.png"],
}
def load(name):
    return Image.open(os.path.join(photos, name)).convert("RGB")
def variant(img, r):
    w, h = img.size
    s = r.uniform(0.6, 1.0)
    cw, ch = int(w * s), int(h * s)
    x, y = r.randint(0, w - cw), r.randint(0, h - ch)
    v = img.crop((x, y, x + cw, y + ch))
    if r.random() < 0.5:
        v = ImageOps.mirror(v)
    scale = r.uniform(0.5, 1.2)
    size = (max(32, int(cw * scale)), max(32, int(ch * scale)))
    if max_side and max(size) > max_side:
        k = max_side / max(size)
        size = (max(8, int(size[0] * k)), max(8, int(size[1] * k)))
    return v.resize(size, Image.BILINEAR)
def write(img, path, r):
    if path.endswith(".png"):
        img.save(path, optimize=False)
    else:
        img.save(path, quality=r.randint(80, 95))
def make(dirpath, names, n, seed):
    os.makedirs(dirpath, exist_ok=True)
    r = random.Random(seed)
    imgs = [load(x) for x in names if os.path.exists(os.path.join(photos, x))]
    for i in range(n):
        ext = "png" if i % 5 == 4 else "jpg"
        write(variant(imgs[i % len(imgs)], r), os.path.join(dirpath, "img%04d.%s" % (i, ext)), r)
    print("make-data: %s: %d images" % (dirpath, n), file=sys.stderr)
if synthetic:
    make(syn_dir, sum(sets.values(), []), synthetic, 99)
else:
    for k, (name, files) in enumerate(sorted(sets.items())):
        make(os.path.join(out, name), files, per_set, k + 1)
PY
[ "$synthetic" -gt 0 ] || /usr/bin/python3 "$root/tools/text_lines.py" 200 "$out/text_direction"
