//! Baseline programs for the benchmarks, never attached by the controller: the cost floor of
//! any XDP program that touches a packet (`baseline_tx`: swap MACs, send back) and a bare XDP
//! IP forwarder (`baseline_forward`: route lookup, MAC rewrite, redirect), to compare the
//! translator against on the same machine.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup, xdp_action},
    helpers::{bpf_redirect, generated::bpf_fib_lookup as fib_lookup},
    macros::xdp,
    programs::XdpContext,
};

use crate::packet::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, Ipv4Hdr, Ipv6Hdr, ptr_at};

#[xdp]
pub fn baseline_tx(ctx: XdpContext) -> u32 {
    let Ok(eth) = ptr_at::<EthHdr>(&ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        let e = *eth;
        (*eth).dst = e.src;
        (*eth).src = e.dst;
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn baseline_forward(ctx: XdpContext) -> u32 {
    forward(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[inline(always)]
fn forward(ctx: &XdpContext) -> Option<u32> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok()?;
    // SAFETY: plain-old-data struct, all zeroes is valid.
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    // SAFETY: bounds checked by ptr_at for every header read and written.
    unsafe {
        if (*eth).proto == ETH_P_IP {
            let h = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok()?;
            if (*h).ttl <= 1 {
                return None;
            }
            fib.family = 2;
            fib.__bindgen_anon_1.tot_len = u16::from_be((*h).tot_len);
            fib.__bindgen_anon_3.ipv4_src = (*h).src;
            fib.__bindgen_anon_4.ipv4_dst = (*h).dst;
        } else if (*eth).proto == ETH_P_IPV6 {
            let h = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok()?;
            if (*h).hop_limit <= 1 {
                return None;
            }
            fib.family = 10;
            fib.__bindgen_anon_1.tot_len = u16::from_be((*h).payload_len) + 40;
            fib.__bindgen_anon_3.ipv6_src = (*h).src;
            fib.__bindgen_anon_4.ipv6_dst = (*h).dst;
        } else {
            return None;
        }
        fib.ifindex = ctx.ingress_ifindex() as u32;
        let rc = fib_lookup(
            ctx.ctx as *mut _,
            &mut fib,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        );
        if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
            return None;
        }
        // TTL / hop limit decrement (IPv4: incremental header checksum, RFC 1624).
        if (*eth).proto == ETH_P_IP {
            let h = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok()?;
            (*h).ttl -= 1;
            let c = u16::from_be((*h).csum) as u32 + 0x0100;
            (*h).csum = ((c + (c >> 16)) as u16).to_be();
        } else {
            let h = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok()?;
            (*h).hop_limit -= 1;
        }
        (*eth).dst = fib.dmac;
        (*eth).src = fib.smac;
        Some(bpf_redirect(fib.ifindex, 0) as u32)
    }
}
