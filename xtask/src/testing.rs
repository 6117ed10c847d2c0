//! `cargo xtask test` and `cargo xtask lint`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::run::{build_debug, cargo, status};
use crate::setup;

/// Time limits (building included) that keep a hung test from eating CI's whole budget.
const UNIT_LIMIT: Duration = Duration::from_secs(30 * 60);
const INTEGRATION_LIMIT: Duration = Duration::from_secs(50 * 60);

/// One `test result:` line and the test binary it belongs to.
struct TestResult {
    binary: String,
    line: String,
    passed: u64,
    failed: u64,
    ignored: u64,
}

fn count(line: &str, word: &str) -> u64 {
    line.split([';', '.'])
        .filter_map(|part| part.trim().strip_suffix(word))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The process group of the running `cargo test`, for the signal forwarder (0: none).
static CHILD_GROUP: AtomicI32 = AtomicI32::new(0);
/// The process group of the last `cargo test` (kept after it exits).
static LAST_GROUP: AtomicI32 = AtomicI32::new(0);

fn signal_group(signal: libc::c_int) {
    let pgid = CHILD_GROUP.load(Ordering::SeqCst);
    if pgid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions; the group is our child's own.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Runs a `cargo test` command in its own process group (so a hung test can be killed with
/// everything it started; Ctrl-C is forwarded to it), streaming its output, and collects the
/// result lines. Kills it after `limit`.
fn cargo_test(cmd: &mut Command, limit: Duration) -> Result<(bool, Vec<TestResult>)> {
    let what = translator_tests::cmd::describe(cmd);
    println!("$ {what}");
    // One pipe for both streams: cargo writes "Running <binary>" to stderr and the tests'
    // "test result:" lines to stdout, and only one stream keeps them in order.
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let writer2 = writer.try_clone().context("duplicating a pipe")?;
    let mut child = cmd
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    // The command holds the pipe's write ends until they are replaced: without this the read
    // end would never see the end of the output.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let pgid = libc::pid_t::try_from(child.id()).unwrap_or_default();
    CHILD_GROUP.store(pgid, Ordering::SeqCst);
    LAST_GROUP.store(pgid, Ordering::SeqCst);
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    {
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send((false, line)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut binary = String::from("?");
    let mut results = Vec::new();
    loop {
        let (is_err, line) = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(x) => x,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !timed_out && Instant::now() >= deadline {
                    eprintln!("xtask: `{what}` still runs after {limit:?}: killing it");
                    signal_group(libc::SIGKILL);
                    timed_out = true;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if is_err {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            binary = rest.to_owned();
        } else if let Some(rest) = trimmed.strip_prefix("Doc-tests ") {
            binary = format!("doc-tests {rest}");
        } else if trimmed.starts_with("test result:") {
            results.push(TestResult {
                binary: binary.clone(),
                line: trimmed.to_owned(),
                passed: count(trimmed, "passed"),
                failed: count(trimmed, "failed"),
                ignored: count(trimmed, "ignored"),
            });
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let st = child
        .wait()
        .with_context(|| format!("waiting for `{what}`"))?;
    CHILD_GROUP.store(0, Ordering::SeqCst);
    let _ = std::io::stdout().flush();
    Ok((st.success() && !timed_out, results))
}

/// `cargo fmt --all -- --check`, `cargo clippy --workspace --all-targets -- -D warnings`, and
/// clippy on the data plane for its BPF target; returns the names of the checks that failed.
fn lint() -> Vec<&'static str> {
    let mut failed = Vec::new();
    if let Err(e) = status(cargo().args(["fmt", "--all", "--", "--check"])) {
        eprintln!("lint: {e:#}");
        failed.push("cargo fmt --check");
    }
    if let Err(e) = status(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])) {
        eprintln!("lint: {e:#}");
        failed.push("cargo clippy");
    }
    // The data plane is only compiled for the BPF target (on the host its modules are cfg'd
    // out): clippy it there, with the nightly toolchain that builds it, warnings as errors.
    let mut bpf = Command::new("rustup");
    bpf.current_dir(translator_tests::workspace_root()).args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "-p",
        "translator-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--bins",
        "--release",
        "--target-dir",
        "target/bpf-lint",
        "--",
        "-D",
        "warnings",
    ]);
    // The workspace's toolchain variables would point rustup's cargo at the stable compiler.
    for var in ["CARGO", "RUSTC", "RUSTUP_TOOLCHAIN", "RUSTC_WRAPPER"] {
        bpf.env_remove(var);
    }
    if let Err(e) = status(&mut bpf) {
        eprintln!("lint: {e:#}");
        failed.push("cargo clippy (eBPF, bpfel-unknown-none)");
    }
    failed
}

/// `cargo xtask lint`.
pub fn lint_only() -> Result<()> {
    let failed = lint();
    if failed.is_empty() {
        println!("lint: ok");
        Ok(())
    } else {
        bail!("failed: {}", failed.join(", "))
    }
}

/// `cargo xtask test`.
pub fn test(with_lint: bool, filter: Option<&str>) -> Result<()> {
    translator_tests::require_root()
        .context("the end-to-end tests create network namespaces and attach XDP programs")?;
    // Ctrl-C / SIGTERM: pass it on to the running tests (SIGKILL 10 s later if they are still
    // there); what the killed tests leave behind is swept below.
    ctrlc::set_handler(|| {
        translator_tests::request_interrupt();
        signal_group(libc::SIGINT);
        std::thread::sleep(Duration::from_secs(10));
        signal_group(libc::SIGKILL);
    })
    .context("cannot install the Ctrl-C handler")?;
    setup::ensure()?;
    let mut failures: Vec<String> = Vec::new();
    if with_lint {
        failures.extend(lint().into_iter().map(str::to_owned));
    }

    // The e2e tests run the real binary: build it first (debug; its eBPF object is release).
    let bin = build_debug().context("building the translator binary for the tests")?;
    for what in translator_tests::sweep_stale(Some(&bin)) {
        println!("removed {what}, left behind by a killed test run");
    }

    let mut results = Vec::new();
    let args = |cmd: &mut Command| {
        if let Some(f) = filter {
            cmd.arg(f);
        }
    };
    // Unit tests and everything but the integration-test crate, in parallel.
    let mut unit = cargo();
    unit.args([
        "test",
        "--workspace",
        "--exclude",
        "translator-tests",
        "--no-fail-fast",
        "--",
    ]);
    args(&mut unit);
    let (ok, r) = cargo_test(&mut unit, UNIT_LIMIT)?;
    stop_if_interrupted(&bin)?;
    if !ok {
        failures.push("cargo test (unit tests)".to_owned());
    }
    results.extend(r);
    // The integration tests share kernel state (namespaces, bpffs): one at a time.
    let mut integration = cargo();
    integration
        .args(["test", "-p", "translator-tests", "--no-fail-fast", "--"])
        .arg("--test-threads=1")
        .env("TRANSLATOR_BIN", &bin);
    args(&mut integration);
    let (ok, r) = cargo_test(&mut integration, INTEGRATION_LIMIT)?;
    stop_if_interrupted(&bin)?;
    if !ok {
        failures.push("cargo test -p translator-tests (integration tests)".to_owned());
    }
    results.extend(r);

    println!("\n==================== test summary ====================");
    let (mut passed, mut failed, mut ignored) = (0, 0, 0);
    for r in &results {
        passed += r.passed;
        failed += r.failed;
        ignored += r.ignored;
        println!("{:<70} {}", short(&r.binary), r.line);
    }
    if !failures.is_empty() {
        println!("failed steps: {}", failures.join("; "));
    }
    println!("total: {passed} passed, {failed} failed, {ignored} skipped");
    if !failures.is_empty() || failed > 0 {
        bail!("tests failed");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// After Ctrl-C: remove what the killed tests left behind and stop.
fn stop_if_interrupted(bin: &std::path::Path) -> Result<()> {
    if !translator_tests::interrupted() {
        return Ok(());
    }
    // Let the test processes die first, so their namespaces count as stale.
    let pgid = LAST_GROUP.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(12);
    // SAFETY: kill(2) with signal 0 only checks whether the group still exists.
    while pgid > 0 && unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    for what in translator_tests::sweep_stale(Some(bin)) {
        println!("removed {what}");
    }
    bail!("interrupted")
}

/// `unittests src/lib.rs (target/debug/deps/translator_common-0123)` to
/// `unittests src/lib.rs (translator_common)`.
fn short(binary: &str) -> String {
    match binary.split_once(" (") {
        Some((what, path)) => {
            let file = path
                .trim_end_matches(')')
                .rsplit('/')
                .next()
                .unwrap_or(path);
            let name = file.rsplit_once('-').map_or(file, |(n, _)| n);
            format!("{what} ({name})")
        }
        None => binary.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{count, short};

    #[test]
    fn reads_cargo_test_result_lines() {
        let line = "test result: FAILED. 12 passed; 3 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.50s";
        assert_eq!(count(line, "passed"), 12);
        assert_eq!(count(line, "failed"), 3);
        assert_eq!(count(line, "ignored"), 1);
        assert_eq!(count("test result: ok. 0 passed; 0 failed", "ignored"), 0);
    }

    #[test]
    fn shortens_test_binary_names() {
        assert_eq!(
            short("unittests src/lib.rs (target/debug/deps/translator_common-0a1b2c)"),
            "unittests src/lib.rs (translator_common)"
        );
        assert_eq!(
            short("tests/e2e.rs (target/debug/deps/e2e-77aa)"),
            "tests/e2e.rs (e2e)"
        );
        assert_eq!(short("doc-tests translator"), "doc-tests translator");
    }
}
