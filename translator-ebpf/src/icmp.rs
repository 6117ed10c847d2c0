//! ICMP errors: translating them in both directions together with the packet they quote
//! (RFC 7915 sections 4.2, 4.3, 5.2, 5.3; RFC 6146 section 3.5), and the errors the gateway
//! sends itself (hop limit / TTL exceeded, packet too big, address unreachable).
//!
//! An ICMP error and its quoted packet are rewritten in place: the quoted transport header
//! stays where it is, the three headers in front of it are rewritten, and the head moves by
//! 40 bytes (two IP headers change size). Checksums of the ICMP messages are computed in full
//! (their length and content change); the quoted transport checksum is updated incrementally.

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{
        bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
        generated::{bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    },
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    checksum::{self, raw16, sum_raw4, sum_raw6},
    counters::{DropReason, Event},
    icmp::{self, Rest},
    maps::{SessionKey4, SessionKey6},
    rfc6052,
};

use crate::{
    packet::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr, L4Head,
        icmp_type, icmp_word, ptr_at,
    },
    xdp::{
        POOL, SESSIONS4, SESSIONS6, config, event, forward, ipv4_header_checksum, now, out_eth,
        route, sum_packet, udp_csum,
    },
};

/// Per-CPU token bucket of the ICMP error rate limit: [time of the last refill, tokens].
#[map]
static ICMP_RATE: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);
/// Errors that may go out back to back (bucket size).
const ICMP_BURST: u64 = 32;
/// Per-CPU: the MTU the last failed route lookup reported (for Packet Too Big).
#[map]
static LAST_MTU: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// ICMP header length (type, code, checksum, 4 bytes "rest").
const ICMP_LEN: usize = 8;
/// Offsets of an ICMP error message and the packet it quotes, IPv4 and IPv6 layouts.
const V4_ICMP: usize = ETH_LEN + IPV4_LEN;
const V4_INNER: usize = V4_ICMP + ICMP_LEN;
const V4_INNER_L4: usize = V4_INNER + IPV4_LEN;
const V6_ICMP: usize = ETH_LEN + IPV6_LEN;
const V6_INNER: usize = V6_ICMP + ICMP_LEN;
const V6_INNER_L4: usize = V6_INNER + IPV6_LEN;
/// The head moves by this much when an error is translated (two IP headers change size).
const GROWTH: usize = 2 * (IPV6_LEN - IPV4_LEN);
/// Longest ICMPv6 error: the whole packet fits the IPv6 minimum MTU (RFC 4443 section 2.4).
const MAX_ICMP6: usize = icmp::IPV6_MIN_MTU as usize - IPV6_LEN;
/// Longest ICMPv4 error the gateway sends: 576 bytes in all (RFC 1812 section 4.3.2.3).
const MAX_ICMP4: usize = 576 - IPV4_LEN;

/// Remembers the MTU a route lookup reported with `FRAG_NEEDED`.
#[inline(always)]
pub(crate) fn note_mtu(mtu: u16) {
    if let Some(p) = LAST_MTU.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *p = mtu as u32 };
    }
}

fn last_mtu() -> u32 {
    // SAFETY: per-CPU slot, read only.
    LAST_MTU.get(0).map_or(0, |v| *v)
}

/// The ICMP "rest of header" word (raw) for a translated error.
#[inline(always)]
fn rest_word(kind: Rest, mtu: u32, pointer: Option<u32>) -> Result<u32, DropReason> {
    Ok(match kind {
        Rest::Zero => 0,
        Rest::Mtu => mtu.to_be(),
        Rest::FixedPointer(p) => p.to_be(),
        Rest::Pointer => pointer.ok_or(DropReason::UnsupportedIcmp)?.to_be(),
    })
}

// ------------------------------------------------------------------------------------------------
// ICMPv4 error from the IPv4 side -> ICMPv6 error to the client.

/// Translates an ICMPv4 error addressed to a pool address. The quoted packet is one the
/// gateway sent (pool address as its source), so it names the session.
#[inline(never)]
pub(crate) fn from_ipv4_error(ctx: &XdpContext) -> Result<u32, DropReason> {
    let h: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    let ic: *mut L4Head = ptr_at(ctx, V4_ICMP)?;
    let inner: *mut Ipv4Hdr = ptr_at(ctx, V4_INNER)?;
    let l4: *mut L4Head = ptr_at(ctx, V4_INNER_L4)?;
    // SAFETY: bounds checked by ptr_at.
    let (outer, ty_code, rest, inn, l4h) =
        unsafe { (*h, (*ic).a, ((*ic).c, (*ic).d), *inner, *l4) };
    let tot_len = u16::from_be(outer.tot_len) as usize;
    if tot_len < IPV4_LEN + ICMP_LEN + IPV4_LEN + size_of::<L4Head>()
        || ctx.data() + ETH_LEN + tot_len > ctx.data_end()
    {
        return Err(DropReason::Truncated);
    }
    if ipv4_header_checksum(&outer) != 0 {
        return Err(DropReason::BadIpv4Checksum);
    }
    if outer.ttl <= 1 {
        // Never an error about an error.
        return Err(DropReason::HopLimitExceeded);
    }
    if inn.ver_ihl != 0x45 {
        return Err(DropReason::UnsupportedIcmp);
    }
    let [ty, code] = ty_code.to_ne_bytes();
    let (ty6, code6, kind) = icmp::error_4to6(ty, code).ok_or(DropReason::UnsupportedIcmp)?;
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
        && (ty6 == icmp::V6_DEST_UNREACH || ty6 == icmp::V6_TIME_EXCEEDED)
        && ext_len <= MAX_EXT
        && orig4 + (IPV6_LEN - IPV4_LEN) + 4 + ext_len + ICMP_LEN <= MAX_ICMP6;
    let tot_len = if has_ext && !keep_ext {
        trim_to(ctx, ETH_LEN + IPV4_LEN + ICMP_LEN + orig4)?;
        IPV4_LEN + ICMP_LEN + orig4
    } else {
        tot_len
    };
    let orig6 = orig4 + (IPV6_LEN - IPV4_LEN);
    let pad6 = if keep_ext { (8 - orig6 % 8) % 8 } else { 0 };

    // The quoted packet went out from the pool: its source is the pool side of the session.
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
    // SAFETY: read-only lookup, copied out at once.
    let (client, client_port) = match unsafe { SESSIONS4.get(&key) } {
        Some(v) => (v.client, v.client_port_be),
        None => return Err(DropReason::NoSession),
    };
    let cfg = config();
    let prefix = rfc6052::from_raw6(&cfg.prefix);
    let src6 = rfc6052::raw6(rfc6052::embed(
        prefix,
        cfg.prefix_len,
        rfc6052::from_raw4(outer.src),
    ));
    let inner_dst6 = rfc6052::raw6(rfc6052::embed(
        prefix,
        cfg.prefix_len,
        rfc6052::from_raw4(inn.dst),
    ));
    let inner_len = u16::from_be(inn.tot_len).saturating_sub(IPV4_LEN as u16);

    let pointer = if kind == Rest::Pointer {
        icmp::pointer_4to6((u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32) >> 24) as u8)
    } else {
        None
    };
    let mtu = if kind == Rest::Mtu {
        icmp::mtu_4to6(u16::from_be(rest.1), u16::from_be(inn.tot_len), 0)
    } else {
        0
    };
    let rest6 = if keep_ext {
        // Length of the (padded) original datagram in 64-bit words, first byte of the rest.
        u32::from_ne_bytes([((orig6 + pad6) / 8) as u8, 0, 0, 0])
    } else {
        rest_word(kind, mtu, pointer)?
    };

    // Quoted transport header: the pool port becomes the client's, addresses change.
    let quoted_len = tot_len - IPV4_LEN - ICMP_LEN - IPV4_LEN;
    let l4p: *mut L4Head = ptr_at(ctx, V4_INNER_L4)?;
    // SAFETY: bounds checked by ptr_at (and below for the TCP checksum).
    unsafe {
        match inn.proto {
            IPPROTO_TCP | IPPROTO_UDP => {
                let removed = sum_raw4(inn.src) + sum_raw4(inn.dst) + key.pool_port_be as u32;
                let added = sum_raw6(&client) + sum_raw6(&inner_dst6) + client_port as u32;
                (*l4p).a = client_port;
                if inn.proto == IPPROTO_UDP {
                    if (*l4p).d != 0 {
                        (*l4p).d = udp_csum(checksum::update((*l4p).d, removed, added));
                    }
                } else if quoted_len >= 18 {
                    let c: *mut u16 = ptr_at(ctx, V4_INNER_L4 + 16)?;
                    *c = checksum::update(*c, removed, added);
                }
            }
            _ => {
                let echo = if icmp_type((*l4p).a) == icmp::V4_ECHO_REQUEST {
                    icmp::V6_ECHO_REQUEST
                } else {
                    icmp::V6_ECHO_REPLY
                };
                let new_type = icmp_word(echo, 0);
                let removed = (*l4p).a as u32 + key.pool_port_be as u32;
                let added = new_type as u32
                    + client_port as u32
                    + sum_raw6(&client)
                    + sum_raw6(&inner_dst6)
                    + raw16(inner_len)
                    + raw16(IPPROTO_ICMPV6 as u16);
                (*l4p).a = new_type;
                (*l4p).c = client_port;
                (*l4p).b = checksum::update((*l4p).b, removed, added);
            }
        }
    }

    // Route toward the client first (the outer hop limit depends on the verdict).
    crate::packet::zeroed_fib!(fib);
    fib.family = AF_INET6;
    fib.l4_protocol = IPPROTO_ICMPV6;
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = client;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let verdict = route(ctx, fib)?;
    let hop = if verdict == xdp_action::XDP_PASS {
        outer.ttl
    } else {
        outer.ttl - 1
    };

    let mut icmp6_len = tot_len - IPV4_LEN + (IPV6_LEN - IPV4_LEN);
    let eth = out_eth(ctx, verdict, fib, ETH_P_IPV6)?;
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(GROWTH as i32)) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    if pad6 != 0 {
        // The extension structure moves behind the padding.
        grow_to(ctx, ETH_LEN + IPV6_LEN + icmp6_len + pad6)?;
        shift_right(ctx, V6_INNER + orig6, ext_len, pad6)?;
        icmp6_len += pad6;
    }
    if icmp6_len > MAX_ICMP6 {
        trim_to(ctx, ETH_LEN + IPV6_LEN + MAX_ICMP6)?;
        icmp6_len = MAX_ICMP6;
    }
    let pe: *mut EthHdr = ptr_at(ctx, 0)?;
    let p6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let pi: *mut L4Head = ptr_at(ctx, V6_ICMP)?;
    let pin: *mut Ipv6Hdr = ptr_at(ctx, V6_INNER)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        *pe = eth;
        *p6 = Ipv6Hdr {
            vtc_flow: ((6u32 << 28) | ((outer.tos as u32) << 20)).to_be(),
            payload_len: (icmp6_len as u16).to_be(),
            next_header: IPPROTO_ICMPV6,
            hop_limit: hop,
            src: src6,
            dst: client,
        };
        *pi = L4Head {
            a: icmp_word(ty6, code6),
            b: 0,
            c: rest6 as u16,
            d: (rest6 >> 16) as u16,
        };
        *pin = Ipv6Hdr {
            vtc_flow: ((6u32 << 28) | ((inn.tos as u32) << 20)).to_be(),
            payload_len: inner_len.to_be(),
            next_header: inner_proto6,
            hop_limit: inn.ttl,
            src: client,
            dst: inner_dst6,
        };
    }
    let sum = sum_packet(ctx, V6_ICMP, icmp6_len)?
        + sum_raw6(&src6)
        + sum_raw6(&client)
        + raw16(icmp6_len as u16)
        + raw16(IPPROTO_ICMPV6 as u16);
    let pi: *mut L4Head = ptr_at(ctx, V6_ICMP)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe { (*pi).b = checksum::finish(sum) };
    event(Event::IcmpErrorTranslated);
    forward(ctx, verdict, fib)
}

// ------------------------------------------------------------------------------------------------
// ICMPv6 error from the IPv6 side -> ICMPv4 error to the IPv4 host.

/// Translates an ICMPv6 error toward an address inside the prefix. The quoted packet is one the
/// gateway delivered to a client (prefix address as its source), so it names the session.
#[inline(never)]
pub(crate) fn from_ipv6_error(ctx: &XdpContext) -> Result<u32, DropReason> {
    let h: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let ic: *mut L4Head = ptr_at(ctx, V6_ICMP)?;
    let inner: *mut Ipv6Hdr = ptr_at(ctx, V6_INNER)?;
    let l4: *mut L4Head = ptr_at(ctx, V6_INNER_L4)?;
    // SAFETY: bounds checked by ptr_at.
    let (hop, payload_len, outer_dst, ty_code, rest, inn, l4h) = unsafe {
        (
            (*h).hop_limit,
            u16::from_be((*h).payload_len) as usize,
            (*h).dst,
            (*ic).a,
            ((*ic).c, (*ic).d),
            *inner,
            *l4,
        )
    };
    if payload_len < ICMP_LEN + IPV6_LEN + size_of::<L4Head>()
        || ctx.data() + ETH_LEN + IPV6_LEN + payload_len > ctx.data_end()
    {
        return Err(DropReason::Truncated);
    }
    if hop <= 1 {
        return Err(DropReason::HopLimitExceeded);
    }
    let [ty, code] = ty_code.to_ne_bytes();
    let (ty4, code4, kind) = icmp::error_6to4(ty, code).ok_or(DropReason::UnsupportedIcmp)?;
    // RFC 4884 (destination unreachable, time exceeded): a non-zero length (in 64-bit words)
    // means extensions follow the original datagram. They are carried over: the original
    // datagram, 20 bytes shorter in IPv4, is zero-padded to the 128 bytes ICMPv4 asks for,
    // and the length counts 32-bit words. What does not fit that scheme is cut off.
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
    let pad4 = if orig4 < 128 { 128 - orig4 } else { 0 };
    let keep_ext = has_ext && ext_len <= MAX_EXT && pad4 <= MAX_PAD && orig6 >= IPV6_LEN + 8;
    let payload_len = if has_ext && !keep_ext {
        trim_to(ctx, ETH_LEN + IPV6_LEN + ICMP_LEN + orig6)?;
        ICMP_LEN + orig6
    } else {
        payload_len
    };
    let pad4 = if keep_ext { pad4 } else { 0 };
    let cfg = config();
    if !rfc6052::matches_raw(&inn.src, &cfg.prefix, &cfg.mask) {
        return Err(DropReason::UnsupportedIcmp);
    }
    let remote = rfc6052::raw4(rfc6052::extract(
        rfc6052::from_raw6(&inn.src),
        cfg.prefix_len,
    ));
    let (key, inner_proto4) = match inn.next_header {
        IPPROTO_TCP | IPPROTO_UDP => (
            SessionKey6 {
                client: inn.dst,
                remote,
                client_port_be: l4h.b,
                remote_port_be: l4h.a,
                proto: inn.next_header,
                _pad: [0; 3],
            },
            inn.next_header,
        ),
        IPPROTO_ICMPV6
            if matches!(
                icmp_type(l4h.a),
                icmp::V6_ECHO_REQUEST | icmp::V6_ECHO_REPLY
            ) =>
        {
            (
                SessionKey6 {
                    client: inn.dst,
                    remote,
                    client_port_be: l4h.c,
                    remote_port_be: 0,
                    proto: IPPROTO_ICMP,
                    _pad: [0; 3],
                },
                IPPROTO_ICMP,
            )
        }
        _ => return Err(DropReason::UnsupportedIcmp),
    };
    // SAFETY: read-only lookup, copied out at once.
    let (pool, pool_port) = match unsafe { SESSIONS6.get(&key) } {
        Some(v) => (v.pool, v.pool_port_be),
        None => return Err(DropReason::NoSession),
    };
    let dst4 = rfc6052::raw4(rfc6052::extract(
        rfc6052::from_raw6(&outer_dst),
        cfg.prefix_len,
    ));

    let pointer = if kind == Rest::Pointer {
        icmp::pointer_6to4(u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32))
            .map(|p| (p as u32) << 24)
    } else {
        None
    };
    let mtu = if kind == Rest::Mtu {
        icmp::mtu_6to4(u32::from_be(((rest.1 as u32) << 16) | rest.0 as u32), 0) as u32
    } else {
        0
    };
    let rest4 = if keep_ext {
        // Length of the (padded) original datagram in 32-bit words, second byte of the rest.
        u32::from_ne_bytes([0, ((orig4 + pad4) / 4) as u8, 0, 0])
    } else {
        rest_word(kind, mtu, pointer)?
    };

    let quoted_len = payload_len - ICMP_LEN - IPV6_LEN;
    let l4p: *mut L4Head = ptr_at(ctx, V6_INNER_L4)?;
    // SAFETY: bounds checked by ptr_at (and below for the TCP checksum).
    unsafe {
        match inn.next_header {
            IPPROTO_TCP | IPPROTO_UDP => {
                let removed = sum_raw6(&inn.src) + sum_raw6(&inn.dst) + key.client_port_be as u32;
                let added = sum_raw4(remote) + sum_raw4(pool) + pool_port as u32;
                (*l4p).b = pool_port;
                if inn.next_header == IPPROTO_UDP {
                    (*l4p).d = udp_csum(checksum::update((*l4p).d, removed, added));
                } else if quoted_len >= 18 {
                    let c: *mut u16 = ptr_at(ctx, V6_INNER_L4 + 16)?;
                    *c = checksum::update(*c, removed, added);
                }
            }
            _ => {
                let echo = if icmp_type((*l4p).a) == icmp::V6_ECHO_REPLY {
                    icmp::V4_ECHO_REPLY
                } else {
                    icmp::V4_ECHO_REQUEST
                };
                let new_type = icmp_word(echo, 0);
                let removed = (*l4p).a as u32
                    + key.client_port_be as u32
                    + sum_raw6(&inn.src)
                    + sum_raw6(&inn.dst)
                    + raw16(u16::from_be(inn.payload_len))
                    + raw16(IPPROTO_ICMPV6 as u16);
                let added = new_type as u32 + pool_port as u32;
                (*l4p).a = new_type;
                (*l4p).c = pool_port;
                (*l4p).b = checksum::update((*l4p).b, removed, added);
            }
        }
    }

    let icmp4_len = payload_len - (IPV6_LEN - IPV4_LEN) + pad4;
    let tot_len = (IPV4_LEN + icmp4_len) as u16;
    crate::packet::zeroed_fib!(fib);
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_ICMP;
    fib.__bindgen_anon_1.tot_len = tot_len;
    fib.__bindgen_anon_3.ipv4_src = pool;
    fib.__bindgen_anon_4.ipv4_dst = dst4;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let verdict = route(ctx, fib)?;
    let ttl = if verdict == xdp_action::XDP_PASS {
        hop
    } else {
        hop - 1
    };
    let tclass = (u32::from_be(inn.vtc_flow) >> 20) as u8;

    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: 0,
        tot_len: tot_len.to_be(),
        id: 0,
        frag: 0,
        ttl,
        proto: IPPROTO_ICMP,
        csum: 0,
        src: pool,
        dst: dst4,
    };
    ip4.csum = ipv4_header_checksum(&ip4);
    let mut in4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: tclass,
        tot_len: (u16::from_be(inn.payload_len).wrapping_add(IPV4_LEN as u16)).to_be(),
        id: 0,
        frag: 0,
        ttl: inn.hop_limit,
        proto: inner_proto4,
        csum: 0,
        src: remote,
        dst: pool,
    };
    in4.csum = ipv4_header_checksum(&in4);
    let eth = out_eth(ctx, verdict, fib, ETH_P_IP)?;
    // New headers go right in front of the quoted transport header, then the head moves up.
    let pe: *mut EthHdr = ptr_at(ctx, GROWTH)?;
    let p4: *mut Ipv4Hdr = ptr_at(ctx, GROWTH + ETH_LEN)?;
    let pi: *mut L4Head = ptr_at(ctx, GROWTH + V4_ICMP)?;
    let pin: *mut Ipv4Hdr = ptr_at(ctx, GROWTH + V4_INNER)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        *pe = eth;
        *p4 = ip4;
        *pi = L4Head {
            a: icmp_word(ty4, code4),
            b: 0,
            c: rest4 as u16,
            d: (rest4 >> 16) as u16,
        };
        *pin = in4;
    }
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, GROWTH as i32) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    if pad4 != 0 {
        // The extension structure moves behind the padding.
        grow_to(ctx, ETH_LEN + IPV4_LEN + icmp4_len)?;
        shift_right(ctx, V4_INNER + orig4, ext_len, pad4)?;
    }
    let sum = sum_packet(ctx, V4_ICMP, icmp4_len)?;
    let pi: *mut L4Head = ptr_at(ctx, V4_ICMP)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe { (*pi).b = checksum::finish(sum) };
    event(Event::IcmpErrorTranslated);
    forward(ctx, verdict, fib)
}

// ------------------------------------------------------------------------------------------------
// Errors the gateway sends itself.

/// Longest RFC 4884 extension structure carried over.
const MAX_EXT: usize = 512;
/// Most padding inserted in front of an extension structure.
const MAX_PAD: usize = 32;

/// Per-CPU copy of an extension structure being moved.
#[map]
static EXT_BUF: PerCpuArray<[u8; MAX_EXT]> = PerCpuArray::with_max_entries(1, 0);

/// Grows the frame at the tail to `len` bytes.
#[inline(always)]
fn grow_to(ctx: &XdpContext, len: usize) -> Result<(), DropReason> {
    let have = ctx.data_end() - ctx.data();
    if len > have {
        // SAFETY: the context pointer is the program's own.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, (len - have) as i32) } != 0 {
            return Err(DropReason::HelperFailed);
        }
    }
    Ok(())
}

/// Moves `len` bytes at `from` forward by `by` bytes and zeroes the gap (the frame has room).
#[inline(never)]
fn shift_right(ctx: &XdpContext, from: usize, len: usize, by: usize) -> Result<(), DropReason> {
    if len == 0 || len > MAX_EXT || by == 0 || by > MAX_PAD {
        return Err(DropReason::UnsupportedIcmp);
    }
    let buf = EXT_BUF.get_ptr_mut(0).ok_or(DropReason::HelperFailed)?;
    let mut zeros = [0u8; MAX_PAD];
    // SAFETY: the helpers check offsets and lengths against the packet; the buffers hold
    // MAX_EXT and MAX_PAD bytes, and the lengths are bounded by those.
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, from as u32, buf.cast(), len as u32) != 0
            || bpf_xdp_store_bytes(ctx.ctx, (from + by) as u32, buf.cast(), len as u32) != 0
            || bpf_xdp_store_bytes(ctx.ctx, from as u32, zeros.as_mut_ptr().cast(), by as u32) != 0
        {
            return Err(DropReason::Truncated);
        }
    }
    Ok(())
}

/// Cuts the frame to `len` bytes.
#[inline(always)]
fn trim_to(ctx: &XdpContext, len: usize) -> Result<(), DropReason> {
    let have = ctx.data_end() - ctx.data();
    if have > len {
        // SAFETY: the context pointer is the program's own.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((have - len) as i32)) } != 0 {
            return Err(DropReason::HelperFailed);
        }
    }
    Ok(())
}

/// Rate limit: a token bucket per CPU, one token per `icmp_interval_ns`, at most
/// [`ICMP_BURST`] saved up.
#[inline(always)]
fn may_send() -> bool {
    let interval = config().icmp_interval_ns;
    if interval == 0 {
        return false;
    }
    let Some(b) = ICMP_RATE.get_ptr_mut(0) else {
        return false;
    };
    let t = now();
    // SAFETY: per-CPU slot.
    unsafe {
        let [last, tokens] = *b;
        let add = t.wrapping_sub(last) / interval;
        let mut tokens = tokens;
        if add > 0 {
            tokens = if tokens + add > ICMP_BURST {
                ICMP_BURST
            } else {
                tokens + add
            };
            (*b)[0] = if last == 0 { t } else { last + add * interval };
        }
        if tokens == 0 {
            event(Event::IcmpErrorRateLimited);
            return false;
        }
        (*b)[1] = tokens - 1;
    }
    true
}

/// The error (if any) the gateway answers a dropped packet with: hop limit / TTL exceeded,
/// packet too big (with the MTU the route lookup reported), or address unreachable when no
/// pool port can be had (RFC 6146 section 3.5.1.1). Returns the XDP action for the frame,
/// which now holds the error.
#[inline(never)]
pub(crate) fn answer(ctx: &XdpContext, reason: DropReason) -> Option<u32> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok()?;
    // SAFETY: bounds checked by ptr_at.
    let proto = unsafe { (*eth).proto };
    if proto == ETH_P_IPV6 {
        let (ty, code, rest) = match reason {
            DropReason::HopLimitExceeded => (icmp::V6_TIME_EXCEEDED, 0, 0),
            DropReason::MtuExceeded => (
                icmp::V6_PACKET_TOO_BIG,
                0,
                (last_mtu() + 20).max(icmp::IPV6_MIN_MTU),
            ),
            DropReason::PoolExhausted | DropReason::ClientLimit | DropReason::TableFull => {
                (icmp::V6_DEST_UNREACH, 3, 0)
            }
            _ => return None,
        };
        let h: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok()?;
        // SAFETY: bounds checked by ptr_at.
        let nh = unsafe { (*h).next_header };
        if nh == IPPROTO_ICMPV6 {
            let t: *mut u8 = ptr_at(ctx, V6_ICMP).ok()?;
            // SAFETY: bounds checked by ptr_at.
            if icmp::is_error_v6(unsafe { *t }) {
                return None;
            }
        }
        if !may_send() {
            return None;
        }
        send6(ctx, &Reply { ty, code, rest }).ok()
    } else if proto == ETH_P_IP {
        let (ty, code, rest) = match reason {
            DropReason::HopLimitExceeded => (icmp::V4_TIME_EXCEEDED, 0, 0),
            DropReason::MtuExceeded => {
                // Next-hop MTU in the low half of the rest word (RFC 1191).
                (
                    icmp::V4_DEST_UNREACH,
                    4,
                    last_mtu().saturating_sub(20).min(0xffff),
                )
            }
            _ => return None,
        };
        let h: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok()?;
        // SAFETY: bounds checked by ptr_at.
        let hdr = unsafe { *h };
        // Only about a first (or whole) fragment, never about an ICMP error.
        if u16::from_be(hdr.frag) & 0x1fff != 0 {
            return None;
        }
        if reason == DropReason::MtuExceeded && u16::from_be(hdr.frag) & 0x4000 == 0 {
            // DF clear: the packet should have been fragmented, not refused.
            return None;
        }
        if hdr.proto == IPPROTO_ICMP {
            let t: *mut u8 = ptr_at(ctx, V4_ICMP).ok()?;
            // SAFETY: bounds checked by ptr_at.
            if icmp::is_error_v4(unsafe { *t }) {
                return None;
            }
        }
        if !may_send() {
            return None;
        }
        send4(ctx, &hdr, &Reply { ty, code, rest }).ok()
    } else {
        None
    }
}

/// An error to send: type, code and the "rest of header" word (host order).
#[derive(Clone, Copy)]
struct Reply {
    ty: u8,
    code: u8,
    rest: u32,
}

/// Turns the frame into an ICMPv6 error about it, sent back where it came from.
#[inline(never)]
fn send6(ctx: &XdpContext, r: &Reply) -> Result<u32, DropReason> {
    let Reply { ty, code, rest } = *r;
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let h: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let (e, sender) = unsafe { (*eth, (*h).src) };
    let src = config().icmp_src6;
    let quote_max = MAX_ICMP6 - ICMP_LEN;
    trim_to(ctx, ETH_LEN + quote_max)?;
    let quoted = ctx.data_end() - ctx.data() - ETH_LEN;
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((IPV6_LEN + ICMP_LEN) as i32)) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    let len = ICMP_LEN + quoted;
    let pe: *mut EthHdr = ptr_at(ctx, 0)?;
    let p6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let pi: *mut L4Head = ptr_at(ctx, V6_ICMP)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        *pe = EthHdr {
            dst: e.src,
            src: e.dst,
            proto: ETH_P_IPV6,
        };
        *p6 = Ipv6Hdr {
            vtc_flow: (6u32 << 28).to_be(),
            payload_len: (len as u16).to_be(),
            next_header: IPPROTO_ICMPV6,
            hop_limit: 64,
            src,
            dst: sender,
        };
        *pi = L4Head {
            a: icmp_word(ty, code),
            b: 0,
            c: (rest.to_be()) as u16,
            d: (rest.to_be() >> 16) as u16,
        };
    }
    let sum = sum_packet(ctx, V6_ICMP, len)?
        + sum_raw6(&src)
        + sum_raw6(&sender)
        + raw16(len as u16)
        + raw16(IPPROTO_ICMPV6 as u16);
    let pi: *mut L4Head = ptr_at(ctx, V6_ICMP)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe { (*pi).b = checksum::finish(sum) };
    event(Event::IcmpErrorSent);
    Ok(xdp_action::XDP_TX)
}

/// Turns the frame into an ICMPv4 error about it, from the pool address it was sent to, back
/// where it came from.
#[inline(never)]
fn send4(ctx: &XdpContext, hdr: &Ipv4Hdr, r: &Reply) -> Result<u32, DropReason> {
    let Reply { ty, code, rest } = *r;
    // Only packets to a pool address get here; answer from that address.
    // SAFETY: read-only lookup.
    if unsafe { POOL.get(&hdr.dst) }.is_none() {
        return Err(DropReason::NoSession);
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    let e = unsafe { *eth };
    let quote_max = MAX_ICMP4 - ICMP_LEN;
    trim_to(ctx, ETH_LEN + quote_max)?;
    let quoted = ctx.data_end() - ctx.data() - ETH_LEN;
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((IPV4_LEN + ICMP_LEN) as i32)) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    let len = ICMP_LEN + quoted;
    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: 0,
        tot_len: ((IPV4_LEN + len) as u16).to_be(),
        id: 0,
        frag: 0,
        ttl: 64,
        proto: IPPROTO_ICMP,
        csum: 0,
        src: hdr.dst,
        dst: hdr.src,
    };
    ip4.csum = ipv4_header_checksum(&ip4);
    let pe: *mut EthHdr = ptr_at(ctx, 0)?;
    let p4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    let pi: *mut L4Head = ptr_at(ctx, V4_ICMP)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        *pe = EthHdr {
            dst: e.src,
            src: e.dst,
            proto: ETH_P_IP,
        };
        *p4 = ip4;
        *pi = L4Head {
            a: icmp_word(ty, code),
            b: 0,
            c: (rest.to_be()) as u16,
            d: (rest.to_be() >> 16) as u16,
        };
    }
    let sum = sum_packet(ctx, V4_ICMP, len)?;
    let pi: *mut L4Head = ptr_at(ctx, V4_ICMP)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe { (*pi).b = checksum::finish(sum) };
    event(Event::IcmpErrorSent);
    Ok(xdp_action::XDP_TX)
}
