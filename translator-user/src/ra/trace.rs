//! Router discovery events for `translator trace`: what the controller's sender/responder sent
//! and received, while someone traces.
//!
//! A tracer binds a Unix datagram socket `ra-trace-<pid>.sock` in the instance's run folder
//! (`/run/translator/<instance>/`); the controller sends every event, one JSON object per
//! datagram, to each such socket it finds. Nothing is sent (and nothing is formatted) when no
//! tracer listens: the cost is one directory listing per event, and events are rare (one
//! advertisement every few minutes, one per solicitation). Sends never block: when a tracer
//! reads too slowly its socket buffer fills and further events are dropped for it; a socket
//! whose tracer died (connection refused) is removed.

use std::net::Ipv6Addr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const PREFIX: &str = "ra-trace-";
const SUFFIX: &str = ".sock";

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaEvent {
    /// "ra" (an advertisement sent) or "rs" (a solicitation received).
    pub event: String,
    pub src: Ipv6Addr,
    pub dst: Option<Ipv6Addr>,
    /// For "ra": "unsolicited", "solicited", "final"; for "rs": "answer", "refused".
    pub what: String,
    /// Human-readable details: sizes and lifetimes, the refusal reason, when the answer goes.
    pub detail: String,
}

impl RaEvent {
    /// One line for `translator trace`.
    pub fn text(&self) -> String {
        let dst = self.dst.map_or_else(|| "?".to_owned(), |d| d.to_string());
        let kind = if self.event == "ra" {
            "router advertisement"
        } else {
            "router solicitation"
        };
        format!(
            "{:<4} {} -> {}  {kind} ({}): {}",
            self.event, self.src, dst, self.what, self.detail
        )
    }
}

/// The controller's side: sends events to the tracers of one instance.
#[derive(Debug, Clone)]
pub struct TraceSink {
    dir: PathBuf,
}

impl TraceSink {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.to_owned(),
        }
    }

    fn listeners(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
            })
            .collect()
    }

    /// Sends the event built by `make` to every tracer (`make` runs only when one listens).
    pub fn emit(&self, make: impl FnOnce() -> RaEvent) {
        let listeners = self.listeners();
        if listeners.is_empty() {
            return;
        }
        let Ok(json) = serde_json::to_vec(&make()) else {
            return;
        };
        let Ok(sock) = UnixDatagram::unbound() else {
            return;
        };
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        for path in listeners {
            if let Err(e) = sock.send_to(&json, &path)
                && e.kind() == std::io::ErrorKind::ConnectionRefused
            {
                // Its tracer is gone without cleaning up.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The tracer's side: its socket, removed when dropped.
#[derive(Debug)]
pub struct TraceListener {
    sock: UnixDatagram,
    path: PathBuf,
}

impl TraceListener {
    /// Binds the socket in the instance's run folder.
    pub fn bind(run_dir: &Path) -> std::io::Result<Self> {
        let path = run_dir.join(format!("{PREFIX}{}{SUFFIX}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path)?;
        sock.set_nonblocking(true)?;
        Ok(Self { sock, path })
    }

    /// The events received since the last call.
    pub fn poll(&self) -> Vec<RaEvent> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            if let Ok(ev) = serde_json::from_slice(&buf[..n]) {
                out.push(ev);
            }
        }
        out
    }
}

impl Drop for TraceListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_a_listener_and_nothing_is_built_without_one() {
        let dir = std::env::temp_dir().join(format!("translator-ra-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sink = TraceSink::new(&dir);
        sink.emit(|| panic!("no listener: the event must not be built"));
        let ev = RaEvent {
            event: "rs".into(),
            src: "fe80::2".parse().expect("literal"),
            dst: Some("ff02::2".parse().expect("literal")),
            what: "refused".into(),
            detail: "hop limit 64, must be 255".into(),
        };
        {
            let l = TraceListener::bind(&dir).expect("bind");
            sink.emit(|| ev.clone());
            assert_eq!(l.poll(), vec![ev.clone()]);
            assert!(l.poll().is_empty());
        }
        // The listener removed its socket.
        sink.emit(|| panic!("the listener is gone"));
        assert_eq!(
            ev.text(),
            "rs   fe80::2 -> ff02::2  router solicitation (refused): hop limit 64, must be 255"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
