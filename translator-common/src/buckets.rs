//! The bucket table of the issue 13 prototype (bench-only `BENCH_BUCKETS`): its layout and where
//! a key lives, one definition for the eBPF programs that insert and look up and for the
//! controller that reads and deletes in mapped memory (`translator::bucket_table`).
//!
//! A table is an array of [`Bucket`]s: a word and [`SLOTS`] slots of a key and a value. Bytes
//! 0..7 of the word are the slots' fingerprints (0 empty, [`FP_WRITING`] being written, else
//! 1..=0xfe), bit 56 ([`LOCK`]) the lock of inserts and deletes whose key has this bucket as
//! its home, bits 57..63 how many keys passed the bucket full on their way to a slot
//! (saturating at [`OVERFLOW_MAX`], then never lowered). A key's [`Place`] is its home bucket,
//! the stride of its walk (double hashing over a prime bucket count) and its fingerprint; it
//! lives in one of the first [`PROBES`] buckets of its walk, and a lookup goes on past a bucket
//! only while that bucket's overflow count is not 0. The word only changes by atomic
//! operations, from either side.

/// Slots per bucket: with the word, 7 slots of 48 bytes are 344 bytes.
pub const SLOTS: usize = 7;
/// Buckets a key may live in, from its home bucket on. At 85% of the slots about 1 insert in
/// 10^5 needs more than 16 buckets and 1.18 buckets are read on average (simulated); linear
/// steps instead of a stride of the key's own fail 1 insert in 2000 with a limit of 16.
pub const PROBES: u32 = 32;
/// The fingerprint byte of a slot being written.
pub const FP_WRITING: u64 = 0xff;
/// The lock bit of the word.
pub const LOCK: u64 = 1 << 56;
/// One in the overflow count (bits 57..63 of the word).
pub const OVERFLOW_ONE: u64 = 1 << 57;
/// The saturated overflow count.
pub const OVERFLOW_MAX: u64 = 0x7f;

/// A slot: a key and its value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<K, V> {
    pub key: K,
    pub value: V,
}

/// A bucket: the word of fingerprints, lock and overflow count, and [`SLOTS`] slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Bucket<K, V> {
    pub meta: u64,
    pub slots: [Slot<K, V>; SLOTS],
}

/// The bench table's bucket: a `SESSIONS6` key (28 bytes) and a 16-byte value.
pub type BenchBucket = Bucket<[u32; 7], [u64; 2]>;
const _: () = assert!(core::mem::size_of::<BenchBucket>() == 344);

/// The hash of a key's words with `seed` (multiply-xor per word, then a fold of the high half
/// into the low one): [`Place::of`] and the window prototype place keys by it.
#[inline(always)]
pub fn hash<const N: usize>(key: &[u32; N], seed: u64) -> u64 {
    let mut h = seed;
    let mut i = 0;
    while i < N {
        h = (h ^ u64::from(key[i])).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        i += 1;
    }
    h ^ (h >> 29)
}

/// The slots of a bucket word whose fingerprint is `fp`: the high bit of byte i is set when
/// slot i's is (bytes 0..7 only; no false hits, unlike the shorter borrow trick).
#[inline(always)]
pub fn matching(meta: u64, fp: u64) -> u64 {
    const LOW7: u64 = 0x007f_7f7f_7f7f_7f7f;
    const ALL: u64 = 0x00ff_ffff_ffff_ffff;
    // A byte of x is 0 exactly where the fingerprint matches; adding 0x7f to its low 7 bits
    // sets bit 7 for any non-zero byte without carrying into the next.
    let x = (meta ^ (fp * 0x0001_0101_0101_0101)) & ALL;
    !(((x & LOW7) + LOW7) | x | LOW7) & ALL
}

/// The overflow count of a bucket word.
#[inline(always)]
pub fn overflow(meta: u64) -> u64 {
    meta >> 57
}

/// The fingerprint byte of slot `i` in a bucket word.
#[inline(always)]
pub fn fingerprint(meta: u64, i: usize) -> u64 {
    (meta >> (8 * i)) & 0xff
}

/// The first empty slot of a bucket word, if any.
#[inline(always)]
pub fn first_free(meta: u64) -> Option<usize> {
    let mut i = 0;
    while i < SLOTS {
        if fingerprint(meta, i) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Where a key lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The first bucket of the walk.
    pub home: u32,
    /// The bucket count ([`PROBES`] at least, prime so that every stride visits distinct
    /// buckets).
    pub n: u32,
    /// 1..n.
    pub stride: u32,
    /// 1..=0xfe.
    pub fp: u64,
}

impl Place {
    /// The place of `key` in a table of `n` buckets hashed with `seed`; `None` for fewer than
    /// [`PROBES`] buckets (a walk would come back to buckets it passed) or more than 2^31.
    #[inline(always)]
    pub fn of<const N: usize>(key: &[u32; N], seed: u64, n: u64) -> Option<Self> {
        if !(u64::from(PROBES)..=1 << 31).contains(&n) {
            return None;
        }
        let h = hash(key, seed);
        // The home from the high half, the stride and the fingerprint from the low one.
        Some(Self {
            home: (((h >> 32) * n) >> 32) as u32,
            n: n as u32,
            stride: ((((h >> 8) & 0xff_ffff) * (n - 1)) >> 24) as u32 + 1,
            fp: (h & 0xffff_ffff) % 0xfe + 1,
        })
    }

    /// The bucket after `b` on the walk (both below `n` <= 2^31: the sum does not wrap).
    #[inline(always)]
    pub fn next(&self, b: u32) -> u32 {
        let next = b + self.stride;
        if next < self.n { next } else { next - self.n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_in_range_and_walks_visit_distinct_buckets() {
        // Primes: 37 the smallest table.
        for n in [37u64, 853, 1_000_003] {
            for k in 0..2000u32 {
                let key = [
                    0x2001_0db8,
                    1,
                    0,
                    k,
                    0xc000_0202,
                    k.rotate_left(16) | 1000,
                    17,
                ];
                let p = Place::of(&key, 0x05ee_d0f7_ab1e, n).expect("a valid bucket count");
                assert!(u64::from(p.home) < n && p.stride >= 1 && u64::from(p.stride) < n);
                assert!((1..=0xfe).contains(&p.fp), "fingerprint {:#x}", p.fp);
                let mut seen = std::collections::BTreeSet::new();
                let mut b = p.home;
                for _ in 0..PROBES {
                    assert!(seen.insert(b), "n={n}, key {k}: bucket {b} twice on a walk");
                    b = p.next(b);
                }
            }
        }
        assert_eq!(Place::of(&[1u32], 0, u64::from(PROBES) - 1), None);
        assert_eq!(Place::of(&[1u32], 0, (1 << 31) + 1), None);
    }

    #[test]
    fn matching_finds_exactly_the_equal_fingerprints() {
        // Every fingerprint against words built from a few byte values, among them the
        // neighbours (fp ^ 1, 0, 0xff) that fool the borrow trick.
        let bytes = [0u64, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff];
        let mut seed = 0x1234_5678_9abc_def1_u64;
        for fp in 1..=0xfe_u64 {
            for _ in 0..200 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut meta = seed & !0x00ff_ffff_ffff_ffff;
                for i in 0..SLOTS {
                    let pick = (seed >> (3 * i)) & 7;
                    let b = if pick == 7 {
                        fp
                    } else if pick == 6 {
                        fp ^ 1
                    } else {
                        bytes[pick as usize]
                    };
                    meta |= b << (8 * i);
                }
                let want: u64 = (0..SLOTS)
                    .filter(|&i| fingerprint(meta, i) == fp)
                    .map(|i| 0x80 << (8 * i))
                    .sum();
                assert_eq!(matching(meta, fp), want, "meta {meta:#018x}, fp {fp:#x}");
            }
        }
    }

    #[test]
    fn word_fields() {
        let meta = 0x7f_u64 << 57 | LOCK | 0xfe << 48 | 0x01;
        assert_eq!(overflow(meta), 0x7f);
        assert_eq!(fingerprint(meta, 0), 1);
        assert_eq!(fingerprint(meta, 6), 0xfe);
        assert_eq!(fingerprint(meta, 3), 0);
        assert_eq!(first_free(meta), Some(1));
        assert_eq!(first_free(0x00fe_fefe_fefe_fefe | LOCK), None);
    }
}
