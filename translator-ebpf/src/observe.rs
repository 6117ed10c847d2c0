//! Counters, events and the clock: what the data plane tells the controller and the CLI
//! (`translator stats`, metrics) about every packet.

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use translator_common::counters::{DropReason, Event};

use crate::{context::Packet, maps::COUNTERS};

#[inline(always)]
fn add(index: u32, n: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *c += n };
    }
}

#[inline(always)]
pub fn event(e: Event) {
    add(e as u32, 1);
}

#[inline(always)]
pub fn drop_reason(r: DropReason) {
    add(r.counter_index(), 1);
}

/// Counts a translated packet (a GSO packet as its segments) and its bytes as sent, Ethernet
/// header included.
#[inline(always)]
pub fn translated(ctx: &impl Packet, packets: Event, bytes: Event) {
    add(packets as u32, u64::from(ctx.segments()));
    add(bytes as u32, ctx.len() as u64);
}

/// CLOCK_MONOTONIC now, coarse (what sessions are stamped with).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// CLOCK_MONOTONIC now, exact: for the times the logs print (the coarse clock lags by up to a
/// scheduler tick, which would stamp an allocation before the packet that made it arrived).
#[inline(always)]
pub fn now_exact() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}
