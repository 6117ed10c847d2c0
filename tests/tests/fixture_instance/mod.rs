//! A translator instance loaded (not attached) in a fresh packet-fixture namespace, for tests
//! that send real packets through `BPF_PROG_TEST_RUN` with their own configuration. Shared by
//! several test files (`mod fixture_instance;`); each uses part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result};
use aya::programs::ProgramFd;
use translator::{
    config::{AttachMode, Config},
    dataplane::{self, Instance, Maps},
    testrun,
};
use translator_tests::{NetNs, fixture::fixture_net};

/// The fixture network's client.
pub const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The server 192.0.2.2 under the prefix 2001:db8:64::/96.
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc000, 0x202);
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The pool address (also the gateway's IPv4-side address).
pub const POOL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

pub const XDP_DROP: u32 = 1;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// `[nat64]` and `[pool]` settings every fixture configuration starts with.
pub const BASE: &str = r#"
[interfaces]
ipv6 = "v6a"
ipv4 = "v4a"
[nat64]
prefix = "2001:db8:64::/96"
"#;

/// The loaded instance, its maps and program, the namespace it runs in.
pub struct Fixture<'a> {
    pub ns: &'a NetNs,
    pub obj: aya::Ebpf,
    pub maps: Maps,
    pub prog: ProgramFd,
    /// The TC program, once [`Fixture::run_tc`] loaded it.
    pub tc: Option<ProgramFd>,
    pub v6if: u32,
    pub v4if: u32,
    /// The instance's pins (its maps).
    pub pins: std::path::PathBuf,
}

impl Fixture<'_> {
    /// Runs the translator once on `frame` received on `ifindex`.
    pub fn run(&self, frame: &[u8], ifindex: u32) -> Result<testrun::Outcome> {
        Ok(testrun::run(self.prog.as_fd(), frame, ifindex, 1)?)
    }

    /// Runs the TC program (loaded on first use, on the same maps) once on `frame` received
    /// on `ifindex`, as an skb.
    pub fn run_tc(&mut self, frame: &[u8], ifindex: u32) -> Result<testrun::Outcome> {
        if self.tc.is_none() {
            let fd = dataplane::load_program(&mut self.obj, AttachMode::Tc)?;
            self.tc = Some(fd.try_clone()?);
        }
        let fd = self.tc.as_ref().context("the TC program")?;
        Ok(testrun::run_skb(fd.as_fd(), frame, ifindex, 1)?)
    }
}

/// Loads an instance named `name` with `BASE` followed by `settings` (the rest of `[nat64]`,
/// then `[pool]` and so on) in a new fixture namespace and runs `f` with it. The instance's
/// pins and the namespace go whatever `f` returns.
pub fn with_fixture_instance<R: Send>(
    name: &str,
    settings: &str,
    f: impl FnOnce(&mut Fixture) -> Result<R> + Send,
) -> Result<R> {
    let ns = fixture_net()?;
    let ns = &ns;
    ns.in_ns(|| -> Result<R> {
        translator::netns::ensure_bpffs()?;
        let instance = format!("{name}-{}", std::process::id());
        let cfg = Config::parse(&format!("instance = \"{instance}\"\n{BASE}{settings}"))?;
        let inst = Instance::new(&cfg.instance);
        let result = (|| -> Result<R> {
            let mut obj = dataplane::load(&cfg, Some(&inst.pins))?;
            let mut maps = Maps::open(&inst.pins)?;
            maps.fill_pool(&cfg)?;
            maps.sync_policy(&cfg)?;
            for s in &cfg.statics {
                maps.add_static(s)?;
            }
            let prog = dataplane::xdp_program(&mut obj)?.fd()?.try_clone()?;
            let mut fx = Fixture {
                ns,
                obj,
                maps,
                prog,
                tc: None,
                v6if: translator::netns::ifindex("v6a").context("no v6a")?,
                v4if: translator::netns::ifindex("v4a").context("no v4a")?,
                pins: inst.pins.clone(),
            };
            f(&mut fx)
        })();
        dataplane::down(&inst)?;
        result
    })?
}

/// A UDP datagram from `src`:`sport` to the server's `dport` through the prefix, as the frame
/// the client sends the gateway.
pub fn udp_to_server(src: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    use translator_tests::{
        fixture::{MAC_CLIENT, MAC_GW6},
        packets::{eth, ipv6, udp},
    };
    let seg = udp(src.into(), SERVER6.into(), sport, dport, payload);
    eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(src, SERVER6, 17, 64, 0, &seg),
    )
}

/// A MAC address as `ip` prints it.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
