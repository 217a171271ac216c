#!/usr/bin/env bash
# Builds the static arm64 agent (CGO_ENABLED=0 GOARCH=arm64) and exercises it
# under user-mode emulation with qemu-aarch64-static (Debian package
# qemu-user-static; called directly, so binfmt_misc is not needed):
#
#   1. edgeagent version        reports linux/arm64
#   2. edgeagent validate       accepts a good flow, rejects a bad one
#   3. edgeagent run            a GetFile -> PutFile flow moves 20 files,
#                               then SIGTERM drains it and it exits 0
#
#   scripts/test-arm64.sh [BINARY]   test BINARY instead of building one
#
# Exits non-zero with a message naming the step on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
fail() { echo "test-arm64: FAIL: $*" >&2; exit 1; }
step() { echo "test-arm64: $* ($((SECONDS - started))s)" >&2; }

qemu=$(command -v qemu-aarch64-static || true)
[[ -n "$qemu" ]] || fail "qemu-aarch64-static not found: install the Debian package qemu-user-static (scripts/setup.sh does)"

work=$(mktemp -d "${TMPDIR:-/tmp}/edgeagent-arm64.XXXXXX")
agent_pid=
cleanup() {
  if [[ -n "$agent_pid" ]] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -KILL "$agent_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- build ------------------------------------------------------------------
GO=$(scripts/ensure-go.sh)
if [[ $# -ge 1 ]]; then
  bin=$1
  [[ -f "$bin" ]] || fail "binary $bin not found"
else
  bin=$work/edgeagent-linux-arm64
  version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 "$GO" build -trimpath \
    -ldflags "-s -w -X main.version=$version" -o "$bin" ./cmd/edgeagent ||
    fail "building the static arm64 agent"
  step "built $(du -h "$bin" | cut -f1) static arm64 binary"
fi
info=$("$GO" version -m "$bin") || fail "$bin is not a Go binary"
grep -qE '^\s+build\s+GOARCH=arm64$' <<<"$info" || fail "$bin is not built for arm64"
grep -qE '^\s+build\s+CGO_ENABLED=0$' <<<"$info" || fail "$bin is not static (CGO_ENABLED=0)"

agent() { "$qemu" "$bin" "$@"; }

# ---- 1. version -------------------------------------------------------------
out=$(agent version 2>&1) || fail "edgeagent version exited non-zero under qemu: $out"
grep -q '^edgeagent ' <<<"$out" || fail "edgeagent version printed no version: $out"
grep -q 'linux/arm64' <<<"$out" || fail "edgeagent version does not report linux/arm64: $out"
for p in GetFile PutFile; do
  grep -q "$p" <<<"$out" || fail "$p is not built in: $out"
done
step "version ok: $(head -n 1 <<<"$out")"

# ---- 2. validate ------------------------------------------------------------
mkdir -p "$work/in" "$work/out" "$work/expect"
cat >"$work/flow.yaml" <<EOF
agent:
  id: arm64-test
  data_dir: $work/data
  log: {level: info, format: text}
  shutdown_timeout: 10s
processors:
  - name: pick-up
    type: GetFile
    schedule: {period: 100ms}
    properties: {input_directory: $work/in, batch_size: 50}
  - name: store
    type: PutFile
    properties: {directory: $work/out, conflict_resolution: fail}
    auto_terminate: [success, failure]
connections:
  - {from: pick-up, relationship: success, to: store}
EOF
out=$(agent validate "$work/flow.yaml" 2>&1) || fail "edgeagent validate rejected a good flow: $out"
sed 's/type: PutFile/type: NoSuchProcessor/' "$work/flow.yaml" >"$work/bad.yaml"
if out=$(agent validate "$work/bad.yaml" 2>&1); then
  fail "edgeagent validate accepted a flow with an unknown processor type: $out"
fi
grep -q 'NoSuchProcessor' <<<"$out" || fail "edgeagent validate did not name the unknown type: $out"
step "validate ok"

# ---- 3. run GetFile -> PutFile, drain on SIGTERM ----------------------------
n=20
for i in $(seq -w 1 "$n"); do
  printf 'reading %s from arm64 %s\n' "$i" "$RANDOM$RANDOM" >"$work/expect/file-$i.txt"
  cp "$work/expect/file-$i.txt" "$work/in/"
done
"$qemu" "$bin" run --config "$work/flow.yaml" 2>"$work/agent.log" &
agent_pid=$!

deadline=$((SECONDS + 60))
while :; do
  count=$(find "$work/out" -type f -name 'file-*.txt' | wc -l)
  ((count >= n)) && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log" >&2; fail "the agent exited early under qemu"; }
  ((SECONDS < deadline)) || { cat "$work/agent.log" >&2; fail "only $count of $n files arrived within 60s"; }
  sleep 0.2
done
step "flow moved $n files"

kill -TERM "$agent_pid"
deadline=$((SECONDS + 30))
while kill -0 "$agent_pid" 2>/dev/null; do
  ((SECONDS < deadline)) || { cat "$work/agent.log" >&2; fail "the agent did not exit within 30s of SIGTERM"; }
  sleep 0.1
done
rc=0
wait "$agent_pid" || rc=$?
agent_pid=
((rc == 0)) || { cat "$work/agent.log" >&2; fail "the agent exited with status $rc after SIGTERM (want 0)"; }
grep -q 'agent stopped' "$work/agent.log" || { cat "$work/agent.log" >&2; fail "no 'agent stopped' in the log: the drain did not finish"; }

for f in "$work"/expect/*; do
  cmp -s "$f" "$work/out/$(basename "$f")" || fail "output $(basename "$f") differs from its input"
done
left=$(find "$work/in" -type f | wc -l)
((left == 0)) || fail "$left input files were not picked up"
extra=$(find "$work/out" -type f | wc -l)
((extra == n)) || fail "$extra output files, want $n"
step "drained and exited 0 on SIGTERM; all $n outputs match their inputs"
echo "test-arm64: ok in $((SECONDS - started))s" >&2
