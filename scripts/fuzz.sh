#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders that meet bytes from outside (src/fuzzing.rs), with
# cargo fuzz (libFuzzer); not part of CI.
#
#     bash scripts/fuzz.sh                 # every target for 600 s each, one after another
#     bash scripts/fuzz.sh 120 rpc_frame   # one target for 120 s
#
# Targets: rpc_frame rpc_handshake gossip_datagram cluster_config agent_file jsonl_reply.
# Installs cargo-fuzz when missing; runs on the stable toolchain (RUSTC_BOOTSTRAP=1 lets it pass
# the -Z flags libFuzzer's instrumentation needs). Corpora grow in fuzz/corpus/TARGET, crashes
# land in fuzz/artifacts/TARGET; each is kept as a regression test once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rpc_frame rpc_handshake gossip_datagram cluster_config agent_file jsonl_reply)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  status=ok
  cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 2>&1 | tee "$log" | grep -E "^#[0-9]+.*(DONE|pulse)|SUMMARY|panicked" || status=crash
  runs=$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  grep -q "SUMMARY\|panicked\|deadly signal" "$log" && status=crash
  summary+=("$target: ${seconds}s, ${runs:-0} runs, $status")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
