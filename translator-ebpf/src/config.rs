//! The data-plane configuration: a read-only global the controller fills in at load time.

use translator_common::{config::DataplaneConfig, ports::Deterministic};

/// Set by the controller at load time (a frozen read-only global).
#[unsafe(no_mangle)]
static CONFIG: DataplaneConfig = DataplaneConfig {
    prefix: [0; 4],
    mask: [0; 4],
    prefix_len: 96,
    flags: 0,
    max_blocks: 1,
    _pad: 0,
    block_size: 64,
    ipv6_mtu: 1280,
    icmp_src6: [0; 4],
    icmp_interval_ns: 0,
    subscriber_mask: [u32::MAX; 4],
    route_cache_ns: 0,
    det: Deterministic {
        word: 0,
        shift: 0,
        _pad: [0; 2],
        mask: 0,
        stride: 0,
        _pad2: 0,
    },
};

#[inline(always)]
pub fn config() -> &'static DataplaneConfig {
    // SAFETY: the loader filled in the global before load; a volatile read of its address keeps
    // the compiler from folding the placeholder values above.
    unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
}
