import sys, threading
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError, BadVersionError
hosts = sys.argv[1]
zk = KazooClient(hosts=hosts)
zk.start(timeout=10)
print("server_version", zk.server_version())
base = "/kz"
zk.ensure_path(base)
zk.create(base + "/a", b"hello")
data, stat = zk.get(base + "/a")
assert data == b"hello", data
zk.set(base + "/a", b"bye")
assert zk.get(base + "/a")[0] == b"bye"
ev = threading.Event()
got = []
@zk.DataWatch(base + "/w")
def w(data, stat, event=None):
    got.append((data, event.type if event else None))
    if event: ev.set()
zk.create(base + "/w", b"1")
assert ev.wait(5), "watch fired"
print("watch events", got)
kids = []
cev = threading.Event()
@zk.ChildrenWatch(base)
def cw(children):
    kids.append(sorted(children))
    if len(kids) > 1: cev.set()
zk.create(base + "/c", b"")
assert cev.wait(5)
print("children", kids[-1])
t = zk.transaction()
t.create(base + "/t1", b"x")
t.check(base + "/a", 1)
t.set_data(base + "/a", b"tx")
res = t.commit()
print("txn", res)
t = zk.transaction()
t.create(base + "/t2", b"x")
t.check(base + "/a", 99)
res = t.commit()
print("txn abort", [type(r).__name__ for r in res])
lock = zk.Lock(base + "/lock", "me")
with lock:
    print("lock held", lock.contenders())
el = zk.Election(base + "/election", "me")
won = []
def leader():
    won.append(True)
th = threading.Thread(target=el.run, args=(leader,))
th.start(); th.join(10)
print("election won", won)
seq = zk.create(base + "/s-", b"", sequence=True, ephemeral=True)
print("seq", seq)
zk.delete(base, recursive=True)
zk.stop()
print("KAZOO OK")
