# shellcheck shell=bash
# CI phase: TLS and SASL against real ZooKeeper (secureClientPort with the Netty connection
# factory, JAAS DIGEST-MD5) and the testkit, plus foreign clients (kazoo's sasl_options,
# zkCli.sh with a JAAS Client section) against `zkit-server --sasl-users --tls-cert`.
# Sourced by .ci/run; defines run_security.

# What the phase needs: real ZooKeeper (its package brings the netty jars the secure port uses),
# openssl (the foreign-client check makes its certificates with it) and pure-sasl in the venv
# (kazoo's SASL).
install_security() {
    "$ROOT/scripts/zookeeper.sh" install || return 1
    if ! command -v openssl >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -q --no-install-recommends openssl || return 1
    fi
    if ! "$VENV/bin/python" -c 'import puresasl' >/dev/null 2>&1; then
        "$VENV/bin/pip" install --quiet --disable-pip-version-check pure-sasl || return 1
    fi
}

run_security() {
    say "security: TLS and SASL against real ZooKeeper and the testkit"
    if ! install_security; then
        SUMMARY+=("security: FAILED (install)")
        return 1
    fi
    local failed=0
    # The tests start their own servers (scripts/zookeeper.sh, temp dirs, free ports).
    ZK_SECURITY_TESTS=1 ZK_HANDSHAKE_COST=1 \
        cargo_test_counted security -p zkit --test security -- --nocapture || failed=1
    echo "--- scripts/security/foreign-clients.sh" >&2
    if KAZOO_PYTHON="$VENV/bin/python" bash "$ROOT/scripts/security/foreign-clients.sh"; then
        SUMMARY+=("security: kazoo SASL/TLS and zkCli JAAS against zkit-server passed")
    else
        SUMMARY+=("security: foreign clients FAILED")
        failed=1
    fi
    ((failed == 0))
}
