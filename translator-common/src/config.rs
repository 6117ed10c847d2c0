//! Configuration the controller hands to the data plane at load time (a read-only global).

/// Flag: translate IPv4 destinations that are not globally reachable under 64:ff9b::/96.
pub const CFG_ALLOW_NON_GLOBAL: u8 = 1;
/// Flag: endpoint-independent filtering (default is address-dependent).
pub const CFG_ENDPOINT_INDEPENDENT_FILTERING: u8 = 2;
/// Flag: the prefix is the well-known prefix 64:ff9b::/96 (precomputed by the controller).
pub const CFG_WELL_KNOWN_PREFIX: u8 = 4;
/// Flag: report every session the data plane creates (the optional session log).
pub const CFG_LOG_SESSIONS: u8 = 8;
/// Flag: drop inbound TCP SYNs that nothing lets in at once (`nat64.inbound_syn = "drop"`),
/// instead of holding them for RFC 6146's 6 seconds and answering port unreachable.
pub const CFG_DROP_INBOUND_SYN: u8 = 16;
/// Flag: send what goes back out of the receiving interface with a redirect to it instead of
/// `XDP_TX` (set for veth: a veth peer without an XDP program of its own gets `XDP_TX` frames
/// only when a later frame wakes it, a redirect wakes it at once).
pub const CFG_TX_BY_REDIRECT: u8 = 32;
/// Flag: RFC 7422 deterministic port blocks (`pool.deterministic`): a subscriber's blocks are
/// [`DataplaneConfig::det`]'s, from `DET_BLOCKS`, not from the free queues.
pub const CFG_DETERMINISTIC: u8 = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// The NAT64 prefix, host bits zero, as raw network-order words.
    pub prefix: [u32; 4],
    /// Netmask of the prefix, raw network-order words.
    pub mask: [u32; 4],
    /// 32, 40, 48, 56, 64 or 96.
    pub prefix_len: u8,
    /// `CFG_*` flags.
    pub flags: u8,
    /// Port blocks a client may hold per protocol (1..=MAX_BLOCKS_PER_CLIENT).
    pub max_blocks: u8,
    pub _pad: u8,
    /// Ports per block, a power of two.
    pub block_size: u16,
    /// Largest IPv6 packet made from an IPv4 packet without DF (RFC 7915 section 4.1: larger
    /// ones are fragmented, by the slow path).
    pub ipv6_mtu: u16,
    /// Source of ICMPv6 errors the gateway itself sends (hop limit exceeded, packet too big,
    /// address unreachable), raw words: an address of the IPv6-side interface.
    pub icmp_src6: [u32; 4],
    /// Least time between two ICMP errors the gateway sends, per CPU (ns); 0: no errors.
    pub icmp_interval_ns: u64,
    /// Mask of `pool.subscriber_prefix_len`, raw words: port blocks are held by the client
    /// address masked with it.
    pub subscriber_mask: [u32; 4],
    /// How long a route lookup's answer is reused for packets to the same destination (ns;
    /// 0: every packet is looked up). `nat64.route_cache_ms`.
    pub route_cache_ns: u64,
    /// Where a subscriber's index lies in its address, with `CFG_DETERMINISTIC`.
    pub det: crate::ports::Deterministic,
}
