import json,sys,statistics as st
d=sys.argv[1]; wl=sys.argv[2]; conc=int(sys.argv[3])
rows=[]
for i in range(1,30):
    try: o=json.load(open(f"{d}/old-{i}.json")); n=json.load(open(f"{d}/new-{i}.json"))
    except FileNotFoundError: break
    def g(x):
        r=[r for r in x['runs'] if r['workload']==wl and r['concurrency']==conc][0]
        L=r['latency']
        return r['throughput'], r['server_cpu_us_per_op'], L['p50_us'] if 'p50_us' in L else L.get('p50'), L['p99_us'] if 'p99_us' in L else L.get('p99')
    a,b=g(o),g(n); rows.append((a,b))
    print(f"pair {i}: old {a[0]:8.0f}/s cpu {a[1]:6.1f}us p50 {a[2]} p99 {a[3]} | new {b[0]:8.0f}/s cpu {b[1]:6.1f}us p50 {b[2]} p99 {b[3]}")
for j,name in enumerate(['thr','cpu/op','p50','p99']):
    print(name, 'median new/old', round(st.median(b[j]/a[j] for a,b in rows),3), 'old med', st.median(a[j] for a,b in rows), 'new med', st.median(b[j] for a,b in rows))
