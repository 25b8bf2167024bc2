#!/bin/bash
# Idle cost of encryption, measured side by side: two 10-agent clusters on loopback at the same
# time, one plain and one with --encrypt-key-file, 10 sleep workers per agent, idle; prints the
# total agent CPU of each over the same window (default 60 s) and their mean RSS. Needs a release
# build (cargo build --release) and curl.
#     bash scripts/bench-idle-encryption.sh [SECONDS]
cd "$(dirname "$0")/.."
H=target/release/herd
D=$(mktemp -d); $H keygen > $D/key
start() { # cluster base enc
  local c=$1 base=$2 enc=$3
  for i in $(seq 0 9); do
    p=$((base+i*2)); a=$((base+1+i*2)); seed=""; [ $i -gt 0 ] && seed="--seed 127.0.0.1:$base"
    extra=""; [ $enc = 1 ] && extra="--encrypt-key-file $D/key"
    HERD_LOG=warn $H agent --node-id $c$i --listen 127.0.0.1:$p --api 127.0.0.1:$a --cluster-id $c --data-dir $D/$c$i $extra $seed 2>/dev/null &
    echo $! >> $D/$c.pids
  done
}
start plain 28000 0; start sealed 29000 1
sleep 6
cfg='{"toml":"[[worker]]\nname = \"s1\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s2\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s3\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s4\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s5\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s6\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s7\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s8\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s9\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n[[worker]]\nname = \"s10\"\ncommand = \"sleep\"\nargs = [\"3600\"]\n"}'
curl -s -X PUT -H 'Content-Type: application/json' -d "$cfg" 127.0.0.1:28001/v1/config >/dev/null
curl -s -X PUT -H 'Content-Type: application/json' -d "$cfg" 127.0.0.1:29001/v1/config >/dev/null
sleep 5
ticks() { local t=0; for p in $(cat $D/$1.pids); do s=$(awk '{print $14+$15}' /proc/$p/stat); t=$((t+s)); done; echo $t; }
rss() { local t=0; for p in $(cat $D/$1.pids); do s=$(awk '/VmRSS/{print $2}' /proc/$p/status); t=$((t+s)); done; echo $((t/10)); }
p0=$(ticks plain); s0=$(ticks sealed)
sleep ${1:-60}
p1=$(ticks plain); s1=$(ticks sealed)
echo "over ${1:-60} s: plain cluster $((p1-p0)) ticks, sealed cluster $((s1-s0)) ticks (10 ms each, 10 agents each); per agent: plain $(echo "scale=3; ($p1-$p0)/10/${1:-60}" | bc)% sealed $(echo "scale=3; ($s1-$s0)/10/${1:-60}" | bc)% of a core; RSS per agent plain $(rss plain) KiB sealed $(rss sealed) KiB"
kill $(cat $D/plain.pids $D/sealed.pids); sleep 3; rm -rf $D
