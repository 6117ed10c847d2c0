//! Loading, attaching and adopting the XDP program; the pinned maps of an instance.
//!
//! Everything lives under `/sys/fs/bpf/translator/<instance>/`: one pin per map (by name) and
//! one per XDP link (`link_<interface>`). A controller that starts while pins exist adopts
//! them: the maps (and so every session) are reused and the new program replaces the old one
//! atomically through the pinned links, so no packet of an established flow is lost.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, LpmTrie, Map, MapData, PerCpuArray, Queue, lpm_trie::Key},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use serde::{Deserialize, Serialize};
use translator_common::{
    config::{
        CFG_ALLOW_NON_GLOBAL, CFG_ENDPOINT_INDEPENDENT_FILTERING, CFG_LOG_SESSIONS,
        CFG_WELL_KNOWN_PREFIX, DataplaneConfig,
    },
    counters::{COUNTER_SLOTS, DropReason, Event},
    maps::{
        self as m, BINDING_STATIC, BindingKey4, BindingKey6, BindingValue4, BindingValue6, BlockId,
        BlockSlot, BlockSlotKey, FilterKey, Frag4Key, Frag4Value, Frag6Key, Frag6Value, POOL_LOCAL,
        PoolAddress, SessionKey4, SessionKey6, SessionValue4, SessionValue6,
    },
    rfc6052::{self, raw4, raw6},
};

use crate::config::{AttachMode, Config, Filtering, Protocol, StaticMapping};

/// The eBPF object, built by build.rs with aya-build. Besides the translator it holds the
/// benchmark baselines `baseline_tx` and `baseline_forward` (never attached by the controller).
pub static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/translator"));
/// Name of the XDP function in the object.
pub const PROGRAM_NAME: &str = "translator";

pub const BPFFS_ROOT: &str = "/sys/fs/bpf/translator";
pub const RUN_ROOT: &str = "/run/translator";

/// Where an instance keeps its pins and its state file.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub pins: PathBuf,
    pub run: PathBuf,
}

impl Instance {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            pins: Path::new(BPFFS_ROOT).join(name),
            run: Path::new(RUN_ROOT).join(name),
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.run.join("state.json")
    }

    pub fn link_path(&self, interface: &str) -> PathBuf {
        self.pins.join(format!("link_{interface}"))
    }

    /// Whether pinned maps of this instance exist (a data plane is, or was, running).
    pub fn has_pins(&self) -> bool {
        self.pins.join(m::SESSIONS6).exists()
    }

    pub fn read_state(&self) -> anyhow::Result<State> {
        let p = self.state_path();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "instance {:?} is not running here: cannot read {} (start it with `translator run`)",
                self.name,
                p.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    pub fn write_state(&self, state: &State) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.run)
            .with_context(|| format!("creating {}", self.run.display()))?;
        let p = self.state_path();
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))
    }
}

/// What a running (or last) controller recorded about its instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub instance: String,
    pub pid: u32,
    pub started_unix: u64,
    pub config_path: String,
    /// The configuration text it runs with (re-parsed by read commands).
    pub config_text: String,
    /// Attach mode actually used per interface.
    pub attached: Vec<(String, String)>,
}

impl State {
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::parse(&self.config_text)
            .with_context(|| format!("configuration recorded for instance {:?}", self.instance))
    }

    /// Whether the recorded controller process is alive.
    pub fn controller_running(&self) -> bool {
        // The recorded pid runs the same program as this command (whatever its file name),
        // or at least a program called translator.
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid));
        let me = std::fs::read_link("/proc/self/exe");
        if let (Ok(exe), Ok(me)) = (&exe, &me)
            && exe == me
        {
            return true;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            return false;
        };
        cmdline
            .split(|b| *b == 0)
            .any(|a| a.ends_with(b"translator"))
    }
}

/// The data-plane configuration global for a validated configuration, on this host (the ICMP
/// source address defaults to an address of the IPv6-side interface).
pub fn dataplane_config(cfg: &Config) -> DataplaneConfig {
    let icmp_src6 = cfg.icmp_source6.or_else(|| {
        crate::netns::interface_ipv6(&cfg.ipv6_interface)
            .into_iter()
            .find(|a| a.segments()[0] & 0xffc0 != 0xfe80)
    });
    let icmp_interval_ns = match icmp_src6 {
        Some(_) if cfg.icmp_errors_per_second > 0 => {
            1_000_000_000 / u64::from(cfg.icmp_errors_per_second)
        }
        Some(_) => 0,
        None => {
            log::warn!(
                "{} has no global IPv6 address and nat64.icmp_source6 is not set: the gateway \
                 will not send ICMPv6 errors (hop limit exceeded, packet too big)",
                cfg.ipv6_interface
            );
            0
        }
    };
    let prefix = u128::from(cfg.prefix.addr);
    let mut flags = 0;
    if cfg.allow_non_global {
        flags |= CFG_ALLOW_NON_GLOBAL;
    }
    if cfg.filtering == Filtering::EndpointIndependent {
        flags |= CFG_ENDPOINT_INDEPENDENT_FILTERING;
    }
    if rfc6052::is_well_known(prefix, cfg.prefix.len) {
        flags |= CFG_WELL_KNOWN_PREFIX;
    }
    if cfg.log_sessions && cfg.block_log.is_some() {
        flags |= CFG_LOG_SESSIONS;
    }
    DataplaneConfig {
        prefix: raw6(prefix),
        mask: raw6(rfc6052::mask(cfg.prefix.len)),
        prefix_len: cfg.prefix.len,
        flags,
        max_blocks: cfg.max_blocks_per_client,
        _pad: 0,
        block_size: cfg.block_size,
        ipv6_mtu: cfg.ipv6_mtu,
        icmp_src6: raw6(icmp_src6.map_or(0, u128::from)),
        icmp_interval_ns,
        subscriber_mask: raw6(rfc6052::mask(cfg.subscriber_prefix_len)),
        route_cache_ns: u64::from(cfg.route_cache_ms) * 1_000_000,
    }
}

/// The client (subscriber) that holds port blocks for a client address: the address masked to
/// `pool.subscriber_prefix_len`, raw words (what the data plane puts in block-slot keys).
pub fn subscriber(cfg: &Config, client: [u32; 4]) -> [u32; 4] {
    let mask = raw6(rfc6052::mask(cfg.subscriber_prefix_len));
    core::array::from_fn(|i| client[i] & mask[i])
}

fn queue_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => m::FREE_BLOCKS_TCP,
        Protocol::Udp => m::FREE_BLOCKS_UDP,
        Protocol::Icmp => m::FREE_BLOCKS_ICMP,
    }
}

/// Loads the program (not attached). With `pins`, maps are pinned there, or reused when pins
/// already exist.
pub fn load(cfg: &Config, pins: Option<&Path>) -> anyhow::Result<Ebpf> {
    let dp = dataplane_config(cfg);
    let mut loader = EbpfLoader::new();
    if let Some(dir) = pins {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        loader.default_map_pin_directory(dir);
    }
    loader.override_global(m::CONFIG, &dp, true);
    let sessions = cfg.sessions;
    for name in [
        m::SESSIONS6,
        m::SESSIONS4,
        m::BINDINGS6,
        m::BINDINGS4,
        m::FILTERS,
    ] {
        loader.map_max_entries(name, sessions);
    }
    let mut all_blocks = 0;
    for p in Protocol::ALL {
        let n = cfg.total_blocks(p).max(1);
        all_blocks += n;
        loader.map_max_entries(queue_name(p), n);
    }
    loader.map_max_entries(m::BLOCK_SLOTS, all_blocks);
    let mut ebpf = loader
        .load(PROGRAM)
        .map_err(|e| anyhow!("loading the eBPF object: {e}"))?;
    let prog: &mut Xdp = program(&mut ebpf)?;
    prog.load()
        .map_err(|e| anyhow!("the kernel refused the XDP program: {e:#}"))?;
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

pub fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or_else(|| anyhow!("the eBPF object has no program {PROGRAM_NAME:?}"))?
        .try_into()
        .map_err(|e| anyhow!("program {PROGRAM_NAME:?} is not XDP: {e}"))
}

/// The interfaces to attach to (one when IPv6 and IPv4 share an interface).
pub fn interfaces(cfg: &Config) -> Vec<String> {
    let mut v = vec![cfg.ipv6_interface.clone()];
    if cfg.ipv4_interface != cfg.ipv6_interface {
        v.push(cfg.ipv4_interface.clone());
    }
    v
}

/// Attaches to every interface, or atomically replaces the program behind an existing pinned
/// link. Returns the mode used per interface.
pub fn attach(
    ebpf: &mut Ebpf,
    cfg: &Config,
    inst: &Instance,
) -> anyhow::Result<Vec<(String, String)>> {
    let prog = program(ebpf)?;
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
        let path = inst.link_path(&iface);
        if path.exists() {
            let pinned = PinnedLink::from_pin(&path)
                .map_err(|e| anyhow!("opening pinned link {}: {e}", path.display()))?;
            let fd: FdLink = pinned.into();
            let link = XdpLink::try_from(fd)
                .map_err(|e| anyhow!("pinned link {}: {e}", path.display()))?;
            let id = prog
                .attach_to_link(link)
                .map_err(|e| anyhow!("replacing the program on {iface}: {e}"))?;
            // The pin keeps the link; our handle can go.
            let _ = prog.take_link(id);
            used.push((iface, "adopted".to_owned()));
            continue;
        }
        let (id, mode) = match cfg.mode {
            AttachMode::Generic => (prog.attach(&iface, XdpMode::Skb), "generic"),
            AttachMode::Native => match prog.attach(&iface, XdpMode::Driver) {
                Ok(id) => (Ok(id), "native"),
                Err(e) => {
                    log::warn!(
                        "{iface}: native XDP not available ({e}); falling back to generic mode"
                    );
                    (prog.attach(&iface, XdpMode::Skb), "generic")
                }
            },
        };
        let id = id.map_err(|e| anyhow!("{setting}: attaching XDP to {iface}: {e}"))?;
        let link = prog.take_link(id).map_err(|e| anyhow!("{iface}: {e}"))?;
        let fd = FdLink::try_from(link).map_err(|e| {
            anyhow!(
                "{iface}: the kernel attached XDP without a bpf_link, which cannot be pinned: {e}"
            )
        })?;
        fd.pin(&path)
            .map_err(|e| anyhow!("pinning the link of {iface} at {}: {e}", path.display()))?;
        used.push((iface, mode.to_owned()));
    }
    Ok(used)
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

/// Counter sums: events, then drop reasons.
pub type Counters = (Vec<(Event, u64)>, Vec<(DropReason, u64)>);

/// The binding keys of a static mapping.
fn static_keys(s: &StaticMapping) -> (BindingKey4, BindingKey6) {
    let proto = s.protocol.number();
    (
        BindingKey4 {
            pool: raw4(u32::from(s.ipv4)),
            pool_port_be: s.ipv4_port.to_be(),
            proto,
            _pad: 0,
        },
        BindingKey6 {
            client: raw6(u128::from(s.ipv6)),
            client_port_be: s.ipv6_port.to_be(),
            proto,
            _pad: 0,
        },
    )
}

/// Typed handles on an instance's pinned maps.
pub struct Maps {
    pub sessions6: HashMap<MapData, SessionKey6, SessionValue6>,
    pub sessions4: HashMap<MapData, SessionKey4, SessionValue4>,
    pub bindings6: HashMap<MapData, BindingKey6, BindingValue6>,
    pub bindings4: HashMap<MapData, BindingKey4, BindingValue4>,
    pub filters: HashMap<MapData, FilterKey, u64>,
    pub block_slots: HashMap<MapData, BlockSlotKey, BlockSlot>,
    pub free: [Queue<MapData, BlockId>; 3],
    pub clients: LpmTrie<MapData, [u32; 4], u32>,
    pub pool: HashMap<MapData, u32, PoolAddress>,
    pub counters: PerCpuArray<MapData, u64>,
    pub frags6: HashMap<MapData, Frag6Key, Frag6Value>,
    pub frags4: HashMap<MapData, Frag4Key, Frag4Value>,
}

/// Opens one pinned map of an instance.
pub fn open_map(dir: &Path, name: &str) -> anyhow::Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(|e| {
        anyhow!(
            "opening pinned map {}: {e} (is the instance running? `translator status`)",
            path.display()
        )
    })?;
    Map::from_map_data(data).map_err(|e| anyhow!("map {name}: {e}"))
}

macro_rules! typed {
    ($dir:expr, $name:expr) => {
        open_map($dir, $name)?
            .try_into()
            .map_err(|e| anyhow!("map {}: {e}", $name))?
    };
}

impl Maps {
    pub fn open(dir: &Path) -> anyhow::Result<Maps> {
        Ok(Maps {
            sessions6: typed!(dir, m::SESSIONS6),
            sessions4: typed!(dir, m::SESSIONS4),
            bindings6: typed!(dir, m::BINDINGS6),
            bindings4: typed!(dir, m::BINDINGS4),
            filters: typed!(dir, m::FILTERS),
            block_slots: typed!(dir, m::BLOCK_SLOTS),
            free: [
                typed!(dir, m::FREE_BLOCKS_TCP),
                typed!(dir, m::FREE_BLOCKS_UDP),
                typed!(dir, m::FREE_BLOCKS_ICMP),
            ],
            clients: typed!(dir, m::CLIENTS),
            pool: typed!(dir, m::POOL),
            counters: typed!(dir, m::COUNTERS),
            frags6: typed!(dir, m::FRAGS6),
            frags4: typed!(dir, m::FRAGS4),
        })
    }

    /// The client an IPv4 datagram goes to, when the data plane translated its first fragment.
    pub fn frag_client(
        &self,
        src: Ipv4Addr,
        pool: Ipv4Addr,
        proto: u8,
        id: u16,
    ) -> Option<Ipv6Addr> {
        let k = Frag4Key {
            remote: raw4(u32::from(src)),
            pool: raw4(u32::from(pool)),
            id: id.to_be(),
            proto,
            _pad: 0,
        };
        self.frags4
            .get(&k, 0)
            .ok()
            .map(|v| Ipv6Addr::from(rfc6052::from_raw6(&v.client)))
    }

    /// The pool address an IPv6 datagram leaves from, when the data plane translated its first
    /// fragment.
    pub fn frag_pool(
        &self,
        client: Ipv6Addr,
        remote: Ipv4Addr,
        proto: u8,
        id: u32,
    ) -> Option<Ipv4Addr> {
        let k = Frag6Key {
            client: raw6(u128::from(client)),
            remote: raw4(u32::from(remote)),
            id: id.to_be(),
            proto,
            _pad: [0; 3],
        };
        self.frags6
            .get(&k, 0)
            .ok()
            .map(|v| Ipv4Addr::from(rfc6052::from_raw4(v.pool)))
    }

    /// Fills the free-block queues with every block of the pool (fresh start only).
    pub fn fill_pool(&mut self, cfg: &Config) -> anyhow::Result<()> {
        // On a pool address the host owns, the kernel picks its own ephemeral ports (for the
        // DNS64 upstream queries, for instance): blocks overlapping that range stay out of the
        // pool, or a client binding could take a port the host's own traffic comes back to.
        let local = crate::netns::local_ipv4_addresses();
        let ephemeral = crate::netns::sysctl("net/ipv4/ip_local_port_range").and_then(|r| {
            let mut it = r.split_whitespace().filter_map(|x| x.parse::<u32>().ok());
            Some((it.next()?, it.next()?))
        });
        for p in Protocol::ALL {
            let layout = cfg.layouts[p.index()];
            let size = u32::from(layout.block_size);
            let q = &mut self.free[p.index()];
            let mut skipped = 0;
            for addr in &cfg.pool {
                let reserved = if local.contains(addr) {
                    ephemeral
                } else {
                    None
                };
                for start in layout.block_starts() {
                    let s = u32::from(start);
                    if let Some((lo, hi)) = reserved
                        && s + size > lo
                        && s <= hi
                    {
                        skipped += 1;
                        continue;
                    }
                    q.push(
                        BlockId {
                            pool: raw4(u32::from(*addr)),
                            start,
                            _pad: 0,
                        },
                        0,
                    )
                    .map_err(|e| anyhow!("filling the {p} block queue: {e}"))?;
                }
            }
            if skipped > 0 {
                log::info!(
                    "{p}: {skipped} port blocks left out of the pool: they overlap this host's \
                     ephemeral ports (net.ipv4.ip_local_port_range) on a local pool address"
                );
            }
        }
        Ok(())
    }

    /// Makes CLIENTS and POOL match the configuration.
    pub fn sync_policy(&mut self, cfg: &Config) -> anyhow::Result<()> {
        let want: Vec<([u32; 4], u32)> = cfg
            .clients
            .iter()
            .map(|c| (raw6(u128::from(c.addr)), u32::from(c.len)))
            .collect();
        let have: Vec<Key<[u32; 4]>> = self.clients.keys().filter_map(Result::ok).collect();
        for k in have {
            let (data, len) = (k.data(), k.prefix_len());
            if !want.contains(&(data, len)) {
                let _ = self.clients.remove(&k);
            }
        }
        for (data, len) in want {
            self.clients
                .insert(&Key::new(len, data), 1, 0)
                .map_err(|e| anyhow!("nat64.clients: installing {len}-bit prefix: {e}"))?;
        }
        let local = crate::netns::local_ipv4_addresses();
        let have: Vec<u32> = self.pool.keys().filter_map(Result::ok).collect();
        for a in have {
            if !cfg.pool.iter().any(|p| raw4(u32::from(*p)) == a) {
                let _ = self.pool.remove(&a);
            }
        }
        for a in &cfg.pool {
            let flags = if local.contains(a) { POOL_LOCAL } else { 0 };
            self.pool
                .insert(raw4(u32::from(*a)), PoolAddress { flags }, 0)
                .map_err(|e| anyhow!("pool.addresses: installing {a}: {e}"))?;
        }
        Ok(())
    }

    /// Installs a static binding. Fails when the pool port or client port is bound otherwise.
    pub fn add_static(&mut self, s: &StaticMapping) -> anyhow::Result<()> {
        if let Some(conflict) = self.static_conflict(s) {
            bail!("{conflict}");
        }
        let (k4, k6) = static_keys(s);
        let v4 = BindingValue4 {
            client: k6.client,
            client_port_be: k6.client_port_be,
            flags: BINDING_STATIC,
            _pad: 0,
        };
        let v6 = BindingValue6 {
            pool: k4.pool,
            pool_port_be: k4.pool_port_be,
            flags: BINDING_STATIC,
            _pad: 0,
            last_used: 0,
        };
        // An existing binding is the same one (checked above) and becomes static; a new one is
        // inserted only if the data plane has not taken the port meanwhile.
        let flags = if self.bindings4.get(&k4, 0).is_ok() {
            0
        } else {
            1
        };
        self.bindings4
            .insert(k4, v4, flags)
            .map_err(|e| anyhow!("installing binding: {e}"))?;
        if let Err(e) = self.bindings6.insert(k6, v6, 0) {
            let _ = self.bindings4.remove(&k4);
            bail!("installing binding: {e}");
        }
        Ok(())
    }

    /// Why a static binding could not be installed, without changing anything.
    pub fn static_conflict(&self, s: &StaticMapping) -> Option<String> {
        let (k4, k6) = static_keys(s);
        if let Ok(old) = self.bindings4.get(&k4, 0)
            && (old.client != k6.client || old.client_port_be != k6.client_port_be)
        {
            return Some(format!(
                "{} {}:{} is already bound to [{}]:{}",
                s.protocol,
                s.ipv4,
                s.ipv4_port,
                Ipv6Addr::from(rfc6052::from_raw6(&old.client)),
                u16::from_be(old.client_port_be)
            ));
        }
        if let Ok(old) = self.bindings6.get(&k6, 0)
            && (old.pool != k4.pool || old.pool_port_be != k4.pool_port_be)
        {
            return Some(format!(
                "{} [{}]:{} already has the binding {}:{}",
                s.protocol,
                s.ipv6,
                s.ipv6_port,
                Ipv4Addr::from(rfc6052::from_raw4(old.pool)),
                u16::from_be(old.pool_port_be)
            ));
        }
        None
    }

    /// Removes a static binding and its sessions.
    pub fn del_static(&mut self, s: &StaticMapping) -> anyhow::Result<()> {
        let proto = s.protocol.number();
        let k4 = BindingKey4 {
            pool: raw4(u32::from(s.ipv4)),
            pool_port_be: s.ipv4_port.to_be(),
            proto,
            _pad: 0,
        };
        let v4 = self
            .bindings4
            .get(&k4, 0)
            .map_err(|_| anyhow!("no binding for {} {}:{}", s.protocol, s.ipv4, s.ipv4_port))?;
        if v4.flags & BINDING_STATIC == 0 {
            bail!(
                "{} {}:{} is a dynamic binding, not a static one",
                s.protocol,
                s.ipv4,
                s.ipv4_port
            );
        }
        let k6 = BindingKey6 {
            client: v4.client,
            client_port_be: v4.client_port_be,
            proto,
            _pad: 0,
        };
        let _ = self.bindings6.remove(&k6);
        let _ = self.bindings4.remove(&k4);
        let doomed: Vec<SessionKey4> = self
            .sessions4
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.pool == k4.pool && k.pool_port_be == k4.pool_port_be && k.proto == proto)
            .collect();
        for k in doomed {
            if let Ok(v) = self.sessions4.get(&k, 0) {
                let _ = self.sessions6.remove(&SessionKey6 {
                    client: v.client,
                    remote: k.remote,
                    client_port_be: v.client_port_be,
                    remote_port_be: k.remote_port_be,
                    proto,
                    _pad: [0; 3],
                });
            }
            let _ = self.sessions4.remove(&k);
        }
        Ok(())
    }

    /// Creates (or finds) the session of a new outbound flow from user space, with the data
    /// plane's rules: client allowed, destination allowed, the client's binding (EIM) or a new
    /// one from its port blocks (a pool port is owned by whoever inserts it into BINDINGS4
    /// first, so this never races the data plane into a double use). Used by the slow path
    /// for flows whose first packet needs it (extension headers, IPv4 options).
    pub fn create_outbound(
        &mut self,
        cfg: &Config,
        client: Ipv6Addr,
        client_port: u16,
        remote: Ipv4Addr,
        remote_port: u16,
        proto: u8,
    ) -> anyhow::Result<(Ipv4Addr, u16)> {
        if !cfg.clients.iter().any(|c| c.contains(client)) {
            bail!("client {client} is outside nat64.clients");
        }
        if rfc6052::is_well_known(u128::from(cfg.prefix.addr), cfg.prefix.len)
            && !cfg.allow_non_global
            && !rfc6052::is_global(u32::from(remote))
        {
            bail!("{remote} is not global (well-known prefix)");
        }
        let p = Protocol::from_number(proto).ok_or_else(|| anyhow!("protocol {proto}"))?;
        let k6 = BindingKey6 {
            client: raw6(u128::from(client)),
            client_port_be: client_port.to_be(),
            proto,
            _pad: 0,
        };
        let now = crate::clock::monotonic_ns();
        let (pool, pool_port) = match self.bindings6.get(&k6, 0) {
            Ok(b) => (b.pool, b.pool_port_be),
            Err(_) => self.allocate(cfg, p, &k6, now)?,
        };
        let key = SessionKey6 {
            client: k6.client,
            remote: raw4(u32::from(remote)),
            client_port_be: k6.client_port_be,
            remote_port_be: remote_port.to_be(),
            proto,
            _pad: [0; 3],
        };
        let v6 = SessionValue6 {
            pool,
            pool_port_be: pool_port,
            flags: 0,
            _pad: 0,
            last_seen: now,
        };
        self.sessions6
            .insert(key, v6, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        let k4 = key.reverse(&v6);
        let v4 = SessionValue4 {
            client: key.client,
            client_port_be: key.client_port_be,
            flags: 0,
            _pad: [0; 5],
            last_seen: now,
        };
        self.sessions4
            .insert(k4, v4, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        let fk = FilterKey {
            pool,
            remote: key.remote,
            pool_port_be: pool_port,
            proto,
            _pad: 0,
        };
        let _ = self.filters.insert(fk, now, 0);
        Ok((
            Ipv4Addr::from(rfc6052::from_raw4(pool)),
            u16::from_be(pool_port),
        ))
    }

    /// A new binding for a client port, from the client's blocks or a new block.
    fn allocate(
        &mut self,
        cfg: &Config,
        p: Protocol,
        k6: &BindingKey6,
        now: u64,
    ) -> anyhow::Result<(u32, u16)> {
        const NOEXIST: u64 = 1;
        let v4 = BindingValue4 {
            client: k6.client,
            client_port_be: k6.client_port_be,
            flags: 0,
            _pad: 0,
        };
        let parity = u16::from_be(k6.client_port_be) & 1;
        let mut free_slot = None;
        for slot in 0..cfg.max_blocks_per_client {
            let sk = BlockSlotKey {
                client: subscriber(cfg, k6.client),
                proto: k6.proto,
                slot,
                _pad: [0; 2],
            };
            let block = match self.block_slots.get(&sk, 0) {
                Ok(s) => s.block,
                Err(_) => {
                    free_slot.get_or_insert(sk);
                    continue;
                }
            };
            if let Some(found) = self.claim((block, cfg.block_size), parity, k6, &v4, now)? {
                return Ok(found);
            }
        }
        let sk =
            free_slot.ok_or_else(|| anyhow!("client limit: every block of the client is full"))?;
        let block = self.free[p.index()]
            .pop(0)
            .map_err(|_| anyhow!("pool exhausted ({p})"))?;
        let slot = BlockSlot {
            block,
            next: 0,
            _pad: [0; 6],
            last_alloc: now,
        };
        if self.block_slots.insert(sk, slot, NOEXIST).is_err() {
            let _ = self.free[p.index()].push(block, 0);
            bail!("block slot taken concurrently");
        }
        self.claim((block, cfg.block_size), parity, k6, &v4, now)?
            .ok_or_else(|| anyhow!("new block has no free port"))
    }

    /// Claims the first free port of a block with the client's port parity.
    fn claim(
        &mut self,
        (block, size): (BlockId, u16),
        parity: u16,
        k6: &BindingKey6,
        v4: &BindingValue4,
        now: u64,
    ) -> anyhow::Result<Option<(u32, u16)>> {
        const NOEXIST: u64 = 1;
        // The client's parity first (RFC 4787 REQ-3), then the other ports of the block.
        for off in (parity..size)
            .step_by(2)
            .chain((1 - parity..size).step_by(2))
        {
            let port_be = block.start.wrapping_add(off).to_be();
            let k4 = BindingKey4 {
                pool: block.pool,
                pool_port_be: port_be,
                proto: k6.proto,
                _pad: 0,
            };
            if self.bindings4.insert(k4, *v4, NOEXIST).is_ok() {
                let v6 = BindingValue6 {
                    pool: block.pool,
                    pool_port_be: port_be,
                    flags: 0,
                    _pad: 0,
                    last_used: now,
                };
                if self.bindings6.insert(*k6, v6, NOEXIST).is_err() {
                    let _ = self.bindings4.remove(&k4);
                    let b = self
                        .bindings6
                        .get(k6, 0)
                        .map_err(|e| anyhow!("binding: {e}"))?;
                    return Ok(Some((b.pool, b.pool_port_be)));
                }
                return Ok(Some((block.pool, port_be)));
            }
        }
        Ok(None)
    }

    /// The session of an inbound IPv4 packet, created when a static binding, endpoint-
    /// independent filtering or a permit allows it (the data plane's rules).
    pub fn inbound_session(
        &mut self,
        cfg: &Config,
        key: &SessionKey4,
    ) -> anyhow::Result<(Ipv6Addr, u16)> {
        if let Ok(v) = self.sessions4.get(key, 0) {
            return Ok((
                Ipv6Addr::from(rfc6052::from_raw6(&v.client)),
                u16::from_be(v.client_port_be),
            ));
        }
        let bk = BindingKey4 {
            pool: key.pool,
            pool_port_be: key.pool_port_be,
            proto: key.proto,
            _pad: 0,
        };
        let b = self
            .bindings4
            .get(&bk, 0)
            .map_err(|_| anyhow!("no binding"))?;
        let fk = FilterKey {
            pool: key.pool,
            remote: key.remote,
            pool_port_be: key.pool_port_be,
            proto: key.proto,
            _pad: 0,
        };
        if b.flags & BINDING_STATIC == 0
            && cfg.filtering == Filtering::AddressDependent
            && self.filters.get(&fk, 0).is_err()
        {
            bail!("filtered (address-dependent)");
        }
        let now = crate::clock::monotonic_ns();
        let v4 = SessionValue4 {
            client: b.client,
            client_port_be: b.client_port_be,
            flags: 0,
            _pad: [0; 5],
            last_seen: now,
        };
        self.sessions4
            .insert(*key, v4, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        let k6 = SessionKey6 {
            client: b.client,
            remote: key.remote,
            client_port_be: b.client_port_be,
            remote_port_be: key.remote_port_be,
            proto: key.proto,
            _pad: [0; 3],
        };
        let v6 = SessionValue6 {
            pool: key.pool,
            pool_port_be: key.pool_port_be,
            flags: 0,
            _pad: 0,
            last_seen: now,
        };
        self.sessions6
            .insert(k6, v6, 0)
            .map_err(|e| anyhow!("session table: {e}"))?;
        Ok((
            Ipv6Addr::from(rfc6052::from_raw6(&b.client)),
            u16::from_be(b.client_port_be),
        ))
    }

    /// Static bindings in the table.
    pub fn statics(&self) -> Vec<StaticMapping> {
        self.bindings4
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.flags & BINDING_STATIC != 0)
            .filter_map(|(k, v)| {
                Some(StaticMapping {
                    protocol: Protocol::from_number(k.proto)?,
                    ipv6: Ipv6Addr::from(rfc6052::from_raw6(&v.client)),
                    ipv6_port: u16::from_be(v.client_port_be),
                    ipv4: Ipv4Addr::from(rfc6052::from_raw4(k.pool)),
                    ipv4_port: u16::from_be(k.pool_port_be),
                })
            })
            .collect()
    }

    /// Sums of the per-CPU counters: events, then drop reasons.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut sums = vec![0u64; COUNTER_SLOTS as usize];
        for (i, s) in sums.iter_mut().enumerate() {
            let v = self
                .counters
                .get(&(i as u32), 0)
                .map_err(|e| anyhow!("reading counters: {e}"))?;
            *s = v.iter().sum();
        }
        let events = Event::ALL.iter().map(|e| (*e, sums[*e as usize])).collect();
        let drops = DropReason::ALL
            .iter()
            .map(|r| (*r, sums[r.counter_index() as usize]))
            .collect();
        Ok((events, drops))
    }
}
