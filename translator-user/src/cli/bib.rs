use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;

use crate::{
    config::{Protocol, RawStatic, parse_static},
    dataplane::{Instance, Maps},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BibCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BibCommand {
    /// List static bindings.
    List {
        #[command(flatten)]
        instance: super::InstanceArgs,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
    },
    /// Add a static binding (inbound port forwarding) to the running data plane.
    Add(Mapping),
    /// Remove a static binding and its sessions.
    Del(Mapping),
}

#[derive(Debug, clap::Args)]
pub struct Mapping {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
    #[arg(long)]
    pub protocol: Protocol,
    #[arg(long)]
    pub ipv6: Ipv6Addr,
    #[arg(long)]
    pub ipv6_port: u16,
    #[arg(long)]
    pub ipv4: Ipv4Addr,
    #[arg(long)]
    pub ipv4_port: u16,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    match a.command {
        BibCommand::List { instance, json } => {
            let inst = Instance::new(&instance.instance);
            let maps = Maps::open(&inst.pins)?;
            let mut list = maps.statics();
            list.sort_by_key(|s| (s.protocol, s.ipv4, s.ipv4_port));
            if json {
                return super::print_json(&list);
            }
            for s in &list {
                println!(
                    "{:<5} {}:{} <-> [{}]:{}",
                    s.protocol.name(),
                    s.ipv4,
                    s.ipv4_port,
                    s.ipv6,
                    s.ipv6_port
                );
            }
            println!("{} static binding(s)", list.len());
            Ok(())
        }
        BibCommand::Add(m) => {
            let (inst, mapping) = validated(&m)?;
            let mut maps = Maps::open(&inst.pins)?;
            maps.add_static(&mapping).context("bib add")?;
            println!(
                "added {} {}:{} -> [{}]:{} (not in the config file: add a [[static]] table to keep it across `translator down`)",
                mapping.protocol, mapping.ipv4, mapping.ipv4_port, mapping.ipv6, mapping.ipv6_port
            );
            Ok(())
        }
        BibCommand::Del(m) => {
            let (inst, mapping) = validated(&m)?;
            let mut maps = Maps::open(&inst.pins)?;
            maps.del_static(&mapping).context("bib del")?;
            println!(
                "removed {} {}:{}",
                mapping.protocol, mapping.ipv4, mapping.ipv4_port
            );
            Ok(())
        }
    }
}

/// Checks a mapping against the running configuration (pool address, client prefixes).
fn validated(m: &Mapping) -> anyhow::Result<(Instance, crate::config::StaticMapping)> {
    let inst = Instance::new(&m.instance.instance);
    let cfg = inst.read_state()?.config()?;
    let raw = RawStatic {
        protocol: m.protocol.name().to_owned(),
        ipv6: m.ipv6.to_string(),
        ipv6_port: m.ipv6_port,
        ipv4: m.ipv4.to_string(),
        ipv4_port: m.ipv4_port,
    };
    let mapping =
        parse_static(&raw, &cfg.pool, &cfg.clients).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((inst, mapping))
}
