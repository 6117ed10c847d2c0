//! Small servers that run inside a namespace and stop with their guard: an HTTP server
//! (busybox httpd) and UDP/TCP echo servers on threads that entered the namespace; and one
//! iperf3 TCP stream ([`iperf3_tcp`]).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{Proc, TempDir, wait_until};
use crate::netns::NetNs;

/// `busybox httpd` serving a scratch folder on `0.0.0.0:PORT` inside a namespace; stopped and its
/// folder removed on drop.
#[derive(Debug)]
pub struct HttpServer {
    proc: Proc,
    dir: TempDir,
    port: u16,
}

impl HttpServer {
    /// Starts the server and waits until it listens.
    pub fn start(ns: &NetNs, port: u16) -> Result<Self> {
        let dir = TempDir::new("http")?;
        let root = dir.join("www");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let root_str = root
            .to_str()
            .ok_or_else(|| anyhow!("temp path {} is not UTF-8", root.display()))?
            .to_owned();
        let listen = format!("0.0.0.0:{port}");
        let mut proc = ns.spawn(
            &[
                "busybox", "httpd", "-f", "-v", "-p", &listen, "-h", &root_str,
            ],
            &dir.join("httpd.log"),
        )?;
        let filter = format!("sport = :{port}");
        let listening = wait_until(Duration::from_secs(10), || {
            ns.try_run(&["ss", "-Hltn", &filter], Duration::from_secs(5))
                .is_ok_and(|o| !o.stdout.is_empty())
        });
        if !listening {
            let exited = proc.exited();
            bail!(
                "busybox httpd in {} is not listening on port {port} after 10 s (exit status: {exited:?}); log:\n{}",
                ns.name(),
                proc.log()
            );
        }
        Ok(Self { proc, dir, port })
    }

    /// Serves `bytes` at `/name`.
    pub fn add_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join("www").join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// What an echo server saw: one entry per datagram or connection.
pub type Seen = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A UDP echo server on a thread inside a namespace: every datagram goes back to its sender
/// unchanged. Stopped on drop.
#[derive(Debug)]
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    seen: Seen,
    addr: SocketAddr,
    thread: Option<JoinHandle<Result<Result<()>>>>,
}

impl UdpEcho {
    /// Binds `bind` inside `ns` and starts echoing.
    pub fn start(ns: &NetNs, bind: SocketAddr) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let (tx, rx) = mpsc::channel();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = ns.spawn_thread(move || -> Result<()> {
            let sock = match UdpSocket::bind(bind) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(anyhow!("UDP echo cannot bind {bind}: {e}")));
                    return Ok(());
                }
            };
            // A burst of datagrams (hundreds of clients at once) must not overflow the default
            // receive buffer while this thread waits for a CPU.
            force_rcvbuf(&sock, 8 << 20);
            let _ = tx.send(sock.local_addr().map_err(anyhow::Error::from));
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::SeqCst) {
                match sock.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        let data = buf.get(..n).unwrap_or_default();
                        seen2
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((peer, data.to_vec()));
                        sock.send_to(data, peer)?;
                    }
                    // EINTR: a socket with SO_RCVTIMEO returns it instead of restarting.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })?;
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .context("UDP echo thread did not report its socket")??;
        Ok(Self {
            stop,
            seen,
            addr,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// (sender, datagram) for every datagram received so far.
    pub fn seen(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Errors if the server thread has stopped (with the reason it stopped).
    pub fn check_alive(&mut self) -> Result<()> {
        if !self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            return Ok(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(Ok(())))) | None => bail!("the UDP echo server on {} stopped", self.addr),
            Some(Ok(Ok(Err(e))) | Ok(Err(e))) => {
                bail!("the UDP echo server on {} failed: {e:#}", self.addr)
            }
            Some(Err(_)) => bail!("the UDP echo server on {} panicked", self.addr),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP echo server on a thread inside a namespace: each connection gets back what it sent,
/// after the peer shuts down its sending side. Stopped on drop.
#[derive(Debug)]
pub struct TcpEcho {
    stop: Arc<AtomicBool>,
    seen: Seen,
    addr: SocketAddr,
    thread: Option<JoinHandle<Result<Result<()>>>>,
}

impl TcpEcho {
    /// Listens on `bind` inside `ns`.
    pub fn start(ns: &NetNs, bind: SocketAddr) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let (tx, rx) = mpsc::channel();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = ns.spawn_thread(move || -> Result<()> {
            let listener = match TcpListener::bind(bind) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(anyhow!("TCP echo cannot listen on {bind}: {e}")));
                    return Ok(());
                }
            };
            let _ = tx.send(listener.local_addr().map_err(anyhow::Error::from));
            listener.set_nonblocking(true)?;
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let seen3 = seen2.clone();
                        thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                            let mut data = Vec::new();
                            let complete = conn.read_to_end(&mut data).is_ok();
                            // Recorded before answering, so a client that got its echo always
                            // finds its connection in `seen()`.
                            seen3
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((peer, data.clone()));
                            if complete {
                                let _ = conn.write_all(&data);
                                let _ = conn.shutdown(std::net::Shutdown::Write);
                            }
                        });
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })?;
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .context("TCP echo thread did not report its socket")??;
        Ok(Self {
            stop,
            seen,
            addr,
            thread: Some(thread),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// (peer, bytes received) for every finished connection.
    pub fn seen(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A minimal HTTP/1.0 server on a thread inside a namespace that answers every request with the
/// same body, paced to about `bytes_per_sec` (sent in 16 KiB chunks), so a download takes a known
/// time and its packets really cross the gateway throughout (curl's `--limit-rate` only paces the
/// reader, and socket buffers can swallow a whole file at once). Stopped on drop.
#[derive(Debug)]
pub struct PacedHttp {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<Result<Result<()>>>>,
}

impl PacedHttp {
    /// Listens on `bind` inside `ns`.
    pub fn start(
        ns: &NetNs,
        bind: SocketAddr,
        body: Arc<Vec<u8>>,
        bytes_per_sec: u64,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let stop2 = stop.clone();
        let thread = ns.spawn_thread(move || -> Result<()> {
            let listener = match TcpListener::bind(bind) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(anyhow!(
                        "paced HTTP server cannot listen on {bind}: {e}"
                    )));
                    return Ok(());
                }
            };
            let _ = tx.send(listener.local_addr().map_err(anyhow::Error::from));
            listener.set_nonblocking(true)?;
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (body, stop3) = (body.clone(), stop2.clone());
                        thread::spawn(move || serve_paced(conn, &body, bytes_per_sec, &stop3));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })?;
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .context("paced HTTP thread did not report its socket")??;
        Ok(Self {
            stop,
            addr,
            thread: Some(thread),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve_paced(
    mut conn: std::net::TcpStream,
    body: &[u8],
    bytes_per_sec: u64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = match conn.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let header = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(header.as_bytes())?;
    const CHUNK: usize = 16 * 1024;
    let start = std::time::Instant::now();
    let mut sent = 0usize;
    for chunk in body.chunks(CHUNK) {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        conn.write_all(chunk)?;
        sent += chunk.len();
        // Sleep until `sent` bytes are due at the configured rate.
        let due = Duration::from_secs_f64(sent as f64 / bytes_per_sec.max(1) as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    // Let the client close first so the server's socket does not linger in TIME_WAIT games.
    let _ = conn.read(&mut buf);
    Ok(())
}

impl Drop for PacedHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sets SO_RCVBUFFORCE (root only; above `net.core.rmem_max`); best effort.
pub fn force_rcvbuf(sock: &impl std::os::fd::AsRawFd, bytes: libc::c_int) {
    // SAFETY: setsockopt on a valid socket with a pointer to a c_int and its size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Receives one datagram within `timeout`, retrying when the wait is interrupted (a socket with a
/// receive timeout returns EINTR instead of restarting). Errors with `TimedOut` when nothing came.
pub fn udp_recv(
    sock: &UdpSocket,
    buf: &mut [u8],
    timeout: Duration,
) -> std::io::Result<(usize, SocketAddr)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no datagram within {timeout:?}"),
            ));
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(buf) {
            Ok(got) => return Ok(got),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Bytes that are not all the same (for payloads whose corruption must show): a simple
/// xorshift stream from `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// One iperf3 TCP stream of `secs` seconds from `client` to `target` (port 5201), the server
/// (`iperf3 -s -1`, bound to 192.0.2.2) started in `server` first. Returns the bytes received
/// and the received bits per second; errors unless more than 1 MB arrived.
pub fn iperf3_tcp(client: &NetNs, server: &NetNs, target: &str, secs: u32) -> Result<(u64, f64)> {
    let scratch = TempDir::new("iperf")?;
    let _server = server.spawn(
        &["iperf3", "-s", "-1", "-B", "192.0.2.2", "-p", "5201"],
        &scratch.join("iperf3-server.log"),
    )?;
    anyhow::ensure!(
        wait_until(Duration::from_secs(10), || {
            server
                .try_run(&["ss", "-Hltn", "sport = :5201"], Duration::from_secs(5))
                .is_ok_and(|o| !o.stdout.is_empty())
        }),
        "iperf3 -s did not start listening"
    );
    let out = client.run_timeout(
        &[
            "iperf3",
            "-c",
            target,
            "-p",
            "5201",
            "-t",
            &secs.to_string(),
            "-J",
        ],
        Duration::from_secs(u64::from(secs) + 30),
    )?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("iperf3 -J printed: {}", out.stdout_str()))?;
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        received > 1_000_000,
        "iperf3 to {target} received only {received} bytes"
    );
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    Ok((received, bps))
}
