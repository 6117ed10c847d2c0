//! The gateway's XDP program (`mode = "native"` or `"generic"`): NICs and TAP devices, where it
//! runs on the frame before any skb exists.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use crate::{context::Verdict, nat64};

#[xdp]
pub fn translator(ctx: XdpContext) -> u32 {
    match nat64::run(&ctx) {
        Verdict::Pass | Verdict::SlowPath => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Tx => xdp_action::XDP_TX,
        Verdict::Redirect => xdp_action::XDP_REDIRECT,
    }
}
