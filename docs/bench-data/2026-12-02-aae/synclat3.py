import os, time, statistics, threading
N=400; SIZE=150
def worker(idx, barrier, out):
    path=f"/tmp/sl3-{idx}.dat"
    fd=os.open(path, os.O_RDWR|os.O_CREAT|os.O_TRUNC,0o644)
    os.ftruncate(fd, 64<<20); os.fsync(fd)
    buf=b"x"*SIZE; lat=[]
    for i in range(N):
        barrier.wait()
        t=time.perf_counter(); os.write(fd,buf); os.fdatasync(fd); lat.append((time.perf_counter()-t)*1e6)
    os.close(fd); os.unlink(path); out[idx]=sorted(lat)
for k in (1,2,3):
    b=threading.Barrier(k); out={}
    ts=[threading.Thread(target=worker,args=(i,b,out)) for i in range(k)]
    [t.start() for t in ts]; [t.join() for t in ts]
    allv=sorted(sum(out.values(),[]))
    print(k, "concurrent: p50 %.0f p99 %.0f"%(statistics.median(allv), allv[int(len(allv)*.99)]))
