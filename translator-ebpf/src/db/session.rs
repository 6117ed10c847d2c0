//! The session table (RFC 6146 section 3.1): one entry per direction, `SESSIONS6` keyed by what
//! a client's packet carries, `SESSIONS4` by what a remote host's packet carries, each with the
//! TCP state (RFC 6146 section 3.5.2) and the time the lifetime last started; the
//! address-dependent filtering permits; and the session log's events.

use translator_common::{
    IPPROTO_TCP,
    config::{CFG_DROP_INBOUND_SYN, CFG_ENDPOINT_INDEPENDENT_FILTERING, CFG_LOG_SESSIONS},
    counters::{DropReason, Event},
    maps::{
        FilterKey, SESSION_HAIRPIN, SessionEvent, SessionKey4, SessionKey6, SessionValue4,
        SessionValue6,
    },
    tcp,
};

use crate::{
    config::config,
    db::held,
    maps::{FILTERS, POOL, SESSION_EVENTS, SESSIONS4, SESSIONS6},
    observe::{event, now_exact},
    tuple::Packet6,
};

/// Session timestamps are refreshed at most this often (ns): fewer cache-line writes.
const TOUCH_NS: u64 = 1_000_000_000;

/// Moves a session along for one of its packets (RFC 6146 section 3.5.2.2): TCP through the
/// state machine (`translator_common::tcp::step`), the lifetime started again where it says so;
/// UDP and ICMP only have their lifetime started again. Writes only what changed, and returns
/// the new TCP state when it changed (the session's other entry gets it too) and whether the
/// lifetime was started again (written).
#[inline(always)]
fn advance(
    state: *mut u8,
    last_seen: *mut u64,
    proto: u8,
    from_v6: bool,
    flags: u8,
    now: u64,
) -> (Option<u8>, bool) {
    // SAFETY: pointers into a map value returned by a lookup.
    unsafe {
        if proto != IPPROTO_TCP {
            let touch = now.wrapping_sub(*last_seen) > TOUCH_NS;
            if touch {
                *last_seen = now;
            }
            return (None, touch);
        }
        let old = *state;
        let (new, restart) = tcp::step(old, from_v6, flags);
        let touch = restart && (new != old || now.wrapping_sub(*last_seen) > TOUCH_NS);
        if touch {
            *last_seen = now;
        }
        if new == old {
            return (None, touch);
        }
        *state = new;
        (Some(new), touch)
    }
}

/// The session of a client's packet: moves it along and fills in `pkt.pool` / `pkt.pool_port`.
/// Returns whether the flow is hairpinned, or `None` when there is no session.
#[inline(always)]
pub fn outbound(pkt: &mut Packet6) -> Option<bool> {
    let v = SESSIONS6.get_ptr_mut(pkt.key)?;
    // SAFETY: map value pointer from a successful lookup.
    unsafe {
        let proto = pkt.key.proto;
        if let (Some(state), _) = advance(
            &mut (*v).state,
            &mut (*v).last_seen,
            proto,
            true,
            pkt.l4.tcp,
            pkt.now,
        ) && let Some(o) = SESSIONS4.get_ptr_mut(pkt.key.reverse(&*v))
        {
            (*o).state = state;
        }
        pkt.pool = (*v).pool;
        pkt.pool_port = (*v).pool_port_be;
        Some((*v).flags & SESSION_HAIRPIN != 0)
    }
}

/// The `SESSIONS4` entry of a remote host's packet, if any.
#[inline(always)]
pub fn find4(key: &SessionKey4) -> Option<*mut SessionValue4> {
    SESSIONS4.get_ptr_mut(key)
}

/// Moves an inbound session entry found by [`find4`] along for a packet with the TCP flags
/// `tcp`: (client, client port). A new state and a restarted lifetime go to the `SESSIONS6`
/// entry too (at most once a second for the lifetime): the controller's expiry reads only that
/// table.
#[inline(always)]
pub fn use4(key: &SessionKey4, v: *mut SessionValue4, tcp: u8, now: u64) -> ([u32; 4], u16) {
    // SAFETY: map value pointer from a successful lookup.
    unsafe {
        let (state, touched) = advance(
            &mut (*v).state,
            &mut (*v).last_seen,
            key.proto,
            false,
            tcp,
            now,
        );
        if (state.is_some() || touched)
            && let Some(o) = SESSIONS6.get_ptr_mut((*v).reverse(key))
        {
            if let Some(state) = state {
                (*o).state = state;
            }
            if touched {
                (*o).last_seen = now;
            }
        }
        ((*v).client, (*v).client_port_be)
    }
}

/// The client side of a session, looked up without refreshing it (for ICMP errors).
#[inline(always)]
pub fn client_of(key: &SessionKey4) -> Option<([u32; 4], u16)> {
    // SAFETY: read-only lookup, copied out at once.
    unsafe { SESSIONS4.get(key) }.map(|v| (v.client, v.client_port_be))
}

/// The pool side of a session, looked up without refreshing it (for ICMP errors).
#[inline(always)]
pub fn pool_of(key: &SessionKey6) -> Option<(u32, u16)> {
    // SAFETY: read-only lookup, copied out at once.
    unsafe { SESSIONS6.get(key) }.map(|v| (v.pool, v.pool_port_be))
}

/// Creates both session entries of a new outbound flow whose binding is known (a TCP one
/// starts in V6 INIT: its first packet is a SYN); returns whether the destination is a pool
/// address (hairpinning). A SYN held from the destination is forgotten: the client opens the
/// connection (RFC 6146 section 3.5.2.2).
#[inline(never)]
pub fn create_outbound(pkt: &Packet6) -> Result<bool, DropReason> {
    let key = &pkt.key;
    let (pool, pool_port, now) = (pkt.pool, pkt.pool_port, pkt.now);
    // SAFETY: read-only lookup.
    let hairpin = unsafe { POOL.get(key.remote) }.is_some();
    let state = if key.proto == IPPROTO_TCP {
        if config().flags & CFG_DROP_INBOUND_SYN == 0 {
            held::forget(key.remote, key.remote_port_be);
        }
        tcp::V6_INIT
    } else {
        0
    };
    let v6 = SessionValue6 {
        pool,
        pool_port_be: pool_port,
        flags: if hairpin { SESSION_HAIRPIN } else { 0 },
        state,
        last_seen: now,
    };
    SESSIONS6
        .insert(key, v6, 0)
        .map_err(|_| DropReason::TableFull)?;
    let k4 = SessionKey4 {
        pool,
        remote: key.remote,
        pool_port_be: pool_port,
        remote_port_be: key.remote_port_be,
        proto: key.proto,
        _pad: [0; 3],
    };
    let v4 = SessionValue4 {
        client: key.client,
        client_port_be: key.client_port_be,
        flags: 0,
        state,
        _pad: [0; 4],
        last_seen: now,
    };
    if SESSIONS4.insert(k4, v4, 0).is_err() {
        let _ = SESSIONS6.remove(key);
        return Err(DropReason::TableFull);
    }
    if config().flags & CFG_ENDPOINT_INDEPENDENT_FILTERING == 0 {
        permit(pool, pool_port, key, now);
    }
    event(Event::SessionCreated);
    log(key, pool, pool_port);
    Ok(hairpin)
}

/// Records that the binding `pool:pool_port` sent to `key.remote` (address-dependent filtering).
/// An existing permit only gets its time refreshed: a plain store instead of an insert, which
/// takes the bucket lock.
#[inline(always)]
fn permit(pool: u32, pool_port: u16, key: &SessionKey6, now: u64) {
    let fkey = FilterKey {
        pool,
        remote: key.remote,
        pool_port_be: pool_port,
        proto: key.proto,
        _pad: 0,
    };
    match FILTERS.get_ptr_mut(fkey) {
        // SAFETY: map value pointer from a successful lookup.
        Some(last) => unsafe { *last = now },
        // The table is as large as the session table, so it cannot be full when the session
        // insert succeeded.
        None => {
            let _ = FILTERS.insert(fkey, now, 0);
        }
    }
}

/// Whether the binding `key.pool:key.pool_port` has sent to `key.remote` (a permit exists).
#[inline(always)]
pub fn permitted(key: &SessionKey4) -> bool {
    let fk = FilterKey {
        pool: key.pool,
        remote: key.remote,
        pool_port_be: key.pool_port_be,
        proto: key.proto,
        _pad: 0,
    };
    // SAFETY: read-only lookup.
    unsafe { FILTERS.get(fk) }.is_some()
}

/// Creates both entries of a session that an inbound packet opens (filtering allowed it; a
/// TCP one, opened by a SYN, starts in V4 INIT): `client`, `client_port` are its binding's.
#[inline(always)]
pub fn create_inbound(
    key: &SessionKey4,
    client: [u32; 4],
    client_port: u16,
    now: u64,
) -> Result<(), DropReason> {
    let state = if key.proto == IPPROTO_TCP {
        tcp::V4_INIT
    } else {
        0
    };
    let v4 = SessionValue4 {
        client,
        client_port_be: client_port,
        flags: 0,
        state,
        _pad: [0; 4],
        last_seen: now,
    };
    SESSIONS4
        .insert(key, v4, 0)
        .map_err(|_| DropReason::TableFull)?;
    let k6 = SessionKey6 {
        client,
        remote: key.remote,
        client_port_be: client_port,
        remote_port_be: key.remote_port_be,
        proto: key.proto,
        _pad: [0; 3],
    };
    // SAFETY: read-only lookup.
    let hairpin = unsafe { POOL.get(key.remote) }.is_some();
    let v6 = SessionValue6 {
        pool: key.pool,
        pool_port_be: key.pool_port_be,
        flags: if hairpin { SESSION_HAIRPIN } else { 0 },
        state,
        last_seen: now,
    };
    if SESSIONS6.insert(k6, v6, 0).is_err() {
        let _ = SESSIONS4.remove(key);
        return Err(DropReason::TableFull);
    }
    event(Event::SessionCreated);
    log(&k6, key.pool, key.pool_port_be);
    Ok(())
}

/// Reports a new session when the session log is on.
#[inline(always)]
fn log(key: &SessionKey6, pool: u32, pool_port: u16) {
    if config().flags & CFG_LOG_SESSIONS == 0 {
        return;
    }
    if let Some(mut e) = SESSION_EVENTS.reserve::<SessionEvent>(0) {
        e.write(SessionEvent {
            client: key.client,
            remote: key.remote,
            pool,
            client_port_be: key.client_port_be,
            remote_port_be: key.remote_port_be,
            pool_port_be: pool_port,
            proto: key.proto,
            _pad: 0,
            time: now_exact(),
        });
        e.submit(0);
    }
}
