//! Parse, look up (or create), rewrite, forward.
//!
//! Functions marked `#[inline(never)]` are BPF subprograms: each has its own stack frame, which
//! keeps every frame and the deepest call chain under the verifier's 512-byte limit. BPF calls
//! take at most five arguments (a returned `Result` takes one as a hidden pointer), hence the
//! small argument structs.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE, BPF_NOEXIST, bpf_fib_lookup,
        xdp_action,
    },
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_redirect,
        bpf_xdp_adjust_head,
        generated::{bpf_fib_lookup as fib_lookup, bpf_xdp_load_bytes},
    },
    macros::{map, xdp},
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray, Queue, RingBuf, lpm_trie::Key},
    programs::XdpContext,
};
use aya_log_ebpf::info;
use translator_common::maps::TRACE_NOT_DROPPED;
use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    checksum::{self, raw16, sum_raw4, sum_raw6},
    config::{
        CFG_ALLOW_NON_GLOBAL, CFG_ENDPOINT_INDEPENDENT_FILTERING, CFG_LOG_SESSIONS,
        CFG_WELL_KNOWN_PREFIX, DataplaneConfig,
    },
    counters::{COUNTER_SLOTS, DropReason, Event},
    maps::{
        BINDING_STATIC, BindingKey4, BindingKey6, BindingValue4, BindingValue6, BlockEvent,
        BlockId, BlockSlot, BlockSlotKey, FilterKey, MAX_BLOCKS_PER_CLIENT, POOL_LOCAL,
        PoolAddress, RouteEntry, RouteKey4, RouteKey6, SEEN_FIN, SEEN_RST, SEEN_SYN,
        SESSION_HAIRPIN, SessionEvent, SessionKey4, SessionKey6, SessionValue4, SessionValue6,
    },
    ports::{next_hint, probe_offset},
    rfc6052,
};

use crate::frag::{Rest6, punt};
use crate::packet::{
    ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, FRAG_LEN, FragHdr, IPPROTO_FRAGMENT, IPV4_LEN, IPV6_LEN,
    Ipv4Hdr, Ipv6Hdr, L4Head, TCP_FIN, TCP_RST, TCP_SYN, TcpTail, icmp_type, icmp_word, ptr_at,
};

/// Set by the controller at load time (a frozen read-only global).
#[unsafe(no_mangle)]
static CONFIG: DataplaneConfig = DataplaneConfig {
    prefix: [0; 4],
    mask: [0; 4],
    prefix_len: 96,
    flags: 0,
    max_blocks: 1,
    _pad: 0,
    block_size: 64,
    ipv6_mtu: 1280,
    icmp_src6: [0; 4],
    icmp_interval_ns: 0,
    subscriber_mask: [u32::MAX; 4],
    route_cache_ns: 0,
};

// Sizes are defaults; the controller sets the real ones at load time.
#[map]
pub(crate) static SESSIONS6: HashMap<SessionKey6, SessionValue6> = HashMap::pinned(65536, 0);
#[map]
pub(crate) static SESSIONS4: HashMap<SessionKey4, SessionValue4> = HashMap::pinned(65536, 0);
#[map]
static BINDINGS6: HashMap<BindingKey6, BindingValue6> = HashMap::pinned(65536, 0);
#[map]
static BINDINGS4: HashMap<BindingKey4, BindingValue4> = HashMap::pinned(65536, 0);
#[map]
static FILTERS: HashMap<FilterKey, u64> = HashMap::pinned(65536, 0);
#[map]
static BLOCK_SLOTS: HashMap<BlockSlotKey, BlockSlot> = HashMap::pinned(16384, 0);
#[map]
static FREE_TCP: Queue<BlockId> = Queue::pinned(1024, 0);
#[map]
static FREE_UDP: Queue<BlockId> = Queue::pinned(1024, 0);
#[map]
static FREE_ICMP: Queue<BlockId> = Queue::pinned(1024, 0);
#[map]
static CLIENTS: LpmTrie<[u32; 4], u32> = LpmTrie::pinned(1024, 0);
#[map]
pub(crate) static POOL: HashMap<u32, PoolAddress> = HashMap::pinned(256, 0);
/// The route cache (`nat64.route_cache_ms`): answers of route lookups per destination.
#[map]
static ROUTES4: LruHashMap<RouteKey4, RouteEntry> = LruHashMap::with_max_entries(4096, 0);
#[map]
static ROUTES6: LruHashMap<RouteKey6, RouteEntry> = LruHashMap::with_max_entries(4096, 0);
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_SLOTS, 0);
/// Sessions for the controller's optional session log. Pinned, like the block events: what
/// happens while no controller runs, or while a reload swaps the program, is read later.
#[map]
static SESSION_EVENTS: RingBuf = RingBuf::pinned(256 * 1024, 0);
/// Port-block allocations for the controller's block log (pinned).
#[map]
static BLOCK_EVENTS: RingBuf = RingBuf::pinned(64 * 1024, 0);
/// Per-CPU scratch space for the parsed IPv6 packet (not pinned: nothing persists in it).
#[map]
static SCRATCH6: PerCpuArray<Packet6> = PerCpuArray::with_max_entries(1, 0);

/// Tries per block when looking for a free port (the block's hint makes the first one succeed
/// in the common case).
const PROBES: u16 = 16;
/// Session timestamps are refreshed at most this often (ns): fewer cache-line writes.
const TOUCH_NS: u64 = 1_000_000_000;
const EEXIST: i32 = 17;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// RFC 7915 section 5.1: DF is set on translated packets larger than this.
const DF_THRESHOLD: u16 = 1260;
/// Longest transport payload whose checksum the program computes in full (IPv4 UDP packets
/// without checksum, ICMP errors); bounded for the verifier. Longer ones take the slow path.
const MAX_FULL_CSUM: usize = 1504;

#[xdp]
pub fn translator(ctx: XdpContext) -> u32 {
    let tracing = crate::trace::enabled();
    if tracing {
        crate::trace::before(&ctx);
    }
    let (action, reason) = match try_translator(&ctx) {
        Ok(action) => (action, TRACE_NOT_DROPPED),
        Err(reason) => {
            count(reason.counter_index());
            let action = crate::icmp::answer(&ctx, reason).unwrap_or(xdp_action::XDP_DROP);
            (action, reason as u8)
        }
    };
    if tracing {
        crate::trace::after(&ctx, action, reason);
    }
    action
}

#[inline(always)]
pub(crate) fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub(crate) fn event(e: Event) {
    count(e as u32);
}

/// Counts a translated packet and its bytes (as sent, Ethernet header included).
#[inline(always)]
pub(crate) fn translated(ctx: &XdpContext, packets: Event, bytes: Event) {
    count(packets as u32);
    if let Some(c) = COUNTERS.get_ptr_mut(bytes as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *c += (ctx.data_end() - ctx.data()) as u64 };
    }
}

#[inline(always)]
pub(crate) fn config() -> &'static DataplaneConfig {
    // SAFETY: the loader filled in the global before load; a volatile read of its address keeps
    // the compiler from folding the placeholder values above.
    unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
}

#[inline(always)]
pub(crate) fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// CLOCK_MONOTONIC now, exact: for the times the logs print (the coarse clock lags by up to a
/// scheduler tick, which would stamp an allocation before the packet that made it arrived).
#[inline(always)]
fn now_exact() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn pass() -> Result<u32, DropReason> {
    event(Event::Passed);
    Ok(xdp_action::XDP_PASS)
}

fn try_translator(ctx: &XdpContext) -> Result<u32, DropReason> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    let proto = unsafe { (*eth).proto };
    // ICMP errors are dispatched from here, not from from_ipv6/from_ipv4: their subprograms
    // have large frames, and the verifier limits the whole call chain to 512 bytes of stack.
    if proto == ETH_P_IPV6 {
        if is_icmp6_error(ctx) {
            return crate::icmp::from_ipv6_error(ctx);
        }
        from_ipv6(ctx)
    } else if proto == ETH_P_IP {
        match icmp4_error_to_pool(ctx) {
            Some(true) => crate::icmp::from_ipv4_error(ctx),
            Some(false) => pass(),
            None => from_ipv4(ctx),
        }
    } else {
        pass()
    }
}

/// An ICMPv6 error message sent to an address inside the prefix.
#[inline(always)]
fn is_icmp6_error(ctx: &XdpContext) -> bool {
    let Ok(h) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return false;
    };
    let Ok(t) = ptr_at::<u8>(ctx, ETH_LEN + IPV6_LEN) else {
        return false;
    };
    let cfg = config();
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*h).next_header == IPPROTO_ICMPV6
            && translator_common::icmp::is_error_v6(*t)
            && rfc6052::matches_raw(&(*h).dst, &cfg.prefix, &cfg.mask)
    }
}

/// For an unfragmented ICMPv4 error message without options: whether it is addressed to a
/// pool address. `None`: not such a message.
#[inline(always)]
fn icmp4_error_to_pool(ctx: &XdpContext) -> Option<bool> {
    let h = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok()?;
    let t = ptr_at::<u8>(ctx, ETH_LEN + IPV4_LEN).ok()?;
    // SAFETY: bounds checked by ptr_at; read-only lookup.
    unsafe {
        if (*h).proto != IPPROTO_ICMP
            || (*h).ver_ihl != 0x45
            || u16::from_be((*h).frag) & 0x3fff != 0
            || !translator_common::icmp::is_error_v4(*t)
        {
            return None;
        }
        Some(POOL.get(&(*h).dst).is_some())
    }
}

/// What the translator needs from a transport header (ports raw).
#[derive(Clone, Copy)]
struct L4 {
    /// Session protocol (IPv4 numbering).
    proto: u8,
    /// TCP flags as `SEEN_*` bits.
    seen: u8,
    /// Source port, or the ICMP identifier when it names the sender's mapping.
    sport: u16,
    /// Destination port, or the ICMP identifier when it names the receiver's mapping.
    dport: u16,
}

#[inline(always)]
fn seen_bits(tcp_flags: u8) -> u8 {
    let mut s = 0;
    if tcp_flags & TCP_SYN != 0 {
        s |= SEEN_SYN;
    }
    if tcp_flags & TCP_FIN != 0 {
        s |= SEEN_FIN;
    }
    if tcp_flags & TCP_RST != 0 {
        s |= SEEN_RST;
    }
    s
}

/// Reads the transport header at `off`. `echo` are the echo request/reply types of the packet's
/// ICMP version; the identifier is the source "port" for IPv6 packets (the client's) and the
/// destination "port" for IPv4 packets (the pool's).
#[inline(always)]
fn parse_l4(
    ctx: &XdpContext,
    off: usize,
    proto: u8,
    echo: (u8, u8),
    id_is_source: bool,
) -> Result<L4, DropReason> {
    let h: *mut L4Head = ptr_at(ctx, off)?;
    // SAFETY: bounds checked by ptr_at for every read below.
    unsafe {
        match proto {
            IPPROTO_TCP => {
                let t: *mut TcpTail = ptr_at(ctx, off + 12)?;
                Ok(L4 {
                    proto,
                    seen: seen_bits((*t).flags),
                    sport: (*h).a,
                    dport: (*h).b,
                })
            }
            IPPROTO_UDP => Ok(L4 {
                proto,
                seen: 0,
                sport: (*h).a,
                dport: (*h).b,
            }),
            _ => {
                let ty = icmp_type((*h).a);
                if ty != echo.0 && ty != echo.1 {
                    return Err(DropReason::UnsupportedIcmp);
                }
                let id = (*h).c;
                let (sport, dport) = if id_is_source { (id, 0) } else { (0, id) };
                Ok(L4 {
                    proto: IPPROTO_ICMP,
                    seen: 0,
                    sport,
                    dport,
                })
            }
        }
    }
}

/// Refreshes a session's flags and timestamp; writes only what changed.
#[inline(always)]
fn touch(flags: *mut u8, last_seen: *mut u64, seen: u8, now: u64) {
    // SAFETY: pointers into a map value returned by a lookup.
    unsafe {
        let old = *flags;
        // A packet without RST after an RST takes the session out of the transitory state.
        let new = if seen & SEEN_RST == 0 {
            (old | seen) & !SEEN_RST
        } else {
            old | seen
        };
        if new != old {
            *flags = new;
        }
        if now.wrapping_sub(*last_seen) > TOUCH_NS {
            *last_seen = now;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// IPv6 -> IPv4

/// The parsed IPv6 packet and its binding, for the rewrite.
struct Packet6 {
    key: SessionKey6,
    dst: [u32; 4],
    /// Pool address and port of the binding (raw).
    pool: u32,
    pool_port: u16,
    payload_len: u16,
    tclass: u8,
    hop: u8,
    l4: L4,
    now: u64,
    /// Fragment header of a first fragment (raw offset/flags word, raw identification).
    frag: Option<(u16, u32)>,
}

#[inline(never)]
fn from_ipv6(ctx: &XdpContext) -> Result<u32, DropReason> {
    let ip6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let cfg = config();
    // SAFETY: bounds checked by ptr_at.
    let dst = unsafe { (*ip6).dst };
    if !rfc6052::matches_raw(&dst, &cfg.prefix, &cfg.mask) {
        return pass();
    }
    // SAFETY: bounds checked by ptr_at.
    let (vtc, payload_len, nh, hop, src) = unsafe {
        (
            u32::from_be((*ip6).vtc_flow),
            u16::from_be((*ip6).payload_len),
            (*ip6).next_header,
            (*ip6).hop_limit,
            (*ip6).src,
        )
    };
    if vtc >> 28 != 6 {
        return Err(DropReason::Malformed);
    }
    if ctx.data() + ETH_LEN + IPV6_LEN + payload_len as usize > ctx.data_end() {
        return Err(DropReason::Truncated);
    }
    if hop <= 1 {
        return Err(DropReason::HopLimitExceeded);
    }
    let remote = rfc6052::raw4(rfc6052::extract(rfc6052::from_raw6(&dst), cfg.prefix_len));
    let (nh, l4off, frag) = if nh == IPPROTO_FRAGMENT {
        let fh: *mut FragHdr = ptr_at(ctx, ETH_LEN + IPV6_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        let f = unsafe { *fh };
        if payload_len < (FRAG_LEN + 1) as u16 {
            return Err(DropReason::Malformed);
        }
        if u16::from_be(f.off_flags) & 0xfff8 != 0 {
            // A later fragment: no transport header; its first fragment told where it goes.
            return crate::frag::rest_6to4(
                ctx,
                &Rest6 {
                    src,
                    remote,
                    f,
                    tclass: (vtc >> 20) as u8,
                    hop,
                    payload_len,
                },
            );
        }
        (
            f.next_header,
            ETH_LEN + IPV6_LEN + FRAG_LEN,
            Some((f.off_flags, f.id)),
        )
    } else {
        (nh, ETH_LEN + IPV6_LEN, None)
    };
    let l4 = match nh {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6 => parse_l4(ctx, l4off, nh, (128, 129), true)?,
        // Hop-by-hop options, routing, destination options: RFC 7915 section 5.1 skips them
        // (a routing header only with segments left 0); the slow path walks the chain.
        0 | 43 | 60 => return punt(ctx),
        // A second fragment header, ESP, AH, mobility, HIP, shim6: not translatable.
        44 | 50 | 51 | 135 | 139 | 140 => return Err(DropReason::Ipv6ExtensionHeader),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    if l4.proto == IPPROTO_UDP {
        let h: *mut L4Head = ptr_at(ctx, l4off)?;
        // SAFETY: bounds checked by ptr_at.
        if unsafe { (*h).d } == 0 {
            return Err(DropReason::ZeroUdpChecksum6);
        }
    }
    // The parsed packet lives in per-CPU scratch memory, not on the stack: the verifier allows
    // 512 bytes of stack for the whole call chain.
    let pkt = match SCRATCH6.get_ptr_mut(0) {
        // SAFETY: per-CPU value; XDP programs do not nest on one CPU.
        Some(p) => unsafe { &mut *p },
        None => return Err(DropReason::HelperFailed),
    };
    *pkt = Packet6 {
        key: SessionKey6 {
            client: src,
            remote,
            client_port_be: l4.sport,
            remote_port_be: l4.dport,
            proto: l4.proto,
            _pad: [0; 3],
        },
        dst,
        pool: 0,
        pool_port: 0,
        payload_len,
        tclass: (vtc >> 20) as u8,
        hop,
        l4,
        now: now(),
        frag,
    };
    let hairpin = match SESSIONS6.get_ptr_mut(&pkt.key) {
        Some(v) => {
            // SAFETY: map value pointer from a successful lookup.
            unsafe {
                touch(&mut (*v).flags, &mut (*v).last_seen, l4.seen, pkt.now);
                pkt.pool = (*v).pool;
                pkt.pool_port = (*v).pool_port_be;
                (*v).flags & SESSION_HAIRPIN != 0
            }
        }
        None => {
            // Each step is its own subprogram, called from here so that the deepest call chain
            // stays within the verifier's stack limit.
            if !outbound_binding(pkt)? {
                allocate_binding(ctx, pkt)?;
            }
            create_outbound(pkt)?
        }
    };
    if pkt.frag.is_some() && (hairpin || l4.proto == IPPROTO_ICMP) {
        // ICMP needs the whole datagram (its checksum covers a pseudo-header with the total
        // length); hairpinned fragments are rare: both go to the slow path, session made.
        return punt(ctx);
    }
    if hairpin {
        let k4 = hairpin_key(pkt);
        let peer = match SESSIONS4.get_ptr_mut(&k4) {
            // SAFETY: map value pointer from a successful lookup.
            Some(v) => unsafe {
                touch(&mut (*v).flags, &mut (*v).last_seen, pkt.l4.seen, pkt.now);
                ((*v).client, (*v).client_port_be)
            },
            None => create_inbound(&k4, pkt.l4.seen, pkt.now)?.ok_or(DropReason::NoSession)?,
        };
        return hairpin_rewrite(ctx, pkt, &peer);
    }
    translate_6to4(ctx, pkt)
}

/// Policy checks for a new outbound flow, then the client's existing binding if any (EIM: one
/// binding per client address and port, whatever the destination). Fills in `pkt.pool` and
/// `pkt.pool_port` and returns true when the binding exists.
#[inline(never)]
fn outbound_binding(pkt: &mut Packet6) -> Result<bool, DropReason> {
    let cfg = config();
    let key = &pkt.key;
    if CLIENTS.get(&Key::new(128, key.client)).is_none() {
        return Err(DropReason::ClientNotAllowed);
    }
    if cfg.flags & (CFG_WELL_KNOWN_PREFIX | CFG_ALLOW_NON_GLOBAL) == CFG_WELL_KNOWN_PREFIX
        && !rfc6052::is_global(rfc6052::from_raw4(key.remote))
    {
        return Err(DropReason::DestinationNotAllowed);
    }
    match BINDINGS6.get_ptr_mut(&binding_key(key)) {
        Some(b) => {
            // SAFETY: map value pointer from a successful lookup.
            unsafe {
                (*b).last_used = pkt.now;
                pkt.pool = (*b).pool;
                pkt.pool_port = (*b).pool_port_be;
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

#[inline(always)]
fn binding_key(key: &SessionKey6) -> BindingKey6 {
    BindingKey6 {
        client: key.client,
        client_port_be: key.client_port_be,
        proto: key.proto,
        _pad: 0,
    }
}

/// Creates both session entries of a new outbound flow whose binding is known; returns whether
/// the destination is a pool address (hairpinning).
#[inline(never)]
fn create_outbound(pkt: &Packet6) -> Result<bool, DropReason> {
    let key = &pkt.key;
    let (pool, pool_port, now) = (pkt.pool, pkt.pool_port, pkt.now);
    // SAFETY: read-only lookup.
    let hairpin = unsafe { POOL.get(&key.remote) }.is_some();
    let v6 = SessionValue6 {
        pool,
        pool_port_be: pool_port,
        flags: pkt.l4.seen | if hairpin { SESSION_HAIRPIN } else { 0 },
        _pad: 0,
        last_seen: now,
    };
    SESSIONS6
        .insert(key, &v6, 0)
        .map_err(|_| DropReason::TableFull)?;
    let k4 = SessionKey4 {
        pool,
        remote: key.remote,
        pool_port_be: pool_port,
        remote_port_be: key.remote_port_be,
        proto: key.proto,
        _pad: [0; 3],
    };
    let v4 = SessionValue4 {
        client: key.client,
        client_port_be: key.client_port_be,
        flags: 0,
        _pad: [0; 5],
        last_seen: now,
    };
    if SESSIONS4.insert(&k4, &v4, 0).is_err() {
        let _ = SESSIONS6.remove(key);
        return Err(DropReason::TableFull);
    }
    if config().flags & CFG_ENDPOINT_INDEPENDENT_FILTERING == 0 {
        permit(pool, pool_port, key, now);
    }
    event(Event::SessionCreated);
    log_session(key, pool, pool_port);
    Ok(hairpin)
}

/// Records that the binding `pool:pool_port` sent to `key.remote` (address-dependent filtering).
/// An existing permit only gets its time refreshed: a plain store instead of an insert, which
/// takes the bucket lock.
#[inline(always)]
fn permit(pool: u32, pool_port: u16, key: &SessionKey6, now: u64) {
    let fkey = FilterKey {
        pool,
        remote: key.remote,
        pool_port_be: pool_port,
        proto: key.proto,
        _pad: 0,
    };
    match FILTERS.get_ptr_mut(&fkey) {
        // SAFETY: map value pointer from a successful lookup.
        Some(last) => unsafe { *last = now },
        // The table is as large as the session table, so it cannot be full when the session
        // insert succeeded.
        None => {
            let _ = FILTERS.insert(&fkey, &now, 0);
        }
    }
}

/// Finds a free pool port for a new binding in the client's blocks, taking a new block from the
/// free queue when they are full. Port ownership is decided by the `BPF_NOEXIST` insert into
/// BINDINGS4, so concurrent CPUs can never hand out the same port twice.
#[inline(never)]
fn allocate_binding(ctx: &XdpContext, pkt: &mut Packet6) -> Result<(), DropReason> {
    let cfg = config();
    let bkey = &binding_key(&pkt.key);
    let now = pkt.now;
    // One key, its slot number changed in place (the stack is tight on this call chain).
    let mut sk = BlockSlotKey {
        client: subscriber(&bkey.client),
        proto: bkey.proto,
        slot: 0,
        _pad: [0; 2],
    };
    let max = if (cfg.max_blocks as u32) < MAX_BLOCKS_PER_CLIENT {
        cfg.max_blocks as u32
    } else {
        MAX_BLOCKS_PER_CLIENT
    };
    // Two passes keep the verifier's work linear: states at the loop head differ only in the
    // slot number, so it can prune (remembering "the first free slot" in the first pass would
    // make every path distinct).
    let mut slot = 0u32;
    while slot < max {
        sk.slot = slot as u8;
        if let Some(s) = BLOCK_SLOTS.get_ptr_mut(&sk) {
            if let Some((pool, port)) = try_block(s, bkey, now)? {
                pkt.pool = pool;
                pkt.pool_port = port;
                return Ok(());
            }
        }
        slot += 1;
    }
    let mut free_slot = MAX_BLOCKS_PER_CLIENT;
    let mut slot = 0u32;
    while slot < max {
        sk.slot = slot as u8;
        if BLOCK_SLOTS.get_ptr(&sk).is_none() {
            free_slot = slot;
            break;
        }
        slot += 1;
    }
    if free_slot == MAX_BLOCKS_PER_CLIENT {
        return Err(DropReason::ClientLimit);
    }
    let queue = match bkey.proto {
        IPPROTO_TCP => &FREE_TCP,
        IPPROTO_UDP => &FREE_UDP,
        _ => &FREE_ICMP,
    };
    let block = match queue.pop() {
        Ok(Some(b)) => b,
        _ => return Err(DropReason::PoolExhausted),
    };
    sk.slot = free_slot as u8;
    let value = BlockSlot {
        block,
        next: 0,
        _pad: [0; 6],
        last_alloc: now,
    };
    if BLOCK_SLOTS.insert(&sk, &value, BPF_NOEXIST as u64).is_err() {
        // Another CPU filled this slot first (or the slot table is full): give the block back.
        let _ = queue.push(&block, 0);
    } else {
        event(Event::BlockTaken);
        log_block(ctx, bkey, &block);
    }
    match BLOCK_SLOTS.get_ptr_mut(&sk) {
        Some(s) => match try_block(s, bkey, now)? {
            Some((pool, port)) => {
                pkt.pool = pool;
                pkt.pool_port = port;
                Ok(())
            }
            None => Err(DropReason::ClientLimit),
        },
        None => Err(DropReason::TableFull),
    }
}

/// Reports a new session when the session log is on.
#[inline(always)]
fn log_session(key: &SessionKey6, pool: u32, pool_port: u16) {
    if config().flags & CFG_LOG_SESSIONS == 0 {
        return;
    }
    if let Some(mut e) = SESSION_EVENTS.reserve::<SessionEvent>(0) {
        e.write(SessionEvent {
            client: key.client,
            remote: key.remote,
            pool,
            client_port_be: key.client_port_be,
            remote_port_be: key.remote_port_be,
            pool_port_be: pool_port,
            proto: key.proto,
            _pad: 0,
            time: now_exact(),
        });
        e.submit(0);
    }
}

/// Logs a block allocation (rare: once per block) for the operator's block log.
#[inline(never)]
fn log_block(ctx: &XdpContext, bkey: &BindingKey6, block: &BlockId) {
    let ev = BlockEvent {
        client: subscriber(&bkey.client),
        pool: block.pool,
        start: block.start,
        proto: bkey.proto,
        _pad: 0,
        time: now_exact(),
    };
    // Lost only if the controller has not drained the ring for a long while.
    let _ = BLOCK_EVENTS.output::<BlockEvent>(&ev, 0);
    // SAFETY: same size, and the raw words' memory is the address bytes.
    let client: [u8; 16] = unsafe { core::mem::transmute(ev.client) };
    info!(
        ctx,
        "block {:i} ports {}+{} proto {} taken by {:i}",
        rfc6052::from_raw4(block.pool),
        block.start,
        config().block_size,
        bkey.proto,
        client
    );
}

/// Block slots belong to the subscriber: the client address masked to
/// `pool.subscriber_prefix_len`.
#[inline(always)]
fn subscriber(client: &[u32; 4]) -> [u32; 4] {
    let m = &config().subscriber_mask;
    [
        client[0] & m[0],
        client[1] & m[1],
        client[2] & m[2],
        client[3] & m[3],
    ]
}

/// Probes up to [`PROBES`] ports of one block. `Ok(None)`: the block looks full.
#[inline(never)]
fn try_block(
    s: *mut BlockSlot,
    bkey: &BindingKey6,
    now: u64,
) -> Result<Option<(u32, u16)>, DropReason> {
    let cfg = config();
    // SAFETY: map value pointer from a successful lookup.
    let (block, next) = unsafe { ((*s).block, (*s).next) };
    let client_port = u16::from_be(bkey.client_port_be);
    let value4 = BindingValue4 {
        client: bkey.client,
        client_port_be: bkey.client_port_be,
        flags: 0,
        _pad: 0,
    };
    let mut i = 0u16;
    while i < PROBES {
        let off = probe_offset(next, i, client_port, cfg.block_size);
        let port_be = block.start.wrapping_add(off).to_be();
        let k4 = BindingKey4 {
            pool: block.pool,
            pool_port_be: port_be,
            proto: bkey.proto,
            _pad: 0,
        };
        match BINDINGS4.insert(&k4, &value4, BPF_NOEXIST as u64) {
            Ok(()) => {
                // SAFETY: as above; the hint is advisory, a racing write is harmless.
                unsafe {
                    (*s).next = next_hint(off);
                    (*s).last_alloc = now;
                }
                let v6 = BindingValue6 {
                    pool: block.pool,
                    pool_port_be: port_be,
                    flags: 0,
                    _pad: 0,
                    last_used: now,
                };
                if BINDINGS6.insert(bkey, &v6, BPF_NOEXIST as u64).is_err() {
                    // Another CPU bound this client port first: use its binding.
                    let _ = BINDINGS4.remove(&k4);
                    // SAFETY: read-only lookup.
                    return match unsafe { BINDINGS6.get(bkey) } {
                        Some(b) => Ok(Some((b.pool, b.pool_port_be))),
                        None => Err(DropReason::TableFull),
                    };
                }
                event(Event::BindingCreated);
                return Ok(Some((block.pool, port_be)));
            }
            Err(e) if e == -EEXIST => {}
            Err(_) => return Err(DropReason::TableFull),
        }
        i += 1;
    }
    Ok(None)
}

/// Rewrites an IPv6 packet into IPv4 in place and forwards it.
#[inline(never)]
fn translate_6to4(ctx: &XdpContext, pkt: &Packet6) -> Result<u32, DropReason> {
    let key = &pkt.key;
    // Constant offsets for the verifier (a value read back from the scratch map is unbounded).
    let l4off = if pkt.frag.is_some() {
        ETH_LEN + IPV6_LEN + FRAG_LEN
    } else {
        ETH_LEN + IPV6_LEN
    };
    // Bytes of IPv6 (and fragment) header that go away.
    let shrink = l4off - ETH_LEN - IPV4_LEN;
    // The transport bytes after the headers, plus the IPv4 header.
    let tot_len = (pkt.payload_len as usize + ETH_LEN + IPV6_LEN - l4off + IPV4_LEN) as u16;
    let proto = pkt.l4.proto;

    // Route first: the result decides the TTL (the kernel decrements it itself when we pass).
    let fib = scratch_fib()?;
    fib.family = AF_INET;
    fib.l4_protocol = proto;
    fib.sport = pkt.pool_port;
    fib.dport = key.remote_port_be;
    fib.__bindgen_anon_1.tot_len = tot_len;
    fib.__bindgen_anon_2.tos = pkt.tclass;
    fib.__bindgen_anon_3.ipv4_src = pkt.pool;
    fib.__bindgen_anon_4.ipv4_dst = key.remote;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let verdict = match route_cached(ctx, fib, pkt.now, true) {
        // An IPv6 fragment too big for the IPv4 link: fragment further (slow path).
        Err(DropReason::MtuExceeded) if pkt.frag.is_some() => return punt(ctx),
        r => r?,
    };
    let ttl = if verdict == xdp_action::XDP_PASS {
        pkt.hop
    } else {
        pkt.hop - 1
    };

    // Transport checksum: pseudo-header addresses and the client's port change. ICMPv4 has no
    // pseudo-header, so for ICMP the whole IPv6 pseudo-header goes and nothing comes back.
    let mut removed = sum_raw6(&key.client) + sum_raw6(&pkt.dst) + key.client_port_be as u32;
    let mut added = pkt.pool_port as u32;
    if proto == IPPROTO_ICMP {
        removed += raw16(pkt.payload_len) + raw16(IPPROTO_ICMPV6 as u16);
    } else {
        added += sum_raw4(pkt.pool) + sum_raw4(key.remote);
    }
    let h: *mut L4Head = ptr_at(ctx, l4off)?;
    // SAFETY: bounds checked by ptr_at for every access below.
    unsafe {
        match proto {
            IPPROTO_TCP => {
                let t: *mut TcpTail = ptr_at(ctx, l4off + 12)?;
                (*h).a = pkt.pool_port;
                (*t).csum = checksum::update((*t).csum, removed, added);
            }
            IPPROTO_UDP => {
                (*h).a = pkt.pool_port;
                (*h).d = udp_csum(checksum::update((*h).d, removed, added));
            }
            _ => {
                // Echo request/reply 128/129 -> 8/0 (RFC 7915 section 5.2).
                let old_type = (*h).a;
                let new_type = icmp_word(if icmp_type(old_type) == 128 { 8 } else { 0 }, 0);
                (*h).a = new_type;
                (*h).c = pkt.pool_port;
                (*h).b =
                    checksum::update((*h).b, removed + old_type as u32, added + new_type as u32);
            }
        }
    }

    // IPv4 header, written over the last 20 bytes of the IPv6 header.
    let (frag, id) = if let Some((word, fid)) = pkt.frag {
        // RFC 7915 section 5.1.1: identification from the low 16 bits, DF clear, offset and
        // MF copied.
        let w = u16::from_be(word);
        let mf = if w & 1 != 0 { 0x2000 } else { 0 };
        (((w >> 3) | mf).to_be(), (u32::from_be(fid) as u16).to_be())
    } else if tot_len > DF_THRESHOLD {
        (0x4000u16.to_be(), 0)
    } else {
        // RFC 7915 section 5.1: small packets go without DF and need a real identification.
        // SAFETY: helper without arguments.
        (0, unsafe { bpf_get_prandom_u32() } as u16)
    };
    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: pkt.tclass,
        tot_len: tot_len.to_be(),
        id,
        frag,
        ttl,
        proto,
        csum: 0,
        src: pkt.pool,
        dst: key.remote,
    };
    ip4.csum = ipv4_header_checksum(&ip4);
    let eth = out_eth(ctx, verdict, fib, ETH_P_IP)?;
    // The verifier needs constant offsets: one branch per header size.
    if shrink == IPV6_LEN - IPV4_LEN {
        let p4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN + IPV6_LEN - IPV4_LEN)?;
        let pe: *mut EthHdr = ptr_at(ctx, IPV6_LEN - IPV4_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            *p4 = ip4;
            *pe = eth;
        }
    } else {
        let p4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN + IPV6_LEN + FRAG_LEN - IPV4_LEN)?;
        let pe: *mut EthHdr = ptr_at(ctx, IPV6_LEN + FRAG_LEN - IPV4_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            *p4 = ip4;
            *pe = eth;
        }
    }
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, shrink as i32) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    if let Some((_, fid)) = pkt.frag {
        crate::frag::remember_6to4(key, fid, pkt.pool, pkt.now);
        event(Event::FragmentTranslated);
    }
    translated(ctx, Event::Translated6to4, Event::Bytes6to4);
    forward(ctx, verdict, fib)
}

/// A UDP checksum of zero means "none" in IPv4 and is illegal in IPv6: send 0xffff instead
/// (the same value in ones-complement arithmetic).
#[inline(always)]
pub(crate) fn udp_csum(c: u16) -> u16 {
    if c == 0 { 0xffff } else { c }
}

/// The Ethernet header of the outgoing frame: addresses from the route lookup when we forward,
/// the received ones (our own MAC as destination) when the kernel takes the packet.
#[inline(always)]
pub(crate) fn out_eth(
    ctx: &XdpContext,
    verdict: u32,
    fib: &bpf_fib_lookup,
    proto: u16,
) -> Result<EthHdr, DropReason> {
    if verdict == xdp_action::XDP_PASS {
        let eth: *mut EthHdr = ptr_at(ctx, 0)?;
        // SAFETY: bounds checked by ptr_at.
        let mut e = unsafe { *eth };
        e.proto = proto;
        Ok(e)
    } else {
        Ok(EthHdr {
            dst: fib.dmac,
            src: fib.smac,
            proto,
        })
    }
}

/// Route lookup for a translated packet. `XDP_REDIRECT`: forward with the MACs in `fib`;
/// `XDP_PASS`: let the kernel finish (neighbour unresolved, or a local destination).
#[inline(always)]
pub(crate) fn route(ctx: &XdpContext, fib: &mut bpf_fib_lookup) -> Result<u32, DropReason> {
    // SAFETY: `fib` is a valid, fully initialised struct of the size passed.
    let rc = unsafe {
        fib_lookup(
            ctx.ctx as *mut _,
            fib as *mut bpf_fib_lookup,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(xdp_action::XDP_REDIRECT),
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            event(Event::PassedNoNeighbour);
            Ok(xdp_action::XDP_PASS)
        }
        BPF_FIB_LKUP_RET_NOT_FWDED => Ok(xdp_action::XDP_PASS),
        BPF_FIB_LKUP_RET_FWD_DISABLED => Err(DropReason::ForwardingDisabled),
        BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            // SAFETY: on FRAG_NEEDED the kernel wrote the MTU into this union member.
            crate::icmp::note_mtu(unsafe { fib.__bindgen_anon_1.mtu_result });
            Err(DropReason::MtuExceeded)
        }
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            Err(DropReason::NoRoute)
        }
        _ => Ok(xdp_action::XDP_PASS),
    }
}

/// The route lookup of a translated packet, off the stack (the call chain's 512 bytes are
/// spent): per CPU, zeroed for each packet.
#[map]
static FIB_SCRATCH: PerCpuArray<bpf_fib_lookup> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn scratch_fib() -> Result<&'static mut bpf_fib_lookup, DropReason> {
    match FIB_SCRATCH.get_ptr_mut(0) {
        Some(p) => {
            crate::packet::zero_fib(p);
            // SAFETY: per-CPU value, zeroed above; XDP programs do not nest on one CPU, and
            // the reference does not outlive the packet's processing.
            Ok(unsafe { &mut *p })
        }
        None => Err(DropReason::HelperFailed),
    }
}

/// Keys and entry of a route-cache lookup, off the stack (the call chain's 512 bytes are
/// spent).
#[repr(C)]
struct RouteScratch {
    k4: RouteKey4,
    k6: RouteKey6,
    e: RouteEntry,
}

#[map]
static ROUTE_SCRATCH: PerCpuArray<RouteScratch> = PerCpuArray::with_max_entries(1, 0);

/// [`route`] through the route cache when it is on: a destination looked up less than
/// `route_cache_ns` ago, for a packet no larger than one that fitted then, reuses that answer
/// (interface and MACs). Only successful lookups are kept; anything else is looked up every
/// time. IPv4 destinations when `v4`, else IPv6.
#[inline(always)]
pub(crate) fn route_cached(
    ctx: &XdpContext,
    fib: &mut bpf_fib_lookup,
    now: u64,
    v4: bool,
) -> Result<u32, DropReason> {
    let ttl = config().route_cache_ns;
    if ttl == 0 {
        return route(ctx, fib);
    }
    let sc = match ROUTE_SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU value; XDP programs do not nest on one CPU.
        Some(p) => unsafe { &mut *p },
        None => return route(ctx, fib),
    };
    // SAFETY: the callers set the family's members of these unions.
    let len = unsafe { fib.__bindgen_anon_1.tot_len };
    let hit = if v4 {
        sc.k4 = RouteKey4 {
            // SAFETY: as above.
            dst: unsafe { fib.__bindgen_anon_4.ipv4_dst },
            ifindex_in: fib.ifindex,
        };
        ROUTES4.get_ptr(&sc.k4)
    } else {
        sc.k6 = RouteKey6 {
            // SAFETY: as above.
            dst: unsafe { fib.__bindgen_anon_4.ipv6_dst },
            ifindex_in: fib.ifindex,
        };
        ROUTES6.get_ptr(&sc.k6)
    };
    if let Some(e) = hit {
        // SAFETY: map value pointer from a successful lookup, read at once.
        unsafe {
            if now.wrapping_sub((*e).stamp) < ttl && len <= (*e).max_len {
                fib.ifindex = (*e).ifindex;
                fib.smac = (*e).smac;
                fib.dmac = (*e).dmac;
                return Ok(xdp_action::XDP_REDIRECT);
            }
        }
    }
    let verdict = route(ctx, fib)?;
    if verdict == xdp_action::XDP_REDIRECT {
        sc.e = RouteEntry {
            stamp: now,
            ifindex: fib.ifindex,
            max_len: len,
            _pad: 0,
            smac: fib.smac,
            dmac: fib.dmac,
            _pad2: 0,
        };
        let _ = if v4 {
            ROUTES4.insert(&sc.k4, &sc.e, 0)
        } else {
            ROUTES6.insert(&sc.k6, &sc.e, 0)
        };
    }
    Ok(verdict)
}

/// Sends the rewritten frame: back out of the same interface (one-armed), to another
/// interface, or up the kernel stack.
#[inline(always)]
pub(crate) fn forward(
    ctx: &XdpContext,
    verdict: u32,
    fib: &bpf_fib_lookup,
) -> Result<u32, DropReason> {
    if verdict == xdp_action::XDP_PASS {
        return Ok(xdp_action::XDP_PASS);
    }
    if fib.ifindex == ctx.ingress_ifindex() as u32 {
        return Ok(xdp_action::XDP_TX);
    }
    // SAFETY: plain helper call; returns XDP_REDIRECT, or XDP_ABORTED on bad flags.
    let action = unsafe { bpf_redirect(fib.ifindex, 0) } as u32;
    if action != xdp_action::XDP_REDIRECT {
        return Err(DropReason::HelperFailed);
    }
    Ok(action)
}

/// Checksum field over an IPv4 header as given: the value to store when `csum` is zero, and
/// zero when a received header verifies.
#[inline(always)]
pub(crate) fn ipv4_header_checksum(h: &Ipv4Hdr) -> u16 {
    let s = u16::from_ne_bytes([h.ver_ihl, h.tos]) as u32
        + h.tot_len as u32
        + h.id as u32
        + h.frag as u32
        + u16::from_ne_bytes([h.ttl, h.proto]) as u32
        + h.csum as u32
        + sum_raw4(h.src)
        + sum_raw4(h.dst);
    checksum::finish(s)
}

// ------------------------------------------------------------------------------------------------
// IPv4 -> IPv6

/// What the IPv4 -> IPv6 rewrite needs.
struct Packet4 {
    h: Ipv4Hdr,
    l4: L4,
    client: [u32; 4],
    client_port: u16,
}

#[inline(never)]
fn from_ipv4(ctx: &XdpContext) -> Result<u32, DropReason> {
    let ip4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let h = unsafe { *ip4 };
    if h.ver_ihl >> 4 != 4 {
        return pass();
    }
    if u16::from_be(h.frag) & 0x1fff != 0 {
        // A later fragment: no transport header; its first fragment told where it goes.
        // SAFETY: read-only lookup.
        return if unsafe { POOL.get(&h.dst) }.is_some() {
            crate::frag::rest_4to6(ctx, &h)
        } else {
            pass()
        };
    }
    let l4 = match parse_ipv4_l4(ctx, &h) {
        Ok(l4) => l4,
        // Options are not translated (RFC 7915 section 4.1): the slow path skips them.
        // SAFETY: read-only lookup.
        Err(DropReason::Ipv4Options) if unsafe { POOL.get(&h.dst) }.is_some() => {
            return punt(ctx);
        }
        // Not translatable: only our business when it is addressed to the pool.
        // SAFETY: read-only lookup.
        Err(e) => {
            return if unsafe { POOL.get(&h.dst) }.is_some() {
                Err(e)
            } else {
                pass()
            };
        }
    };
    let key = SessionKey4 {
        pool: h.dst,
        remote: h.src,
        pool_port_be: l4.dport,
        remote_port_be: l4.sport,
        proto: l4.proto,
        _pad: [0; 3],
    };
    let now = now();
    let mut pkt = Packet4 {
        h,
        l4,
        client: [0; 4],
        client_port: 0,
    };
    match SESSIONS4.get_ptr_mut(&key) {
        Some(v) => {
            check_ipv4(ctx, &h)?;
            // SAFETY: map value pointer from a successful lookup.
            unsafe {
                touch(&mut (*v).flags, &mut (*v).last_seen, l4.seen, now);
                pkt.client = (*v).client;
                pkt.client_port = (*v).client_port_be;
            }
        }
        None => {
            // SAFETY: read-only lookup.
            let local = match unsafe { POOL.get(&h.dst) } {
                Some(p) => p.flags & POOL_LOCAL != 0,
                None => return pass(),
            };
            check_ipv4(ctx, &h)?;
            match create_inbound(&key, l4.seen, now)? {
                Some((client, port)) => {
                    pkt.client = client;
                    pkt.client_port = port;
                }
                // A packet for the host itself (the pool address is ours and nothing is bound).
                None if local => return pass(),
                None => return Err(DropReason::NoSession),
            }
        }
    }
    if l4.proto == IPPROTO_UDP && u16::from_be(h.tot_len) as usize > IPV4_LEN + MAX_FULL_CSUM {
        let uh: *mut L4Head = ptr_at(ctx, ETH_LEN + IPV4_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        if unsafe { (*uh).d } == 0 && u16::from_be(h.frag) & 0x2000 == 0 {
            // Too long to checksum here (jumbo frames): the slow path computes it.
            return punt(ctx);
        }
    }
    if u16::from_be(h.frag) & 0x2000 != 0 {
        // A first fragment. ICMP needs the whole datagram (the ICMPv6 checksum covers the
        // total length); a UDP datagram without checksum cannot get one fragment by fragment.
        if l4.proto == IPPROTO_ICMP {
            return punt(ctx);
        }
        if l4.proto == IPPROTO_UDP {
            let uh: *mut L4Head = ptr_at(ctx, ETH_LEN + IPV4_LEN)?;
            // SAFETY: bounds checked by ptr_at.
            if unsafe { (*uh).d } == 0 {
                return Err(DropReason::Fragment);
            }
        }
    }
    translate_4to6(ctx, &pkt)
}

/// Transport header of an IPv4 packet, for the cases this release translates.
#[inline(always)]
fn parse_ipv4_l4(ctx: &XdpContext, h: &Ipv4Hdr) -> Result<L4, DropReason> {
    match h.proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP => {}
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    let ihl = h.ver_ihl & 0x0f;
    if ihl != 5 {
        return Err(if ihl < 5 {
            DropReason::Malformed
        } else {
            DropReason::Ipv4Options
        });
    }
    parse_l4(ctx, ETH_LEN + IPV4_LEN, h.proto, (8, 0), false)
}

/// Validates what translation relies on.
#[inline(always)]
fn check_ipv4(ctx: &XdpContext, h: &Ipv4Hdr) -> Result<(), DropReason> {
    let tot_len = u16::from_be(h.tot_len) as usize;
    if tot_len < IPV4_LEN + size_of::<L4Head>() {
        return Err(DropReason::Malformed);
    }
    if ctx.data() + ETH_LEN + tot_len > ctx.data_end() {
        return Err(DropReason::Truncated);
    }
    if ipv4_header_checksum(h) != 0 {
        return Err(DropReason::BadIpv4Checksum);
    }
    if h.ttl <= 1 {
        return Err(DropReason::HopLimitExceeded);
    }
    Ok(())
}

/// First packet of an inbound flow to a pool address: allowed by a static binding, by
/// endpoint-independent filtering, or by a permit the client created (address-dependent
/// filtering). `Ok(None)`: no binding at all.
#[inline(never)]
fn create_inbound(
    key: &SessionKey4,
    seen: u8,
    now: u64,
) -> Result<Option<([u32; 4], u16)>, DropReason> {
    let cfg = config();
    let bk = BindingKey4 {
        pool: key.pool,
        pool_port_be: key.pool_port_be,
        proto: key.proto,
        _pad: 0,
    };
    // SAFETY: read-only lookup, copied out at once.
    let b = match unsafe { BINDINGS4.get(&bk) } {
        Some(b) => *b,
        None => return Ok(None),
    };
    if b.flags & BINDING_STATIC == 0 && cfg.flags & CFG_ENDPOINT_INDEPENDENT_FILTERING == 0 {
        let fk = FilterKey {
            pool: key.pool,
            remote: key.remote,
            pool_port_be: key.pool_port_be,
            proto: key.proto,
            _pad: 0,
        };
        // SAFETY: read-only lookup.
        if unsafe { FILTERS.get(&fk) }.is_none() {
            return Err(DropReason::NoSession);
        }
    }
    let v4 = SessionValue4 {
        client: b.client,
        client_port_be: b.client_port_be,
        flags: seen,
        _pad: [0; 5],
        last_seen: now,
    };
    SESSIONS4
        .insert(key, &v4, 0)
        .map_err(|_| DropReason::TableFull)?;
    let k6 = SessionKey6 {
        client: b.client,
        remote: key.remote,
        client_port_be: b.client_port_be,
        remote_port_be: key.remote_port_be,
        proto: key.proto,
        _pad: [0; 3],
    };
    // SAFETY: read-only lookup.
    let hairpin = unsafe { POOL.get(&key.remote) }.is_some();
    let v6 = SessionValue6 {
        pool: key.pool,
        pool_port_be: key.pool_port_be,
        flags: if hairpin { SESSION_HAIRPIN } else { 0 },
        _pad: 0,
        last_seen: now,
    };
    if SESSIONS6.insert(&k6, &v6, 0).is_err() {
        let _ = SESSIONS4.remove(key);
        return Err(DropReason::TableFull);
    }
    event(Event::SessionCreated);
    log_session(&k6, key.pool, key.pool_port_be);
    Ok(Some((b.client, b.client_port_be)))
}

/// Words of the per-CPU checksum buffer (holds [`MAX_FULL_CSUM`] bytes).
const CSUM_WORDS: usize = MAX_FULL_CSUM / 8;

/// Per-CPU buffer the full checksums are computed over.
#[map]
static CSUM_BUF: PerCpuArray<[u64; CSUM_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// Sum of `len` packet bytes from `off`, as raw 16-bit words (folded to fit a `u32`).
///
/// The bytes are copied into a zeroed per-CPU buffer and summed over its whole, fixed length:
/// a loop whose trip count does not depend on the packet, which the verifier walks once per
/// call site (a loop that stops at `len` would give it one path per possible length).
#[inline(never)]
pub(crate) fn sum_packet(ctx: &XdpContext, off: usize, len: usize) -> Result<u32, DropReason> {
    if len == 0 {
        return Ok(0);
    }
    if len > MAX_FULL_CSUM {
        return Err(DropReason::MtuExceeded);
    }
    let buf = CSUM_BUF.get_ptr_mut(0).ok_or(DropReason::HelperFailed)?;
    // SAFETY: per-CPU value; XDP programs do not nest on one CPU.
    let words = unsafe { &mut *buf };
    let mut i = 0;
    while i < CSUM_WORDS {
        words[i] = 0;
        i += 1;
    }
    // SAFETY: the helper checks offset and length against the packet; the buffer holds
    // MAX_FULL_CSUM bytes and len is at most that.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, off as u32, buf.cast(), len as u32) };
    if rc != 0 {
        return Err(DropReason::Truncated);
    }
    // 32-bit halves of 64-bit words: ones-complement sums may be taken over any word size
    // and folded afterwards (RFC 1071 section 2); the zero tail adds nothing.
    let mut sum = 0u64;
    let mut i = 0;
    while i < CSUM_WORDS {
        let w = words[i];
        sum += (w & 0xffff_ffff) + (w >> 32);
        i += 1;
    }
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = s as u32;
    Ok((s & 0xffff) + (s >> 16))
}

/// Rewrites an IPv4 packet into IPv6 in place and forwards it.
#[inline(never)]
fn translate_4to6(ctx: &XdpContext, p: &Packet4) -> Result<u32, DropReason> {
    let cfg = config();
    let h = &p.h;
    let payload_len = u16::from_be(h.tot_len) - IPV4_LEN as u16;
    let first_fragment = u16::from_be(h.frag) & 0x2000 != 0;
    let grow = if first_fragment {
        IPV6_LEN + FRAG_LEN - IPV4_LEN
    } else {
        IPV6_LEN - IPV4_LEN
    };
    if u16::from_be(h.frag) & 0x4000 == 0
        && payload_len as usize + IPV4_LEN + grow > cfg.ipv6_mtu as usize
    {
        // DF clear and larger than the lowest IPv6 MTU: fragmented by the slow path.
        return punt(ctx);
    }
    let src6 = rfc6052::raw6(rfc6052::embed(
        rfc6052::from_raw6(&cfg.prefix),
        cfg.prefix_len,
        rfc6052::from_raw4(h.src),
    ));
    let nh = if p.l4.proto == IPPROTO_ICMP {
        IPPROTO_ICMPV6
    } else {
        p.l4.proto
    };

    let fib = scratch_fib()?;
    fib.family = AF_INET6;
    fib.l4_protocol = nh;
    if p.l4.proto != IPPROTO_ICMP {
        fib.sport = p.l4.sport;
        fib.dport = p.client_port;
    }
    fib.__bindgen_anon_1.tot_len = payload_len + (IPV4_LEN + grow) as u16;
    fib.__bindgen_anon_2.flowinfo = ((h.tos as u32) << 20).to_be();
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = p.client;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let verdict = match route_cached(ctx, fib, now(), false) {
        // DF clear: the packet must be fragmented, which the slow path does (RFC 7915 4.1).
        Err(DropReason::MtuExceeded) if u16::from_be(h.frag) & 0x4000 == 0 => return punt(ctx),
        r => r?,
    };
    let hop = if verdict == xdp_action::XDP_PASS {
        h.ttl
    } else {
        h.ttl - 1
    };

    rewrite_l4_4to6(ctx, p, &src6)?;

    let eth = out_eth(ctx, verdict, fib, ETH_P_IPV6)?;
    let ip6 = Ipv6Hdr {
        vtc_flow: ((6u32 << 28) | ((h.tos as u32) << 20)).to_be(),
        payload_len: (payload_len + (grow - (IPV6_LEN - IPV4_LEN)) as u16).to_be(),
        next_header: if first_fragment { IPPROTO_FRAGMENT } else { nh },
        hop_limit: hop,
        src: src6,
        dst: p.client,
    };
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    let pe: *mut EthHdr = ptr_at(ctx, 0)?;
    let p6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at (after the head adjustment).
    unsafe {
        *pe = eth;
        *p6 = ip6;
    }
    if first_fragment {
        // RFC 7915 section 4.1: a fragment header with the IPv4 identification; offset 0, M.
        let pf: *mut FragHdr = ptr_at(ctx, ETH_LEN + IPV6_LEN)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            *pf = FragHdr {
                next_header: nh,
                reserved: 0,
                off_flags: 1u16.to_be(),
                id: (u16::from_be(h.id) as u32).to_be(),
            };
        }
        crate::frag::remember_4to6(h, &p.client);
        event(Event::FragmentTranslated);
    }
    translated(ctx, Event::Translated4to6, Event::Bytes4to6);
    forward(ctx, verdict, fib)
}

/// Updates the destination port (ICMP: type and identifier) and the transport checksum for
/// IPv4 -> IPv6.
#[inline(never)]
fn rewrite_l4_4to6(ctx: &XdpContext, p: &Packet4, src6: &[u32; 4]) -> Result<(), DropReason> {
    let h = &p.h;
    let payload_len = u16::from_be(h.tot_len) - IPV4_LEN as u16;
    let l4off = ETH_LEN + IPV4_LEN;
    let old_port = p.l4.dport as u32;
    let new_port = p.client_port as u32;
    let v6_pseudo = sum_raw6(src6) + sum_raw6(&p.client);
    let v4_pseudo = sum_raw4(h.src) + sum_raw4(h.dst);
    let lh: *mut L4Head = ptr_at(ctx, l4off)?;
    // SAFETY: bounds checked by ptr_at for every access below.
    unsafe {
        match p.l4.proto {
            IPPROTO_TCP => {
                let t: *mut TcpTail = ptr_at(ctx, l4off + 12)?;
                (*lh).b = p.client_port;
                (*t).csum = checksum::update((*t).csum, v4_pseudo + old_port, v6_pseudo + new_port);
            }
            IPPROTO_UDP => {
                (*lh).b = p.client_port;
                if (*lh).d == 0 {
                    // No IPv4 checksum: IPv6 requires one, computed over the whole datagram.
                    let data = sum_packet(ctx, l4off, payload_len as usize)?;
                    let c = checksum::finish(
                        data + v6_pseudo + raw16(payload_len) + raw16(IPPROTO_UDP as u16),
                    );
                    let lh: *mut L4Head = ptr_at(ctx, l4off)?;
                    (*lh).d = udp_csum(c);
                } else {
                    let c = checksum::update((*lh).d, v4_pseudo + old_port, v6_pseudo + new_port);
                    (*lh).d = udp_csum(c);
                }
            }
            _ => {
                // Echo 8/0 -> 128/129; the IPv6 pseudo-header is added.
                let old_type = (*lh).a;
                let new_type = icmp_word(if icmp_type(old_type) == 8 { 128 } else { 129 }, 0);
                (*lh).a = new_type;
                (*lh).c = p.client_port;
                let removed = old_type as u32 + old_port;
                let added = new_type as u32
                    + new_port
                    + v6_pseudo
                    + raw16(payload_len)
                    + raw16(IPPROTO_ICMPV6 as u16);
                (*lh).b = checksum::update((*lh).b, removed, added);
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Hairpinning: an IPv6 client reaching another client through its pool address.

/// The packet, translated, would go to a pool address: RFC 6146 section 3.8 processes it as if
/// it arrived on the IPv4 side, so it leaves as IPv6 towards the client owning that mapping.
/// This is the IPv4-side session key of that translated packet.
#[inline(always)]
fn hairpin_key(pkt: &Packet6) -> SessionKey4 {
    SessionKey4 {
        pool: pkt.key.remote,
        remote: pkt.pool,
        pool_port_be: pkt.key.remote_port_be,
        remote_port_be: pkt.pool_port,
        proto: pkt.l4.proto,
        _pad: [0; 3],
    }
}

/// Rewrites a hairpinned IPv6 packet: the source becomes the sender's mapping (inside the
/// prefix), the destination the peer client's address and port.
#[inline(never)]
fn hairpin_rewrite(
    ctx: &XdpContext,
    pkt: &Packet6,
    peer: &([u32; 4], u16),
) -> Result<u32, DropReason> {
    if pkt.l4.proto == IPPROTO_ICMP {
        // Echo through a pool address would need the peer's identifier mapping; not supported.
        return Err(DropReason::UnsupportedIcmp);
    }
    let cfg = config();
    let (client, client_port) = (&peer.0, peer.1);
    let src6 = rfc6052::raw6(rfc6052::embed(
        rfc6052::from_raw6(&cfg.prefix),
        cfg.prefix_len,
        rfc6052::from_raw4(pkt.pool),
    ));

    crate::packet::zeroed_fib!(fib);
    fib.family = AF_INET6;
    fib.l4_protocol = pkt.l4.proto;
    fib.sport = pkt.pool_port;
    fib.dport = client_port;
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = *client;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let verdict = route(ctx, fib)?;
    let hop = if verdict == xdp_action::XDP_PASS {
        pkt.hop
    } else {
        pkt.hop - 1
    };

    let removed = sum_raw6(&pkt.key.client)
        + sum_raw6(&pkt.dst)
        + pkt.key.client_port_be as u32
        + pkt.key.remote_port_be as u32;
    let added = sum_raw6(&src6) + sum_raw6(client) + pkt.pool_port as u32 + client_port as u32;
    let l4off = ETH_LEN + IPV6_LEN;
    let lh: *mut L4Head = ptr_at(ctx, l4off)?;
    // SAFETY: bounds checked by ptr_at for every access below.
    unsafe {
        (*lh).a = pkt.pool_port;
        (*lh).b = client_port;
        if pkt.l4.proto == IPPROTO_TCP {
            let t: *mut TcpTail = ptr_at(ctx, l4off + 12)?;
            (*t).csum = checksum::update((*t).csum, removed, added);
        } else {
            (*lh).d = udp_csum(checksum::update((*lh).d, removed, added));
        }
    }
    let eth = out_eth(ctx, verdict, fib, ETH_P_IPV6)?;
    let pe: *mut EthHdr = ptr_at(ctx, 0)?;
    let p6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        *pe = eth;
        (*p6).hop_limit = hop;
        (*p6).src = src6;
        (*p6).dst = *client;
    }
    event(Event::Hairpinned);
    forward(ctx, verdict, fib)
}
