//! The answer to inbound SYNs the data plane held (RFC 6146 section 3.5.2.2): a SYN from the
//! IPv4 side that no mapping or filter let in waits `tcp::INCOMING_SYN_SECS` (6 s) for a
//! client to open the connection (a simultaneous open); the data plane forgets it when a
//! client's SYN to its source opens a session. What is still held then is answered here with
//! ICMP port unreachable (type 3, code 3) quoting the SYN, from the pool address it was sent
//! to, at most `nat64.icmp_errors_per_second` a second. A SYN whose exact session exists by
//! then (the client opened it from that very mapping) is not answered, and one held far longer
//! (no controller ran to answer it in time) is forgotten unanswered.

use std::{
    net::Ipv4Addr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use translator_common::{
    IPPROTO_ICMP, IPPROTO_TCP,
    checksum::{finish, sum_bytes},
    maps::{HeldKey, HeldSyn, SessionKey4},
    rfc6052, tcp,
};

use super::{SlowPathStats, translate::ipv4_header};
use crate::dataplane::Maps;

/// How often the held SYNs are looked at (the answer comes between 6 and 6.5 s after the SYN).
pub(super) const EVERY: Duration = Duration::from_millis(500);
/// A SYN held this long was not answered in time; answering it now helps nobody.
const TOO_OLD: Duration = Duration::from_secs(30);

/// What became of a due held SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Answered with port unreachable.
    Answer,
    /// Its session exists: the client opened the connection from that mapping.
    SessionFound,
    /// Too old, or over the ICMP error budget: forgotten unanswered.
    Unanswered,
}

/// The ICMP errors a second the answers may use (`nat64.icmp_errors_per_second`; 0: none).
pub(super) struct Budget {
    per_second: u32,
    window: Instant,
    used: u32,
}

impl Budget {
    pub(super) fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Instant::now(),
            used: 0,
        }
    }

    fn take(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
        }
        if self.used >= self.per_second {
            return false;
        }
        self.used += 1;
        true
    }
}

/// The ICMP port unreachable (an IPv4 packet) answering a held SYN: from the pool address the
/// SYN went to, to its source, quoting it as it came (RFC 792; at most the bytes the data
/// plane kept, far below RFC 1812's 576).
pub(super) fn port_unreachable(k: &HeldKey, v: &HeldSyn) -> Vec<u8> {
    let quote = &v.packet[..usize::from(v.len).min(v.packet.len())];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quote);
    let c = finish(sum_bytes(&icmp));
    icmp[2..4].copy_from_slice(&c.to_ne_bytes());
    let pool = Ipv4Addr::from(rfc6052::from_raw4(v.pool));
    let remote = Ipv4Addr::from(rfc6052::from_raw4(k.remote));
    let mut pkt = ipv4_header(pool, remote, IPPROTO_ICMP, 64, 0, 0, 0, icmp.len());
    pkt.extend(icmp);
    pkt
}

/// Whether a held SYN's exact session exists now.
fn session_exists(maps: &Maps, k: &HeldKey, v: &HeldSyn) -> bool {
    let k4 = SessionKey4 {
        pool: v.pool,
        remote: k.remote,
        pool_port_be: v.pool_port_be,
        remote_port_be: k.remote_port_be,
        proto: IPPROTO_TCP,
        _pad: [0; 3],
    };
    maps.sessions4.get(&k4, 0).is_ok()
}

/// Takes the held SYNs that are due out of the map and returns the answers to send.
pub(super) fn due(maps: &mut Maps, budget: &mut Budget, stats: &SlowPathStats) -> Vec<Vec<u8>> {
    let now = crate::clock::monotonic_ns();
    let wait = Duration::from_secs(tcp::INCOMING_SYN_SECS).as_nanos() as u64;
    let due: Vec<(HeldKey, HeldSyn)> = maps
        .held_syns
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| now.saturating_sub(v.time) >= wait)
        .collect();
    let mut out = Vec::new();
    for (k, v) in due {
        // Removing it is the commitment: a client's SYN may have taken it out meanwhile.
        if maps.held_syns.remove(&k).is_err() {
            continue;
        }
        let fate = if session_exists(maps, &k, &v) {
            Fate::SessionFound
        } else if now.saturating_sub(v.time) > TOO_OLD.as_nanos() as u64 || !budget.take() {
            Fate::Unanswered
        } else {
            Fate::Answer
        };
        let counter = match fate {
            Fate::Answer => {
                out.push(port_unreachable(&k, &v));
                &stats.held_syn_answered
            }
            Fate::SessionFound => &stats.held_syn_session_found,
            Fate::Unanswered => &stats.held_syn_unanswered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use translator_common::maps::HELD_QUOTE;

    #[test]
    fn port_unreachable_quotes_the_syn_from_the_pool_address() {
        let mut v = HeldSyn {
            pool: rfc6052::raw4(u32::from(Ipv4Addr::new(198, 51, 100, 1))),
            pool_port_be: 5000u16.to_be(),
            len: 60,
            time: 0,
            packet: [0; HELD_QUOTE],
        };
        for (i, b) in v.packet.iter_mut().enumerate() {
            *b = i as u8;
        }
        let k = HeldKey {
            remote: rfc6052::raw4(u32::from(Ipv4Addr::new(192, 0, 2, 2))),
            remote_port_be: 40000u16.to_be(),
            _pad: 0,
        };
        let p = port_unreachable(&k, &v);
        assert_eq!(p.len(), 20 + 8 + 60);
        assert_eq!(&p[12..16], &[198, 51, 100, 1]);
        assert_eq!(&p[16..20], &[192, 0, 2, 2]);
        assert_eq!(p[9], IPPROTO_ICMP);
        assert_eq!(&p[20..22], &[3, 3]);
        assert_eq!(finish(sum_bytes(&p[..20])), 0, "IPv4 header checksum");
        assert_eq!(finish(sum_bytes(&p[20..])), 0, "ICMP checksum");
        assert_eq!(&p[28..], &v.packet[..60]);
    }

    #[test]
    fn the_budget_refills_every_second() {
        let mut b = Budget::new(2);
        assert!(b.take() && b.take() && !b.take());
        b.window -= Duration::from_secs(1);
        assert!(b.take());
        assert!(!Budget::new(0).take());
    }
}
