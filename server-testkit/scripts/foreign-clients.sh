#!/usr/bin/env bash
# Runs clients nobody here wrote against zkit-server: Apache ZooKeeper's Java CLI (Debian
# `zookeeper` package) and the Python client kazoo.
#
# Usage: server-testkit/scripts/foreign-clients.sh [REAL_ZK_HOST:PORT]
#   With the address of a *fresh* real server, the zkCli transcript is also diffed against it
#   (standalone target only).
# Environment: ZKCLI (default /usr/share/zookeeper/bin/zkCli.sh), KAZOO_PYTHON (a python with
# kazoo installed; default python3; kazoo is skipped when it cannot import it), ZKIT_TARGET:
#   standalone  one `zkit-server` (default)
#   ensemble    `zkit-server --ensemble 3`: the clients get all three servers, and a kazoo client
#               survives `kill` of the leader through the control port (kazoo_failover.py)
#   processes   three `zkit-server --config zoo.cfg` processes, from the zoo.cfg files
#               `scripts/zookeeper.sh start-ensemble` writes (ZK_IMPL=zkit); the kazoo client
#               survives SIGKILL of the leader process and its restart
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ZKCLI=${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}
KAZOO_PYTHON=${KAZOO_PYTHON:-python3}
TARGET=${ZKIT_TARGET:-standalone}
tmp=$(mktemp -d)
server_pid=
cleanup() {
    local status=$?
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    fi
    if [[ $TARGET == processes ]]; then
        ZK_IMPL=zkit "$root/scripts/zookeeper.sh" stop "$tmp/procs" 2>/dev/null || true
        ((status == 0)) || tail -n 30 "$tmp"/procs/s*/zk.log >&2 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build -q -p zkit-testkit --bin zkit-server --manifest-path "$root/Cargo.toml"
bin=$root/target/debug/zkit-server
failover=()
case $TARGET in
standalone)
    "$bin" --port 0 --four-letter-words '*' 2>"$tmp/server.log" &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$tmp/server.log" 2>/dev/null && break
        sleep 0.05
    done
    addr=$(grep -o 'listening on [0-9.:]*' "$tmp/server.log" | head -1 | awk '{print $3}')
    ;;
ensemble)
    "$bin" --ensemble 3 --four-letter-words '*' >"$tmp/ensemble.out" 2>"$tmp/server.log" &
    server_pid=$!
    # The lines come once a leader serves.
    for _ in $(seq 1200); do
        grep -q '^control ' "$tmp/ensemble.out" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    addr=$(awk '/^connect /{print $2}' "$tmp/ensemble.out")
    failover=(--control "$(awk '/^control /{print $2}' "$tmp/ensemble.out")")
    ;;
processes)
    addr=$(ZK_IMPL=zkit ZKIT_SERVER=$bin "$root/scripts/zookeeper.sh" start-ensemble "$tmp/procs")
    failover=(--zk-dir "$tmp/procs")
    ;;
*)
    echo "ZKIT_TARGET must be standalone, ensemble or processes, not $TARGET" >&2
    exit 2
    ;;
esac
[[ -n $addr ]] || { cat "$tmp/server.log" >&2; exit 1; }
echo "zkit-server ($TARGET) on $addr" >&2

transcript() { # server -> normalised zkCli output
    "$ZKCLI" -server "$1" <"$here/zkcli_session.txt" 2>&1 |
        grep -v -E '^(log4j|SLF|Welcome|JLine|Connecting to|$)' |
        sed -E 's/[A-Z][a-z]{2} [A-Z][a-z]{2} [0-9]{2} [0-9:]{8} [A-Z]+ [0-9]{4}/DATE/; s/ephemeralOwner = 0x[0-9a-f]{6,}/ephemeralOwner = SESSION/'
}

if [[ -x $ZKCLI ]]; then
    transcript "$addr" >"$tmp/mine.txt"
    for want in 'Created /a/s0000000000' 'Created /e/x0000000001' \
        'type:NodeDataChanged path:/e/q' "'digest,'user:smGaoVKd/cQkjm7b88GyorAUz20=" \
        'cversion = -1' 'Unimplemented for /t'; do
        grep -qF "$want" "$tmp/mine.txt" || { echo "zkCli: missing '$want'" >&2; cat "$tmp/mine.txt" >&2; exit 1; }
    done
    if [[ -n ${1:-} && $TARGET == standalone ]]; then
        transcript "$1" >"$tmp/real.txt"
        if diff -u "$tmp/real.txt" "$tmp/mine.txt" >"$tmp/diff.txt"; then
            echo "zkCli transcript identical to the real server's" >&2
        else
            # zkCli prints watch events from its event thread: their place among the main
            # thread's lines is a race in the client, so compare as multisets too.
            diff <(sort "$tmp/real.txt") <(sort "$tmp/mine.txt")
            echo "zkCli transcript identical to the real server's up to event-thread interleaving" >&2
        fi
    fi
    echo "zkCli ($TARGET): OK" >&2
else
    echo "zkCli not found at $ZKCLI, skipped" >&2
fi

if "$KAZOO_PYTHON" -c 'import kazoo' 2>/dev/null; then
    "$KAZOO_PYTHON" "$here/kazoo_check.py" "$addr"
    if ((${#failover[@]})); then
        # The processes target restarts its member through zookeeper.sh, which must launch
        # zkit-server again.
        ZK_IMPL=zkit ZKIT_SERVER=$bin "$KAZOO_PYTHON" "$here/kazoo_failover.py" "$addr" \
            "${failover[@]}"
    fi
else
    echo "kazoo not importable by $KAZOO_PYTHON, skipped" >&2
fi
