//! The raw ICMPv6 socket of the sender/responder (RFC 4861 section 6.1 and 6.2 on Linux):
//! bound to the advertising interface, hop limit 255 both ways, loop-back of its own
//! multicast off, no automatic flow label (a zero flow label, the RFC 6437 default, keeps the
//! packets predictable), and, when it answers solicitations, joined to ff02::2 (all-routers),
//! filtered to Router Solicitations only and told to report each packet's hop limit
//! (`IPV6_RECVHOPLIMIT`) and destination (`IPV6_RECVPKTINFO`).
//!
//! Sending names the source (the link-local address) and the interface with `IPV6_PKTINFO`
//! per packet, so an address change needs no new socket.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, RawFd};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

use super::wire::ROUTER_SOLICITATION;

/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// `ICMP6_FILTER` (linux/icmpv6.h); not in the libc crate.
const ICMP6_FILTER: libc::c_int = 1;

/// A received packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub source: Ipv6Addr,
    /// Where it was sent to (ff02::2 or our own address), when the kernel said.
    pub destination: Option<Ipv6Addr>,
    /// The IPv6 hop limit it arrived with, when the kernel said.
    pub hop_limit: Option<u8>,
    /// Its length; more than the buffer when it was cut.
    pub len: usize,
}

/// The socket and the interface it is bound to.
#[derive(Debug)]
pub struct RaSocket {
    socket: Socket,
    pub interface: String,
    pub ifindex: u32,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the given size for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl RaSocket {
    /// Opens the socket on `interface`. `answer` also sets it up to receive solicitations;
    /// without it nothing is received (for `translator down`'s final advertisement).
    pub fn open(interface: &str, answer: bool) -> anyhow::Result<Self> {
        if answer {
            Self::open_for(interface, Some(ROUTER_SOLICITATION), true)
        } else {
            Self::open_for(interface, None, false)
        }
    }

    /// Opens a socket on `interface` that receives the ICMPv6 type `accept` (none: nothing),
    /// with each packet's hop limit and destination; `join_routers` joins ff02::2 (a router's
    /// socket; a host receives advertisements to ff02::1, which every node has joined).
    pub fn open_for(
        interface: &str,
        accept: Option<u8>,
        join_routers: bool,
    ) -> anyhow::Result<Self> {
        let ifindex = crate::netns::ifindex(interface)
            .with_context(|| format!("there is no interface named {interface:?} here"))?;
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .context("opening a raw ICMPv6 socket (needs CAP_NET_RAW)")?;
        let fd = socket.as_raw_fd();
        socket
            .bind_device(Some(interface.as_bytes()))
            .with_context(|| format!("binding the ICMPv6 socket to {interface}"))?;
        socket
            .set_multicast_hops_v6(255)
            .context("setting IPV6_MULTICAST_HOPS")?;
        socket
            .set_unicast_hops_v6(255)
            .context("setting IPV6_UNICAST_HOPS")?;
        socket
            .set_multicast_if_v6(ifindex)
            .context("setting IPV6_MULTICAST_IF")?;
        socket
            .set_multicast_loop_v6(false)
            .context("setting IPV6_MULTICAST_LOOP")?;
        // Older kernels lack it; the flow label is then whatever the kernel picks.
        let _ = setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_AUTOFLOWLABEL,
            &0 as &libc::c_int,
        );
        let mut filter = [u32::MAX; 8];
        if let Some(t) = accept {
            let t = usize::from(t);
            filter[t >> 5] &= !(1u32 << (t & 31));
        }
        setsockopt(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
            .context("setting ICMP6_FILTER")?;
        if accept.is_some() {
            setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVHOPLIMIT,
                &1 as &libc::c_int,
            )
            .context("setting IPV6_RECVHOPLIMIT")?;
            setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                &1 as &libc::c_int,
            )
            .context("setting IPV6_RECVPKTINFO")?;
        }
        if join_routers {
            socket
                .join_multicast_v6(&ALL_ROUTERS, ifindex)
                .with_context(|| format!("joining ff02::2 on {interface}"))?;
        }
        socket
            .set_nonblocking(true)
            .context("making the ICMPv6 socket non-blocking")?;
        Ok(Self {
            socket,
            interface: interface.to_owned(),
            ifindex,
        })
    }

    /// Sends `icmp` (ICMPv6 from the type on; the kernel computes the checksum) from
    /// `source` to `destination` on the interface.
    pub fn send(&self, icmp: &[u8], source: Ipv6Addr, destination: Ipv6Addr) -> io::Result<()> {
        // SAFETY: all-zero is a valid sockaddr_in6 / in6_pktinfo / msghdr.
        let mut to: libc::sockaddr_in6 = unsafe { zeroed() };
        to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        to.sin6_addr.s6_addr = destination.octets();
        to.sin6_scope_id = self.ifindex;
        // SAFETY: as above.
        let mut info: libc::in6_pktinfo = unsafe { zeroed() };
        info.ipi6_addr.s6_addr = source.octets();
        info.ipi6_ifindex = self.ifindex;
        let mut iov = libc::iovec {
            iov_base: icmp.as_ptr() as *mut libc::c_void,
            iov_len: icmp.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut to as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a size computation.
        msg.msg_controllen =
            unsafe { libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) } as _;
        // SAFETY: the control buffer (64 bytes, 8-aligned) holds one cmsghdr with an
        // in6_pktinfo (CMSG_SPACE of it is 40 bytes); CMSG_FIRSTHDR points into it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() {
                return Err(io::Error::other(
                    "no room for the IPV6_PKTINFO control message",
                ));
            }
            (*c).cmsg_level = libc::IPPROTO_IPV6;
            (*c).cmsg_type = libc::IPV6_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
        }
        // SAFETY: msg points to live buffers set up above.
        let n = unsafe { libc::sendmsg(self.socket.as_raw_fd(), &msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != icmp.len() {
            return Err(io::Error::other(format!(
                "sent {n} of {} bytes",
                icmp.len()
            )));
        }
        Ok(())
    }

    /// Receives one packet into `buf` without waiting (`WouldBlock` when there is none).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        // SAFETY: all-zero is a valid sockaddr_in6 / msghdr.
        let mut from: libc::sockaddr_in6 = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: msg points to live buffers set up above.
        let n = unsafe {
            libc::recvmsg(
                self.socket.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut hop_limit = None;
        let mut destination = None;
        // SAFETY: walking the control messages the kernel wrote into `control`, reading each
        // payload only for the types whose layout is known.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::IPPROTO_IPV6 {
                    let data = libc::CMSG_DATA(c);
                    if (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                        let h = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                        hop_limit = u8::try_from(h).ok();
                    } else if (*c).cmsg_type == libc::IPV6_PKTINFO {
                        let p = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                        destination = Some(Ipv6Addr::from(p.ipi6_addr.s6_addr));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Received {
            source: Ipv6Addr::from(from.sin6_addr.s6_addr),
            destination,
            hop_limit,
            len: n as usize,
        })
    }
}

impl AsRawFd for RaSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
