use std::{net::Ipv4Addr, path::PathBuf};

use anyhow::anyhow;

use crate::{blocklog, config::Protocol, dataplane::Instance};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LogCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LogCommand {
    /// Which client held a pool address and port at a time (from the block log).
    Query {
        /// The block log file (default: the running instance's `log.blocks`).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        instance: super::InstanceArgs,
        /// Pool address.
        #[arg(long)]
        pool: Ipv4Addr,
        /// Pool port.
        #[arg(long)]
        port: u16,
        /// Time, RFC 3339 (e.g. 2026-11-28T14:03:00Z).
        #[arg(long)]
        at: String,
        /// Only this protocol.
        #[arg(long)]
        protocol: Option<Protocol>,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
    },
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let LogCommand::Query {
        file,
        instance,
        pool,
        port,
        at,
        protocol,
        json,
    } = a.command;
    let file = match file {
        Some(f) => f,
        None => {
            let cfg = Instance::new(&instance.instance).read_state()?.config()?;
            match cfg.block_log.as_deref() {
                Some(p) if p != "-" => PathBuf::from(p),
                _ => {
                    return Err(anyhow!(
                        "instance {:?} writes no block log file (log.blocks); give --file",
                        instance.instance
                    ));
                }
            }
        }
    };
    let at = blocklog::parse_time(&at)?;
    let held = blocklog::query(&file, pool, port, protocol, at)?;
    if json {
        return super::print_json(&held);
    }
    if held.is_empty() {
        println!("nobody held {pool} port {port} at {at}");
    }
    for e in &held {
        println!(
            "{} {} ports {}-{} held by {} (allocated {})",
            e.protocol,
            e.pool,
            e.first_port,
            e.last_port,
            e.holder(),
            e.ts
        );
    }
    Ok(())
}
