//! `cargo xtask`: machine setup, build, tests and the demo for the translator workspace.

mod bench;
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
    /// Benchmarks side by side (issue 6): BPF_PROG_TEST_RUN costs, session-table scale, live
    /// traffic against the bare XDP forwarder, kernel forwarding and TAYGA, iperf3, DNS64
    /// against Unbound. Prints one table; writes results/bench.json and results/bench.md.
    /// Needs root; takes several minutes.
    Bench {
        /// Fewer and shorter runs (to try the bench out; the figures are less reliable).
        #[arg(long)]
        quick: bool,
        /// Only these parts, comma-separated: dataplane, live, clat, dns64.
        #[arg(long)]
        only: Option<String>,
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
        Task::Bench { quick, only } => bench::bench(quick, only.as_deref()),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
