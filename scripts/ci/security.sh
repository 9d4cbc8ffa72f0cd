# shellcheck shell=bash
# CI phase: TLS and SASL against real ZooKeeper (secureClientPort with the Netty connection
# factory, JAAS DIGEST-MD5) and the testkit. Sourced by .ci/run; defines run_security.

# What the phase needs: real ZooKeeper (its package brings the netty jars the secure port uses).
install_security() {
    "$ROOT/scripts/zookeeper.sh" install
}

run_security() {
    say "security: TLS and SASL against real ZooKeeper and the testkit"
    if ! install_security; then
        SUMMARY+=("security: FAILED (install)")
        return 1
    fi
    # The tests start their own servers (scripts/zookeeper.sh, temp dirs, free ports).
    if ZK_SECURITY_TESTS=1 ZK_HANDSHAKE_COST=1 cargo test -p zkit --test security -- --nocapture; then
        SUMMARY+=("security: passed")
    else
        SUMMARY+=("security: FAILED")
        return 1
    fi
}
