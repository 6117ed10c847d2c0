//! The packet-fixture table harness, shared by the fixture files (`mod fixture_cases;`): a
//! case is an input frame, the interface it arrives on, the expected verdict (as an XDP action;
//! the TC program's is derived from it), the expected output frame byte for byte, and the
//! counter that must move by one. [`run_cases`] runs a table in order on one freshly loaded
//! instance, against the XDP or the TC program, in the packet-fixture namespace.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use translator::{
    config::{AttachMode, Config},
    dataplane::{self, Instance, Maps},
    testrun,
};
use translator_tests::{
    NetNs,
    packets::{XDP_DROP, XDP_PASS},
};

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("fixture IPv6 address")
}
pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("fixture IPv4 address")
}

/// Which interface a frame arrives on.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    V6,
    V4,
}

pub struct Case {
    pub name: &'static str,
    pub side: Side,
    pub input: Vec<u8>,
    pub action: u32,
    /// `None`: the frame must come out unchanged.
    pub output: Option<Vec<u8>>,
    /// The counter (event or drop reason name) that must grow by exactly one.
    pub counter: &'static str,
    /// For IPv6 -> IPv4 without DF the identification is random: take it from the output and
    /// rebuild the expected frame with it.
    pub random_id: bool,
}

/// A case name built at run time (the table lives for the whole test).
pub fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Builds the expected IPv4 frame for a given identification.
pub type Expect4 = Box<dyn Fn(u16) -> Vec<u8> + Send + Sync>;

pub fn counters(maps: &Maps) -> Result<std::collections::BTreeMap<&'static str, u64>> {
    let (events, drops) = maps.counters()?;
    Ok(events
        .iter()
        .map(|(e, n)| (e.name(), *n))
        .chain(drops.iter().map(|(d, n)| (d.name(), *n)))
        .collect())
}

pub fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The entry point a fixture table runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Xdp,
    Tc,
}

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

impl Target {
    fn mode(self) -> AttachMode {
        match self {
            Target::Xdp => AttachMode::Native,
            Target::Tc => AttachMode::Tc,
        }
    }

    /// The return code the program must give for a case's verdict. On TC, sending a frame back
    /// out (XDP_TX) is a redirect, and so is the hand-off to the slow path (received again on
    /// the same interface, where the kernel reads the slow-path ethertype).
    fn action(self, case: &Case, expected: &[u8]) -> u32 {
        if self == Target::Xdp {
            return case.action;
        }
        match case.action {
            XDP_DROP => TC_ACT_SHOT,
            XDP_PASS if expected.get(12..14) == Some(&[0x88, 0xb5]) => TC_ACT_REDIRECT,
            XDP_PASS => TC_ACT_OK,
            _ => TC_ACT_REDIRECT,
        }
    }
}

/// Whether a frame ends before the end of the fixed IP header its ethertype announces.
fn shorter_than_ip_header(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x86, 0xdd]) => frame.len() < 14 + 40,
        Some([0x08, 0x00]) => frame.len() < 14 + 20,
        _ => false,
    }
}

pub fn run_cases(
    ns: &NetNs,
    target: Target,
    config: &str,
    cases: &[(Case, Option<Expect4>)],
) -> Result<()> {
    let instance = format!("fx-{}-{target:?}", std::process::id());
    let cfg = Config::parse(&config.replace("INSTANCE", &instance))?;
    let inst = Instance::new(&instance);
    struct Down(Instance);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = dataplane::down(&self.0);
        }
    }
    let _down = Down(inst.clone());
    ns.in_ns(|| -> Result<()> {
        translator::netns::ensure_bpffs()?;
        let _ = dataplane::down(&inst);
        let mut cfg = cfg.clone();
        cfg.mode = target.mode();
        let mut ebpf = dataplane::load(&cfg, Some(&inst.pins))?;
        let mut maps = Maps::open(&inst.pins)?;
        maps.fill_pool(&cfg)?;
        maps.sync_policy(&cfg)?;
        for s in &cfg.statics {
            maps.add_static(s)?;
        }
        let v6if = translator::netns::ifindex("v6a").context("v6a")?;
        let v4if = translator::netns::ifindex("v4a").context("v4a")?;
        let fd = dataplane::load_program(&mut ebpf, target.mode())?;
        let mut failures = Vec::new();
        let mut skipped = Vec::new();
        for (case, expect4) in cases {
            let before = counters(&maps)?;
            let ifindex = match case.side {
                Side::V6 => v6if,
                Side::V4 => v4if,
            };
            use std::os::fd::AsFd as _;
            let out = match target {
                Target::Xdp => testrun::run(fd.as_fd(), &case.input, ifindex, 1),
                Target::Tc => {
                    match testrun::run_skb(fd.as_fd(), &case.input, ifindex, 1) {
                        // The kernel builds no skb from a frame too short for the IP header
                        // its ethertype names; the XDP run covers such frames.
                        Err(e)
                            if e.raw_os_error() == Some(libc::EINVAL)
                                && shorter_than_ip_header(&case.input) =>
                        {
                            skipped.push(case.name);
                            continue;
                        }
                        r => r,
                    }
                }
            }
            .with_context(|| format!("{}: BPF_PROG_TEST_RUN", case.name))?;
            let after = counters(&maps)?;
            let expected = match (&case.output, expect4) {
                (_, Some(f)) => {
                    let id = if case.random_id && out.packet.len() >= 20 {
                        u16::from_be_bytes([out.packet[18], out.packet[19]])
                    } else {
                        0
                    };
                    f(id)
                }
                (Some(p), None) => p.clone(),
                (None, None) => case.input.clone(),
            };
            let mut problems = Vec::new();
            let action = target.action(case, &expected);
            if out.action != action {
                problems.push(format!("action {} (expected {action})", out.action));
            }
            if out.packet != expected {
                problems.push(format!(
                    "output frame differs\n  got:\n{}\n  expected:\n{}",
                    hex(&out.packet),
                    hex(&expected)
                ));
            }
            let moved = after.get(case.counter).copied().unwrap_or(0)
                - before.get(case.counter).copied().unwrap_or(0);
            if moved != 1 {
                problems.push(format!(
                    "counter {} moved by {moved} (expected 1)",
                    case.counter
                ));
            }
            // No drop counter may move unless the case is a drop.
            for r in translator_common::counters::DropReason::ALL {
                let n = r.name();
                if n != case.counter && after.get(n) != before.get(n) {
                    problems.push(format!("unexpected drop counter {n} moved"));
                }
            }
            if !problems.is_empty() {
                failures.push(format!("case {:?}: {}", case.name, problems.join("; ")));
            }
        }
        println!(
            "{target:?}: {} cases run, {} not runnable here: {skipped:?}",
            cases.len() - skipped.len(),
            skipped.len()
        );
        if skipped.len() > 4 {
            bail!("{target:?}: too many cases could not run: {skipped:?}");
        }
        if !failures.is_empty() {
            bail!(
                "{target:?}: {} fixture case(s) failed:\n{}",
                failures.len(),
                failures.join("\n\n")
            );
        }
        Ok(())
    })?
}
