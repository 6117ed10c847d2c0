//! The `[ra]` table of the controller's TOML file and its validation into [`ValidRa`].
//!
//! Every number is read as a TOML integer (`i64`) and checked here, so that a negative or too
//! large value gets a message that names the setting and the valid range instead of a serde
//! type error.

use std::net::{Ipv6Addr, SocketAddr};

use super::rdnss::{MAX_SERVERS, RdnssSource, is_link_local};
use std::time::Duration;

use serde::Deserialize;

/// MaxRtrAdvInterval bounds (RFC 4861 section 6.2.1), seconds.
pub const MAX_INTERVAL_RANGE: (i64, i64) = (4, 1800);
/// The lowest MinRtrAdvInterval (RFC 4861 section 6.2.1), seconds.
pub const MIN_INTERVAL_FLOOR: i64 = 3;
/// The longest router lifetime (RFC 4861 section 6.2.1), seconds.
pub const MAX_ROUTER_LIFETIME: i64 = 9000;
/// The longest PREF64 lifetime: 8191 units of 8 s (RFC 8781 section 4).
pub const MAX_PREF64_LIFETIME: i64 = 65528;
/// Prefixes, RDNSS addresses and search domains one advertisement carries at most (our limit,
/// which keeps every advertisement far below the 1280-byte IPv6 minimum MTU).
pub const MAX_ENTRIES: usize = 8;
/// The longest search list, encoded (our limit, for the same reason).
pub const MAX_DNSSL_BYTES: usize = 512;

/// The `[ra]` table as written. Every field has a default; `enabled` is false by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaConfig {
    /// Send router advertisements on `interfaces.ipv6` and answer solicitations. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// MaxRtrAdvInterval in seconds, 4..=1800. Default 600.
    #[serde(default = "default_max_interval")]
    pub max_interval: i64,
    /// MinRtrAdvInterval in seconds, 3..=0.75 x max_interval. Default 0.33 x max_interval
    /// (at least 3 s).
    #[serde(default)]
    pub min_interval: Option<i64>,
    /// Cur Hop Limit advertised to hosts, 0..=255 (0: unspecified). Default 64.
    #[serde(default = "default_hop_limit")]
    pub hop_limit: i64,
    /// The M flag (addresses from DHCPv6). Default false.
    #[serde(default)]
    pub managed: bool,
    /// The O flag (other configuration from DHCPv6). Default false.
    #[serde(default)]
    pub other_config: bool,
    /// Router lifetime in seconds: 0 (not a default router, options only) or
    /// max_interval..=9000. Default 3 x max_interval.
    #[serde(default)]
    pub router_lifetime: Option<i64>,
    /// The MTU option (type 5), 1280..=65535. Default: none.
    #[serde(default)]
    pub mtu: Option<i64>,
    /// Prefixes announced for SLAAC (prefix information with the L and A flags), each a /64
    /// inside `nat64.clients`. Default: none.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Valid lifetime of the prefixes in seconds (4294967295: infinity). Default 2592000.
    #[serde(default = "default_valid_lifetime")]
    pub valid_lifetime: i64,
    /// Preferred lifetime of the prefixes in seconds, at most valid_lifetime. Default 604800.
    #[serde(default = "default_preferred_lifetime")]
    pub preferred_lifetime: i64,
    /// RDNSS addresses. Default (absent): the DNS64 listen addresses on interfaces.ipv6
    /// (see [`RdnssSource`]); `[]` sends no RDNSS option.
    #[serde(default)]
    pub rdnss: Option<Vec<String>>,
    /// RDNSS lifetime in seconds, max_interval..=4294967295. Default 3 x max_interval.
    #[serde(default)]
    pub rdnss_lifetime: Option<i64>,
    /// Search domains (DNSSL, RFC 8106). Default: none.
    #[serde(default)]
    pub dnssl: Vec<String>,
    /// DNSSL lifetime in seconds, max_interval..=4294967295. Default 3 x max_interval.
    #[serde(default)]
    pub dnssl_lifetime: Option<i64>,
    /// PREF64 lifetime in seconds, max_interval..=65528, sent rounded up to a multiple of 8.
    /// Default 3 x max_interval (rounded up, at most 65528).
    #[serde(default)]
    pub pref64_lifetime: Option<i64>,
}

fn default_max_interval() -> i64 {
    600
}
fn default_hop_limit() -> i64 {
    64
}
fn default_valid_lifetime() -> i64 {
    2_592_000
}
fn default_preferred_lifetime() -> i64 {
    604_800
}

impl Default for RaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_interval: default_max_interval(),
            min_interval: None,
            hop_limit: default_hop_limit(),
            managed: false,
            other_config: false,
            router_lifetime: None,
            mtu: None,
            prefixes: Vec::new(),
            valid_lifetime: default_valid_lifetime(),
            preferred_lifetime: default_preferred_lifetime(),
            rdnss: None,
            rdnss_lifetime: None,
            dnssl: Vec::new(),
            dnssl_lifetime: None,
            pref64_lifetime: None,
        }
    }
}

/// An `[ra]` setting that is not valid: the setting (without the `ra.` table name) and what
/// would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ra.{setting}: {message}")]
pub struct RaConfigError {
    /// The key inside `[ra]`, e.g. `max_interval` or `prefixes[1]`.
    pub setting: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

fn bad(setting: impl Into<String>, message: impl Into<String>) -> RaConfigError {
    RaConfigError {
        setting: setting.into(),
        message: message.into(),
    }
}

/// A checked `[ra]` table, ready for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRa {
    /// Whether to advertise at all.
    pub enabled: bool,
    /// `interfaces.ipv6`: the link advertised on.
    pub interface: String,
    pub max_interval: Duration,
    pub min_interval: Duration,
    pub hop_limit: u8,
    pub managed: bool,
    pub other_config: bool,
    /// Seconds.
    pub router_lifetime: u16,
    pub mtu: Option<u32>,
    /// /64 prefixes announced with L and A.
    pub prefixes: Vec<Ipv6Addr>,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub rdnss: RdnssSource,
    pub rdnss_lifetime: u32,
    /// Search domains, without a trailing dot.
    pub dnssl: Vec<String>,
    pub dnssl_lifetime: u32,
    /// `nat64.prefix`, the prefix the data plane translates with.
    pub pref64: (Ipv6Addr, u8),
    /// Seconds, a multiple of 8.
    pub pref64_lifetime: u16,
}

/// What the rest of the configuration contributes to `[ra]`.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// `interfaces.ipv6`.
    pub interface: &'a str,
    /// `nat64.prefix`.
    pub nat64_prefix: (Ipv6Addr, u8),
    /// `nat64.clients`.
    pub clients: &'a [(Ipv6Addr, u8)],
    /// `dns64.listen` when DNS64 is enabled.
    pub dns64_listen: Option<&'a [SocketAddr]>,
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

fn in_prefix(a: Ipv6Addr, p: (Ipv6Addr, u8)) -> bool {
    u128::from(a) & mask(p.1) == u128::from(p.0) & mask(p.1)
}

/// `value` as seconds within `lo..=hi`, or an error in the house style.
fn seconds(setting: &str, value: i64, lo: i64, hi: i64, why: &str) -> Result<u32, RaConfigError> {
    if value < lo || value > hi {
        return Err(bad(
            setting,
            format!("{value} is outside {lo}..{hi} seconds{why}"),
        ));
    }
    u32::try_from(value).map_err(|_| bad(setting, format!("{value} does not fit in 32 bits")))
}

/// Checks one search domain; returns it without a trailing dot.
fn domain(setting: &str, name: &str) -> Result<String, RaConfigError> {
    let n = name.strip_suffix('.').unwrap_or(name);
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if n.is_empty() || n.len() > 253 || !n.split('.').all(valid_label) {
        return Err(bad(
            setting,
            format!(
                "{name:?} is not a domain name (labels of 1 to 63 letters, digits, '-' or '_', \
                 253 characters at most), e.g. \"example.net\""
            ),
        ));
    }
    Ok(n.to_ascii_lowercase())
}

impl RaConfig {
    /// Checks every setting (also when `enabled` is false, so that `translator check` finds
    /// mistakes before the table is switched on).
    pub fn validate(&self, ctx: &Context<'_>) -> Result<ValidRa, RaConfigError> {
        let (lo, hi) = MAX_INTERVAL_RANGE;
        let max_s = seconds(
            "max_interval",
            self.max_interval,
            lo,
            hi,
            " (RFC 4861 MaxRtrAdvInterval)",
        )?;
        let max_interval = Duration::from_secs(u64::from(max_s));
        let min_interval = match self.min_interval {
            Some(m) => {
                // 0.75 x max, rounded down to whole seconds.
                let top = i64::from(max_s) * 3 / 4;
                if m < MIN_INTERVAL_FLOOR || m > top {
                    return Err(bad(
                        "min_interval",
                        format!(
                            "{m} is outside {MIN_INTERVAL_FLOOR}..{top} seconds (RFC 4861: at \
                             least 3 and at most 0.75 x max_interval = {max_s})"
                        ),
                    ));
                }
                Duration::from_secs(m.unsigned_abs())
            }
            None => {
                // 0.33 x max, but never below 3 s (and 0.75 x max is at least 3 s).
                let ms = u64::from(max_s) * 330;
                Duration::from_millis(ms.max(MIN_INTERVAL_FLOOR.unsigned_abs() * 1000))
            }
        };
        let hop_limit = u8::try_from(self.hop_limit).map_err(|_| {
            bad(
                "hop_limit",
                format!("{} is outside 0..255 (0: unspecified)", self.hop_limit),
            )
        })?;
        let three_max = i64::from(max_s) * 3;
        let router_lifetime = match self.router_lifetime {
            None => three_max.min(MAX_ROUTER_LIFETIME),
            Some(0) => 0,
            Some(r) => {
                if r < i64::from(max_s) || r > MAX_ROUTER_LIFETIME {
                    return Err(bad(
                        "router_lifetime",
                        format!(
                            "{r} is neither 0 (not a default router) nor within \
                             {max_s}..{MAX_ROUTER_LIFETIME} seconds (max_interval..9000)"
                        ),
                    ));
                }
                r
            }
        };
        let router_lifetime = u16::try_from(router_lifetime)
            .map_err(|_| bad("router_lifetime", format!("{router_lifetime} is too large")))?;
        let mtu = match self.mtu {
            None => None,
            Some(m) if (1280..=65535).contains(&m) => Some(m.unsigned_abs() as u32),
            Some(m) => {
                return Err(bad(
                    "mtu",
                    format!("{m} is outside 1280..65535 (1280 is the IPv6 minimum)"),
                ));
            }
        };

        let mut prefixes: Vec<Ipv6Addr> = Vec::new();
        if self.prefixes.len() > MAX_ENTRIES {
            return Err(bad(
                "prefixes",
                format!("{} prefixes; at most {MAX_ENTRIES}", self.prefixes.len()),
            ));
        }
        for (i, p) in self.prefixes.iter().enumerate() {
            let setting = format!("prefixes[{i}]");
            let (a, l) = p.split_once('/').unwrap_or((p, "128"));
            let addr: Ipv6Addr = a.trim().parse().map_err(|_| {
                bad(
                    &setting,
                    format!("{p:?} is not an IPv6 prefix like \"2001:db8:1::/64\""),
                )
            })?;
            if l.trim() != "64" {
                return Err(bad(
                    &setting,
                    format!(
                        "{p:?} is not a /64: SLAAC (the A flag) forms addresses from a /64 \
                         (RFC 4862, RFC 2464)"
                    ),
                ));
            }
            if u128::from(addr) & !mask(64) != 0 {
                return Err(bad(
                    &setting,
                    format!("{p:?}: bits after the prefix length must be zero"),
                ));
            }
            if is_link_local(addr) || addr.is_multicast() || u128::from(addr) >> 64 == 0 {
                return Err(bad(
                    &setting,
                    format!("{p:?} is not a unicast prefix hosts can take addresses from"),
                ));
            }
            if in_prefix(addr, ctx.nat64_prefix) || in_prefix(ctx.nat64_prefix.0, (addr, 64)) {
                return Err(bad(
                    &setting,
                    format!(
                        "{p:?} overlaps the NAT64 prefix {}/{}",
                        ctx.nat64_prefix.0, ctx.nat64_prefix.1
                    ),
                ));
            }
            if !ctx.clients.iter().any(|c| in_prefix(addr, *c) && c.1 <= 64) {
                let clients: Vec<String> = ctx
                    .clients
                    .iter()
                    .map(|(a, l)| format!("{a}/{l}"))
                    .collect();
                return Err(bad(
                    &setting,
                    format!(
                        "{p:?} is not inside nat64.clients ({}): hosts that take an address \
                         from it could not use the gateway",
                        clients.join(", ")
                    ),
                ));
            }
            if prefixes.contains(&addr) {
                return Err(bad(&setting, format!("{p:?} is listed twice")));
            }
            prefixes.push(addr);
        }
        let valid_lifetime = seconds(
            "valid_lifetime",
            self.valid_lifetime,
            0,
            i64::from(u32::MAX),
            " (4294967295: infinity)",
        )?;
        let preferred_lifetime = seconds(
            "preferred_lifetime",
            self.preferred_lifetime,
            0,
            i64::from(u32::MAX),
            "",
        )?;
        if preferred_lifetime > valid_lifetime {
            return Err(bad(
                "preferred_lifetime",
                format!(
                    "{preferred_lifetime} is longer than ra.valid_lifetime = {valid_lifetime} \
                     (RFC 4861: at most the valid lifetime)"
                ),
            ));
        }

        let dns_lifetime = |setting: &str, v: Option<i64>| match v {
            None => u32::try_from(three_max).map_err(|_| bad(setting, "too large")),
            Some(v) => seconds(
                setting,
                v,
                i64::from(max_s),
                i64::from(u32::MAX),
                " (RFC 8106: at least max_interval; 4294967295: infinity)",
            ),
        };
        let rdnss_lifetime = dns_lifetime("rdnss_lifetime", self.rdnss_lifetime)?;
        let dnssl_lifetime = dns_lifetime("dnssl_lifetime", self.dnssl_lifetime)?;

        let rdnss = match &self.rdnss {
            Some(list) => {
                if list.len() > MAX_SERVERS {
                    return Err(bad(
                        "rdnss",
                        format!("{} addresses; at most {MAX_SERVERS}", list.len()),
                    ));
                }
                let mut out = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    let a: Ipv6Addr = s.trim().parse().map_err(|_| {
                        bad(
                            format!("rdnss[{i}]"),
                            format!("{s:?} is not an IPv6 address (RDNSS has no port)"),
                        )
                    })?;
                    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                        return Err(bad(
                            format!("rdnss[{i}]"),
                            format!("{s:?} is not a unicast address hosts can send queries to"),
                        ));
                    }
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                RdnssSource::Explicit(out)
            }
            None => match ctx.dns64_listen {
                Some(listen) => RdnssSource::Dns64(listen.to_vec()),
                None => RdnssSource::None,
            },
        };

        if self.dnssl.len() > MAX_ENTRIES {
            return Err(bad(
                "dnssl",
                format!("{} domains; at most {MAX_ENTRIES}", self.dnssl.len()),
            ));
        }
        let mut dnssl = Vec::new();
        for (i, d) in self.dnssl.iter().enumerate() {
            let d = domain(&format!("dnssl[{i}]"), d)?;
            if !dnssl.contains(&d) {
                dnssl.push(d);
            }
        }
        let encoded: usize = dnssl.iter().map(|d| d.len() + 2).sum();
        if encoded > MAX_DNSSL_BYTES {
            return Err(bad(
                "dnssl",
                format!("the names take {encoded} bytes encoded; at most {MAX_DNSSL_BYTES}"),
            ));
        }

        let pref64_lifetime = match self.pref64_lifetime {
            None => round_up_8(three_max).min(MAX_PREF64_LIFETIME),
            Some(v) => {
                if v < i64::from(max_s) || v > MAX_PREF64_LIFETIME {
                    return Err(bad(
                        "pref64_lifetime",
                        format!(
                            "{v} is outside {max_s}..{MAX_PREF64_LIFETIME} seconds (RFC 8781: at \
                             least max_interval, at most 8191 units of 8 s)"
                        ),
                    ));
                }
                round_up_8(v)
            }
        };
        let pref64_lifetime = u16::try_from(pref64_lifetime)
            .map_err(|_| bad("pref64_lifetime", format!("{pref64_lifetime} is too large")))?;

        Ok(ValidRa {
            enabled: self.enabled,
            interface: ctx.interface.to_owned(),
            max_interval,
            min_interval,
            hop_limit,
            managed: self.managed,
            other_config: self.other_config,
            router_lifetime,
            mtu,
            prefixes,
            valid_lifetime,
            preferred_lifetime,
            rdnss,
            rdnss_lifetime,
            dnssl,
            dnssl_lifetime,
            pref64: ctx.nat64_prefix,
            pref64_lifetime,
        })
    }
}

/// `v` rounded up to a multiple of 8 (RFC 8781 section 4: routers round up).
fn round_up_8(v: i64) -> i64 {
    (v + 7) / 8 * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(clients: &'a [(Ipv6Addr, u8)], listen: Option<&'a [SocketAddr]>) -> Context<'a> {
        Context {
            interface: "eth0",
            nat64_prefix: (ip("2001:db8:64::"), 96),
            clients,
            dns64_listen: listen,
        }
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    const CLIENTS: &[(Ipv6Addr, u8)] = &[(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 48)];

    #[test]
    fn defaults() {
        let v = RaConfig::default()
            .validate(&ctx(CLIENTS, None))
            .expect("defaults are valid");
        assert!(!v.enabled);
        assert_eq!(v.max_interval, Duration::from_secs(600));
        assert_eq!(v.min_interval, Duration::from_secs(198));
        assert_eq!(v.hop_limit, 64);
        assert_eq!(v.router_lifetime, 1800);
        assert_eq!(
            (v.valid_lifetime, v.preferred_lifetime),
            (2_592_000, 604_800)
        );
        assert_eq!((v.rdnss_lifetime, v.dnssl_lifetime), (1800, 1800));
        assert_eq!(v.pref64, (ip("2001:db8:64::"), 96));
        assert_eq!(v.pref64_lifetime, 1800);
        assert_eq!(v.rdnss, RdnssSource::None);
        assert_eq!(v.mtu, None);
    }

    #[test]
    fn derived_values_follow_max_interval() {
        for (max, min_ms, life, pref64) in [
            (4, 3000, 12, 16),
            (9, 3000, 27, 32),
            (10, 3300, 30, 32),
            (1800, 594_000, 5400, 5400),
        ] {
            let c = RaConfig {
                max_interval: max,
                ..RaConfig::default()
            };
            let v = c.validate(&ctx(CLIENTS, None)).expect("valid");
            assert_eq!(v.min_interval, Duration::from_millis(min_ms), "max {max}");
            assert_eq!(u32::from(v.router_lifetime), life, "max {max}");
            assert_eq!(v.rdnss_lifetime, life, "max {max}");
            assert_eq!(v.pref64_lifetime, pref64, "max {max}");
        }
        // Rounded up to 8 s units, as RFC 8781 asks.
        let c = RaConfig {
            pref64_lifetime: Some(1001),
            ..RaConfig::default()
        };
        assert_eq!(
            c.validate(&ctx(CLIENTS, None))
                .expect("valid")
                .pref64_lifetime,
            1008
        );
        let c = RaConfig {
            router_lifetime: Some(0),
            ..RaConfig::default()
        };
        assert_eq!(
            c.validate(&ctx(CLIENTS, None))
                .expect("valid")
                .router_lifetime,
            0
        );
    }

    #[test]
    fn errors_name_the_setting_and_the_range() {
        type Edit = fn(&mut RaConfig);
        let cases: &[(Edit, &str)] = &[
            (
                |c| c.max_interval = 2000,
                "ra.max_interval: 2000 is outside 4..1800 seconds",
            ),
            (
                |c| c.max_interval = 3,
                "ra.max_interval: 3 is outside 4..1800",
            ),
            (
                |c| c.min_interval = Some(2),
                "ra.min_interval: 2 is outside 3..450 seconds",
            ),
            (
                |c| c.min_interval = Some(451),
                "ra.min_interval: 451 is outside 3..450 seconds",
            ),
            (|c| c.hop_limit = 256, "ra.hop_limit: 256 is outside 0..255"),
            (|c| c.hop_limit = -1, "ra.hop_limit: -1 is outside 0..255"),
            (
                |c| c.router_lifetime = Some(100),
                "ra.router_lifetime: 100 is neither 0",
            ),
            (
                |c| c.router_lifetime = Some(9001),
                "ra.router_lifetime: 9001 is neither 0 (not a default router) nor within 600..9000",
            ),
            (
                |c| c.mtu = Some(1000),
                "ra.mtu: 1000 is outside 1280..65535",
            ),
            (
                |c| c.prefixes = vec!["2001:db8:1::/48".into()],
                "ra.prefixes[0]: \"2001:db8:1::/48\" is not a /64",
            ),
            (
                |c| c.prefixes = vec!["2001:db8:1::1/64".into()],
                "ra.prefixes[0]: \"2001:db8:1::1/64\": bits after the prefix length",
            ),
            (
                |c| c.prefixes = vec!["2001:db8:2::/64".into()],
                "ra.prefixes[0]: \"2001:db8:2::/64\" is not inside nat64.clients (2001:db8:1::/48)",
            ),
            (
                |c| c.prefixes = vec!["fe80::/64".into()],
                "ra.prefixes[0]: \"fe80::/64\" is not a unicast prefix",
            ),
            (
                |c| c.prefixes = vec!["nonsense".into()],
                "ra.prefixes[0]: \"nonsense\" is not an IPv6 prefix",
            ),
            (
                |c| c.prefixes = vec!["2001:db8:1::/64".into(), "2001:db8:1::/64".into()],
                "ra.prefixes[1]: \"2001:db8:1::/64\" is listed twice",
            ),
            (
                |c| c.valid_lifetime = -5,
                "ra.valid_lifetime: -5 is outside 0..4294967295",
            ),
            (
                |c| c.preferred_lifetime = 3_000_000,
                "ra.preferred_lifetime: 3000000 is longer than ra.valid_lifetime = 2592000",
            ),
            (
                |c| c.rdnss = Some(vec!["192.0.2.1".into()]),
                "ra.rdnss[0]: \"192.0.2.1\" is not an IPv6 address",
            ),
            (
                |c| c.rdnss = Some(vec!["ff02::1".into()]),
                "ra.rdnss[0]: \"ff02::1\" is not a unicast address",
            ),
            (
                |c| c.rdnss_lifetime = Some(10),
                "ra.rdnss_lifetime: 10 is outside 600..4294967295 seconds (RFC 8106",
            ),
            (
                |c| c.dnssl_lifetime = Some(0),
                "ra.dnssl_lifetime: 0 is outside 600..4294967295",
            ),
            (
                |c| c.dnssl = vec!["bad domain".into()],
                "ra.dnssl[0]: \"bad domain\" is not a domain name",
            ),
            (
                |c| c.dnssl = vec!["a..b".into()],
                "ra.dnssl[0]: \"a..b\" is not a domain name",
            ),
            (
                |c| c.pref64_lifetime = Some(599),
                "ra.pref64_lifetime: 599 is outside 600..65528 seconds",
            ),
            (
                |c| c.pref64_lifetime = Some(65529),
                "ra.pref64_lifetime: 65529 is outside 600..65528",
            ),
        ];
        for (edit, want) in cases {
            let mut c = RaConfig::default();
            edit(&mut c);
            let e = c.validate(&ctx(CLIENTS, None)).expect_err(want);
            assert!(
                e.to_string().starts_with(want),
                "{e} should start with {want}"
            );
        }
    }

    #[test]
    fn prefixes_must_not_overlap_the_nat64_prefix() {
        let clients = [(ip("2001:db8::"), 32)];
        let c = RaConfig {
            prefixes: vec!["2001:db8:64::/64".into()],
            ..RaConfig::default()
        };
        let e = c.validate(&ctx(&clients, None)).expect_err("overlap");
        assert!(e.to_string().contains("overlaps the NAT64 prefix"), "{e}");
    }

    #[test]
    fn rdnss_source_follows_ra_rdnss_and_dns64() {
        let listen: Vec<SocketAddr> = vec!["[::]:53".parse().expect("literal")];
        let v = RaConfig::default()
            .validate(&ctx(CLIENTS, Some(&listen)))
            .expect("valid");
        assert_eq!(v.rdnss, RdnssSource::Dns64(listen.clone()));
        // An explicit list wins over DNS64, and [] means none.
        let c = RaConfig {
            rdnss: Some(vec![]),
            ..RaConfig::default()
        };
        let v = c.validate(&ctx(CLIENTS, Some(&listen))).expect("valid");
        assert_eq!(v.rdnss, RdnssSource::Explicit(vec![]));
    }

    #[test]
    fn toml_table_rejects_unknown_keys() {
        let e = toml::from_str::<RaConfig>("enabled = true\nmax_intervall = 30\n")
            .expect_err("unknown key");
        assert!(
            e.to_string().contains("unknown field `max_intervall`"),
            "{e}"
        );
        let c: RaConfig =
            toml::from_str("enabled = true\ndnssl = [\"Example.NET.\"]\n").expect("valid table");
        let v = c.validate(&ctx(CLIENTS, None)).expect("valid");
        assert_eq!(v.dnssl, vec!["example.net".to_owned()]);
    }
}
