//! Computing the outgoing tuple (RFC 6146 section 3.6): the addresses and ports a translated
//! packet leaves with, from its session (the binding's pool transport address, or the client's
//! transport address) and the RFC 6052 mapping of IPv4 addresses into the prefix.

use translator_common::rfc6052;

use crate::{
    config::config,
    tuple::{ErrorMap4, ErrorMap6, Packet4, Packet6, Tuple4, Tuple6},
};

/// An IPv4 address (raw) as an address inside the NAT64 prefix (raw words).
#[inline(always)]
pub fn prefixed(v4: u32) -> [u32; 4] {
    let cfg = config();
    rfc6052::raw6(rfc6052::embed(
        rfc6052::from_raw6(&cfg.prefix),
        cfg.prefix_len,
        rfc6052::from_raw4(v4),
    ))
}

/// The IPv4 address (raw) embedded in an address inside the NAT64 prefix.
#[inline(always)]
pub fn embedded(v6: &[u32; 4]) -> u32 {
    rfc6052::raw4(rfc6052::extract(
        rfc6052::from_raw6(v6),
        config().prefix_len,
    ))
}

/// A client's packet leaves from its binding toward the embedded IPv4 address (RFC 6146
/// section 3.6.1). The ICMP identifier becomes the binding's.
#[inline(always)]
pub fn tuple4(pkt: &Packet6) -> Tuple4 {
    Tuple4 {
        src: pkt.pool,
        dst: pkt.key.remote,
        sport: pkt.pool_port,
        dport: pkt.key.remote_port_be,
    }
}

/// A remote host's packet leaves from its address inside the prefix toward the client's
/// transport address (RFC 6146 section 3.6.2).
#[inline(always)]
pub fn tuple6(p: &Packet4, src6: [u32; 4]) -> Tuple6 {
    Tuple6 {
        src: src6,
        dst: p.client,
        sport: p.l4.sport,
        dport: p.client_port,
    }
}

/// An ICMPv4 error about a packet the gateway sent from `pool`: it goes to the client that sent
/// the quoted packet, from the error's sender inside the prefix; the quoted packet becomes the
/// client's original (RFC 6146 section 3.6.2 for both).
#[inline(always)]
pub fn error_map6(
    outer_src: u32,
    inner_dst: u32,
    inner_dport: u16,
    client: [u32; 4],
    client_port: u16,
) -> ErrorMap6 {
    ErrorMap6 {
        src: prefixed(outer_src),
        dst: client,
        inner_src: client,
        inner_dst: prefixed(inner_dst),
        inner_sport: client_port,
        inner_dport,
    }
}

/// An ICMPv6 error about a packet the gateway delivered to a client: it goes to the remote
/// host that sent the quoted packet, from the client's binding.
#[inline(always)]
pub fn error_map4(
    remote: u32,
    remote_port: u16,
    dst4: u32,
    pool: u32,
    pool_port: u16,
) -> ErrorMap4 {
    ErrorMap4 {
        src: pool,
        dst: dst4,
        inner_src: remote,
        inner_dst: pool,
        inner_sport: remote_port,
        inner_dport: pool_port,
    }
}
