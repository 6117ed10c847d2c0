//! Sending the translated packet (RFC 6146 section 3.9 leaves this to the node's routing):
//! the route lookup, with its optional cache, the Ethernet header of the outgoing frame, and
//! the hand-off (redirect, back out, or up the kernel stack).

use aya_ebpf::bindings::{
    BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
    BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_PROHIBIT,
    BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE, bpf_fib_lookup,
};
use translator_common::{
    counters::{DropReason, Event},
    maps::{RouteEntry, RouteKey4, RouteKey6},
};

use crate::{
    config::config,
    context::{Packet, Verdict, ptr_at},
    maps::{FIB_SCRATCH, LAST_MTU, ROUTE_SCRATCH, ROUTES4, ROUTES6},
    observe::event,
    wire::{EthHdr, zero_fib},
};

/// Where a routed packet goes (as wide as `DropReason`, see `Verdict`).
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Out of `fib.ifindex` with the MAC addresses in `fib`.
    Forward,
    /// Out of `fib.ifindex` to the next hop in `fib`, whose MAC address the kernel resolves
    /// (TC only).
    Neighbour,
    /// Up the kernel stack, which finishes the job: a local destination, or (XDP) a next hop
    /// whose MAC address is not known yet. The kernel decrements the TTL itself if it forwards.
    Kernel,
}

impl Next {
    /// The hop limit / TTL the packet leaves with.
    #[inline(always)]
    pub fn hop(self, received: u8) -> u8 {
        if self == Next::Kernel {
            received
        } else {
            received - 1
        }
    }
}

/// Remembers the MTU a route lookup reported with `FRAG_NEEDED` (for Packet Too Big).
#[inline(always)]
pub fn note_mtu(mtu: u16) {
    if let Some(p) = LAST_MTU.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *p = mtu as u32 };
    }
}

/// The MTU the last failed route lookup on this CPU reported.
#[inline(always)]
pub fn last_mtu() -> u32 {
    LAST_MTU.get(0).map_or(0, |v| *v)
}

/// The route lookup struct for the packet being processed, off the stack: per CPU, zeroed.
#[inline(always)]
pub fn scratch_fib() -> Result<&'static mut bpf_fib_lookup, DropReason> {
    match FIB_SCRATCH.get_ptr_mut(0) {
        Some(p) => {
            zero_fib(p);
            // SAFETY: per-CPU value, zeroed above; programs do not nest on one CPU, and the
            // reference does not outlive the packet's processing.
            Ok(unsafe { &mut *p })
        }
        None => Err(DropReason::HelperFailed),
    }
}

/// The length a route lookup checks against the MTU: the translated packet's, or for a GSO
/// packet one segment's (`seg_hdr`: its IP and transport headers after translation).
#[inline(always)]
pub fn mtu_len(ctx: &impl Packet, whole: u16, seg_hdr: u16) -> u16 {
    let gso = ctx.gso_size();
    if gso == 0 {
        whole
    } else {
        seg_hdr.saturating_add(gso as u16)
    }
}

/// Route lookup for a translated packet whose `fib` the caller filled in.
#[inline(always)]
pub fn route<C: Packet>(ctx: &C, fib: &mut bpf_fib_lookup) -> Result<Next, DropReason> {
    match ctx.fib_lookup(fib) as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(Next::Forward),
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            event(Event::PassedNoNeighbour);
            Ok(if C::SKB {
                Next::Neighbour
            } else {
                Next::Kernel
            })
        }
        BPF_FIB_LKUP_RET_NOT_FWDED => Ok(Next::Kernel),
        BPF_FIB_LKUP_RET_FWD_DISABLED => Err(DropReason::ForwardingDisabled),
        BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            // SAFETY: on FRAG_NEEDED the kernel wrote the MTU into this union member.
            note_mtu(unsafe { fib.__bindgen_anon_1.mtu_result });
            Err(DropReason::MtuExceeded)
        }
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            Err(DropReason::NoRoute)
        }
        _ => Ok(Next::Kernel),
    }
}

/// [`route`] through the route cache when it is on: a destination looked up less than
/// `route_cache_ns` ago, for a packet no larger than one that fitted then, reuses that answer
/// (interface and MACs). Only successful lookups are kept; anything else is looked up every
/// time. IPv4 destinations when `v4`, else IPv6.
#[inline(always)]
pub fn route_cached(
    ctx: &impl Packet,
    fib: &mut bpf_fib_lookup,
    now: u64,
    v4: bool,
) -> Result<Next, DropReason> {
    let ttl = config().route_cache_ns;
    if ttl == 0 {
        return route(ctx, fib);
    }
    let sc = match ROUTE_SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU value; programs do not nest on one CPU.
        Some(p) => unsafe { &mut *p },
        None => return route(ctx, fib),
    };
    // SAFETY: the callers set the family's members of these unions.
    let len = unsafe { fib.__bindgen_anon_1.tot_len };
    let hit = if v4 {
        sc.k4 = RouteKey4 {
            // SAFETY: as above.
            dst: unsafe { fib.__bindgen_anon_4.ipv4_dst },
            ifindex_in: fib.ifindex,
        };
        ROUTES4.get_ptr(sc.k4)
    } else {
        sc.k6 = RouteKey6 {
            // SAFETY: as above.
            dst: unsafe { fib.__bindgen_anon_4.ipv6_dst },
            ifindex_in: fib.ifindex,
        };
        ROUTES6.get_ptr(sc.k6)
    };
    if let Some(e) = hit {
        // SAFETY: map value pointer from a successful lookup, read at once.
        unsafe {
            if now.wrapping_sub((*e).stamp) < ttl && len <= (*e).max_len {
                fib.ifindex = (*e).ifindex;
                fib.smac = (*e).smac;
                fib.dmac = (*e).dmac;
                return Ok(Next::Forward);
            }
        }
    }
    let next = route(ctx, fib)?;
    if next == Next::Forward {
        sc.e = RouteEntry {
            stamp: now,
            ifindex: fib.ifindex,
            max_len: len,
            _pad: 0,
            smac: fib.smac,
            dmac: fib.dmac,
            _pad2: 0,
        };
        let _ = if v4 {
            ROUTES4.insert(sc.k4, sc.e, 0)
        } else {
            ROUTES6.insert(sc.k6, sc.e, 0)
        };
    }
    Ok(next)
}

/// The Ethernet header of the outgoing frame: addresses from the route lookup when we
/// forward, the received ones (our own MAC as destination) when the kernel takes the packet.
/// Read before the headers change size (XDP loses the received header then).
#[inline(always)]
pub fn eth_header(
    ctx: &impl Packet,
    next: Next,
    fib: &bpf_fib_lookup,
    proto: u16,
) -> Result<EthHdr, DropReason> {
    if next == Next::Kernel {
        let eth: *mut EthHdr = ptr_at(ctx, 0)?;
        // SAFETY: bounds checked by ptr_at.
        let mut e = unsafe { *eth };
        e.proto = proto;
        Ok(e)
    } else {
        Ok(EthHdr {
            dst: fib.dmac,
            src: fib.smac,
            proto,
        })
    }
}

/// Hands the rewritten frame on: to another interface or back out of the same one, to the
/// neighbour subsystem, or up the kernel stack.
#[inline(always)]
pub fn forward(ctx: &impl Packet, next: Next, fib: &bpf_fib_lookup) -> Result<Verdict, DropReason> {
    match next {
        Next::Kernel => Ok(Verdict::Pass),
        Next::Forward => ctx.redirect(fib.ifindex),
        Next::Neighbour => ctx.redirect_neigh(fib.ifindex, fib),
    }
}
