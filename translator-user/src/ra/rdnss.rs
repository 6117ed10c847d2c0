//! Which addresses the RDNSS option carries (RFC 8106): `ra.rdnss` when listed, otherwise the
//! DNS64 server's listen addresses that are on the advertising link, worked out again before
//! every advertisement (the interface's addresses can change).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// RDNSS addresses one advertisement carries at most (hosts use the first three).
pub const MAX_SERVERS: usize = 8;

/// Where the RDNSS addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdnssSource {
    /// `ra.rdnss`, as listed (possibly empty: no RDNSS option).
    Explicit(Vec<Ipv6Addr>),
    /// Derived at every advertisement from the DNS64 listen addresses (`dns64.listen`, DNS64
    /// enabled): see [`RdnssSource::resolve`].
    Dns64(Vec<SocketAddr>),
    /// No `ra.rdnss` and no enabled DNS64: no RDNSS option.
    None,
}

/// Why a DNS64 listen address gives no RDNSS address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub listen: SocketAddr,
    pub why: String,
}

impl RdnssSource {
    /// The RDNSS addresses for a link whose interface is `interface` with the addresses
    /// `link_addrs`, and the listen addresses that gave none (with the reason).
    ///
    /// The rule for DNS64-derived addresses: a listen address must be IPv6 and use port 53
    /// (the option has no port); the wildcard `[::]:53` stands for every address of the
    /// interface except link-local ones; a specific address counts only when it is assigned
    /// to the interface (an address elsewhere, e.g. `::1`, is not on that link). At most
    /// [`MAX_SERVERS`] addresses, in the order found, without duplicates.
    pub fn resolve(
        &self,
        interface: &str,
        link_addrs: &[Ipv6Addr],
    ) -> (Vec<Ipv6Addr>, Vec<Skipped>) {
        let mut out: Vec<Ipv6Addr> = Vec::new();
        let mut skipped = Vec::new();
        let push = |a: Ipv6Addr, out: &mut Vec<Ipv6Addr>| {
            if !out.contains(&a) && out.len() < MAX_SERVERS {
                out.push(a);
            }
        };
        match self {
            RdnssSource::Explicit(list) => {
                for a in list {
                    push(*a, &mut out);
                }
            }
            RdnssSource::None => {}
            RdnssSource::Dns64(listen) => {
                for l in listen {
                    let skip = |why: String| Skipped { listen: *l, why };
                    let IpAddr::V6(a) = l.ip() else {
                        skipped.push(skip(
                            "an IPv4 address (RDNSS carries IPv6 addresses)".into(),
                        ));
                        continue;
                    };
                    if l.port() != 53 {
                        skipped.push(skip(format!(
                            "port {} (RDNSS has no port: hosts always ask port 53)",
                            l.port()
                        )));
                        continue;
                    }
                    if a.is_unspecified() {
                        let usable: Vec<Ipv6Addr> = link_addrs
                            .iter()
                            .copied()
                            .filter(|x| !is_link_local(*x) && !x.is_loopback() && !x.is_multicast())
                            .collect();
                        if usable.is_empty() {
                            skipped.push(skip(format!(
                                "the wildcard, and {interface} has no address other than link-local"
                            )));
                        }
                        for x in usable {
                            push(x, &mut out);
                        }
                    } else if link_addrs.contains(&a) {
                        push(a, &mut out);
                    } else {
                        skipped.push(skip(format!("not an address of {interface}")));
                    }
                }
            }
        }
        (out, skipped)
    }
}

/// Whether `a` is in fe80::/10.
pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    #[test]
    fn derived_from_the_dns64_listen_addresses_on_the_link() {
        let listen: Vec<SocketAddr> = [
            "[2001:db8:1::1]:53",
            "[::]:53",
            "[::1]:53",
            "192.0.2.1:53",
            "[2001:db8:1::1]:5353",
            "[2001:db8:9::9]:53",
        ]
        .iter()
        .map(|s| s.parse().expect("literal"))
        .collect();
        let source = RdnssSource::Dns64(listen);
        let link = [ip("fe80::1"), ip("2001:db8:1::1"), ip("fd00::1")];
        let (got, skipped) = source.resolve("eth0", &link);
        // The specific address, then the wildcard's addresses (no duplicate, no link-local).
        assert_eq!(got, vec![ip("2001:db8:1::1"), ip("fd00::1")]);
        let why: Vec<String> = skipped
            .iter()
            .map(|s| format!("{} {}", s.listen, s.why))
            .collect();
        assert_eq!(
            why,
            [
                "[::1]:53 not an address of eth0",
                "192.0.2.1:53 an IPv4 address (RDNSS carries IPv6 addresses)",
                "[2001:db8:1::1]:5353 port 5353 (RDNSS has no port: hosts always ask port 53)",
                "[2001:db8:9::9]:53 not an address of eth0",
            ]
        );
        // A wildcard on a link with only a link-local address gives nothing, and says why.
        let only_ll = RdnssSource::Dns64(vec!["[::]:53".parse().expect("literal")]);
        let (got, skipped) = only_ll.resolve("eth0", &[ip("fe80::1")]);
        assert!(got.is_empty());
        assert_eq!(skipped.len(), 1);
        // At most MAX_SERVERS, in order.
        let many: Vec<Ipv6Addr> = (1..=10u16)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i))
            .collect();
        let (got, _) =
            RdnssSource::Dns64(vec!["[::]:53".parse().expect("literal")]).resolve("eth0", &many);
        assert_eq!(got, many[..MAX_SERVERS].to_vec());
        assert!(is_link_local(ip("fe80::1")) && is_link_local(ip("febf::1")));
        assert!(!is_link_local(ip("fec0::1")));
    }
}
