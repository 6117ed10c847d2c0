//! Every map of the data plane, in one place. Names are the shared constants of
//! `translator_common::maps` (the controller opens the pinned ones by name); sizes are
//! defaults, the controller sets the real ones at load time.
//!
//! Pinned maps hold state that outlives a program: sessions, bindings, the pool, counters,
//! event rings, tracing. Per-CPU scratch maps are not pinned: they give the call chain memory
//! off its 512-byte stack, valid for one packet (XDP and TC programs do not nest on a CPU).

use aya_ebpf::{
    bindings::bpf_fib_lookup,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, Queue, RingBuf},
};
use translator_common::{
    counters::COUNTER_SLOTS,
    maps::{
        BenchFrame, BindingKey4, BindingKey6, BindingValue4, BindingValue6, BlockId, BlockSlot,
        BlockSlotKey, ClatConfig, FilterKey, Frag4Key, Frag4Value, Frag6Key, Frag6Value, HeldKey,
        HeldSyn, PoolAddress, RouteEntry, RouteKey4, RouteKey6, SessionKey4, SessionKey6,
        SessionValue4, SessionValue6, TRACE_SLOTS, TraceEvent, TraceFilter,
    },
};

use crate::tuple::{Icmp4Error, Icmp6Error, Packet4, Packet6};

// ------------------------------------------------------------------------------------------------
// The NAT64 state (RFC 6146 section 3.1: BIB, session tables) and its policy.

#[map]
pub static SESSIONS6: HashMap<SessionKey6, SessionValue6> = HashMap::pinned(65536, 0);
#[map]
pub static SESSIONS4: HashMap<SessionKey4, SessionValue4> = HashMap::pinned(65536, 0);
#[map]
pub static BINDINGS6: HashMap<BindingKey6, BindingValue6> = HashMap::pinned(65536, 0);
#[map]
pub static BINDINGS4: HashMap<BindingKey4, BindingValue4> = HashMap::pinned(65536, 0);
/// Address-dependent filtering permits: last use (ns) per binding and remote address.
#[map]
pub static FILTERS: HashMap<FilterKey, u64> = HashMap::pinned(65536, 0);
#[map]
pub static BLOCK_SLOTS: HashMap<BlockSlotKey, BlockSlot> = HashMap::pinned(16384, 0);
#[map]
pub static FREE_TCP: Queue<BlockId> = Queue::pinned(1024, 0);
#[map]
pub static FREE_UDP: Queue<BlockId> = Queue::pinned(1024, 0);
#[map]
pub static FREE_ICMP: Queue<BlockId> = Queue::pinned(1024, 0);
#[map]
pub static DET_BLOCKS: Array<BlockId> = Array::pinned(1, 0);
#[map]
pub static CLIENTS: LpmTrie<[u32; 4], u32> = LpmTrie::pinned(1024, 0);
#[map]
pub static POOL: HashMap<u32, PoolAddress> = HashMap::pinned(256, 0);
/// Where the rest of a fragmented datagram goes, learnt from its first fragment (LRU:
/// bounded memory).
#[map]
pub static FRAGS6: LruHashMap<Frag6Key, Frag6Value> = LruHashMap::pinned(16384, 0);
#[map]
pub static FRAGS4: LruHashMap<Frag4Key, Frag4Value> = LruHashMap::pinned(16384, 0);
/// Inbound SYNs held for the controller to answer (RFC 6146 section 3.5.2.2; LRU: bounded).
#[map]
pub static HELD_SYNS: LruHashMap<HeldKey, HeldSyn> = LruHashMap::pinned(4096, 0);
/// The layout version of the pinned maps (written by the controller, never by the program).
#[map]
pub static LAYOUT: Array<u32> = Array::pinned(1, 0);

/// The CLAT's settings (`translator clat`; the gateway leaves it empty).
#[map]
pub static CLAT_CONFIG: Array<ClatConfig> = Array::pinned(1, 0);

// ------------------------------------------------------------------------------------------------
// Routing.

/// The route cache (`nat64.route_cache_ms`): answers of route lookups per destination.
#[map]
pub static ROUTES4: LruHashMap<RouteKey4, RouteEntry> = LruHashMap::with_max_entries(4096, 0);
#[map]
pub static ROUTES6: LruHashMap<RouteKey6, RouteEntry> = LruHashMap::with_max_entries(4096, 0);

// ------------------------------------------------------------------------------------------------
// What the controller and the CLI read: counters, event rings, the live trace.

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_SLOTS, 0);
/// Sessions for the controller's optional session log. Pinned, like the block events: what
/// happens while no controller runs, or while a reload swaps the program, is read later.
#[map]
pub static SESSION_EVENTS: RingBuf = RingBuf::pinned(256 * 1024, 0);
/// Port-block allocations for the controller's block log (pinned).
#[map]
pub static BLOCK_EVENTS: RingBuf = RingBuf::pinned(64 * 1024, 0);
/// The live-trace switches and filters, one slot per tracer.
#[map]
pub static TRACE_FILTER: Array<TraceFilter> = Array::pinned(TRACE_SLOTS as u32, 0);
// One ring per slot (names in translator_common::maps::TRACE_EVENTS).
#[map]
pub static TRACE_EVENTS0: RingBuf = RingBuf::pinned(128 * 1024, 0);
#[map]
pub static TRACE_EVENTS1: RingBuf = RingBuf::pinned(128 * 1024, 0);
#[map]
pub static TRACE_EVENTS2: RingBuf = RingBuf::pinned(128 * 1024, 0);
#[map]
pub static TRACE_EVENTS3: RingBuf = RingBuf::pinned(128 * 1024, 0);

// ------------------------------------------------------------------------------------------------
// Per-CPU state of the ICMP errors the gateway sends.

/// Token bucket of the ICMP error rate limit: [time of the last refill, tokens].
#[map]
pub static ICMP_RATE: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);
/// The MTU the last route lookup that failed with "fragmentation needed" reported.
#[map]
pub static LAST_MTU: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

// ------------------------------------------------------------------------------------------------
// Per-CPU scratch memory (not pinned).

/// The parsed packet on its way through the steps, each direction.
#[map]
pub static SCRATCH6: PerCpuArray<Packet6> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SCRATCH4: PerCpuArray<Packet4> = PerCpuArray::with_max_entries(1, 0);
/// A parsed ICMP error and its quoted packet, each direction.
#[map]
pub static ICMP4_SCRATCH: PerCpuArray<Icmp4Error> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static ICMP6_SCRATCH: PerCpuArray<Icmp6Error> = PerCpuArray::with_max_entries(1, 0);
/// A SYN being held, built here before it goes into `HELD_SYNS`.
#[map]
pub static HELD_SCRATCH: PerCpuArray<HeldSyn> = PerCpuArray::with_max_entries(1, 0);
/// The route lookup of a translated packet.
#[map]
pub static FIB_SCRATCH: PerCpuArray<bpf_fib_lookup> = PerCpuArray::with_max_entries(1, 0);

/// Keys and entry of a route-cache lookup.
#[repr(C)]
pub struct RouteScratch {
    pub k4: RouteKey4,
    pub k6: RouteKey6,
    pub e: RouteEntry,
}

#[map]
pub static ROUTE_SCRATCH: PerCpuArray<RouteScratch> = PerCpuArray::with_max_entries(1, 0);

/// Longest transport payload whose checksum the program computes in full (IPv4 UDP packets
/// without checksum, ICMP errors); bounded for the verifier. Longer ones take the slow path.
pub const MAX_FULL_CSUM: usize = 1504;
/// Words of [`CSUM_BUF`].
pub const CSUM_WORDS: usize = MAX_FULL_CSUM / 8;
/// The bytes a full checksum is computed over.
#[map]
pub static CSUM_BUF: PerCpuArray<[u64; CSUM_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// Longest RFC 4884 extension structure carried over when an ICMP error is translated.
pub const MAX_EXT: usize = 512;
/// A copy of an extension structure being moved.
#[map]
pub static EXT_BUF: PerCpuArray<[u8; MAX_EXT]> = PerCpuArray::with_max_entries(1, 0);

/// The trace event being built for the current packet.
#[map]
pub static TRACE_SCRATCH: PerCpuArray<TraceEvent> = PerCpuArray::with_max_entries(1, 0);

// ------------------------------------------------------------------------------------------------
// Benchmark-only maps (`entry::bench`), never used by the translator.

/// The frame the benchmark harness restores before every repetition.
#[map]
pub static BENCH_FRAME: Array<BenchFrame> = Array::with_max_entries(1, 0);
/// The program under test (slot 0), tail-called by the harness.
#[map]
pub static BENCH_NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);
/// Repetitions so far on this CPU (numbers the new flows).
#[map]
pub static BENCH_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
/// A hash table preallocated like the session tables, with entries of `SESSIONS6`'s size (a
/// 28-byte key, a 16-byte value), against which the prototypes below are measured (sized by the
/// benchmark; one entry otherwise, so the controller's loads of this object cost nothing).
#[map]
pub static BENCH_HASH: HashMap<[u32; 7], [u64; 2]> = HashMap::with_max_entries(1, 0);
/// Prototype of a session table without kernel element headers (issue 13), bench-only: an
/// array of 48-byte slots (a `SESSIONS6` entry's key and value plus a state word), found by
/// open addressing ([`crate::entry::bench`]). Sized by the benchmark (two slots per entry).
#[map]
pub static BENCH_TABLE: Array<BenchSlot> = Array::with_max_entries(1, 0);
/// One lock word per 64 slots of [`BENCH_TABLE`] (inserts of one key are serialized by the
/// lock of the key's home slot).
#[map]
pub static BENCH_LOCKS: Array<u64> = Array::with_max_entries(1, 0);
/// [`BENCH_TABLE`]'s slot count (entry 0; at least the 24 slots of a window, or every lookup
/// misses), the hash seed (entry 1) and [`BENCH_BUCKETS`]' bucket count (entry 2), written by
/// the benchmark.
#[map]
pub static BENCH_TABLE_CAP: Array<u64> = Array::with_max_entries(3, 0);
/// Bench table programs' outcomes other than done, per CPU: entry 0 failed inserts and missed
/// lookups (the benchmark checks they stay 0), entry 1 inserts that found the key present.
#[map]
pub static BENCH_FAILS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// A slot of [`BENCH_TABLE`]: `state` 0 empty, 1 being written, 2 full.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BenchSlot {
    pub state: u32,
    pub key: [u32; 7],
    pub value: [u64; 2],
}
const _: () = assert!(core::mem::size_of::<BenchSlot>() == 48);

/// Prototype, second form (issue 13), bench-only: buckets of 7 slots with a fingerprint byte per
/// slot in the bucket's first word (`translator_common::buckets`, programs in
/// [`crate::entry::bench`]). Mappable: the controller reads and deletes entries in its own
/// memory (`translator::bucket_table`).
#[map]
pub static BENCH_BUCKETS: Array<translator_common::buckets::BenchBucket> =
    Array::with_max_entries(1, aya_ebpf::bindings::BPF_F_MMAPABLE);
