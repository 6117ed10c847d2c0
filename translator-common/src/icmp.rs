//! RFC 7915 ICMP translation tables: type/code mapping for error messages, the
//! parameter-problem pointer mapping, and the MTU adjustment of Packet Too Big /
//! Fragmentation Needed. Echo messages are translated elsewhere (identifier as port).

/// ICMPv4 types.
pub const V4_ECHO_REPLY: u8 = 0;
pub const V4_DEST_UNREACH: u8 = 3;
pub const V4_ECHO_REQUEST: u8 = 8;
pub const V4_TIME_EXCEEDED: u8 = 11;
pub const V4_PARAM_PROBLEM: u8 = 12;
/// ICMPv6 types.
pub const V6_DEST_UNREACH: u8 = 1;
pub const V6_PACKET_TOO_BIG: u8 = 2;
pub const V6_TIME_EXCEEDED: u8 = 3;
pub const V6_PARAM_PROBLEM: u8 = 4;
pub const V6_ECHO_REQUEST: u8 = 128;
pub const V6_ECHO_REPLY: u8 = 129;

/// The smallest MTU an IPv6 link has (RFC 8200).
pub const IPV6_MIN_MTU: u32 = 1280;

/// What the 4-byte "rest of header" of a translated error carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    /// Unused (zero).
    Zero,
    /// An MTU to compute (Packet Too Big / Fragmentation Needed).
    Mtu,
    /// A pointer to map (Parameter Problem).
    Pointer,
    /// A fixed pointer value (ICMPv4 protocol unreachable -> ICMPv6 parameter problem).
    FixedPointer(u32),
}

/// ICMPv4 error -> ICMPv6 (RFC 7915 section 4.2). `None`: drop.
#[inline(always)]
pub const fn error_4to6(ty: u8, code: u8) -> Option<(u8, u8, Rest)> {
    match (ty, code) {
        (V4_DEST_UNREACH, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => {
            Some((V6_DEST_UNREACH, 0, Rest::Zero))
        }
        (V4_DEST_UNREACH, 2) => Some((V6_PARAM_PROBLEM, 1, Rest::FixedPointer(6))),
        (V4_DEST_UNREACH, 3) => Some((V6_DEST_UNREACH, 4, Rest::Zero)),
        (V4_DEST_UNREACH, 4) => Some((V6_PACKET_TOO_BIG, 0, Rest::Mtu)),
        (V4_DEST_UNREACH, 9 | 10 | 13 | 15) => Some((V6_DEST_UNREACH, 1, Rest::Zero)),
        (V4_TIME_EXCEEDED, 0 | 1) => Some((V6_TIME_EXCEEDED, code, Rest::Zero)),
        (V4_PARAM_PROBLEM, 0 | 2) => Some((V6_PARAM_PROBLEM, 0, Rest::Pointer)),
        _ => None,
    }
}

/// ICMPv6 error -> ICMPv4 (RFC 7915 section 5.2). `None`: drop.
#[inline(always)]
pub const fn error_6to4(ty: u8, code: u8) -> Option<(u8, u8, Rest)> {
    match (ty, code) {
        (V6_DEST_UNREACH, 0 | 2 | 3) => Some((V4_DEST_UNREACH, 1, Rest::Zero)),
        (V6_DEST_UNREACH, 1) => Some((V4_DEST_UNREACH, 10, Rest::Zero)),
        (V6_DEST_UNREACH, 4) => Some((V4_DEST_UNREACH, 3, Rest::Zero)),
        (V6_PACKET_TOO_BIG, 0) => Some((V4_DEST_UNREACH, 4, Rest::Mtu)),
        (V6_TIME_EXCEEDED, 0 | 1) => Some((V4_TIME_EXCEEDED, code, Rest::Zero)),
        (V6_PARAM_PROBLEM, 0) => Some((V4_PARAM_PROBLEM, 0, Rest::Pointer)),
        (V6_PARAM_PROBLEM, 1) => Some((V4_DEST_UNREACH, 2, Rest::Zero)),
        _ => None,
    }
}

/// Parameter-problem pointer, IPv4 header -> IPv6 header (RFC 7915 figure 3). `None`: drop.
#[inline(always)]
pub const fn pointer_4to6(p: u8) -> Option<u32> {
    match p {
        0 => Some(0),
        1 => Some(1),
        2 | 3 => Some(4),
        8 => Some(7),
        9 => Some(6),
        12..=15 => Some(8),
        16..=19 => Some(24),
        _ => None,
    }
}

/// Parameter-problem pointer, IPv6 header -> IPv4 header (RFC 7915 figure 6). `None`: drop.
#[inline(always)]
pub const fn pointer_6to4(p: u32) -> Option<u8> {
    match p {
        0 => Some(0),
        1 => Some(1),
        4 | 5 => Some(2),
        6 => Some(9),
        7 => Some(8),
        8..=23 => Some(12),
        24..=39 => Some(16),
        _ => None,
    }
}

/// RFC 1191 plateau below an IPv4 total length, for routers that report MTU 0.
#[inline(always)]
pub const fn plateau(total_len: u16) -> u16 {
    const PLATEAUS: [u16; 10] = [65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296];
    let mut i = 0;
    while i < PLATEAUS.len() {
        if PLATEAUS[i] < total_len {
            return PLATEAUS[i];
        }
        i += 1;
    }
    68
}

/// Fragmentation Needed -> Packet Too Big MTU (RFC 7915 section 4.2): the IPv4 MTU plus 20
/// (the plateau below the quoted packet's length when the router left it 0), no larger than
/// the IPv6 link MTU toward the client, and never below 1280.
#[inline(always)]
pub const fn mtu_4to6(mtu4: u16, inner_total_len: u16, mtu6_link: u32) -> u32 {
    let m4 = if mtu4 == 0 {
        plateau(inner_total_len)
    } else {
        mtu4
    };
    let mut m = m4 as u32 + 20;
    if mtu6_link != 0 && mtu6_link < m {
        m = mtu6_link;
    }
    if m < IPV6_MIN_MTU { IPV6_MIN_MTU } else { m }
}

/// Packet Too Big -> Fragmentation Needed MTU (RFC 7915 section 5.2): the IPv6 MTU minus 20,
/// no larger than the IPv4 link MTU, capped to 16 bits.
#[inline(always)]
pub const fn mtu_6to4(mtu6: u32, mtu4_link: u32) -> u16 {
    let mut m = mtu6.saturating_sub(20);
    if mtu4_link != 0 && mtu4_link < m {
        m = mtu4_link;
    }
    if m > 0xffff { 0xffff } else { m as u16 }
}

/// An ICMPv6 error about a hairpinned packet, translated to ICMPv4 and back to ICMPv6 as RFC
/// 6146 section 3.8 has hairpinned packets go: type, code and the "rest of header" word (host
/// order: an MTU or a pointer) it leaves with. `inner_total_len` is the quoted packet's total
/// length (for an MTU of 0). `None`: not translatable one of the two ways, dropped.
#[inline(always)]
pub const fn error_6to6(
    ty: u8,
    code: u8,
    rest: u32,
    inner_total_len: u16,
) -> Option<(u8, u8, u32)> {
    let Some((ty4, code4, kind4)) = error_6to4(ty, code) else {
        return None;
    };
    let rest4 = match kind4 {
        Rest::Zero => 0,
        Rest::Mtu => mtu_6to4(rest, 0) as u32,
        Rest::Pointer => match pointer_6to4(rest) {
            Some(p) => (p as u32) << 24,
            None => return None,
        },
        Rest::FixedPointer(p) => p,
    };
    let Some((ty6, code6, kind6)) = error_4to6(ty4, code4) else {
        return None;
    };
    let rest6 = match kind6 {
        Rest::Zero => 0,
        Rest::Mtu => mtu_4to6((rest4 & 0xffff) as u16, inner_total_len, 0),
        Rest::Pointer => match pointer_4to6((rest4 >> 24) as u8) {
            Some(p) => p,
            None => return None,
        },
        Rest::FixedPointer(p) => p,
    };
    Some((ty6, code6, rest6))
}

/// Whether an ICMPv4 type is an error message (never answered with an error).
#[inline(always)]
pub const fn is_error_v4(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// Whether an ICMPv6 type is an error message (types below 128).
#[inline(always)]
pub const fn is_error_v6(ty: u8) -> bool {
    ty < 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_code_tables() {
        // RFC 7915 section 4.2.
        assert_eq!(error_4to6(3, 0), Some((1, 0, Rest::Zero)));
        assert_eq!(error_4to6(3, 1), Some((1, 0, Rest::Zero)));
        assert_eq!(error_4to6(3, 2), Some((4, 1, Rest::FixedPointer(6))));
        assert_eq!(error_4to6(3, 3), Some((1, 4, Rest::Zero)));
        assert_eq!(error_4to6(3, 4), Some((2, 0, Rest::Mtu)));
        for c in [5, 6, 7, 8, 11, 12] {
            assert_eq!(error_4to6(3, c), Some((1, 0, Rest::Zero)), "3/{c}");
        }
        for c in [9, 10, 13, 15] {
            assert_eq!(error_4to6(3, c), Some((1, 1, Rest::Zero)), "3/{c}");
        }
        assert_eq!(error_4to6(3, 14), None);
        assert_eq!(error_4to6(11, 0), Some((3, 0, Rest::Zero)));
        assert_eq!(error_4to6(11, 1), Some((3, 1, Rest::Zero)));
        assert_eq!(error_4to6(12, 0), Some((4, 0, Rest::Pointer)));
        assert_eq!(error_4to6(12, 2), Some((4, 0, Rest::Pointer)));
        assert_eq!(error_4to6(12, 1), None);
        assert_eq!(error_4to6(4, 0), None); // source quench
        assert_eq!(error_4to6(5, 0), None); // redirect
        // RFC 7915 section 5.2.
        assert_eq!(error_6to4(1, 0), Some((3, 1, Rest::Zero)));
        assert_eq!(error_6to4(1, 1), Some((3, 10, Rest::Zero)));
        assert_eq!(error_6to4(1, 2), Some((3, 1, Rest::Zero)));
        assert_eq!(error_6to4(1, 3), Some((3, 1, Rest::Zero)));
        assert_eq!(error_6to4(1, 4), Some((3, 3, Rest::Zero)));
        assert_eq!(error_6to4(1, 5), None);
        assert_eq!(error_6to4(2, 0), Some((3, 4, Rest::Mtu)));
        assert_eq!(error_6to4(3, 0), Some((11, 0, Rest::Zero)));
        assert_eq!(error_6to4(3, 1), Some((11, 1, Rest::Zero)));
        assert_eq!(error_6to4(4, 0), Some((12, 0, Rest::Pointer)));
        assert_eq!(error_6to4(4, 1), Some((3, 2, Rest::Zero)));
        assert_eq!(error_6to4(4, 2), None);
    }

    #[test]
    fn pointers() {
        let v4 = [
            (0, Some(0)),
            (1, Some(1)),
            (2, Some(4)),
            (3, Some(4)),
            (4, None),
            (5, None),
            (6, None),
            (7, None),
            (8, Some(7)),
            (9, Some(6)),
            (10, None),
            (11, None),
            (12, Some(8)),
            (15, Some(8)),
            (16, Some(24)),
            (19, Some(24)),
            (20, None),
        ];
        for (p, want) in v4 {
            assert_eq!(pointer_4to6(p), want, "v4 pointer {p}");
        }
        let v6 = [
            (0, Some(0)),
            (1, Some(1)),
            (2, None),
            (3, None),
            (4, Some(2)),
            (5, Some(2)),
            (6, Some(9)),
            (7, Some(8)),
            (8, Some(12)),
            (23, Some(12)),
            (24, Some(16)),
            (39, Some(16)),
            (40, None),
        ];
        for (p, want) in v6 {
            assert_eq!(pointer_6to4(p), want, "v6 pointer {p}");
        }
    }

    #[test]
    fn hairpinned_errors_go_there_and_back() {
        // Port unreachable and time exceeded come back as they were; packet too big keeps its
        // MTU (minus 20, plus 20); the codes 6 -> 4 folds together come back as one.
        assert_eq!(error_6to6(1, 4, 0, 100), Some((1, 4, 0)));
        assert_eq!(error_6to6(1, 1, 0, 100), Some((1, 1, 0)));
        assert_eq!(error_6to6(1, 3, 0, 100), Some((1, 0, 0)));
        assert_eq!(error_6to6(3, 0, 0, 100), Some((3, 0, 0)));
        assert_eq!(error_6to6(2, 0, 1400, 1500), Some((2, 0, 1400)));
        assert_eq!(error_6to6(2, 0, 1280, 1500), Some((2, 0, 1280)));
        // Parameter problem: the pointer goes through the IPv4 header's field (7 -> 8 -> 7),
        // unrecognized next header becomes protocol unreachable and back (pointer 6).
        assert_eq!(error_6to6(4, 0, 7, 100), Some((4, 0, 7)));
        assert_eq!(error_6to6(4, 0, 24, 100), Some((4, 0, 24)));
        assert_eq!(error_6to6(4, 0, 2, 100), None);
        assert_eq!(error_6to6(4, 1, 40, 100), Some((4, 1, 6)));
        assert_eq!(error_6to6(1, 5, 0, 100), None);
    }

    #[test]
    fn mtus() {
        assert_eq!(mtu_4to6(1400, 1500, 1500), 1420);
        assert_eq!(mtu_4to6(1400, 1500, 1410), 1410);
        assert_eq!(mtu_4to6(576, 1500, 0), 1280);
        assert_eq!(mtu_4to6(0, 1500, 0), 1512); // plateau below 1500 is 1492
        assert_eq!(plateau(1500), 1492);
        assert_eq!(mtu_4to6(0, 3000, 9000), 2022);
        assert_eq!(mtu_6to4(1280, 0), 1260);
        assert_eq!(mtu_6to4(1500, 1400), 1400);
        assert_eq!(mtu_6to4(100_000, 0), 0xffff);
        assert_eq!(mtu_6to4(10, 0), 0);
    }
}
