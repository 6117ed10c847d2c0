//! The running CLAT (`translator clat`): sets the host up, then reconciles once a second and
//! whenever a router advertisement or a DNS answer arrives: the prefix (best unexpired
//! source), the CLAT's IPv6 address (the uplink's /64 can change), native IPv4 (the CLAT steps
//! back while there is some), the MTU; and writes the outcome to the data plane, the slow path
//! and the status file. SIGTERM or SIGINT undo everything.

use std::{
    net::{Ipv6Addr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow, bail};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use translator_common::{maps::ClatConfig, rfc6052};

use super::{
    ERROR_SOURCE_IPV4, GATEWAY_IPV4, HOST_IPV4, HOST_PREFIX_LEN, PEER_INTERFACE, Status,
    V4_INTERFACE,
    dataplane::Dataplane,
    discover::{self, Discovery, Learned, Prefix64, Source},
    net::{LinkInfo, Netlink},
    slowpath,
};
use crate::{ra::socket::RaSocket, slowpath::SlowPathStats};

/// How `translator clat` was started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The uplink; `None`: the interface of the IPv6 default route.
    pub interface: Option<String>,
    /// The prefix to use when neither router advertisements nor DNS give one.
    pub prefix: Option<Prefix64>,
    /// Skip RFC 7050 (DNS) discovery.
    pub no_dns: bool,
    /// Where the host's resolvers are listed (read again before each lookup).
    pub resolv_conf: std::path::PathBuf,
}

/// Router solicitations sent at start (RFC 4861 section 6.3.7: MAX_RTR_SOLICITATIONS, 4 s
/// apart).
const SOLICITATIONS: u32 = 3;
const SOLICITATION_INTERVAL: Duration = Duration::from_secs(4);
/// The first DNS lookup waits this long for a router advertisement (PREF64 is preferred).
const DNS_AFTER: Duration = Duration::from_secs(2);
const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// Retries of a failed lookup back off from 2 s to this.
const DNS_RETRY_MAX: Duration = Duration::from_secs(60);
/// A DNS-learnt prefix is valid at least this long (a TTL of 0 would mean asking all the time).
const DNS_MIN_TTL: u32 = 10;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The control plane's counters (in the status file).
#[derive(Debug, Default)]
struct Counters {
    adverts_received: u64,
    adverts_refused: u64,
    pref64_ignored: u64,
    pref64_learnt: u64,
    solicitations_sent: u64,
    dns_lookups: u64,
    dns_failures: u64,
    prefix_changes: u64,
    address_conflicts: u64,
}

struct Clat {
    opts: Options,
    nl: Netlink,
    uplink: String,
    uplink_link: LinkInfo,
    v4: LinkInfo,
    peer: LinkInfo,
    dp: Dataplane,
    discovery: Discovery,
    /// The CLAT's IPv6 address on the uplink, and the attempt that made it.
    clat6: Option<Ipv6Addr>,
    attempt: u32,
    applied: Option<ClatConfig>,
    /// The last prefix translated with (also while off since): a new one counts as a change.
    last_prefix: Option<Prefix64>,
    route: bool,
    slow: slowpath::Shared,
    slow_stats: Arc<SlowPathStats>,
    counters: Counters,
    dns_error: Option<String>,
    dns_next: Instant,
    dns_backoff: Duration,
    dns_in_flight: bool,
    status: Status,
}

/// Runs the CLAT in the foreground until SIGTERM or SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(main(opts))
}

async fn main(opts: Options) -> anyhow::Result<()> {
    if let Ok(s) = Status::read()
        && super::alive(s.pid)
        && s.pid != std::process::id()
    {
        bail!(
            "a CLAT is already running here (pid {}, uplink {}); stop it with `translator clat down`",
            s.pid,
            s.uplink
        );
    }
    crate::netns::ensure_bpffs()?;
    let nl = Netlink::open()?;
    // What an earlier CLAT that did not exit cleanly left behind.
    let old = Status::read().ok();
    let left = super::remove_leftovers(
        &nl,
        V4_INTERFACE,
        old.as_ref()
            .and_then(|s| Some((s.uplink.as_str(), s.clat6?))),
    )
    .await?;
    for l in left {
        log::info!("removed what an earlier CLAT left: {l}");
    }
    let uplink = find_uplink(&nl, opts.interface.as_deref()).await?;
    let mut clat = match Clat::set_up(opts, nl, uplink).await {
        Ok(c) => c,
        Err(e) => {
            // Leave nothing half set up.
            if let Ok(nl) = Netlink::open() {
                let _ = super::remove_leftovers(&nl, V4_INTERFACE, None).await;
            }
            return Err(e);
        }
    };
    let r = clat.serve().await;
    clat.tear_down().await;
    r
}

/// The uplink: `--interface`, or the interface of the IPv6 default route (waited for).
async fn find_uplink(nl: &Netlink, interface: Option<&str>) -> anyhow::Result<String> {
    if let Some(i) = interface {
        if nl.link(i).await?.is_none() {
            bail!("--interface {i:?}: there is no such interface here (see `ip link`)");
        }
        return Ok(i.to_owned());
    }
    let mut said = false;
    loop {
        for index in nl.default6_interfaces().await? {
            if let Some(name) = nl.link_name(index).await?
                && name != V4_INTERFACE
            {
                log::info!("uplink {name}: it holds the IPv6 default route");
                return Ok(name);
            }
        }
        if !said {
            log::info!(
                "waiting for an IPv6 default route to pick the uplink (or give --interface)"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn mtu4_of(uplink_mtu: u32) -> u32 {
    // IPv6 needs at least 1280 on every link (RFC 8200 section 5).
    uplink_mtu.max(1280) - 20
}

impl Clat {
    async fn set_up(opts: Options, nl: Netlink, uplink: String) -> anyhow::Result<Self> {
        let uplink_link = nl
            .link(&uplink)
            .await?
            .ok_or_else(|| anyhow!("the uplink {uplink} is gone"))?;
        let mtu4 = mtu4_of(uplink_link.mtu);
        nl.create_veth(V4_INTERFACE, PEER_INTERFACE, mtu4).await?;
        for i in [V4_INTERFACE, PEER_INTERFACE] {
            crate::netns::set_sysctl(&format!("net/ipv6/conf/{i}/disable_ipv6"), "1")?;
        }
        let missing = |n: &str| anyhow!("the interface {n} vanished while being set up");
        let peer = nl
            .link(PEER_INTERFACE)
            .await?
            .ok_or_else(|| missing(PEER_INTERFACE))?;
        let v4 = nl
            .link(V4_INTERFACE)
            .await?
            .ok_or_else(|| missing(V4_INTERFACE))?;
        nl.set_up(peer.index, mtu4).await?;
        nl.set_up(v4.index, mtu4).await?;
        nl.add_address4(v4.index, HOST_IPV4, HOST_PREFIX_LEN)
            .await?;
        let mut dp = Dataplane::load(&super::pins_dir())?;
        dp.attach(V4_INTERFACE, &uplink)?;
        let slow: slowpath::Shared = Arc::new(RwLock::new(None));
        let discovery = Discovery {
            configured: opts.prefix,
            ..Default::default()
        };
        let status = Status {
            pid: std::process::id(),
            started_unix: unix_now(),
            uplink: uplink.clone(),
            v4_interface: V4_INTERFACE.to_owned(),
            ipv4: Some(HOST_IPV4),
            state: "off".to_owned(),
            ..Default::default()
        };
        log::info!(
            "CLAT on uplink {uplink}: {V4_INTERFACE} {HOST_IPV4}/{HOST_PREFIX_LEN}, MTU {mtu4}"
        );
        Ok(Self {
            opts,
            nl,
            uplink,
            uplink_link,
            v4,
            peer,
            dp,
            discovery,
            clat6: None,
            attempt: 0,
            applied: None,
            last_prefix: None,
            route: false,
            slow,
            slow_stats: Arc::new(SlowPathStats::default()),
            counters: Counters::default(),
            dns_error: None,
            dns_next: Instant::now() + DNS_AFTER,
            dns_backoff: Duration::from_secs(2),
            dns_in_flight: false,
            status,
        })
    }

    async fn serve(&mut self) -> anyhow::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = slowpath::start(
            self.v4.index,
            self.uplink_link.index,
            self.slow.clone(),
            self.slow_stats.clone(),
            stop.clone(),
        )?;
        let r = self.serve_loop().await;
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        r
    }

    async fn serve_loop(&mut self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT")?;
        let sock = RaSocket::open_for(
            &self.uplink,
            Some(crate::ra::wire::ROUTER_ADVERTISEMENT),
            false,
        )
        .with_context(|| format!("listening for router advertisements on {}", self.uplink))?;
        // SAFETY: the socket's descriptor stays open and the same while the AsyncFd owns it.
        let ra = unsafe { AsyncFd::register(sock) }
            .map_err(|e| anyhow!("registering the advertisement socket: {e}"))?;
        let (dns_tx, mut dns_rx) = mpsc::channel(4);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut next_rs = Instant::now();
        let mut rs_left = SOLICITATIONS;
        loop {
            if rs_left > 0 && Instant::now() >= next_rs && self.solicit() {
                rs_left -= 1;
                next_rs = Instant::now() + SOLICITATION_INTERVAL;
            }
            self.maybe_lookup(&dns_tx);
            if let Err(e) = self.reconcile().await {
                log::warn!("{e:#}");
            }
            tokio::select! {
                _ = term.recv() => { log::info!("SIGTERM: stopping"); return Ok(()); }
                _ = int.recv() => { log::info!("SIGINT: stopping"); return Ok(()); }
                _ = tick.tick() => {}
                r = ra.readable() => {
                    let mut guard = r.context("waiting for advertisements")?;
                    if self.adverts(ra.get_ref()) {
                        // An advertisement came: no more solicitations needed.
                        rs_left = 0;
                    }
                    guard.clear_ready();
                }
                Some(r) = dns_rx.recv() => self.dns_result(r),
            }
        }
    }

    /// Sends a router solicitation from the uplink's link-local address; false when it has none
    /// yet.
    fn solicit(&mut self) -> bool {
        let link = crate::ra::link::Link::read(&self.uplink);
        let Some(ll) = link.link_local() else {
            return false;
        };
        let Ok(sock) = RaSocket::open(&self.uplink, false) else {
            return false;
        };
        match sock.send(
            &discover::solicitation(),
            ll,
            crate::ra::socket::ALL_ROUTERS,
        ) {
            Ok(()) => {
                self.counters.solicitations_sent += 1;
                true
            }
            Err(e) => {
                log::debug!("router solicitation on {}: {e}", self.uplink);
                false
            }
        }
    }

    /// Reads every advertisement waiting; true when one was valid.
    fn adverts(&mut self, sock: &RaSocket) -> bool {
        let mut buf = vec![0u8; 2048];
        let mut any = false;
        loop {
            let r = match sock.recv(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return any,
                Err(e) => {
                    log::debug!("receiving an advertisement: {e}");
                    return any;
                }
            };
            self.counters.adverts_received += 1;
            let icmp = &buf[..r.len.min(buf.len())];
            match discover::pref64_of_advert(icmp, r.source, r.hop_limit) {
                Err(e) => {
                    self.counters.adverts_refused += 1;
                    log::debug!("advertisement from {} ignored: {e}", r.source);
                }
                Ok(a) => {
                    any = true;
                    self.counters.pref64_ignored += a.ignored as u64;
                    if a.ignored > 0 {
                        log::warn!(
                            "router {}: {} PREF64 option(s) with a bad length or prefix length \
                             code ignored (RFC 8781 section 4)",
                            r.source,
                            a.ignored
                        );
                    }
                    match a.pref64 {
                        Some((p, 0))
                            if self.discovery.ra.as_ref().is_some_and(|l| l.prefix == p) =>
                        {
                            log::info!("router {}: PREF64 {p} withdrawn", r.source);
                            self.discovery.ra = None;
                        }
                        // Withdrawing a prefix not in use changes nothing.
                        Some((_, 0)) | None => {}
                        Some((p, lifetime)) => {
                            self.counters.pref64_learnt += 1;
                            self.discovery.ra = Some(Learned {
                                prefix: p,
                                source: Source::RouterAdvertisement { router: r.source },
                                at: Instant::now(),
                                lifetime: Some(Duration::from_secs(u64::from(lifetime))),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Starts an RFC 7050 lookup when one is due (no PREF64, nothing learnt by DNS or it is
    /// about to expire).
    fn maybe_lookup(&mut self, tx: &mpsc::Sender<anyhow::Result<(Prefix64, u32, SocketAddr)>>) {
        let now = Instant::now();
        if self.opts.no_dns || self.dns_in_flight || now < self.dns_next {
            return;
        }
        if self.discovery.ra.is_some() {
            return;
        }
        let due = match &self.discovery.dns {
            None => true,
            // Ask again at 90% of the TTL, so the prefix does not lapse in between.
            Some(l) => l
                .lifetime
                .is_some_and(|t| now.saturating_duration_since(l.at) >= t.mul_f32(0.9)),
        };
        if !due {
            return;
        }
        let text = std::fs::read_to_string(&self.opts.resolv_conf).unwrap_or_default();
        let resolvers = discover::resolvers(&text);
        self.dns_in_flight = true;
        self.counters.dns_lookups += 1;
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = discover::lookup(&resolvers, DNS_TIMEOUT).await;
            let _ = tx.send(r).await;
        });
    }

    fn dns_result(&mut self, r: anyhow::Result<(Prefix64, u32, SocketAddr)>) {
        self.dns_in_flight = false;
        match r {
            Ok((prefix, ttl, resolver)) => {
                self.dns_error = None;
                self.dns_backoff = Duration::from_secs(2);
                self.dns_next = Instant::now();
                self.discovery.dns = Some(Learned {
                    prefix,
                    source: Source::Dns { resolver },
                    at: Instant::now(),
                    lifetime: Some(Duration::from_secs(u64::from(ttl.max(DNS_MIN_TTL)))),
                });
            }
            Err(e) => {
                self.counters.dns_failures += 1;
                let msg = format!("ipv4only.arpa: {e:#}");
                if self.dns_error.as_deref() != Some(&msg) {
                    log::info!("{msg} (retrying in {:?})", self.dns_backoff);
                }
                self.dns_error = Some(msg);
                self.dns_next = Instant::now() + self.dns_backoff;
                self.dns_backoff = (self.dns_backoff * 2).min(DNS_RETRY_MAX);
            }
        }
    }

    /// Keeps the CLAT's IPv6 address in the uplink's current /64; `Ok(None)` while there is no
    /// usable address yet (no SLAAC address, or duplicate address detection running).
    async fn address(&mut self) -> anyhow::Result<Option<Ipv6Addr>> {
        let globals = self.nl.globals6(self.uplink_link.index).await?;
        let mine = self
            .clat6
            .and_then(|a| globals.iter().find(|g| g.addr == a).copied());
        if let Some(g) = mine {
            if g.dad_failed {
                self.counters.address_conflicts += 1;
                log::warn!(
                    "{}: another host uses {}: picking another address",
                    self.uplink,
                    g.addr
                );
                self.nl.del_address6(self.uplink_link.index, g.addr).await?;
                self.clat6 = None;
                self.attempt += 1;
            } else {
                // Still in the uplink's /64?
                let same = globals.iter().any(|o| {
                    o.addr != g.addr
                        && o.prefix_len == 64
                        && !o.deprecated
                        && (u128::from(o.addr) >> 64) == (u128::from(g.addr) >> 64)
                });
                if same {
                    return Ok((!g.tentative).then_some(g.addr));
                }
            }
        }
        // The uplink's /64: its first SLAAC (or static /64) address still preferred.
        let Some(base) = globals
            .iter()
            .find(|g| g.prefix_len == 64 && !g.deprecated && !g.tentative && !g.dad_failed)
        else {
            return Ok(None);
        };
        let want = super::clat_address(&self.uplink_link.mac, base.addr, self.attempt);
        if let Some(old) = self.clat6
            && old != want
        {
            self.nl.del_address6(self.uplink_link.index, old).await?;
            log::info!(
                "{}: the /64 changed; CLAT address {old} removed",
                self.uplink
            );
        }
        if self.clat6 != Some(want) {
            self.nl.add_clat6(self.uplink_link.index, want).await?;
            log::info!("{}: CLAT address {want}", self.uplink);
            self.clat6 = Some(want);
        }
        Ok(None)
    }

    async fn reconcile(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        if let Some(l) = self.nl.link(&self.uplink).await? {
            if l.mtu != self.uplink_link.mtu {
                let mtu4 = mtu4_of(l.mtu);
                log::info!("{}: MTU {} -> {}", self.uplink, self.uplink_link.mtu, l.mtu);
                self.nl.set_mtu(self.peer.index, mtu4).await?;
                self.nl.set_mtu(self.v4.index, mtu4).await?;
            }
            self.uplink_link = l;
        }
        let learned = self.discovery.current(now);
        let clat6 = self.address().await?;
        let native = self.nl.native4_interfaces(self.v4.index).await?;
        let reason = if !native.is_empty() {
            let names: Vec<String> = {
                let mut v = Vec::new();
                for i in &native {
                    v.push(
                        self.nl
                            .link_name(*i)
                            .await?
                            .unwrap_or_else(|| i.to_string()),
                    );
                }
                v
            };
            Some(format!(
                "the host has native IPv4 (default route on {})",
                names.join(", ")
            ))
        } else if learned.is_none() {
            Some(if self.opts.no_dns {
                "no PLAT prefix: no PREF64 in router advertisements and no --prefix".to_owned()
            } else {
                "no PLAT prefix: no PREF64 in router advertisements, none from ipv4only.arpa, \
                 no --prefix"
                    .to_owned()
            })
        } else if clat6.is_none() {
            Some(format!(
                "waiting for an address in the uplink's /64 (SLAAC on {}, duplicate address \
                 detection)",
                self.uplink
            ))
        } else {
            None
        };
        let want = match (&learned, clat6, &reason) {
            (Some(l), Some(a), None) => Some(self.settings(l.prefix, a)),
            _ => None,
        };
        self.apply(want).await?;
        self.write_status(learned.as_ref(), reason, now)
    }

    fn settings(&self, p: Prefix64, clat6: Ipv6Addr) -> ClatConfig {
        let prefix = u128::from(p.prefix);
        ClatConfig {
            prefix: rfc6052::raw6(prefix),
            mask: rfc6052::raw6(rfc6052::mask(p.len)),
            prefix_len: p.len,
            clat6: rfc6052::raw6(u128::from(clat6)),
            ipv4: rfc6052::raw4(u32::from(HOST_IPV4)),
            error_src4: rfc6052::raw4(u32::from(ERROR_SOURCE_IPV4)),
            uplink_ifindex: self.uplink_link.index,
            v4_ifindex: self.v4.index,
            v4_mac: self.v4.mac,
            peer_mac: self.peer.mac,
            mtu6: u16::try_from(self.uplink_link.mtu).unwrap_or(u16::MAX),
            ..Default::default()
        }
    }

    async fn apply(&mut self, want: Option<ClatConfig>) -> anyhow::Result<()> {
        if want == self.applied {
            if want.is_some() && !self.route {
                self.nl.add_default4(self.v4.index, GATEWAY_IPV4).await?;
                self.route = true;
            }
            return Ok(());
        }
        match &want {
            Some(c) => {
                self.dp.set(c)?;
                let p = Prefix64 {
                    prefix: std::net::Ipv6Addr::from(rfc6052::from_raw6(&c.prefix)),
                    len: c.prefix_len,
                };
                let clat6 = Ipv6Addr::from(rfc6052::from_raw6(&c.clat6));
                if let Ok(mut g) = self.slow.write() {
                    *g = Some(slowpath::Params {
                        prefix: p,
                        clat6,
                        ipv4: HOST_IPV4,
                        mtu6: usize::from(c.mtu6),
                        mtu4: mtu4_of(u32::from(c.mtu6)) as usize,
                        peer_ifindex: self.peer.index,
                        v4_mac: self.v4.mac,
                        peer_mac: self.peer.mac,
                    });
                }
                if self.last_prefix.is_some_and(|l| l != p) {
                    self.counters.prefix_changes += 1;
                }
                self.last_prefix = Some(p);
                self.nl.add_default4(self.v4.index, GATEWAY_IPV4).await?;
                self.route = true;
                log::info!("translating: prefix {p}, CLAT address {clat6}");
            }
            None => {
                if self.route {
                    self.nl.del_default4(self.v4.index, GATEWAY_IPV4).await?;
                    self.route = false;
                }
                self.dp.set(&ClatConfig::default())?;
                if let Ok(mut g) = self.slow.write() {
                    *g = None;
                }
                if self.applied.is_some() {
                    log::info!("not translating any more");
                }
            }
        }
        self.applied = want;
        Ok(())
    }

    fn write_status(
        &mut self,
        learned: Option<&Learned>,
        reason: Option<String>,
        now: Instant,
    ) -> anyhow::Result<()> {
        let s = &mut self.status;
        s.updated_unix = unix_now();
        s.clat6 = self.clat6;
        s.state = if self.applied.is_some() {
            "active"
        } else {
            "off"
        }
        .to_owned();
        s.reason = reason;
        s.prefix = learned.map(|l| l.prefix.to_string());
        s.source = learned.and_then(|l| serde_json::to_value(&l.source).ok());
        s.lifetime_remaining_s = learned.and_then(|l| l.remaining(now));
        s.ra_prefix = self.discovery.ra.as_ref().map(|l| l.prefix.to_string());
        s.dns_prefix = self.discovery.dns.as_ref().map(|l| l.prefix.to_string());
        s.configured_prefix = self.discovery.configured.map(|p| p.to_string());
        s.dns_error = self.dns_error.clone();
        let c = &self.counters;
        let mut counters: Vec<(String, u64)> = [
            ("adverts-received", c.adverts_received),
            ("adverts-refused", c.adverts_refused),
            ("pref64-ignored", c.pref64_ignored),
            ("pref64-learnt", c.pref64_learnt),
            ("solicitations-sent", c.solicitations_sent),
            ("dns-lookups", c.dns_lookups),
            ("dns-failures", c.dns_failures),
            ("prefix-changes", c.prefix_changes),
            ("address-conflicts", c.address_conflicts),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        counters.extend(
            self.slow_stats
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
        );
        s.counters = counters;
        s.write()
    }

    /// Undoes everything: programs, route, interfaces, address, pins, state.
    async fn tear_down(&mut self) {
        self.dp.detach();
        let up = self.clat6.map(|a| (self.uplink.clone(), a));
        match super::remove_leftovers(
            &self.nl,
            V4_INTERFACE,
            up.as_ref().map(|(u, a)| (u.as_str(), *a)),
        )
        .await
        {
            Ok(r) => {
                for l in r {
                    log::info!("removed {l}");
                }
            }
            Err(e) => log::warn!("cleaning up: {e:#} (run `translator clat down`)"),
        }
    }
}
