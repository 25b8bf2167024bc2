#!/usr/bin/env bash
# herd's main job on one machine: three `herd agent` processes (a and b in group media, c in
# group web), the example cluster config pushed through one of them, and `herd status` shown.
# The agents share a cluster key (`herd keygen`): their gossip and messages are encrypted, and an
# agent without the key could not join them.
# Then every agent leaves gracefully. With --keep, the agents stay up until Ctrl-C.
#
#     bash scripts/cluster.sh          # or: bash scripts/cluster.sh --keep
set -euo pipefail
cd "$(dirname "$0")/.."
keep=${1:-}

cargo build --release --quiet
herd=target/release/herd
data=$(mktemp -d)
pids=()
"$herd" keygen > "$data/gossip.key"

stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap stop EXIT

start() { # id gossip-port api-port tags...
  local id=$1 gossip=$2 api=$3; shift 3
  local args=(agent --node-id "$id" --listen "127.0.0.1:$gossip" --api "127.0.0.1:$api"
              --cluster-id cluster-sh --data-dir "$data/$id" --encrypt-key-file "$data/gossip.key")
  [ "$id" = a ] || args+=(--seed 127.0.0.1:17946)
  for tag in "$@"; do args+=(--tag "$tag"); done
  HERD_LOG=warn "$herd" "${args[@]}" &
  pids+=($!)
}

start a 17946 17947 group=media
start b 17948 17949 group=media
start c 17950 17951 group=web
export HERD_API=127.0.0.1:17947

for _ in $(seq 100); do  # up to 10 s for the three to see each other
  [ "$("$herd" members --json 2>/dev/null | grep -c '"id"')" = 3 ] && break
  sleep 0.1
done
"$herd" config push examples/cluster/cluster.toml
for _ in $(seq 100); do  # up to 10 s for the 5 workers (resizer on a and b, sleeper everywhere)
  [ "$("$herd" workers --json | grep -c '"running"')" = 5 ] && break
  sleep 0.1
done
echo
"$herd" status
if [ "$keep" = --keep ]; then
  echo; echo "agents running; try: HERD_API=$HERD_API $herd workers   (Ctrl-C stops them)"
  wait
fi
