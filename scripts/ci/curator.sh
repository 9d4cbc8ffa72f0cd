# shellcheck shell=bash
# CI phase: Apache Curator interop. Sourced by .ci/run (uses its say, as_root and
# cargo_test_counted). The recipes' curator_* tests compile recipes/tests/interop/CuratorDriver.java
# with javac against Debian's Curator and ZooKeeper jars and run each Curator recipe against the
# zkit recipe on the same paths: on the in-process testkit, then on the real standalone server
# that .ci/run started (ZK_TEST_CONNECT), when there is one.

CURATOR_PACKAGES=(libcurator-framework-java libcurator-recipes-java libcurator-discovery-java
    libcurator-test-java default-jdk-headless)
CURATOR_TESTS=(--test curator_locks --test curator_leader --test curator_coordination
    --test curator_discovery)

# Installs the Curator jars and a JDK (javac) when missing. Idempotent.
install_curator() {
    local missing=() p
    for p in "${CURATOR_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The class path for Curator (client, framework, recipes, discovery), ZooKeeper and what they
# need at run time, from the jars Debian installs in /usr/share/java. Fails naming a missing jar.
curator_classpath() {
    local jars=(curator-client curator-framework curator-recipes curator-x-discovery zookeeper
        zookeeper-jute guava slf4j-api slf4j-nop jackson-core jackson-databind
        jackson-annotations netty-handler netty-common netty-buffer netty-transport
        netty-resolver netty-codec netty-transport-native-epoll
        netty-transport-native-unix-common)
    local cp="" j
    for j in "${jars[@]}"; do
        if [[ ! -f /usr/share/java/$j.jar ]]; then
            echo "curator_classpath: /usr/share/java/$j.jar is missing" >&2
            return 1
        fi
        cp+="${cp:+:}/usr/share/java/$j.jar"
    done
    printf '%s\n' "$cp"
}

run_curator() {
    say "Curator interop (curator-recipes, curator-x-discovery against zkit recipes)"
    if ! install_curator || ! CURATOR_CLASSPATH=$(curator_classpath); then
        SUMMARY+=("Curator interop: FAILED (setup)")
        return 1
    fi
    export CURATOR_CLASSPATH
    local failed=0 real=${ZK_TEST_CONNECT:-} real_dir=${ZK_TEST_DIR:-}
    # Without ZK_TEST_CONNECT the tests start their own testkit server.
    unset ZK_TEST_CONNECT ZK_TEST_DIR
    cargo_test_counted "Curator interop: testkit" -p zkit-recipes "${CURATOR_TESTS[@]}" ||
        failed=1
    [[ -z $real_dir ]] || export ZK_TEST_DIR=$real_dir
    if [[ -n $real ]]; then
        export ZK_TEST_CONNECT=$real
        cargo_test_counted "Curator interop: real ZooKeeper" \
            -p zkit-recipes "${CURATOR_TESTS[@]}" || failed=1
    else
        SUMMARY+=("Curator interop: real ZooKeeper skipped (no ZK_TEST_CONNECT)")
    fi
    ((failed == 0))
}
