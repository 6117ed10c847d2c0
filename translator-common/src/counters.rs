//! Per-CPU counters shared by the data plane and the CLI: events and drop reasons.
//!
//! Adding a drop reason is a one-file change: add the variant, its name and its description.
//! The counter array has a fixed layout: [`EVENT_SLOTS`] slots for events from index 0, then
//! [`DROP_SLOTS`] slots for drop reasons, so adding either keeps every existing counter where it
//! is and a pinned counter array stays valid for a newer program.

/// Slots reserved for events at the start of the counter array.
pub const EVENT_SLOTS: u32 = 64;
/// Slots reserved for drop reasons after the events.
pub const DROP_SLOTS: u32 = 64;

/// Why the data plane dropped a packet. The discriminant is the index into the counter array,
/// after the [`EVENT_SLOTS`] event counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Ethernet, IPv6 or IPv4 header shorter than its fixed part.
    Truncated = 0,
    /// Header fields that no valid packet has (IPv4 IHL < 5, total length beyond the frame, ...).
    Malformed,
    /// IPv4 header checksum does not verify.
    BadIpv4Checksum,
    /// Hop limit or TTL would reach zero.
    HopLimitExceeded,
    /// Transport protocol the translator does not handle.
    UnsupportedProtocol,
    /// ICMP type or code that RFC 7915 does not translate, or an ICMP error whose quoted packet
    /// is too short or belongs to no session.
    UnsupportedIcmp,
    /// IPv6 extension headers that cannot be translated (ESP, AH, mobility, a routing header
    /// with segments left, a second fragment header).
    Ipv6ExtensionHeader,
    /// IPv4 packet with options the slow path could not handle.
    Ipv4Options,
    /// A fragment that cannot be translated (a fragmented IPv4 UDP datagram without
    /// checksum, a fragment of an unsupported protocol).
    Fragment,
    /// The IPv6 source is outside the allowed client prefixes.
    ClientNotAllowed,
    /// The embedded IPv4 destination must not be translated (non-global under 64:ff9b::/96).
    DestinationNotAllowed,
    /// No free port block is left in the pool for this protocol.
    PoolExhausted,
    /// The client already holds its maximum number of port blocks and they are full.
    ClientLimit,
    /// The session or binding table is full.
    TableFull,
    /// IPv4 packet for a pool address with no session, refused by the filtering policy.
    NoSession,
    /// IPv6 UDP with a zero checksum (illegal in IPv6).
    ZeroUdpChecksum6,
    /// Route lookup for the translated packet failed (no route, blackhole, prohibit).
    NoRoute,
    /// The translated packet does not fit the outgoing MTU.
    MtuExceeded,
    /// Forwarding is disabled on the receiving interface (sysctl).
    ForwardingDisabled,
    /// A packet head adjustment or redirect helper failed.
    HelperFailed,
    /// An inbound TCP SYN that no mapping or filter lets in, held (RFC 6146 section 3.5.2.2):
    /// answered with ICMP port unreachable after 6 s unless the client opens the connection
    /// meanwhile.
    InboundSynHeld,
    /// A TCP packet other than a SYN without a session: only a SYN opens one (RFC 6146 section
    /// 3.5.2.2, the CLOSED state).
    TcpNotSyn,
    /// The IPv4 source must not be translated: a non-global address would appear under
    /// 64:ff9b::/96 (RFC 6052 section 3.1), for a new inbound session or an ICMPv4 error.
    SourceNotAllowed,
}

impl DropReason {
    pub const ALL: [DropReason; 23] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::BadIpv4Checksum,
        DropReason::HopLimitExceeded,
        DropReason::UnsupportedProtocol,
        DropReason::UnsupportedIcmp,
        DropReason::Ipv6ExtensionHeader,
        DropReason::Ipv4Options,
        DropReason::Fragment,
        DropReason::ClientNotAllowed,
        DropReason::DestinationNotAllowed,
        DropReason::PoolExhausted,
        DropReason::ClientLimit,
        DropReason::TableFull,
        DropReason::NoSession,
        DropReason::ZeroUdpChecksum6,
        DropReason::NoRoute,
        DropReason::MtuExceeded,
        DropReason::ForwardingDisabled,
        DropReason::HelperFailed,
        DropReason::InboundSynHeld,
        DropReason::TcpNotSyn,
        DropReason::SourceNotAllowed,
    ];

    /// The stable, kebab-case name the CLI and metrics print.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadIpv4Checksum => "bad-ipv4-checksum",
            DropReason::HopLimitExceeded => "hop-limit-exceeded",
            DropReason::UnsupportedProtocol => "unsupported-protocol",
            DropReason::UnsupportedIcmp => "unsupported-icmp",
            DropReason::Ipv6ExtensionHeader => "ipv6-extension-header",
            DropReason::Ipv4Options => "ipv4-options",
            DropReason::Fragment => "fragment",
            DropReason::ClientNotAllowed => "client-not-allowed",
            DropReason::DestinationNotAllowed => "destination-not-allowed",
            DropReason::PoolExhausted => "pool-exhausted",
            DropReason::ClientLimit => "client-limit",
            DropReason::TableFull => "table-full",
            DropReason::NoSession => "no-session",
            DropReason::ZeroUdpChecksum6 => "zero-udp-checksum-ipv6",
            DropReason::NoRoute => "no-route",
            DropReason::MtuExceeded => "mtu-exceeded",
            DropReason::ForwardingDisabled => "forwarding-disabled",
            DropReason::HelperFailed => "helper-failed",
            DropReason::InboundSynHeld => "inbound-syn-held",
            DropReason::TcpNotSyn => "tcp-not-syn",
            DropReason::SourceNotAllowed => "source-not-allowed",
        }
    }

    /// Index of this reason in the per-CPU counter array.
    pub const fn counter_index(self) -> u32 {
        EVENT_SLOTS + self as u32
    }
}

/// Things the data plane counts that are not drops.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// IPv6 packets translated to IPv4.
    Translated6to4 = 0,
    /// IPv4 packets translated to IPv6.
    Translated4to6,
    /// IPv6 packets rewritten back to IPv6 through a pool address (hairpinning).
    Hairpinned,
    /// Packets not for the translator, passed to the kernel untouched.
    Passed,
    /// Translated packets handed to the kernel because the next hop's MAC was not known yet.
    PassedNoNeighbour,
    /// Sessions created by the data plane.
    SessionCreated,
    /// Bindings (client address and port to pool address and port) created by the data plane.
    BindingCreated,
    /// Port blocks the data plane took from the free queue.
    BlockTaken,
    /// ICMP error messages translated (either direction), with their quoted packet.
    IcmpErrorTranslated,
    /// ICMP errors the gateway sent itself (time exceeded, packet too big, unreachable).
    IcmpErrorSent,
    /// ICMP errors not sent because of the rate limit.
    IcmpErrorRateLimited,
    /// Fragments translated by the data plane (first, middle or last).
    FragmentTranslated,
    /// Packets handed to the user-space slow path (reassembly, fragmentation).
    SlowPath,
    /// Bytes of translated IPv6 -> IPv4 frames (as sent).
    Bytes6to4,
    /// Bytes of translated IPv4 -> IPv6 frames (as sent).
    Bytes4to6,
    /// Held inbound SYNs forgotten because a client opened a connection to their source (RFC
    /// 6146 section 3.5.2.2: not answered).
    InboundSynCancelled,
}

impl Event {
    pub const COUNT: u32 = 16;
    pub const ALL: [Event; 16] = [
        Event::Translated6to4,
        Event::Translated4to6,
        Event::Hairpinned,
        Event::Passed,
        Event::PassedNoNeighbour,
        Event::SessionCreated,
        Event::BindingCreated,
        Event::BlockTaken,
        Event::IcmpErrorTranslated,
        Event::IcmpErrorSent,
        Event::IcmpErrorRateLimited,
        Event::FragmentTranslated,
        Event::SlowPath,
        Event::Bytes6to4,
        Event::Bytes4to6,
        Event::InboundSynCancelled,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Event::Translated6to4 => "translated-6to4",
            Event::Translated4to6 => "translated-4to6",
            Event::Hairpinned => "hairpinned",
            Event::Passed => "passed",
            Event::PassedNoNeighbour => "passed-no-neighbour",
            Event::SessionCreated => "session-created",
            Event::BindingCreated => "binding-created",
            Event::BlockTaken => "block-taken",
            Event::IcmpErrorTranslated => "icmp-error-translated",
            Event::IcmpErrorSent => "icmp-error-sent",
            Event::IcmpErrorRateLimited => "icmp-error-rate-limited",
            Event::FragmentTranslated => "fragment-translated",
            Event::SlowPath => "slow-path",
            Event::Bytes6to4 => "bytes-6to4",
            Event::Bytes4to6 => "bytes-4to6",
            Event::InboundSynCancelled => "inbound-syn-cancelled",
        }
    }
}

/// Number of entries in the per-CPU counter array.
pub const COUNTER_SLOTS: u32 = EVENT_SLOTS + DROP_SLOTS;

const _: () = assert!(DropReason::SourceNotAllowed as usize + 1 == DropReason::ALL.len());
const _: () = assert!(Event::InboundSynCancelled as u32 + 1 == Event::COUNT);
const _: () = assert!(Event::COUNT <= EVENT_SLOTS);
const _: () = assert!(DropReason::ALL.len() as u32 <= DROP_SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_dense() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            for other in &DropReason::ALL[i + 1..] {
                assert_ne!(r.name(), other.name());
            }
        }
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        assert_eq!(DropReason::Truncated.counter_index(), EVENT_SLOTS);
        assert!(
            DropReason::ALL
                .iter()
                .all(|r| r.counter_index() < COUNTER_SLOTS)
        );
    }
}
