#!/usr/bin/env bash
# Persistence benchmark, testkit vs the real ZooKeeper 3.8 on this machine, same workloads:
#  - write throughput (20 000 creates, 8 pipelining clients) with fsync on and off
#  - recovery of 1 000 000 txns (snapshot.0 + 10 logs) and a snapshot of the 1 000 004-node tree
# Every server started is stopped by pid (scripts/zookeeper.sh stop).
# Usage: scripts/persistence-bench.sh [N_TXNS]   (default 1000000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ZK="$ROOT/scripts/zookeeper.sh"
N=${1:-1000000}
WORK=$(mktemp -d /tmp/zkit-persist-bench.XXXXXX)
trap 'for d in "$WORK"/zk*; do [[ -d $d ]] && "$ZK" stop "$d" >/dev/null 2>&1; done; rm -rf "$WORK"' EXIT
cargo build -q --release -p zkit-testkit --bin zkit-persist-bench
B="$ROOT/target/release/zkit-persist-bench"

echo "== write throughput"
"$B" testkit-write 20000 8 fsync | tail -n1
"$B" testkit-write 20000 8 nofsync | tail -n1
for sync in yes no; do
    addr=$(ZK_CFG_EXTRA="forceSync=$sync" "$ZK" start-standalone "$WORK/zk-$sync" 2>/dev/null)
    echo "zookeeper forceSync=$sync: $("$B" write "$addr" 20000 8 | sed 's/.*: //')"
    "$ZK" stop "$WORK/zk-$sync" >/dev/null 2>&1
done

echo "== recovery of $N txns, snapshot of the resulting tree"
"$B" gen "$WORK/gen" "$N"
mkdir -p "$WORK/zk-recover/data"
cp -r "$WORK/gen/version-2" "$WORK/zk-recover/data/"
"$B" recover "$WORK/gen"
t0=$(date +%s.%N)
ZK_JAVA_OPTS="-Xmx3g -Xms1g" ZK_START_TIMEOUT=600 "$ZK" start-standalone "$WORK/zk-recover" >/dev/null 2>&1
t1=$(date +%s.%N)
"$ZK" stop "$WORK/zk-recover" >/dev/null 2>&1
echo "zookeeper: start until serving $(echo "$t1 - $t0" | bc) s (JVM start included)"
grep -a -E "txns loaded in|Snapshot loaded in|Snapshot taken in" "$WORK/zk-recover/zk.log" | sed 's/.* - /zookeeper: /'
if grep -a -q "Digests are not matching" "$WORK/zk-recover/zk.log"; then echo "zookeeper: DIGEST MISMATCH"; fi
