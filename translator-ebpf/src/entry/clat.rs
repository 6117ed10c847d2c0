//! The CLAT's programs (`translator clat`), both TC through TCX: `clat_egress` on the CLAT's IPv4
//! interface (the host's IPv4 packets out), `clat_ingress` on the uplink (the CLAT's IPv6
//! packets in).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};

use crate::{clat, context::Verdict};

fn action(v: Verdict) -> i32 {
    match v {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop => TC_ACT_SHOT,
        // The redirect helpers were called on the way.
        Verdict::Tx | Verdict::Redirect | Verdict::SlowPath => TC_ACT_REDIRECT,
    }
}

#[classifier]
pub fn clat_egress(ctx: TcContext) -> i32 {
    action(clat::egress(&ctx))
}

#[classifier]
pub fn clat_ingress(ctx: TcContext) -> i32 {
    action(clat::ingress(&ctx))
}
