#!/usr/bin/env bash
# CI phase: targeted faults, read-only mode and zkit-diff against real ZooKeeper. Sourced by
# .ci/run (which defines say, cargo_test_counted, SUMMARY, ZK_SH and VENV); `run_faults`:
#   1. read-only mode against a real 3-server ensemble started with ZK_READONLY=1 (and local
#      sessions, which ZooKeeper 3.8's read-only server needs to hand out a session): the
#      client tests of server-testkit/tests/read_only.rs stop two servers and start them again;
#   2. the kazoo script driving the fault commands of zkit-server's control port, on a
#      standalone server and on `--ensemble 3`;
#   3. zkit-diff, CI_FAULTS_DIFF_OPS operations (default 5000), between a fresh real standalone
#      ZooKeeper and the testkit, standalone and `--ensemble 3`.
# A few minutes in all. Every server it starts is stopped (by pid, or zookeeper.sh stop DIR).
# Run alone:
#   ROOT=$PWD ZK_SH=scripts/zookeeper.sh VENV=.venv bash scripts/ci/faults.sh
# which runs the phase with minimal stand-ins for the helpers of .ci/run.

# Apt packages: the phase needs what .ci/run installs already (zookeeper, python venv).
install_faults() {
    [[ -f /usr/share/java/zookeeper.jar ]] || "$ZK_SH" install
}

# Starts `zkit-server ARGS` in the background; sets FAULTS_PID and FAULTS_LINES (its stdout up
# to the `control` line).
faults_start_zkit() {
    local out=$FAULTS_TMP/zkit-$RANDOM.out
    "$ROOT/target/debug/zkit-server" "$@" >"$out" 2>>"$FAULTS_TMP/zkit.err" &
    FAULTS_PID=$!
    FAULTS_PIDS+=("$FAULTS_PID")
    local i
    for ((i = 0; i < 600; i++)); do
        grep -q '^control ' "$out" 2>/dev/null && break
        kill -0 "$FAULTS_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    FAULTS_LINES=$(cat "$out")
}

faults_stop_all() {
    local p
    for p in "${FAULTS_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    FAULTS_PIDS=()
    local d
    for d in "$FAULTS_TMP"/ro "$FAULTS_TMP"/ref; do
        [[ -d $d ]] && "$ZK_SH" stop "$d" >/dev/null 2>&1 || true
    done
}

# One step: runs "$@", records "name: passed/FAILED" in SUMMARY.
faults_step() {
    local name=$1
    shift
    if "$@"; then
        SUMMARY+=("faults: $name: passed")
    else
        SUMMARY+=("faults: $name: FAILED")
        return 1
    fi
}

faults_kazoo() {
    faults_start_zkit "$@" || return 1
    local connect control
    connect=$(sed -n 's/^connect //p' <<<"$FAULTS_LINES")
    control=$(sed -n 's/^control //p' <<<"$FAULTS_LINES")
    "$VENV/bin/python" "$ROOT/server-testkit/tests/interop/kazoo_faults.py" "$connect" "$control"
}

faults_diff() {
    local ref=$1 seed=$2
    shift 2
    faults_start_zkit "$@" || return 1
    local cand
    cand=$(sed -n 's/^connect //p' <<<"$FAULTS_LINES" | cut -d, -f1)
    "$ROOT/target/debug/zkit-diff" --reference "$ref" --candidate "$cand" --seed "$seed" \
        --ops "${CI_FAULTS_DIFF_OPS:-5000}"
}

run_faults() {
    say "faults: read-only mode, kazoo on the control port, zkit-diff"
    install_faults || return 1
    FAULTS_TMP=$(mktemp -d)
    FAULTS_PIDS=()
    local failed=0
    # The profile the test phases built already (a narrower build would rebuild dependencies).
    cargo build --workspace --all-targets || return 1

    # 1. Read-only mode on real ZooKeeper (the testkit's runs in the workspace tests).
    if ZK_READONLY=1 ZK_CFG_EXTRA=$'localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true' \
        "$ZK_SH" start-ensemble "$FAULTS_TMP/ro" >/dev/null; then
        ZKIT_READONLY_ZK_DIR=$FAULTS_TMP/ro cargo_test_counted \
            "faults: read-only mode (real 3-server ensemble)" -p zkit-testkit --test read_only ||
            failed=1
        "$ZK_SH" stop "$FAULTS_TMP/ro" >/dev/null 2>&1 || true
    else
        SUMMARY+=("faults: read-only ensemble did not start: FAILED")
        failed=1
    fi

    # 2. kazoo drives the control port.
    faults_step "kazoo on the control port (standalone)" \
        faults_kazoo --port 0 --control-port 0 --tick-time 200 || failed=1
    faults_step "kazoo on the control port (--ensemble 3)" \
        faults_kazoo --ensemble 3 --tick-time 200 || failed=1
    faults_stop_all

    # 3. zkit-diff against a fresh, idle real standalone server.
    local ref
    if ref=$("$ZK_SH" start-standalone "$FAULTS_TMP/ref"); then
        faults_step "zkit-diff vs real ZooKeeper (testkit standalone)" \
            faults_diff "$ref" 11 --port 0 --control-port 0 || failed=1
        faults_step "zkit-diff vs real ZooKeeper (testkit --ensemble 3)" \
            faults_diff "$ref" 12 --ensemble 3 || failed=1
    else
        SUMMARY+=("faults: reference ZooKeeper did not start: FAILED")
        failed=1
    fi
    faults_stop_all
    ((failed == 0)) && rm -rf "$FAULTS_TMP"
    ((failed == 0))
}

# Run on its own (not sourced): minimal stand-ins for .ci/run's helpers.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
    ZK_SH=${ZK_SH:-$ROOT/scripts/zookeeper.sh}
    VENV=${VENV:-$ROOT/.venv}
    declare -a SUMMARY=()
    say() { printf '\n==> %s\n' "$*" >&2; }
    cargo_test_counted() {
        local phase=$1
        shift
        if cargo test "$@"; then SUMMARY+=("$phase: passed"); else
            SUMMARY+=("$phase: FAILED")
            return 1
        fi
    }
    cd "$ROOT"
    status=0
    run_faults || status=1
    printf '%s\n' "${SUMMARY[@]}"
    exit "$status"
fi
