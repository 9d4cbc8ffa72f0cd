"""kazoo Lock acquire/release latency, for recipes-bench's comparison row.

usage: python kazoo_lock_bench.py HOSTS N  ->  prints "acq_p50 acq_p99 rel_p50 rel_p99" in ms
"""
import sys
import time
import uuid

from kazoo.client import KazooClient


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


hosts, n = sys.argv[1], int(sys.argv[2])
zk = KazooClient(hosts=hosts, timeout=10)
zk.start(timeout=15)
path = "/kazoo-lock-bench-" + uuid.uuid4().hex
lock = zk.Lock(path, "bench")
acq, rel = [], []
for i in range(n + 50):
    t = time.perf_counter()
    lock.acquire()
    t2 = time.perf_counter()
    lock.release()
    t3 = time.perf_counter()
    if i >= 50:  # warm-up
        acq.append((t2 - t) * 1e3)
        rel.append((t3 - t2) * 1e3)
zk.delete(path, recursive=True)
zk.stop()
print("%.3f %.3f %.3f %.3f" % (pct(acq, 50), pct(acq, 99), pct(rel, 50), pct(rel, 99)))
