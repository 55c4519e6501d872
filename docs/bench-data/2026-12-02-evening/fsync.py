# The fdatasync loop of performance.md (2026-12-02 evening): a 200-byte
# append then fdatasync, 2,000 times, into an 8 MiB file whose blocks
# exist (written zeros) and into a sparse one (ftruncate); medians.
# Run from the repository root: python3 docs/bench-data/2026-12-02-evening/fsync.py
import os, time, statistics
def t(prealloc):
    fn = 'target/fsync-test.bin'
    fd = os.open(fn, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    if prealloc:
        os.write(fd, b'\0' * (8 << 20)); os.fsync(fd); os.lseek(fd, 0, 0)
    else:
        os.ftruncate(fd, 8 << 20)
    xs = []
    for _ in range(2000):
        os.write(fd, b'x' * 200); a = time.perf_counter(); os.fdatasync(fd); xs.append(time.perf_counter() - a)
    os.close(fd); os.unlink(fn)
    return statistics.median(xs) * 1e6
for _ in range(2):
    print("existing blocks %.0f us, sparse %.0f us" % (t(True), t(False)))
