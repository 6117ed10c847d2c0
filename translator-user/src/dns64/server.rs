//! UDP and TCP listeners. A query is checked (ACL, format, EDNS version), answered from the
//! cache in place when possible, and otherwise resolved in its own task.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::resolve::Engine;
use super::stats::Dns64Stats;
use super::wire::{
    self, Answer, AnswerKind, EXT_BADVERS, QueryError, QueryView, RCODE_FORMERR, RCODE_REFUSED,
};

/// Most TCP client connections served at once.
const MAX_TCP_CONNECTIONS: usize = 256;
/// How often an idle UDP thread checks whether it should stop.
const UDP_POLL: Duration = Duration::from_millis(250);

/// What to do with a received message after the fast checks.
pub(crate) enum Step {
    /// `out` holds the reply.
    Reply,
    /// Nothing to send.
    Drop,
    /// Needs upstream work.
    Resolve(Box<QueryView>),
}

impl Engine {
    fn count_sent(&self, kind: AnswerKind, truncated: bool) {
        let s = &self.stats;
        match kind {
            AnswerKind::Plain => {}
            AnswerKind::Synthesized => Dns64Stats::bump(&s.synthesized),
            AnswerKind::PtrSynthesized => Dns64Stats::bump(&s.ptr_synthesized),
            AnswerKind::Ipv4Only => Dns64Stats::bump(&s.ipv4only_answered),
            AnswerKind::ServFail => Dns64Stats::bump(&s.servfail),
        }
        if truncated {
            Dns64Stats::bump(&s.truncated);
        }
    }

    /// The most bytes a client can take.
    fn limit(&self, q: &QueryView, udp: bool) -> usize {
        if !udp {
            return 65_535;
        }
        match q.edns {
            Some(e) => usize::from(e.payload.min(self.cfg.max_udp_payload)),
            None => 512,
        }
    }

    /// Header and question with `rcode`, plus OPT when the client sent one.
    fn question_reply(&self, query: &[u8], q: &QueryView, rcode: u8, ext: u8, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&query[..q.question_end]);
        let f = wire::QR | wire::RA | (q.flags & (wire::RD | wire::CD)) | u16::from(rcode & 0xf);
        out[2..4].copy_from_slice(&f.to_be_bytes());
        out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        if let Some(e) = q.edns {
            wire::push_opt(out, self.cfg.max_udp_payload, ext, e.dnssec_ok);
        }
    }

    /// Everything that needs no upstream: ACL, format checks, cache hits.
    pub(crate) fn fast(&self, query: &[u8], client: IpAddr, udp: bool, out: &mut Vec<u8>) -> Step {
        Dns64Stats::bump(&self.stats.queries);
        if !udp {
            Dns64Stats::bump(&self.stats.tcp_queries);
        }
        let parsed = parse(query);
        if !self.cfg.client_allowed(client) {
            Dns64Stats::bump(&self.stats.refused);
            return match parsed {
                Ok(q) => {
                    self.question_reply(query, &q, RCODE_REFUSED, 0, out);
                    Step::Reply
                }
                Err(QueryError::Drop) => Step::Drop,
                Err(QueryError::Rcode(_)) => {
                    wire::error_reply(query, RCODE_REFUSED, out);
                    Step::Reply
                }
            };
        }
        let q = match parsed {
            Ok(q) => q,
            Err(QueryError::Drop) => {
                Dns64Stats::bump(&self.stats.dropped);
                return Step::Drop;
            }
            Err(QueryError::Rcode(rc)) => {
                if rc == RCODE_FORMERR {
                    Dns64Stats::bump(&self.stats.formerr);
                }
                wire::error_reply(query, rc, out);
                return Step::Reply;
            }
        };
        if q.edns.is_some_and(|e| e.version > 0) {
            self.question_reply(query, &q, 0, EXT_BADVERS, out);
            return Step::Reply;
        }
        match self.cache.get(q.key(), Instant::now()) {
            Some(hit) => {
                Dns64Stats::bump(&self.stats.cache_hits);
                self.send_answer(&hit.answer, &q, query, hit.elapsed, udp, out);
                Step::Reply
            }
            None => {
                Dns64Stats::bump(&self.stats.cache_misses);
                Step::Resolve(Box::new(q))
            }
        }
    }

    pub(crate) fn send_answer(
        &self,
        a: &Answer,
        q: &QueryView,
        query: &[u8],
        elapsed: u32,
        udp: bool,
        out: &mut Vec<u8>,
    ) {
        let t = a.render(
            q,
            query,
            elapsed,
            self.limit(q, udp),
            self.cfg.max_udp_payload,
            out,
        );
        self.count_sent(a.kind, t);
    }

    /// Resolves a query that missed the cache and writes the reply.
    pub(crate) async fn slow(&self, query: &[u8], q: &QueryView, udp: bool, out: &mut Vec<u8>) {
        let a = self.resolve(query, q).await;
        self.send_answer(&a, q, query, 0, udp, out);
    }
}

fn parse(query: &[u8]) -> Result<QueryView, QueryError> {
    wire::parse_query(query)
}

/// Bound sockets, ready to serve.
pub(crate) struct Listeners {
    /// Per listen address, one SO_REUSEPORT socket per UDP worker thread.
    udp: Vec<Vec<std::net::UdpSocket>>,
    tcp: Vec<TcpListener>,
}

impl Listeners {
    /// Local addresses (UDP then TCP), useful when a port 0 was configured.
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        let u = self.udp.iter().filter_map(|v| v.first()?.local_addr().ok());
        let t = self.tcp.iter().filter_map(|s| s.local_addr().ok());
        u.chain(t).collect()
    }
}

/// How many UDP worker threads serve each listen address.
fn udp_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Each worker thread gets its own socket on the same port; the kernel spreads clients.
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    // Lets the worker look at the stop flag now and then.
    s.set_read_timeout(Some(UDP_POLL))?;
    Ok(s.into())
}

/// Binds every listen address, UDP and TCP. The error names the address.
pub(crate) async fn bind(listen: &[SocketAddr]) -> anyhow::Result<Listeners> {
    let mut l = Listeners {
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    for &addr in listen {
        let first = udp_socket(addr)
            .with_context(|| format!("dns64.listen: cannot listen on {addr} (UDP)"))?;
        // The other sockets and TCP take the port the first got (matters when port 0 was given).
        let bound = first.local_addr().unwrap_or(addr);
        let mut socks = vec![first];
        for _ in 1..udp_workers() {
            socks.push(
                udp_socket(bound)
                    .with_context(|| format!("dns64.listen: cannot listen on {bound} (UDP)"))?,
            );
        }
        let t = TcpListener::bind(bound)
            .await
            .with_context(|| format!("dns64.listen: cannot listen on {bound} (TCP)"))?;
        l.udp.push(socks);
        l.tcp.push(t);
    }
    Ok(l)
}

/// Stops the UDP threads when `run` ends or is dropped (a reload aborts it): sets the flag,
/// wakes the threads out of their receive (`shutdown`), and waits for them, so that when the
/// server is gone its sockets are closed and nothing answers on the old address any more.
struct StopOnDrop {
    stop: Arc<AtomicBool>,
    workers: Vec<(Arc<std::net::UdpSocket>, std::thread::JoinHandle<()>)>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (sock, _) in &self.workers {
            // SAFETY: shutdown(2) on a socket this struct keeps open. On an unconnected UDP
            // socket it fails with ENOTCONN but still wakes a blocked receive, which then
            // returns at once.
            unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RD) };
        }
        for (_, thread) in self.workers.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Serves on bound listeners until a listener fails. UDP is served by plain threads (one
/// blocking socket each: the cached path is two system calls and no task switch); what
/// needs upstream work goes to the runtime.
pub(crate) async fn run(listeners: Listeners, engine: Arc<Engine>) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut guard = StopOnDrop {
        stop: stop.clone(),
        workers: Vec::new(),
    };
    let rt = tokio::runtime::Handle::current();
    for socks in listeners.udp {
        for sock in socks {
            let sock = Arc::new(sock);
            let (engine, rt, stop) = (engine.clone(), rt.clone(), stop.clone());
            let worker = sock.clone();
            let thread = std::thread::Builder::new()
                .name("dns64-udp".into())
                .spawn(move || udp_worker(worker, &engine, &rt, &stop))
                .context("starting a dns64 UDP thread")?;
            guard.workers.push((sock, thread));
        }
    }
    let mut set = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    for l in listeners.tcp {
        set.spawn(tcp_loop(l, engine.clone(), slots.clone()));
    }
    while let Some(r) = set.join_next().await {
        r.context("dns64 listener task")??;
    }
    Ok(())
}

/// Messages taken per system call: under load one `recvmmsg` and one `sendmmsg` serve a
/// whole batch; when idle, the first message returns at once (`MSG_WAITFORONE`).
const BATCH: usize = 32;
/// Largest query kept; longer datagrams are dropped (queries are small).
const SLOT: usize = 4096;

fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(s.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length checked) into this
            // storage, which is large and aligned enough for any sockaddr.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Buffers for one batch of received queries and their replies.
struct Batch {
    bufs: Vec<[u8; SLOT]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    outs: Vec<Vec<u8>>,
    send_iovs: Vec<libc::iovec>,
    send_hdrs: Vec<libc::mmsghdr>,
    replies: Vec<usize>,
}

fn zeroed_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

impl Batch {
    fn new() -> Self {
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs for which all-zero bytes
        // are a valid value (null pointers, zero lengths).
        let (addr, hdr) = unsafe {
            (
                std::mem::zeroed::<libc::sockaddr_storage>(),
                std::mem::zeroed::<libc::mmsghdr>(),
            )
        };
        Self {
            bufs: vec![[0u8; SLOT]; BATCH],
            addrs: vec![addr; BATCH],
            iovs: vec![zeroed_iovec(); BATCH],
            hdrs: vec![hdr; BATCH],
            outs: (0..BATCH).map(|_| Vec::with_capacity(1024)).collect(),
            send_iovs: vec![zeroed_iovec(); BATCH],
            send_hdrs: vec![hdr; BATCH],
            replies: Vec::with_capacity(BATCH),
        }
    }

    /// Receives up to BATCH datagrams; returns how many.
    fn recv(&mut self, fd: i32) -> std::io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = std::ptr::from_mut(&mut self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers of this struct (names, iovecs, slots)
        // with the lengths given; nothing is moved or resized during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends the replies listed in `replies` (from `outs`, to the senders' addresses).
    fn send(&mut self, fd: i32) {
        let k = self.replies.len();
        for (j, &i) in self.replies.iter().enumerate() {
            self.send_iovs[j] = libc::iovec {
                iov_base: self.outs[i].as_mut_ptr().cast(),
                iov_len: self.outs[i].len(),
            };
            let h = &mut self.send_hdrs[j];
            h.msg_len = 0;
            h.msg_hdr.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            h.msg_hdr.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
            h.msg_hdr.msg_iov = std::ptr::from_mut(&mut self.send_iovs[j]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        let mut sent = 0;
        while sent < k {
            // SAFETY: headers 0..k point at live reply buffers and addresses of this struct.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send_hdrs.as_mut_ptr().add(sent),
                    (k - sent) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::debug!("dns64: UDP send: {e}");
                // Skip the message that failed, send the rest.
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
        self.replies.clear();
    }
}

fn udp_worker(
    sock: Arc<std::net::UdpSocket>,
    engine: &Arc<Engine>,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    let fd = sock.as_raw_fd();
    let mut b = Batch::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match b.recv(fd) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                log::debug!("dns64: UDP receive: {e}");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        for i in 0..n.min(BATCH) {
            let h = &b.hdrs[i];
            let len = h.msg_len as usize;
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > SLOT {
                Dns64Stats::bump(&engine.stats.queries);
                Dns64Stats::bump(&engine.stats.dropped);
                continue;
            }
            let Some(peer) = sockaddr_to_std(&b.addrs[i], h.msg_hdr.msg_namelen) else {
                continue;
            };
            let query = &b.bufs[i][..len];
            match engine.fast(query, peer.ip(), true, &mut b.outs[i]) {
                Step::Reply => b.replies.push(i),
                Step::Drop => {}
                Step::Resolve(q) => {
                    // Bounded: each resolution holds an upstream socket for up to the timeout.
                    let Ok(permit) = engine.inflight.clone().try_acquire_owned() else {
                        Dns64Stats::bump(&engine.stats.overloaded);
                        continue;
                    };
                    let query = query.to_vec();
                    let (sock, engine) = (sock.clone(), engine.clone());
                    rt.spawn(async move {
                        let mut out = Vec::new();
                        engine.slow(&query, &q, true, &mut out).await;
                        drop(permit);
                        if let Err(e) = sock.send_to(&out, peer) {
                            log::debug!("dns64: UDP send to {peer}: {e}");
                        }
                    });
                }
            }
        }
        if !b.replies.is_empty() {
            b.send(fd);
        }
    }
}

async fn tcp_loop(
    l: TcpListener,
    engine: Arc<Engine>,
    slots: Arc<Semaphore>,
) -> anyhow::Result<()> {
    loop {
        let (s, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::debug!("dns64: TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            log::debug!("dns64: too many TCP connections, closing one from {peer}");
            continue;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(e) = tcp_conn(s, peer, &engine).await {
                log::debug!("dns64: TCP {peer}: {e}");
            }
            drop(permit);
        });
    }
}

async fn tcp_conn(mut s: TcpStream, peer: SocketAddr, engine: &Engine) -> std::io::Result<()> {
    let idle = engine.cfg.tcp_idle_timeout;
    let mut query = Vec::new();
    let mut out = Vec::new();
    loop {
        let len = match tokio::time::timeout(idle, s.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        query.resize(usize::from(len), 0);
        match tokio::time::timeout(idle, s.read_exact(&mut query)).await {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        };
        match engine.fast(&query, peer.ip(), false, &mut out) {
            Step::Reply => {}
            Step::Drop => continue,
            Step::Resolve(q) => {
                let Ok(permit) = engine.inflight.clone().acquire_owned().await else {
                    return Ok(());
                };
                engine.slow(&query, &q, false, &mut out).await;
                drop(permit);
            }
        }
        let Ok(n) = u16::try_from(out.len()) else {
            continue;
        };
        let mut msg = Vec::with_capacity(out.len() + 2);
        msg.extend_from_slice(&n.to_be_bytes());
        msg.extend_from_slice(&out);
        s.write_all(&msg).await?;
    }
}
