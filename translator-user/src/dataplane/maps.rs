//! Typed handles on an instance's pinned maps, and what the controller does with them: the
//! pool's free blocks, the policy maps, static bindings, counters.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{anyhow, bail};
use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, Queue, lpm_trie::Key};
use translator_common::{
    counters::{DropReason, Event},
    maps::{
        self as m, BINDING_STATIC, BindingKey4, BindingKey6, BindingValue4, BindingValue6, BlockId,
        BlockSlot, BlockSlotKey, FilterKey, Frag4Key, Frag4Value, Frag6Key, Frag6Value, HeldKey,
        HeldSyn, POOL_LOCAL, PoolAddress, SessionKey4, SessionKey6, SessionValue4, SessionValue6,
    },
    rfc6052::{self, raw4, raw6},
};

use crate::config::{Config, Protocol, StaticMapping};

/// Counter sums: events, then drop reasons.
pub type Counters = (Vec<(Event, u64)>, Vec<(DropReason, u64)>);

/// The binding keys of a static mapping.
fn static_keys(s: &StaticMapping) -> (BindingKey4, BindingKey6) {
    let proto = s.protocol.number();
    (
        BindingKey4 {
            pool: raw4(u32::from(s.ipv4)),
            pool_port_be: s.ipv4_port.to_be(),
            proto,
            _pad: 0,
        },
        BindingKey6 {
            client: raw6(u128::from(s.ipv6)),
            client_port_be: s.ipv6_port.to_be(),
            proto,
            _pad: 0,
        },
    )
}

/// Typed handles on an instance's pinned maps.
pub struct Maps {
    pub sessions6: HashMap<MapData, SessionKey6, SessionValue6>,
    pub sessions4: HashMap<MapData, SessionKey4, SessionValue4>,
    pub bindings6: HashMap<MapData, BindingKey6, BindingValue6>,
    pub bindings4: HashMap<MapData, BindingKey4, BindingValue4>,
    pub filters: HashMap<MapData, FilterKey, u64>,
    pub block_slots: HashMap<MapData, BlockSlotKey, BlockSlot>,
    pub free: [Queue<MapData, BlockId>; 3],
    /// RFC 7422 deterministic blocks (`pool.deterministic`).
    pub det_blocks: Array<MapData, BlockId>,
    pub clients: LpmTrie<MapData, [u32; 4], u32>,
    pub pool: HashMap<MapData, u32, PoolAddress>,
    pub counters: PerCpuArray<MapData, u64>,
    pub frags6: HashMap<MapData, Frag6Key, Frag6Value>,
    pub frags4: HashMap<MapData, Frag4Key, Frag4Value>,
    pub held_syns: HashMap<MapData, HeldKey, HeldSyn>,
}

/// Opens one pinned map of an instance.
pub fn open_map(dir: &Path, name: &str) -> anyhow::Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(|e| {
        anyhow!(
            "opening pinned map {}: {e} (is the instance running? `translator status`)",
            path.display()
        )
    })?;
    Map::from_map_data(data).map_err(|e| anyhow!("map {name}: {e}"))
}

macro_rules! typed {
    ($dir:expr, $name:expr) => {
        open_map($dir, $name)?
            .try_into()
            .map_err(|e| anyhow!("map {}: {e}", $name))?
    };
}

impl Maps {
    pub fn open(dir: &Path) -> anyhow::Result<Maps> {
        Ok(Maps {
            sessions6: typed!(dir, m::SESSIONS6),
            sessions4: typed!(dir, m::SESSIONS4),
            bindings6: typed!(dir, m::BINDINGS6),
            bindings4: typed!(dir, m::BINDINGS4),
            filters: typed!(dir, m::FILTERS),
            block_slots: typed!(dir, m::BLOCK_SLOTS),
            free: [
                typed!(dir, m::FREE_BLOCKS_TCP),
                typed!(dir, m::FREE_BLOCKS_UDP),
                typed!(dir, m::FREE_BLOCKS_ICMP),
            ],
            det_blocks: typed!(dir, m::DET_BLOCKS),
            clients: typed!(dir, m::CLIENTS),
            pool: typed!(dir, m::POOL),
            counters: typed!(dir, m::COUNTERS),
            frags6: typed!(dir, m::FRAGS6),
            frags4: typed!(dir, m::FRAGS4),
            held_syns: typed!(dir, m::HELD_SYNS),
        })
    }

    /// The client an IPv4 datagram goes to, when the data plane translated its first fragment.
    pub fn frag_client(
        &self,
        src: Ipv4Addr,
        pool: Ipv4Addr,
        proto: u8,
        id: u16,
    ) -> Option<Ipv6Addr> {
        let k = Frag4Key {
            remote: raw4(u32::from(src)),
            pool: raw4(u32::from(pool)),
            id: id.to_be(),
            proto,
            _pad: 0,
        };
        self.frags4
            .get(&k, 0)
            .ok()
            .map(|v| Ipv6Addr::from(rfc6052::from_raw6(&v.client)))
    }

    /// The pool address an IPv6 datagram leaves from, when the data plane translated its first
    /// fragment.
    pub fn frag_pool(
        &self,
        client: Ipv6Addr,
        remote: Ipv4Addr,
        proto: u8,
        id: u32,
    ) -> Option<Ipv4Addr> {
        let k = Frag6Key {
            client: raw6(u128::from(client)),
            remote: raw4(u32::from(remote)),
            id: id.to_be(),
            proto,
            _pad: [0; 3],
        };
        self.frags6
            .get(&k, 0)
            .ok()
            .map(|v| Ipv4Addr::from(rfc6052::from_raw4(v.pool)))
    }

    /// Fills the free-block queues with every block of the pool, or with `pool.deterministic`
    /// the table of deterministic blocks (fresh start only).
    pub fn fill_pool(&mut self, cfg: &Config) -> anyhow::Result<()> {
        // On a pool address the host owns, the kernel picks its own ephemeral ports (for the
        // DNS64 upstream queries, for instance): blocks overlapping that range stay out of the
        // pool, or a client binding could take a port the host's own traffic comes back to.
        let local = crate::netns::local_ipv4_addresses();
        let ephemeral = crate::netns::sysctl("net/ipv4/ip_local_port_range").and_then(|r| {
            let mut it = r.split_whitespace().filter_map(|x| x.parse::<u32>().ok());
            Some((it.next()?, it.next()?))
        });
        if cfg.deterministic.is_some() {
            return self.fill_deterministic(cfg, &local, ephemeral);
        }
        for p in Protocol::ALL {
            let layout = cfg.layouts[p.index()];
            let size = u32::from(layout.block_size);
            let q = &mut self.free[p.index()];
            let mut skipped = 0;
            for addr in &cfg.pool {
                let reserved = if local.contains(addr) {
                    ephemeral
                } else {
                    None
                };
                for start in layout.block_starts() {
                    let s = u32::from(start);
                    if let Some((lo, hi)) = reserved
                        && s + size > lo
                        && s <= hi
                    {
                        skipped += 1;
                        continue;
                    }
                    q.push(
                        BlockId {
                            pool: raw4(u32::from(*addr)),
                            start,
                            _pad: 0,
                        },
                        0,
                    )
                    .map_err(|e| anyhow!("filling the {p} block queue: {e}"))?;
                }
            }
            if skipped > 0 {
                log::info!(
                    "{p}: {skipped} port blocks left out of the pool: they overlap this host's \
                     ephemeral ports (net.ipv4.ip_local_port_range) on a local pool address"
                );
            }
        }
        Ok(())
    }

    /// `pool.deterministic`: every subscriber slot's block into `DET_BLOCKS`; the free queues
    /// stay empty. Leaving blocks out, as [`Maps::fill_pool`] does for the host's ephemeral
    /// ports, would make the blocks depend on the host: a local pool address whose port range
    /// overlaps them is refused instead.
    fn fill_deterministic(
        &mut self,
        cfg: &Config,
        local: &[Ipv4Addr],
        ephemeral: Option<(u32, u32)>,
    ) -> anyhow::Result<()> {
        use crate::config::deterministic::PORT_SETTINGS;
        let Some(det) = cfg.deterministic else {
            return Ok(());
        };
        for p in Protocol::ALL {
            let blocks = cfg.deterministic_blocks(p);
            if blocks.len() != det.stride as usize {
                bail!(
                    "pool.deterministic: the {p} pool has {} blocks for {} subscriber slots",
                    blocks.len(),
                    det.stride
                );
            }
            let size = u32::from(cfg.layouts[p.index()].block_size);
            if let Some((lo, hi)) = ephemeral
                && let Some(b) = blocks.iter().find(|b| {
                    let s = u32::from(b.start);
                    s + size > lo
                        && s <= hi
                        && local.contains(&Ipv4Addr::from(rfc6052::from_raw4(b.pool)))
                })
            {
                let addr = Ipv4Addr::from(rfc6052::from_raw4(b.pool));
                bail!(
                    "pool.deterministic: {addr} is an address of this host and its {p} blocks \
                     overlap the host's ephemeral ports {lo}-{hi} (net.ipv4.ip_local_port_range), \
                     which deterministic blocks cannot leave out; set {} to a range below {lo} \
                     (e.g. \"{}-{}\") or above {hi}, or use pool addresses the host does not own",
                    PORT_SETTINGS[p.index()],
                    cfg.layouts[p.index()]
                        .first
                        .min(lo.saturating_sub(1) as u16),
                    lo.saturating_sub(1)
                );
            }
            for (i, b) in blocks.iter().enumerate() {
                self.det_blocks
                    .set(det.entry(p.index() as u32, i as u32), *b, 0)
                    .map_err(|e| anyhow!("filling the deterministic {p} blocks: {e}"))?;
            }
        }
        Ok(())
    }

    /// Makes CLIENTS and POOL match the configuration.
    pub fn sync_policy(&mut self, cfg: &Config) -> anyhow::Result<()> {
        let want: Vec<([u32; 4], u32)> = cfg
            .clients
            .iter()
            .map(|c| (raw6(u128::from(c.addr)), u32::from(c.len)))
            .collect();
        let have: Vec<Key<[u32; 4]>> = self.clients.keys().filter_map(Result::ok).collect();
        for k in have {
            let (data, len) = (k.data(), k.prefix_len());
            if !want.contains(&(data, len)) {
                let _ = self.clients.remove(&k);
            }
        }
        for (data, len) in want {
            self.clients
                .insert(&Key::new(len, data), 1, 0)
                .map_err(|e| anyhow!("nat64.clients: installing {len}-bit prefix: {e}"))?;
        }
        let local = crate::netns::local_ipv4_addresses();
        let have: Vec<u32> = self.pool.keys().filter_map(Result::ok).collect();
        for a in have {
            if !cfg.pool.iter().any(|p| raw4(u32::from(*p)) == a) {
                let _ = self.pool.remove(&a);
            }
        }
        for a in &cfg.pool {
            let flags = if local.contains(a) { POOL_LOCAL } else { 0 };
            self.pool
                .insert(raw4(u32::from(*a)), PoolAddress { flags }, 0)
                .map_err(|e| anyhow!("pool.addresses: installing {a}: {e}"))?;
        }
        Ok(())
    }

    /// Installs a static binding. Fails when the pool port or client port is bound otherwise.
    pub fn add_static(&mut self, s: &StaticMapping) -> anyhow::Result<()> {
        if let Some(conflict) = self.static_conflict(s) {
            bail!("{conflict}");
        }
        let (k4, k6) = static_keys(s);
        let v4 = BindingValue4 {
            client: k6.client,
            client_port_be: k6.client_port_be,
            flags: BINDING_STATIC,
            _pad: 0,
        };
        let v6 = BindingValue6 {
            pool: k4.pool,
            pool_port_be: k4.pool_port_be,
            flags: BINDING_STATIC,
            _pad: 0,
            last_used: 0,
        };
        // An existing binding is the same one (checked above) and becomes static; a new one is
        // inserted only if the data plane has not taken the port meanwhile.
        let flags = if self.bindings4.get(&k4, 0).is_ok() {
            0
        } else {
            1
        };
        self.bindings4
            .insert(k4, v4, flags)
            .map_err(|e| anyhow!("installing binding: {e}"))?;
        if let Err(e) = self.bindings6.insert(k6, v6, 0) {
            let _ = self.bindings4.remove(&k4);
            bail!("installing binding: {e}");
        }
        Ok(())
    }

    /// Why a static binding could not be installed, without changing anything.
    pub fn static_conflict(&self, s: &StaticMapping) -> Option<String> {
        let (k4, k6) = static_keys(s);
        if let Ok(old) = self.bindings4.get(&k4, 0)
            && (old.client != k6.client || old.client_port_be != k6.client_port_be)
        {
            return Some(format!(
                "{} {}:{} is already bound to [{}]:{}",
                s.protocol,
                s.ipv4,
                s.ipv4_port,
                Ipv6Addr::from(rfc6052::from_raw6(&old.client)),
                u16::from_be(old.client_port_be)
            ));
        }
        if let Ok(old) = self.bindings6.get(&k6, 0)
            && (old.pool != k4.pool || old.pool_port_be != k4.pool_port_be)
        {
            return Some(format!(
                "{} [{}]:{} already has the binding {}:{}",
                s.protocol,
                s.ipv6,
                s.ipv6_port,
                Ipv4Addr::from(rfc6052::from_raw4(old.pool)),
                u16::from_be(old.pool_port_be)
            ));
        }
        None
    }

    /// Removes a static binding and its sessions.
    pub fn del_static(&mut self, s: &StaticMapping) -> anyhow::Result<()> {
        let proto = s.protocol.number();
        let k4 = BindingKey4 {
            pool: raw4(u32::from(s.ipv4)),
            pool_port_be: s.ipv4_port.to_be(),
            proto,
            _pad: 0,
        };
        let v4 = self
            .bindings4
            .get(&k4, 0)
            .map_err(|_| anyhow!("no binding for {} {}:{}", s.protocol, s.ipv4, s.ipv4_port))?;
        if v4.flags & BINDING_STATIC == 0 {
            bail!(
                "{} {}:{} is a dynamic binding, not a static one",
                s.protocol,
                s.ipv4,
                s.ipv4_port
            );
        }
        let k6 = BindingKey6 {
            client: v4.client,
            client_port_be: v4.client_port_be,
            proto,
            _pad: 0,
        };
        let _ = self.bindings6.remove(&k6);
        let _ = self.bindings4.remove(&k4);
        let doomed: Vec<SessionKey4> = self
            .sessions4
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.pool == k4.pool && k.pool_port_be == k4.pool_port_be && k.proto == proto)
            .collect();
        for k in doomed {
            if let Ok(v) = self.sessions4.get(&k, 0) {
                let _ = self.sessions6.remove(&SessionKey6 {
                    client: v.client,
                    remote: k.remote,
                    client_port_be: v.client_port_be,
                    remote_port_be: k.remote_port_be,
                    proto,
                    _pad: [0; 3],
                });
            }
            let _ = self.sessions4.remove(&k);
        }
        Ok(())
    }

    /// Static bindings in the table.
    pub fn statics(&self) -> Vec<StaticMapping> {
        self.bindings4
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.flags & BINDING_STATIC != 0)
            .filter_map(|(k, v)| {
                Some(StaticMapping {
                    protocol: Protocol::from_number(k.proto)?,
                    ipv6: Ipv6Addr::from(rfc6052::from_raw6(&v.client)),
                    ipv6_port: u16::from_be(v.client_port_be),
                    ipv4: Ipv4Addr::from(rfc6052::from_raw4(k.pool)),
                    ipv4_port: u16::from_be(k.pool_port_be),
                })
            })
            .collect()
    }

    /// Sums of the per-CPU counters: events, then drop reasons (only the slots in use are
    /// read).
    pub fn counters(&self) -> anyhow::Result<Counters> {
        read_counters(&self.counters)
    }
}

/// Sums a counter map over CPUs, by event and drop reason (one lookup per counter).
pub fn read_counters(map: &PerCpuArray<MapData, u64>) -> anyhow::Result<Counters> {
    let sum = |i: u32| -> anyhow::Result<u64> {
        let v = map
            .get(&i, 0)
            .map_err(|e| anyhow!("reading counters: {e}"))?;
        Ok(v.iter().sum())
    };
    let events = Event::ALL
        .iter()
        .map(|e| Ok((*e, sum(*e as u32)?)))
        .collect::<anyhow::Result<_>>()?;
    let drops = DropReason::ALL
        .iter()
        .map(|r| Ok((*r, sum(r.counter_index())?)))
        .collect::<anyhow::Result<_>>()?;
    Ok((events, drops))
}
