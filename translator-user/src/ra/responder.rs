//! The sender/responder task: unsolicited advertisements on the interval timer, answers to
//! solicitations, configuration changes from `translator reload`, and the final advertisement
//! when advertising stops on purpose (a reload that switches `[ra]` off, `translator down`).
//! Stopping the controller (restart, crash, SIGTERM) sends nothing: the data plane keeps
//! running and the next controller goes on advertising the same things.
//!
//! After each advertisement the task writes it to `ra.json` in the instance's run folder
//! (`translator ra show`, and the base of `translator down`'s final advertisement).

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::advert::{Withdrawals, build, finalize};
use super::config::ValidRa;
use super::link::Link;
use super::schedule::{Due, Schedule, random_u64};
use super::socket::{ALL_NODES, RaSocket, Received};
use super::stats::RaStats;
use super::trace::{RaEvent, TraceSink};
use super::wire::{Advert, NdOption, check_solicitation, decode, encode};

/// The file in the run folder that holds the last advertisement sent.
pub const LAST_FILE: &str = "ra.json";

/// The last advertisement sent, as `ra.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastAdvert {
    pub interface: String,
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    /// "unsolicited", "solicited" or "final".
    pub kind: String,
    pub sent_unix: u64,
    /// The ICMPv6 message (checksum 0) in hex.
    pub icmp_hex: String,
}

impl LastAdvert {
    /// The message bytes.
    pub fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        let h = self.icmp_hex.as_bytes();
        if !h.len().is_multiple_of(2) {
            return Err(anyhow!("odd number of hex digits"));
        }
        h.chunks(2)
            .map(|p| {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok())
                    .ok_or_else(|| anyhow!("not hex: {:?}", String::from_utf8_lossy(p)))
            })
            .collect()
    }

    /// Reads `ra.json` of a run folder.
    pub fn read(run_dir: &Path) -> anyhow::Result<Self> {
        let p = run_dir.join(LAST_FILE);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    fn write(&self, run_dir: &Path) {
        let p = run_dir.join(LAST_FILE);
        let tmp = p.with_extension("tmp");
        let done = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &p));
        if let Err(e) = done {
            log::warn!("ra: writing {}: {e}", p.display());
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A short description of an advertisement for logs and traces.
fn summary(a: &Advert, bytes: usize) -> String {
    let mut parts = vec![
        format!("{bytes} bytes"),
        format!("router lifetime {} s", a.router_lifetime),
    ];
    for o in &a.options {
        match o {
            NdOption::PrefixInformation {
                prefix,
                length,
                valid_lifetime,
                ..
            } => parts.push(format!("prefix {prefix}/{length} valid {valid_lifetime} s")),
            NdOption::Rdnss { servers, lifetime } => {
                let s: Vec<String> = servers.iter().map(ToString::to_string).collect();
                parts.push(format!("rdnss {} ({lifetime} s)", s.join(" ")));
            }
            NdOption::Dnssl { domains, lifetime } => {
                parts.push(format!("dnssl {} ({lifetime} s)", domains.join(" ")));
            }
            NdOption::Pref64 {
                prefix,
                length,
                lifetime,
            } => parts.push(format!("pref64 {prefix}/{length} ({lifetime} s)")),
            NdOption::Mtu { mtu } => parts.push(format!("mtu {mtu}")),
            NdOption::SourceLinkLayer { .. } | NdOption::Unknown { .. } => {}
        }
    }
    parts.join(", ")
}

/// The running task: send it a new configuration, or stop it.
pub struct Handle {
    tx: watch::Sender<ValidRa>,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Handle {
    /// Applies a changed (enabled) configuration: the task announces it at once, with the
    /// initial advertisements of RFC 4861 section 6.2.4.
    pub fn update(&self, cfg: ValidRa) {
        let _ = self.tx.send(cfg);
    }

    /// Stops advertising on purpose: the task sends the final advertisement and ends.
    pub async fn cease(self, mut cfg: ValidRa) -> anyhow::Result<()> {
        cfg.enabled = false;
        let _ = self.tx.send(cfg);
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.join).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(anyhow!("the router advertisement task failed: {e}")),
            Err(_) => Err(anyhow!(
                "the router advertisement task did not stop within 5 s"
            )),
        }
    }

    /// The task itself, to notice when it ends.
    pub fn join_handle(&mut self) -> &mut tokio::task::JoinHandle<anyhow::Result<()>> {
        &mut self.join
    }

    /// Stops the task without a final advertisement (the controller stops).
    pub fn abort(&self) {
        self.join.abort();
    }
}

/// Starts advertising with an open socket (see [`RaSocket::open`], opened early so that an
/// error stops `translator run` before anything else starts).
pub fn spawn(
    socket: RaSocket,
    cfg: ValidRa,
    stats: Arc<RaStats>,
    run_dir: PathBuf,
) -> anyhow::Result<Handle> {
    // SAFETY: the socket is owned by the AsyncFd from here on and `RaSocket::as_raw_fd` always
    // returns the descriptor of that same socket.
    let fd = unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("registering the ICMPv6 socket")?;
    let (tx, rx) = watch::channel(cfg);
    let join = tokio::spawn(async move {
        let mut task = Task::new(fd, rx, stats, run_dir);
        task.run().await
    });
    Ok(Handle { tx, join })
}

struct Task {
    fd: AsyncFd<RaSocket>,
    rx: watch::Receiver<ValidRa>,
    cfg: ValidRa,
    stats: Arc<RaStats>,
    run_dir: PathBuf,
    trace: TraceSink,
    schedule: Schedule,
    /// The last advertisement sent, before withdrawals were added.
    last: Option<Advert>,
    /// The last one as sent (with withdrawals): the base of the final advertisement.
    last_sent: Option<Advert>,
    withdrawals: Withdrawals,
    /// Whether the last send failed (to log a run of failures once).
    failing: bool,
    /// What was last logged about DNS64 listen addresses that give no RDNSS address.
    skipped_logged: Option<String>,
}

impl Task {
    fn new(
        fd: AsyncFd<RaSocket>,
        rx: watch::Receiver<ValidRa>,
        stats: Arc<RaStats>,
        run_dir: PathBuf,
    ) -> Self {
        let cfg = rx.borrow().clone();
        let trace = TraceSink::new(&run_dir);
        Self {
            fd,
            schedule: Schedule::new(Instant::now(), cfg.min_interval, cfg.max_interval),
            rx,
            cfg,
            stats,
            run_dir,
            trace,
            last: None,
            last_sent: None,
            withdrawals: Withdrawals::default(),
            failing: false,
            skipped_logged: None,
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        log::info!(
            "ra: advertising on {} every {:.0}..{:.0} s (router lifetime {} s)",
            self.cfg.interface,
            self.cfg.min_interval.as_secs_f64(),
            self.cfg.max_interval.as_secs_f64(),
            self.cfg.router_lifetime
        );
        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = tokio::time::Instant::from_std(self.schedule.next());
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(due) = self.schedule.due(Instant::now()) {
                        self.advertise(due);
                    }
                }
                ready = self.fd.readable() => {
                    let mut guard = ready.context("waiting for solicitations")?;
                    let mut received = Vec::new();
                    // Drain what is queued (bounded), then handle it.
                    while received.len() < 64 {
                        match guard.try_io(|s| s.get_ref().recv(&mut buf)) {
                            Ok(Ok(r)) => {
                                let n = r.len.min(buf.len());
                                received.push((r, buf[..n].to_vec()));
                            }
                            Ok(Err(e)) => {
                                log::debug!("ra: receiving: {e}");
                                break;
                            }
                            Err(_would_block) => break,
                        }
                    }
                    drop(guard);
                    for (r, data) in received {
                        self.solicitation(&r, &data);
                    }
                }
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        // The controller is going away: no final advertisement.
                        return Ok(());
                    }
                    let new = self.rx.borrow_and_update().clone();
                    if !new.enabled {
                        self.final_advert();
                        return Ok(());
                    }
                    self.schedule.restart(Instant::now(), new.min_interval, new.max_interval);
                    self.cfg = new;
                    self.skipped_logged = None;
                }
            }
        }
    }

    /// Builds the advertisement for now, with the interface as it is now.
    fn current(&mut self) -> Advert {
        let link = Link::read(&self.cfg.interface);
        let (advert, skipped) = build(&self.cfg, &link);
        let text: Vec<String> = skipped
            .iter()
            .map(|s| format!("{} ({})", s.listen, s.why))
            .collect();
        let text = text.join(", ");
        if !text.is_empty() && self.skipped_logged.as_deref() != Some(text.as_str()) {
            log::warn!("ra: dns64.listen addresses that give no RDNSS address: {text}");
        }
        self.skipped_logged = Some(text);
        advert
    }

    fn send(&mut self, advert: &Advert, kind: &str) -> bool {
        let link = Link::read(&self.cfg.interface);
        let Some(src) = link.link_local() else {
            self.failed(&format!(
                "{} has no link-local address (yet)",
                self.cfg.interface
            ));
            return false;
        };
        let bytes = match encode(advert) {
            Ok(b) => b,
            Err(e) => {
                self.failed(&format!("cannot encode the advertisement: {e}"));
                return false;
            }
        };
        if let Err(e) = self.fd.get_ref().send(&bytes, src, ALL_NODES) {
            let why = match e.raw_os_error() {
                // What sending from a tentative address gives.
                Some(libc::EINVAL | libc::EADDRNOTAVAIL) => format!(
                    "the link-local address {src} of {} is not usable yet (duplicate address \
                     detection still running?): {e}",
                    self.cfg.interface
                ),
                _ => format!("sending on {}: {e}", self.cfg.interface),
            };
            self.failed(&why);
            return false;
        }
        if self.failing {
            log::info!("ra: sending works again");
            self.failing = false;
        }
        RaStats::bump(&self.stats.sent);
        let text = summary(advert, bytes.len());
        log::debug!("ra: {kind} advertisement from {src}: {text}");
        self.trace.emit(|| RaEvent {
            event: "ra".into(),
            src,
            dst: Some(ALL_NODES),
            what: kind.into(),
            detail: text,
        });
        LastAdvert {
            interface: self.cfg.interface.clone(),
            source: src,
            destination: ALL_NODES,
            kind: kind.into(),
            sent_unix: unix_now(),
            icmp_hex: hex(&bytes),
        }
        .write(&self.run_dir);
        self.last_sent = Some(advert.clone());
        true
    }

    fn failed(&mut self, why: &str) {
        RaStats::bump(&self.stats.send_errors);
        if self.failing {
            log::debug!("ra: {why}");
        } else {
            log::warn!("ra: {why}; trying again every second");
            self.failing = true;
        }
    }

    fn advertise(&mut self, due: Due) {
        let now = Instant::now();
        let advert = self.current();
        if let Some(last) = &self.last {
            self.withdrawals.compare(last, &advert);
        }
        let with = self.withdrawals.apply(&advert);
        let kind = match due {
            Due::Unsolicited => "unsolicited",
            Due::Solicited => "solicited",
        };
        if !self.send(&with, kind) {
            self.schedule.retry(now);
            return;
        }
        let answered = self
            .schedule
            .sent(now, self.schedule.draw_interval(random_u64()));
        RaStats::bump(match due {
            Due::Unsolicited => &self.stats.sent_unsolicited,
            Due::Solicited => &self.stats.sent_solicited,
        });
        RaStats::add(&self.stats.rs_answered, answered);
        self.last = Some(advert);
    }

    fn final_advert(&mut self) {
        let base = match self.last_sent.clone() {
            Some(a) => a,
            None => self.current(),
        };
        if self.send(&finalize(&base), "final") {
            RaStats::bump(&self.stats.sent_final);
            log::info!(
                "ra: stopped advertising on {}: final advertisement sent (router lifetime 0)",
                self.cfg.interface
            );
        }
    }

    fn solicitation(&mut self, r: &Received, data: &[u8]) {
        RaStats::bump(&self.stats.rs_received);
        match check_solicitation(data, r.hop_limit, r.source.is_unspecified()) {
            Err(why) => {
                self.stats.refused(why);
                log::debug!("ra: solicitation from {} refused: {why}", r.source);
                self.trace.emit(|| RaEvent {
                    event: "rs".into(),
                    src: r.source,
                    dst: r.destination,
                    what: "refused".into(),
                    detail: why.to_string(),
                });
            }
            Ok(_) => {
                let now = Instant::now();
                let at = self
                    .schedule
                    .solicited(now, Schedule::draw_delay(random_u64()));
                let ms = at.saturating_duration_since(now).as_millis();
                log::debug!("ra: solicitation from {}: answer in {ms} ms", r.source);
                self.trace.emit(|| RaEvent {
                    event: "rs".into(),
                    src: r.source,
                    dst: r.destination,
                    what: "answer".into(),
                    detail: format!("multicast answer in {ms} ms"),
                });
            }
        }
    }
}

/// What `translator down` sent.
#[derive(Debug, Clone)]
pub struct FinalReport {
    pub interface: String,
    pub source: Ipv6Addr,
    pub advert: Advert,
}

/// Sends the final advertisement of an instance that stops for good (`translator down`): the
/// last advertisement sent (`ra.json`), or else the one `cfg` describes, with every lifetime 0.
pub fn send_final(cfg: &ValidRa, run_dir: &Path) -> anyhow::Result<FinalReport> {
    let socket = RaSocket::open(&cfg.interface, false)
        .with_context(|| format!("ra: sending the final advertisement on {}", cfg.interface))?;
    let link = Link::read(&cfg.interface);
    let source = link.link_local().ok_or_else(|| {
        anyhow!(
            "ra: {} has no link-local address: no final advertisement sent",
            cfg.interface
        )
    })?;
    let base = LastAdvert::read(run_dir)
        .and_then(|l| l.bytes())
        .and_then(|b| decode(&b).map_err(anyhow::Error::from))
        .unwrap_or_else(|_| build(cfg, &link).0);
    let advert = finalize(&base);
    let bytes = encode(&advert).context("ra: encoding the final advertisement")?;
    socket
        .send(&bytes, source, ALL_NODES)
        .with_context(|| format!("ra: sending the final advertisement on {}", cfg.interface))?;
    Ok(FinalReport {
        interface: cfg.interface.clone(),
        source,
        advert,
    })
}
