use std::path::PathBuf;

use crate::{
    config::{Config, Protocol},
    dataplane, modes,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let cfg = Config::load(&a.config)?;
    println!("{}: valid", a.config.display());
    println!("  instance  {}", cfg.instance);
    println!("  ipv6      {}", cfg.ipv6_interface);
    println!("  ipv4      {}", cfg.ipv4_interface);
    println!("  mode      {}", cfg.mode);
    // Which mode suits the interfaces, as far as this host has them.
    for iface in dataplane::interfaces(&cfg) {
        if crate::netns::ifindex(&iface).is_none() {
            println!("            {iface}: not on this host (run `check` where the gateway runs)");
            continue;
        }
        let a = modes::advise(&iface);
        match a.warning(cfg.mode) {
            Some(w) => println!("  note      {w}"),
            None => println!(
                "            {iface}: {} suits it ({})",
                a.suggested, a.reason
            ),
        }
    }
    println!("  prefix    {}", cfg.prefix);
    let clients: Vec<String> = cfg.clients.iter().map(ToString::to_string).collect();
    println!("  clients   {}", clients.join(", "));
    let pool: Vec<String> = cfg.pool.iter().map(ToString::to_string).collect();
    println!("  pool      {}", pool.join(", "));
    for p in Protocol::ALL {
        println!(
            "  {p:<4}      {} blocks of {} ports, at most {} per client",
            cfg.total_blocks(p),
            cfg.block_size,
            cfg.max_blocks_per_client
        );
    }
    println!("  statics   {}", cfg.statics.len());
    let need = crate::dataplane::memory::planned(&cfg);
    println!(
        "  sessions  {} slots, {:.1} MiB of kernel memory ({} bytes a slot){}",
        cfg.sessions,
        need as f64 / f64::from(1u32 << 20),
        need / u64::from(cfg.sessions.max(1)),
        match crate::dataplane::memory::check(&cfg, crate::dataplane::memory::available()) {
            Ok(()) => String::new(),
            Err(e) => format!("\n            does not fit here: {e}"),
        }
    );
    println!(
        "  dns64     {}",
        if cfg.dns64.as_ref().is_some_and(|d| d.enabled) {
            "enabled"
        } else {
            "disabled"
        }
    );
    print!("{}", crate::ra::check_summary(&cfg.ra));
    Ok(())
}
