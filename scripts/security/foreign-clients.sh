#!/usr/bin/env bash
# Foreign clients against `zkit-server --sasl-users --tls-cert ...`: kazoo's own SASL
# DIGEST-MD5 login (sasl_options; plain port and TLS port) and zkCli.sh with a JAAS `Client`
# section reading a node protected by a `sasl:bob` ACL; then `--sasl-users` given a JAAS file
# (real ZooKeeper's format) with `--require-sasl`: kazoo without SASL refused, with it served.
# Certificates are made here (openssl).
#
# Usage: scripts/security/foreign-clients.sh
# Environment: KAZOO_PYTHON (a python with kazoo and pure-sasl; default python3),
#   ZKCLI (default /usr/share/zookeeper/bin/zkCli.sh), ZKIT_SERVER (default: built here).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${KAZOO_PYTHON:-python3}
ZKCLI=${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}
tmp=$(mktemp -d)
server_pid=
cleanup() {
    stop_server
    rm -rf "$tmp"
}
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    fi
    server_pid=
}
trap cleanup EXIT

"$python" -c 'import kazoo, puresasl' || {
    echo "kazoo and pure-sasl must be importable by $python" >&2
    exit 1
}
[[ -x $ZKCLI ]] || { echo "zkCli.sh missing at $ZKCLI" >&2; exit 1; }
if [[ -z ${ZKIT_SERVER:-} ]]; then
    cargo build -q -p zkit-testkit --bin zkit-server --manifest-path "$root/Cargo.toml"
    ZKIT_SERVER=$root/target/debug/zkit-server
fi

# A CA and a server certificate for localhost / 127.0.0.1.
"$here/make-certs.sh" "$tmp"

cat >"$tmp/users" <<'USERS'
# user=password, one per line
bob=secret
alice=alice-pw
root=root-pw
USERS

# start_server WAIT_FOR ARGS...: zkit-server with ARGS until its log has WAIT_FOR.
start_server() {
    local want=$1
    shift
    "$ZKIT_SERVER" --port 0 "$@" 2>"$tmp/server.log" &
    server_pid=$!
    for _ in $(seq 200); do
        grep -q "$want" "$tmp/server.log" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    addr=$(grep -o 'listening on [0-9.:]*' "$tmp/server.log" | head -1 | awk '{print $3}')
    secure=$(grep -o 'secure port on [0-9.:]*' "$tmp/server.log" | head -1 | awk '{print $4}' || true)
    [[ -n $addr ]] || { cat "$tmp/server.log" >&2; exit 1; }
}

start_server 'secure port on' --sasl-users "$tmp/users" --sasl-super-user root \
    --tls-cert "$tmp/server.pem" --tls-key "$tmp/server.key" --secure-port 0
[[ -n $secure ]] || { cat "$tmp/server.log" >&2; exit 1; }
echo "zkit-server on $addr, TLS on $secure" >&2

"$python" "$here/kazoo_sasl.py" "$addr" "localhost:${secure##*:}" "$tmp/ca.pem"

# zkCli.sh with a JAAS Client section (DIGEST-MD5): reads the sasl:bob node kazoo made; alice
# is refused.
zkcli_as() { # user password -> zkCli output of `get /kazoo-sasl`
    cat >"$tmp/jaas-$1.conf" <<JAAS
Client {
  org.apache.zookeeper.server.auth.DigestLoginModule required
  username="$1"
  password="$2";
};
JAAS
    CLIENT_JVMFLAGS="-Djava.security.auth.login.config=$tmp/jaas-$1.conf" \
        timeout 60 "$ZKCLI" -server "$addr" get /kazoo-sasl 2>&1 || true
}
out=$(zkcli_as bob secret)
grep -qx 'for bob' <<<"$out" || { echo "zkCli as bob: $out" >&2; exit 1; }
out=$(zkcli_as alice alice-pw)
grep -q 'Insufficient permission\|NoAuth' <<<"$out" || { echo "zkCli as alice: $out" >&2; exit 1; }
echo "zkCli.sh with a JAAS Client section (DIGEST-MD5): OK" >&2

# The same users from a JAAS file (real ZooKeeper's format), and SASL required.
stop_server
cat >"$tmp/jaas-server.conf" <<'JAAS'
Server {
  org.apache.zookeeper.server.auth.DigestLoginModule required
  user_bob="secret"
  user_alice="alice-pw";
};
JAAS
start_server 'listening on' --sasl-users "$tmp/jaas-server.conf" --require-sasl
"$python" "$here/kazoo_required.py" "$addr" alice alice-pw
