//! Named network namespaces (`/run/netns/NAME`) owned by an RAII guard.

use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{self, Output, Proc, SHORT};

/// A named network namespace, deleted on drop (also while unwinding from a panic) after every
/// process still inside it has been killed.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `<tag>-<pid>-<n>` (unique per process and call) with `lo` up.
    pub fn new(tag: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("{tag}-{}-{n}", std::process::id());
        if Path::new("/run/netns").join(&name).exists() {
            // A leftover of an earlier process with the same pid: take it over and start clean.
            let _ = cmd::run(Command::new("ip").args(["netns", "del", &name]), SHORT);
        }
        cmd::run_ok(Command::new("ip").args(["netns", "add", &name]), SHORT)
            .with_context(|| format!("creating network namespace {name}"))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`). Note
    /// that `ip netns exec` remounts /sys, which hides bpffs: run the translator with its own
    /// `--netns` option instead.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    fn argv(&self, argv: &[&str]) -> Result<Command> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| anyhow!("empty command for namespace {}", self.name))?;
        let mut c = self.command(program);
        c.args(args);
        Ok(c)
    }

    /// Runs `argv` in the namespace with a time limit; errors on a non-zero exit.
    pub fn run_timeout(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        cmd::run_ok(&mut self.argv(argv)?, timeout)
    }

    /// Runs `argv` in the namespace (30 s limit); errors on a non-zero exit.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        self.run_timeout(argv, SHORT)
    }

    /// Runs `argv` in the namespace with a time limit and returns its output whatever the exit
    /// status.
    pub fn try_run(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        cmd::run(&mut self.argv(argv)?, timeout)
    }

    /// Starts `argv` in the background inside the namespace, output to `log`.
    pub fn spawn(&self, argv: &[&str], log: &Path) -> Result<Proc> {
        Proc::spawn(&mut self.argv(argv)?, log)
    }

    /// `ip -n NAME <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        cmd::run_ok(
            Command::new("ip").arg("-n").arg(&self.name).args(args),
            SHORT,
        )
        .with_context(|| format!("in namespace {}", self.name))
    }

    /// `sysctl -qw key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-qw", &format!("{key}={value}")])
            .with_context(|| format!("setting {key}={value} in namespace {}", self.name))?;
        Ok(())
    }

    /// Runs `f` on a new thread that has entered this namespace, and waits for it. Sockets `f`
    /// creates belong to the namespace.
    pub fn in_ns<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        thread::scope(|s| {
            let handle = s.spawn(|| {
                self.enter_current_thread()?;
                Ok::<R, anyhow::Error>(f())
            });
            handle
                .join()
                .map_err(|_| anyhow!("thread inside namespace {} panicked", self.name))?
        })
    }

    /// Starts `f` on a detached thread inside this namespace (for servers that outlive the call).
    pub fn spawn_thread<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<thread::JoinHandle<Result<R>>> {
        let name = self.name.clone();
        thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn(move || {
                enter(&name)?;
                Ok(f())
            })
            .with_context(|| format!("cannot start a thread for namespace {}", self.name))
    }

    /// Moves the calling thread into this namespace (for good: use a dedicated thread).
    pub fn enter_current_thread(&self) -> Result<()> {
        enter(&self.name)
    }

    /// Process ids inside the namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        cmd::run_cleanup(
            Command::new("ip").args(["netns", "pids", &self.name]),
            SHORT,
        )
        .map(|o| {
            o.stdout_str()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }
}

fn enter(name: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(name);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot open {} (does the namespace exist?)", path.display()))?;
    // SAFETY: setns(2) on a valid descriptor; it only changes the calling thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "setns into {} failed: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let me = std::process::id();
        for _ in 0..3 {
            let pids: Vec<i32> = self
                .pids()
                .into_iter()
                .filter(|&p| u32::try_from(p).is_ok_and(|p| p != me))
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) =
            cmd::run_cleanup(Command::new("ip").args(["netns", "del", &self.name]), SHORT)
        {
            eprintln!(
                "warning: cannot delete network namespace {}: {e:#}",
                self.name
            );
        }
    }
}
