//! Datagrams being put back together from their fragments.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Instant,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DatagramKey {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        id: u16,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: u32,
    },
}

#[derive(Debug)]
pub(crate) struct Pieces {
    pub(crate) first_seen: Instant,
    /// (byte offset, data, more fragments) of each fragment as received (whole packets kept
    /// too, to translate them one by one when the data plane knows the flow).
    pub(crate) parts: Vec<(usize, Vec<u8>, bool, Vec<u8>)>,
    /// Next header (IPv6) or protocol (IPv4) of the datagram.
    pub(crate) proto: u8,
    pub(crate) ttl: u8,
    pub(crate) tos: u8,
    pub(crate) bytes: usize,
}

impl Pieces {
    /// The whole datagram once every byte from 0 to the end (fragment without M) is there.
    pub(crate) fn complete(&self) -> Option<Vec<u8>> {
        let total = self.parts.iter().find(|p| !p.2).map(|p| p.0 + p.1.len())?;
        if total > super::MAX_DATAGRAM {
            return None;
        }
        let mut parts: Vec<&(usize, Vec<u8>, bool, Vec<u8>)> = self.parts.iter().collect();
        parts.sort_by_key(|p| p.0);
        let mut out = Vec::with_capacity(total);
        for (off, data, _, _) in parts {
            if *off > out.len() {
                return None;
            }
            let skip = out.len() - off;
            if skip < data.len() {
                out.extend(&data[skip..]);
            }
        }
        (out.len() == total).then_some(out)
    }
}
