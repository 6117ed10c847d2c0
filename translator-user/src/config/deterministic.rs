//! RFC 7422 deterministic port blocks (`pool.deterministic`), the controller's side: which
//! block each subscriber slot gets (the data plane's `DET_BLOCKS`), and the inverse, who a pool
//! port belongs to, which `translator log query` answers from the configuration alone.
//!
//! The pool's blocks of a protocol are numbered in pool order: the addresses in ascending
//! order, each address's blocks by port. Subscriber `i` (the `i`-th `subscriber_prefix_len`
//! prefix of the one client prefix) holds blocks `i * max_blocks .. (i + 1) * max_blocks`,
//! its slot `s` always block `i * max_blocks + s`. Blocks after the last subscriber's stay
//! unused.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use translator_common::{
    maps::BlockId,
    ports::{Deterministic, MAX_DETERMINISTIC_BITS},
    rfc6052::raw4,
};

use super::{Config, ConfigError, Prefix6, Protocol, err};

/// The setting each protocol's port range comes from, by [`Protocol::index`].
pub const PORT_SETTINGS: [&str; 3] = ["pool.tcp_ports", "pool.udp_ports", "pool.icmp_ids"];

/// Checks `pool.deterministic` against the rest of the pool settings and returns its layout.
pub(super) fn validate(
    clients: &[Prefix6],
    subscriber_prefix_len: u8,
    max_blocks: u8,
    blocks_per_protocol: [u32; 3],
) -> Result<Deterministic, ConfigError> {
    const S: &str = "pool.deterministic";
    let [c] = clients else {
        return Err(err(
            S,
            format!(
                "needs exactly one nat64.clients prefix (subscriber i is the i-th \
                 /{subscriber_prefix_len} in it), {} are listed",
                clients.len()
            ),
        ));
    };
    // The subscriber lengths that work with this client prefix.
    let longest = (u32::from(c.len) + u32::from(MAX_DETERMINISTIC_BITS)).min(128);
    if subscriber_prefix_len < c.len {
        return Err(err(
            S,
            format!(
                "pool.subscriber_prefix_len {subscriber_prefix_len} is shorter than the \
                 nat64.clients prefix {c}; valid: {} to {longest}",
                c.len
            ),
        ));
    }
    let bits = subscriber_prefix_len - c.len;
    let det = Deterministic::new(c.len, subscriber_prefix_len, max_blocks).ok_or_else(|| {
        err(
            S,
            format!(
                "nat64.clients {c} holds 2^{bits} prefixes of pool.subscriber_prefix_len \
                 {subscriber_prefix_len}; at most 2^{MAX_DETERMINISTIC_BITS} subscribers are \
                 supported: pool.subscriber_prefix_len {} to {longest}, or a longer client prefix",
                c.len
            ),
        )
    })?;
    for p in Protocol::ALL {
        let have = blocks_per_protocol[p.index()];
        if det.stride > have {
            return Err(err(
                S,
                format!(
                    "{p}: {} subscribers (the /{subscriber_prefix_len} prefixes of {c}) x \
                     {max_blocks} blocks (pool.max_blocks_per_client) need {} blocks, the pool \
                     has {have} (pool.addresses x the blocks of {}); add pool addresses, lower \
                     pool.block_size or pool.max_blocks_per_client, or lengthen nat64.clients",
                    det.subscribers(),
                    det.stride,
                    PORT_SETTINGS[p.index()]
                ),
            ));
        }
    }
    Ok(det)
}

/// Who a deterministic block belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The subscriber prefix (its first address) and its length.
    pub client: Ipv6Addr,
    pub client_prefix_len: u8,
    pub protocol: Protocol,
    /// Which of the subscriber's `max_blocks` blocks.
    pub slot: u8,
    pub pool: Ipv4Addr,
    pub first_port: u16,
    pub last_port: u16,
    /// A static mapping (`static`) holds the port, not the block's subscriber: its client
    /// port (`client` is its address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_client_port: Option<u16>,
}

impl Holder {
    /// A static mapping of `client`:`client_port` holding `pool`:`port`.
    pub fn static_mapping(
        protocol: Protocol,
        pool: Ipv4Addr,
        port: u16,
        client: Ipv6Addr,
        client_port: u16,
    ) -> Self {
        Holder {
            client,
            client_prefix_len: 128,
            protocol,
            slot: 0,
            pool,
            first_port: port,
            last_port: port,
            static_client_port: Some(client_port),
        }
    }

    /// The holder as text: the address, or the subscriber prefix.
    pub fn holder(&self) -> String {
        if self.client_prefix_len >= 128 {
            self.client.to_string()
        } else {
            format!("{}/{}", self.client, self.client_prefix_len)
        }
    }
}

impl Config {
    /// Block `b` of protocol `p` in pool order: its address and first port.
    fn pool_block(&self, p: Protocol, b: u32) -> Option<(Ipv4Addr, u16)> {
        let layout = &self.layouts[p.index()];
        let per = layout.blocks_per_address();
        let addr = *self.pool.get(usize::try_from(b / per).ok()?)?;
        let start = layout.first_block_start() + (b % per) * u32::from(layout.block_size);
        Some((addr, u16::try_from(start).ok()?))
    }

    /// The `DET_BLOCKS` entries of protocol `p`, in table order (empty without
    /// `pool.deterministic`).
    pub fn deterministic_blocks(&self, p: Protocol) -> Vec<BlockId> {
        let Some(det) = self.deterministic else {
            return Vec::new();
        };
        // Every b < stride is a block of the pool: `validate` checked the pool holds them.
        (0..det.stride)
            .map_while(|b| self.pool_block(p, b))
            .map(|(addr, start)| BlockId {
                pool: raw4(u32::from(addr)),
                start,
                _pad: 0,
            })
            .collect()
    }

    /// The block of subscriber `client` (any address in it), slot `slot`, for protocol `p`.
    pub fn deterministic_block(&self, p: Protocol, client: Ipv6Addr, slot: u8) -> Option<Holder> {
        let det = self.deterministic?;
        let c = self.clients.first()?;
        if !c.contains(client) || slot >= self.max_blocks_per_client {
            return None;
        }
        let raw = translator_common::rfc6052::raw6(u128::from(client));
        self.holder(
            p,
            det.block(&raw, self.max_blocks_per_client, u32::from(slot))?,
        )
    }

    /// Who holds `pool`:`port` of protocol `p` under `pool.deterministic`: the one subscriber
    /// that can ever hold it. `None` without the option, or for a port no subscriber's block
    /// covers (outside the layout, or a block after the last subscriber's).
    /// A static mapping of the port comes first: it holds the port whatever block it is in.
    pub fn deterministic_holder(&self, p: Protocol, pool: Ipv4Addr, port: u16) -> Option<Holder> {
        self.deterministic?;
        if let Some(s) = self
            .statics
            .iter()
            .find(|s| s.protocol == p && s.ipv4 == pool && s.ipv4_port == port)
        {
            return Some(Holder::static_mapping(p, pool, port, s.ipv6, s.ipv6_port));
        }
        let layout = &self.layouts[p.index()];
        let a = u32::try_from(self.pool.iter().position(|x| *x == pool)?).ok()?;
        let start = layout.block_of(port)?;
        let j = (u32::from(start) - layout.first_block_start()) / u32::from(layout.block_size);
        self.holder(p, a * layout.blocks_per_address() + j)
    }

    /// The holder of block `b` of protocol `p` in pool order.
    fn holder(&self, p: Protocol, b: u32) -> Option<Holder> {
        let det = self.deterministic?;
        if b >= det.stride {
            return None;
        }
        let c = self.clients.first()?;
        let max = u32::from(self.max_blocks_per_client);
        let index = u128::from(b / max);
        let host_bits = 128 - u32::from(self.subscriber_prefix_len);
        let client = u128::from(c.addr) | index.checked_shl(host_bits).unwrap_or(0);
        let (pool, first_port) = self.pool_block(p, b)?;
        Some(Holder {
            client: Ipv6Addr::from(client),
            client_prefix_len: self.subscriber_prefix_len,
            protocol: p,
            slot: (b % max) as u8,
            pool,
            first_port,
            last_port: first_port + (self.layouts[p.index()].block_size - 1),
            static_client_port: None,
        })
    }
}
