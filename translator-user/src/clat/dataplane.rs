//! The CLAT's data plane: the translator's eBPF object with its NAT64 tables shrunk to one
//! entry (the CLAT keeps no state), its maps pinned in the CLAT's own folder (`clat status`
//! reads the counters there), and its two TC programs attached through TCX links that live
//! as long as the process: `clat_egress` on the CLAT's IPv4 interface, `clat_ingress` on the
//! uplink. [`Dataplane::set`] rewrites the settings the programs translate with.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{SchedClassifierLinkId, TcAttachOptions},
    },
};
use translator_common::maps::{self as m, ClatConfig};

use crate::dataplane::{Counters, PROGRAM, open_map};

pub const EGRESS_PROGRAM: &str = "clat_egress";
pub const INGRESS_PROGRAM: &str = "clat_ingress";

/// The gateway's tables, which the CLAT's programs never touch.
const NAT64_MAPS: [&str; 14] = [
    m::SESSIONS6,
    m::SESSIONS4,
    m::BINDINGS6,
    m::BINDINGS4,
    m::FILTERS,
    m::BLOCK_SLOTS,
    m::FREE_BLOCKS_TCP,
    m::FREE_BLOCKS_UDP,
    m::FREE_BLOCKS_ICMP,
    m::CLIENTS,
    m::POOL,
    m::FRAGS6,
    m::FRAGS4,
    m::HELD_SYNS,
];

/// The loaded object, its settings map and the two attachments.
pub struct Dataplane {
    ebpf: Ebpf,
    config: Array<MapData, ClatConfig>,
    attached: Vec<(String, &'static str, SchedClassifierLinkId)>,
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name:?}"))?
        .try_into()
        .map_err(|e| anyhow!("program {name:?} is not a TC classifier: {e}"))
}

impl Dataplane {
    /// Loads the object (maps pinned in `pins`, which must not hold an older CLAT's maps:
    /// the caller removes them) and verifies both programs.
    pub fn load(pins: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(pins).with_context(|| format!("creating {}", pins.display()))?;
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(pins);
        for name in NAT64_MAPS {
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader
            .load(PROGRAM)
            .map_err(|e| anyhow!("loading the eBPF object: {e}"))?;
        for name in [EGRESS_PROGRAM, INGRESS_PROGRAM] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|e| anyhow!("the kernel refused the CLAT program {name}: {e:#}"))?;
        }
        let config = Array::try_from(
            ebpf.take_map(m::CLAT_CONFIG)
                .ok_or_else(|| anyhow!("the eBPF object has no {} map", m::CLAT_CONFIG))?,
        )
        .map_err(|e| anyhow!("map {}: {e}", m::CLAT_CONFIG))?;
        Ok(Self {
            ebpf,
            config,
            attached: Vec::new(),
        })
    }

    /// A handle on one of the two programs (for `BPF_PROG_TEST_RUN` fixtures and benchmarks).
    pub fn program(&mut self, name: &str) -> anyhow::Result<aya::programs::ProgramFd> {
        Ok(classifier(&mut self.ebpf, name)?.fd()?.try_clone()?)
    }

    /// Attaches `clat_egress` to the IPv4 interface and `clat_ingress` to the uplink.
    pub fn attach(&mut self, v4_interface: &str, uplink: &str) -> anyhow::Result<()> {
        for (name, iface, kind) in [
            (EGRESS_PROGRAM, v4_interface, TcAttachType::Egress),
            (INGRESS_PROGRAM, uplink, TcAttachType::Ingress),
        ] {
            let id = classifier(&mut self.ebpf, name)?
                .attach_with_options(iface, kind, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .map_err(|e| anyhow!("attaching {name} to {iface} (TCX): {e}"))?;
            self.attached.push((iface.to_owned(), name, id));
        }
        Ok(())
    }

    /// Detaches both programs (also done when the value is dropped).
    pub fn detach(&mut self) {
        for (iface, name, id) in self.attached.drain(..) {
            if let Ok(p) = classifier(&mut self.ebpf, name)
                && let Err(e) = p.detach(id)
            {
                log::warn!("detaching {name} from {iface}: {e}");
            }
        }
    }

    /// What the programs translate with; `prefix_len` 0 stops translation.
    pub fn set(&mut self, c: &ClatConfig) -> anyhow::Result<()> {
        self.config
            .set(0, *c, 0)
            .map_err(|e| anyhow!("writing the CLAT settings: {e}"))
    }
}

/// The data plane's counters in a CLAT's pin folder.
pub fn counters(pins: &Path) -> anyhow::Result<Counters> {
    let map: PerCpuArray<MapData, u64> = open_map(pins, m::COUNTERS)?
        .try_into()
        .map_err(|e| anyhow!("map {}: {e}", m::COUNTERS))?;
    crate::dataplane::read_counters(&map)
}
