//! IPv4-embedded IPv6 addresses (RFC 6052 section 2.2) and the well-known-prefix rules.
//!
//! The arithmetic works on host-order integers (`u128` for IPv6, `u32` for IPv4), which keeps it
//! to shifts and masks the eBPF program can afford; `raw*` helpers convert from and to the raw
//! network-order words that maps and packets hold.

/// The well-known prefix 64:ff9b::/96.
pub const WELL_KNOWN_PREFIX: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;

/// Whether `len` is a prefix length RFC 6052 defines.
pub const fn valid_prefix_len(len: u8) -> bool {
    matches!(len, 32 | 40 | 48 | 56 | 64 | 96)
}

/// Netmask of a prefix length (0..=128).
pub const fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else if len >= 128 {
        u128::MAX
    } else {
        u128::MAX << (128 - len as u32)
    }
}

/// Embeds `v4` into `prefix`/`len` (host bits of the prefix zero). An invalid length yields the
/// /96 layout; validation is the caller's job.
#[inline(always)]
pub const fn embed(prefix: u128, len: u8, v4: u32) -> u128 {
    let v = v4 as u128;
    prefix
        | match len {
            32 => v << 64,
            40 => ((v >> 8) << 64) | ((v & 0xff) << 48),
            48 => ((v >> 16) << 64) | ((v & 0xffff) << 40),
            56 => ((v >> 24) << 64) | ((v & 0xff_ffff) << 32),
            64 => v << 24,
            _ => v,
        }
}

/// Extracts the embedded IPv4 address (the caller checked the prefix matches).
#[inline(always)]
pub const fn extract(addr: u128, len: u8) -> u32 {
    match len {
        32 => (addr >> 64) as u32,
        40 => ((((addr >> 64) as u32) & 0xff_ffff) << 8) | (((addr >> 48) as u32) & 0xff),
        48 => ((((addr >> 64) as u32) & 0xffff) << 16) | (((addr >> 40) as u32) & 0xffff),
        56 => ((((addr >> 64) as u32) & 0xff) << 24) | (((addr >> 32) as u32) & 0xff_ffff),
        64 => (addr >> 24) as u32,
        _ => addr as u32,
    }
}

/// Raw network-order words of an IPv6 address (what maps and packets hold).
#[inline(always)]
pub const fn raw6(addr: u128) -> [u32; 4] {
    [
        ((addr >> 96) as u32).to_be(),
        ((addr >> 64) as u32).to_be(),
        ((addr >> 32) as u32).to_be(),
        (addr as u32).to_be(),
    ]
}

/// The host-order value of raw network-order IPv6 words.
#[inline(always)]
pub const fn from_raw6(raw: &[u32; 4]) -> u128 {
    ((u32::from_be(raw[0]) as u128) << 96)
        | ((u32::from_be(raw[1]) as u128) << 64)
        | ((u32::from_be(raw[2]) as u128) << 32)
        | u32::from_be(raw[3]) as u128
}

/// Raw network-order word of an IPv4 address.
#[inline(always)]
pub const fn raw4(addr: u32) -> u32 {
    addr.to_be()
}

/// The host-order value of a raw network-order IPv4 word.
#[inline(always)]
pub const fn from_raw4(raw: u32) -> u32 {
    u32::from_be(raw)
}

/// Prefix match on raw words: `addr & mask == prefix` (prefix and mask raw as well).
#[inline(always)]
pub const fn matches_raw(addr: &[u32; 4], prefix: &[u32; 4], mask: &[u32; 4]) -> bool {
    addr[0] & mask[0] == prefix[0]
        && addr[1] & mask[1] == prefix[1]
        && addr[2] & mask[2] == prefix[2]
        && addr[3] & mask[3] == prefix[3]
}

/// Why a prefix is not usable as a NAT64 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// Length not one of 32, 40, 48, 56, 64, 96.
    Length,
    /// Bits 64..71 (the "u" octet) are not zero.
    UOctet,
    /// Bits beyond the prefix length are set.
    HostBits,
}

/// Checks a prefix against RFC 6052 section 2.2.
pub const fn check_prefix(prefix: u128, len: u8) -> Result<(), PrefixError> {
    if !valid_prefix_len(len) {
        return Err(PrefixError::Length);
    }
    if prefix & !mask(len) != 0 {
        return Err(PrefixError::HostBits);
    }
    if (prefix >> 56) & 0xff != 0 {
        return Err(PrefixError::UOctet);
    }
    Ok(())
}

/// Whether `prefix`/`len` is the well-known prefix 64:ff9b::/96.
pub const fn is_well_known(prefix: u128, len: u8) -> bool {
    len == 96 && prefix == WELL_KNOWN_PREFIX
}

/// IPv4 ranges that are not globally reachable (IANA special-purpose registry, RFC 6890 and
/// successors) plus multicast and broadcast, as (network, length).
pub const NON_GLOBAL: [(u32, u8); 16] = [
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link local
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xc01f_c400, 24), // 192.31.196.0/24 AS112-v4
    (0xc034_c100, 24), // 192.52.193.0/24 AMT
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, broadcast
];

/// Whether an IPv4 address (host order) is globally reachable. 192.0.0.9, 192.0.0.10
/// (globally reachable anycast) and 192.0.0.170/171 (RFC 7050 ipv4only.arpa) count as global.
#[inline(always)]
pub const fn is_global(v4: u32) -> bool {
    if matches!(v4, 0xc000_0009 | 0xc000_000a | 0xc000_00aa | 0xc000_00ab) {
        return true;
    }
    let mut i = 0;
    while i < NON_GLOBAL.len() {
        let (net, len) = NON_GLOBAL[i];
        let m = u32::MAX << (32 - len as u32);
        if v4 & m == net {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn v6(s: &str) -> u128 {
        let a: Ipv6Addr = s.parse().expect("test address");
        a.into()
    }

    /// RFC 6052 section 2.4, table 1: 192.0.2.33 under each prefix length.
    #[test]
    fn rfc6052_table1() {
        let v4: u32 = Ipv4Addr::new(192, 0, 2, 33).into();
        let cases = [
            ("2001:db8::", 32, "2001:db8:c000:221::"),
            ("2001:db8:100::", 40, "2001:db8:1c0:2:21::"),
            ("2001:db8:122::", 48, "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::", 56, "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::", 64, "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::", 96, "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::", 96, "64:ff9b::192.0.2.33"),
        ];
        for (prefix, len, expected) in cases {
            let p = v6(prefix);
            assert_eq!(check_prefix(p, len), Ok(()), "{prefix}/{len}");
            let e = embed(p, len, v4);
            assert_eq!(
                Ipv6Addr::from(e),
                Ipv6Addr::from(v6(expected)),
                "{prefix}/{len}"
            );
            assert_eq!(e & mask(len), p);
            assert_eq!(extract(e, len), v4, "{prefix}/{len}");
            let (rp, rm) = (raw6(p), raw6(mask(len)));
            assert!(matches_raw(&raw6(e), &rp, &rm));
            assert_eq!(from_raw6(&raw6(e)), e);
        }
    }

    #[test]
    fn raw_words_are_wire_bytes() {
        let a = v6("2001:db8::c000:221");
        let raw = raw6(a);
        let mut bytes = [0u8; 16];
        for (i, w) in raw.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(bytes, Ipv6Addr::from(a).octets());
        assert_eq!(raw4(0xc000_0221).to_ne_bytes(), [192, 0, 2, 33]);
        assert_eq!(from_raw4(u32::from_ne_bytes([192, 0, 2, 33])), 0xc000_0221);
    }

    #[test]
    fn bad_prefixes() {
        assert_eq!(check_prefix(v6("2001:db8::"), 33), Err(PrefixError::Length));
        assert_eq!(
            check_prefix(v6("2001:db8::"), 128),
            Err(PrefixError::Length)
        );
        assert_eq!(
            check_prefix(v6("2001:db8::1"), 96),
            Err(PrefixError::HostBits)
        );
        assert_eq!(
            check_prefix(v6("2001:db8:0:0:100::"), 96),
            Err(PrefixError::UOctet)
        );
        assert_eq!(
            check_prefix(v6("2001:db8:1::"), 32),
            Err(PrefixError::HostBits)
        );
    }

    #[test]
    fn prefix_match() {
        let p = raw6(v6("2001:db8:64::"));
        let m96 = raw6(mask(96));
        let m64 = raw6(mask(64));
        assert!(matches_raw(&raw6(v6("2001:db8:64::c000:201")), &p, &m96));
        assert!(!matches_raw(&raw6(v6("2001:db8:65::c000:201")), &p, &m96));
        assert!(!matches_raw(&raw6(v6("2001:db8:64:0:0:1::1")), &p, &m96));
        assert!(matches_raw(&raw6(v6("2001:db8:64:0:0:1::1")), &p, &m64));
    }

    #[test]
    fn global_ranges() {
        let g = |s: &str| is_global(s.parse::<Ipv4Addr>().expect("test address").into());
        for a in [
            "1.2.3.4",
            "8.8.8.8",
            "192.0.0.170",
            "192.0.0.171",
            "172.32.0.1",
            "192.0.0.9",
        ] {
            assert!(g(a), "{a}");
        }
        for a in [
            "10.1.2.3",
            "127.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "100.64.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.19.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "192.0.0.1",
        ] {
            assert!(!g(a), "{a}");
        }
        assert!(is_well_known(WELL_KNOWN_PREFIX, 96));
        assert!(!is_well_known(WELL_KNOWN_PREFIX, 64));
    }
}
