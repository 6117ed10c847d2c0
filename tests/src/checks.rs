//! Comparisons and descriptions the end-to-end tests share: whole-buffer comparison with the
//! first difference, and readable session lists and counter changes for failure messages.

use anyhow::{Result, bail};

use crate::{Session, Stats};

/// Errors unless `got == want`, describing the first difference.
pub fn same_bytes(what: &str, got: &[u8], want: &[u8]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    bail!(
        "{what}: got {} bytes, expected {}; first difference at byte {first}",
        got.len(),
        want.len()
    )
}

/// A session list for failure messages (at most 40 lines).
pub fn describe_sessions(sessions: &[Session]) -> String {
    let mut s = format!("{} session(s):", sessions.len());
    for x in sessions.iter().take(40) {
        s.push_str(&format!(
            "\n  {} [{}]:{} -> {}:{} via {}:{} {}",
            x.protocol,
            x.client,
            x.client_port,
            x.remote,
            x.remote_port,
            x.pool,
            x.pool_port,
            x.state
        ));
    }
    s
}

/// What changed between two `stats --json` snapshots, for messages.
pub fn stats_delta(before: &Stats, after: &Stats) -> String {
    let mut out = Vec::new();
    for (kind, b, a) in [
        ("event", &before.events, &after.events),
        ("drop", &before.drops, &after.drops),
    ] {
        for (name, &n) in a {
            let old = b.get(name).copied().unwrap_or(0);
            if n != old {
                out.push(format!("{kind} {name} +{}", n.saturating_sub(old)));
            }
        }
    }
    if out.is_empty() {
        "no counter changed".to_owned()
    } else {
        out.join(", ")
    }
}
