//! Fragments (RFC 7915 sections 4.1 and 5.1.1): a first fragment carries the transport header,
//! so it finds (or creates) its session like any packet; where the rest of its datagram goes is
//! remembered here (LRU maps: bounded memory), and later fragments are translated from that
//! memory alone.

use translator_common::maps::{Frag4Key, Frag4Value, Frag6Key, Frag6Value, SessionKey6};

use crate::{
    maps::{FRAGS4, FRAGS6},
    wire::Ipv4Hdr,
};

/// Remembers the pool address of an IPv6 datagram whose first fragment was translated.
#[inline(always)]
pub fn remember6(key: &SessionKey6, id: u32, pool: u32, now: u64) {
    let k = Frag6Key {
        client: key.client,
        remote: key.remote,
        id,
        proto: key.proto,
        _pad: [0; 3],
    };
    let v = Frag6Value {
        pool,
        _pad: 0,
        seen: now,
    };
    let _ = FRAGS6.insert(k, v, 0);
}

/// The pool address a later IPv6 fragment leaves from, if its first fragment passed.
#[inline(always)]
pub fn pool_of(client: &[u32; 4], remote: u32, id: u32, proto: u8) -> Option<u32> {
    let k = Frag6Key {
        client: *client,
        remote,
        id,
        proto,
        _pad: [0; 3],
    };
    // SAFETY: read-only lookup, copied out at once.
    unsafe { FRAGS6.get(k) }.map(|v| v.pool)
}

/// Remembers the client of an IPv4 datagram whose first fragment was translated.
#[inline(always)]
pub fn remember4(h: &Ipv4Hdr, client: &[u32; 4], now: u64) {
    let k = Frag4Key {
        remote: h.src,
        pool: h.dst,
        id: h.id,
        proto: h.proto,
        _pad: 0,
    };
    let v = Frag4Value {
        client: *client,
        seen: now,
    };
    let _ = FRAGS4.insert(k, v, 0);
}

/// The client a later IPv4 fragment goes to, if its first fragment passed.
#[inline(always)]
pub fn client_of(h: &Ipv4Hdr) -> Option<[u32; 4]> {
    let k = Frag4Key {
        remote: h.src,
        pool: h.dst,
        id: h.id,
        proto: h.proto,
        _pad: 0,
    };
    // SAFETY: read-only lookup, copied out at once.
    unsafe { FRAGS4.get(k) }.map(|v| v.client)
}
