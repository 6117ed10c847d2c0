//! Loading the eBPF object and attaching its program: XDP (`native`, `generic`) or TC
//! (`tc`: clsact ingress through TCX), each behind a link pinned in the instance's folder, so a
//! later controller replaces the program atomically (`bpf_link_update`) and no packet of an
//! established flow is lost.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
    },
};
use translator_common::maps as m;

use super::{BPFFS_ROOT, Instance, PROGRAM, RUN_ROOT, dataplane_config};
use crate::config::{AttachMode, Config, Protocol};

/// The XDP program in the object (`native` and `generic` modes).
pub const XDP_PROGRAM: &str = "translator";
/// The TC program in the object (`tc` mode).
pub const TC_PROGRAM: &str = "translator_tc";

fn queue_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => m::FREE_BLOCKS_TCP,
        Protocol::Udp => m::FREE_BLOCKS_UDP,
        Protocol::Icmp => m::FREE_BLOCKS_ICMP,
    }
}

/// Loads the object and the program of `cfg.mode` (not attached). With `pins`, maps are pinned
/// there, or reused when pins already exist.
pub fn load(cfg: &Config, pins: Option<&Path>) -> anyhow::Result<Ebpf> {
    let dp = dataplane_config(cfg);
    let mut loader = EbpfLoader::new();
    if let Some(dir) = pins {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        loader.default_map_pin_directory(dir);
    }
    loader.override_global(m::CONFIG, &dp, true);
    for name in [m::SESSIONS6, m::SESSIONS4] {
        loader.map_max_entries(name, cfg.sessions);
    }
    loader.map_max_entries(m::FILTERS, cfg.permit_slots());
    for name in [m::BINDINGS6, m::BINDINGS4] {
        loader.map_max_entries(name, cfg.binding_slots());
    }
    let mut all_blocks = 0;
    for p in Protocol::ALL {
        let n = cfg.total_blocks(p).max(1);
        all_blocks += n;
        loader.map_max_entries(queue_name(p), n);
    }
    loader.map_max_entries(m::BLOCK_SLOTS, all_blocks);
    let det = cfg.deterministic.map_or(0, |d| d.stride * 3);
    loader.map_max_entries(m::DET_BLOCKS, det.max(1));
    let mut ebpf = loader
        .load(PROGRAM)
        .map_err(|e| anyhow!("loading the eBPF object: {e}"))?;
    load_program(&mut ebpf, cfg.mode)?;
    Ok(ebpf)
}

/// Loads the eBPF object with maps that are not pinned anywhere (for benchmarks and tools that
/// use the baseline programs): the object's maps ask for pins, so they are pinned in a private
/// folder that is removed again at once (the maps live on as long as the `Ebpf` holds them).
/// Loading without this would pin them at the bpffs root.
pub fn load_unpinned() -> anyhow::Result<Ebpf> {
    load_unpinned_sized(&[])
}

/// [`load_unpinned`] with the size of some maps set (`(name, max_entries)`).
pub fn load_unpinned_sized(sizes: &[(&str, u32)]) -> anyhow::Result<Ebpf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Beside the instances' folder, not in it (nothing there may look like an instance), and
    // without a '.': bpffs refuses names with dots.
    let dir = PathBuf::from(format!("{BPFFS_ROOT}-unpinned-{}-{n}", std::process::id()));
    // A fresh machine may have no bpffs mounted yet (run mounts it, a bench or a fixture test
    // may come first).
    crate::netns::ensure_bpffs()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(&dir);
    for (name, n) in sizes {
        loader.map_max_entries(name, *n);
    }
    let loaded = loader
        .load(PROGRAM)
        .map_err(|e| anyhow!("loading the eBPF object: {e}"));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
    loaded
}

/// The XDP program of the object.
pub fn xdp_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    ebpf.program_mut(XDP_PROGRAM)
        .ok_or_else(|| anyhow!("the eBPF object has no program {XDP_PROGRAM:?}"))?
        .try_into()
        .map_err(|e| anyhow!("program {XDP_PROGRAM:?} is not XDP: {e}"))
}

/// The TC program of the object.
pub fn tc_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    ebpf.program_mut(TC_PROGRAM)
        .ok_or_else(|| anyhow!("the eBPF object has no program {TC_PROGRAM:?}"))?
        .try_into()
        .map_err(|e| anyhow!("program {TC_PROGRAM:?} is not a TC classifier: {e}"))
}

/// Loads (verifies) the program a mode runs, if it is not loaded yet, and returns a handle.
pub fn load_program(ebpf: &mut Ebpf, mode: AttachMode) -> anyhow::Result<aya::programs::ProgramFd> {
    let fd = match mode {
        AttachMode::Tc => {
            let p = tc_program(ebpf)?;
            if p.fd().is_err() {
                p.load()
                    .map_err(|e| anyhow!("the kernel refused the TC program: {e:#}"))?;
            }
            p.fd()?.try_clone()?
        }
        AttachMode::Native | AttachMode::Generic => {
            let p = xdp_program(ebpf)?;
            if p.fd().is_err() {
                p.load()
                    .map_err(|e| anyhow!("the kernel refused the XDP program: {e:#}"))?;
            }
            p.fd()?.try_clone()?
        }
    };
    Ok(fd)
}

/// The interfaces to attach to (one when IPv6 and IPv4 share an interface).
pub fn interfaces(cfg: &Config) -> Vec<String> {
    let mut v = vec![cfg.ipv6_interface.clone()];
    if cfg.ipv4_interface != cfg.ipv6_interface {
        v.push(cfg.ipv4_interface.clone());
    }
    v
}

/// Attaches to every interface in `cfg.mode`, or atomically replaces the program behind an
/// existing pinned link of that kind. A pinned link of the other kind (the mode changed) is
/// removed first, which detaches it. Returns the mode used per interface.
pub fn attach(
    ebpf: &mut Ebpf,
    cfg: &Config,
    inst: &Instance,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut used = Vec::new();
    for iface in interfaces(cfg) {
        let setting = if iface == cfg.ipv6_interface {
            "interfaces.ipv6"
        } else {
            "interfaces.ipv4"
        };
        if crate::netns::ifindex(&iface).is_none() {
            bail!("{setting}: there is no interface named {iface:?} here (see `ip link`)");
        }
        let (mine, other) = match cfg.mode {
            AttachMode::Tc => (inst.tc_link_path(&iface), inst.link_path(&iface)),
            _ => (inst.link_path(&iface), inst.tc_link_path(&iface)),
        };
        if other.exists() {
            log::info!(
                "{iface}: the attach mode changes to {}: detaching the old program",
                cfg.mode
            );
            std::fs::remove_file(&other)
                .with_context(|| format!("removing pinned link {}", other.display()))?;
        }
        let mode = match cfg.mode {
            AttachMode::Tc => attach_tc(tc_program(ebpf)?, &iface, &mine, setting)?,
            _ => attach_xdp(xdp_program(ebpf)?, cfg.mode, &iface, &mine, setting)?,
        };
        used.push((iface, mode));
    }
    Ok(used)
}

/// An existing pinned link, opened.
fn pinned(path: &Path) -> anyhow::Result<Option<FdLink>> {
    if !path.exists() {
        return Ok(None);
    }
    let pinned = PinnedLink::from_pin(path)
        .map_err(|e| anyhow!("opening pinned link {}: {e}", path.display()))?;
    Ok(Some(pinned.into()))
}

fn pin(fd: FdLink, iface: &str, path: &Path) -> anyhow::Result<()> {
    fd.pin(path)
        .map_err(|e| anyhow!("pinning the link of {iface} at {}: {e}", path.display()))?;
    Ok(())
}

fn attach_xdp(
    prog: &mut Xdp,
    mode: AttachMode,
    iface: &str,
    path: &Path,
    setting: &str,
) -> anyhow::Result<String> {
    if let Some(fd) = pinned(path)? {
        let link =
            XdpLink::try_from(fd).map_err(|e| anyhow!("pinned link {}: {e}", path.display()))?;
        let id = prog
            .attach_to_link(link)
            .map_err(|e| anyhow!("replacing the program on {iface}: {e}"))?;
        // The pin keeps the link; our handle can go.
        let _ = prog.take_link(id);
        return Ok("adopted".to_owned());
    }
    let (id, used) = match mode {
        AttachMode::Generic => (prog.attach(iface, XdpMode::Skb), "generic"),
        _ => match prog.attach(iface, XdpMode::Driver) {
            Ok(id) => (Ok(id), "native"),
            Err(e) => {
                log::warn!("{iface}: native XDP not available ({e}); falling back to generic mode");
                (prog.attach(iface, XdpMode::Skb), "generic")
            }
        },
    };
    let id = id.map_err(|e| anyhow!("{setting}: attaching XDP to {iface}: {e}"))?;
    let link = prog.take_link(id).map_err(|e| anyhow!("{iface}: {e}"))?;
    let fd = FdLink::try_from(link).map_err(|e| {
        anyhow!("{iface}: the kernel attached XDP without a bpf_link, which cannot be pinned: {e}")
    })?;
    pin(fd, iface, path)?;
    Ok(used.to_owned())
}

fn attach_tc(
    prog: &mut SchedClassifier,
    iface: &str,
    path: &Path,
    setting: &str,
) -> anyhow::Result<String> {
    if let Some(fd) = pinned(path)? {
        let link = SchedClassifierLink::try_from(fd)
            .map_err(|e| anyhow!("pinned link {}: {e}", path.display()))?;
        let id = prog
            .attach_to_link(link)
            .map_err(|e| anyhow!("replacing the program on {iface}: {e}"))?;
        let _ = prog.take_link(id);
        return Ok("tc (adopted)".to_owned());
    }
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| {
            anyhow!("{setting}: attaching the TC program to {iface} (TCX, Linux 6.6 or later): {e}")
        })?;
    let link = prog.take_link(id).map_err(|e| anyhow!("{iface}: {e}"))?;
    let fd = FdLink::try_from(link)
        .map_err(|e| anyhow!("{iface}: the TC link cannot be pinned: {e}"))?;
    pin(fd, iface, path)?;
    Ok("tc".to_owned())
}

/// Detaches and removes every pin of an instance, and its state file.
pub fn down(inst: &Instance) -> anyhow::Result<bool> {
    let mut found = false;
    if let Ok(entries) = std::fs::read_dir(&inst.pins) {
        for e in entries.flatten() {
            found = true;
            let p = e.path();
            std::fs::remove_file(&p).with_context(|| format!("removing pin {}", p.display()))?;
        }
        std::fs::remove_dir(&inst.pins)
            .with_context(|| format!("removing {}", inst.pins.display()))?;
    }
    if inst.run.exists() {
        found = true;
        std::fs::remove_dir_all(&inst.run)
            .with_context(|| format!("removing {}", inst.run.display()))?;
    }
    // Remove the parent folders when they are empty (no other instance).
    let _ = std::fs::remove_dir(BPFFS_ROOT);
    let _ = std::fs::remove_dir(RUN_ROOT);
    Ok(found)
}
