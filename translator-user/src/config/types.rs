//! The validated domain types the configuration is made of, and the parsers of their text forms.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use translator_common::rfc6052;

use super::RawStatic;

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

/// What becomes of an inbound TCP SYN that no mapping or filter lets in (`nat64.inbound_syn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InboundSyn {
    /// Held for 6 seconds (a simultaneous open may be under way), then answered with ICMP port
    /// unreachable unless a client opened the connection meanwhile (RFC 6146 section 3.5.2.2).
    Hold,
    /// Dropped at once, without an answer (the RFC's "security policy" alternative).
    Drop,
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
pub(super) fn parse_pool_entry(s: &str) -> Result<Vec<Ipv4Addr>, String> {
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
pub(super) fn parse_range(s: &str) -> Result<(u16, u16), String> {
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
