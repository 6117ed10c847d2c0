//! What the steps hand each other: the incoming packet as parsed (RFC 6146 section 3.4, "the
//! incoming tuple"), the outgoing tuple a translated packet gets (section 3.6), and the parsed
//! ICMP errors with their quoted packets. Addresses and ports are raw (wire order).

use translator_common::{
    icmp::Rest,
    maps::{SessionKey4, SessionKey6},
};

use crate::wire::{FragHdr, Ipv4Hdr, Ipv6Hdr, L4Head};

/// What the translator needs from a transport header (ports raw).
#[derive(Clone, Copy)]
pub struct L4 {
    /// Session protocol (IPv4 numbering: ICMP is 1 on both sides).
    pub proto: u8,
    /// TCP: the flag byte (FIN, SYN, RST, ...; `translator_common::tcp`); 0 otherwise.
    pub tcp: u8,
    /// Source port, or the ICMP identifier when it names the sender's mapping.
    pub sport: u16,
    /// Destination port, or the ICMP identifier when it names the receiver's mapping.
    pub dport: u16,
    /// Length of the transport header (TCP: from its data offset), for GSO segment sizes.
    pub hdr_len: u16,
}

/// An IPv6 packet from a client, parsed, on its way through the steps (kept in per-CPU
/// scratch memory: the verifier allows 512 bytes of stack for the whole call chain).
pub struct Packet6 {
    /// The incoming tuple: client address and port, the IPv4 address embedded in the
    /// destination and its port, the protocol.
    pub key: SessionKey6,
    pub dst: [u32; 4],
    /// The binding (pool address and port), once filtering found or made it.
    pub pool: u32,
    pub pool_port: u16,
    pub payload_len: u16,
    pub tclass: u8,
    pub hop: u8,
    pub l4: L4,
    pub now: u64,
    /// Fragment header of a first fragment (raw offset/flags word, raw identification).
    pub frag: Option<(u16, u32)>,
    /// The fragment header is an atomic fragment's (offset 0, M clear: RFC 6946): the packet
    /// is translated as a whole one, with the identification RFC 7915 section 5.1.1 gives.
    pub atomic: bool,
}

/// An IPv4 packet to a pool address, parsed; `client` and `client_port` once its session is
/// known.
pub struct Packet4 {
    pub h: Ipv4Hdr,
    pub l4: L4,
    pub client: [u32; 4],
    pub client_port: u16,
}

/// The addresses and ports an IPv4 packet leaves with (raw). For ICMP echo the identifier is
/// `sport` (the client's mapping is the sender).
#[derive(Clone, Copy)]
pub struct Tuple4 {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
}

/// The addresses and ports an IPv6 packet leaves with (raw). For ICMP echo the identifier is
/// `dport` (the client's mapping is the receiver).
#[derive(Clone, Copy)]
pub struct Tuple6 {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
}

/// Where the parts of an ICMP error go after translation: the outer addresses, and the
/// addresses and ports of the quoted packet (raw). A quoted echo's identifier is the port on
/// the client's side: `inner_sport` here (the client sent the quoted packet).
#[derive(Clone, Copy)]
pub struct ErrorMap6 {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub inner_src: [u32; 4],
    pub inner_dst: [u32; 4],
    pub inner_sport: u16,
    pub inner_dport: u16,
}

/// [`ErrorMap6`] for an ICMPv4 error made from an ICMPv6 one. A quoted echo's identifier is
/// `inner_dport` (the quoted packet went to the client).
#[derive(Clone, Copy)]
pub struct ErrorMap4 {
    pub src: u32,
    pub dst: u32,
    pub inner_src: u32,
    pub inner_dst: u32,
    pub inner_sport: u16,
    pub inner_dport: u16,
}

/// An ICMPv4 error and the packet it quotes, parsed (RFC 7915 section 4.2 and 4.3), with what
/// RFC 4884 extensions need, and where it goes (`map`, filled in by the mapping step).
pub struct Icmp4Error {
    pub outer: Ipv4Hdr,
    /// Type and code (raw first word), the checksum and the "rest of header" words, raw.
    pub ty_code: u16,
    pub csum: u16,
    pub rest: (u16, u16),
    /// ICMP message length as received (the checksum's extent).
    pub full_len: usize,
    pub inner: Ipv4Hdr,
    pub l4: L4Head,
    /// Outer total length, after extensions that are not carried over are cut.
    pub tot_len: usize,
    /// The ICMPv6 type, code and rest-of-header kind it becomes.
    pub ty6: u8,
    pub code6: u8,
    pub kind: Rest,
    /// RFC 4884: length of the original datagram (bytes) when an extension structure follows,
    /// the extension's length, whether it is carried over, and the padding added.
    pub orig4: usize,
    pub ext_len: usize,
    pub has_ext: bool,
    pub keep_ext: bool,
    /// The quoted packet's IPv6 next header.
    pub inner_proto6: u8,
    /// The quoted packet is a first fragment (MF set, offset 0): it gets a fragment header
    /// (RFC 7915 sections 4.1 and 4.3).
    pub inner_frag: bool,
    /// The session of the quoted packet (it went out from the pool: its source is the pool
    /// side).
    pub key: SessionKey4,
    pub map: ErrorMap6,
    /// Word sums leaving and entering the ICMP checksum, gathered by the translation's parts
    /// (RFC 1624).
    pub removed: u32,
    pub added: u32,
}

/// An ICMPv6 error and the packet it quotes, parsed (RFC 7915 sections 5.2 and 5.3).
pub struct Icmp6Error {
    /// The error came in an atomic fragment (RFC 6946), whose fragment header was removed;
    /// its identification (raw) becomes the IPv4 header's (RFC 7915 section 5.1.1).
    pub atomic: bool,
    pub atomic_id: u32,
    pub hop: u8,
    /// Outer payload length, after extensions that are not carried over are cut.
    pub payload_len: usize,
    pub outer_src: [u32; 4],
    pub outer_dst: [u32; 4],
    pub ty_code: u16,
    pub csum: u16,
    pub rest: (u16, u16),
    /// ICMPv6 message length as received (the checksum's extent).
    pub full_len: usize,
    pub inner: Ipv6Hdr,
    pub l4: L4Head,
    pub ty4: u8,
    pub code4: u8,
    pub kind: Rest,
    pub orig6: usize,
    pub ext_len: usize,
    pub has_ext: bool,
    pub keep_ext: bool,
    /// The quoted packet's IPv4 protocol.
    pub inner_proto4: u8,
    /// The quoted packet is a first (or atomic) fragment: its fragment header, for the quoted
    /// IPv4 header (RFC 7915 section 5.1.1); the transport header follows it.
    pub inner_frag: bool,
    pub inner_fh: FragHdr,
    /// The session of the quoted packet (it was delivered to a client: its destination is the
    /// client side).
    pub key: SessionKey6,
    pub map: ErrorMap4,
    /// The quoted packet was hairpinned (its source is a pool address inside the prefix): the
    /// error goes back to the client that sent it, `peer` and `peer_port` (RFC 6146 section
    /// 3.8), and stays IPv6.
    pub hairpin: bool,
    pub peer: [u32; 4],
    pub peer_port: u16,
    /// A hairpinned error's ICMPv6 type, code and rest of header (host order): the error's own
    /// through RFC 7915's tables both ways.
    pub ty6: u8,
    pub code6: u8,
    pub rest6: u32,
    /// Word sums leaving and entering the ICMP checksum, gathered by the translation's parts
    /// (RFC 1624).
    pub removed: u32,
    pub added: u32,
}
