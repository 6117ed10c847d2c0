//! The controller's half of the issue 13 bucket-table prototype (the bench-only map
//! `BENCH_BUCKETS`, programs `bench_bk_*` in the eBPF object): the table is a `BPF_F_MMAPABLE`
//! array, so the controller reads and deletes entries in its own memory, without a syscall per
//! entry or per batch. This is what an expiry pass over a session table of this shape costs.
//!
//! Layout and placement are `translator_common::buckets`, shared with the eBPF programs. A
//! delete takes the lock of the key's home bucket (an insert of the same key fails while it is
//! held), clears the fingerprint with an atomic and, and lowers the overflow counts of the
//! buckets its walk passed. The memory is shared with the kernel, so the word's atomics are
//! plain CPU atomics.

use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, ensure};
use translator_common::buckets::{
    BenchBucket, FP_WRITING, LOCK, OVERFLOW_MAX, OVERFLOW_ONE, PROBES, Place, SLOTS, fingerprint,
    overflow,
};

/// The hash seed the harness writes to `BENCH_TABLE_CAP[1]`.
pub const SEED: u64 = 0x05ee_d0f7_ab1e;

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Entries found.
    pub live: u64,
    /// Entries deleted.
    pub deleted: u64,
    /// Entries left for the next pass because an insert held their home bucket's lock.
    pub busy: u64,
}

/// The bucket table mapped into this process.
pub struct BucketTable {
    base: *mut BenchBucket,
    len: usize,
    buckets: u32,
}

impl BucketTable {
    /// Maps the table of `buckets` buckets behind `map` (which must be `BPF_F_MMAPABLE`).
    pub fn map(map: &impl std::os::fd::AsFd, buckets: u32) -> anyhow::Result<Self> {
        ensure!(
            buckets >= 2,
            "a bucket table has at least 2 buckets, not {buckets}"
        );
        let len = buckets as usize * size_of::<BenchBucket>();
        // SAFETY: a fresh shared mapping of the map's values; the kernel checks the length and
        // that the map may be mapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .context("mapping the bucket table (BPF_F_MMAPABLE array) into memory");
        }
        Ok(Self {
            base: p.cast(),
            len,
            buckets,
        })
    }

    fn bucket(&self, b: u32) -> *mut BenchBucket {
        debug_assert!(b < self.buckets);
        // SAFETY: b < buckets, and the mapping holds `buckets` buckets.
        unsafe { self.base.add(b as usize) }
    }

    /// The word of bucket `b`.
    fn word(&self, b: u32) -> &AtomicU64 {
        // SAFETY: an aligned u64 inside the mapping, which lives as long as self; both sides
        // change it only by atomic operations.
        unsafe { AtomicU64::from_ptr(&raw mut (*self.bucket(b)).meta) }
    }

    /// A copy of slot `i` of bucket `b` (a racing writer can only make it stale).
    fn slot(&self, b: u32, i: usize) -> translator_common::buckets::Slot<[u32; 7], [u64; 2]> {
        // SAFETY: inside the mapping; i < SLOTS.
        unsafe { std::ptr::read_volatile(&raw const (*self.bucket(b)).slots[i]) }
    }

    /// One pass over every entry: deletes those `expired` says so of (from the key and value).
    pub fn expire(&self, mut expired: impl FnMut(&[u32; 7], &[u64; 2]) -> bool) -> Pass {
        let mut pass = Pass::default();
        for b in 0..self.buckets {
            let meta = self.word(b).load(Ordering::Acquire);
            for i in 0..SLOTS {
                let fp = fingerprint(meta, i);
                if fp == 0 || fp == FP_WRITING {
                    continue;
                }
                pass.live += 1;
                // A stale copy is checked again under the lock by the delete.
                let slot = self.slot(b, i);
                if !expired(&slot.key, &slot.value) {
                    continue;
                }
                match self.delete(b, i, fp, &slot.key) {
                    Some(true) => pass.deleted += 1,
                    Some(false) => {}
                    None => pass.busy += 1,
                }
            }
        }
        pass
    }

    /// Deletes `key` from slot `i` of bucket `b` where it was seen with fingerprint `fp`:
    /// `Some(true)` when it went, `Some(false)` when the slot no longer holds it, `None` when
    /// an insert held its home bucket's lock.
    fn delete(&self, b: u32, i: usize, fp: u64, key: &[u32; 7]) -> Option<bool> {
        let at = Place::of(key, SEED, u64::from(self.buckets))?;
        let lock = self.word(at.home);
        if lock.fetch_or(LOCK, Ordering::AcqRel) & LOCK != 0 {
            return None;
        }
        // Under the lock no insert of this key runs: the slot holds it or it is gone.
        let still = self.slot(b, i);
        let meta = self.word(b).load(Ordering::Acquire);
        let gone = at.fp != fp || fingerprint(meta, i) != fp || still.key != *key;
        if !gone {
            self.word(b).fetch_and(!(0xff << (8 * i)), Ordering::AcqRel);
            // The buckets before `b` on the key's walk each counted it passing them full.
            let mut c = at.home;
            let mut step = 0;
            while c != b && step < PROBES {
                self.lower_overflow(c);
                c = at.next(c);
                step += 1;
            }
        }
        lock.fetch_and(!LOCK, Ordering::AcqRel);
        Some(!gone)
    }

    /// Lowers bucket `b`'s overflow count by one unless it is 0 or saturated.
    fn lower_overflow(&self, b: u32) {
        let _ = self
            .word(b)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                let count = overflow(m);
                (count != 0 && count != OVERFLOW_MAX).then(|| m - OVERFLOW_ONE)
            });
    }

    /// The sum of the buckets' overflow counts (a test's check that deletes undo inserts).
    pub fn overflow_total(&self) -> u64 {
        (0..self.buckets)
            .map(|b| overflow(self.word(b).load(Ordering::Acquire)))
            .sum()
    }
}

impl Drop for BucketTable {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, not used after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
