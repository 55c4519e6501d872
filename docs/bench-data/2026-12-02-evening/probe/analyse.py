import sys,glob,collections,statistics
d=sys.argv[1]
ev=collections.defaultdict(lambda: collections.defaultdict(list))
for f in glob.glob(d+'/probe-*.txt'):
    pid=f.split('-')[-1][:-4]
    for line in open(f):
        st,i,ns=line.split(); ev[int(i)][(st)].append((int(ns),pid))
# per key: c0,c9 (bench pid); k1.. on coordinator pid; r1,r2 on replica pids; s1,s2 on all
rows=collections.defaultdict(list)
for i,e in ev.items():
    if 'c0' not in e or 'k1' not in e or 'k7' not in e or 'c9' not in e: continue
    c0=e['c0'][0][0]; c9=e['c9'][0][0]
    k1,cp=e['k1'][0]; k2=e['k2'][0][0]; k7=e['k7'][0][0]
    k3=min(x for x,_ in e['k3']); k5=sorted(x for x,_ in e['k5'])
    k6=e['k6'][0][0]
    r1=sorted((x,p) for x,p in e['r1']); r2=sorted((x,p) for x,p in e['r2'])
    s1c=[x for x,p in e['s1'] if p==cp]; s2c=[x for x,p in e['s2'] if p==cp]
    if not r1 or not r2 or len(k5)<1 or not s1c or not s2c: continue
    rows['total c0->c9'].append(c9-c0)
    rows['client->coord c0->k1'].append(k1-c0)
    rows['coord apply k1->k2'].append(k2-k1)
    rows['  queue->writer k1->s1(coord)'].append(s1c[0]-k1)
    rows['  writer->task s1->k2'].append(k2-s1c[0])
    rows['k2->k3 spawn fanout'].append(k3-k2)
    rows['k3->r1 first (coord->replica)'].append(r1[0][0]-k3)
    # replica of first ack: find r2 whose pid matches first
    p=r2[0][1]
    r1p=[x for x,q in e['r1'] if q==p][0]; r2p=r2[0][0]
    s1p=[x for x,q in e['s1'] if q==p]; s2p=[x for x,q in e['s2'] if q==p]
    rows['replica r1->r2 (first done)'].append(r2p-r1p)
    if s1p and s2p:
        rows['  r1->s1 queue'].append(s1p[0]-r1p)
        rows['  s1->s2 apply+commit+sync'].append(s2p[0]-s1p[0])
        rows['  s2->r2 wake'].append(r2p-s2p[0])
    rows['r2->k5 (replica->coord)'].append(k5[0]-r2p)
    rows['coord local s1->s2 commit+sync'].append(s2c[0]-s1c[0])
    rows['k2->k6 local durable'].append(k6-k2)
    rows['k5first->k7'].append(k7-k5[0])
    rows['k6->k7'].append(k7-k6)
    rows['k7->c9 reply'].append(c9-k7)
    rows['k1->k7 coord total'].append(k7-k1)
for k,v in rows.items():
    v.sort(); n=len(v)
    print(f"{k:38s} n={n:5d} p50 {v[n//2]/1000:7.1f} p90 {v[int(n*.9)]/1000:7.1f} us")
