#!/usr/bin/env bash
# Run the whole CI (.ci/run) several times in a row on a loaded machine, to flush out tests that
# pass on an idle machine but fail when the CPU is contended (timeouts that expire, sleeps that
# are too short, races that only open up when a thread is descheduled).
#
# Usage: scripts/ci-under-load.sh [N]        N runs (default 3); stops at the first failure
#
# While the runs go, one busy loop per core (niced, so they steal time from the tests without
# starving the rest of the machine) keeps every core busy. The loops are started by this script
# and killed by pid when it exits, whatever the reason. Dependencies are installed by .ci/run's
# first run only when missing: if ZooKeeper, java and the venv's kazoo are all present the runs
# get CI_SKIP_INSTALL=1.
#
# On a failure it prints the failed tests (test binary and name), the phases .ci/run reported
# as failed and any test that libtest flagged as running for over 60 s, then exits 1. Every
# run's full output stays in the log dir, which is printed at the end.
#
# Environment (all optional):
#   CI_LOAD_HOGS     number of busy loops (default: number of cores, `nproc`)
#   CI_LOAD_NICE     their nice level (default 10)
#   CI_LOAD_LOG_DIR  where the runs' logs go (default: a new temp dir)
#   CI_SKIP_GATES=1  passed through to .ci/run: skip the fmt/clippy/rustdoc gates, run only tests
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${1:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N]   (N >= 1)" >&2; exit 2; }
HOGS=${CI_LOAD_HOGS:-$(nproc)}
NICE=${CI_LOAD_NICE:-10}
LOG_DIR=${CI_LOAD_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/zkit-ci-load.XXXXXX")}
mkdir -p "$LOG_DIR"
declare -a HOG_PIDS=()

say() { printf '\n=== ci-under-load: %s\n' "$*" >&2; }

start_hogs() {
    local i
    for ((i = 0; i < HOGS; i++)); do
        # `nice` execs bash, so $! is the loop's own pid.
        nice -n "$NICE" bash -c 'while :; do :; done' &
        HOG_PIDS+=($!)
    done
    say "started $HOGS busy loop(s) at nice $NICE: pids ${HOG_PIDS[*]}"
}

stop_hogs() {
    local status=$? pid
    if ((${#HOG_PIDS[@]})); then
        for pid in "${HOG_PIDS[@]}"; do
            kill "$pid" 2>/dev/null || true
        done
        for pid in "${HOG_PIDS[@]}"; do
            wait "$pid" 2>/dev/null || true
        done
        say "stopped busy loops ${HOG_PIDS[*]}"
    fi
    exit "$status"
}

deps_present() {
    [[ -f /usr/share/java/zookeeper.jar ]] &&
        command -v java >/dev/null 2>&1 &&
        [[ -x $ROOT/.venv/bin/python ]] &&
        "$ROOT/.venv/bin/python" -c 'import kazoo' >/dev/null 2>&1
}

# The failed tests of one run's log: "binary: test" for every `test X ... FAILED`, the phases
# .ci/run's summary marks as failed, foreign-client scripts that failed, and slow tests.
report_failures() {
    local log=$1
    echo "failed tests:"
    awk '
        /^ *Running / { bin = $2 }
        /^test .* \.\.\. FAILED$/ { sub(/^test /, ""); sub(/ \.\.\. FAILED$/, ""); print "    " bin ": " $0; n++ }
        END { if (!n) print "    (none reported by libtest: see the failed phases)" }
    ' "$log"
    echo "failed phases:"
    grep -E '^    .*(FAILED|[1-9][0-9]* failed)' "$log" | sed 's/^/  /' || echo "    (none in the summary)"
    grep -E '^FAILED: |^error: ' "$log" | sed 's/^/    /' || true
    if grep -q 'has been running for over 60 seconds' "$log"; then
        echo "slow tests (over 60 s):"
        grep 'has been running for over 60 seconds' "$log" | sed 's/^/    /'
    fi
}

main() {
    trap stop_hogs EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local skip=0 run status log
    if deps_present; then
        skip=1
    fi
    start_hogs
    for ((run = 1; run <= RUNS; run++)); do
        log=$LOG_DIR/run-$run.log
        say "run $run/$RUNS (CI_SKIP_INSTALL=$skip, log $log), $(date +%T)"
        status=0
        CI_SKIP_INSTALL=$skip .ci/run 2>&1 | tee "$log" || status=$?
        if ((status != 0)); then
            say "run $run/$RUNS FAILED (exit $status) after $((run - 1)) passing run(s)"
            report_failures "$log" >&2
            echo "logs: $LOG_DIR" >&2
            exit 1
        fi
        say "run $run/$RUNS passed, $(date +%T)"
        skip=1
    done
    say "all $RUNS run(s) passed under load; logs: $LOG_DIR"
}

main "$@"
