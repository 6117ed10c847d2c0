//! `cargo xtask setup`: check what the build and the tests need, and install what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::run::{status, stdout, succeeds};

/// Debian packages the project and its tests use.
pub const DEBIAN_PACKAGES: &[&str] = &[
    // building (cc for cargo, zlib for bpf-linker)
    "build-essential",
    "pkg-config",
    "zlib1g-dev",
    // network tools used by the tests and the demo
    "iproute2",
    "iputils-ping",
    "iputils-tracepath",
    "traceroute",
    "iperf3",
    "tcpdump",
    "ethtool",
    "curl",
    "nftables",
    "busybox",
    "bpftool",
    // packet crafting and DNS (DNS64 tests)
    "python3-scapy",
    "python3-dnspython",
    "bind9",
    "bind9-dnsutils",
    "unbound",
    "dnsperf",
    // a reference NAT64 to compare against
    "tayga",
    // a real Prometheus and OpenMetrics text parser for the metrics tests (/usr/bin/python3)
    "python3-prometheus-client",
    // router advertisement clients (RA tests and the demo): rdisc6, rdnssd
    "ndisc6",
    "rdnssd",
];

/// What `check` found missing.
#[derive(Debug, Default)]
pub struct Missing {
    pub packages: Vec<&'static str>,
    pub nightly: bool,
    pub rust_src: bool,
    pub bpf_linker: bool,
    /// rustfmt or clippy missing from the toolchain that builds the workspace.
    pub lint_tools: bool,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
            && !self.nightly
            && !self.rust_src
            && !self.bpf_linker
            && !self.lint_tools
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.packages.is_empty() {
            parts.push(format!("Debian packages: {}", self.packages.join(" ")));
        }
        if self.nightly {
            parts.push("the nightly Rust toolchain".to_owned());
        }
        if self.rust_src {
            parts.push("rust-src for nightly".to_owned());
        }
        if self.bpf_linker {
            parts.push("bpf-linker".to_owned());
        }
        if self.lint_tools {
            parts.push("rustfmt/clippy".to_owned());
        }
        parts.join("; ")
    }
}

fn package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", name])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

fn nightly_installed() -> bool {
    succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))
}

fn rust_src_installed() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == "rust-src")
        })
}

fn bpf_linker_works() -> bool {
    succeeds(Command::new("bpf-linker").arg("--version"))
}

fn lint_tools_installed() -> bool {
    succeeds(crate::run::cargo().args(["fmt", "--version"]))
        && succeeds(crate::run::cargo().args(["clippy", "--version"]))
}

/// Checks everything; installs nothing.
pub fn check() -> Missing {
    let packages: Vec<&'static str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    let nightly = !nightly_installed();
    Missing {
        packages,
        nightly,
        rust_src: nightly || !rust_src_installed(),
        bpf_linker: !bpf_linker_works(),
        lint_tools: !lint_tools_installed(),
    }
}

/// `setup --check`.
pub fn check_only() -> Result<()> {
    let missing = check();
    if missing.is_empty() {
        println!("setup: everything is installed");
        Ok(())
    } else {
        bail!("missing: {}", missing.describe())
    }
}

/// Runs [`setup`] when [`check`] finds something missing (for build, test and demo).
pub fn ensure() -> Result<()> {
    let missing = check();
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "setup: missing {}; running `cargo xtask setup`",
        missing.describe()
    );
    install(&missing)
}

/// `cargo xtask setup`.
pub fn setup() -> Result<()> {
    let missing = check();
    if missing.is_empty() {
        println!(
            "setup: everything is installed ({} Debian packages, nightly with rust-src, bpf-linker)",
            DEBIAN_PACKAGES.len()
        );
        return Ok(());
    }
    println!("setup: missing {}", missing.describe());
    install(&missing)?;
    let still = check();
    if !still.is_empty() {
        bail!("setup finished but still missing: {}", still.describe());
    }
    println!("setup: done");
    Ok(())
}

fn install(missing: &Missing) -> Result<()> {
    if !missing.packages.is_empty() {
        translator_tests::require_root()
            .context("installing Debian packages with apt-get needs root")?;
        status(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        status(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing.packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if missing.nightly {
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if missing.rust_src || missing.nightly {
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if missing.bpf_linker {
        install_bpf_linker()?;
    }
    if missing.lint_tools {
        // The toolchain that runs us (rustup passes it down in RUSTUP_TOOLCHAIN).
        status(
            Command::new("rustup")
                .args(["component", "add", "rustfmt", "clippy"])
                .current_dir(translator_tests::workspace_root()),
        )?;
    }
    Ok(())
}

/// The LLVM major version of the nightly toolchain (`LLVM version: 22.1.4` gives 22).
fn nightly_llvm_major() -> Result<u32> {
    let info = stdout(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    llvm_major(&info)
}

/// The major version from `rustc -vV` output.
fn llvm_major(info: &str) -> Result<u32> {
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` prints no `LLVM version:` line:\n{info}"))?
        .trim();
    let major = version.split('.').next().unwrap_or_default();
    major
        .parse()
        .with_context(|| format!("cannot read the LLVM major version from `{version}`"))
}

/// The toolchain's `libLLVM-<major>-rust-<version>.so` in `<sysroot>/lib`.
fn find_libllvm(lib: &Path, major: u32) -> Result<PathBuf> {
    let prefix = format!("libLLVM-{major}-");
    let entries =
        std::fs::read_dir(lib).with_context(|| format!("cannot list {}", lib.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", lib.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".so") {
            return Ok(entry.path());
        }
    }
    bail!(
        "no {prefix}*.so in {}: is the nightly toolchain complete? (try `rustup toolchain install nightly --force`)",
        lib.display()
    )
}

/// Builds bpf-linker against the nightly toolchain's own LLVM.
fn install_bpf_linker() -> Result<()> {
    let major = nightly_llvm_major()?;
    let sysroot = PathBuf::from(
        stdout(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?
            .trim(),
    );
    let lib = sysroot.join("lib");
    let libllvm = find_libllvm(&lib, major)?;
    let link = lib.join("libLLVM.so");
    if std::fs::read_link(&link).ok().as_deref() != Some(libllvm.as_path()) {
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link)
                .with_context(|| format!("cannot replace {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), libllvm.display()))?;
        println!("setup: linked {} -> {}", link.display(), libllvm.display());
    }
    // `rustup run nightly cargo`, not `cargo +nightly`: the `cargo` on PATH may be a toolchain's
    // own binary rather than the rustup proxy that understands `+toolchain`.
    let mut c = Command::new("rustup");
    c.args([
        "run",
        "nightly",
        "cargo",
        "install",
        "--force",
        "bpf-linker",
        "--no-default-features",
    ])
    .arg("--features")
    .arg(format!("llvm-{major}"))
    .env("LLVM_PREFIX", &sysroot)
    // Outside the workspace, and without what the outer `cargo run` set for us.
    .current_dir(std::env::temp_dir())
    .env_remove("RUSTUP_TOOLCHAIN")
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("RUSTC")
    .env_remove("RUSTFLAGS");
    status(&mut c).context("building bpf-linker against the nightly toolchain's LLVM")?;
    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but `bpf-linker --version` fails: is ~/.cargo/bin on PATH?"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{find_libllvm, llvm_major};

    #[test]
    fn reads_the_llvm_major_version() {
        let info = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(info).expect("valid"), 22);
        assert!(llvm_major("rustc 1.0\n").is_err());
        assert!(llvm_major("LLVM version: x.1\n").is_err());
    }

    #[test]
    fn finds_the_toolchain_libllvm() {
        let dir = translator_tests::TempDir::new("xtask-llvm").expect("temp dir");
        for name in [
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "libLLVM-22-rust-1.97.0-nightly.so",
        ] {
            std::fs::write(dir.join(name), b"").expect("write");
        }
        let found = find_libllvm(dir.path(), 22).expect("found");
        assert_eq!(found, dir.join("libLLVM-22-rust-1.97.0-nightly.so"));
        assert!(find_libllvm(dir.path(), 21).is_err());
    }
}
