//! The same advertisement as configuration for another router (`translator ra config --for`):
//! radvd, systemd-networkd and BIRD 2, for a gateway whose clients' router is another box, or
//! to move advertising there. Settings the other software lacks are written as comments that
//! say so, with the value they would have.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use super::config::ValidRa;

/// The software to write configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Router {
    Radvd,
    Networkd,
    Bird,
}

/// What the stanza is for: the resolved RDNSS addresses (they can depend on the interface's
/// addresses) and where they came from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub cfg: &'a ValidRa,
    pub rdnss: &'a [Ipv6Addr],
    /// Comment lines explaining RDNSS addresses that could not be derived here.
    pub rdnss_notes: &'a [String],
    /// The configuration file, named in the header.
    pub source: &'a str,
    /// The instance name, named in the header.
    pub instance: &'a str,
}

/// Seconds as a decimal without a needless fraction (radvd reads fractions).
fn decimal(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

fn infinity(v: u32, word: &str) -> String {
    if v == u32::MAX {
        word.to_owned()
    } else {
        v.to_string()
    }
}

/// The PREF64 option's body after type and length, as colon-separated hex.
fn pref64_bytes(cfg: &ValidRa) -> String {
    let plc = super::wire::pref64_plc(cfg.pref64.1).unwrap_or(0);
    let word = (cfg.pref64_lifetime / 8) << 3 | u16::from(plc);
    let mut b = word.to_be_bytes().to_vec();
    b.extend_from_slice(&cfg.pref64.0.octets()[..12]);
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn header(s: &mut String, what: &str, i: &Inputs<'_>) {
    let _ = writeln!(
        s,
        "# {what}: the router advertisement of translator instance {:?} ({}),\n\
         # written by `translator ra config`. Only one router should advertise these: set\n\
         # ra.enabled = false in translator's configuration when this one does.",
        i.instance, i.source
    );
    if !i.cfg.enabled {
        let _ = writeln!(
            s,
            "# (ra.enabled is false there; the values are those of its [ra] table.)"
        );
    }
    for n in i.rdnss_notes {
        let _ = writeln!(s, "# {n}");
    }
}

/// The configuration text.
pub fn stanza(router: Router, i: &Inputs<'_>) -> String {
    match router {
        Router::Radvd => radvd(i),
        Router::Networkd => networkd(i),
        Router::Bird => bird(i),
    }
}

fn radvd(i: &Inputs<'_>) -> String {
    let c = i.cfg;
    let mut s = String::new();
    header(&mut s, "radvd.conf", i);
    let _ = writeln!(s, "interface {}\n{{", c.interface);
    let _ = writeln!(s, "    AdvSendAdvert on;");
    let _ = writeln!(s, "    MaxRtrAdvInterval {};", decimal(c.max_interval));
    let _ = writeln!(s, "    MinRtrAdvInterval {};", decimal(c.min_interval));
    let _ = writeln!(s, "    AdvCurHopLimit {};", c.hop_limit);
    let onoff = |b: bool| if b { "on" } else { "off" };
    let _ = writeln!(s, "    AdvManagedFlag {};", onoff(c.managed));
    let _ = writeln!(s, "    AdvOtherConfigFlag {};", onoff(c.other_config));
    let _ = writeln!(s, "    AdvDefaultLifetime {};", c.router_lifetime);
    let _ = writeln!(s, "    AdvReachableTime 0;");
    let _ = writeln!(s, "    AdvRetransTimer 0;");
    if let Some(m) = c.mtu {
        let _ = writeln!(s, "    AdvLinkMTU {m};");
    }
    let _ = writeln!(s, "    AdvSourceLLAddress on;");
    for p in &c.prefixes {
        let _ = writeln!(
            s,
            "\n    prefix {p}/64\n    {{\n        AdvOnLink on;\n        AdvAutonomous on;\n        \
             AdvValidLifetime {};\n        AdvPreferredLifetime {};\n    }};",
            infinity(c.valid_lifetime, "infinity"),
            infinity(c.preferred_lifetime, "infinity")
        );
    }
    if !i.rdnss.is_empty() {
        let list: Vec<String> = i.rdnss.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "\n    RDNSS {}\n    {{\n        AdvRDNSSLifetime {};\n    }};",
            list.join(" "),
            infinity(c.rdnss_lifetime, "infinity")
        );
    }
    if !c.dnssl.is_empty() {
        let _ = writeln!(
            s,
            "\n    DNSSL {}\n    {{\n        AdvDNSSLLifetime {};\n    }};",
            c.dnssl.join(" "),
            infinity(c.dnssl_lifetime, "infinity")
        );
    }
    let _ = writeln!(
        s,
        "\n    # PREF64 (RFC 8781) needs radvd 2.20 or later. The radvd of Debian 12 (2.19) has no\n    \
         # nat64prefix and refuses a file that uses it; with 2.20, remove the '#' here:\n    \
         # nat64prefix {}/{}\n    # {{\n    #     AdvValidLifetime {};\n    # }};",
        c.pref64.0, c.pref64.1, c.pref64_lifetime
    );
    let _ = writeln!(s, "}};");
    s
}

fn networkd(i: &Inputs<'_>) -> String {
    let c = i.cfg;
    let mut s = String::new();
    header(&mut s, "systemd-networkd", i);
    let yn = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        s,
        "# Add to the .network file that matches {} ([Match] Name={}).",
        c.interface, c.interface
    );
    let _ = writeln!(s, "[Network]\nIPv6SendRA=yes\n");
    let _ = writeln!(s, "[IPv6SendRA]");
    let _ = writeln!(s, "Managed={}", yn(c.managed));
    let _ = writeln!(s, "OtherInformation={}", yn(c.other_config));
    let _ = writeln!(s, "RouterLifetimeSec={}", c.router_lifetime);
    let _ = writeln!(
        s,
        "# HopLimit= needs a newer networkd than the systemd 252 of Debian 12 (which ignores it\n\
         # with a warning and advertises the kernel's hop limit):\nHopLimit={}",
        c.hop_limit
    );
    if i.rdnss.is_empty() {
        let _ = writeln!(s, "EmitDNS=no");
    } else {
        let list: Vec<String> = i.rdnss.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "EmitDNS=yes\nDNS={}", list.join(" "));
    }
    if c.dnssl.is_empty() {
        let _ = writeln!(s, "EmitDomains=no");
    } else {
        let _ = writeln!(s, "EmitDomains=yes\nDomains={}", c.dnssl.join(" "));
    }
    // One lifetime for both lists in networkd.
    let dns_lifetime = if i.rdnss.is_empty() && !c.dnssl.is_empty() {
        c.dnssl_lifetime
    } else {
        c.rdnss_lifetime
    };
    let _ = writeln!(s, "DNSLifetimeSec={}", infinity(dns_lifetime, "infinity"));
    if !i.rdnss.is_empty() && !c.dnssl.is_empty() && c.rdnss_lifetime != c.dnssl_lifetime {
        let _ = writeln!(
            s,
            "# networkd has one lifetime for DNS= and Domains=: ra.rdnss_lifetime {} is used,\n\
             # ra.dnssl_lifetime {} cannot be.",
            c.rdnss_lifetime, c.dnssl_lifetime
        );
    }
    let _ = writeln!(
        s,
        "# networkd has no settings for the advertisement interval (ra.max_interval = {}, \
         ra.min_interval = {}){}.",
        decimal(c.max_interval),
        decimal(c.min_interval),
        c.mtu
            .map(|m| format!(" or for the MTU option (ra.mtu = {m})"))
            .unwrap_or_default()
    );
    for p in &c.prefixes {
        let _ = writeln!(
            s,
            "\n[IPv6Prefix]\nPrefix={p}/64\nOnLink=yes\nAddressAutoconfiguration=yes\n\
             ValidLifetimeSec={}\nPreferredLifetimeSec={}",
            infinity(c.valid_lifetime, "infinity"),
            infinity(c.preferred_lifetime, "infinity")
        );
    }
    let _ = writeln!(
        s,
        "\n# [IPv6PREF64Prefix] needs a newer networkd than the systemd 252 of Debian 12 (which\n\
         # ignores the section with a warning).\n[IPv6PREF64Prefix]\nPrefix={}/{}\nLifetimeSec={}",
        c.pref64.0, c.pref64.1, c.pref64_lifetime
    );
    s
}

fn bird(i: &Inputs<'_>) -> String {
    let c = i.cfg;
    let mut s = String::new();
    header(&mut s, "BIRD 2 (bird.conf)", i);
    let yn = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(s, "protocol radv {{");
    let _ = writeln!(s, "    interface \"{}\" {{", c.interface);
    let _ = writeln!(s, "        max ra interval {};", c.max_interval.as_secs());
    // BIRD takes whole seconds, at least 3.
    let _ = writeln!(
        s,
        "        min ra interval {};",
        c.min_interval.as_secs().max(3)
    );
    let _ = writeln!(s, "        managed {};", yn(c.managed));
    let _ = writeln!(s, "        other config {};", yn(c.other_config));
    let _ = writeln!(s, "        current hop limit {};", c.hop_limit);
    let _ = writeln!(s, "        default lifetime {};", c.router_lifetime);
    let _ = writeln!(s, "        reachable time 0;");
    let _ = writeln!(s, "        retrans timer 0;");
    if let Some(m) = c.mtu {
        let _ = writeln!(s, "        link mtu {m};");
    }
    for p in &c.prefixes {
        let _ = writeln!(
            s,
            "        prefix {p}/64 {{\n            onlink yes;\n            autonomous yes;\n            \
             valid lifetime {};\n            preferred lifetime {};\n        }};",
            c.valid_lifetime, c.preferred_lifetime
        );
    }
    if !i.rdnss.is_empty() {
        let _ = writeln!(
            s,
            "        rdnss {{\n            lifetime {};",
            c.rdnss_lifetime
        );
        for a in i.rdnss {
            let _ = writeln!(s, "            ns {a};");
        }
        let _ = writeln!(s, "        }};");
    }
    if !c.dnssl.is_empty() {
        let _ = writeln!(
            s,
            "        dnssl {{\n            lifetime {};",
            c.dnssl_lifetime
        );
        for d in &c.dnssl {
            let _ = writeln!(s, "            domain \"{d}\";");
        }
        let _ = writeln!(s, "        }};");
    }
    let _ = writeln!(
        s,
        "        # BIRD 2 (2.0.12 in Debian 12) has no PREF64 (RFC 8781) option: hosts behind it\n        \
         # learn {}/{} only from DNS64 (RFC 7050). A BIRD with raw options\n        \
         # (`custom option type ... value ...` in its documentation) can send it:\n        \
         # custom option type 38 value hex:{};",
        c.pref64.0,
        c.pref64.1,
        pref64_bytes(c)
    );
    let _ = writeln!(s, "    }};\n}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ra::config::{Context, RaConfig};

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    fn cfg() -> ValidRa {
        RaConfig {
            enabled: true,
            prefixes: vec!["2001:db8:1::/64".into()],
            dnssl: vec!["example.test".into()],
            mtu: Some(1500),
            ..RaConfig::default()
        }
        .validate(&Context {
            interface: "eth0",
            nat64_prefix: (ip("2001:db8:64::"), 96),
            clients: &[(ip("2001:db8:1::"), 64)],
            dns64_listen: None,
        })
        .expect("valid")
    }

    fn text(r: Router) -> String {
        let c = cfg();
        stanza(
            r,
            &Inputs {
                cfg: &c,
                rdnss: &[ip("2001:db8:1::1")],
                rdnss_notes: &[],
                source: "/etc/translator.toml",
                instance: "default",
            },
        )
    }

    #[test]
    fn radvd_has_every_value() {
        let t = text(Router::Radvd);
        for want in [
            "interface eth0\n{\n    AdvSendAdvert on;\n    MaxRtrAdvInterval 600;\n    MinRtrAdvInterval 198;",
            "AdvCurHopLimit 64;",
            "AdvDefaultLifetime 1800;",
            "AdvLinkMTU 1500;",
            "prefix 2001:db8:1::/64\n    {\n        AdvOnLink on;\n        AdvAutonomous on;\n        AdvValidLifetime 2592000;\n        AdvPreferredLifetime 604800;\n    };",
            "RDNSS 2001:db8:1::1\n    {\n        AdvRDNSSLifetime 1800;\n    };",
            "DNSSL example.test\n    {\n        AdvDNSSLLifetime 1800;\n    };",
            "(2.19) has no\n    # nat64prefix",
            "# nat64prefix 2001:db8:64::/96\n    # {\n    #     AdvValidLifetime 1800;",
        ] {
            assert!(t.contains(want), "{want:?} missing in\n{t}");
        }
        assert!(t.trim_end().ends_with("};"));
    }

    #[test]
    fn networkd_has_every_section() {
        let t = text(Router::Networkd);
        for want in [
            "[Network]\nIPv6SendRA=yes",
            "[IPv6SendRA]\nManaged=no\nOtherInformation=no\nRouterLifetimeSec=1800",
            "HopLimit=64",
            "EmitDNS=yes\nDNS=2001:db8:1::1",
            "EmitDomains=yes\nDomains=example.test",
            "DNSLifetimeSec=1800",
            "or for the MTU option (ra.mtu = 1500)",
            "[IPv6Prefix]\nPrefix=2001:db8:1::/64\nOnLink=yes\nAddressAutoconfiguration=yes\nValidLifetimeSec=2592000\nPreferredLifetimeSec=604800",
            "[IPv6PREF64Prefix]\nPrefix=2001:db8:64::/96\nLifetimeSec=1800",
        ] {
            assert!(t.contains(want), "{want:?} missing in\n{t}");
        }
    }

    #[test]
    fn bird_has_rdnss_dnssl_and_a_pref64_comment() {
        let t = text(Router::Bird);
        for want in [
            "protocol radv {\n    interface \"eth0\" {\n        max ra interval 600;\n        min ra interval 198;",
            "default lifetime 1800;",
            "link mtu 1500;",
            "prefix 2001:db8:1::/64 {\n            onlink yes;\n            autonomous yes;\n            valid lifetime 2592000;\n            preferred lifetime 604800;\n        };",
            "rdnss {\n            lifetime 1800;\n            ns 2001:db8:1::1;\n        };",
            "dnssl {\n            lifetime 1800;\n            domain \"example.test\";\n        };",
            "has no PREF64 (RFC 8781) option",
            // 1800 s = 225 units: 0x0708, code 0 (/96), then 96 bits of the prefix.
            "custom option type 38 value hex:07:08:20:01:0d:b8:00:64:00:00:00:00:00:00;",
        ] {
            assert!(t.contains(want), "{want:?} missing in\n{t}");
        }
        assert!(t.trim_end().ends_with("};\n}"));
    }
}
