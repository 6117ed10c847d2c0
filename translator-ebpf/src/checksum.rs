//! Checksums computed in full: the IPv4 header checksum, and the ones-complement sum of packet
//! bytes for transport checksums that cannot be updated incrementally (an IPv4 UDP datagram
//! without checksum, ICMP errors whose length and content change). Incremental updates of a
//! packet's own transport checksum go through `Packet::l4_csum`.
//!
//! One rule for checksums, in the data plane and the slow path alike: the checksum a packet
//! arrives with is updated incrementally (RFC 1624) over exactly the words that change, ICMP
//! errors included (their headers, the quoted packet's headers and ports, the bytes cut off), so
//! a checksum that was wrong stays wrong by the same amount and the receiver still sees the
//! corruption. Only what has no checksum to start from is computed in full: an IPv4 UDP
//! datagram without one, and the errors the gateway makes itself.

use translator_common::{
    IPPROTO_ICMPV6,
    checksum::{self, raw16, sum_raw4, sum_raw6},
    counters::DropReason,
};

use crate::{
    context::Packet,
    maps::{CSUM_BUF, CSUM_WORDS, MAX_FULL_CSUM},
    wire::{FragHdr, Ipv4Hdr, Ipv6Hdr},
};

/// Checksum field over an IPv4 header as given: the value to store when `csum` is zero, and
/// zero when a received header verifies.
#[inline(always)]
pub fn ipv4_header(h: &Ipv4Hdr) -> u16 {
    let s = u16::from_ne_bytes([h.ver_ihl, h.tos]) as u32
        + h.tot_len as u32
        + h.id as u32
        + h.frag as u32
        + u16::from_ne_bytes([h.ttl, h.proto]) as u32
        + h.csum as u32
        + sum_raw4(h.src)
        + sum_raw4(h.dst);
    checksum::finish(s)
}

/// A UDP checksum of zero means "none" in IPv4 and is illegal in IPv6: send 0xffff instead
/// (the same value in ones-complement arithmetic).
#[inline(always)]
pub fn udp(c: u16) -> u16 {
    if c == 0 { 0xffff } else { c }
}

/// Sum of `len` packet bytes from `off`, as raw 16-bit words (folded to fit a `u32`).
///
/// The bytes are copied into a zeroed per-CPU buffer and summed over its whole, fixed length:
/// a loop whose trip count does not depend on the packet, which the verifier walks once per
/// call site (a loop that stops at `len` would give it one path per possible length).
#[inline(never)]
pub fn sum_packet<C: Packet>(ctx: &C, off: usize, len: usize) -> Result<u32, DropReason> {
    ctx.enter();
    if len == 0 {
        return Ok(0);
    }
    if len > MAX_FULL_CSUM {
        return Err(DropReason::MtuExceeded);
    }
    let buf = CSUM_BUF.get_ptr_mut(0).ok_or(DropReason::HelperFailed)?;
    // SAFETY: per-CPU value; programs do not nest on one CPU.
    let words = unsafe { &mut *buf };
    let mut i = 0;
    while i < CSUM_WORDS {
        words[i] = 0;
        i += 1;
    }
    // The buffer holds MAX_FULL_CSUM bytes and len is at most that.
    ctx.load(off, buf.cast(), len as u32)?;
    // 32-bit halves of 64-bit words: ones-complement sums may be taken over any word size
    // and folded afterwards (RFC 1071 section 2); the zero tail adds nothing.
    let mut sum = 0u64;
    let mut i = 0;
    while i < CSUM_WORDS {
        let w = words[i];
        sum += (w & 0xffff_ffff) + (w >> 32);
        i += 1;
    }
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = s as u32;
    Ok((s & 0xffff) + (s >> 16))
}

/// Sum of the raw words of an IPv4 header as given (checksum field included).
#[inline(always)]
pub fn sum_ipv4_hdr(h: &Ipv4Hdr) -> u32 {
    u16::from_ne_bytes([h.ver_ihl, h.tos]) as u32
        + h.tot_len as u32
        + h.id as u32
        + h.frag as u32
        + u16::from_ne_bytes([h.ttl, h.proto]) as u32
        + h.csum as u32
        + sum_raw4(h.src)
        + sum_raw4(h.dst)
}

/// Sum of the raw words of an IPv6 header.
#[inline(always)]
pub fn sum_ipv6_hdr(h: &Ipv6Hdr) -> u32 {
    sum_raw4(h.vtc_flow)
        + h.payload_len as u32
        + u16::from_ne_bytes([h.next_header, h.hop_limit]) as u32
        + sum_raw6(&h.src)
        + sum_raw6(&h.dst)
}

/// Sum of the raw words of a fragment header.
#[inline(always)]
pub fn sum_frag_hdr(f: &FragHdr) -> u32 {
    u16::from_ne_bytes([f.next_header, f.reserved]) as u32 + f.off_flags as u32 + sum_raw4(f.id)
}

/// Sum of the IPv6 pseudo-header of an ICMPv6 message (RFC 4443 section 2.3).
#[inline(always)]
pub fn pseudo_icmp6(src: &[u32; 4], dst: &[u32; 4], len: usize) -> u32 {
    sum_raw6(src) + sum_raw6(dst) + raw16(len as u16) + raw16(IPPROTO_ICMPV6 as u16)
}
