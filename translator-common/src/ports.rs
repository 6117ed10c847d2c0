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

#[cfg(test)]
mod tests {
    use super::*;

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
