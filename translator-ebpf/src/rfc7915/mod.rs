//! Translating the packet (RFC 6146 section 3.7, by the rules of RFC 7915): the header rewrite
//! in each direction, ICMP messages with the packets they quote, and fragments. These functions
//! rewrite a packet in place for an outgoing tuple and an [`Out`] they are given; they keep no
//! state and know nothing of sessions or routes, so every translator (the NAT64 gateway, the
//! CLAT) uses them alike.
//!
//! Transport checksums are updated incrementally over the changed words (RFC 1624), the packet's
//! own through `Packet::l4_csum`; ICMP error messages get theirs computed in full (their length
//! and content change).

use translator_common::{counters::DropReason, icmp::Rest};

use crate::{
    context::Packet,
    maps::{EXT_BUF, MAX_EXT},
    steps::incoming::MAX_PAD,
    wire::EthHdr,
};

pub mod to4;
pub mod to6;

/// How a translated packet leaves: its hop limit / TTL, and its Ethernet header (the caller
/// makes it before the headers change size: XDP loses the received one then).
#[derive(Clone, Copy)]
pub struct Out {
    pub hop: u8,
    pub eth: EthHdr,
}

/// The ICMP "rest of header" word (raw) for a translated error: `mtu` and `pointer` (both
/// host order, the pointer already in its byte of the word) are computed by the caller only for
/// the kinds that use them. (No `Option` here: an enum payload that is undefined on some path
/// ends up in a register the verifier refuses to read.)
#[inline(always)]
fn rest_word(kind: Rest, mtu: u32, pointer: Result<u32, DropReason>) -> Result<u32, DropReason> {
    Ok(match kind {
        Rest::Zero => 0,
        Rest::Mtu => mtu.to_be(),
        Rest::FixedPointer(p) => p.to_be(),
        Rest::Pointer => pointer?.to_be(),
    })
}

/// Moves `len` bytes at `from` forward by `by` bytes and zeroes the gap (the packet has room):
/// an RFC 4884 extension structure behind the padding of the original datagram.
#[inline(never)]
fn shift_right<C: Packet>(ctx: &C, from: usize, len: usize, by: usize) -> Result<(), DropReason> {
    ctx.enter();
    if len == 0 || len > MAX_EXT || by == 0 || by > MAX_PAD {
        return Err(DropReason::UnsupportedIcmp);
    }
    let buf = EXT_BUF.get_ptr_mut(0).ok_or(DropReason::HelperFailed)?;
    let zeros = [0u8; MAX_PAD];
    // The buffers hold MAX_EXT and MAX_PAD bytes, and the lengths are bounded by those.
    ctx.load(from, buf.cast(), len as u32)?;
    ctx.store(from + by, buf.cast(), len as u32)?;
    ctx.store(from, zeros.as_ptr().cast(), by as u32)
}
