use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow};

use crate::{
    config::{AttachMode, Config},
    dataplane::{self, Instance, Maps, State},
    dns64::Dns64Stats,
    netns, sessions,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Attach mode, overriding `interfaces.mode`: native or generic.
    #[arg(long)]
    pub mode: Option<AttachMode>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let mut cfg = Config::load(&a.config)?;
    if let Some(m) = a.mode {
        cfg.mode = m;
    }
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    netns::ensure_bpffs()?;
    for (setting, name) in [
        ("interfaces.ipv6", &cfg.ipv6_interface),
        ("interfaces.ipv4", &cfg.ipv4_interface),
    ] {
        if netns::ifindex(name).is_none() {
            anyhow::bail!("{setting}: there is no interface named {name:?} here (see `ip link`)");
        }
    }
    enable_forwarding(&cfg)?;

    let inst = Instance::new(&cfg.instance);
    let adopt = inst.has_pins();
    if adopt {
        check_adoptable(&inst, &cfg)?;
    }
    let started = start(&cfg, &inst, adopt, &a.config, text);
    if started.is_err() && !adopt {
        // Nothing half-starts: a fresh start that failed leaves nothing behind.
        let _ = dataplane::down(&inst);
    }
    let (mut ebpf, maps) = started?;
    log::info!(
        "instance {:?} {}: prefix {}, pool {:?}, interfaces {}",
        cfg.instance,
        if adopt {
            "adopted (sessions kept)"
        } else {
            "started"
        },
        cfg.prefix,
        cfg.pool,
        dataplane::interfaces(&cfg).join(", ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    // Data-plane log records (block allocations) go to this process's log.
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn!("data-plane log records are not available: {e}");
            None
        }
    };
    let result = rt.block_on(serve(cfg, inst, maps, logger));
    // The program stays attached through its pinned links.
    drop(ebpf);
    log::info!(
        "controller stopped; the data plane keeps forwarding (`translator down` removes it)"
    );
    result
}

fn start(
    cfg: &Config,
    inst: &Instance,
    adopt: bool,
    path: &std::path::Path,
    text: String,
) -> anyhow::Result<(aya::Ebpf, Maps)> {
    let mut ebpf = dataplane::load(cfg, Some(&inst.pins))?;
    let mut maps = Maps::open(&inst.pins)?;
    if !adopt {
        maps.fill_pool(cfg)?;
    }
    maps.sync_policy(cfg)?;
    for (i, s) in cfg.statics.iter().enumerate() {
        maps.add_static(s).with_context(|| format!("static[{i}]"))?;
    }
    let attached = dataplane::attach(&mut ebpf, cfg, inst)?;
    let state = State {
        instance: cfg.instance.clone(),
        pid: std::process::id(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        config_path: path.display().to_string(),
        config_text: text,
        attached,
    };
    inst.write_state(&state)?;
    Ok((ebpf, maps))
}

/// Refuses to adopt pinned state whose pool layout differs from the new configuration: the
/// queued blocks and bindings would not match it.
fn check_adoptable(inst: &Instance, cfg: &Config) -> anyhow::Result<()> {
    let Ok(old) = inst.read_state().and_then(|s| s.config()) else {
        log::warn!(
            "pins of instance {:?} exist without a readable state file; adopting them as they are",
            inst.name
        );
        return Ok(());
    };
    if old.pool != cfg.pool || old.layouts != cfg.layouts || old.sessions != cfg.sessions {
        anyhow::bail!(
            "pool.*/limits.sessions differ from the running data plane of instance {:?}; \
             these cannot change while sessions exist: run `translator down --instance {}` first \
             (this drops every session)",
            inst.name,
            inst.name
        );
    }
    if old.prefix != cfg.prefix {
        log::warn!(
            "nat64.prefix changes from {} to {}: existing sessions keep working, new ones use the new prefix",
            old.prefix,
            cfg.prefix
        );
    }
    Ok(())
}

/// Host settings the data plane depends on:
/// - the XDP route lookup refuses to forward when the receiving interface has forwarding off;
/// - a translated packet handed to the kernel (next hop's MAC not yet known) has a pool address
///   as its source, which the kernel drops as "martian" when the pool address is its own
///   unless the receiving interface accepts local sources and does no strict reverse-path check.
fn enable_forwarding(cfg: &Config) -> anyhow::Result<()> {
    let v6if = &cfg.ipv6_interface;
    for (path, value, what) in [
        ("net/ipv4/ip_forward".to_owned(), "1", "IPv4 forwarding"),
        (
            "net/ipv6/conf/all/forwarding".to_owned(),
            "1",
            "IPv6 forwarding",
        ),
        (
            format!("net/ipv4/conf/{v6if}/forwarding"),
            "1",
            "IPv4 forwarding",
        ),
        (
            format!("net/ipv6/conf/{}/forwarding", cfg.ipv4_interface),
            "1",
            "IPv6 forwarding",
        ),
        (
            format!("net/ipv4/conf/{v6if}/accept_local"),
            "1",
            "local source addresses",
        ),
        (
            format!("net/ipv4/conf/{v6if}/rp_filter"),
            "0",
            "no reverse-path filter",
        ),
    ] {
        if netns::sysctl(&path).as_deref() != Some(value) {
            netns::set_sysctl(&path, value)?;
            log::info!("set {} = {value} ({what})", path.replace('/', "."));
        }
    }
    if netns::sysctl("net/ipv4/conf/all/rp_filter").as_deref() == Some("1") {
        log::warn!(
            "net.ipv4.conf.all.rp_filter = 1 (strict) overrides {v6if}: the first packets of a flow \
             to a not yet resolved next hop may be dropped; use 0 or 2 (loose)"
        );
    }
    Ok(())
}

/// Expiry loop, DNS64 server and signal handling.
async fn serve(
    cfg: Config,
    inst: Instance,
    mut maps: Maps,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
) -> anyhow::Result<()> {
    let mut logger = match logger {
        // SAFETY: the AsyncFd owns the logger, so the ring buffer fd outlives the registration.
        Some(l) => Some(
            unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE)
            }
            .map_err(|e| anyhow!("watching the data-plane log ring buffer: {e}"))?,
        ),
        None => None,
    };
    let shortest = [
        cfg.timeouts.udp,
        cfg.timeouts.icmp,
        cfg.timeouts.tcp_established,
        cfg.timeouts.tcp_transitory,
    ]
    .into_iter()
    .min()
    .unwrap_or(Duration::from_secs(60));
    let period = (shortest / 4).clamp(Duration::from_millis(500), Duration::from_secs(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let dns_stats = Arc::new(Dns64Stats::default());
    let dns = cfg.dns64.clone().filter(|d| d.enabled).map(|d| {
        let stats = dns_stats.clone();
        tokio::spawn(async move { crate::dns64::serve(d, stats).await })
    });
    let dns_enabled = dns.is_some();
    let dns_done = async move {
        match dns {
            Some(h) => h.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(dns_done);
    let stats_path = inst.run.join("controller.json");
    let slow_stats = Arc::new(crate::slowpath::SlowPathStats::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = crate::slowpath::start(&cfg, &inst.pins, slow_stats.clone(), stop.clone())
        .context("starting the slow path")?;
    // Stops the slow-path threads however this function returns.
    struct Stop(
        Arc<std::sync::atomic::AtomicBool>,
        Vec<std::thread::JoinHandle<()>>,
    );
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            for h in self.1.drain(..) {
                let _ = h.join();
            }
        }
    }
    let _stop = Stop(stop, slow);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let e = sessions::expire(&mut maps, &cfg);
                if e != sessions::Expired::default() {
                    log::debug!("expired {e:?}");
                }
                let mut snap = serde_json::Map::new();
                if dns_enabled {
                    snap.insert("dns64".into(), serde_json::to_value(dns_stats.snapshot())?);
                }
                let slow: std::collections::BTreeMap<_, _> =
                    slow_stats.snapshot().into_iter().collect();
                snap.insert("slow_path".into(), serde_json::to_value(slow)?);
                if let Err(e) = std::fs::write(&stats_path, serde_json::to_vec(&snap)?) {
                    log::warn!("writing {}: {e}", stats_path.display());
                }
            }
            r = &mut dns_done => {
                return match r {
                    Ok(Ok(())) => Err(anyhow!("the dns64 server stopped")),
                    Ok(Err(e)) => Err(e.context("dns64")),
                    Err(e) => Err(anyhow!("the dns64 server failed: {e}")),
                };
            }
            guard = async {
                match logger.as_mut() {
                    Some(l) => l.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok(mut g) = guard {
                    g.get_inner_mut().flush();
                    g.clear_ready();
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}
