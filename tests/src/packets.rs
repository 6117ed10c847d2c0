//! An independent packet builder for tests and benchmarks (RFC 791, 8200, 768, 793, 792,
//! 4443): whole frames with checksums computed from scratch, never with the translator's own
//! checksum code, so expected packets do not share the data plane's mistakes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// RFC 1071 checksum of `data`, computed from scratch.
pub fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend([0, proto]);
            p.extend((len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend((len as u32).to_be_bytes());
            p.extend([0, 0, 0, proto]);
        }
        _ => unreachable!("mixed address families in a pseudo-header"),
    }
    p
}

pub fn with_checksum(mut seg: Vec<u8>, at: usize, sum_over: &[u8]) -> Vec<u8> {
    let mut all = sum_over.to_vec();
    all.extend(&seg);
    let c = csum(&all);
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    seg
}

pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = 8 + data.len();
    let mut seg = Vec::new();
    seg.extend(sport.to_be_bytes());
    seg.extend(dport.to_be_bytes());
    seg.extend((len as u16).to_be_bytes());
    seg.extend([0, 0]);
    seg.extend(data);
    let mut seg = with_checksum(seg, 6, &pseudo(src, dst, 17, len));
    if seg[6..8] == [0, 0] {
        seg[6..8].copy_from_slice(&[0xff, 0xff]);
    }
    seg
}

/// UDP over IPv4 without a checksum (legal in IPv4 only).
pub fn udp_nocsum(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut seg = Vec::new();
    seg.extend(sport.to_be_bytes());
    seg.extend(dport.to_be_bytes());
    seg.extend(((8 + data.len()) as u16).to_be_bytes());
    seg.extend([0, 0]);
    seg.extend(data);
    seg
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut seg = Vec::new();
    seg.extend(sport.to_be_bytes());
    seg.extend(dport.to_be_bytes());
    seg.extend(seq.to_be_bytes());
    seg.extend(ack.to_be_bytes());
    seg.extend([0x50, flags]);
    seg.extend(64240u16.to_be_bytes());
    seg.extend([0, 0, 0, 0]);
    let len = seg.len();
    with_checksum(seg, 16, &pseudo(src, dst, 6, len))
}

pub fn icmp4_echo(ty: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend(id.to_be_bytes());
    m.extend(seq.to_be_bytes());
    m.extend(data);
    with_checksum(m, 2, &[])
}

pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend(id.to_be_bytes());
    m.extend(seq.to_be_bytes());
    m.extend(data);
    let len = m.len();
    with_checksum(m, 2, &pseudo(src.into(), dst.into(), 58, len))
}

pub fn icmp4_err(ty: u8, code: u8, rest: u32, inner: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend(rest.to_be_bytes());
    m.extend(inner);
    with_checksum(m, 2, &[])
}

pub fn icmp6_err(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: u8,
    code: u8,
    rest: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend(rest.to_be_bytes());
    m.extend(inner);
    let len = m.len();
    with_checksum(m, 2, &pseudo(src.into(), dst.into(), 58, len))
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, hlim: u8, tclass: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    let vtc: u32 = (6 << 28) | (u32::from(tclass) << 20);
    p.extend(vtc.to_be_bytes());
    p.extend((payload.len() as u16).to_be_bytes());
    p.extend([nh, hlim]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(payload);
    p
}

#[allow(clippy::too_many_arguments)]
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    tos: u8,
    id: u16,
    df: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0x45, tos];
    h.extend(((20 + payload.len()) as u16).to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(if df { [0x40, 0] } else { [0, 0] });
    h.extend([ttl, proto, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

/// An IPv4 fragment: `offset` in bytes (a multiple of 8), `more` the MF flag, DF clear.
#[allow(clippy::too_many_arguments)]
pub fn frag4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    id: u16,
    offset: usize,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = ipv4(src, dst, proto, ttl, 0, id, false, payload);
    let word = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&word.to_be_bytes());
    h[10..12].copy_from_slice(&[0, 0]);
    let c = csum(&h[..20]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An IPv6 packet with a fragment header (RFC 8200 section 4.5).
#[allow(clippy::too_many_arguments)]
pub fn frag6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    nh: u8,
    hlim: u8,
    id: u32,
    offset: usize,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![nh, 0];
    let word = ((offset / 8) as u16) << 3 | u16::from(more);
    f.extend(word.to_be_bytes());
    f.extend(id.to_be_bytes());
    f.extend(payload);
    ipv6(src, dst, 44, hlim, 0, &f)
}
