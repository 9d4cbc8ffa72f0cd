"""A kazoo Lock driven line by line from stdin, for recipes/tests/kazoo_interop.rs.

Commands (one per line): "acquire", "try <seconds>", "release", "quit". Each answers one line:
HELD, NOT-HELD, RELEASED or BYE. The lock also treats zkit/Curator "-lock-" nodes as contenders.
"""
import sys

from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout

hosts, path = sys.argv[1], sys.argv[2]
zk = KazooClient(hosts=hosts, timeout=10)
zk.start(timeout=15)
lock = zk.Lock(path, "kazoo", extra_lock_patterns=("-lock-",))
print("READY", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "acquire":
        lock.acquire()
        print("HELD", flush=True)
    elif cmd[0] == "try":
        try:
            got = lock.acquire(timeout=float(cmd[1]))
        except LockTimeout:
            got = False
        print("HELD" if got else "NOT-HELD", flush=True)
    elif cmd[0] == "release":
        lock.release()
        print("RELEASED", flush=True)
    elif cmd[0] == "quit":
        break
zk.stop()
zk.close()
print("BYE", flush=True)
