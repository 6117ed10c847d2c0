//! The CLAT's user-space slow path: what its TC programs hand over (with the slow-path
//! ethertype) because a program cannot finish it. From the host (the IPv4 interface): packets
//! with IPv4 options (skipped, RFC 7915 section 4.1), packets without DF that must be
//! fragmented once translated, UDP without checksum too long to checksum in the kernel, and
//! fragments of ICMP datagrams (the ICMPv6 checksum covers the whole datagram: reassembled
//! first). From the PLAT (the uplink): IPv6 packets with extension headers, fragments of ICMPv6
//! datagrams (reassembled), and packets to fragment further.
//!
//! The translation is the gateway slow path's (`crate::slowpath`) without state: the mapping is
//! the CLAT's address <-> the host's IPv4 address and the PLAT prefix <-> every other IPv4
//! address; ports do not change and the hop limit is copied. IPv6 leaves through a raw socket
//! (the kernel routes it); IPv4 is handed to the host on the CLAT's interface, written to its
//! veth peer as an Ethernet frame.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    checksum::{sum_bytes, update},
};

use super::discover::Prefix64;
use crate::slowpath::{
    DatagramKey, Pieces, REASSEMBLY_MEMORY, REASSEMBLY_TIMEOUT, SlowPathStats, be16, fragment4,
    fragment6, ipv6_header, packet_socket, pseudo4, pseudo6, raw_socket, rewrite_segment, send_raw,
    skip_extensions, v4_at, v6_at,
};

/// What the slow path translates with (`None` in [`Shared`] while the CLAT is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub prefix: Prefix64,
    pub clat6: Ipv6Addr,
    pub ipv4: Ipv4Addr,
    pub mtu6: usize,
    pub mtu4: usize,
    /// Where IPv4 for the host is written: the veth peer, and the MAC addresses of the frame.
    pub peer_ifindex: u32,
    pub v4_mac: [u8; 6],
    pub peer_mac: [u8; 6],
}

pub type Shared = Arc<RwLock<Option<Params>>>;

/// A translated packet: IPv6 packets for the uplink or IPv4 ones for the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Up(Vec<Vec<u8>>),
    Host(Vec<Vec<u8>>),
}

/// Sum of the address words of a pseudo-header (what changes between families).
fn addr_sum(a: &[u8]) -> u32 {
    sum_bytes(a)
}

/// Adjusts the transport checksum at `at` of a first fragment for new pseudo-header addresses
/// (the upper-layer length and protocol are the same in both pseudo-headers), RFC 1624.
fn adjust(seg: &mut [u8], at: usize, old: u32, new: u32, udp: bool) -> Result<(), &'static str> {
    if seg.len() < at + 2 {
        return Err("transport header truncated");
    }
    let c = u16::from_ne_bytes([seg[at], seg[at + 1]]);
    if udp && c == 0 {
        return Err("UDP without checksum, fragmented: cannot be translated (RFC 7915 4.5)");
    }
    let r = update(c, old, new);
    let r = if udp && r == 0 { 0xffff } else { r };
    seg[at..at + 2].copy_from_slice(&r.to_ne_bytes());
    Ok(())
}

fn csum_at(proto: u8) -> Option<usize> {
    match proto {
        IPPROTO_TCP => Some(16),
        IPPROTO_UDP => Some(6),
        _ => None,
    }
}

/// Translates one IPv4 packet from the host (ethertype stripped).
pub fn from_host(
    p: &Params,
    pkt: &[u8],
    pending: &mut Reassembly,
) -> Result<Option<Out>, &'static str> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return Err("not IPv4");
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let tot = usize::from(be16(pkt, 2));
    if ihl < 20 || tot < ihl || tot > pkt.len() {
        return Err("IPv4 length");
    }
    let pkt = &pkt[..tot];
    let (src, dst, proto, ttl, tos, id) = (
        v4_at(pkt, 12),
        v4_at(pkt, 16),
        pkt[9],
        pkt[8],
        pkt[1],
        be16(pkt, 4),
    );
    if src != p.ipv4 {
        return Err("not from the host's CLAT address");
    }
    let dst6 = p.prefix.embed(dst);
    let fw = be16(pkt, 6);
    let (off, more, df) = (
        usize::from(fw & 0x1fff) * 8,
        fw & 0x2000 != 0,
        fw & 0x4000 != 0,
    );
    let nh = if proto == IPPROTO_ICMP {
        IPPROTO_ICMPV6
    } else {
        proto
    };
    let payload = pkt[ihl..].to_vec();
    if off != 0 || more {
        if proto == IPPROTO_ICMP {
            let key = DatagramKey::V4 {
                src,
                dst,
                proto,
                id,
            };
            let Some((seg, ttl, tos)) = pending.add(key, off, payload, more, proto, ttl, tos)?
            else {
                return Ok(None);
            };
            return whole_up(p, (src, dst), dst6, proto, ttl, tos, u32::from(id), seg).map(Some);
        }
        let mut data = payload;
        if off == 0 {
            let at = csum_at(proto).ok_or("protocol not translated")?;
            let old = addr_sum(&[src.octets(), dst.octets()].concat());
            let new = addr_sum(&[p.clat6.octets(), dst6.octets()].concat());
            adjust(&mut data, at, old, new, proto == IPPROTO_UDP)?;
        }
        return Ok(Some(Out::Up(fragment6(
            p.clat6,
            dst6,
            nh,
            ttl,
            tos,
            u32::from(id),
            off,
            more,
            &data,
            p.mtu6,
        ))));
    }
    if df && 40 + payload.len() > p.mtu6 {
        return Err("DF set and too big for the uplink");
    }
    whole_up(p, (src, dst), dst6, proto, ttl, tos, u32::from(id), payload).map(Some)
}

/// A whole IPv4 datagram's transport segment, to IPv6 (fragmented to fit the uplink). The
/// checksum is updated over what changes, so a wrong one stays wrong (as in the data plane).
#[allow(clippy::too_many_arguments)]
fn whole_up(
    p: &Params,
    (src4, dst4): (Ipv4Addr, Ipv4Addr),
    dst6: Ipv6Addr,
    proto4: u8,
    ttl: u8,
    tos: u8,
    id: u32,
    mut seg: Vec<u8>,
) -> Result<Out, &'static str> {
    let nh = if proto4 == IPPROTO_ICMP {
        IPPROTO_ICMPV6
    } else {
        proto4
    };
    let pseudo_in = if proto4 == IPPROTO_ICMP {
        Vec::new()
    } else {
        pseudo4(src4, dst4, proto4, seg.len())
    };
    let pseudo_out = pseudo6(p.clat6, dst6, nh, seg.len());
    rewrite_segment(&mut seg, proto4, None, None, &pseudo_in, &pseudo_out)?;
    if 40 + seg.len() <= p.mtu6 {
        let mut pkt = ipv6_header(p.clat6, dst6, nh, ttl, tos, seg.len());
        pkt.extend(&seg);
        return Ok(Out::Up(vec![pkt]));
    }
    Ok(Out::Up(fragment6(
        p.clat6, dst6, nh, ttl, tos, id, 0, false, &seg, p.mtu6,
    )))
}

/// Translates one IPv6 packet from the PLAT (ethertype stripped).
pub fn to_host(
    p: &Params,
    pkt: &[u8],
    pending: &mut Reassembly,
) -> Result<Option<Out>, &'static str> {
    if pkt.len() < 48 || pkt[0] >> 4 != 6 {
        return Err("not IPv6");
    }
    let plen = usize::from(be16(pkt, 4));
    if 40 + plen > pkt.len() {
        return Err("IPv6 length");
    }
    let pkt = &pkt[..40 + plen];
    let (src, dst, hop) = (v6_at(pkt, 8), v6_at(pkt, 24), pkt[7]);
    if dst != p.clat6 || !p.prefix.contains(src) {
        return Err("not from the PLAT prefix to the CLAT's address");
    }
    let src4 = p.prefix.extract(src);
    let tclass = ((u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]) >> 20) & 0xff) as u8;
    let (nh, at) = skip_extensions(pkt, pkt[6], 40, true)?;
    if nh != 44 {
        return whole_host(p, (src, src4), nh, hop, tclass, 0, pkt[at..].to_vec()).map(Some);
    }
    if pkt.len() < at + 8 {
        return Err("fragment header truncated");
    }
    let inner = pkt[at];
    let word = be16(pkt, at + 2);
    let id = u32::from_be_bytes([pkt[at + 4], pkt[at + 5], pkt[at + 6], pkt[at + 7]]);
    let (off, more) = (usize::from(word >> 3) * 8, word & 1 != 0);
    let data = pkt[at + 8..].to_vec();
    if inner == IPPROTO_ICMPV6 || (off == 0 && !more) {
        // ICMPv6 (whole-datagram checksum), or an atomic fragment: translated whole.
        let key = DatagramKey::V6 { src, dst, id };
        let Some((seg, hop, tclass)) = pending.add(key, off, data, more, inner, hop, tclass)?
        else {
            return Ok(None);
        };
        let (nh, start) = skip_extensions(&seg, inner, 0, false)?;
        return whole_host(
            p,
            (src, src4),
            nh,
            hop,
            tclass,
            id as u16,
            seg[start..].to_vec(),
        )
        .map(Some);
    }
    let mut data = data;
    if off == 0 {
        let at = csum_at(inner).ok_or("protocol not translated")?;
        let old = addr_sum(&[src.octets(), dst.octets()].concat());
        let new = addr_sum(&[src4.octets(), p.ipv4.octets()].concat());
        adjust(&mut data, at, old, new, inner == IPPROTO_UDP)?;
    } else if inner != IPPROTO_TCP && inner != IPPROTO_UDP {
        return Err("fragment of a protocol not translated");
    }
    Ok(Some(Out::Host(fragment4(
        src4, p.ipv4, inner, hop, tclass, id as u16, off, more, &data, p.mtu4,
    ))))
}

/// A whole IPv6 datagram's transport segment, to IPv4 for the host (checksum updated over
/// what changes).
fn whole_host(
    p: &Params,
    (src6, src4): (Ipv6Addr, Ipv4Addr),
    nh: u8,
    hop: u8,
    tclass: u8,
    id: u16,
    mut seg: Vec<u8>,
) -> Result<Out, &'static str> {
    let proto4 = if nh == IPPROTO_ICMPV6 {
        IPPROTO_ICMP
    } else {
        nh
    };
    let pseudo_in = pseudo6(src6, p.clat6, nh, seg.len());
    let pseudo_out = if proto4 == IPPROTO_ICMP {
        Vec::new()
    } else {
        pseudo4(src4, p.ipv4, proto4, seg.len())
    };
    rewrite_segment(&mut seg, nh, None, None, &pseudo_in, &pseudo_out)?;
    Ok(Out::Host(fragment4(
        src4, p.ipv4, proto4, hop, tclass, id, 0, false, &seg, p.mtu4,
    )))
}

// ------------------------------------------------------------------------------------------------
// Reassembly

/// A reassembled datagram: its transport segment, hop limit (TTL) and traffic class (TOS).
type Datagram = (Vec<u8>, u8, u8);

/// Datagrams being reassembled, bounded in memory and time.
#[derive(Default)]
pub struct Reassembly {
    pending: HashMap<DatagramKey, Pieces>,
    held: usize,
    pub timed_out: u64,
    pub reassembled: u64,
}

impl Reassembly {
    /// Adds a fragment; the datagram's transport segment, hop limit and traffic class once
    /// it is complete.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        key: DatagramKey,
        off: usize,
        data: Vec<u8>,
        more: bool,
        proto: u8,
        ttl: u8,
        tos: u8,
    ) -> Result<Option<Datagram>, &'static str> {
        if self.held + data.len() > REASSEMBLY_MEMORY {
            return Err("reassembly memory full");
        }
        self.held += data.len();
        let e = self.pending.entry(key.clone()).or_insert_with(|| Pieces {
            first_seen: Instant::now(),
            parts: Vec::new(),
            proto,
            ttl,
            tos,
            bytes: 0,
        });
        e.bytes += data.len();
        e.parts.push((off, data, more, Vec::new()));
        let Some(whole) = e.complete() else {
            return Ok(None);
        };
        let Some(p) = self.pending.remove(&key) else {
            return Err("lost datagram");
        };
        self.held = self.held.saturating_sub(p.bytes);
        if p.parts.len() > 1 {
            self.reassembled += 1;
        }
        Ok(Some((whole, p.ttl, p.tos)))
    }

    /// Forgets datagrams that waited too long.
    fn sweep(&mut self) {
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = p.first_seen.elapsed() <= REASSEMBLY_TIMEOUT;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.held = self.held.saturating_sub(freed);
        self.timed_out += (before - self.pending.len()) as u64;
    }
}

// ------------------------------------------------------------------------------------------------
// The running slow path

/// A packet socket that writes frames to the veth peer (they arrive on the CLAT's interface).
fn injector() -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("packet socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn inject(fd: &OwnedFd, p: &Params, ip: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(14 + ip.len());
    frame.extend(p.v4_mac);
    frame.extend(p.peer_mac);
    frame.extend(0x0800u16.to_be_bytes());
    frame.extend(ip);
    // SAFETY: zeroed sockaddr_ll is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = 0x0800u16.to_be();
    sll.sll_ifindex = p.peer_ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&p.v4_mac);
    // SAFETY: valid buffer and address.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts one thread per direction (frames handed over on the IPv4 interface, and on the
/// uplink). They run until `stop` is set.
pub fn start(
    v4_ifindex: u32,
    uplink_ifindex: u32,
    params: Shared,
    stats: Arc<SlowPathStats>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (ifindex, up) in [(v4_ifindex, true), (uplink_ifindex, false)] {
        let sock = packet_socket(ifindex).context("the CLAT's slow path")?;
        let v6 = raw_socket(libc::AF_INET6).context("the CLAT's slow path")?;
        let v4 = injector().context("the CLAT's slow path")?;
        let (params, stats, stop) = (params.clone(), stats.clone(), stop.clone());
        let h = std::thread::Builder::new()
            .name(if up { "clat-slow-up" } else { "clat-slow-down" }.to_owned())
            .spawn(move || {
                let mut pending = Reassembly::default();
                let mut buf = vec![0u8; 65536 + 14];
                let mut last_sweep = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: valid buffer.
                    let n = unsafe {
                        libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    };
                    let current = params.read().ok().and_then(|g| *g);
                    if n > 14
                        && let Some(p) = current
                    {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        let pkt = &buf[14..n as usize];
                        let r = if up {
                            from_host(&p, pkt, &mut pending)
                        } else {
                            to_host(&p, pkt, &mut pending)
                        };
                        match r {
                            Ok(Some(out)) => emit(&stats, &v6, &v4, &p, &out),
                            Ok(None) => {}
                            Err(e) => {
                                stats.dropped.fetch_add(1, Ordering::Relaxed);
                                log::debug!("CLAT slow path: dropped a packet: {e}");
                            }
                        }
                    }
                    if last_sweep.elapsed() >= Duration::from_millis(500) {
                        pending.sweep();
                        stats
                            .timed_out
                            .fetch_add(std::mem::take(&mut pending.timed_out), Ordering::Relaxed);
                        stats
                            .reassembled
                            .fetch_add(std::mem::take(&mut pending.reassembled), Ordering::Relaxed);
                        last_sweep = Instant::now();
                    }
                }
            })
            .context("starting the CLAT's slow path thread")?;
        handles.push(h);
    }
    Ok(handles)
}

fn emit(stats: &SlowPathStats, v6: &OwnedFd, v4: &OwnedFd, p: &Params, out: &Out) {
    let (pkts, up) = match out {
        Out::Up(v) => (v, true),
        Out::Host(v) => (v, false),
    };
    let mut sent = 0;
    for pkt in pkts {
        let r = if up {
            send_raw(v6, pkt)
        } else {
            inject(v4, p, pkt)
        };
        match r {
            Ok(()) => sent += 1,
            Err(e) => log::debug!("CLAT slow path: sending: {e}"),
        }
    }
    stats.translated.fetch_add(1, Ordering::Relaxed);
    if pkts.len() > 1 {
        stats.fragments_sent.fetch_add(sent, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slowpath::{ipv4_header, l4_checksum};
    use translator_common::checksum::finish;

    fn params() -> Params {
        Params {
            prefix: Prefix64::parse("2001:db8:64::/96").unwrap(),
            clat6: "2001:db8:1::c1a7".parse().unwrap(),
            ipv4: Ipv4Addr::new(192, 0, 0, 1),
            mtu6: 1280,
            mtu4: 1260,
            peer_ifindex: 0,
            v4_mac: [2, 0, 0, 0, 0, 1],
            peer_mac: [2, 0, 0, 0, 0, 2],
        }
    }

    fn udp4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let mut seg = vec![0x30, 0x39, 0x00, 0x35];
        seg.extend(((8 + payload.len()) as u16).to_be_bytes());
        seg.extend([0, 0]);
        seg.extend(payload);
        let c = l4_checksum(&pseudo4(src, dst, IPPROTO_UDP, seg.len()), &seg);
        seg[6..8].copy_from_slice(&c.to_ne_bytes());
        seg
    }

    #[test]
    fn a_large_udp_datagram_without_df_is_fragmented_to_fit_1280() {
        let p = params();
        let dst = Ipv4Addr::new(192, 0, 2, 2);
        let seg = udp4(p.ipv4, dst, &[7u8; 1400]);
        let mut pkt = ipv4_header(p.ipv4, dst, IPPROTO_UDP, 64, 0, 0x1234, 0, seg.len());
        pkt.extend(&seg);
        let mut r = Reassembly::default();
        let Some(Out::Up(frags)) = from_host(&p, &pkt, &mut r).unwrap() else {
            panic!("not translated up");
        };
        assert_eq!(frags.len(), 2);
        for f in &frags {
            assert!(f.len() <= 1280);
            assert_eq!(v6_at(f, 8), p.clat6);
            assert_eq!(v6_at(f, 24), p.prefix.embed(dst));
            // Hop limit copied, not decremented.
            assert_eq!(f[7], 64);
        }
        // The UDP checksum over the reassembled datagram verifies.
        let mut whole = frags[0][48..].to_vec();
        whole.extend(&frags[1][48..]);
        let ps = pseudo6(p.clat6, p.prefix.embed(dst), IPPROTO_UDP, whole.len());
        assert_eq!(l4_checksum(&ps, &whole), 0);
    }

    #[test]
    fn a_first_fragment_gets_its_checksum_adjusted() {
        let p = params();
        let dst = Ipv4Addr::new(192, 0, 2, 2);
        let seg = udp4(p.ipv4, dst, &[9u8; 64]);
        // The datagram in two IPv4 fragments (first 40 bytes, then the rest).
        let mut f1 = ipv4_header(p.ipv4, dst, IPPROTO_UDP, 64, 0, 7, 0x2000, 40);
        f1.extend(&seg[..40]);
        let mut f2 = ipv4_header(p.ipv4, dst, IPPROTO_UDP, 64, 0, 7, 5, seg.len() - 40);
        f2.extend(&seg[40..]);
        let mut r = Reassembly::default();
        let mut up = Vec::new();
        for f in [f1, f2] {
            let Some(Out::Up(v)) = from_host(&p, &f, &mut r).unwrap() else {
                panic!("not translated");
            };
            up.extend(v);
        }
        assert_eq!(up.len(), 2);
        let mut whole = up[0][48..].to_vec();
        whole.extend(&up[1][48..]);
        assert_eq!(whole.len(), seg.len());
        let ps = pseudo6(p.clat6, p.prefix.embed(dst), IPPROTO_UDP, whole.len());
        assert_eq!(l4_checksum(&ps, &whole), 0);
    }

    #[test]
    fn fragmented_icmpv6_echo_is_reassembled_for_the_host() {
        let p = params();
        let src = p.prefix.embed(Ipv4Addr::new(192, 0, 2, 2));
        let mut seg = vec![129, 0, 0, 0, 0, 1, 0, 1];
        seg.extend([5u8; 1500]);
        let c = l4_checksum(&pseudo6(src, p.clat6, IPPROTO_ICMPV6, seg.len()), &seg);
        seg[2..4].copy_from_slice(&c.to_ne_bytes());
        let frags = fragment6(
            src,
            p.clat6,
            IPPROTO_ICMPV6,
            60,
            0,
            99,
            0,
            false,
            &seg,
            1280,
        );
        assert_eq!(frags.len(), 2);
        let mut r = Reassembly::default();
        assert_eq!(to_host(&p, &frags[1], &mut r), Ok(None));
        let Some(Out::Host(v4)) = to_host(&p, &frags[0], &mut r).unwrap() else {
            panic!("not reassembled");
        };
        assert_eq!(r.reassembled, 1);
        // Two IPv4 fragments of at most 1260 bytes, ICMP echo reply, checksum over the whole.
        assert!(v4.iter().all(|f| f.len() <= 1260));
        let mut whole = Vec::new();
        for f in &v4 {
            assert_eq!(v4_at(f, 12), Ipv4Addr::new(192, 0, 2, 2));
            assert_eq!(v4_at(f, 16), p.ipv4);
            assert_eq!(f[8], 60);
            whole.extend(&f[20..]);
        }
        assert_eq!(whole[0], 0);
        assert_eq!(finish(sum_bytes(&whole)), 0);
    }

    #[test]
    fn only_the_clat_mapping_is_translated() {
        let p = params();
        let other = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(192, 0, 2, 2);
        let seg = udp4(other, dst, b"x");
        let mut pkt = ipv4_header(other, dst, IPPROTO_UDP, 64, 0, 1, 0, seg.len());
        pkt.extend(&seg);
        let mut r = Reassembly::default();
        assert!(from_host(&p, &pkt, &mut r).is_err());
        let outside: Ipv6Addr = "2001:db8:99::1".parse().unwrap();
        let mut v6 = ipv6_header(outside, p.clat6, IPPROTO_UDP, 64, 0, 8);
        v6.extend([0u8; 8]);
        assert!(to_host(&p, &v6, &mut r).is_err());
        assert!(from_host(&p, &[0x45; 10], &mut r).is_err());
        assert!(to_host(&p, &[0x60; 10], &mut r).is_err());
    }
}
