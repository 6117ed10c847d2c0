//! The controller's half of the issue 13 bucket-table prototype (the bench-only map
//! `BENCH_BUCKETS`, programs `bench_bk_*` in the eBPF object): the table is a `BPF_F_MMAPABLE`
//! array, so the controller reads and deletes entries in its own memory, without a syscall per
//! entry or per batch. This is what an expiry pass over a session table of this shape costs.
//!
//! Layout and placement are `translator_common::buckets`, shared with the eBPF programs. The
//! controller's inserts follow the eBPF side's general path (`get` and `insert`, for what the
//! controller puts in itself: static entries, the slow path's sessions). A delete takes the lock of the key's home bucket (an insert of the same key fails while it is
//! held), clears the fingerprint with an atomic and, and lowers the overflow counts of the
//! buckets its walk passed. The memory is shared with the kernel, so the word's atomics are
//! plain CPU atomics.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, ensure};
use translator_common::buckets::{
    BenchBucket, FP_WRITING, LOCK, OVERFLOW_MAX, OVERFLOW_ONE, PROBES, Place, SLOTS, fingerprint,
    first_free, matching, overflow,
};

/// The hash seed the harness writes to `BENCH_TABLE_CAP[1]`.
pub const SEED: u64 = 0x05ee_d0f7_ab1e;

/// The bucket count a table gets for at least `want` buckets: the next prime, at least
/// [`PROBES`] (37 then). A key walks [`PROBES`] buckets with a stride of its own in 1..count,
/// and only with a prime count does every stride visit distinct buckets. At most 2^31 buckets
/// (15 billion slots).
pub fn bucket_count(want: u32) -> anyhow::Result<u32> {
    let prime = |n: u64| {
        (2..)
            .take_while(|d: &u64| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
    };
    (u64::from(want.max(PROBES))..=1 << 31)
        .find(|&n| prime(n))
        .and_then(|n| u32::try_from(n).ok())
        .with_context(|| format!("a bucket table of {want} buckets: at most 2^31 buckets"))
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

/// The bucket table mapped into this process. Not `Send` or `Sync` (a raw pointer): one pass
/// at a time, from the thread that mapped it; an expiry thread of its own would map it there.
pub struct BucketTable {
    base: *mut BenchBucket,
    len: usize,
    buckets: u32,
    seed: u64,
}

impl BucketTable {
    /// Maps the table behind `map`, an array of buckets made `BPF_F_MMAPABLE` whose keys the
    /// eBPF side places with `seed`.
    pub fn map(map: &aya::maps::MapData, seed: u64) -> anyhow::Result<Self> {
        const BPF_F_MMAPABLE: u32 = 1 << 10;
        let info = map.info().context("reading the bucket table's map info")?;
        ensure!(
            info.map_flags() & BPF_F_MMAPABLE != 0
                && info.value_size() as usize == size_of::<BenchBucket>(),
            "the bucket table must be a BPF_F_MMAPABLE array of {}-byte buckets (flags {:#x}, \
             values of {} bytes)",
            size_of::<BenchBucket>(),
            info.map_flags(),
            info.value_size()
        );
        let buckets = info.max_entries();
        ensure!(
            bucket_count(buckets)? == buckets,
            "the bucket table has {buckets} buckets: it needs a prime count (bucket_count)"
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
                map.fd().as_fd().as_raw_fd(),
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
            seed,
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

    /// The slot holding `key`: (bucket, slot index), found as the eBPF lookup finds it.
    fn find(&self, key: &[u32; 7], at: Place) -> Option<(u32, usize)> {
        let mut b = at.home;
        for _ in 0..PROBES {
            let meta = self.word(b).load(Ordering::Acquire);
            let hits = matching(meta, at.fp);
            if let Some(i) =
                (0..SLOTS).find(|&i| hits & (0x80 << (8 * i)) != 0 && self.slot(b, i).key == *key)
            {
                return Some((b, i));
            }
            if overflow(meta) == 0 {
                return None;
            }
            b = at.next(b);
        }
        None
    }

    /// The value of `key`, if the table holds it.
    pub fn get(&self, key: &[u32; 7]) -> Option<[u64; 2]> {
        let at = Place::of(key, self.seed, u64::from(self.buckets))?;
        self.find(key, at).map(|(b, i)| self.slot(b, i).value)
    }

    /// Inserts `key` as the eBPF side's general path does (home lock, check, walk, claim,
    /// write, publish): `Ok(true)` when it went in, `Ok(false)` when the table holds it
    /// already. Fails while the home bucket's lock is held (a data-plane insert of a key with
    /// that home: a few microseconds) or when every bucket of the walk is full.
    pub fn insert(&self, key: &[u32; 7], value: [u64; 2]) -> anyhow::Result<bool> {
        let at = Place::of(key, self.seed, u64::from(self.buckets))
            .context("the bucket table's size is out of range")?;
        let lock = self.word(at.home);
        ensure!(
            lock.fetch_or(LOCK, Ordering::AcqRel) & LOCK == 0,
            "inserting into the bucket table: home bucket {} is locked by another insert",
            at.home
        );
        let done = if self.find(key, at).is_some() {
            Ok(false)
        } else {
            self.place_new(key, value, at)
        };
        lock.fetch_and(!LOCK, Ordering::AcqRel);
        done
    }

    /// Puts a key known to be absent into the first bucket with room on its walk, raising the
    /// overflow counts of the full ones it passes.
    fn place_new(&self, key: &[u32; 7], value: [u64; 2], at: Place) -> anyhow::Result<bool> {
        let mut b = at.home;
        for _ in 0..PROBES {
            let word = self.word(b);
            let claimed = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                match first_free(m) {
                    Some(i) => Some(m | FP_WRITING << (8 * i)),
                    None if overflow(m) < OVERFLOW_MAX => Some(m + OVERFLOW_ONE),
                    None => None,
                }
            });
            // The slot claimed: the first free one of the word the update succeeded on.
            if let Some(i) = claimed.ok().and_then(first_free) {
                let slot = translator_common::buckets::Slot { key: *key, value };
                // SAFETY: inside the mapping; the slot is ours while its byte says "being
                // written", nothing else writes it.
                unsafe { std::ptr::write_volatile(&raw mut (*self.bucket(b)).slots[i], slot) };
                word.fetch_xor((FP_WRITING ^ at.fp) << (8 * i), Ordering::AcqRel);
                return Ok(true);
            }
            b = at.next(b);
        }
        anyhow::bail!(
            "inserting into the bucket table: all {PROBES} buckets of the key's walk are full"
        )
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
                match self.delete(b, i, fp, &slot.key, &mut expired) {
                    Some(true) => pass.deleted += 1,
                    Some(false) => {}
                    None => pass.busy += 1,
                }
            }
        }
        pass
    }

    /// Deletes `key` from slot `i` of bucket `b` where it was seen with fingerprint `fp`, if
    /// `expired` still says so under the lock: `Some(true)` when it went, `Some(false)` when
    /// the slot no longer holds it or it no longer expires, `None` when an insert held its home
    /// bucket's lock. (The data plane updates values without the lock: one refreshed right
    /// after the check still goes, as with the kernel's hash maps.)
    fn delete(
        &self,
        b: u32,
        i: usize,
        fp: u64,
        key: &[u32; 7],
        expired: &mut impl FnMut(&[u32; 7], &[u64; 2]) -> bool,
    ) -> Option<bool> {
        let at = Place::of(key, self.seed, u64::from(self.buckets))?;
        let lock = self.word(at.home);
        if lock.fetch_or(LOCK, Ordering::AcqRel) & LOCK != 0 {
            return None;
        }
        // Under the lock no insert of this key runs: the slot holds it or it is gone.
        let still = self.slot(b, i);
        let meta = self.word(b).load(Ordering::Acquire);
        let gone = at.fp != fp
            || fingerprint(meta, i) != fp
            || still.key != *key
            || !expired(&still.key, &still.value);
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

#[cfg(test)]
mod tests {
    use super::bucket_count;

    #[test]
    fn bucket_counts_are_the_next_prime_up_to_2_to_the_31() {
        assert_eq!(bucket_count(0).ok(), Some(37));
        assert_eq!(bucket_count(840).ok(), Some(853));
        assert_eq!(bucket_count(853).ok(), Some(853));
        assert_eq!(bucket_count(0x7fff_ffff).ok(), Some(0x7fff_ffff));
        let err = bucket_count(0x8000_0000).map_or_else(|e| e.to_string(), |n| n.to_string());
        assert!(err.contains("at most 2^31"), "{err}");
    }
}
