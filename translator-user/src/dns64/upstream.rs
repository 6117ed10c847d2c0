//! Talking to the upstream resolvers: one UDP exchange per attempt from a fresh socket
//! (random source port and ID), TCP when the answer comes back truncated, fail-over in the
//! configured order.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::stats::Dns64Stats;
use super::wire::{self, RCODE_FORMERR, RCODE_REFUSED, RCODE_SERVFAIL};

/// Why no upstream gave an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// The last upstream tried did not answer in time.
    Timeout,
    /// The last upstream tried failed otherwise.
    Failed(String),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("upstream timed out"),
            Self::Failed(s) => write!(f, "upstream failed: {s}"),
        }
    }
}

thread_local! {
    static RNG: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
}

/// An unpredictable 16-bit query ID (SipHash of a counter under a random per-thread key).
fn random_id() -> u16 {
    RNG.with(|(s, c)| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        s.hash_one(n) as u16
    })
}

/// How long an upstream that timed out or failed is tried only after the others.
const HOLD_DOWN: Duration = Duration::from_secs(30);

/// The upstream resolvers.
pub(crate) struct Upstreams {
    addrs: Vec<SocketAddr>,
    /// Per upstream: until when (ms since `epoch`) it is tried last; 0 when healthy.
    down_until: Vec<AtomicU64>,
    epoch: Instant,
    timeout: Duration,
    payload: u16,
    stats: Arc<Dns64Stats>,
}

impl Upstreams {
    pub(crate) fn new(
        addrs: Vec<SocketAddr>,
        timeout: Duration,
        payload: u16,
        stats: Arc<Dns64Stats>,
    ) -> Self {
        Self {
            down_until: addrs.iter().map(|_| AtomicU64::new(0)).collect(),
            addrs,
            epoch: Instant::now(),
            timeout,
            payload,
            stats,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Upstream indexes in the order to try: healthy ones in configured order, then the ones
    /// held down (so a dead first upstream does not cost every query a timeout).
    fn order(&self) -> Vec<usize> {
        let now = self.now_ms();
        let down = |i: &usize| self.down_until[*i].load(Ordering::Relaxed) > now;
        let (mut up, held): (Vec<usize>, Vec<usize>) =
            (0..self.addrs.len()).partition(|i| !down(i));
        up.extend(held);
        up
    }

    fn mark(&self, i: usize, healthy: bool) {
        let v = if healthy {
            0
        } else {
            self.now_ms()
                .saturating_add(u64::try_from(HOLD_DOWN.as_millis()).unwrap_or(u64::MAX))
        };
        self.down_until[i].store(v, Ordering::Relaxed);
    }

    /// Asks the upstreams in order for `name` (wire form) and returns the first usable
    /// answer, undecoded. SERVFAIL and REFUSED make us try the next upstream; a SERVFAIL from
    /// the last one is returned as an answer.
    pub(crate) async fn query(
        &self,
        name: &[u8],
        qtype: u16,
        qclass: u16,
        cd: bool,
        dnssec_ok: bool,
    ) -> Result<Vec<u8>, UpstreamError> {
        let mut last = Err(UpstreamError::Failed("no upstream configured".to_owned()));
        for i in self.order() {
            let addr = self.addrs[i];
            let q = wire::upstream_query(
                random_id(),
                name,
                qtype,
                qclass,
                cd,
                dnssec_ok,
                Some(self.payload),
            );
            let mut r = self.exchange(addr, &q).await;
            if r.as_ref().is_ok_and(|b| wire::rcode(b) == RCODE_FORMERR) {
                // An upstream without EDNS(0): ask again without the OPT record.
                let q = wire::upstream_query(random_id(), name, qtype, qclass, cd, false, None);
                r = self.exchange(addr, &q).await;
            }
            match r {
                Ok(r) => match wire::rcode(&r) {
                    RCODE_SERVFAIL => last = Ok(r),
                    RCODE_REFUSED => {
                        Dns64Stats::bump(&self.stats.upstream_errors);
                        self.mark(i, false);
                        last = Err(UpstreamError::Failed(format!("{addr} refused the query")));
                    }
                    _ => {
                        self.mark(i, true);
                        return Ok(r);
                    }
                },
                Err(e) => {
                    self.mark(i, false);
                    match e {
                        UpstreamError::Timeout => Dns64Stats::bump(&self.stats.upstream_timeouts),
                        UpstreamError::Failed(_) => Dns64Stats::bump(&self.stats.upstream_errors),
                    }
                    log::debug!("dns64: upstream {addr}: {e}");
                    if last.is_err() {
                        last = Err(e);
                    }
                }
            }
        }
        last
    }

    async fn exchange(&self, addr: SocketAddr, q: &[u8]) -> Result<Vec<u8>, UpstreamError> {
        let deadline = Instant::now() + self.timeout;
        let r = self.exchange_udp(addr, q, deadline).await?;
        if !wire::truncated(&r) {
            return Ok(r);
        }
        Dns64Stats::bump(&self.stats.upstream_tcp_retries);
        // A fresh time budget for the TCP exchange.
        self.exchange_tcp(addr, q, Instant::now() + self.timeout)
            .await
    }

    async fn exchange_udp(
        &self,
        addr: SocketAddr,
        q: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, UpstreamError> {
        let fail =
            |what: &str, e: std::io::Error| UpstreamError::Failed(format!("{addr}: {what}: {e}"));
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(|e| fail("bind", e))?;
        // Connected: the kernel drops datagrams from other sources.
        sock.connect(addr).await.map_err(|e| fail("connect", e))?;
        sock.send(q).await.map_err(|e| fail("send", e))?;
        let mut buf = vec![0u8; usize::from(self.payload).max(512) + 64];
        loop {
            let n = match timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Err(e)) => return Err(fail("receive", e)),
                Ok(Ok(n)) => n,
            };
            let r = &buf[..n];
            // Anything else (a late or forged answer) is ignored until the deadline.
            if wire::matches_query(q, r) {
                return Ok(r.to_vec());
            }
        }
    }

    async fn exchange_tcp(
        &self,
        addr: SocketAddr,
        q: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, UpstreamError> {
        let fail = |what: &str, e: std::io::Error| {
            UpstreamError::Failed(format!("{addr} (TCP): {what}: {e}"))
        };
        let work = async {
            let mut s = TcpStream::connect(addr)
                .await
                .map_err(|e| fail("connect", e))?;
            let len = u16::try_from(q.len())
                .map_err(|_| UpstreamError::Failed("query too long".to_owned()))?;
            let mut msg = Vec::with_capacity(q.len() + 2);
            msg.extend_from_slice(&len.to_be_bytes());
            msg.extend_from_slice(q);
            s.write_all(&msg).await.map_err(|e| fail("send", e))?;
            loop {
                let n = s.read_u16().await.map_err(|e| fail("receive", e))?;
                let mut r = vec![0u8; usize::from(n)];
                s.read_exact(&mut r).await.map_err(|e| fail("receive", e))?;
                if wire::matches_query(q, &r) {
                    return Ok(r);
                }
            }
        };
        timeout_at(deadline, work)
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }
}
