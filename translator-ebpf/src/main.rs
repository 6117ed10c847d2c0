//! The XDP data plane: stateful NAT64 (RFC 6146) with RFC 7915 header translation.
//!
//! One program is attached to the IPv6-facing and the IPv4-facing interface (the same interface
//! in a one-armed setup); the ethertype decides the direction. Established flows cost one hash
//! lookup plus the rewrite; the first packet of a flow creates its binding and session here, from
//! the port blocks the controller queued, without a round trip to user space.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod baseline;
#[cfg(target_arch = "bpf")]
mod frag;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod trace;
#[cfg(target_arch = "bpf")]
mod xdp;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the program has no reachable panics (no slicing, no unchecked indexing); the
    // verifier would reject the infinite loop a reachable panic handler needs.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
