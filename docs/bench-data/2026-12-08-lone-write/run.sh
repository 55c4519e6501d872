#!/bin/bash
# Where a node's CPU goes per write, by thread, at 1 and at 64 in flight:
# docs/bench-data/2026-12-08-lone-write/run.sh BINARY OUTDIR RUNS
# Each run: `kvorum bench --workload w` for 16 s (after 2 s of warm-up); from
# its 6th second, 10 s of per-thread CPU and context switches of the three
# node processes (threads.py) and the UDP datagrams the host sent.
set -eu
bin=$1; out=$2; runs=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
for c in 1 64; do
  for i in $(seq 1 "$runs"); do
    python3 "$here/threads.py" 10 6 > "$out/threads-c$c-$i.txt" 2>&1 &
    sampler=$!
    ( sleep 8; a=$(awk '/^Udp:/ && $2 ~ /^[0-9]/ {print $5}' /proc/net/snmp); sleep 10; \
      b=$(awk '/^Udp:/ && $2 ~ /^[0-9]/ {print $5}' /proc/net/snmp); echo "udp out datagrams in 10 s: $((b-a))" ) > "$out/udp-c$c-$i.txt" &
    "$bin" bench --workload w --keys 20000 --concurrency "$c" --duration-secs 16 --warmup-secs 2 > "$out/bench-c$c-$i.txt" 2>&1
    wait
  done
done
