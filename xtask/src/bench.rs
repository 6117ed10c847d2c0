//! `cargo xtask bench`: the benchmarks side by side (issue 6).
//!
//! Runs, one after the other (they share the machine and must not disturb each other):
//! 1. `cargo bench --bench dataplane`: `BPF_PROG_TEST_RUN` costs and the session-table scale;
//! 2. `cargo bench --bench live`: live traffic through namespaces (our gateway, the bare XDP
//!    forwarder, kernel forwarding, TAYGA) and iperf3;
//! 3. `cargo bench --bench clat`: the CLAT + NAT64 path with our CLAT against TAYGA as the CLAT
//!    (issue 11);
//! 4. the DNS64 bench against Unbound (`bench_against_unbound` in tests/tests/dns64.rs);
//! 5. `cargo bench --bench report`: one table, `results/bench.json` and `results/bench.md`.
//!
//! A part that fails is reported as "not measured" with the reason; the others still run.

use anyhow::{Context as _, Result, bail};
use translator_tests::workspace_root;

use crate::run::{cargo, status};
use crate::setup;

/// The parts, by the name `--only` takes.
pub const PARTS: [&str; 4] = ["dataplane", "live", "clat", "dns64"];

pub fn bench(quick: bool, only: Option<&str>) -> Result<()> {
    translator_tests::require_root()
        .context("the benchmarks load XDP programs and create network namespaces")?;
    setup::ensure()?;
    let wanted = |p: &str| only.is_none_or(|o| o.split(',').any(|w| w == p));
    if let Some(o) = only
        && let Some(bad) = o.split(',').find(|w| !PARTS.contains(w))
    {
        bail!("--only: unknown part {bad:?}; valid: {}", PARTS.join(", "));
    }
    let results = workspace_root().join("results");
    std::fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let mut failed = Vec::new();
    for target in ["dataplane", "live", "clat"] {
        if !wanted(target) {
            continue;
        }
        let out = results.join(format!("{target}.json"));
        let _ = std::fs::remove_file(&out);
        let mut cmd = cargo();
        cmd.args(["bench", "-p", "translator-tests", "--bench", target])
            .env("TRANSLATOR_BENCH_OUT", &out);
        if quick {
            cmd.args(["--", "--quick"]);
        }
        if let Err(e) = status(&mut cmd) {
            eprintln!("bench: {e:#}");
            failed.push(target);
        }
    }
    if wanted("dns64") {
        let out = results.join("dns64.txt");
        let _ = std::fs::remove_file(&out);
        if let Err(e) = dns64(&out, if quick { 1 } else { 3 }) {
            eprintln!("bench: dns64: {e:#}");
            let _ = std::fs::write(&out, format!("error: {e:#}\n"));
            failed.push("dns64");
        }
    }
    status(
        cargo()
            .args(["bench", "-p", "translator-tests", "--bench", "report"])
            .env("TRANSLATOR_BENCH_DIR", &results),
    )?;
    if !failed.is_empty() {
        bail!(
            "these parts failed (their rows say why): {}",
            failed.join(", ")
        );
    }
    Ok(())
}

/// The DNS64 server against Unbound with dnsperf, from the DNS64 tests (an ignored test that
/// prints a table), `runs` times with one build; the output goes to `out` for the report.
fn dns64(out: &std::path::Path, runs: usize) -> Result<()> {
    let bin = build_dns64_tests()?;
    let mut all = String::new();
    for _ in 0..runs {
        all.push_str(&dns64_once(&bin)?);
        std::fs::write(out, &all).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Builds the DNS64 test binary (release) and returns its path.
fn build_dns64_tests() -> Result<std::path::PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "translator-tests",
        "--test",
        "dns64",
        "--no-run",
    ]);
    let what = translator_tests::cmd::describe(&cmd);
    println!("$ {what}");
    let output = cmd
        .output()
        .with_context(|| format!("cannot start `{what}`"))?;
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    eprint!("{err}");
    if !output.status.success() {
        bail!("`{what}` failed with {}", output.status);
    }
    // "  Executable tests/dns64.rs (target/release/deps/dns64-0123abcd)"
    let path = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Executable "))
        .find(|l| l.contains("dns64"))
        .and_then(|l| l.rsplit_once('(').map(|(_, p)| p.trim_end_matches(')')))
        .context("cargo did not name the dns64 test executable")?;
    Ok(workspace_root().join(path))
}

fn dns64_once(bin: &std::path::Path) -> Result<String> {
    let mut cmd = std::process::Command::new(bin);
    cmd.current_dir(workspace_root().join("tests")).args([
        "--ignored",
        "--nocapture",
        "--exact",
        "bench_against_unbound",
    ]);
    let what = translator_tests::cmd::describe(&cmd);
    println!("$ {what}");
    let output = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{what}`"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{text}");
    if !output.status.success() {
        bail!("`{what}` failed with {}", output.status);
    }
    if !text.contains("1 passed") {
        bail!("the DNS64 bench did not run (no test named bench_against_unbound?)");
    }
    Ok(text)
}
