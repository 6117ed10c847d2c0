//! IPv4 to IPv6 (RFC 7915 section 4): packets, later fragments, and ICMPv4 errors with the
//! packet they quote.

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    checksum::{self, raw16, sum_raw4, sum_raw6},
    counters::DropReason,
    icmp::{self, Rest},
};

use super::{Out, rest_word, shift_right};
use crate::{
    checksum::{pseudo_icmp6, sum_frag_hdr, sum_ipv4_hdr, sum_ipv6_hdr, sum_packet, udp},
    context::{Family, Packet, ptr_at},
    tuple::{Icmp4Error, Packet4, Tuple6},
    wire::{
        ETH_LEN, FRAG_LEN, FragHdr, ICMP_LEN, IPPROTO_FRAGMENT, IPV4_LEN, IPV6_LEN, Ipv4Hdr,
        Ipv6Hdr, L4Head, MAX_ICMP6, V4_ICMP, V4_INNER_L4, V6_ICMP, V6_INNER, icmp_type, icmp_word,
    },
};

/// Header bytes that change between an IPv4 fragment and an IPv6 fragment (IPv6 + fragment
/// header).
const FRAG_DELTA: usize = IPV6_LEN + FRAG_LEN - IPV4_LEN;
/// An error grows by this much (two IP headers change size).
const ERROR_DELTA: usize = 2 * (IPV6_LEN - IPV4_LEN);

/// Bytes an IPv4 packet grows by: the larger IPv6 header, and a fragment header for a first
/// fragment.
#[inline(always)]
pub fn growth(h: &Ipv4Hdr) -> usize {
    if u16::from_be(h.frag) & 0x2000 != 0 {
        FRAG_DELTA
    } else {
        IPV6_LEN - IPV4_LEN
    }
}

/// Rewrites a remote host's IPv4 packet (whole, or a first fragment) into IPv6 in place for the
/// outgoing tuple `t` (RFC 7915 section 4.1).
#[inline(always)]
pub fn packet<C: Packet>(ctx: &C, p: &Packet4, t: &Tuple6, out: &Out) -> Result<(), DropReason> {
    let h = &p.h;
    let payload_len = u16::from_be(h.tot_len) - IPV4_LEN as u16;
    let first_fragment = u16::from_be(h.frag) & 0x2000 != 0;
    let grow = growth(h);
    let nh = if p.l4.proto == IPPROTO_ICMP {
        IPPROTO_ICMPV6
    } else {
        p.l4.proto
    };
    transport(ctx, p, t)?;
    let eth = out.eth;
    let ip6 = Ipv6Hdr {
        vtc_flow: ((6u32 << 28) | ((h.tos as u32) << 20)).to_be(),
        payload_len: (payload_len + (grow - (IPV6_LEN - IPV4_LEN)) as u16).to_be(),
        next_header: if first_fragment { IPPROTO_FRAGMENT } else { nh },
        hop_limit: out.hop,
        src: t.src,
        dst: t.dst,
    };
    ctx.resize(grow as i32, Family::To6)?;
    ctx.write(0, &eth)?;
    ctx.write(ETH_LEN, &ip6)?;
    if first_fragment {
        // RFC 7915 section 4.1: a fragment header with the IPv4 identification; offset 0, M.
        ctx.write(
            ETH_LEN + IPV6_LEN,
            &FragHdr {
                next_header: nh,
                reserved: 0,
                off_flags: 1u16.to_be(),
                id: (u16::from_be(h.id) as u32).to_be(),
            },
        )?;
    }
    Ok(())
}

/// Updates the ports (ICMP: type and identifier) and the transport checksum for IPv4 -> IPv6.
#[inline(never)]
fn transport<C: Packet>(ctx: &C, p: &Packet4, t: &Tuple6) -> Result<(), DropReason> {
    ctx.enter();
    let h = &p.h;
    let payload_len = u16::from_be(h.tot_len) - IPV4_LEN as u16;
    let l4off = ETH_LEN + IPV4_LEN;
    let ports = (
        p.l4.sport as u32 + p.l4.dport as u32,
        t.sport as u32 + t.dport as u32,
    );
    let v6 = sum_raw6(&t.src) + sum_raw6(&t.dst);
    let v4 = sum_raw4(h.src) + sum_raw4(h.dst);
    match p.l4.proto {
        IPPROTO_TCP => {
            ctx.write(l4off, &[t.sport, t.dport])?;
            ctx.l4_csum(l4off + 16, (v4, v6), ports, false)
        }
        IPPROTO_UDP => {
            ctx.write(l4off, &[t.sport, t.dport])?;
            let lh: *mut L4Head = ptr_at(ctx, l4off)?;
            // SAFETY: bounds checked by ptr_at.
            if unsafe { (*lh).d } == 0 {
                // No IPv4 checksum: IPv6 requires one, computed over the whole datagram.
                let data = sum_packet(ctx, l4off, payload_len as usize)?;
                let c =
                    checksum::finish(data + v6 + raw16(payload_len) + raw16(IPPROTO_UDP as u16));
                ctx.write(l4off + 6, &udp(c))
            } else {
                ctx.l4_csum(l4off + 6, (v4, v6), ports, true)
            }
        }
        _ => {
            // Echo 8/0 -> 128/129; the IPv6 pseudo-header is added.
            let lh: *mut L4Head = ptr_at(ctx, l4off)?;
            // SAFETY: bounds checked by ptr_at.
            let old_type = unsafe { (*lh).a };
            let new_type = icmp_word(if icmp_type(old_type) == 8 { 128 } else { 129 }, 0);
            ctx.write(l4off, &new_type)?;
            ctx.write(l4off + 4, &t.dport)?;
            let pseudo = v6 + raw16(payload_len) + raw16(IPPROTO_ICMPV6 as u16);
            ctx.l4_csum(
                l4off + 2,
                (0, pseudo),
                (ports.0 + old_type as u32, ports.1 + new_type as u32),
                false,
            )
        }
    }
}

/// Rewrites a later IPv4 fragment (offset > 0) into an IPv6 fragment from `src6` to `client`.
#[inline(always)]
pub fn later_fragment<C: Packet>(
    ctx: &C,
    h: &Ipv4Hdr,
    src6: &[u32; 4],
    client: &[u32; 4],
    out: &Out,
) -> Result<(), DropReason> {
    let fw = u16::from_be(h.frag);
    let word = ((fw & 0x1fff) << 3) | if fw & 0x2000 != 0 { 1 } else { 0 };
    let eth = out.eth;
    ctx.resize(FRAG_DELTA as i32, Family::To6)?;
    ctx.write(0, &eth)?;
    ctx.write(
        ETH_LEN,
        &Ipv6Hdr {
            vtc_flow: ((6u32 << 28) | ((h.tos as u32) << 20)).to_be(),
            payload_len: later_payload_len(h).to_be(),
            next_header: IPPROTO_FRAGMENT,
            hop_limit: out.hop,
            src: *src6,
            dst: *client,
        },
    )?;
    ctx.write(
        ETH_LEN + IPV6_LEN,
        &FragHdr {
            next_header: h.proto,
            reserved: 0,
            off_flags: word.to_be(),
            id: (u16::from_be(h.id) as u32).to_be(),
        },
    )
}

/// The IPv6 payload length (fragment header included) of a later IPv4 fragment.
#[inline(always)]
pub fn later_payload_len(h: &Ipv4Hdr) -> u16 {
    u16::from_be(h.tot_len) - IPV4_LEN as u16 + FRAG_LEN as u16
}

/// Padding an ICMPv6 error gets in front of an extension structure it carries over: the
/// original datagram, now 20 bytes longer, is zero-padded to 64-bit words.
#[inline(always)]
fn pad6(e: &Icmp4Error) -> usize {
    if e.keep_ext {
        let orig6 = e.orig4 + (IPV6_LEN - IPV4_LEN);
        (8 - orig6 % 8) % 8
    } else {
        0
    }
}

/// Bytes a quoted first fragment's header grows by beyond the IPv6 header: its fragment header.
#[inline(always)]
fn inner_frag_len(e: &Icmp4Error) -> usize {
    if e.inner_frag { FRAG_LEN } else { 0 }
}

/// The ICMPv6 message length an ICMPv4 error becomes (at most the IPv6 minimum MTU in all,
/// RFC 4443 section 2.4).
#[inline(always)]
pub fn error_len(e: &Icmp4Error) -> usize {
    let len = e.tot_len - IPV4_LEN + (IPV6_LEN - IPV4_LEN) + inner_frag_len(e) + pad6(e);
    if len > MAX_ICMP6 { MAX_ICMP6 } else { len }
}

/// The ICMPv4 bytes of an error that stay in its translation: the rest (extensions that are not
/// carried over, what goes beyond the IPv6 minimum MTU) is cut.
#[inline(always)]
fn kept4(e: &Icmp4Error) -> usize {
    error_len(e) - pad6(e) - (IPV6_LEN - IPV4_LEN) - inner_frag_len(e)
}

/// The first parts of an ICMPv4 error's translation, called before anything else is decided
/// (the route, the rest of header): cutting what does not stay, and the quoted packet. Each is
/// a subprogram, its results in `e`, called from the same state: the verifier then follows each
/// part's branches once, not once for every combination with the others'.
#[inline(always)]
pub fn error_parts<C: Packet>(ctx: &C, e: &mut Icmp4Error) -> Result<(), DropReason> {
    cut_4to6(ctx, e)?;
    quoted_4to6(ctx, e)
}

/// Cuts what does not stay of an ICMPv4 error and starts the checksum's sums with it.
#[inline(never)]
fn cut_4to6<C: Packet>(ctx: &C, e: &mut Icmp4Error) -> Result<(), DropReason> {
    ctx.enter();
    let kept = kept4(e);
    e.removed = 0;
    e.added = 0;
    if kept < e.full_len {
        e.removed = sum_packet(ctx, V4_ICMP + kept, e.full_len - kept)?;
        ctx.set_len(ETH_LEN + IPV4_LEN + kept)?;
    }
    Ok(())
}

/// The packet an ICMPv4 error quotes: the pool port becomes the client's, addresses change. Its
/// checksum is data inside the error, updated and written back; what changes goes into `e`'s
/// sums.
#[inline(never)]
fn quoted_4to6<C: Packet>(ctx: &C, e: &mut Icmp4Error) -> Result<(), DropReason> {
    ctx.enter();
    let (inn, l4h, map) = (&e.inner, &e.l4, &e.map);
    let quoted_len = e.tot_len - IPV4_LEN - ICMP_LEN - IPV4_LEN;
    let (removed, added) = match inn.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports = (
                l4h.a as u32 + l4h.b as u32,
                map.inner_sport as u32 + map.inner_dport as u32,
            );
            let pseudo = (
                sum_raw4(inn.src) + sum_raw4(inn.dst),
                sum_raw6(&map.inner_src) + sum_raw6(&map.inner_dst),
            );
            ctx.write(V4_INNER_L4, &[map.inner_sport, map.inner_dport])?;
            let field = if inn.proto == IPPROTO_UDP {
                // No checksum (zero) stays none.
                (l4h.d != 0).then_some(V4_INNER_L4 + 6)
            } else {
                (quoted_len >= 18).then_some(V4_INNER_L4 + 16)
            };
            match field {
                Some(at) => {
                    let p: *mut u16 = ptr_at(ctx, at)?;
                    // SAFETY: bounds checked by ptr_at.
                    let old = unsafe { *p };
                    let c = checksum::update(old, pseudo.0 + ports.0, pseudo.1 + ports.1);
                    let c = if inn.proto == IPPROTO_UDP { udp(c) } else { c };
                    ctx.write(at, &c)?;
                    (ports.0 + old as u32, ports.1 + c as u32)
                }
                None => ports,
            }
        }
        _ => {
            let echo = if icmp_type(l4h.a) == icmp::V4_ECHO_REQUEST {
                icmp::V6_ECHO_REQUEST
            } else {
                icmp::V6_ECHO_REPLY
            };
            let new_type = icmp_word(echo, 0);
            let inner_len = u16::from_be(inn.tot_len).saturating_sub(IPV4_LEN as u16);
            let c = checksum::update(
                l4h.b,
                l4h.a as u32 + l4h.c as u32,
                new_type as u32
                    + map.inner_sport as u32
                    + pseudo_icmp6(&map.inner_src, &map.inner_dst, inner_len as usize),
            );
            ctx.write(V4_INNER_L4, &[new_type, c, map.inner_sport])?;
            (
                l4h.a as u32 + l4h.b as u32 + l4h.c as u32,
                new_type as u32 + c as u32 + map.inner_sport as u32,
            )
        }
    };
    e.removed += removed;
    e.added += added;
    Ok(())
}

/// Rewrites an ICMPv4 error and the packet it quotes into an ICMPv6 error in place (RFC 7915
/// sections 4.2 and 4.3), for the addresses and ports in `e.map`, sent as `out` says, after
/// [`error_parts`].
///
/// The quoted transport header stays where it is; the three headers in front of it are
/// rewritten and the packet grows by 40 bytes (48 when the quoted packet is a first fragment,
/// whose IPv6 header gets a fragment header: RFC 7915 section 4.1). What goes beyond the IPv6
/// minimum MTU is cut off. The checksum is the received one updated over what changes (RFC
/// 1624): a corrupted error stays corrupted.
#[inline(always)]
pub fn error<C: Packet>(ctx: &C, e: &mut Icmp4Error, out: &Out) -> Result<(), DropReason> {
    let rest = e.rest;
    let pointer = match icmp::pointer_4to6(
        (u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32) >> 24) as u8,
    ) {
        Some(p) if e.kind == Rest::Pointer => Ok(p),
        _ => Err(DropReason::UnsupportedIcmp),
    };
    let mtu = if e.kind == Rest::Mtu {
        icmp::mtu_4to6(u16::from_be(rest.1), u16::from_be(e.inner.tot_len), 0)
    } else {
        0
    };
    let orig6 = e.orig4 + (IPV6_LEN - IPV4_LEN);
    let pad6 = pad6(e);
    let rest6 = if e.keep_ext {
        // Length of the (padded) original datagram in 64-bit words, first byte of the rest.
        u32::from_ne_bytes([((orig6 + pad6) / 8) as u8, 0, 0, 0])
    } else {
        rest_word(e.kind, mtu, pointer)?
    };

    let (outer, inn, map) = (&e.outer, &e.inner, &e.map);
    let inner_len = u16::from_be(inn.tot_len).saturating_sub(IPV4_LEN as u16);
    // A constant for the verifier: how much the packet grows.
    let (grow, frag) = if e.inner_frag {
        (ERROR_DELTA + FRAG_LEN, FRAG_LEN)
    } else {
        (ERROR_DELTA, 0)
    };
    let icmp6_len = error_len(e);
    let eth = out.eth;
    ctx.resize(grow as i32, Family::To6)?;
    if pad6 != 0 {
        // The extension structure moves behind the padding (zeroes, and an even number of
        // bytes: the sum stays).
        ctx.set_len(ETH_LEN + IPV6_LEN + icmp6_len)?;
        shift_right(ctx, V6_INNER + orig6, e.ext_len, pad6)?;
    }
    ctx.write(0, &eth)?;
    ctx.write(
        ETH_LEN,
        &Ipv6Hdr {
            vtc_flow: ((6u32 << 28) | ((outer.tos as u32) << 20)).to_be(),
            payload_len: (icmp6_len as u16).to_be(),
            next_header: IPPROTO_ICMPV6,
            hop_limit: out.hop,
            src: map.src,
            dst: map.dst,
        },
    )?;
    let in6 = Ipv6Hdr {
        vtc_flow: ((6u32 << 28) | ((inn.tos as u32) << 20)).to_be(),
        payload_len: (inner_len + frag as u16).to_be(),
        next_header: if e.inner_frag {
            IPPROTO_FRAGMENT
        } else {
            e.inner_proto6
        },
        hop_limit: inn.ttl,
        src: map.inner_src,
        dst: map.inner_dst,
    };
    ctx.write(V6_INNER, &in6)?;
    let mut added = e.added + sum_ipv6_hdr(&in6);
    if e.inner_frag {
        // A first fragment: offset 0, M set, the IPv4 identification.
        let fh = FragHdr {
            next_header: e.inner_proto6,
            reserved: 0,
            off_flags: 1u16.to_be(),
            id: (u16::from_be(inn.id) as u32).to_be(),
        };
        ctx.write(V6_INNER + IPV6_LEN, &fh)?;
        added += sum_frag_hdr(&fh);
    }
    let head = icmp_word(e.ty6, e.code6);
    added += head as u32 + sum_raw4(rest6) + pseudo_icmp6(&map.src, &map.dst, icmp6_len);
    let removed =
        e.removed + e.ty_code as u32 + e.rest.0 as u32 + e.rest.1 as u32 + sum_ipv4_hdr(inn);
    ctx.write(
        V6_ICMP,
        &L4Head {
            a: head,
            b: checksum::update(e.csum, removed, added),
            c: rest6 as u16,
            d: (rest6 >> 16) as u16,
        },
    )
}
