#!/usr/bin/env python3
"""Capture golden ZooKeeper wire frames from real client/server traffic (stdlib only).

A recording TCP proxy sits between a real Java ZooKeeper client and a real Apache ZooKeeper
server and records every length-prefixed frame in each direction. The recorded frames are then
decoded and named, and written in the line format the zkit codec tests read:

    name<TAB>c2s|s2c<TAB>hex of the whole frame, 4-byte length prefix included

Subcommands:
    run      start a real server (scripts/zookeeper.sh), proxy it, drive it with
             scripts/golden/GoldenDriver.java and with zkCli.sh, write frames.txt
    proxy    only the recording proxy: --upstream HOST:PORT; prints its port; Ctrl-C writes
             the frames (raw JSON lines) to --out
    decode   turn a raw JSON-lines recording into frames.txt
    probe    ask a real server questions the Java 3.8 client cannot (raw frames), print answers

Reproduce the committed goldens:
    python3 scripts/capture_golden.py run --out proto/tests/golden/frames.txt

The proxy cuts the connection, without forwarding, when it sees a `sync` request for
DROP_PATH: the driver uses this to provoke reconnects (session resume + SetWatches).
"""

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ZK_SH = os.path.join(HERE, "zookeeper.sh")
DRIVER = os.path.join(HERE, "golden", "GoldenDriver.java")
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
ZK_JAR = "/usr/share/java/zookeeper.jar"
DROP_PATH = "/zkit-golden-proxy-drop"
MAX_FRAME = 0xFFFFF + 1024  # jute.maxbuffer plus slack; a larger length means a parse error

OPS = {
    0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData", 5: "setData",
    6: "getACL", 7: "setACL", 8: "getChildren", 9: "sync", 11: "ping", 12: "getChildren2",
    13: "check", 14: "multi", 15: "create2", 16: "reconfig", 17: "checkWatches",
    18: "removeWatches", 19: "createContainer", 20: "deleteContainer", 21: "createTTL",
    22: "multiRead", 100: "auth", 101: "setWatches", 102: "sasl", 103: "getEphemerals",
    104: "getAllChildrenNumber", 105: "setWatches2", 106: "addWatch", 107: "whoAmI",
    -10: "createSession", -11: "closeSession", -1: "error",
}
ERRS = {
    0: "OK", -1: "SYSTEMERROR", -2: "RUNTIMEINCONSISTENCY", -3: "DATAINCONSISTENCY",
    -4: "CONNECTIONLOSS", -5: "MARSHALLINGERROR", -6: "UNIMPLEMENTED", -7: "OPERATIONTIMEOUT",
    -8: "BADARGUMENTS", -12: "UNKNOWNSESSION", -13: "NEWCONFIGNOQUORUM",
    -14: "RECONFIGINPROGRESS", -100: "APIERROR", -101: "NONODE", -102: "NOAUTH",
    -103: "BADVERSION", -108: "NOCHILDRENFOREPHEMERALS", -110: "NODEEXISTS", -111: "NOTEMPTY",
    -112: "SESSIONEXPIRED", -113: "INVALIDCALLBACK", -114: "INVALIDACL", -115: "AUTHFAILED",
    -118: "SESSIONMOVED", -119: "NOTREADONLY", -120: "EPHEMERALONLOCALSESSION",
    -121: "NOWATCHER", -122: "REQUESTTIMEOUT", -123: "RECONFIGDISABLED",
    -124: "SESSIONCLOSEDREQUIRESASLAUTH", -125: "QUOTAEXCEEDED", -127: "THROTTLEDOP",
}
EVENTS = {-1: "None", 1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged",
          4: "NodeChildrenChanged", 5: "DataWatchRemoved", 6: "ChildWatchRemoved",
          7: "PersistentWatchRemoved"}
MODES = {0: "persistent", 1: "ephemeral", 2: "persistent_sequential",
         3: "ephemeral_sequential", 4: "container", 5: "persistent_ttl",
         6: "persistent_sequential_ttl"}
WATCHER_TYPES = {1: "Children", 2: "Data", 3: "Any", 4: "Persistent", 5: "PersistentRecursive"}
ADD_WATCH_MODES = {0: "persistent", 1: "persistent_recursive"}


def log(msg):
    print(f"capture_golden: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Recording proxy


class Recorder:
    """Thread-safe list of recorded frames, in the order the proxy forwarded them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.frames = []
        self.label = "client"
        self.next_conn = 0

    def new_conn(self):
        with self.lock:
            self.next_conn += 1
            return self.next_conn, self.label

    def add(self, conn, label, direction, data, note=None):
        with self.lock:
            self.frames.append({"seq": len(self.frames), "conn": conn, "label": label,
                                "dir": direction, "t": time.time(), "hex": data.hex(),
                                **({"note": note} if note else {})})


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(sock):
    """One whole frame (length prefix included), or None at EOF / on a socket error."""
    try:
        head = recv_exact(sock, 4)
        if head is None:
            return None
        (n,) = struct.unpack(">i", head)
        if n < 0 or n > MAX_FRAME:
            raise ValueError(f"bad frame length {n} (4lw or garbage?)")
        body = recv_exact(sock, n)
        return None if body is None else head + body
    except OSError:
        return None


def is_drop_trigger(frame):
    if len(frame) < 16:
        return False
    _xid, op = struct.unpack(">ii", frame[4:12])
    if op != 9:
        return False
    try:
        return Reader(frame[12:]).ustring() == DROP_PATH
    except ValueError:
        return False


class Proxy:
    """Listens on a free loopback port and forwards frame by frame to the upstream server."""

    def __init__(self, upstream, recorder):
        self.upstream = upstream
        self.rec = recorder
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            conn, label = self.rec.new_conn()
            try:
                server = socket.create_connection(self.upstream)
            except OSError as e:
                log(f"upstream connect failed: {e}")
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, server)
            threading.Thread(target=self.pump, args=(conn, label, "c2s", client, server, pair),
                             daemon=True).start()
            threading.Thread(target=self.pump, args=(conn, label, "s2c", server, client, pair),
                             daemon=True).start()

    def pump(self, conn, label, direction, src, dst, pair):
        first = True
        while True:
            frame = read_frame(src)
            if frame is None:
                break
            if direction == "c2s" and not first and is_drop_trigger(frame):
                self.rec.add(conn, label, direction, frame, note="drop-trigger (not forwarded)")
                break
            first = False
            self.rec.add(conn, label, direction, frame)
            try:
                dst.sendall(frame)
            except OSError:
                break
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lsock.close()


# --------------------------------------------------------------------------------------------
# Jute decoding (for names and comments only; the Rust codec is what gets tested)


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def long(self):
        return struct.unpack(">q", self.take(8))[0]

    def bool(self):
        return self.take(1)[0] != 0

    def buffer(self):
        n = self.int()
        return None if n == -1 else self.take(n)

    def ustring(self):
        b = self.buffer()
        return None if b is None else b.decode("utf-8")

    def vector(self, item):
        n = self.int()
        return None if n == -1 else [item() for _ in range(n)]

    def left(self):
        return len(self.d) - self.p


def fmt_bytes(b):
    if b is None:
        return "null"
    if len(b) > 24:
        return f"<{len(b)} bytes>"
    try:
        s = b.decode("ascii")
        if s.isprintable():
            return json.dumps(s)
    except UnicodeDecodeError:
        pass
    return "0x" + b.hex()


def stat(r):
    f = dict(czxid=r.long(), mzxid=r.long(), ctime=r.long(), mtime=r.long(), version=r.int(),
             cversion=r.int(), aversion=r.int(), ephemeralOwner=r.long(), dataLength=r.int(),
             numChildren=r.int(), pzxid=r.long())
    return ("Stat{czxid=%#x mzxid=%#x ctime=%d mtime=%d version=%d cversion=%d aversion=%d "
            "ephemeralOwner=%#x dataLength=%d numChildren=%d pzxid=%#x}" % tuple(f.values()))


def acl(r):
    perms = r.int()
    return f"{perms}:{r.ustring()}:{r.ustring()}"


def acls(r):
    v = r.vector(lambda: acl(r))
    return "null" if v is None else "[" + ", ".join(v) + "]"


def strings(r):
    v = r.vector(r.ustring)
    return "null" if v is None else json.dumps(v)


def decode_request_body(op, r):
    """Returns (description, name qualifiers)."""
    q = []
    if op in (1, 15, 19, 21):
        path, data, a, flags = r.ustring(), r.buffer(), acls(r), r.int()
        ttl = f" ttl={r.long()}" if op == 21 else ""
        q.append(MODES.get(flags, f"flags{flags}"))
        if "world:anyone" not in a:
            q.append("acl_" + a.strip("[]").split(":")[1])
        return (f"path={json.dumps(path)} data={fmt_bytes(data)} acl={a} flags={flags}"
                f"({MODES.get(flags, '?')}){ttl}", q)
    if op in (2, 20):
        path, version = r.ustring(), r.int()
        if version != -1:
            q.append("versioned")
        return f"path={json.dumps(path)} version={version}", q
    if op in (3, 4, 8, 12):
        path, watch = r.ustring(), r.bool()
        if path == "/zookeeper/config":
            q.append("zookeeper_config")
        if watch:
            q.append("watch")
        return f"path={json.dumps(path)} watch={str(watch).lower()}", q
    if op == 5:
        path, data, version = r.ustring(), r.buffer(), r.int()
        if version != -1:
            q.append("versioned")
        return f"path={json.dumps(path)} data={fmt_bytes(data)} version={version}", q
    if op in (6, 9, 103, 104):
        return f"path={json.dumps(r.ustring())}", q
    if op == 7:
        return f"path={json.dumps(r.ustring())} acl={acls(r)} version={r.int()}", q
    if op == 13:
        return f"path={json.dumps(r.ustring())} version={r.int()}", q
    if op in (14, 22):
        ops = []
        while True:
            t, done, err = r.int(), r.bool(), r.int()
            if done:
                ops.append(f"end{{type={t} done=true err={err}}}")
                break
            desc, _ = decode_request_body(t, r)
            ops.append(f"{OPS.get(t, t)}({t}){{{desc}}}")
        return "ops=[" + ", ".join(ops) + "]", q
    if op in (17, 18):
        path, t = r.ustring(), r.int()
        q.append(WATCHER_TYPES.get(t, str(t)).lower())
        return f"path={json.dumps(path)} type={t}({WATCHER_TYPES.get(t, '?')})", q
    if op == 100:
        t, scheme, auth = r.int(), r.ustring(), r.buffer()
        q.append(scheme)
        return f"type={t} scheme={json.dumps(scheme)} auth=<{len(auth or b'')} bytes>", q
    if op in (101, 105):
        rel = r.long()
        names = ["dataWatches", "existWatches", "childWatches"]
        if op == 105:
            names += ["persistentWatches", "persistentRecursiveWatches"]
        parts = [f"relativeZxid={rel:#x}"] + [f"{n}={strings(r)}" for n in names]
        return " ".join(parts), q
    if op == 106:
        path, mode = r.ustring(), r.int()
        q.append(ADD_WATCH_MODES.get(mode, str(mode)))
        return f"path={json.dumps(path)} mode={mode}({ADD_WATCH_MODES.get(mode, '?')})", q
    if op == 16:
        return (f"joining={r.ustring()} leaving={r.ustring()} newMembers={r.ustring()} "
                f"curConfigId={r.long()}"), q
    return "", q


def decode_response_body(op, r):
    if op == 1:
        return f"path={json.dumps(r.ustring())}"
    if op in (15, 19, 21):
        return f"path={json.dumps(r.ustring())} stat={stat(r)}"
    if op in (3, 5, 7, 13):
        return f"stat={stat(r)}"
    if op in (4, 16):
        return f"data={fmt_bytes(r.buffer())} stat={stat(r)}"
    if op == 6:
        return f"acl={acls(r)} stat={stat(r)}"
    if op in (8, 103):
        return f"children={strings(r)}" if op == 8 else f"ephemerals={strings(r)}"
    if op == 9:
        return f"path={json.dumps(r.ustring())}"
    if op == 12:
        return f"children={strings(r)} stat={stat(r)}"
    if op == 104:
        return f"totalNumber={r.int()}"
    if op == 106:
        return f"ErrorResponse{{err={r.int()}}}" if r.left() else ""
    if op == 107:
        v = r.vector(lambda: f"{r.ustring()}:{r.ustring()}")
        return f"clientInfo={json.dumps(v)}"
    if op in (14, 22):
        res = []
        while True:
            t, done, err = r.int(), r.bool(), r.int()
            if done:
                res.append(f"end{{type={t} done=true err={err}}}")
                break
            if t == -1:
                e = r.int()
                res.append(f"error(-1){{err={e} {ERRS.get(e, '?')}}}")
            else:
                body = decode_response_body(t, r) if t not in (2, 13) else ""
                res.append(f"{OPS.get(t, t)}({t}){{{body}}}")
        return "results=[" + ", ".join(res) + "]"
    return ""


def decode_connect_request(r):
    f = dict(protocolVersion=r.int(), lastZxidSeen=r.long(), timeOut=r.int(),
             sessionId=r.long(), passwd=r.buffer())
    ro = r.bool() if r.left() else None
    desc = (f"ConnectRequest{{protocolVersion={f['protocolVersion']} "
            f"lastZxidSeen={f['lastZxidSeen']:#x} timeOut={f['timeOut']} "
            f"sessionId={f['sessionId']:#x} passwd=<{len(f['passwd'] or b'')} bytes"
            f"{', all zero' if not any(f['passwd'] or b'') else ''}> "
            f"readOnly={'absent' if ro is None else str(ro).lower()}}}")
    return desc, f["sessionId"], ro


def decode_connect_response(r):
    pv, to, sid, pw = r.int(), r.int(), r.long(), r.buffer()
    ro = r.bool() if r.left() else None
    desc = (f"ConnectResponse{{protocolVersion={pv} timeOut={to} sessionId={sid:#x} "
            f"passwd=<{len(pw or b'')} bytes{', all zero' if not any(pw or b'') else ''}> "
            f"readOnly={'absent' if ro is None else str(ro).lower()}}}")
    return desc, to


def annotate(frames):
    """Decode and name every frame. Returns a list of dicts with name, dir, hex, desc, conn."""
    out = []
    by_conn = {}
    for f in sorted(frames, key=lambda f: f["seq"]):
        by_conn.setdefault(f["conn"], []).append(f)
    for conn in sorted(by_conn):
        pending = {}  # xid -> index into out of the request entry
        first = {"c2s": True, "s2c": True}
        for f in by_conn[conn]:
            data = bytes.fromhex(f["hex"])
            e = {"conn": conn, "label": f["label"], "dir": f["dir"], "hex": f["hex"],
                 "note": f.get("note")}
            r = Reader(data[4:])
            try:
                if first[f["dir"]]:
                    first[f["dir"]] = False
                    if f["dir"] == "c2s":
                        desc, sid, ro = decode_connect_request(r)
                        base = "connect.new_session" if sid == 0 else "connect.resume_session"
                        if ro:
                            base += ".readonly_client"
                        e.update(base=base, desc=desc, op="connect")
                        pending["connect"] = len(out)
                    else:
                        desc, to = decode_connect_response(r)
                        req = out[pending.pop("connect")]
                        if to == 0:
                            req["base"] += ".expired"
                        e.update(req=req, desc=desc, op="connect")
                elif f["dir"] == "c2s":
                    xid, op = r.int(), r.int()
                    body, q = decode_request_body(op, r)
                    name = OPS.get(op, f"op{op}")
                    e.update(base=".".join([name] + q), op=f"{name}({op})",
                             desc=f"RequestHeader{{xid={xid} type={op}}} {body}".strip())
                    pending[xid] = len(out)
                    if f.get("note"):
                        e["base"] = "proxy_drop_trigger"
                else:
                    xid, zxid, err = r.int(), r.long(), r.int()
                    head = f"ReplyHeader{{xid={xid} zxid={zxid:#x} err={err}"
                    head += f" {ERRS.get(err, '?')}}}" if err else "}"
                    if xid == -1:
                        t, state, path = r.int(), r.int(), r.ustring()
                        ev = EVENTS.get(t, str(t))
                        e.update(base=f"notification.{ev}", op="notification(xid -1)",
                                 desc=f"{head} WatcherEvent{{type={t}({ev}) state={state} "
                                      f"path={json.dumps(path)}}}")
                    else:
                        req = out[pending.pop(xid)]
                        op = int(req["op"].split("(")[1].rstrip(")"))
                        body = decode_response_body(op, r) if err == 0 else ""
                        if err:
                            req["base"] += "." + ERRS.get(err, str(err)).lower()
                        elif op in (14,) and "error(-1)" in body:
                            req["base"] += ".aborted"
                        e.update(req=req, op=req["op"], desc=f"{head} {body}".strip())
                if r.left() and "desc" in e:
                    e["desc"] += f" (+{r.left()} trailing bytes)"
            except (ValueError, KeyError, IndexError) as ex:
                e.update(base=f"undecoded.{f['dir']}", op="?", desc=f"decode error: {ex}")
            out.append(e)
    # Names: label.base for requests; replies take their request's name.
    seen = {}
    keep = []
    for e in out:
        if "req" in e:
            e["name"] = e["req"].get("name")
            if e["name"] is None:  # its request was dropped as a duplicate ping
                continue
        else:
            base = f"{e['label']}.{e['base']}"
            if e["base"] == "ping" and base in seen:
                continue  # one ping pair per client is enough
            seen[base] = seen.get(base, 0) + 1
            e["name"] = base if seen[base] == 1 else f"{base}.{seen[base]}"
        keep.append(e)
    # A reply to a dropped ping arrives with a name of None: filtered above.
    return keep


def write_frames(entries, path, header):
    keys = [(e["name"], e["dir"]) for e in entries]
    dups = {k for k in keys if keys.count(k) > 1}
    if dups:
        raise SystemExit(f"duplicate golden names: {sorted(dups)}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(header)
        last_conn = None
        for e in entries:
            if e["conn"] != last_conn:
                f.write(f"\n# ---- connection {e['conn']} ({e['label']}) ----\n")
                last_conn = e["conn"]
            f.write(f"# {e['op']}: {e['desc']}\n")
            if e.get("note"):
                f.write(f"# note: {e['note']}\n")
            f.write(f"{e['name']}\t{e['dir']}\t{e['hex']}\n")


FRAMES_HEADER = """\
# Golden ZooKeeper wire frames captured from real traffic: Java client (Debian zookeeper
# 3.8.0 jars, via scripts/golden/GoldenDriver.java and zkCli.sh) <-> Apache ZooKeeper 3.8.0
# server, recorded by scripts/capture_golden.py. See README.md in this directory.
#
# Format: name<TAB>direction<TAB>hex. direction is c2s (client to server) or s2c.
# hex is the whole frame including its 4-byte big-endian length prefix.
# The first frame each way on a connection is the handshake (ConnectRequest/Response, no
# header). A reply has the same name as its request. Session ids, passwords, zxids and
# times are whatever that run produced. The '# op: ...' line above a frame is a decoding
# made by the capture script, for humans; it is not part of the data.
"""


# --------------------------------------------------------------------------------------------
# run: the whole capture


def zk(*args, env=None):
    return subprocess.run([ZK_SH, *args], check=True, stdout=subprocess.PIPE, text=True,
                          env=env).stdout.strip()


def cmd_run(a):
    work = tempfile.mkdtemp(prefix="zk-golden-")
    env = dict(os.environ, ZK_EXTENDED_TYPES="1")
    rec = Recorder()
    try:
        connect = zk("start-standalone", os.path.join(work, "zk"), env=env)
        host, port = connect.rsplit(":", 1)
        proxy = Proxy((host, int(port)), rec)
        target = f"127.0.0.1:{proxy.port}"
        log(f"server {connect}, proxy {target}")

        rec.label = "java"
        cp = ZK_JAR + os.pathsep + "/usr/share/java/slf4j-nop.jar"
        subprocess.run(["java", "-cp", cp, DRIVER, target], check=True, timeout=300)
        time.sleep(0.5)

        rec.label = "zkcli"
        script = "\n".join(ZKCLI_SCRIPT) + "\n"
        out = subprocess.run([ZKCLI, "-server", target], input=script, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                             env=dict(os.environ, CLIENT_JVMFLAGS="-XX:TieredStopAtLevel=1"))
        if a.verbose:
            sys.stderr.write(out.stdout)
        time.sleep(0.5)
        proxy.close()
    finally:
        subprocess.run([ZK_SH, "stop", os.path.join(work, "zk")], check=False)
        if a.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if a.raw:
        with open(a.raw, "w") as f:
            for fr in rec.frames:
                f.write(json.dumps(fr) + "\n")
    entries = annotate(rec.frames)
    write_frames(entries, a.out, FRAMES_HEADER)
    log(f"wrote {len(entries)} frames to {a.out}")
    for e in entries:
        print(f"{e['name']}\t{e['dir']}\t{e['op']}")


# zkCli commands, run after the driver through the same proxy (its opcodes are recorded too).
ZKCLI_SCRIPT = [
    "create /cli hello",
    "create -e -s /cli/es- e",
    "create -s /cli/ps- p",
    "create -c /cli/container",
    "create -t 60000 /cli/ttl t",
    "get -w /cli",
    "get -s /cli",
    "set /cli world",
    "set -v 1 /cli again",
    "stat /cli",
    "stat -w /cli/missing",
    "ls -w /cli",
    "ls -s /cli",
    "ls -R /cli",
    "addWatch /cli/ttl",
    "addWatch -m PERSISTENT_RECURSIVE /cli",
    "set /cli/ttl t2",
    "whoami",
    "getAllChildrenNumber /cli",
    "getEphemerals /cli",
    "sync /cli",
    "getAcl /cli",
    "setAcl /cli world:anyone:cdrwa",
    "addauth digest u:p",
    "whoami",
    "removewatches /cli",
    "removewatches /cli -a",
    "config",
    "delete /cli/container",
    "deleteall /cli",
    "quit",
]


# --------------------------------------------------------------------------------------------
# proxy / decode subcommands


def cmd_proxy(a):
    host, port = a.upstream.rsplit(":", 1)
    rec = Recorder()
    rec.label = a.label
    proxy = Proxy((host, int(port)), rec)
    print(proxy.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    with open(a.out, "w") as f:
        for fr in rec.frames:
            f.write(json.dumps(fr) + "\n")
    log(f"wrote {len(rec.frames)} raw frames to {a.out}")


def cmd_decode(a):
    with open(a.raw) as f:
        frames = [json.loads(line) for line in f if line.strip()]
    entries = annotate(frames)
    write_frames(entries, a.out, FRAMES_HEADER)
    for e in entries:
        print(f"{e['name']}\t{e['dir']}\t{e['op']}")


# --------------------------------------------------------------------------------------------
# probe: raw questions to a real server


class RawClient:
    """A minimal blocking client speaking raw frames, for behaviour the Java client hides."""

    def __init__(self, hostport, timeout_ms=10000):
        host, port = hostport.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.xid = 0
        body = struct.pack(">iqiq", 0, 0, timeout_ms, 0) + struct.pack(">i", 16) + bytes(16)
        body += b"\x00"
        self.s.sendall(struct.pack(">i", len(body)) + body)
        r = Reader(read_frame(self.s)[4:])
        self.connect_desc, _ = decode_connect_response(r)

    def call(self, op, body=b""):
        self.xid += 1
        payload = struct.pack(">ii", self.xid, op) + body
        self.s.sendall(struct.pack(">i", len(payload)) + payload)
        events = []
        while True:
            fr = read_frame(self.s)
            if fr is None:
                return None, events
            r = Reader(fr[4:])
            xid, zxid, err = r.int(), r.long(), r.int()
            if xid == -1:
                t, st, path = r.int(), r.int(), r.ustring()
                events.append(f"{EVENTS.get(t, t)} {path}")
                continue
            return (err, r.d[r.p:]), events

    def close(self):
        self.s.close()


def ustr(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def open_acl():
    return struct.pack(">ii", 1, 31) + ustr("world") + ustr("anyone")


def cmd_probe(a):
    c = RawClient(a.server)
    print("connect:", c.connect_desc)

    def show(what, op, body=b""):
        res, events = c.call(op, body)
        if res is None:
            print(f"{what}: connection closed by server")
            return None
        err, rest = res
        print(f"{what}: err={err} {ERRS.get(err, '?')} body={len(rest)} bytes {rest.hex()}"
              + (f" events={events}" if events else ""))
        return err

    base = "/probe"
    show("create /probe", 1, ustr(base) + struct.pack(">i", 0) + open_acl() + struct.pack(">i", 0))
    for wtype in (1, 2, 3, 4, 5):
        for mode in (0, 1):
            show(f"addWatch mode={mode}", 106, ustr(base) + struct.pack(">i", mode))
            show(f"  checkWatches type={wtype} ({WATCHER_TYPES[wtype]})", 17,
                 ustr(base) + struct.pack(">i", wtype))
            show(f"  removeWatches type={wtype} ({WATCHER_TYPES[wtype]})", 18,
                 ustr(base) + struct.pack(">i", wtype))
            show("  removeWatches again", 18, ustr(base) + struct.pack(">i", wtype))
    show("addWatch mode=2 (invalid)", 106, ustr(base) + struct.pack(">i", 2))
    show("create flags=7 (invalid)", 1,
         ustr(base + "/x") + struct.pack(">i", 0) + open_acl() + struct.pack(">i", 7))
    show("create with create2 opcode flags=4 (container via create2)", 15,
         ustr(base + "/c") + struct.pack(">i", 0) + open_acl() + struct.pack(">i", 4))
    show("createTTL ttl=1000 flags=5", 21, ustr(base + "/ttl") + struct.pack(">i", 0)
         + open_acl() + struct.pack(">iq", 5, 1000))
    show("create bad path /probe/", 1,
         ustr(base + "/") + struct.pack(">i", 0) + open_acl() + struct.pack(">i", 0))
    show("getData bad path 'rel'", 4, ustr("rel") + b"\x00")
    show("check alone /probe v0", 13, ustr(base) + struct.pack(">i", 0))
    show("check alone /probe v9", 13, ustr(base) + struct.pack(">i", 9))
    show("whoAmI", 107)
    show("unknown opcode 99", 99)
    c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", default="proto/tests/golden/frames.txt")
    r.add_argument("--raw", help="also write the raw recording (JSON lines) here")
    r.add_argument("--keep", action="store_true", help="keep the server's temp dir")
    r.add_argument("--verbose", action="store_true", help="show zkCli output")
    r.set_defaults(fn=cmd_run)
    r = sub.add_parser("proxy")
    r.add_argument("--upstream", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--label", default="client")
    r.set_defaults(fn=cmd_proxy)
    r = sub.add_parser("decode")
    r.add_argument("raw")
    r.add_argument("--out", required=True)
    r.set_defaults(fn=cmd_decode)
    r = sub.add_parser("probe")
    r.add_argument("server")
    r.set_defaults(fn=cmd_probe)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
