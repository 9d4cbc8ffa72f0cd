//! `zoo.cfg` parsing: the file `scripts/zookeeper.sh` writes, Java properties syntax, and every
//! error naming its key and line.

use std::path::PathBuf;
use std::time::Duration;

use super::member::MemberConfig;
use super::zoocfg::{parse_myid, ConfigError, ZooCfg};

/// A member's file as `scripts/zookeeper.sh start-ensemble` writes it.
const SCRIPT_CFG: &str = "\
# written by scripts/zookeeper.sh
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/tmp/zk/s1/data
clientPort=40001
clientPortAddress=127.0.0.1
4lw.commands.whitelist=*
admin.enableServer=false
server.1=127.0.0.1:40002:40003
server.2=127.0.0.1:40005:40006
server.3=127.0.0.1:40008:40009
";

fn err(text: &str) -> ConfigError {
    match ZooCfg::parse(text) {
        Err(e) => e,
        Ok(c) => panic!("expected an error, parsed {c:?}"),
    }
}

fn quorum(extra: &str) -> String {
    format!("{SCRIPT_CFG}{extra}")
}

#[test]
fn the_scripts_member_file_parses_into_an_ensemble() {
    let c = ZooCfg::parse(SCRIPT_CFG).unwrap();
    assert!(c.is_quorum());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.tick(), Duration::from_millis(2000));
    assert_eq!((c.init_limit, c.sync_limit), (Some(10), Some(5)));
    assert_eq!(c.data_dir, Some(PathBuf::from("/tmp/zk/s1/data")));
    assert_eq!(c.client_port, Some(40001));
    assert_eq!(c.client_port_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(c.four_letter_words.as_deref(), Some("*"));
    let ids: Vec<i64> = c.servers.iter().map(|s| s.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let s2 = &c.servers[1];
    assert_eq!(
        (
            s2.host.as_str(),
            s2.quorum_port,
            s2.election_port,
            s2.observer
        ),
        ("127.0.0.1", 40005, 40006, false)
    );
    assert_eq!(s2.line, 11);
    assert_eq!(c.line_of("clientPort"), Some(6));
}

#[test]
fn server_lines_take_roles_client_addresses_and_ipv6() {
    let c = ZooCfg::parse(&quorum(
        "server.4=[::1]:40011:40012:observer;[::1]:40013\n\
         server.5=zk5.example:40014:40015:participant;0.0.0.0:40016\n\
         server.6=127.0.0.1:40017:40018;40019\n",
    ))
    .unwrap();
    let s4 = &c.servers[3];
    assert_eq!(s4.host, "::1");
    assert!(s4.observer);
    assert_eq!(s4.client, Some((Some("::1".into()), 40013)));
    assert_eq!(c.servers[4].client, Some((Some("0.0.0.0".into()), 40016)));
    assert_eq!(c.servers[5].client, Some((None, 40019)));
    assert_eq!(c.voters().count(), 5);
}

#[test]
fn java_properties_syntax_is_understood() {
    let c = ZooCfg::parse(
        "! bang comment\n   # indented comment\n\ntickTime : 100\ninitLimit 3\n\
         syncLimit=\\\n   2\ndataDir=/tmp/a\\ b\nclientPort=0\n",
    )
    .unwrap();
    assert_eq!(c.tick(), Duration::from_millis(100));
    assert_eq!((c.init_limit, c.sync_limit), (Some(3), Some(2)));
    assert_eq!(c.data_dir, Some(PathBuf::from("/tmp/a b")));
    assert!(!c.is_quorum());
}

#[test]
fn system_property_style_keys_are_read() {
    let c = ZooCfg::parse(&quorum(
        "extendedTypesEnabled=true\nforceSync=no\nsnapCount=1000\n\
         DigestAuthenticationProvider.superDigest=super:abc=\n\
         autopurge.purgeInterval=1\nautopurge.snapRetainCount=5\nzkit.secretFile=/tmp/zk/secret\n",
    ))
    .unwrap();
    assert!(c.extended_types);
    assert_eq!(c.force_sync, Some(false));
    assert_eq!(c.snap_count, Some(1000));
    assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
    assert_eq!(c.purge_keep, Some(5));
    assert_eq!(c.secret_file, Some(PathBuf::from("/tmp/zk/secret")));
    let c = ZooCfg::parse(&quorum("zookeeper.extendedTypesEnabled=TRUE\n")).unwrap();
    assert!(c.extended_types);
}

#[test]
fn unknown_and_unsupported_keys_are_warnings_naming_their_line() {
    let c = ZooCfg::parse(&quorum(
        "someFutureKey=1\nsslQuorum=true\nmetricsProvider.className=x\n",
    ))
    .unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            "line 13: someFutureKey: unknown key: ignored",
            "line 14: sslQuorum: not supported by zkit: ignored"
        ]
    );
}

#[test]
fn a_secure_client_port_is_read_and_an_ensemble_member_warns_it_is_ignored() {
    let text = quorum(
        "secureClientPort=2182\nssl.keyStore.location=/k.pem\nssl.trustStore.location=/t.pem\n\
         ssl.clientAuth=NONE\n",
    );
    let c = ZooCfg::parse(&text).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.secure_client_port, Some(2182));
    assert_eq!(c.ssl_client_auth.as_deref(), Some("none"));
    let m = super::MemberConfig::with_myid(c, 1).unwrap();
    let w: Vec<String> = m.zoo_cfg().warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("secureClientPort") && w.contains("standalone")),
        "{w:?}"
    );
    // A store that is not PEM is an error naming its key.
    let e = ZooCfg::parse(&quorum("ssl.keyStore.location=/k.jks\n")).unwrap_err();
    assert!(e.to_string().contains("ssl.keyStore.location"), "{e}");
}

#[test]
fn an_even_number_of_voters_is_allowed_with_a_warning() {
    let c = ZooCfg::parse(&quorum("server.4=127.0.0.1:40011:40012\n")).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = c.warnings[0].to_string();
    assert!(w.contains("4 voters") && w.contains("server.N"), "{w}");
    // Observers do not vote.
    let c = ZooCfg::parse(&quorum("server.4=127.0.0.1:40011:40012:observer\n")).unwrap();
    assert!(c.warnings.is_empty());
}

#[test]
fn malformed_lines_are_errors_naming_key_and_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "tickTime=fast\n",
            "tickTime",
            13,
            "expects a non-negative number",
        ),
        ("initLimit=0\n", "initLimit", 13, "at least 1"),
        (
            "server.4=127.0.0.1:40011\n",
            "server.4",
            13,
            "host:quorumPort",
        ),
        (
            "server.4=127.0.0.1:40011:x\n",
            "server.4",
            13,
            "election port",
        ),
        (
            "server.4=127.0.0.1:40011:40012:voter\n",
            "server.4",
            13,
            "participant or observer",
        ),
        (
            "server.x=127.0.0.1:40011:40012\n",
            "server.x",
            13,
            "not a number",
        ),
        (
            "server.300=127.0.0.1:40011:40012\n",
            "server.300",
            13,
            "1 to 255",
        ),
        ("server.4=::1:40011:40012\n", "server.4", 13, "host:port"),
        ("server.4=fe80::1:40011:40012\n", "server.4", 13, "brackets"),
        (
            "server.2=127.0.0.1:40021:40022\n",
            "server.2",
            13,
            "duplicate server id 2 (also on line 11)",
        ),
        (
            "server.4=127.0.0.1:40005:40012\n",
            "server.4",
            13,
            "also server.2's (line 11)",
        ),
        (
            "server.4=127.0.0.1:40011:40011\n",
            "server.4",
            13,
            "are the same",
        ),
        (
            "server.4=a:1:2|b:1:2\n",
            "server.4",
            13,
            "several addresses",
        ),
        ("group.1=1:2:3\n", "group.1", 13, "hierarchical"),
        (
            "dynamicConfigFile=/x\n",
            "dynamicConfigFile",
            13,
            "not supported",
        ),
        ("dataLogDir=/elsewhere\n", "dataLogDir", 13, "not supported"),
        (
            "standaloneEnabled=maybe\n",
            "standaloneEnabled",
            13,
            "true or false",
        ),
        ("clientPort=70000\n", "clientPort", 13, "expects a port"),
        (
            "minSessionTimeout=9000\nmaxSessionTimeout=4000\n",
            "minSessionTimeout",
            13,
            "exceeds",
        ),
    ];
    for (extra, key, line, what) in cases {
        let e = err(&quorum(extra));
        assert_eq!(e.key, *key, "{extra}: {e}");
        assert_eq!(e.line, Some(*line), "{extra}: {e}");
        assert!(e.reason.contains(what), "{extra}: {e}");
        assert!(
            e.to_string().starts_with(&format!("line {line}: {key}: ")),
            "{e}"
        );
    }
}

#[test]
fn required_keys_are_named_when_missing() {
    let e = err("clientPort=1\n");
    assert_eq!(e.key, "dataDir");
    let e = err("dataDir=/x\n");
    assert_eq!(e.key, "clientPort");
    let no_limits = SCRIPT_CFG.replace("initLimit=10\n", "");
    assert_eq!(err(&no_limits).key, "initLimit");
    // A standalone file needs no limits.
    ZooCfg::parse("dataDir=/x\nclientPort=0\n").unwrap();
    let observers_only = "dataDir=/x\nclientPort=1\ninitLimit=1\nsyncLimit=1\n\
                          server.1=h:1:2:observer\nserver.2=h:3:4:observer\n";
    assert!(err(observers_only).reason.contains("participant"));
}

#[test]
fn a_member_is_found_by_myid_with_its_client_address() {
    let c = ZooCfg::parse(SCRIPT_CFG).unwrap();
    let m = MemberConfig::with_myid(c.clone(), 2).unwrap();
    assert_eq!(m.id(), 2);
    assert!(!m.shares_secret());
    let e = MemberConfig::with_myid(c.clone(), 7).unwrap_err();
    assert_eq!(e.key, "myid");
    assert!(e.reason.contains("no server.7 line"), "{e}");
    // A client port on the server line must agree with clientPort.
    let c = ZooCfg::parse(&SCRIPT_CFG.replace(
        "server.2=127.0.0.1:40005:40006",
        "server.2=127.0.0.1:40005:40006;40099",
    ))
    .unwrap();
    let e = MemberConfig::with_myid(c, 2).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("server.2", Some(11)));
    let c = ZooCfg::parse(&quorum("zkit.secretFile=/tmp/s\n")).unwrap();
    assert!(MemberConfig::with_myid(c, 1).unwrap().shares_secret());
    // A standalone file has no members.
    let c = ZooCfg::parse("dataDir=/x\nclientPort=0\nserver.1=h:1:2\n").unwrap();
    assert!(!c.is_quorum());
    assert!(MemberConfig::with_myid(c, 1).is_err());
}

#[test]
fn myid_files_hold_one_number() {
    assert_eq!(parse_myid("3\n"), Ok(3));
    assert_eq!(parse_myid("  12 "), Ok(12));
    assert!(parse_myid("").unwrap_err().contains("empty"));
    assert!(parse_myid("one").unwrap_err().contains("not a server id"));
}

#[test]
fn load_names_the_file_in_errors_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zoo.cfg");
    std::fs::write(&path, quorum("bogus=1\n")).unwrap();
    let c = ZooCfg::load(&path).unwrap();
    assert!(c.warnings[0]
        .to_string()
        .starts_with(&format!("{}:13: bogus", path.display())));
    std::fs::write(&path, quorum("tickTime=x\n")).unwrap();
    let e = ZooCfg::load(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:13: tickTime: ", path.display())),
        "{e}"
    );
    let e = ZooCfg::load(&dir.path().join("missing.cfg")).unwrap_err();
    assert!(e.reason.contains("cannot read"), "{e}");
    // A missing myid names the file and the ids to choose from.
    let c = ZooCfg::parse(&SCRIPT_CFG.replace("/tmp/zk/s1/data", dir.path().to_str().unwrap()))
        .unwrap();
    let e = MemberConfig::from_zoo_cfg(c.clone()).unwrap_err();
    assert_eq!(e.file, Some(dir.path().join("myid")));
    assert!(e.reason.contains("one of 1, 2, 3"), "{e}");
    std::fs::write(dir.path().join("myid"), "x").unwrap();
    assert!(MemberConfig::from_zoo_cfg(c.clone()).is_err());
    std::fs::write(dir.path().join("myid"), "3\n").unwrap();
    assert_eq!(MemberConfig::from_zoo_cfg(c).unwrap().id(), 3);
}

#[test]
fn mixed_ensemble_keys_opt_into_zookeeper_passwords_and_leader_digests() {
    let c = ZooCfg::parse(SCRIPT_CFG).unwrap();
    assert_eq!(c.session_passwords, crate::core::PasswordScheme::Keyed);
    assert!(!c.proposal_digests);
    let c = ZooCfg::parse(&quorum(
        "zkit.sessionPasswords=zookeeper\nzkit.proposalDigests=true\n",
    ))
    .unwrap();
    assert_eq!(c.session_passwords, crate::core::PasswordScheme::ZooKeeper);
    assert!(c.proposal_digests);
    let e = err(&quorum("zkit.sessionPasswords=java\n"));
    assert!(e.to_string().contains("zkit.sessionPasswords"), "{e}");
}
