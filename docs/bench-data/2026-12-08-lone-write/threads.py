#!/usr/bin/env python3
"""Per-thread CPU of every `kvorum start` process over a window: python3 threads.py SECS"""
import os, sys, time, collections
HZ = os.sysconf('SC_CLK_TCK')
def nodes():
    out = []
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            cmd = open(f'/proc/{p}/cmdline','rb').read().split(b'\0')
        except OSError: continue
        if len(cmd) > 1 and b'kvorum' in cmd[0].rsplit(b'/', 1)[-1] and cmd[1] == b'start':
            out.append(int(p))
    return out
def snap(pids):
    d = {}
    for p in pids:
        try: tids = os.listdir(f'/proc/{p}/task')
        except OSError: continue
        for t in tids:
            try:
                s = open(f'/proc/{p}/task/{t}/stat').read()
                name = s[s.index('(')+1:s.rindex(')')]
                f = s[s.rindex(')')+2:].split()
                st = open(f'/proc/{p}/task/{t}/status').read()
                vol = int([l for l in st.splitlines() if l.startswith('voluntary_ctxt_switches')][0].split()[1])
                inv = int([l for l in st.splitlines() if l.startswith('nonvoluntary_ctxt_switches')][0].split()[1])
                d[(p, int(t))] = (name, int(f[11]) + int(f[12]), int(f[11]), int(f[12]), vol, inv)
            except (OSError, ValueError, IndexError): pass
    return d
secs = float(sys.argv[1])
pids, waited = [], 0.0
while not pids:
    if waited > 30: sys.exit("no `kvorum start` process within 30 s")
    pids = nodes(); time.sleep(0.2); waited += 0.2
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 3)
pids = nodes()
a = snap(pids); t0 = time.time(); time.sleep(secs); b = snap(pids); dt = time.time() - t0
agg = collections.defaultdict(lambda: [0,0,0,0,0,0])
for k, v in b.items():
    if k not in a: continue
    n = v[0]
    for i, j in [(0,1),(1,2),(2,3),(3,4),(4,5)]:
        agg[n][i] += v[j] - a[k][j]
    agg[n][5] += 1
print(f"window {dt:.1f} s, {len(pids)} node processes")
print(f"{'thread':20} {'threads':>7} {'cpu s':>7} {'user':>6} {'sys':>6} {'vol cs/s':>9} {'invol/s':>8}")
for n, v in sorted(agg.items(), key=lambda x: -x[1][0]):
    print(f"{n:20} {v[5]:7} {v[0]/HZ:7.2f} {v[1]/HZ:6.2f} {v[2]/HZ:6.2f} {v[3]/dt:9.0f} {v[4]/dt:8.0f}")
