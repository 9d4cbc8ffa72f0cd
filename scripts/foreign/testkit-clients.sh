#!/usr/bin/env bash
# Foreign clients against zkit-server: Apache ZooKeeper's Java CLI (zkCli.sh, Debian package)
# and kazoo (PyPI). Both are required here: a missing one is a failure, not a skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${KAZOO_PYTHON:-python3}
"$python" -c 'import kazoo' || { echo "kazoo is not importable by $python" >&2; exit 1; }
[[ -x ${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh} ]] || { echo "zkCli.sh missing" >&2; exit 1; }
KAZOO_PYTHON=$python exec "$root/server-testkit/scripts/foreign-clients.sh"
