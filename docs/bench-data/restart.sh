#!/bin/bash
# Restart time and memory as the data grows: one node (N = 1, sync periodic)
# loaded with N keys of 100 B by `kvorum bench`, stopped, started again.
# Usage: [KEEP=1] restart.sh KVORUM_BINARY N...   (docs/performance.md, "Start-up")
# e.g.   docs/bench-data/restart.sh target/release/kvorum 100000 1000000 10000000
# Per size: the data directory's size, then three restarts, each with the
# time from `kvorum start` to /ready answering 200 and to
# kvorum_aae_trees_built 1 on /metrics, and the peak and current RSS.
# It uses ports 7701 (node) and 9701 (metrics) and /tmp/restart-N.
set -u
B=$(realpath "$1"); shift
for N in "$@"; do
  D=/tmp/restart-$N
  if [ "${KEEP:-}" = 1 ] && [ -d $D/data ]; then
    # KEEP=1: the data of an earlier run (its first start may build what a
    # newer release keeps beside the data, such as the key index).
    echo "kept data of $D"
  else
  rm -rf $D
  $B bench --nodes 1 --n 1 --sync periodic --workload w --ops $N --value-size 100 \
     --concurrency 64 --dir $D --keep --port 7701 > $D.bench.txt 2>&1 || { echo "bench failed $N"; tail $D.bench.txt; continue; }
  fi
  du -sm $D/data | awk '{print "data MiB", $1}'
  for run in 1 2 3; do
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
    t0=$(date +%s%N)
    (cd $D && exec $B start --config n1.toml) > $D.start$run.log 2>&1 &
    pid=$!
    ready=""; built=""
    while true; do
      if [ -z "$ready" ] && curl -sf -o /dev/null http://127.0.0.1:9701/ready; then now=$(date +%s%N); ready=$(( (now - t0)/1000000 )); fi
      if [ -n "$ready" ] && curl -s http://127.0.0.1:9701/metrics | grep -qE '^kvorum_aae_trees_built(\{[^}]*\})? 1'; then now=$(date +%s%N); built=$(( (now - t0)/1000000 )); break; fi
      now=$(date +%s%N)
      if [ $(( (now - t0)/1000000000 )) -gt 900 ]; then echo timeout; break; fi
      sleep 0.02
    done
    hwm=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
    rss=$(grep VmRSS /proc/$pid/status | awk '{print $2}')
    echo "keys=$N run=$run ready_ms=$ready trees_built_ms=$built peak_rss_kib=$hwm rss_kib=$rss"
    kill -INT $pid; wait $pid
  done
done
