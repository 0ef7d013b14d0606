#!/usr/bin/env bash
# Installs every Debian package winnow needs to build, test and run.
# Idempotent and quiet: does nothing when everything is present; otherwise one
# `apt-get update` and one `apt-get install -y`. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  zlib1g-dev librdkafka-dev libzstd-dev libyaml-dev libjansson-dev libmicrohttpd-dev
  libopenblas-dev libopenblas0-pthread
  check kcat unicode-data zstd
  python3-torch python3-numpy python3-zstandard python3-tqdm python3-matplotlib
  nodejs npm
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

# node/npm usually come with the machine image; do not reinstall them from
# Debian when a node is already on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
  ((${#missing[@]} == 0)) && exit 0
fi

sudo=()
((EUID == 0)) || sudo=(sudo)
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
