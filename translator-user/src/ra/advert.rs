//! What goes into an advertisement: the validated `[ra]` table and the interface as it is now
//! become an [`Advert`]; the final advertisement withdraws everything; entries that disappear
//! (a prefix removed by a reload, an interface address that went away) are withdrawn
//! explicitly. Pure functions, unit-tested.

use std::net::Ipv6Addr;

use super::config::ValidRa;
use super::link::Link;
use super::rdnss::Skipped;
use super::schedule::MAX_INITIAL_RTR_ADVERTISEMENTS;
use super::wire::{Advert, NdOption, encode};

/// The largest advertisement (ICMPv6 bytes) we send: it must fit the IPv6 minimum MTU.
pub const MAX_ADVERT_BYTES: usize = 1280 - 40;

/// The advertisement for `cfg` on `link`, and the DNS64 listen addresses that gave no RDNSS
/// address (with the reason). Options in this order: source link-layer address (when the link
/// has one), MTU, prefix information, RDNSS, DNSSL, PREF64.
pub fn build(cfg: &ValidRa, link: &Link) -> (Advert, Vec<Skipped>) {
    let mut options = Vec::new();
    if !link.mac.is_empty() {
        options.push(NdOption::SourceLinkLayer {
            address: link.mac.clone(),
        });
    }
    if let Some(mtu) = cfg.mtu {
        options.push(NdOption::Mtu { mtu });
    }
    for p in &cfg.prefixes {
        options.push(NdOption::PrefixInformation {
            prefix: *p,
            length: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: cfg.valid_lifetime,
            preferred_lifetime: cfg.preferred_lifetime,
        });
    }
    let (servers, skipped) = cfg.rdnss.resolve(&cfg.interface, &link.addrs);
    if !servers.is_empty() {
        options.push(NdOption::Rdnss {
            lifetime: cfg.rdnss_lifetime,
            servers,
        });
    }
    if !cfg.dnssl.is_empty() {
        options.push(NdOption::Dnssl {
            lifetime: cfg.dnssl_lifetime,
            domains: cfg.dnssl.clone(),
        });
    }
    options.push(NdOption::Pref64 {
        lifetime: cfg.pref64_lifetime,
        prefix: cfg.pref64.0,
        length: cfg.pref64.1,
    });
    let advert = Advert {
        hop_limit: cfg.hop_limit,
        managed: cfg.managed,
        other_config: cfg.other_config,
        router_lifetime: cfg.router_lifetime,
        reachable_time: 0,
        retrans_timer: 0,
        options,
    };
    (advert, skipped)
}

/// The final advertisement (RFC 4861 section 6.2.5): the same options with every lifetime 0
/// (router lifetime, prefixes valid and preferred, RDNSS, DNSSL, PREF64), so hosts stop using
/// this router and what it announced. (Hosts keep a SLAAC address up to two more hours,
/// RFC 4862 section 5.5.3 e, but deprecate it at once.)
pub fn finalize(a: &Advert) -> Advert {
    let options = a
        .options
        .iter()
        .map(|o| match o {
            NdOption::PrefixInformation {
                prefix,
                length,
                on_link,
                autonomous,
                ..
            } => NdOption::PrefixInformation {
                prefix: *prefix,
                length: *length,
                on_link: *on_link,
                autonomous: *autonomous,
                valid_lifetime: 0,
                preferred_lifetime: 0,
            },
            NdOption::Rdnss { servers, .. } => NdOption::Rdnss {
                lifetime: 0,
                servers: servers.clone(),
            },
            NdOption::Dnssl { domains, .. } => NdOption::Dnssl {
                lifetime: 0,
                domains: domains.clone(),
            },
            NdOption::Pref64 { prefix, length, .. } => NdOption::Pref64 {
                lifetime: 0,
                prefix: *prefix,
                length: *length,
            },
            other => other.clone(),
        })
        .collect();
    Advert {
        router_lifetime: 0,
        options,
        ..a.clone()
    }
}

/// One entry that is no longer announced.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gone {
    Prefix {
        prefix: Ipv6Addr,
        length: u8,
        on_link: bool,
        autonomous: bool,
    },
    Server(Ipv6Addr),
    Domain(String),
}

fn entries(a: &Advert) -> Vec<Gone> {
    let mut out = Vec::new();
    for o in &a.options {
        match o {
            NdOption::PrefixInformation {
                prefix,
                length,
                on_link,
                autonomous,
                ..
            } => out.push(Gone::Prefix {
                prefix: *prefix,
                length: *length,
                on_link: *on_link,
                autonomous: *autonomous,
            }),
            NdOption::Rdnss { servers, lifetime } if *lifetime > 0 => {
                out.extend(servers.iter().map(|s| Gone::Server(*s)));
            }
            NdOption::Dnssl { domains, lifetime } if *lifetime > 0 => {
                out.extend(domains.iter().map(|d| Gone::Domain(d.clone())));
            }
            _ => {}
        }
    }
    out
}

/// Entries that disappeared from the advertisement, announced with lifetime 0 in the next
/// [`MAX_INITIAL_RTR_ADVERTISEMENTS`] advertisements (as many as a changed configuration is
/// announced with quickly), so hosts drop them instead of waiting for their lifetimes.
#[derive(Debug, Clone, Default)]
pub struct Withdrawals {
    items: Vec<(Gone, u32)>,
}

impl Withdrawals {
    /// Compares the last advertisement sent with the next one.
    pub fn compare(&mut self, last: &Advert, next: &Advert) {
        let now = entries(next);
        self.items.retain(|(g, _)| !now.contains(g));
        for g in entries(last) {
            if !now.contains(&g) && !self.items.iter().any(|(x, _)| *x == g) {
                self.items.push((g, MAX_INITIAL_RTR_ADVERTISEMENTS));
            }
        }
    }

    /// Whether anything is being withdrawn.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `a` with the withdrawn entries added (lifetime 0), counting one use of each; entries
    /// that would make the advertisement too large are left out.
    pub fn apply(&mut self, a: &Advert) -> Advert {
        let mut out = a.clone();
        let mut servers = Vec::new();
        let mut domains = Vec::new();
        for (g, left) in &mut self.items {
            *left = left.saturating_sub(1);
            match g {
                Gone::Prefix {
                    prefix,
                    length,
                    on_link,
                    autonomous,
                } => {
                    let o = NdOption::PrefixInformation {
                        prefix: *prefix,
                        length: *length,
                        on_link: *on_link,
                        autonomous: *autonomous,
                        valid_lifetime: 0,
                        preferred_lifetime: 0,
                    };
                    let mut trial = out.clone();
                    trial.options.push(o);
                    if fits(&trial) {
                        out = trial;
                    }
                }
                Gone::Server(s) => servers.push(*s),
                Gone::Domain(d) => domains.push(d.clone()),
            }
        }
        for o in [
            (!servers.is_empty()).then_some(NdOption::Rdnss {
                lifetime: 0,
                servers,
            }),
            (!domains.is_empty()).then_some(NdOption::Dnssl {
                lifetime: 0,
                domains,
            }),
        ]
        .into_iter()
        .flatten()
        {
            let mut trial = out.clone();
            trial.options.push(o);
            if fits(&trial) {
                out = trial;
            }
        }
        self.items.retain(|(_, left)| *left > 0);
        out
    }
}

fn fits(a: &Advert) -> bool {
    encode(a).is_ok_and(|b| b.len() <= MAX_ADVERT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ra::config::{Context, RaConfig};
    use crate::ra::rdnss::RdnssSource;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    fn cfg(edit: impl FnOnce(&mut RaConfig)) -> ValidRa {
        let mut c = RaConfig {
            enabled: true,
            prefixes: vec!["2001:db8:1::/64".into()],
            dnssl: vec!["example.test".into()],
            mtu: Some(1500),
            ..RaConfig::default()
        };
        edit(&mut c);
        let listen = ["[::]:53".parse().expect("literal")];
        c.validate(&Context {
            interface: "g6",
            nat64_prefix: (ip("2001:db8:64::"), 96),
            clients: &[(ip("2001:db8:1::"), 64), (ip("2001:db8:2::"), 64)],
            dns64_listen: Some(&listen),
        })
        .expect("valid")
    }

    fn link() -> Link {
        Link {
            name: "g6".into(),
            ifindex: 7,
            mac: vec![2, 0, 0, 0, 0, 1],
            addrs: vec![ip("fe80::1"), ip("2001:db8:1::1")],
        }
    }

    #[test]
    fn builds_every_option_from_the_configuration_and_the_link() {
        let (a, skipped) = build(&cfg(|_| {}), &link());
        assert!(skipped.is_empty());
        assert_eq!(a.router_lifetime, 1800);
        assert_eq!(
            a.options,
            vec![
                NdOption::SourceLinkLayer {
                    address: vec![2, 0, 0, 0, 0, 1]
                },
                NdOption::Mtu { mtu: 1500 },
                NdOption::PrefixInformation {
                    prefix: ip("2001:db8:1::"),
                    length: 64,
                    on_link: true,
                    autonomous: true,
                    valid_lifetime: 2_592_000,
                    preferred_lifetime: 604_800
                },
                NdOption::Rdnss {
                    lifetime: 1800,
                    servers: vec![ip("2001:db8:1::1")]
                },
                NdOption::Dnssl {
                    lifetime: 1800,
                    domains: vec!["example.test".into()]
                },
                NdOption::Pref64 {
                    lifetime: 1800,
                    prefix: ip("2001:db8:64::"),
                    length: 96
                },
            ]
        );
        // No link-layer address, no servers: those options are left out; PREF64 always stays.
        let bare = Link {
            mac: vec![],
            addrs: vec![ip("fe80::1")],
            ..link()
        };
        let (a, skipped) = build(
            &cfg(|c| {
                c.prefixes.clear();
                c.dnssl.clear();
                c.mtu = None;
            }),
            &bare,
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(a.options.len(), 1);
        assert!(matches!(a.options[0], NdOption::Pref64 { .. }));
    }

    #[test]
    fn the_final_advertisement_has_every_lifetime_zero() {
        let (a, _) = build(&cfg(|_| {}), &link());
        let f = finalize(&a);
        assert_eq!(f.router_lifetime, 0);
        assert_eq!(f.options.len(), a.options.len());
        for o in &f.options {
            match o {
                NdOption::PrefixInformation {
                    valid_lifetime,
                    preferred_lifetime,
                    ..
                } => assert_eq!((*valid_lifetime, *preferred_lifetime), (0, 0)),
                NdOption::Rdnss { lifetime, .. } | NdOption::Dnssl { lifetime, .. } => {
                    assert_eq!(*lifetime, 0)
                }
                NdOption::Pref64 { lifetime, .. } => assert_eq!(*lifetime, 0),
                NdOption::SourceLinkLayer { .. } | NdOption::Mtu { .. } => {}
                NdOption::Unknown { .. } => panic!("unexpected option"),
            }
        }
    }

    #[test]
    fn removed_entries_are_withdrawn_three_times() {
        let (old, _) = build(&cfg(|_| {}), &link());
        let new_cfg = cfg(|c| {
            c.prefixes = vec!["2001:db8:2::/64".into()];
            c.dnssl.clear();
            c.rdnss = Some(vec!["2001:db8:1::53".into()]);
        });
        assert!(matches!(new_cfg.rdnss, RdnssSource::Explicit(_)));
        let (new, _) = build(&new_cfg, &link());
        let mut w = Withdrawals::default();
        w.compare(&old, &new);
        for round in 0..3 {
            let sent = w.apply(&new);
            let extra = &sent.options[new.options.len()..];
            assert_eq!(
                extra,
                &[
                    NdOption::PrefixInformation {
                        prefix: ip("2001:db8:1::"),
                        length: 64,
                        on_link: true,
                        autonomous: true,
                        valid_lifetime: 0,
                        preferred_lifetime: 0
                    },
                    NdOption::Rdnss {
                        lifetime: 0,
                        servers: vec![ip("2001:db8:1::1")]
                    },
                    NdOption::Dnssl {
                        lifetime: 0,
                        domains: vec!["example.test".into()]
                    },
                ],
                "round {round}"
            );
        }
        assert!(w.is_empty());
        assert_eq!(w.apply(&new), new);
        // An entry that comes back is no longer withdrawn.
        let mut w = Withdrawals::default();
        w.compare(&old, &new);
        w.compare(&new, &old);
        assert_eq!(w.apply(&old).options.len(), old.options.len() + 2);
    }
}
