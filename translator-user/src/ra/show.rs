//! Text for people: a decoded advertisement (`translator ra show`) and the `[ra]` summary of
//! `translator check`.

use std::fmt::Write as _;

use super::config::ValidRa;
use super::link::mac_text;
use super::rdnss::RdnssSource;
use super::wire::{Advert, NdOption};

/// Seconds, with "infinity" for all ones.
fn secs(v: u32) -> String {
    if v == u32::MAX {
        "infinity".into()
    } else {
        format!("{v} s")
    }
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The advertisement field by field, one line each, indented by two spaces.
pub fn advert_text(a: &Advert) -> String {
    let mut s = String::new();
    let ms = |v: u32| {
        if v == 0 {
            "0 (unspecified)".to_owned()
        } else {
            format!("{v} ms")
        }
    };
    let _ = writeln!(
        s,
        "  hop limit           {}",
        if a.hop_limit == 0 {
            "0 (unspecified)".to_owned()
        } else {
            a.hop_limit.to_string()
        }
    );
    let _ = writeln!(
        s,
        "  flags               M {}, O {}",
        on(a.managed),
        on(a.other_config)
    );
    let _ = writeln!(
        s,
        "  router lifetime     {}{}",
        secs(u32::from(a.router_lifetime)),
        if a.router_lifetime == 0 {
            " (not a default router)"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "  reachable time      {}", ms(a.reachable_time));
    let _ = writeln!(s, "  retrans timer       {}", ms(a.retrans_timer));
    for o in &a.options {
        let _ = match o {
            NdOption::SourceLinkLayer { address } => {
                writeln!(s, "  source link-layer   {}", mac_text(address))
            }
            NdOption::Mtu { mtu } => writeln!(s, "  mtu                 {mtu}"),
            NdOption::PrefixInformation {
                prefix,
                length,
                on_link,
                autonomous,
                valid_lifetime,
                preferred_lifetime,
            } => writeln!(
                s,
                "  prefix              {prefix}/{length}  L {}, A {}, valid {}, preferred {}",
                on(*on_link),
                on(*autonomous),
                secs(*valid_lifetime),
                secs(*preferred_lifetime)
            ),
            NdOption::Rdnss { lifetime, servers } => {
                let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
                writeln!(
                    s,
                    "  rdnss               {}  lifetime {}",
                    list.join(" "),
                    secs(*lifetime)
                )
            }
            NdOption::Dnssl { lifetime, domains } => writeln!(
                s,
                "  dnssl               {}  lifetime {}",
                domains.join(" "),
                secs(*lifetime)
            ),
            NdOption::Pref64 {
                lifetime,
                prefix,
                length,
            } => writeln!(
                s,
                "  pref64              {prefix}/{length}  lifetime {}",
                secs(u32::from(*lifetime))
            ),
            NdOption::Unknown { code, data } => {
                writeln!(s, "  option {code:<12} {} bytes", data.len() + 2)
            }
        };
    }
    s
}

/// The `[ra]` lines of `translator check`.
pub fn check_summary(r: &ValidRa) -> String {
    let mut s = String::new();
    if !r.enabled {
        let _ = writeln!(s, "  ra        disabled");
        return s;
    }
    let _ = writeln!(
        s,
        "  ra        on {}: every {:.0}..{} s, router lifetime {}, hop limit {}, M {}, O {}{}",
        r.interface,
        r.min_interval.as_secs_f64().floor(),
        r.max_interval.as_secs(),
        secs(u32::from(r.router_lifetime)),
        r.hop_limit,
        on(r.managed),
        on(r.other_config),
        r.mtu.map(|m| format!(", mtu {m}")).unwrap_or_default()
    );
    if r.prefixes.is_empty() {
        let _ = writeln!(
            s,
            "    prefixes  none (no SLAAC addresses from this router)"
        );
    }
    for p in &r.prefixes {
        let _ = writeln!(
            s,
            "    prefix    {p}/64 valid {}, preferred {}",
            secs(r.valid_lifetime),
            secs(r.preferred_lifetime)
        );
    }
    let lifetime = secs(r.rdnss_lifetime);
    let _ = match &r.rdnss {
        RdnssSource::Explicit(list) if list.is_empty() => {
            writeln!(s, "    rdnss     none (ra.rdnss = [])")
        }
        RdnssSource::Explicit(list) => {
            let l: Vec<String> = list.iter().map(ToString::to_string).collect();
            writeln!(s, "    rdnss     {} ({lifetime})", l.join(" "))
        }
        RdnssSource::Dns64(listen) => {
            let l: Vec<String> = listen.iter().map(ToString::to_string).collect();
            writeln!(
                s,
                "    rdnss     from dns64.listen {} on {} ({lifetime})",
                l.join(" "),
                r.interface
            )
        }
        RdnssSource::None => writeln!(s, "    rdnss     none (no ra.rdnss and DNS64 is off)"),
    };
    if !r.dnssl.is_empty() {
        let _ = writeln!(
            s,
            "    dnssl     {} ({})",
            r.dnssl.join(" "),
            secs(r.dnssl_lifetime)
        );
    }
    let _ = writeln!(
        s,
        "    pref64    {}/{} ({}), the nat64.prefix",
        r.pref64.0,
        r.pref64.1,
        secs(u32::from(r.pref64_lifetime))
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_every_field() {
        let a = Advert {
            hop_limit: 0,
            managed: true,
            other_config: false,
            router_lifetime: 0,
            reachable_time: 0,
            retrans_timer: 0,
            options: vec![
                NdOption::SourceLinkLayer {
                    address: vec![2, 0, 0, 0, 0, 1],
                },
                NdOption::PrefixInformation {
                    prefix: "2001:db8:1::".parse().expect("literal"),
                    length: 64,
                    on_link: true,
                    autonomous: true,
                    valid_lifetime: u32::MAX,
                    preferred_lifetime: 0,
                },
                NdOption::Pref64 {
                    lifetime: 600,
                    prefix: "64:ff9b::".parse().expect("literal"),
                    length: 96,
                },
                NdOption::Unknown {
                    code: 99,
                    data: vec![0; 6],
                },
            ],
        };
        let t = advert_text(&a);
        for want in [
            "hop limit           0 (unspecified)",
            "flags               M on, O off",
            "router lifetime     0 s (not a default router)",
            "source link-layer   02:00:00:00:00:01",
            "prefix              2001:db8:1::/64  L on, A on, valid infinity, preferred 0 s",
            "pref64              64:ff9b::/96  lifetime 600 s",
            "option 99           8 bytes",
        ] {
            assert!(t.contains(want), "{want:?} missing in\n{t}");
        }
    }
}
