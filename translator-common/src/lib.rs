//! Types and pure logic shared by the XDP data plane and the controller.
//!
//! Everything here is `no_std` and free of allocation so that the eBPF program can call it; the
//! host side unit-tests it. Map keys and values are `#[repr(C)]` with explicit padding and a
//! compile-time size check; each type says which fields are in wire (network) byte order.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod buckets;
pub mod checksum;
pub mod config;
pub mod counters;
pub mod icmp;
pub mod maps;
pub mod ports;
pub mod rfc6052;
pub mod tcp;

/// IP protocol numbers as they appear in IPv4 headers; session and binding keys use these for
/// all three protocols (ICMPv6 sessions are keyed as [`IPPROTO_ICMP`]).
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
