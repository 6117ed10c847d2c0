use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use anyhow::anyhow;

use translator_common::{
    maps::{BINDING_STATIC, BindingKey4},
    rfc6052,
};

use crate::{
    blocklog,
    config::{Config, Protocol, deterministic::Holder},
    dataplane::{Instance, Maps},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LogCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LogCommand {
    /// Which client held a pool address and port at a time (from the block log), or with
    /// `pool.deterministic` (RFC 7422) whose block it is, from the configuration alone.
    Query {
        /// The block log file (default: the running instance's `log.blocks`).
        #[arg(long, conflicts_with = "config")]
        file: Option<PathBuf>,
        /// Answer from this configuration file instead of the running instance's (with
        /// `pool.deterministic` no log is read; without it, its `log.blocks` is).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        instance: super::InstanceArgs,
        /// Pool address.
        #[arg(long)]
        pool: Ipv4Addr,
        /// Pool port.
        #[arg(long)]
        port: u16,
        /// Time, RFC 3339 (e.g. 2026-11-28T14:03:00Z). Needed for the block log; deterministic
        /// blocks belong to the same subscriber at any time.
        #[arg(long)]
        at: Option<String>,
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
        config,
        instance,
        pool,
        port,
        at,
        protocol,
        json,
    } = a.command;
    let running = file.is_none() && config.is_none();
    let cfg = match (&file, config) {
        (Some(_), _) => None,
        (None, Some(path)) => Some(Config::load(&path)?),
        (None, None) => Some(Instance::new(&instance.instance).read_state()?.config()?),
    };
    if let Some(cfg) = &cfg
        && cfg.deterministic.is_some()
    {
        if at.is_some() {
            eprintln!(
                "note: --at is not needed: a deterministic block (RFC 7422) belongs to the same \
                 subscriber at any time; the answer is from the configuration in force now"
            );
        }
        // The running instance's static bindings, those added with `translator bib` too.
        let maps = if running {
            Some(Maps::open(&Instance::new(&instance.instance).pins)?)
        } else {
            None
        };
        return deterministic(cfg, maps.as_ref(), pool, port, protocol, json);
    }
    let Some(at) = at else {
        return Err(anyhow!(
            "--at: give the time to look up (RFC 3339, e.g. 2026-11-28T14:03:00Z); only \
             pool.deterministic blocks are answered without one"
        ));
    };
    let file = match file {
        Some(f) => f,
        None => match cfg.as_ref().and_then(|c| c.block_log.as_deref()) {
            Some(p) if p != "-" => PathBuf::from(p),
            _ => {
                return Err(anyhow!(
                    "no block log file is configured (log.blocks of instance {:?}, or of \
                         --config) and pool.deterministic is off; give --file",
                    instance.instance
                ));
            }
        },
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

/// A static binding of `pool`:`port` in the running data plane.
fn static_binding(maps: &Maps, p: Protocol, pool: Ipv4Addr, port: u16) -> Option<Holder> {
    let k = BindingKey4 {
        pool: rfc6052::raw4(u32::from(pool)),
        pool_port_be: port.to_be(),
        proto: p.number(),
        _pad: 0,
    };
    let v = maps.bindings4.get(&k, 0).ok()?;
    (v.flags & BINDING_STATIC != 0).then(|| {
        let client = Ipv6Addr::from(rfc6052::from_raw6(&v.client));
        Holder::static_mapping(p, pool, port, client, u16::from_be(v.client_port_be))
    })
}

/// RFC 7422: the subscriber whose deterministic block holds `pool`:`port`, per protocol (a
/// static mapping first: the running data plane's when `maps` is given, else the
/// configuration's).
fn deterministic(
    cfg: &Config,
    maps: Option<&Maps>,
    pool: Ipv4Addr,
    port: u16,
    protocol: Option<Protocol>,
    json: bool,
) -> anyhow::Result<()> {
    if !cfg.pool.contains(&pool) {
        return Err(anyhow!(
            "--pool: {pool} is not a pool address of this configuration (pool.addresses)"
        ));
    }
    let holders: Vec<_> = Protocol::ALL
        .into_iter()
        .filter(|p| protocol.is_none_or(|q| q == *p))
        .filter_map(|p| {
            maps.and_then(|m| static_binding(m, p, pool, port))
                .or_else(|| cfg.deterministic_holder(p, pool, port))
        })
        .collect();
    if json {
        return super::print_json(&holders);
    }
    if holders.is_empty() {
        println!("no subscriber's deterministic block holds {pool} port {port}");
    }
    for h in &holders {
        if let Some(client_port) = h.static_client_port {
            println!(
                "{} {} port {} is held by the static mapping of [{}]:{client_port}",
                h.protocol, h.pool, h.first_port, h.client
            );
            continue;
        }
        println!(
            "{} {} ports {}-{} belong to {} (deterministic block {} of {})",
            h.protocol,
            h.pool,
            h.first_port,
            h.last_port,
            h.holder(),
            h.slot,
            cfg.max_blocks_per_client
        );
    }
    Ok(())
}
