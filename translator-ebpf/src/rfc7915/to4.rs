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
    checksum::{
        ipv4_header, pseudo_icmp6, sum_frag_hdr, sum_ipv4_hdr, sum_ipv6_hdr, sum_packet, udp,
    },
    context::{Family, Packet, ptr_at},
    tuple::{Icmp6Error, Packet6, Tuple4},
    wire::{
        ETH_LEN, FRAG_LEN, ICMP_LEN, IPV4_LEN, IPV6_LEN, Ipv4Hdr, L4Head, MAX_ICMP4, V4_ICMP,
        V4_INNER, V6_ICMP, V6_INNER_L4, icmp_type, icmp_word,
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
            // The upper-layer length: an atomic fragment's fragment header does not count.
            let l4_len = pkt.payload_len - (l4off - ETH_LEN - IPV6_LEN) as u16;
            let pseudo = v6 + raw16(l4_len) + raw16(IPPROTO_ICMPV6 as u16);
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

/// The ICMPv4 message length (header and quoted packet) an ICMPv6 error becomes before the
/// 576-byte limit: the quoted header shrinks by 20 bytes, and by 8 more when it had a fragment
/// header.
#[inline(always)]
fn icmp4_len(e: &Icmp6Error) -> usize {
    let frag = if e.inner_frag { FRAG_LEN } else { 0 };
    e.payload_len - (IPV6_LEN - IPV4_LEN) - frag + pad4(e)
}

/// The total length of the ICMPv4 error an ICMPv6 error becomes: at most 576 bytes, an ICMPv4
/// error's limit (RFC 1812 section 4.3.2.3), keeping as much of the quoted packet as fits
/// (RFC 7915 section 5.2).
#[inline(always)]
pub fn error_tot_len(e: &Icmp6Error) -> u16 {
    let len = icmp4_len(e);
    (IPV4_LEN + if len > MAX_ICMP4 { MAX_ICMP4 } else { len }) as u16
}

/// The ICMPv6 bytes of an error that stay in its translation: the rest (extensions that are not
/// carried over, what goes beyond 576 bytes) is cut.
#[inline(always)]
fn kept6(e: &Icmp6Error) -> usize {
    let frag = if e.inner_frag { FRAG_LEN } else { 0 };
    error_tot_len(e) as usize - IPV4_LEN - pad4(e) + (IPV6_LEN - IPV4_LEN) + frag
}

/// The first parts of an ICMPv6 error's translation, called before anything else is decided
/// (the route, the rest of header): cutting what does not stay, and the quoted packet. Each is
/// a subprogram, its results in `e`, called from the same state: the verifier then follows each
/// part's branches once, not once for every combination with the others'.
#[inline(always)]
pub fn error_parts<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<(), DropReason> {
    cut_6to4(ctx, e)?;
    quoted_6to4(ctx, e)
}

/// Cuts what does not stay of an ICMPv6 error and starts the checksum's sums with it.
#[inline(never)]
fn cut_6to4<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<(), DropReason> {
    ctx.enter();
    let kept = kept6(e);
    e.removed = 0;
    e.added = 0;
    if kept < e.full_len {
        e.removed = sum_packet(ctx, V6_ICMP + kept, e.full_len - kept)?;
        ctx.set_len(ETH_LEN + IPV6_LEN + kept)?;
    }
    Ok(())
}

/// The packet an ICMPv6 error quotes: addresses and the client's port become the pool side's.
/// Its checksum is data inside the error, updated and written back; what changes goes into
/// `e`'s sums.
#[inline(never)]
fn quoted_6to4<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<(), DropReason> {
    ctx.enter();
    let (inn, l4h, map) = (&e.inner, &e.l4, &e.map);
    // A constant offset for the verifier: the quoted transport header.
    let (l4off, frag) = if e.inner_frag {
        (V6_INNER_L4 + FRAG_LEN, FRAG_LEN)
    } else {
        (V6_INNER_L4, 0)
    };
    let quoted_len = e.payload_len - ICMP_LEN - IPV6_LEN - frag;
    let (removed, added) = match e.inner_proto4 {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports = (
                l4h.a as u32 + l4h.b as u32,
                map.inner_sport as u32 + map.inner_dport as u32,
            );
            let pseudo = (
                sum_raw6(&inn.src) + sum_raw6(&inn.dst),
                sum_raw4(map.inner_src) + sum_raw4(map.inner_dst),
            );
            ctx.write(l4off, &[map.inner_sport, map.inner_dport])?;
            let field = if e.inner_proto4 == IPPROTO_UDP {
                Some(l4off + 6)
            } else {
                (quoted_len >= 18).then_some(l4off + 16)
            };
            match field {
                Some(at) => {
                    let p: *mut u16 = ptr_at(ctx, at)?;
                    // SAFETY: bounds checked by ptr_at.
                    let old = unsafe { *p };
                    let c = checksum::update(old, pseudo.0 + ports.0, pseudo.1 + ports.1);
                    let c = if e.inner_proto4 == IPPROTO_UDP {
                        udp(c)
                    } else {
                        c
                    };
                    ctx.write(at, &c)?;
                    (ports.0 + old as u32, ports.1 + c as u32)
                }
                None => ports,
            }
        }
        _ => {
            let echo = if icmp_type(l4h.a) == icmp::V6_ECHO_REPLY {
                icmp::V4_ECHO_REPLY
            } else {
                icmp::V4_ECHO_REQUEST
            };
            let new_type = icmp_word(echo, 0);
            // The ICMPv6 pseudo-header's length is the upper-layer length: without the
            // fragment header.
            let c = checksum::update(
                l4h.b,
                l4h.a as u32
                    + l4h.c as u32
                    + pseudo_icmp6(
                        &inn.src,
                        &inn.dst,
                        u16::from_be(inn.payload_len).wrapping_sub(frag as u16) as usize,
                    ),
                new_type as u32 + map.inner_dport as u32,
            );
            ctx.write(l4off, &[new_type, c, map.inner_dport])?;
            (
                l4h.a as u32 + l4h.b as u32 + l4h.c as u32,
                new_type as u32 + c as u32 + map.inner_dport as u32,
            )
        }
    };
    e.removed += removed;
    e.added += added;
    Ok(())
}

/// Rewrites an ICMPv6 error and the packet it quotes into an ICMPv4 error in place (RFC 7915
/// sections 5.2 and 5.3), for the addresses and ports in `e.map`, sent as `out` says, after
/// [`error_parts`].
///
/// The quoted transport header stays where it is; the headers in front of it are rewritten and
/// the packet shrinks by 40 bytes (48 when the quoted packet had a fragment header, which its
/// IPv4 header takes over: RFC 7915 section 5.1.1). What goes beyond 576 bytes is cut off. The
/// checksum is the received one updated over what changes (RFC 1624): a corrupted error stays
/// corrupted.
#[inline(always)]
pub fn error<C: Packet>(ctx: &C, e: &mut Icmp6Error, out: &Out) -> Result<(), DropReason> {
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

    let (inn, map) = (&e.inner, &e.map);
    // A constant for the verifier: how much the packet shrinks.
    let (shrink, frag) = if e.inner_frag {
        (ERROR_DELTA + FRAG_LEN, FRAG_LEN)
    } else {
        (ERROR_DELTA, 0)
    };
    let tot_len = error_tot_len(e);
    let tclass = (u32::from_be(inn.vtc_flow) >> 20) as u8;
    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: 0,
        tot_len: tot_len.to_be(),
        // An error that came in an atomic fragment: RFC 7915 section 5.1.1 (DF clear).
        id: if e.atomic {
            (u32::from_be(e.atomic_id) as u16).to_be()
        } else {
            0
        },
        frag: 0,
        ttl: out.hop,
        proto: IPPROTO_ICMP,
        csum: 0,
        src: map.src,
        dst: map.dst,
    };
    ip4.csum = ipv4_header(&ip4);
    let mut removed = e.removed
        + pseudo_icmp6(&e.outer_src, &e.outer_dst, e.full_len)
        + e.ty_code as u32
        + e.rest.0 as u32
        + e.rest.1 as u32
        + sum_ipv6_hdr(inn);
    let (in_id, in_frag) = if e.inner_frag {
        // RFC 7915 section 5.1.1 for the quoted header: the low 16 bits of the identification,
        // MF from M, offset 0 (later fragments are not translated), DF clear; the fragment
        // header's words leave the checksum.
        removed += sum_frag_hdr(&e.inner_fh);
        let mf = if u16::from_be(e.inner_fh.off_flags) & 1 != 0 {
            0x2000u16
        } else {
            0
        };
        ((u32::from_be(e.inner_fh.id) as u16).to_be(), mf.to_be())
    } else {
        (0, 0)
    };
    let mut in4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: tclass,
        tot_len: (u16::from_be(inn.payload_len)
            .wrapping_sub(frag as u16)
            .wrapping_add(IPV4_LEN as u16))
        .to_be(),
        id: in_id,
        frag: in_frag,
        ttl: inn.hop_limit,
        proto: e.inner_proto4,
        csum: 0,
        src: map.inner_src,
        dst: map.inner_dst,
    };
    in4.csum = ipv4_header(&in4);
    let head = icmp_word(e.ty4, e.code4);
    let added = e.added + head as u32 + sum_raw4(rest4) + sum_ipv4_hdr(&in4);
    let eth = out.eth;
    ctx.resize(-(shrink as i32), Family::To4)?;
    ctx.write(0, &eth)?;
    ctx.write(ETH_LEN, &ip4)?;
    ctx.write(
        V4_ICMP,
        &L4Head {
            a: head,
            b: checksum::update(e.csum, removed, added),
            c: rest4 as u16,
            d: (rest4 >> 16) as u16,
        },
    )?;
    ctx.write(V4_INNER, &in4)?;
    if pad4 != 0 {
        // The extension structure moves behind the padding (zeroes, and an even number of
        // bytes: the sum stays).
        ctx.set_len(ETH_LEN + tot_len as usize)?;
        shift_right(ctx, V4_INNER + orig4, e.ext_len, pad4)?;
    }
    Ok(())
}
