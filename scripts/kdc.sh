#!/usr/bin/env bash
# An MIT Kerberos KDC on loopback, in a directory of its own, for the Kerberos (SASL GSSAPI)
# tests: realm ZKIT.TEST, ZooKeeper's service principal zookeeper/localhost and two client
# principals, each with a keytab.
#
# Usage:
#   scripts/kdc.sh install      install Debian's krb5-kdc, krb5-admin-server, krb5-user,
#                               libkrb5-dev, libclang-dev and pkg-config when missing (idempotent)
#   scripts/kdc.sh start DIR    create the realm's database in DIR, start krb5kdc on a free
#                               port; prints the environment the clients need (KEY=VALUE lines)
#   scripts/kdc.sh stop DIR     stop the KDC started in DIR (by its pid)
#
# DIR afterwards holds:
#   krb5.conf              the client configuration (KRB5_CONFIG; Java: -Djava.security.krb5.conf)
#   zookeeper.keytab       key of zookeeper/localhost@ZKIT.TEST (the server's JAAS keyTab)
#   clients.keytab         keys of alice@ZKIT.TEST and bob@ZKIT.TEST (KRB5_CLIENT_KTNAME)
#   alice.keytab, bob.keytab   one each
#   ccache/                a credential cache collection (KRB5CCNAME=DIR:DIR/ccache)
#   kdc.pid, kdc.log
# start prints: KRB5_CONFIG=..., KRB5_CLIENT_KTNAME=..., KRB5CCNAME=..., ZK_KDC_DIR=DIR
set -euo pipefail

REALM=ZKIT.TEST
log() { printf 'kdc.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PACKAGES=(krb5-kdc krb5-admin-server krb5-user libkrb5-dev libclang-dev pkg-config)

cmd_install() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    log "installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cmd_start() {
    local dir=$1 port
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -f $dir/kdc.pid ]] && kill -0 "$(<"$dir/kdc.pid")" 2>/dev/null &&
        die "a KDC already runs in $dir"
    port=$(free_port)
    mkdir -p "$dir/ccache"
    cat >"$dir/krb5.conf" <<EOF
[libdefaults]
    default_realm = $REALM
    dns_lookup_realm = false
    dns_lookup_kdc = false
    dns_canonicalize_hostname = false
    rdns = false
    ignore_acceptor_hostname = true
    udp_preference_limit = 1
    ticket_lifetime = 2h
    forwardable = false

[realms]
    $REALM = {
        kdc = 127.0.0.1:$port
    }

[domain_realm]
    localhost = $REALM
EOF
    cat >"$dir/kdc.conf" <<EOF
[kdcdefaults]
    kdc_ports = $port
    kdc_tcp_ports = $port

[realms]
    $REALM = {
        database_name = $dir/principal
        key_stash_file = $dir/stash
        acl_file = $dir/kadm5.acl
        max_life = 2h
    }

[logging]
    kdc = FILE:$dir/kdc.log
EOF
    : >"$dir/kadm5.acl"
    export KRB5_CONFIG=$dir/krb5.conf KRB5_KDC_PROFILE=$dir/kdc.conf
    kdb5_util -r "$REALM" create -s -P "zkit-master-$$-$RANDOM" >/dev/null 2>&1 ||
        die "kdb5_util create failed"
    local p
    for p in zookeeper/localhost alice bob; do
        kadmin.local -r "$REALM" -q "addprinc -randkey $p@$REALM" >/dev/null 2>&1 ||
            die "addprinc $p failed"
    done
    kadmin.local -r "$REALM" -q "ktadd -k $dir/zookeeper.keytab zookeeper/localhost@$REALM" \
        >/dev/null 2>&1 || die "ktadd zookeeper failed"
    for p in alice bob; do
        kadmin.local -r "$REALM" -q "ktadd -k $dir/$p.keytab $p@$REALM" >/dev/null 2>&1 ||
            die "ktadd $p failed"
    done
    # One keytab with both clients (ktadd again would change their keys: merge with ktutil).
    printf 'rkt %s\nrkt %s\nwkt %s\nquit\n' "$dir/alice.keytab" "$dir/bob.keytab" \
        "$dir/clients.keytab" | ktutil >/dev/null 2>&1 || die "ktutil merge failed"
    krb5kdc -n -r "$REALM" >>"$dir/kdc.log" 2>&1 &
    echo $! >"$dir/kdc.pid"
    # Ready once a client gets a ticket.
    local i
    for i in $(seq 100); do
        if KRB5CCNAME=FILE:$dir/probe.cc kinit -k -t "$dir/alice.keytab" "alice@$REALM" \
            >/dev/null 2>&1; then
            rm -f "$dir/probe.cc"
            log "KDC for $REALM on 127.0.0.1:$port (pid $(<"$dir/kdc.pid"))"
            printf 'KRB5_CONFIG=%s\nKRB5_CLIENT_KTNAME=%s\nKRB5CCNAME=%s\nZK_KDC_DIR=%s\n' \
                "$dir/krb5.conf" "$dir/clients.keytab" "DIR:$dir/ccache" "$dir"
            return 0
        fi
        kill -0 "$(<"$dir/kdc.pid")" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$dir/kdc.log" >&2 || true
    cmd_stop "$dir"
    die "the KDC did not serve"
}

cmd_stop() {
    local dir=$1 pid i
    [[ -f $dir/kdc.pid ]] || return 0
    pid=$(<"$dir/kdc.pid")
    if kill "$pid" 2>/dev/null; then
        for i in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/kdc.pid"
}

case ${1:-} in
install) cmd_install ;;
start) [[ -n ${2:-} ]] || die "usage: $0 start DIR"; cmd_start "$2" ;;
stop) [[ -n ${2:-} ]] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
*) die "usage: $0 install | start DIR | stop DIR" ;;
esac
