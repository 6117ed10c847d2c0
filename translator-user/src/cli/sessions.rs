use std::net::Ipv6Addr;

use crate::{
    config::Protocol,
    dataplane::{Instance, Maps},
    sessions,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
    /// Only sessions of this client address.
    #[arg(long)]
    pub client: Option<Ipv6Addr>,
    /// Only this protocol: tcp, udp or icmp.
    #[arg(long)]
    pub protocol: Option<Protocol>,
    /// Only sessions using this pool port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Print JSON.
    #[arg(short, long)]
    pub json: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    let cfg = inst.read_state()?.config()?;
    let maps = Maps::open(&inst.pins)?;
    let list: Vec<_> = sessions::list(&maps, &cfg)
        .into_iter()
        .filter(|s| a.client.is_none_or(|c| s.client == c))
        .filter(|s| a.protocol.is_none_or(|p| s.protocol == p))
        .filter(|s| a.port.is_none_or(|p| s.pool_port == p))
        .collect();
    if a.json {
        return super::print_json(&list);
    }
    println!(
        "{:<5} {:<40} {:<22} {:<22} {:<12} {:>6} {:>8}",
        "proto", "client", "pool", "remote", "state", "idle", "expires"
    );
    for s in &list {
        println!(
            "{:<5} {:<40} {:<22} {:<22} {:<12} {:>5}s {:>7}s",
            s.protocol.name(),
            format!("[{}]:{}", s.client, s.client_port),
            format!("{}:{}", s.pool, s.pool_port),
            format!("{}:{}", s.remote, s.remote_port),
            s.state.name(),
            s.idle_secs,
            s.expires_in_secs
        );
    }
    println!("{} session(s)", list.len());
    Ok(())
}
