//! RFC 6146 session states as the controller derives them, and which timer each one uses.
//!
//! The data plane stamps `last_seen` and the TCP flags each direction has sent; the state is
//! derived here (RFC 6146 section 3.5.2, simplified to what the flags tell): RST seen, or FIN
//! seen in both directions: transitory; SYN seen in both directions: established; otherwise (a
//! half-open connection): transitory.

use serde::Serialize;
use translator_common::{
    IPPROTO_ICMP, IPPROTO_TCP,
    maps::{SEEN_FIN, SEEN_RST, SEEN_SYN},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SessionState {
    #[serde(rename = "udp")]
    Udp,
    #[serde(rename = "icmp")]
    Icmp,
    #[serde(rename = "established")]
    TcpEstablished,
    #[serde(rename = "transitory")]
    TcpTransitory,
}

impl SessionState {
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Udp => "udp",
            SessionState::Icmp => "icmp",
            SessionState::TcpEstablished => "established",
            SessionState::TcpTransitory => "transitory",
        }
    }
}

/// The RFC 6146 state of a session from the flags each side has sent.
pub fn classify(proto: u8, flags6: u8, flags4: u8) -> SessionState {
    match proto {
        IPPROTO_TCP => {
            let both = flags6 & flags4;
            if (flags6 | flags4) & SEEN_RST != 0 || both & SEEN_FIN != 0 {
                SessionState::TcpTransitory
            } else if both & SEEN_SYN != 0 {
                SessionState::TcpEstablished
            } else {
                SessionState::TcpTransitory
            }
        }
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
        assert_eq!(classify(IPPROTO_TCP, SEEN_SYN, 0), TcpTransitory);
        assert_eq!(classify(IPPROTO_TCP, SEEN_SYN, SEEN_SYN), TcpEstablished);
        assert_eq!(
            classify(IPPROTO_TCP, SEEN_SYN | SEEN_FIN, SEEN_SYN),
            TcpEstablished
        );
        assert_eq!(
            classify(IPPROTO_TCP, SEEN_SYN | SEEN_FIN, SEEN_SYN | SEEN_FIN),
            TcpTransitory
        );
        assert_eq!(
            classify(IPPROTO_TCP, SEEN_SYN, SEEN_SYN | SEEN_RST),
            TcpTransitory
        );
        assert_eq!(classify(IPPROTO_UDP, 0, 0), Udp);
        assert_eq!(classify(IPPROTO_ICMP, 0, 0), Icmp);
    }
}
