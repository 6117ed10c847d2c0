//! Running cargo and other tools from xtask.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use translator_tests::workspace_root;

/// The cargo that runs us (`$CARGO`), else `cargo`, started in the workspace root.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(workspace_root());
    c
}

/// Prints `$ command` and runs it with the terminal's stdout/stderr; errors on a non-zero exit.
pub fn status(cmd: &mut Command) -> Result<()> {
    let what = translator_tests::cmd::describe(cmd);
    println!("$ {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed with {status}");
    }
    Ok(())
}

/// Runs `cmd` quietly; true when it starts and exits with 0.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` and returns its stdout; errors (with stderr) on failure.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let what = translator_tests::cmd::describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo build --release -p translator-user`; returns the binary's path.
pub fn build_release() -> Result<PathBuf> {
    status(cargo().args(["build", "--release", "-p", "translator-user"]))?;
    let bin = workspace_root().join("target/release/translator");
    if !bin.is_file() {
        bail!("the build succeeded but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// `cargo build -p translator-user` (debug; the eBPF object inside is always release); returns the
/// binary's path.
pub fn build_debug() -> Result<PathBuf> {
    status(cargo().args(["build", "-p", "translator-user"]))?;
    let bin = workspace_root().join("target/debug/translator");
    if !bin.is_file() {
        bail!("the build succeeded but {} does not exist", bin.display());
    }
    Ok(bin)
}
