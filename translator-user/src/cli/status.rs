use serde::Serialize;

use crate::{
    config::Protocol,
    dataplane::{Instance, Maps, batch},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
    /// Print JSON.
    #[arg(short, long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Status {
    instance: String,
    controller_running: bool,
    controller_pid: u32,
    config: String,
    interfaces: Interfaces,
    mode: Vec<(String, String)>,
    /// The mode that suits each interface, and why.
    advice: Vec<crate::modes::Advice>,
    prefix: String,
    clients: Vec<String>,
    sessions: usize,
    bindings: usize,
    static_bindings: usize,
    /// The slots of the session tables (`limits.sessions`; the binding tables have at most as
    /// many as the pool has ports) and their kernel memory, as the kernel accounts it.
    session_slots: u32,
    binding_slots: u32,
    permit_slots: u32,
    session_memory_bytes: u64,
    pool: Pool,
}

#[derive(Serialize)]
struct Interfaces {
    ipv6: String,
    ipv4: String,
}

#[derive(Serialize)]
struct Pool {
    addresses: Vec<String>,
    block_size: u16,
    max_blocks_per_client: u8,
    /// RFC 7422 deterministic blocks (`pool.deterministic`): how many subscribers they number.
    #[serde(skip_serializing_if = "Option::is_none")]
    deterministic_subscribers: Option<u64>,
    protocols: Vec<PoolUse>,
}

#[derive(Serialize)]
struct PoolUse {
    protocol: Protocol,
    blocks_total: u32,
    blocks_in_use: usize,
    ports_in_use: usize,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    let state = inst.read_state()?;
    let cfg = state.config()?;
    let maps = Maps::open(&inst.pins)?;
    // Batch reads: thousands of entries per syscall, whatever the size of the tables.
    let mut slots = Vec::new();
    batch::entries("BLOCK_SLOTS", &maps.block_slots, |k, _| slots.push(*k));
    let mut b4 = Vec::new();
    batch::entries("BINDINGS4", &maps.bindings4, |k, v| b4.push((*k, *v)));
    let mut sessions = 0;
    batch::entries("SESSIONS6", &maps.sessions6, |_, _| sessions += 1);
    let protocols = Protocol::ALL
        .into_iter()
        .map(|p| PoolUse {
            protocol: p,
            blocks_total: cfg.assignable_blocks(p),
            blocks_in_use: slots.iter().filter(|k| k.proto == p.number()).count(),
            ports_in_use: b4.iter().filter(|(k, _)| k.proto == p.number()).count(),
        })
        .collect();
    let s = Status {
        instance: inst.name.clone(),
        controller_running: state.controller_running(),
        controller_pid: state.pid,
        config: state.config_path.clone(),
        interfaces: Interfaces {
            ipv6: cfg.ipv6_interface.clone(),
            ipv4: cfg.ipv4_interface.clone(),
        },
        mode: state.attached.clone(),
        advice: crate::dataplane::interfaces(&cfg)
            .iter()
            .map(|i| crate::modes::advise(i))
            .collect(),
        prefix: cfg.prefix.to_string(),
        clients: cfg.clients.iter().map(ToString::to_string).collect(),
        sessions,
        bindings: b4.len(),
        static_bindings: b4
            .iter()
            .filter(|(_, v)| v.flags & translator_common::maps::BINDING_STATIC != 0)
            .count(),
        session_slots: cfg.sessions,
        binding_slots: crate::dataplane::memory::slots(
            &inst.pins,
            translator_common::maps::BINDINGS4,
        )?,
        permit_slots: crate::dataplane::memory::slots(
            &inst.pins,
            translator_common::maps::FILTERS,
        )?,
        session_memory_bytes: crate::dataplane::memory::measured(&inst.pins)?,
        pool: Pool {
            addresses: cfg.pool.iter().map(ToString::to_string).collect(),
            block_size: cfg.block_size,
            max_blocks_per_client: cfg.max_blocks_per_client,
            deterministic_subscribers: cfg.deterministic.map(|d| d.subscribers()),
            protocols,
        },
    };
    if a.json {
        return super::print_json(&s);
    }
    println!("instance     {}", s.instance);
    println!(
        "controller   {} (pid {}, config {})",
        if s.controller_running {
            "running"
        } else {
            "not running; data plane still attached"
        },
        s.controller_pid,
        s.config
    );
    for (iface, mode) in &s.mode {
        let role = match (iface == &s.interfaces.ipv6, iface == &s.interfaces.ipv4) {
            (true, true) => "ipv6+ipv4",
            (true, false) => "ipv6",
            _ => "ipv4",
        };
        println!("interface    {iface} ({role}, {mode})");
    }
    for a in &s.advice {
        match a.warning(cfg.mode) {
            Some(w) => println!("note         {w}"),
            None => println!(
                "             {}: {} suits it ({})",
                a.interface, a.suggested, a.reason
            ),
        }
    }
    println!("prefix       {}", s.prefix);
    println!("clients      {}", s.clients.join(", "));
    println!("pool         {}", s.pool.addresses.join(", "));
    if let Some(n) = s.pool.deterministic_subscribers {
        println!(
            "             deterministic blocks (RFC 7422): {n} subscribers of /{} x {} blocks",
            cfg.subscriber_prefix_len, s.pool.max_blocks_per_client
        );
    }
    println!("sessions     {}", s.sessions);
    println!("bindings     {} ({} static)", s.bindings, s.static_bindings);
    println!(
        "memory       {:.1} MiB of kernel memory for {} session slots ({} bytes a slot)",
        s.session_memory_bytes as f64 / f64::from(1u32 << 20),
        s.session_slots,
        s.session_memory_bytes / u64::from(s.session_slots.max(1))
    );
    for p in &s.pool.protocols {
        println!(
            "{:<12} {} of {} blocks in use ({} ports bound)",
            p.protocol.name(),
            p.blocks_in_use,
            p.blocks_total,
            p.ports_in_use
        );
    }
    Ok(())
}
