//! The gateway's TC program (`mode = "tc"`, clsact ingress through TCX): veth, containers and
//! any interface where the packet is an skb anyway. It works on the skb as it is, GSO
//! super-packets included, with no copy.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};

use crate::{context::Verdict, nat64};

#[classifier]
pub fn translator_tc(ctx: TcContext) -> i32 {
    match nat64::run(&ctx) {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop => TC_ACT_SHOT,
        // The redirect helpers were called on the way (back out, other interface, slow path).
        Verdict::Tx | Verdict::Redirect | Verdict::SlowPath => TC_ACT_REDIRECT,
    }
}
