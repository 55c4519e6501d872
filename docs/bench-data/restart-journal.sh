#!/bin/bash
# Where a restart's time goes: for each data directory left by restart.sh
# (KEEP=1), three restarts with fjall's debug log, each reporting the time
# to /ready, the journal files' size, and the time fjall took to replay
# it (from the last "Successfully recovered" table line to the first
# "Database seqno is now" line). Run as root to drop the page cache.
# Usage: restart-journal.sh KVORUM_BINARY DIR...
# e.g.   restart-journal.sh target/release/kvorum /tmp/restart-100000 /tmp/restart-10000000
# A directory whose name ends in -full is first made by
#   KVORUM bench --nodes 1 --n 1 --sync periodic --workload a --keys K --ops OPS ...
# (K keys, then updates of them until the journal is nearly full): see
# docs/performance.md, "Restart time and the journal".
set -u
B=$(realpath "$1"); shift
for D in "$@"; do
  jmb=$(( $(cat "$D"/data/n1/db/*.jnl | wc -c) / 1000000 ))
  tables=$(find "$D"/data/n1/db/keyspaces -path '*/tables/*' -type f | wc -l)
  for run in 1 2 3; do
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
    t0=$(date +%s%N)
    (cd "$D" && RUST_LOG=info,fjall=debug,lsm_tree=debug exec "$B" start --config n1.toml) > "$D.journal$run.log" 2>&1 &
    pid=$!
    while ! curl -sf -o /dev/null http://127.0.0.1:9701/ready; do
      sleep 0.01
      if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -gt 300 ]; then echo timeout; break; fi
    done
    ready=$(( ($(date +%s%N) - t0) / 1000000 ))
    replay=$(python3 - "$D.journal$run.log" <<'EOF'
import re, sys, datetime
def ts(line):
    m = re.match(r"\S*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    return datetime.datetime.fromisoformat(m.group(1)) if m else None
last_table = seqno = None
for line in open(sys.argv[1], errors="replace"):
    if "Successfully recovered" in line and seqno is None:
        last_table = ts(line)
    if "Database seqno is now" in line and seqno is None:
        seqno = ts(line)
print(int((seqno - last_table).total_seconds() * 1000) if last_table and seqno else "?")
EOF
)
    echo "dir=$(basename "$D") tables=$tables journal_mb=$jmb run=$run ready_ms=$ready journal_replay_ms=$replay"
    kill -INT $pid; wait $pid
  done
done
