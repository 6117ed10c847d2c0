//! Hairpinning (RFC 6146 section 3.8): a client's packet whose translated destination is a pool
//! address is processed as if it had arrived on the IPv4 side, so it leaves as IPv6 toward the
//! client owning that mapping: from the sender's mapping (inside the prefix) to the peer
//! client's transport address.

use translator_common::{
    IPPROTO_ICMP, IPPROTO_TCP,
    checksum::sum_raw6,
    counters::{DropReason, Event},
    maps::SessionKey4,
};

use crate::{
    context::{Packet, Verdict},
    db::session,
    observe::event,
    steps::{
        filtering,
        outgoing::prefixed,
        send::{self, eth_header, scratch_fib},
    },
    tuple::Packet6,
    wire::{AF_INET6, ETH_LEN, ETH_P_IPV6, IPV6_LEN},
};

/// The IPv4-side session key of the translated packet: from the sender's binding to the pool
/// address and port it was sent to.
#[inline(always)]
fn key(pkt: &Packet6) -> SessionKey4 {
    SessionKey4 {
        pool: pkt.key.remote,
        remote: pkt.pool,
        pool_port_be: pkt.key.remote_port_be,
        remote_port_be: pkt.pool_port,
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
        Some(v) => session::use4(v, pkt.l4.seen, pkt.now),
        None => filtering::open_inbound(&k4, pkt.l4.seen, pkt.now)?.ok_or(DropReason::NoSession)?,
    };
    rewrite(ctx, pkt, &peer)
}

/// Rewrites a hairpinned IPv6 packet: the source becomes the sender's mapping (inside the
/// prefix), the destination the peer client's address and port.
#[inline(never)]
fn rewrite<C: Packet>(
    ctx: &C,
    pkt: &Packet6,
    peer: &([u32; 4], u16),
) -> Result<Verdict, DropReason> {
    ctx.enter();
    if pkt.l4.proto == IPPROTO_ICMP {
        // Echo through a pool address would need the peer's identifier mapping; not supported.
        return Err(DropReason::UnsupportedIcmp);
    }
    let (client, client_port) = (&peer.0, peer.1);
    let src6 = prefixed(pkt.pool);

    let fib = scratch_fib()?;
    fib.family = AF_INET6;
    fib.l4_protocol = pkt.l4.proto;
    fib.sport = pkt.pool_port;
    fib.dport = client_port;
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = *client;
    fib.ifindex = ctx.ifindex();
    let next = send::route(ctx, fib)?;

    let l4off = ETH_LEN + IPV6_LEN;
    let pseudo = (
        sum_raw6(&pkt.key.client) + sum_raw6(&pkt.dst),
        sum_raw6(&src6) + sum_raw6(client),
    );
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
    let eth = eth_header(ctx, next, fib, ETH_P_IPV6)?;
    ctx.write(0, &eth)?;
    // Hop limit, source and destination of the IPv6 header.
    ctx.write(ETH_LEN + 7, &next.hop(pkt.hop))?;
    ctx.write(ETH_LEN + 8, &src6)?;
    ctx.write(ETH_LEN + 24, client)?;
    event(Event::Hairpinned);
    send::forward(ctx, next, fib)
}
