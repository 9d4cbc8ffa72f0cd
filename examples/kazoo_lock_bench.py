"""kazoo Lock acquire/release latency, for recipes-bench's interleaved comparison.

usage: python kazoo_lock_bench.py HOSTS
Prints READY once connected; then each stdin line "run N" does N uncontended acquire/release
pairs on one Lock and answers two lines: the acquire times, then the release times, in ms,
space-separated. "quit" (or end of input) stops.
"""
import sys
import time
import uuid

from kazoo.client import KazooClient

zk = KazooClient(hosts=sys.argv[1], timeout=10)
zk.start(timeout=15)
path = "/kazoo-lock-bench-" + uuid.uuid4().hex
lock = zk.Lock(path, "bench")
print("READY", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
        break
    acq, rel = [], []
    for _ in range(int(cmd[1])):
        t = time.perf_counter()
        lock.acquire()
        t2 = time.perf_counter()
        lock.release()
        t3 = time.perf_counter()
        acq.append("%.4f" % ((t2 - t) * 1e3))
        rel.append("%.4f" % ((t3 - t2) * 1e3))
    print(" ".join(acq), flush=True)
    print(" ".join(rel), flush=True)
zk.delete(path, recursive=True)
zk.stop()
