//! Filtering and updating binding and session information (RFC 6146 section 3.5): the session
//! of a packet, or a new one where the policy allows it. Outbound (3.5.1, 3.5.2.1): the client
//! must be allowed and the destination translatable; the client's binding is reused
//! (endpoint-independent mapping) or made from its port blocks. Inbound (3.5.1.1, 3.5.2.2):
//! only a static binding, endpoint-independent filtering or a permit the client created
//! (address-dependent filtering) lets a packet open a session. A TCP session is opened by a SYN
//! only (section 3.5.2.2, the CLOSED state).

use aya_ebpf::EbpfContext;
use translator_common::{
    IPPROTO_TCP,
    config::{
        CFG_ALLOW_NON_GLOBAL, CFG_DROP_INBOUND_SYN, CFG_ENDPOINT_INDEPENDENT_FILTERING,
        CFG_WELL_KNOWN_PREFIX,
    },
    counters::DropReason,
    maps::{BINDING_STATIC, SessionKey4},
    rfc6052, tcp,
};

use aya_ebpf::maps::lpm_trie::Key;

use crate::{
    config::config,
    db::{bib, pool, session},
    maps::CLIENTS,
    tuple::Packet6,
};

/// The session of a client's packet, found or created; fills in `pkt.pool` and
/// `pkt.pool_port`. Returns whether the flow is hairpinned (its destination is a pool address).
#[inline(always)]
pub fn outbound<C: EbpfContext>(ctx: &C, pkt: &mut Packet6) -> Result<bool, DropReason> {
    if let Some(hairpin) = session::outbound(pkt) {
        return Ok(hairpin);
    }
    if pkt.l4.proto == IPPROTO_TCP && pkt.l4.tcp & tcp::SYN == 0 {
        return Err(DropReason::TcpNotSyn);
    }
    // Each step is its own subprogram, called from here so that the deepest call chain stays
    // within the verifier's stack limit.
    if !outbound_binding(pkt)? {
        pool::allocate(ctx, pkt)?;
    }
    session::create_outbound(pkt)
}

/// Policy checks for a new outbound flow, then the client's existing binding if any. Fills in
/// `pkt.pool` and `pkt.pool_port` and returns true when the binding exists.
#[inline(never)]
fn outbound_binding(pkt: &mut Packet6) -> Result<bool, DropReason> {
    let key = &pkt.key;
    if CLIENTS.get(Key::new(128, key.client)).is_none() {
        return Err(DropReason::ClientNotAllowed);
    }
    if !translatable(key.remote) {
        return Err(DropReason::DestinationNotAllowed);
    }
    match bib::find6(key, pkt.now) {
        Some((pool, port)) => {
            pkt.pool = pool;
            pkt.pool_port = port;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Whether an IPv4 address may appear inside the prefix: not a non-global one under the
/// well-known prefix 64:ff9b::/96 (RFC 6052 section 3.1), unless `nat64.allow_non_global`.
#[inline(always)]
pub fn translatable(addr: u32) -> bool {
    config().flags & (CFG_WELL_KNOWN_PREFIX | CFG_ALLOW_NON_GLOBAL) != CFG_WELL_KNOWN_PREFIX
        || rfc6052::is_global(rfc6052::from_raw4(addr))
}

/// First packet of an inbound flow: allowed by a static binding, by endpoint-independent
/// filtering, or by a permit the client created (address-dependent filtering); for TCP only a
/// SYN (`tcp` are the packet's TCP flags). `Ok(None)`: no binding at all.
#[inline(never)]
pub fn open_inbound(
    key: &SessionKey4,
    tcp: u8,
    now: u64,
) -> Result<Option<([u32; 4], u16)>, DropReason> {
    let Some(b) = bib::find4(key) else {
        return Ok(None);
    };
    if !translatable(key.remote) {
        return Err(DropReason::SourceNotAllowed);
    }
    if key.proto == IPPROTO_TCP && tcp & tcp::SYN == 0 {
        return Err(DropReason::NoSession);
    }
    if b.flags & BINDING_STATIC == 0
        && config().flags & CFG_ENDPOINT_INDEPENDENT_FILTERING == 0
        && !session::permitted(key)
    {
        return Err(DropReason::NoSession);
    }
    session::create_inbound(key, b.client, b.client_port_be, now)?;
    Ok(Some((b.client, b.client_port_be)))
}

/// Whether an inbound packet that nothing lets in is a SYN to hold (RFC 6146 section
/// 3.5.2.2), rather than one to drop: TCP with SYN, and `nat64.inbound_syn = "hold"`.
#[inline(always)]
pub fn holds_syn(proto: u8, tcp: u8) -> bool {
    proto == IPPROTO_TCP && tcp & tcp::SYN != 0 && config().flags & CFG_DROP_INBOUND_SYN == 0
}
