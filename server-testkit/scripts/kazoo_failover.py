"""A kazoo client connected to all three servers of a zkit ensemble survives the loss of the
leader: its session, ephemeral node, lock and data watch carry over to a survivor, and every
write it was told succeeded is on every server afterwards.

Usage:
  kazoo_failover.py CONNECT --control HOST:PORT   # zkit-server --ensemble: kill/restart by index
  kazoo_failover.py CONNECT --zk-dir DIR          # scripts/zookeeper.sh start-ensemble DIR
                                                  # (ZK_IMPL=zkit): kill -9 of the leader's pid,
                                                  # then `zookeeper.sh start-one DIR N`
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from kazoo.client import KazooClient, KazooState
from kazoo.retry import KazooRetry

PATIENCE = 60.0


def four_letter(addr, word):
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(word.encode())
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return out.decode(errors="replace")
                out += chunk
    except OSError:
        return ""


def srvr_mode(addr):
    for line in four_letter(addr, "srvr").splitlines():
        if line.startswith("Mode: "):
            return line[len("Mode: "):].strip()
    return None


def srvr_zxid(addr):
    for line in four_letter(addr, "srvr").splitlines():
        if line.startswith("Zxid: "):
            return int(line[len("Zxid: "):].strip(), 16)
    return None


def eventually(what, f):
    deadline = time.monotonic() + PATIENCE
    while True:
        v = f()
        if v is not None and v is not False:
            return v
        if time.monotonic() > deadline:
            sys.exit("timed out after %ss: %s" % (PATIENCE, what))
        time.sleep(0.05)


class Control:
    """The control port of `zkit-server --ensemble`: one line in, one line out."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=PATIENCE + 10)
        self.file = self.sock.makefile("rw")

    def ask(self, cmd):
        self.file.write(cmd + "\n")
        self.file.flush()
        answer = self.file.readline().strip()
        print("control: %s -> %s" % (cmd, answer))
        if not answer.startswith("ok"):
            sys.exit("control command %r failed: %s" % (cmd, answer))
        return answer[2:].strip()

    def leader(self):
        return int(self.ask("leader").split()[0])


class Processes:
    """An ensemble of processes in DIR/s1..sN, started by scripts/zookeeper.sh."""

    def __init__(self, hosts, zk_dir, script):
        self.hosts, self.dir, self.script = hosts, zk_dir, script

    def leader(self):
        def find():
            leaders = [i for i, h in enumerate(self.hosts) if srvr_mode(h) == "leader"]
            return leaders[0] if len(leaders) == 1 else None
        return eventually("one leader", find)

    def kill(self, i):
        with open(os.path.join(self.dir, "s%d" % (i + 1), "pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)
        print("killed server.%d (pid %d) with SIGKILL" % (i + 1, pid))

    def restart(self, i):
        subprocess.run(["bash", self.script, "start-one", self.dir, str(i + 1)], check=True)

    def check(self):
        eventually("every server serves", lambda: all(
            srvr_mode(h) in ("leader", "follower") for h in self.hosts))
        zxids = eventually("one zxid on every server", lambda: (
            lambda z: z if len(set(z)) == 1 and None not in z else None)(
                [srvr_zxid(h) for h in self.hosts]))
        return "zxid 0x%x" % zxids[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("connect")
    ap.add_argument("--control")
    ap.add_argument("--zk-dir")
    args = ap.parse_args()
    hosts = args.connect.split(",")
    if args.control:
        ens = Control(args.control)
        leader = ens.leader()
        kill = lambda i: ens.ask("kill %d" % i)
        restart = lambda i: ens.ask("restart %d" % i)
        check = lambda: ens.ask("check")
        new_leader = lambda old: eventually("a new leader", lambda: (
            lambda l: l if l != old else None)(ens.leader()))
    elif args.zk_dir:
        script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "zookeeper.sh")
        ens = Processes(hosts, args.zk_dir, script)
        leader = ens.leader()
        kill, restart, check = ens.kill, ens.restart, ens.check
        new_leader = lambda old: eventually("a new leader", lambda: next(
            (i for i, h in enumerate(hosts) if i != old and srvr_mode(h) == "leader"), None))
    else:
        sys.exit("give --control or --zk-dir")

    # The leader first and no shuffling: the session starts on the server that will die.
    ordered = [hosts[leader]] + [h for i, h in enumerate(hosts) if i != leader]
    retry = KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5, deadline=PATIENCE)
    zk = KazooClient(hosts=",".join(ordered), timeout=20, randomize_hosts=False,
                     connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5),
                     command_retry=retry)
    states = []
    zk.add_listener(lambda s: states.append(s))
    zk.start(timeout=PATIENCE)
    session = zk.client_id[0]
    print("session 0x%x on the leader (server index %d, %s)" % (session, leader, hosts[leader]))

    base = "/kzf"
    zk.ensure_path(base)
    zk.create(base + "/eph", b"mine", ephemeral=True)
    zk.create(base + "/cfg", b"v1")
    seen = []
    changed = threading.Event()

    @zk.DataWatch(base + "/cfg")
    def watch(data, stat, event=None):
        seen.append(data)
        if data == b"v2":
            changed.set()

    lock = zk.Lock(base + "/lock", "kazoo-failover")
    assert lock.acquire(timeout=PATIENCE), "lock acquired"
    acked = []
    for i in range(20):
        p = zk.create(base + "/w-", b"x", sequence=True)
        acked.append(p)

    t0 = time.monotonic()
    kill(leader)
    now_leader = new_leader(leader)
    print("new leader: index %d after %.3fs" % (now_leader, time.monotonic() - t0))
    retry(zk.set, base + "/cfg", b"v2")
    for i in range(20):
        acked.append(retry(zk.create, base + "/w-", b"y", sequence=True))
    print("first writes after the kill done after %.3fs" % (time.monotonic() - t0))

    assert zk.state == KazooState.CONNECTED, zk.state
    assert KazooState.LOST not in states, states
    assert zk.client_id[0] == session, "the session moved, not replaced"
    assert retry(zk.exists, base + "/eph") is not None, "the ephemeral survived"
    assert lock.is_acquired, "the lock is still held"
    assert changed.wait(PATIENCE), "the data watch saw v2: %r" % seen
    print("states seen:", states)

    restart(leader)
    acked.append(retry(zk.create, base + "/w-", b"z", sequence=True))
    print("check:", check())
    # Every acknowledged write is on every server.
    for h in hosts:
        one = KazooClient(hosts=h, timeout=20)
        one.start(timeout=PATIENCE)
        one.sync(base)
        kids = set(base + "/" + k for k in one.get_children(base))
        missing = [p for p in acked if p not in kids]
        assert not missing, "%s lacks %r" % (h, missing)
        one.stop()
        one.close()
    lock.release()
    zk.delete(base, recursive=True)
    zk.stop()
    zk.close()
    print("KAZOO FAILOVER OK (%d acknowledged writes on every server)" % len(acked))


if __name__ == "__main__":
    main()
