use crate::dataplane::{self, Instance};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub instance: super::InstanceArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let inst = Instance::new(&a.instance.instance);
    // A controller left running would go on advertising the gateway and handing out blocks
    // on maps that are gone: it stops first (SIGTERM; it leaves the data plane to us).
    if let Ok(state) = inst.read_state()
        && state.controller_running()
    {
        // SAFETY: plain kill(2) on the recorded controller pid.
        unsafe { libc::kill(state.pid as i32, libc::SIGTERM) };
        let t0 = std::time::Instant::now();
        while state.controller_running() && t0.elapsed() < std::time::Duration::from_secs(15) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if state.controller_running() {
            anyhow::bail!(
                "the controller of {:?} (pid {}) did not stop within 15 s of SIGTERM; stop it \
                 and run `translator down` again",
                inst.name,
                state.pid
            );
        }
        println!(
            "instance {:?}: stopped its controller (pid {})",
            inst.name, state.pid
        );
    }
    log_releases(&inst);
    final_advertisement(&inst);
    if dataplane::down(&inst)? {
        println!(
            "instance {:?}: data plane detached, pins and state removed",
            inst.name
        );
    } else {
        println!("instance {:?}: nothing to remove", inst.name);
    }
    Ok(())
}

/// An instance that advertised (`[ra]` enabled) stops being the link's router for good: one
/// final advertisement with every lifetime 0 (RFC 4861 section 6.2.5). A controller that is
/// only stopped (or restarted) sends none.
fn final_advertisement(inst: &Instance) {
    let Ok(cfg) = inst.read_state().and_then(|s| s.config()) else {
        return;
    };
    if !cfg.ra.enabled {
        return;
    }
    match crate::ra::send_final(&cfg.ra, &inst.run) {
        Ok(r) => println!(
            "instance {:?}: final router advertisement sent on {} from {} (router lifetime 0, \
             every option lifetime 0)",
            inst.name, r.interface, r.source
        ),
        Err(e) => log::warn!("{e:#}"),
    }
}

/// Every block still held is released by `down`: the block log says so, or a later query
/// would name the old holder together with the next one.
fn log_releases(inst: &Instance) {
    let Ok(cfg) = inst.read_state().and_then(|s| s.config()) else {
        return;
    };
    if cfg.block_log.is_none() {
        return;
    }
    let Ok(maps) = crate::dataplane::Maps::open(&inst.pins) else {
        return;
    };
    let Ok(mut log) = crate::blocklog::BlockLog::open(cfg.block_log.as_deref()) else {
        return;
    };
    for (k, slot) in maps.block_slots.iter().filter_map(Result::ok) {
        if let Some(p) = crate::config::Protocol::from_number(k.proto) {
            log.write_aged(
                crate::blocklog::RELEASED,
                (
                    std::net::Ipv6Addr::from(translator_common::rfc6052::from_raw6(&k.client)),
                    cfg.subscriber_prefix_len,
                ),
                p,
                std::net::Ipv4Addr::from(translator_common::rfc6052::from_raw4(slot.block.pool)),
                slot.block.start,
                cfg.block_size,
                std::time::Duration::ZERO,
            );
        }
    }
}
