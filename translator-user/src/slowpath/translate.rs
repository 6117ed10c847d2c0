//! The slow path's translation on whole buffers (pure functions, unit-tested): the data plane's
//! rules, with checksums computed in full, fragmentation to fit, and the IPv6 extension
//! headers RFC 7915 lets a translator skip.

use std::net::{Ipv4Addr, Ipv6Addr};

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    checksum::{finish, sum_bytes, update},
    rfc6052,
};

use super::{Output, Params};

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn v6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

pub(crate) fn v4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Transport checksum over a pseudo-header and the segment (the segment's checksum field zero).
pub(crate) fn l4_checksum(pseudo: &[u8], seg: &[u8]) -> u16 {
    let s = sum_bytes(pseudo) + sum_bytes(seg);
    // sum_bytes folds as it goes; the two partial sums still fit a u32.
    finish(s)
}

pub(crate) fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend([0, proto]);
    p.extend((len as u16).to_be_bytes());
    p
}

pub(crate) fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend((len as u32).to_be_bytes());
    p.extend([0, 0, 0, proto]);
    p
}

/// The offset of the checksum field in a transport header.
pub(crate) fn csum_at(proto: u8) -> Option<usize> {
    match proto {
        IPPROTO_TCP => Some(16),
        IPPROTO_UDP => Some(6),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => Some(2),
        _ => None,
    }
}

/// Rewrites a whole transport segment for the other family (or, hairpinned, the same one):
/// ports/identifier, ICMP echo type, and the checksum updated incrementally over what changed
/// (RFC 1624: the pseudo-header `pseudo_in` -> `pseudo_out`, and the words of the first eight
/// bytes), as the data plane does, so a checksum that was wrong stays wrong by the same
/// amount. Only an IPv4 UDP datagram without a checksum (zero) gets one computed in full.
pub(crate) fn rewrite_segment(
    seg: &mut [u8],
    proto_in: u8,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    pseudo_in: &[u8],
    pseudo_out: &[u8],
) -> Result<u8, &'static str> {
    let at = csum_at(proto_in).ok_or("protocol not translated")?;
    if seg.len() < at + 2 || seg.len() < 8 {
        return Err("transport header truncated");
    }
    // The words of the first eight bytes but the checksum field (for UDP and ICMP it is there).
    let head_sum = |seg: &[u8]| -> u32 {
        (0..8)
            .step_by(2)
            .filter(|i| *i != at)
            .map(|i| u32::from(u16::from_ne_bytes([seg[i], seg[i + 1]])))
            .sum()
    };
    let before = head_sum(seg);
    let old = u16::from_ne_bytes([seg[at], seg[at + 1]]);
    let no_udp_checksum = proto_in == IPPROTO_UDP && old == 0;
    let proto_out = match proto_in {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let (ty, to_v6) = match (proto_in, seg[0]) {
                (IPPROTO_ICMP, 8) => (128, true),
                (IPPROTO_ICMP, 0) => (129, true),
                // ICMPv4 has no pseudo-header; with one, ICMPv6 stays ICMPv6 (hairpinned).
                (IPPROTO_ICMPV6, 128) if pseudo_out.is_empty() => (8, false),
                (IPPROTO_ICMPV6, 129) if pseudo_out.is_empty() => (0, false),
                (IPPROTO_ICMPV6, t @ (128 | 129)) => (t, true),
                _ => return Err("only ICMP echo is translated here"),
            };
            seg[0] = ty;
            let id = if proto_in == IPPROTO_ICMP {
                dst_port
            } else {
                src_port.or(dst_port)
            };
            if let Some(p) = id {
                seg[4..6].copy_from_slice(&p.to_be_bytes());
            }
            if to_v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP }
        }
        p => {
            if let Some(sp) = src_port {
                seg[0..2].copy_from_slice(&sp.to_be_bytes());
            }
            if let Some(dp) = dst_port {
                seg[2..4].copy_from_slice(&dp.to_be_bytes());
            }
            p
        }
    };
    let c = if no_udp_checksum {
        seg[at..at + 2].copy_from_slice(&[0, 0]);
        l4_checksum(pseudo_out, seg)
    } else {
        update(
            old,
            sum_bytes(pseudo_in) + before,
            sum_bytes(pseudo_out) + head_sum(seg),
        )
    };
    let c = if c == 0 && proto_out == IPPROTO_UDP {
        0xffff
    } else {
        c
    };
    seg[at..at + 2].copy_from_slice(&c.to_ne_bytes());
    Ok(proto_out)
}

/// IPv4 header (20 bytes) with its checksum.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    tos: u8,
    id: u16,
    frag_word: u16,
    payload_len: usize,
) -> Vec<u8> {
    let mut h = vec![0x45, tos];
    h.extend(((20 + payload_len) as u16).to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(frag_word.to_be_bytes());
    h.extend([ttl, proto, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    let c = finish(sum_bytes(&h));
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    h
}

pub(crate) fn ipv6_header(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    nh: u8,
    hop: u8,
    tclass: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(40);
    h.extend(((6u32 << 28) | (u32::from(tclass) << 20)).to_be_bytes());
    h.extend((payload_len as u16).to_be_bytes());
    h.extend([nh, hop]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h
}

/// Cuts a payload into IPv4 fragments no larger than `mtu` (DF clear).
#[allow(clippy::too_many_arguments)]
pub fn fragment4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    tos: u8,
    id: u16,
    base_offset: usize,
    more_after: bool,
    payload: &[u8],
    mtu: usize,
) -> Vec<Vec<u8>> {
    let room = ((mtu.max(68) - 20) / 8) * 8;
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let end = (off + room).min(payload.len());
        let last = end == payload.len();
        let word =
            (((base_offset + off) / 8) as u16) | if !last || more_after { 0x2000 } else { 0 };
        let mut p = ipv4_header(src, dst, proto, ttl, tos, id, word, end - off);
        p.extend(&payload[off..end]);
        out.push(p);
        if last {
            return out;
        }
        off = end;
    }
}

/// Cuts a payload into IPv6 fragments no larger than `mtu` (a fragment header each).
#[allow(clippy::too_many_arguments)]
pub fn fragment6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    nh: u8,
    hop: u8,
    tclass: u8,
    id: u32,
    base_offset: usize,
    more_after: bool,
    payload: &[u8],
    mtu: usize,
) -> Vec<Vec<u8>> {
    let room = ((mtu.max(1280) - 48) / 8) * 8;
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let end = (off + room).min(payload.len());
        let last = end == payload.len();
        let mut p = ipv6_header(src, dst, 44, hop, tclass, 8 + end - off);
        let word = ((((base_offset + off) / 8) as u16) << 3) | u16::from(!last || more_after);
        p.extend([nh, 0]);
        p.extend(word.to_be_bytes());
        p.extend(id.to_be_bytes());
        p.extend(&payload[off..end]);
        out.push(p);
        if last {
            return out;
        }
        off = end;
    }
}

/// Translates a whole (reassembled or unfragmented) IPv6 datagram from a client, given its
/// binding. `seg` is the transport segment.
#[allow(clippy::too_many_arguments)]
pub fn whole_6to4(
    p: &Params,
    client: Ipv6Addr,
    dst6: Ipv6Addr,
    proto6: u8,
    hop: u8,
    tclass: u8,
    id: u16,
    mut seg: Vec<u8>,
    pool: (Ipv4Addr, u16),
) -> Result<Output, &'static str> {
    let remote = Ipv4Addr::from(rfc6052::extract(u128::from(dst6), p.prefix_len));
    let proto4 = if proto6 == IPPROTO_ICMPV6 {
        IPPROTO_ICMP
    } else {
        proto6
    };
    let pseudo_in = pseudo6(client, dst6, proto6, seg.len());
    let pseudo_out = if proto4 == IPPROTO_ICMP {
        Vec::new()
    } else {
        pseudo4(pool.0, remote, proto4, seg.len())
    };
    rewrite_segment(
        &mut seg,
        proto6,
        Some(pool.1),
        None,
        &pseudo_in,
        &pseudo_out,
    )?;
    Ok(Output::V4(fragment4(
        pool.0,
        remote,
        proto4,
        hop.saturating_sub(1),
        tclass,
        id,
        0,
        false,
        &seg,
        p.ipv4_mtu,
    )))
}

/// Translates a whole IPv4 datagram to the pool address `dst4`, given the session's client.
#[allow(clippy::too_many_arguments)]
pub fn whole_4to6(
    p: &Params,
    src4: Ipv4Addr,
    dst4: Ipv4Addr,
    proto4: u8,
    ttl: u8,
    tos: u8,
    id: u16,
    mut seg: Vec<u8>,
    client: (Ipv6Addr, u16),
) -> Result<Output, &'static str> {
    let src6 = Ipv6Addr::from(rfc6052::embed(p.prefix, p.prefix_len, u32::from(src4)));
    let proto6 = if proto4 == IPPROTO_ICMP {
        IPPROTO_ICMPV6
    } else {
        proto4
    };
    let pseudo_in = if proto4 == IPPROTO_ICMP {
        Vec::new()
    } else {
        pseudo4(src4, dst4, proto4, seg.len())
    };
    let pseudo_out = pseudo6(src6, client.0, proto6, seg.len());
    rewrite_segment(
        &mut seg,
        proto4,
        None,
        Some(client.1),
        &pseudo_in,
        &pseudo_out,
    )?;
    let hop = ttl.saturating_sub(1);
    if 40 + seg.len() <= p.ipv6_mtu {
        let mut pkt = ipv6_header(src6, client.0, proto6, hop, tos, seg.len());
        pkt.extend(&seg);
        return Ok(Output::V6(vec![pkt]));
    }
    Ok(Output::V6(fragment6(
        src6,
        client.0,
        proto6,
        hop,
        tos,
        u32::from(id),
        0,
        false,
        &seg,
        p.ipv6_mtu,
    )))
}

/// Walks IPv6 extension headers from `off` (next header `nh`): hop-by-hop and destination
/// options and routing headers with no segments left are skipped (RFC 7915 section 5.1);
/// with `stop_at_fragment`, the walk ends at a fragment header. Returns the next header and
/// its offset.
pub fn skip_extensions(
    pkt: &[u8],
    mut nh: u8,
    mut off: usize,
    stop_at_fragment: bool,
) -> Result<(u8, usize), &'static str> {
    for _ in 0..8 {
        match nh {
            0 | 60 | 43 => {
                if pkt.len() < off + 8 {
                    return Err("extension header truncated");
                }
                if nh == 43 && pkt[off + 3] != 0 {
                    return Err("routing header with segments left");
                }
                let len = (usize::from(pkt[off + 1]) + 1) * 8;
                nh = pkt[off];
                off += len;
            }
            44 if stop_at_fragment => return Ok((nh, off)),
            44 => return Err("a second fragment header"),
            _ => {
                return if off <= pkt.len() {
                    Ok((nh, off))
                } else {
                    Err("extension header truncated")
                };
            }
        }
    }
    Err("too many extension headers")
}
