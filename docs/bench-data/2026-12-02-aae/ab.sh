#!/bin/bash
# A/B on 429d633: load generator runtime threads 2 (default) vs 1, w at 64 in flight with the baseline.
for i in 1 2 3 4 5 6; do for t in 2 1; do
/work/main/target/release/kvorum --worker-threads $t bench --workload w --keys 2000 --concurrency 64 --baseline --duration-secs 8 --json ab2-lg$t-$i.json > /dev/null 2>&1
done; done
