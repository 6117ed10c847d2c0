use std::collections::BTreeMap;

use serde::Serialize;

use crate::dataplane::{Instance, Maps};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
    /// Print JSON.
    #[arg(short, long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Stats {
    events: BTreeMap<&'static str, u64>,
    drops: BTreeMap<&'static str, u64>,
    /// DNS64 counters, when the server is enabled (written by the controller every tick).
    #[serde(skip_serializing_if = "Option::is_none")]
    dns64: Option<BTreeMap<String, u64>>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    let maps = Maps::open(&inst.pins)?;
    let (events, drops) = maps.counters()?;
    let dns64 = std::fs::read(inst.run.join("dns64.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<BTreeMap<String, u64>>(&b).ok());
    let s = Stats {
        events: events.iter().map(|(e, n)| (e.name(), *n)).collect(),
        drops: drops.iter().map(|(r, n)| (r.name(), *n)).collect(),
        dns64,
    };
    if a.json {
        return super::print_json(&s);
    }
    println!("events");
    for (e, n) in &events {
        println!("  {:<28} {n}", e.name());
    }
    println!("drops");
    for (r, n) in &drops {
        println!("  {:<28} {n}", r.name());
    }
    if let Some(d) = &s.dns64 {
        println!("dns64");
        for (k, n) in d {
            println!("  {k:<28} {n}");
        }
    }
    Ok(())
}
