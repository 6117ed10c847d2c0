//! Live packet trace (`translator trace`): when a tracer has switched it on, every packet
//! matching its filter is reported with its headers as received and as sent, and the verdict
//! (action, drop reason). Off, it costs one array read per packet.

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    maps::{TRACE_SLOTS, TraceEvent, TraceFilter},
};

use crate::{
    context::{Packet, Verdict, ptr_at},
    maps::{
        TRACE_EVENTS0, TRACE_EVENTS1, TRACE_EVENTS2, TRACE_EVENTS3, TRACE_FILTER, TRACE_SCRATCH,
    },
    observe::now,
    wire::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, FRAG_LEN, IPPROTO_FRAGMENT, IPV4_LEN, IPV6_LEN,
        Ipv4Hdr, Ipv6Hdr, L4Head,
    },
};

/// Whether a tracer is listening (its lease has not run out).
#[inline(always)]
pub fn enabled() -> bool {
    let mut t = 0;
    let mut i = 0;
    while i < TRACE_SLOTS as u32 {
        if let Some(f) = TRACE_FILTER.get(i)
            && f.until != 0
        {
            if t == 0 {
                t = now();
            }
            if t < f.until {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Headers of the packet in the context: family, addresses, protocol, ports.
#[inline(always)]
fn headers(
    ctx: &impl Packet,
    src: &mut [u32; 4],
    dst: &mut [u32; 4],
    ports: &mut (u16, u16),
) -> (u8, u8) {
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return (0, 0);
    };
    // SAFETY: bounds checked by ptr_at for every read.
    unsafe {
        let (family, proto, l4off) = if (*eth).proto == ETH_P_IPV6 {
            let Ok(h) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
                return (0, 0);
            };
            *src = (*h).src;
            *dst = (*h).dst;
            let nh = (*h).next_header;
            if nh == IPPROTO_FRAGMENT {
                let Ok(f) = ptr_at::<[u8; 4]>(ctx, ETH_LEN + IPV6_LEN) else {
                    return (6, nh);
                };
                let first = (*f)[2] == 0 && (*f)[3] & 0xf8 == 0;
                (
                    6,
                    (*f)[0],
                    if first {
                        ETH_LEN + IPV6_LEN + FRAG_LEN
                    } else {
                        0
                    },
                )
            } else {
                (6, nh, ETH_LEN + IPV6_LEN)
            }
        } else if (*eth).proto == ETH_P_IP {
            let Ok(h) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
                return (0, 0);
            };
            *src = [(*h).src, 0, 0, 0];
            *dst = [(*h).dst, 0, 0, 0];
            let later = u16::from_be((*h).frag) & 0x1fff != 0;
            (
                4,
                (*h).proto,
                if later || (*h).ver_ihl != 0x45 {
                    0
                } else {
                    ETH_LEN + IPV4_LEN
                },
            )
        } else {
            return (0, 0);
        };
        if l4off != 0 {
            let l4 = if l4off == ETH_LEN + IPV6_LEN {
                ptr_at::<L4Head>(ctx, ETH_LEN + IPV6_LEN)
            } else if l4off == ETH_LEN + IPV4_LEN {
                ptr_at::<L4Head>(ctx, ETH_LEN + IPV4_LEN)
            } else {
                ptr_at::<L4Head>(ctx, ETH_LEN + IPV6_LEN + FRAG_LEN)
            };
            if let Ok(l4) = l4 {
                *ports = match proto {
                    IPPROTO_TCP | IPPROTO_UDP => ((*l4).a, (*l4).b),
                    IPPROTO_ICMP | IPPROTO_ICMPV6 => ((*l4).c, 0),
                    _ => (0, 0),
                };
            }
        }
        (family, proto)
    }
}

/// Records the packet as received.
#[inline(never)]
pub fn before<C: Packet>(ctx: &C) {
    ctx.enter();
    let Some(ev) = TRACE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value; programs do not nest on one CPU.
    let ev = unsafe { &mut *ev };
    *ev = TraceEvent::default();
    let mut ports = (0, 0);
    let (family, proto) = headers(ctx, &mut ev.in_src, &mut ev.in_dst, &mut ports);
    ev.in_family = family;
    ev.in_proto = proto;
    ev.in_sport = ports.0;
    ev.in_dport = ports.1;
}

/// Completes the record with the packet as sent and the verdict, and reports it to every
/// tracer whose filter it matches.
#[inline(never)]
pub fn after<C: Packet>(ctx: &C, verdict: Verdict, reason: u8) {
    ctx.enter();
    let Some(ev) = TRACE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value; programs do not nest on one CPU.
    let ev = unsafe { &mut *ev };
    let mut ports = (0, 0);
    let (family, _) = headers(ctx, &mut ev.out_src, &mut ev.out_dst, &mut ports);
    ev.out_family = family;
    ev.out_sport = ports.0;
    ev.out_dport = ports.1;
    ev.action = verdict.trace_code();
    ev.reason = reason;
    let proto = if ev.in_proto == IPPROTO_ICMPV6 {
        IPPROTO_ICMP
    } else {
        ev.in_proto
    };
    let t = now();
    let mut i = 0;
    while i < TRACE_SLOTS as u32 {
        if let Some(f) = TRACE_FILTER.get(i)
            && t < f.until
            && matches(f, ev, proto)
        {
            ev.id = f.id;
            let _ = match i {
                0 => TRACE_EVENTS0.output::<TraceEvent>(&*ev, 0),
                1 => TRACE_EVENTS1.output::<TraceEvent>(&*ev, 0),
                2 => TRACE_EVENTS2.output::<TraceEvent>(&*ev, 0),
                _ => TRACE_EVENTS3.output::<TraceEvent>(&*ev, 0),
            };
        }
        i += 1;
    }
}

#[inline(always)]
fn matches(f: &TraceFilter, ev: &TraceEvent, proto: u8) -> bool {
    if f.proto != 0 && f.proto != proto {
        return false;
    }
    if f.port != 0 {
        let p = f.port.to_be();
        return ev.in_sport == p || ev.in_dport == p || ev.out_sport == p || ev.out_dport == p;
    }
    true
}
