//! The binding information base: a client's transport address and its pool transport address
//! (endpoint-independent mapping: one binding per client address, port and protocol, whatever
//! the destination). `BINDINGS6` finds a binding by client, `BINDINGS4` by pool port; who owns
//! a pool port is decided by the `BPF_NOEXIST` insert into `BINDINGS4` (`db::pool`).

use translator_common::maps::{BindingKey4, BindingKey6, BindingValue4, SessionKey4, SessionKey6};

use crate::maps::{BINDINGS4, BINDINGS6};

#[inline(always)]
pub fn key6(key: &SessionKey6) -> BindingKey6 {
    BindingKey6 {
        client: key.client,
        client_port_be: key.client_port_be,
        proto: key.proto,
        _pad: 0,
    }
}

/// The client's binding for a session key, if any: (pool address, pool port), its last use
/// refreshed.
#[inline(always)]
pub fn find6(key: &SessionKey6, now: u64) -> Option<(u32, u16)> {
    let b = BINDINGS6.get_ptr_mut(key6(key))?;
    // SAFETY: map value pointer from a successful lookup.
    unsafe {
        (*b).last_used = now;
        Some(((*b).pool, (*b).pool_port_be))
    }
}

/// The binding of a pool transport address (an inbound packet's destination), copied out.
#[inline(always)]
pub fn find4(key: &SessionKey4) -> Option<BindingValue4> {
    let bk = BindingKey4 {
        pool: key.pool,
        pool_port_be: key.pool_port_be,
        proto: key.proto,
        _pad: 0,
    };
    // SAFETY: read-only lookup, copied out at once.
    unsafe { BINDINGS4.get(bk) }.copied()
}
