//! Fragments (RFC 7915 sections 4.1 and 5.1.1) and the hand-off to the user-space slow path.
//!
//! A first fragment carries the transport header, so it finds (or creates) its session like
//! any packet; it is translated with the fragment's identification, offset and MF flag, and
//! where the rest of the datagram goes is remembered here (LRU maps: bounded memory). Later
//! fragments are translated from that memory alone. What the program cannot do goes to the
//! slow path: fragments whose first fragment was not seen (yet), fragmented ICMP (its checksum
//! needs the whole datagram), and packets that must be fragmented (DF clear, too big).

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, generated::bpf_xdp_store_bytes},
    macros::map,
    maps::LruHashMap,
    programs::XdpContext,
};
use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    counters::{DropReason, Event},
    maps::{Frag4Key, Frag4Value, Frag6Key, Frag6Value, SLOW_PATH_ETHERTYPE, SessionKey6},
    rfc6052,
};

use crate::{
    packet::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, FRAG_LEN, FragHdr, IPPROTO_FRAGMENT, IPV4_LEN,
        IPV6_LEN, Ipv4Hdr, Ipv6Hdr, ptr_at,
    },
    xdp::{config, event, forward, ipv4_header_checksum, now, out_eth, route, translated},
};

#[map]
static FRAGS6: LruHashMap<Frag6Key, Frag6Value> = LruHashMap::pinned(16384, 0);
#[map]
static FRAGS4: LruHashMap<Frag4Key, Frag4Value> = LruHashMap::pinned(16384, 0);

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// Header bytes that change between an IPv6 fragment (IPv6 + fragment header) and an IPv4
/// fragment.
const DELTA: usize = IPV6_LEN + FRAG_LEN - IPV4_LEN;

/// Hands the frame to the user-space slow path: the ethertype becomes the slow-path one and
/// the kernel passes it to the controller's packet socket (and drops it quietly if no
/// controller listens). The IP header is untouched, so the slow path sees the packet as
/// received.
#[inline(never)]
pub(crate) fn punt(ctx: &XdpContext) -> Result<u32, DropReason> {
    // Through the helper, not a packet pointer: callers reach here after head adjustments
    // and checks the verifier would otherwise have to follow through.
    let mut proto = SLOW_PATH_ETHERTYPE.to_be();
    // SAFETY: the helper checks the offset and length against the packet.
    let rc = unsafe { bpf_xdp_store_bytes(ctx.ctx, 12, (&raw mut proto).cast(), 2) };
    if rc != 0 {
        return Err(DropReason::Truncated);
    }
    event(Event::SlowPath);
    Ok(xdp_action::XDP_PASS)
}

/// Remembers the pool address of an IPv6 datagram whose first fragment was translated.
#[inline(always)]
pub(crate) fn remember_6to4(key: &SessionKey6, id: u32, pool: u32, now: u64) {
    let k = Frag6Key {
        client: key.client,
        remote: key.remote,
        id,
        proto: key.proto,
        _pad: [0; 3],
    };
    let _ = FRAGS6.insert(
        &k,
        &Frag6Value {
            pool,
            _pad: 0,
            seen: now,
        },
        0,
    );
}

/// Remembers the client of an IPv4 datagram whose first fragment was translated.
#[inline(always)]
pub(crate) fn remember_4to6(h: &Ipv4Hdr, client: &[u32; 4]) {
    let k = Frag4Key {
        remote: h.src,
        pool: h.dst,
        id: h.id,
        proto: h.proto,
        _pad: 0,
    };
    let _ = FRAGS4.insert(
        &k,
        &Frag4Value {
            client: *client,
            seen: now(),
        },
        0,
    );
}

/// A later IPv6 fragment, as parsed by `from_ipv6`.
pub(crate) struct Rest6 {
    pub src: [u32; 4],
    pub remote: u32,
    pub f: FragHdr,
    pub tclass: u8,
    pub hop: u8,
    pub payload_len: u16,
}

/// Translates a later IPv6 fragment (offset > 0) into an IPv4 fragment.
#[inline(never)]
pub(crate) fn rest_6to4(ctx: &XdpContext, r: &Rest6) -> Result<u32, DropReason> {
    let proto = match r.f.next_header {
        IPPROTO_TCP | IPPROTO_UDP => r.f.next_header,
        IPPROTO_ICMPV6 => return punt(ctx),
        _ => return Err(DropReason::Fragment),
    };
    let key = Frag6Key {
        client: r.src,
        remote: r.remote,
        id: r.f.id,
        proto,
        _pad: [0; 3],
    };
    // SAFETY: read-only lookup, copied out at once.
    let pool = match unsafe { FRAGS6.get(&key) } {
        Some(v) => v.pool,
        None => return punt(ctx),
    };
    let tot_len = r.payload_len - FRAG_LEN as u16 + IPV4_LEN as u16;
    crate::packet::zeroed_fib!(fib);
    fib.family = AF_INET;
    fib.l4_protocol = proto;
    fib.__bindgen_anon_1.tot_len = tot_len;
    fib.__bindgen_anon_2.tos = r.tclass;
    fib.__bindgen_anon_3.ipv4_src = pool;
    fib.__bindgen_anon_4.ipv4_dst = r.remote;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let verdict = match route(ctx, fib) {
        Err(DropReason::MtuExceeded) => return punt(ctx),
        v => v?,
    };
    let ttl = if verdict == xdp_action::XDP_PASS {
        r.hop
    } else {
        r.hop - 1
    };
    let w = u16::from_be(r.f.off_flags);
    let mf = if w & 1 != 0 { 0x2000 } else { 0 };
    let mut ip4 = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: r.tclass,
        tot_len: tot_len.to_be(),
        id: (u32::from_be(r.f.id) as u16).to_be(),
        frag: ((w >> 3) | mf).to_be(),
        ttl,
        proto,
        csum: 0,
        src: pool,
        dst: r.remote,
    };
    ip4.csum = ipv4_header_checksum(&ip4);
    let eth = out_eth(ctx, verdict, fib, ETH_P_IP)?;
    let p4: *mut Ipv4Hdr = ptr_at(ctx, ETH_LEN + DELTA)?;
    let pe: *mut EthHdr = ptr_at(ctx, DELTA)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        *p4 = ip4;
        *pe = eth;
    }
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, DELTA as i32) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    event(Event::FragmentTranslated);
    translated(ctx, Event::Translated6to4, Event::Bytes6to4);
    forward(ctx, verdict, fib)
}

/// Translates a later IPv4 fragment (offset > 0) to a pool address into an IPv6 fragment.
#[inline(never)]
pub(crate) fn rest_4to6(ctx: &XdpContext, h: &Ipv4Hdr) -> Result<u32, DropReason> {
    let tot_len = u16::from_be(h.tot_len);
    if h.ver_ihl != 0x45 {
        // Options are not translated (RFC 7915 section 4.1): the slow path skips them.
        return if h.ver_ihl & 0x0f < 5 {
            Err(DropReason::Malformed)
        } else {
            punt(ctx)
        };
    }
    if (tot_len as usize) <= IPV4_LEN {
        return Err(DropReason::Malformed);
    }
    if ctx.data() + ETH_LEN + tot_len as usize > ctx.data_end() {
        return Err(DropReason::Truncated);
    }
    if ipv4_header_checksum(h) != 0 {
        return Err(DropReason::BadIpv4Checksum);
    }
    if h.ttl <= 1 {
        return Err(DropReason::HopLimitExceeded);
    }
    let nh = match h.proto {
        IPPROTO_TCP | IPPROTO_UDP => h.proto,
        IPPROTO_ICMP => return punt(ctx),
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    let key = Frag4Key {
        remote: h.src,
        pool: h.dst,
        id: h.id,
        proto: h.proto,
        _pad: 0,
    };
    // SAFETY: read-only lookup, copied out at once.
    let client = match unsafe { FRAGS4.get(&key) } {
        Some(v) => v.client,
        None => return punt(ctx),
    };
    let cfg = config();
    let src6 = rfc6052::raw6(rfc6052::embed(
        rfc6052::from_raw6(&cfg.prefix),
        cfg.prefix_len,
        rfc6052::from_raw4(h.src),
    ));
    let payload_len = tot_len - IPV4_LEN as u16 + FRAG_LEN as u16;
    if payload_len as usize + IPV6_LEN > cfg.ipv6_mtu as usize {
        // Larger than the lowest IPv6 MTU: fragmented further by the slow path.
        return punt(ctx);
    }
    crate::packet::zeroed_fib!(fib);
    fib.family = AF_INET6;
    fib.l4_protocol = nh;
    fib.__bindgen_anon_1.tot_len = payload_len + IPV6_LEN as u16;
    fib.__bindgen_anon_3.ipv6_src = src6;
    fib.__bindgen_anon_4.ipv6_dst = client;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let verdict = match route(ctx, fib) {
        Err(DropReason::MtuExceeded) => return punt(ctx),
        v => v?,
    };
    let hop = if verdict == xdp_action::XDP_PASS {
        h.ttl
    } else {
        h.ttl - 1
    };
    let fw = u16::from_be(h.frag);
    let word = ((fw & 0x1fff) << 3) | if fw & 0x2000 != 0 { 1 } else { 0 };
    let eth = out_eth(ctx, verdict, fib, ETH_P_IPV6)?;
    // SAFETY: the context pointer is the program's own.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(DELTA as i32)) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    let pe: *mut EthHdr = ptr_at(ctx, 0)?;
    let p6: *mut Ipv6Hdr = ptr_at(ctx, ETH_LEN)?;
    let pf: *mut FragHdr = ptr_at(ctx, ETH_LEN + IPV6_LEN)?;
    // SAFETY: bounds checked by ptr_at (after the head adjustment).
    unsafe {
        *pe = eth;
        *p6 = Ipv6Hdr {
            vtc_flow: ((6u32 << 28) | ((h.tos as u32) << 20)).to_be(),
            payload_len: payload_len.to_be(),
            next_header: IPPROTO_FRAGMENT,
            hop_limit: hop,
            src: src6,
            dst: client,
        };
        *pf = FragHdr {
            next_header: nh,
            reserved: 0,
            off_flags: word.to_be(),
            id: (u16::from_be(h.id) as u32).to_be(),
        };
    }
    event(Event::FragmentTranslated);
    translated(ctx, Event::Translated4to6, Event::Bytes4to6);
    forward(ctx, verdict, fib)
}
