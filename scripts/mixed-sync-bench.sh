#!/usr/bin/env bash
# How long a learner takes to sync from a real ZooKeeper 3.8 leader: a real follower against a
# zkit-server observer of the same ensemble, for a DIFF of N_DIFF txns and a SNAP of N_SNAP nodes.
#
# Usage: scripts/mixed-sync-bench.sh [N_DIFF [N_SNAP]]      (defaults 10000 and 100000)
#
# The ensemble is `zookeeper.sh start-mixed --real 3 --zkit-observer 1`. For each case a real
# follower (server 1) and the zkit observer (server 4) are SIGKILLed, the txns are written
# through server 2, and both are started again. The time is measured from the leader's log
# line that starts the learner's sync ("Synchronizing with Learner sid: N") to the learner's
# own line saying it serves (real: "Learner received UPTODATE message"; zkit: its serving mode
# change), so JVM and process start-up are left out. The leader keeps 20000 txns in memory
# (zookeeper.commitLogCount) so the DIFF case is a DIFF, and never syncs from its log files
# (zookeeper.snapshotSizeFactor=-1) so the larger case is a SNAP.
#
# Environment: ZKIT_SERVER (default target/release/zkit-server, built if missing),
# PYTHON (a python with kazoo; default .venv/bin/python), KEEP=1 keeps the temp dir.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N_DIFF=${1:-10000}
N_SNAP=${2:-100000}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
export ZKIT_SERVER=${ZKIT_SERVER:-$ROOT/target/release/zkit-server}
[[ -x $ZKIT_SERVER ]] || cargo build --release -p zkit-testkit --bin zkit-server
export ZK_JAVA_OPTS="-Dzookeeper.commitLogCount=20000 -Dzookeeper.snapshotSizeFactor=-1"
ZK=$ROOT/scripts/zookeeper.sh
DIR=$(mktemp -d "${TMPDIR:-/tmp}/zkit-sync-bench.XXXXXX")
cleanup() {
    "$ZK" stop "$DIR" >/dev/null 2>&1 || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$DIR"
}
trap cleanup EXIT

CONNECT=$("$ZK" start-mixed "$DIR" --real 3 --zkit-observer 1)
IFS=, read -r -a ADDRS <<<"$CONNECT"

# Writes N nodes under /PREFIX through server 2, pipelined.
write_nodes() {
    "$PYTHON" - "${ADDRS[1]}" "$1" "$2" <<'PY'
import sys
from kazoo.client import KazooClient
addr, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
zk = KazooClient(hosts=addr, timeout=30); zk.start(timeout=30)
zk.ensure_path("/" + prefix)
pending = []
for i in range(n):
    pending.append(zk.create_async("/%s/n%07d" % (prefix, i), b"value-%d" % i))
    if len(pending) >= 2000:
        for p in pending: p.get(timeout=60)
        pending = []
for p in pending: p.get(timeout=60)
zk.stop()
PY
}

# Milliseconds since the epoch of a log line's timestamp (ZooKeeper's or zkit's format).
stamp_ms() {
    local line=$1 ts
    if [[ $line =~ ^([0-9-]+)\ ([0-9:]+),([0-9]+) ]]; then
        ts="${BASH_REMATCH[1]} ${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
    elif [[ $line =~ ^([0-9-]+)T([0-9:.]+)Z ]]; then
        ts="${BASH_REMATCH[1]} ${BASH_REMATCH[2]} UTC"
    else
        echo 0; return
    fi
    date -d "$ts" +%s%3N
}

# The sync time of server SID: leader's sync start to the learner's serving line, both the
# last ones after the log offset recorded in OFF_<sid>.
sync_ms() {
    local sid=$1 learner_pat=$2 start end n leader_log
    start=""
    for n in 1 2 3; do
        leader_log=$(grep -a "Synchronizing with Learner sid: $sid " "$DIR/s$n/zk.log" | tail -n1 || true)
        [[ -n $leader_log ]] && start=$leader_log
    done
    end=$(grep -a -E "$learner_pat" "$DIR/s$sid/zk.log" | tail -n1)
    echo $(($(stamp_ms "$end") - $(stamp_ms "$start")))
}

zxid_of() {
    local port
    port=$(sed -n 's/^clientPort=//p' "$DIR/s$1/zoo.cfg")
    timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1; printf srvr >&3; cat <&3' _ "$port" |
        sed -n 's/^Zxid: //p'
}

wait_same_zxid() {
    local want deadline=$((SECONDS + 600))
    want=$(zxid_of 2)
    until [[ $(zxid_of 1) == "$want" && $(zxid_of 4) == "$want" ]]; do
        ((SECONDS < deadline)) || { echo "no convergence" >&2; exit 1; }
        sleep 0.2
    done
}

bench() {
    local kind=$1 n=$2
    "$ZK" kill-one "$DIR" 1 2>/dev/null
    "$ZK" kill-one "$DIR" 4 2>/dev/null
    write_nodes "$kind" "$n"
    # Each learner syncs alone (the leader sends one snapshot at a time anyway).
    : >"$DIR/s1/zk.log.mark"
    "$ZK" start-one "$DIR" 1 2>/dev/null
    "$ZK" start-one "$DIR" 4 2>/dev/null
    wait_same_zxid
    local real zkit
    real=$(sync_ms 1 'Learner received UPTODATE message')
    zkit=$(sync_ms 4 'serving mode from="not serving" to="observer"')
    printf '%-5s %7d txns/nodes: real follower %6d ms   zkit observer %6d ms\n' \
        "$kind" "$n" "$real" "$zkit"
}

# Both learners hold some history first, so the leader can DIFF them.
write_nodes warmup 10
wait_same_zxid
bench diff "$N_DIFF"
bench snap "$N_SNAP"
grep -h -a -o -E 'Sending (DIFF|SNAP|TRUNC)|Sending snapshot' "$DIR"/s[123]/zk.log | sort | uniq -c >&2
