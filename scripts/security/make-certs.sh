#!/usr/bin/env bash
# Makes a throw-away CA and a server certificate for localhost / 127.0.0.1 in DIR (openssl):
#   ca.pem, ca.key                 the CA
#   server.pem, server.key         the server's certificate (SAN DNS:localhost, IP:127.0.0.1)
#   server-keystore.pem            key and certificate in one file, as ZooKeeper's PEM keystore
#                                  (scripts/zookeeper.sh with ZK_TLS_DIR=DIR) wants them
# Valid two days; never committed.
#
# Usage: scripts/security/make-certs.sh DIR
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=zkit-test-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
cat "$dir/server.key" "$dir/server.pem" >"$dir/server-keystore.pem"
rm -f "$dir/server.csr" "$dir/san.ext"
