#!/usr/bin/env python3
"""Medians over several `kvorum bench --json` reports, as the markdown
tables of docs/performance.md:

    python3 examples/bench/table.py REPORT.json [REPORT.json ...]

One row per (workload, concurrency, value size): the median of each figure
over the reports, and the spread (min-max) of throughput and of the ratio to
the transport bound. Errors are summed.
"""
import json
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:,.0f}"):
    return "—" if x is None else spec.format(x)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    reps = [json.load(open(f)) for f in sys.argv[1:]]
    for r in reps:
        m = r["machine"]
        print(f"<!-- {r['command']} | {m['cores']} cores, {m['memory_bytes'] / 2**30:.1f} GiB, "
              f"loadavg at start {m['loadavg']}, unix time {m['unix_time']} | {r['cluster']} "
              f"N={r['n']} R={r['r']} W={r['w']} {r['distribution']} keys={r['keys']} -->")
    rows = {}
    for r in reps:
        for section in ("baseline", "runs"):
            for run in r[section]:
                k = (run["workload"], run["concurrency"], run["value_size"])
                rows.setdefault(k, []).append(run)
    print(f"\nmedians of {len(reps)} run(s)\n")
    print("| workload | in flight | value | ops/s (min–max) | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs "
          "| server CPU µs/op | load gen. CPU µs/op | ratio to bound (min–max) | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    order = {"echo": 0, "w": 1, "a": 2, "b": 3, "c": 4, "counter": 5}
    for k in sorted(rows, key=lambda k: (k[2], order.get(k[0], 9), k[1])):
        runs = rows[k]
        tput = [x["throughput"] for x in runs]
        ratio = [x["ratio_to_bound"] for x in runs if x.get("ratio_to_bound") is not None]
        lat = lambda q: med([x["latency"][q] for x in runs])
        bench = med([x["bench_cpu_seconds"] * 1e6 / x["ops"] for x in runs
                     if x.get("bench_cpu_seconds") is not None and x["ops"]])
        r_txt = "—" if not ratio else f"{statistics.median(ratio) * 100:.0f} % ({min(ratio) * 100:.0f}–{max(ratio) * 100:.0f})"
        print(f"| {k[0]} | {k[1]} | {k[2]} | {fmt(med(tput))} ({fmt(min(tput))}–{fmt(max(tput))}) "
              f"| {fmt(lat('p50_us'))} | {fmt(lat('p90_us'))} | {fmt(lat('p99_us'))} | {fmt(lat('p999_us'))} "
              f"| {fmt(lat('max_us'))} | {fmt(med([x['server_cpu_us_per_op'] for x in runs]), '{:,.1f}')} "
              f"| {fmt(bench, '{:,.1f}')} | {r_txt} | {sum(sum(x['errors'].values()) for x in runs)} |")
    mems = [m for r in reps for m in r.get("memory", [])]
    if mems:
        print("\n| stage | keys | RSS per node (MiB) | disk, all nodes (MiB) |")
        print("|---|---:|---|---:|")
        for m in mems:
            rss = ", ".join(f"{n} {b / 2**20:.1f}" for n, b in m["rss_bytes"].items() if b is not None)
            print(f"| {m['stage']} | {m['keys']:,} | {rss} | {sum(m['disk_bytes'].values()) / 2**20:.1f} |")


main()
