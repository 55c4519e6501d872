#!/bin/bash
# usage: ab.sh dir outdir pairs args...
d=$1; out=$2; pairs=$3; shift 3
mkdir -p $out
for i in $(seq 1 $pairs); do
  for v in old new; do
    $d/kvorum-$v bench "$@" --json $out/$v-$i.json > $out/$v-$i.txt 2>&1
  done
done
