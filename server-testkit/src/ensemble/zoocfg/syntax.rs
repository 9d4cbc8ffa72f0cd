//! The syntax of `zoo.cfg` and `myid`: Java properties lines, values, `server.N` entries.

use super::{ConfigError, ServerLine};
use std::time::Duration;

/// The logical lines of a Java properties text: (line number, key, value).
pub(super) fn properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let first = raw.trim_start();
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = first.to_owned();
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key(&logical);
        out.push((i + 1, unescape(key), unescape(value).trim().to_owned()));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace, as `java.util.Properties` does.
fn split_key(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (&line[..i], line[i + 1..].trim_start()),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix(['=', ':'])
                    .map_or(rest, |r| r.trim_start());
                return (&line[..i], rest);
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = it.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

pub(super) fn non_empty(v: &str) -> Result<&str, String> {
    if v.is_empty() {
        Err("has no value".into())
    } else {
        Ok(v)
    }
}

pub(super) fn number(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("expects a non-negative number, got {v:?}"))
}

pub(super) fn ticks(v: &str) -> Result<u64, String> {
    match number(v)? {
        0 => Err("must be at least 1 (ticks)".into()),
        n => Ok(n),
    }
}

pub(super) fn millis(v: &str) -> Result<Duration, String> {
    number(v).map(Duration::from_millis)
}

pub(super) fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expects true or false, got {v:?}")),
    }
}

pub(super) fn port(v: &str, zero_ok: bool) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(0) if !zero_ok => Err("port 0 cannot be reached by the other servers".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("expects a port (0-65535), got {v:?}")),
    }
}

/// `host:rest` or `[v6]:rest`: the host (without brackets) and the rest.
fn host_and_rest<'a>(s: &'a str, what: &str) -> Result<(String, &'a str), String> {
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner
            .find(']')
            .ok_or_else(|| format!("{what}: '[' without ']'"))?;
        let rest = &inner[end + 1..];
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("{what}: expected ':' after ']'"))?;
        return Ok((inner[..end].to_owned(), rest));
    }
    match s.split_once(':') {
        Some((h, rest)) if !h.is_empty() => Ok((h.to_owned(), rest)),
        _ => Err(format!("{what}: expected host:port")),
    }
}

/// Parses one `server.N` entry.
pub(super) fn server_line(key: &str, value: &str, line: usize) -> Result<ServerLine, ConfigError> {
    let err = |reason: String| ConfigError::new(Some(line), key, reason);
    const SHAPE: &str = "expected host:quorumPort:electionPort[:participant|:observer]\
                         [;[clientHost:]clientPort]";
    let id: i64 = key["server.".len()..]
        .parse()
        .map_err(|_| err("the server id after `server.` is not a number".into()))?;
    if !(1..=255).contains(&id) {
        return Err(err(format!(
            "server id {id} is out of range: ids are 1 to 255 (a session id carries its \
             server's id in one byte)"
        )));
    }
    if value.contains('|') {
        return Err(err(
            "several addresses for one server (`|`) are not supported".into(),
        ));
    }
    let (server, client) = match value.split_once(';') {
        Some((s, c)) => (s.trim(), Some(c.trim())),
        None => (value.trim(), None),
    };
    let (host, rest) = host_and_rest(server, SHAPE).map_err(err)?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (q, e, kind) = match parts.as_slice() {
        [q, e] => (*q, *e, None),
        [q, e, k] => (*q, *e, Some(*k)),
        _ if parts.len() < 4 => return Err(err(SHAPE.into())),
        _ => {
            return Err(err(format!(
                "{SHAPE} (an IPv6 address goes in brackets: [::1]:2888:3888)"
            )))
        }
    };
    let quorum_port = port(q, false).map_err(|r| err(format!("quorum port: {r}")))?;
    let election_port = port(e, false).map_err(|r| err(format!("election port: {r}")))?;
    let observer = match kind {
        None | Some("participant") => false,
        Some("observer") => true,
        Some(other) => {
            return Err(err(format!(
                "the role is participant or observer, not {other:?}"
            )))
        }
    };
    let client = match client {
        None => None,
        Some(c) if !c.contains(':') => Some((
            None,
            port(c, true).map_err(|r| err(format!("client port: {r}")))?,
        )),
        Some(c) => {
            let (h, p) = host_and_rest(c, "client address").map_err(err)?;
            Some((
                Some(h),
                port(p, true).map_err(|r| err(format!("client port: {r}")))?,
            ))
        }
    };
    Ok(ServerLine {
        id,
        host,
        quorum_port,
        election_port,
        observer,
        client,
        line,
    })
}

/// Parses the contents of a `myid` file: one server id (surrounding whitespace allowed).
pub fn parse_myid(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("the file is empty: it must hold this server's id".into());
    }
    t.parse::<i64>()
        .map_err(|_| format!("{t:?} is not a server id (a number)"))
}
