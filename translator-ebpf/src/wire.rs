//! Wire-format headers and protocol constants.
//!
//! Multi-byte fields are raw: the integer whose memory is the wire bytes (network order), so
//! copying and checksumming them needs no byte swaps (see `translator_common::checksum`).
//! Headers after Ethernet are only 2-byte aligned; like C XDP programs, the program reads them
//! with natural-width loads, which the verifier allows for packet data (not strict alignment).

use aya_ebpf::bindings::bpf_fib_lookup;

pub const ETH_LEN: usize = 14;
pub const IPV6_LEN: usize = 40;
pub const IPV4_LEN: usize = 20;
/// Ethertypes as raw words.
pub const ETH_P_IPV6: u16 = 0x86dd_u16.to_be();
pub const ETH_P_IP: u16 = 0x0800_u16.to_be();

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv6Hdr {
    /// Version (4 bits), traffic class (8), flow label (20), raw.
    pub vtc_flow: u32,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub csum: u16,
    pub src: u32,
    pub dst: u32,
}

/// IPv6 fragment header (RFC 8200 section 4.5).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FragHdr {
    pub next_header: u8,
    pub reserved: u8,
    /// Offset (13 bits, in 8-byte units), 2 reserved bits, M flag; raw.
    pub off_flags: u16,
    /// Identification, raw.
    pub id: u32,
}

pub const FRAG_LEN: usize = 8;
pub const IPPROTO_FRAGMENT: u8 = 44;
/// ICMP header length (type, code, checksum, 4 bytes "rest").
pub const ICMP_LEN: usize = 8;
/// Offsets of an ICMP error message and the packet it quotes, IPv4 and IPv6 layouts.
pub const V4_ICMP: usize = ETH_LEN + IPV4_LEN;
pub const V4_INNER: usize = V4_ICMP + ICMP_LEN;
pub const V4_INNER_L4: usize = V4_INNER + IPV4_LEN;
pub const V6_ICMP: usize = ETH_LEN + IPV6_LEN;
pub const V6_INNER: usize = V6_ICMP + ICMP_LEN;
pub const V6_INNER_L4: usize = V6_INNER + IPV6_LEN;
/// Longest ICMPv6 error: the whole packet fits the IPv6 minimum MTU (RFC 4443 section 2.4).
pub const MAX_ICMP6: usize = translator_common::icmp::IPV6_MIN_MTU as usize - IPV6_LEN;
/// Longest ICMPv4 error: 576 bytes in all (RFC 1812 section 4.3.2.3).
pub const MAX_ICMP4: usize = 576 - IPV4_LEN;
/// Address families as `bpf_fib_lookup` takes them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// The first 8 bytes of TCP, UDP and ICMP echo headers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct L4Head {
    /// Source port, or ICMP type (low byte in memory) and code.
    pub a: u16,
    /// Destination port, or ICMP checksum.
    pub b: u16,
    /// UDP length, TCP sequence (high half), or ICMP identifier.
    pub c: u16,
    /// UDP checksum, TCP sequence (low half), or ICMP sequence.
    pub d: u16,
}

/// TCP bytes 12..18: data offset, flags, window, checksum.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpTail {
    pub off: u8,
    pub flags: u8,
    pub window: u16,
    pub csum: u16,
}

/// Zeroes the route-lookup struct at `f` with 4-byte stores, in place. (`core::mem::zeroed`
/// compiled to a call of a memset subprogram that stores one byte per iteration: hundreds of
/// instructions on every translated packet; returning a zeroed value would cost a second copy
/// on the stack, which the call chain's 512 bytes cannot spare.)
#[inline(always)]
pub fn zero_fib(f: *mut bpf_fib_lookup) {
    const WORDS: usize = core::mem::size_of::<bpf_fib_lookup>() / 4;
    const _: () = assert!(core::mem::size_of::<bpf_fib_lookup>().is_multiple_of(4));
    const _: () = assert!(core::mem::align_of::<bpf_fib_lookup>() >= 4);
    let w = f as *mut u32;
    let mut i = 0;
    while i < WORDS {
        // SAFETY: within the struct (size and alignment checked above); volatile, so the
        // compiler keeps these stores instead of turning them back into a memset call.
        unsafe { core::ptr::write_volatile(w.add(i), 0) };
        i += 1;
    }
}

/// Declares `$name: &mut bpf_fib_lookup`, all zero, on the stack (see [`zero_fib`]).
macro_rules! zeroed_fib {
    ($name:ident) => {
        let mut $name = core::mem::MaybeUninit::<aya_ebpf::bindings::bpf_fib_lookup>::uninit();
        crate::wire::zero_fib($name.as_mut_ptr());
        // SAFETY: zero_fib wrote every byte; all zeroes is a valid value of this plain struct.
        let $name = unsafe { $name.assume_init_mut() };
    };
}
pub(crate) use zeroed_fib;

/// ICMP type and code from the raw first word.
#[inline(always)]
pub fn icmp_type(a: u16) -> u8 {
    a.to_ne_bytes()[0]
}

/// Raw first ICMP word from type and code.
#[inline(always)]
pub fn icmp_word(ty: u8, code: u8) -> u16 {
    u16::from_ne_bytes([ty, code])
}
