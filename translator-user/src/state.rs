//! RFC 6146 session states as the controller reports them, and which timer each one uses.
//!
//! The data plane moves every TCP session through the state machine of RFC 6146 section 3.5.2
//! (`translator_common::tcp`) and keeps the state in both entries of the session, with the time
//! each direction last started the session's lifetime again; the controller reads them here.
//! UDP and ICMP sessions have one state each.

use serde::Serialize;
use translator_common::{IPPROTO_ICMP, IPPROTO_TCP, tcp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SessionState {
    #[serde(rename = "udp")]
    Udp,
    #[serde(rename = "icmp")]
    Icmp,
    #[serde(rename = "v4-init")]
    TcpV4Init,
    #[serde(rename = "v6-init")]
    TcpV6Init,
    #[serde(rename = "established")]
    TcpEstablished,
    #[serde(rename = "v4-fin-rcv")]
    TcpV4FinRcv,
    #[serde(rename = "v6-fin-rcv")]
    TcpV6FinRcv,
    #[serde(rename = "v4-fin-v6-fin-rcv")]
    TcpV4FinV6FinRcv,
    #[serde(rename = "trans")]
    TcpTrans,
}

impl SessionState {
    /// Every TCP state a session can be in (CLOSED is no session).
    pub const TCP: [SessionState; 7] = [
        SessionState::TcpV4Init,
        SessionState::TcpV6Init,
        SessionState::TcpEstablished,
        SessionState::TcpV4FinRcv,
        SessionState::TcpV6FinRcv,
        SessionState::TcpV4FinV6FinRcv,
        SessionState::TcpTrans,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SessionState::Udp => "udp",
            SessionState::Icmp => "icmp",
            s => tcp::name(s.tcp()),
        }
    }

    /// The data plane's number of a TCP state (CLOSED for UDP and ICMP).
    fn tcp(self) -> u8 {
        match self {
            SessionState::TcpV4Init => tcp::V4_INIT,
            SessionState::TcpV6Init => tcp::V6_INIT,
            SessionState::TcpEstablished => tcp::ESTABLISHED,
            SessionState::TcpV4FinRcv => tcp::V4_FIN_RCV,
            SessionState::TcpV6FinRcv => tcp::V6_FIN_RCV,
            SessionState::TcpV4FinV6FinRcv => tcp::V4_FIN_V6_FIN_RCV,
            SessionState::TcpTrans => tcp::TRANS,
            SessionState::Udp | SessionState::Icmp => tcp::CLOSED,
        }
    }

    /// Whether the state's lifetime is `timeouts.tcp_established` (the other TCP states have
    /// `timeouts.tcp_transitory`).
    pub fn is_established_timer(self) -> bool {
        tcp::is_established_timer(self.tcp())
    }
}

/// The state of a session from its `SESSIONS6` entry (the data plane writes a new TCP state
/// to both entries, and the IPv6-side one is what the controller reads).
pub fn classify(proto: u8, state: u8) -> SessionState {
    match proto {
        IPPROTO_TCP => match state {
            tcp::V4_INIT => SessionState::TcpV4Init,
            tcp::V6_INIT => SessionState::TcpV6Init,
            tcp::ESTABLISHED => SessionState::TcpEstablished,
            tcp::V4_FIN_RCV => SessionState::TcpV4FinRcv,
            tcp::V6_FIN_RCV => SessionState::TcpV6FinRcv,
            tcp::V4_FIN_V6_FIN_RCV => SessionState::TcpV4FinV6FinRcv,
            _ => SessionState::TcpTrans,
        },
        IPPROTO_ICMP => SessionState::Icmp,
        _ => SessionState::Udp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use translator_common::IPPROTO_UDP;

    #[test]
    fn tcp_states() {
        use SessionState::*;
        assert_eq!(classify(IPPROTO_TCP, tcp::V6_INIT), TcpV6Init);
        assert_eq!(classify(IPPROTO_TCP, tcp::ESTABLISHED), TcpEstablished);
        assert_eq!(classify(IPPROTO_TCP, tcp::V6_FIN_RCV), TcpV6FinRcv);
        assert_eq!(classify(IPPROTO_TCP, 0), TcpTrans);
        assert_eq!(classify(IPPROTO_UDP, 0), Udp);
        assert_eq!(classify(IPPROTO_ICMP, 0), Icmp);
        for s in SessionState::TCP {
            assert_eq!(classify(IPPROTO_TCP, s.tcp()), s, "{}", s.name());
        }
        for s in SessionState::TCP {
            assert_eq!(
                s.is_established_timer(),
                matches!(s, TcpEstablished | TcpV4FinRcv | TcpV6FinRcv),
                "{}",
                s.name()
            );
        }
        assert_eq!(TcpV4FinV6FinRcv.name(), "v4-fin-v6-fin-rcv");
    }
}
