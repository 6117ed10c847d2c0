//! The ICMPv6 messages of router discovery on the wire, written by hand (RFC 4861 section 4,
//! RFC 8106, RFC 8781): a tiny format, pure functions, no I/O.
//!
//! - [`encode`]: an [`Advert`] to the bytes of a Router Advertisement (from the ICMPv6 type
//!   on; the checksum stays 0: the kernel fills it in for raw ICMPv6 sockets).
//! - [`decode`]: the reverse, for `translator ra show` and the tests; options it does not
//!   know, and PREF64 options a receiver must ignore, come back as [`NdOption::Unknown`].
//! - [`check_solicitation`]: the validity checks of RFC 4861 section 6.1.1 on a received
//!   Router Solicitation.

use std::net::Ipv6Addr;

use serde::Serialize;

/// ICMPv6 type of a Router Solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;

/// Option types (IANA "IPv6 Neighbor Discovery Option Formats").
pub const OPT_SOURCE_LINK_LAYER: u8 = 1;
pub const OPT_PREFIX_INFORMATION: u8 = 3;
pub const OPT_MTU: u8 = 5;
pub const OPT_RDNSS: u8 = 25;
pub const OPT_DNSSL: u8 = 31;
pub const OPT_PREF64: u8 = 38;

/// The fixed part of a Router Advertisement: type, code, checksum, hop limit, flags, router
/// lifetime, reachable time, retrans timer.
pub const RA_HEADER_LEN: usize = 16;

/// A Router Advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advert {
    /// Cur Hop Limit (0: unspecified).
    pub hop_limit: u8,
    /// M flag.
    pub managed: bool,
    /// O flag.
    pub other_config: bool,
    /// Seconds; 0: not a default router.
    pub router_lifetime: u16,
    /// Milliseconds; 0: unspecified.
    pub reachable_time: u32,
    /// Milliseconds; 0: unspecified.
    pub retrans_timer: u32,
    pub options: Vec<NdOption>,
}

/// One option of a Router Advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum NdOption {
    /// Type 1: the sender's link-layer address (6 bytes on Ethernet).
    SourceLinkLayer {
        #[serde(serialize_with = "colon_hex")]
        address: Vec<u8>,
    },
    /// Type 5.
    Mtu { mtu: u32 },
    /// Type 3.
    PrefixInformation {
        prefix: Ipv6Addr,
        length: u8,
        on_link: bool,
        autonomous: bool,
        valid_lifetime: u32,
        preferred_lifetime: u32,
    },
    /// Type 25 (RFC 8106).
    Rdnss {
        lifetime: u32,
        servers: Vec<Ipv6Addr>,
    },
    /// Type 31 (RFC 8106); names without the trailing dot.
    Dnssl { lifetime: u32, domains: Vec<String> },
    /// Type 38 (RFC 8781). `lifetime` in seconds, a multiple of 8 up to 65528; the prefix
    /// length one of 32, 40, 48, 56, 64, 96.
    Pref64 {
        lifetime: u16,
        prefix: Ipv6Addr,
        length: u8,
    },
    /// Anything else, as received (the bytes after type and length).
    Unknown { code: u8, data: Vec<u8> },
}

/// Bytes as `aa:bb:cc` in JSON.
fn colon_hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let text: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    s.serialize_str(&text.join(":"))
}

/// Why an advertisement cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("PREF64 prefix length {0} is not one of 96, 64, 56, 48, 40, 32")]
    Pref64Length(u8),
    #[error("PREF64 lifetime {0} s is not a multiple of 8 up to 65528")]
    Pref64Lifetime(u16),
    #[error("search domain {0:?} cannot be encoded (labels of 1 to 63 bytes)")]
    Domain(String),
    #[error("prefix length {0} is above 128")]
    PrefixLength(u8),
    #[error("an option of {0} bytes is longer than the 2040 bytes an option can have")]
    TooLong(usize),
}

/// Why bytes are not a Router Advertisement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes: shorter than the 16-byte header")]
    Short(usize),
    #[error("ICMPv6 type {0}, code {1}: not a router advertisement")]
    NotAdvert(u8, u8),
    #[error("option at byte {0}: {1}")]
    Option(usize, OptionError),
}

/// A malformed option (RFC 4861 section 4.6: length 0, or longer than what is left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("length 0")]
    ZeroLength,
    #[error("truncated: {needed} bytes announced, {left} left")]
    Truncated { needed: usize, left: usize },
}

/// The 3-bit prefix length code of PREF64 (RFC 8781 section 4).
pub fn pref64_plc(len: u8) -> Option<u8> {
    match len {
        96 => Some(0),
        64 => Some(1),
        56 => Some(2),
        48 => Some(3),
        40 => Some(4),
        32 => Some(5),
        _ => None,
    }
}

/// The prefix length for a PREF64 prefix length code.
pub fn pref64_length(plc: u8) -> Option<u8> {
    [96, 64, 56, 48, 40, 32].get(usize::from(plc)).copied()
}

/// Splits an option area into (offset, type, whole option bytes), checking every length.
pub fn options(
    area: &[u8],
) -> impl Iterator<Item = Result<(usize, u8, &[u8]), (usize, OptionError)>> {
    let mut at = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= area.len() {
            return None;
        }
        let left = area.len() - at;
        if left < 2 {
            failed = true;
            return Some(Err((at, OptionError::Truncated { needed: 2, left })));
        }
        let len = usize::from(area[at + 1]) * 8;
        if len == 0 {
            failed = true;
            return Some(Err((at, OptionError::ZeroLength)));
        }
        if len > left {
            failed = true;
            return Some(Err((at, OptionError::Truncated { needed: len, left })));
        }
        let item = (at, area[at], &area[at..at + len]);
        at += len;
        Some(Ok(item))
    })
}

fn push_option(out: &mut Vec<u8>, code: u8, body: &[u8]) -> Result<(), EncodeError> {
    // Type and length, the body, zero padding to a multiple of 8.
    let total = (2 + body.len()).div_ceil(8) * 8;
    let units = u8::try_from(total / 8).map_err(|_| EncodeError::TooLong(total))?;
    out.push(code);
    out.push(units);
    out.extend_from_slice(body);
    out.resize(out.len() + total - 2 - body.len(), 0);
    Ok(())
}

fn prefix_bits(prefix: Ipv6Addr, len: u8) -> Result<[u8; 16], EncodeError> {
    if len > 128 {
        return Err(EncodeError::PrefixLength(len));
    }
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    Ok((u128::from(prefix) & mask).to_be_bytes())
}

/// A domain name in DNS wire format (RFC 1035 section 3.1, no compression).
fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or_else(|| EncodeError::Domain(name.to_owned()))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// The bytes of a Router Advertisement, from the ICMPv6 type byte on (checksum 0).
pub fn encode(a: &Advert) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&[ROUTER_ADVERTISEMENT, 0, 0, 0, a.hop_limit]);
    out.push(u8::from(a.managed) << 7 | u8::from(a.other_config) << 6);
    out.extend_from_slice(&a.router_lifetime.to_be_bytes());
    out.extend_from_slice(&a.reachable_time.to_be_bytes());
    out.extend_from_slice(&a.retrans_timer.to_be_bytes());
    for o in &a.options {
        match o {
            NdOption::SourceLinkLayer { address } => {
                push_option(&mut out, OPT_SOURCE_LINK_LAYER, address)?;
            }
            NdOption::Mtu { mtu } => {
                let mut body = vec![0, 0];
                body.extend_from_slice(&mtu.to_be_bytes());
                push_option(&mut out, OPT_MTU, &body)?;
            }
            NdOption::PrefixInformation {
                prefix,
                length,
                on_link,
                autonomous,
                valid_lifetime,
                preferred_lifetime,
            } => {
                let mut body = vec![
                    *length,
                    u8::from(*on_link) << 7 | u8::from(*autonomous) << 6,
                ];
                body.extend_from_slice(&valid_lifetime.to_be_bytes());
                body.extend_from_slice(&preferred_lifetime.to_be_bytes());
                body.extend_from_slice(&[0; 4]);
                body.extend_from_slice(&prefix_bits(*prefix, *length)?);
                push_option(&mut out, OPT_PREFIX_INFORMATION, &body)?;
            }
            NdOption::Rdnss { lifetime, servers } => {
                let mut body = vec![0, 0];
                body.extend_from_slice(&lifetime.to_be_bytes());
                for s in servers {
                    body.extend_from_slice(&s.octets());
                }
                push_option(&mut out, OPT_RDNSS, &body)?;
            }
            NdOption::Dnssl { lifetime, domains } => {
                let mut body = vec![0, 0];
                body.extend_from_slice(&lifetime.to_be_bytes());
                for d in domains {
                    encode_name(d, &mut body)?;
                }
                push_option(&mut out, OPT_DNSSL, &body)?;
            }
            NdOption::Pref64 {
                lifetime,
                prefix,
                length,
            } => {
                let plc = pref64_plc(*length).ok_or(EncodeError::Pref64Length(*length))?;
                if lifetime % 8 != 0 || *lifetime > 65528 {
                    return Err(EncodeError::Pref64Lifetime(*lifetime));
                }
                let word = (lifetime / 8) << 3 | u16::from(plc);
                let mut body = word.to_be_bytes().to_vec();
                body.extend_from_slice(&prefix_bits(*prefix, *length)?[..12]);
                push_option(&mut out, OPT_PREF64, &body)?;
            }
            NdOption::Unknown { code, data } => push_option(&mut out, *code, data)?,
        }
    }
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut w = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        w.copy_from_slice(s);
    }
    Ipv6Addr::from(w)
}

/// Names of a DNSSL option body (after reserved and lifetime); `None` when malformed.
fn decode_names(mut b: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len == 0 {
            // End of a name, or padding after the last one.
            if !labels.is_empty() {
                names.push(labels.join("."));
                labels.clear();
            }
            b = rest;
            continue;
        }
        let len = usize::from(len);
        if len > 63 || len > rest.len() {
            return None;
        }
        labels.push(String::from_utf8_lossy(&rest[..len]).into_owned());
        b = &rest[len..];
    }
    // A name must end with its root label.
    labels.is_empty().then_some(names)
}

fn decode_option(code: u8, o: &[u8]) -> NdOption {
    let unknown = || NdOption::Unknown {
        code,
        data: o[2..].to_vec(),
    };
    match code {
        OPT_SOURCE_LINK_LAYER => {
            // Ethernet: 6 bytes, then padding; other links keep the whole field.
            let address = if o.len() == 8 {
                o[2..8].to_vec()
            } else {
                o[2..].to_vec()
            };
            NdOption::SourceLinkLayer { address }
        }
        OPT_MTU if o.len() == 8 => NdOption::Mtu { mtu: be32(o, 4) },
        OPT_PREFIX_INFORMATION if o.len() == 32 => NdOption::PrefixInformation {
            length: o[2],
            on_link: o[3] & 0x80 != 0,
            autonomous: o[3] & 0x40 != 0,
            valid_lifetime: be32(o, 4),
            preferred_lifetime: be32(o, 8),
            prefix: addr(o, 16),
        },
        OPT_RDNSS if o.len() >= 24 && (o.len() - 8).is_multiple_of(16) => NdOption::Rdnss {
            lifetime: be32(o, 4),
            servers: (8..o.len()).step_by(16).map(|at| addr(o, at)).collect(),
        },
        OPT_DNSSL if o.len() >= 16 => match decode_names(&o[8..]) {
            Some(domains) => NdOption::Dnssl {
                lifetime: be32(o, 4),
                domains,
            },
            None => unknown(),
        },
        OPT_PREF64 if o.len() == 16 => {
            let word = u16::from_be_bytes([o[2], o[3]]);
            match pref64_length((word & 7) as u8) {
                Some(length) => {
                    let mut p = [0u8; 16];
                    p[..12].copy_from_slice(&o[4..16]);
                    NdOption::Pref64 {
                        lifetime: (word >> 3) * 8,
                        prefix: Ipv6Addr::from(p),
                        length,
                    }
                }
                // RFC 8781 section 4: a receiver ignores an unknown prefix length code.
                None => unknown(),
            }
        }
        _ => unknown(),
    }
}

/// A Router Advertisement from its bytes (starting at the ICMPv6 type).
pub fn decode(b: &[u8]) -> Result<Advert, DecodeError> {
    if b.len() < RA_HEADER_LEN {
        return Err(DecodeError::Short(b.len()));
    }
    if b[0] != ROUTER_ADVERTISEMENT || b[1] != 0 {
        return Err(DecodeError::NotAdvert(b[0], b[1]));
    }
    let mut options = Vec::new();
    for item in self::options(&b[RA_HEADER_LEN..]) {
        let (_, code, o) = item.map_err(|(at, e)| DecodeError::Option(RA_HEADER_LEN + at, e))?;
        options.push(decode_option(code, o));
    }
    Ok(Advert {
        hop_limit: b[4],
        managed: b[5] & 0x80 != 0,
        other_config: b[5] & 0x40 != 0,
        router_lifetime: u16::from_be_bytes([b[6], b[7]]),
        reachable_time: be32(b, 8),
        retrans_timer: be32(b, 12),
        options,
    })
}

/// Why a Router Solicitation is not valid (RFC 4861 section 6.1.1). Each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("hop limit {0}, must be 255")]
    HopLimit(u8),
    #[error("hop limit unknown (no IPV6_HOPLIMIT ancillary data)")]
    HopLimitUnknown,
    #[error("ICMP code {0}, must be 0")]
    Code(u8),
    #[error("{0} bytes, shorter than the 8 a solicitation needs")]
    TooShort(usize),
    #[error("option at byte {0} has length 0")]
    OptionLength(usize),
    #[error("option at byte {at} is truncated ({needed} bytes announced, {left} left)")]
    Truncated {
        at: usize,
        needed: usize,
        left: usize,
    },
    #[error("source address unspecified but a source link-layer address option is present")]
    SourceLinkLayerFromUnspecified,
    #[error("ICMPv6 type {0} is not a router solicitation")]
    NotSolicitation(u8),
}

impl Refusal {
    /// The counter name (`rs-refused-...`).
    pub fn counter(self) -> &'static str {
        match self {
            Refusal::HopLimit(_) | Refusal::HopLimitUnknown => "rs-refused-hop-limit",
            Refusal::Code(_) => "rs-refused-code",
            Refusal::TooShort(_) | Refusal::NotSolicitation(_) => "rs-refused-too-short",
            Refusal::OptionLength(_) => "rs-refused-option-length",
            Refusal::Truncated { .. } => "rs-refused-truncated-option",
            Refusal::SourceLinkLayerFromUnspecified => "rs-refused-source-slla",
        }
    }
}

/// What a valid solicitation said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solicitation {
    /// The source link-layer address option, when present.
    pub source_link_layer: Option<Vec<u8>>,
}

/// Checks a received Router Solicitation (`icmp` from the ICMPv6 type on; the kernel has
/// verified the checksum) as RFC 4861 section 6.1.1 asks: IP hop limit 255, code 0, ICMP
/// length at least 8, every option with a length that is not 0 and fits, and no source
/// link-layer address option when the source address is unspecified.
pub fn check_solicitation(
    icmp: &[u8],
    hop_limit: Option<u8>,
    source_unspecified: bool,
) -> Result<Solicitation, Refusal> {
    match hop_limit {
        Some(255) => {}
        Some(h) => return Err(Refusal::HopLimit(h)),
        None => return Err(Refusal::HopLimitUnknown),
    }
    if icmp.len() < 8 {
        return Err(Refusal::TooShort(icmp.len()));
    }
    if icmp[0] != ROUTER_SOLICITATION {
        return Err(Refusal::NotSolicitation(icmp[0]));
    }
    if icmp[1] != 0 {
        return Err(Refusal::Code(icmp[1]));
    }
    let mut source_link_layer = None;
    for item in options(&icmp[8..]) {
        match item {
            Ok((_, OPT_SOURCE_LINK_LAYER, o)) => {
                if source_unspecified {
                    return Err(Refusal::SourceLinkLayerFromUnspecified);
                }
                source_link_layer = Some(o[2..].to_vec());
            }
            Ok(_) => {}
            Err((at, OptionError::ZeroLength)) => return Err(Refusal::OptionLength(8 + at)),
            Err((at, OptionError::Truncated { needed, left })) => {
                return Err(Refusal::Truncated {
                    at: 8 + at,
                    needed,
                    left,
                });
            }
        }
    }
    Ok(Solicitation { source_link_layer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn full() -> Advert {
        Advert {
            hop_limit: 64,
            managed: false,
            other_config: true,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
            options: vec![
                NdOption::SourceLinkLayer {
                    address: vec![0x02, 0x00, 0x5e, 0x10, 0x20, 0x30],
                },
                NdOption::Mtu { mtu: 1500 },
                NdOption::PrefixInformation {
                    prefix: ip("2001:db8:1::"),
                    length: 64,
                    on_link: true,
                    autonomous: true,
                    valid_lifetime: 2_592_000,
                    preferred_lifetime: 604_800,
                },
                NdOption::Rdnss {
                    lifetime: 1800,
                    servers: vec![ip("2001:db8:1::1")],
                },
                NdOption::Dnssl {
                    lifetime: 1800,
                    domains: vec!["example.test".into()],
                },
                NdOption::Pref64 {
                    lifetime: 1800,
                    prefix: ip("2001:db8:64::"),
                    length: 96,
                },
            ],
        }
    }

    /// The whole message, written out by hand from RFC 4861/8106/8781.
    #[test]
    fn encodes_every_option_byte_for_byte() {
        let want = hex("86 00 0000 40 40 0708 00000000 00000000
             01 01 02005e102030
             05 01 0000 000005dc
             03 04 40 c0 00278d00 00093a80 00000000 20010db8000100000000000000000000
             19 03 0000 00000708 20010db8000100000000000000000001
             1f 03 0000 00000708 076578616d706c6504746573740000 00
             26 02 0708 20010db8006400000000 0000");
        let got = encode(&full()).expect("encodes");
        assert_eq!(got, want);
        assert_eq!(decode(&got).expect("decodes"), full());
    }

    #[test]
    fn pref64_for_every_prefix_length() {
        // Scaled lifetime 600 s = 75 units: 75 << 3 = 0x0258, plus the code.
        for (len, plc, prefix, bits) in [
            (96, 0, "64:ff9b::", "0064ff9b0000000000000000"),
            (64, 1, "2001:db8:1:2::", "20010db8000100020000 0000"),
            (56, 2, "2001:db8:1:200::", "20010db80001020000000000"),
            (48, 3, "2001:db8:1::", "20010db80001000000000000"),
            (40, 4, "2001:db8:100::", "20010db80100000000000000"),
            (32, 5, "2001:db8::", "20010db80000000000000000"),
        ] {
            let a = Advert {
                options: vec![NdOption::Pref64 {
                    lifetime: 600,
                    prefix: ip(prefix),
                    length: len,
                }],
                ..full()
            };
            let got = encode(&a).expect("encodes");
            let mut want = vec![0x26, 0x02, 0x02, 0x58 | plc];
            want.extend(hex(bits));
            assert_eq!(&got[16..], &want[..], "/{len}");
            assert_eq!(decode(&got).expect("decodes"), a, "/{len}");
        }
        // Lifetime 0 and the largest one.
        for (lifetime, word) in [(0u16, 0u16), (65528, 0xfff8)] {
            let a = Advert {
                options: vec![NdOption::Pref64 {
                    lifetime,
                    prefix: ip("64:ff9b::"),
                    length: 96,
                }],
                ..full()
            };
            let got = encode(&a).expect("encodes");
            assert_eq!(&got[18..20], &word.to_be_bytes());
        }
        let bad = |lifetime, length| Advert {
            options: vec![NdOption::Pref64 {
                lifetime,
                prefix: ip("64:ff9b::"),
                length,
            }],
            ..full()
        };
        assert_eq!(encode(&bad(601, 96)), Err(EncodeError::Pref64Lifetime(601)));
        assert_eq!(encode(&bad(600, 80)), Err(EncodeError::Pref64Length(80)));
    }

    #[test]
    fn pref64_with_a_reserved_length_code_is_ignored() {
        let mut b = encode(&full()).expect("encodes");
        let at = b.len() - 16;
        b[at + 3] = (b[at + 3] & !7) | 6;
        let a = decode(&b).expect("decodes");
        assert!(matches!(
            a.options.last(),
            Some(NdOption::Unknown { code: 38, .. })
        ));
    }

    #[test]
    fn dnssl_with_several_names_pads_to_eight_bytes() {
        let a = Advert {
            options: vec![NdOption::Dnssl {
                lifetime: 0,
                domains: vec!["a.example".into(), "b".into()],
            }],
            ..full()
        };
        let got = encode(&a).expect("encodes");
        let body = &got[16..];
        assert_eq!(body.len() % 8, 0);
        assert_eq!(
            body,
            &hex("1f 03 0000 00000000 01 61 07 6578616d706c65 00 01 62 00 0000")[..]
        );
        assert_eq!(decode(&got).expect("decodes"), a);
        let long = "x".repeat(64);
        let a = Advert {
            options: vec![NdOption::Dnssl {
                lifetime: 0,
                domains: vec![long.clone()],
            }],
            ..full()
        };
        assert_eq!(encode(&a), Err(EncodeError::Domain(long)));
    }

    #[test]
    fn decode_refuses_malformed_options_and_never_panics() {
        let good = encode(&full()).expect("encodes");
        assert_eq!(decode(&good[..10]), Err(DecodeError::Short(10)));
        let mut zero = good.clone();
        zero[17] = 0;
        assert_eq!(
            decode(&zero),
            Err(DecodeError::Option(16, OptionError::ZeroLength))
        );
        let cut = &good[..good.len() - 3];
        assert!(matches!(
            decode(cut),
            Err(DecodeError::Option(_, OptionError::Truncated { .. }))
        ));
        // Every prefix and every single-byte change: an answer, never a panic.
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = decode(&b);
            }
        }
    }

    #[test]
    fn solicitation_checks() {
        let slla = hex("85 00 0000 00000000 01 01 020000000001");
        let plain = hex("85 00 0000 00000000");
        let ok = check_solicitation(&slla, Some(255), false).expect("valid");
        assert_eq!(ok.source_link_layer, Some(vec![2, 0, 0, 0, 0, 1]));
        assert!(check_solicitation(&plain, Some(255), true).is_ok());
        // An unknown option is skipped.
        assert!(
            check_solicitation(
                &hex("85 00 0000 00000000 63 01 000000000000"),
                Some(255),
                false
            )
            .is_ok()
        );
        let cases = [
            (
                check_solicitation(&slla, Some(64), false),
                Refusal::HopLimit(64),
            ),
            (
                check_solicitation(&slla, None, false),
                Refusal::HopLimitUnknown,
            ),
            (
                check_solicitation(&hex("85 01 0000 00000000"), Some(255), false),
                Refusal::Code(1),
            ),
            (
                check_solicitation(&hex("85 00 0000"), Some(255), false),
                Refusal::TooShort(4),
            ),
            (
                check_solicitation(
                    &hex("85 00 0000 00000000 01 00 020000000001"),
                    Some(255),
                    false,
                ),
                Refusal::OptionLength(8),
            ),
            (
                check_solicitation(
                    &hex("85 00 0000 00000000 01 02 020000000001"),
                    Some(255),
                    false,
                ),
                Refusal::Truncated {
                    at: 8,
                    needed: 16,
                    left: 8,
                },
            ),
            (
                check_solicitation(&hex("85 00 0000 00000000 01"), Some(255), false),
                Refusal::Truncated {
                    at: 8,
                    needed: 2,
                    left: 1,
                },
            ),
            (
                check_solicitation(&slla, Some(255), true),
                Refusal::SourceLinkLayerFromUnspecified,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, Err(want));
        }
        assert_eq!(Refusal::HopLimit(1).counter(), "rs-refused-hop-limit");
    }
}
