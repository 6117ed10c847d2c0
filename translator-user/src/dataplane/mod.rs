//! The data plane as the controller sees it: an instance's pins and state file, the
//! configuration global handed to the program, loading and attaching (`attach`), and typed
//! access to the pinned maps (`maps`, `slow_sessions`).
//!
//! Everything lives under `/sys/fs/bpf/translator/<instance>/`: one pin per map (by name) and
//! one per link (`link_<interface>` for XDP, `tc_<interface>` for TC). A controller that starts
//! while pins exist adopts them: the maps (and so every session) are reused and the new program
//! replaces the old one atomically through the pinned links, so no packet of an established
//! flow is lost.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use translator_common::{
    config::{
        CFG_ALLOW_NON_GLOBAL, CFG_DETERMINISTIC, CFG_DROP_INBOUND_SYN,
        CFG_ENDPOINT_INDEPENDENT_FILTERING, CFG_LOG_SESSIONS, CFG_TX_BY_REDIRECT,
        CFG_WELL_KNOWN_PREFIX, DataplaneConfig,
    },
    maps as m,
    rfc6052::{self, raw6},
};

use crate::config::{Config, Filtering, InboundSyn};

mod attach;
pub mod batch;
mod maps;
pub mod memory;
mod slow_sessions;

pub use attach::{
    TC_PROGRAM, XDP_PROGRAM, attach, down, interfaces, load, load_program, load_unpinned,
    load_unpinned_sized, tc_program, xdp_program,
};
pub use maps::{Counters, Maps, open_map, read_counters};

/// The eBPF object, built by build.rs with aya-build. Besides the translator's XDP and TC
/// programs it holds the benchmark baselines (never attached by the controller).
pub static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/translator"));

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

    /// The pinned XDP link on an interface.
    pub fn link_path(&self, interface: &str) -> PathBuf {
        self.pins.join(format!("link_{interface}"))
    }

    /// The pinned TC (TCX) link on an interface.
    pub fn tc_link_path(&self, interface: &str) -> PathBuf {
        self.pins.join(format!("tc_{interface}"))
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
    if cfg.inbound_syn == InboundSyn::Drop {
        flags |= CFG_DROP_INBOUND_SYN;
    }
    if cfg.tx_by_redirect {
        flags |= CFG_TX_BY_REDIRECT;
    }
    if cfg.deterministic.is_some() {
        flags |= CFG_DETERMINISTIC;
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
        det: cfg.deterministic.unwrap_or_default(),
    }
}

/// Refuses pinned maps of another layout (`translator_common::maps::LAYOUT_VERSION`): a
/// program of this translator would misread them. Pins from before the layout was recorded
/// count as layout 1.
pub fn check_layout(inst: &Instance) -> anyhow::Result<()> {
    let found = read_layout(&inst.pins).unwrap_or(1);
    if found != m::LAYOUT_VERSION {
        anyhow::bail!(
            "the running data plane of instance {:?} keeps its state in map layout {found}, this \
             translator uses layout {}: it cannot adopt those maps. Run `translator down \
             --instance {}` first (this drops every session), then start it again",
            inst.name,
            m::LAYOUT_VERSION,
            inst.name
        );
    }
    Ok(())
}

/// Refuses address-dependent filtering on pins whose permit table was sized for
/// endpoint-independent filtering (`Config::permit_slots`): the permits would not fit.
pub fn check_permit_room(pins: &Path, cfg: &Config) -> anyhow::Result<()> {
    let room = memory::slots(pins, m::FILTERS)?;
    if cfg.permit_slots() > room {
        anyhow::bail!(
            "nat64.filtering = \"address-dependent\" needs a permit table of {} slots, and this \
             gateway started with endpoint-independent filtering, which keeps none ({room} \
             slot): stay with \"endpoint-independent\", or use `translator down` and \
             `translator run` (this drops every session)",
            cfg.permit_slots()
        );
    }
    Ok(())
}

/// The layout version recorded in an instance's pins (None: not recorded).
fn read_layout(pins: &Path) -> Option<u32> {
    let map = maps::open_map(pins, m::LAYOUT).ok()?;
    let array: aya::maps::Array<_, u32> = map.try_into().ok()?;
    array.get(&0, 0).ok().filter(|v| *v != 0)
}

/// Records this translator's layout version in freshly created pins.
pub fn record_layout(inst: &Instance) -> anyhow::Result<()> {
    let map = maps::open_map(&inst.pins, m::LAYOUT)?;
    let mut array: aya::maps::Array<_, u32> = map
        .try_into()
        .map_err(|e| anyhow::anyhow!("map {}: {e}", m::LAYOUT))?;
    array
        .set(0, m::LAYOUT_VERSION, 0)
        .map_err(|e| anyhow::anyhow!("recording the map layout: {e}"))
}

/// The client (subscriber) that holds port blocks for a client address: the address masked to
/// `pool.subscriber_prefix_len`, raw words (what the data plane puts in block-slot keys).
pub fn subscriber(cfg: &Config, client: [u32; 4]) -> [u32; 4] {
    let mask = raw6(rfc6052::mask(cfg.subscriber_prefix_len));
    core::array::from_fn(|i| client[i] & mask[i])
}
