//! The ICMP errors the gateway sends itself (RFC 6146 section 3.5, RFC 7915): hop limit / TTL
//! exceeded, packet too big (with the MTU the route lookup reported), and address unreachable
//! when no pool port can be had (section 3.5.1.1). The dropped packet's frame becomes the error
//! about it and goes back out where it came from; a per-CPU token bucket limits the rate.

use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6,
    checksum::{self, raw16, sum_raw6},
    counters::{DropReason, Event},
    icmp,
};

use crate::{
    checksum::{ipv4_header, sum_packet},
    config::config,
    context::{Family, Packet, Verdict, ptr_at},
    maps::ICMP_RATE,
    observe::{event, now},
    steps::{incoming::is_pool, send::last_mtu},
    wire::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, ICMP_LEN, IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr,
        L4Head, MAX_ICMP4, MAX_ICMP6, V4_ICMP, V6_ICMP, icmp_word,
    },
};

/// Errors that may go out back to back (bucket size).
const ICMP_BURST: u64 = 32;

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

/// The error (if any) the gateway answers a dropped packet with. Returns the verdict for the
/// frame, which now holds the error.
#[inline(never)]
pub fn answer<C: Packet>(ctx: &C, reason: DropReason) -> Option<Verdict> {
    ctx.enter();
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

/// Cuts the frame to at most `ETH_LEN + quote` bytes; returns the bytes quoted.
#[inline(always)]
fn quote<C: Packet>(ctx: &C, quote: usize) -> Result<usize, DropReason> {
    let len = ctx.len();
    if len > ETH_LEN + quote {
        ctx.set_len(ETH_LEN + quote)?;
        Ok(quote)
    } else {
        Ok(len - ETH_LEN)
    }
}

/// Turns the frame into an ICMPv6 error about it, sent back where it came from.
#[inline(never)]
fn send6<C: Packet>(ctx: &C, r: &Reply) -> Result<Verdict, DropReason> {
    ctx.enter();
    let Reply { ty, code, rest } = *r;
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let h: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let (e, sender) = unsafe { (*eth, (*h).src) };
    let src = config().icmp_src6;
    let quoted = quote(ctx, MAX_ICMP6 - ICMP_LEN)?;
    ctx.resize((IPV6_LEN + ICMP_LEN) as i32, Family::Same)?;
    let len = ICMP_LEN + quoted;
    ctx.write(
        0,
        &EthHdr {
            dst: e.src,
            src: e.dst,
            proto: ETH_P_IPV6,
        },
    )?;
    ctx.write(
        ETH_LEN,
        &Ipv6Hdr {
            vtc_flow: (6u32 << 28).to_be(),
            payload_len: (len as u16).to_be(),
            next_header: IPPROTO_ICMPV6,
            hop_limit: 64,
            src,
            dst: sender,
        },
    )?;
    ctx.write(
        V6_ICMP,
        &L4Head {
            a: icmp_word(ty, code),
            b: 0,
            c: (rest.to_be()) as u16,
            d: (rest.to_be() >> 16) as u16,
        },
    )?;
    let sum = sum_packet(ctx, V6_ICMP, len)?
        + sum_raw6(&src)
        + sum_raw6(&sender)
        + raw16(len as u16)
        + raw16(IPPROTO_ICMPV6 as u16);
    ctx.write(V6_ICMP + 2, &checksum::finish(sum))?;
    event(Event::IcmpErrorSent);
    ctx.tx()
}

/// Turns the frame into an ICMPv4 error about it, from the pool address it was sent to, back
/// where it came from.
#[inline(never)]
fn send4<C: Packet>(ctx: &C, hdr: &Ipv4Hdr, r: &Reply) -> Result<Verdict, DropReason> {
    ctx.enter();
    let Reply { ty, code, rest } = *r;
    // Only packets to a pool address get here; answer from that address.
    if !is_pool(hdr.dst) {
        return Err(DropReason::NoSession);
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    let e = unsafe { *eth };
    let quoted = quote(ctx, MAX_ICMP4 - ICMP_LEN)?;
    ctx.resize((IPV4_LEN + ICMP_LEN) as i32, Family::Same)?;
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
    ip4.csum = ipv4_header(&ip4);
    ctx.write(
        0,
        &EthHdr {
            dst: e.src,
            src: e.dst,
            proto: ETH_P_IP,
        },
    )?;
    ctx.write(ETH_LEN, &ip4)?;
    ctx.write(
        V4_ICMP,
        &L4Head {
            a: icmp_word(ty, code),
            b: 0,
            c: (rest.to_be()) as u16,
            d: (rest.to_be() >> 16) as u16,
        },
    )?;
    let sum = sum_packet(ctx, V4_ICMP, len)?;
    ctx.write(V4_ICMP + 2, &checksum::finish(sum))?;
    event(Event::IcmpErrorSent);
    ctx.tx()
}
