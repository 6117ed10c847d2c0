//! Internet checksum arithmetic (RFC 1071, incremental update per RFC 1624).
//!
//! The ones-complement sum does not depend on byte order (RFC 1071 section 2(B)): the data plane
//! sums raw 16-bit words as they sit in memory and writes the result back the same way, with no
//! byte swaps. Constants that enter a sum (protocol numbers, lengths) are converted to that raw
//! form with [`raw16`]. Sums are kept unfolded in a `u32` and folded once at the end; a `u32`
//! holds 65 535 worst-case words without overflow.

/// Folds a 32-bit sum of 16-bit words into 16 bits (ones-complement, not inverted).
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// A host-order 16-bit value as the raw word it is on the wire.
#[inline(always)]
pub const fn raw16(v: u16) -> u32 {
    v.to_be() as u32
}

/// Sum of the two raw words of a raw IPv4 address (or any raw 32-bit field).
#[inline(always)]
pub const fn sum_raw4(w: u32) -> u32 {
    (w & 0xffff) + (w >> 16)
}

/// Sum of the eight raw words of a raw IPv6 address.
#[inline(always)]
pub const fn sum_raw6(a: &[u32; 4]) -> u32 {
    sum_raw4(a[0]) + sum_raw4(a[1]) + sum_raw4(a[2]) + sum_raw4(a[3])
}

/// Sum of a byte slice as raw 16-bit words (an odd last byte is padded with zero, as on the
/// wire).
pub fn sum_bytes(bytes: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        s = s.wrapping_add(u32::from(u16::from_ne_bytes([c[0], c[1]])));
        s = (s & 0xffff) + (s >> 16);
    }
    if let [last] = chunks.remainder() {
        s += u32::from(u16::from_ne_bytes([*last, 0]));
    }
    s
}

/// The raw checksum field for a complete sum (RFC 1071).
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

    /// RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (big-endian view).
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(u16::from_be(fold(sum_bytes(&data))), 0xddf2);
    }

    /// A real IPv4 header (from a capture) verifies, and a recomputed field matches.
    #[test]
    fn ipv4_header() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(fold(sum_bytes(&h)), 0xffff);
        h[10] = 0;
        h[11] = 0;
        assert_eq!(finish(sum_bytes(&h)).to_ne_bytes(), [0xb8, 0x61]);
    }

    #[test]
    fn incremental_matches_full() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let before = finish(sum_bytes(&data));
        let old = u32::from_ne_bytes([data[4], data[5], data[6], data[7]]);
        let new = u32::from_ne_bytes([0xff, 0xfe, 0x00, 0x01]);
        data[4..8].copy_from_slice(&new.to_ne_bytes());
        let after = finish(sum_bytes(&data));
        assert_eq!(update(before, sum_raw4(old), sum_raw4(new)), after);
    }

    #[test]
    fn raw_sums_match_bytes() {
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0x00, 0x02, 0x21,
        ];
        let raw = [
            u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
            u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
            u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
            u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
        ];
        assert_eq!(fold(sum_raw6(&raw)), fold(sum_bytes(&a)));
        assert_eq!(fold(raw16(58)), fold(sum_bytes(&[0, 58])));
    }
}
