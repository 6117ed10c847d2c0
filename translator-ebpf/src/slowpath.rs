//! The hand-off to the user-space slow path, for what the data plane cannot finish: the
//! ethertype becomes the slow-path one and the kernel passes the frame to the controller's
//! packet socket (and drops it quietly if no controller listens). The IP header is untouched,
//! so the slow path sees the packet as received.

use translator_common::{
    counters::{DropReason, Event},
    maps::SLOW_PATH_ETHERTYPE,
};

use crate::{
    context::{Packet, Verdict},
    observe::event,
};

#[inline(never)]
pub fn punt<C: Packet>(ctx: &C) -> Result<Verdict, DropReason> {
    ctx.enter();
    // Through the helper, not a packet pointer: callers reach here after head adjustments
    // and checks the verifier would otherwise have to follow through.
    let proto = SLOW_PATH_ETHERTYPE.to_be();
    ctx.store(12, (&raw const proto).cast(), 2)?;
    event(Event::SlowPath);
    ctx.punt()
}

/// Whether a frame carries the slow-path ethertype (a TC program sees the frames it handed
/// over once more, when they are received again).
#[inline(always)]
pub fn is_slow_path(ethertype_raw: u16) -> bool {
    ethertype_raw == SLOW_PATH_ETHERTYPE.to_be()
}
