//! `cargo xtask`: machine setup, build, tests and the demo for the translator workspace.

mod demo;
mod run;
mod setup;
mod testing;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Setup, build, test and demo tasks for translator"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (Debian packages, nightly rust-src, bpf-linker).
    /// Idempotent: only what is missing is installed.
    Setup {
        /// Only report what is missing; install nothing (exit 1 when something is missing).
        #[arg(long)]
        check: bool,
    },
    /// Build the release `translator` binary (the eBPF object is built by its build script).
    Build,
    /// Run formatting and clippy checks and every test; exits non-zero if anything fails.
    /// Needs root (the end-to-end tests create network namespaces).
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`.
        #[arg(long)]
        no_lint: bool,
        /// Only run tests whose name contains this (passed to the test binaries).
        filter: Option<String>,
    },
    /// Only `cargo fmt --all -- --check` and `cargo clippy --workspace --all-targets -- -D warnings`.
    Lint,
    /// Build, create a client/gateway/server topology in network namespaces, run the gateway,
    /// ping and curl an IPv4-only server from an IPv6-only client, show the sessions, clean up.
    /// Needs root.
    Demo {
        /// Keep everything running until Ctrl-C, to explore.
        #[arg(long)]
        keep: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup { check } => {
            if check {
                setup::check_only()
            } else {
                setup::setup()
            }
        }
        Task::Build => setup::ensure().and_then(|()| run::build_release().map(|_| ())),
        Task::Test { no_lint, filter } => testing::test(!no_lint, filter.as_deref()),
        Task::Lint => testing::lint_only(),
        Task::Demo { keep } => demo::demo(keep),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
