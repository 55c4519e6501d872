#!/usr/bin/env python3
"""Plots of how Kvorum's cost grows (docs/performance.md), from the results
that examples/bench/sweeps.sh leaves in a directory:

    python3 examples/bench/plot.py RESULTS_DIR [OUT_DIR (default: docs)]

- concurrency-*.json  (kvorum bench --concurrency 1,4,16,64,256 --baseline)
  -> bench-concurrency.png: throughput and p99 of writes, reads and the
     transport baseline against requests in flight (median over the files)
- value-*.json        (kvorum bench --workload w --value-size ...)
  -> bench-value-size.png: write throughput (ops/s and MB/s) and p99
- aae-<keys>-*.txt    (examples/aae_exchange_cost output)
  -> bench-aae.png: bytes sent and comparison time of one exchange with
     100 differing keys against the number of keys

Installs matplotlib with pip (user site) if it is missing. Not part of CI.
"""
import glob
import json
import os
import re
import statistics
import subprocess
import sys

try:
    import matplotlib
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--user", "-q", "matplotlib"])
    import site
    sys.path.append(site.getusersitepackages())
    import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def median_by(files, key, section="runs"):
    """{(workload, x): (median throughput, median p99 µs)} over the files."""
    acc = {}
    for f in files:
        with open(f) as fh:
            rep = json.load(fh)
        for run in rep[section]:
            k = (run["workload"], run[key])
            acc.setdefault(k, []).append((run["throughput"], run["latency"]["p99_us"]))
    return {k: (statistics.median(t for t, _ in v), statistics.median(p for _, p in v))
            for k, v in acc.items()}


def concurrency(results, out):
    files = sorted(glob.glob(os.path.join(results, "concurrency-*.json")))
    if not files:
        return
    runs = median_by(files, "concurrency")
    runs.update(median_by(files, "concurrency", "baseline"))
    names = {"w": "quorum write (N=3, W=2)", "c": "quorum read (N=3, R=2)",
             "echo": "transport baseline (empty request)"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for wl, label in names.items():
        pts = sorted((c, v) for (w, c), v in runs.items() if w == wl)
        if not pts:
            continue
        xs = [c for c, _ in pts]
        a.plot(xs, [v[0] for _, v in pts], marker="o", label=label)
        b.plot(xs, [v[1] / 1000 for _, v in pts], marker="o", label=label)
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("requests in flight")
        ax.grid(True, alpha=0.3)
    a.set_ylabel("operations / s")
    a.set_title("throughput")
    b.set_ylabel("p99 latency (ms)")
    b.set_yscale("log")
    b.set_title("p99 latency")
    a.legend(fontsize=8)
    fig.suptitle(f"kvorum bench, 3 nodes + load generator on one 2-core machine; median of {len(files)} runs")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-concurrency.png"), dpi=100)


def value_size(results, out):
    files = sorted(glob.glob(os.path.join(results, "value-*.json")))
    if not files:
        return
    runs = median_by(files, "value_size")
    pts = sorted((s, v) for (w, s), v in runs.items() if w == "w")
    xs = [s for s, _ in pts]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(xs, [v[0] for _, v in pts], marker="o", label="writes / s")
    a2 = a.twinx()
    a2.plot(xs, [v[0] * s / 1e6 for s, v in pts], marker="s", color="tab:orange", label="MB/s of values")
    a.set_ylabel("writes / s")
    a2.set_ylabel("MB/s (value bytes acknowledged)")
    b.plot(xs, [v[1] / 1000 for _, v in pts], marker="o")
    b.set_ylabel("p99 latency (ms)")
    b.set_yscale("log")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("value size (bytes)")
        ax.grid(True, alpha=0.3)
    a.set_title("quorum writes (N=3, W=2) by value size")
    b.set_title("p99 latency")
    fig.legend(loc="upper center", fontsize=8, ncol=2, bbox_to_anchor=(0.3, 0.9))
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-value-size.png"), dpi=100)


def aae(results, out):
    files = glob.glob(os.path.join(results, "aae-*.txt"))
    if not files:
        return
    acc = {}
    for f in files:
        keys = int(re.search(r"aae-(\d+)-", os.path.basename(f)).group(1))
        with open(f) as fh:
            for line in fh:
                m = re.match(r"\| 100 \| (\d+) \| (\d+) \| (\d+) µs \| (\d+) \|", line)
                if m:
                    acc.setdefault(keys, []).append((int(m.group(2)), int(m.group(3))))
    pts = sorted((k, statistics.median(b for b, _ in v), statistics.median(t for _, t in v))
                 for k, v in acc.items())
    fig, a = plt.subplots(figsize=(6, 4))
    xs = [k for k, _, _ in pts]
    a.plot(xs, [b / 1000 for _, b, _ in pts], marker="o", label="KB sent")
    a.set_xscale("log")
    a.set_xlabel("keys shared by two replicas")
    a.set_ylabel("KB sent per exchange")
    a2 = a.twinx()
    a2.plot(xs, [t / 1000 for _, _, t in pts], marker="s", color="tab:orange", label="comparison ms")
    a2.set_ylabel("comparison time (ms)")
    a.set_title("anti-entropy exchange with 100 differing keys")
    a.grid(True, alpha=0.3)
    fig.legend(loc="upper left", fontsize=8, bbox_to_anchor=(0.15, 0.85))
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-aae.png"), dpi=100)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "docs"
    concurrency(results, out)
    value_size(results, out)
    aae(results, out)


main()
