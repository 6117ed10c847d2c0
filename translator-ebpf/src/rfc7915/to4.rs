//! IPv6 to IPv4 (RFC 7915 section 5): packets, later fragments, and ICMPv6 errors with the
//! packet they quote.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    checksum::{self, raw16, sum_raw4, sum_raw6},
    counters::DropReason,
    icmp::{self, Rest},
};

use super::{Out, rest_word, shift_right};
use crate::{
    checksum::{ipv4_header, sum_packet, udp},
    context::{Family, Packet, ptr_at},
    tuple::{Icmp6Error, Packet6, Tuple4},
    wire::{
        ETH_LEN, FRAG_LEN, ICMP_LEN, IPV4_LEN, IPV6_LEN, Ipv4Hdr, L4Head, V4_ICMP, V4_INNER,
        V6_INNER_L4, icmp_type, icmp_word,
    },
};

/// RFC 7915 section 5.1: DF is set on translated packets larger than this.
const DF_THRESHOLD: u16 = 1260;
/// Header bytes that change between an IPv6 fragment (IPv6 + fragment header) and an IPv4
/// fragment.
const FRAG_DELTA: usize = IPV6_LEN + FRAG_LEN - IPV4_LEN;
/// An error shrinks by this much (two IP headers change size).
const ERROR_DELTA: usize = 2 * (IPV6_LEN - IPV4_LEN);

/// The total length of the IPv4 packet a client's IPv6 packet becomes.
#[inline(always)]
pub fn tot_len(pkt: &Packet6) -> u16 {
    let ext = if pkt.frag.is_some() { FRAG_LEN } else { 0 };
    (pkt.payload_len as usize - ext + IPV4_LEN) as u16
}

/// Rewrites a client's IPv6 packet (whole, or a first fragment) into IPv4 in place for the
/// outgoing tuple `t` (RFC 7915 section 5.1).
#[inline(always)]
pub fn packet<C: Packet>(ctx: &C, pkt: &Packet6, t: &Tuple4, out: &Out) -> Result<(), DropReason> {
    let key = &pkt.key;
    // Constant offsets for the verifier (a value read back from the scratch map is unbounded).
    let l4off = if pkt.frag.is_some() {
        ETH_LEN + IPV6_LEN + FRAG_LEN
    } else {
        ETH_LEN + IPV6_LEN
    };
    // Bytes of IPv6 (and fragment) header that go away.
    let shrink = l4off - ETH_LEN - IPV4_LEN;
    let tot_len = tot_len(pkt);
    let proto = pkt.l4.proto;
    let eth = out.eth;

    // Transport: pseudo-header addresses and ports change. ICMPv4 has no pseudo-header, so for
    // ICMP the whole IPv6 pseudo-header goes and nothing comes back.
    let v6 = sum_raw6(&key.client) + sum_raw6(&pkt.dst);
    let ports = (
        pkt.l4.sport as u32 + pkt.l4.dport as u32,
        t.sport as u32 + t.dport as u32,
    );
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let v4 = sum_raw4(t.src) + sum_raw4(t.dst);
            ctx.write(l4off, &[t.sport, t.dport])?;
            let (field, is_udp) = if proto == IPPROTO_TCP {
                (l4off + 16, false)
            } else {
                (l4off + 6, true)
            };
            ctx.l4_csum(field, (v6, v4), ports, is_udp)?;
        }
        _ => {
            // Echo request/reply 128/129 -> 8/0 (RFC 7915 section 5.2).
            let h: *mut L4Head = ptr_at(ctx, l4off)?;
            // SAFETY: bounds checked by ptr_at.
            let old_type = unsafe { (*h).a };
            let new_type = icmp_word(if icmp_type(old_type) == 128 { 8 } else { 0 }, 0);
            ctx.write(l4off, &new_type)?;
            ctx.write(l4off + 4, &t.sport)?;
            let pseudo = v6 + raw16(pkt.payload_len) + raw16(IPPROTO_ICMPV6 as u16);
            ctx.l4_csum(
                l4off + 2,
                (pseudo, 0),
                (ports.0 + old_type as u32, ports.1 + new_type as u32),
                false,
            )?;
        }
    }

    let (frag, id) = if let Some((word, fid)) = pkt.frag {
        // RFC 7915 section 5.1.1: identification from the low 16 bits, DF clear, offset and
        // MF copied.
        let w = u16::from_be(word);
        let mf = if w & 1 != 0 { 0x2000 } else { 0 };
        (((w >> 3) | mf).to_be(), (u32::from_be(fid) as u16).to_be())
    } else if tot_len > DF_THRESHOLD {
        (0x4000u16.to_be(), 0)
    } else {
        // RFC 7915 section 5.1: small packets go without DF and need a real identification.
        // SAFETY: helper without arguments.
        (0, unsafe { bpf_get_prandom_u32() } as u16)
    };
    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: pkt.tclass,
        tot_len: tot_len.to_be(),
        id,
        frag,
        ttl: out.hop,
        proto,
        csum: 0,
        src: t.src,
        dst: t.dst,
    };
    ip4.csum = ipv4_header(&ip4);
    ctx.resize(-(shrink as i32), Family::To4)?;
    ctx.write(0, &eth)?;
    ctx.write(ETH_LEN, &ip4)
}

/// Rewrites a later IPv6 fragment (offset > 0, parsed into `r`) into an IPv4 fragment from
/// `src` to `dst`.
#[inline(always)]
pub fn later_fragment<C: Packet>(
    ctx: &C,
    r: &Packet6,
    proto: u8,
    (src, dst): (u32, u32),
    out: &Out,
) -> Result<(), DropReason> {
    let (off_flags, fid) = r.frag.unwrap_or((0, 0));
    let w = u16::from_be(off_flags);
    let mf = if w & 1 != 0 { 0x2000 } else { 0 };
    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: r.tclass,
        tot_len: later_tot_len(r).to_be(),
        id: (u32::from_be(fid) as u16).to_be(),
        frag: ((w >> 3) | mf).to_be(),
        ttl: out.hop,
        proto,
        csum: 0,
        src,
        dst,
    };
    ip4.csum = ipv4_header(&ip4);
    let eth = out.eth;
    ctx.resize(-(FRAG_DELTA as i32), Family::To4)?;
    ctx.write(0, &eth)?;
    ctx.write(ETH_LEN, &ip4)
}

/// The total length of the IPv4 fragment a later IPv6 fragment becomes.
#[inline(always)]
pub fn later_tot_len(r: &Packet6) -> u16 {
    r.payload_len - FRAG_LEN as u16 + IPV4_LEN as u16
}

/// Padding an ICMPv4 error gets in front of an extension structure it carries over: the
/// original datagram, 20 bytes shorter in IPv4, is zero-padded to the 128 bytes ICMPv4 asks for.
#[inline(always)]
fn pad4(e: &Icmp6Error) -> usize {
    let orig4 = e.orig6.saturating_sub(IPV6_LEN - IPV4_LEN);
    if e.keep_ext && orig4 < 128 {
        128 - orig4
    } else {
        0
    }
}

/// The total length of the ICMPv4 error an ICMPv6 error becomes.
#[inline(always)]
pub fn error_tot_len(e: &Icmp6Error) -> u16 {
    (IPV4_LEN + e.payload_len - (IPV6_LEN - IPV4_LEN) + pad4(e)) as u16
}

/// Rewrites an ICMPv6 error and the packet it quotes into an ICMPv4 error in place (RFC 7915
/// sections 5.2 and 5.3), for the addresses and ports in `e.map`.
///
/// The quoted transport header stays where it is; the three headers in front of it are
/// rewritten and the packet shrinks by 40 bytes.
#[inline(always)]
pub fn error<C: Packet>(ctx: &C, e: &Icmp6Error, out: &Out) -> Result<(), DropReason> {
    let (inn, l4h, map) = (&e.inner, &e.l4, &e.map);
    let rest = e.rest;
    let pointer = match icmp::pointer_6to4(u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32)) {
        Some(p) if e.kind == Rest::Pointer => Ok((p as u32) << 24),
        _ => Err(DropReason::UnsupportedIcmp),
    };
    let mtu = if e.kind == Rest::Mtu {
        icmp::mtu_6to4(u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32), 0) as u32
    } else {
        0
    };
    let orig4 = e.orig6.saturating_sub(IPV6_LEN - IPV4_LEN);
    let pad4 = pad4(e);
    let rest4 = if e.keep_ext {
        // Length of the (padded) original datagram in 32-bit words, second byte of the rest.
        u32::from_ne_bytes([0, ((orig4 + pad4) / 4) as u8, 0, 0])
    } else {
        rest_word(e.kind, mtu, pointer)?
    };
    if e.has_ext && !e.keep_ext {
        ctx.set_len(ETH_LEN + IPV6_LEN + e.payload_len)?;
    }

    // The quoted packet: addresses and the client's port become the pool side's. Its checksum
    // is data inside the error, updated here and written back.
    let quoted_len = e.payload_len - ICMP_LEN - IPV6_LEN;
    match inn.next_header {
        IPPROTO_TCP | IPPROTO_UDP => {
            let removed = sum_raw6(&inn.src) + sum_raw6(&inn.dst) + l4h.a as u32 + l4h.b as u32;
            let added = sum_raw4(map.inner_src)
                + sum_raw4(map.inner_dst)
                + map.inner_sport as u32
                + map.inner_dport as u32;
            ctx.write(V6_INNER_L4, &[map.inner_sport, map.inner_dport])?;
            if inn.next_header == IPPROTO_UDP {
                let c = udp(checksum::update(l4h.d, removed, added));
                ctx.write(V6_INNER_L4 + 6, &c)?;
            } else if quoted_len >= 18 {
                let p: *mut u16 = ptr_at(ctx, V6_INNER_L4 + 16)?;
                // SAFETY: bounds checked by ptr_at.
                let c = checksum::update(unsafe { *p }, removed, added);
                ctx.write(V6_INNER_L4 + 16, &c)?;
            }
        }
        _ => {
            let echo = if icmp_type(l4h.a) == icmp::V6_ECHO_REPLY {
                icmp::V4_ECHO_REPLY
            } else {
                icmp::V4_ECHO_REQUEST
            };
            let new_type = icmp_word(echo, 0);
            let removed = l4h.a as u32
                + l4h.c as u32
                + sum_raw6(&inn.src)
                + sum_raw6(&inn.dst)
                + raw16(u16::from_be(inn.payload_len))
                + raw16(IPPROTO_ICMPV6 as u16);
            let added = new_type as u32 + map.inner_dport as u32;
            let c = checksum::update(l4h.b, removed, added);
            ctx.write(V6_INNER_L4, &[new_type, c, map.inner_dport])?;
        }
    }

    let icmp4_len = e.payload_len - (IPV6_LEN - IPV4_LEN) + pad4;
    let tclass = (u32::from_be(inn.vtc_flow) >> 20) as u8;
    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: 0,
        tot_len: ((IPV4_LEN + icmp4_len) as u16).to_be(),
        id: 0,
        frag: 0,
        ttl: out.hop,
        proto: IPPROTO_ICMP,
        csum: 0,
        src: map.src,
        dst: map.dst,
    };
    ip4.csum = ipv4_header(&ip4);
    let mut in4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: tclass,
        tot_len: (u16::from_be(inn.payload_len).wrapping_add(IPV4_LEN as u16)).to_be(),
        id: 0,
        frag: 0,
        ttl: inn.hop_limit,
        proto: e.inner_proto4,
        csum: 0,
        src: map.inner_src,
        dst: map.inner_dst,
    };
    in4.csum = ipv4_header(&in4);
    let eth = out.eth;
    ctx.resize(-(ERROR_DELTA as i32), Family::To4)?;
    ctx.write(0, &eth)?;
    ctx.write(ETH_LEN, &ip4)?;
    let [ty4, code4] = [e.ty4, e.code4];
    ctx.write(
        V4_ICMP,
        &L4Head {
            a: icmp_word(ty4, code4),
            b: 0,
            c: rest4 as u16,
            d: (rest4 >> 16) as u16,
        },
    )?;
    ctx.write(V4_INNER, &in4)?;
    if pad4 != 0 {
        // The extension structure moves behind the padding.
        ctx.set_len(ETH_LEN + IPV4_LEN + icmp4_len)?;
        shift_right(ctx, V4_INNER + orig4, e.ext_len, pad4)?;
    }
    let sum = sum_packet(ctx, V4_ICMP, icmp4_len)?;
    ctx.write(V4_ICMP + 2, &checksum::finish(sum))
}
