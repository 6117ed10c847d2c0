//! The translator controller under test: its configuration, a guard that runs it, and its JSON
//! read commands.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Deserialize;

use crate::cmd::{self, Output, Proc, SHORT, TempDir};
use crate::netns::NetNs;
use crate::topology::{CLIENT_PREFIX, GATEWAY_V4, PREFIX};

/// The workspace root (the folder above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The `translator` binary: `$TRANSLATOR_BIN` if set, else the newer of
/// `target/release/translator` and `target/debug/translator` under the workspace root.
pub fn translator_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TRANSLATOR_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("TRANSLATOR_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let target = workspace_root().join("target");
    let candidates = [
        target.join("release/translator"),
        target.join("debug/translator"),
    ];
    candidates
        .iter()
        .filter_map(|p| {
            let modified = p.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, p))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p.clone())
        .ok_or_else(|| {
            anyhow!(
                "no translator binary: build it with `cargo build -p translator-user` (looked for {} and {}; or set TRANSLATOR_BIN)",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// A static mapping (`[[static]]`).
#[derive(Clone, Debug)]
pub struct StaticMapping {
    /// "tcp", "udp" or "icmp".
    pub protocol: String,
    pub ipv6: Ipv6Addr,
    pub ipv6_port: u16,
    pub ipv4: Ipv4Addr,
    pub ipv4_port: u16,
}

/// A configuration file for `translator run`. `None` fields are left out (the controller's
/// default applies).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub instance: String,
    pub ipv6_interface: String,
    pub ipv4_interface: String,
    pub mode: Option<String>,
    pub prefix: String,
    pub clients: Vec<String>,
    pub filtering: Option<String>,
    /// `nat64.inbound_syn` ("hold" or "drop").
    pub inbound_syn: Option<String>,
    pub allow_non_global: Option<bool>,
    pub pool: Vec<String>,
    pub tcp_ports: Option<String>,
    pub udp_ports: Option<String>,
    pub icmp_ids: Option<String>,
    pub block_size: Option<u32>,
    pub max_blocks_per_client: Option<u32>,
    pub subscriber_prefix_len: Option<u32>,
    /// `pool.deterministic` (RFC 7422 blocks).
    pub deterministic: Option<bool>,
    pub timeout_udp: Option<u32>,
    pub timeout_icmp: Option<u32>,
    pub timeout_tcp_established: Option<u32>,
    pub timeout_tcp_transitory: Option<u32>,
    /// `timeouts.enforce_rfc_minimums` (false lets tests use timeouts of a few seconds).
    pub enforce_rfc_minimums: Option<bool>,
    /// `limits.sessions`.
    pub limit_sessions: Option<u32>,
    pub statics: Vec<StaticMapping>,
    /// Raw TOML appended at the end (for sections this type does not know, e.g. `[dns64]`).
    pub extra: String,
}

impl GatewayConfig {
    /// Interfaces as given, prefix 2001:db8:64::/96, clients 2001:db8:1::/64, pool 192.0.2.1,
    /// native mode, and a unique instance name `t<pid>-<n>`.
    pub fn new(ipv6_interface: &str, ipv4_interface: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Self {
            instance: format!("t{}-{n}", std::process::id()),
            ipv6_interface: ipv6_interface.to_owned(),
            ipv4_interface: ipv4_interface.to_owned(),
            mode: Some("native".to_owned()),
            prefix: PREFIX.to_owned(),
            clients: vec![CLIENT_PREFIX.to_owned()],
            filtering: None,
            inbound_syn: None,
            allow_non_global: None,
            pool: vec![GATEWAY_V4.to_string()],
            tcp_ports: None,
            udp_ports: None,
            icmp_ids: None,
            block_size: None,
            max_blocks_per_client: None,
            subscriber_prefix_len: None,
            deterministic: None,
            timeout_udp: None,
            timeout_icmp: None,
            timeout_tcp_established: None,
            timeout_tcp_transitory: None,
            enforce_rfc_minimums: None,
            limit_sessions: None,
            statics: Vec::new(),
            extra: String::new(),
        }
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        fn q(s: &str) -> String {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        fn list(v: &[String]) -> String {
            let items: Vec<String> = v.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        }
        let mut t = String::new();
        let _ = writeln!(t, "instance = {}\n", q(&self.instance));
        let _ = writeln!(t, "[interfaces]");
        let _ = writeln!(t, "ipv6 = {}", q(&self.ipv6_interface));
        let _ = writeln!(t, "ipv4 = {}", q(&self.ipv4_interface));
        if let Some(mode) = &self.mode {
            let _ = writeln!(t, "mode = {}", q(mode));
        }
        let _ = writeln!(t, "\n[nat64]");
        let _ = writeln!(t, "prefix = {}", q(&self.prefix));
        let _ = writeln!(t, "clients = {}", list(&self.clients));
        if let Some(f) = &self.filtering {
            let _ = writeln!(t, "filtering = {}", q(f));
        }
        if let Some(a) = self.allow_non_global {
            let _ = writeln!(t, "allow_non_global = {a}");
        }
        if let Some(i) = &self.inbound_syn {
            let _ = writeln!(t, "inbound_syn = {}", q(i));
        }
        let _ = writeln!(t, "\n[pool]");
        let _ = writeln!(t, "addresses = {}", list(&self.pool));
        for (key, value) in [
            ("tcp_ports", &self.tcp_ports),
            ("udp_ports", &self.udp_ports),
            ("icmp_ids", &self.icmp_ids),
        ] {
            if let Some(v) = value {
                let _ = writeln!(t, "{key} = {}", q(v));
            }
        }
        for (key, value) in [
            ("block_size", self.block_size),
            ("max_blocks_per_client", self.max_blocks_per_client),
            ("subscriber_prefix_len", self.subscriber_prefix_len),
        ] {
            if let Some(v) = value {
                let _ = writeln!(t, "{key} = {v}");
            }
        }
        if let Some(d) = self.deterministic {
            let _ = writeln!(t, "deterministic = {d}");
        }
        let timeouts = [
            ("udp", self.timeout_udp),
            ("icmp", self.timeout_icmp),
            ("tcp_established", self.timeout_tcp_established),
            ("tcp_transitory", self.timeout_tcp_transitory),
        ];
        if timeouts.iter().any(|(_, v)| v.is_some()) || self.enforce_rfc_minimums.is_some() {
            let _ = writeln!(t, "\n[timeouts]");
            for (key, value) in timeouts {
                if let Some(v) = value {
                    let _ = writeln!(t, "{key} = {v}");
                }
            }
            if let Some(e) = self.enforce_rfc_minimums {
                let _ = writeln!(t, "enforce_rfc_minimums = {e}");
            }
        }
        if let Some(n) = self.limit_sessions {
            let _ = writeln!(t, "\n[limits]\nsessions = {n}");
        }
        for s in &self.statics {
            let _ = writeln!(t, "\n[[static]]");
            let _ = writeln!(t, "protocol = {}", q(&s.protocol));
            let _ = writeln!(t, "ipv6 = {}", q(&s.ipv6.to_string()));
            let _ = writeln!(t, "ipv6_port = {}", s.ipv6_port);
            let _ = writeln!(t, "ipv4 = {}", q(&s.ipv4.to_string()));
            let _ = writeln!(t, "ipv4_port = {}", s.ipv4_port);
        }
        if !self.extra.is_empty() {
            let _ = writeln!(t, "\n{}", self.extra);
        }
        t
    }
}

/// The session tables of a running gateway ([`Gateway::session_memory`]).
#[derive(Clone, Copy, Debug)]
pub struct SessionMemory {
    pub session_slots: u32,
    pub binding_slots: u32,
    pub permit_slots: u32,
    /// Their kernel memory, as the kernel accounts it.
    pub bytes: u64,
}

/// One entry of `translator sessions --json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// "tcp", "udp" or "icmp".
    pub protocol: String,
    pub client: Ipv6Addr,
    pub client_port: u16,
    pub remote: Ipv4Addr,
    pub remote_port: u16,
    pub pool: Ipv4Addr,
    pub pool_port: u16,
    /// "udp", "icmp", or a TCP state of RFC 6146: "v4-init", "v6-init", "established",
    /// "v4-fin-rcv", "v6-fin-rcv", "v4-fin-v6-fin-rcv", "trans".
    pub state: String,
    #[serde(default)]
    pub idle_secs: u64,
    #[serde(default)]
    pub expires_in_secs: i64,
}

/// `translator stats --json`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Stats {
    #[serde(default)]
    pub events: BTreeMap<String, u64>,
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
}

impl Stats {
    /// An event counter, 0 when absent.
    pub fn event(&self, name: &str) -> u64 {
        self.events.get(name).copied().unwrap_or(0)
    }

    /// A drop counter, 0 when absent.
    pub fn drop_count(&self, name: &str) -> u64 {
        self.drops.get(name).copied().unwrap_or(0)
    }

    /// All drops added up.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// How long `translator run` may take to load and attach.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `translator --netns NS run --config FILE`. On drop it stops the controller (SIGTERM,
/// then SIGKILL) and runs `translator --netns NS down --instance NAME`, so nothing of the instance
/// stays attached or pinned. It borrows the namespace, so it is always dropped before it.
#[derive(Debug)]
pub struct Gateway<'a> {
    ns: &'a NetNs,
    bin: PathBuf,
    config: GatewayConfig,
    dir: TempDir,
    config_path: PathBuf,
    proc: Option<Proc>,
    print_log_on_drop: bool,
}

impl<'a> Gateway<'a> {
    /// Writes `config`, starts the controller found by [`translator_bin`] in `ns` and waits until
    /// the instance answers `status`.
    pub fn start(ns: &'a NetNs, config: GatewayConfig) -> Result<Self> {
        Self::start_with(translator_bin()?, ns, config)
    }

    /// [`Gateway::start`] with an explicit binary.
    pub fn start_with(bin: PathBuf, ns: &'a NetNs, config: GatewayConfig) -> Result<Self> {
        let dir = TempDir::new("gw")?;
        let config_path = dir.join("translator.toml");
        std::fs::write(&config_path, config.to_toml())
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let mut gw = Self {
            ns,
            bin,
            config,
            dir,
            config_path,
            proc: None,
            print_log_on_drop: true,
        };
        gw.launch()?;
        Ok(gw)
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The gateway namespace.
    pub fn netns(&self) -> &NetNs {
        self.ns
    }

    /// Whether to print the controller's log to stderr when dropped (default: yes; the test
    /// harness shows it only for failed tests).
    pub fn set_print_log_on_drop(&mut self, yes: bool) {
        self.print_log_on_drop = yes;
    }

    /// `translator --netns NS` (add the subcommand and its options).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--netns").arg(self.ns.name());
        c
    }

    /// Runs `translator --netns NS <args> --instance NAME`; errors on a non-zero exit.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut c = self.command();
        c.args(args).args(["--instance", self.instance()]);
        cmd::run_ok(&mut c, SHORT)
    }

    /// Starts the controller process (again) and waits until it is ready: the instance answers
    /// `status --json` and the process is still running half a second later.
    pub fn launch(&mut self) -> Result<()> {
        if self.proc.as_mut().is_some_and(|p| p.exited().is_none()) {
            bail!(
                "the controller of instance {} is already running",
                self.instance()
            );
        }
        let log = self.log_path();
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| {
                use std::io::Write as _;
                writeln!(f, "=== translator run started at unix time {stamp} ===")
            });
        let mut c = self.command();
        c.arg("run").arg("--config").arg(&self.config_path).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let proc = Proc::spawn(&mut c, &log)?;
        let proc = self.proc.insert(proc);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = proc.exited() {
                bail!(
                    "`{}` exited with {status} before it was ready; its log:\n{}",
                    proc.command(),
                    proc.log()
                );
            }
            let mut st = Command::new(&self.bin);
            st.arg("--netns").arg(self.ns.name()).args([
                "status",
                "--json",
                "--instance",
                &self.config.instance,
            ]);
            let pid = proc.pid();
            let ready = cmd::run(&mut st, SHORT).is_ok_and(|o| {
                o.status.success() && {
                    // The pinned state answers `status` even while no controller runs (after a
                    // restart the old pins are there at once): when the controller reports
                    // itself, wait until it is this process.
                    let json: serde_json::Value =
                        serde_json::from_slice(&o.stdout).unwrap_or_default();
                    match (json.get("controller_running"), json.get("controller_pid")) {
                        (Some(running), Some(p)) => {
                            running.as_bool() == Some(true) && p.as_u64() == Some(u64::from(pid))
                        }
                        (Some(running), None) => running.as_bool() == Some(true),
                        _ => true,
                    }
                }
            });
            if ready {
                std::thread::sleep(Duration::from_millis(200));
                if let Some(status) = proc.exited() {
                    bail!(
                        "`{}` exited with {status} right after start; its log:\n{}",
                        proc.command(),
                        proc.log()
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline || cmd::interrupted() {
                bail!(
                    "instance {} did not answer `status` within {START_TIMEOUT:?}; the controller's log:\n{}",
                    self.config.instance,
                    proc.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the controller with SIGTERM (SIGKILL after 10 s) and returns how it exited. The data
    /// plane stays attached.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let proc = self
            .proc
            .as_mut()
            .ok_or_else(|| anyhow!("the controller of {} is not running", self.config.instance))?;
        let status = proc
            .stop(Duration::from_secs(10))
            .ok_or_else(|| anyhow!("cannot collect the exit status of `{}`", proc.command()))?;
        Ok(status)
    }

    /// Whether the controller process is running.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// The controller's log so far (all runs).
    pub fn log(&self) -> String {
        self.proc
            .as_ref()
            .map(Proc::log)
            .unwrap_or_else(|| "(never started)".to_owned())
    }

    /// The controller's log file (stdout and stderr of every run).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("translator.log")
    }

    /// `sessions --json`, parsed.
    pub fn sessions(&self) -> Result<Vec<Session>> {
        self.sessions_with(&[])
    }

    /// `sessions --json` with more arguments (filters, `--sort`), parsed.
    pub fn sessions_with(&self, args: &[&str]) -> Result<Vec<Session>> {
        let mut argv = vec!["sessions", "--json"];
        argv.extend(args);
        let out = self.cli(&argv)?;
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "`{}` printed something that is not a JSON array of sessions:\n{}",
                out.command,
                cmd::tail(&out.stdout_str(), 4000)
            )
        })
    }

    /// `stats --json`, parsed.
    pub fn stats(&self) -> Result<Stats> {
        let out = self.cli(&["stats", "--json"])?;
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "`{}` printed unexpected JSON:\n{}",
                out.command,
                cmd::tail(&out.stdout_str(), 4000)
            )
        })
    }

    /// `status --json`, parsed.
    /// The session tables' slots and kernel memory, as `status --json` reports them.
    pub fn session_memory(&self) -> Result<SessionMemory> {
        let status = self.status()?;
        let num = |k: &str| -> Result<u64> {
            status[k]
                .as_u64()
                .with_context(|| format!("`status --json` has no {k}: {status}"))
        };
        Ok(SessionMemory {
            session_slots: u32::try_from(num("session_slots")?)?,
            binding_slots: u32::try_from(num("binding_slots")?)?,
            permit_slots: u32::try_from(num("permit_slots")?)?,
            bytes: num("session_memory_bytes")?,
        })
    }

    pub fn status(&self) -> Result<serde_json::Value> {
        let out = self.cli(&["status", "--json"])?;
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "`{}` printed something that is not JSON:\n{}",
                out.command,
                cmd::tail(&out.stdout_str(), 4000)
            )
        })
    }
}

impl Drop for Gateway<'_> {
    fn drop(&mut self) {
        if let Some(proc) = self.proc.as_mut() {
            proc.stop(Duration::from_secs(5));
            if self.print_log_on_drop {
                eprintln!(
                    "--- log of `{}` ---\n{}--- end of log ---",
                    proc.command(),
                    proc.log()
                );
            }
        }
        let mut c = self.command();
        c.args(["down", "--instance", &self.config.instance]);
        if let Err(e) = cmd::run_cleanup(&mut c, SHORT) {
            eprintln!(
                "warning: cannot take instance {} down: {e:#}",
                self.config.instance
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_set_key_and_omits_unset_ones() {
        let mut c = GatewayConfig::new("g6", "g4");
        c.instance = "x".into();
        c.timeout_udp = Some(2);
        c.block_size = Some(64);
        c.statics.push(StaticMapping {
            protocol: "tcp".into(),
            ipv6: "2001:db8:1::2".parse().expect("literal"),
            ipv6_port: 8080,
            ipv4: GATEWAY_V4,
            ipv4_port: 80,
        });
        let t = c.to_toml();
        for want in [
            "instance = \"x\"",
            "[interfaces]\nipv6 = \"g6\"\nipv4 = \"g4\"\nmode = \"native\"",
            "prefix = \"2001:db8:64::/96\"",
            "clients = [\"2001:db8:1::/64\"]",
            "addresses = [\"192.0.2.1\"]",
            "block_size = 64",
            "[timeouts]\nudp = 2\n",
            "[[static]]\nprotocol = \"tcp\"\nipv6 = \"2001:db8:1::2\"\nipv6_port = 8080\nipv4 = \"192.0.2.1\"\nipv4_port = 80",
        ] {
            assert!(t.contains(want), "missing {want:?} in:\n{t}");
        }
        for absent in ["icmp =", "filtering", "max_blocks_per_client", "tcp_ports"] {
            assert!(!t.contains(absent), "unexpected {absent:?} in:\n{t}");
        }
    }

    #[test]
    fn instance_names_are_unique() {
        assert_ne!(
            GatewayConfig::new("a", "b").instance,
            GatewayConfig::new("a", "b").instance
        );
    }
}
