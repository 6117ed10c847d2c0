//! IPv4-embedded IPv6 addresses (RFC 6052 section 2.2) and the well-known-prefix rules.
//!
//! Written with constant indexes only, so the eBPF program can call it without bounds checks.

/// The well-known prefix 64:ff9b::/96.
pub const WELL_KNOWN_PREFIX: [u8; 16] = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Whether `len` is a prefix length RFC 6052 defines.
pub const fn valid_prefix_len(len: u8) -> bool {
    matches!(len, 32 | 40 | 48 | 56 | 64 | 96)
}

/// Embeds `v4` into `prefix` (which has the given length; its host bits must be zero).
/// An invalid length yields the /96 layout; validation is the caller's job.
#[inline(always)]
pub fn embed(prefix: &[u8; 16], len: u8, v4: [u8; 4]) -> [u8; 16] {
    let mut a = *prefix;
    match len {
        32 => {
            a[4] = v4[0];
            a[5] = v4[1];
            a[6] = v4[2];
            a[7] = v4[3];
        }
        40 => {
            a[5] = v4[0];
            a[6] = v4[1];
            a[7] = v4[2];
            a[9] = v4[3];
        }
        48 => {
            a[6] = v4[0];
            a[7] = v4[1];
            a[9] = v4[2];
            a[10] = v4[3];
        }
        56 => {
            a[7] = v4[0];
            a[9] = v4[1];
            a[10] = v4[2];
            a[11] = v4[3];
        }
        64 => {
            a[9] = v4[0];
            a[10] = v4[1];
            a[11] = v4[2];
            a[12] = v4[3];
        }
        _ => {
            a[12] = v4[0];
            a[13] = v4[1];
            a[14] = v4[2];
            a[15] = v4[3];
        }
    }
    a
}

/// Extracts the embedded IPv4 address. The caller checked [`matches_prefix`].
#[inline(always)]
pub fn extract(addr: &[u8; 16], len: u8) -> [u8; 4] {
    match len {
        32 => [addr[4], addr[5], addr[6], addr[7]],
        40 => [addr[5], addr[6], addr[7], addr[9]],
        48 => [addr[6], addr[7], addr[9], addr[10]],
        56 => [addr[7], addr[9], addr[10], addr[11]],
        64 => [addr[9], addr[10], addr[11], addr[12]],
        _ => [addr[12], addr[13], addr[14], addr[15]],
    }
}

/// Whether `addr` lies inside `prefix`/`len` (the first `len / 8` bytes match; every valid
/// length is a multiple of 8).
#[inline(always)]
pub fn matches_prefix(addr: &[u8; 16], prefix: &[u8; 16], len: u8) -> bool {
    let n = (len / 8) as usize;
    let mut i = 0;
    // Bounded by 12: the longest prefix is 96 bits.
    while i < 12 {
        if i < n && addr[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
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
pub fn check_prefix(prefix: &[u8; 16], len: u8) -> Result<(), PrefixError> {
    if !valid_prefix_len(len) {
        return Err(PrefixError::Length);
    }
    if len > 64 && prefix[8] != 0 {
        return Err(PrefixError::UOctet);
    }
    let n = (len / 8) as usize;
    if prefix[n..].iter().any(|&b| b != 0) {
        return Err(PrefixError::HostBits);
    }
    Ok(())
}

/// Whether `prefix`/`len` is the well-known prefix 64:ff9b::/96.
pub fn is_well_known(prefix: &[u8; 16], len: u8) -> bool {
    len == 96 && *prefix == WELL_KNOWN_PREFIX
}

/// IPv4 ranges that are not globally reachable (IANA special-purpose registry, RFC 6890 and
/// successors) plus multicast and broadcast. Under the well-known prefix they are not translated
/// (RFC 6052 section 3.1) unless the operator allows it.
const NON_GLOBAL: [([u8; 4], u8); 16] = [
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 31, 196, 0], 24),
    ([192, 52, 193, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

/// Whether an IPv4 address is globally reachable. 192.0.0.9, 192.0.0.10 (globally reachable
/// anycast) and 192.0.0.170/171 (RFC 7050 ipv4only.arpa) count as global.
#[inline(always)]
pub fn is_global(v4: [u8; 4]) -> bool {
    if v4[0] == 192 && v4[1] == 0 && v4[2] == 0 && matches!(v4[3], 9 | 10 | 170 | 171) {
        return true;
    }
    let a = u32::from_be_bytes(v4);
    let mut i = 0;
    while i < NON_GLOBAL.len() {
        let (net, len) = NON_GLOBAL[i];
        let mask = u32::MAX << (32 - len as u32);
        if a & mask == u32::from_be_bytes(net) {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> [u8; 16] {
        let a: core::net::Ipv6Addr = s.parse().expect("test address");
        a.octets()
    }

    /// RFC 6052 section 2.4, table 1: 192.0.2.33 under each prefix length.
    #[test]
    fn rfc6052_table1() {
        let v4 = [192, 0, 2, 33];
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
            assert_eq!(check_prefix(&p, len), Ok(()), "{prefix}/{len}");
            let e = embed(&p, len, v4);
            assert_eq!(e, v6(expected), "{prefix}/{len}");
            assert!(matches_prefix(&e, &p, len));
            assert_eq!(extract(&e, len), v4, "{prefix}/{len}");
        }
    }

    #[test]
    fn bad_prefixes() {
        assert_eq!(check_prefix(&v6("2001:db8::"), 33), Err(PrefixError::Length));
        assert_eq!(check_prefix(&v6("2001:db8::"), 128), Err(PrefixError::Length));
        assert_eq!(check_prefix(&v6("2001:db8::1"), 96), Err(PrefixError::HostBits));
        assert_eq!(check_prefix(&v6("2001:db8:0:0:100::"), 96), Err(PrefixError::UOctet));
        assert_eq!(check_prefix(&v6("2001:db8:1::"), 32), Err(PrefixError::HostBits));
    }

    #[test]
    fn prefix_match() {
        let p = v6("2001:db8:64::");
        assert!(matches_prefix(&v6("2001:db8:64::c000:201"), &p, 96));
        assert!(!matches_prefix(&v6("2001:db8:65::c000:201"), &p, 96));
        assert!(!matches_prefix(&v6("2001:db8:64:0:0:1::1"), &p, 96));
        assert!(matches_prefix(&v6("2001:db8:64:0:0:1::1"), &p, 64));
    }

    #[test]
    fn global_ranges() {
        for a in [[1, 2, 3, 4], [8, 8, 8, 8], [192, 0, 0, 170], [192, 0, 0, 171], [172, 32, 0, 1]] {
            assert!(is_global(a), "{a:?}");
        }
        for a in [
            [10, 1, 2, 3],
            [127, 0, 0, 1],
            [192, 168, 1, 1],
            [172, 16, 0, 1],
            [172, 31, 255, 255],
            [100, 64, 0, 1],
            [169, 254, 1, 1],
            [192, 0, 2, 1],
            [198, 19, 0, 1],
            [224, 0, 0, 1],
            [255, 255, 255, 255],
            [0, 1, 2, 3],
        ] {
            assert!(!is_global(a), "{a:?}");
        }
        assert!(is_well_known(&WELL_KNOWN_PREFIX, 96));
        assert!(!is_well_known(&WELL_KNOWN_PREFIX, 64));
    }
}
