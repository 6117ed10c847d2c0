//! Collection: one [`Snapshot`] read from the pinned maps and the controller's `controller.json`.
//!
//! Nothing here knows about exposition formats or HTTP. A scrape reads the per-CPU counters and
//! `controller.json`; the session, binding and block gauges are those the controller's last
//! expiry pass counted ([`PassGauges`], at most one expiry period old), so a scrape's cost does
//! not grow with the tables. Only without a pass (a test, the first instant after start) does
//! it walk them.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use translator_common::counters::{DropReason, Event};

use crate::{
    config::{Config, Protocol},
    dataplane::Maps,
    sessions::Gauges,
    state::SessionState,
};

/// Counters by name, as `controller.json` holds them.
pub type Named = BTreeMap<String, u64>;

/// Port blocks of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    pub protocol: Protocol,
    pub in_use: u64,
    pub total: u64,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Data-plane events (every [`Event`]).
    pub events: Vec<(Event, u64)>,
    /// Data-plane drops (every [`DropReason`]).
    pub drops: Vec<(DropReason, u64)>,
    /// Sessions per protocol and state (every valid pair, zeros included).
    pub sessions: Vec<(Protocol, SessionState, u64)>,
    /// Bindings (dynamic and static) in the binding table.
    pub bindings: u64,
    /// Port blocks per protocol.
    pub blocks: Vec<Blocks>,
    /// Age of the session, binding and block counts: the time since the expiry pass that
    /// counted them (zero when the scrape counted them itself).
    pub gauges_age: Duration,
    /// Slow-path counters from `controller.json`, when present.
    pub slow_path: Option<Named>,
    /// DNS64 counters from `controller.json`, when the server is enabled.
    pub dns64: Option<Named>,
    /// Router advertisement counters from `controller.json`, when `[ra]` is enabled.
    pub ra: Option<Named>,
}

/// The gauges of the controller's last expiry pass, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct PassGauges(Mutex<Option<(Instant, Gauges)>>);

impl PassGauges {
    /// Records what a pass counted.
    pub fn set(&self, gauges: Gauges) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), gauges));
    }

    /// The last pass's counts and their age, when a pass has run.
    pub fn get(&self) -> Option<(Duration, Gauges)> {
        let g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        g.as_ref().map(|(at, g)| (at.elapsed(), g.clone()))
    }
}

/// Reads a snapshot from the pinned maps in `pins` and `run_dir/controller.json` (blocking).
///
/// The session, binding and block gauges come from `pass` when the controller's expiry pass
/// has counted them (no walk: the scrape reads counters and a file); without one they are
/// counted here by walking the tables.
pub fn collect(
    pins: &Path,
    run_dir: &Path,
    cfg: &Config,
    pass: Option<&PassGauges>,
) -> anyhow::Result<Snapshot> {
    let maps = Maps::open(pins)?;
    let (events, drops) = maps.counters()?;
    let (gauges_age, gauges) = pass
        .and_then(PassGauges::get)
        .unwrap_or_else(|| (Duration::ZERO, crate::sessions::count(&maps)));
    let blocks = Protocol::ALL
        .into_iter()
        .map(|p| Blocks {
            protocol: p,
            in_use: gauges.blocks_in_use[p.index()],
            total: u64::from(cfg.assignable_blocks(p)),
        })
        .collect();

    let (slow_path, dns64, ra) = read_controller(&run_dir.join("controller.json"));
    Ok(Snapshot {
        events,
        drops,
        sessions: gauges.sessions,
        bindings: gauges.bindings,
        blocks,
        gauges_age,
        slow_path,
        dns64,
        ra,
    })
}

/// The "slow_path", "dns64" and "ra" counter maps of `controller.json` (absent when the file is
/// missing or unreadable; values that are not unsigned integers are skipped).
pub(super) fn read_controller(path: &Path) -> (Option<Named>, Option<Named>, Option<Named>) {
    let Some(v) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return (None, None, None);
    };
    let section = |name: &str| {
        v.get(name).and_then(|s| s.as_object()).map(|o| {
            o.iter()
                .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                .collect::<BTreeMap<_, _>>()
        })
    };
    (section("slow_path"), section("dns64"), section("ra"))
}
