//! Kernel memory of the session tables: what a `limits.sessions` will take (checked before
//! anything is loaded), and what the loaded maps take as the kernel accounts it.
//!
//! The five tables sized by `limits.sessions` (SESSIONS6, SESSIONS4; BINDINGS6 and BINDINGS4 at
//! most as many as the pool has ports, `Config::binding_slots`; FILTERS only with
//! address-dependent filtering, `Config::permit_slots`) are preallocated hash maps: the kernel
//! allocates every element at creation. Its accounting (`htab_map_mem_usage`, shown as
//! `memlock` in a map's fdinfo and by `bpftool map show`) is, for a preallocated hash map of N
//! entries on C possible CPUs:
//! - the buckets: 16 bytes per bucket, N rounded up to a power of two;
//! - the elements: N + C (the extra elements of a non-LRU map), each a 48-byte header plus the
//!   key and the value, both rounded up to 8 bytes;
//! - small fixed parts (the map itself, per-CPU locks and free-list pointers).
//!
//! [`planned`] computes that from the configuration; [`measured`] reads it back from the kernel
//! for an instance's pinned maps, and a test holds one against the other.

use std::{mem::size_of, path::Path};

use anyhow::{Context as _, anyhow};

use crate::config::Config;
use translator_common::maps::{
    self as m, BindingKey4, BindingKey6, BindingValue4, BindingValue6, FilterKey, SessionKey4,
    SessionKey6, SessionValue4, SessionValue6,
};

/// `sizeof(struct htab_elem)` on 64-bit kernels.
const ELEM_HEADER: u64 = 48;
/// `sizeof(struct bucket)`.
const BUCKET: u64 = 16;
/// The map structure, `HASHTAB_MAP_LOCK_COUNT` per-CPU ints and the free list's per-CPU heads:
/// under 1 KiB per map whatever its size (976 bytes on 6.18 with 2 CPUs).
const FIXED_PER_MAP: u64 = 1024;

/// What sizes a session table.
#[derive(Clone, Copy)]
pub enum Slots {
    Sessions,
    Bindings,
    Permits,
}

/// The session-sized maps with their key and value sizes, and what sizes them.
pub const SESSION_MAPS: [(&str, usize, usize, Slots); 5] = [
    (
        m::SESSIONS6,
        size_of::<SessionKey6>(),
        size_of::<SessionValue6>(),
        Slots::Sessions,
    ),
    (
        m::SESSIONS4,
        size_of::<SessionKey4>(),
        size_of::<SessionValue4>(),
        Slots::Sessions,
    ),
    (
        m::BINDINGS6,
        size_of::<BindingKey6>(),
        size_of::<BindingValue6>(),
        Slots::Bindings,
    ),
    (
        m::BINDINGS4,
        size_of::<BindingKey4>(),
        size_of::<BindingValue4>(),
        Slots::Bindings,
    ),
    (
        m::FILTERS,
        size_of::<FilterKey>(),
        size_of::<u64>(),
        Slots::Permits,
    ),
];

fn round8(n: usize) -> u64 {
    (n as u64).div_ceil(8) * 8
}

/// The kernel memory of one preallocated hash map of `entries` entries.
pub fn hash_map_bytes(entries: u32, key: usize, value: usize, cpus: u32) -> u64 {
    let n = u64::from(entries);
    let buckets = n.next_power_of_two() * BUCKET;
    let elems = (n + u64::from(cpus)) * (ELEM_HEADER + round8(key) + round8(value));
    FIXED_PER_MAP + buckets + elems
}

/// The kernel memory the session tables take on this machine with `sessions` session slots,
/// `bindings` binding slots and `permits` permit slots.
pub fn planned_slots(sessions: u32, bindings: u32, permits: u32) -> u64 {
    let cpus = aya::util::nr_cpus().map_or(1, |n| n as u32);
    SESSION_MAPS
        .iter()
        .map(|&(_, k, v, slots)| {
            let n = match slots {
                Slots::Sessions => sessions,
                Slots::Bindings => bindings,
                Slots::Permits => permits,
            };
            hash_map_bytes(n, k, v, cpus)
        })
        .sum()
}

/// The kernel memory the session tables of a configuration take.
pub fn planned(cfg: &Config) -> u64 {
    planned_slots(cfg.sessions, cfg.binding_slots(), cfg.permit_slots())
}

/// `MemAvailable` of /proc/meminfo, in bytes.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The share of the available memory the session tables may take: the rest is the host's
/// (page cache, the controller, the other maps).
pub const MAX_SHARE: f64 = 0.8;

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30))
}

/// Refuses a `limits.sessions` whose tables do not fit the memory this host has available.
pub fn check(cfg: &Config, available: Option<u64>) -> anyhow::Result<()> {
    let Some(avail) = available else {
        log::warn!("cannot read MemAvailable from /proc/meminfo: limits.sessions not checked");
        return Ok(());
    };
    let sessions = cfg.sessions;
    let need = planned(cfg);
    let budget = (avail as f64 * MAX_SHARE) as u64;
    if need <= budget {
        return Ok(());
    }
    // The largest size that fits, for the message.
    let per_slot = need / u64::from(sessions.max(1));
    let fits = (budget / per_slot.max(1)).min(u64::from(u32::MAX));
    Err(anyhow!(
        "limits.sessions = {sessions} needs {} of kernel memory for the session tables ({} bytes \
         per session slot), more than {:.0} % of the {} this host has available: lower \
         limits.sessions (about {fits} fit) or add memory",
        gib(need),
        per_slot,
        MAX_SHARE * 100.0,
        gib(avail)
    ))
}

fn pinned(pins: &Path, name: &str) -> anyhow::Result<aya::maps::MapData> {
    let path = pins.join(name);
    aya::maps::MapData::from_pin(&path)
        .map_err(|e| anyhow!("opening pinned map {}: {e}", path.display()))
}

/// The slots (`max_entries`) of an instance's pinned map `name`.
pub fn slots(pins: &Path, name: &str) -> anyhow::Result<u32> {
    Ok(pinned(pins, name)?
        .info()
        .map_err(|e| anyhow!("map {name}: {e}"))?
        .max_entries())
}

/// The kernel's own accounting (`memlock` in fdinfo) of an instance's pinned map `name`.
pub fn measured_map(pins: &Path, name: &str) -> anyhow::Result<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let data = pinned(pins, name)?;
    let fd = data.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .with_context(|| format!("reading the fdinfo of map {name}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no memlock line in the fdinfo of map {name}"))
}

/// The kernel memory of the session tables of an instance, as the kernel accounts it.
pub fn measured(pins: &Path) -> anyhow::Result<u64> {
    SESSION_MAPS
        .iter()
        .map(|(name, _, _, _)| measured_map(pins, name))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formula_and_the_check() {
        // 1024 entries of a 16-byte key and value on 2 CPUs.
        assert_eq!(
            hash_map_bytes(1024, 16, 16, 2),
            1024 + 1024 * 16 + 1026 * (48 + 16 + 16)
        );
        // 1000 entries still get 1024 buckets; keys and values round up to 8.
        assert_eq!(
            hash_map_bytes(1000, 28, 12, 1),
            1024 + 1024 * 16 + 1001 * (48 + 32 + 16)
        );
        let cfg = |sessions: u32| {
            Config::parse(&format!(
                "instance = \"m\"\n[interfaces]\nipv6 = \"a\"\nipv4 = \"b\"\n[nat64]\n\
                 clients = [\"2001:db8:1::/48\"]\n[pool]\naddresses = [\"192.0.2.0/26\"]\n\
                 [limits]\nsessions = {sessions}\n"
            ))
            .expect("a valid configuration")
        };
        assert!(check(&cfg(1_000_000), Some(64 << 30)).is_ok());
        let e = check(&cfg(16_777_216), Some(1 << 30)).expect_err("16M slots do not fit in 1 GiB");
        let msg = e.to_string();
        assert!(msg.starts_with("limits.sessions = 16777216 needs"), "{msg}");
        assert!(msg.contains("fit") && msg.contains("GiB"), "{msg}");
        assert!(check(&cfg(16), None).is_ok());
        assert_eq!(cfg(1000).permit_slots(), 1000);
        // 64 pool addresses have 12.6M ports: the binding tables stop there.
        let big = cfg(16_777_216);
        assert_eq!(big.binding_slots(), 64 * 3 * 65_536);
        assert!(planned(&big) < planned_slots(16_777_216, 16_777_216, 16_777_216));
    }
}
