//! Port-block arithmetic: how a protocol's port range of each pool address is cut into blocks.

/// A validated layout: blocks of `block_size` ports from `first` to `last` (inclusive) per
/// pool address. Only whole blocks are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    pub first: u16,
    pub last: u16,
    pub block_size: u16,
}

/// Why a layout is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Block size is not a power of two between 8 and 32768.
    BlockSize,
    /// The range is empty or reversed.
    Range,
    /// The range does not hold a single whole block aligned to the block size.
    TooSmall,
}

impl BlockLayout {
    pub fn new(first: u16, last: u16, block_size: u16) -> Result<Self, LayoutError> {
        if !block_size.is_power_of_two() || !(8..=32768).contains(&block_size) {
            return Err(LayoutError::BlockSize);
        }
        if first > last {
            return Err(LayoutError::Range);
        }
        let layout = Self {
            first,
            last,
            block_size,
        };
        if layout.blocks_per_address() == 0 {
            return Err(LayoutError::TooSmall);
        }
        Ok(layout)
    }

    /// First port of the first whole block (blocks are aligned to their size, which keeps port
    /// parity: an even offset is an even port).
    pub fn first_block_start(&self) -> u32 {
        let size = u32::from(self.block_size);
        u32::from(self.first).div_ceil(size) * size
    }

    pub fn blocks_per_address(&self) -> u32 {
        let size = u32::from(self.block_size);
        let start = self.first_block_start();
        let end = u32::from(self.last) + 1;
        if end <= start {
            0
        } else {
            (end - start) / size
        }
    }

    /// Start ports of every block of one address.
    pub fn block_starts(&self) -> impl Iterator<Item = u16> + '_ {
        let size = u32::from(self.block_size);
        let start = self.first_block_start();
        (0..self.blocks_per_address()).map(move |i| (start + i * size) as u16)
    }

    /// The block start a port belongs to, if it is inside a whole block.
    pub fn block_of(&self, port: u16) -> Option<u16> {
        let p = u32::from(port);
        let start = self.first_block_start();
        let size = u32::from(self.block_size);
        if p < start || p >= start + self.blocks_per_address() * size {
            return None;
        }
        Some((p - (p - start) % size) as u16)
    }
}

/// Offset inside a block for probe `i` starting from hint `next`. Probes walk the block a pair
/// of ports at a time, trying the port with the client's parity first and then the other one:
/// parity is preserved where it costs nothing (RFC 4787 REQ-3 is a SHOULD), and a client can
/// still use every port of its blocks.
#[inline(always)]
pub const fn probe_offset(next: u16, i: u16, client_port: u16, block_size: u16) -> u16 {
    let mask = block_size - 1;
    let pair = (next & !1).wrapping_add((i / 2).wrapping_mul(2));
    (pair | ((client_port ^ i) & 1)) & mask
}

/// The hint for the next allocation after one at `off`: the same pair, whose other port may
/// still be free.
#[inline(always)]
pub const fn next_hint(off: u16) -> u16 {
    off & !1
}

/// RFC 7422 deterministic port blocks: which bits of a client address number its subscriber.
///
/// With one client prefix of length `clients_len` and subscribers of `subscriber_len` bits, the
/// subscriber index is the address's bits `clients_len .. subscriber_len` (at most
/// [`MAX_DETERMINISTIC_BITS`]); subscriber `i` holds blocks `i * max_blocks ..` of the pool's
/// blocks in order, slot `s` always block `i * max_blocks + s`. The data plane computes the
/// index from a 64-bit window of the address (two of its words), so no 128-bit arithmetic is
/// needed in BPF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deterministic {
    /// First of the two 32-bit words of the window (0, 1 or 2).
    pub word: u8,
    /// Right shift of the 64-bit window that brings the index's last bit to bit 0.
    pub shift: u8,
    pub _pad: [u8; 2],
    /// Mask of the index after the shift (`2^bits - 1`).
    pub mask: u32,
    /// Blocks per protocol that belong to subscribers: `subscribers * max_blocks`. The data
    /// plane's table of deterministic blocks holds this many per protocol, TCP, UDP, ICMP.
    pub stride: u32,
    pub _pad2: u32,
}

/// Most index bits a deterministic layout may use: 2^24 subscribers, more than the largest
/// pool has blocks (256 addresses of 8192 blocks is 2^21), and small enough that
/// `subscribers * max_blocks` fits in 32 bits.
pub const MAX_DETERMINISTIC_BITS: u8 = 24;

impl Deterministic {
    /// The layout for clients of one `clients_len` prefix, subscribers of `subscriber_len`, and
    /// `max_blocks` blocks each. `None` when `subscriber_len` is shorter than `clients_len` or
    /// longer than 128, or the index would take more than [`MAX_DETERMINISTIC_BITS`].
    pub fn new(clients_len: u8, subscriber_len: u8, max_blocks: u8) -> Option<Self> {
        if subscriber_len < clients_len || subscriber_len > 128 {
            return None;
        }
        let bits = subscriber_len - clients_len;
        if bits > MAX_DETERMINISTIC_BITS {
            return None;
        }
        let word = (clients_len / 32).min(2);
        // The window covers address bits word*32 .. word*32 + 64. The index starts at bit
        // clients_len >= word*32 and ends at subscriber_len <= clients_len + 24, which is inside
        // it: below 96 when word < 2, at most 128 when word is 2.
        let end = u32::from(word) * 32 + 64;
        let shift = end.checked_sub(u32::from(subscriber_len))?;
        if shift + u32::from(bits) > 64 {
            return None;
        }
        let subscribers = 1u64 << bits;
        let stride = u32::try_from(subscribers * u64::from(max_blocks)).ok()?;
        Some(Self {
            word,
            shift: shift as u8,
            _pad: [0; 2],
            mask: ((1u64 << bits) - 1) as u32,
            stride,
            _pad2: 0,
        })
    }

    /// How many subscribers the layout numbers (`2^bits`).
    pub fn subscribers(&self) -> u64 {
        u64::from(self.mask) + 1
    }

    /// The subscriber index of a client address given as raw network-order words (the memory
    /// of the words is the address bytes).
    #[inline(always)]
    pub fn index(&self, client: &[u32; 4]) -> u32 {
        let (hi, lo) = match self.word {
            0 => (client[0], client[1]),
            1 => (client[1], client[2]),
            _ => (client[2], client[3]),
        };
        let window = (u64::from(u32::from_be(hi)) << 32) | u64::from(u32::from_be(lo));
        // shift < 64 by construction; `& 63` lets the verifier (and the reader) see it.
        ((window >> (self.shift & 63)) as u32) & self.mask
    }

    /// The number of slot `slot` of `subscriber`'s blocks (raw words, as for [`Self::index`])
    /// among the pool's blocks of a protocol: `index * max_blocks + slot`, `None` past the
    /// subscribers' blocks.
    #[inline(always)]
    pub fn block(&self, subscriber: &[u32; 4], max_blocks: u8, slot: u32) -> Option<u32> {
        let b = self
            .index(subscriber)
            .wrapping_mul(u32::from(max_blocks))
            .wrapping_add(slot);
        (b < self.stride).then_some(b)
    }

    /// Where block `b` of the protocol at `proto_index` (TCP 0, UDP 1, ICMP 2) is in the
    /// `DET_BLOCKS` table.
    #[inline(always)]
    pub fn entry(&self, proto_index: u32, b: u32) -> u32 {
        proto_index.wrapping_mul(self.stride).wrapping_add(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(a: u128) -> [u32; 4] {
        let b = a.to_be_bytes();
        core::array::from_fn(|i| {
            u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        })
    }

    #[test]
    fn deterministic_index_is_the_bits_between_the_two_lengths() {
        // Every pair of lengths, against 128-bit arithmetic.
        let addr: u128 = 0x2001_0db8_a5c3_9e17_4b2d_8f60_1c7a_e395;
        for clients_len in 0..=128u8 {
            for bits in 0..=MAX_DETERMINISTIC_BITS {
                let Some(sub) = clients_len.checked_add(bits).filter(|s| *s <= 128) else {
                    continue;
                };
                let d = Deterministic::new(clients_len, sub, 1).expect("valid lengths");
                let want = if bits == 0 {
                    0
                } else {
                    ((addr >> (128 - u32::from(sub))) & ((1u128 << bits) - 1)) as u32
                };
                assert_eq!(
                    d.index(&raw(addr)),
                    want,
                    "clients /{clients_len}, subscribers /{sub}"
                );
                assert_eq!(d.subscribers(), 1u64 << bits);
            }
        }
    }

    #[test]
    fn deterministic_layouts_that_do_not_fit_are_refused() {
        assert_eq!(Deterministic::new(64, 56, 1), None);
        assert_eq!(Deterministic::new(24, 57, 1), None);
        assert_eq!(Deterministic::new(64, 129, 1), None);
        let d = Deterministic::new(48, 64, 4).expect("valid");
        assert_eq!(d.stride, 65536 * 4);
    }

    #[test]
    fn layout() {
        let l = BlockLayout::new(1024, 65535, 128).expect("valid");
        assert_eq!(l.first_block_start(), 1024);
        assert_eq!(l.blocks_per_address(), (65536 - 1024) / 128);
        assert_eq!(l.block_of(1024), Some(1024));
        assert_eq!(l.block_of(1151), Some(1024));
        assert_eq!(l.block_of(1152), Some(1152));
        assert_eq!(l.block_of(1023), None);
        assert_eq!(l.block_starts().last(), Some(65408));
        assert_eq!(l.block_of(65535), Some(65408));
    }

    #[test]
    fn unaligned_range_uses_whole_blocks() {
        let l = BlockLayout::new(1000, 2100, 256).expect("valid");
        assert_eq!(l.first_block_start(), 1024);
        assert_eq!(l.blocks_per_address(), 4);
        assert!(l.block_starts().eq([1024, 1280, 1536, 1792]));
        assert_eq!(l.block_of(2048), None);
    }

    #[test]
    fn bad_layouts() {
        assert_eq!(
            BlockLayout::new(1024, 2047, 100),
            Err(LayoutError::BlockSize)
        );
        assert_eq!(BlockLayout::new(1024, 2047, 4), Err(LayoutError::BlockSize));
        assert_eq!(BlockLayout::new(2000, 1000, 64), Err(LayoutError::Range));
        assert_eq!(BlockLayout::new(1025, 1100, 64), Err(LayoutError::TooSmall));
    }

    #[test]
    fn probing_prefers_parity_and_stays_in_block() {
        for size in [8u16, 64, 4096] {
            for cp in [0u16, 1, 40001, 40002] {
                for i in 0..40 {
                    let off = probe_offset(size - 3, i, cp, size);
                    assert!(off < size);
                    // Even probes keep the client's parity, odd ones take the other port.
                    assert_eq!(off & 1, (cp ^ i) & 1);
                }
            }
        }
    }

    #[test]
    fn sequential_allocation_fills_a_whole_block() {
        // Every port of a block is handed out, whatever the parities asked for, with at most
        // three probes each (the hint stays on the current pair).
        let size = 64u16;
        let mut used = [false; 64];
        let mut next = 0u16;
        for n in 0..size {
            let client_port = if n % 3 == 0 { 40001 } else { 40000 };
            let mut got = None;
            for i in 0..16 {
                let off = probe_offset(next, i, client_port, size);
                if !used[off as usize] {
                    assert!(i <= 2, "allocation {n} needed {} probes", i + 1);
                    got = Some(off);
                    break;
                }
            }
            let off = got.expect("a free port within the probes");
            used[off as usize] = true;
            next = next_hint(off);
        }
        assert!(used.iter().all(|u| *u));
    }
}
