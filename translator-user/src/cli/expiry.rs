//! The expiry pass on a thread of its own. At a million sessions one pass takes seconds (see
//! `sessions::expire` and the bench), which the controller's loop must not wait for: it drains
//! the data plane's ring buffers every 250 ms (block and session log lines would be lost once a
//! ring fills), and answers reloads and signals. The thread runs a pass, then waits one expiry
//! period (a quarter of the shortest timeout) after it ends, and sends what the pass removed
//! back to the loop, which writes the log lines (allocations drained first, so a release
//! never precedes its allocation in the log). Every `sessions::ORPHAN_SWEEP_EVERY` passes (the
//! first one included) it also removes half sessions.
//!
//! The maps are shared behind a mutex with the loop's reload (static mappings and policy), so a
//! static mapping cannot be made of a binding the pass is about to delete.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        mpsc::{self, RecvTimeoutError},
    },
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

/// The running expiry thread. Dropping it stops the thread after its current pass.
pub(super) struct Expiry {
    /// New configurations (timeouts) for the passes to come.
    ctl: mpsc::Sender<Config>,
    /// What each pass removed, in order.
    pub results: tokio::sync::mpsc::UnboundedReceiver<sessions::Expired>,
}

impl Expiry {
    /// Starts the thread; its first pass runs at once.
    pub fn start(
        maps: Arc<Mutex<Maps>>,
        cfg: &Config,
        gauges: Arc<PassGauges>,
    ) -> anyhow::Result<Self> {
        let (ctl, ctl_rx) = mpsc::channel::<Config>();
        let (tx, results) = tokio::sync::mpsc::unbounded_channel();
        let mut cfg = cfg.clone();
        std::thread::Builder::new()
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
                            let pass = {
                                let mut maps = maps.lock().unwrap_or_else(PoisonError::into_inner);
                                // The first pass too: what an earlier controller left.
                                if passes.is_multiple_of(sessions::ORPHAN_SWEEP_EVERY) {
                                    let n = sessions::sweep_orphans(&mut maps);
                                    if n > 0 {
                                        log::debug!("removed {n} half sessions");
                                    }
                                }
                                passes = passes.wrapping_add(1);
                                sessions::expire(&mut maps, &cfg)
                            };
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
        Ok(Self { ctl, results })
    }

    /// The configuration for the next passes (after a reload).
    pub fn reconfigure(&self, cfg: &Config) {
        // Fails only when the thread has ended, which the loop notices by its results.
        let _ = self.ctl.send(cfg.clone());
    }
}
