//! Sessions the slow path creates in user space, for flows whose first packet the data plane
//! hands over (extension headers, IPv4 options), with the data plane's rules.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail};
use translator_common::{
    IPPROTO_TCP,
    maps::{
        BINDING_STATIC, BindingKey4, BindingKey6, BindingValue4, BindingValue6, BlockId, BlockSlot,
        BlockSlotKey, FilterKey, SessionKey4, SessionKey6, SessionValue4, SessionValue6,
    },
    rfc6052::{self, raw4, raw6},
    tcp,
};

use super::{Maps, subscriber};
use crate::config::{Config, Filtering, Protocol};

impl Maps {
    /// Creates (or finds) the session of a new outbound flow from user space, with the data
    /// plane's rules: client allowed, destination allowed, the client's binding (EIM) or a new
    /// one from its port blocks (a pool port is owned by whoever inserts it into BINDINGS4
    /// first, so this never races the data plane into a double use). Used by the slow path
    /// for flows whose first packet needs it (extension headers, IPv4 options). A TCP session
    /// is opened by a SYN only (`tcp`: the packet's TCP flags) and starts in V6 INIT.
    #[allow(clippy::too_many_arguments)]
    pub fn create_outbound(
        &mut self,
        cfg: &Config,
        client: Ipv6Addr,
        client_port: u16,
        remote: Ipv4Addr,
        remote_port: u16,
        proto: u8,
        tcp: u8,
    ) -> anyhow::Result<(Ipv4Addr, u16)> {
        if !cfg.clients.iter().any(|c| c.contains(client)) {
            bail!("client {client} is outside nat64.clients");
        }
        if proto == IPPROTO_TCP && tcp & tcp::SYN == 0 {
            bail!("a TCP packet other than a SYN opens no session (RFC 6146 section 3.5.2.2)");
        }
        let state = if proto == IPPROTO_TCP {
            tcp::V6_INIT
        } else {
            tcp::CLOSED
        };
        if rfc6052::is_well_known(u128::from(cfg.prefix.addr), cfg.prefix.len)
            && !cfg.allow_non_global
            && !rfc6052::is_global(u32::from(remote))
        {
            bail!("{remote} is not global (well-known prefix)");
        }
        let p = Protocol::from_number(proto).ok_or_else(|| anyhow!("protocol {proto}"))?;
        let k6 = BindingKey6 {
            client: raw6(u128::from(client)),
            client_port_be: client_port.to_be(),
            proto,
            _pad: 0,
        };
        let now = crate::clock::monotonic_ns();
        let (pool, pool_port) = match self.bindings6.get(&k6, 0) {
            Ok(b) => (b.pool, b.pool_port_be),
            Err(_) => self.allocate(cfg, p, &k6, now)?,
        };
        let key = SessionKey6 {
            client: k6.client,
            remote: raw4(u32::from(remote)),
            client_port_be: k6.client_port_be,
            remote_port_be: remote_port.to_be(),
            proto,
            _pad: [0; 3],
        };
        let v6 = SessionValue6 {
            pool,
            pool_port_be: pool_port,
            flags: 0,
            state,
            last_seen: now,
        };
        self.sessions6
            .insert(key, v6, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        let k4 = key.reverse(&v6);
        let v4 = SessionValue4 {
            client: key.client,
            client_port_be: key.client_port_be,
            flags: 0,
            state,
            _pad: [0; 4],
            last_seen: now,
        };
        self.sessions4
            .insert(k4, v4, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        let fk = FilterKey {
            pool,
            remote: key.remote,
            pool_port_be: pool_port,
            proto,
            _pad: 0,
        };
        let _ = self.filters.insert(fk, now, 0);
        Ok((
            Ipv4Addr::from(rfc6052::from_raw4(pool)),
            u16::from_be(pool_port),
        ))
    }

    /// A new binding for a client port, from the client's blocks or a new block.
    fn allocate(
        &mut self,
        cfg: &Config,
        p: Protocol,
        k6: &BindingKey6,
        now: u64,
    ) -> anyhow::Result<(u32, u16)> {
        const NOEXIST: u64 = 1;
        let v4 = BindingValue4 {
            client: k6.client,
            client_port_be: k6.client_port_be,
            flags: 0,
            _pad: 0,
        };
        let parity = u16::from_be(k6.client_port_be) & 1;
        let mut free_slot = None;
        for slot in 0..cfg.max_blocks_per_client {
            let sk = BlockSlotKey {
                client: subscriber(cfg, k6.client),
                proto: k6.proto,
                slot,
                _pad: [0; 2],
            };
            let block = match self.block_slots.get(&sk, 0) {
                Ok(s) => s.block,
                Err(_) => {
                    free_slot.get_or_insert(sk);
                    continue;
                }
            };
            if let Some(found) = self.claim((block, cfg.block_size), parity, k6, &v4, now)? {
                return Ok(found);
            }
        }
        let sk =
            free_slot.ok_or_else(|| anyhow!("client limit: every block of the client is full"))?;
        let block = match cfg.deterministic {
            // RFC 7422: the slot's own block, as the data plane takes it (`db/pool.rs`).
            Some(det) => {
                let b = det
                    .block(&sk.client, cfg.max_blocks_per_client, u32::from(sk.slot))
                    .ok_or_else(|| anyhow!("slot {} is past the deterministic blocks", sk.slot))?;
                self.det_blocks
                    .get(&det.entry(p.index() as u32, b), 0)
                    .map_err(|e| anyhow!("deterministic {p} block {b}: {e}"))?
            }
            None => self.free[p.index()]
                .pop(0)
                .map_err(|_| anyhow!("pool exhausted ({p})"))?,
        };
        let slot = BlockSlot {
            block,
            next: 0,
            _pad: [0; 6],
            last_alloc: now,
        };
        if self.block_slots.insert(sk, slot, NOEXIST).is_err() {
            if cfg.deterministic.is_none() {
                let _ = self.free[p.index()].push(block, 0);
            }
            bail!("block slot taken concurrently");
        }
        self.claim((block, cfg.block_size), parity, k6, &v4, now)?
            .ok_or_else(|| anyhow!("new block has no free port"))
    }

    /// Claims the first free port of a block with the client's port parity.
    fn claim(
        &mut self,
        (block, size): (BlockId, u16),
        parity: u16,
        k6: &BindingKey6,
        v4: &BindingValue4,
        now: u64,
    ) -> anyhow::Result<Option<(u32, u16)>> {
        const NOEXIST: u64 = 1;
        // The client's parity first (RFC 4787 REQ-3), then the other ports of the block.
        for off in (parity..size)
            .step_by(2)
            .chain((1 - parity..size).step_by(2))
        {
            let port_be = block.start.wrapping_add(off).to_be();
            let k4 = BindingKey4 {
                pool: block.pool,
                pool_port_be: port_be,
                proto: k6.proto,
                _pad: 0,
            };
            if self.bindings4.insert(k4, *v4, NOEXIST).is_ok() {
                let v6 = BindingValue6 {
                    pool: block.pool,
                    pool_port_be: port_be,
                    flags: 0,
                    _pad: 0,
                    last_used: now,
                };
                if self.bindings6.insert(*k6, v6, NOEXIST).is_err() {
                    let _ = self.bindings4.remove(&k4);
                    let b = self
                        .bindings6
                        .get(k6, 0)
                        .map_err(|e| anyhow!("binding: {e}"))?;
                    return Ok(Some((b.pool, b.pool_port_be)));
                }
                return Ok(Some((block.pool, port_be)));
            }
        }
        Ok(None)
    }

    /// The session of an inbound IPv4 packet, created when a static binding, endpoint-
    /// independent filtering or a permit allows it (the data plane's rules: for TCP, a SYN,
    /// `tcp` being the packet's TCP flags, opening it in V4 INIT). An inbound SYN that nothing
    /// lets in is refused here; the data plane holds those that reach it whole.
    pub fn inbound_session(
        &mut self,
        cfg: &Config,
        key: &SessionKey4,
        tcp: u8,
    ) -> anyhow::Result<(Ipv6Addr, u16)> {
        if let Ok(v) = self.sessions4.get(key, 0) {
            return Ok((
                Ipv6Addr::from(rfc6052::from_raw6(&v.client)),
                u16::from_be(v.client_port_be),
            ));
        }
        let bk = BindingKey4 {
            pool: key.pool,
            pool_port_be: key.pool_port_be,
            proto: key.proto,
            _pad: 0,
        };
        let b = self
            .bindings4
            .get(&bk, 0)
            .map_err(|_| anyhow!("no binding"))?;
        let fk = FilterKey {
            pool: key.pool,
            remote: key.remote,
            pool_port_be: key.pool_port_be,
            proto: key.proto,
            _pad: 0,
        };
        if b.flags & BINDING_STATIC == 0
            && cfg.filtering == Filtering::AddressDependent
            && self.filters.get(&fk, 0).is_err()
        {
            bail!("filtered (address-dependent)");
        }
        if key.proto == IPPROTO_TCP && tcp & tcp::SYN == 0 {
            bail!("a TCP packet other than a SYN opens no session (RFC 6146 section 3.5.2.2)");
        }
        let state = if key.proto == IPPROTO_TCP {
            tcp::V4_INIT
        } else {
            tcp::CLOSED
        };
        let now = crate::clock::monotonic_ns();
        let v4 = SessionValue4 {
            client: b.client,
            client_port_be: b.client_port_be,
            flags: 0,
            state,
            _pad: [0; 4],
            last_seen: now,
        };
        self.sessions4
            .insert(*key, v4, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        let k6 = v4.reverse(key);
        let v6 = SessionValue6 {
            pool: key.pool,
            pool_port_be: key.pool_port_be,
            flags: 0,
            state,
            last_seen: now,
        };
        self.sessions6
            .insert(k6, v6, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        Ok((
            Ipv6Addr::from(rfc6052::from_raw6(&b.client)),
            u16::from_be(b.client_port_be),
        ))
    }
}
