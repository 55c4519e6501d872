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

From examples/bench/growth.sh's directory:
- keys-<keys>.json    (one load, then alternated passes of c and w)
  -> bench-data-size.png: throughput and p99 of reads and writes against
     the keys each node holds
- value-*.json with redis-<bytes>-*.txt (examples/bench/redis.sh)
  -> bench-value-size.png: writes and reads against Redis's SET and GET
- nodes-<n>-*.json    (kvorum bench --nodes n)
  -> bench-nodes.png: throughput and node CPU per operation against the
     number of nodes

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


def redis(results):
    """{(mode, test, bytes): (median rps, median p99 µs)} from redis-<bytes>-*.txt."""
    acc = {}
    for f in glob.glob(os.path.join(results, "redis-*-*.txt")):
        size = int(re.search(r"redis-(\d+)-", os.path.basename(f)).group(1))
        mode = None
        with open(f) as fh:
            for line in fh:
                if line.startswith("mode="):
                    mode = line.strip().split("=", 1)[1]
                m = re.match(r'"(SET|GET)","([\d.]+)",(?:"[\d.]+",){4}"([\d.]+)"', line)
                if m and mode:
                    acc.setdefault((mode, m.group(1), size), []).append(
                        (float(m.group(2)), float(m.group(3)) * 1000))
    return {k: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v))
            for k, v in acc.items()}


def value_size(results, out):
    files = sorted(glob.glob(os.path.join(results, "value-*.json")))
    if not files:
        return
    runs = median_by(files, "value_size")
    with open(files[0]) as fh:
        inflight = json.load(fh)["runs"][0]["concurrency"]
    rd = redis(results)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    series = [("w", "Kvorum quorum write (N=3, W=2, sync always)", "tab:blue", "o", "-"),
              ("c", "Kvorum quorum read (R=2)", "tab:green", "o", "-")]
    for wl, label, color, marker, style in series:
        pts = sorted((s, v) for (w, s), v in runs.items() if w == wl)
        if pts:
            xs = [s for s, _ in pts]
            a.plot(xs, [v[0] for _, v in pts], marker=marker, ls=style, color=color, label=label)
            b.plot(xs, [v[1] / 1000 for _, v in pts], marker=marker, ls=style, color=color, label=label)
    for (mode, test), (label, color, style) in {
            ("aof", "SET"): ("Redis SET, appendfsync always", "tab:red", "--"),
            ("default", "SET"): ("Redis SET, defaults (no fsync)", "tab:orange", ":")}.items():
        # Not GET: redis-benchmark reads random keys of 10,000, and at
        # 100 KiB and 1 MiB fewer requests wrote only some of them.
        pts = sorted((s, v) for (m, t, s), v in rd.items() if (m, t) == (mode, test))
        if pts:
            xs = [s for s, _ in pts]
            a.plot(xs, [v[0] for _, v in pts], marker="s", ls=style, color=color, label=label)
            b.plot(xs, [v[1] / 1000 for _, v in pts], marker="s", ls=style, color=color, label=label)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("value size (bytes)")
        ax.grid(True, alpha=0.3)
    a.set_ylabel("operations / s")
    a.set_title(f"throughput, {inflight} in flight")
    b.set_ylabel("p99 latency (ms)")
    b.set_title("p99 latency")
    a.legend(fontsize=7)
    fig.suptitle(f"value size: 3 Kvorum nodes, or Redis primary + 2 replicas, on one 2-core machine; "
                 f"median of {len(files)} runs")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-value-size.png"), dpi=100)


def data_size(results, out):
    files = glob.glob(os.path.join(results, "keys-*.json"))
    if not files and not glob.glob(os.path.join(results, "keys-*.txt")):
        return
    pts = {}
    for f in files:
        with open(f) as fh:
            rep = json.load(fh)
        for run in rep["runs"]:
            pts.setdefault((run["workload"], rep["keys"]), []).append(
                (run["throughput"], run["latency"]["p99_us"]))
    # The load phase's progress lines: the write rate as the keys grow
    # (the run with the most keys; 30-second medians).
    load = []
    texts = sorted(glob.glob(os.path.join(results, "keys-*.txt")),
                   key=lambda f: int(re.search(r"keys-(\d+)", f).group(1)))
    if texts:
        with open(texts[-1], errors="replace") as fh:
            for line in fh:
                m = re.search(r"\[load\]\s+\d+ s measuring: (\d+) ops, (\d+)/s", line)
                if m:
                    load.append((int(m.group(1)), int(m.group(2))))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if load:
        step = 30
        xs = [load[i][0] for i in range(0, len(load), step)]
        ys = [statistics.median(r for _, r in load[i:i + step]) for i in range(0, len(load), step)]
        a.plot(xs, ys, color="tab:gray", lw=1, label="load: writes/s as the keys grow (30 s medians)")
    for wl, label in {"w": "quorum write (N=3, W=2, new keys)", "c": "quorum read (R=2)"}.items():
        xs = sorted(k for (w, k) in pts if w == wl)
        if not xs:
            continue
        a.plot(xs, [statistics.median(t for t, _ in pts[(wl, k)]) for k in xs], marker="o", label=label)
        b.plot(xs, [statistics.median(p for _, p in pts[(wl, k)]) / 1000 for k in xs], marker="o", label=label)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("keys on each node (100 B values)")
        ax.grid(True, alpha=0.3)
    a.set_ylabel("operations / s")
    a.set_ylim(bottom=0)
    a.set_title("throughput, 64 in flight")
    b.set_ylabel("p99 latency (ms)")
    b.set_ylim(bottom=0)
    b.set_title("p99 latency")
    a.legend(fontsize=8)
    fig.suptitle("data size: 3 nodes and the load generator on one 2-core machine; median of the passes")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-data-size.png"), dpi=100)


def nodes(results, out):
    files = glob.glob(os.path.join(results, "nodes-*-*.json"))
    if not files:
        return
    acc = {}
    for f in files:
        n = int(re.search(r"nodes-(\d+)-", os.path.basename(f)).group(1))
        with open(f) as fh:
            rep = json.load(fh)
        for run in rep["runs"]:
            acc.setdefault((run["workload"], n), []).append(
                (run["throughput"], run["server_cpu_us_per_op"] or 0.0))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for wl, label in {"w": "quorum write (N=3, W=2)", "c": "quorum read (R=2)"}.items():
        xs = sorted(n for (w, n) in acc if w == wl)
        if not xs:
            continue
        a.plot(xs, [statistics.median(t for t, _ in acc[(wl, n)]) for n in xs], marker="o", label=label)
        b.plot(xs, [statistics.median(c for _, c in acc[(wl, n)]) for n in xs], marker="o", label=label)
    for ax in (a, b):
        ax.set_xticks([3, 5, 7])
        ax.set_xlabel("nodes (N = 3)")
        ax.grid(True, alpha=0.3)
    a.set_ylabel("operations / s")
    a.set_ylim(bottom=0)
    a.set_title("throughput, 64 in flight")
    b.set_ylabel("node CPU per operation, all nodes (µs)")
    b.set_ylim(bottom=0)
    b.set_title("CPU per operation")
    a.legend(fontsize=8)
    fig.suptitle("cluster size on one 2-core machine: the cost of each node, not scale-out; "
                 f"median of {len(files) // 3 or 1} runs")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bench-nodes.png"), dpi=100)


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
    data_size(results, out)
    nodes(results, out)


main()
