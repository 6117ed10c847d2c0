//! The CLAT (RFC 6877): the customer-side translator of 464XLAT on an IPv6-only host, stateless
//! (RFC 7915 with the RFC 6052 mapping; the PLAT, the NAT64 gateway, does the stateful part).
//!
//! The host's IPv4 stack sends on the CLAT's IPv4 interface (192.0.0.1/29, RFC 7335); the
//! egress program there translates each packet to IPv6, from the address dedicated to the CLAT
//! to the PLAT prefix + the IPv4 destination, and sends it out of the uplink as the kernel
//! routes it. On the uplink, the ingress program translates IPv6 packets to that address from
//! the prefix back to IPv4 and hands them to the IPv4 interface as if it had received them.
//! Everything else on the uplink passes (Neighbor Discovery for the CLAT's address included).
//!
//! The rewrites are the gateway's (`rfc7915`). The hop limit / TTL is copied, not decremented:
//! the CLAT is part of the host, not a hop on the path. ICMP errors are translated both ways;
//! an ICMPv6 error from an address outside the prefix gets the configured IPv4 source (RFC 6791).
//! What the data plane cannot finish (fragmented ICMP, packets to fragment further, IPv4
//! options, IPv6 extension headers) goes to the user-space slow path of `translator clat`.

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    counters::{DropReason, Event},
    icmp,
    maps::ClatConfig,
    rfc6052,
};

use crate::{
    checksum,
    context::{Packet, Verdict, ptr_at},
    maps::{CLAT_CONFIG, ICMP4_SCRATCH, ICMP6_SCRATCH, MAX_FULL_CSUM, SCRATCH6},
    observe::{drop_reason, event, translated},
    rfc7915::{Out, to4, to6},
    slowpath::punt,
    steps::incoming::{self, Parsed6},
    tuple::{ErrorMap4, ErrorMap6, Icmp4Error, Icmp6Error, Packet4, Tuple4, Tuple6},
    wire::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr, L4Head,
        V4_ICMP, V6_ICMP,
    },
};

/// The CLAT's settings, when it translates (a prefix is known and no native IPv4 is there).
#[inline(always)]
fn settings() -> Option<&'static ClatConfig> {
    CLAT_CONFIG.get(0).filter(|c| c.prefix_len != 0)
}

/// An IPv4 address (raw) inside the PLAT prefix.
#[inline(always)]
fn to_prefix(cfg: &ClatConfig, v4: u32) -> [u32; 4] {
    rfc6052::raw6(rfc6052::embed(
        rfc6052::from_raw6(&cfg.prefix),
        cfg.prefix_len,
        rfc6052::from_raw4(v4),
    ))
}

/// The IPv4 address (raw) embedded in an address inside the PLAT prefix.
#[inline(always)]
fn from_prefix(cfg: &ClatConfig, v6: &[u32; 4]) -> u32 {
    rfc6052::raw4(rfc6052::extract(rfc6052::from_raw6(v6), cfg.prefix_len))
}

#[inline(always)]
fn in_prefix(cfg: &ClatConfig, v6: &[u32; 4]) -> bool {
    rfc6052::matches_raw(v6, &cfg.prefix, &cfg.mask)
}

/// The host's IPv4 packets, on the CLAT's IPv4 interface (TC egress).
#[inline(always)]
pub fn egress<C: Packet>(ctx: &C) -> Verdict {
    counted(from_host(ctx))
}

/// Packets on the uplink (TC ingress): the CLAT's, translated for the host; the rest passes.
#[inline(always)]
pub fn ingress<C: Packet>(ctx: &C) -> Verdict {
    counted(to_host(ctx))
}

#[inline(always)]
fn counted(r: Result<Verdict, DropReason>) -> Verdict {
    match r {
        Ok(v) => v,
        Err(reason) => {
            drop_reason(reason);
            Verdict::Drop
        }
    }
}

// ------------------------------------------------------------------------------------------------
// IPv4 from the host -> IPv6

/// Sorts the host's packet out; the work is in functions of their own (the verifier adds up
/// the stack frames of a call chain: this one stays small).
#[inline(never)]
fn from_host<C: Packet>(ctx: &C) -> Result<Verdict, DropReason> {
    ctx.enter();
    ctx.prepare()?;
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    if unsafe { (*eth).proto } != ETH_P_IP {
        // Nothing else is the CLAT's (the interface has no IPv6).
        return Ok(Verdict::Pass);
    }
    // Off (no prefix, or native IPv4): the IPv4 route through the CLAT is gone too.
    let cfg = settings().ok_or(DropReason::NoRoute)?;
    let ip4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let (ver_ihl, src, dst, frag, proto) = unsafe {
        (
            (*ip4).ver_ihl,
            (*ip4).src,
            (*ip4).dst,
            u16::from_be((*ip4).frag),
            (*ip4).proto,
        )
    };
    if ver_ihl >> 4 != 4 {
        return Err(DropReason::Malformed);
    }
    if src != cfg.ipv4 {
        // Only the host's CLAT address is translated (RFC 6877 section 6.3).
        return Err(DropReason::ClientNotAllowed);
    }
    let d = u32::from_be(dst);
    if d >= 0xe000_0000 || d & 0xffff_fff8 == 0xc000_0000 || d >> 24 == 0 || d >> 24 == 127 {
        // Multicast, broadcast, the CLAT's own /29, "this network", loopback: not for the
        // PLAT.
        return Err(DropReason::DestinationNotAllowed);
    }
    if ver_ihl != 0x45 {
        // Options are not translated (RFC 7915 section 4.1): the slow path skips them.
        return if ver_ihl & 0x0f < 5 {
            Err(DropReason::Malformed)
        } else {
            punt(ctx)
        };
    }
    if frag & 0x1fff != 0 {
        return later_from_host(ctx, cfg);
    }
    if proto == IPPROTO_ICMP {
        let t: *mut u8 = ptr_at(ctx, V4_ICMP)?;
        // SAFETY: bounds checked by ptr_at.
        if icmp::is_error_v4(unsafe { *t }) {
            return error_from_host(ctx, cfg);
        }
    }
    whole_from_host(ctx, cfg)
}

/// A whole packet (or a first fragment) from the host, not an ICMP error.
#[inline(never)]
fn whole_from_host<C: Packet>(ctx: &C, cfg: &ClatConfig) -> Result<Verdict, DropReason> {
    ctx.enter();
    let ip4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let h = unsafe { *ip4 };
    let frag = u16::from_be(h.frag);
    let l4 = incoming::ipv4_l4(ctx, &h)?;
    incoming::check_ipv4(ctx, &h, 0)?;
    let payload_len = u16::from_be(h.tot_len) - IPV4_LEN as u16;
    if l4.proto == IPPROTO_UDP {
        let uh: *mut L4Head = ptr_at(ctx, ETH_LEN + IPV4_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        let zero = unsafe { (*uh).d } == 0;
        if zero && frag & 0x2000 != 0 {
            // A UDP datagram without checksum cannot get one fragment by fragment.
            return Err(DropReason::Fragment);
        }
        if zero && payload_len as usize > MAX_FULL_CSUM {
            return punt(ctx);
        }
    }
    if frag & 0x2000 != 0 && l4.proto == IPPROTO_ICMP {
        // The ICMPv6 checksum covers the whole datagram's length: reassembled by the slow path.
        return punt(ctx);
    }
    let grow = to6::growth(&h);
    if frag & 0x4000 == 0 && payload_len as usize + IPV4_LEN + grow > cfg.mtu6 as usize {
        // DF clear and too big for the uplink once translated: fragmented by the slow path.
        return punt(ctx);
    }
    let p = Packet4 {
        h,
        l4,
        client: to_prefix(cfg, h.dst),
        client_port: l4.dport,
    };
    let t = Tuple6 {
        src: cfg.clat6,
        dst: p.client,
        sport: l4.sport,
        dport: l4.dport,
    };
    to6::packet(ctx, &p, &t, &out6(h.ttl))?;
    if frag & 0x2000 != 0 {
        event(Event::FragmentTranslated);
    }
    translated(ctx, Event::Translated4to6, Event::Bytes4to6);
    ctx.redirect_route(cfg.uplink_ifindex)
}

/// How IPv6 leaves: the hop limit copied from the TTL; the neighbour subsystem fills in the
/// addresses (`redirect_route`).
#[inline(always)]
fn out6(ttl: u8) -> Out {
    Out {
        hop: ttl,
        eth: EthHdr {
            dst: [0; 6],
            src: [0; 6],
            proto: ETH_P_IPV6,
        },
    }
}

/// A later IPv4 fragment from the host: its addresses are all the translation needs.
#[inline(never)]
fn later_from_host<C: Packet>(ctx: &C, cfg: &ClatConfig) -> Result<Verdict, DropReason> {
    ctx.enter();
    let ip4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let h = &unsafe { *ip4 };
    let tot_len = u16::from_be(h.tot_len);
    if (tot_len as usize) <= IPV4_LEN || !ctx.holds(ETH_LEN + tot_len as usize) {
        return Err(DropReason::Malformed);
    }
    if checksum::ipv4_header(h) != 0 {
        return Err(DropReason::BadIpv4Checksum);
    }
    match h.proto {
        IPPROTO_TCP | IPPROTO_UDP => {}
        IPPROTO_ICMP => return punt(ctx),
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    if to6::later_payload_len(h) as usize + IPV6_LEN > cfg.mtu6 as usize {
        return punt(ctx);
    }
    to6::later_fragment(ctx, h, &cfg.clat6, &to_prefix(cfg, h.dst), &out6(h.ttl))?;
    event(Event::FragmentTranslated);
    translated(ctx, Event::Translated4to6, Event::Bytes4to6);
    ctx.redirect_route(cfg.uplink_ifindex)
}

/// An ICMPv4 error the host sends (a port unreachable, say) about a packet it received through
/// the CLAT: the quoted packet came from the prefix to the CLAT's IPv6 address. In three
/// frames, so that the verifier's sum of a call chain's stacks stays under 512 bytes.
#[inline(never)]
fn error_from_host<C: Packet>(ctx: &C, cfg: &ClatConfig) -> Result<Verdict, DropReason> {
    ctx.enter();
    let e = match ICMP4_SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU value; programs do not nest on one CPU.
        Some(p) => unsafe { &mut *p },
        None => return Err(DropReason::HelperFailed),
    };
    map_error_from_host(ctx, cfg, e)?;
    to6::error_parts(ctx, e)?;
    send_error_from_host(ctx, cfg, e)
}

#[inline(never)]
fn map_error_from_host<C: Packet>(
    ctx: &C,
    cfg: &ClatConfig,
    e: &mut Icmp4Error,
) -> Result<(), DropReason> {
    ctx.enter();
    incoming::icmp4_error(ctx, e, 0)?;
    if e.inner.dst != cfg.ipv4 {
        return Err(DropReason::UnsupportedIcmp);
    }
    let (inner_sport, inner_dport) = if e.inner.proto == IPPROTO_ICMP {
        (e.l4.c, 0)
    } else {
        (e.l4.a, e.l4.b)
    };
    e.map = ErrorMap6 {
        src: cfg.clat6,
        dst: to_prefix(cfg, e.outer.dst),
        inner_src: to_prefix(cfg, e.inner.src),
        inner_dst: cfg.clat6,
        inner_sport,
        inner_dport,
    };
    Ok(())
}

#[inline(never)]
fn send_error_from_host<C: Packet>(
    ctx: &C,
    cfg: &ClatConfig,
    e: &mut Icmp4Error,
) -> Result<Verdict, DropReason> {
    ctx.enter();
    to6::error(ctx, e, &out6(e.outer.ttl))?;
    event(Event::IcmpErrorTranslated);
    ctx.redirect_route(cfg.uplink_ifindex)
}

// ------------------------------------------------------------------------------------------------
// IPv6 from the PLAT -> IPv4 to the host

/// The Ethernet header of what the host receives on the CLAT's IPv4 interface.
#[inline(always)]
fn to_host_eth(cfg: &ClatConfig) -> EthHdr {
    EthHdr {
        dst: cfg.v4_mac,
        src: cfg.peer_mac,
        proto: ETH_P_IP,
    }
}

#[inline(never)]
fn to_host<C: Packet>(ctx: &C) -> Result<Verdict, DropReason> {
    ctx.enter();
    ctx.prepare()?;
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    if unsafe { (*eth).proto } != ETH_P_IPV6 {
        // IPv4, ARP, and frames handed to the slow path (received again here).
        return Ok(Verdict::Pass);
    }
    let Some(cfg) = settings() else {
        return Ok(Verdict::Pass);
    };
    let ip6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let (dst, src, nh) = unsafe { ((*ip6).dst, (*ip6).src, (*ip6).next_header) };
    if dst != cfg.clat6 {
        return Ok(Verdict::Pass);
    }
    if nh == IPPROTO_ICMPV6 {
        let t: *mut u8 = ptr_at(ctx, V6_ICMP)?;
        // SAFETY: bounds checked by ptr_at.
        let t = unsafe { *t };
        if icmp::is_error_v6(t) {
            return error_to_host(ctx, cfg);
        }
        if t != icmp::V6_ECHO_REQUEST && t != icmp::V6_ECHO_REPLY {
            // Neighbor Discovery for the CLAT's address, and the like: the kernel's.
            return Ok(Verdict::Pass);
        }
    }
    if !in_prefix(cfg, &src) {
        // From the local network, not through the PLAT: the host answers itself.
        return Ok(Verdict::Pass);
    }
    whole_to_host(ctx, cfg, &src)
}

/// A packet (or a first fragment) from the PLAT prefix to the CLAT, not an ICMPv6 error.
#[inline(never)]
fn whole_to_host<C: Packet>(
    ctx: &C,
    cfg: &ClatConfig,
    src: &[u32; 4],
) -> Result<Verdict, DropReason> {
    ctx.enter();
    let pkt = match SCRATCH6.get_ptr_mut(0) {
        // SAFETY: per-CPU value; programs do not nest on one CPU.
        Some(p) => unsafe { &mut *p },
        None => return Err(DropReason::HelperFailed),
    };
    let parsed = incoming::ipv6(ctx, pkt, 0)?;
    let src4 = from_prefix(cfg, src);
    let out = Out {
        hop: pkt.hop,
        eth: to_host_eth(cfg),
    };
    match parsed {
        Parsed6::SlowPath => return punt(ctx),
        Parsed6::Later => return later_to_host(ctx, cfg, src4),
        Parsed6::Packet => {}
    }
    if pkt.frag.is_some() && pkt.l4.proto == IPPROTO_ICMP {
        return punt(ctx);
    }
    let t = Tuple4 {
        src: src4,
        dst: cfg.ipv4,
        sport: pkt.l4.sport,
        dport: pkt.l4.dport,
    };
    to4::packet(ctx, pkt, &t, &out)?;
    if pkt.frag.is_some() {
        event(Event::FragmentTranslated);
    }
    translated(ctx, Event::Translated6to4, Event::Bytes6to4);
    ctx.redirect_ingress(cfg.v4_ifindex)
}

/// A later IPv6 fragment to the CLAT (parsed into the scratch packet).
#[inline(never)]
fn later_to_host<C: Packet>(ctx: &C, cfg: &ClatConfig, src4: u32) -> Result<Verdict, DropReason> {
    ctx.enter();
    let r = match SCRATCH6.get_ptr_mut(0) {
        // SAFETY: per-CPU value; programs do not nest on one CPU.
        Some(p) => unsafe { &*p },
        None => return Err(DropReason::HelperFailed),
    };
    let proto = match r.l4.proto {
        IPPROTO_TCP | IPPROTO_UDP => r.l4.proto,
        IPPROTO_ICMPV6 => return punt(ctx),
        _ => return Err(DropReason::Fragment),
    };
    let out = Out {
        hop: r.hop,
        eth: to_host_eth(cfg),
    };
    to4::later_fragment(ctx, r, proto, (src4, cfg.ipv4), &out)?;
    event(Event::FragmentTranslated);
    translated(ctx, Event::Translated6to4, Event::Bytes6to4);
    ctx.redirect_ingress(cfg.v4_ifindex)
}

/// An ICMPv6 error about a packet the CLAT sent (from its address into the prefix); in three
/// frames, as [`error_from_host`].
#[inline(never)]
fn error_to_host<C: Packet>(ctx: &C, cfg: &ClatConfig) -> Result<Verdict, DropReason> {
    ctx.enter();
    let e = match ICMP6_SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU value; programs do not nest on one CPU.
        Some(p) => unsafe { &mut *p },
        None => return Err(DropReason::HelperFailed),
    };
    if !map_error_to_host(ctx, cfg, e)? {
        // About something else the host sent: the kernel's.
        return Ok(Verdict::Pass);
    }
    to4::error_parts(ctx, e)?;
    send_error_to_host(ctx, cfg, e)
}

/// Parses the error and fills in its mapping; false when it is not about the CLAT's packet.
#[inline(never)]
fn map_error_to_host<C: Packet>(
    ctx: &C,
    cfg: &ClatConfig,
    e: &mut Icmp6Error,
) -> Result<bool, DropReason> {
    ctx.enter();
    // Not in an atomic fragment (the dispatcher saw ICMPv6 right after the IPv6 header).
    e.atomic = false;
    e.atomic_id = 0;
    incoming::icmp6_error(ctx, e, 0)?;
    if e.inner.src != cfg.clat6 || !in_prefix(cfg, &e.inner.dst) {
        return Ok(false);
    }
    let ip6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let outer_src = unsafe { (*ip6).src };
    let (inner_sport, inner_dport) = if e.inner_proto4 == IPPROTO_ICMP {
        (0, e.l4.c)
    } else {
        (e.l4.a, e.l4.b)
    };
    e.map = ErrorMap4 {
        // RFC 6791: a source the error's IPv6 source cannot be mapped to.
        src: if in_prefix(cfg, &outer_src) {
            from_prefix(cfg, &outer_src)
        } else {
            cfg.error_src4
        },
        dst: cfg.ipv4,
        inner_src: cfg.ipv4,
        inner_dst: from_prefix(cfg, &e.inner.dst),
        inner_sport,
        inner_dport,
    };
    Ok(true)
}

#[inline(never)]
fn send_error_to_host<C: Packet>(
    ctx: &C,
    cfg: &ClatConfig,
    e: &mut Icmp6Error,
) -> Result<Verdict, DropReason> {
    ctx.enter();
    let out = Out {
        hop: e.hop,
        eth: to_host_eth(cfg),
    };
    to4::error(ctx, e, &out)?;
    event(Event::IcmpErrorTranslated);
    ctx.redirect_ingress(cfg.v4_ifindex)
}
