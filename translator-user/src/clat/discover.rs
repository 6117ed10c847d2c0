//! Finding the PLAT prefix (HOSTS.md "Finding the PLAT prefix"), in order of preference:
//! 1. PREF64 in the uplink's router advertisements (RFC 8781): [`pref64_of_advert`] checks an
//!    advertisement as RFC 4861 section 6.1.2 asks and takes its first valid PREF64 option;
//!    options with a length other than 2 or an unknown prefix length code are ignored
//!    (the RA decoder returns them as unknown options) and counted.
//! 2. The AAAA records of `ipv4only.arpa` through the host's resolvers (RFC 7050, RFC 8880):
//!    [`query`] and [`prefix_of_answer`], the prefix located by the well-known IPv4 addresses
//!    192.0.0.170 and 192.0.0.171, valid for the records' TTL.
//! 3. The `--prefix` setting.
//!
//! [`Discovery`] holds what each source last said, and when it expires; the best unexpired
//! one is the prefix. Everything here is pure but [`lookup`] (UDP to the resolvers).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
};
use serde::Serialize;
use translator_common::rfc6052;

use crate::ra::wire::{self, NdOption, OPT_PREF64};

/// The well-known IPv4 addresses of ipv4only.arpa (RFC 7050 section 2.2).
pub const WKA: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];
/// The prefix lengths of RFC 6052, longest first.
pub const LENGTHS: [u8; 6] = [96, 64, 56, 48, 40, 32];

/// A NAT64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Prefix64 {
    pub prefix: Ipv6Addr,
    pub len: u8,
}

impl Prefix64 {
    /// The prefix with its host bits cleared; the length must be one of RFC 6052's.
    pub fn new(prefix: Ipv6Addr, len: u8) -> anyhow::Result<Self> {
        rfc6052::check_prefix(u128::from(prefix) & rfc6052::mask(len), len)
            .map_err(|e| anyhow!("{prefix}/{len}: {e:?}"))?;
        Ok(Self {
            prefix: Ipv6Addr::from(u128::from(prefix) & rfc6052::mask(len)),
            len,
        })
    }

    /// Parses `PREFIX/LEN` (for `--prefix`).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("--prefix {s:?}: expected PREFIX/LENGTH, e.g. 64:ff9b::/96"))?;
        let prefix: Ipv6Addr = a
            .parse()
            .map_err(|_| anyhow!("--prefix {s:?}: {a:?} is not an IPv6 address"))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| LENGTHS.contains(l))
            .ok_or_else(|| {
                anyhow!("--prefix {s:?}: the length must be one of 32, 40, 48, 56, 64, 96")
            })?;
        Self::new(prefix, len).map_err(|e| anyhow!("--prefix {s:?}: {e:#}"))
    }

    /// The IPv6 address of an IPv4 address under this prefix.
    pub fn embed(&self, v4: Ipv4Addr) -> Ipv6Addr {
        Ipv6Addr::from(rfc6052::embed(
            u128::from(self.prefix),
            self.len,
            u32::from(v4),
        ))
    }

    pub fn contains(&self, a: Ipv6Addr) -> bool {
        u128::from(a) & rfc6052::mask(self.len) == u128::from(self.prefix)
    }

    /// The IPv4 address embedded in `a`.
    pub fn extract(&self, a: Ipv6Addr) -> Ipv4Addr {
        Ipv4Addr::from(rfc6052::extract(u128::from(a), self.len))
    }
}

impl std::fmt::Display for Prefix64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.prefix, self.len)
    }
}

/// Where the prefix was learnt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// PREF64 in a router advertisement from this router (link-local address).
    RouterAdvertisement { router: Ipv6Addr },
    /// ipv4only.arpa through this resolver.
    Dns { resolver: SocketAddr },
    /// The `--prefix` setting.
    Configured,
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::RouterAdvertisement { .. } => "router-advertisement",
            Source::Dns { .. } => "dns",
            Source::Configured => "configured",
        }
    }
}

/// A prefix as one source last said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub prefix: Prefix64,
    pub source: Source,
    /// When it was learnt, and for how long it is valid (`None`: until told otherwise).
    pub at: Instant,
    pub lifetime: Option<Duration>,
}

impl Learned {
    pub fn expired(&self, now: Instant) -> bool {
        self.lifetime
            .is_some_and(|l| now.saturating_duration_since(self.at) >= l)
    }

    /// Seconds left, when it expires.
    pub fn remaining(&self, now: Instant) -> Option<u64> {
        self.lifetime.map(|l| {
            l.saturating_sub(now.saturating_duration_since(self.at))
                .as_secs()
        })
    }
}

/// What the sources last said.
#[derive(Debug, Default)]
pub struct Discovery {
    pub ra: Option<Learned>,
    pub dns: Option<Learned>,
    pub configured: Option<Prefix64>,
}

impl Discovery {
    /// Forgets what expired; returns the prefix to translate with, best source first.
    pub fn current(&mut self, now: Instant) -> Option<Learned> {
        if self.ra.as_ref().is_some_and(|l| l.expired(now)) {
            self.ra = None;
        }
        if self.dns.as_ref().is_some_and(|l| l.expired(now)) {
            self.dns = None;
        }
        self.ra.clone().or_else(|| self.dns.clone()).or_else(|| {
            self.configured.map(|prefix| Learned {
                prefix,
                source: Source::Configured,
                at: now,
                lifetime: None,
            })
        })
    }
}

// ------------------------------------------------------------------------------------------------
// PREF64 (RFC 8781)

/// Why a received advertisement was not used (each has a counter in `clat status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertRefusal {
    #[error("hop limit {0:?}, must be 255")]
    HopLimit(Option<u8>),
    #[error("source {0} is not link-local")]
    Source(Ipv6Addr),
    #[error("{0}")]
    Malformed(wire::DecodeError),
}

/// What one advertisement said about the PLAT prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertPref64 {
    /// The first valid PREF64 option: the prefix and its lifetime in seconds (0: withdrawn).
    pub pref64: Option<(Prefix64, u16)>,
    /// PREF64 options that were ignored (a length other than 2, an unknown length code).
    pub ignored: usize,
}

/// Checks a received advertisement (`icmp` from the ICMPv6 type on; the kernel checked the
/// checksum) as RFC 4861 section 6.1.2 asks and reads its PREF64 options.
pub fn pref64_of_advert(
    icmp: &[u8],
    source: Ipv6Addr,
    hop_limit: Option<u8>,
) -> Result<AdvertPref64, AdvertRefusal> {
    if hop_limit != Some(255) {
        return Err(AdvertRefusal::HopLimit(hop_limit));
    }
    if !crate::ra::rdnss::is_link_local(source) {
        return Err(AdvertRefusal::Source(source));
    }
    let advert = wire::decode(icmp).map_err(AdvertRefusal::Malformed)?;
    let mut out = AdvertPref64 {
        pref64: None,
        ignored: 0,
    };
    for o in &advert.options {
        match o {
            NdOption::Pref64 {
                lifetime,
                prefix,
                length,
            } => {
                // The decoder only builds it for the six valid codes; host bits past /96 are
                // not carried, so the prefix is valid by construction.
                if out.pref64.is_none()
                    && let Ok(p) = Prefix64::new(*prefix, *length)
                {
                    out.pref64 = Some((p, *lifetime));
                }
            }
            NdOption::Unknown { code, .. } if *code == OPT_PREF64 => out.ignored += 1,
            _ => {}
        }
    }
    Ok(out)
}

/// A Router Solicitation (type, code, checksum, reserved), without options: sent from the
/// link-local address, which the source link-layer address option would need.
pub fn solicitation() -> [u8; 8] {
    [wire::ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]
}

// ------------------------------------------------------------------------------------------------
// ipv4only.arpa (RFC 7050)

/// The resolvers of a resolv.conf text (at most three, as the C library uses).
pub fn resolvers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then(|| w.next())?
        })
        .filter_map(|a| {
            // A link-local resolver carries its zone: fe80::1%eth0.
            let (addr, zone) = a.split_once('%').unwrap_or((a, ""));
            let ip: IpAddr = addr.parse().ok()?;
            Some(match ip {
                IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), 53),
                IpAddr::V6(v6) => {
                    let scope = if zone.is_empty() {
                        0
                    } else {
                        crate::netns::ifindex(zone)
                            .or_else(|| zone.parse().ok())
                            .unwrap_or(0)
                    };
                    SocketAddr::V6(std::net::SocketAddrV6::new(v6, 53, 0, scope))
                }
            })
        })
        .take(3)
        .collect()
}

/// The AAAA query for ipv4only.arpa, with recursion desired.
pub fn query(id: u16) -> anyhow::Result<Vec<u8>> {
    let name = Name::from_ascii("ipv4only.arpa.").context("the name ipv4only.arpa")?;
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, RecordType::AAAA));
    m.to_vec().context("encoding the ipv4only.arpa query")
}

/// The prefix in an answer to [`query`] and the TTL of its records (RFC 7050 section 3):
/// every AAAA record is searched for a well-known address at each RFC 6052 position; a
/// position where every record has one wins (ties: the longest prefix), so an address that
/// happens to contain 192.0.0.170 elsewhere does not mislead.
pub fn prefix_of_answer(answer: &[u8], id: u16) -> anyhow::Result<(Prefix64, u32)> {
    let m = Message::from_vec(answer).context("the answer is not a DNS message")?;
    if m.metadata.id != id {
        bail!("the answer's id {} is not the query's {id}", m.metadata.id);
    }
    let records: Vec<(Ipv6Addr, u32)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some((a.0, r.ttl)),
            _ => None,
        })
        .collect();
    if records.is_empty() {
        bail!(
            "no AAAA records for ipv4only.arpa (response code {:?}): the resolver does no DNS64",
            m.metadata.response_code
        );
    }
    let ttl = records.iter().map(|r| r.1).min().unwrap_or(0);
    let found = |len: u8, a: Ipv6Addr| {
        let p = Prefix64 {
            prefix: Ipv6Addr::from(u128::from(a) & rfc6052::mask(len)),
            len,
        };
        WKA.contains(&p.extract(a)) && rfc6052::check_prefix(u128::from(p.prefix), len).is_ok()
    };
    for len in LENGTHS {
        if records.iter().all(|(a, _)| found(len, *a)) {
            let prefix = Prefix64::new(records[0].0, len)?;
            // Every record must be under the same prefix.
            if records.iter().all(|(a, _)| prefix.contains(*a)) {
                return Ok((prefix, ttl));
            }
        }
    }
    bail!(
        "no AAAA record of ipv4only.arpa holds 192.0.0.170 or 192.0.0.171 at an RFC 6052 \
         position: {:?}",
        records.iter().map(|r| r.0).collect::<Vec<_>>()
    )
}

/// Asks the resolvers, one after the other, for ipv4only.arpa; the first usable answer wins.
pub async fn lookup(
    resolvers: &[SocketAddr],
    timeout: Duration,
) -> anyhow::Result<(Prefix64, u32, SocketAddr)> {
    if resolvers.is_empty() {
        bail!("no resolver in /etc/resolv.conf");
    }
    let mut errors = Vec::new();
    for r in resolvers {
        match lookup_one(*r, timeout).await {
            Ok((p, ttl)) => return Ok((p, ttl, *r)),
            Err(e) => errors.push(format!("{r}: {e:#}")),
        }
    }
    bail!("{}", errors.join("; "))
}

async fn lookup_one(resolver: SocketAddr, timeout: Duration) -> anyhow::Result<(Prefix64, u32)> {
    let bind: SocketAddr = match resolver {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .context("opening a UDP socket")?;
    sock.connect(resolver).await.context("connecting")?;
    let id = random_id();
    sock.send(&query(id)?).await.context("sending the query")?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| anyhow!("no answer within {timeout:?}"))?
            .context("receiving")?;
        // Answers with another id (a late one to an earlier query) are skipped.
        match prefix_of_answer(&buf[..n], id) {
            Err(e) if e.to_string().contains("is not the query's") => continue,
            r => return r,
        }
    }
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most the length given into the buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 2, 0) };
    if n == 2 {
        u16::from_ne_bytes(b)
    } else {
        // Only the id's match is checked, not its secrecy: the answer's source is connected.
        (std::process::id() as u16) ^ 0x5a5a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Record, rdata::AAAA};

    fn answer(id: u16, addrs: &[&str], ttl: u32) -> Vec<u8> {
        let mut m = Message::response(id, hickory_proto::op::OpCode::Query);
        let name = Name::from_ascii("ipv4only.arpa.").unwrap();
        for a in addrs {
            m.answers.push(Record::from_rdata(
                name.clone(),
                ttl,
                RData::AAAA(AAAA(a.parse().unwrap())),
            ));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn the_prefix_is_found_at_every_rfc6052_length() {
        for (p, len) in [
            ("2001:db8:64::", 96),
            ("2001:db8:6400::", 64),
            ("2001:db8:64::", 56),
            ("2001:db8:64::", 48),
            ("2001:db8:6400::", 40),
            ("2001:db8::", 32),
        ] {
            let prefix = Prefix64::new(p.parse().unwrap(), len).unwrap();
            let addrs: Vec<String> = WKA.iter().map(|w| prefix.embed(*w).to_string()).collect();
            let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
            let got = prefix_of_answer(&answer(7, &refs, 600), 7).unwrap();
            assert_eq!(got, (prefix, 600), "/{len}: {addrs:?}");
        }
    }

    #[test]
    fn the_well_known_prefix_and_bad_answers() {
        let got = prefix_of_answer(&answer(1, &["64:ff9b::c000:aa"], 3600), 1).unwrap();
        assert_eq!(got.0.to_string(), "64:ff9b::/96");
        // Another id, no record, no well-known address.
        assert!(prefix_of_answer(&answer(1, &["64:ff9b::c000:aa"], 1), 2).is_err());
        assert!(prefix_of_answer(&answer(1, &[], 1), 1).is_err());
        assert!(prefix_of_answer(&answer(1, &["2001:db8::1"], 1), 1).is_err());
        assert!(prefix_of_answer(b"\x00\x01garbage", 1).is_err());
        // The lowest TTL counts.
        let a = answer(3, &["64:ff9b::c000:aa"], 50);
        assert_eq!(prefix_of_answer(&a, 3).unwrap().1, 50);
    }

    #[test]
    fn resolvers_of_resolv_conf() {
        let r = resolvers(
            "# comment\nnameserver 2001:db8::53\nsearch example.test\nnameserver 192.0.2.53\n\
             nameserver fe80::1%1\nnameserver 2001:db8::54\nnameserver bogus\n",
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], "[2001:db8::53]:53".parse().unwrap());
        assert_eq!(r[1], "192.0.2.53:53".parse().unwrap());
        let SocketAddr::V6(ll) = r[2] else { panic!() };
        assert_eq!(ll.scope_id(), 1);
    }

    #[test]
    fn prefix_setting() {
        assert_eq!(
            Prefix64::parse("64:ff9b::/96").unwrap().to_string(),
            "64:ff9b::/96"
        );
        assert!(Prefix64::parse("64:ff9b::").is_err());
        assert!(Prefix64::parse("64:ff9b::/95").is_err());
        assert!(Prefix64::parse("nonsense/96").is_err());
        // Host bits are cleared.
        assert_eq!(
            Prefix64::parse("2001:db8:1:2::5/64").unwrap().to_string(),
            "2001:db8:1:2::/64"
        );
    }

    /// An advertisement with the given options (type, code, checksum, header).
    fn advert(options: &[u8]) -> Vec<u8> {
        let mut b = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(options);
        b
    }

    fn pref64_option(lifetime: u16, plc: u8, prefix: [u8; 12]) -> Vec<u8> {
        let mut o = vec![38, 2];
        o.extend(((lifetime / 8) << 3 | u16::from(plc)).to_be_bytes());
        o.extend(prefix);
        o
    }

    #[test]
    fn pref64_in_advertisements() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let p = [0x20, 0x01, 0x0d, 0xb8, 0, 0x64, 0, 0, 0, 0, 0, 0];
        let got = pref64_of_advert(&advert(&pref64_option(1800, 0, p)), ll, Some(255)).unwrap();
        assert_eq!(
            got.pref64,
            Some((Prefix64::parse("2001:db8:64::/96").unwrap(), 1800))
        );
        // Code 6 and 7 are not prefix lengths; a length of 3 is not PREF64's: ignored.
        let mut bad = pref64_option(1800, 6, p);
        bad.extend(pref64_option(1800, 7, p));
        let mut long = pref64_option(1800, 0, p);
        long[1] = 3;
        long.extend([0u8; 8]);
        bad.extend(long);
        let got = pref64_of_advert(&advert(&bad), ll, Some(255)).unwrap();
        assert_eq!(got.pref64, None);
        assert_eq!(got.ignored, 3);
        // The advertisement's own checks.
        assert_eq!(
            pref64_of_advert(&advert(&pref64_option(8, 0, p)), ll, Some(64)),
            Err(AdvertRefusal::HopLimit(Some(64)))
        );
        let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(matches!(
            pref64_of_advert(&advert(&[]), global, Some(255)),
            Err(AdvertRefusal::Source(_))
        ));
        assert!(matches!(
            pref64_of_advert(&advert(&[38, 0]), ll, Some(255)),
            Err(AdvertRefusal::Malformed(_))
        ));
        assert!(matches!(
            pref64_of_advert(&advert(&[38, 2, 0, 0]), ll, Some(255)),
            Err(AdvertRefusal::Malformed(_))
        ));
    }

    #[test]
    fn sources_in_order_and_expiry() {
        let t0 = Instant::now();
        let p = |s: &str| Prefix64::parse(s).unwrap();
        let mut d = Discovery {
            configured: Some(p("2001:db8:c::/96")),
            ..Default::default()
        };
        assert_eq!(d.current(t0).unwrap().source, Source::Configured);
        d.dns = Some(Learned {
            prefix: p("2001:db8:d::/96"),
            source: Source::Dns {
                resolver: "[2001:db8::53]:53".parse().unwrap(),
            },
            at: t0,
            lifetime: Some(Duration::from_secs(10)),
        });
        assert_eq!(d.current(t0).unwrap().prefix, p("2001:db8:d::/96"));
        d.ra = Some(Learned {
            prefix: p("2001:db8:a::/96"),
            source: Source::RouterAdvertisement {
                router: "fe80::1".parse().unwrap(),
            },
            at: t0,
            lifetime: Some(Duration::from_secs(5)),
        });
        assert_eq!(d.current(t0).unwrap().prefix, p("2001:db8:a::/96"));
        assert_eq!(d.ra.as_ref().unwrap().remaining(t0), Some(5));
        let later = t0 + Duration::from_secs(6);
        assert_eq!(d.current(later).unwrap().prefix, p("2001:db8:d::/96"));
        assert!(d.ra.is_none());
        let much_later = t0 + Duration::from_secs(11);
        assert_eq!(d.current(much_later).unwrap().source, Source::Configured);
    }
}
