use std::{
    path::PathBuf,
    sync::{
        Arc, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, anyhow};

use translator_common::{
    maps::{BlockEvent, SessionEvent},
    rfc6052,
};

use crate::{
    blocklog::BlockLog,
    config::{AttachMode, Config, Protocol},
    dataplane::{self, Instance, Maps, State},
    dns64::Dns64Stats,
    netns, ra, sessions,
};

use super::{
    expiry::{self, Expiry},
    preflight,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Attach mode, overriding `interfaces.mode`: native or generic.
    #[arg(long)]
    pub mode: Option<AttachMode>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let mut cfg = Config::load(&a.config)?;
    if let Some(m) = a.mode {
        cfg.mode = m;
    }
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    netns::ensure_bpffs()?;
    for (setting, name) in [
        ("interfaces.ipv6", &cfg.ipv6_interface),
        ("interfaces.ipv4", &cfg.ipv4_interface),
    ] {
        if netns::ifindex(name).is_none() {
            anyhow::bail!("{setting}: there is no interface named {name:?} here (see `ip link`)");
        }
    }
    preflight::enable_forwarding(&cfg)?;
    for iface in dataplane::interfaces(&cfg) {
        if let Some(w) = crate::modes::advise(&iface).warning(cfg.mode) {
            log::warn!("{w}");
        }
    }
    cfg.tx_by_redirect = crate::modes::tx_by_redirect(&cfg);

    // Listening sockets are bound before anything is attached: an address that cannot be had
    // stops the start with nothing half done.
    let metrics_listener = cfg
        .metrics_listen
        .map(|listen| {
            std::net::TcpListener::bind(listen)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| anyhow::anyhow!("metrics.listen: cannot listen on {listen}: {e}"))
        })
        .transpose()?;
    // Opened before anything is loaded, so that a socket error leaves nothing behind.
    let ra_socket = open_ra(&cfg)?;

    let inst = Instance::new(&cfg.instance);
    let adopt = inst.has_pins();
    if adopt {
        preflight::check_adoptable(&inst, &cfg)?;
    } else {
        // The session tables are allocated whole when the maps are created.
        dataplane::memory::check(&cfg, dataplane::memory::available())?;
    }
    let started = start(&cfg, &inst, adopt, &a.config, text);
    if started.is_err() && !adopt {
        // Nothing half-starts: a fresh start that failed leaves nothing behind.
        let _ = dataplane::down(&inst);
    }
    let (ebpf, maps) = started?;
    log::info!(
        "instance {:?} {}: prefix {}, pool {:?}, interfaces {}",
        cfg.instance,
        if adopt {
            "adopted (sessions kept)"
        } else {
            "started"
        },
        cfg.prefix,
        cfg.pool,
        dataplane::interfaces(&cfg).join(", ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let mut c = Controller::new(cfg, inst, maps, ebpf, a.config.clone(), ra_socket)?;
        c.serve(metrics_listener).await
    });
    log::info!(
        "controller stopped; the data plane keeps forwarding (`translator down` removes it)"
    );
    result
}

fn start(
    cfg: &Config,
    inst: &Instance,
    adopt: bool,
    path: &std::path::Path,
    text: String,
) -> anyhow::Result<(aya::Ebpf, Maps)> {
    let mut ebpf = dataplane::load(cfg, Some(&inst.pins))?;
    let mut maps = Maps::open(&inst.pins)?;
    if !adopt {
        dataplane::record_layout(inst)?;
        maps.fill_pool(cfg)?;
    }
    maps.sync_policy(cfg)?;
    for (i, s) in cfg.statics.iter().enumerate() {
        maps.add_static(s).with_context(|| format!("static[{i}]"))?;
    }
    let attached = dataplane::attach(&mut ebpf, cfg, inst)?;
    if adopt {
        // After the attach: from now on the program copies inbound use itself.
        let n = sessions::adopt_last_use(&mut maps);
        if n > 0 {
            log::info!("{n} adopted sessions: their last inbound use copied to SESSIONS6");
        }
    }
    let state = State {
        instance: cfg.instance.clone(),
        pid: std::process::id(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        config_path: path.display().to_string(),
        config_text: text,
        attached,
    };
    inst.write_state(&state)?;
    Ok((ebpf, maps))
}

/// The router advertisement socket when `[ra]` is enabled.
fn open_ra(cfg: &Config) -> anyhow::Result<Option<ra::RaSocket>> {
    if !cfg.ra.enabled {
        return Ok(None);
    }
    ra::RaSocket::open(&cfg.ra.interface, true)
        .map(Some)
        .map_err(|e| anyhow!("ra: cannot advertise on {}: {e:#}", cfg.ra.interface))
}

/// Draining interval of the data plane's log and block-event ring buffers.
const DRAIN: Duration = Duration::from_millis(250);

/// The running controller: expiry, logs, DNS64, slow path, reload.
struct Controller {
    cfg: Config,
    config_path: PathBuf,
    inst: Instance,
    maps: Maps,
    /// Held while static mappings change (shared with the expiry thread's binding deletes).
    edits: Arc<sessions::Edits>,
    /// The expiry thread (`expiry.rs`).
    expiry: Expiry,
    /// The loaded program (attached through pinned links; kept for its log ring buffers).
    ebpf: aya::Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    block_events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    session_events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    block_log: BlockLog,
    dns_stats: Arc<Dns64Stats>,
    dns: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    metrics: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// What the last expiry pass counted, for the metrics endpoint's gauges.
    pass_gauges: Arc<crate::metrics::PassGauges>,
    slow_stats: Arc<crate::slowpath::SlowPathStats>,
    slow: SlowPath,
    ra_stats: Arc<ra::RaStats>,
    /// The router advertisement task, when `[ra]` is enabled.
    ra: Option<ra::Handle>,
    /// Its socket, opened at start and handed to the task when serving begins.
    ra_socket: Option<ra::RaSocket>,
}

/// The slow-path threads, stopped on drop.
struct SlowPath(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl SlowPath {
    fn start(
        cfg: &Config,
        inst: &Instance,
        stats: &Arc<crate::slowpath::SlowPathStats>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = crate::slowpath::start(cfg, &inst.pins, stats.clone(), stop.clone())
            .context("starting the slow path")?;
        Ok(SlowPath(stop, threads))
    }
}

impl Drop for SlowPath {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

/// Refuses listener addresses (DNS64, metrics) that a reload would add but that cannot be
/// bound here, before anything changes.
fn check_listeners(old: &Config, new: &Config) -> anyhow::Result<()> {
    let old_dns: Vec<std::net::SocketAddr> = old
        .dns64
        .iter()
        .filter(|d| d.enabled)
        .flat_map(|d| d.listen.clone())
        .collect();
    let new_dns: Vec<std::net::SocketAddr> = new
        .dns64
        .iter()
        .filter(|d| d.enabled)
        .flat_map(|d| d.listen.clone())
        .collect();
    for a in new_dns.iter().filter(|a| !old_dns.contains(a)) {
        std::net::UdpSocket::bind(a)
            .map_err(|e| anyhow!("dns64.listen: cannot listen on {a}: {e}"))?;
    }
    if let Some(a) = new
        .metrics_listen
        .filter(|a| old.metrics_listen != Some(*a))
    {
        std::net::TcpListener::bind(a)
            .map_err(|e| anyhow!("metrics.listen: cannot listen on {a}: {e}"))?;
    }
    Ok(())
}

/// A session-log line from a data-plane record.
fn session_entry(
    event: &str,
    protocol: Protocol,
    ev: &SessionEvent,
) -> crate::blocklog::SessionEntry {
    crate::blocklog::SessionEntry {
        ts: String::new(),
        event: event.to_owned(),
        protocol,
        client: std::net::Ipv6Addr::from(rfc6052::from_raw6(&ev.client)),
        client_port: u16::from_be(ev.client_port_be),
        pool: std::net::Ipv4Addr::from(rfc6052::from_raw4(ev.pool)),
        pool_port: u16::from_be(ev.pool_port_be),
        remote: std::net::Ipv4Addr::from(rfc6052::from_raw4(ev.remote)),
        remote_port: u16::from_be(ev.remote_port_be),
    }
}

impl Controller {
    fn new(
        cfg: Config,
        inst: Instance,
        maps: Maps,
        ebpf: aya::Ebpf,
        config_path: PathBuf,
        ra_socket: Option<ra::RaSocket>,
    ) -> anyhow::Result<Self> {
        let block_log = BlockLog::open(cfg.block_log.as_deref())?;
        let slow_stats = Arc::new(crate::slowpath::SlowPathStats::default());
        let slow = SlowPath::start(&cfg, &inst, &slow_stats)?;
        let edits: Arc<sessions::Edits> = Arc::default();
        let pass_gauges: Arc<crate::metrics::PassGauges> = Arc::default();
        let expiry = Expiry::start(&inst.pins, &cfg, edits.clone(), pass_gauges.clone())?;
        let mut c = Controller {
            cfg,
            config_path,
            inst,
            maps,
            edits,
            expiry,
            ebpf,
            logger: None,
            block_events: None,
            session_events: None,
            block_log,
            dns_stats: Arc::new(Dns64Stats::default()),
            dns: None,
            metrics: None,
            pass_gauges,
            slow_stats,
            slow,
            ra_stats: Arc::new(ra::RaStats::default()),
            ra: None,
            ra_socket,
        };
        c.attach_rings();
        Ok(c)
    }

    /// Takes the log and block-event ring buffers of the current program.
    fn attach_rings(&mut self) {
        self.logger = match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("data-plane log records are not available: {e}");
                None
            }
        };
        self.block_events = self
            .ebpf
            .take_map(translator_common::maps::BLOCK_EVENTS)
            .and_then(|m| aya::maps::RingBuf::try_from(m).ok());
        if self.block_events.is_none() {
            log::warn!("the data plane's block events are not available: no block log");
        }
        self.session_events = self
            .ebpf
            .take_map(translator_common::maps::SESSION_EVENTS)
            .and_then(|m| aya::maps::RingBuf::try_from(m).ok());
    }

    /// (Re)starts the DNS64 server; an old one is stopped first and its sockets closed.
    async fn start_dns(&mut self) {
        if let Some(h) = self.dns.take() {
            h.abort();
            let _ = h.await;
        }
        self.dns = self.cfg.dns64.clone().filter(|d| d.enabled).map(|d| {
            let stats = self.dns_stats.clone();
            tokio::spawn(async move { crate::dns64::serve(d, stats).await })
        });
    }

    /// Starts advertising with the socket opened at start or by a reload.
    fn start_ra(&mut self) -> anyhow::Result<()> {
        if let Some(socket) = self.ra_socket.take() {
            self.ra = Some(ra::spawn(
                socket,
                self.cfg.ra.clone(),
                self.ra_stats.clone(),
                self.inst.run.clone(),
            )?);
        }
        Ok(())
    }

    /// (Re)starts the metrics endpoint; an old one is stopped first and its socket closed.
    /// (Re)starts the metrics endpoint on `metrics.listen`, on `bound` when the caller already
    /// holds the socket.
    async fn start_metrics(&mut self, bound: Option<std::net::TcpListener>) {
        if let Some(h) = self.metrics.take() {
            h.abort();
            let _ = h.await;
        }
        let (pins, run, cfg, pass) = (
            self.inst.pins.clone(),
            self.inst.run.clone(),
            Arc::new(self.cfg.clone()),
            self.pass_gauges.clone(),
        );
        self.metrics = match (self.cfg.metrics_listen, bound) {
            (None, _) => None,
            (Some(_), Some(l)) => match tokio::net::TcpListener::from_std(l) {
                Ok(l) => Some(tokio::spawn(crate::metrics::serve_bound(
                    l, pins, run, cfg, pass,
                ))),
                Err(e) => {
                    log::error!("metrics.listen: the bound socket is not usable: {e}");
                    None
                }
            },
            (Some(listen), None) => Some(tokio::spawn(crate::metrics::serve(
                listen, pins, run, cfg, pass,
            ))),
        };
    }

    /// Drains the data plane's log records and block allocations.
    fn drain(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
        let now_mono = crate::clock::monotonic_ns();
        let mut created = Vec::new();
        if let Some(rb) = self.session_events.as_mut() {
            while let Some(item) = rb.next() {
                if item.len() >= std::mem::size_of::<SessionEvent>() {
                    // SAFETY: the data plane writes whole SessionEvent records (length checked).
                    created.push(unsafe {
                        std::ptr::read_unaligned(item.as_ptr().cast::<SessionEvent>())
                    });
                }
            }
        }
        for ev in created {
            let Some(p) = Protocol::from_number(ev.proto) else {
                continue;
            };
            let age = Duration::from_nanos(now_mono.saturating_sub(ev.time));
            self.block_log
                .session(session_entry(crate::blocklog::SESSION_CREATED, p, &ev), age);
        }
        let Some(rb) = self.block_events.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        while let Some(item) = rb.next() {
            if item.len() >= std::mem::size_of::<BlockEvent>() {
                // SAFETY: the data plane writes whole BlockEvent records (length checked).
                events
                    .push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<BlockEvent>()) });
            }
        }
        for ev in events {
            let Some(p) = Protocol::from_number(ev.proto) else {
                continue;
            };
            let age = Duration::from_nanos(now_mono.saturating_sub(ev.time));
            self.block_log.write_aged(
                crate::blocklog::ALLOCATED,
                (
                    std::net::Ipv6Addr::from(rfc6052::from_raw6(&ev.client)),
                    self.cfg.subscriber_prefix_len,
                ),
                p,
                std::net::Ipv4Addr::from(rfc6052::from_raw4(ev.pool)),
                ev.start,
                self.cfg.block_size,
                age,
            );
        }
    }

    /// Writes what an expiry pass removed to the logs.
    fn expired(&mut self, e: &sessions::Expired) {
        // Allocations first, so a block's release never precedes its allocation in the log.
        self.drain();
        // Lines carry the pass's time, not the time they are written.
        let age = Duration::from_nanos(crate::clock::monotonic_ns().saturating_sub(e.at));
        if self.cfg.log_sessions {
            for (k6, k4) in &e.expired {
                let ev = SessionEvent {
                    client: k6.client,
                    remote: k6.remote,
                    pool: k4.pool,
                    client_port_be: k6.client_port_be,
                    remote_port_be: k6.remote_port_be,
                    pool_port_be: k4.pool_port_be,
                    proto: k6.proto,
                    _pad: 0,
                    time: 0,
                };
                if let Some(p) = Protocol::from_number(k6.proto) {
                    self.block_log
                        .session(session_entry(crate::blocklog::SESSION_EXPIRED, p, &ev), age);
                }
            }
        }
        // Deterministic blocks (RFC 7422) are in no log: their holder follows from the
        // configuration (`translator log query`).
        let blocks = if self.cfg.deterministic.is_some() {
            &[][..]
        } else {
            &e.blocks[..]
        };
        for (k, block) in blocks {
            if let Some(p) = Protocol::from_number(k.proto) {
                self.block_log.write_aged(
                    crate::blocklog::RELEASED,
                    (
                        std::net::Ipv6Addr::from(rfc6052::from_raw6(&k.client)),
                        self.cfg.subscriber_prefix_len,
                    ),
                    p,
                    std::net::Ipv4Addr::from(rfc6052::from_raw4(block.pool)),
                    block.start,
                    self.cfg.block_size,
                    age,
                );
            }
        }
        if e.removed_any() {
            log::debug!(
                "expired {} sessions, {} bindings, {} filters, {} blocks",
                e.sessions,
                e.bindings,
                e.filters,
                e.blocks.len()
            );
        }
    }

    /// Writes the controller's own counters (`controller.json`, read by `translator stats`).
    fn snapshot(&self) -> anyhow::Result<()> {
        let mut snap = serde_json::Map::new();
        if self.dns.is_some() {
            snap.insert(
                "dns64".into(),
                serde_json::to_value(self.dns_stats.snapshot())?,
            );
        }
        // Kept after a reload switched advertising off, so that the final one is counted.
        let ra_counters = self.ra_stats.snapshot();
        if self.ra.is_some() || ra_counters.values().any(|n| *n > 0) {
            snap.insert("ra".into(), serde_json::to_value(ra_counters)?);
        }
        let slow: std::collections::BTreeMap<_, _> =
            self.slow_stats.snapshot().into_iter().collect();
        snap.insert("slow_path".into(), serde_json::to_value(slow)?);
        let path = self.inst.run.join("controller.json");
        if let Err(e) = std::fs::write(&path, serde_json::to_vec(&snap)?) {
            log::warn!("writing {}: {e}", path.display());
        }
        Ok(())
    }

    /// Refuses new static mappings whose ports are bound otherwise.
    fn check_statics(&self, old: &Config, new: &Config) -> anyhow::Result<()> {
        for (i, s) in new.statics.iter().enumerate() {
            if !old.statics.contains(s)
                && let Some(conflict) = self.maps.static_conflict(s)
            {
                anyhow::bail!("static[{i}]: {conflict}");
            }
        }
        Ok(())
    }

    /// Makes the client prefixes, pool and static mappings of the maps `new`'s, under the edit
    /// lock: an expiry pass cannot delete a binding that becomes static.
    fn apply_policy(
        &mut self,
        old: &Config,
        new: &Config,
        changes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let _edits = self.edits.lock().unwrap_or_else(PoisonError::into_inner);
        let maps = &mut self.maps;
        maps.sync_policy(new)?;
        for s in old.statics.iter().filter(|s| !new.statics.contains(s)) {
            if let Err(e) = maps.del_static(s) {
                log::warn!("reload: removing static mapping {s:?}: {e:#}");
            }
            changes.push(format!(
                "removed static {} {}:{}",
                s.protocol, s.ipv4, s.ipv4_port
            ));
        }
        for (i, s) in new.statics.iter().enumerate() {
            if !old.statics.contains(s) {
                maps.add_static(s).with_context(|| format!("static[{i}]"))?;
                changes.push(format!(
                    "added static {} {}:{}",
                    s.protocol, s.ipv4, s.ipv4_port
                ));
            }
        }
        Ok(())
    }

    /// Applies a changed configuration file without losing sessions (SIGHUP,
    /// `translator reload`). An invalid file, or one that changes what cannot change live,
    /// is refused and the running configuration stays in force.
    async fn reload(&mut self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(&self.config_path)
            .with_context(|| format!("reading {}", self.config_path.display()))?;
        let mut new = Config::parse(&text)
            .with_context(|| format!("{}: refused", self.config_path.display()))?;
        new.mode = self.cfg.mode;
        new.tx_by_redirect = self.cfg.tx_by_redirect;
        let old = self.cfg.clone();
        let old = &old;
        let fixed = [
            ("instance", old.instance != new.instance),
            ("interfaces.ipv6", old.ipv6_interface != new.ipv6_interface),
            ("interfaces.ipv4", old.ipv4_interface != new.ipv4_interface),
            ("nat64.prefix", old.prefix != new.prefix),
        ];
        let changed = fixed
            .iter()
            .find_map(|(setting, changed)| changed.then_some(*setting))
            .or_else(|| old.session_setting_changed(&new));
        if let Some(setting) = changed {
            anyhow::bail!(
                "{setting} cannot change while the gateway runs (sessions depend on it); the \
                 running configuration stays in force. Use `translator down` and `translator run` \
                 to change it (this drops every session)"
            );
        }
        dataplane::check_permit_room(&self.inst.pins, &new)
            .context("the running configuration stays in force")?;
        // Everything that can fail is checked before anything changes: a refused reload leaves
        // the running configuration entirely in force.
        let log_changed = old.block_log != new.block_log || old.log_sessions != new.log_sessions;
        let new_log = if log_changed {
            Some(BlockLog::open(new.block_log.as_deref())?)
        } else {
            None
        };
        self.check_statics(old, &new)?;
        check_listeners(old, &new)?;
        let ra_socket = if new.ra.enabled && !old.ra.enabled {
            Some(open_ra(&new)?)
        } else {
            None
        };

        let mut changes = Vec::new();
        self.apply_policy(old, &new, &mut changes)?;
        if dataplane::dataplane_config(old) != dataplane::dataplane_config(&new) {
            // Filtering, limits and ICMP settings live in the program's read-only
            // configuration: a new program on the same maps replaces it atomically.
            let mut ebpf = dataplane::load(&new, Some(&self.inst.pins))?;
            dataplane::attach(&mut ebpf, &new, &self.inst)?;
            self.ebpf = ebpf;
            self.attach_rings();
            changes.push("data-plane settings (program replaced in place)".into());
        }
        if old.timeouts != new.timeouts {
            changes.push("timeouts".into());
        }
        if old.clients != new.clients {
            changes.push("nat64.clients".into());
        }
        let dns_changed = format!("{:?}", old.dns64) != format!("{:?}", new.dns64);
        self.cfg = new;
        if let Some(l) = new_log {
            self.block_log = l;
            changes.push("log.blocks".into());
        }
        if dns_changed {
            self.start_dns().await;
            changes.push("dns64".into());
        }
        if old.metrics_listen != self.cfg.metrics_listen {
            self.start_metrics(None).await;
            changes.push("metrics.listen".into());
        }
        if old.ra != self.cfg.ra {
            changes.push(self.reload_ra(&old.ra, ra_socket.flatten()).await);
        }
        // The slow path translates with the configuration too.
        self.slow = SlowPath::start(&self.cfg, &self.inst, &self.slow_stats)?;
        let mut state = self.inst.read_state()?;
        state.config_text = text;
        self.inst.write_state(&state)?;
        Ok(if changes.is_empty() {
            "no change".into()
        } else {
            changes.join(", ")
        })
    }

    /// Applies a changed `[ra]` table; says what it did.
    async fn reload_ra(&mut self, old: &ra::ValidRa, socket: Option<ra::RaSocket>) -> String {
        let new = self.cfg.ra.clone();
        match (old.enabled, new.enabled) {
            (true, true) => {
                if let Some(h) = &self.ra {
                    h.update(new);
                }
                "ra".into()
            }
            (true, false) => {
                if let Some(h) = self.ra.take()
                    && let Err(e) = h.cease(old.clone()).await
                {
                    log::error!("ra: {e:#}");
                }
                "ra (stopped; final advertisement sent)".into()
            }
            (false, true) => {
                self.ra_socket = socket;
                match self.start_ra() {
                    Ok(()) => "ra (started)".into(),
                    Err(e) => {
                        log::error!("ra: {e:#}");
                        format!("ra (could not start: {e:#})")
                    }
                }
            }
            (false, false) => "ra (still disabled)".into(),
        }
    }

    async fn serve(&mut self, metrics: Option<std::net::TcpListener>) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        self.start_ra()?;
        self.start_dns().await;
        self.start_metrics(metrics).await;
        let mut tick = tokio::time::interval(expiry::period(&self.cfg));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain = tokio::time::interval(DRAIN);
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        loop {
            tokio::select! {
                _ = tick.tick() => self.snapshot()?,
                pass = self.expiry.results.recv() => match pass {
                    Some(e) => self.expired(&e),
                    None => anyhow::bail!("the expiry thread stopped"),
                },
                _ = drain.tick() => self.drain(),
                _ = hup.recv() => {
                    let (ok, message) = match self.reload().await {
                        Ok(m) => (true, m),
                        Err(e) => (false, format!("{e:#}")),
                    };
                    if ok {
                        log::info!("configuration reloaded: {message}");
                        tick = tokio::time::interval(expiry::period(&self.cfg));
                        self.expiry.reconfigure(&self.cfg);
                    } else {
                        log::error!("reload refused: {message}");
                    }
                    let report = serde_json::json!({
                        "ok": ok,
                        "message": message,
                        "ts": crate::blocklog::now_rfc3339(),
                    });
                    let path = self.inst.run.join("reload.json");
                    if let Err(e) = std::fs::write(&path, report.to_string()) {
                        log::warn!("writing {}: {e}", path.display());
                    }
                }
                r = async {
                    match self.dns.as_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                } => {
                    // The NAT64 keeps running whatever happens to the DNS64 server.
                    self.dns = None;
                    match r {
                        Ok(Ok(())) => log::error!("the dns64 server stopped"),
                        Ok(Err(e)) => log::error!("the dns64 server stopped: {e:#}"),
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => log::error!("the dns64 server failed: {e}"),
                    }
                }
                r = async {
                    match self.metrics.as_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.metrics = None;
                    match r {
                        Ok(Ok(())) => log::error!("the metrics endpoint stopped"),
                        Ok(Err(e)) => log::error!("the metrics endpoint stopped: {e:#}"),
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => log::error!("the metrics endpoint failed: {e}"),
                    }
                }
                r = async {
                    match self.ra.as_mut() {
                        Some(h) => h.join_handle().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // The NAT64 keeps running whatever happens to the advertisements.
                    self.ra = None;
                    match r {
                        Ok(Ok(())) => log::error!("ra: the router advertisement task stopped"),
                        Ok(Err(e)) => log::error!("ra: the router advertisement task stopped: {e:#}"),
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => log::error!("ra: the router advertisement task failed: {e}"),
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        // The pass under way finishes (a pass cut short could leave half a binding or a block
        // out of the pool), and what it removed is logged.
        for e in self.expiry.stop() {
            self.expired(&e);
        }
        self.drain();
        Ok(())
    }
}
