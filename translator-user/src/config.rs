//! The TOML configuration: deserialized with `deny_unknown_fields`, then validated as a whole
//! into [`Config`]. Every error names the setting and says what would be valid.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use translator_common::{
    maps::MAX_BLOCKS_PER_CLIENT,
    ports::{BlockLayout, LayoutError},
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

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Instance name: the bpffs folder /sys/fs/bpf/translator/<instance>. Default "default".
    #[serde(default = "default_instance")]
    pub instance: String,
    pub interfaces: RawInterfaces,
    pub nat64: RawNat64,
    pub pool: RawPool,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    /// Static mappings (inbound port forwarding), `[[static]]` tables.
    #[serde(default, rename = "static")]
    pub statics: Vec<RawStatic>,
    /// The embedded DNS64 server.
    #[serde(default)]
    pub dns64: Option<crate::dns64::Dns64Config>,
    /// Logs.
    #[serde(default)]
    pub log: RawLog,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Router advertisements on `interfaces.ipv6`.
    #[serde(default)]
    pub ra: Option<crate::ra::RaConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address and port of the Prometheus text endpoint (GET /metrics), e.g.
    /// "127.0.0.1:9464". Absent or "": off (the default).
    #[serde(default)]
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Port-block log (JSON lines, RFC 6888 style): a file path, "-" for standard output,
    /// absent or "" for none. Default none.
    #[serde(default)]
    pub blocks: Option<String>,
    /// Also log every session (created, expired) in the same place. Default false.
    #[serde(default)]
    pub sessions: bool,
}

fn default_instance() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterfaces {
    /// Interface facing the IPv6-only clients.
    pub ipv6: String,
    /// Interface facing the IPv4 network; may be the same as `ipv6` (one-armed).
    pub ipv4: String,
    /// "native" (driver XDP, default), "generic" (skb XDP, works everywhere, slower) or "tc"
    /// (TC ingress on the skb: veth, containers, GSO kept).
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "native".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNat64 {
    /// RFC 6052 prefix, e.g. "64:ff9b::/96". Default the well-known prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// IPv6 prefixes allowed to use the translator (required: the gateway is no open relay).
    pub clients: Vec<String>,
    /// "address-dependent" (default) or "endpoint-independent".
    #[serde(default = "default_filtering")]
    pub filtering: String,
    /// Translate non-global IPv4 destinations under 64:ff9b::/96 (labs only). Default false.
    #[serde(default)]
    pub allow_non_global: bool,
    /// Source of the ICMPv6 errors the gateway sends itself (hop limit exceeded, packet too
    /// big, address unreachable). Default: the first global address of interfaces.ipv6.
    #[serde(default)]
    pub icmp_source6: Option<String>,
    /// ICMP errors the gateway sends per second and CPU at most (0: none). Default 1000.
    #[serde(default = "default_icmp_rate")]
    pub icmp_errors_per_second: u32,
    /// Largest IPv6 packet the slow path sends when it must fragment (RFC 7915 section 4.1:
    /// the lowest MTU on the IPv6 side). Default 1280.
    #[serde(default = "default_ipv6_mtu")]
    pub ipv6_mtu: u16,
    /// Milliseconds a route lookup's answer (interface, MACs) is reused for translated packets
    /// to the same destination; 0 (default): every packet is looked up.
    #[serde(default)]
    pub route_cache_ms: u32,
}

fn default_ipv6_mtu() -> u16 {
    1280
}

fn default_icmp_rate() -> u32 {
    1000
}

fn default_prefix() -> String {
    "64:ff9b::/96".into()
}

fn default_filtering() -> String {
    "address-dependent".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// IPv4 addresses or prefixes (e.g. "192.0.2.1", "198.51.100.0/30").
    pub addresses: Vec<String>,
    #[serde(default = "default_ports")]
    pub tcp_ports: String,
    #[serde(default = "default_ports")]
    pub udp_ports: String,
    #[serde(default = "default_ports")]
    pub icmp_ids: String,
    /// Ports per block handed to a client at a time (power of two, 8..=32768). Default 128.
    #[serde(default = "default_block_size")]
    pub block_size: u16,
    /// Blocks one client may hold per protocol (1..=16). Default 8.
    #[serde(default = "default_max_blocks")]
    pub max_blocks_per_client: u8,
    /// Prefix length that makes one client (subscriber) for the block limit: addresses in the
    /// same prefix of this length share blocks and `max_blocks_per_client` (RFC 6888 REQ-4).
    /// 128 (default): every address is a client of its own; 64 or 56 where each subscriber
    /// has a prefix, so that a host rotating its addresses cannot take more.
    #[serde(default = "default_subscriber_prefix_len")]
    pub subscriber_prefix_len: u8,
}

fn default_subscriber_prefix_len() -> u8 {
    128
}

fn default_ports() -> String {
    "1024-65535".into()
}

fn default_block_size() -> u16 {
    128
}

fn default_max_blocks() -> u8 {
    8
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Seconds. RFC 6146 section 4 defaults.
    #[serde(default = "default_udp")]
    pub udp: u64,
    #[serde(default = "default_icmp")]
    pub icmp: u64,
    #[serde(default = "default_tcp_est")]
    pub tcp_established: u64,
    #[serde(default = "default_tcp_trans")]
    pub tcp_transitory: u64,
    /// Refuse timeouts below the RFC 6146 minimums (UDP 120 s, TCP established 7440 s,
    /// TCP transitory 240 s). Set false only for tests and labs. Default true.
    #[serde(default = "default_true")]
    pub enforce_rfc_minimums: bool,
}

fn default_udp() -> u64 {
    300
}
fn default_icmp() -> u64 {
    60
}
fn default_tcp_est() -> u64 {
    7440
}
fn default_tcp_trans() -> u64 {
    240
}
fn default_true() -> bool {
    true
}

impl Default for RawTimeouts {
    fn default() -> Self {
        Self {
            udp: default_udp(),
            icmp: default_icmp(),
            tcp_established: default_tcp_est(),
            tcp_transitory: default_tcp_trans(),
            enforce_rfc_minimums: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Session table size (each direction), also the binding table size. Default 262144.
    #[serde(default = "default_sessions")]
    pub sessions: u32,
}

fn default_sessions() -> u32 {
    262_144
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            sessions: default_sessions(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    /// "tcp", "udp" or "icmp".
    pub protocol: String,
    pub ipv6: String,
    pub ipv6_port: u16,
    pub ipv4: String,
    pub ipv4_port: u16,
}

// ---------------------------------------------------------------------------------------------
// Validated domain types.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp];

    /// The IPv4 protocol number that keys use.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => translator_common::IPPROTO_TCP,
            Protocol::Udp => translator_common::IPPROTO_UDP,
            Protocol::Icmp => translator_common::IPPROTO_ICMP,
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.number() == n)
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            other => Err(format!("unknown protocol {other:?}; valid: tcp, udp, icmp")),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// XDP in the driver, before any skb exists (NICs, TAP).
    Native,
    /// XDP on the skb (any interface, slower).
    Generic,
    /// TC (clsact ingress through TCX) on the skb as it is, GSO included: veth, containers.
    Tc,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Tc => "tc",
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" => Ok(AttachMode::Native),
            "generic" => Ok(AttachMode::Generic),
            "tc" => Ok(AttachMode::Tc),
            other => Err(format!(
                "unknown mode {other:?}; valid: native, generic, tc"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    AddressDependent,
    EndpointIndependent,
}

/// An IPv6 prefix, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix6 {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl std::fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Prefix6 {
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        u128::from(a) & rfc6052::mask(self.len) == u128::from(self.addr)
    }
}

/// A static mapping (binding installed by the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StaticMapping {
    pub protocol: Protocol,
    pub ipv6: Ipv6Addr,
    pub ipv6_port: u16,
    pub ipv4: Ipv4Addr,
    pub ipv4_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub udp: Duration,
    pub icmp: Duration,
    pub tcp_established: Duration,
    pub tcp_transitory: Duration,
}

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
                        .map_err(|e| err("dns64", e.to_string()))?,
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
            timeouts,
            sessions,
            statics,
            dns64,
            ra,
            block_log: raw.log.blocks.clone().filter(|b| !b.is_empty()),
            log_sessions: raw.log.sessions,
            metrics_listen,
            raw,
        })
    }

    /// The timeout of a session in the given state.
    pub fn timeout(&self, state: crate::state::SessionState) -> Duration {
        use crate::state::SessionState::*;
        match state {
            Udp => self.timeouts.udp,
            Icmp => self.timeouts.icmp,
            TcpEstablished => self.timeouts.tcp_established,
            TcpTransitory => self.timeouts.tcp_transitory,
        }
    }

    /// Number of port blocks per protocol in the whole pool.
    pub fn total_blocks(&self, p: Protocol) -> u32 {
        self.layouts[p.index()].blocks_per_address() * self.pool.len() as u32
    }
}

/// Parses "addr/len" (an address alone means /128).
pub fn parse_prefix6(s: &str) -> Result<Prefix6, String> {
    let (a, l) = s.split_once('/').unwrap_or((s, "128"));
    let addr: Ipv6Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv6 prefix like 2001:db8::/64"))?;
    let len: u8 = l
        .trim()
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| format!("{s:?}: prefix length must be 0 to 128"))?;
    Ok(Prefix6 { addr, len })
}

/// Parses a pool entry: an IPv4 address or a prefix of at most 256 addresses (/24..=/32).
fn parse_pool_entry(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address or prefix like 192.0.2.0/30"))?;
    let len: u8 = l
        .trim()
        .parse()
        .ok()
        .filter(|l| (24..=32).contains(l))
        .ok_or_else(|| format!("{s:?}: prefix length must be 24 to 32"))?;
    let base = u32::from(addr);
    let size = 1u32 << (32 - len);
    if base & (size - 1) != 0 {
        return Err(format!("{s:?}: bits after the prefix length must be zero"));
    }
    Ok((0..size).map(|i| Ipv4Addr::from(base + i)).collect())
}

/// Parses "first-last" (or a single port).
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range like \"1024-65535\"");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let first: u16 = a.trim().parse().map_err(|_| bad())?;
    let last: u16 = b.trim().parse().map_err(|_| bad())?;
    if first == 0 {
        return Err(format!("{s:?}: port 0 cannot be used"));
    }
    Ok((first, last))
}

pub fn parse_static(
    s: &RawStatic,
    pool: &[Ipv4Addr],
    clients: &[Prefix6],
) -> Result<StaticMapping, String> {
    let protocol: Protocol = s.protocol.parse()?;
    let ipv6: Ipv6Addr = s
        .ipv6
        .parse()
        .map_err(|_| format!("ipv6 = {:?} is not an IPv6 address", s.ipv6))?;
    let ipv4: Ipv4Addr = s
        .ipv4
        .parse()
        .map_err(|_| format!("ipv4 = {:?} is not an IPv4 address", s.ipv4))?;
    if !pool.contains(&ipv4) {
        return Err(format!(
            "ipv4 = {ipv4} is not a pool address (pool.addresses)"
        ));
    }
    if !clients.iter().any(|c| c.contains(ipv6)) {
        return Err(format!(
            "ipv6 = {ipv6} is not inside any nat64.clients prefix"
        ));
    }
    if s.ipv4_port == 0 || s.ipv6_port == 0 {
        return Err("ports must be 1 to 65535".into());
    }
    Ok(StaticMapping {
        protocol,
        ipv6,
        ipv6_port: s.ipv6_port,
        ipv4,
        ipv4_port: s.ipv4_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[interfaces]
ipv6 = "eth0"
ipv4 = "eth1"
[nat64]
prefix = "2001:db8:64::/96"
clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1", "198.51.100.0/30"]
block_size = 64
[[static]]
protocol = "tcp"
ipv6 = "2001:db8:1::10"
ipv6_port = 80
ipv4 = "192.0.2.1"
ipv4_port = 8080
"#;

    #[test]
    fn good_config_and_defaults() {
        let c = Config::parse(GOOD).expect("valid config");
        assert_eq!(c.instance, "default");
        assert_eq!(c.mode, AttachMode::Native);
        assert_eq!(c.pool.len(), 5);
        assert_eq!(c.filtering, Filtering::AddressDependent);
        assert_eq!(c.timeouts.udp, Duration::from_secs(300));
        assert_eq!(c.timeouts.tcp_established, Duration::from_secs(7440));
        assert_eq!(c.layouts[0].blocks_per_address(), (65536 - 1024) / 64);
        assert_eq!(c.statics.len(), 1);
        assert_eq!(c.total_blocks(Protocol::Udp), 5 * (65536 - 1024) / 64);
    }

    fn bad(replace: &str, with: &str, setting: &str) {
        let text = GOOD.replace(replace, with);
        assert_ne!(text, GOOD, "test edit {replace:?} did not apply");
        let e = Config::parse(&text).expect_err("config should be refused");
        let msg = e.to_string();
        assert!(
            msg.starts_with(setting) || msg.contains(setting),
            "{msg:?} should name {setting}"
        );
    }

    #[test]
    fn bad_inputs_name_the_setting() {
        bad("2001:db8:64::/96", "2001:db8:64::/33", "nat64.prefix");
        bad("2001:db8:64::/96", "2001:db8:64::1/96", "nat64.prefix");
        bad("2001:db8:64::/96", "2001:db8:0:0:100::/96", "nat64.prefix");
        bad("2001:db8:64::/96", "not-an-address", "nat64.prefix");
        bad(
            "clients = [\"2001:db8:1::/64\"]",
            "clients = []",
            "nat64.clients",
        );
        bad(
            "clients = [\"2001:db8:1::/64\"]",
            "clients = [\"2001:db8:64::/112\"]",
            "nat64.clients[0]",
        );
        bad("block_size = 64", "block_size = 100", "pool.block_size");
        bad(
            "[\"192.0.2.1\", \"198.51.100.0/30\"]",
            "[]",
            "pool.addresses",
        );
        bad("198.51.100.0/30", "198.51.100.1/30", "pool.addresses[1]");
        bad("198.51.100.0/30", "192.0.2.1", "pool.addresses[1]");
        bad(
            "ipv4 = \"eth1\"",
            "ipv4 = \"eth1\"\nmode = \"fast\"",
            "interfaces.mode",
        );
        bad(
            "ipv4_port = 8080",
            "ipv4_port = 8080\nextra = 1",
            "unknown field",
        );
        bad(
            "ipv4 = \"192.0.2.1\"\nipv4_port",
            "ipv4 = \"203.0.113.1\"\nipv4_port",
            "static[0]",
        );
        bad(
            "ipv6 = \"2001:db8:1::10\"",
            "ipv6 = \"2001:db8:2::10\"",
            "static[0]",
        );
        bad("protocol = \"tcp\"", "protocol = \"sctp\"", "static[0]");
        bad(
            "block_size = 64",
            "block_size = 64\nmax_blocks_per_client = 17",
            "pool.max_blocks_per_client",
        );
        bad(
            "block_size = 64",
            "block_size = 64\nudp_ports = \"1025-1030\"",
            "pool.udp_ports",
        );
        bad(
            "[pool]",
            "route_cache_ms = 10001\n[pool]",
            "nat64.route_cache_ms",
        );
        bad(
            "block_size = 64",
            "block_size = 64\nsubscriber_prefix_len = 129",
            "pool.subscriber_prefix_len",
        );
        bad(
            "block_size = 64",
            "block_size = 64\nsubscriber_prefix_len = 16",
            "pool.subscriber_prefix_len",
        );
        bad(
            "[[static]]",
            "[timeouts]\nudp = 30\n[[static]]",
            "timeouts.udp",
        );
        bad(
            "[nat64]",
            "[nat64]\nfiltering = \"strict\"",
            "nat64.filtering",
        );
        bad(
            "[[static]]",
            "[ra]\nmax_interval = 2000\n[[static]]",
            "ra.max_interval: 2000 is outside 4..1800 seconds",
        );
        bad(
            "[[static]]",
            "[ra]\nprefixes = [\"2001:db8:2::/64\"]\n[[static]]",
            "ra.prefixes[0]",
        );
        bad(
            "[[static]]",
            "[ra]\nbogus = 1\n[[static]]",
            "unknown field `bogus`",
        );
    }

    #[test]
    fn ra_takes_the_nat64_prefix_and_the_dns64_addresses() {
        let text = GOOD.replace(
            "[[static]]",
            "[dns64]\nenabled = true\nlisten = [\"[2001:db8:1::1]:53\"]\nupstreams = [\"192.0.2.53\"]\n\
             [ra]\nenabled = true\nprefixes = [\"2001:db8:1::/64\"]\n[[static]]",
        );
        let c = Config::parse(&text).expect("valid");
        assert!(c.ra.enabled);
        assert_eq!(c.ra.interface, "eth0");
        assert_eq!(c.ra.pref64, (c.prefix.addr, c.prefix.len));
        assert_eq!(
            c.ra.rdnss,
            crate::ra::RdnssSource::Dns64(vec!["[2001:db8:1::1]:53".parse().expect("literal")])
        );
        let plain = Config::parse(GOOD).expect("valid");
        assert!(!plain.ra.enabled);
        assert_eq!(plain.ra.rdnss, crate::ra::RdnssSource::None);
    }

    /// Mutated configuration text never panics the parser; it parses or names a problem.
    #[test]
    fn random_mutations_are_refused_cleanly() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base: Vec<char> = GOOD.chars().collect();
        for _ in 0..3000 {
            let mut t = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % t.len();
                match next() % 3 {
                    0 => {
                        t[i] = char::from(b" =\"[]0123456789abcdef:/.-x\n"[(next() % 27) as usize])
                    }
                    1 => {
                        t.remove(i);
                    }
                    _ => t.insert(i, char::from(b"9/:\"]"[(next() % 5) as usize])),
                }
            }
            let text: String = t.into_iter().collect();
            if let Err(e) = Config::parse(&text) {
                assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn short_timeouts_allowed_when_asked() {
        let text = GOOD.replace(
            "[[static]]",
            "[timeouts]\nudp = 2\ntcp_transitory = 3\nenforce_rfc_minimums = false\n[[static]]",
        );
        let c = Config::parse(&text).expect("valid");
        assert_eq!(c.timeouts.udp, Duration::from_secs(2));
    }
}
