import json,sys,glob,statistics as st
# usage: pairs.py PREFIX [workload], PREFIX+'old-N.json' against PREFIX+'new-N.json'
d=sys.argv[1]; wl=sys.argv[2] if len(sys.argv)>2 else 'w'
rows=[]
for i in range(1,20):
    try: o=json.load(open(f"{d}old-{i}.json")); n=json.load(open(f"{d}new-{i}.json"))
    except FileNotFoundError: break
    def g(x):
        r=[r for r in x['runs'] if r['workload']==wl][0]
        return r['throughput'], r['server_cpu_us_per_op'], r['bench_cpu_seconds']/r['ops']*1e6 if r.get('bench_cpu_seconds') else 0, r['ratio_to_bound']
    a,b=g(o),g(n); rows.append((a,b))
    print(f"pair {i}: old {a[0]:8.0f}/s {a[1]:6.1f}us lg {a[2]:5.1f} ratio {a[3]:.3f} | new {b[0]:8.0f}/s {b[1]:6.1f}us lg {b[2]:5.1f} ratio {b[3]:.3f} | cpu new/old {b[1]/a[1]:.3f}")
print("median cpu ratio new/old", st.median(b[1]/a[1] for a,b in rows), "median thr ratio", st.median(b[0]/a[0] for a,b in rows))
