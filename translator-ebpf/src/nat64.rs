//! The stateful NAT64 (RFC 6146): one packet through the steps of section 3, in order, for any
//! attach point. Determining the incoming tuple (`steps::incoming`), filtering and updating
//! binding and session information (`steps::filtering`, with `db`), computing the outgoing
//! tuple (`steps::outgoing`), translating the packet (`rfc7915`), hairpinning
//! (`steps::hairpin`), and sending it (`steps::send`). Errors the gateway answers a dropped
//! packet with are `steps::reply`'s, called by the entry points.
//!
//! Functions marked `#[inline(never)]` are BPF subprograms: each has its own stack frame, which
//! keeps every frame and the deepest call chain under the verifier's 512-byte limit. BPF calls
//! take at most five arguments (a returned `Result` takes one as a hidden pointer).

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    counters::{DropReason, Event},
    maps::{POOL_LOCAL, SessionKey4, TRACE_NOT_DROPPED},
};

use crate::{
    config::config,
    context::{Packet, Verdict, ptr_at},
    db::{frags, held, session},
    maps::{ICMP4_SCRATCH, ICMP6_SCRATCH, MAX_FULL_CSUM, POOL, SCRATCH4, SCRATCH6},
    observe::{drop_reason, event, now, translated},
    rfc7915::{Out, to4, to6},
    slowpath::{is_slow_path, punt},
    steps::{
        filtering, hairpin,
        incoming::{self, Parsed6},
        outgoing, reply,
        send::{self, route, route_cached, scratch_fib},
    },
    trace,
    tuple::{Icmp4Error, Icmp6Error, Packet4, Packet6},
    wire::{
        AF_INET, AF_INET6, ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPV4_LEN, IPV6_LEN, Ipv4Hdr,
        L4Head,
    },
};

/// The whole program for one packet, whatever the attach point: the live trace around it, the
/// steps, and for a dropped packet its counter and the ICMP error it is answered with.
#[inline(always)]
pub fn run<C: Packet>(ctx: &C) -> Verdict {
    let tracing = trace::enabled();
    if tracing {
        trace::before(ctx);
    }
    let (verdict, reason) = match process(ctx) {
        Ok(v) => (v, TRACE_NOT_DROPPED),
        Err(r) => {
            drop_reason(r);
            (reply::answer(ctx, r).unwrap_or(Verdict::Drop), r as u8)
        }
    };
    if tracing {
        trace::after(ctx, verdict, reason);
    }
    verdict
}

/// The least hop limit / TTL a packet the gateway forwards may have (it decrements it).
const FORWARDED: u8 = 2;

#[inline(always)]
fn pass() -> Result<Verdict, DropReason> {
    event(Event::Passed);
    Ok(Verdict::Pass)
}

/// What the first steps decided for a packet (fieldless and as wide as `DropReason`: see
/// `Verdict`); the parsed packet is in per-CPU scratch memory.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Not the translator's: up the stack untouched.
    Pass,
    /// For the user-space slow path.
    SlowPath,
    /// A later fragment, which goes where its first fragment went.
    Later,
    /// Its session is known: translate it.
    Translate,
    /// Its session is known and its destination is a pool address (RFC 6146 section 3.8).
    Hairpin,
}

/// One packet received on a translator interface. The steps run one after the other from
/// here, each of the large ones a subprogram of its own: the verifier limits the stack of the
/// deepest call chain to 512 bytes, so no step calls the next.
#[inline(always)]
fn process<C: Packet>(ctx: &C) -> Result<Verdict, DropReason> {
    ctx.prepare()?;
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    let proto = unsafe { (*eth).proto };
    if proto == ETH_P_IPV6 {
        if incoming::is_icmp6_error(ctx) != 0 {
            let e = match ICMP6_SCRATCH.get_ptr_mut(0) {
                // SAFETY: per-CPU value; programs do not nest on one CPU.
                Some(p) => unsafe { &mut *p },
                None => return Err(DropReason::HelperFailed),
            };
            icmp6_error_found(ctx, e)?;
            return if e.hairpin {
                hairpin::error(ctx, e)
            } else {
                icmp6_error_translate(ctx, e)
            };
        }
        if !incoming::to_prefix(ctx)? {
            return pass();
        }
        let pkt = match SCRATCH6.get_ptr_mut(0) {
            // SAFETY: per-CPU value; programs do not nest on one CPU.
            Some(p) => unsafe { &mut *p },
            None => return Err(DropReason::HelperFailed),
        };
        match from_ipv6(ctx, pkt)? {
            Found::Pass => pass(),
            Found::SlowPath => punt(ctx),
            Found::Later => later_6to4(ctx, pkt),
            Found::Translate => translate_6to4(ctx, pkt),
            Found::Hairpin => hairpin::handle(ctx, pkt),
        }
    } else if proto == ETH_P_IP {
        match incoming::icmp4_error_to_pool(ctx) {
            Some(true) => {
                let e = match ICMP4_SCRATCH.get_ptr_mut(0) {
                    // SAFETY: per-CPU value; programs do not nest on one CPU.
                    Some(p) => unsafe { &mut *p },
                    None => return Err(DropReason::HelperFailed),
                };
                icmp4_error_found(ctx, e)?;
                return icmp4_error_translate(ctx, e);
            }
            Some(false) => return pass(),
            None => {}
        }
        let p = match SCRATCH4.get_ptr_mut(0) {
            // SAFETY: per-CPU value; programs do not nest on one CPU.
            Some(p) => unsafe { &mut *p },
            None => return Err(DropReason::HelperFailed),
        };
        match from_ipv4(ctx, p)? {
            Found::Pass => pass(),
            Found::SlowPath => punt(ctx),
            Found::Later => later_4to6(ctx, &p.h),
            Found::Translate | Found::Hairpin => translate_4to6(ctx, p),
        }
    } else if is_slow_path(proto) {
        // Handed to the slow path and received again (TC): the kernel delivers it.
        Ok(Verdict::Pass)
    } else {
        pass()
    }
}

// ------------------------------------------------------------------------------------------------
// IPv6 -> IPv4

/// Determining the incoming tuple, then filtering and updating: the session of a client's
/// packet for the prefix, found or created.
#[inline(never)]
fn from_ipv6<C: Packet>(ctx: &C, pkt: &mut Packet6) -> Result<Found, DropReason> {
    ctx.enter();
    let parsed = incoming::ipv6(ctx, pkt, FORWARDED)?;
    pkt.key.remote = outgoing::embedded(&pkt.dst);
    match parsed {
        Parsed6::Packet => {}
        Parsed6::Later => return Ok(Found::Later),
        Parsed6::SlowPath => return Ok(Found::SlowPath),
    }
    pkt.pool = 0;
    pkt.pool_port = 0;
    pkt.now = now();
    let hairpin = filtering::outbound(ctx, pkt)?;
    if pkt.frag.is_some() && (hairpin || (pkt.l4.proto == IPPROTO_ICMP && !pkt.atomic)) {
        // ICMP needs the whole datagram (its checksum covers a pseudo-header with the total
        // length), which an atomic fragment is; hairpinned fragments are rare: both go to the
        // slow path, session made.
        return Ok(Found::SlowPath);
    }
    Ok(if hairpin {
        Found::Hairpin
    } else {
        Found::Translate
    })
}

/// Routes, rewrites and sends a client's packet whose session is known.
#[inline(never)]
fn translate_6to4<C: Packet>(ctx: &C, pkt: &Packet6) -> Result<Verdict, DropReason> {
    ctx.enter();
    let t = outgoing::tuple4(pkt);
    let tot_len = to4::tot_len(pkt);
    // Route first: the result decides the TTL (the kernel decrements it itself when we pass).
    let fib = scratch_fib()?;
    fib.family = AF_INET;
    fib.l4_protocol = pkt.l4.proto;
    fib.sport = t.sport;
    fib.dport = t.dport;
    fib.__bindgen_anon_1.tot_len = send::mtu_len(ctx, tot_len, IPV4_LEN as u16 + pkt.l4.hdr_len);
    fib.__bindgen_anon_2.tos = pkt.tclass;
    fib.__bindgen_anon_3.ipv4_src = t.src;
    fib.__bindgen_anon_4.ipv4_dst = t.dst;
    fib.ifindex = ctx.ifindex();
    let next = match route_cached(ctx, fib, pkt.now, true) {
        // An IPv6 fragment too big for the IPv4 link: fragment further (slow path).
        Err(DropReason::MtuExceeded) if pkt.frag.is_some() => return punt(ctx),
        r => r?,
    };
    let out = Out {
        hop: next.hop(pkt.hop),
        eth: send::eth_header(ctx, next, fib, ETH_P_IP)?,
    };
    to4::packet(ctx, pkt, &t, &out)?;
    if let Some((_, fid)) = pkt.frag
        && !pkt.atomic
    {
        frags::remember6(&pkt.key, fid, pkt.pool, pkt.now);
        event(Event::FragmentTranslated);
    }
    translated(ctx, Event::Translated6to4, Event::Bytes6to4);
    send::forward(ctx, next, fib)
}

/// A later IPv6 fragment, translated from what its first fragment left.
#[inline(never)]
fn later_6to4<C: Packet>(ctx: &C, r: &Packet6) -> Result<Verdict, DropReason> {
    ctx.enter();
    let proto = match r.l4.proto {
        IPPROTO_TCP | IPPROTO_UDP => r.l4.proto,
        IPPROTO_ICMPV6 => return punt(ctx),
        _ => return Err(DropReason::Fragment),
    };
    let Some((_, id)) = r.frag else {
        return Err(DropReason::Fragment);
    };
    let Some(pool) = frags::pool_of(&r.key.client, r.key.remote, id, proto) else {
        return punt(ctx);
    };
    let fib = scratch_fib()?;
    fib.family = AF_INET;
    fib.l4_protocol = proto;
    fib.__bindgen_anon_1.tot_len = to4::later_tot_len(r);
    fib.__bindgen_anon_2.tos = r.tclass;
    fib.__bindgen_anon_3.ipv4_src = pool;
    fib.__bindgen_anon_4.ipv4_dst = r.key.remote;
    fib.ifindex = ctx.ifindex();
    let next = match route(ctx, fib) {
        Err(DropReason::MtuExceeded) => return punt(ctx),
        v => v?,
    };
    let out = Out {
        hop: next.hop(r.hop),
        eth: send::eth_header(ctx, next, fib, ETH_P_IP)?,
    };
    to4::later_fragment(ctx, r, proto, (pool, r.key.remote), &out)?;
    event(Event::FragmentTranslated);
    translated(ctx, Event::Translated6to4, Event::Bytes6to4);
    send::forward(ctx, next, fib)
}

/// An ICMPv6 error toward the prefix, about a packet the gateway delivered to a client: the
/// incoming tuple is the quoted packet's, whose session must exist; the outgoing addresses.
/// An error in an atomic fragment loses its fragment header first (RFC 6946). When the quoted
/// packet was hairpinned, the client that sent it is found too.
#[inline(never)]
fn icmp6_error_found<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<(), DropReason> {
    ctx.enter();
    incoming::strip_atomic(ctx, e)?;
    incoming::icmp6_error(ctx, e, FORWARDED)?;
    incoming::icmp6_error_session(e)?;
    let (pool, pool_port) = session::pool_of(&e.key).ok_or(DropReason::NoSession)?;
    let dst4 = outgoing::embedded(&e.outer_dst);
    e.map = outgoing::error_map4(e.key.remote, e.key.remote_port_be, dst4, pool, pool_port);
    e.hairpin = incoming::is_pool(dst4);
    if e.hairpin {
        let (peer, peer_port) = session::client_of(&hairpin::error_key(e, pool, pool_port))
            .ok_or(DropReason::NoSession)?;
        e.peer = peer;
        e.peer_port = peer_port;
        hairpin::error_head(e)?;
    }
    Ok(())
}

/// Routes, rewrites and sends an ICMPv6 error [`icmp6_error_found`] mapped.
#[inline(never)]
fn icmp6_error_translate<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<Verdict, DropReason> {
    ctx.enter();
    to4::error_parts(ctx, e)?;
    let fib = scratch_fib()?;
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_ICMP;
    fib.__bindgen_anon_1.tot_len = to4::error_tot_len(e);
    fib.__bindgen_anon_3.ipv4_src = e.map.src;
    fib.__bindgen_anon_4.ipv4_dst = e.map.dst;
    fib.ifindex = ctx.ifindex();
    let next = route(ctx, fib)?;
    let out = Out {
        hop: next.hop(e.hop),
        eth: send::eth_header(ctx, next, fib, ETH_P_IP)?,
    };
    to4::error(ctx, e, &out)?;
    event(Event::IcmpErrorTranslated);
    send::forward(ctx, next, fib)
}

// ------------------------------------------------------------------------------------------------
// IPv4 -> IPv6

/// Determining the incoming tuple, then filtering and updating: the session of a remote
/// host's packet to a pool address, found or created where the filtering policy allows.
#[inline(never)]
fn from_ipv4<C: Packet>(ctx: &C, pkt: &mut Packet4) -> Result<Found, DropReason> {
    ctx.enter();
    let ip4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let h = unsafe { *ip4 };
    if h.ver_ihl >> 4 != 4 {
        return Ok(Found::Pass);
    }
    pkt.h = h;
    if u16::from_be(h.frag) & 0x1fff != 0 {
        // A later fragment: no transport header; its first fragment told where it goes.
        return Ok(if incoming::is_pool(h.dst) {
            Found::Later
        } else {
            Found::Pass
        });
    }
    let l4 = match incoming::ipv4_l4(ctx, &h) {
        Ok(l4) => l4,
        // Options are not translated (RFC 7915 section 4.1): the slow path skips them.
        Err(DropReason::Ipv4Options) if incoming::is_pool(h.dst) => return Ok(Found::SlowPath),
        // Not translatable: only our business when it is addressed to the pool.
        Err(e) => {
            return if incoming::is_pool(h.dst) {
                Err(e)
            } else {
                Ok(Found::Pass)
            };
        }
    };
    let key = SessionKey4 {
        pool: h.dst,
        remote: h.src,
        pool_port_be: l4.dport,
        remote_port_be: l4.sport,
        proto: l4.proto,
        _pad: [0; 3],
    };
    let now = now();
    pkt.l4 = l4;
    match session::find4(&key) {
        Some(v) => {
            incoming::check_ipv4(ctx, &h, FORWARDED)?;
            (pkt.client, pkt.client_port) = session::use4(&key, v, l4.tcp, now);
        }
        None => {
            // SAFETY: read-only lookup.
            let local = match unsafe { POOL.get(h.dst) } {
                Some(p) => p.flags & POOL_LOCAL != 0,
                None => return Ok(Found::Pass),
            };
            incoming::check_ipv4(ctx, &h, FORWARDED)?;
            match filtering::open_inbound(&key, l4.tcp, now) {
                Ok(Some((client, port))) => {
                    pkt.client = client;
                    pkt.client_port = port;
                }
                // A packet for the host itself (the pool address is ours and nothing is bound).
                Ok(None) if local => return Ok(Found::Pass),
                // A SYN nothing lets in: held, answered later unless the client opens the
                // connection meanwhile (RFC 6146 section 3.5.2.2).
                Ok(None) | Err(DropReason::NoSession) if filtering::holds_syn(l4.proto, l4.tcp) => {
                    held::hold(ctx, &key, now)?;
                    return Err(DropReason::InboundSynHeld);
                }
                Ok(None) => return Err(DropReason::NoSession),
                Err(e) => return Err(e),
            }
        }
    }
    if l4.proto == IPPROTO_UDP && u16::from_be(h.tot_len) as usize > IPV4_LEN + MAX_FULL_CSUM {
        let uh: *mut L4Head = ptr_at(ctx, ETH_LEN + IPV4_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        if unsafe { (*uh).d } == 0 && u16::from_be(h.frag) & 0x2000 == 0 {
            // Too long to checksum here (jumbo frames): the slow path computes it.
            return Ok(Found::SlowPath);
        }
    }
    if u16::from_be(h.frag) & 0x2000 != 0 {
        // A first fragment. ICMP needs the whole datagram (the ICMPv6 checksum covers the
        // total length); a UDP datagram without checksum cannot get one fragment by fragment.
        if l4.proto == IPPROTO_ICMP {
            return Ok(Found::SlowPath);
        }
        if l4.proto == IPPROTO_UDP {
            let uh: *mut L4Head = ptr_at(ctx, ETH_LEN + IPV4_LEN)?;
            // SAFETY: bounds checked by ptr_at.
            if unsafe { (*uh).d } == 0 {
                return Err(DropReason::Fragment);
            }
        }
    }
    Ok(Found::Translate)
}

/// Routes, rewrites and sends a remote host's packet whose session is known.
#[inline(never)]
fn translate_4to6<C: Packet>(ctx: &C, p: &Packet4) -> Result<Verdict, DropReason> {
    ctx.enter();
    let h = &p.h;
    let payload_len = u16::from_be(h.tot_len) - IPV4_LEN as u16;
    let grow = to6::growth(h);
    if u16::from_be(h.frag) & 0x4000 == 0
        && payload_len as usize + IPV4_LEN + grow > config().ipv6_mtu as usize
    {
        // DF clear and larger than the lowest IPv6 MTU: fragmented by the slow path.
        return punt(ctx);
    }
    let t = outgoing::tuple6(p, outgoing::prefixed(h.src));
    let nh = if p.l4.proto == IPPROTO_ICMP {
        IPPROTO_ICMPV6
    } else {
        p.l4.proto
    };
    let fib = scratch_fib()?;
    fib.family = AF_INET6;
    fib.l4_protocol = nh;
    if p.l4.proto != IPPROTO_ICMP {
        fib.sport = t.sport;
        fib.dport = t.dport;
    }
    fib.__bindgen_anon_1.tot_len = send::mtu_len(
        ctx,
        payload_len + (IPV4_LEN + grow) as u16,
        (IPV4_LEN + grow) as u16 + p.l4.hdr_len,
    );
    fib.__bindgen_anon_2.flowinfo = ((h.tos as u32) << 20).to_be();
    fib.__bindgen_anon_3.ipv6_src = t.src;
    fib.__bindgen_anon_4.ipv6_dst = t.dst;
    fib.ifindex = ctx.ifindex();
    let next = match route_cached(ctx, fib, now(), false) {
        // DF clear: the packet must be fragmented, which the slow path does (RFC 7915 4.1).
        Err(DropReason::MtuExceeded) if u16::from_be(h.frag) & 0x4000 == 0 => return punt(ctx),
        r => r?,
    };
    let out = Out {
        hop: next.hop(h.ttl),
        eth: send::eth_header(ctx, next, fib, ETH_P_IPV6)?,
    };
    to6::packet(ctx, p, &t, &out)?;
    if u16::from_be(h.frag) & 0x2000 != 0 {
        frags::remember4(h, &p.client, now());
        event(Event::FragmentTranslated);
    }
    translated(ctx, Event::Translated4to6, Event::Bytes4to6);
    send::forward(ctx, next, fib)
}

/// A later IPv4 fragment to a pool address, translated from what its first fragment left.
#[inline(never)]
fn later_4to6<C: Packet>(ctx: &C, h: &Ipv4Hdr) -> Result<Verdict, DropReason> {
    ctx.enter();
    let tot_len = u16::from_be(h.tot_len);
    if h.ver_ihl != 0x45 {
        // Options are not translated (RFC 7915 section 4.1): the slow path skips them.
        return if h.ver_ihl & 0x0f < 5 {
            Err(DropReason::Malformed)
        } else {
            punt(ctx)
        };
    }
    if (tot_len as usize) <= IPV4_LEN {
        return Err(DropReason::Malformed);
    }
    if !ctx.holds(ETH_LEN + tot_len as usize) {
        return Err(DropReason::Truncated);
    }
    if crate::checksum::ipv4_header(h) != 0 {
        return Err(DropReason::BadIpv4Checksum);
    }
    if h.ttl < FORWARDED {
        return Err(DropReason::HopLimitExceeded);
    }
    let nh = match h.proto {
        IPPROTO_TCP | IPPROTO_UDP => h.proto,
        IPPROTO_ICMP => return punt(ctx),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    let Some(client) = frags::client_of(h) else {
        return punt(ctx);
    };
    let src6 = outgoing::prefixed(h.src);
    let payload_len = to6::later_payload_len(h);
    if payload_len as usize + IPV6_LEN > config().ipv6_mtu as usize {
        // Larger than the lowest IPv6 MTU: fragmented further by the slow path.
        return punt(ctx);
    }
    let fib = scratch_fib()?;
    fib.family = AF_INET6;
    fib.l4_protocol = nh;
    fib.__bindgen_anon_1.tot_len = payload_len + IPV6_LEN as u16;
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = client;
    fib.ifindex = ctx.ifindex();
    let next = match route(ctx, fib) {
        Err(DropReason::MtuExceeded) => return punt(ctx),
        v => v?,
    };
    let out = Out {
        hop: next.hop(h.ttl),
        eth: send::eth_header(ctx, next, fib, ETH_P_IPV6)?,
    };
    to6::later_fragment(ctx, h, &src6, &client, &out)?;
    event(Event::FragmentTranslated);
    translated(ctx, Event::Translated4to6, Event::Bytes4to6);
    send::forward(ctx, next, fib)
}

/// An ICMPv4 error to a pool address, about a packet the gateway sent: the incoming tuple is
/// the quoted packet's, whose session must exist; the outgoing addresses.
#[inline(never)]
fn icmp4_error_found<C: Packet>(ctx: &C, e: &mut Icmp4Error) -> Result<(), DropReason> {
    ctx.enter();
    incoming::icmp4_error(ctx, e, FORWARDED)?;
    if !filtering::translatable(e.outer.src) {
        return Err(DropReason::SourceNotAllowed);
    }
    let (client, client_port) = session::client_of(&e.key).ok_or(DropReason::NoSession)?;
    e.map = outgoing::error_map6(
        e.outer.src,
        e.inner.dst,
        e.key.remote_port_be,
        client,
        client_port,
    );
    Ok(())
}

/// Routes, rewrites and sends an ICMPv4 error [`icmp4_error_found`] mapped.
#[inline(never)]
fn icmp4_error_translate<C: Packet>(ctx: &C, e: &mut Icmp4Error) -> Result<Verdict, DropReason> {
    ctx.enter();
    to6::error_parts(ctx, e)?;
    let fib = scratch_fib()?;
    fib.family = AF_INET6;
    fib.l4_protocol = IPPROTO_ICMPV6;
    fib.__bindgen_anon_1.tot_len = (IPV6_LEN + to6::error_len(e)) as u16;
    fib.__bindgen_anon_3.ipv6_src = e.map.src;
    fib.__bindgen_anon_4.ipv6_dst = e.map.dst;
    fib.ifindex = ctx.ifindex();
    let next = route(ctx, fib)?;
    let out = Out {
        hop: next.hop(e.outer.ttl),
        eth: send::eth_header(ctx, next, fib, ETH_P_IPV6)?,
    };
    to6::error(ctx, e, &out)?;
    event(Event::IcmpErrorTranslated);
    send::forward(ctx, next, fib)
}
