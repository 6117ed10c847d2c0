//! Live traffic through network namespaces (issue 6, part 3).
//!
//! One topology per setup, made fresh and removed after it: client `bc0` (2001:db8:1::2) -
//! gateway `bnch6` / `bnch4` - server `bs0` (192.0.2.2 and 2001:db8:2::2), veth pairs with fixed
//! MACs and permanent neighbours. The generator is our own: an `AF_PACKET` socket in the client
//! namespace with `PACKET_QDISC_BYPASS` and `sendmmsg` of prebuilt 64-byte frames (Ethernet +
//! IPv6 + UDP + 2 bytes, 64 source ports), pinned to CPU 0, sending as fast as it can. The
//! gateway's work runs on CPU 1: its IPv6-side veth has threaded NAPI with the kthread pinned
//! there (and TAYGA, a user process, is pinned there too), so every setup gets one core, as a
//! gateway box would. Delivered packets are counted at the server by an nftables rule in
//! prerouting that counts and drops UDP port 9 (no ICMP answers travel back).
//!
//! Setups: our translator (XDP on both gateway interfaces, native mode), and the same translator
//! in tc mode (its TC program on both interfaces' ingress, through TCX); the bare XDP forwarder
//! `baseline_forward` (plain IPv6 forwarding to 2001:db8:2::2, the floor); plain kernel IPv6
//! forwarding (no XDP); TAYGA (tun device, prefix 2001:db8:64::/96, dynamic pool 192.168.255.0/24
//! with nftables masquerade to 192.0.2.1: the classic stateful NAT64). Each run: 1 s warm-up,
//! then 5 s counted. Then one iperf3 TCP stream (5 s) through the translator, kernel forwarding
//! and TAYGA.

mod common;

use std::net::Ipv6Addr;
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use common::{Row, quick, write_rows};
use translator::{
    config::Config,
    dataplane::{self, Instance, Maps},
};
use translator_tests::{NetNs, Proc, TempDir, packets::*, require_root};

const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x02];
const MAC_G6: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
const MAC_G4: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x03];
const MAC_S: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x04];
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// 192.0.2.2 under 2001:db8:64::/96.
const SERVER_NAT64: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc000, 0x202);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
const GW6: &str = "bnch6";
const GW4: &str = "bnch4";
const CLI: &str = "bc0";
const SRV: &str = "bs0";
const FLOWS: u16 = 64;

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// How the generator's frames reach the gateway's IPv6 side.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ingress {
    /// A veth pair from the client namespace; the generator is an `AF_PACKET` socket there.
    Veth,
    /// A TAP device in the gateway namespace that the generator writes frames into: tun runs
    /// XDP natively on the written frame before any skb exists, as a NIC driver does, so no
    /// setup pays veth's copy of skbs into XDP buffers. The gateway's work runs inline in the
    /// generator's `write()`.
    Tap,
}

/// The three namespaces of one setup (the client one is unused with TAP ingress).
struct Net {
    client: NetNs,
    gateway: NetNs,
    server: NetNs,
    ingress: Ingress,
}

impl Net {
    fn new(ingress: Ingress) -> Result<Self> {
        let net = Self {
            client: NetNs::new("bcli")?,
            gateway: NetNs::new("bgw")?,
            server: NetNs::new("bsrv")?,
            ingress,
        };
        net.wire().context("building the bench topology")?;
        Ok(net)
    }

    fn wire(&self) -> Result<()> {
        let (c, g, s) = (&self.client, &self.gateway, &self.server);
        let tap = self.ingress == Ingress::Tap;
        if tap {
            // The gateway's IPv6 side is a TAP device with the name and MAC of the veth it
            // replaces, so every setup configures it the same way.
            g.ip(&["tuntap", "add", "dev", GW6, "mode", "tap"])?;
            g.ip(&["link", "set", GW6, "address", &mac(MAC_G6)])?;
            g.ip(&["link", "set", GW6, "up"])?;
        }
        let pairs = [(GW6, MAC_G6, CLI, MAC_C, c), (GW4, MAC_G4, SRV, MAC_S, s)];
        for (dev, dmac, peer, pmac, ns) in pairs.into_iter().skip(usize::from(tap)) {
            g.ip(&[
                "link",
                "add",
                dev,
                "address",
                &mac(dmac),
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "address",
                &mac(pmac),
                "netns",
                ns.name(),
            ])?;
            g.ip(&["link", "set", dev, "up"])?;
        }
        g.sysctl("net.ipv4.ip_forward", "1")?;
        g.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        g.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        g.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
        g.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        g.ip(&["addr", "add", "2001:db8:1::1/64", "dev", GW6, "nodad"])?;
        g.ip(&["addr", "add", "192.0.2.1/24", "dev", GW4])?;
        g.ip(&["addr", "add", "2001:db8:2::1/64", "dev", GW4, "nodad"])?;
        for (addr, m, dev) in [
            ("2001:db8:1::2", MAC_C, GW6),
            ("192.0.2.2", MAC_S, GW4),
            ("2001:db8:2::2", MAC_S, GW4),
        ] {
            g.ip(&[
                "neigh",
                "replace",
                addr,
                "lladdr",
                &mac(m),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        if !tap {
            self.wire_client()?;
        }
        s.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        s.ip(&["addr", "add", "192.0.2.2/24", "dev", SRV])?;
        s.ip(&["addr", "add", "2001:db8:2::2/64", "dev", SRV, "nodad"])?;
        s.ip(&["link", "set", SRV, "up"])?;
        s.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", SRV])?;
        s.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:2::1",
            "dev",
            SRV,
        ])?;
        for addr in ["192.0.2.1", "2001:db8:2::1"] {
            s.ip(&[
                "neigh",
                "replace",
                addr,
                "lladdr",
                &mac(MAC_G4),
                "dev",
                SRV,
                "nud",
                "permanent",
            ])?;
        }
        // End hosts: full checksums and no GSO on what they send (XDP cannot finish partial
        // checksums), GRO so that redirected frames are received (veth needs NAPI for them).
        let hosts = [(s, SRV), (c, CLI)];
        for (ns, dev) in hosts.into_iter().take(if tap { 1 } else { 2 }) {
            ns.run(&[
                "ethtool", "-K", dev, "tx", "off", "gso", "off", "tso", "off", "gro", "on",
            ])?;
        }
        // Gateway: NAPI (GRO) on the veths for every setup, the IPv6 side's NAPI in a kthread.
        g.run(&["ethtool", "-K", GW4, "gro", "on"])?;
        if !tap {
            g.run(&["ethtool", "-K", GW6, "gro", "on"])?;
            g.run(&[
                "sh",
                "-c",
                &format!("echo 1 > /sys/class/net/{GW6}/threaded"),
            ])?;
        }
        // Count and drop the generator's packets at the server.
        s.run(&[
            "nft",
            "add table inet bench; add counter inet bench rx; \
             add chain inet bench pre { type filter hook prerouting priority -300; }; \
             add rule inet bench pre udp dport 9 counter name rx drop",
        ])?;
        Ok(())
    }

    /// The client namespace's side of the IPv6 veth.
    fn wire_client(&self) -> Result<()> {
        let c = &self.client;
        c.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        c.ip(&["addr", "add", "2001:db8:1::2/64", "dev", CLI, "nodad"])?;
        c.ip(&["link", "set", CLI, "up"])?;
        c.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::1",
            "dev",
            CLI,
        ])?;
        c.ip(&[
            "neigh",
            "replace",
            "2001:db8:1::1",
            "lladdr",
            &mac(MAC_G6),
            "dev",
            CLI,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// Packets counted at the server so far.
    fn delivered(&self) -> Result<u64> {
        let out = self
            .server
            .run(&["nft", "-j", "list", "counter", "inet", "bench", "rx"])?;
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout_str()).context("nft JSON output")?;
        v.get("nftables")
            .and_then(|a| a.as_array())
            .and_then(|a| {
                a.iter()
                    .find_map(|o| o.get("counter")?.get("packets")?.as_u64())
            })
            .ok_or_else(|| anyhow!("no packet count in nft output: {}", out.stdout_str()))
    }

    /// Pins the gateway's NAPI kthread(s) to CPU 1; returns their pids.
    fn pin_napi(&self) -> Result<Vec<u32>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").context("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim().starts_with(&format!("napi/{GW6}-")) && self.in_gateway(pid) {
                common::output("taskset", &["-pc", "1", &pid.to_string()])?;
                found.push(pid);
            }
        }
        if found.is_empty() {
            bail!("no threaded NAPI kthread for {GW6}");
        }
        Ok(found)
    }

    fn in_gateway(&self, _pid: u32) -> bool {
        // kthreads live in the initial namespace; the name is specific enough (only this bench
        // uses it, one setup at a time).
        true
    }
}

// ------------------------------------------------------------------------------- generator

const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// The 64-byte frames: IPv6 UDP from the client, `FLOWS` source ports, to `dst` port 9.
fn frames(dst: Ipv6Addr) -> Vec<Vec<u8>> {
    (0..FLOWS)
        .map(|i| {
            let seg = udp(CLIENT.into(), dst.into(), 10000 + i, 9, b"xy");
            eth(MAC_G6, MAC_C, 0x86dd, &ipv6(CLIENT, dst, 17, 64, 0, &seg))
        })
        .collect()
}

/// An AF_PACKET socket bound to `dev` (in the calling thread's namespace), bypassing the qdisc.
fn packet_socket(dev: &str) -> Result<OwnedFd> {
    let ifindex = translator::netns::ifindex(dev).with_context(|| format!("no interface {dev}"))?;
    // SAFETY: plain socket(2); protocol 0: the socket only sends.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    // SAFETY: a new descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: valid option pointer and length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("PACKET_QDISC_BYPASS");
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid address and length.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("binding the AF_PACKET socket");
    }
    Ok(sock)
}

fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Sends `frames` round robin with sendmmsg until `stop`; returns the frames handed over.
fn send_loop(sock: &OwnedFd, frames: &[Vec<u8>], stop: &AtomicBool, sent: &AtomicU64) {
    const BATCH: usize = 64;
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|i| {
            let f = &frames[i % frames.len()];
            libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            }
        })
        .collect();
    // SAFETY: zeroed mmsghdr is valid; each points at one iovec of `iovs`.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
        .collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: msgs and the iovecs and frames they point at outlive the call.
        let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// The generator: `packet` (AF_PACKET + sendmmsg, the default) or `xdp` (BPF_PROG_TEST_RUN
/// live frames, `TRANSLATOR_BENCH_GENERATOR=xdp`; on this kernel most of its frames are lost
/// before the gateway's NAPI takes them, so it is not the default).
fn generator_kind() -> &'static str {
    if std::env::var("TRANSLATOR_BENCH_GENERATOR").is_ok_and(|v| v == "xdp") {
        "xdp"
    } else {
        "packet"
    }
}

fn xdp_send_loop(frames: &[Vec<u8>], stop: &AtomicBool, sent: &AtomicU64) -> Result<()> {
    let repeat: u32 = std::env::var("TRANSLATOR_BENCH_XDP_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8192);
    let prog = common::xdp_program_returning(3)?;
    let ifindex = translator::netns::ifindex(CLI).with_context(|| format!("no {CLI}"))?;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        // XDP_TX from the program: the kernel turns it into a redirect to that interface, so
        // the frames leave through the veth's ndo_xdp_xmit without an skb.
        translator::testrun::run_live(prog.as_fd(), &frames[i % frames.len()], ifindex, repeat)
            .context("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES")?;
        sent.fetch_add(u64::from(repeat), Ordering::Relaxed);
        i += 1;
    }
    Ok(())
}

/// Opens the TAP device `dev` (in the calling thread's namespace) for writing frames into it,
/// non-blocking: tun runs XDP natively only for non-blocking writers.
fn tap_open(dev: &str) -> Result<OwnedFd> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    // SAFETY: plain open(2) of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening /dev/net/tun");
    }
    // SAFETY: a new descriptor nothing else owns.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed ifreq is valid; the name fits (checked) and stays NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if dev.len() >= req.ifr_name.len() {
        bail!("interface name {dev} too long");
    }
    for (d, b) in req.ifr_name.iter_mut().zip(dev.bytes()) {
        *d = b as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
    // SAFETY: TUNSETIFF takes a pointer to an ifreq that outlives the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req as *mut libc::ifreq) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("attaching to the TAP device {dev} (TUNSETIFF)"));
    }
    Ok(tun)
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    // SAFETY: zeroed timespec filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes `frames` round robin into the TAP device until `stop`, one `write()` each; publishes
/// the frames written and the thread's CPU time (which includes the gateway's work, done
/// inline).
fn tap_send_loop(
    tap: &OwnedFd,
    frames: &[Vec<u8>],
    stop: &AtomicBool,
    sent: &AtomicU64,
    cpu: &AtomicU64,
) {
    let mut n = 0u64;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            let f = &frames[i % frames.len()];
            i = i.wrapping_add(1);
            // SAFETY: the frame outlives the call.
            let rc = unsafe { libc::write(tap.as_raw_fd(), f.as_ptr().cast(), f.len()) };
            if rc > 0 {
                n += 1;
            }
        }
        sent.store(n, Ordering::Relaxed);
        cpu.store(thread_cpu_ns(), Ordering::Relaxed);
    }
}

/// One measured run: packets per second delivered at the server, sent by the generator, and
/// the gateway's CPU time per delivered packet (ns).
fn measure(
    net: &Net,
    pids: &[u32],
    frames: &[Vec<u8>],
    warm: Duration,
    secs: f64,
) -> Result<(f64, f64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let writer_cpu = Arc::new(AtomicU64::new(0));
    let frames = frames.to_vec();
    let (stop2, sent2, cpu2) = (stop.clone(), sent.clone(), writer_cpu.clone());
    let sender = if net.ingress == Ingress::Tap {
        net.gateway.spawn_thread(move || -> Result<()> {
            pin_current_thread(0);
            let tap = tap_open(GW6)?;
            tap_send_loop(&tap, &frames, &stop2, &sent2, &cpu2);
            Ok(())
        })?
    } else {
        net.client.spawn_thread(move || -> Result<()> {
            pin_current_thread(0);
            if generator_kind() == "xdp" {
                return xdp_send_loop(&frames, &stop2, &sent2);
            }
            let sock = packet_socket(CLI)?;
            send_loop(&sock, &frames, &stop2, &sent2);
            Ok(())
        })?
    };
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let guard = Stop(stop);
    std::thread::sleep(warm);
    let (d0, s0, t0) = (
        net.delivered()?,
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    let c0 = cpu_total(pids) + writer_cpu.load(Ordering::Relaxed) as f64 / 1e9;
    std::thread::sleep(Duration::from_secs_f64(secs));
    let c1 = cpu_total(pids) + writer_cpu.load(Ordering::Relaxed) as f64 / 1e9;
    let (d1, s1, t1) = (
        net.delivered()?,
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    drop(guard);
    sender
        .join()
        .map_err(|_| anyhow!("the generator thread panicked"))???;
    let dt = (t1 - t0).as_secs_f64();
    let delivered = (d1 - d0) as f64;
    let cpu_ns = if delivered > 0.0 {
        (c1 - c0) * 1e9 / delivered
    } else {
        0.0
    };
    Ok((delivered / dt, (s1 - s0) as f64 / dt, cpu_ns))
}

// ------------------------------------------------------------------------------- setups

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Translator,
    TranslatorTc,
    Forwarder,
    Kernel,
    Tayga,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Translator => "our gateway (XDP NAT64)",
            Setup::TranslatorTc => "our gateway in tc mode (TC NAT64)",
            Setup::Forwarder => "bare XDP forwarder (IPv6, floor)",
            Setup::Kernel => "kernel IPv6 forwarding",
            Setup::Tayga => "TAYGA + nftables masquerade",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Setup::Translator => "translator",
            Setup::TranslatorTc => "tc",
            Setup::Forwarder => "forwarder",
            Setup::Kernel => "kernel",
            Setup::Tayga => "tayga",
        }
    }

    fn destination(self) -> Ipv6Addr {
        match self {
            Setup::Translator | Setup::TranslatorTc | Setup::Tayga => SERVER_NAT64,
            Setup::Forwarder | Setup::Kernel => SERVER6,
        }
    }
}

/// What keeps a setup running; dropping it stops it (the namespaces go with `Net`).
#[derive(Default)]
struct Running {
    _ebpf: Option<aya::Ebpf>,
    _instance: Option<PinsGuard>,
    _tayga: Option<Proc>,
    _dir: Option<TempDir>,
    /// Where the gateway's work runs: the NAPI kthread(s), and TAYGA.
    pids: Vec<u32>,
}

/// CPU time (user + system) of a process or thread, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

fn cpu_total(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_secs(p)).sum()
}

struct PinsGuard(Instance);
impl Drop for PinsGuard {
    fn drop(&mut self) {
        let _ = dataplane::down(&self.0);
    }
}

fn start(net: &Net, setup: Setup) -> Result<Running> {
    let g = &net.gateway;
    let mut running = Running::default();
    match setup {
        Setup::Translator | Setup::TranslatorTc => {
            let tc = setup == Setup::TranslatorTc;
            let name = format!("benchlive-{}", std::process::id());
            let cfg = Config::parse(&format!(
                r#"
instance = "{name}"
[interfaces]
ipv6 = "{GW6}"
ipv4 = "{GW4}"
mode = "{}"
[nat64]
prefix = "2001:db8:64::/96"
clients = ["2001:db8:1::/64"]
[pool]
addresses = ["192.0.2.1"]
"#,
                if tc { "tc" } else { "native" }
            ))?;
            let inst = Instance::new(&name);
            running._instance = Some(PinsGuard(inst.clone()));
            let ebpf = g.in_ns(|| -> Result<aya::Ebpf> {
                translator::netns::ensure_bpffs()?;
                let _ = dataplane::down(&inst);
                let mut ebpf = dataplane::load(&cfg, Some(&inst.pins))?;
                let mut maps = Maps::open(&inst.pins)?;
                maps.fill_pool(&cfg)?;
                maps.sync_policy(&cfg)?;
                for dev in [GW6, GW4] {
                    if tc {
                        dataplane::tc_program(&mut ebpf)?
                            .attach_with_options(
                                dev,
                                aya::programs::TcAttachType::Ingress,
                                aya::programs::tc::TcAttachOptions::TcxOrder(
                                    aya::programs::LinkOrder::default(),
                                ),
                            )
                            .map_err(|e| anyhow!("attaching the TC translator to {dev}: {e}"))?;
                    } else {
                        dataplane::xdp_program(&mut ebpf)?
                            .attach(dev, aya::programs::XdpMode::Driver)
                            .map_err(|e| anyhow!("attaching the translator to {dev}: {e}"))?;
                    }
                }
                Ok(ebpf)
            })??;
            running._ebpf = Some(ebpf);
        }
        Setup::Forwarder => {
            let ebpf = g.in_ns(|| -> Result<aya::Ebpf> {
                let mut ebpf = dataplane::load_unpinned()?;
                let prog: &mut aya::programs::Xdp = ebpf
                    .program_mut("baseline_forward")
                    .context("no baseline_forward in the object")?
                    .try_into()
                    .map_err(|e| anyhow!("baseline_forward: {e}"))?;
                prog.load()
                    .map_err(|e| anyhow!("the kernel refused baseline_forward: {e}"))?;
                for dev in [GW6, GW4] {
                    prog.attach(dev, aya::programs::XdpMode::Driver)
                        .map_err(|e| anyhow!("attaching baseline_forward to {dev}: {e}"))?;
                }
                Ok(ebpf)
            })??;
            running._ebpf = Some(ebpf);
        }
        Setup::Kernel => {}
        Setup::Tayga => {
            let dir = TempDir::new("bench-tayga")?;
            let conf = dir.join("tayga.conf");
            std::fs::write(
                &conf,
                format!(
                    "tun-device nat64b\nipv4-addr 192.168.255.1\nprefix 2001:db8:64::/96\n\
                     dynamic-pool 192.168.255.0/24\ndata-dir {}\n",
                    dir.path().display()
                ),
            )
            .context("writing tayga.conf")?;
            let conf = conf.display().to_string();
            g.run(&["tayga", "-c", &conf, "--mktun"])?;
            g.ip(&["link", "set", "nat64b", "up"])?;
            g.ip(&["route", "add", "192.168.255.0/24", "dev", "nat64b"])?;
            g.ip(&["-6", "route", "add", "2001:db8:64::/96", "dev", "nat64b"])?;
            g.run(&[
                "nft",
                &format!(
                    "add table ip bnat; add chain ip bnat post {{ type nat hook postrouting \
                     priority 100; }}; add rule ip bnat post oifname \"{GW4}\" ip saddr \
                     192.168.255.0/24 masquerade"
                ),
            ])?;
            let tayga = g.spawn(
                &["taskset", "-c", "1", "tayga", "-c", &conf, "--nodetach"],
                &dir.join("tayga.log"),
            )?;
            std::thread::sleep(Duration::from_millis(500));
            running.pids.push(tayga.pid());
            running._tayga = Some(tayga);
            running._dir = Some(dir);
        }
    }
    if net.ingress == Ingress::Veth {
        running.pids.extend(net.pin_napi()?);
    }
    Ok(running)
}

// ------------------------------------------------------------------------------- iperf3

/// One iperf3 TCP stream client -> server for `secs`; bits per second received.
fn iperf(net: &Net, setup: Setup, secs: u32) -> Result<f64> {
    let dir = TempDir::new("bench-iperf")?;
    let _server = net.server.spawn(
        &["taskset", "-c", "0", "iperf3", "-s", "-1", "-p", "5299"],
        &dir.join("server.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let target = setup.destination().to_string();
    let out = net.client.run_timeout(
        &[
            "taskset",
            "-c",
            "0",
            "iperf3",
            "-c",
            &target,
            "-p",
            "5299",
            "-t",
            &secs.to_string(),
            "-J",
        ],
        Duration::from_secs(u64::from(secs) + 20),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout_str()).context("iperf3 JSON")?;
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| anyhow!("iperf3 gave no result: {}", out.stdout_str()))
}

// ------------------------------------------------------------------------------- main

/// The rows of one comparison: the forwarder first, every row's ratio to it, and ours (XDP and
/// tc mode) with their ratios to kernel forwarding and TAYGA in the note.
fn compare(
    fwd: Option<Row>,
    ours: &[Option<Row>],
    kernel: Option<Row>,
    tayga: Option<Row>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for ours in ours.iter().flatten() {
        let ratios = [("kernel", &kernel), ("TAYGA", &tayga)]
            .iter()
            .filter_map(|(n, r)| {
                let (a, b) = (ours.median?, r.as_ref()?.median?);
                Some(format!("x{:.2} of {n}", a / b))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut o = ours.clone();
        if !ratios.is_empty() {
            o.note = format!("{}; {ratios}", o.note);
        }
        rows.push(o);
    }
    rows.extend(kernel);
    rows.extend(tayga);
    if let Some(fwd) = fwd {
        for r in &mut rows {
            *r = r.clone().ratio_to(&fwd);
        }
        rows.insert(0, fwd);
    }
    rows
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("live bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// 64-byte UDP through every setup with one kind of ingress: delivered packets per second and
/// the gateway's capacity per core.
fn udp_rows(ingress: Ingress, runs: usize, secs: f64, wanted: &dyn Fn(Setup) -> bool) -> Vec<Row> {
    let setups = [
        Setup::Forwarder,
        Setup::Translator,
        Setup::TranslatorTc,
        Setup::Kernel,
        Setup::Tayga,
    ];
    type Samples = (Vec<f64>, Vec<f64>, Vec<f64>);
    // Round robin (setup A, B, C, D, then A again...), each run on a fresh topology, so that a
    // change in the machine's load during the bench touches every setup alike.
    let mut pps: Vec<(Setup, Result<Samples>)> = setups
        .into_iter()
        .filter(|s| wanted(*s))
        .map(|s| (s, Ok((Vec::new(), Vec::new(), Vec::new()))))
        .collect();
    for _ in 0..runs {
        for (setup, acc) in &mut pps {
            let Ok((got, sent, cpu)) = acc else {
                continue;
            };
            let setup = *setup;
            let r = (|| -> Result<(f64, f64, f64)> {
                let net = Net::new(ingress)?;
                let running = start(&net, setup)?;
                let frames = frames(setup.destination());
                measure(&net, &running.pids, &frames, Duration::from_secs(1), secs)
            })();
            match r {
                Ok((d, s, c)) => {
                    got.push(d);
                    sent.push(s);
                    cpu.push(c);
                }
                Err(e) => {
                    eprintln!("live: {}: {e:#}", setup.name());
                    *acc = Err(e);
                }
            }
        }
    }
    let mut rows = Vec::new();
    let row_of = |setup: Setup, capacity: bool| -> Option<Row> {
        pps.iter().find(|(s, _)| *s == setup).map(|(s, r)| {
            let via = if ingress == Ingress::Tap {
                " via TAP"
            } else {
                ""
            };
            let name = if capacity {
                format!("64-byte UDP{via}, gateway capacity per core: {}", s.name())
            } else {
                format!("64-byte UDP{via}: {}", s.name())
            };
            let unit = if capacity {
                "packets/s/core"
            } else {
                "packets/s"
            };
            match r {
                Ok((got, sent, cpu)) if capacity => {
                    let (mc, _, _) = common::stats(cpu);
                    Row::new(
                        "live",
                        &name,
                        unit,
                        cpu.iter()
                            .map(|c| if *c > 0.0 { 1e9 / c } else { 0.0 })
                            .collect(),
                        &format!(
                            "1 s / CPU time of {}{} per delivered packet ({:.0} ns; includes \
                             the server veth's receive, which runs there too); delivered {:.0} \
                             of {:.0} offered packets/s",
                            if ingress == Ingress::Tap {
                                "the generator's thread (write() into the TAP runs the gateway \
                                 inline)"
                            } else {
                                "the gateway's NAPI kthread"
                            },
                            if *s == Setup::Tayga { " + tayga" } else { "" },
                            mc.unwrap_or(0.0),
                            common::stats(got).0.unwrap_or(0.0),
                            common::stats(sent).0.unwrap_or(0.0),
                        ),
                    )
                }
                Ok((got, sent, _)) => {
                    let (d, o) = (
                        common::stats(got).0.unwrap_or(0.0),
                        common::stats(sent).0.unwrap_or(0.0),
                    );
                    let bound = if o > 0.0 && d >= 0.97 * o {
                        "generator-bound: the gateway forwarded all it was offered"
                    } else {
                        "gateway-bound: the rest was dropped before the server"
                    };
                    Row::new(
                        "live",
                        &name,
                        unit,
                        got.clone(),
                        &format!(
                            "delivered at the server, {secs} s per run after 1 s warm-up; \
                             generator ({}) offered {o:.0} packets/s ({bound})",
                            if ingress == Ingress::Tap {
                                "write() of each frame into a TAP device, native XDP on tun"
                            } else {
                                generator_kind()
                            },
                        ),
                    )
                }
                Err(e) => Row::missing("live", &name, unit, &format!("{e:#}")),
            }
        })
    };
    for capacity in [false, true] {
        rows.extend(compare(
            row_of(Setup::Forwarder, capacity),
            &[
                row_of(Setup::Translator, capacity),
                row_of(Setup::TranslatorTc, capacity),
            ],
            row_of(Setup::Kernel, capacity),
            row_of(Setup::Tayga, capacity),
        ));
    }
    rows
}

fn bench() -> Result<()> {
    require_root()?;
    let (runs, secs) = if quick() { (1, 2.0) } else { (3, 5.0) };
    // TRANSLATOR_BENCH_LIVE=forwarder,kernel,... limits the setups (for trying things out).
    let only = std::env::var("TRANSLATOR_BENCH_LIVE").unwrap_or_default();
    let wanted = |s: Setup| only.is_empty() || only.split(',').any(|w| s.key() == w);
    let mut rows = Vec::new();
    for ingress in [Ingress::Veth, Ingress::Tap] {
        if only.contains(if ingress == Ingress::Tap {
            "notap"
        } else {
            "noveth"
        }) {
            continue;
        }
        rows.extend(udp_rows(ingress, runs, secs, &wanted));
    }
    // TCP.
    let tcp_secs = if quick() { 2 } else { 5 };
    let mut tcp_runs: Vec<(Setup, Result<Vec<f64>>)> = [
        Setup::Translator,
        Setup::TranslatorTc,
        Setup::Kernel,
        Setup::Tayga,
    ]
    .into_iter()
    .filter(|s| wanted(*s) && !only.contains("notcp"))
    .map(|s| (s, Ok(Vec::new())))
    .collect();
    for _ in 0..runs {
        for (setup, acc) in &mut tcp_runs {
            let Ok(v) = acc else {
                continue;
            };
            let setup = *setup;
            let r = (|| -> Result<f64> {
                let net = Net::new(Ingress::Veth)?;
                let _running = start(&net, setup)?;
                iperf(&net, setup, tcp_secs)
            })();
            match r {
                Ok(bps) => v.push(bps / 1e9),
                Err(e) => {
                    eprintln!("live: iperf3 {}: {e:#}", setup.name());
                    *acc = Err(e);
                }
            }
        }
    }
    let tcp_rows: Vec<(Setup, Row)> = tcp_runs
        .into_iter()
        .map(|(setup, r)| {
            let name = format!("iperf3 TCP: {}", setup.name());
            let row = match r {
                Ok(v) => Row::new(
                    "live",
                    &name,
                    "Gbit/s",
                    v,
                    &format!("one stream, {tcp_secs} s per run, iperf3 client and server on CPU 0"),
                ),
                Err(e) => Row::missing("live", &name, "Gbit/s", &format!("{e:#}")),
            };
            (setup, row)
        })
        .collect();
    let tcp = |s: Setup| {
        tcp_rows
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, r)| r.clone())
    };
    rows.extend(compare(
        None,
        &[tcp(Setup::Translator), tcp(Setup::TranslatorTc)],
        tcp(Setup::Kernel),
        tcp(Setup::Tayga),
    ));
    write_rows("live", &rows)
}
