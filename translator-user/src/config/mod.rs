//! The TOML configuration: deserialized with `deny_unknown_fields`, then validated as a whole
//! into [`Config`]. Every error names the setting and says what would be valid.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use thiserror::Error;
use translator_common::{
    maps::MAX_BLOCKS_PER_CLIENT,
    ports::{BlockLayout, Deterministic, LayoutError},
    rfc6052::{self, PrefixError},
};

/// A configuration problem: the setting, and what is wrong with it.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

fn err(setting: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        message: message.into(),
    }
}

pub mod deterministic;
mod raw;
#[cfg(test)]
mod tests;
mod types;

pub use raw::*;
pub use types::*;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub instance: String,
    pub ipv6_interface: String,
    pub ipv4_interface: String,
    pub mode: AttachMode,
    pub prefix: Prefix6,
    pub clients: Vec<Prefix6>,
    pub filtering: Filtering,
    /// `nat64.inbound_syn`.
    pub inbound_syn: InboundSyn,
    pub allow_non_global: bool,
    pub icmp_source6: Option<Ipv6Addr>,
    pub icmp_errors_per_second: u32,
    pub ipv6_mtu: u16,
    /// `nat64.route_cache_ms` (0: off).
    pub route_cache_ms: u32,
    pub pool: Vec<Ipv4Addr>,
    /// Port layout per protocol, indexed by [`Protocol::index`].
    pub layouts: [BlockLayout; 3],
    pub block_size: u16,
    pub max_blocks_per_client: u8,
    /// Client addresses are masked to this length for the block limit (`pool.subscriber_prefix_len`).
    pub subscriber_prefix_len: u8,
    /// RFC 7422 deterministic blocks (`pool.deterministic`): the subscriber index's place.
    pub deterministic: Option<Deterministic>,
    pub timeouts: Timeouts,
    pub sessions: u32,
    pub statics: Vec<StaticMapping>,
    /// Where the port-block log goes (`log.blocks`).
    pub block_log: Option<String>,
    /// Whether sessions are logged too (`log.sessions`).
    pub log_sessions: bool,
    /// The Prometheus endpoint's address (`metrics.listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The validated `[dns64]` table, when present.
    pub dns64: Option<crate::dns64::ValidDns64>,
    /// The validated `[ra]` table (its defaults, disabled, when the table is absent).
    pub ra: crate::ra::ValidRa,
    /// The file as read, kept for `status` and for checks on restart.
    pub raw: RawConfig,
    /// Not a setting: whether the XDP program sends what goes back out of the receiving
    /// interface with a redirect to it instead of `XDP_TX` (native mode on veth, decided where
    /// the gateway runs: `crate::modes::tx_by_redirect`).
    pub tx_by_redirect: bool,
}

/// Longest pool the data plane accepts (the POOL map size).
pub const MAX_POOL_ADDRESSES: usize = 256;

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self::validate(raw)?)
    }

    pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let instance = raw.instance.clone();
        if instance.is_empty()
            || instance.len() > 64
            || !instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "instance",
                format!("{instance:?} is not valid; use 1 to 64 letters, digits, '-' or '_'"),
            ));
        }
        for (setting, name) in [
            ("interfaces.ipv6", &raw.interfaces.ipv6),
            ("interfaces.ipv4", &raw.interfaces.ipv4),
        ] {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(err(
                    setting,
                    format!(
                        "{name:?} is not an interface name (1 to 15 characters, no '/' or space)"
                    ),
                ));
            }
        }
        let mode = raw
            .interfaces
            .mode
            .parse()
            .map_err(|e| err("interfaces.mode", e))?;

        let prefix = parse_prefix6(&raw.nat64.prefix).map_err(|e| err("nat64.prefix", e))?;
        rfc6052::check_prefix(u128::from(prefix.addr), prefix.len).map_err(|e| {
            err(
                "nat64.prefix",
                match e {
                    PrefixError::Length => format!(
                        "{prefix} has length {}; RFC 6052 allows 32, 40, 48, 56, 64 or 96",
                        prefix.len
                    ),
                    PrefixError::UOctet => {
                        format!("{prefix}: bits 64 to 71 must be zero (RFC 6052 section 2.2)")
                    }
                    PrefixError::HostBits => {
                        format!("{prefix}: bits after the prefix length must be zero")
                    }
                },
            )
        })?;

        if raw.nat64.clients.is_empty() {
            return Err(err(
                "nat64.clients",
                "is empty; list the IPv6 prefixes allowed to use the translator, e.g. [\"2001:db8:1::/64\"]",
            ));
        }
        let mut clients = Vec::new();
        for (i, c) in raw.nat64.clients.iter().enumerate() {
            let p = parse_prefix6(c).map_err(|e| err(format!("nat64.clients[{i}]"), e))?;
            if u128::from(p.addr) & !rfc6052::mask(p.len) != 0 {
                return Err(err(
                    format!("nat64.clients[{i}]"),
                    format!("{c}: bits after the prefix length must be zero"),
                ));
            }
            if p.len < 128 && prefix.contains(p.addr)
                || p.contains(prefix.addr) && p.len <= prefix.len
            {
                return Err(err(
                    format!("nat64.clients[{i}]"),
                    format!("{c} overlaps the NAT64 prefix {prefix}"),
                ));
            }
            clients.push(p);
        }
        let filtering = match raw.nat64.filtering.as_str() {
            "address-dependent" => Filtering::AddressDependent,
            "endpoint-independent" => Filtering::EndpointIndependent,
            other => {
                return Err(err(
                    "nat64.filtering",
                    format!("{other:?}; valid: \"address-dependent\", \"endpoint-independent\""),
                ));
            }
        };

        let inbound_syn = match raw.nat64.inbound_syn.as_str() {
            "hold" => InboundSyn::Hold,
            "drop" => InboundSyn::Drop,
            other => {
                return Err(err(
                    "nat64.inbound_syn",
                    format!(
                        "{other:?}; valid: \"hold\" (6 s, then ICMP port unreachable, RFC 6146 \
                         section 3.5.2.2) or \"drop\" (at once, no answer)"
                    ),
                ));
            }
        };

        let icmp_source6 = match &raw.nat64.icmp_source6 {
            Some(a) => Some(a.parse::<Ipv6Addr>().map_err(|_| {
                err(
                    "nat64.icmp_source6",
                    format!("{a:?} is not an IPv6 address"),
                )
            })?),
            None => None,
        };
        if raw.nat64.icmp_errors_per_second > 1_000_000 {
            return Err(err(
                "nat64.icmp_errors_per_second",
                format!("{}; valid: 0 to 1000000", raw.nat64.icmp_errors_per_second),
            ));
        }

        if raw.nat64.route_cache_ms > 10_000 {
            return Err(err(
                "nat64.route_cache_ms",
                format!(
                    "{}; valid: 0 (off) to 10000: a route or neighbour change reaches traffic \
                     after at most this long",
                    raw.nat64.route_cache_ms
                ),
            ));
        }
        if raw.nat64.ipv6_mtu < 1280 {
            return Err(err(
                "nat64.ipv6_mtu",
                format!(
                    "{}; valid: 1280 (the IPv6 minimum) to 65535",
                    raw.nat64.ipv6_mtu
                ),
            ));
        }

        if raw.pool.addresses.is_empty() {
            return Err(err(
                "pool.addresses",
                "is empty; give at least one IPv4 address",
            ));
        }
        let mut pool = BTreeSet::new();
        for (i, a) in raw.pool.addresses.iter().enumerate() {
            let setting = format!("pool.addresses[{i}]");
            for addr in parse_pool_entry(a).map_err(|e| err(&setting, e))? {
                if !pool.insert(addr) {
                    return Err(err(&setting, format!("{addr} is listed twice")));
                }
            }
        }
        if pool.len() > MAX_POOL_ADDRESSES {
            return Err(err(
                "pool.addresses",
                format!(
                    "{} addresses; at most {MAX_POOL_ADDRESSES} are supported",
                    pool.len()
                ),
            ));
        }
        let pool: Vec<Ipv4Addr> = pool.into_iter().collect();

        let block_size = raw.pool.block_size;
        let mut layouts = Vec::new();
        for (setting, range) in [
            ("pool.tcp_ports", &raw.pool.tcp_ports),
            ("pool.udp_ports", &raw.pool.udp_ports),
            ("pool.icmp_ids", &raw.pool.icmp_ids),
        ] {
            let (first, last) = parse_range(range).map_err(|e| err(setting, e))?;
            let layout = BlockLayout::new(first, last, block_size).map_err(|e| match e {
                LayoutError::BlockSize => err(
                    "pool.block_size",
                    format!("{block_size} is not a power of two between 8 and 32768"),
                ),
                LayoutError::Range => err(setting, format!("{range:?}: first port is above last")),
                LayoutError::TooSmall => err(
                    setting,
                    format!(
                        "{range:?} holds no whole block of {block_size} ports aligned to {block_size}; widen the range or lower pool.block_size"
                    ),
                ),
            })?;
            layouts.push(layout);
        }
        let layouts: [BlockLayout; 3] = [layouts[0], layouts[1], layouts[2]];
        let subscriber_prefix_len = raw.pool.subscriber_prefix_len;
        if !(32..=128).contains(&subscriber_prefix_len) {
            return Err(err(
                "pool.subscriber_prefix_len",
                format!(
                    "{subscriber_prefix_len}; valid: 32 to 128 (128: each address is a client; \
                     64 or 56: one client per subscriber prefix)"
                ),
            ));
        }
        let max_blocks = raw.pool.max_blocks_per_client;
        if max_blocks == 0 || u32::from(max_blocks) > MAX_BLOCKS_PER_CLIENT {
            return Err(err(
                "pool.max_blocks_per_client",
                format!("{max_blocks}; valid: 1 to {MAX_BLOCKS_PER_CLIENT}"),
            ));
        }

        let deterministic = if raw.pool.deterministic {
            let blocks = layouts.map(|l| l.blocks_per_address() * pool.len() as u32);
            Some(deterministic::validate(
                &clients,
                subscriber_prefix_len,
                max_blocks,
                blocks,
            )?)
        } else {
            None
        };

        let t = &raw.timeouts;
        for (setting, value, min) in [
            ("timeouts.udp", t.udp, 120),
            ("timeouts.icmp", t.icmp, 1),
            ("timeouts.tcp_established", t.tcp_established, 7440),
            ("timeouts.tcp_transitory", t.tcp_transitory, 240),
        ] {
            if value == 0 {
                return Err(err(setting, "must be at least 1 second"));
            }
            if t.enforce_rfc_minimums && value < min {
                return Err(err(
                    setting,
                    format!(
                        "{value} s is below the RFC 6146 minimum of {min} s (set timeouts.enforce_rfc_minimums = false for labs)"
                    ),
                ));
            }
        }
        let timeouts = Timeouts {
            udp: Duration::from_secs(t.udp),
            icmp: Duration::from_secs(t.icmp),
            tcp_established: Duration::from_secs(t.tcp_established),
            tcp_transitory: Duration::from_secs(t.tcp_transitory),
        };
        let sessions = raw.limits.sessions;
        if !(16..=16_777_216).contains(&sessions) {
            return Err(err(
                "limits.sessions",
                format!("{sessions}; valid: 16 to 16777216"),
            ));
        }

        let mut statics = Vec::new();
        let mut seen4 = BTreeSet::new();
        let mut seen6 = BTreeSet::new();
        for (i, s) in raw.statics.iter().enumerate() {
            let setting = format!("static[{i}]");
            let m = parse_static(s, &pool, &clients).map_err(|e| err(&setting, e))?;
            if !seen4.insert((m.protocol, m.ipv4, m.ipv4_port)) {
                return Err(err(
                    &setting,
                    format!("{} {}:{} is mapped twice", m.protocol, m.ipv4, m.ipv4_port),
                ));
            }
            if !seen6.insert((m.protocol, m.ipv6, m.ipv6_port)) {
                return Err(err(
                    &setting,
                    format!(
                        "{} [{}]:{} is mapped twice",
                        m.protocol, m.ipv6, m.ipv6_port
                    ),
                ));
            }
            statics.push(m);
        }

        let metrics_listen = match raw.metrics.listen.as_deref() {
            None | Some("") => None,
            Some(l) => Some(l.parse::<std::net::SocketAddr>().map_err(|_| {
                err(
                    "metrics.listen",
                    format!("{l:?} is not an address and port, e.g. \"127.0.0.1:9464\""),
                )
            })?),
        };
        let dns64 = match &raw.dns64 {
            Some(d) => {
                let clients: Vec<(std::net::IpAddr, u8)> = clients
                    .iter()
                    .map(|c| (std::net::IpAddr::V6(c.addr), c.len))
                    .collect();
                Some(
                    d.validate((prefix.addr, prefix.len), &clients)
                        .map_err(|e| match e {
                            crate::dns64::Dns64ConfigError::Invalid {
                                setting,
                                value,
                                reason,
                            } => err(
                                format!("dns64.{setting}"),
                                format!("{value:?} is not valid: {reason}"),
                            ),
                            crate::dns64::Dns64ConfigError::Missing { setting, reason } => {
                                err(format!("dns64.{setting}"), reason)
                            }
                        })?,
                )
            }
            None => None,
        };
        let ra = {
            let clients: Vec<(Ipv6Addr, u8)> = clients.iter().map(|c| (c.addr, c.len)).collect();
            let dns64_listen = dns64.as_ref().filter(|d| d.enabled()).map(|d| d.listen());
            raw.ra
                .clone()
                .unwrap_or_default()
                .validate(&crate::ra::Context {
                    interface: &raw.interfaces.ipv6,
                    nat64_prefix: (prefix.addr, prefix.len),
                    clients: &clients,
                    dns64_listen,
                })
                .map_err(|e| err(format!("ra.{}", e.setting), e.message))?
        };

        Ok(Config {
            instance,
            ipv6_interface: raw.interfaces.ipv6.clone(),
            ipv4_interface: raw.interfaces.ipv4.clone(),
            mode,
            prefix,
            clients,
            filtering,
            inbound_syn,
            allow_non_global: raw.nat64.allow_non_global,
            icmp_source6,
            icmp_errors_per_second: raw.nat64.icmp_errors_per_second,
            ipv6_mtu: raw.nat64.ipv6_mtu,
            route_cache_ms: raw.nat64.route_cache_ms,
            pool,
            layouts,
            block_size,
            max_blocks_per_client: max_blocks,
            subscriber_prefix_len,
            deterministic,
            timeouts,
            sessions,
            statics,
            dns64,
            ra,
            block_log: raw.log.blocks.clone().filter(|b| !b.is_empty()),
            log_sessions: raw.log.sessions,
            metrics_listen,
            raw,
            tx_by_redirect: false,
        })
    }

    /// The timeout of a session in the given state.
    pub fn timeout(&self, state: crate::state::SessionState) -> Duration {
        use crate::state::SessionState::*;
        match state {
            Udp => self.timeouts.udp,
            Icmp => self.timeouts.icmp,
            s if s.is_established_timer() => self.timeouts.tcp_established,
            _ => self.timeouts.tcp_transitory,
        }
    }

    /// The first setting sessions depend on that differs between `self` (running) and `new`:
    /// the pool, its layout and blocks, the table size. None of them can change while sessions
    /// exist (reload and adopting pinned state refuse it).
    pub fn session_setting_changed(&self, new: &Config) -> Option<&'static str> {
        let det = self.deterministic.is_some();
        [
            ("pool.addresses", self.pool != new.pool),
            (
                "pool.tcp_ports / pool.udp_ports / pool.icmp_ids / pool.block_size",
                self.layouts != new.layouts,
            ),
            (
                "pool.subscriber_prefix_len",
                self.subscriber_prefix_len != new.subscriber_prefix_len,
            ),
            ("limits.sessions", self.sessions != new.sessions),
            (
                // Its layout follows from the settings around it, each named on its own.
                "pool.deterministic",
                det != new.deterministic.is_some(),
            ),
            (
                "nat64.clients (with pool.deterministic)",
                det && self.clients != new.clients,
            ),
            (
                "pool.max_blocks_per_client (with pool.deterministic)",
                det && self.max_blocks_per_client != new.max_blocks_per_client,
            ),
        ]
        .into_iter()
        .find_map(|(setting, changed)| changed.then_some(setting))
    }

    /// Port blocks of a protocol that clients can hold: the whole pool's, or with
    /// `pool.deterministic` the subscribers' (`subscribers * max_blocks_per_client`).
    pub fn assignable_blocks(&self, p: Protocol) -> u32 {
        self.deterministic
            .map_or_else(|| self.total_blocks(p), |d| d.stride)
    }

    /// Slots of the filtering permit table: one per session with address-dependent filtering;
    /// endpoint-independent filtering keeps no permits (one slot, the least a map has). A
    /// gateway started that way has no room for them, so a reload cannot turn
    /// address-dependent filtering on (`dataplane::check_permit_room`).
    pub fn permit_slots(&self) -> u32 {
        match self.filtering {
            Filtering::AddressDependent => self.sessions,
            Filtering::EndpointIndependent => 1,
        }
    }

    /// Slots of the binding tables: a binding holds a pool port, so there are never more than
    /// the pool has (65536 per address and protocol), nor more than sessions.
    pub fn binding_slots(&self) -> u32 {
        let ports = (self.pool.len() as u64) * 3 * 65_536;
        ports.min(u64::from(self.sessions)).max(1) as u32
    }

    /// Number of port blocks per protocol in the whole pool.
    pub fn total_blocks(&self, p: Protocol) -> u32 {
        self.layouts[p.index()].blocks_per_address() * self.pool.len() as u32
    }
}
