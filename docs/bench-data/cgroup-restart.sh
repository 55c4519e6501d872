#!/bin/bash
# A node holding more data than the memory it is allowed restarts and
# serves (issue 27): the data directory of `restart.sh` (one node, N keys
# of 100 B, /tmp/restart-N), started again inside a cgroup (v1 memory
# controller, as root) whose limit is the data's size divided by RATIO.
# Usage: cgroup-restart.sh KVORUM_BINARY N RATIO   (docs/performance.md)
# e.g.   docs/bench-data/cgroup-restart.sh target/release/kvorum 10000000 4
# Prints the limit, the time to /ready and to kvorum_aae_trees_built 1, the
# cgroup's peak usage (page cache included, which the kernel reclaims under
# the limit), how often the limit was hit, whether the kernel killed the
# node, and a read of a loaded key through the CLI (the data directory
# holds the dev certificates `kvorum bench` made).
set -u
B=$(realpath "$1"); N=$2; RATIO=$3
D=/tmp/restart-$N
[ -d $D/data ] || { echo "no data in $D: run restart.sh $1 $N first"; exit 1; }
CG=/sys/fs/cgroup/memory/kvorum-restart
data_bytes=$(du -sb $D/data | awk '{print $1}')
limit=$(( data_bytes / RATIO ))
mkdir -p $CG
echo $limit > $CG/memory.limit_in_bytes
echo 0 > $CG/memory.max_usage_in_bytes 2>/dev/null
echo 0 > $CG/memory.failcnt 2>/dev/null
echo "data_bytes=$data_bytes limit_bytes=$limit (1/$RATIO)"
sync; echo 3 > /proc/sys/vm/drop_caches
t0=$(date +%s%N)
(cd $D && echo $BASHPID > $CG/cgroup.procs && exec $B start --config n1.toml) > $D.cgroup.log 2>&1 &
pid=$!
ready=""; built=""
while kill -0 $pid 2>/dev/null; do
  if [ -z "$ready" ] && curl -sf -o /dev/null http://127.0.0.1:9701/ready; then ready=$(( ($(date +%s%N) - t0)/1000000 )); fi
  if [ -n "$ready" ] && curl -s http://127.0.0.1:9701/metrics | grep -qE '^kvorum_aae_trees_built(\{[^}]*\})? 1'; then built=$(( ($(date +%s%N) - t0)/1000000 )); break; fi
  [ $(( ($(date +%s%N) - t0)/1000000000 )) -gt 900 ] && { echo timeout; break; }
  sleep 0.05
done
alive=no; kill -0 $pid 2>/dev/null && alive=yes
echo "ready_ms=$ready trees_built_ms=$built alive=$alive"
echo "peak_usage_bytes=$(cat $CG/memory.max_usage_in_bytes) limit_hits=$(cat $CG/memory.failcnt) oom_kills=$(grep -E '^oom_kill ' $CG/memory.oom_control | awk '{print $2}')"
grep -E 'VmHWM|VmRSS' /proc/$pid/status 2>/dev/null | tr '\n' ' '; echo
# Reads of 20 keys the bench wrote (its write workload draws them from the
# upper part of its key space; user000005000000 on, at 10 M keys).
found=0
for i in $(seq 0 19); do
  k=$(printf 'user%012d' $(( N / 2 + i )))
  first=$(cd $D && $B get bench $k --nodes 127.0.0.1:7701 --dev-dir . 2>/dev/null | head -1)
  [ -n "$first" ] && [ "$first" != "not found" ] && found=$((found+1))
done
echo "reads: $found of 20 keys found"
kill -INT $pid 2>/dev/null; wait $pid
rmdir $CG 2>/dev/null || true
