//! Hairpinning (RFC 6146 section 3.8): a client's packet whose translated destination is a pool
//! address is processed as if it had arrived on the IPv4 side, so it leaves as IPv6 toward the
//! client owning that mapping: from the sender's mapping (inside the prefix) to the peer
//! client's transport address. TCP, UDP and ICMP echo (whose identifier is the "port" on both
//! sides: the request reaches the mapping its translated identifier names, RFC 6146 section
//! 3.5.3), and the ICMPv6 errors a client answers a hairpinned packet with, which go back to
//! the client that sent it through both mappings (RFC 5508 REQ-7 asks it of NATs).

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    checksum::{self, sum_raw4, sum_raw6},
    counters::{DropReason, Event},
    icmp,
    maps::SessionKey4,
};

use crate::{
    checksum::{pseudo_icmp6, sum_packet},
    context::{Packet, Verdict, ptr_at},
    db::session,
    observe::event,
    steps::{
        filtering,
        outgoing::prefixed,
        send::{self, eth_header, scratch_fib},
    },
    tuple::{Icmp6Error, Packet6},
    wire::{
        AF_INET6, ETH_LEN, ETH_P_IPV6, FRAG_LEN, ICMP_LEN, IPV6_LEN, L4Head, MAX_ICMP6, V6_ICMP,
        V6_INNER, V6_INNER_L4, icmp_word,
    },
};

/// The IPv4-side session key of the translated packet: from the sender's binding to the pool
/// address and port it was sent to. For ICMP echo the identifier (the sender's binding's) is
/// the "port" of the mapping it is sent to.
#[inline(always)]
fn key(pkt: &Packet6) -> SessionKey4 {
    let (pool_port_be, remote_port_be) = if pkt.l4.proto == IPPROTO_ICMP {
        (pkt.pool_port, 0)
    } else {
        (pkt.key.remote_port_be, pkt.pool_port)
    };
    SessionKey4 {
        pool: pkt.key.remote,
        remote: pkt.pool,
        pool_port_be,
        remote_port_be,
        proto: pkt.l4.proto,
        _pad: [0; 3],
    }
}

/// The peer's session (found, or opened as an inbound packet would open it) and the rewrite.
#[inline(never)]
pub fn handle<C: Packet>(ctx: &C, pkt: &Packet6) -> Result<Verdict, DropReason> {
    ctx.enter();
    let k4 = key(pkt);
    let peer = match session::find4(&k4) {
        Some(v) => session::use4(&k4, v, pkt.l4.tcp, pkt.now),
        None => filtering::open_inbound(&k4, pkt.l4.tcp, pkt.now)?.ok_or(DropReason::NoSession)?,
    };
    rewrite(ctx, pkt, &peer)
}

/// Rewrites a hairpinned IPv6 packet: the source becomes the sender's mapping (inside the
/// prefix), the destination the peer client's address and port (identifier).
#[inline(never)]
fn rewrite<C: Packet>(
    ctx: &C,
    pkt: &Packet6,
    peer: &([u32; 4], u16),
) -> Result<Verdict, DropReason> {
    ctx.enter();
    let (client, client_port) = (&peer.0, peer.1);
    let src6 = prefixed(pkt.pool);
    let icmp = pkt.l4.proto == IPPROTO_ICMP;

    let fib = scratch_fib()?;
    fib.family = AF_INET6;
    fib.l4_protocol = if icmp { IPPROTO_ICMPV6 } else { pkt.l4.proto };
    if !icmp {
        fib.sport = pkt.pool_port;
        fib.dport = client_port;
    }
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = *client;
    fib.ifindex = ctx.ifindex();
    let next = send::route(ctx, fib)?;

    let l4off = ETH_LEN + IPV6_LEN;
    let pseudo = (
        sum_raw6(&pkt.key.client) + sum_raw6(&pkt.dst),
        sum_raw6(&src6) + sum_raw6(client),
    );
    if icmp {
        // The echo keeps its type; its identifier becomes the peer's.
        ctx.write(l4off + 4, &client_port)?;
        ctx.l4_csum(
            l4off + 2,
            pseudo,
            (pkt.key.client_port_be as u32, client_port as u32),
            false,
        )?;
    } else {
        let ports = (
            pkt.key.client_port_be as u32 + pkt.key.remote_port_be as u32,
            pkt.pool_port as u32 + client_port as u32,
        );
        ctx.write(l4off, &[pkt.pool_port, client_port])?;
        let (field, udp) = if pkt.l4.proto == IPPROTO_TCP {
            (l4off + 16, false)
        } else {
            (l4off + 6, true)
        };
        ctx.l4_csum(field, pseudo, ports, udp)?;
    }
    let eth = eth_header(ctx, next, fib, ETH_P_IPV6)?;
    ctx.write(0, &eth)?;
    // Hop limit, source and destination of the IPv6 header.
    ctx.write(ETH_LEN + 7, &next.hop(pkt.hop))?;
    ctx.write(ETH_LEN + 8, &src6)?;
    ctx.write(ETH_LEN + 24, client)?;
    event(Event::Hairpinned);
    send::forward(ctx, next, fib)
}

/// The `SESSIONS4` key of the session a hairpinned packet left the sender's mapping with, from
/// an ICMPv6 error about it: the error's destination (inside the prefix) is the sender's pool
/// address, the quoted packet's destination client `pool:pool_port` the mapping it went to.
#[inline(always)]
pub fn error_key(e: &Icmp6Error, pool: u32, pool_port: u16) -> SessionKey4 {
    let (pool_port_be, remote_port_be) = if e.key.proto == IPPROTO_ICMP {
        (pool_port, 0)
    } else {
        (e.key.remote_port_be, pool_port)
    };
    SessionKey4 {
        pool: e.map.dst,
        remote: pool,
        pool_port_be,
        remote_port_be,
        proto: e.key.proto,
        _pad: [0; 3],
    }
}

/// The type, code and rest of header of a hairpinned error: RFC 7915's tables both ways.
#[inline(always)]
pub fn error_head(e: &mut Icmp6Error) -> Result<(), DropReason> {
    let [ty, code] = e.ty_code.to_ne_bytes();
    let rest = u32::from_be(((e.rest.1 as u32) << 16) | e.rest.0 as u32);
    let inner_total = u16::from_be(e.inner.payload_len).wrapping_add(IPV6_LEN as u16);
    let (ty6, code6, rest6) =
        icmp::error_6to6(ty, code, rest, inner_total).ok_or(DropReason::UnsupportedIcmp)?;
    e.ty6 = ty6;
    e.code6 = code6;
    e.rest6 = rest6;
    Ok(())
}

/// The ICMPv6 message length a hairpinned error leaves with: extensions cut off, at most the
/// IPv6 minimum MTU.
#[inline(always)]
fn error_len(e: &Icmp6Error) -> usize {
    let full = if e.has_ext {
        ICMP_LEN + e.orig6
    } else {
        e.payload_len
    };
    if full > MAX_ICMP6 { MAX_ICMP6 } else { full }
}

/// Cuts what does not stay of a hairpinned error and starts the checksum's sums with it (a
/// subprogram, like the other part: see `rfc7915::to4`).
#[inline(never)]
fn error_cut<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<(), DropReason> {
    ctx.enter();
    let len = error_len(e);
    e.removed = 0;
    e.added = 0;
    if len < e.full_len {
        e.removed = sum_packet(ctx, V6_ICMP + len, e.full_len - len)?;
        ctx.set_len(ETH_LEN + IPV6_LEN + len)?;
    }
    Ok(())
}

/// The packet a hairpinned error quotes, as A sent it: from A (its own address and port) to
/// B's mapping inside the prefix; what changes goes into `e`'s sums.
#[inline(never)]
fn error_quoted<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<(), DropReason> {
    ctx.enter();
    let (a, a_port) = (&e.peer, e.peer_port);
    let src6 = prefixed(e.map.src);
    let b_port = e.map.inner_dport;
    // A constant offset for the verifier.
    let (l4off, frag) = if e.inner_frag {
        (V6_INNER_L4 + FRAG_LEN, FRAG_LEN)
    } else {
        (V6_INNER_L4, 0)
    };
    let (inn, l4h) = (&e.inner, &e.l4);
    let quoted_len = e.payload_len - ICMP_LEN - IPV6_LEN - frag;
    let addrs = (
        sum_raw6(&inn.src) + sum_raw6(&inn.dst),
        sum_raw6(a) + sum_raw6(&src6),
    );
    let (removed, added) = match e.inner_proto4 {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports = (l4h.a as u32 + l4h.b as u32, a_port as u32 + b_port as u32);
            ctx.write(l4off, &[a_port, b_port])?;
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
                    let c = checksum::update(old, addrs.0 + ports.0, addrs.1 + ports.1);
                    let c = if e.inner_proto4 == IPPROTO_UDP {
                        crate::checksum::udp(c)
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
            // A quoted echo: its identifier is A's again.
            let c = checksum::update(l4h.b, addrs.0 + l4h.c as u32, addrs.1 + a_port as u32);
            ctx.write(l4off + 2, &[c, a_port])?;
            (l4h.b as u32 + l4h.c as u32, c as u32 + a_port as u32)
        }
    };
    ctx.write(V6_INNER + 8, a)?;
    ctx.write(V6_INNER + 24, &src6)?;
    e.removed += removed + addrs.0;
    e.added += added + addrs.1;
    Ok(())
}

/// An ICMPv6 error from client B about a packet client A sent it through B's mapping: as if
/// translated to ICMPv4 (through B's mapping) and back (through A's), it goes to A from B's
/// mapping inside the prefix, quoting A's packet as A sent it. Type, code, MTU and pointer go
/// both ways of RFC 7915's tables; RFC 4884 extensions are cut off; the message stays IPv6, so
/// nothing changes size but the cut. The checksum is updated over what changes.
#[inline(never)]
pub fn error<C: Packet>(ctx: &C, e: &mut Icmp6Error) -> Result<Verdict, DropReason> {
    ctx.enter();
    // B's mapping, the outer source; A's packet went to it.
    let src6 = prefixed(e.map.src);
    error_cut(ctx, e)?;
    error_quoted(ctx, e)?;
    let a = e.peer;
    let (ty6, code6, rest6) = (e.ty6, e.code6, e.rest6);
    let len = error_len(e);

    let fib = scratch_fib()?;
    fib.family = AF_INET6;
    fib.l4_protocol = IPPROTO_ICMPV6;
    fib.__bindgen_anon_1.tot_len = (IPV6_LEN + len) as u16;
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = a;
    fib.ifindex = ctx.ifindex();
    let next = send::route(ctx, fib)?;

    let eth = eth_header(ctx, next, fib, ETH_P_IPV6)?;
    ctx.write(0, &eth)?;
    ctx.write(ETH_LEN + 4, &(len as u16).to_be())?;
    ctx.write(ETH_LEN + 7, &next.hop(e.hop))?;
    ctx.write(ETH_LEN + 8, &src6)?;
    ctx.write(ETH_LEN + 24, &a)?;
    let head = icmp_word(ty6, code6);
    let rest_raw = rest6.to_be();
    let removed = e.removed
        + pseudo_icmp6(&e.outer_src, &e.outer_dst, e.full_len)
        + e.ty_code as u32
        + e.rest.0 as u32
        + e.rest.1 as u32;
    let added = e.added + pseudo_icmp6(&src6, &a, len) + head as u32 + sum_raw4(rest_raw);
    ctx.write(
        V6_ICMP,
        &L4Head {
            a: head,
            b: checksum::update(e.csum, removed, added),
            c: rest_raw as u16,
            d: (rest_raw >> 16) as u16,
        },
    )?;
    event(Event::IcmpErrorTranslated);
    event(Event::Hairpinned);
    send::forward(ctx, next, fib)
}
