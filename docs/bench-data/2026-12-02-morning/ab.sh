#!/bin/bash
# usage: ab.sh outdir pairs args...
out=$1; pairs=$2; shift 2
for i in $(seq 1 $pairs); do
  for v in old new; do
    /tmp/b0/kvorum-$v bench "$@" --json $out/$v-$i.json > $out/$v-$i.txt 2>&1
  done
done
