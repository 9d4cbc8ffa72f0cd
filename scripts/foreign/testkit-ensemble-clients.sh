#!/usr/bin/env bash
# Foreign clients (zkCli.sh, kazoo) against the two multi-server forms of zkit-server: an
# in-process ensemble (`--ensemble 3`, faults through its control port) and three
# `--config zoo.cfg` processes (SIGKILL of the leader process). Both clients are required here:
# a missing one is a failure, not a skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${KAZOO_PYTHON:-python3}
"$python" -c 'import kazoo' || { echo "kazoo is not importable by $python" >&2; exit 1; }
[[ -x ${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh} ]] || { echo "zkCli.sh missing" >&2; exit 1; }
for target in ensemble processes; do
    echo "--- foreign clients against zkit-server: $target" >&2
    ZKIT_TARGET=$target KAZOO_PYTHON=$python "$root/server-testkit/scripts/foreign-clients.sh"
done
