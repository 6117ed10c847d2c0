//! The TCP state machine of RFC 6146 section 3.5.2, shared by the data plane (which moves a
//! session from state to state on every packet) and the controller (which expires sessions by
//! the timer each state has).
//!
//! A session is in one of the states of section 3.5.2.1; CLOSED is "no session". Only a SYN
//! opens a session: from the IPv6 side (V6 INIT) or, where the mapping and filtering let it
//! in, from the IPv4 side (V4 INIT); an inbound SYN that nothing lets in is held for
//! [`INCOMING_SYN_SECS`] and then answered with ICMP port unreachable, unless the client opens
//! the connection meanwhile (section 3.5.2.2). [`step`] is the transition table for a packet
//! of an existing session: the new state and whether the session's lifetime starts again.

/// No session (never stored; a TCP session value with it is treated as [`TRANS`]).
pub const CLOSED: u8 = 0;
/// A SYN came from the IPv4 side and was let in; waiting for the client's SYN.
pub const V4_INIT: u8 = 1;
/// A SYN came from the client; waiting for the IPv4 side's.
pub const V6_INIT: u8 = 2;
pub const ESTABLISHED: u8 = 3;
/// A FIN came from the IPv4 side.
pub const V4_FIN_RCV: u8 = 4;
/// A FIN came from the client.
pub const V6_FIN_RCV: u8 = 5;
/// FINs came from both sides.
pub const V4_FIN_V6_FIN_RCV: u8 = 6;
/// Transitory: an RST was seen (or an established session's lifetime ran out).
pub const TRANS: u8 = 7;

/// TCP flags as in the header's flag byte.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;

/// Seconds an inbound SYN without a mapping is held before it is answered (TCP_INCOMING_SYN,
/// RFC 6146 section 4).
pub const INCOMING_SYN_SECS: u64 = 6;

/// The state a packet moves an existing session to, and whether the session's lifetime starts
/// again (RFC 6146 section 3.5.2.2). `from_v6`: the packet came from the client; `flags`: its
/// TCP flags. Packets that RFC 6146 lets pass without a word (data in V4 INIT or V6 INIT, any
/// packet in V4 FIN + V6 FIN RCV, an RST in TRANS) keep the state and the lifetime.
#[inline(always)]
pub const fn step(state: u8, from_v6: bool, flags: u8) -> (u8, bool) {
    let syn = flags & SYN != 0;
    let fin = flags & FIN != 0;
    let rst = flags & RST != 0;
    match state {
        V4_INIT if from_v6 && syn => (ESTABLISHED, true),
        V6_INIT if !from_v6 && syn => (ESTABLISHED, true),
        // The client's SYN again (a retransmission): the transitory lifetime starts again.
        V6_INIT if syn => (V6_INIT, true),
        ESTABLISHED if fin => (if from_v6 { V6_FIN_RCV } else { V4_FIN_RCV }, false),
        ESTABLISHED if rst => (TRANS, true),
        ESTABLISHED => (ESTABLISHED, true),
        V4_FIN_RCV if from_v6 && fin => (V4_FIN_V6_FIN_RCV, true),
        V6_FIN_RCV if !from_v6 && fin => (V4_FIN_V6_FIN_RCV, true),
        // Any other packet keeps a half-closed connection for the established lifetime.
        V4_FIN_RCV | V6_FIN_RCV => (state, true),
        TRANS | CLOSED if !rst => (ESTABLISHED, true),
        _ => (state, false),
    }
}

/// Whether a state's lifetime is the established one (TCP_EST); the others have the
/// transitory one (TCP_TRANS).
#[inline(always)]
pub const fn is_established_timer(state: u8) -> bool {
    matches!(state, ESTABLISHED | V4_FIN_RCV | V6_FIN_RCV)
}

/// The state's name as RFC 6146 section 3.5.2.1 writes it, in the CLI's kebab case.
pub const fn name(state: u8) -> &'static str {
    match state {
        V4_INIT => "v4-init",
        V6_INIT => "v6-init",
        ESTABLISHED => "established",
        V4_FIN_RCV => "v4-fin-rcv",
        V6_FIN_RCV => "v6-fin-rcv",
        V4_FIN_V6_FIN_RCV => "v4-fin-v6-fin-rcv",
        _ => "trans",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK: u8 = 0x10;

    #[test]
    fn open_both_ways_and_simultaneously() {
        // Client first: V6 INIT, the server's SYN-ACK establishes.
        assert_eq!(step(V6_INIT, false, SYN | ACK), (ESTABLISHED, true));
        // Server first (let in): V4 INIT, the client's SYN (simultaneous open) or SYN-ACK
        // establishes.
        assert_eq!(step(V4_INIT, true, SYN), (ESTABLISHED, true));
        assert_eq!(step(V4_INIT, true, SYN | ACK), (ESTABLISHED, true));
        // Retransmitted SYNs: the client's restarts the transitory lifetime, the server's
        // changes nothing.
        assert_eq!(step(V6_INIT, true, SYN), (V6_INIT, true));
        assert_eq!(step(V4_INIT, false, SYN), (V4_INIT, false));
        // Data before the handshake completes passes without a word.
        assert_eq!(step(V6_INIT, true, ACK), (V6_INIT, false));
        assert_eq!(step(V4_INIT, false, ACK), (V4_INIT, false));
    }

    #[test]
    fn close_reset_and_recover() {
        assert_eq!(step(ESTABLISHED, true, ACK), (ESTABLISHED, true));
        assert_eq!(step(ESTABLISHED, false, FIN | ACK), (V4_FIN_RCV, false));
        assert_eq!(step(ESTABLISHED, true, FIN | ACK), (V6_FIN_RCV, false));
        assert_eq!(step(V4_FIN_RCV, false, ACK), (V4_FIN_RCV, true));
        assert_eq!(step(V4_FIN_RCV, false, FIN), (V4_FIN_RCV, true));
        assert_eq!(step(V4_FIN_RCV, true, FIN | ACK), (V4_FIN_V6_FIN_RCV, true));
        assert_eq!(
            step(V6_FIN_RCV, false, FIN | ACK),
            (V4_FIN_V6_FIN_RCV, true)
        );
        assert_eq!(
            step(V4_FIN_V6_FIN_RCV, true, ACK),
            (V4_FIN_V6_FIN_RCV, false)
        );
        assert_eq!(step(ESTABLISHED, false, RST), (TRANS, true));
        assert_eq!(step(TRANS, true, RST), (TRANS, false));
        assert_eq!(step(TRANS, false, ACK), (ESTABLISHED, true));
    }

    #[test]
    fn timers_and_names() {
        for s in [ESTABLISHED, V4_FIN_RCV, V6_FIN_RCV] {
            assert!(is_established_timer(s), "{}", name(s));
        }
        for s in [V4_INIT, V6_INIT, V4_FIN_V6_FIN_RCV, TRANS, CLOSED] {
            assert!(!is_established_timer(s), "{}", name(s));
        }
        assert_eq!(name(V4_FIN_V6_FIN_RCV), "v4-fin-v6-fin-rcv");
        assert_eq!(name(CLOSED), "trans");
    }
}
