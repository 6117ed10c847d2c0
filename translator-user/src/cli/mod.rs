//! The `translator` command line: one module per subcommand.

use clap::{Parser, Subcommand};

mod bib;
mod check;
mod clat;
mod dns64;
mod down;
mod expiry;
mod log;
mod preflight;
mod ra;
mod reload;
mod run;
mod sessions;
mod stats;
mod status;
mod trace;

/// NAT64 + DNS64 gateway: XDP data plane, controller and CLI.
#[derive(Debug, Parser)]
#[command(name = "translator", version, about)]
pub struct Cli {
    /// Enter this network namespace (/run/netns/NAME) before anything else.
    #[arg(long, global = true, value_name = "NAME")]
    pub netns: Option<String>,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration, load and attach the data plane, and run the controller.
    Run(run::Args),
    /// Validate a configuration file and print what it would do.
    Check(check::Args),
    /// Detach the data plane and remove every pin and state file of an instance.
    Down(down::Args),
    /// Interfaces, mode, prefix, pool use.
    Status(status::Args),
    /// The session table.
    Sessions(sessions::Args),
    /// Counters: translated packets, events, every drop reason.
    Stats(stats::Args),
    /// Static bindings (port forwarding) at run time.
    Bib(bib::Args),
    /// DNS64 debugging.
    Dns64(dns64::Args),
    /// Apply a changed configuration file to the running controller (as SIGHUP does).
    Reload(reload::Args),
    /// The port-block log: who held a pool address and port at a time.
    Log(log::Args),
    /// Live view of packets matching a filter and what the data plane did with each.
    Trace(trace::Args),
    /// Router advertisements: the one being sent, or another router's configuration for it.
    Ra(ra::Args),
    /// The host side of 464XLAT: IPv4 literals and IPv4-only apps on an IPv6-only host, through
    /// the network's NAT64 (foreground; `clat status`, `clat down`).
    Clat(clat::Args),
}

/// Options shared by the commands that read a running instance.
#[derive(Debug, clap::Args)]
pub struct InstanceArgs {
    /// Instance name (the `instance` setting).
    #[arg(long, default_value = "default")]
    pub instance: String,
}

pub fn main(cli: Cli) -> anyhow::Result<()> {
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    if let Some(ns) = &cli.netns {
        crate::netns::enter(ns)?;
    }
    let daemon = matches!(&cli.command, Command::Run(_))
        || matches!(&cli.command, Command::Clat(a) if a.action.is_none());
    if !daemon {
        // A command whose output goes to a pipe that closes (`translator sessions | head`)
        // ends quietly, as other command-line tools do, instead of panicking in println!.
        // The daemons keep SIGPIPE ignored: their sockets report EPIPE as an error.
        // SAFETY: setting a signal disposition to its default has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Run(a) => run::main(a),
        Command::Check(a) => check::main(a),
        Command::Down(a) => down::main(a),
        Command::Status(a) => status::main(a),
        Command::Sessions(a) => sessions::main(a),
        Command::Stats(a) => stats::main(a),
        Command::Bib(a) => bib::main(a),
        Command::Dns64(a) => dns64::main(a),
        Command::Reload(a) => reload::main(a),
        Command::Log(a) => log::main(a),
        Command::Trace(a) => trace::main(a),
        Command::Ra(a) => ra::main(a),
        Command::Clat(a) => clat::main(a, cli.netns.as_deref()),
    }
}

/// Prints a value as pretty JSON.
pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
