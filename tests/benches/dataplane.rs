//! Data-plane cost with `BPF_PROG_TEST_RUN` (issue 6, parts 1 and 2).
//!
//! Method. `BPF_PROG_TEST_RUN` with a repeat count runs the program again and again on the
//! *same* buffer without restoring it: after the first run the buffer holds the translated
//! packet. So every figure is taken through the harness program `bench_harness`
//! (translator-ebpf/src/baseline.rs): before each repetition it writes the input frame back
//! (`xdp_adjust_head` to the original length, `xdp_store_bytes` of the frame) and tail-calls the
//! program under test. Its own cost is measured in the same run by tail-calling `bench_return`
//! (which only returns) and subtracted: the figures are the net cost of the program under test
//! with a large repeat count, caches warm. Before timing, the harness's output is compared
//! byte for byte with a plain run of the program on the same frame, so the harness cannot hide
//! a different path.
//!
//! New flows: the harness also writes a per-repetition port (and client address word) into the
//! frame, so every repetition is a new flow (64 ports per client: the block allocation is
//! amortized over 64 flows as in real use), or a new session on one binding (a new destination
//! port each time). A fresh table per run.
//!
//! Also kept, as a cross-check of cold-cache cost: one syscall per packet (`repeat = 1`), the
//! kernel's own per-run time minus that of an empty program.
//!
//! Each figure is the median of several runs, with min and max.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd as _, BorrowedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use aya::programs::ProgramFd;
use common::{Row, empty_xdp_program, median_u32, quick, write_rows};
use translator::{
    config::{AttachMode, Config},
    dataplane::{self, Instance, Maps},
    testrun::{self, Vary},
};
use translator_common::{
    maps::{SessionKey4, SessionKey6, SessionValue4, SessionValue6},
    rfc6052::{raw4, raw6},
};
use translator_tests::{
    fixture::{MAC_CLIENT, MAC_GW4, MAC_GW6, MAC_SERVER, fixture_net},
    packets::*,
    require_root,
};

const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// 192.0.2.2 under the prefix 2001:db8:64::/96.
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc000, 0x202);
const SERVER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const POOL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const PAYLOAD: &[u8] = b"benchmark!";

fn config(instance: &str, sessions: u32, route_cache_ms: u32) -> Result<Config> {
    config_with(
        instance,
        sessions,
        route_cache_ms,
        "192.0.2.1",
        "address-dependent",
    )
}

/// [`config`] with another pool and filtering.
fn config_with(
    instance: &str,
    sessions: u32,
    route_cache_ms: u32,
    pool: &str,
    filtering: &str,
) -> Result<Config> {
    Config::parse(&format!(
        r#"
instance = "{instance}"
[interfaces]
ipv6 = "v6a"
ipv4 = "v4a"
[nat64]
prefix = "2001:db8:64::/96"
clients = ["2001:db8:1::/64"]
route_cache_ms = {route_cache_ms}
filtering = "{filtering}"
[pool]
addresses = ["{pool}"]
block_size = 64
max_blocks_per_client = 8
[limits]
sessions = {sessions}
"#
    ))
}

/// A loaded translator instance with its pins; the pins go when it drops.
struct Loaded {
    inst: Instance,
    ebpf: Option<aya::Ebpf>,
    maps: Maps,
}

impl Loaded {
    fn new(tag: &str, sessions: u32) -> Result<Self> {
        Self::with_route_cache(tag, sessions, 0)
    }

    fn with_route_cache(tag: &str, sessions: u32, route_cache_ms: u32) -> Result<Self> {
        let name = format!("bench-{tag}-{}", std::process::id());
        Self::with_config(&config(&name, sessions, route_cache_ms)?)
    }

    fn with_config(cfg: &Config) -> Result<Self> {
        let name = cfg.instance.clone();
        let inst = Instance::new(&name);
        let _ = dataplane::down(&inst);
        let ebpf = dataplane::load(cfg, Some(&inst.pins)).inspect_err(|_| {
            let _ = dataplane::down(&inst);
        })?;
        let maps = Maps::open(&inst.pins).inspect_err(|_| {
            let _ = dataplane::down(&inst);
        })?;
        let mut loaded = Self {
            maps,
            inst,
            ebpf: Some(ebpf),
        };
        loaded.maps.fill_pool(cfg)?;
        loaded.maps.sync_policy(cfg)?;
        Ok(loaded)
    }

    fn fd(&mut self) -> Result<BorrowedFd<'_>> {
        let ebpf = self.ebpf.as_mut().context("program already unloaded")?;
        let prog = dataplane::xdp_program(ebpf)?;
        Ok(prog.fd()?.as_fd())
    }

    fn pin(&self, map: &str) -> std::path::PathBuf {
        self.inst.pins.join(map)
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.ebpf = None;
        if let Err(e) = dataplane::down(&self.inst) {
            eprintln!("warning: removing the pins of {}: {e:#}", self.inst.name);
        }
    }
}

// ------------------------------------------------------------------------------- packets

fn udp6(src: Ipv6Addr, sport: u16) -> Vec<u8> {
    let seg = udp(src.into(), SERVER6.into(), sport, 9, PAYLOAD);
    eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(src, SERVER6, 17, 64, 0, &seg),
    )
}

fn udp4(pool_port: u16, rport: u16) -> Vec<u8> {
    let seg = udp(SERVER4.into(), POOL.into(), rport, pool_port, PAYLOAD);
    eth(
        MAC_GW4,
        MAC_SERVER,
        0x0800,
        &ipv4(SERVER4, POOL, 17, 64, 0, 1, true, &seg),
    )
}

/// UDP from `src` to the server (through the prefix) with the given ports.
fn udp6_to_from(src: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let seg = udp(src.into(), SERVER6.into(), sport, dport, PAYLOAD);
    eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(src, SERVER6, 17, 64, 0, &seg),
    )
}

fn udp6_to(dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let seg = udp(CLIENT.into(), dst.into(), sport, dport, PAYLOAD);
    eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(CLIENT, dst, 17, 64, 0, &seg),
    )
}

fn tcp6(sport: u16, flags: u8) -> Vec<u8> {
    let seg = tcp(CLIENT.into(), SERVER6.into(), sport, 80, flags, 1000, 2000);
    eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(CLIENT, SERVER6, 6, 64, 0, &seg),
    )
}

fn tcp4(pool_port: u16, flags: u8) -> Vec<u8> {
    let seg = tcp(
        SERVER4.into(),
        POOL.into(),
        80,
        pool_port,
        flags,
        2000,
        1001,
    );
    eth(
        MAC_GW4,
        MAC_SERVER,
        0x0800,
        &ipv4(SERVER4, POOL, 6, 64, 0, 1, true, &seg),
    )
}

fn echo6(id: u16) -> Vec<u8> {
    let m = icmp6_echo(CLIENT, SERVER6, 128, id, 1, PAYLOAD);
    eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(CLIENT, SERVER6, 58, 64, 0, &m),
    )
}

fn echo4_reply(id: u16) -> Vec<u8> {
    let m = icmp4_echo(0, id, 1, PAYLOAD);
    eth(
        MAC_GW4,
        MAC_SERVER,
        0x0800,
        &ipv4(SERVER4, POOL, 1, 64, 0, 1, false, &m),
    )
}

/// The source port (or ICMP identifier) of a translated IPv4 frame.
fn port4(frame: &[u8], what: &str) -> Result<u16> {
    let (off, proto) = (14 + 20, frame.get(14 + 9).copied());
    let at = match proto {
        Some(1) => off + 4,
        Some(6 | 17) => off,
        _ => bail!("{what}: the translated frame is not IPv4 TCP/UDP/ICMP"),
    };
    match frame.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => bail!("{what}: the translated frame is too short"),
    }
}

// ------------------------------------------------------------------------------- running

fn run1(fd: BorrowedFd<'_>, frame: &[u8], ifindex: u32, what: &str) -> Result<testrun::Outcome> {
    testrun::run(fd, frame, ifindex, 1).with_context(|| format!("{what}: BPF_PROG_TEST_RUN"))
}

/// Runs each frame once per call, `calls` times round robin; checks the action; returns the
/// kernel's time of every call.
fn per_call(
    fd: BorrowedFd<'_>,
    frames: &[Vec<u8>],
    ifindex: u32,
    calls: usize,
    want: u32,
    what: &str,
) -> Result<Vec<u32>> {
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let frame = &frames[i % frames.len()];
        let out = run1(fd, frame, ifindex, what)?;
        if out.action != want {
            bail!(
                "{what}: the program returned action {} (expected {want}); the figure would \
                 not measure the intended path",
                out.action
            );
        }
        times.push(out.ns_per_run);
    }
    Ok(times)
}

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;

/// [`per_call`] for a TC program: the frame as an skb, one syscall per packet.
fn per_call_skb(
    fd: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    calls: usize,
    want: u32,
    what: &str,
) -> Result<Vec<u32>> {
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let out = testrun::run_skb(fd, frame, ifindex, 1)
            .with_context(|| format!("{what}: BPF_PROG_TEST_RUN of the TC program"))?;
        if out.action != want {
            bail!(
                "{what}: the TC program returned {} (expected {want}); the figure would not \
                 measure the intended path",
                out.action
            );
        }
        times.push(out.ns_per_run);
    }
    Ok(times)
}

/// Offsets in the frames built here: UDP ports after Ethernet + IPv6, the destination port after
/// Ethernet + IPv4, and the last word of the IPv6 source address.
const SPORT6: u32 = 54;
const DPORT6: u32 = 56;
const DPORT4: u32 = 36;
const SRC6_LOW: u32 = 34;

/// The harness ([`testrun::Harness`]) with the programs the figures compare.
struct Harness {
    h: testrun::Harness,
    ret: ProgramFd,
    floor: ProgramFd,
    fwd: ProgramFd,
}

impl Harness {
    /// `hash_entries`: size of the bench-only hash table `BENCH_HASH`.
    fn new(hash_entries: u32) -> Result<Self> {
        Self::with_tables(hash_entries, 1, 1)
    }

    /// [`Harness::new`] with the prototype tables `BENCH_TABLE` (`table_slots` slots) and
    /// `BENCH_BUCKETS` (`buckets` buckets).
    fn with_tables(hash_entries: u32, table_slots: u32, buckets: u32) -> Result<Self> {
        let mut h = testrun::Harness::with_tables(hash_entries, table_slots, buckets)
            .context("loading the eBPF object for the baselines")?;
        Ok(Self {
            ret: h.program("bench_return")?,
            floor: h.program("baseline_tx")?,
            fwd: h.program("baseline_forward")?,
            h,
        })
    }

    /// Runs `target` through the harness on `frame`, `repeat` times; checks the action.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        target: &ProgramFd,
        frame: &[u8],
        vary: Option<Vary>,
        ifindex: u32,
        repeat: u32,
        want: u32,
        what: &str,
    ) -> Result<testrun::Outcome> {
        let out = self
            .h
            .run(target, frame, vary, ifindex, repeat)
            .with_context(|| format!("{what}: BPF_PROG_TEST_RUN of the harness"))?;
        if out.action != want {
            bail!(
                "{what}: action {} through the harness (expected {want}); the figure would not \
                 measure the intended path",
                out.action
            );
        }
        Ok(out)
    }

    /// ns per repetition of `target`, net of the harness (measured right before on the same
    /// frame).
    #[allow(clippy::too_many_arguments)]
    fn net(
        &mut self,
        target: &ProgramFd,
        frame: &[u8],
        vary: Option<Vary>,
        ifindex: u32,
        repeat: u32,
        want: u32,
        what: &str,
    ) -> Result<(f64, f64)> {
        let ret = self.ret.try_clone()?;
        let own = self.run(&ret, frame, None, ifindex, repeat, XDP_TX, "harness alone")?;
        let out = self.run(target, frame, vary, ifindex, repeat, want, what)?;
        Ok((
            f64::from(out.ns_per_run) - f64::from(own.ns_per_run),
            f64::from(own.ns_per_run),
        ))
    }

    /// Fails unless the harness hands `target` exactly the frame a plain run sees: the output
    /// after many repetitions equals the output of one plain run (but for the IPv4
    /// identification, see [`testrun::without_ipv4_id`]).
    fn check(
        &mut self,
        target: &ProgramFd,
        plain: BorrowedFd<'_>,
        frame: &[u8],
        ifindex: u32,
        want: u32,
        what: &str,
    ) -> Result<()> {
        let direct = run1(plain, frame, ifindex, what)?;
        let via = self.run(target, frame, None, ifindex, 1000, want, what)?;
        let (d, v) = (
            testrun::without_ipv4_id(direct.packet),
            testrun::without_ipv4_id(via.packet),
        );
        if direct.action != via.action || d != v {
            let differ: Vec<usize> = (0..d.len().min(v.len()))
                .filter(|&i| d[i] != v[i])
                .collect();
            bail!(
                "{what}: the harness output differs from a plain run (action {} vs {}, {} vs {} \
                 bytes, bytes differing at {differ:?}): the figures would not measure the \
                 program on its input",
                via.action,
                direct.action,
                v.len(),
                d.len()
            );
        }
        Ok(())
    }

    fn reset_seq(&mut self) -> Result<()> {
        self.h.reset_seq()
    }
}

struct Settings {
    runs: usize,
    calls: usize,
    new_flows: usize,
    repeat: u32,
    scales: Vec<u32>,
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataplane bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<()> {
    require_root()?;
    let s = if quick() {
        Settings {
            runs: 3,
            calls: 3000,
            new_flows: 8192,
            repeat: 100_000,
            scales: vec![1_000, 100_000],
        }
    } else {
        Settings {
            runs: 7,
            calls: 20_000,
            new_flows: 32_768,
            repeat: 1_000_000,
            // 10M: about 5.6 GB of preallocated kernel memory, fine on the 24 GB bench machine.
            scales: vec![1_000, 100_000, 1_000_000, 10_000_000],
        }
    };
    let mut s = s;
    // TRANSLATOR_BENCH_SCALES="1000000,..." measures the scale part at those sizes only.
    if let Some(v) = std::env::var_os("TRANSLATOR_BENCH_SCALES") {
        let v = v.to_string_lossy();
        s.scales = v
            .split(',')
            .map(|n| n.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!("TRANSLATOR_BENCH_SCALES={v:?}: give sizes like 1000,1000000")
            })?;
    }
    let ns = fixture_net()?;
    let rows = ns.in_ns(|| -> Result<Vec<Row>> {
        translator::netns::ensure_bpffs()?;
        let mut rows = testrun_section(&s)?;
        if std::env::var_os("TRANSLATOR_BENCH_SPIN").is_some() {
            return Ok(rows);
        }
        rows.extend(scale_section(&s)?);
        rows.extend(table_section(&s)?);
        rows.push(new_sessions_per_second(&s)?);
        Ok(rows)
    })??;
    drop(ns);
    write_rows("dataplane", &rows)
}

fn ifindexes() -> Result<(u32, u32)> {
    Ok((
        translator::netns::ifindex("v6a").context("no v6a in the fixture namespace")?,
        translator::netns::ifindex("v4a").context("no v4a in the fixture namespace")?,
    ))
}

/// Part 1: established flows, new flows, pass-through, floor, bare forwarder.
fn testrun_section(s: &Settings) -> Result<Vec<Row>> {
    let (v6if, v4if) = ifindexes()?;
    let mut t = Loaded::new("tr", 262_144)?;
    let empty = empty_xdp_program()?;
    let mut h = Harness::new(262_144)?;
    let (floor, fwd) = (h.floor.try_clone()?, h.fwd.try_clone()?);
    let (insert, lookup) = (h.h.program("bench_insert")?, h.h.program("bench_lookup")?);
    // Plain forwarding of the same packets: IPv6 to the client (received on v4a), IPv4 to the
    // server (received on v6a).
    let fwd6 = {
        let seg = udp(SERVER6.into(), CLIENT.into(), 9, 40000, PAYLOAD);
        eth(
            MAC_GW4,
            MAC_SERVER,
            0x86dd,
            &ipv6(SERVER6, CLIENT, 17, 64, 0, &seg),
        )
    };
    let fwd4 = {
        let seg = udp(POOL.into(), SERVER4.into(), 40000, 9, PAYLOAD);
        eth(
            MAC_GW6,
            MAC_CLIENT,
            0x0800,
            &ipv4(POOL, SERVER4, 17, 64, 0, 1, true, &seg),
        )
    };
    let tr = translator_fd(&mut t)?;
    // The TC program on the same maps (the sessions made below), one syscall per packet on an
    // skb.
    let tc = dataplane::load_program(t.ebpf.as_mut().context("unloaded")?, AttachMode::Tc)?;
    let fd = t.fd()?;

    // Established flows: the first packet of each creates the session.
    let u6 = udp6(CLIENT, 40000);
    let out = run1(fd, &u6, v6if, "UDP first packet")?;
    let udp_pool = port4(&out.packet, "UDP")?;
    let t6 = tcp6(40001, SYN);
    let out = run1(fd, &t6, v6if, "TCP SYN")?;
    let tcp_pool = port4(&out.packet, "TCP")?;
    run1(fd, &tcp4(tcp_pool, SYN | ACK), v4if, "TCP SYN-ACK")?;
    let e6 = echo6(40002);
    let out = run1(fd, &e6, v6if, "echo request")?;
    let icmp_id = port4(&out.packet, "ICMP")?;

    let established: Vec<(&str, Vec<u8>, u32)> = vec![
        ("established UDP 6->4", u6.clone(), v6if),
        ("established UDP 4->6", udp4(udp_pool, 9), v4if),
        ("established TCP 6->4", tcp6(40001, ACK), v6if),
        ("established TCP 4->6", tcp4(tcp_pool, ACK), v4if),
        ("established ICMP echo 6->4", e6.clone(), v6if),
        ("established ICMP echo 4->6", echo4_reply(icmp_id), v4if),
    ];
    let pass = udp6_to(GATEWAY6, 40003, 22);
    // The same UDP flow through an instance with the route cache on.
    let mut cached = Loaded::with_route_cache("rc", 65_536, 1000)?;
    let rc = translator_fd(&mut cached)?;
    let out = run1(rc.as_fd(), &u6, v6if, "UDP first packet, route cache on")?;
    let rc_frames = [
        ("6->4", u6.clone(), v6if),
        ("4->6", udp4(port4(&out.packet, "UDP")?, 9), v4if),
    ];
    for (what, frame, ifindex) in &rc_frames {
        h.check(&rc, rc.as_fd(), frame, *ifindex, XDP_REDIRECT, what)?;
    }
    for (what, frame, ifindex) in &established {
        h.check(&tr, fd, frame, *ifindex, XDP_REDIRECT, what)?;
    }
    h.check(&tr, fd, &pass, v6if, XDP_PASS, "pass-through")?;
    h.check(
        &fwd,
        fwd.as_fd(),
        &fwd4,
        v6if,
        XDP_REDIRECT,
        "forwarder IPv4",
    )?;
    h.check(
        &fwd,
        fwd.as_fd(),
        &fwd6,
        v4if,
        XDP_REDIRECT,
        "forwarder IPv6",
    )?;

    // Profiling aid: `TRANSLATOR_BENCH_SPIN=<case>:<seconds>` runs one case through the harness
    // in a loop (for `perf record -e cpu-clock -a -g` from another shell) and measures nothing
    // else. Cases: udp64, udp46, fwd4, fwd6, floor, newflow (a fresh table per batch).
    if let Ok(spin) = std::env::var("TRANSLATOR_BENCH_SPIN") {
        let (case, secs) = spin.split_once(':').unwrap_or((spin.as_str(), "10"));
        let secs: u64 = secs.parse().context("TRANSLATOR_BENCH_SPIN seconds")?;
        if case == "newflow" {
            // New flows, each batch in a fresh table (as the "new flow" row).
            let deadline = Instant::now() + std::time::Duration::from_secs(secs);
            let (mut n, mut i) = (0u64, 0u32);
            while Instant::now() < deadline {
                let mut fresh = Loaded::new(&format!("spin{i}"), 262_144)?;
                let nf = translator_fd(&mut fresh)?;
                let first = udp6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 1, 0), 20000);
                let vary = Vary {
                    lo_off: SPORT6,
                    lo_base: 20000,
                    lo_mod: 64,
                    hi_off: SRC6_LOW,
                    hi_base: 0x0001_0000,
                    hi_len: 4,
                };
                let flows = s.new_flows as u32;
                h.run(&nf, &first, Some(vary), v6if, flows, XDP_REDIRECT, case)?;
                n += u64::from(flows);
                i += 1;
            }
            println!("spin {case}: {n} new flows");
            return Ok(Vec::new());
        }
        let (prog, frame, ifindex, want) = match case {
            "udp64" => (&tr, &established[0].1, v6if, XDP_REDIRECT),
            "udp46" => (&tr, &established[1].1, v4if, XDP_REDIRECT),
            "fwd4" => (&fwd, &fwd4, v6if, XDP_REDIRECT),
            "fwd6" => (&fwd, &fwd6, v4if, XDP_REDIRECT),
            "floor" => (&floor, &u6, v6if, XDP_TX),
            other => bail!("TRANSLATOR_BENCH_SPIN: unknown case {other:?}"),
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(secs);
        let mut n = 0u64;
        while Instant::now() < deadline {
            h.run(prog, frame, None, ifindex, s.repeat, want, case)?;
            n += u64::from(s.repeat);
        }
        println!("spin {case}: {n} repetitions");
        return Ok(Vec::new());
    }

    let mut own_s = Vec::new();
    let mut floor_s = Vec::new();
    let mut pass_s = Vec::new();
    let mut est_s: Vec<Vec<f64>> = vec![Vec::new(); established.len()];
    let (mut fwd6_s, mut fwd4_s) = (Vec::new(), Vec::new());
    let (mut new_s, mut eim_s) = (Vec::new(), Vec::new());
    let (mut insert_s, mut lookup_s) = (Vec::new(), Vec::new());
    let mut rc_s: Vec<Vec<f64>> = vec![Vec::new(); rc_frames.len()];
    let (mut cold64_s, mut cold46_s, mut empty_s) = (Vec::new(), Vec::new(), Vec::new());
    let empty_tc = common::empty_tc_program()?;
    let (mut tc64_s, mut tc46_s, mut empty_tc_s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..s.runs {
        let (x, own) = h.net(&floor, &u6, None, v6if, s.repeat, XDP_TX, "baseline_tx")?;
        floor_s.push(x);
        own_s.push(own);
        let rep = s.repeat;
        pass_s.push(
            h.net(&tr, &pass, None, v6if, rep, XDP_PASS, "pass-through")?
                .0,
        );
        fwd4_s.push(
            h.net(&fwd, &fwd4, None, v6if, rep, XDP_REDIRECT, "forwarder IPv4")?
                .0,
        );
        fwd6_s.push(
            h.net(&fwd, &fwd6, None, v4if, rep, XDP_REDIRECT, "forwarder IPv6")?
                .0,
        );
        for (i, (what, frame, ifindex)) in established.iter().enumerate() {
            est_s[i].push(
                h.net(&tr, frame, None, *ifindex, rep, XDP_REDIRECT, what)?
                    .0,
            );
        }
        for (i, (what, frame, ifindex)) in rc_frames.iter().enumerate() {
            rc_s[i].push(
                h.net(&rc, frame, None, *ifindex, rep, XDP_REDIRECT, what)?
                    .0,
            );
        }
        // New flows in a fresh table: clients 2001:db8:1::1:<n / 64>, ports 20000 + n % 64.
        let mut fresh = Loaded::new(&format!("nf{run}"), 262_144)?;
        let nf = translator_fd(&mut fresh)?;
        let first = udp6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 1, 0), 20000);
        let vary = Vary {
            lo_off: SPORT6,
            lo_base: 20000,
            lo_mod: 64,
            hi_off: SRC6_LOW,
            hi_base: 0x0001_0000,
            hi_len: 4,
        };
        let flows = s.new_flows as u32;
        new_s.push(
            h.net(
                &nf,
                &first,
                Some(vary),
                v6if,
                flows,
                XDP_REDIRECT,
                "new flow",
            )?
            .0,
        );
        // New sessions on one binding (endpoint-independent mapping): one client port, a new
        // destination port each time (the very first repetition also makes the binding).
        let one = udp6_to_from(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 3, 0), 50000, 2);
        let vary = Vary {
            lo_off: DPORT6,
            lo_base: 2,
            lo_mod: 65000,
            hi_off: 0,
            hi_base: 0,
            hi_len: 2,
        };
        let what = "new session on a binding";
        eim_s.push(
            h.net(&nf, &one, Some(vary), v6if, flows, XDP_REDIRECT, what)?
                .0,
        );
        let created = fresh.maps.sessions6.keys().count();
        if created < 2 * s.new_flows {
            bail!(
                "new flows: {created} sessions in the table, expected {}",
                2 * s.new_flows
            );
        }
        drop(fresh);
        // One hash insert of a new key, then one lookup of each of those keys, in a table as
        // large as the session table above (each repetition a new key: its client word and
        // port).
        let vary = Vary {
            lo_off: SPORT6,
            lo_base: 1,
            lo_mod: 60_000,
            hi_off: SRC6_LOW,
            hi_base: (run as u32 + 1) << 20,
            hi_len: 4,
        };
        h.reset_seq()?;
        let what = "hash insert";
        insert_s.push(
            h.net(&insert, &u6, Some(vary), v6if, flows, XDP_TX, what)?
                .0,
        );
        h.reset_seq()?;
        let what = "hash lookup";
        lookup_s.push(
            h.net(&lookup, &u6, Some(vary), v6if, flows, XDP_TX, what)?
                .0,
        );
        // Cold: one syscall per packet.
        let e = median_u32(&mut per_call(
            empty.as_fd(),
            std::slice::from_ref(&u6),
            v6if,
            s.calls,
            XDP_PASS,
            "empty program",
        )?);
        empty_s.push(e);
        for (i, dst) in [(0, &mut cold64_s), (1, &mut cold46_s)] {
            let (what, frame, ifindex) = &established[i];
            let m = median_u32(&mut per_call(
                fd,
                std::slice::from_ref(frame),
                *ifindex,
                s.calls,
                XDP_REDIRECT,
                what,
            )?);
            dst.push(m - e);
        }
        let e = median_u32(&mut per_call_skb(
            empty_tc.as_fd(),
            &u6,
            v6if,
            s.calls,
            TC_ACT_OK,
            "empty TC program",
        )?);
        empty_tc_s.push(e);
        for (i, dst) in [(0, &mut tc64_s), (1, &mut tc46_s)] {
            let (what, frame, ifindex) = &established[i];
            let m = median_u32(&mut per_call_skb(
                tc.as_fd(),
                frame,
                *ifindex,
                s.calls,
                TC_ACT_REDIRECT,
                what,
            )?);
            dst.push(m - e);
        }
    }
    let own = common::stats(&own_s).0.unwrap_or(0.0);
    let net = format!(
        "repeat={} through the harness, net of its {own:.0} ns (restore + tail call)",
        s.repeat
    );
    let mut rows = vec![
        Row::new(
            "testrun",
            "harness: restore the frame + tail call (subtracted)",
            "ns/packet",
            own_s,
            &format!("repeat={}, raw kernel time per repetition", s.repeat),
        ),
        Row::new(
            "testrun",
            "floor: baseline_tx (swap MACs, XDP_TX)",
            "ns/packet",
            floor_s,
            &net,
        ),
    ];
    // Ratios: to the bare forwarder doing the same route lookup (the IPv4 one for packets that
    // leave as IPv4).
    let fwd4_row = Row::new(
        "testrun",
        "bare XDP forwarder IPv4 (baseline_forward)",
        "ns/packet",
        fwd4_s,
        &net,
    );
    let fwd6_row = Row::new(
        "testrun",
        "bare XDP forwarder IPv6 (baseline_forward)",
        "ns/packet",
        fwd6_s,
        &net,
    );
    rows.push(fwd4_row.clone());
    rows.push(fwd6_row.clone());
    for ((what, _, _), samples) in established.iter().zip(est_s) {
        let base = if what.ends_with("6->4") {
            &fwd4_row
        } else {
            &fwd6_row
        };
        rows.push(Row::new("testrun", what, "ns/packet", samples, &net).ratio_to(base));
    }
    for ((dir, _, _), samples) in rc_frames.iter().zip(rc_s) {
        let base = if *dir == "6->4" { &fwd4_row } else { &fwd6_row };
        rows.push(
            Row::new(
                "testrun",
                &format!("established UDP {dir}, route cache on"),
                "ns/packet",
                samples,
                &format!(
                    "nat64.route_cache_ms = 1000 (off by default): the route lookup's answer is \
                     reused for up to 1 s; {net}"
                ),
            )
            .ratio_to(base),
        );
    }
    rows.push(
        Row::new(
            "testrun",
            "new flow (binding + session creation) 6->4 UDP",
            "ns/packet",
            new_s,
            &format!(
                "{} new flows per run, each repetition a new client port (64 per client: the \
                 block allocation is amortized), fresh table; {net}",
                s.new_flows,
            ),
        )
        .ratio_to(&fwd4_row),
    );
    rows.push(
        Row::new(
            "testrun",
            "new session on an existing binding 6->4 UDP",
            "ns/packet",
            eim_s,
            &format!(
                "{} new destination ports from one client port (EIM: the binding exists, only the \
                 session is created); {net}",
                s.new_flows
            ),
        )
        .ratio_to(&fwd4_row),
    );
    for (what, samples) in [
        ("profile: one hash map insert (new key)", insert_s),
        ("profile: one hash map lookup (hit)", lookup_s),
    ] {
        rows.push(Row::new(
            "testrun",
            what,
            "ns/packet",
            samples,
            &format!(
                "{} keys per run into a preallocated BPF hash map of 262144 entries, 32-byte \
                 values (like the session tables); a new flow makes 4 such inserts (binding both \
                 ways, session, filtering permit); {net}",
                s.new_flows
            ),
        ));
    }
    rows.push(Row::new(
        "testrun",
        "pass-through (IPv6 not for the prefix)",
        "ns/packet",
        pass_s,
        &net,
    ));
    let e = common::stats(&empty_s).0.unwrap_or(0.0);
    for (what, samples) in [("UDP 6->4", cold64_s), ("UDP 4->6", cold46_s)] {
        rows.push(Row::new(
            "testrun",
            &format!("cross-check: established {what}, one syscall per packet"),
            "ns/packet",
            samples,
            &format!(
                "repeat=1, {} calls, median kernel time net of an empty program's {e:.0} ns: \
                 caches cold from the syscall in between",
                s.calls
            ),
        ));
    }
    let e = common::stats(&empty_tc_s).0.unwrap_or(0.0);
    for (what, samples) in [("UDP 6->4", tc64_s), ("UDP 4->6", tc46_s)] {
        rows.push(Row::new(
            "testrun",
            &format!("TC program (tc mode): established {what}, one syscall per packet"),
            "ns/packet",
            samples,
            &format!(
                "an skb per call, repeat=1, {} calls, median kernel time net of an empty TC \
                 program's {e:.0} ns (compare with the cross-check rows, not the harness rows)",
                s.calls
            ),
        ));
    }
    let ebpf = t.ebpf.as_mut().context("unloaded")?;
    let infos = [
        ("XDP", dataplane::xdp_program(ebpf)?.info()?),
        ("TC", dataplane::tc_program(ebpf)?.info()?),
    ];
    for (kind, info) in infos {
        rows.push(Row::new(
            "testrun",
            &format!("translator {kind} program size (xlated insns)"),
            "instructions",
            vec![f64::from(info.size_translated().unwrap_or(0) / 8)],
            &format!(
                "{} bytes JITed, {} instructions processed by the verifier at load",
                info.size_jitted(),
                info.verified_instruction_count().unwrap_or(0)
            ),
        ));
    }
    Ok(rows)
}

fn translator_fd(t: &mut Loaded) -> Result<ProgramFd> {
    let ebpf = t.ebpf.as_mut().context("program already unloaded")?;
    Ok(dataplane::xdp_program(ebpf)?.fd()?.try_clone()?)
}

/// CLOCK_MONOTONIC in ns (what `bpf_ktime_get_coarse_ns` compares with).
fn monotonic_ns() -> u64 {
    // SAFETY: zeroed timespec filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Session `i` of a pre-populated table: client 2001:db8:1::2 (the only client with a
/// neighbour entry, so 4->6 packets are forwarded), remote 192.0.2.2, distinct (client port,
/// remote port) pairs; the pool port equals the client port.
fn session(i: u32) -> (u16, u16) {
    (1 + (i % 65535) as u16, 1000 + (i / 65535) as u16)
}

fn populate(maps: &mut Maps, n: u32) -> Result<()> {
    let now = monotonic_ns();
    let client = raw6(u128::from(CLIENT));
    let (remote, pool) = (raw4(u32::from(SERVER4)), raw4(u32::from(POOL)));
    for j in 0..n {
        // A permutation of 0..n (7919 is prime to every table size used): the sessions the
        // scale figures visit (0..4096) end up spread over the preallocated elements.
        let i = ((u64::from(j) * 7919) % u64::from(n)) as u32;
        let (cport, rport) = session(i);
        let k6 = SessionKey6 {
            client,
            remote,
            client_port_be: cport.to_be(),
            remote_port_be: rport.to_be(),
            proto: 17,
            _pad: [0; 3],
        };
        let v6 = SessionValue6 {
            pool,
            pool_port_be: cport.to_be(),
            flags: 0,
            state: 0,
            last_seen: now,
        };
        let k4 = SessionKey4 {
            pool,
            remote,
            pool_port_be: cport.to_be(),
            remote_port_be: rport.to_be(),
            proto: 17,
            _pad: [0; 3],
        };
        let v4 = SessionValue4 {
            client,
            client_port_be: cport.to_be(),
            flags: 0,
            state: 0,
            _pad: [0; 4],
            last_seen: now,
        };
        maps.sessions6
            .insert(k6, v6, 0)
            .map_err(|e| anyhow::anyhow!("inserting session {i} into SESSIONS6: {e}"))?;
        maps.sessions4
            .insert(k4, v4, 0)
            .map_err(|e| anyhow::anyhow!("inserting session {i} into SESSIONS4: {e}"))?;
    }
    Ok(())
}

/// (bytes_memlock, max_entries) of a pinned map, from bpftool.
fn memlock(pin: &Path) -> Result<(f64, f64)> {
    let text = common::output(
        "bpftool",
        &["-j", "map", "show", "pinned", &pin.display().to_string()],
    )?;
    let v: serde_json::Value = serde_json::from_str(&text).context("bpftool JSON")?;
    let get = |k: &str| -> Result<f64> {
        v.get(k)
            .and_then(|x| {
                x.as_f64()
                    .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            })
            .with_context(|| format!("bpftool map show has no {k}: {text}"))
    };
    Ok((get("bytes_memlock")?, get("max_entries")?))
}

/// Part 2: established flows against tables of 1k, 100k, 1M and 10M sessions (quick: 1k and
/// 100k); memory per session; controller work (expiry pass, metrics scrape) at each size.
fn scale_section(s: &Settings) -> Result<Vec<Row>> {
    let (v6if, v4if) = ifindexes()?;
    let mut rows = Vec::new();
    let mut first: Option<(Row, Row)> = None;
    let mut memory = Vec::new();
    for &n in &s.scales {
        // Room for the table plus a margin; the kernel rounds the buckets to a power of two.
        let capacity = (n + n / 16).max(65_536);
        let mut t = Loaded::new(&format!("sc{n}"), capacity)?;
        let started = Instant::now();
        populate(&mut t.maps, n)?;
        let fill_secs = started.elapsed().as_secs_f64();
        // The same flows at every table size (sessions 0..flows, as many as the smallest table
        // holds, put at places spread over the whole table by `populate`), one packet each in
        // turn through the harness: what changes is the table, not the working set.
        let flows = s.scales.iter().copied().min().unwrap_or(n).min(4096);
        let tr = translator_fd(&mut t)?;
        let mut h = Harness::new(1)?;
        let vary = |off| Vary {
            lo_off: off,
            lo_base: 1,
            lo_mod: flows,
            hi_off: 0,
            hi_base: 0,
            hi_len: 2,
        };
        let (f6, f4) = (udp6_to(SERVER6, 1, 1000), udp4(1, 1000));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..s.runs {
            let what = "scale 6->4";
            a.push(
                h.net(
                    &tr,
                    &f6,
                    Some(vary(SPORT6)),
                    v6if,
                    s.repeat,
                    XDP_REDIRECT,
                    what,
                )?
                .0,
            );
            let what = "scale 4->6";
            b.push(
                h.net(
                    &tr,
                    &f4,
                    Some(vary(DPORT4)),
                    v4if,
                    s.repeat,
                    XDP_REDIRECT,
                    what,
                )?
                .0,
            );
        }
        let note = format!(
            "{n} sessions in the table (filled in {fill_secs:.1} s), {flows} flows spread over \
             it, round robin; repeat={} through the harness, net of it",
            s.repeat
        );
        let mut r6 = Row::new(
            "scale",
            &format!("established UDP 6->4, {} sessions", human(n)),
            "ns/packet",
            a,
            &note,
        );
        let mut r4 = Row::new(
            "scale",
            &format!("established UDP 4->6, {} sessions", human(n)),
            "ns/packet",
            b,
            &note,
        );
        match &first {
            None => first = Some((r6.clone(), r4.clone())),
            Some((f6, f4)) => {
                r6 = r6.ratio_to(f6);
                r4 = r4.ratio_to(f4);
            }
        }
        rows.push(r6);
        rows.push(r4);
        // Kernel memory of the maps sized by limits.sessions, per session slot.
        let (per, parts) = slot_memory(&t, capacity)?;
        memory.push((n, capacity, per, parts));
        rows.extend(controller_rows(&mut t, n, capacity, s.runs)?);
    }
    if let Some((n, capacity, per, parts)) = memory.last() {
        rows.push(Row::new(
            "scale",
            "kernel memory per session slot",
            "bytes/session",
            vec![*per],
            &format!(
                "bpftool bytes_memlock of the 5 maps sized by limits.sessions ({capacity}, table \
                 of {n}; one pool address, whose 196608 ports bound the binding tables; \
                 address-dependent filtering), preallocated, divided by limits.sessions: {parts}; \
                 other tables: {}",
                memory
                    .iter()
                    .map(|(n, _, p, _)| format!("{} {p:.0}", human(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        // The same table size with a pool of as many ports as slots (the binding tables then
        // as large as the session table: every session could have a binding of its own), with
        // each filtering.
        for (filtering, what) in [
            ("address-dependent", "address-dependent filtering"),
            (
                "endpoint-independent",
                "endpoint-independent filtering (no permits)",
            ),
        ] {
            let name = format!("bench-mem-{}", std::process::id());
            let cfg = config_with(&name, *capacity, 0, "192.0.2.0/26", filtering)?;
            let t = Loaded::with_config(&cfg)?;
            let (per, parts) = slot_memory(&t, *capacity)?;
            rows.push(Row::new(
                "scale",
                &format!("kernel memory per session slot, 64 pool addresses, {what}"),
                "bytes/session",
                vec![per],
                &format!(
                    "as above with limits.sessions = {capacity} and 64 pool addresses (12.6M \
                     ports: the binding tables as large as the session table): {parts}"
                ),
            ));
        }
    }
    Ok(rows)
}

/// Kernel memory of the maps sized by limits.sessions, per session slot, and per map.
fn slot_memory(t: &Loaded, capacity: u32) -> Result<(f64, String)> {
    let mut total = 0.0;
    let mut parts = Vec::new();
    for name in [
        translator_common::maps::SESSIONS6,
        translator_common::maps::SESSIONS4,
        translator_common::maps::BINDINGS6,
        translator_common::maps::BINDINGS4,
        translator_common::maps::FILTERS,
    ] {
        let (bytes, max) = memlock(&t.pin(name))?;
        total += bytes;
        parts.push(format!(
            "{name} {:.0} ({max:.0} slots)",
            bytes / f64::from(capacity)
        ));
    }
    Ok((total / f64::from(capacity), parts.join(", ")))
}

/// CPU time of the calling thread (user and system: the map syscalls count).
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Controller work at one table size (issue 13, item 5): the CPU of one expiry pass over the
/// table (nothing expires: every session is fresh, the steady state), and a metrics scrape with
/// the pass's gauges against one that walks the tables.
fn controller_rows(t: &mut Loaded, n: u32, capacity: u32, runs: usize) -> Result<Vec<Row>> {
    let cfg = config(&t.inst.name, capacity, 0)?;
    let mut expiry = Vec::new();
    let mut left = None;
    for _ in 0..runs.min(3) {
        let cpu = thread_cpu();
        let pass = translator::sessions::expire(&mut t.maps, &cfg);
        expiry.push((thread_cpu() - cpu).as_secs_f64() * 1e3);
        let counted: u64 = pass.left.sessions.iter().map(|(_, _, c)| c).sum();
        if pass.sessions != 0 || counted != u64::from(n) {
            bail!(
                "the expiry pass over {n} fresh sessions removed {} and counted {counted}",
                pass.sessions
            );
        }
        left = Some(pass.left);
    }
    let gauges = translator::metrics::PassGauges::default();
    gauges.set(left.context("no expiry pass ran")?);
    let scrape = |pass: Option<&translator::metrics::PassGauges>| -> Result<f64> {
        let started = Instant::now();
        let snap = translator::metrics::collect(&t.inst.pins, &t.inst.run, &cfg, pass)?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        let counted: u64 = snap.sessions.iter().map(|(_, _, c)| c).sum();
        if counted != u64::from(n) {
            bail!("a scrape of {n} sessions reported {counted}");
        }
        Ok(took)
    };
    let fed: Vec<f64> = (0..runs.max(5))
        .map(|_| scrape(Some(&gauges)))
        .collect::<Result<_>>()?;
    let walked: Vec<f64> = (0..runs.min(3))
        .map(|_| scrape(None))
        .collect::<Result<_>>()?;
    // `translator sessions`: the streamed listing (batches), against reading the table entry
    // by entry (aya's iterator: a get_next_key and a lookup per entry), as it did before.
    let listing = |batched: bool| -> Result<f64> {
        let started = Instant::now();
        let rows = if batched {
            translator::sessions::stream(&t.maps, &cfg, translator::sessions::Filter::default())
                .count()
        } else {
            t.maps.sessions6.iter().filter_map(Result::ok).count()
        };
        let took = started.elapsed().as_secs_f64() * 1e3;
        if rows != n as usize {
            bail!("a listing of {n} sessions had {rows} rows");
        }
        Ok(took)
    };
    let streamed: Vec<f64> = (0..runs.min(3))
        .map(|_| listing(true))
        .collect::<Result<_>>()?;
    let one_by_one: Vec<f64> = (0..runs.min(3))
        .map(|_| listing(false))
        .collect::<Result<_>>()?;
    let size = human(n);
    let one_by_one = Row::new(
        "scale",
        &format!("session table read entry by entry, {size} sessions"),
        "ms",
        one_by_one,
        "aya's HashMap iterator over SESSIONS6 (a get_next_key and a lookup per entry), what \
         `translator sessions` did before it read in batches",
    );
    let streamed = Row::new(
        "scale",
        &format!("session listing (translator sessions), {size} sessions"),
        "ms",
        streamed,
        "translator::sessions::stream with no filter, every row made (not printed): batches of \
         4096 entries; ratio to the read entry by entry",
    )
    .ratio_to(&one_by_one);
    let walked = Row::new(
        "scale",
        &format!("metrics scrape walking the tables, {size} sessions"),
        "ms",
        walked,
        "translator::metrics::collect counting sessions by state, bindings and blocks itself \
         (what every scrape did before the gauges came from the expiry pass)",
    );
    let fed = Row::new(
        "scale",
        &format!("metrics scrape, {size} sessions"),
        "ms",
        fed,
        "translator::metrics::collect with the expiry pass's gauges: counters and \
         controller.json only; ratio to the scrape that walks",
    )
    .ratio_to(&walked);
    Ok(vec![
        Row::new(
            "scale",
            &format!("controller CPU for one expiry pass, {size} sessions"),
            "ms",
            expiry,
            "translator::sessions::expire, thread CPU (user + system) of one pass over a table \
             of fresh UDP sessions: a walk of SESSIONS6 (the data plane keeps both directions' \
             state and last use there), plus the binding, filter and block tables; it also \
             counts the gauges. The orphan sweep (sessions::sweep_orphans, every 30th pass) is \
             not in it",
        ),
        fed,
        walked,
        streamed,
        one_by_one,
    ])
}

/// Issue 13's prototypes against the kernel's hash map, at the scale sizes, all three with
/// entries of a `SESSIONS6` entry's size (a 28-byte key, a 16-byte value): the preallocated BPF
/// hash map the session tables are (`BENCH_HASH`), a window of slots in a plain BPF array
/// (`BENCH_TABLE`: 48-byte slots with a state word, twice as many as entries) and the bucket
/// table (`BENCH_BUCKETS`: 7 slots and a word of fingerprints per bucket, 85% of the slots;
/// translator-ebpf's `entry::bench`, translator_common::buckets). Each is filled with `n` keys,
/// then timed per run: lookups of 1000 keys spread over the fill order (round robin, as the
/// scale rows' busy flows), inserts of new keys, and a new flow's lookup miss and insert (each
/// run's new keys stay, so the table grows by both sets every run). Failed inserts and lookups
/// are counted by the programs and must stay 0. Then the controller's expiry passes over the
/// bucket table mapped into its memory (translator::bucket_table).
fn table_section(s: &Settings) -> Result<Vec<Row>> {
    /// One table: its name in the rows, its programs' prefix (`bench_{prefix}insert`,
    /// `lookup`, `create`), the maps its memory is in and their layout.
    struct Spec {
        what: &'static str,
        prefix: &'static str,
        maps: &'static [&'static str],
        layout: &'static str,
    }
    const SPECS: [Spec; 3] = [
        Spec {
            what: "BPF hash map",
            prefix: "",
            maps: &["BENCH_HASH"],
            layout: "28-byte keys, 16-byte values, preallocated",
        },
        Spec {
            what: "open addressing",
            prefix: "oa_",
            maps: &["BENCH_TABLE", "BENCH_LOCKS"],
            layout: "48-byte slots, two per entry, and a lock word per 64 slots",
        },
        Spec {
            what: "buckets",
            prefix: "bk_",
            maps: &["BENCH_BUCKETS"],
            layout: "buckets of 7 48-byte slots and a word of fingerprints, 85% full",
        },
    ];
    /// A table's programs.
    struct Table {
        what: &'static str,
        insert: ProgramFd,
        lookup: ProgramFd,
        create: ProgramFd,
    }
    // Keys: the client address's last word and the source port (`bench_key`).
    const BUSY: u32 = 1000;
    const HI_FILL: u32 = 0x0005_0000;
    let (v6if, _) = ifindexes()?;
    let mut rows = Vec::new();
    let mut first: Vec<Row> = Vec::new();
    for &n in &s.scales {
        // Room for the fill and two sets of timed inserts per run.
        let entries = n + (2 * s.new_flows * s.runs) as u32 + 1024;
        // The bucket table at 85% of its slots when it holds `entries`.
        let buckets = (u64::from(entries) * 100).div_ceil(7 * 85) as u32;
        let mut h = Harness::with_tables(entries, 2 * entries, buckets)?;
        let tables = SPECS
            .iter()
            .map(|t| {
                let mut load = |op: &str| h.h.program(&format!("bench_{}{op}", t.prefix));
                Ok(Table {
                    what: t.what,
                    insert: load("insert")?,
                    lookup: load("lookup")?,
                    create: load("create")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Fill: key (HI_FILL + i / per, 1 + i % per), so keys (HI_FILL + j, 1) for j < 1000 are
        // spread evenly over the fill.
        let per = n.div_ceil(BUSY);
        let frame = udp6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 5, 0), 1);
        let fill = Vary {
            lo_off: SPORT6,
            lo_base: 1,
            lo_mod: per,
            hi_off: SRC6_LOW,
            hi_base: HI_FILL,
            hi_len: 4,
        };
        for t in &tables {
            h.h.reset_seq()?;
            h.run(&t.insert, &frame, Some(fill), v6if, n, XDP_TX, t.what)?;
            let fails = h.h.take_fails()? + h.h.take_present()?;
            if fails != 0 {
                bail!("{}: {fails} of {n} fill inserts failed", t.what);
            }
        }
        // The busy keys: the low half of the address word is 0..1000, the port 1.
        let busy = Vary {
            lo_off: SRC6_LOW + 2,
            lo_base: 0,
            lo_mod: BUSY,
            hi_off: 0,
            hi_base: 0,
            hi_len: 2,
        };
        // New keys: an address word of their own per run and kind, 64 ports each (as the new
        // flows).
        let new = |run: usize, kind: u32| Vary {
            lo_off: SPORT6,
            lo_base: 1,
            lo_mod: 64,
            hi_off: SRC6_LOW,
            hi_base: 0x0100_0000 + ((run as u32) << 17) + (kind << 16),
            hi_len: 4,
        };
        let flows = s.new_flows as u32;
        // [table][lookup, insert, create]
        let mut samples = vec![vec![Vec::new(); 3]; tables.len()];
        for run in 0..s.runs {
            for (i, t) in tables.iter().enumerate() {
                let rep = s.repeat;
                samples[i][0].push(
                    h.net(&t.lookup, &frame, Some(busy), v6if, rep, XDP_TX, t.what)?
                        .0,
                );
                h.h.reset_seq()?;
                samples[i][1].push(
                    h.net(
                        &t.insert,
                        &frame,
                        Some(new(run, 0)),
                        v6if,
                        flows,
                        XDP_TX,
                        t.what,
                    )?
                    .0,
                );
                h.h.reset_seq()?;
                samples[i][2].push(
                    h.net(
                        &t.create,
                        &frame,
                        Some(new(run, 1)),
                        v6if,
                        flows,
                        XDP_TX,
                        t.what,
                    )?
                    .0,
                );
                let fails = h.h.take_fails()? + h.h.take_present()?;
                if fails != 0 {
                    bail!(
                        "{}, table of {n}: {fails} failed lookups or inserts",
                        t.what
                    );
                }
            }
        }
        // The bucket table's controller side: expiry passes over the table mapped into this
        // process (translator::bucket_table), one that keeps every entry and then passes that
        // each delete a tenth of the keys (by a hash of the key, another tenth each run).
        let view = h.h.bucket_table()?;
        let held = u64::from(n) + 2 * u64::from(flows) * s.runs as u64;
        let (mut keep_all, mut tenth, mut deleted) = (Vec::new(), Vec::new(), 0);
        for run in 0..s.runs {
            let t0 = thread_cpu();
            let pass = view.expire(|_, _| false);
            keep_all.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            if pass.live + deleted != held {
                bail!(
                    "buckets, table of {n}: a pass found {} entries, want {}",
                    pass.live,
                    held - deleted
                );
            }
            let t0 = thread_cpu();
            let pass = view.expire(|key, _| {
                let k = u64::from(key[3]) << 16 | u64::from(key[5] >> 16);
                (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 10 == run as u64 % 10
            });
            tenth.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            if pass.busy != 0 {
                bail!(
                    "buckets, table of {n}: {} entries busy in a pass with no inserts",
                    pass.busy
                );
            }
            deleted += pass.deleted;
        }
        drop(view);
        let size = human(n);
        let mut made: Vec<Vec<Row>> = Vec::new();
        let new_keys = format!(
            "{flows} new keys per run into the table filled with {n} and the earlier runs' new \
             keys; net of the harness"
        );
        for (i, t) in tables.iter().enumerate() {
            let memlock = SPECS[i]
                .maps
                .iter()
                .map(|m| h.h.map_memlock(m))
                .sum::<Result<u64>>()?;
            let [lookup, insert, create] =
                <[Vec<f64>; 3]>::try_from(std::mem::take(&mut samples[i]))
                    .map_err(|_| anyhow::anyhow!("three sample sets per table"))?;
            made.push(vec![
                Row::new(
                    "table",
                    &format!("{}: lookup (hit), {size} entries", t.what),
                    "ns/packet",
                    lookup,
                    &format!(
                        "{BUSY} keys spread over a table filled with {n} and the earlier runs' new \
                         keys (room for {entries}), round robin; repeat={} through the harness, \
                         net of it",
                        s.repeat
                    ),
                ),
                Row::new(
                    "table",
                    &format!("{}: insert (new key), {size} entries", t.what),
                    "ns/packet",
                    insert,
                    &new_keys,
                ),
                Row::new(
                    "table",
                    &format!(
                        "{}: lookup miss, then insert (a new flow's pattern), {size} entries",
                        t.what
                    ),
                    "ns/packet",
                    create,
                    &new_keys,
                ),
                Row::new(
                    "table",
                    &format!("{}: kernel memory per entry, room for {entries}", t.what),
                    "bytes/entry",
                    vec![memlock as f64 / f64::from(entries)],
                    &format!(
                        "memlock of the fdinfo of {} ({memlock} bytes): {}",
                        SPECS[i].maps.join(" and "),
                        SPECS[i].layout
                    ),
                ),
            ]);
        }
        // Lookups against the first size (flatness); the prototype's inserts and memory against
        // the hash map's.
        if first.is_empty() {
            first = made.iter().map(|r| r[0].clone()).collect();
        } else {
            for (r, f) in made.iter_mut().zip(&first) {
                r[0] = r[0].clone().ratio_to(f);
            }
        }
        let hash = made[0].clone();
        for proto in &mut made[1..] {
            for k in 1..4 {
                proto[k] = proto[k].clone().ratio_to(&hash[k]);
            }
        }
        rows.extend(made.into_iter().flatten());
        rows.push(Row::new(
            "table",
            &format!("buckets: controller CPU for one expiry pass in mapped memory, nothing expires, {size} entries"),
            "ms",
            keep_all,
            &format!(
                "thread CPU of a pass reading every bucket word and every live entry of the \
                 BPF_F_MMAPABLE table holding {held} entries (then fewer, see the next row)"
            ),
        ));
        rows.push(Row::new(
            "table",
            &format!("buckets: controller CPU for one expiry pass in mapped memory, a tenth expires, {size} entries"),
            "ms",
            tenth,
            &format!(
                "as above, and deleting a tenth of the entries each run (home-bucket lock, atomic \
                 clear of the fingerprint, overflow counts lowered): {deleted} deleted in {} runs",
                s.runs
            ),
        ));
    }
    Ok(rows)
}

fn human(n: u32) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// New sessions per second until the pool (one address, 1008 UDP blocks of 64 ports) is full:
/// one syscall per new flow from this one thread, 8 blocks (512 ports) per client.
fn new_sessions_per_second(s: &Settings) -> Result<Row> {
    let (v6if, _) = ifindexes()?;
    let clients = 130u16;
    let frames: Vec<Vec<u8>> = (0..clients)
        .flat_map(|c| {
            (0..512u16)
                .map(move |p| udp6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 2, 0, c, 0), 30000 + p))
        })
        .collect();
    let mut rates = Vec::new();
    let mut kernel = Vec::new();
    let mut created_n = 0;
    for run in 0..s.runs.min(5) {
        let mut t = Loaded::new(&format!("fill{run}"), 262_144)?;
        let fd = t.fd()?;
        let mut created = 0u64;
        let mut kernel_ns = 0u64;
        let mut refused = 0;
        let started = Instant::now();
        for f in &frames {
            let out = testrun::run(fd, f, v6if, 1).context("BPF_PROG_TEST_RUN")?;
            if out.action == XDP_REDIRECT {
                created += 1;
                kernel_ns += u64::from(out.ns_per_run);
            } else {
                refused += 1;
                if refused >= 64 {
                    break;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if refused == 0 {
            bail!("the pool never filled up ({created} sessions)");
        }
        created_n = created;
        rates.push(created as f64 / secs);
        kernel.push(kernel_ns as f64 / created as f64);
    }
    let (k, _, _) = common::stats(&kernel);
    Ok(Row::new(
        "scale",
        "new sessions per second until the pool is full",
        "sessions/s",
        rates,
        &format!(
            "{created_n} sessions (pool 192.0.2.1, UDP 1024-65535) created by one thread, one \
             BPF_PROG_TEST_RUN syscall each, wall clock; in-kernel cost {:.0} ns per session \
             (raw), i.e. {:.0} sessions/s of program time",
            k.unwrap_or(0.0),
            1e9 / k.unwrap_or(1.0)
        ),
    ))
}
