//! Router advertisements as the tests (and the demo) see them, written independently of the
//! product's encoder: [`Ra`] and [`Opt`] model what an advertisement should say, [`frame`]
//! builds the whole Ethernet frame it should arrive as (IPv6 header, ICMPv6 checksum
//! included), [`Capture`] records router discovery frames on an interface inside a
//! namespace, and [`pref64_of`] / [`icmp_of`] read captured frames.
//!
//! The product's encoder lives in `translator-user`; this library must not depend on it, and
//! the tests compare the two byte for byte.

use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::netns::NetNs;

/// One option, as RFC 4861 / 8106 / 8781 describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opt {
    /// Type 1.
    Slla([u8; 6]),
    /// Type 5.
    Mtu(u32),
    /// Type 3 with L and A set.
    Prefix {
        prefix: Ipv6Addr,
        len: u8,
        valid: u32,
        preferred: u32,
    },
    /// Type 25.
    Rdnss {
        lifetime: u32,
        servers: Vec<Ipv6Addr>,
    },
    /// Type 31.
    Dnssl { lifetime: u32, names: Vec<String> },
    /// Type 38; `lifetime` in seconds (sent in units of 8 s, rounded up).
    Pref64 {
        lifetime: u32,
        prefix: Ipv6Addr,
        len: u8,
    },
}

/// A router advertisement's fields (reachable time and retrans timer are always 0 here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ra {
    pub hop_limit: u8,
    pub managed: bool,
    pub other: bool,
    pub router_lifetime: u16,
    pub options: Vec<Opt>,
}

fn push_u16(b: &mut Vec<u8>, v: u16) {
    b.push((v >> 8) as u8);
    b.push(v as u8);
}

fn push_u32(b: &mut Vec<u8>, v: u32) {
    for shift in [24, 16, 8, 0] {
        b.push((v >> shift) as u8);
    }
}

/// RFC 8781 section 4: the prefix length code.
fn plc(len: u8) -> Result<u16> {
    Ok(match len {
        32 => 5,
        40 => 4,
        48 => 3,
        56 => 2,
        64 => 1,
        96 => 0,
        other => bail!("no PREF64 length code for /{other}"),
    })
}

impl Opt {
    fn bytes(&self) -> Result<Vec<u8>> {
        let mut b = Vec::new();
        match self {
            Opt::Slla(mac) => {
                b.extend([1, 1]);
                b.extend(mac);
            }
            Opt::Mtu(mtu) => {
                b.extend([5, 1, 0, 0]);
                push_u32(&mut b, *mtu);
            }
            Opt::Prefix {
                prefix,
                len,
                valid,
                preferred,
            } => {
                b.extend([3, 4, *len, 0b1100_0000]);
                push_u32(&mut b, *valid);
                push_u32(&mut b, *preferred);
                push_u32(&mut b, 0);
                b.extend(prefix.octets());
            }
            Opt::Rdnss { lifetime, servers } => {
                b.extend([25, (1 + 2 * servers.len()) as u8, 0, 0]);
                push_u32(&mut b, *lifetime);
                for s in servers {
                    b.extend(s.octets());
                }
            }
            Opt::Dnssl { lifetime, names } => {
                let mut names_wire = Vec::new();
                for n in names {
                    for label in n.split('.') {
                        names_wire.push(label.len() as u8);
                        names_wire.extend(label.bytes());
                    }
                    names_wire.push(0);
                }
                while (8 + names_wire.len()) % 8 != 0 {
                    names_wire.push(0);
                }
                b.extend([31, ((8 + names_wire.len()) / 8) as u8, 0, 0]);
                push_u32(&mut b, *lifetime);
                b.extend(names_wire);
            }
            Opt::Pref64 {
                lifetime,
                prefix,
                len,
            } => {
                let units = lifetime.div_ceil(8);
                if units > 8191 {
                    bail!("PREF64 lifetime {lifetime} s is above 65528 s");
                }
                b.extend([38, 2]);
                push_u16(&mut b, (units as u16) << 3 | plc(*len)?);
                b.extend(&prefix.octets()[..12]);
            }
        }
        Ok(b)
    }
}

impl Ra {
    /// The ICMPv6 message with a zero checksum.
    pub fn icmp(&self) -> Result<Vec<u8>> {
        let mut b = vec![134, 0, 0, 0, self.hop_limit];
        b.push(if self.managed { 0x80 } else { 0 } | if self.other { 0x40 } else { 0 });
        push_u16(&mut b, self.router_lifetime);
        push_u32(&mut b, 0);
        push_u32(&mut b, 0);
        for o in &self.options {
            b.extend(o.bytes()?);
        }
        Ok(b)
    }

    /// The same advertisement with every lifetime 0 (RFC 4861 section 6.2.5).
    pub fn final_form(&self) -> Ra {
        let options = self
            .options
            .iter()
            .map(|o| match o.clone() {
                Opt::Prefix { prefix, len, .. } => Opt::Prefix {
                    prefix,
                    len,
                    valid: 0,
                    preferred: 0,
                },
                Opt::Rdnss { servers, .. } => Opt::Rdnss {
                    lifetime: 0,
                    servers,
                },
                Opt::Dnssl { names, .. } => Opt::Dnssl { lifetime: 0, names },
                Opt::Pref64 { prefix, len, .. } => Opt::Pref64 {
                    lifetime: 0,
                    prefix,
                    len,
                },
                other => other,
            })
            .collect();
        Ra {
            router_lifetime: 0,
            options,
            ..self.clone()
        }
    }
}

/// The ICMPv6 checksum (RFC 4443 section 2.3, RFC 8200 section 8.1).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u64::from(*b));
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The multicast MAC for a multicast IPv6 destination (RFC 2464 section 7).
pub fn multicast_mac(dst: Ipv6Addr) -> [u8; 6] {
    let o = dst.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The whole Ethernet frame of `ra` from `src_mac`/`src` to `dst_mac`/`dst`: hop limit 255,
/// traffic class and flow label 0, the checksum filled in.
pub fn frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ra: &Ra,
) -> Result<Vec<u8>> {
    let mut icmp = ra.icmp()?;
    let sum = icmpv6_checksum(src, dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend(dst_mac);
    f.extend(src_mac);
    f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
    push_u16(&mut f, icmp.len() as u16);
    f.extend([58, 255]);
    f.extend(src.octets());
    f.extend(dst.octets());
    f.extend(icmp);
    Ok(f)
}

/// Source, destination, hop limit and ICMPv6 message of an Ethernet/IPv6/ICMPv6 frame.
pub fn icmp_of(f: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u8, &[u8])> {
    if f.len() < 54 || f[12..14] != [0x86, 0xdd] || f[20] != 58 {
        return None;
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&f[at..at + 16]);
        Ipv6Addr::from(a)
    };
    let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
    let icmp = f.get(54..54 + plen)?;
    Some((addr(22), addr(38), f[21], icmp))
}

/// The ICMPv6 type of a frame, if it is ICMPv6.
pub fn icmp_type(f: &[u8]) -> Option<u8> {
    icmp_of(f).and_then(|(_, _, _, i)| i.first().copied())
}

/// The router lifetime of a captured advertisement.
pub fn router_lifetime(f: &[u8]) -> Option<u16> {
    let (_, _, _, i) = icmp_of(f)?;
    (i.first() == Some(&134) && i.len() >= 8).then(|| u16::from_be_bytes([i[6], i[7]]))
}

/// The PREF64 option of a captured advertisement: prefix, length, lifetime in seconds.
pub fn pref64_of(f: &[u8]) -> Option<(Ipv6Addr, u8, u32)> {
    let (_, _, _, i) = icmp_of(f)?;
    let mut at = 16;
    while at + 2 <= i.len() {
        let len = usize::from(i[at + 1]) * 8;
        if len == 0 || at + len > i.len() {
            return None;
        }
        if i[at] == 38 && len == 16 {
            let word = u16::from_be_bytes([i[at + 2], i[at + 3]]);
            let plen = [96u8, 64, 56, 48, 40, 32]
                .get(usize::from(word & 7))
                .copied()?;
            let mut p = [0u8; 16];
            p[..12].copy_from_slice(&i[at + 4..at + 16]);
            return Some((Ipv6Addr::from(p), plen, u32::from(word >> 3) * 8));
        }
        at += len;
    }
    None
}

/// A captured frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub at: Instant,
    /// The frame left the interface (sent by the namespace) rather than arrived.
    pub outgoing: bool,
    pub bytes: Vec<u8>,
}

/// Records ICMPv6 router discovery frames (types 133 and 134) on one interface of a namespace
/// with an `AF_PACKET` socket, until dropped.
#[derive(Debug)]
pub struct Capture {
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Result<()>>>>,
}

fn packet_socket(dev: &str) -> Result<OwnedFd> {
    // ETH_P_ALL: only such taps also see the frames the namespace sends.
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev)?;
    // SAFETY: valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {dev} in this namespace");
    }
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("binding to {dev}: {}", std::io::Error::last_os_error());
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: tv lives for the call.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

impl Capture {
    /// Starts capturing on `dev` in `ns`; returns once the socket is bound.
    pub fn start(ns: &NetNs, dev: &str) -> Result<Self> {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (f, s, d) = (frames.clone(), stop.clone(), dev.to_owned());
        let thread = ns.spawn_thread(move || -> Result<()> {
            let fd = match packet_socket(&d) {
                Ok(fd) => {
                    let _ = ready_tx.send(Ok(()));
                    fd
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                    return Err(e);
                }
            };
            let mut buf = vec![0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                // SAFETY: all-zero is a valid sockaddr_ll.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: buf and from are live buffers of the given sizes.
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                let Ok(n) = usize::try_from(n) else {
                    continue;
                };
                // SOCK_RAW: the whole frame, Ethernet header included.
                let bytes = buf[..n].to_vec();
                if matches!(icmp_type(&bytes), Some(133 | 134)) {
                    f.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Frame {
                            at: Instant::now(),
                            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
                            bytes,
                        });
                }
            }
            Ok(())
        })?;
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("the capture thread did not start")??;
        Ok(Self {
            frames,
            stop,
            thread: Some(thread),
        })
    }

    /// Everything captured so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Advertisements received so far.
    pub fn adverts(&self) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| !f.outgoing && icmp_type(&f.bytes) == Some(134))
            .collect()
    }

    /// Solicitations sent from the interface so far.
    pub fn solicitations(&self) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.outgoing && icmp_type(&f.bytes) == Some(133))
            .collect()
    }

    /// Waits until more than `seen` advertisements have arrived; returns the next one.
    pub fn next_advert(&self, seen: usize, timeout: Duration) -> Option<Frame> {
        let mut found = None;
        crate::wait_until(timeout, || {
            found = self.adverts().into_iter().nth(seen);
            found.is_some()
        });
        found
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().expect("literal")
    }

    #[test]
    fn checksum_of_a_known_solicitation() {
        // An RS from fe80::1 to ff02::2 with no options; the sum computed by hand over the
        // pseudo-header and the message.
        let icmp = [133u8, 0, 0, 0, 0, 0, 0, 0];
        let sum = icmpv6_checksum(ip("fe80::1"), ip("ff02::2"), &icmp);
        let mut with = icmp;
        with[2..4].copy_from_slice(&sum.to_be_bytes());
        // A correct checksum makes the whole sum 0xffff, i.e. the check gives 0.
        assert_eq!(icmpv6_checksum(ip("fe80::1"), ip("ff02::2"), &with), 0);
        assert_eq!(sum, 0x7d36);
    }

    #[test]
    fn frame_layout_and_readers() {
        let ra = Ra {
            hop_limit: 64,
            managed: false,
            other: false,
            router_lifetime: 1800,
            options: vec![
                Opt::Dnssl {
                    lifetime: 10,
                    names: vec!["example.test".into()],
                },
                Opt::Pref64 {
                    lifetime: 1001,
                    prefix: ip("2001:db8:64::"),
                    len: 96,
                },
            ],
        };
        let f = frame(
            [2, 0, 0, 0, 0, 1],
            multicast_mac(ip("ff02::1")),
            ip("fe80::1"),
            ip("ff02::1"),
            &ra,
        )
        .expect("frame");
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let (src, dst, hops, icmp) = icmp_of(&f).expect("icmp");
        assert_eq!((src, dst, hops), (ip("fe80::1"), ip("ff02::1"), 255));
        assert_eq!(icmp.len(), 16 + 24 + 16);
        assert_eq!(router_lifetime(&f), Some(1800));
        assert_eq!(pref64_of(&f), Some((ip("2001:db8:64::"), 96, 1008)));
        assert_eq!(icmpv6_checksum(src, dst, icmp), 0);
    }
}
