//! Map names, keys and values.
//!
//! Byte order: addresses and fields named `*_be` hold packet bytes exactly as they are on the
//! wire (an IPv4 address is the `u32` whose memory is the four address bytes, an IPv6 address
//! four such words; see [`crate::rfc6052::raw4`] and friends), so the data plane copies them
//! without swapping. Everything else is host order.

/// Sessions looked up by IPv6-side packets: [`SessionKey6`] -> [`SessionValue6`].
pub const SESSIONS6: &str = "SESSIONS6";
/// Sessions looked up by IPv4-side packets: [`SessionKey4`] -> [`SessionValue4`].
pub const SESSIONS4: &str = "SESSIONS4";
/// Bindings by client transport address: [`BindingKey6`] -> [`BindingValue6`].
pub const BINDINGS6: &str = "BINDINGS6";
/// Bindings by pool transport address: [`BindingKey4`] -> [`BindingValue4`].
pub const BINDINGS4: &str = "BINDINGS4";
/// Address-dependent filtering permits: [`FilterKey`] -> last use (ns, u64).
pub const FILTERS: &str = "FILTERS";
/// Port blocks held by clients: [`BlockSlotKey`] -> [`BlockSlot`].
pub const BLOCK_SLOTS: &str = "BLOCK_SLOTS";
/// Free port blocks, one queue per protocol, of [`BlockId`].
pub const FREE_BLOCKS_TCP: &str = "FREE_TCP";
pub const FREE_BLOCKS_UDP: &str = "FREE_UDP";
pub const FREE_BLOCKS_ICMP: &str = "FREE_ICMP";
/// RFC 7422 deterministic blocks (`pool.deterministic`): array of [`BlockId`], subscriber
/// `i`'s slot `s` of protocol `p` at `p * stride + i * max_blocks + s` (see
/// [`crate::ports::Deterministic`]). One unused entry when the option is off.
pub const DET_BLOCKS: &str = "DET_BLOCKS";
/// Allowed client prefixes: LPM trie of `[u8; 16]` -> u32 (unused value).
pub const CLIENTS: &str = "CLIENTS";
/// Pool addresses: `[u8; 4]` -> [`PoolAddress`].
pub const POOL: &str = "POOL";
/// Per-CPU u64 counters indexed by [`crate::counters`].
pub const COUNTERS: &str = "COUNTERS";
/// The data-plane configuration global (see [`crate::config::DataplaneConfig`]).
pub const CONFIG: &str = "CONFIG";

/// IPv6 fragments: where the rest of a fragmented datagram goes, learnt from its first
/// fragment: [`Frag6Key`] -> [`Frag6Value`] (LRU: bounded memory).
pub const FRAGS6: &str = "FRAGS6";
/// IPv4 fragments: [`Frag4Key`] -> [`Frag4Value`] (LRU).
pub const FRAGS4: &str = "FRAGS4";
/// Ethertype of frames the data plane hands to the user-space slow path (IEEE 802 local
/// experimental); the kernel drops them quietly when no one listens.
pub const SLOW_PATH_ETHERTYPE: u16 = 0x88b5;

/// Tracers that can run at once on one instance.
pub const TRACE_SLOTS: usize = 4;
/// The live-trace switches and filters: array of [`TRACE_SLOTS`] [`TraceFilter`]s, one per
/// running tracer (pinned).
pub const TRACE_FILTER: &str = "TRACE_FILTER";
/// Live-trace records, one ring buffer of [`TraceEvent`] per slot of [`TRACE_FILTER`] (a ring
/// buffer has one reader) (pinned).
pub const TRACE_EVENTS: [&str; TRACE_SLOTS] = [
    "TRACE_EVENTS0",
    "TRACE_EVENTS1",
    "TRACE_EVENTS2",
    "TRACE_EVENTS3",
];
/// `TraceEvent::reason` when the packet was not dropped.
pub const TRACE_NOT_DROPPED: u8 = 0xff;

/// Sessions created by the data plane when session logging is on: ring buffer of
/// [`SessionEvent`].
pub const SESSION_EVENTS: &str = "SESSION_EVENTS";

/// Port-block allocations reported by the data plane: ring buffer of [`BlockEvent`].
pub const BLOCK_EVENTS: &str = "BLOCK_EVENTS";

/// Per-CPU state of the ICMP error rate limit (last send, ns).
pub const ICMP_RATE: &str = "ICMP_RATE";

/// The CLAT's settings (`translator clat`): an array of one [`ClatConfig`], rewritten whenever
/// the PLAT prefix is learnt, changes or expires (pinned).
pub const CLAT_CONFIG: &str = "CLAT_CONFIG";

/// Inbound TCP SYNs held because no mapping or filter let them in (RFC 6146 section 3.5.2.2):
/// [`HeldKey`] -> [`HeldSyn`] (LRU, pinned). The data plane stores the first SYN from a remote
/// transport address and forgets it when a client's SYN opens a session to that address; the
/// controller answers what is still there after `tcp::INCOMING_SYN_SECS` with ICMP port
/// unreachable.
pub const HELD_SYNS: &str = "HELD_SYNS";

/// The layout of the pinned maps a data plane was loaded with: one u32, [`LAYOUT_VERSION`],
/// written by the controller that loaded it. A controller adopts pins only with its own layout.
pub const LAYOUT: &str = "LAYOUT";
/// Raised whenever a pinned map's key, value, size or meaning changes. 2: TCP session states
/// (RFC 6146 section 3.5.2) instead of flags seen, counters at fixed offsets, held SYNs.
pub const LAYOUT_VERSION: u32 = 2;

/// Every map the program pins, for listing and removal.
pub const ALL_MAPS: [&str; 26] = [
    BLOCK_EVENTS,
    CLAT_CONFIG,
    SESSION_EVENTS,
    TRACE_FILTER,
    TRACE_EVENTS[0],
    TRACE_EVENTS[1],
    TRACE_EVENTS[2],
    TRACE_EVENTS[3],
    FRAGS6,
    FRAGS4,
    SESSIONS6,
    SESSIONS4,
    BINDINGS6,
    BINDINGS4,
    FILTERS,
    BLOCK_SLOTS,
    FREE_BLOCKS_TCP,
    FREE_BLOCKS_UDP,
    FREE_BLOCKS_ICMP,
    DET_BLOCKS,
    CLIENTS,
    POOL,
    COUNTERS,
    HELD_SYNS,
    LAYOUT,
    "AYA_LOGS",
];

/// Most blocks one client may hold per protocol (the configured limit must not exceed it).
pub const MAX_BLOCKS_PER_CLIENT: u32 = 16;

/// Session flag: the IPv4 destination is a pool address (hairpinned flow).
pub const SESSION_HAIRPIN: u8 = 0x10;
/// Binding flag: installed by the operator, never expired.
pub const BINDING_STATIC: u8 = 1;
/// Pool-address flag: the address is configured on this host (unmatched packets go to the host).
pub const POOL_LOCAL: u32 = 1;

macro_rules! pod {
    ($($t:ty => $size:expr),* $(,)?) => {
        $(
            const _: () = assert!(core::mem::size_of::<$t>() == $size);
            #[cfg(feature = "user")]
            // SAFETY: repr(C), only integer fields and explicit padding, no implicit padding bytes
            // (checked by the size assertion above).
            unsafe impl aya::Pod for $t {}
        )*
    };
}

/// Key of [`SESSIONS6`]: what an IPv6 packet from a client carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionKey6 {
    pub client: [u32; 4],
    /// The IPv4 address embedded in the destination.
    pub remote: u32,
    pub client_port_be: u16,
    pub remote_port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl SessionKey6 {
    /// The [`SESSIONS4`] key of the same session, given this entry's value.
    pub fn reverse(&self, v: &SessionValue6) -> SessionKey4 {
        SessionKey4 {
            pool: v.pool,
            remote: self.remote,
            pool_port_be: v.pool_port_be,
            remote_port_be: self.remote_port_be,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// Value of [`SESSIONS6`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionValue6 {
    pub pool: u32,
    pub pool_port_be: u16,
    /// `SESSION_HAIRPIN`.
    pub flags: u8,
    /// TCP: the session's state (`crate::tcp`), the same in both entries of the session;
    /// 0 for UDP and ICMP.
    pub state: u8,
    /// CLOCK_MONOTONIC ns when a packet of either direction last started the session's
    /// lifetime again (coarse, refreshed at most once a second per direction; TCP packets that
    /// RFC 6146 lets pass without a word leave it). The controller's expiry reads only this.
    pub last_seen: u64,
}

/// Key of [`SESSIONS4`]: what an IPv4 packet from a remote host carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionKey4 {
    pub pool: u32,
    pub remote: u32,
    pub pool_port_be: u16,
    pub remote_port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Value of [`SESSIONS4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionValue4 {
    pub client: [u32; 4],
    pub client_port_be: u16,
    pub flags: u8,
    /// TCP: the session's state, as in [`SessionValue6::state`].
    pub state: u8,
    pub _pad: [u8; 4],
    /// CLOCK_MONOTONIC ns when a remote packet last started the session's lifetime again
    /// (copied to [`SessionValue6::last_seen`] at the same time).
    pub last_seen: u64,
}

impl SessionValue4 {
    /// The [`SESSIONS6`] key of the same session, given this entry's key.
    pub fn reverse(&self, k: &SessionKey4) -> SessionKey6 {
        SessionKey6 {
            client: self.client,
            remote: k.remote,
            client_port_be: self.client_port_be,
            remote_port_be: k.remote_port_be,
            proto: k.proto,
            _pad: [0; 3],
        }
    }
}

/// Key of [`BINDINGS6`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindingKey6 {
    pub client: [u32; 4],
    pub client_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Value of [`BINDINGS6`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingValue6 {
    pub pool: u32,
    pub pool_port_be: u16,
    /// `BINDING_STATIC`.
    pub flags: u8,
    pub _pad: u8,
    /// CLOCK_MONOTONIC ns when the binding last gained a session.
    pub last_used: u64,
}

/// Key of [`BINDINGS4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindingKey4 {
    pub pool: u32,
    pub pool_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Value of [`BINDINGS4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingValue4 {
    pub client: [u32; 4],
    pub client_port_be: u16,
    pub flags: u8,
    pub _pad: u8,
}

/// Key of [`FILTERS`]: the remote address a binding has sent to (address-dependent filtering).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterKey {
    pub pool: u32,
    pub remote: u32,
    pub pool_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Key of [`BLOCK_SLOTS`]: slot `slot` of a client's blocks for one protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockSlotKey {
    pub client: [u32; 4],
    pub proto: u8,
    pub slot: u8,
    pub _pad: [u8; 2],
}

/// A port block in the free queues: ports `start .. start + block_size` of `pool`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockId {
    pub pool: u32,
    /// First port, host order.
    pub start: u16,
    pub _pad: u16,
}

/// Value of [`BLOCK_SLOTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockSlot {
    pub block: BlockId,
    /// Offset in the block where the next allocation starts probing (a hint, not a lock).
    pub next: u16,
    pub _pad: [u8; 6],
    /// CLOCK_MONOTONIC ns of the last allocation from this block.
    pub last_alloc: u64,
}

/// Key of [`FRAGS6`]: an IPv6 datagram from a client (fragment header identification).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag6Key {
    pub client: [u32; 4],
    pub remote: u32,
    /// Fragment identification, raw.
    pub id: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Value of [`FRAGS6`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frag6Value {
    pub pool: u32,
    pub _pad: u32,
    /// CLOCK_MONOTONIC ns when the first fragment passed.
    pub seen: u64,
}

/// Key of [`FRAGS4`]: an IPv4 datagram to a pool address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag4Key {
    pub remote: u32,
    pub pool: u32,
    /// IPv4 identification, raw.
    pub id: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Value of [`FRAGS4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frag4Value {
    pub client: [u32; 4],
    pub seen: u64,
}

/// A port block a client took (data plane -> controller, for the block log).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEvent {
    pub client: [u32; 4],
    pub pool: u32,
    /// First port, host order.
    pub start: u16,
    pub proto: u8,
    pub _pad: u8,
    /// CLOCK_MONOTONIC ns of the allocation.
    pub time: u64,
}

/// A session the data plane created (for the optional session log).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionEvent {
    pub client: [u32; 4],
    pub remote: u32,
    pub pool: u32,
    pub client_port_be: u16,
    pub remote_port_be: u16,
    pub pool_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
    /// CLOCK_MONOTONIC ns of the creation.
    pub time: u64,
}

/// The live-trace filter. Tracing is on while `until` (CLOCK_MONOTONIC ns) is in the future:
/// a tracer that dies stops costing anything within seconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub until: u64,
    /// IP protocol (IPv4 numbering, ICMP = 1) or 0 for any.
    pub proto: u8,
    pub _pad: u8,
    /// Port (either side, before or after translation), host order, or 0 for any.
    pub port: u16,
    /// The tracer's id, copied into the events of this slot (a new tracer in the slot of a
    /// killed one tells its own events from those still queued).
    pub id: u32,
}

/// One traced packet: its addresses and ports as received and as sent, and what happened.
/// Addresses are raw words; an IPv4 address is in word 0 with the others zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceEvent {
    pub in_src: [u32; 4],
    pub in_dst: [u32; 4],
    pub out_src: [u32; 4],
    pub out_dst: [u32; 4],
    /// Ports raw (network order); ICMP identifier as source port.
    pub in_sport: u16,
    pub in_dport: u16,
    pub out_sport: u16,
    pub out_dport: u16,
    /// 4 or 6 (0: not IP).
    pub in_family: u8,
    pub out_family: u8,
    /// IP protocol as received (IPv6 next header).
    pub in_proto: u8,
    /// The XDP action.
    pub action: u8,
    /// Drop reason, or [`TRACE_NOT_DROPPED`].
    pub reason: u8,
    pub _pad: [u8; 3],
    /// [`TraceFilter::id`] of the slot the event was reported for.
    pub id: u32,
}

/// Benchmark harness frame (map `BENCH_FRAME`, never used by the translator): the packet the
/// harness program writes back before every repetition of a `BPF_PROG_TEST_RUN`, so a repeat
/// count measures the program under test on the same input each time.
pub const BENCH_FRAME: &str = "BENCH_FRAME";
/// The program the benchmark harness tail-calls after restoring the frame (slot 0).
pub const BENCH_NEXT: &str = "BENCH_NEXT";
/// Largest frame the harness restores.
pub const BENCH_FRAME_MAX: usize = 128;

/// Value of [`BENCH_FRAME`]. With `lo_off` set, repetition `n` (a per-CPU count) also gets the
/// 16-bit value `lo_base + n % lo_mod` at `lo_off` and, with `hi_off` set, `hi_base + n / lo_mod`
/// at `hi_off` (`hi_len` 2 or 4 bytes), both in network order: a port and a port or an address
/// word, so that every repetition can be a different flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchFrame {
    pub len: u32,
    pub lo_off: u32,
    pub lo_base: u32,
    pub lo_mod: u32,
    pub hi_off: u32,
    pub hi_base: u32,
    pub hi_len: u32,
    pub _pad: u32,
    pub bytes: [u8; BENCH_FRAME_MAX],
}

impl Default for BenchFrame {
    fn default() -> Self {
        BenchFrame {
            len: 0,
            lo_off: 0,
            lo_base: 0,
            lo_mod: 1,
            hi_off: 0,
            hi_base: 0,
            hi_len: 2,
            _pad: 0,
            bytes: [0; BENCH_FRAME_MAX],
        }
    }
}

/// Next hops of translated packets, when the route cache is on (`nat64.route_cache_ms`):
/// [`RouteKey4`] / [`RouteKey6`] -> [`RouteEntry`] (LRU, not pinned).
pub const ROUTES4: &str = "ROUTES4";
pub const ROUTES6: &str = "ROUTES6";

/// Key of [`ROUTES4`]: destination and the interface the packet came in on (both raw).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RouteKey4 {
    pub dst: u32,
    pub ifindex_in: u32,
}

/// Key of [`ROUTES6`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RouteKey6 {
    pub dst: [u32; 4],
    pub ifindex_in: u32,
}

/// A route lookup's answer, kept for `route_cache_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteEntry {
    /// CLOCK_MONOTONIC ns of the lookup.
    pub stamp: u64,
    pub ifindex: u32,
    /// Largest packet (the lookup's total length) known to fit the route's MTU.
    pub max_len: u16,
    pub _pad: u16,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub _pad2: u32,
}

/// Key of [`HELD_SYNS`]: the remote transport address a held SYN came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeldKey {
    pub remote: u32,
    pub remote_port_be: u16,
    pub _pad: u16,
}

/// Bytes of a held SYN kept for the ICMP error that quotes it (its IPv4 header and TCP header
/// with options; data beyond, rare on a SYN, is not quoted).
pub const HELD_QUOTE: usize = 120;

/// Value of [`HELD_SYNS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSyn {
    /// The pool transport address the SYN was sent to.
    pub pool: u32,
    pub pool_port_be: u16,
    /// Bytes of `packet` in use.
    pub len: u16,
    /// CLOCK_MONOTONIC ns when the SYN arrived.
    pub time: u64,
    /// The SYN from its IPv4 header on, as received.
    pub packet: [u8; HELD_QUOTE],
}

impl Default for HeldSyn {
    fn default() -> Self {
        HeldSyn {
            pool: 0,
            pool_port_be: 0,
            len: 0,
            time: 0,
            packet: [0; HELD_QUOTE],
        }
    }
}

/// Value of [`POOL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolAddress {
    /// `POOL_LOCAL`.
    pub flags: u32,
}

/// Value of [`CLAT_CONFIG`]: what the CLAT's programs translate with (addresses raw).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClatConfig {
    /// The PLAT prefix, host bits zero, its netmask and its length (32, 40, 48, 56, 64 or 96).
    /// Length 0: the CLAT translates nothing (no prefix known, or the host has native IPv4).
    pub prefix: [u32; 4],
    pub mask: [u32; 4],
    pub prefix_len: u8,
    pub _pad: [u8; 3],
    /// The IPv6 address dedicated to the CLAT: the host's IPv4 traffic leaves from it.
    pub clat6: [u32; 4],
    /// The host's IPv4 address on the CLAT's interface (192.0.0.1 by default, RFC 7335).
    pub ipv4: u32,
    /// Source of ICMPv4 errors translated from ICMPv6 errors whose source has no IPv4 form
    /// (outside the prefix; RFC 6791), 192.0.0.2 by default.
    pub error_src4: u32,
    /// The uplink (IPv6) interface and the CLAT's IPv4 interface.
    pub uplink_ifindex: u32,
    pub v4_ifindex: u32,
    /// MAC addresses of the IPv4 interface (destination of what the host receives) and of its
    /// veth peer (their source).
    pub v4_mac: [u8; 6],
    pub peer_mac: [u8; 6],
    /// The uplink's MTU: larger translated IPv4 packets without DF go to the slow path.
    pub mtu6: u16,
    pub _pad2: u16,
}

pod!(
    ClatConfig => 84,
    SessionKey6 => 28,
    SessionValue6 => 16,
    SessionKey4 => 16,
    SessionValue4 => 32,
    BindingKey6 => 20,
    BindingValue6 => 16,
    BindingKey4 => 8,
    BindingValue4 => 20,
    FilterKey => 12,
    BlockSlotKey => 20,
    BlockId => 8,
    BlockSlot => 24,
    PoolAddress => 4,
    BlockEvent => 32,
    TraceFilter => 16,
    SessionEvent => 40,
    TraceEvent => 84,
    Frag6Key => 28,
    Frag6Value => 16,
    Frag4Key => 12,
    Frag4Value => 24,
    crate::config::DataplaneConfig => 104,
    BenchFrame => 160,
    RouteKey4 => 8,
    RouteKey6 => 20,
    RouteEntry => 32,
    HeldKey => 8,
    HeldSyn => 136,
);
