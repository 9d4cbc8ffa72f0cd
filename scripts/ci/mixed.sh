# CI phase: mixed ensembles, real Apache ZooKeeper 3.8 and zkit-server in one ensemble
# (sourced by .ci/run; needs its cargo_test_counted, say, SUMMARY, ZK_SH, SERVER_CONFORMANCE).
#
# 1. server-testkit/tests/mixed.rs with ZKIT_MIXED=1: {3 real + 1 zkit observer},
#    {2 real + 1 zkit follower}, {1 real + 2 zkit}, each under a random write workload with
#    SIGKILL and restart of every member; afterwards every member has the same last zxid and
#    tree digest and no member counted a digest mismatch. Also a zkit observer catching up by
#    DIFF and by SNAP. ZKIT_MIXED_TXNS (default here 40000 writes per phase: at least 100 000
#    txns per ensemble, with the kills and restarts) sizes the workload; the log shows each
#    run's write count and every zkit member's digest checks.
# 2. The server conformance cases and the client suite against the zkit observer of a
#    {3 real + 1 zkit observer} ensemble.

# Java and Debian's zookeeper package (the main run installs them too; idempotent).
install_mixed() {
    "$ZK_SH" install >&2
}

run_mixed() {
    say "mixed ensembles (real ZooKeeper + zkit-server)"
    install_mixed || {
        SUMMARY+=("mixed ensembles: FAILED (install)")
        return 1
    }
    if ! cargo build -q -p zkit-testkit --bin zkit-server; then
        SUMMARY+=("mixed ensembles: FAILED (build)")
        return 1
    fi
    local failed=0 dir connect zkit
    ZKIT_MIXED=1 ZKIT_MIXED_TXNS=${ZKIT_MIXED_TXNS:-40000} \
        cargo_test_counted "mixed ensembles" -p zkit-testkit --test mixed -- --test-threads=1 \
        --nocapture ||
        failed=1
    dir=$(mktemp -d "${TMPDIR:-/tmp}/zkit-mixed.XXXXXX")
    if connect=$("$ZK_SH" start-mixed "$dir" --real 3 --zkit-observer 1); then
        zkit=${connect##*,}
        echo "mixed ensemble: $connect (zkit observer $zkit)" >&2
        ZKIT_TEST_SERVER=$zkit cargo_test_counted "mixed ensemble: server conformance on zkit" \
            -p zkit-testkit "${SERVER_CONFORMANCE[@]}" || failed=1
        # Only the observer's connect string: the directories of the real servers the earlier
        # phases exported must not be restarted or stalled in its place (the fault tests that
        # need a server directory skip themselves), and the ensemble tests use their own. (The
        # tests read an empty variable as unset.)
        ZK_TEST_DIR='' ZK_TEST_ENSEMBLE='' ZK_TEST_ENSEMBLE_DIR='' ZK_TEST_CONNECT=$zkit \
            cargo_test_counted "mixed ensemble: client suite on zkit" \
            -p zkit --tests -- --test-threads=2 || failed=1
        "$ZK_SH" stop "$dir" || true
    else
        SUMMARY+=("mixed ensemble: FAILED (start)")
        failed=1
    fi
    ((failed == 0)) && rm -rf "$dir"
    ((failed == 0))
}
