//! The session table as the controller sees it: listing, and expiry of sessions, bindings,
//! filtering permits and port blocks by the RFC 6146 timers (the states: `crate::state`).
//!
//! An expiry pass walks every table anyway, so it also counts what it leaves behind
//! ([`Gauges`]): the metrics endpoint reports those counts instead of walking the tables again
//! on every scrape ([`count`] is that walk, for when no pass has run yet).

use std::{
    collections::HashSet as StdSet,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use serde::Serialize;
use translator_common::{
    maps::{
        BINDING_STATIC, BindingKey4, BindingKey6, BlockSlotKey, FilterKey, SESSION_HAIRPIN,
        SessionKey4, SessionKey6, SessionValue6,
    },
    rfc6052::{from_raw4, from_raw6},
};

use crate::{
    clock::monotonic_ns,
    config::{Config, Protocol},
    dataplane::{Maps, batch},
    state::{SessionState, classify},
};

/// The hash of the pass's in-memory tables: foldhash's fast one (the keys come from the data
/// plane's own tables, and a pass over millions of entries spends a good part of its time
/// hashing).
type Hasher = foldhash::fast::RandomState;
type HashSet<T> = StdSet<T, Hasher>;

/// Time the controller leaves a binding, permit or block alone after the data plane last used
/// it, so it never frees something a packet on another CPU is about to use.
pub const GRACE: Duration = Duration::from_secs(2);

/// One session, both directions joined.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub protocol: Protocol,
    pub client: Ipv6Addr,
    pub client_port: u16,
    pub remote: Ipv4Addr,
    pub remote_port: u16,
    pub pool: Ipv4Addr,
    pub pool_port: u16,
    pub state: SessionState,
    pub idle_secs: u64,
    pub expires_in_secs: u64,
    pub hairpin: bool,
}

fn info(cfg: &Config, k: &SessionKey6, v6: &SessionValue6, now: u64) -> Option<SessionInfo> {
    let protocol = Protocol::from_number(k.proto)?;
    let state = classify(k.proto, v6.state);
    let idle = Duration::from_nanos(now.saturating_sub(v6.last_seen));
    let timeout = cfg.timeout(state);
    Some(SessionInfo {
        protocol,
        client: Ipv6Addr::from(from_raw6(&k.client)),
        client_port: u16::from_be(k.client_port_be),
        remote: Ipv4Addr::from(from_raw4(k.remote)),
        remote_port: u16::from_be(k.remote_port_be),
        pool: Ipv4Addr::from(from_raw4(v6.pool)),
        pool_port: u16::from_be(v6.pool_port_be),
        state,
        idle_secs: idle.as_secs(),
        expires_in_secs: timeout.saturating_sub(idle).as_secs(),
        hairpin: v6.flags & SESSION_HAIRPIN != 0,
    })
}

/// Which sessions a listing wants (tested on the IPv6-side entry, which has everything a
/// listing shows).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    pub client: Option<Ipv6Addr>,
    pub protocol: Option<Protocol>,
    pub pool_port: Option<u16>,
}

impl Filter {
    fn wants(&self, k: &SessionKey6, v6: &SessionValue6) -> bool {
        self.client
            .is_none_or(|c| from_raw6(&k.client) == u128::from(c))
            && self
                .protocol
                .is_none_or(|p| Protocol::from_number(k.proto) == Some(p))
            && self
                .pool_port
                .is_none_or(|p| u16::from_be(v6.pool_port_be) == p)
    }
}

/// The sessions `filter` wants, in table order, read in batches while the walk goes: memory
/// does not grow with the table, the first rows come at once, and no session is listed twice
/// (the batch position is a bucket, not a key that may be gone by the next read).
pub fn stream<'a>(
    maps: &'a Maps,
    cfg: &'a Config,
    filter: Filter,
) -> impl Iterator<Item = SessionInfo> + 'a {
    let now = monotonic_ns();
    let mut batches =
        batch::iter::<SessionKey6, SessionValue6>(aya::maps::IterableMap::map(&maps.sessions6));
    let first = batches.next();
    let entries: Box<dyn Iterator<Item = (SessionKey6, SessionValue6)> + 'a> = match first {
        Some(Err(e)) => {
            log::debug!("SESSIONS6: batch lookups refused ({e}), reading entry by entry");
            Box::new(maps.sessions6.iter().filter_map(Result::ok))
        }
        first => Box::new(first.into_iter().chain(batches).map_while(|r| {
            r.map_err(|e| log::error!("reading SESSIONS6 stopped: {e}"))
                .ok()
        })),
    };
    entries
        .filter(move |(k, v6)| filter.wants(k, v6))
        .filter_map(move |(k, v6)| info(cfg, &k, &v6, now))
}

/// Sorts sessions by client, protocol, client port and remote.
pub fn sort(sessions: &mut [SessionInfo]) {
    sessions.sort_by_key(|s| (s.client, s.protocol, s.client_port, s.remote, s.remote_port));
}

/// The tables' sizes: sessions by protocol and state, bindings, port blocks in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gauges {
    /// Sessions per protocol and state (every valid pair, zeros included).
    pub sessions: Vec<(Protocol, SessionState, u64)>,
    /// Bindings (dynamic and static) in the binding table.
    pub bindings: u64,
    /// Port blocks held by clients, by [`Protocol::index`].
    pub blocks_in_use: [u64; 3],
}

impl Default for Gauges {
    fn default() -> Self {
        let states = |p: Protocol| -> &'static [SessionState] {
            match p {
                Protocol::Tcp => &SessionState::TCP,
                Protocol::Udp => &[SessionState::Udp],
                Protocol::Icmp => &[SessionState::Icmp],
            }
        };
        Self {
            sessions: Protocol::ALL
                .into_iter()
                .flat_map(|p| states(p).iter().map(move |s| (p, *s, 0)))
                .collect(),
            bindings: 0,
            blocks_in_use: [0; 3],
        }
    }
}

impl Gauges {
    /// Counts one session of protocol number `proto` in `state`.
    fn session(&mut self, proto: u8, state: SessionState) {
        let Some(p) = Protocol::from_number(proto) else {
            return;
        };
        if let Some(e) = self
            .sessions
            .iter_mut()
            .find(|(ep, es, _)| *ep == p && *es == state)
        {
            e.2 += 1;
        }
    }

    /// Counts one port block of protocol number `proto`.
    fn block(&mut self, proto: u8) {
        if let Some(p) = Protocol::from_number(proto) {
            self.blocks_in_use[p.index()] += 1;
        }
    }
}

/// Counts the tables by walking them (in batches, like an expiry pass): the sessions by their
/// IPv6-side entries, the binding and block-slot tables. What an expiry pass counts on the
/// way, for when none has run.
pub fn count(maps: &Maps) -> Gauges {
    let mut g = Gauges::default();
    batch::entries("SESSIONS6", &maps.sessions6, |k, v6| {
        g.session(k.proto, classify(k.proto, v6.state));
    });
    batch::entries("BINDINGS4", &maps.bindings4, |_, _| g.bindings += 1);
    batch::entries("BLOCK_SLOTS", &maps.block_slots, |k, _| g.block(k.proto));
    g
}

/// What one expiry pass removed, and what it left.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    pub sessions: usize,
    pub bindings: usize,
    pub filters: usize,
    /// Port blocks returned to the pool (for the block log).
    pub blocks: Vec<(BlockSlotKey, translator_common::maps::BlockId)>,
    /// CLOCK_MONOTONIC ns when the sessions and blocks were removed (the log lines' time,
    /// whenever they are written).
    pub at: u64,
    /// Expired sessions, both keys (for the session log).
    pub expired: Vec<(SessionKey6, SessionKey4)>,
    /// The tables after the pass (entries a packet created during the walk may be missing).
    pub left: Gauges,
}

impl Expired {
    /// Whether the pass removed anything.
    pub fn removed_any(&self) -> bool {
        self.sessions + self.bindings + self.filters + self.blocks.len() > 0
    }
}

/// Removes `SESSIONS4` entries without their `SESSIONS6` half (a create that lost a race, a
/// delete that met a new packet), once the IPv6 half is confirmed missing and the entry is older
/// than [`GRACE`] (its IPv6 half may be on its way). Both tables are walked and joined in
/// memory (about 40 bytes per session while it runs), so the expiry thread runs it every
/// [`ORPHAN_SWEEP_EVERY`] passes, not on every one. Returns how many it removed.
pub fn sweep_orphans(maps: &mut Maps) -> usize {
    let now = monotonic_ns();
    let grace = GRACE.as_nanos() as u64;
    let mut halves: HashSet<SessionKey4> = HashSet::default();
    batch::entries("SESSIONS6", &maps.sessions6, |k, v6| {
        halves.insert(k.reverse(v6));
    });
    let mut orphans: Vec<SessionKey4> = Vec::new();
    batch::entries("SESSIONS4", &maps.sessions4, |k, v| {
        if !halves.contains(k) && now.saturating_sub(v.last_seen) > grace {
            orphans.push(*k);
        }
    });
    drop(halves);
    // The IPv6 half may have been created after the walk passed its place.
    orphans.retain(|k4| {
        maps.sessions4
            .get(k4, 0)
            .is_ok_and(|v4| maps.sessions6.get(&v4.reverse(k4), 0).is_err())
    });
    batch::remove("SESSIONS4", &mut maps.sessions4, &orphans);
    orphans.len()
}

/// Sessions a data plane of an earlier version made keep an inbound packet's last use (and
/// the TCP state it set) only in their `SESSIONS4` entry; the expiry pass reads `SESSIONS6`.
/// Copies the newer of the two to `SESSIONS6`, once, when a controller adopts pinned state.
/// Returns how many entries it updated.
pub fn adopt_last_use(maps: &mut Maps) -> usize {
    let mut inbound: std::collections::HashMap<SessionKey4, (u64, u8), Hasher> =
        std::collections::HashMap::default();
    batch::entries("SESSIONS4", &maps.sessions4, |k, v| {
        inbound.insert(*k, (v.last_seen, v.state));
    });
    let mut newer: Vec<(SessionKey6, SessionValue6)> = Vec::new();
    batch::entries("SESSIONS6", &maps.sessions6, |k, v6| {
        if let Some(&(last, state)) = inbound.get(&k.reverse(v6))
            && last > v6.last_seen
        {
            newer.push((
                *k,
                SessionValue6 {
                    last_seen: last,
                    state,
                    ..*v6
                },
            ));
        }
    });
    drop(inbound);
    // BPF_EXIST: a session expired meanwhile stays gone.
    newer
        .iter()
        .filter(|(k, v)| maps.sessions6.insert(*k, *v, 2).is_ok())
        .count()
}

/// How often (in expiry passes) [`sweep_orphans`] runs.
pub const ORPHAN_SWEEP_EVERY: u32 = 30;

/// The lock a pass holds while it checks idle bindings again and deletes them, and that a
/// reload holds while it changes static mappings: a binding cannot become static and be
/// deleted as idle at once.
pub type Edits = Mutex<()>;

/// [`expire_with`] with a lock of its own (nothing else edits the bindings).
pub fn expire(maps: &mut Maps, cfg: &Config) -> Expired {
    expire_with(maps, cfg, &Edits::default())
}

/// One expiry pass over the tables.
///
/// Every table is read in batches of thousands of entries per syscall, and expired entries
/// are deleted the same way. Sessions are read from `SESSIONS6` alone: the data plane keeps
/// the state and the last use of both directions there, and the `SESSIONS4` key follows from
/// the entry. IPv4-side entries that lost their IPv6 half are [`sweep_orphans`]'s.
pub fn expire_with(maps: &mut Maps, cfg: &Config, edits: &Edits) -> Expired {
    let now = monotonic_ns();
    let grace = GRACE.as_nanos() as u64;
    let mut done = Expired::default();

    // Sessions: collect first, delete after.
    let mut doomed = Vec::new();
    let mut live_bindings = HashSet::default();
    let mut live_filters = HashSet::default();
    batch::entries("SESSIONS6", &maps.sessions6, |k, v6| {
        let k4 = k.reverse(v6);
        let state = classify(k.proto, v6.state);
        if now.saturating_sub(v6.last_seen) > cfg.timeout(state).as_nanos() as u64 {
            doomed.push((*k, k4));
        } else {
            done.left.session(k.proto, state);
            live_bindings.insert((k.proto, k.client, k.client_port_be));
            live_filters.insert((k.proto, v6.pool, v6.pool_port_be, k.remote));
        }
    });
    let keys6: Vec<SessionKey6> = doomed.iter().map(|(k6, _)| *k6).collect();
    let keys4: Vec<SessionKey4> = doomed.iter().map(|(_, k4)| *k4).collect();
    batch::remove("SESSIONS6", &mut maps.sessions6, &keys6);
    batch::remove("SESSIONS4", &mut maps.sessions4, &keys4);
    done.at = monotonic_ns();
    done.sessions = doomed.len();
    done.expired = doomed;

    // Dynamic bindings without sessions.
    let mut idle: Vec<(BindingKey6, BindingKey4)> = Vec::new();
    batch::entries("BINDINGS6", &maps.bindings6, |k, v| {
        if v.flags & BINDING_STATIC == 0
            && !live_bindings.contains(&(k.proto, k.client, k.client_port_be))
            && now.saturating_sub(v.last_used) > grace
        {
            idle.push((
                *k,
                BindingKey4 {
                    pool: v.pool,
                    pool_port_be: v.pool_port_be,
                    proto: k.proto,
                    _pad: 0,
                },
            ));
        }
    });
    {
        // Checked again under the edit lock: a reload may have made one static meanwhile, or
        // the data plane given it a session (its last use moved).
        let _edits = edits.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(k6, _)| {
            maps.bindings6.get(k6, 0).is_ok_and(|v| {
                v.flags & BINDING_STATIC == 0 && now.saturating_sub(v.last_used) > grace
            })
        });
        let (keys6, keys4): (Vec<_>, Vec<_>) = idle.iter().copied().unzip();
        batch::remove("BINDINGS6", &mut maps.bindings6, &keys6);
        batch::remove("BINDINGS4", &mut maps.bindings4, &keys4);
    }
    done.bindings = idle.len();

    // Address-dependent filtering permits without sessions.
    let mut stale: Vec<FilterKey> = Vec::new();
    batch::entries("FILTERS", &maps.filters, |k, last| {
        if !live_filters.contains(&(k.proto, k.pool, k.pool_port_be, k.remote))
            && now.saturating_sub(*last) > grace
        {
            stale.push(*k);
        }
    });
    batch::remove("FILTERS", &mut maps.filters, &stale);
    done.filters = stale.len();

    // Port blocks no binding uses any more go back to the free queue (with deterministic
    // blocks, their slot is only emptied).
    let mut used_blocks = HashSet::default();
    batch::entries("BINDINGS4", &maps.bindings4, |k, _| {
        done.left.bindings += 1;
        if let Some(p) = Protocol::from_number(k.proto)
            && let Some(start) = cfg.layouts[p.index()].block_of(u16::from_be(k.pool_port_be))
        {
            used_blocks.insert((k.proto, k.pool, start));
        }
    });
    let mut free: Vec<(BlockSlotKey, translator_common::maps::BlockId)> = Vec::new();
    batch::entries("BLOCK_SLOTS", &maps.block_slots, |k, s| {
        if !used_blocks.contains(&(k.proto, s.block.pool, s.block.start))
            && now.saturating_sub(s.last_alloc) > grace
        {
            free.push((*k, s.block));
        } else {
            done.left.block(k.proto);
        }
    });
    for (k, block) in free {
        if maps.block_slots.remove(&k).is_err() {
            continue;
        }
        if cfg.deterministic.is_some() {
            // RFC 7422: the block stays its subscriber's, it only stops being held.
            done.blocks.push((k, block));
            continue;
        }
        if let Some(p) = Protocol::from_number(k.proto) {
            match maps.free[p.index()].push(block, 0) {
                Ok(()) => done.blocks.push((k, block)),
                Err(e) => log::error!("returning a {p} port block to the free queue failed: {e}"),
            }
        }
    }
    done
}
