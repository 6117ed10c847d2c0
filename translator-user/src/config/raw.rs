//! The configuration file as it is deserialized (`deny_unknown_fields`), with the defaults
//! next to the fields they fill.

use serde::Deserialize;

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
    /// Inbound TCP SYN that no mapping or filter lets in: "hold" (default: 6 s, then ICMP
    /// port unreachable, RFC 6146 section 3.5.2.2) or "drop" (at once, no answer).
    #[serde(default = "default_inbound_syn")]
    pub inbound_syn: String,
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

fn default_inbound_syn() -> String {
    "hold".into()
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
    /// RFC 7422 deterministic port blocks: subscriber i of the one `nat64.clients` prefix
    /// always gets the same `max_blocks_per_client` blocks of the pool, so who held a port
    /// follows from the configuration alone (no block log needed). Default false.
    #[serde(default)]
    pub deterministic: bool,
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
