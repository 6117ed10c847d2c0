//! The port-block log (RFC 6888 section 4 / RFC 7422 style): one JSON line per block
//! allocation and release, with UTC timestamps, so "who held pool address A port P at time T"
//! always has an answer. Allocations come from the data plane (a ring buffer), releases from
//! the controller's expiry.
//!
//! Line format:
//! `{"ts":"2026-11-28T14:03:00.123Z","event":"block-allocated","client":"2001:db8:1::2",`
//! `"protocol":"udp","pool":"192.0.2.1","first_port":1024,"last_port":1087}`

use std::{
    io::{BufRead as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use serde::{Deserialize, Serialize};

use crate::config::Protocol;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ts: String,
    pub event: String,
    pub client: Ipv6Addr,
    /// The holder is the prefix `client`/`client_prefix_len` (`pool.subscriber_prefix_len`);
    /// left out of the line when it is 128 (one address).
    #[serde(default = "one_address", skip_serializing_if = "is_one_address")]
    pub client_prefix_len: u8,
    pub protocol: Protocol,
    pub pool: Ipv4Addr,
    pub first_port: u16,
    pub last_port: u16,
}

fn one_address() -> u8 {
    128
}

fn is_one_address(len: &u8) -> bool {
    *len >= 128
}

impl Entry {
    /// The holder as text: the address, or the subscriber prefix.
    pub fn holder(&self) -> String {
        if is_one_address(&self.client_prefix_len) {
            self.client.to_string()
        } else {
            format!("{}/{}", self.client, self.client_prefix_len)
        }
    }
}

pub const ALLOCATED: &str = "block-allocated";
pub const RELEASED: &str = "block-released";

/// Where the log goes.
pub enum BlockLog {
    Off,
    Stdout,
    File(PathBuf, std::fs::File),
}

impl BlockLog {
    /// `None` or "" turns it off, "-" is standard output, anything else a file (appended).
    pub fn open(target: Option<&str>) -> anyhow::Result<Self> {
        match target {
            None | Some("") => Ok(BlockLog::Off),
            Some("-") => Ok(BlockLog::Stdout),
            Some(p) => {
                let path = PathBuf::from(p);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("log.blocks: creating {}", dir.display()))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("log.blocks: opening {}", path.display()))?;
                Ok(BlockLog::File(path, f))
            }
        }
    }

    /// Writes one entry, timestamped `age` before now.
    #[allow(clippy::too_many_arguments)]
    pub fn write_aged(
        &mut self,
        event: &str,
        (client, client_prefix_len): (Ipv6Addr, u8),
        protocol: Protocol,
        pool: Ipv4Addr,
        first_port: u16,
        block_size: u16,
        age: std::time::Duration,
    ) {
        if matches!(self, BlockLog::Off) {
            return;
        }
        let e = Entry {
            ts: aged(age),
            event: event.to_owned(),
            client,
            client_prefix_len,
            protocol,
            pool,
            first_port,
            last_port: first_port.saturating_add(block_size.saturating_sub(1)),
        };
        let Ok(line) = serde_json::to_string(&e) else {
            return;
        };
        self.line(line);
    }
}

/// A session line of the log (`log.sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    pub ts: String,
    pub event: String,
    pub protocol: Protocol,
    pub client: Ipv6Addr,
    pub client_port: u16,
    pub pool: Ipv4Addr,
    pub pool_port: u16,
    pub remote: Ipv4Addr,
    pub remote_port: u16,
}

pub const SESSION_CREATED: &str = "session-created";
pub const SESSION_EXPIRED: &str = "session-expired";

impl BlockLog {
    /// Writes a session line, timestamped `age` before now.
    pub fn session(&mut self, mut e: SessionEntry, age: std::time::Duration) {
        if matches!(self, BlockLog::Off) {
            return;
        }
        e.ts = aged(age);
        let Ok(line) = serde_json::to_string(&e) else {
            return;
        };
        self.line(line);
    }

    fn line(&mut self, mut line: String) {
        line.push('\n');
        let r = match self {
            BlockLog::Off => Ok(()),
            BlockLog::Stdout => std::io::stdout().write_all(line.as_bytes()),
            BlockLog::File(_, f) => f.write_all(line.as_bytes()),
        };
        if let Err(err) = r {
            log::warn!("block log: {err}");
        }
    }
}

/// RFC 3339 UTC with milliseconds, `age` before now.
fn aged(age: std::time::Duration) -> String {
    let now = jiff::Timestamp::now();
    let ts = jiff::SignedDuration::try_from(age)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .unwrap_or(now);
    format!("{ts:.3}")
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// Parses an RFC 3339 time ("2026-11-28T14:03:00Z", offsets allowed).
pub fn parse_time(s: &str) -> anyhow::Result<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>()
        .map_err(|e| anyhow!("{s:?} is not an RFC 3339 time like 2026-11-28T14:03:00Z: {e}"))
}

/// Who held `pool`:`port` (for `protocol`, or any) at `at`, from a log file: every block
/// allocated at or before `at` and not released before it.
pub fn query(
    path: &Path,
    pool: Ipv4Addr,
    port: u16,
    protocol: Option<Protocol>,
    at: jiff::Timestamp,
) -> anyhow::Result<Vec<Entry>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // The lines of this port, sorted by time before they are replayed: lines are in the order
    // they were written, which is not strictly their time's (a pass's releases are written
    // after allocations drained meanwhile).
    let mut lines: Vec<(jiff::Timestamp, Entry)> = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))?;
        if !matches!(v["event"].as_str(), Some(ALLOCATED | RELEASED)) {
            // Session lines (log.sessions) share the file.
            continue;
        }
        let e: Entry = serde_json::from_value(v)
            .with_context(|| format!("{}:{}: not a block log line", path.display(), n + 1))?;
        if e.pool != pool
            || port < e.first_port
            || port > e.last_port
            || protocol.is_some_and(|p| p != e.protocol)
        {
            continue;
        }
        lines.push((parse_time(&e.ts)?, e));
    }
    lines.sort_by_key(|(ts, _)| *ts);
    let mut held: Vec<Entry> = Vec::new();
    for (_, e) in lines.into_iter().take_while(|(ts, _)| *ts <= at) {
        if e.event == ALLOCATED {
            held.push(e);
        } else {
            held.retain(|h| {
                !(h.client == e.client && h.protocol == e.protocol && h.first_port == e.first_port)
            });
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_prefix_holder_is_named_with_its_length() {
        let mut e = Entry {
            ts: "2026-11-28T10:00:00.000Z".into(),
            event: ALLOCATED.into(),
            client: "2001:db8:1::".parse().expect("address"),
            client_prefix_len: 64,
            protocol: Protocol::Udp,
            pool: Ipv4Addr::new(192, 0, 2, 1),
            first_port: 1024,
            last_port: 1087,
        };
        let line = serde_json::to_string(&e).expect("json");
        assert!(
            line.contains(r#""client":"2001:db8:1::","client_prefix_len":64"#),
            "{line}"
        );
        assert_eq!(e.holder(), "2001:db8:1::/64");
        let back: Entry = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, e);
        e.client_prefix_len = 128;
        let line = serde_json::to_string(&e).expect("json");
        assert!(!line.contains("client_prefix_len"), "{line}");
        assert_eq!(e.holder(), "2001:db8:1::");
        let back: Entry = serde_json::from_str(&line).expect("parse");
        assert_eq!(back.client_prefix_len, 128);
    }

    #[test]
    fn query_finds_the_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("blocklog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("blocks.jsonl");
        let lines = [
            r#"{"ts":"2026-11-28T10:00:00.000Z","event":"block-allocated","client":"2001:db8:1::2","protocol":"udp","pool":"192.0.2.1","first_port":1024,"last_port":1087}"#,
            r#"{"ts":"2026-11-28T10:05:00.000Z","event":"block-released","client":"2001:db8:1::2","protocol":"udp","pool":"192.0.2.1","first_port":1024,"last_port":1087}"#,
            r#"{"ts":"2026-11-28T10:06:00.000Z","event":"block-allocated","client":"2001:db8:1::3","protocol":"udp","pool":"192.0.2.1","first_port":1024,"last_port":1087}"#,
        ];
        std::fs::write(&path, lines.join("\n")).expect("write log");
        let pool = Ipv4Addr::new(192, 0, 2, 1);
        let at = |s: &str| parse_time(s).expect("time");
        let who = |t: &str, port: u16| {
            query(&path, pool, port, Some(Protocol::Udp), at(t))
                .expect("query")
                .into_iter()
                .map(|e| e.client.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(who("2026-11-28T10:03:00Z", 1030), ["2001:db8:1::2"]);
        assert!(who("2026-11-28T10:05:30Z", 1030).is_empty());
        assert_eq!(who("2026-11-28T10:07:00Z", 1087), ["2001:db8:1::3"]);
        assert!(who("2026-11-28T10:07:00Z", 1088).is_empty());
        assert!(who("2026-11-28T09:00:00Z", 1030).is_empty());
        assert!(
            query(
                &path,
                pool,
                1030,
                Some(Protocol::Tcp),
                at("2026-11-28T10:03:00Z")
            )
            .expect("query")
            .is_empty()
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn lines_out_of_time_order_are_replayed_in_time_order() {
        // A pass's release (10:05) written after an allocation drained meanwhile (10:06), and
        // the same client taking the block again (10:07) before its release line came.
        let dir = std::env::temp_dir().join(format!("blocklog-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("blocks.jsonl");
        let line = |ts: &str, event: &str, client: &str| {
            format!(
                r#"{{"ts":"2026-11-28T{ts}.000Z","event":"{event}","client":"{client}","protocol":"udp","pool":"192.0.2.1","first_port":1024,"last_port":1087}}"#
            )
        };
        let lines = [
            line("10:00:00", ALLOCATED, "2001:db8:1::2"),
            line("10:06:00", ALLOCATED, "2001:db8:1::3"),
            line("10:05:00", RELEASED, "2001:db8:1::2"),
            line("10:10:00", RELEASED, "2001:db8:1::3"),
            line("10:12:00", ALLOCATED, "2001:db8:1::2"),
            line("10:11:00", RELEASED, "2001:db8:1::2"),
        ];
        std::fs::write(&path, lines.join("\n")).expect("write log");
        let who = |t: &str| {
            let at = parse_time(&format!("2026-11-28T{t}Z")).expect("time");
            query(&path, Ipv4Addr::new(192, 0, 2, 1), 1030, None, at)
                .expect("query")
                .into_iter()
                .map(|e| e.client.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(who("10:04:00"), ["2001:db8:1::2"]);
        assert!(who("10:05:30").is_empty());
        assert_eq!(who("10:07:00"), ["2001:db8:1::3"]);
        assert!(who("10:11:30").is_empty());
        assert_eq!(who("10:13:00"), ["2001:db8:1::2"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn timestamps_round_trip() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z'), "{t}");
        parse_time(&t).expect("own timestamps parse");
        assert!(parse_time("yesterday").is_err());
    }
}
