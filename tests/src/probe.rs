//! Timed probes for the end-to-end tests: an ICMPv6 echo request sent from a raw socket, and
//! how long the first ICMPv6 error about it takes to come back (the gateway's own time
//! exceeded or packet too big, say); the same for ICMPv4 from the IPv4 side. The kernel's
//! path MTU and fragmentation stay out of the way (`IPV6_PMTUDISC_PROBE`), so the packet goes
//! out as large as asked.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::netns::NetNs;

/// An ICMP error that came back: its type, code, the "rest of header" word, and how long after
/// the probe it arrived.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub ty: u8,
    pub code: u8,
    pub rest: u32,
    pub from: std::net::IpAddr,
    pub after: Duration,
}

fn raw_socket(family: i32, proto: i32) -> Result<OwnedFd> {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        bail!("raw socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> Result<()> {
    // SAFETY: valid option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        bail!(
            "setsockopt {level}/{name}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn send_to(fd: &OwnedFd, buf: &[u8], to: SocketAddr) -> Result<()> {
    let sa = socket2_addr(to);
    // SAFETY: valid buffer and address of the lengths given.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (&raw const sa.0).cast(),
            sa.1,
        )
    };
    if rc < 0 {
        bail!("sendto {to}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A `sockaddr_storage` for an address, and its length.
fn socket2_addr(a: SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            let sin = unsafe { &mut *(&raw mut ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (ss, std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            let sin6 = unsafe { &mut *(&raw mut ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

/// Receives on `fd` until `accept` takes a message (given the bytes and the sender), or
/// `wait` runs out.
fn recv_until(
    fd: &OwnedFd,
    wait: Duration,
    accept: impl Fn(&[u8]) -> Option<(u8, u8, u32)>,
    start: Instant,
) -> Result<Option<Answer>> {
    let mut buf = vec![0u8; 2048];
    while start.elapsed() < wait {
        let left = wait.saturating_sub(start.elapsed());
        let tv = libc::timeval {
            tv_sec: left.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(left.subsec_micros().max(1000)),
        };
        set_timeout(fd, &tv)?;
        // SAFETY: zeroed sockaddr_storage is valid; the buffers are of the lengths given.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        // SAFETY: as above.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut from).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                continue;
            }
            bail!("recvfrom: {e}");
        }
        if let Some((ty, code, rest)) = accept(&buf[..n as usize]) {
            let from = sender(&from);
            return Ok(Some(Answer {
                ty,
                code,
                rest,
                from,
                after: start.elapsed(),
            }));
        }
    }
    Ok(None)
}

fn set_timeout(fd: &OwnedFd, tv: &libc::timeval) -> Result<()> {
    // SAFETY: valid option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if rc != 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn sender(ss: &libc::sockaddr_storage) -> std::net::IpAddr {
    if i32::from(ss.ss_family) == libc::AF_INET6 {
        // SAFETY: the family says it is a sockaddr_in6.
        let sin6 = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
        Ipv6Addr::from(sin6.sin6_addr.s6_addr).into()
    } else {
        // SAFETY: otherwise a sockaddr_in.
        let sin = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()).into()
    }
}

/// Sends one ICMPv6 echo request of `size` bytes (ICMPv6 message), identifier `id`, with hop
/// limit `hops` from `ns` to `dst`, and waits up to `wait` for an ICMPv6 error about it (type
/// below 128).
pub fn icmp6_error_after(
    ns: &NetNs,
    dst: Ipv6Addr,
    size: usize,
    hops: i32,
    id: u16,
    wait: Duration,
) -> Result<Option<Answer>> {
    ns.in_ns(|| -> Result<Option<Answer>> {
        let fd = raw_socket(libc::AF_INET6, libc::IPPROTO_ICMPV6)?;
        set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, hops)?;
        // Send as large as asked, whatever the kernel learnt about the path.
        set_int(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )?;
        let mut echo = vec![128u8, 0, 0, 0];
        echo.extend(id.to_be_bytes());
        echo.extend(7u16.to_be_bytes());
        echo.resize(size.max(8), 0x5a);
        let start = Instant::now();
        // The kernel fills in the ICMPv6 checksum of raw ICMPv6 sockets.
        send_to(&fd, &echo, SocketAddr::new(dst.into(), 0))?;
        recv_until(
            &fd,
            wait,
            |m| {
                // An error quoting our echo: the quoted ICMPv6 header after the quoted IPv6
                // header carries our identifier.
                if m.len() < 8 + 40 + 8 || m[0] >= 128 || m[8 + 40] != 128 {
                    return None;
                }
                (m[8 + 44..8 + 46] == id.to_be_bytes())
                    .then(|| (m[0], m[1], u32::from_be_bytes([m[4], m[5], m[6], m[7]])))
            },
            start,
        )
    })?
    .context("in the namespace")
}

/// Sends one ICMPv4 echo request of `size` bytes (ICMP message), identifier `id`, with TTL `ttl`
/// from `ns` to `dst`, and waits up to `wait` for an ICMPv4 error about it.
pub fn icmp4_error_after(
    ns: &NetNs,
    dst: Ipv4Addr,
    size: usize,
    ttl: i32,
    id: u16,
    wait: Duration,
) -> Result<Option<Answer>> {
    ns.in_ns(|| -> Result<Option<Answer>> {
        let fd = raw_socket(libc::AF_INET, libc::IPPROTO_ICMP)?;
        set_int(&fd, libc::IPPROTO_IP, libc::IP_TTL, ttl)?;
        set_int(
            &fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )?;
        let mut echo = vec![8u8, 0, 0, 0];
        echo.extend(id.to_be_bytes());
        echo.extend(7u16.to_be_bytes());
        echo.resize(size.max(8), 0x5a);
        let c = crate::packets::csum(&echo);
        echo[2..4].copy_from_slice(&c.to_be_bytes());
        let start = Instant::now();
        send_to(&fd, &echo, SocketAddr::new(dst.into(), 0))?;
        recv_until(
            &fd,
            wait,
            |p| {
                // Raw ICMPv4 sockets get the IPv4 header too.
                let ihl = usize::from(p.first()? & 0x0f) * 4;
                let m = p.get(ihl..)?;
                if m.len() < 8 + 20 + 8 || !matches!(m[0], 3 | 11 | 12) || m[8 + 20] != 8 {
                    return None;
                }
                (m[8 + 24..8 + 26] == id.to_be_bytes())
                    .then(|| (m[0], m[1], u32::from_be_bytes([m[4], m[5], m[6], m[7]])))
            },
            start,
        )
    })?
    .context("in the namespace")
}
