//! Inbound SYNs held (RFC 6146 section 3.5.2.2): a SYN from the IPv4 side that no mapping or
//! filter lets in may be the first half of a simultaneous open, so it is not answered at once.
//! The data plane cannot keep a packet, so it keeps what the answer needs: the first SYN from
//! each remote transport address (its first bytes, the pool address and port it went to, the
//! time) in `HELD_SYNS`. A client's SYN toward that address forgets it; the controller answers
//! what is still there after 6 seconds with ICMP port unreachable.

use aya_ebpf::bindings::BPF_NOEXIST;
use translator_common::{
    counters::{DropReason, Event},
    maps::{HELD_QUOTE, HeldKey, SessionKey4},
};

use crate::{
    context::{Packet, ptr_at},
    maps::{HELD_SCRATCH, HELD_SYNS},
    observe::event,
    wire::{ETH_LEN, IPV4_LEN, Ipv4Hdr},
};

/// The smallest SYN: IPv4 and TCP headers without options.
const MIN_SYN: usize = IPV4_LEN + 20;

/// Holds an inbound SYN for `key` (its IPv4-side session key), unless one from the same remote
/// transport address is held already (a retransmission: the first is the one answered).
#[inline(never)]
pub fn hold<C: Packet>(ctx: &C, key: &SessionKey4, now: u64) -> Result<(), DropReason> {
    ctx.enter();
    let h: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let tot_len = u16::from_be(unsafe { (*h).tot_len }) as usize;
    if tot_len < MIN_SYN {
        return Err(DropReason::Malformed);
    }
    let len = if tot_len > HELD_QUOTE {
        HELD_QUOTE
    } else {
        tot_len
    };
    let s = HELD_SCRATCH
        .get_ptr_mut(0)
        .ok_or(DropReason::HelperFailed)?;
    // SAFETY: per-CPU value; programs do not nest on one CPU.
    let s = unsafe { &mut *s };
    s.pool = key.pool;
    s.pool_port_be = key.pool_port_be;
    s.len = len as u16;
    s.time = now;
    // `len` is at least MIN_SYN and at most the buffer's size.
    ctx.load(ETH_LEN, s.packet.as_mut_ptr().cast(), len as u32)?;
    let k = HeldKey {
        remote: key.remote,
        remote_port_be: key.remote_port_be,
        _pad: 0,
    };
    let _ = HELD_SYNS.insert(k, s, BPF_NOEXIST as u64);
    Ok(())
}

/// Forgets the SYN held from a remote transport address: a client opens a connection to it.
#[inline(always)]
pub fn forget(remote: u32, remote_port_be: u16) {
    let k = HeldKey {
        remote,
        remote_port_be,
        _pad: 0,
    };
    if HELD_SYNS.remove(k).is_ok() {
        event(Event::InboundSynCancelled);
    }
}
