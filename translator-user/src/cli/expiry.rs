//! The expiry pass on a thread of its own. At a million sessions one pass takes seconds (see
//! `sessions::expire` and the bench), which the controller's loop must not wait for: it drains
//! the data plane's ring buffers every 250 ms (block and session log lines would be lost once a
//! ring fills), and answers reloads and signals. The thread runs a pass, then waits one expiry
//! period (a quarter of the shortest timeout) after it ends, and sends what the pass removed
//! back to the loop, which writes the log lines. Every `sessions::ORPHAN_SWEEP_EVERY` passes
//! (the first one included) it also removes half sessions.
//!
//! The thread has its own handles on the pinned maps. It shares one lock with the loop's
//! reload, held only while idle bindings are checked again and deleted (`sessions::Edits`), so
//! a binding cannot be deleted while it becomes static, and a reload waits at most that long.
//! At shutdown the loop stops the thread and waits for the pass under way, so that no pass is
//! cut between deleting a binding's halves or a block's slot and its return to the pool.

use std::{
    path::Path,
    sync::{
        Arc,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{config::Config, dataplane::Maps, metrics::PassGauges, sessions};

/// The expiry period for a configuration: a quarter of the shortest timeout, 0.5 to 10 s.
pub(super) fn period(cfg: &Config) -> Duration {
    let t = &cfg.timeouts;
    let shortest = t
        .udp
        .min(t.icmp)
        .min(t.tcp_established)
        .min(t.tcp_transitory);
    (shortest / 4).clamp(Duration::from_millis(500), Duration::from_secs(10))
}

/// The running expiry thread. Dropping it stops the thread and waits for it.
pub(super) struct Expiry {
    /// New configurations (timeouts) for the passes to come; dropped to stop the thread.
    ctl: Option<mpsc::Sender<Config>>,
    /// What each pass removed, in order.
    pub results: tokio::sync::mpsc::UnboundedReceiver<sessions::Expired>,
    thread: Option<JoinHandle<()>>,
}

impl Expiry {
    /// Starts the thread on the maps pinned in `pins`; its first pass runs at once.
    pub fn start(
        pins: &Path,
        cfg: &Config,
        edits: Arc<sessions::Edits>,
        gauges: Arc<PassGauges>,
    ) -> anyhow::Result<Self> {
        let mut maps = Maps::open(pins)?;
        let (ctl, ctl_rx) = mpsc::channel::<Config>();
        let (tx, results) = tokio::sync::mpsc::unbounded_channel();
        let mut cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("expiry".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut passes = 0u32;
                loop {
                    match ctl_rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Ok(c) => {
                            // Shorter timeouts take effect at once, longer ones after the
                            // pass already due.
                            next = next.min(Instant::now() + period(&c));
                            cfg = c;
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if passes.is_multiple_of(sessions::ORPHAN_SWEEP_EVERY) {
                                let n = sessions::sweep_orphans(&mut maps);
                                if n > 0 {
                                    log::debug!("removed {n} half sessions");
                                }
                            }
                            passes = passes.wrapping_add(1);
                            let pass = sessions::expire_with(&mut maps, &cfg, &edits);
                            gauges.set(pass.left.clone());
                            if tx.send(pass).is_err() {
                                return;
                            }
                            next = Instant::now() + period(&cfg);
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .context("starting the expiry thread")?;
        Ok(Self {
            ctl: Some(ctl),
            results,
            thread: Some(thread),
        })
    }

    /// The configuration for the next passes (after a reload).
    pub fn reconfigure(&self, cfg: &Config) {
        if let Some(ctl) = &self.ctl {
            // Fails only when the thread has ended, which the loop notices by its results.
            let _ = ctl.send(cfg.clone());
        }
    }

    /// Stops the thread, waits for the pass under way, and returns the results the loop has
    /// not taken yet.
    pub fn stop(&mut self) -> Vec<sessions::Expired> {
        self.ctl = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("the expiry thread panicked");
        }
        let mut rest = Vec::new();
        while let Ok(e) = self.results.try_recv() {
            rest.push(e);
        }
        rest
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        self.stop();
    }
}
