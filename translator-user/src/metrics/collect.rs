//! Collection: one [`Snapshot`] read from the pinned maps and the controller's `controller.json`.
//!
//! Nothing here knows about exposition formats or HTTP. A scrape walks the session table once
//! (one IPv4-side lookup per session to classify it), the binding table and the block-slot
//! table.

use std::{collections::BTreeMap, path::Path};

use translator_common::counters::{DropReason, Event};

use crate::{
    config::{Config, Protocol},
    dataplane::Maps,
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
    /// Slow-path counters from `controller.json`, when present.
    pub slow_path: Option<Named>,
    /// DNS64 counters from `controller.json`, when the server is enabled.
    pub dns64: Option<Named>,
    /// Router advertisement counters from `controller.json`, when `[ra]` is enabled.
    pub ra: Option<Named>,
}

/// The session states a protocol's sessions can be in.
fn states(p: Protocol) -> &'static [SessionState] {
    match p {
        Protocol::Tcp => &SessionState::TCP,
        Protocol::Udp => &[SessionState::Udp],
        Protocol::Icmp => &[SessionState::Icmp],
    }
}

/// Reads a snapshot from the pinned maps in `pins` and `run_dir/controller.json` (blocking).
pub fn collect(pins: &Path, run_dir: &Path, cfg: &Config) -> anyhow::Result<Snapshot> {
    let maps = Maps::open(pins)?;
    let (events, drops) = maps.counters()?;

    // Sessions: one walk, classified like `sessions::list` does, without building and sorting
    // the whole list.
    let mut sessions: Vec<(Protocol, SessionState, u64)> = Protocol::ALL
        .into_iter()
        .flat_map(|p| states(p).iter().map(move |s| (p, *s, 0)))
        .collect();
    for (k, v6) in maps.sessions6.iter().filter_map(Result::ok) {
        let Some(p) = Protocol::from_number(k.proto) else {
            continue;
        };
        let v4 = maps
            .sessions4
            .get(&k.reverse(&v6), 0)
            .map_or((0, 0), |v| (v.state, v.last_seen));
        let state = crate::state::classify(k.proto, (v6.state, v6.last_seen), v4);
        if let Some(e) = sessions
            .iter_mut()
            .find(|(ep, es, _)| *ep == p && *es == state)
        {
            e.2 += 1;
        }
    }

    let bindings = maps.bindings4.keys().filter_map(Result::ok).count() as u64;
    let mut in_use = [0u64; 3];
    for k in maps.block_slots.keys().filter_map(Result::ok) {
        if let Some(p) = Protocol::from_number(k.proto) {
            in_use[p.index()] += 1;
        }
    }
    let blocks = Protocol::ALL
        .into_iter()
        .map(|p| Blocks {
            protocol: p,
            in_use: in_use[p.index()],
            total: u64::from(cfg.total_blocks(p)),
        })
        .collect();

    let (slow_path, dns64, ra) = read_controller(&run_dir.join("controller.json"));
    Ok(Snapshot {
        events,
        drops,
        sessions,
        bindings,
        blocks,
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
