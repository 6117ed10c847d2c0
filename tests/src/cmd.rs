//! Running commands with time limits, background processes that die with their guard, scratch
//! folders, and a process-wide "interrupted" flag (set by a Ctrl-C handler) that every wait honours.

use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Marks the process as interrupted (call it from a SIGINT handler). Every wait in this crate then
/// stops early with an error, so the guards unwind and clean up.
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`request_interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Default time limit for short commands (`ip`, `sysctl`, the translator's read commands).
pub const SHORT: Duration = Duration::from_secs(30);

/// Polls `condition` every 50 ms until it returns true (then `true`) or `timeout` passes or the
/// process is interrupted (then `false`).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline || interrupted() {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// What ran, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Stdout as text (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (lossy).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Errors (naming the command, its exit status and its output) unless it exited with 0.
    pub fn check(self) -> Result<Self> {
        if self.status.success() {
            Ok(self)
        } else {
            bail!(
                "`{}` failed with {}\n--- stdout ---\n{}--- stderr ---\n{}",
                self.command,
                self.status,
                tail(&self.stdout_str(), 4000),
                tail(&self.stderr_str(), 4000)
            )
        }
    }
}

/// The last `max` bytes of `s` (on a char boundary), for error messages.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `program arg1 arg2 ...` for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            let _ = write!(s, " '{arg}'");
        } else {
            let _ = write!(s, " {arg}");
        }
    }
    s
}

fn kill_group(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions. Every child we spawn leads its own
    // process group, so -pid reaches it and its descendants and nothing else.
    unsafe {
        libc::kill(-pid, signal);
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Runs `cmd` (stdin closed, output captured) in its own process group; kills the group when
/// `timeout` passes or the process is interrupted, and says so in the error. The exit status is
/// not checked: call [`Output::check`].
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_inner(cmd, timeout, true)
}

/// [`run`] that ignores the interrupted flag: for clean-up commands, which must still run after
/// Ctrl-C.
pub fn run_cleanup(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_inner(cmd, timeout, false)?.check()
}

fn run_inner(cmd: &mut Command, timeout: Duration, interruptible: bool) -> Result<Output> {
    let command = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let deadline = Instant::now() + timeout;
    let mut killed = None;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{command}`"))?
        {
            break status;
        }
        if killed.is_none() {
            if interruptible && interrupted() {
                killed = Some("interrupted");
            } else if Instant::now() >= deadline {
                killed = Some("timed out");
            }
            if killed.is_some() {
                kill_group(child.id(), libc::SIGKILL);
            }
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if let Some(why) = killed {
        bail!(
            "`{command}` {why} after {:?} and was killed\n--- stdout ---\n{}--- stderr ---\n{}",
            timeout,
            tail(&String::from_utf8_lossy(&stdout), 4000),
            tail(&String::from_utf8_lossy(&stderr), 4000)
        );
    }
    Ok(Output {
        command,
        status,
        stdout,
        stderr,
    })
}

/// [`run`] and [`Output::check`] in one.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run(cmd, timeout)?.check()
}

/// Runs `cmd` with the terminal's stdout/stderr (for the demo), in its own process group, killed
/// after `timeout` or on interrupt. Errors unless it exits with 0.
pub fn run_visible(cmd: &mut Command, timeout: Duration) -> Result<()> {
    let command = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{command}`"))?
        {
            if status.success() {
                return Ok(());
            }
            bail!("`{command}` failed with {status}");
        }
        if interrupted() || Instant::now() >= deadline {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            let why = if interrupted() {
                "interrupted"
            } else {
                "timed out"
            };
            bail!("`{command}` {why}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A background process in its own process group, its stdout and stderr going to a log file.
/// Dropping it sends SIGTERM to the group, then SIGKILL after two seconds.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    command: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout+stderr appended to `log`.
    pub fn spawn(cmd: &mut Command, log: &Path) -> Result<Self> {
        let command = describe(cmd);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log file {}", log.display()))?;
        let file2 = file
            .try_clone()
            .with_context(|| format!("cannot duplicate log file {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start `{command}`"))?;
        Ok(Self {
            child,
            command,
            log: log.to_owned(),
        })
    }

    /// What runs, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file's contents so far (lossy; the last 8000 bytes).
    pub fn log(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()));
        tail(&text, 8000).to_owned()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` to the process group.
    pub fn signal(&self, signal: libc::c_int) {
        kill_group(self.child.id(), signal);
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit; then SIGKILL. Returns the
    /// exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// A scratch folder under the system temp folder, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/translator-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("translator-{tag}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Errors unless the process runs as root (namespaces, XDP and bpffs need it).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "this needs root (network namespaces, XDP, bpffs): run it with sudo or as root (euid is {euid})"
        );
    }
    Ok(())
}
