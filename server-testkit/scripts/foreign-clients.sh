#!/usr/bin/env bash
# Runs clients nobody here wrote against zkit-server: Apache ZooKeeper's Java CLI (Debian
# `zookeeper` package) and the Python client kazoo.
#
# Usage: server-testkit/scripts/foreign-clients.sh [REAL_ZK_HOST:PORT]
#   With the address of a *fresh* real server, the zkCli transcript is also diffed against it.
# Environment: ZKCLI (default /usr/share/zookeeper/bin/zkCli.sh), KAZOO_PYTHON (a python with
# kazoo installed; default python3; kazoo is skipped when it cannot import it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ZKCLI=${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}
KAZOO_PYTHON=${KAZOO_PYTHON:-python3}
tmp=$(mktemp -d)
server_pid=
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build -q -p zkit-testkit --bin zkit-server --manifest-path "$root/Cargo.toml"
"$root/target/debug/zkit-server" --port 0 --four-letter-words '*' 2>"$tmp/server.log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q 'listening on' "$tmp/server.log" 2>/dev/null && break
    sleep 0.05
done
addr=$(grep -o 'listening on [0-9.:]*' "$tmp/server.log" | head -1 | awk '{print $3}')
[[ -n $addr ]] || { cat "$tmp/server.log" >&2; exit 1; }
echo "zkit-server on $addr" >&2

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
    if [[ -n ${1:-} ]]; then
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
    echo "zkCli: OK" >&2
else
    echo "zkCli not found at $ZKCLI, skipped" >&2
fi

if "$KAZOO_PYTHON" -c 'import kazoo' 2>/dev/null; then
    "$KAZOO_PYTHON" "$here/kazoo_check.py" "$addr"
else
    echo "kazoo not importable by $KAZOO_PYTHON, skipped" >&2
fi
