//! Data-plane cost with `BPF_PROG_TEST_RUN` (issue 6, parts 1 and 2).
//!
//! Method. `BPF_PROG_TEST_RUN` with a repeat count runs the program again and again on the
//! *same* buffer without restoring it: after the first run the buffer holds the translated
//! packet (and `xdp_adjust_head` has moved its start), so repetition two onwards measures
//! something else (the bench checks and reports this). Translating packets are therefore run
//! with `repeat = 1`, one syscall per packet, and the kernel's own per-run time is taken (the
//! syscall and the copy are outside its timer). That time carries a fixed overhead (two clock
//! reads, the dispatcher, `local_bh_disable`), measured with an empty XDP program the same way
//! in the same run and subtracted: the figures are net program cost. Programs that leave the
//! packet as it was (the empty program, the `XDP_TX` floor, the pass-through packet) are also
//! measured with a large repeat count, which needs no correction: where both exist they should
//! agree, which checks the method.
//!
//! Each figure is the median of several runs (each run: the median of many packets), with min
//! and max. New flows: every packet of a run is a new flow (a new client port; 64 ports per
//! client, so each block allocation is amortized over 64 flows as in real use), and the run's
//! figure is the mean, so the occasional block allocation is counted.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd as _, BorrowedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use common::{Row, empty_xdp_program, median_u32, quick, write_rows};
use translator::{
    config::Config,
    dataplane::{self, Instance, Maps},
    testrun,
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

fn config(instance: &str, sessions: u32) -> Result<Config> {
    Config::parse(&format!(
        r#"
instance = "{instance}"
[interfaces]
ipv6 = "v6a"
ipv4 = "v4a"
[nat64]
prefix = "2001:db8:64::/96"
clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1"]
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
        let name = format!("bench-{tag}-{}", std::process::id());
        let cfg = config(&name, sessions)?;
        let inst = Instance::new(&name);
        let _ = dataplane::down(&inst);
        let ebpf = dataplane::load(&cfg, Some(&inst.pins)).inspect_err(|_| {
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
        loaded.maps.fill_pool(&cfg)?;
        loaded.maps.sync_policy(&cfg)?;
        Ok(loaded)
    }

    fn fd(&mut self) -> Result<BorrowedFd<'_>> {
        let ebpf = self.ebpf.as_mut().context("program already unloaded")?;
        let prog = dataplane::program(ebpf)?;
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

/// The kernel's per-repetition time with a large repeat count.
fn repeated(fd: BorrowedFd<'_>, frame: &[u8], ifindex: u32, repeat: u32, want: u32) -> Result<f64> {
    let out = testrun::run(fd, frame, ifindex, repeat).context("BPF_PROG_TEST_RUN")?;
    if out.action != want {
        bail!("repeat run: action {} (expected {want})", out.action);
    }
    Ok(f64::from(out.ns_per_run))
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
            new_flows: 1024,
            repeat: 100_000,
            scales: vec![1_000, 100_000],
        }
    } else {
        Settings {
            runs: 7,
            calls: 20_000,
            new_flows: 4096,
            repeat: 1_000_000,
            scales: vec![1_000, 100_000, 1_000_000],
        }
    };
    let ns = fixture_net()?;
    let rows = ns.in_ns(|| -> Result<Vec<Row>> {
        translator::netns::ensure_bpffs()?;
        let mut rows = testrun_section(&s)?;
        if std::env::var_os("TRANSLATOR_BENCH_SPIN").is_some() {
            return Ok(rows);
        }
        rows.extend(scale_section(&s)?);
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

/// Part 1: established flows, new flows, pass-through, floor.
fn testrun_section(s: &Settings) -> Result<Vec<Row>> {
    let (v6if, v4if) = ifindexes()?;
    let mut t = Loaded::new("tr", 262_144)?;
    let empty = empty_xdp_program()?;
    let memset52 = common::byte_loop_memset_program(52)?;
    let mut base = dataplane::load_unpinned()
        .map_err(|e| anyhow::anyhow!("loading the eBPF object for the baselines: {e}"))?;
    let floor: &mut aya::programs::Xdp = base
        .program_mut("baseline_tx")
        .context("the eBPF object has no baseline_tx")?
        .try_into()
        .map_err(|e| anyhow::anyhow!("baseline_tx: {e}"))?;
    floor
        .load()
        .map_err(|e| anyhow::anyhow!("the kernel refused baseline_tx: {e}"))?;
    let floor_fd = floor.fd()?.as_fd().try_clone_to_owned()?;
    let floor_fd = floor_fd.as_fd();
    let fwd: &mut aya::programs::Xdp = base
        .program_mut("baseline_forward")
        .context("the eBPF object has no baseline_forward")?
        .try_into()
        .map_err(|e| anyhow::anyhow!("baseline_forward: {e}"))?;
    fwd.load()
        .map_err(|e| anyhow::anyhow!("the kernel refused baseline_forward: {e}"))?;
    let fwd_fd = fwd.fd()?.as_fd();
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

    // Does a repeat count restore the packet between repetitions? (It did not when this was
    // written: that is why translating packets are measured with repeat = 1.)
    let once = testrun::run(fd, &u6, v6if, 1)?;
    let twice = testrun::run(fd, &u6, v6if, 2)?;
    let restores = once.packet == twice.packet && once.action == twice.action;
    let method = if restores {
        "repeat=1 per packet (the kernel restores the packet between repetitions)"
    } else {
        "repeat=1 per packet (a repeat count re-runs the program on its own output)"
    };

    let established: Vec<(&str, Vec<u8>, u32)> = vec![
        ("established UDP 6->4", u6.clone(), v6if),
        ("established UDP 4->6", udp4(udp_pool, 9), v4if),
        ("established TCP 6->4", tcp6(40001, ACK), v6if),
        ("established TCP 4->6", tcp4(tcp_pool, ACK), v4if),
        ("established ICMP echo 6->4", e6.clone(), v6if),
        ("established ICMP echo 4->6", echo4_reply(icmp_id), v4if),
    ];
    let pass = udp6_to(GATEWAY6, 40003, 22);

    // Profiling aid: `TRANSLATOR_BENCH_SPIN=<case>:<seconds>` runs one case in a loop (for
    // `perf record -e cpu-clock -a -g` from another shell) and measures nothing else. Cases:
    // udp64, udp46, fwd4, fwd6, floor, empty.
    if let Ok(spin) = std::env::var("TRANSLATOR_BENCH_SPIN") {
        let (case, secs) = spin.split_once(':').unwrap_or((spin.as_str(), "10"));
        let secs: u64 = secs.parse().context("TRANSLATOR_BENCH_SPIN seconds")?;
        let (prog, frame, ifindex) = match case {
            "udp64" => (fd, &established[0].1, v6if),
            "udp46" => (fd, &established[1].1, v4if),
            "fwd4" => (fwd_fd, &fwd4, v6if),
            "fwd6" => (fwd_fd, &fwd6, v4if),
            "floor" => (floor_fd, &u6, v6if),
            "empty" => (empty.as_fd(), &u6, v6if),
            other => bail!("TRANSLATOR_BENCH_SPIN: unknown case {other:?}"),
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(secs);
        let mut n = 0u64;
        let mut total = 0u64;
        while Instant::now() < deadline {
            for _ in 0..1000 {
                total += u64::from(run1(prog, frame, ifindex, case)?.ns_per_run);
            }
            n += 1000;
        }
        println!("spin {case}: {n} runs, mean {} ns (raw)", total / n.max(1));
        return Ok(Vec::new());
    }

    let mut empty_s = Vec::new();
    let mut floor_s = Vec::new();
    let mut pass_s = Vec::new();
    let mut est_s: Vec<Vec<f64>> = vec![Vec::new(); established.len()];
    let (mut fwd6_s, mut fwd4_s) = (Vec::new(), Vec::new());
    let mut new_s = Vec::new();
    let mut new_median_s = Vec::new();
    let mut eim_s = Vec::new();
    let mut memset_s = Vec::new();
    let (mut empty_rep, mut floor_rep, mut pass_rep) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..s.runs {
        let e = median_u32(&mut per_call(
            empty.as_fd(),
            std::slice::from_ref(&u6),
            v6if,
            s.calls,
            XDP_PASS,
            "empty program",
        )?);
        empty_s.push(e);
        memset_s.push(
            median_u32(&mut per_call(
                memset52.as_fd(),
                std::slice::from_ref(&u6),
                v6if,
                s.calls,
                XDP_PASS,
                "memset program",
            )?) - e,
        );
        floor_s.push(
            median_u32(&mut per_call(
                floor_fd,
                std::slice::from_ref(&u6),
                v6if,
                s.calls,
                XDP_TX,
                "baseline_tx",
            )?) - e,
        );
        pass_s.push(
            median_u32(&mut per_call(
                fd,
                std::slice::from_ref(&pass),
                v6if,
                s.calls,
                XDP_PASS,
                "pass-through",
            )?) - e,
        );
        fwd6_s.push(
            median_u32(&mut per_call(
                fwd_fd,
                std::slice::from_ref(&fwd6),
                v4if,
                s.calls,
                XDP_REDIRECT,
                "baseline_forward IPv6",
            )?) - e,
        );
        fwd4_s.push(
            median_u32(&mut per_call(
                fwd_fd,
                std::slice::from_ref(&fwd4),
                v6if,
                s.calls,
                XDP_REDIRECT,
                "baseline_forward IPv4",
            )?) - e,
        );
        for (i, (what, frame, ifindex)) in established.iter().enumerate() {
            let m = median_u32(&mut per_call(
                fd,
                std::slice::from_ref(frame),
                *ifindex,
                s.calls,
                XDP_REDIRECT,
                what,
            )?);
            est_s[i].push(m - e);
        }
        // New flows: fresh clients 2001:db8:1::1:<run>:<n>, 64 ports each.
        let frames: Vec<Vec<u8>> = (0..s.new_flows)
            .map(|i| {
                let client = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 1, run as u16, (i / 64) as u16, 0);
                udp6(client, 20000 + (i % 64) as u16)
            })
            .collect();
        let mut times = Vec::with_capacity(frames.len());
        for f in &frames {
            let out = run1(fd, f, v6if, "new flow")?;
            if out.action != XDP_REDIRECT {
                bail!("new flow: action {} (expected XDP_REDIRECT)", out.action);
            }
            times.push(out.ns_per_run);
        }
        let mean = times.iter().map(|&x| f64::from(x)).sum::<f64>() / times.len() as f64;
        new_s.push(mean - e);
        new_median_s.push(median_u32(&mut times) - e);
        // New sessions on an existing binding (endpoint-independent mapping): one client port,
        // a new destination port each time. The first packet makes the binding (not timed).
        let client = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 3, run as u16, 0, 0);
        run1(fd, &udp6_to_from(client, 50000, 1), v6if, "EIM binding")?;
        let frames: Vec<Vec<u8>> = (0..s.new_flows)
            .map(|i| udp6_to_from(client, 50000, 2 + i as u16))
            .collect();
        let mut sum = 0.0;
        for f in &frames {
            let out = run1(fd, f, v6if, "new session on a binding")?;
            if out.action != XDP_REDIRECT {
                bail!(
                    "new session on a binding: action {} (expected XDP_REDIRECT)",
                    out.action
                );
            }
            sum += f64::from(out.ns_per_run);
        }
        eim_s.push(sum / frames.len() as f64 - e);
        empty_rep.push(repeated(empty.as_fd(), &u6, v6if, s.repeat, XDP_PASS)?);
        floor_rep.push(repeated(floor_fd, &u6, v6if, s.repeat, XDP_TX)?);
        pass_rep.push(repeated(fd, &pass, v6if, s.repeat, XDP_PASS)?);
    }
    let overhead = common::stats(&empty_s).0.unwrap_or(0.0);
    let net = format!("{method}; net of the {overhead:.0} ns test-run overhead");
    let floor_row = Row::new(
        "testrun",
        "floor: baseline_tx (swap MACs, XDP_TX)",
        "ns/packet",
        floor_s,
        &net,
    );
    let mut rows = vec![
        Row::new(
            "testrun",
            "empty program (test-run overhead, subtracted)",
            "ns/packet",
            empty_s,
            "r0 = XDP_PASS; exit, repeat=1 per packet, raw kernel time",
        ),
        floor_row,
    ];
    // Ratios: to the bare forwarder doing the same route lookup (the IPv4 one for packets that
    // leave as IPv4). The floor's net cost is a few ns, too close to zero for a ratio.
    let fwd6_row = Row::new(
        "testrun",
        "bare XDP forwarder IPv6 (baseline_forward)",
        "ns/packet",
        fwd6_s,
        &net,
    );
    let fwd4_row = Row::new(
        "testrun",
        "bare XDP forwarder IPv4 (baseline_forward)",
        "ns/packet",
        fwd4_s,
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
    let mut med = new_median_s.clone();
    med.sort_by(f64::total_cmp);
    rows.push(
        Row::new(
            "testrun",
            "new flow (binding + session creation) 6->4 UDP",
            "ns/packet",
            new_s,
            &format!(
                "mean over {} new flows per run, 64 per client (block allocation amortized); \
                 per-run medians {:.0}..{:.0} ns; {net}",
                s.new_flows,
                med.first().copied().unwrap_or(0.0),
                med.last().copied().unwrap_or(0.0)
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
                "mean over {} new destination ports from one client port (EIM: the binding \
                 exists, only the session is created); {net}",
                s.new_flows
            ),
        )
        .ratio_to(&fwd4_row),
    );
    rows.push(Row::new(
        "testrun",
        "profile: 52-byte byte-loop memset",
        "ns/packet",
        memset_s,
        &format!(
            "what the translator spends zeroing its bpf_fib_lookup struct on every translated \
             packet (core::mem::zeroed compiles to a call of a BPF memset subprogram that stores \
             one byte per iteration: 52 x 5 instructions); {net}"
        ),
    ));
    rows.push(Row::new(
        "testrun",
        "pass-through (IPv6 not for the prefix)",
        "ns/packet",
        pass_s,
        &net,
    ));
    let rep = format!(
        "repeat={} (valid: the program leaves the packet as it was)",
        s.repeat
    );
    let floor_rep_row = Row::new(
        "testrun",
        "check: floor baseline_tx, large repeat",
        "ns/packet",
        floor_rep,
        &rep,
    );
    rows.push(Row::new(
        "testrun",
        "check: empty program, large repeat",
        "ns/packet",
        empty_rep,
        &rep,
    ));
    rows.push(floor_rep_row.clone());
    rows.push(
        Row::new(
            "testrun",
            "check: pass-through, large repeat",
            "ns/packet",
            pass_rep,
            &rep,
        )
        .ratio_to(&floor_rep_row),
    );
    let info = dataplane::program(t.ebpf.as_mut().context("unloaded")?)?.info()?;
    rows.push(Row::new(
        "testrun",
        "translator program size (xlated insns)",
        "instructions",
        vec![f64::from(info.size_translated().unwrap_or(0) / 8)],
        &format!(
            "{} bytes JITed, {} instructions verified",
            info.size_jitted(),
            info.verified_instruction_count().unwrap_or(0)
        ),
    ));
    Ok(rows)
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
    for i in 0..n {
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
            _pad: 0,
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
            _pad: [0; 5],
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

/// A small deterministic generator for sampling flows (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Part 2: established flows against tables of 1k, 100k and 1M sessions; memory per session.
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
        let empty = empty_xdp_program()?;
        // 4096 flows sampled from the whole table, one packet each in turn: a lookup that
        // misses the CPU caches as often as real traffic over a big table would.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let picks: Vec<u32> = (0..4096)
            .map(|_| (rng.next() % u64::from(n)) as u32)
            .collect();
        let f6: Vec<Vec<u8>> = picks
            .iter()
            .map(|&i| {
                let (c, r) = session(i);
                udp6_to(SERVER6, c, r)
            })
            .collect();
        let f4: Vec<Vec<u8>> = picks
            .iter()
            .map(|&i| {
                let (c, r) = session(i);
                udp4(c, r)
            })
            .collect();
        let fd = t.fd()?;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..s.runs {
            let e = median_u32(&mut per_call(
                empty.as_fd(),
                &f6[..1],
                v6if,
                s.calls,
                XDP_PASS,
                "empty program",
            )?);
            a.push(
                median_u32(&mut per_call(
                    fd,
                    &f6,
                    v6if,
                    s.calls,
                    XDP_REDIRECT,
                    "scale 6->4",
                )?) - e,
            );
            b.push(
                median_u32(&mut per_call(
                    fd,
                    &f4,
                    v4if,
                    s.calls,
                    XDP_REDIRECT,
                    "scale 4->6",
                )?) - e,
            );
        }
        let note = format!(
            "{n} sessions in the table (filled in {fill_secs:.1} s), 4096 random flows round \
             robin; repeat=1, net of the empty-program overhead"
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
        let mut total = 0.0;
        let mut parts = Vec::new();
        let mut entries = 0.0;
        for name in [
            translator_common::maps::SESSIONS6,
            translator_common::maps::SESSIONS4,
            translator_common::maps::BINDINGS6,
            translator_common::maps::BINDINGS4,
            translator_common::maps::FILTERS,
        ] {
            let (bytes, max) = memlock(&t.pin(name))?;
            total += bytes;
            entries = max;
            parts.push(format!("{name} {:.0}", bytes / max));
        }
        memory.push((n, capacity, total / entries, parts.join(", ")));
    }
    if let Some((n, capacity, per, parts)) = memory.last() {
        rows.push(Row::new(
            "scale",
            "kernel memory per session slot",
            "bytes/session",
            vec![*per],
            &format!(
                "bpftool bytes_memlock of the 5 maps sized by limits.sessions ({capacity}, table \
                 of {n}), preallocated, divided by max_entries: {parts}; other tables: {}",
                memory
                    .iter()
                    .map(|(n, _, p, _)| format!("{} {p:.0}", human(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
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
