#!/usr/bin/env bash
# Prepares an arm64 Debian sysroot for cross-compiling the full agent (cgo:
# GoCV against OpenCV 4.6, onnxruntime_go) with Debian's aarch64 toolchain
# (make build-jetson):
#
#   scripts/jetson-sysroot.sh [DIR]     default DIR: .cache/sysroot-arm64
#
# How: debootstrap --foreign --arch=arm64 --variant=minbase downloads Debian
# bookworm arm64 with libopencv-dev (and its dependencies) and checks the
# archive's signatures with debian-archive-keyring; then every downloaded
# package is unpacked with dpkg-deb -x. Nothing arm64 is executed, so no
# binfmt_misc registration and no emulated maintainer scripts are needed.
# What the maintainer scripts would have done and a sysroot needs is fixed up
# afterwards: absolute symlinks are made relative (so they resolve inside the
# sysroot, never on the host), and libraries that update-alternatives would
# have linked into place (libblas.so.3, liblapack.so.3) get their link.
#
# Idempotent: a sysroot made from the same suite and package list is kept
# (delete DIR, or set SYSROOT_FORCE=1, to rebuild). The new sysroot is built
# beside DIR and moved into place only when complete. Needs root for
# debootstrap (uses sudo otherwise) and about 2.5 GiB of disk while it runs
# (1.2 GiB after); takes 2-3 minutes, mostly downloading and unpacking.
#
# Settings (environment): SYSROOT_SUITE (bookworm), SYSROOT_MIRROR
# (http://deb.debian.org/debian), SYSROOT_PACKAGES (extra packages, comma-
# separated), SYSROOT_FORCE=1.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-.cache/sysroot-arm64}
suite=${SYSROOT_SUITE:-bookworm}
mirror=${SYSROOT_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
# libopencv-dev: the OpenCV 4.6 headers, libraries and opencv4.pc that GoCV
# v0.32 builds against; libc6-dev and libstdc++-12-dev: what the aarch64
# gcc/g++ 12 link against (crt files, libc, libstdc++).
packages="libc6-dev,libstdc++-12-dev,libopencv-dev${SYSROOT_PACKAGES:+,$SYSROOT_PACKAGES}"
started=$SECONDS

log() { echo "jetson-sysroot: $* ($((SECONDS - started))s)" >&2; }
fail() { echo "jetson-sysroot: FAIL: $*" >&2; exit 1; }

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"

# ---- host tools --------------------------------------------------------------
tools=(debootstrap debian-archive-keyring gcc-aarch64-linux-gnu g++-aarch64-linux-gnu pkg-config binutils qemu-user-static)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || true
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="suite=$suite packages=$packages"
if [[ -f "$dir/.edgeagent-sysroot" && "$(head -n 1 "$dir/.edgeagent-sysroot")" == "$stamp" && -z "${SYSROOT_FORCE:-}" ]]; then
  log "$dir is up to date ($stamp)"
  exit 0
fi

# ---- download and unpack -----------------------------------------------------
mkdir -p "$(dirname "$dir")"
tmp="$dir.tmp"
$sudo rm -rf "$tmp"
trap '$sudo rm -rf "$tmp"' EXIT
log "debootstrap $suite arm64 (minbase + $packages) from $mirror"
$sudo debootstrap --foreign --arch=arm64 --variant=minbase --keyring="$keyring" \
  --include="$packages" "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 ||
  { tail -n 30 "$tmp.log" >&2; fail "debootstrap failed (log: $tmp.log)"; }
rm -f "$tmp.log"
debs=("$tmp"/var/cache/apt/archives/*.deb)
((${#debs[@]} > 10)) || fail "debootstrap downloaded no packages"
log "unpacking ${#debs[@]} packages"
for deb in "${debs[@]}"; do
  $sudo dpkg-deb -x "$deb" "$tmp" || fail "unpacking $(basename "$deb")"
done
$sudo chown -R "$(id -u):$(id -g)" "$tmp"
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp/debootstrap"

# ---- fix-ups -----------------------------------------------------------------
# Absolute symlinks point at the host when seen from outside the sysroot:
# rewrite each relative to its own directory.
n=0
while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  [[ $target == /* ]] || continue
  rel=$(realpath -m -s --relative-to="$(dirname "$link")" "$tmp$target")
  ln -sfn "$rel" "$link"
  n=$((n + 1))
done < <(find "$tmp" -type l -print0)
log "made $n absolute symlinks relative"

# Libraries installed through update-alternatives (BLAS, LAPACK) live in a
# subdirectory; link each soname that some library needs and that is only
# found in such a subdirectory into the library directory. (The sysroot
# keeps /lib and /usr/lib apart, as the unpacked packages have them; the
# toolchain searches both.)
libdir="$tmp/usr/lib/aarch64-linux-gnu"
libdirs=("$tmp/lib/aarch64-linux-gnu" "$libdir")
declare -A have=()
for f in "$tmp"/lib/aarch64-linux-gnu/*.so* "$libdir"/*.so* "$tmp"/usr/lib/*.so*; do
  [[ -e "$f" ]] && have[$(basename "$f")]=1
done
declare -A need=()
while IFS= read -r -d '' lib; do
  while read -r soname; do
    need[$soname]=1
  done < <(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done < <(find "${libdirs[@]}" -maxdepth 1 -name '*.so*' -type f -print0)
n=0
for soname in "${!need[@]}"; do
  [[ -n "${have[$soname]:-}" ]] && continue
  found=$(find "$libdir" -mindepth 2 -name "$soname" | sort | head -n 1)
  if [[ -n "$found" ]]; then
    ln -sfn "${found#"$libdir"/}" "$libdir/$soname"
    n=$((n + 1))
  else
    fail "no file in the sysroot for the needed library $soname"
  fi
done
log "linked $n alternative libraries"

# ---- check -------------------------------------------------------------------
pc() {
  PKG_CONFIG_PATH="" PKG_CONFIG_SYSROOT_DIR="$tmp" \
    PKG_CONFIG_LIBDIR="$libdir/pkgconfig:$tmp/usr/share/pkgconfig" pkg-config "$@"
}
ocv=$(pc --modversion opencv4) || fail "pkg-config finds no opencv4 in the sysroot"
cat >"$tmp/check.cpp" <<'EOF'
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
int main() { cv::Mat m(2, 2, CV_8UC3); cv::resize(m, m, cv::Size(4, 4)); return m.cols == 4 ? 0 : 1; }
EOF
# shellcheck disable=SC2046
aarch64-linux-gnu-g++ --sysroot="$tmp" -o "$tmp/check" "$tmp/check.cpp" $(pc --cflags --libs opencv4) \
  -Wl,-rpath-link,"$tmp/lib/aarch64-linux-gnu:$libdir" || fail "a test program does not link against OpenCV in the sysroot"
qemu-aarch64-static -L "$tmp" "$tmp/check" || fail "the test program does not run under qemu-aarch64-static"
rm -f "$tmp/check" "$tmp/check.cpp"

printf '%s\ncreated %s by scripts/jetson-sysroot.sh\nopencv4 %s\n' "$stamp" "$(date -u +%FT%TZ)" "$ocv" >"$tmp/.edgeagent-sysroot"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
log "ok: $dir ($(du -sh "$dir" | cut -f1), OpenCV $ocv)"
