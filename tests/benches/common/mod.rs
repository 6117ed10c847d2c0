//! Shared by the benchmark targets: result rows, statistics, the results file, and a few
//! kernel helpers (an empty XDP program for timer calibration, bpftool queries).
//!
//! Every bench target writes its rows as JSON to `$TRANSLATOR_BENCH_OUT` (default
//! `results/<target>.json` under the workspace root); `cargo xtask bench` merges them into one
//! table with the machine description.

#![allow(dead_code)] // each bench target uses a different subset

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Serialize;

/// One figure of the table: the median of `runs` runs, with their min and max.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `testrun`, `scale`, `live`, `dns64`.
    pub section: String,
    pub name: String,
    /// `ns/packet`, `packets/s`, `bytes/session`, ...
    pub unit: String,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Every run's figure.
    pub samples: Vec<f64>,
    /// Median divided by the median of `ratio_to` (same run of the bench).
    pub ratio: Option<f64>,
    pub ratio_to: Option<String>,
    /// How the figure was measured, or why it is missing.
    pub note: String,
}

impl Row {
    pub fn new(section: &str, name: &str, unit: &str, samples: Vec<f64>, note: &str) -> Self {
        let (median, min, max) = stats(&samples);
        Self {
            section: section.to_owned(),
            name: name.to_owned(),
            unit: unit.to_owned(),
            median,
            min,
            max,
            samples,
            ratio: None,
            ratio_to: None,
            note: note.to_owned(),
        }
    }

    /// A row that could not be measured, with the reason.
    pub fn missing(section: &str, name: &str, unit: &str, why: &str) -> Self {
        // Errors can carry a whole verifier log: keep the head and the tail.
        let why = if why.chars().count() > 400 {
            let head: String = why.chars().take(200).collect();
            let tail: Vec<char> = why.chars().rev().take(200).collect();
            let tail: String = tail.into_iter().rev().collect();
            format!("{head} [...] {tail}")
        } else {
            why.to_owned()
        };
        let why = why.replace('\n', " ");
        Self::new(
            section,
            name,
            unit,
            Vec::new(),
            &format!("not measured: {why}"),
        )
    }

    /// Sets the ratio of this row's median to `base`'s median.
    pub fn ratio_to(mut self, base: &Row) -> Self {
        if let (Some(a), Some(b)) = (self.median, base.median)
            && b != 0.0
        {
            self.ratio = Some(a / b);
            self.ratio_to = Some(base.name.clone());
        }
        self
    }
}

/// (median, min, max); `None`s for no samples.
pub fn stats(samples: &[f64]) -> (Option<f64>, Option<f64>, Option<f64>) {
    if samples.is_empty() {
        return (None, None, None);
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (Some(median), Some(s[0]), Some(s[n - 1]))
}

/// Median of integer samples (for per-packet distributions inside one run).
pub fn median_u32(v: &mut [u32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    f64::from(v[v.len() / 2])
}

/// Where this target writes its rows.
pub fn out_path(target: &str) -> PathBuf {
    std::env::var_os("TRANSLATOR_BENCH_OUT").map_or_else(
        || {
            translator_tests::workspace_root()
                .join("results")
                .join(format!("{target}.json"))
        },
        PathBuf::from,
    )
}

/// Writes the rows (and prints them, for a run without xtask).
pub fn write_rows(target: &str, rows: &[Row]) -> Result<()> {
    let path = out_path(target);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(rows).context("serializing the rows")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    for r in rows {
        print_row(r);
    }
    println!(
        "{target}: {} rows written to {}",
        rows.len(),
        path.display()
    );
    Ok(())
}

pub fn print_row(r: &Row) {
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), fmt_num);
    let ratio = r
        .ratio
        .map(|x| format!("x{x:.2} of {}", r.ratio_to.as_deref().unwrap_or("?")))
        .unwrap_or_default();
    println!(
        "  {:<8} {:<46} {:>12} [{} .. {}] {:<14} {}",
        r.section,
        r.name,
        f(r.median),
        f(r.min),
        f(r.max),
        r.unit,
        ratio
    );
}

pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Argument `--quick` (or `TRANSLATOR_BENCH_QUICK=1`): fewer runs, for trying the bench out.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("TRANSLATOR_BENCH_QUICK").is_ok_and(|v| v == "1")
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// `union bpf_attr` for BPF_PROG_LOAD up to `expected_attach_type` (the kernel takes the rest as
/// zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Loads `r0 = XDP_PASS; exit`: an XDP program that does nothing, whose test-run time is the
/// measurement overhead (timer reads, dispatch) that every other test-run figure also carries.
pub fn empty_xdp_program() -> Result<OwnedFd> {
    xdp_program_returning(2)
}

/// Loads `r0 = action; exit`.
pub fn xdp_program_returning(action: u8) -> Result<OwnedFd> {
    load_xdp(&[
        [0xb7, 0, 0, 0, action, 0, 0, 0],
        [0x95, 0, 0, 0, 0, 0, 0, 0],
    ])
}

/// Loads `r0 = TC_ACT_OK; exit`: the TC counterpart of [`empty_xdp_program`].
pub fn empty_tc_program() -> Result<OwnedFd> {
    load_prog(
        BPF_PROG_TYPE_SCHED_CLS,
        &[[0xb7, 0, 0, 0, 0, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]],
    )
}

/// Loads an XDP program from raw instructions (8 bytes each, little endian).
pub fn load_xdp(insns: &[[u8; 8]]) -> Result<OwnedFd> {
    load_prog(BPF_PROG_TYPE_XDP, insns)
}

const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

/// Loads a program of `prog_type` from raw instructions.
fn load_prog(prog_type: u32, insns: &[[u8; 8]]) -> Result<OwnedFd> {
    let insns: Vec<u64> = insns.iter().map(|i| u64::from_le_bytes(*i)).collect();
    let license = b"GPL\0";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"bench_prog");
    let attr = ProgLoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).context("program too long")?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    // SAFETY: a valid repr(C) bpf_attr prefix; the instruction and license buffers outlive the
    // call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_PROG_LOAD of a bench program");
    }
    let fd = libc::c_int::try_from(rc).context("fd out of range")?;
    // SAFETY: bpf(2) returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `memset(stack, 0, n)` as the translator's BPF `memset` subprogram does it (one byte store per
/// iteration, five instructions per byte), then `XDP_PASS`: what zeroing a struct costs.
pub fn byte_loop_memset_program(n: u8) -> Result<OwnedFd> {
    load_xdp(&[
        [0xbf, 0xa1, 0, 0, 0, 0, 0, 0],             // r1 = r10
        [0x07, 0x01, 0, 0, 0xc0, 0xff, 0xff, 0xff], // r1 += -64
        [0xb7, 0x02, 0, 0, 0, 0, 0, 0],             // r2 = 0
        [0xb7, 0x03, 0, 0, n, 0, 0, 0],             // r3 = n
        [0xb7, 0x04, 0, 0, 0, 0, 0, 0],             // r4 = 0
        [0xbf, 0x15, 0, 0, 0, 0, 0, 0],             // loop: r5 = r1
        [0x0f, 0x45, 0, 0, 0, 0, 0, 0],             // r5 += r4
        [0x73, 0x25, 0, 0, 0, 0, 0, 0],             // *(u8 *)(r5 + 0) = r2
        [0x07, 0x04, 0, 0, 1, 0, 0, 0],             // r4 += 1
        [0x2d, 0x43, 0xfb, 0xff, 0, 0, 0, 0],       // if r3 > r4 goto loop
        [0xb7, 0x00, 0, 0, 2, 0, 0, 0],             // r0 = XDP_PASS
        [0x95, 0, 0, 0, 0, 0, 0, 0],                // exit
    ])
}

/// Runs a command and returns its stdout, or an error with its stderr.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot start {program}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    translator::testrun::pin_to_cpu(cpu)
}

/// CPU time of the calling thread, ns.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: zeroed timespec filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// CPU time (user + system) of a process (all its threads) or a kernel thread, in seconds; 0
/// when it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces): utime is field 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// Turns SIGINT and SIGTERM into [`translator_tests::request_interrupt`]: every wait of the
/// test library then fails, so the bench unwinds and its guards remove what it set up
/// (children run in their own process groups and do not get the terminal's Ctrl-C).
pub fn stop_on_interrupt() -> Result<()> {
    extern "C" fn on_signal(_: libc::c_int) {
        // An atomic store: async-signal-safe.
        translator_tests::request_interrupt();
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores an atomic; no SA_SIGINFO.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("installing a signal handler");
        }
    }
    Ok(())
}

/// Sleeps `d`, in steps, and fails early once the bench is interrupted.
pub fn sleep_unless_interrupted(d: std::time::Duration) -> Result<()> {
    let end = std::time::Instant::now() + d;
    loop {
        if translator_tests::interrupted() {
            anyhow::bail!("interrupted");
        }
        let now = std::time::Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(50)));
    }
}
