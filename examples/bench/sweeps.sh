#!/usr/bin/env bash
# The measurements behind docs/performance.md's plots, into RESULTS_DIR
# (default: bench-results), then the plots into docs/:
#
#   examples/bench/sweeps.sh [RESULTS_DIR] [RUNS (default 3)]
#
# - concurrency-<run>.json: writes (w) and reads (c) at 1..256 in flight,
#   100-byte values, with the transport baseline, default sync policy
# - aae-<keys>-<run>.txt: anti-entropy exchange cost at 10k .. 1M keys
# Value sizes (against Redis), data sizes and cluster sizes are measured by
# examples/bench/growth.sh.
# Takes about 4 minutes per run on 2 cores (plus the build).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-bench-results}
runs=${2:-3}
mkdir -p "$out"
cargo build --release --bin kvorum --example aae_exchange_cost -p kvorum-node
target=${CARGO_TARGET_DIR:-target}
kvorum="$target/release/kvorum"
for run in $(seq 1 "$runs"); do
    uptime | tee "$out/uptime-$run.txt"
    "$kvorum" bench --workload w,c --keys 20000 --concurrency 1,4,16,64,256 \
        --baseline --duration-secs 10 --json "$out/concurrency-$run.json"
    for keys in 10000 100000 1000000; do
        "$target/release/examples/aae_exchange_cost" "$keys" 5 > "$out/aae-$keys-$run.txt"
    done
done
python3 examples/bench/plot.py "$out" docs
