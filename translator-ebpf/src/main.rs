//! The data plane: stateful NAT64 (RFC 6146) with RFC 7915 header translation, one core for
//! every attach point (XDP and TC).
//!
//! One program is attached to the IPv6-facing and the IPv4-facing interface (the same interface
//! in a one-armed setup); the ethertype decides the direction. Established flows cost one hash
//! lookup plus the rewrite; the first packet of a flow creates its binding and session here,
//! from the port blocks the controller queued, without a round trip to user space.
//!
//! Layout (RFC 6146 section 3's steps, the way Jool lays out its translator): `nat64` calls
//! `steps::*` in order; `rfc7915` translates; `db` holds the BIB, sessions and pool; `clat` is
//! the stateless customer-side translator of 464XLAT on the same rewrites; `maps` declares every
//! map; `observe` counts and keeps the clock; `context` hides XDP and TC behind one trait;
//! `entry` holds the programs.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// `core::intrinsics::atomic_cxchg`: the BPF target has no compare-and-swap in `core::sync::atomic`,
// but the instruction exists (BPF_ATOMIC | BPF_CMPXCHG, Linux 5.12).
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod checksum;
#[cfg(target_arch = "bpf")]
mod clat;
#[cfg(target_arch = "bpf")]
mod config;
#[cfg(target_arch = "bpf")]
mod context;
#[cfg(target_arch = "bpf")]
mod db;
#[cfg(target_arch = "bpf")]
mod entry;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod nat64;
#[cfg(target_arch = "bpf")]
mod observe;
#[cfg(target_arch = "bpf")]
mod rfc7915;
#[cfg(target_arch = "bpf")]
mod slowpath;
#[cfg(target_arch = "bpf")]
mod steps;
#[cfg(target_arch = "bpf")]
mod trace;
#[cfg(target_arch = "bpf")]
mod tuple;
#[cfg(target_arch = "bpf")]
mod wire;

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
