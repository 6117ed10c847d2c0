//! The `[dns64]` table of the controller's TOML file and its validation into [`ValidDns64`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use translator_common::rfc6052::{self, PrefixError};

/// The `[dns64]` table. Every field has a default; `upstreams` must be given when `enabled`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns64Config {
    /// Run the DNS64 server. Default: `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Addresses to listen on, UDP and TCP both. Default: `["[::]:53"]`. A bare address means
    /// port 53.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Upstream recursive resolvers, tried in order with fail-over. Required when `enabled`.
    /// A bare address means port 53.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Client networks served (others get REFUSED). Default: the NAT64 client prefixes of the
    /// gateway. A bare address is a /32 or /128.
    #[serde(default)]
    pub allowed_clients: Option<Vec<String>>,
    /// Extra prefixes to synthesize with, after the NAT64 prefix (which is always first).
    /// Default: none, i.e. only the NAT64 prefix.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// AAAA ranges that do not count as AAAA (removed from answers). Default: `["::ffff:0:0/96"]`.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
    /// IPv4 ranges never mapped into AAAA records. Default: none. Under the well-known prefix
    /// 64:ff9b::/96 the non-global ranges are never mapped either (see `allow_non_global`).
    #[serde(default)]
    pub never_map: Vec<String>,
    /// Map non-global IPv4 addresses under the well-known prefix too. Default: `false`.
    #[serde(default)]
    pub allow_non_global: bool,
    /// Synthesize for DO=1 queries even when the upstream data is signed (breaks DNSSEC for
    /// validating clients). Default: `false`.
    #[serde(default)]
    pub break_dnssec: bool,
    /// How long to wait for one upstream before failing over to the next, in ms. Default: 1500.
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// Idle time after which a client TCP connection is closed, in ms. Default: 10000.
    #[serde(default = "default_tcp_idle_timeout_ms")]
    pub tcp_idle_timeout_ms: u64,
    /// Most answers kept in the cache (entries, each at most 4 KiB; larger answers are not
    /// cached); 0 disables the cache. Default: 65536.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Longest time an answer stays cached, in seconds. Default: 86400.
    #[serde(default = "default_cache_max_ttl")]
    pub cache_max_ttl: u32,
    /// Largest UDP answer we send to EDNS clients and advertise upstream, in bytes (512..=4096).
    /// Default: 1232.
    #[serde(default = "default_max_udp_payload")]
    pub max_udp_payload: u16,
}

fn default_listen() -> Vec<String> {
    vec!["[::]:53".to_owned()]
}
fn default_exclude() -> Vec<String> {
    vec!["::ffff:0:0/96".to_owned()]
}
const fn default_upstream_timeout_ms() -> u64 {
    1500
}
const fn default_tcp_idle_timeout_ms() -> u64 {
    10_000
}
const fn default_cache_size() -> usize {
    65_536
}
const fn default_cache_max_ttl() -> u32 {
    86_400
}
const fn default_max_udp_payload() -> u16 {
    1232
}

impl Default for Dns64Config {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_listen(),
            upstreams: Vec::new(),
            allowed_clients: None,
            prefixes: Vec::new(),
            exclude: default_exclude(),
            never_map: Vec::new(),
            allow_non_global: false,
            break_dnssec: false,
            upstream_timeout_ms: default_upstream_timeout_ms(),
            tcp_idle_timeout_ms: default_tcp_idle_timeout_ms(),
            cache_size: default_cache_size(),
            cache_max_ttl: default_cache_max_ttl(),
            max_udp_payload: default_max_udp_payload(),
        }
    }
}

/// A `[dns64]` setting that is not valid. The message names the setting and what is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dns64ConfigError {
    /// One value of a setting is wrong.
    #[error("dns64.{setting}: {value:?} is not valid: {reason}")]
    Invalid {
        /// The setting's key, e.g. `upstreams`.
        setting: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong and what would be valid.
        reason: String,
    },
    /// A setting is missing or empty where it must be given.
    #[error("dns64.{setting}: {reason}")]
    Missing {
        /// The setting's key.
        setting: &'static str,
        /// What is needed.
        reason: String,
    },
}

/// An IP network (address and prefix length, host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// IPv4 network.
    V4(u32, u8),
    /// IPv6 network.
    V6(u128, u8),
}

impl Net {
    fn mask4(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }
    fn mask6(len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        }
    }

    /// Parses `addr/len` or a bare address; host bits must be zero.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| {
            "expected an IP network such as 192.0.2.0/24 or 2001:db8::/32".to_owned()
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("prefix length must be 0..={max}"))?,
            None => max,
        };
        match addr {
            IpAddr::V4(v4) => {
                let v = u32::from(v4);
                if v & !Self::mask4(len) != 0 {
                    let net = Ipv4Addr::from(v & Self::mask4(len));
                    return Err(format!("host bits are set; did you mean {net}/{len}?"));
                }
                Ok(Self::V4(v, len))
            }
            IpAddr::V6(v6) => {
                let v = u128::from(v6);
                if v & !Self::mask6(len) != 0 {
                    let net = Ipv6Addr::from(v & Self::mask6(len));
                    return Err(format!("host bits are set; did you mean {net}/{len}?"));
                }
                Ok(Self::V6(v, len))
            }
        }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::V4(n, l), IpAddr::V4(a)) => u32::from(a) & Self::mask4(*l) == *n,
            (Self::V6(n, l), IpAddr::V6(a)) => u128::from(a) & Self::mask6(*l) == *n,
            _ => false,
        }
    }

    fn contains_v4(&self, a: [u8; 4]) -> bool {
        self.contains(IpAddr::V4(Ipv4Addr::from(a)))
    }

    fn contains_v6(&self, a: [u8; 16]) -> bool {
        self.contains(IpAddr::V6(Ipv6Addr::from(a)))
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(a, l) => write!(f, "{}/{l}", Ipv4Addr::from(*a)),
            Self::V6(a, l) => write!(f, "{}/{l}", Ipv6Addr::from(*a)),
        }
    }
}

/// One synthesis prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    pub(crate) bytes: [u8; 16],
    pub(crate) len: u8,
    pub(crate) well_known: bool,
}

// The only calls into `translator_common::rfc6052` (bytes here, host-order integers there).
impl Prefix {
    /// `v4` embedded in this prefix.
    pub(crate) fn embed(&self, v4: [u8; 4]) -> [u8; 16] {
        rfc6052::embed(
            u128::from_be_bytes(self.bytes),
            self.len,
            u32::from_be_bytes(v4),
        )
        .to_be_bytes()
    }
    /// The IPv4 address embedded in `addr`, if `addr` is inside this prefix.
    pub(crate) fn extract(&self, addr: [u8; 16]) -> Option<[u8; 4]> {
        let a = u128::from_be_bytes(addr);
        let p = u128::from_be_bytes(self.bytes);
        (a & rfc6052::mask(self.len) == p).then(|| rfc6052::extract(a, self.len).to_be_bytes())
    }
}

fn is_global(v4: [u8; 4]) -> bool {
    rfc6052::is_global(u32::from_be_bytes(v4))
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv6Addr::from(self.bytes), self.len)
    }
}

/// A checked `[dns64]` configuration, ready for [`super::serve`].
#[derive(Debug, Clone)]
pub struct ValidDns64 {
    pub(crate) enabled: bool,
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) upstreams: Vec<SocketAddr>,
    pub(crate) allowed_clients: Vec<Net>,
    pub(crate) prefixes: Vec<Prefix>,
    pub(crate) exclude: Vec<Net>,
    pub(crate) never_map: Vec<Net>,
    pub(crate) allow_non_global: bool,
    pub(crate) break_dnssec: bool,
    pub(crate) upstream_timeout: Duration,
    pub(crate) tcp_idle_timeout: Duration,
    pub(crate) cache_size: usize,
    pub(crate) cache_max_ttl: u32,
    pub(crate) max_udp_payload: u16,
}

impl ValidDns64 {
    /// Whether the server should run.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// The listen addresses (UDP and TCP).
    pub fn listen(&self) -> &[SocketAddr] {
        &self.listen
    }
    /// The upstream resolvers in fail-over order.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }
    /// The synthesis prefixes as `(prefix, length)`, the NAT64 prefix first.
    pub fn prefixes(&self) -> Vec<(Ipv6Addr, u8)> {
        self.prefixes
            .iter()
            .map(|p| (Ipv6Addr::from(p.bytes), p.len))
            .collect()
    }
    /// The client networks served.
    pub fn allowed_clients(&self) -> &[Net] {
        &self.allowed_clients
    }

    /// Whether a client address may use the server.
    /// IPv4-mapped IPv6 sources (dual-stack sockets) count as IPv4.
    pub(crate) fn client_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allowed_clients.iter().any(|n| n.contains(ip))
    }

    /// Whether an AAAA address is in an excluded range.
    pub(crate) fn excluded(&self, a: [u8; 16]) -> bool {
        self.exclude.iter().any(|n| n.contains_v6(a))
    }

    /// Whether `v4` may be mapped into `p`.
    pub(crate) fn mappable(&self, p: &Prefix, v4: [u8; 4]) -> bool {
        if self.never_map.iter().any(|n| n.contains_v4(v4)) {
            return false;
        }
        !(p.well_known && !self.allow_non_global && !is_global(v4))
    }
}

fn parse_socket(setting: &'static str, s: &str) -> Result<SocketAddr, Dns64ConfigError> {
    let t = s.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(Dns64ConfigError::Invalid {
        setting,
        value: s.to_owned(),
        reason: "expected an IP address with an optional port, e.g. \"192.0.2.53\", \
                 \"192.0.2.53:5353\" or \"[2001:db8::53]:53\""
            .to_owned(),
    })
}

fn parse_nets(setting: &'static str, list: &[String]) -> Result<Vec<Net>, Dns64ConfigError> {
    list.iter()
        .map(|s| {
            Net::parse(s).map_err(|reason| Dns64ConfigError::Invalid {
                setting,
                value: s.clone(),
                reason,
            })
        })
        .collect()
}

fn check_prefix(
    setting: &'static str,
    value: String,
    bytes: [u8; 16],
    len: u8,
) -> Result<Prefix, Dns64ConfigError> {
    rfc6052::check_prefix(u128::from_be_bytes(bytes), len).map_err(|e| {
        let reason = match e {
            PrefixError::Length => "the prefix length must be 32, 40, 48, 56, 64 or 96 (RFC 6052)",
            PrefixError::UOctet => "bits 64..71 (the u octet) must be zero (RFC 6052)",
            PrefixError::HostBits => "bits after the prefix length must be zero",
        };
        Dns64ConfigError::Invalid {
            setting,
            value: value.clone(),
            reason: reason.to_owned(),
        }
    })?;
    Ok(Prefix {
        bytes,
        len,
        well_known: rfc6052::is_well_known(u128::from_be_bytes(bytes), len),
    })
}

impl Dns64Config {
    /// Checks every setting. `nat64_prefix` is the gateway's NAT64 prefix (always used for
    /// synthesis, first); `nat64_clients` are the gateway's client networks, the default for
    /// `allowed_clients`.
    pub fn validate(
        &self,
        nat64_prefix: (Ipv6Addr, u8),
        nat64_clients: &[(IpAddr, u8)],
    ) -> Result<ValidDns64, Dns64ConfigError> {
        let listen = self
            .listen
            .iter()
            .map(|s| parse_socket("listen", s))
            .collect::<Result<Vec<_>, _>>()?;
        if self.enabled && listen.is_empty() {
            return Err(Dns64ConfigError::Missing {
                setting: "listen",
                reason: "at least one address is needed, e.g. listen = [\"[::]:53\"]".to_owned(),
            });
        }
        let upstreams = self
            .upstreams
            .iter()
            .map(|s| parse_socket("upstreams", s))
            .collect::<Result<Vec<_>, _>>()?;
        if self.enabled && upstreams.is_empty() {
            return Err(Dns64ConfigError::Missing {
                setting: "upstreams",
                reason: "at least one upstream resolver is needed when dns64.enabled = true, \
                         e.g. upstreams = [\"192.0.2.53\", \"[2001:db8::53]:53\"]"
                    .to_owned(),
            });
        }
        let allowed_clients = match &self.allowed_clients {
            Some(list) => parse_nets("allowed_clients", list)?,
            None => nat64_clients
                .iter()
                .map(|(a, l)| {
                    let s = format!("{a}/{l}");
                    Net::parse(&s).map_err(|reason| Dns64ConfigError::Invalid {
                        setting: "allowed_clients",
                        value: s.clone(),
                        reason: format!("the NAT64 client network used as default: {reason}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if self.enabled && allowed_clients.is_empty() {
            return Err(Dns64ConfigError::Missing {
                setting: "allowed_clients",
                reason: "no client network would be served; list them, e.g. \
                         allowed_clients = [\"2001:db8:1::/48\"]"
                    .to_owned(),
            });
        }
        let (p, l) = nat64_prefix;
        let mut prefixes = vec![check_prefix(
            "prefixes",
            format!("{p}/{l} (the NAT64 prefix)"),
            p.octets(),
            l,
        )?];
        for s in &self.prefixes {
            let addr_part = s.split('/').next().unwrap_or_default();
            if addr_part.parse::<Ipv4Addr>().is_ok() {
                return Err(Dns64ConfigError::Invalid {
                    setting: "prefixes",
                    value: s.clone(),
                    reason: "expected an IPv6 prefix such as 64:ff9b::/96".to_owned(),
                });
            }
            let net = Net::parse(s).map_err(|reason| Dns64ConfigError::Invalid {
                setting: "prefixes",
                value: s.clone(),
                reason,
            })?;
            let Net::V6(v, len) = net else {
                return Err(Dns64ConfigError::Invalid {
                    setting: "prefixes",
                    value: s.clone(),
                    reason: "expected an IPv6 prefix such as 64:ff9b::/96".to_owned(),
                });
            };
            let pre = check_prefix("prefixes", s.clone(), v.to_be_bytes(), len)?;
            if !prefixes.contains(&pre) {
                prefixes.push(pre);
            }
        }
        let exclude = parse_nets("exclude", &self.exclude)?;
        if let Some(i) = exclude.iter().position(|n| matches!(n, Net::V4(..))) {
            return Err(Dns64ConfigError::Invalid {
                setting: "exclude",
                value: self.exclude[i].clone(),
                reason: "expected an IPv6 range such as ::ffff:0:0/96".to_owned(),
            });
        }
        let never_map = parse_nets("never_map", &self.never_map)?;
        if let Some(i) = never_map.iter().position(|n| matches!(n, Net::V6(..))) {
            return Err(Dns64ConfigError::Invalid {
                setting: "never_map",
                value: self.never_map[i].clone(),
                reason: "expected an IPv4 range such as 10.0.0.0/8".to_owned(),
            });
        }
        if self.upstream_timeout_ms == 0 || self.upstream_timeout_ms > 60_000 {
            return Err(Dns64ConfigError::Invalid {
                setting: "upstream_timeout_ms",
                value: self.upstream_timeout_ms.to_string(),
                reason: "must be 1..=60000".to_owned(),
            });
        }
        if self.tcp_idle_timeout_ms == 0 || self.tcp_idle_timeout_ms > 600_000 {
            return Err(Dns64ConfigError::Invalid {
                setting: "tcp_idle_timeout_ms",
                value: self.tcp_idle_timeout_ms.to_string(),
                reason: "must be 1..=600000".to_owned(),
            });
        }
        if self.cache_size > 16_777_216 {
            return Err(Dns64ConfigError::Invalid {
                setting: "cache_size",
                value: self.cache_size.to_string(),
                reason: "must be 0..=16777216 entries".to_owned(),
            });
        }
        if !(512..=4096).contains(&self.max_udp_payload) {
            return Err(Dns64ConfigError::Invalid {
                setting: "max_udp_payload",
                value: self.max_udp_payload.to_string(),
                reason: "must be 512..=4096 bytes (1232 avoids fragmentation)".to_owned(),
            });
        }
        Ok(ValidDns64 {
            enabled: self.enabled,
            listen,
            upstreams,
            allowed_clients,
            prefixes,
            exclude,
            never_map,
            allow_non_global: self.allow_non_global,
            break_dnssec: self.break_dnssec,
            upstream_timeout: Duration::from_millis(self.upstream_timeout_ms),
            tcp_idle_timeout: Duration::from_millis(self.tcp_idle_timeout_ms),
            cache_size: self.cache_size,
            cache_max_ttl: self.cache_max_ttl,
            max_udp_payload: self.max_udp_payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat64() -> (Ipv6Addr, u8) {
        ("2001:db8:64::".parse().expect("addr"), 96)
    }

    fn enabled() -> Dns64Config {
        Dns64Config {
            enabled: true,
            upstreams: vec!["127.0.0.1".into()],
            allowed_clients: Some(vec!["127.0.0.0/8".into()]),
            ..Dns64Config::default()
        }
    }

    #[test]
    fn defaults_validate() {
        let v = Dns64Config::default()
            .validate(nat64(), &[])
            .expect("disabled default is valid");
        assert!(!v.enabled());
        assert_eq!(v.prefixes(), vec![nat64()]);
        let v = enabled().validate(nat64(), &[]).expect("valid");
        assert_eq!(
            v.upstreams(),
            &["127.0.0.1:53".parse::<SocketAddr>().expect("addr")]
        );
        assert!(v.client_allowed("127.0.0.9".parse().expect("ip")));
        assert!(v.client_allowed("::ffff:127.0.0.9".parse().expect("ip")));
        assert!(!v.client_allowed("10.0.0.1".parse().expect("ip")));
        assert!(v.excluded("::ffff:1.2.3.4".parse::<Ipv6Addr>().expect("ip").octets()));
    }

    #[test]
    fn default_clients_are_the_nat64_clients() {
        let mut c = enabled();
        c.allowed_clients = None;
        let clients = [("2001:db8:1::".parse().expect("ip"), 48)];
        let v = c.validate(nat64(), &clients).expect("valid");
        assert!(v.client_allowed("2001:db8:1::5".parse().expect("ip")));
        assert!(!v.client_allowed("2001:db8:2::5".parse().expect("ip")));
        let e = c.validate(nat64(), &[]).expect_err("no clients");
        assert!(e.to_string().starts_with("dns64.allowed_clients:"), "{e}");
    }

    #[test]
    fn errors_name_the_setting() {
        type Edit = Box<dyn Fn(&mut Dns64Config)>;
        let cases: [(&str, Edit); 9] = [
            ("dns64.upstreams:", Box::new(|c| c.upstreams.clear())),
            (
                "dns64.upstreams:",
                Box::new(|c| c.upstreams = vec!["resolver.example".into()]),
            ),
            (
                "dns64.listen:",
                Box::new(|c| c.listen = vec!["[::]:99999".into()]),
            ),
            (
                "dns64.allowed_clients:",
                Box::new(|c| c.allowed_clients = Some(vec!["10.0.0.1/8".into()])),
            ),
            (
                "dns64.prefixes:",
                Box::new(|c| c.prefixes = vec!["2001:db8::/33".into()]),
            ),
            (
                "dns64.prefixes:",
                Box::new(|c| c.prefixes = vec!["10.0.0.0/8".into()]),
            ),
            (
                "dns64.exclude:",
                Box::new(|c| c.exclude = vec!["10.0.0.0/8".into()]),
            ),
            (
                "dns64.never_map:",
                Box::new(|c| c.never_map = vec!["::/0".into()]),
            ),
            (
                "dns64.max_udp_payload:",
                Box::new(|c| c.max_udp_payload = 100),
            ),
        ];
        for (want, f) in cases {
            let mut c = enabled();
            f(&mut c);
            let e = c.validate(nat64(), &[]).expect_err(want);
            assert!(e.to_string().starts_with(want), "{e}");
        }
        let e = enabled()
            .validate(("2001:db8::1".parse().expect("ip"), 96), &[])
            .expect_err("bad nat64 prefix");
        assert!(e.to_string().contains("must be zero"), "{e}");
    }

    #[test]
    fn mapping_rules() {
        let mut c = enabled();
        c.prefixes = vec!["64:ff9b::/96".into()];
        c.never_map = vec!["198.51.100.0/24".into()];
        let v = c.validate(nat64(), &[]).expect("valid");
        let (own, wkp) = (v.prefixes[0], v.prefixes[1]);
        assert!(wkp.well_known && !own.well_known);
        assert!(v.mappable(&own, [10, 1, 2, 3]));
        assert!(!v.mappable(&wkp, [10, 1, 2, 3]));
        assert!(v.mappable(&wkp, [1, 2, 3, 4]));
        assert!(!v.mappable(&own, [198, 51, 100, 7]));
    }
}
