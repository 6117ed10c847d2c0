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
    /// Slow-path counters (written by the controller every tick).
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_path: Option<BTreeMap<String, u64>>,
    /// Router advertisement counters, when `[ra]` is enabled (written every tick).
    #[serde(skip_serializing_if = "Option::is_none")]
    ra: Option<BTreeMap<String, u64>>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    let maps = Maps::open(&inst.pins)?;
    let (events, drops) = maps.counters()?;
    let controller: BTreeMap<String, BTreeMap<String, u64>> =
        std::fs::read(inst.run.join("controller.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let dns64 = controller.get("dns64").cloned();
    let slow_path = controller.get("slow_path").cloned();
    let ra = controller.get("ra").cloned();
    let s = Stats {
        events: events.iter().map(|(e, n)| (e.name(), *n)).collect(),
        drops: drops.iter().map(|(r, n)| (r.name(), *n)).collect(),
        dns64,
        slow_path,
        ra,
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
    for (title, section) in [
        ("dns64", &s.dns64),
        ("slow path", &s.slow_path),
        ("router advertisements", &s.ra),
    ] {
        if let Some(d) = section {
            println!("{title}");
            for (k, n) in d {
                println!("  {k:<28} {n}");
            }
        }
    }
    Ok(())
}
