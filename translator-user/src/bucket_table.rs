//! The controller's half of the issue 13 bucket-table prototype (the bench-only map
//! `BENCH_BUCKETS`, programs `bench_bk_*` in the eBPF object): the table is a `BPF_F_MMAPABLE`
//! array, so the controller reads and deletes entries in its own memory, without a syscall per
//! entry or per batch. This is what an expiry pass over a session table of this shape costs.
//!
//! Layout and protocol (the eBPF side's comment has the whole of it): a bucket is a word and 7
//! slots of a 28-byte key, 4 bytes of padding and a 16-byte value. Bytes 0..7 of the word are
//! the slots' fingerprints (0 empty, 0xff being written), bit 56 the lock of inserts whose home
//! the bucket is, bits 57..63 how many keys passed it full (saturating at 127, then never
//! lowered). A delete takes the lock of the key's home bucket (inserts of the same key wait for
//! it: they fail while it is held), clears the fingerprint with an atomic and, and lowers the
//! counts of the buckets its walk passed. The word is only changed by atomic operations, from
//! either side; the memory is shared with the kernel, so these are plain CPU atomics.
//!
//! Hand-written, not a library: it mirrors the eBPF program's layout and hash bit for bit.

use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, ensure};

/// Slots per bucket.
pub const SLOTS: usize = 7;
/// Bytes of a bucket (the eBPF `BenchBucket`).
pub const BUCKET_BYTES: usize = 8 + SLOTS * 48;
/// The hash seed the harness writes to `BENCH_TABLE_CAP[1]`.
pub const SEED: u64 = 0x05ee_d0f7_ab1e;
/// Buckets a key may live in (the eBPF `BUCKET_PROBES`).
const PROBES: u32 = 32;
const LOCK: u64 = 1 << 56;
const OVERFLOW_ONE: u64 = 1 << 57;
const OVERFLOW_MAX: u64 = 0x7f;
const WRITING: u64 = 0xff;

/// A slot: a key and a value, as the eBPF side writes them.
#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    key: [u32; 7],
    _pad: u32,
    value: [u64; 2],
}

/// A bucket, as the eBPF side writes it.
#[repr(C)]
struct Bucket {
    meta: AtomicU64,
    slots: [Slot; SLOTS],
}

const _: () = assert!(size_of::<Bucket>() == BUCKET_BYTES);

/// Where a key lives: home bucket, stride and fingerprint (the eBPF `bk_place`).
fn place(key: &[u32; 7], n: u32) -> (u32, u32, u64) {
    let mut h = SEED;
    for w in key {
        h = (h ^ u64::from(*w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h ^= h >> 29;
    let n = u64::from(n);
    let fp = (h & 0xffff_ffff) % 0xfe + 1;
    let home = (((h >> 32) * n) >> 32) as u32;
    let stride = ((((h >> 8) & 0xff_ffff) * (n - 1)) >> 24) as u32 + 1;
    (home, stride, fp)
}

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
    base: *mut Bucket,
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
        let len = buckets as usize * BUCKET_BYTES;
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

    fn bucket(&self, b: u32) -> &Bucket {
        debug_assert!(b < self.buckets);
        // SAFETY: b < buckets, the mapping holds `buckets` buckets and lives as long as self;
        // the word is atomic and the slots are only read by value.
        unsafe { &*self.base.add(b as usize) }
    }

    /// One pass over every entry: deletes those `expired` says so of (from the key and value).
    pub fn expire(&self, mut expired: impl FnMut(&[u32; 7], &[u64; 2]) -> bool) -> Pass {
        let mut pass = Pass::default();
        for b in 0..self.buckets {
            let bucket = self.bucket(b);
            let meta = bucket.meta.load(Ordering::Acquire);
            for i in 0..SLOTS {
                let fp = (meta >> (8 * i)) & 0xff;
                if fp == 0 || fp == WRITING {
                    continue;
                }
                pass.live += 1;
                // SAFETY: inside the mapping; a racing writer can only make the copy stale,
                // which the delete below checks again under the lock.
                let slot = unsafe { std::ptr::read_volatile(&raw const bucket.slots[i]) };
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
        let (home, stride, key_fp) = place(key, self.buckets);
        let lock = &self.bucket(home).meta;
        if lock.fetch_or(LOCK, Ordering::AcqRel) & LOCK != 0 {
            return None;
        }
        let bucket = self.bucket(b);
        // SAFETY: as in `expire`; under the lock no insert of this key can run.
        let still = unsafe { std::ptr::read_volatile(&raw const bucket.slots[i]) };
        let meta = bucket.meta.load(Ordering::Acquire);
        let gone = key_fp != fp || (meta >> (8 * i)) & 0xff != fp || still.key != *key;
        if !gone {
            bucket.meta.fetch_and(!(0xff << (8 * i)), Ordering::AcqRel);
            // The buckets before `b` on the key's walk each counted it passing them full.
            let mut c = home;
            let mut step = 0;
            while c != b && step < PROBES {
                self.lower_overflow(c);
                c = if c + stride < self.buckets {
                    c + stride
                } else {
                    c + stride - self.buckets
                };
                step += 1;
            }
        }
        lock.fetch_and(!LOCK, Ordering::AcqRel);
        Some(!gone)
    }

    /// Lowers bucket `b`'s overflow count by one unless it is 0 or saturated.
    fn lower_overflow(&self, b: u32) {
        let word = &self.bucket(b).meta;
        let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
            let count = m >> 57;
            (count != 0 && count != OVERFLOW_MAX).then(|| m - OVERFLOW_ONE)
        });
    }

    /// The sum of the buckets' overflow counts (a test's check that deletes undo inserts).
    pub fn overflow_total(&self) -> u64 {
        (0..self.buckets)
            .map(|b| self.bucket(b).meta.load(Ordering::Acquire) >> 57)
            .sum()
    }
}

impl Drop for BucketTable {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, not used after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
