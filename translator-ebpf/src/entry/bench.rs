//! Baseline programs for the benchmarks, never attached by the controller: the cost floor of
//! any XDP program that touches a packet (`baseline_tx`: swap MACs, send back) and a bare XDP
//! IP forwarder (`baseline_forward`: route lookup, MAC rewrite, redirect), to compare the
//! translator against on the same machine.
//!
//! `bench_harness` makes a large `BPF_PROG_TEST_RUN` repeat count usable for programs that
//! rewrite the packet: the kernel does not restore the input between repetitions, so the
//! harness writes the frame from `BENCH_FRAME` back first and then tail-calls the program under
//! test (slot 0 of `BENCH_NEXT`). Its own cost is measured by tail-calling a program that only
//! returns, and subtracted.

use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering as AO, atomic_and, atomic_cxchg, atomic_or, atomic_xor},
    mem::size_of,
};

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, BPF_NOEXIST, bpf_fib_lookup, xdp_action},
    helpers::{
        bpf_redirect,
        generated::{
            bpf_fib_lookup as fib_lookup, bpf_xdp_adjust_head, bpf_xdp_get_buff_len,
            bpf_xdp_store_bytes,
        },
    },
    macros::xdp,
    programs::XdpContext,
};
use translator_common::{
    buckets::{
        BenchBucket, FP_WRITING, LOCK as BUCKET_LOCK, OVERFLOW_MAX, OVERFLOW_ONE, PROBES, Place,
        SLOTS, first_free, hash, matching, overflow,
    },
    maps::BENCH_FRAME_MAX,
};

use crate::{
    context::ptr_at,
    maps::{
        BENCH_BUCKETS, BENCH_FAILS, BENCH_FRAME, BENCH_HASH, BENCH_LOCKS, BENCH_NEXT, BENCH_SEQ,
        BENCH_TABLE, BENCH_TABLE_CAP, BenchSlot,
    },
    wire::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, Ipv4Hdr, Ipv6Hdr, zeroed_fib},
};

#[xdp]
pub fn baseline_tx(ctx: XdpContext) -> u32 {
    let Ok(eth) = ptr_at::<EthHdr>(&ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        let e = *eth;
        (*eth).dst = e.src;
        (*eth).src = e.dst;
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn baseline_forward(ctx: XdpContext) -> u32 {
    forward(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[inline(always)]
fn forward(ctx: &XdpContext) -> Option<u32> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok()?;
    zeroed_fib!(fib);
    // SAFETY: bounds checked by ptr_at for every header read and written.
    unsafe {
        if (*eth).proto == ETH_P_IP {
            let h = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok()?;
            if (*h).ttl <= 1 {
                return None;
            }
            fib.family = 2;
            fib.__bindgen_anon_1.tot_len = u16::from_be((*h).tot_len);
            fib.__bindgen_anon_3.ipv4_src = (*h).src;
            fib.__bindgen_anon_4.ipv4_dst = (*h).dst;
        } else if (*eth).proto == ETH_P_IPV6 {
            let h = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok()?;
            if (*h).hop_limit <= 1 {
                return None;
            }
            fib.family = 10;
            fib.__bindgen_anon_1.tot_len = u16::from_be((*h).payload_len) + 40;
            fib.__bindgen_anon_3.ipv6_src = (*h).src;
            fib.__bindgen_anon_4.ipv6_dst = (*h).dst;
        } else {
            return None;
        }
        fib.ifindex = ctx.ingress_ifindex() as u32;
        let rc = fib_lookup(
            ctx.ctx as *mut _,
            fib,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        );
        if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
            return None;
        }
        // TTL / hop limit decrement (IPv4: incremental header checksum, RFC 1624).
        if (*eth).proto == ETH_P_IP {
            let h = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok()?;
            (*h).ttl -= 1;
            let c = u16::from_be((*h).csum) as u32 + 0x0100;
            (*h).csum = ((c + (c >> 16)) as u16).to_be();
        } else {
            let h = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok()?;
            (*h).hop_limit -= 1;
        }
        (*eth).dst = fib.dmac;
        (*eth).src = fib.smac;
        Some(bpf_redirect(fib.ifindex, 0) as u32)
    }
}

#[xdp]
pub fn bench_harness(ctx: XdpContext) -> u32 {
    if restore(&ctx).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: slot 0 holds an XDP program (set by the benchmark); on failure we fall through.
    unsafe { BENCH_NEXT.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Bench-only: returns at once (the tail-call target that measures the harness itself).
#[xdp]
pub fn bench_return(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[inline(always)]
fn restore(ctx: &XdpContext) -> Option<()> {
    let f = BENCH_FRAME.get_ptr(0)?;
    // SAFETY: map value pointer from a successful lookup.
    let (len, lo_off, lo_base, lo_mod, hi_off, hi_base, hi_len) = unsafe {
        (
            (*f).len,
            (*f).lo_off,
            (*f).lo_base,
            (*f).lo_mod,
            (*f).hi_off,
            (*f).hi_base,
            (*f).hi_len,
        )
    };
    if len == 0 || len as usize > BENCH_FRAME_MAX || lo_mod == 0 {
        return None;
    }
    // SAFETY: helper calls on the program's own context and on map or stack memory of the
    // lengths given.
    unsafe {
        // The length as a scalar (the difference of the context's packet pointers would be
        // pointer arithmetic to the verifier).
        let delta = bpf_xdp_get_buff_len(ctx.ctx) as i32 - len as i32;
        if delta != 0 && bpf_xdp_adjust_head(ctx.ctx, delta) != 0 {
            return None;
        }
        let bytes = core::ptr::addr_of!((*f).bytes) as *mut c_void;
        // 1..=128 in a form the verifier sees bounded (len was checked to be in that range).
        let n = ((len - 1) & (BENCH_FRAME_MAX as u32 - 1)) + 1;
        if bpf_xdp_store_bytes(ctx.ctx, 0, bytes, n) != 0 {
            return None;
        }
        if lo_off == 0 {
            return Some(());
        }
        let seq = BENCH_SEQ.get_ptr_mut(0)?;
        let n = *seq;
        *seq = n.wrapping_add(1);
        let mut lo = (lo_base.wrapping_add(n % lo_mod) as u16).to_be();
        if bpf_xdp_store_bytes(ctx.ctx, lo_off, &mut lo as *mut u16 as *mut c_void, 2) != 0 {
            return None;
        }
        if hi_off == 0 {
            return Some(());
        }
        let hi = hi_base.wrapping_add(n / lo_mod);
        let rc = if hi_len == 4 {
            let mut w = hi.to_be();
            bpf_xdp_store_bytes(ctx.ctx, hi_off, &mut w as *mut u32 as *mut c_void, 4)
        } else {
            let mut w = (hi as u16).to_be();
            bpf_xdp_store_bytes(ctx.ctx, hi_off, &mut w as *mut u16 as *mut c_void, 2)
        };
        if rc != 0 {
            return None;
        }
    }
    Some(())
}

/// The key the benchmark's frames carry: the IPv6 source's last word and the UDP source port,
/// which the harness changes at every repetition.
#[inline(always)]
fn bench_key(ctx: &XdpContext) -> Option<u64> {
    let w = ptr_at::<u32>(ctx, 34).ok()?;
    let p = ptr_at::<u16>(ctx, 54).ok()?;
    // SAFETY: bounds checked by ptr_at.
    Some(unsafe { (u64::from(*w) << 16) | u64::from(*p) })
}

/// Bench-only: one insert of a new key into `BENCH_HASH` (what creating a session costs per
/// table); `XDP_TX` when it went in.
#[xdp]
pub fn bench_insert(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| hash_insert(oa_key(k), k))
}

/// Bench-only: one lookup of a key in `BENCH_HASH`; `XDP_TX` when found.
#[xdp]
pub fn bench_lookup(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| BENCH_HASH.get_ptr(oa_key(k)).map(|_| true))
}

// ------------------------------------------------------------------------------------------------
// Prototype (issue 13): a session table in a plain BPF array, open addressing. Measured against
// `BENCH_HASH` by the benchmark's "table" rows; the translator does not use it yet.
//
// A key's home slot comes from a seeded hash; the key lives in one of the `WINDOW` slots from
// there (wrapping at the end). A lookup compares the full slots of the window, so deleting is
// setting a slot empty (no tombstones). An insert takes the lock word of its home's 64 slots
// (inserts of one key exclude each other: a second one fails, so a key is never in two slots),
// checks the window for the key, claims an empty slot with a compare-and-swap (when a
// neighbouring home's insert claimed it first, this insert fails: the prototype does not
// retry), writes it and marks it full.

/// Slots a key may live in, from its home slot on.
const WINDOW: u32 = 24;
const SLOT_EMPTY: u32 = 0;
const SLOT_BUSY: u32 = 1;
const SLOT_FULL: u32 = 2;

/// A 28-byte key like a `SESSIONS6` key, made from the bench key.
#[inline(always)]
fn oa_key(k: u64) -> [u32; 7] {
    [
        0x2001_0db8,
        1,
        0,
        (k >> 16) as u32,
        0xc000_0202,
        (k as u32 & 0xffff) << 16 | 1000,
        17,
    ]
}

/// (home slot, slot count) of a key.
#[inline(always)]
fn oa_home(key: &[u32; 7]) -> Option<(u32, u32)> {
    let cap = *BENCH_TABLE_CAP.get(0)?;
    let h = hash(key, *BENCH_TABLE_CAP.get(1)?);
    Some(((((h >> 32) * cap) >> 32) as u32, cap as u32))
}

/// The slot holding `key`, if any.
#[inline(always)]
fn oa_find(key: &[u32; 7], home: u32, cap: u32) -> Option<*mut BenchSlot> {
    let mut i = 0;
    while i < WINDOW {
        let mut at = home + i;
        if at >= cap {
            at -= cap;
        }
        let s = BENCH_TABLE.get_ptr_mut(at)?;
        // SAFETY: map value pointer; a racing writer can only make the compare fail.
        if unsafe { (*s).state == SLOT_FULL && (*s).key == *key } {
            return Some(s);
        }
        i += 1;
    }
    None
}

/// Compare-and-swap of a 64-bit word of a map value; whether it held `old`.
#[inline(always)]
fn cas64(p: *mut u64, old: u64, new: u64) -> bool {
    // SAFETY: `p` is an aligned word of a map value; BPF_ATOMIC | BPF_CMPXCHG on it.
    unsafe { atomic_cxchg::<u64, { AO::SeqCst }, { AO::SeqCst }>(p, old, new).1 }
}

/// Inserts a new key; `Some(true)` when it went in, `Some(false)` when it was there already.
#[inline(always)]
fn oa_insert(key: &[u32; 7], value: [u64; 2]) -> Option<bool> {
    let (home, cap) = oa_home(key)?;
    let lock = BENCH_LOCKS.get_ptr_mut(home / 64)?;
    if !cas64(lock, 0, 1) {
        return None;
    }
    let done = oa_claim(key, value, home, cap);
    // SAFETY: the lock word is ours; a plain store releases it (x86: stores are not reordered).
    unsafe { core::ptr::write_volatile(lock, 0) };
    done
}

#[inline(always)]
fn oa_claim(key: &[u32; 7], value: [u64; 2], home: u32, cap: u32) -> Option<bool> {
    let mut free = cap;
    let mut i = 0;
    while i < WINDOW {
        let mut at = home + i;
        if at >= cap {
            at -= cap;
        }
        let s = BENCH_TABLE.get_ptr_mut(at)?;
        // SAFETY: map value pointer.
        let state = unsafe { (*s).state };
        if state == SLOT_FULL && unsafe { (*s).key == *key } {
            return Some(false);
        }
        if state == SLOT_EMPTY && free == cap {
            free = at;
        }
        i += 1;
    }
    let s = BENCH_TABLE.get_ptr_mut(free)?;
    // The state word and the first key word share one aligned u64: claim both at once.
    let word = s.cast::<u64>();
    // SAFETY: reading the slot's first word.
    let seen = unsafe { core::ptr::read_volatile(word) };
    if seen as u32 != SLOT_EMPTY
        || !cas64(word, seen, u64::from(key[0]) << 32 | u64::from(SLOT_BUSY))
    {
        return None;
    }
    // SAFETY: the slot is ours until it is marked full.
    unsafe {
        (*s).key = *key;
        (*s).value = value;
        core::ptr::write_volatile(&mut (*s).state, SLOT_FULL);
    }
    Some(true)
}

/// Counts one in `BENCH_FAILS` entry `i` (0 failed, 1 found present).
#[inline(always)]
fn bench_count(i: u32) {
    if let Some(n) = BENCH_FAILS.get_ptr_mut(i) {
        // SAFETY: per-CPU map value.
        unsafe { *n += 1 };
    }
}

/// A table program's verdict on the frame's bench key from what `op` did with it:
/// `Some(true)` done (an insert went in, a lookup found it) is `XDP_TX`; `Some(false)` an
/// insert that found the key present is `XDP_PASS`; `None` failed (a lookup missed, an insert
/// could not go in) is `XDP_DROP`. Both of the latter are counted in `BENCH_FAILS`.
#[inline(always)]
fn keyed(ctx: &XdpContext, op: impl FnOnce(u64) -> Option<bool>) -> u32 {
    let Some(k) = bench_key(ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    match op(k) {
        Some(true) => xdp_action::XDP_TX,
        Some(false) => {
            bench_count(1);
            xdp_action::XDP_PASS
        }
        None => {
            bench_count(0);
            xdp_action::XDP_DROP
        }
    }
}

/// `EEXIST`, which the map helpers return negated.
const EEXIST: i32 = 17;

/// An insert into `BENCH_HASH` as [`keyed`] wants it.
#[inline(always)]
fn hash_insert(key: [u32; 7], k: u64) -> Option<bool> {
    match BENCH_HASH.insert(key, [k, k], BPF_NOEXIST as u64) {
        Ok(()) => Some(true),
        Err(e) if e == -EEXIST => Some(false),
        Err(_) => None,
    }
}

/// Bench-only: one insert of a new key into the prototype table; `XDP_TX` when it went in.
#[xdp]
pub fn bench_oa_insert(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| oa_insert(&oa_key(k), [k, k]))
}

/// Bench-only: one lookup in the prototype table; `XDP_TX` when found.
#[xdp]
pub fn bench_oa_lookup(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| {
        let key = oa_key(k);
        oa_home(&key)
            .and_then(|(home, cap)| oa_find(&key, home, cap))
            .map(|_| true)
    })
}

/// Bench-only: a new key as a new flow makes it, a lookup that misses and then the insert;
/// `XDP_TX` when it went in.
#[xdp]
pub fn bench_create(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| {
        let key = oa_key(k);
        if BENCH_HASH.get_ptr(key).is_some() {
            return Some(false);
        }
        hash_insert(key, k)
    })
}

/// Bench-only: [`bench_create`] on the prototype table.
#[xdp]
pub fn bench_oa_create(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| {
        let key = oa_key(k);
        let (home, cap) = oa_home(&key)?;
        if oa_find(&key, home, cap).is_some() {
            return Some(false);
        }
        oa_insert(&key, [k, k])
    })
}

// ------------------------------------------------------------------------------------------------
// Prototype, second form: buckets of 7 slots whose first word holds a fingerprint byte per slot
// (SwissTable-style, compared 7 at a time in one u64) and a lock bit and a count of the keys that
// passed the bucket full (F14-style overflow count); layout and placement in
// `translator_common::buckets`. A lookup reads a bucket's word and only the slots whose
// fingerprint matches, and goes on along the key's walk only while the bucket's overflow count is
// not 0: a miss usually reads one word. An insert takes the lock bit of its home bucket (inserts
// of one key exclude each other: a second one, or one while the controller deletes a key of
// that home, fails), checks for the key, then walks: a full bucket gets its overflow
// count raised before the walk goes on, a free slot is marked "being written" with a
// compare-and-swap on the word, written, and then gets its fingerprint with an atomic xor (see
// `bk_insert` for its fast path). The controller deletes (`translator::bucket_table`).

/// A key's place in [`BENCH_BUCKETS`] (bucket count `BENCH_TABLE_CAP[2]`, seed entry 1).
#[inline(always)]
fn bk_place(key: &[u32; 7]) -> Option<Place> {
    Place::of(key, *BENCH_TABLE_CAP.get(1)?, *BENCH_TABLE_CAP.get(2)?)
}

/// The slot of `bucket` holding `key`, if any, and the bucket's word as read.
#[inline(always)]
fn bk_find_in(bucket: *mut BenchBucket, key: &[u32; 7], fp: u64) -> (Option<usize>, u64) {
    // SAFETY: map value pointer; a racing writer can only make a compare fail.
    let meta = unsafe { core::ptr::read_volatile(&(*bucket).meta) };
    let mut hits = matching(meta, fp);
    let mut i = 0;
    while i < SLOTS && hits != 0 {
        // SAFETY: as above; i < SLOTS.
        if hits & 0x80 != 0 && unsafe { (*bucket).slots[i].key == *key } {
            return (Some(i), meta);
        }
        hits >>= 8;
        i += 1;
    }
    (None, meta)
}

/// The bucket holding `key`, if any.
#[inline(always)]
fn bk_find(key: &[u32; 7], at: Place) -> Option<*mut BenchBucket> {
    let mut b = at.home;
    let mut step = 0;
    while step < PROBES {
        let bucket = BENCH_BUCKETS.get_ptr_mut(b)?;
        let (found, meta) = bk_find_in(bucket, key, at.fp);
        if found.is_some() {
            return Some(bucket);
        }
        if overflow(meta) == 0 {
            return None;
        }
        b = at.next(b);
        step += 1;
    }
    None
}

/// What [`bk_claim`] did.
enum Claim {
    /// Slot i is ours (marked being written).
    Slot(usize),
    /// The bucket is full; its overflow count is raised (or saturated).
    Full,
    /// The word kept changing under the compare-and-swaps: nothing done.
    Contended,
}

/// Claims a free slot of `bucket`, or counts the key passing it full.
#[inline(always)]
fn bk_claim(bucket: *mut BenchBucket) -> Claim {
    // SAFETY: map value pointer; the word only changes by atomic operations.
    let word = unsafe { &raw mut (*bucket).meta };
    let mut tries = 0;
    while tries < 4 {
        // SAFETY: as above.
        let meta = unsafe { core::ptr::read_volatile(word) };
        let free = first_free(meta);
        let new = match free {
            Some(i) => meta | FP_WRITING << (8 * i),
            None if overflow(meta) < OVERFLOW_MAX => meta + OVERFLOW_ONE,
            None => return Claim::Full,
        };
        if cas64(word, meta, new) {
            return free.map_or(Claim::Full, Claim::Slot);
        }
        tries += 1;
    }
    Claim::Contended
}

/// Writes slot `i` of `bucket`, which this insert has claimed (its byte says "being written").
#[inline(always)]
fn bk_fill(bucket: *mut BenchBucket, i: usize, key: &[u32; 7], value: [u64; 2]) {
    if i < SLOTS {
        // SAFETY: map value pointer, i < SLOTS; nothing else writes a claimed slot.
        unsafe {
            (*bucket).slots[i].key = *key;
            (*bucket).slots[i].value = value;
        }
    }
}

/// Inserts a new key at its place; `Some(true)` when it went in, `Some(false)` when it was
/// there already.
///
/// Fast path, two atomic operations where the general one takes four: when no key has passed
/// the home bucket full (the key can only be there) and it has a free slot, one
/// compare-and-swap takes the lock and claims the slot, the slot is checked for the key under
/// the lock, and one xor publishes the fingerprint and drops the lock.
#[inline(always)]
fn bk_insert(key: &[u32; 7], value: [u64; 2], at: Place) -> Option<bool> {
    let first = BENCH_BUCKETS.get_ptr_mut(at.home)?;
    // SAFETY: map value pointer; the word only changes by atomic operations.
    let lock = unsafe { &raw mut (*first).meta };
    // SAFETY: as above.
    let meta = unsafe { core::ptr::read_volatile(lock) };
    if meta & BUCKET_LOCK == 0
        && overflow(meta) == 0
        && let Some(i) = first_free(meta)
        && cas64(lock, meta, meta | BUCKET_LOCK | FP_WRITING << (8 * i))
    {
        // Ours: the lock and slot i. The key is in the home bucket or nowhere (its
        // overflow count was 0 when the lock was taken).
        let (found, _) = bk_find_in(first, key, at.fp);
        let publish = if found.is_some() {
            FP_WRITING << (8 * i)
        } else {
            bk_fill(first, i, key, value);
            (FP_WRITING ^ at.fp) << (8 * i)
        };
        // SAFETY: as above; the lock bit is ours.
        unsafe { atomic_xor::<u64, u64, { AO::SeqCst }>(lock, publish | BUCKET_LOCK) };
        return Some(found.is_none());
    }
    // SAFETY: as above.
    if unsafe { atomic_or::<u64, u64, { AO::SeqCst }>(lock, BUCKET_LOCK) } & BUCKET_LOCK != 0 {
        return None;
    }
    let done = if bk_find(key, at).is_some() {
        Some(false)
    } else {
        bk_place_new(key, value, at)
    };
    // SAFETY: as above; the lock bit is ours.
    unsafe { atomic_and::<u64, u64, { AO::SeqCst }>(lock, !BUCKET_LOCK) };
    done
}

/// Puts a key known to be absent into the first bucket with room on its walk. Fails when the
/// walk is full or a bucket's word keeps changing (the counts raised on the way stay: a walk
/// that fails is rare, see `PROBES`, and counts only make lookups go further).
#[inline(always)]
fn bk_place_new(key: &[u32; 7], value: [u64; 2], at: Place) -> Option<bool> {
    let mut b = at.home;
    let mut step = 0;
    while step < PROBES {
        let bucket = BENCH_BUCKETS.get_ptr_mut(b)?;
        match bk_claim(bucket) {
            Claim::Slot(i) => {
                bk_fill(bucket, i, key, value);
                // SAFETY: map value pointer; the word only changes by atomic operations.
                unsafe {
                    atomic_xor::<u64, u64, { AO::SeqCst }>(
                        &raw mut (*bucket).meta,
                        (FP_WRITING ^ at.fp) << (8 * i),
                    )
                };
                return Some(true);
            }
            Claim::Full => {}
            Claim::Contended => return None,
        }
        b = at.next(b);
        step += 1;
    }
    None
}

/// Bench-only: [`bench_oa_insert`] on the bucket table.
#[xdp]
pub fn bench_bk_insert(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| {
        let key = oa_key(k);
        bk_insert(&key, [k, k], bk_place(&key)?)
    })
}

/// Bench-only: [`bench_oa_lookup`] on the bucket table.
#[xdp]
pub fn bench_bk_lookup(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| {
        let key = oa_key(k);
        bk_find(&key, bk_place(&key)?).map(|_| true)
    })
}

/// Bench-only: [`bench_create`] on the bucket table.
#[xdp]
pub fn bench_bk_create(ctx: XdpContext) -> u32 {
    keyed(&ctx, |k| {
        let key = oa_key(k);
        let at = bk_place(&key)?;
        if bk_find(&key, at).is_some() {
            return Some(false);
        }
        bk_insert(&key, [k, k], at)
    })
}
