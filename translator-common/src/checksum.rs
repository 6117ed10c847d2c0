//! Internet checksum arithmetic (RFC 1071, incremental update per RFC 1624).
//!
//! Sums are kept unfolded in a `u32` (16-bit words in network order read as big-endian numbers)
//! and folded once at the end; a `u32` holds 65 535 worst-case words without overflow.

/// Folds a 32-bit sum of 16-bit words into 16 bits (ones-complement, not inverted).
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Sum of the 16-bit words of an IPv4 address.
#[inline(always)]
pub const fn sum4(a: &[u8; 4]) -> u32 {
    (((a[0] as u32) << 8) | a[1] as u32) + (((a[2] as u32) << 8) | a[3] as u32)
}

/// Sum of the 16-bit words of an IPv6 address.
#[inline(always)]
pub const fn sum16(a: &[u8; 16]) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < 16 {
        s += ((a[i] as u32) << 8) | a[i + 1] as u32;
        i += 2;
    }
    s
}

/// Sum of a byte slice as 16-bit big-endian words (an odd last byte is padded with zero).
pub fn sum_bytes(bytes: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        s = s.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        s = (s & 0xffff) + (s >> 16);
    }
    if let [last] = chunks.remainder() {
        s += u32::from(*last) << 8;
    }
    s
}

/// The checksum field value for a complete sum (RFC 1071).
#[inline(always)]
pub const fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// Incremental update (RFC 1624 eqn. 3): the new checksum field after words summing to `removed`
/// were replaced by words summing to `added`.
#[inline(always)]
pub const fn update(old_field: u16, removed: u32, added: u32) -> u16 {
    let s = (!old_field) as u32 + (!fold(removed)) as u32 + fold(added) as u32;
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_bytes(&data)), 0xddf2);
        assert_eq!(finish(sum_bytes(&data)), !0xddf2);
    }

    /// A real IPv4 header (from a capture) checksums to zero, and a recomputed field matches.
    #[test]
    fn ipv4_header() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(fold(sum_bytes(&h)), 0xffff);
        h[10] = 0;
        h[11] = 0;
        assert_eq!(finish(sum_bytes(&h)), 0xb861);
    }

    #[test]
    fn incremental_matches_full() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let before = finish(sum_bytes(&data));
        let old = [data[4], data[5], data[6], data[7]];
        let new = [0xff, 0xfe, 0x00, 0x01];
        data[4..8].copy_from_slice(&new);
        let after = finish(sum_bytes(&data));
        assert_eq!(update(before, sum4(&old), sum4(&new)), after);
        // Replacing with the same words leaves the field as it was (up to the 0/ffff duality).
        let same = update(after, sum4(&new), sum4(&new));
        assert!(same == after || (same ^ after) == 0xffff && (after == 0 || after == 0xffff));
    }

    #[test]
    fn sums_of_addresses() {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0x00, 0x02, 0x21];
        assert_eq!(sum16(&a), sum_bytes(&a));
        assert_eq!(sum4(&[192, 0, 2, 33]), sum_bytes(&[192, 0, 2, 33]));
    }
}
