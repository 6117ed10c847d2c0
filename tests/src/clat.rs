//! A guard that runs `translator clat` in a namespace (with `--netns`: `ip netns exec` would
//! hide bpffs) and reads `clat status --json`. Dropping it stops the CLAT and runs
//! `translator clat down` there, so nothing is left even when a test fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, Proc, TempDir};
use crate::netns::NetNs;

const SHORT: Duration = Duration::from_secs(30);

/// A running `translator clat`.
pub struct Clat<'a> {
    ns: &'a NetNs,
    bin: PathBuf,
    proc: Option<Proc>,
    _dir: TempDir,
    log: PathBuf,
    print_log_on_drop: bool,
}

impl<'a> Clat<'a> {
    /// Starts `translator --netns NS clat <args>`.
    pub fn start(bin: PathBuf, ns: &'a NetNs, args: &[&str]) -> Result<Self> {
        let dir = TempDir::new("clat")?;
        let log = dir.join("clat.log");
        let mut c = Command::new(&bin);
        c.arg("--netns").arg(ns.name()).arg("clat").args(args).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let proc = Proc::spawn(&mut c, &log)?;
        Ok(Self {
            ns,
            bin,
            proc: Some(proc),
            _dir: dir,
            log,
            print_log_on_drop: true,
        })
    }

    /// Whether to print the CLAT's log when dropped (default: yes; the test harness shows it
    /// only for failed tests; benches turn it off).
    pub fn set_print_log_on_drop(&mut self, yes: bool) {
        self.print_log_on_drop = yes;
    }

    /// `translator --netns NS <args>`.
    pub fn cli(&self, args: &[&str]) -> Result<cmd::Output> {
        let mut c = Command::new(&self.bin);
        c.arg("--netns").arg(self.ns.name()).args(args);
        cmd::run_ok(&mut c, SHORT)
    }

    /// `clat status --json`, parsed.
    pub fn status(&self) -> Result<serde_json::Value> {
        let out = self.cli(&["clat", "status", "--json"])?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("clat status --json printed {}", out.stdout_str()))
    }

    /// Waits until `clat status` satisfies `f`, and returns that status.
    pub fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(p) = self.proc.as_mut()
                && let Some(st) = p.exited()
            {
                bail!("translator clat exited with {st}; its log:\n{}", self.log());
            }
            if let Ok(s) = self.status() {
                if f(&s) {
                    return Ok(s);
                }
                last = Some(s);
            }
            if Instant::now() >= deadline || cmd::interrupted() {
                bail!(
                    "the CLAT did not get {what} within {timeout:?}; last status: {}\nits log:\n{}",
                    last.map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until it translates.
    pub fn wait_active(&mut self, timeout: Duration) -> Result<serde_json::Value> {
        self.wait_status("active", timeout, |s| s["state"] == "active")
    }

    /// Stops the process (SIGTERM) and returns whether it exited cleanly.
    pub fn stop(&mut self) -> Result<bool> {
        let Some(mut p) = self.proc.take() else {
            return Ok(true);
        };
        let st = p
            .stop(Duration::from_secs(10))
            .context("collecting the CLAT's exit status")?;
        Ok(st.success())
    }

    /// The log so far.
    pub fn log(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        cmd::tail(&text, 8000).to_owned()
    }
}

impl Drop for Clat<'_> {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
        // The test harness shows it for failed tests only.
        if self.print_log_on_drop {
            println!(
                "--- log of translator clat in {} ---\n{}--- end of log ---",
                self.ns.name(),
                self.log()
            );
        }
        let mut c = Command::new(&self.bin);
        c.arg("--netns").arg(self.ns.name()).args(["clat", "down"]);
        if let Err(e) = cmd::run(&mut c, SHORT) {
            eprintln!("warning: translator clat down in {}: {e:#}", self.ns.name());
        }
    }
}
