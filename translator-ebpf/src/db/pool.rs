//! The pool's port blocks: a client (subscriber) holds up to `max_blocks` blocks per protocol,
//! taken from the free queues the controller fills, and new bindings get a free port of those
//! blocks (RFC 6888 REQ-4: a per-subscriber limit; RFC 7422-style blocks keep the block log
//! small; with `pool.deterministic` RFC 7422's deterministic blocks need no log at all: a
//! subscriber's blocks follow from its address). Port ownership is decided by the `BPF_NOEXIST` insert into `BINDINGS4`, so
//! concurrent CPUs never hand out the same port twice.

use aya_ebpf::{EbpfContext, bindings::BPF_NOEXIST};
use aya_log_ebpf::info;
use translator_common::{
    IPPROTO_TCP, IPPROTO_UDP,
    config::CFG_DETERMINISTIC,
    counters::{DropReason, Event},
    maps::{
        BindingKey4, BindingKey6, BindingValue4, BindingValue6, BlockEvent, BlockId, BlockSlot,
        BlockSlotKey, MAX_BLOCKS_PER_CLIENT,
    },
    ports::{next_hint, probe_offset},
    rfc6052,
};

use crate::{
    config::config,
    db::bib,
    maps::{
        BINDINGS4, BINDINGS6, BLOCK_EVENTS, BLOCK_SLOTS, DET_BLOCKS, FREE_ICMP, FREE_TCP, FREE_UDP,
    },
    observe::{event, now_exact},
    tuple::Packet6,
};

/// Tries per block when looking for a free port (the block's hint makes the first one succeed
/// in the common case).
const PROBES: u16 = 16;
const EEXIST: i32 = 17;

/// Finds a free pool port for a new binding in the client's blocks, taking a new block from the
/// free queue when they are full. Fills in `pkt.pool` and `pkt.pool_port`.
#[inline(never)]
pub fn allocate<C: EbpfContext>(ctx: &C, pkt: &mut Packet6) -> Result<(), DropReason> {
    let cfg = config();
    let bkey = &bib::key6(&pkt.key);
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
        if let Some(s) = BLOCK_SLOTS.get_ptr_mut(sk)
            && let Some((pool, port)) = try_block(s, bkey, now)?
        {
            pkt.pool = pool;
            pkt.pool_port = port;
            return Ok(());
        }
        slot += 1;
    }
    let mut free_slot = MAX_BLOCKS_PER_CLIENT;
    let mut slot = 0u32;
    while slot < max {
        sk.slot = slot as u8;
        if BLOCK_SLOTS.get_ptr(sk).is_none() {
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
    let deterministic = cfg.flags & CFG_DETERMINISTIC != 0;
    let block = if deterministic {
        deterministic_block(&sk.client, bkey.proto, free_slot)?
    } else {
        match queue.pop() {
            Ok(Some(b)) => b,
            _ => return Err(DropReason::PoolExhausted),
        }
    };
    sk.slot = free_slot as u8;
    let value = BlockSlot {
        block,
        next: 0,
        _pad: [0; 6],
        last_alloc: now,
    };
    if BLOCK_SLOTS.insert(sk, value, BPF_NOEXIST as u64).is_err() {
        // Another CPU filled this slot first (or the slot table is full): give a queued block
        // back (a deterministic one belongs to this slot whoever fills it).
        if !deterministic {
            let _ = queue.push(block, 0);
        }
    } else {
        event(Event::BlockTaken);
        // A deterministic block's holder follows from the configuration: no log line.
        if !deterministic {
            log_block(ctx, bkey, &block);
        }
    }
    match BLOCK_SLOTS.get_ptr_mut(sk) {
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

/// RFC 7422: slot `slot` of subscriber `subscriber` (the masked client address) always gets the
/// same block, the controller's `DET_BLOCKS` entry for it.
#[inline(always)]
fn deterministic_block(subscriber: &[u32; 4], proto: u8, slot: u32) -> Result<BlockId, DropReason> {
    let cfg = config();
    let det = &cfg.det;
    let proto_index = match proto {
        IPPROTO_TCP => 0,
        IPPROTO_UDP => 1,
        _ => 2,
    };
    // Outside the table: the configuration check makes this unreachable.
    let b = det
        .block(subscriber, cfg.max_blocks, slot)
        .ok_or(DropReason::PoolExhausted)?;
    DET_BLOCKS
        .get(det.entry(proto_index, b))
        .copied()
        .ok_or(DropReason::PoolExhausted)
}

/// Logs a block allocation (rare: once per block) for the operator's block log.
#[inline(never)]
fn log_block<C: EbpfContext>(ctx: &C, bkey: &BindingKey6, block: &BlockId) {
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
        match BINDINGS4.insert(k4, value4, BPF_NOEXIST as u64) {
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
                if BINDINGS6.insert(bkey, v6, BPF_NOEXIST as u64).is_err() {
                    // Another CPU bound this client port first: use its binding.
                    let _ = BINDINGS4.remove(k4);
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
