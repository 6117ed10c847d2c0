//! The user-space slow path: what XDP cannot finish (RFC 7915 sections 4.1 and 5.1.1).
//!
//! The data plane hands frames over by rewriting their ethertype to
//! [`SLOW_PATH_ETHERTYPE`] and passing them to the kernel; a packet socket per interface
//! receives them here. Three cases arrive:
//! - fragments of ICMP datagrams (the ICMP checksum covers the whole datagram): reassembled,
//!   translated whole, fragmented again to fit;
//! - fragments whose first fragment had not passed yet: held until the data plane has
//!   translated the first one (its fragment map says where the datagram goes), then translated
//!   one by one, or reassembled if the whole datagram ends up here;
//! - packets that must be fragmented after translation (IPv4 with DF clear larger than the
//!   IPv6 MTU, IPv6 fragments larger than the IPv4 link).
//!
//! The worker of the IPv4-side interface also answers the inbound SYNs the data plane held
//! (`held`: RFC 6146 section 3.5.2.2).
//!
//! Translated packets leave through raw sockets (header included), so the kernel routes them
//! and resolves neighbours. The translation rules are the data plane's, on whole buffers:
//! the same session tables, the same RFC 6052 mapping, checksums computed in full.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use translator_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    maps::{SLOW_PATH_ETHERTYPE, SessionKey4, SessionKey6},
    rfc6052,
};

use crate::{config::Config, dataplane::Maps};

mod held;
mod reassembly;
#[cfg(test)]
mod tests;
mod translate;

pub(crate) use reassembly::{DatagramKey, Pieces};
pub(crate) use translate::{be16, ipv6_header, pseudo4, pseudo6, rewrite_segment, v4_at, v6_at};
pub use translate::{fragment4, fragment6, skip_extensions, whole_4to6, whole_6to4};
#[cfg(test)]
pub(crate) use translate::{ipv4_header, l4_checksum};

/// How long fragments wait for the rest of their datagram (RFC 8200 section 4.5 says 60 s;
/// shorter keeps memory low under attack).
pub(crate) const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes held for reassembly at most, all datagrams together.
pub(crate) const REASSEMBLY_MEMORY: usize = 8 << 20;
/// Largest datagram reassembled.
pub(crate) const MAX_DATAGRAM: usize = 65535;

/// Counters of the slow path, shown by `translator stats`.
#[derive(Debug, Default)]
pub struct SlowPathStats {
    pub received: AtomicU64,
    pub translated: AtomicU64,
    pub fragments_sent: AtomicU64,
    pub reassembled: AtomicU64,
    pub timed_out: AtomicU64,
    pub dropped: AtomicU64,
    /// Held inbound SYNs answered with port unreachable, found opened, left unanswered.
    pub held_syn_answered: AtomicU64,
    pub held_syn_session_found: AtomicU64,
    pub held_syn_unanswered: AtomicU64,
}

impl SlowPathStats {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("slow-path-received", self.received.load(Ordering::Relaxed)),
            (
                "slow-path-translated",
                self.translated.load(Ordering::Relaxed),
            ),
            (
                "slow-path-fragments-sent",
                self.fragments_sent.load(Ordering::Relaxed),
            ),
            (
                "slow-path-reassembled",
                self.reassembled.load(Ordering::Relaxed),
            ),
            (
                "slow-path-timed-out",
                self.timed_out.load(Ordering::Relaxed),
            ),
            ("slow-path-dropped", self.dropped.load(Ordering::Relaxed)),
            (
                "held-syn-answered",
                self.held_syn_answered.load(Ordering::Relaxed),
            ),
            (
                "held-syn-session-found",
                self.held_syn_session_found.load(Ordering::Relaxed),
            ),
            (
                "held-syn-unanswered",
                self.held_syn_unanswered.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// What translation needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub prefix: u128,
    pub prefix_len: u8,
    /// Largest IPv6 packet sent (fragments are cut to fit).
    pub ipv6_mtu: usize,
    /// Largest IPv4 packet sent.
    pub ipv4_mtu: usize,
}

/// A translated packet: the IP packet to send (or its fragments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    V4(Vec<Vec<u8>>),
    V6(Vec<Vec<u8>>),
}

// ------------------------------------------------------------------------------------------------
// The running slow path.

/// Raw sockets that send IPv4 and IPv6 packets with their headers included.
struct Senders {
    v4: OwnedFd,
    v6: OwnedFd,
}

pub(crate) fn raw_socket(family: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket call.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        bail!("raw socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Senders {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            v4: raw_socket(libc::AF_INET)?,
            v6: raw_socket(libc::AF_INET6)?,
        })
    }

    fn send(&self, out: &Output) -> usize {
        let (fd, pkts, family) = match out {
            Output::V4(pkts) => (&self.v4, pkts, "IPv4"),
            Output::V6(pkts) => (&self.v6, pkts, "IPv6"),
        };
        let mut sent = 0;
        for p in pkts {
            match send_raw(fd, p) {
                Ok(()) => sent += 1,
                Err(e) => log::debug!("slow path: sending {family}: {e}"),
            }
        }
        sent
    }
}

/// Sends a whole IP packet (header included) on a raw socket, to the packet's destination.
pub(crate) fn send_raw(fd: &OwnedFd, p: &[u8]) -> std::io::Result<()> {
    let dst: std::net::IpAddr = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => std::net::Ipv4Addr::from([p[16], p[17], p[18], p[19]]).into(),
        Some(6) if p.len() >= 40 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&p[24..40]);
            std::net::Ipv6Addr::from(a).into()
        }
        _ => return Err(std::io::Error::other("not an IP packet")),
    };
    let sa = socket2::SockAddr::from(std::net::SocketAddr::new(dst, 0));
    // SAFETY: valid buffer, and an address of the length given.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            p.as_ptr().cast(),
            p.len(),
            0,
            sa.as_ptr().cast(),
            sa.len(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A packet socket receiving the slow-path ethertype on one interface.
pub(crate) fn packet_socket(ifindex: u32) -> anyhow::Result<OwnedFd> {
    let proto = SLOW_PATH_ETHERTYPE.to_be();
    // SAFETY: plain socket call.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        bail!("packet socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid address of the right size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        bail!(
            "binding the packet socket: {}",
            std::io::Error::last_os_error()
        );
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: valid option value.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    Ok(fd)
}

/// The MTU of an interface in the current namespace.
pub(crate) fn interface_mtu(name: &str) -> Option<usize> {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: valid request and struct.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) } != 0 {
        return None;
    }
    // SAFETY: SIOCGIFMTU filled the mtu member.
    Some(unsafe { ifr.ifr_ifru.ifru_mtu } as usize)
}

/// Starts the slow path on its own threads (one per interface). Runs until `stop` is set.
pub fn start(
    cfg: &Config,
    pins: &std::path::Path,
    stats: Arc<SlowPathStats>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let params = Params {
        prefix: u128::from(cfg.prefix.addr),
        prefix_len: cfg.prefix.len,
        ipv6_mtu: usize::from(cfg.ipv6_mtu),
        ipv4_mtu: interface_mtu(&cfg.ipv4_interface).unwrap_or(1500),
    };
    let mut handles = Vec::new();
    for iface in crate::dataplane::interfaces(cfg) {
        let ifindex = crate::netns::ifindex(&iface)
            .with_context(|| format!("slow path: no interface {iface}"))?;
        let sock = packet_socket(ifindex).with_context(|| format!("slow path on {iface}"))?;
        let senders = Senders::new().context("slow path")?;
        let maps = Maps::open(pins)?;
        let stats = stats.clone();
        let stop = stop.clone();
        let cfg = cfg.clone();
        // One worker answers the held SYNs: the IPv4 side's (the answers go out there).
        let answers_held = iface == cfg.ipv4_interface;
        let h = std::thread::Builder::new()
            .name(format!("slowpath-{iface}"))
            .spawn(move || {
                let mut sp = Worker {
                    params,
                    budget: held::Budget::new(cfg.icmp_errors_per_second),
                    answers_held,
                    cfg,
                    maps,
                    senders,
                    stats,
                    pending: HashMap::new(),
                    held: 0,
                };
                sp.run(&sock, &stop);
            })
            .context("starting the slow path thread")?;
        handles.push(h);
    }
    Ok(handles)
}

/// A TCP segment's flags (0 for other protocols, or a segment too short to have them).
fn tcp_flags(proto: u8, seg: &[u8]) -> u8 {
    if proto == IPPROTO_TCP {
        seg.get(13).copied().unwrap_or(0)
    } else {
        0
    }
}

struct Worker {
    params: Params,
    cfg: Config,
    maps: Maps,
    senders: Senders,
    stats: Arc<SlowPathStats>,
    pending: HashMap<DatagramKey, Pieces>,
    held: usize,
    /// Whether this worker answers the held inbound SYNs, and its ICMP error budget.
    answers_held: bool,
    budget: held::Budget,
}

impl Worker {
    fn run(&mut self, sock: &OwnedFd, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65536 + 14];
        let mut last_sweep = Instant::now();
        let mut last_held = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: valid buffer.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 14 {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let frame = &buf[14..n as usize];
                if let Err(e) = self.packet(frame) {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    log::debug!("slow path: dropped a packet: {e}");
                }
            }
            if last_sweep.elapsed() >= Duration::from_millis(100) {
                self.sweep();
                last_sweep = Instant::now();
            }
            if self.answers_held && last_held.elapsed() >= held::EVERY {
                let answers = held::due(&mut self.maps, &mut self.budget, &self.stats);
                if !answers.is_empty() {
                    self.senders.send(&Output::V4(answers));
                }
                last_held = Instant::now();
            }
        }
    }

    fn emit(&self, out: &Output) {
        let n = self.senders.send(out);
        self.stats.translated.fetch_add(1, Ordering::Relaxed);
        let frags = match out {
            Output::V4(p) | Output::V6(p) => p.len(),
        };
        if frags > 1 {
            self.stats
                .fragments_sent
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn packet(&mut self, pkt: &[u8]) -> Result<(), &'static str> {
        match pkt.first().map(|b| b >> 4) {
            Some(4) => self.packet4(pkt),
            Some(6) => self.packet6(pkt),
            _ => Err("not IP"),
        }
    }

    fn packet4(&mut self, pkt: &[u8]) -> Result<(), &'static str> {
        if pkt.len() < 20 {
            return Err("IPv4 header truncated");
        }
        // Options are not translated (RFC 7915 section 4.1): skipped.
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
        let fw = be16(pkt, 6);
        let (off, more) = (usize::from(fw & 0x1fff) * 8, fw & 0x2000 != 0);
        if off == 0 && !more {
            // A whole packet that must be fragmented after translation, or has options.
            let seg = pkt[ihl..].to_vec();
            let client = self.client_of(src, dst, proto, &seg)?;
            let out = whole_4to6(&self.params, src, dst, proto, ttl, tos, id, seg, client)?;
            self.emit(&out);
            return Ok(());
        }
        let key = DatagramKey::V4 {
            src,
            dst,
            proto,
            id,
        };
        self.hold(
            key,
            off,
            pkt[ihl..].to_vec(),
            more,
            pkt.to_vec(),
            proto,
            ttl,
            tos,
        )
    }

    fn packet6(&mut self, pkt: &[u8]) -> Result<(), &'static str> {
        if pkt.len() < 48 {
            return Err("IPv6 packet truncated");
        }
        let plen = usize::from(be16(pkt, 4));
        if 40 + plen > pkt.len() {
            return Err("IPv6 length");
        }
        let pkt = &pkt[..40 + plen];
        let (src, dst, hop) = (v6_at(pkt, 8), v6_at(pkt, 24), pkt[7]);
        let tclass = ((u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]) >> 20) & 0xff) as u8;
        // Extension headers RFC 7915 lets a translator skip, up to a fragment header.
        let (nh, off) = skip_extensions(pkt, pkt[6], 40, true)?;
        if nh != 44 {
            let seg = pkt[off..].to_vec();
            let out = self.out_6to4(src, dst, (nh, hop, tclass), 0, seg)?;
            self.emit(&out);
            return Ok(());
        }
        if pkt.len() < off + 8 {
            return Err("fragment header truncated");
        }
        let inner = pkt[off];
        let word = be16(pkt, off + 2);
        let id = u32::from_be_bytes([pkt[off + 4], pkt[off + 5], pkt[off + 6], pkt[off + 7]]);
        let (frag_off, more) = (usize::from(word >> 3) * 8, word & 1 != 0);
        let key = DatagramKey::V6 { src, dst, id };
        self.hold(
            key,
            frag_off,
            pkt[off + 8..].to_vec(),
            more,
            pkt.to_vec(),
            inner,
            hop,
            tclass,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        key: DatagramKey,
        off: usize,
        data: Vec<u8>,
        more: bool,
        whole: Vec<u8>,
        proto: u8,
        ttl: u8,
        tos: u8,
    ) -> Result<(), &'static str> {
        if self.held + data.len() > REASSEMBLY_MEMORY {
            return Err("reassembly memory full");
        }
        self.held += data.len() + whole.len();
        let e = self.pending.entry(key.clone()).or_insert_with(|| Pieces {
            first_seen: Instant::now(),
            parts: Vec::new(),
            proto,
            ttl,
            tos,
            bytes: 0,
        });
        e.bytes += data.len() + whole.len();
        e.parts.push((off, data, more, whole));
        if let Some(datagram) = e.complete() {
            let p = self.pending.remove(&key).ok_or("lost datagram")?;
            self.held = self.held.saturating_sub(p.bytes);
            self.stats.reassembled.fetch_add(1, Ordering::Relaxed);
            return self.datagram(&key, &p, datagram);
        }
        Ok(())
    }

    /// A reassembled datagram.
    fn datagram(
        &mut self,
        key: &DatagramKey,
        p: &Pieces,
        seg: Vec<u8>,
    ) -> Result<(), &'static str> {
        let out = match *key {
            DatagramKey::V4 {
                src,
                dst,
                proto,
                id,
            } => {
                let client = self.client_of(src, dst, proto, &seg)?;
                whole_4to6(&self.params, src, dst, proto, p.ttl, p.tos, id, seg, client)?
            }
            DatagramKey::V6 { src, dst, id } => {
                let (nh, start) = skip_extensions(&seg, p.proto, 0, false)?;
                let seg = seg[start..].to_vec();
                self.out_6to4(src, dst, (nh, p.ttl, p.tos), id, seg)?
            }
        };
        self.emit(&out);
        Ok(())
    }

    /// Translates a whole IPv6 datagram from a client; when its destination is a pool address
    /// (hairpinning, RFC 6146 section 3.8) the IPv4 packet it would become comes straight back
    /// in as IPv6 toward the client owning that mapping, as the data plane does.
    fn out_6to4(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        (nh, hop, tclass): (u8, u8, u8),
        id: u32,
        mut seg: Vec<u8>,
    ) -> Result<Output, &'static str> {
        let pool = self.pool_of(src, dst, nh, &seg)?;
        let remote = Ipv4Addr::from(rfc6052::extract(u128::from(dst), self.params.prefix_len));
        if !self.cfg.pool.contains(&remote) {
            return whole_6to4(
                &self.params,
                src,
                dst,
                nh,
                hop,
                tclass,
                id as u16,
                seg,
                pool,
            );
        }
        // The translated packet's IPv4-side session key, as the data plane makes it: ICMP echo
        // goes to the mapping its (translated) identifier names.
        let icmp = nh == IPPROTO_ICMPV6;
        let (pool_port, remote_port) = if icmp {
            (pool.1, 0)
        } else {
            (be16(&seg, 2), pool.1)
        };
        let k4 = SessionKey4 {
            pool: rfc6052::raw4(u32::from(remote)),
            remote: rfc6052::raw4(u32::from(pool.0)),
            pool_port_be: pool_port.to_be(),
            remote_port_be: remote_port.to_be(),
            proto: if icmp { IPPROTO_ICMP } else { nh },
            _pad: [0; 3],
        };
        let (peer, peer_port) = self
            .maps
            .inbound_session(&self.cfg, &k4, tcp_flags(nh, &seg))
            .map_err(|e| {
                log::debug!("slow path: hairpin to {remote}: {e:#}");
                "no session"
            })?;
        let src6 = Ipv6Addr::from(rfc6052::embed(
            self.params.prefix,
            self.params.prefix_len,
            u32::from(pool.0),
        ));
        let pseudo_in = pseudo6(src, dst, nh, seg.len());
        let pseudo_out = pseudo6(src6, peer, nh, seg.len());
        let ports = if icmp {
            (None, Some(peer_port))
        } else {
            (Some(pool.1), Some(peer_port))
        };
        rewrite_segment(&mut seg, nh, ports.0, ports.1, &pseudo_in, &pseudo_out)?;
        let hop = hop.saturating_sub(1);
        if 40 + seg.len() <= self.params.ipv6_mtu {
            let mut pkt = ipv6_header(src6, peer, nh, hop, tclass, seg.len());
            pkt.extend(&seg);
            return Ok(Output::V6(vec![pkt]));
        }
        Ok(Output::V6(fragment6(
            src6,
            peer,
            nh,
            hop,
            tclass,
            id,
            0,
            false,
            &seg,
            self.params.ipv6_mtu,
        )))
    }

    /// The session client of an IPv4 datagram to a pool address (from its transport header).
    fn client_of(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        seg: &[u8],
    ) -> Result<(Ipv6Addr, u16), &'static str> {
        if seg.len() < 8 {
            return Err("transport header truncated");
        }
        let (pool_port, remote_port) = match proto {
            IPPROTO_TCP | IPPROTO_UDP => (be16(seg, 2), be16(seg, 0)),
            IPPROTO_ICMP => (be16(seg, 4), 0),
            _ => return Err("protocol not translated"),
        };
        let k = SessionKey4 {
            pool: rfc6052::raw4(u32::from(dst)),
            remote: rfc6052::raw4(u32::from(src)),
            pool_port_be: pool_port.to_be(),
            remote_port_be: remote_port.to_be(),
            proto,
            _pad: [0; 3],
        };
        self.maps
            .inbound_session(&self.cfg, &k, tcp_flags(proto, seg))
            .map_err(|e| {
                log::debug!("slow path: inbound {src} -> {dst}: {e:#}");
                "no session"
            })
    }

    /// The session binding of an IPv6 datagram from a client (from its transport header).
    fn pool_of(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        nh: u8,
        seg: &[u8],
    ) -> Result<(Ipv4Addr, u16), &'static str> {
        if seg.len() < 8 {
            return Err("transport header truncated");
        }
        let (proto, cport, rport) = match nh {
            IPPROTO_TCP | IPPROTO_UDP => (nh, be16(seg, 0), be16(seg, 2)),
            IPPROTO_ICMPV6 => (IPPROTO_ICMP, be16(seg, 4), 0),
            _ => return Err("protocol not translated"),
        };
        let remote = rfc6052::extract(u128::from(dst), self.params.prefix_len);
        let k = SessionKey6 {
            client: rfc6052::raw6(u128::from(src)),
            remote: rfc6052::raw4(remote),
            client_port_be: cport.to_be(),
            remote_port_be: rport.to_be(),
            proto,
            _pad: [0; 3],
        };
        if let Ok(v) = self.maps.sessions6.get(&k, 0) {
            return Ok((
                Ipv4Addr::from(rfc6052::from_raw4(v.pool)),
                u16::from_be(v.pool_port_be),
            ));
        }
        self.maps
            .create_outbound(
                &self.cfg,
                src,
                cport,
                Ipv4Addr::from(remote),
                rport,
                proto,
                tcp_flags(nh, seg),
            )
            .map_err(|e| {
                log::debug!("slow path: outbound {src} -> {dst}: {e:#}");
                "no session"
            })
    }

    /// Fragments held because their first fragment had not passed: once the data plane knows
    /// the datagram (its fragment map), translate them one by one. Drops what waited too long.
    fn sweep(&mut self) {
        let keys: Vec<DatagramKey> = self.pending.keys().cloned().collect();
        for key in keys {
            let Some(p) = self.pending.get(&key) else {
                continue;
            };
            let out = match key {
                DatagramKey::V4 {
                    src,
                    dst,
                    proto,
                    id,
                } => self.maps.frag_client(src, dst, proto, id).map(|client| {
                    let src6 = Ipv6Addr::from(rfc6052::embed(
                        self.params.prefix,
                        self.params.prefix_len,
                        u32::from(src),
                    ));
                    let nh = if proto == IPPROTO_ICMP {
                        IPPROTO_ICMPV6
                    } else {
                        proto
                    };
                    let mut pkts = Vec::new();
                    for (off, data, more, _) in &p.parts {
                        pkts.extend(fragment6(
                            src6,
                            client,
                            nh,
                            p.ttl.saturating_sub(1),
                            p.tos,
                            u32::from(id),
                            *off,
                            *more,
                            data,
                            self.params.ipv6_mtu,
                        ));
                    }
                    Output::V6(pkts)
                }),
                DatagramKey::V6 { src, dst, id } => {
                    let remote =
                        Ipv4Addr::from(rfc6052::extract(u128::from(dst), self.params.prefix_len));
                    self.maps.frag_pool(src, remote, p.proto, id).map(|pool| {
                        let mut pkts = Vec::new();
                        for (off, data, more, _) in &p.parts {
                            pkts.extend(fragment4(
                                pool,
                                remote,
                                p.proto,
                                p.ttl.saturating_sub(1),
                                p.tos,
                                id as u16,
                                *off,
                                *more,
                                data,
                                self.params.ipv4_mtu,
                            ));
                        }
                        Output::V4(pkts)
                    })
                }
            };
            let expired = p.first_seen.elapsed() > REASSEMBLY_TIMEOUT;
            if (out.is_some() || expired)
                && let Some(p) = self.pending.remove(&key)
            {
                self.held = self.held.saturating_sub(p.bytes);
            }
            match out {
                Some(o) => self.emit(&o),
                None if expired => {
                    self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
        }
    }
}
