# shellcheck shell=bash
# CI phase: TLS and SASL against real ZooKeeper (secureClientPort with the Netty connection
# factory, JAAS DIGEST-MD5) and the testkit, plus foreign clients (kazoo's sasl_options,
# zkCli.sh with a JAAS Client section) against `zkit-server --sasl-users --tls-cert`, and
# Kerberos: zkit's `gssapi` feature against real ZooKeeper with an MIT KDC (scripts/kdc.sh).
# Sourced by .ci/run; defines run_security.

# What the phase needs: real ZooKeeper (its package brings the netty jars the secure port uses),
# openssl (the foreign-client check makes its certificates with it), pure-sasl in the venv
# (kazoo's SASL), and MIT Kerberos with the headers and libclang the `gssapi` feature builds
# against (scripts/kdc.sh install).
install_security() {
    "$ROOT/scripts/zookeeper.sh" install || return 1
    "$ROOT/scripts/kdc.sh" install || return 1
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
    run_security_tls_suite || failed=1
    run_security_kerberos || failed=1
    ((failed == 0))
}

# The client suite's connect, session, watch, reconnect (restart, stall), chroot, auth and ops
# cases over TLS: every client the tests make to the target goes to its secure port
# (client/tests/common `ZK_TEST_TLS_CA`), on real ZooKeeper (secureClientPort, Netty) and on a
# zkit-server started from the same kind of zoo.cfg; both restart through zookeeper.sh.
TLS_SUITE=(--test session --test watches --test chroot --test auth --test ops)
run_security_tls_suite() {
    local d failed=0 impl
    d=$(mktemp -d)
    "$ROOT/scripts/security/make-certs.sh" "$d/certs" || return 1
    cargo build -q -p zkit-testkit --bin zkit-server || return 1
    for impl in zookeeper zkit; do
        if ZK_IMPL=$impl ZK_TLS_DIR=$d/certs "$ZK_SH" start-standalone "$d/$impl" >/dev/null; then
            ZK_IMPL=$impl ZK_TEST_CONNECT=$(cat "$d/$impl/secure_connect") \
                ZK_TEST_DIR=$d/$impl ZK_TEST_TLS_CA=$d/certs/ca.pem ZK_TEST_ENSEMBLE='' \
                ZK_TEST_ENSEMBLE_DIR='' cargo_test_counted \
                "security: client suite over TLS ($impl server)" -p zkit "${TLS_SUITE[@]}" -- \
                --test-threads=2 || failed=1
            ZK_IMPL=$impl "$ZK_SH" stop "$d/$impl" >/dev/null 2>&1 || true
        else
            SUMMARY+=("security: TLS server ($impl) did not start: FAILED")
            failed=1
        fi
    done
    ((failed == 0)) && rm -rf "$d"
    ((failed == 0))
}

# The `gssapi` feature: lint, then the Kerberos test against real ZooKeeper and a fresh KDC.
run_security_kerberos() {
    local failed=0 kdc kv kenv=()
    gate "security: clippy --features gssapi" \
        cargo clippy -q -p zkit --features gssapi --all-targets -- -D warnings || failed=1
    kdc=$(mktemp -d)
    if mapfile -t kenv < <("$ROOT/scripts/kdc.sh" start "$kdc/kdc") && ((${#kenv[@]})); then
        for kv in "${kenv[@]}"; do export "${kv?}"; done
        cargo_test_counted "security: kerberos" -p zkit --features gssapi --test security \
            kerberos -- --nocapture || failed=1
        unset KRB5_CONFIG KRB5_CLIENT_KTNAME KRB5CCNAME ZK_KDC_DIR
    else
        SUMMARY+=("security: kerberos FAILED (KDC did not start)")
        failed=1
    fi
    "$ROOT/scripts/kdc.sh" stop "$kdc/kdc"
    rm -rf "$kdc"
    ((failed == 0))
}
