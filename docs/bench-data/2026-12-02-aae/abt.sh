#!/bin/bash
# A/B of the tails: before (f1c1e3d, /tmp/kvorum-old) and after (429d633, /tmp/kvorum-new), interleaved.
for i in 1 2 3; do for v in old new; do
/tmp/kvorum-$v bench --workload w,c --keys 20000 --concurrency 1,256 --duration-secs 8 --json abt-$v-$i.json > /dev/null 2>&1
done; done
