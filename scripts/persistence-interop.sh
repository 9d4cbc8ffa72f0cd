#!/usr/bin/env bash
# Data-dir compatibility between zkit-testkit and Apache ZooKeeper 3.8 (Debian package), both ways:
#  1. a data dir written by the testkit (several logs, background snapshots) is read without error
#     by ZooKeeper's TxnLogToolkit and SnapshotFormatter, and a real server started on it serves
#     the same tree (paths, data, ACLs, every Stat field) with no digest mismatch in its log;
#  2. a data dir written by a real server loads in the testkit with the same tree and every
#     logged TxnDigest equal to the testkit's own digest computation.
# Every server started here is stopped by pid (scripts/zookeeper.sh stop). Exit status 0 = pass.
#
# Usage: scripts/persistence-interop.sh [WORKDIR]   (default: a fresh mktemp dir, removed on success)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ZK="$ROOT/scripts/zookeeper.sh"
WORK=${1:-$(mktemp -d /tmp/zkit-persist-interop.XXXXXX)}
mkdir -p "$WORK"
JAVA=${JAVA:-java}
CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar
export ZK_EXTENDED_TYPES=1

log() { printf 'persistence-interop: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

cleanup() {
    for d in "$WORK/zk-on-testkit" "$WORK/zk-native"; do
        [[ -d $d ]] && "$ZK" stop "$d" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

"$ZK" install >/dev/null 2>&1 || true
[[ -f /usr/share/java/zookeeper.jar ]] || fail "Debian zookeeper is not installed"

log "building zkit-datadir"
cargo build -q -p zkit-testkit --bin zkit-datadir
TOOL="$ROOT/target/debug/zkit-datadir"

# --- 1. testkit -> ZooKeeper -------------------------------------------------------------
rm -rf "$WORK/tk" "$WORK/zk-on-testkit"
"$TOOL" testkit-sample "$WORK/tk" "$WORK/testkit.tree"
nlogs=$(ls "$WORK"/tk/version-2/log.* | wc -l)
nsnaps=$(ls "$WORK"/tk/version-2/snapshot.* | wc -l)
log "testkit wrote $nlogs logs and $nsnaps snapshots"
for f in "$WORK"/tk/version-2/log.*; do
    out=$("$JAVA" -cp "$CP" org.apache.zookeeper.server.persistence.TxnLogToolkit -d "$f" 2>&1 | tr -d "\0") ||
        fail "TxnLogToolkit exit status $? on $f"
    grep -qi "exception" <<<"$out" && fail "TxnLogToolkit reported an exception on $f"
    log "TxnLogToolkit $(basename "$f"): $(tail -n1 <<<"$out")"
done
for f in "$WORK"/tk/version-2/snapshot.*; do
    out=$("$JAVA" -cp "$CP" org.apache.zookeeper.server.SnapshotFormatter "$f" 2>&1) ||
        fail "SnapshotFormatter exit status $? on $f"
    grep -qi "exception" <<<"$out" && fail "SnapshotFormatter reported an exception on $f"
    log "SnapshotFormatter $(basename "$f"): $(grep -m1 'ZNode Details' <<<"$out") $(tail -n1 <<<"$out")"
done
mkdir -p "$WORK/zk-on-testkit/data"
cp -r "$WORK/tk/version-2" "$WORK/zk-on-testkit/data/"
addr=$("$ZK" start-standalone "$WORK/zk-on-testkit")
"$TOOL" dump "$addr" "$WORK/zk-on-testkit.tree"
"$ZK" stop "$WORK/zk-on-testkit" >/dev/null 2>&1
diff -u "$WORK/testkit.tree" "$WORK/zk-on-testkit.tree" ||
    fail "ZooKeeper serves a different tree from the testkit's data dir"
if grep -a -E "Digests are not matching|digest mismatch|CRC check failed|Unreasonable length|partial" \
    "$WORK/zk-on-testkit/zk.log"; then
    fail "ZooKeeper complained while loading the testkit's data dir"
fi
log "OK testkit -> ZooKeeper: $(wc -l <"$WORK/testkit.tree") nodes identical, no digest mismatch"

# --- 2. ZooKeeper -> testkit -------------------------------------------------------------
rm -rf "$WORK/zk-native"
addr=$(ZK_CFG_EXTRA="snapCount=60" "$ZK" start-standalone "$WORK/zk-native")
"$TOOL" sample "$addr" "$WORK/zookeeper.tree"
"$ZK" stop "$WORK/zk-native" >/dev/null 2>&1
log "ZooKeeper wrote $(ls "$WORK"/zk-native/data/version-2/log.* | wc -l) logs and $(ls "$WORK"/zk-native/data/version-2/snapshot.* | wc -l) snapshots"
"$TOOL" load-dir "$WORK/zk-native/data" "$WORK/testkit-on-zk.tree"
diff -u "$WORK/zookeeper.tree" "$WORK/testkit-on-zk.tree" ||
    fail "the testkit recovers a different tree from ZooKeeper's data dir"
log "OK ZooKeeper -> testkit: $(wc -l <"$WORK/zookeeper.tree") nodes identical, digests equal"

[[ $# -eq 0 ]] && rm -rf "$WORK"
log "PASS"
