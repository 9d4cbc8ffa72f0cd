"""Targeted faults under kazoo, driven through zkit-server's control port.

Usage: kazoo_faults.py HOSTS CONTROL_HOST:PORT

Checks, printing one line per check and PASS at the end (exit status 1 on the first failure):
- an applied create whose reply is replaced by a disconnect: kazoo sees ConnectionLoss, the
  node is there afterwards, the rule fired once;
- a request failed with a chosen error is not applied;
- a session whose pings are dropped expires alone (another kazoo session stays connected);
- held watch events reach kazoo once the hold is lifted;
- a session's delayed replies still arrive (in order).
Used by server-testkit/tests/kazoo_faults.rs and scripts/ci/faults.sh.
"""
import socket
import sys
import threading
import time

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, ConnectionLoss

hosts, control = sys.argv[1], sys.argv[2]
chost, cport = control.rsplit(":", 1)
ctl = socket.create_connection((chost, int(cport)), timeout=60)
ctl_file = ctl.makefile("rw")


def ask(cmd):
    ctl_file.write(cmd + "\n")
    ctl_file.flush()
    line = ctl_file.readline().strip()
    if not line.startswith("ok"):
        fail(f"{cmd!r} answered {line!r}")
    return line[2:].strip()


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print(f"ok   {msg}", flush=True)


def wait_for(cond, what, limit=60.0):
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            fail(f"never: {what}")
        time.sleep(0.02)


def client(timeout=10.0):
    zk = KazooClient(hosts=hosts, timeout=timeout)
    zk.start(timeout=30)
    return zk


zk = client()
sid = hex(zk.client_id[0])
root = f"/kazoo-faults-{int(time.time() * 1000)}"
zk.ensure_path(root)

# 1. Apply, then disconnect instead of replying.
rule = ask(f"fault session={sid} op=create path={root}/amb times=1 disconnect").split()[1]
try:
    zk.create(f"{root}/amb", b"x")
    fail("the create was answered")
except ConnectionLoss:
    pass
wait_for(lambda: zk.state == KazooState.CONNECTED, "kazoo reconnects")
check(zk.exists(f"{root}/amb") is not None, "the create whose reply was lost was applied")
check(ask(f"fired {rule}") == "1", "the disconnect rule fired once")

# 2. Fail with a chosen error, without applying.
zk.create(f"{root}/v", b"0")
rule = ask(f"fault session={sid} op=setData path={root}/v times=1 fail=BadVersion").split()[1]
try:
    zk.set(f"{root}/v", b"1")
    fail("the failed setData succeeded")
except BadVersionError:
    pass
check(zk.get(f"{root}/v")[0] == b"0", "a failed request is not applied")
check(ask(f"fired {rule}") == "1", "the fail rule fired once")

# 3. Held watch events.
fired = threading.Event()
zk.get(f"{root}/v", watch=lambda ev: fired.set())
other = client()
ask(f"session {sid} hold-events")
other.set(f"{root}/v", b"2")
check(zk.get(f"{root}/v")[0] == b"2", "replies flow while events are held")
check(not fired.is_set(), "the held event has not reached kazoo")
ask(f"session {sid}")
wait_for(fired.is_set, "the held event arrives once the hold is lifted")
check(True, "held events arrive when lifted")

# 4. Delayed replies, in order.
ask(f"session {sid} delay=200")
for i in range(5):
    zk.set(f"{root}/v", str(i).encode())
check(zk.get(f"{root}/v")[0] == b"4", "delayed replies arrive in order")
ask(f"session {sid}")

# 5. Dropped pings: this session alone expires.
victim = client(timeout=2.0)
lost = threading.Event()
victim.add_listener(lambda s: lost.set() if s == KazooState.LOST else None)
victim.create(f"{root}/eph", ephemeral=True)
ask(f"session {hex(victim.client_id[0])} drop-pings")
wait_for(lost.is_set, "the victim's session is lost")
check(other.exists(f"{root}/eph") is None, "the victim's ephemeral is gone")
check(other.state == KazooState.CONNECTED and zk.state == KazooState.CONNECTED,
      "the other sessions stayed connected")

ask("clear-faults")
for c in (zk, other):
    c.stop()
    c.close()
try:
    victim.stop()
    victim.close()
except Exception:
    pass
print("PASS", flush=True)
