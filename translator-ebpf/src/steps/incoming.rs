//! Determining the incoming tuple (RFC 6146 section 3.4): which packets are the translator's,
//! and their addresses, ports (ICMP identifiers) and protocol, with the header checks RFC 7915
//! translation relies on.

use core::mem::size_of;

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    counters::DropReason,
    icmp::{self, Rest},
    maps::{SessionKey4, SessionKey6},
    rfc6052,
};

use crate::{
    checksum,
    config::config,
    context::{Family, Packet, ptr_at},
    maps::{MAX_EXT, POOL},
    tuple::{Icmp4Error, Icmp6Error, L4, Packet6},
    wire::{
        ETH_LEN, EthHdr, FRAG_LEN, FragHdr, ICMP_LEN, IPPROTO_FRAGMENT, IPV4_LEN, IPV6_LEN,
        Ipv4Hdr, Ipv6Hdr, L4Head, MAX_ICMP4, MAX_ICMP6, TcpTail, V4_ICMP, V4_INNER, V4_INNER_L4,
        V6_ICMP, V6_INNER, V6_INNER_L4, icmp_type,
    },
};

/// Whether a fragment header's raw offset/flags word is an atomic fragment's: offset 0 and M
/// clear (RFC 6946), the reserved bits ignored.
#[inline(always)]
pub fn is_atomic(off_flags: u16) -> bool {
    u16::from_be(off_flags) & 0xfff9 == 0
}

/// An ICMPv6 error message sent to an address inside the prefix, also in an atomic fragment
/// (RFC 6946: processed like an unfragmented packet). A subprogram returning a plain number:
/// the caller's verifier state then does not depend on which headers were checked here.
#[inline(never)]
pub fn is_icmp6_error<C: Packet>(ctx: &C) -> u32 {
    ctx.enter();
    u32::from(icmp6_error_here(ctx))
}

#[inline(always)]
fn icmp6_error_here(ctx: &impl Packet) -> bool {
    let Ok(h) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return false;
    };
    let cfg = config();
    // SAFETY: bounds checked by ptr_at.
    let (nh, to_prefix) = unsafe {
        (
            (*h).next_header,
            rfc6052::matches_raw(&(*h).dst, &cfg.prefix, &cfg.mask),
        )
    };
    if !to_prefix {
        return false;
    }
    if nh == IPPROTO_ICMPV6 {
        let Ok(t) = ptr_at::<u8>(ctx, V6_ICMP) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        return icmp::is_error_v6(unsafe { *t });
    }
    if nh != IPPROTO_FRAGMENT {
        return false;
    }
    let (Ok(f), Ok(t)) = (
        ptr_at::<FragHdr>(ctx, ETH_LEN + IPV6_LEN),
        ptr_at::<u8>(ctx, V6_ICMP + FRAG_LEN),
    ) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*f).next_header == IPPROTO_ICMPV6 && is_atomic((*f).off_flags) && icmp::is_error_v6(*t)
    }
}

/// Removes the fragment header of an ICMPv6 error that came in an atomic fragment (RFC 6946),
/// so that it is translated like an unfragmented one, and keeps the identification for the
/// IPv4 header (RFC 7915 section 5.1.1). Without a fragment header: nothing to do.
#[inline(never)]
pub fn strip_atomic<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<(), DropReason> {
    ctx.enter();
    e.atomic = false;
    e.atomic_id = 0;
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let h: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let f: *mut FragHdr = ptr_at(ctx, ETH_LEN + IPV6_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let (eth, mut ip6, f) = unsafe { (*eth, *h, *f) };
    if ip6.next_header != IPPROTO_FRAGMENT {
        return Ok(());
    }
    let payload_len = u16::from_be(ip6.payload_len);
    if payload_len < FRAG_LEN as u16 {
        return Err(DropReason::Malformed);
    }
    ip6.next_header = f.next_header;
    ip6.payload_len = (payload_len - FRAG_LEN as u16).to_be();
    ctx.resize(-(FRAG_LEN as i32), Family::Same)?;
    ctx.write(0, &eth)?;
    ctx.write(ETH_LEN, &ip6)?;
    e.atomic = true;
    e.atomic_id = f.id;
    Ok(())
}

/// For an unfragmented ICMPv4 error message without options: whether it is addressed to a
/// pool address. `None`: not such a message.
#[inline(always)]
pub fn icmp4_error_to_pool(ctx: &impl Packet) -> Option<bool> {
    let h = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok()?;
    let t = ptr_at::<u8>(ctx, ETH_LEN + IPV4_LEN).ok()?;
    // SAFETY: bounds checked by ptr_at; read-only lookup.
    unsafe {
        if (*h).proto != IPPROTO_ICMP
            || (*h).ver_ihl != 0x45
            || u16::from_be((*h).frag) & 0x3fff != 0
            || !icmp::is_error_v4(*t)
        {
            return None;
        }
        Some(is_pool((*h).dst))
    }
}

/// Whether `addr` (raw) is a pool address.
#[inline(always)]
pub fn is_pool(addr: u32) -> bool {
    // SAFETY: read-only lookup.
    unsafe { POOL.get(addr) }.is_some()
}

/// Reads the transport header at `off`. `echo` are the echo request/reply types of the packet's
/// ICMP version; the identifier is the source "port" for IPv6 packets (the client's) and the
/// destination "port" for IPv4 packets (the pool's).
#[inline(always)]
pub fn l4(
    ctx: &impl Packet,
    off: usize,
    proto: u8,
    echo: (u8, u8),
    id_is_source: bool,
) -> Result<L4, DropReason> {
    let h: *mut L4Head = ptr_at(ctx, off)?;
    // SAFETY: bounds checked by ptr_at for every read below.
    unsafe {
        match proto {
            IPPROTO_TCP => {
                let t: *mut TcpTail = ptr_at(ctx, off + 12)?;
                Ok(L4 {
                    proto,
                    tcp: (*t).flags,
                    sport: (*h).a,
                    dport: (*h).b,
                    hdr_len: ((*t).off >> 4) as u16 * 4,
                })
            }
            IPPROTO_UDP => Ok(L4 {
                proto,
                tcp: 0,
                sport: (*h).a,
                dport: (*h).b,
                hdr_len: 8,
            }),
            _ => {
                let ty = icmp_type((*h).a);
                if ty != echo.0 && ty != echo.1 {
                    return Err(DropReason::UnsupportedIcmp);
                }
                let id = (*h).c;
                let (sport, dport) = if id_is_source { (id, 0) } else { (0, id) };
                Ok(L4 {
                    proto: IPPROTO_ICMP,
                    tcp: 0,
                    sport,
                    dport,
                    hdr_len: 8,
                })
            }
        }
    }
}

/// What [`ipv6`] found. (Fieldless: the parsed packet goes into the caller's scratch memory.
/// An enum carrying the packet would leave fields undefined on some paths, and the compiler
/// fills undefined registers with whatever they hold, which the verifier refuses to copy.)
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parsed6 {
    /// A whole packet or a first fragment, with its transport header.
    Packet,
    /// A later fragment (offset > 0): no transport header; its first fragment told where it
    /// goes. `pkt.frag` holds its fragment header and `pkt.l4.proto` the next header.
    Later,
    /// Extension headers RFC 7915 lets a translator skip: the slow path walks the chain.
    SlowPath,
}

/// Whether an IPv6 packet is addressed into the NAT64 prefix (the translator's at all).
#[inline(always)]
pub fn to_prefix(ctx: &impl Packet) -> Result<bool, DropReason> {
    let ip6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let cfg = config();
    // SAFETY: bounds checked by ptr_at.
    Ok(rfc6052::matches_raw(
        unsafe { &(*ip6).dst },
        &cfg.prefix,
        &cfg.mask,
    ))
}

/// Parses an IPv6 packet into `pkt`: all but the IPv4 address embedded in an address (whose
/// prefix the caller knows), the binding and the time. `min_hop`: the least hop limit the
/// packet may have (2 where it is forwarded and the hop limit decremented; 0 for the CLAT).
#[inline(always)]
pub fn ipv6(ctx: &impl Packet, pkt: &mut Packet6, min_hop: u8) -> Result<Parsed6, DropReason> {
    let ip6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let (vtc, payload_len, nh, hop, src, dst) = unsafe {
        (
            u32::from_be((*ip6).vtc_flow),
            u16::from_be((*ip6).payload_len),
            (*ip6).next_header,
            (*ip6).hop_limit,
            (*ip6).src,
            (*ip6).dst,
        )
    };
    if vtc >> 28 != 6 {
        return Err(DropReason::Malformed);
    }
    if !ctx.holds(ETH_LEN + IPV6_LEN + payload_len as usize) {
        return Err(DropReason::Truncated);
    }
    if hop < min_hop {
        return Err(DropReason::HopLimitExceeded);
    }
    pkt.key.client = src;
    // The embedded IPv4 address depends on whose prefix: the caller fills it in.
    pkt.key.remote = 0;
    pkt.key._pad = [0; 3];
    pkt.dst = dst;
    pkt.payload_len = payload_len;
    pkt.tclass = (vtc >> 20) as u8;
    pkt.hop = hop;
    let (nh, l4off) = if nh == IPPROTO_FRAGMENT {
        let fh: *mut FragHdr = ptr_at(ctx, ETH_LEN + IPV6_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        let f = unsafe { *fh };
        if payload_len < (FRAG_LEN + 1) as u16 {
            return Err(DropReason::Malformed);
        }
        pkt.frag = Some((f.off_flags, f.id));
        pkt.atomic = is_atomic(f.off_flags);
        if u16::from_be(f.off_flags) & 0xfff8 != 0 {
            pkt.l4.proto = f.next_header;
            return Ok(Parsed6::Later);
        }
        (f.next_header, ETH_LEN + IPV6_LEN + FRAG_LEN)
    } else {
        pkt.frag = None;
        pkt.atomic = false;
        (nh, ETH_LEN + IPV6_LEN)
    };
    let l4 = match nh {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6 => l4(ctx, l4off, nh, (128, 129), true)?,
        // Hop-by-hop options, routing, destination options: RFC 7915 section 5.1 skips them
        // (a routing header only with segments left 0); the slow path walks the chain.
        0 | 43 | 60 => return Ok(Parsed6::SlowPath),
        // A second fragment header, ESP, AH, mobility, HIP, shim6: not translatable.
        44 | 50 | 51 | 135 | 139 | 140 => return Err(DropReason::Ipv6ExtensionHeader),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    if l4.proto == IPPROTO_UDP {
        let h: *mut L4Head = ptr_at(ctx, l4off)?;
        // SAFETY: bounds checked by ptr_at.
        if unsafe { (*h).d } == 0 {
            return Err(DropReason::ZeroUdpChecksum6);
        }
    }
    pkt.key.client_port_be = l4.sport;
    pkt.key.remote_port_be = l4.dport;
    pkt.key.proto = l4.proto;
    pkt.l4 = l4;
    Ok(Parsed6::Packet)
}

/// Transport header of an IPv4 packet, for the cases the data plane translates.
#[inline(always)]
pub fn ipv4_l4(ctx: &impl Packet, h: &Ipv4Hdr) -> Result<L4, DropReason> {
    match h.proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP => {}
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    let ihl = h.ver_ihl & 0x0f;
    if ihl != 5 {
        return Err(if ihl < 5 {
            DropReason::Malformed
        } else {
            DropReason::Ipv4Options
        });
    }
    l4(ctx, ETH_LEN + IPV4_LEN, h.proto, (8, 0), false)
}

/// Validates what translation of an IPv4 packet relies on.
#[inline(always)]
pub fn check_ipv4(ctx: &impl Packet, h: &Ipv4Hdr, min_ttl: u8) -> Result<(), DropReason> {
    let tot_len = u16::from_be(h.tot_len) as usize;
    if tot_len < IPV4_LEN + size_of::<L4Head>() {
        return Err(DropReason::Malformed);
    }
    if !ctx.holds(ETH_LEN + tot_len) {
        return Err(DropReason::Truncated);
    }
    if checksum::ipv4_header(h) != 0 {
        return Err(DropReason::BadIpv4Checksum);
    }
    if h.ttl < min_ttl {
        return Err(DropReason::HopLimitExceeded);
    }
    Ok(())
}

/// Most padding inserted in front of an RFC 4884 extension structure.
pub const MAX_PAD: usize = 32;

/// Parses an ICMPv4 error addressed to a pool address and the packet it quotes, which is one
/// the gateway sent (pool address as its source): its session is the error's (RFC 6146
/// section 3.4, RFC 7915 section 4.2).
#[inline(always)]
pub fn icmp4_error(ctx: &impl Packet, e: &mut Icmp4Error, min_ttl: u8) -> Result<(), DropReason> {
    let h: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    let ic: *mut L4Head = ptr_at(ctx, V4_ICMP)?;
    let inner: *mut Ipv4Hdr = ptr_at(ctx, V4_INNER)?;
    let l4: *mut L4Head = ptr_at(ctx, V4_INNER_L4)?;
    // SAFETY: bounds checked by ptr_at.
    let (outer, ty_code, csum, rest, inn, l4h) =
        unsafe { (*h, (*ic).a, (*ic).b, ((*ic).c, (*ic).d), *inner, *l4) };
    let tot_len = u16::from_be(outer.tot_len) as usize;
    if tot_len < IPV4_LEN + ICMP_LEN + IPV4_LEN + size_of::<L4Head>()
        || !ctx.holds(ETH_LEN + tot_len)
    {
        return Err(DropReason::Truncated);
    }
    if checksum::ipv4_header(&outer) != 0 {
        return Err(DropReason::BadIpv4Checksum);
    }
    if outer.ttl < min_ttl {
        // Never an error about an error.
        return Err(DropReason::HopLimitExceeded);
    }
    if inn.ver_ihl != 0x45 {
        return Err(DropReason::UnsupportedIcmp);
    }
    // A quoted later fragment has no transport header to find the session by; a quoted first
    // fragment gets a fragment header in IPv6 (RFC 7915 sections 4.1 and 4.3).
    let inner_frag = u16::from_be(inn.frag) & 0x2000 != 0;
    if u16::from_be(inn.frag) & 0x1fff != 0 {
        return Err(DropReason::UnsupportedIcmp);
    }
    let [ty, code] = ty_code.to_ne_bytes();
    let (ty6, code6, kind) = icmp::error_4to6(ty, code).ok_or(DropReason::UnsupportedIcmp)?;
    // Decided here, before anything changes: a dropped error leaves as it came.
    if kind == Rest::Pointer
        && icmp::pointer_4to6((u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32) >> 24) as u8)
            .is_none()
    {
        return Err(DropReason::UnsupportedIcmp);
    }
    // RFC 4884: a non-zero length (in 32-bit words) means an extension structure follows the
    // original datagram. Destination unreachable and time exceeded carry it over (the
    // original datagram, now 20 bytes longer, is zero-padded to 64-bit words and the length
    // counts those); other ICMPv6 errors have no length field, so their extensions are cut.
    let orig4 = rest.0.to_ne_bytes()[1] as usize * 4;
    let has_ext = orig4 != 0 && IPV4_LEN + ICMP_LEN + orig4 < tot_len;
    let ext_len = if has_ext {
        tot_len - IPV4_LEN - ICMP_LEN - orig4
    } else {
        0
    };
    let keep_ext = has_ext
        && !inner_frag
        && (ty6 == icmp::V6_DEST_UNREACH || ty6 == icmp::V6_TIME_EXCEEDED)
        && ext_len <= MAX_EXT
        && orig4 + (IPV6_LEN - IPV4_LEN) + 4 + ext_len + ICMP_LEN <= MAX_ICMP6;
    let (key, inner_proto6) = match inn.proto {
        IPPROTO_TCP | IPPROTO_UDP => (
            SessionKey4 {
                pool: inn.src,
                remote: inn.dst,
                pool_port_be: l4h.a,
                remote_port_be: l4h.b,
                proto: inn.proto,
                _pad: [0; 3],
            },
            inn.proto,
        ),
        IPPROTO_ICMP
            if matches!(
                icmp_type(l4h.a),
                icmp::V4_ECHO_REQUEST | icmp::V4_ECHO_REPLY
            ) =>
        {
            (
                SessionKey4 {
                    pool: inn.src,
                    remote: inn.dst,
                    pool_port_be: l4h.c,
                    remote_port_be: 0,
                    proto: IPPROTO_ICMP,
                    _pad: [0; 3],
                },
                IPPROTO_ICMPV6,
            )
        }
        _ => return Err(DropReason::UnsupportedIcmp),
    };
    e.outer = outer;
    e.ty_code = ty_code;
    e.csum = csum;
    e.rest = rest;
    e.full_len = tot_len - IPV4_LEN;
    e.inner = inn;
    e.l4 = l4h;
    e.tot_len = if has_ext && !keep_ext {
        IPV4_LEN + ICMP_LEN + orig4
    } else {
        tot_len
    };
    e.ty6 = ty6;
    e.code6 = code6;
    e.kind = kind;
    e.orig4 = orig4;
    e.ext_len = ext_len;
    e.has_ext = has_ext;
    e.keep_ext = keep_ext;
    e.inner_proto6 = inner_proto6;
    e.inner_frag = inner_frag;
    e.key = key;
    Ok(())
}

/// Parses an ICMPv6 error toward an address inside the prefix and the packet it quotes, which
/// is one the gateway delivered to a client (prefix address as its source): its session is the
/// error's (RFC 6146 section 3.4, RFC 7915 section 5.2). A quoted packet with a fragment header
/// is a first (or atomic) fragment, whose transport header follows the fragment header.
#[inline(always)]
pub fn icmp6_error(ctx: &impl Packet, e: &mut Icmp6Error, min_hop: u8) -> Result<(), DropReason> {
    let h: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let ic: *mut L4Head = ptr_at(ctx, V6_ICMP)?;
    let inner: *mut Ipv6Hdr = ptr_at(ctx, V6_INNER)?;
    // SAFETY: bounds checked by ptr_at.
    let (hop, payload_len, outer_src, outer_dst, ty_code, csum, rest, inn) = unsafe {
        (
            (*h).hop_limit,
            u16::from_be((*h).payload_len) as usize,
            (*h).src,
            (*h).dst,
            (*ic).a,
            (*ic).b,
            ((*ic).c, (*ic).d),
            *inner,
        )
    };
    let inner_frag = inn.next_header == IPPROTO_FRAGMENT;
    let (inner_nh, l4h, fh) = if inner_frag {
        let f: *mut FragHdr = ptr_at(ctx, V6_INNER + IPV6_LEN)?;
        let l4: *mut L4Head = ptr_at(ctx, V6_INNER_L4 + FRAG_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        let (f, l4h) = unsafe { (*f, *l4) };
        if u16::from_be(f.off_flags) & 0xfff8 != 0 {
            // A later fragment: no transport header to find the session by.
            return Err(DropReason::UnsupportedIcmp);
        }
        (f.next_header, l4h, f)
    } else {
        let l4: *mut L4Head = ptr_at(ctx, V6_INNER_L4)?;
        let none = FragHdr {
            next_header: 0,
            reserved: 0,
            off_flags: 0,
            id: 0,
        };
        // SAFETY: bounds checked by ptr_at.
        (inn.next_header, unsafe { *l4 }, none)
    };
    let frag = if inner_frag { FRAG_LEN } else { 0 };
    if payload_len < ICMP_LEN + IPV6_LEN + frag + size_of::<L4Head>()
        || !ctx.holds(ETH_LEN + IPV6_LEN + payload_len)
    {
        return Err(DropReason::Truncated);
    }
    if hop < min_hop {
        return Err(DropReason::HopLimitExceeded);
    }
    let [ty, code] = ty_code.to_ne_bytes();
    let (ty4, code4, kind) = icmp::error_6to4(ty, code).ok_or(DropReason::UnsupportedIcmp)?;
    // Decided here, before anything changes: a dropped error leaves as it came.
    if kind == Rest::Pointer
        && icmp::pointer_6to4(u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32)).is_none()
    {
        return Err(DropReason::UnsupportedIcmp);
    }
    // RFC 4884 (destination unreachable, time exceeded): a non-zero length (in 64-bit words)
    // means extensions follow the original datagram. They are carried over: the original
    // datagram, 20 bytes shorter in IPv4, is zero-padded to the 128 bytes ICMPv4 asks for,
    // and the length counts 32-bit words. What does not fit that scheme, or the 576 bytes an
    // ICMPv4 error may have (RFC 1812 section 4.3.2.3), is cut off.
    let orig6 = if ty == icmp::V6_DEST_UNREACH || ty == icmp::V6_TIME_EXCEEDED {
        rest.0.to_ne_bytes()[0] as usize * 8
    } else {
        0
    };
    let has_ext = orig6 != 0 && ICMP_LEN + orig6 < payload_len;
    let ext_len = if has_ext {
        payload_len - ICMP_LEN - orig6
    } else {
        0
    };
    let orig4 = orig6.saturating_sub(IPV6_LEN - IPV4_LEN);
    let pad4 = 128_usize.saturating_sub(orig4);
    let keep_ext = has_ext
        && !inner_frag
        && ext_len <= MAX_EXT
        && pad4 <= MAX_PAD
        && orig6 >= IPV6_LEN + 8
        && ICMP_LEN + orig4 + pad4 + ext_len <= MAX_ICMP4;
    let inner_proto4 = match inner_nh {
        IPPROTO_TCP | IPPROTO_UDP => inner_nh,
        IPPROTO_ICMPV6
            if matches!(
                icmp_type(l4h.a),
                icmp::V6_ECHO_REQUEST | icmp::V6_ECHO_REPLY
            ) =>
        {
            IPPROTO_ICMP
        }
        _ => return Err(DropReason::UnsupportedIcmp),
    };
    e.hop = hop;
    e.payload_len = if has_ext && !keep_ext {
        ICMP_LEN + orig6
    } else {
        payload_len
    };
    e.outer_src = outer_src;
    e.outer_dst = outer_dst;
    e.ty_code = ty_code;
    e.csum = csum;
    e.rest = rest;
    e.full_len = payload_len;
    e.inner = inn;
    e.l4 = l4h;
    e.ty4 = ty4;
    e.code4 = code4;
    e.kind = kind;
    e.orig6 = orig6;
    e.ext_len = ext_len;
    e.has_ext = has_ext;
    e.keep_ext = keep_ext;
    e.inner_proto4 = inner_proto4;
    e.inner_frag = inner_frag;
    e.inner_fh = fh;
    Ok(())
}

/// The session of the packet an ICMPv6 error quotes, which the gateway delivered to a client
/// (its source inside the prefix): the error's incoming tuple (RFC 6146 section 3.4). Fills in
/// `e.key`.
#[inline(always)]
pub fn icmp6_error_session(e: &mut Icmp6Error) -> Result<(), DropReason> {
    let (inn, l4h) = (&e.inner, &e.l4);
    let cfg = config();
    if !rfc6052::matches_raw(&inn.src, &cfg.prefix, &cfg.mask) {
        return Err(DropReason::UnsupportedIcmp);
    }
    let remote = rfc6052::raw4(rfc6052::extract(
        rfc6052::from_raw6(&inn.src),
        cfg.prefix_len,
    ));
    // TCP and UDP keep their number; echo is ICMP (the inner header may be a fragment's).
    let (client_port_be, remote_port_be, proto) = if e.inner_proto4 == IPPROTO_ICMP {
        (l4h.c, 0, IPPROTO_ICMP)
    } else {
        (l4h.b, l4h.a, e.inner_proto4)
    };
    e.key = SessionKey6 {
        client: inn.dst,
        remote,
        client_port_be,
        remote_port_be,
        proto,
        _pad: [0; 3],
    };
    Ok(())
}
