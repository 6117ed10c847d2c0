//! Comparisons and descriptions the end-to-end tests share: whole-buffer comparison with the
//! first difference, a ping that must be answered, and readable session lists and counter
//! changes for failure messages.

use std::time::Duration;

use anyhow::{Result, bail, ensure};

use crate::{NetNs, Session, Stats};

/// `ping -c COUNT` from `ns` to `target`; errors unless every echo is answered.
pub fn ping_all(ns: &NetNs, target: &str, count: u32) -> Result<()> {
    let count_s = count.to_string();
    let out = ns.try_run(
        &["ping", "-c", &count_s, "-i", "0.2", "-W", "2", target],
        Duration::from_secs(30),
    )?;
    let text = out.stdout_str();
    let want = format!("{count} packets transmitted, {count} received");
    ensure!(
        out.status.success() && text.contains(&want),
        "ping {target} from {}: expected `{want}`, got ({}):\n{text}{}",
        ns.name(),
        out.status,
        out.stderr_str()
    );
    Ok(())
}

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
