//! `zkit-server --config zoo.cfg`: one member of a multi-process ensemble, or a standalone
//! server, from ZooKeeper's own configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use zkit_testkit::{Error, FourLetterWords, Member, MemberConfig, ZooCfg};

/// What `--config` was given.
pub struct Args {
    config: PathBuf,
    secret_file: Option<PathBuf>,
}

/// Parses the arguments of config mode (`--config` among them).
pub fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut config = None;
    let mut secret_file = None;
    let mut it = args;
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--secret-file" => secret_file = Some(PathBuf::from(value()?)),
            other => {
                return Err(format!(
                    "{other} is not available with --config: the settings come from the file \
                     (see --help)"
                ))
            }
        }
    }
    Ok(Args {
        config: config.ok_or("--config needs a value")?,
        secret_file,
    })
}

/// `ruok` is always answered so scripts can poll for readiness; the rest follows the file.
fn words(cfg: &ZooCfg) -> FourLetterWords {
    let list = cfg.four_letter_words.as_deref().unwrap_or("srvr");
    FourLetterWords::parse(&format!("{list},ruok"))
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("zkit-server: {e}");
    match e {
        Error::ZooCfg(_) | Error::Config(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// Runs the server the file describes until SIGTERM or Ctrl-C.
pub async fn run(args: Args, terminated: impl std::future::Future<Output = ()>) -> ExitCode {
    let cfg = match ZooCfg::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(&e.into()),
    };
    if !cfg.is_quorum() {
        for w in &cfg.warnings {
            eprintln!("zkit-server: warning: {w}");
        }
        let builder = match zkit_testkit::Builder::from_zoo_cfg(&cfg) {
            Ok(b) => b.four_letter_words(words(&cfg)),
            Err(e) => return fail(&e.into()),
        };
        let mut server = match builder.start().await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        eprintln!(
            "zkit-server listening on {} (standalone, {})",
            server.connect_string(),
            args.config.display()
        );
        if let Some(secure) = server.secure_addr() {
            eprintln!("zkit-server secure port on {secure}");
        }
        terminated.await;
        tracing::info!("shutting down");
        server.stop().await;
        return ExitCode::SUCCESS;
    }
    let words = words(&cfg);
    let mut mc = match MemberConfig::from_zoo_cfg(cfg) {
        Ok(m) => m.four_letter_words(words),
        Err(e) => return fail(&e.into()),
    };
    if let Some(s) = args.secret_file {
        mc = mc.secret_file(s);
    }
    for w in &mc.zoo_cfg().warnings {
        eprintln!("zkit-server: warning: {w}");
    }
    let (id, members) = (mc.id(), mc.zoo_cfg().servers.len());
    let member = match Member::start(mc).await {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    eprintln!(
        "zkit-server listening on {} (server.{id} of an ensemble of {members})",
        member.client_addr()
    );
    terminated.await;
    tracing::info!("shutting down");
    member.stop().await;
    ExitCode::SUCCESS
}
