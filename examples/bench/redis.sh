#!/usr/bin/env bash
# What a user would pick instead of Kvorum, measured on the same machine:
# Redis as a primary with two replicas on loopback, driven by
# redis-benchmark with the same value size and concurrency as `kvorum bench`.
#
#   examples/bench/redis.sh [value_bytes] [concurrency] [requests]
#   (defaults: 100 64 200000)
#
# Two durability settings are measured, each with SET then GET:
#   default  - Redis's defaults: RDB snapshots, no fsync per write; a write
#              is acknowledged by the primary before the replicas have it
#              (asynchronous replication).
#   aof      - appendonly yes, appendfsync always: the primary fsyncs its
#              log before answering (one fsync per event-loop pass, shared by
#              the writes of that pass); replication is still asynchronous.
# Kvorum's W=2 waits for two replicas, which neither setting does.
#
# Installs redis-server and redis-tools from Debian when they are missing
# (sudo when not root). Every redis-server it starts is stopped on exit.
set -euo pipefail

value=${1:-100}
concurrency=${2:-64}
requests=${3:-200000}
port=${REDIS_BENCH_PORT:-16379}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    $sudo apt-get install -y -q redis-server redis-tools
fi

dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

start() { # mode
    local mode=$1
    local extra=()
    if [ "$mode" = aof ]; then extra=(--appendonly yes --appendfsync always); fi
    for i in 0 1 2; do
        local p=$((port + i))
        mkdir -p "$dir/$mode-$i"
        local args=(--port "$p" --bind 127.0.0.1 --dir "$dir/$mode-$i" --save "" --daemonize no
            --protected-mode yes --logfile "$dir/$mode-$i.log" "${extra[@]}")
        if [ "$mode" = default ]; then args+=(--save "3600 1 300 100 60 10000"); fi
        if [ "$i" -gt 0 ]; then args+=(--replicaof 127.0.0.1 "$port"); fi
        redis-server "${args[@]}" &
        pids+=($!)
    done
    for _ in $(seq 1 100); do
        if redis-cli -p "$port" info replication 2>/dev/null | grep -q '^connected_slaves:2'; then
            return 0
        fi
        sleep 0.1
    done
    echo "replicas did not connect" >&2
    exit 1
}

stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

echo "# redis $(redis-server --version | awk '{print $3}'), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "# value ${value} B, ${concurrency} clients, ${requests} requests, keys: 10000 random"
for mode in default aof; do
    start "$mode"
    cpu0=$(for p in "${pids[@]}"; do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s}')
    echo "mode=$mode"
    redis-benchmark -p "$port" -t set,get -d "$value" -c "$concurrency" -n "$requests" \
        -r 10000 --csv -q
    cpu1=$(for p in "${pids[@]}"; do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s}')
    # USER_HZ is 100: ticks / 100 = seconds.
    echo "server CPU (3 processes, both tests): $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", (b - a) / 100}') s for $((2 * requests)) requests"
    stop
done
