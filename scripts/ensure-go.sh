#!/usr/bin/env bash
# Prints the path of a Go toolchain new enough for this module (>= 1.25),
# installing Go 1.26.8 from the Go module proxy into the cache when the
# machine has none. Idempotent; prints nothing else on stdout.
set -euo pipefail
want_minor=25
version=1.26.8
cache="${EDGEAGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeagent}"

ok() { # $1: go binary
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  [[ ${v%%.*} -gt 1 || $(echo "$v" | cut -d. -f2) -ge $want_minor ]]
}

for g in "$(command -v go || true)" /usr/local/go/bin/go "$cache/go$version/go/bin/go"; do
  if [[ -n "$g" && -x "$g" ]] && ok "$g"; then echo "$g"; exit 0; fi
done

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "ensure-go: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
dest="$cache/go$version"
mkdir -p "$dest"
url="https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$version.linux-$arch.zip"
echo "ensure-go: downloading Go $version from $url" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -sSfL -o "$tmp/go.zip" "$url"
command -v unzip >/dev/null || { echo "ensure-go: unzip is needed (apt-get install unzip)" >&2; exit 1; }
unzip -q "$tmp/go.zip" -d "$tmp/x"
# The toolchain module unpacks as golang.org/toolchain@.../{bin,pkg,src}.
rm -rf "$dest/go"
mv "$tmp"/x/golang.org/toolchain@*/ "$dest/go"
chmod +x "$dest/go/bin/"* "$dest/go/pkg/tool/"*/* 2>/dev/null || true
echo "$dest/go/bin/go"
