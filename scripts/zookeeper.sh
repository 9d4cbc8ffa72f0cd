#!/usr/bin/env bash
# Run real Apache ZooKeeper servers (Debian's `zookeeper` package) on loopback, for CI and for
# the conformance tests that compare zkit against the real thing.
#
# Usage:
#   scripts/zookeeper.sh install                 install Debian `zookeeper` if missing (idempotent)
#   scripts/zookeeper.sh start-standalone DIR    one server; prints 127.0.0.1:PORT
#   scripts/zookeeper.sh start-ensemble DIR      3 servers in DIR/s1..s3; prints the connect string
#   scripts/zookeeper.sh stop DIR                stop every server under DIR (TERM, then KILL)
#   scripts/zookeeper.sh restart DIR             stop then start again, same ports, same data
#   scripts/zookeeper.sh stop-one DIR N          stop server N of an ensemble
#   scripts/zookeeper.sh start-one DIR N         start server N again (same config and ports)
#   scripts/zookeeper.sh kill-one DIR N          SIGKILL server N (no shutdown at all)
#   scripts/zookeeper.sh status DIR              `srvr` of every server under DIR (stdout)
#   scripts/zookeeper.sh start-mixed DIR --real N [--zkit-follower F] [--zkit-observer M]
#                                                one ensemble of N real ZooKeeper participants
#                                                (s1..sN), F zkit participants and M zkit
#                                                observers after them, from one shared zoo.cfg;
#                                                prints the connect string (every member)
#   scripts/zookeeper.sh connect DIR             print the connect string recorded in DIR
#
# A DIR that already holds data (DIR/data, DIR/sN/data) keeps it: start-* write a fresh zoo.cfg
# with new ports but the server recovers the old tree and sessions. Use a new DIR for a clean
# server. restart / start-one keep the ports too.
#
# stdout carries only the connect string (start-*, restart) so callers can capture it with
# $(...); every other message goes to stderr. Ports are asked from the kernel, never fixed.
# DIR/connect holds the connect string; DIR[/sN]/pid the JVM pid; DIR[/sN]/zk.log its log.
#
# Environment (all optional):
#   ZK_TICK_TIME              tickTime in ms (default 2000)
#   ZK_MIN_SESSION_TIMEOUT    minSessionTimeout in ms (server default: 2 x tickTime)
#   ZK_MAX_SESSION_TIMEOUT    maxSessionTimeout in ms (server default: 20 x tickTime)
#   ZK_EXTENDED_TYPES=1       -Dzookeeper.extendedTypesEnabled=true (TTL nodes; off by default)
#   ZK_READONLY=1             -Dreadonlymode.enabled=true: a server cut off from its quorum
#                             serves read-only clients (`srvr` says `Mode: read-only`); JVM
#                             only (the testkit's: `Ensemble::builder().read_only(true)`,
#                             `zkit-server --ensemble N --read-only`)
#   ZK_ENSEMBLE_SIZE          number of servers for start-ensemble (default 3)
#   ZK_CFG_EXTRA              extra zoo.cfg lines (newline separated), appended verbatim
#   ZK_JAVA_OPTS              extra JVM options
#   ZK_LOG_LEVEL              log4j level for zk.log (default INFO)
#   ZK_START_TIMEOUT          seconds to wait for a server to serve (default 60)
#   ZK_STOP_TIMEOUT           seconds between SIGTERM and SIGKILL (default 15)
#   JAVA                      java binary (default: $JAVA_HOME/bin/java, else java)
#   ZK_IMPL=zkit              run `zkit-server --config DIR/zoo.cfg` instead of the JVM, from the
#                             same zoo.cfg files (plus `zkit.secretFile=DIR/zkit-secret` for an
#                             ensemble, so sessions move between members; real ZooKeeper ignores
#                             it); ZK_JAVA_OPTS does not apply
#   ZKIT_SERVER               the zkit-server binary (default: target/debug/zkit-server of this repo)
#   ZK_TLS_DIR                start-standalone also opens a TLS secureClientPort (Netty connection
#                             factory) with PEM files from this dir: server-keystore.pem (key and
#                             certificate chain) and ca.pem (trusted CAs); DIR/secure_connect then
#                             holds 127.0.0.1:SECUREPORT (stdout still prints the plain port);
#                             with ZK_IMPL=zkit, zkit-server reads the same zoo.cfg keys
#   ZK_TLS_CLIENT_AUTH        ssl.clientAuth for the secure port: none (default), want or need
#   ZK_JAAS_FILE              JAAS config for SASL (its Server section): the server gets
#                             -Djava.security.auth.login.config and the SASL auth provider
#   ZK_SASL_REQUIRED=1        -Dzookeeper.sessionRequireClientSASLAuth=true: clients must SASL
set -euo pipefail

ZK_JAR_DIR=${ZK_JAR_DIR:-/usr/share/java}
START_TIMEOUT=${ZK_START_TIMEOUT:-60}
STOP_TIMEOUT=${ZK_STOP_TIMEOUT:-15}

log() { printf 'zookeeper.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ZK_IMPL=${ZK_IMPL:-zookeeper}
case $ZK_IMPL in zookeeper | zkit) ;; *) die "ZK_IMPL must be zookeeper or zkit, not $ZK_IMPL" ;; esac
ZKIT_SERVER=${ZKIT_SERVER:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/debug/zkit-server}
is_zkit() { [[ $ZK_IMPL == zkit ]]; }
# Whether SRVDIR runs zkit-server: a mixed ensemble records each member's kind in SRVDIR/impl.
srv_is_zkit() {
    if [[ -f $1/impl ]]; then [[ $(<"$1/impl") == zkit ]]; else is_zkit; fi
}

java_bin() {
    if [[ -n ${JAVA:-} ]]; then
        printf '%s\n' "$JAVA"
    elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        printf '%s\n' "$JAVA_HOME/bin/java"
    else
        printf 'java\n'
    fi
}

zk_installed() {
    if is_zkit; then
        [[ -x $ZKIT_SERVER ]]
        return
    fi
    [[ -f $ZK_JAR_DIR/zookeeper.jar ]] && command -v "$(java_bin)" >/dev/null 2>&1
}

# What to tell when the servers cannot be started.
not_installed() {
    if is_zkit; then
        die "no zkit-server at $ZKIT_SERVER (cargo build -p zkit-testkit --bin zkit-server)"
    fi
    die "zookeeper is not installed (run: $0 install)"
}

cmd_install() {
    if zk_installed; then
        log "zookeeper already installed ($ZK_JAR_DIR/zookeeper.jar)"
        return 0
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available"
        sudo=(sudo)
    fi
    log "installing Debian package zookeeper"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends zookeeper >&2
    zk_installed || die "zookeeper installed but $ZK_JAR_DIR/zookeeper.jar or java is missing"
}

# The Debian jar's manifest Class-Path names its dependencies; we add a logging binding so the
# server writes a log (without one slf4j falls back to NOP and prints nothing at all).
classpath() {
    local cp=$ZK_JAR_DIR/zookeeper.jar jar
    # The manifest misses netty's codec and resolver, which the Netty connection factory (TLS)
    # needs.
    for jar in slf4j-log4j12.jar log4j-1.2.jar netty-codec.jar netty-resolver.jar; do
        [[ -f $ZK_JAR_DIR/$jar ]] && cp+=:$ZK_JAR_DIR/$jar
    done
    printf '%s\n' "$cp"
}

# Print N distinct free loopback TCP ports. All sockets are held open until every port has been
# chosen, so one call never returns the same port twice.
free_ports() {
    local n=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$n" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
    else
        # Fallback without python: random ports in 20000-59999 that nothing listens on.
        local ports=() p used
        used=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
        while ((${#ports[@]} < n)); do
            p=$((20000 + RANDOM % 40000))
            grep -qx "$p" <<<"$used" && continue
            [[ " ${ports[*]} " == *" $p "* ]] && continue
            ports+=("$p")
        done
        echo "${ports[*]}"
    fi
}

# Send a four-letter word to 127.0.0.1:PORT and print the answer (empty on failure).
four_letter() {
    local port=$1 word=$2
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "%s" "$2" >&3
        cat <&3
    ' _ "$port" "$word" 2>/dev/null || true
}

pid_alive() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# The pid in SRVDIR/pid, if that process is alive and really is our JVM (guards against pid reuse).
running_pid() {
    local srvdir=$1 pid
    [[ -f $srvdir/pid ]] || return 1
    pid=$(<"$srvdir/pid")
    pid_alive "$pid" || return 1
    # The server's last argument is the absolute path of its zoo.cfg.
    [[ $(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | tail -n1) == "$srvdir/zoo.cfg" ]] || return 1
    printf '%s\n' "$pid"
}

cfg_get() { sed -n "s/^$2=//p" "$1/zoo.cfg" | tail -n1; }

# Write SRVDIR/zoo.cfg and SRVDIR/log4j.properties. Extra lines (ensemble membership) on stdin.
write_config() {
    local srvdir=$1 port=$2
    mkdir -p "$srvdir/data"
    {
        echo "# written by scripts/zookeeper.sh"
        echo "tickTime=${ZK_TICK_TIME:-2000}"
        echo "initLimit=10"
        echo "syncLimit=5"
        echo "dataDir=$srvdir/data"
        echo "clientPort=$port"
        echo "clientPortAddress=127.0.0.1"
        echo "4lw.commands.whitelist=*"
        echo "admin.enableServer=false"
        [[ -n ${ZK_MIN_SESSION_TIMEOUT:-} ]] && echo "minSessionTimeout=$ZK_MIN_SESSION_TIMEOUT"
        [[ -n ${ZK_MAX_SESSION_TIMEOUT:-} ]] && echo "maxSessionTimeout=$ZK_MAX_SESSION_TIMEOUT"
        # The JVM gets -Dzookeeper.extendedTypesEnabled=true; zkit-server reads it from here.
        is_zkit && [[ ${ZK_EXTENDED_TYPES:-0} == 1 ]] && echo "extendedTypesEnabled=true"
        if [[ -n ${ZK_TLS_DIR:-} && -n ${3:-} ]]; then
            echo "secureClientPort=$3"
            echo "secureClientPortAddress=127.0.0.1"
            echo "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory"
            echo "ssl.keyStore.location=$ZK_TLS_DIR/server-keystore.pem"
            echo "ssl.keyStore.type=PEM"
            echo "ssl.trustStore.location=$ZK_TLS_DIR/ca.pem"
            echo "ssl.trustStore.type=PEM"
            echo "ssl.clientAuth=${ZK_TLS_CLIENT_AUTH:-none}"
        fi
        [[ -n ${ZK_JAAS_FILE:-} ]] &&
            echo "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
        cat
        [[ -n ${ZK_CFG_EXTRA:-} ]] && printf '%s\n' "$ZK_CFG_EXTRA"
        true
    } >"$srvdir/zoo.cfg"
    cat >"$srvdir/log4j.properties" <<EOF
log4j.rootLogger=${ZK_LOG_LEVEL:-INFO}, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
EOF
}

# Start the JVM (or zkit-server) for SRVDIR (whose zoo.cfg exists) in the background; record
# its pid.
launch() {
    local srvdir=$1 main=$2 java pid cmd
    java=$(java_bin)
    local opts=(
        -Xmx256m -Xms32m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -XX:-UsePerfData
        -Djava.net.preferIPv4Stack=true
        -Djava.awt.headless=true
        "-Dlog4j.configuration=file:$srvdir/log4j.properties"
        "-Dzookeeper.log.dir=$srvdir"
        -Dzookeeper.admin.enableServer=false
        -Dzookeeper.jmx.log4j.disable=true
    )
    [[ ${ZK_EXTENDED_TYPES:-0} == 1 ]] && opts+=(-Dzookeeper.extendedTypesEnabled=true)
    if grep -q '^secureClientPort=' "$srvdir/zoo.cfg"; then
        opts+=(-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory)
    fi
    [[ -n ${ZK_JAAS_FILE:-} ]] && opts+=("-Djava.security.auth.login.config=$ZK_JAAS_FILE")
    [[ ${ZK_SASL_REQUIRED:-0} == 1 ]] && opts+=(-Dzookeeper.sessionRequireClientSASLAuth=true)
    [[ ${ZK_READONLY:-0} == 1 ]] && opts+=(-Dreadonlymode.enabled=true)
    # shellcheck disable=SC2206 # word splitting of user-supplied options is intended
    [[ -n ${ZK_JAVA_OPTS:-} ]] && opts+=($ZK_JAVA_OPTS)
    # Either way the last argument is the absolute path of the zoo.cfg (see running_pid).
    if srv_is_zkit "$srvdir"; then
        cmd=("$ZKIT_SERVER" --config "$srvdir/zoo.cfg")
        main=zkit-server
    else
        cmd=("$java" "${opts[@]}" -cp "$(classpath)" "$main" "$srvdir/zoo.cfg")
    fi
    echo "=== $(date -Is) starting $main $srvdir/zoo.cfg" >>"$srvdir/zk.log"
    # setsid: the server must not share the caller's process group (a ^C aimed at a test run
    # should not half-kill an ensemble); stdin/stdout/stderr detached so a caller capturing
    # our stdout with $(...) or Command::output() is not kept waiting by the JVM.
    if command -v setsid >/dev/null 2>&1; then
        setsid "${cmd[@]}" </dev/null >>"$srvdir/zk.log" 2>&1 &
    else
        "${cmd[@]}" </dev/null >>"$srvdir/zk.log" 2>&1 &
    fi
    pid=$!
    echo "$pid" >"$srvdir/pid"
    # Until the forked shell has exec'd the server, /proc/PID/cmdline does not name our zoo.cfg and
    # running_pid would call the server dead; wait for the exec (or an early exit).
    local deadline=$((SECONDS + 10))
    until running_pid "$srvdir" >/dev/null; do
        pid_alive "$pid" && ((SECONDS < deadline)) || break
        sleep 0.05
    done
}

# Wait until every SRVDIR given answers `ruok` and its `srvr` shows one of the MODES
# (regex, e.g. 'standalone' or 'leader|follower'). Fails early if a JVM exits.
wait_serving() {
    local modes=$1
    shift
    local deadline=$((SECONDS + START_TIMEOUT)) srvdir port pending
    while :; do
        pending=()
        for srvdir in "$@"; do
            if ! running_pid "$srvdir" >/dev/null; then
                log "server in $srvdir exited during startup; last log lines:"
                tail -n 25 "$srvdir/zk.log" >&2 || true
                return 2
            fi
            port=$(cfg_get "$srvdir" clientPort)
            if [[ $(four_letter "$port" ruok) != imok ]] ||
                ! four_letter "$port" srvr | grep -Eq "^Mode: ($modes)\$"; then
                pending+=("$srvdir")
            fi
        done
        ((${#pending[@]} == 0)) && return 0
        if ((SECONDS >= deadline)); then
            log "timed out after ${START_TIMEOUT}s waiting for: ${pending[*]}"
            for srvdir in "${pending[@]}"; do tail -n 25 "$srvdir/zk.log" >&2 || true; done
            return 1
        fi
        sleep 0.2
    done
}

# True when a failed start was caused by a port that someone else took meanwhile.
bind_conflict() {
    local srvdir
    for srvdir in "$@"; do
        grep -qi 'Address already in use' "$srvdir/zk.log" 2>/dev/null && return 0
    done
    return 1
}

stop_srvdir() {
    local srvdir=$1 pid deadline
    pid=$(running_pid "$srvdir") || { rm -f "$srvdir/pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if pid_alive "$pid"; then
        log "pid $pid ($srvdir) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while pid_alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$srvdir/pid"
}

# Server directories under DIR: DIR itself for standalone, DIR/s1.. for an ensemble.
srvdirs() {
    local dir=$1 d
    [[ -f $dir/zoo.cfg ]] && printf '%s\n' "$dir"
    for d in "$dir"/s[0-9]*; do
        [[ -f $d/zoo.cfg ]] && printf '%s\n' "$d"
    done
    true
}

abs_dir() {
    mkdir -p "$1"
    (cd "$1" && pwd -P)
}

cmd_start_standalone() {
    local dir port attempt sport=""
    dir=$(abs_dir "$1")
    running_pid "$dir" >/dev/null && die "a server is already running in $dir"
    zk_installed || not_installed
    if [[ -n ${ZK_TLS_DIR:-} ]]; then
        [[ -f $ZK_TLS_DIR/server-keystore.pem && -f $ZK_TLS_DIR/ca.pem ]] ||
            die "ZK_TLS_DIR=$ZK_TLS_DIR needs server-keystore.pem and ca.pem"
    fi
    for attempt in 1 2 3; do
        if [[ -n ${ZK_TLS_DIR:-} ]]; then
            read -r port sport <<<"$(free_ports 2)"
        else
            port=$(free_ports 1)
        fi
        write_config "$dir" "$port" "$sport" </dev/null
        launch "$dir" org.apache.zookeeper.server.ZooKeeperServerMain
        if wait_serving standalone "$dir"; then
            echo "127.0.0.1:$port" >"$dir/connect"
            [[ -n $sport ]] && echo "127.0.0.1:$sport" >"$dir/secure_connect"
            log "standalone server pid $(<"$dir/pid") serving on 127.0.0.1:$port (log: $dir/zk.log)"
            echo "127.0.0.1:$port"
            return 0
        fi
        stop_srvdir "$dir"
        bind_conflict "$dir" || die "standalone server did not start (see $dir/zk.log)"
        log "port $port was taken meanwhile; retrying (attempt $attempt)"
        : >"$dir/zk.log"
    done
    die "could not find a free port"
}

# Launch the configured members SRVDIR... of DIR. Once every one serves in one of MODES
# (a `srvr` mode regex), record and print CONNECT and succeed. When a port was taken meanwhile,
# stop them, clear their logs and fail (the caller retries with new ports); die otherwise.
launch_members() {
    local dir=$1 modes=$2 what=$3 connect=$4 d
    shift 4
    for d in "$@"; do
        launch "$d" org.apache.zookeeper.server.quorum.QuorumPeerMain
    done
    if wait_serving "$modes" "$@"; then
        echo "$connect" >"$dir/connect"
        log "$what serving: $connect (logs: $dir/s*/zk.log)"
        echo "$connect"
        return 0
    fi
    for d in "$@"; do stop_srvdir "$d"; done
    bind_conflict "$@" || die "$what did not start (see $dir/s*/zk.log)"
    for d in "$@"; do : >"$d/zk.log"; done
    return 1
}

# Dies when one of servers 1..N of DIR is already running.
none_running() {
    local i
    for ((i = 1; i <= $2; i++)); do
        running_pid "$1/s$i" >/dev/null && die "server $i is already running in $1/s$i"
    done
    true
}

cmd_start_ensemble() {
    local dir n i attempt ports connect srv members
    dir=$(abs_dir "$1")
    n=${ZK_ENSEMBLE_SIZE:-3}
    zk_installed || not_installed
    none_running "$dir" "$n"
    for attempt in 1 2 3; do
        # 3 ports per server: client, quorum, election.
        read -r -a ports <<<"$(free_ports $((3 * n)))"
        members=""
        connect=""
        for ((i = 1; i <= n; i++)); do
            members+="server.$i=127.0.0.1:${ports[3 * i - 2]}:${ports[3 * i - 1]}"$'\n'
            connect+="${connect:+,}127.0.0.1:${ports[3 * i - 3]}"
        done
        # zkit members must share the key of session passwords to move sessions between them.
        is_zkit && members+="zkit.secretFile=$dir/zkit-secret"$'\n'
        srv=()
        for ((i = 1; i <= n; i++)); do
            write_config "$dir/s$i" "${ports[3 * i - 3]}" < <(printf '%s' "$members")
            echo "$i" >"$dir/s$i/data/myid"
            srv+=("$dir/s$i")
        done
        launch_members "$dir" 'leader|follower' "ensemble of $n" "$connect" "${srv[@]}" &&
            return 0
        log "a port was taken meanwhile; retrying (attempt $attempt)"
    done
    die "could not find free ports"
}

# A mixed ensemble: real ZooKeeper and zkit-server members sharing one zoo.cfg (each member's
# copy differs only in its own dataDir and clientPort). zkit members derive session passwords
# as ZooKeeper does (zkit.sessionPasswords=zookeeper), so sessions move between all members.
cmd_start_mixed() {
    local dir=$1 real=0 zf=0 zo=0 n i attempt ports connect members srv d kind
    shift
    while (($#)); do
        case $1 in
        --real) real=$2 ;;
        --zkit-follower) zf=$2 ;;
        --zkit-observer) zo=$2 ;;
        *) usage ;;
        esac
        shift 2 || usage
    done
    n=$((real + zf + zo))
    ((real + zf > 0)) || die "a mixed ensemble needs at least one participant"
    dir=$(abs_dir "$dir")
    ZK_IMPL=zookeeper zk_installed || ZK_IMPL=zookeeper not_installed
    if ((zf + zo > 0)); then ZK_IMPL=zkit zk_installed || ZK_IMPL=zkit not_installed; fi
    none_running "$dir" "$n"
    for attempt in 1 2 3; do
        read -r -a ports <<<"$(free_ports $((3 * n)))"
        members=""
        connect=""
        for ((i = 1; i <= n; i++)); do
            members+="server.$i=127.0.0.1:${ports[3 * i - 2]}:${ports[3 * i - 1]}"
            ((i > real + zf)) && members+=":observer"
            members+=$'\n'
            connect+="${connect:+,}127.0.0.1:${ports[3 * i - 3]}"
        done
        members+="zkit.sessionPasswords=zookeeper"$'\n'
        # A zkit leader attaches its tree digests, which the real followers check.
        members+="zkit.proposalDigests=true"$'\n'
        srv=()
        for ((i = 1; i <= n; i++)); do
            d=$dir/s$i
            kind=zookeeper
            ((i > real)) && kind=zkit
            {
                printf '%s' "$members"
                ((i > real + zf)) && echo "peerType=observer"
                true
            } | write_config "$d" "${ports[3 * i - 3]}"
            echo "$kind" >"$d/impl"
            echo "$i" >"$d/data/myid"
            srv+=("$d")
        done
        launch_members "$dir" 'leader|follower|observer' \
            "mixed ensemble ($real real, $zf zkit followers, $zo zkit observers)" "$connect" \
            "${srv[@]}" && return 0
        log "a port was taken meanwhile; retrying (attempt $attempt)"
    done
    die "could not find free ports"
}

cmd_stop() {
    local dir d pid
    [[ -d $1 ]] || { log "$1 does not exist; nothing to stop"; return 0; }
    dir=$(abs_dir "$1")
    # Signal every server first, then wait: an ensemble stops in one deadline, not three.
    local dirs=()
    mapfile -t dirs < <(srvdirs "$dir")
    for d in "${dirs[@]}"; do
        if pid=$(running_pid "$d"); then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for d in "${dirs[@]}"; do stop_srvdir "$d"; done
    log "stopped servers under $dir"
}

cmd_stop_one() {
    local dir
    dir=$(abs_dir "$1")
    [[ -f $dir/s$2/zoo.cfg ]] || die "no server $2 in $dir"
    stop_srvdir "$dir/s$2"
    log "stopped server $2 of $dir"
}

cmd_kill_one() {
    local dir pid
    dir=$(abs_dir "$1")
    [[ -f $dir/s$2/zoo.cfg ]] || die "no server $2 in $dir"
    if pid=$(running_pid "$dir/s$2"); then
        kill -KILL "$pid" 2>/dev/null || true
        while pid_alive "$pid"; do sleep 0.05; done
    fi
    rm -f "$dir/s$2/pid"
    log "killed server $2 of $dir"
}

# Restart server N with its existing config. Waits for it to serve when a quorum of the
# ensemble (counting N) is running; otherwise it cannot serve yet, so only waits for `ruok`.
cmd_start_one() {
    local dir srvdir live=0 total=0 d
    dir=$(abs_dir "$1")
    srvdir=$dir/s$2
    [[ -f $srvdir/zoo.cfg ]] || die "no server $2 in $dir"
    running_pid "$srvdir" >/dev/null && die "server $2 is already running"
    launch "$srvdir" org.apache.zookeeper.server.quorum.QuorumPeerMain
    while read -r d; do
        total=$((total + 1))
        running_pid "$d" >/dev/null && live=$((live + 1))
    done < <(srvdirs "$dir")
    if ((2 * live > total)); then
        wait_serving 'leader|follower|observer' "$srvdir" || die "server $2 did not rejoin"
    else
        log "only $live of $total servers running: not waiting for a quorum"
        wait_ruok "$srvdir" || die "server $2 did not start"
    fi
    log "started server $2 of $dir on port $(cfg_get "$srvdir" clientPort)"
}

wait_ruok() {
    local srvdir=$1 deadline=$((SECONDS + START_TIMEOUT)) port
    port=$(cfg_get "$srvdir" clientPort)
    until [[ $(four_letter "$port" ruok) == imok ]]; do
        running_pid "$srvdir" >/dev/null || return 2
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

cmd_restart() {
    local dir d
    dir=$(abs_dir "$1")
    local dirs=()
    mapfile -t dirs < <(srvdirs "$dir")
    ((${#dirs[@]} > 0)) || die "no server configured in $dir"
    cmd_stop "$dir"
    if [[ ${dirs[0]} == "$dir" ]]; then
        launch "$dir" org.apache.zookeeper.server.ZooKeeperServerMain
        wait_serving standalone "$dir" || die "standalone server did not restart"
    else
        for d in "${dirs[@]}"; do
            launch "$d" org.apache.zookeeper.server.quorum.QuorumPeerMain
        done
        wait_serving 'leader|follower|observer' "${dirs[@]}" || die "ensemble did not restart"
    fi
    log "restarted servers under $dir"
    cat "$dir/connect"
}

cmd_status() {
    local d port
    while read -r d; do
        port=$(cfg_get "$d" clientPort)
        echo "== $d (127.0.0.1:$port, pid $(running_pid "$d" || echo none))"
        four_letter "$port" srvr
    done < <(srvdirs "$(abs_dir "$1")")
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
    install) cmd_install ;;
    start-standalone) (($# == 1)) || usage; cmd_start_standalone "$1" ;;
    start-ensemble) (($# == 1)) || usage; cmd_start_ensemble "$1" ;;
    stop) (($# == 1)) || usage; cmd_stop "$1" ;;
    restart) (($# == 1)) || usage; cmd_restart "$1" ;;
    stop-one) (($# == 2)) || usage; cmd_stop_one "$1" "$2" ;;
    start-one) (($# == 2)) || usage; cmd_start_one "$1" "$2" ;;
    kill-one) (($# == 2)) || usage; cmd_kill_one "$1" "$2" ;;
    status) (($# == 1)) || usage; cmd_status "$1" ;;
    start-mixed) (($# >= 3)) || usage; cmd_start_mixed "$@" ;;
    connect) (($# == 1)) || usage; cat "$1/connect" ;;
    *) usage ;;
    esac
}

main "$@"
