#!/usr/bin/env bash
# How a cluster's cost grows (docs/performance.md, "How cost grows"): the
# measurements into RESULTS_DIR, then the plots into docs/.
#
#   examples/bench/growth.sh [RESULTS_DIR] [RUNS] [KEYS...]
#   (defaults: growth-results 3 10000 100000 1000000 10000000)
#
# - nodes-<n>-<run>.json: 3, 5 and 7 nodes at N = 3, writes (w) and reads
#   (c) at 64 in flight with the transport baseline; the sizes alternate
#   within each run. On one 2-core machine this measures what each node
#   costs, not scale-out.
# - value-<run>.json and redis-<bytes>-<run>.txt: writes and reads of
#   100 B to 1 MiB at 16 in flight (1,000 keys loaded at each size), then
#   Redis (a primary and 2 replicas, examples/bench/redis.sh) at the same
#   sizes and concurrency, in the same run. Not 64: 64 MiB in flight at
#   1 MiB values queue past the client's 5 s timeout.
# - keys-<keys>.json: one cluster loaded with <keys> keys of 100 B (every
#   node holds every key: N = 3 of 3 nodes), then RUNS passes of reads and
#   writes at 64 in flight, alternated, on the same data. 10 M keys take
#   about 15 minutes to load on 2 cores and 8 GB of disk.
#
# STEPS="nodes values keys" (the default) picks the sweeps to run.
# Uses the release build in ${CARGO_TARGET_DIR:-target} (KVORUM=path to
# use another binary); the plots need matplotlib (plot.py installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-growth-results}
runs=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
keys=("$@")
[ ${#keys[@]} -gt 0 ] || keys=(10000 100000 1000000 10000000)
mkdir -p "$out"
kvorum=${KVORUM:-${CARGO_TARGET_DIR:-target}/release/kvorum}
[ -x "$kvorum" ] || cargo build --release -p kvorum-node --bin kvorum
sizes=(100 1024 10240 102400 1048576)
redis_requests() { # value bytes -> requests (bounded bytes per run)
    case $1 in 100 | 1024) echo 200000 ;; 10240) echo 50000 ;; 102400) echo 10000 ;; *) echo 2000 ;; esac
}
stamp() { echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) $*" | tee -a "$out/log.txt"; }

steps=${STEPS:-nodes values keys}
has() { [[ " $steps " == *" $1 "* ]]; }
for run in $(seq 1 "$runs"); do
    has nodes || break
    for n in 3 5 7; do
        stamp "nodes $n run $run"
        "$kvorum" bench --nodes "$n" --workload w,c --keys 20000 --concurrency 64 \
            --baseline --duration-secs 8 --json "$out/nodes-$n-$run.json" > "$out/nodes-$n-$run.txt" 2>&1
    done
done
for run in $(seq 1 "$runs"); do
    has values || break
    stamp "values run $run"
    "$kvorum" bench --workload w,c --keys 1000 --value-size "$(IFS=,; echo "${sizes[*]}")" \
        --concurrency 16 --duration-secs 8 --json "$out/value-$run.json" > "$out/value-$run.txt" 2>&1
    for size in "${sizes[@]}"; do
        stamp "redis $size run $run"
        examples/bench/redis.sh "$size" 16 "$(redis_requests "$size")" > "$out/redis-$size-$run.txt" 2>&1
    done
done
passes=$(for _ in $(seq 1 "$runs"); do printf 'c,w,'; done)
for k in "${keys[@]}"; do
    has keys || break
    stamp "keys $k"
    "$kvorum" bench --workload "${passes%,}" --keys "$k" --concurrency 64 --baseline \
        --duration-secs 8 --json "$out/keys-$k.json" > "$out/keys-$k.txt" 2>&1
done
stamp done
python3 examples/bench/plot.py "$out" docs
