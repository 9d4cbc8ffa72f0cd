#!/usr/bin/env python3
"""Memory cost of a client that never reads (stdlib only).

Creates a 1,000,000-byte node, opens a raw connection with a 4 KiB receive buffer, handshakes,
sends N getData requests for the node and never reads a reply, while a second client keeps
working. Prints the server's RSS growth (from /proc/PID/status) and the second client's
round trips during the hold.

    python3 scripts/slow-reader-rss.py --pid PID --addr HOST:PORT [--n 1000] [--hold 5]

Against zkit-server (release build, default 4 MiB queue bound):
    cargo build --release -p zkit-testkit --bin zkit-server
    target/release/zkit-server --port 0 2> /tmp/zs.log & sleep 1
    python3 scripts/slow-reader-rss.py --pid $! --addr "$(sed -n 's/.*listening on //p' /tmp/zs.log)"
    kill $!
Against a real ZooKeeper started with scripts/zookeeper.sh: --pid of its java process.
"""

import argparse
import socket
import struct
import time


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def ustring(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def read_frame(sock):
    hdr = b""
    while len(hdr) < 4:
        chunk = sock.recv(4 - len(hdr))
        if not chunk:
            raise EOFError
        hdr += chunk
    (n,) = struct.unpack(">i", hdr)
    body = b""
    while len(body) < n:
        chunk = sock.recv(min(1 << 20, n - len(body)))
        if not chunk:
            raise EOFError
        body += chunk
    return body


def connect(addr, rcvbuf=None):
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, int(port)))
    req = struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"
    s.sendall(frame(req))
    read_frame(s)
    return s


OPEN_ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")


def call(s, xid, op, body):
    s.sendall(frame(struct.pack(">ii", xid, op) + body))
    while True:
        r = read_frame(s)
        rxid, _zxid, err = struct.unpack(">iqi", r[:16])
        if rxid == xid:
            return err


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--hold", type=float, default=5.0)
    a = ap.parse_args()

    worker = connect(a.addr)
    path = f"/rss-{int(time.time() * 1000)}"
    data = b"x" * 1_000_000
    err = call(worker, 1, 1, ustring(path) + struct.pack(">i", len(data)) + data + OPEN_ACL
               + struct.pack(">i", 0))
    assert err == 0, f"create failed: {err}"
    time.sleep(0.5)
    base = rss_kib(a.pid)

    hog = connect(a.addr, rcvbuf=4096)
    req = ustring(path) + b"\0"
    batch = b"".join(frame(struct.pack(">ii", xid, 4) + req) for xid in range(1, a.n + 1))
    hog.setblocking(False)
    sent = 0
    peak = base
    ops = 0
    xid = 10
    t_end = time.time() + a.hold
    while time.time() < t_end:
        if sent < len(batch):
            try:
                sent += hog.send(batch[sent:])
            except BlockingIOError:
                pass
        xid += 1
        assert call(worker, xid, 3, ustring(path) + b"\0") == 0  # exists
        ops += 1
        peak = max(peak, rss_kib(a.pid))
    print(f"N={a.n}: sent {sent}/{len(batch)} request bytes, server RSS {base} KiB -> peak "
          f"{peak} KiB (+{(peak - base) / 1024:.1f} MiB); other client: {ops} round trips "
          f"in {a.hold:.0f} s")
    hog.close()
    call(worker, xid + 1, 2, ustring(path) + struct.pack(">i", -1))
    worker.close()


if __name__ == "__main__":
    main()
