#!/usr/bin/env python3
"""Latency of a normal client while 4 threads loop on `wchp` over many watches (stdlib only).

    python3 scripts/wchp-load.py HOST:PORT [WATCHES]     (default 200000; the server needs
                                                          the wchp word enabled)
Sets WATCHES exists-watches on missing paths from one session, runs 4 `wchp` loops for 10 s,
and prints the round-trip times of a third client's `exists` calls meanwhile.
"""
import importlib.util
import os
import socket
import struct
import sys
import threading
import time

_spec = importlib.util.spec_from_file_location(
    "slow_reader_rss", os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow-reader-rss.py"))
sr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sr)


def main():
    addr = sys.argv[1]
    W = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    h, p = addr.rsplit(":", 1)
    w = sr.connect(addr)
    batch = b"".join(sr.frame(struct.pack(">ii", i + 1, 3) + sr.ustring(f"/wchp-probe/n{i}") + b"\1")
                     for i in range(W))
    threading.Thread(target=lambda: w.sendall(batch), daemon=True).start()
    for _ in range(W):
        sr.read_frame(w)
    stop = [False]
    done = [0] * 4

    def hammer(k):
        while not stop[0]:
            c = socket.create_connection((h, int(p)))
            c.sendall(b"wchp")
            while c.recv(1 << 20):
                pass
            c.close()
            done[k] += 1

    ts = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    c = sr.connect(addr)
    lat = []
    t_end = time.time() + 10
    x = 1
    while time.time() < t_end:
        t0 = time.time()
        sr.call(c, x, 3, sr.ustring("/zookeeper") + b"\0")
        lat.append(time.time() - t0)
        x += 1
    stop[0] = True
    for t in ts:
        t.join()
    lat.sort()
    print(f"{W} watches, {sum(done)} wchp answers; normal client: {len(lat)} exists in 10 s, "
          f"median {lat[len(lat) // 2] * 1000:.1f} ms, p99 {lat[int(len(lat) * .99)] * 1000:.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
