//! The CLAT bench (issue 11, "Bench"): IPv4 applications on an IPv6-only host, through the
//! host's CLAT and the network's NAT64, with our CLAT against TAYGA as the CLAT (the usual
//! clatd setup), in the same run: 64-byte UDP packets per second and one TCP stream.
//!
//! One topology per run, made fresh and removed after it (veth pairs with fixed MACs and
//! permanent neighbours):
//! ```text
//!  client (IPv6-only host)                gateway                          server
//!  IPv4 apps -> CLAT -> cc0 2001:db8:1::2 -- cg6 [translator run, tc] cg4 -- cs0 192.0.2.2
//! ```
//! The gateway is `translator run` in tc mode (its TC program on both interfaces' ingress),
//! prefix 2001:db8:64::/96, pool 192.0.2.1: the same for every setup. Delivered packets are
//! counted at the server by an nftables rule in prerouting that counts and drops UDP port 9
//! (nothing travels back).
//!
//! Setups:
//! - ours: `translator --netns NS clat --interface cc0 --prefix 2001:db8:64::/96 --no-dns`
//!   (the `Clat` guard): the veth `clat` (192.0.0.1/29, IPv4 default route via 192.0.0.2,
//!   metric 2048, MTU 1480), a never-preferred /128 CLAT address in cc0's /64, `clat_egress`
//!   on `clat` and `clat_ingress` on cc0. Its TC egress program runs inside the sender's own
//!   system call.
//! - TAYGA: what clatd (1.6, the Perl wrapper) sets up, checked here: TAYGA 0.9.2 on a tun
//!   `clat` with `ipv4-addr 192.0.0.2`, `prefix 2001:db8:64::/96`, `map 192.0.0.1
//!   2001:db8:1::c1a7`; 192.0.0.1 on the tun and an IPv4 default route through it (metric
//!   2048); IPv6 forwarding on; the CLAT address routed to the tun in clatd's table 0xc1a7,
//!   chosen by a rule at priority 0 (from the PLAT prefix to that address; clatd moves the
//!   local table's rule to priority 1); proxy NDP for the address on cc0. Proxy NDP is what
//!   makes it reachable: without it the gateway's neighbour entry for the address stays
//!   INCOMPLETE. (The address on cc0 itself would work too, but only behind that rule ahead of
//!   the local table, which clatd needs when it reuses the host's own address.) One deviation
//!   from clatd: the tun gets MTU 1480, the same as our CLAT's interface, and the route no MTU
//!   (clatd's defaults, route MTU 1260 and advmss 1220, would cut TAYGA's TCP figure further).
//! - the floor: no CLAT at all. The same generator sends IPv6 from cc0's own address to the
//!   server's NAT64 address (2001:db8:64::c000:202): the path minus the CLAT.
//!
//! Traffic:
//! - 64-byte UDP: 64 flows (source ports) of 2-byte payloads, so 64-byte frames on the uplink
//!   (14 + 40 + 8 + 2, the frames of the live bench) and 44-byte IPv4 packets on the host's
//!   side. The generator is a thread on CPU 0 that calls `sendmmsg` (64 datagrams per call) as
//!   fast as it can, in one of two ways:
//!   - injected: prebuilt frames on an `AF_PACKET` socket into the CLAT's IPv4 interface (the
//!     floor: IPv6 frames into cc0), through that interface's qdisc and TC hooks. This skips
//!     the host's socket and IP layers, so the CLAT is as large a share of the sender's work as
//!     it can be.
//!   - UDP sockets: 64 connected sockets, the host's IPv4 stack as applications use it.
//!
//!   1 s warm-up, then 5 s counted (2 s in quick mode); 3 runs round robin (1 in quick mode).
//! - TCP: one iperf3 stream from the client to 192.0.2.2 (the floor: to its NAT64 address),
//!   5 s (2 s in quick mode); iperf3 client and server on CPU 0.
//!
//! CPUs (the machine has 2). Our CLAT cannot be moved off the sender's CPU: its TC program runs
//! inside the application's `sendmmsg`. So ours (like the floor) shares CPU 0 with the
//! generator, and the gateway's work gets CPU 1 (its IPv6-side veth uses threaded NAPI with the
//! kthread pinned there; the server's receive runs there too). TAYGA is a process: it gets CPU 1
//! to itself, and the gateway's kthread moves to CPU 0, with the generator. The generator runs
//! at nice 19 in every setup. Where it shares a CPU with the gateway it then yields to it (as
//! NAPI in softirq would preempt it); otherwise, sending far faster than TAYGA takes, it starved
//! the gateway that carries TAYGA's output, and a third of that output was dropped on the
//! uplink. Each row's note gives the busy share of every part (generator, TAYGA, the gateway's
//! kthread, all else on the machine), and where packets were dropped: before the CLAT (its
//! interface's qdisc or the tun) or on the uplink (the gateway's veth ring was full). What
//! limits each figure can be read off there.
//!
//! What limits each figure, as measured on the 2-core VM this was written on:
//! - ours, packets/s: CPU 0, the sender, which runs the generator and our CLAT inside it.
//!   Injected, that is about 800 ns per packet. About 40 % of it is the CLAT: its TC program,
//!   half of whose time is `bpf_skb_change_proto` reallocating the head (the skb lacks the 20
//!   bytes of headroom that IPv6 needs), and `bpf_redirect_neigh`'s IPv6 route lookup. From UDP
//!   sockets it is about 1.1 us per datagram. The gateway is near its own limit at these rates
//!   (about 95 % busy at 1.2 Mpps).
//! - TAYGA, packets/s: TAYGA's process, 100 % of CPU 1, about 2.5 us per packet: read() from the
//!   tun, translation in user space, write() into the tun, IPv6 forwarding, and waking the
//!   gateway's kthread on the other CPU.
//! - the floor, packets/s: the gateway, our NAT64 on one core (about 1.45 Mpps injected, 1.7
//!   Mpps from sockets). That caps the whole path at about 4x TAYGA on this machine, whatever
//!   the CLAT costs, so the issue's 5x cannot be shown end to end here. The CLATs themselves
//!   are compared by:
//! - CLAT capacity per core: 1 s divided by what the CLAT costs the client per packet. That
//!   cost is the client's CPU time per packet (the generator's per datagram it offered, our
//!   CLAT included; plus TAYGA's per packet it wrote out) minus the floor's in the same round.
//!   It counts the CLAT's whole cost on the host, including the extra interface our CLAT's
//!   packets cross and TAYGA's tun and IPv6 forwarding, and drops after the CLAT do not
//!   change it.
//! - TCP: ours passes TSO-sized segments through the CLAT (the veth `clat` has TSO, the program
//!   translates a whole segment, cc0 segments it), while TAYGA reads and writes one 1480-byte
//!   packet per system call and is CPU-bound on CPU 1.
//!
//! `TRANSLATOR_BENCH_CLAT=ours,tayga,direct,notcp` limits the setups (and skips TCP);
//! `TRANSLATOR_BENCH_CLAT_GEN=inject|sockets` keeps one generator;
//! `TRANSLATOR_BENCH_CLAT_SECS=N` counts N s per run (for profiling a run with perf). SIGINT and
//! SIGTERM stop the bench cleanly: every namespace, process, program and pin it made is
//! removed.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use common::{Row, quick, sleep_unless_interrupted, write_rows};
use translator_tests::clat::Clat;
use translator_tests::{
    CLIENT_V6, Gateway, GatewayConfig, NetNs, PREFIX, Proc, SERVER_V4, TempDir, interrupted,
    require_root, server_via_prefix, translator_bin, wait_until,
};

const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x02];
const MAC_G6: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x01];
const MAC_G4: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x03];
const MAC_S: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x04];
/// The client's uplink, the gateway's two sides, the server's interface.
const CLI: &str = "cc0";
const GW6: &str = "cg6";
const GW4: &str = "cg4";
const SRV: &str = "cs0";
/// The host's IPv4 address behind either CLAT (RFC 7335).
const HOST4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 1);
/// TAYGA's CLAT address: in the uplink's /64, as clatd picks one.
const TAYGA_CLAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xc1a7);
/// clatd's routing table for the CLAT address (0xc1a7).
const CLATD_TABLE: &str = "49575";
/// The CLAT's IPv4 interface in both setups (our veth; TAYGA's tun, clatd's name) and the
/// tun's MTU: the uplink's minus 20, as our CLAT sets its interface.
const V4_DEV: &str = "clat";
const MTU4: &str = "1480";
/// UDP flows (source ports) and datagrams per sendmmsg.
const FLOWS: u16 = 64;
const BATCH: usize = 64;
/// 2 bytes of UDP payload: 64-byte frames on the uplink.
const PAYLOAD: &[u8; 2] = b"xy";
/// The generator's CPU, and the other one.
const GEN_CPU: usize = 0;
const OTHER_CPU: usize = 1;

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ------------------------------------------------------------------------------- topology

/// Client - gateway - server, fresh for every run.
struct Net {
    client: NetNs,
    gateway: NetNs,
    server: NetNs,
}

impl Net {
    fn new() -> Result<Self> {
        let net = Self {
            client: NetNs::new("clatb-cli")?,
            gateway: NetNs::new("clatb-gw")?,
            server: NetNs::new("clatb-srv")?,
        };
        net.wire().context("building the CLAT bench topology")?;
        Ok(net)
    }

    fn wire(&self) -> Result<()> {
        let (c, g, s) = (&self.client, &self.gateway, &self.server);
        for (dev, dmac, peer, pmac, ns) in
            [(GW6, MAC_G6, CLI, MAC_C, c), (GW4, MAC_G4, SRV, MAC_S, s)]
        {
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
        g.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        g.ip(&["addr", "add", "2001:db8:1::1/64", "dev", GW6, "nodad"])?;
        g.ip(&["addr", "add", "192.0.2.1/24", "dev", GW4])?;
        g.ip(&[
            "neigh",
            "replace",
            "192.0.2.2",
            "lladdr",
            &mac(MAC_S),
            "dev",
            GW4,
            "nud",
            "permanent",
        ])?;
        // The client: IPv6 only, a static global address (the CLATs take another one in its
        // /64), the gateway as its default router.
        c.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        c.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
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
        s.ip(&["addr", "add", "192.0.2.2/24", "dev", SRV])?;
        s.ip(&["link", "set", SRV, "up"])?;
        s.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", SRV])?;
        s.ip(&[
            "neigh",
            "replace",
            "192.0.2.1",
            "lladdr",
            &mac(MAC_G4),
            "dev",
            SRV,
            "nud",
            "permanent",
        ])?;
        // As in the live bench: end hosts send full checksums without GSO; GRO (NAPI) on the
        // veths; the gateway's IPv6 side in a NAPI kthread that is pinned per setup.
        for (ns, dev) in [(s, SRV), (c, CLI)] {
            ns.run(&[
                "ethtool", "-K", dev, "tx", "off", "gso", "off", "tso", "off", "gro", "on",
            ])?;
        }
        g.run(&["ethtool", "-K", GW4, "gro", "on"])?;
        g.run(&["ethtool", "-K", GW6, "gro", "on"])?;
        g.run(&[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{GW6}/threaded"),
        ])?;
        // Count and drop the generator's packets at the server.
        s.run(&[
            "nft",
            "add table inet bench; add counter inet bench rx; \
             add chain inet bench pre { type filter hook prerouting priority -300; }; \
             add rule inet bench pre udp dport 9 counter name rx drop",
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

    /// Pins the gateway's NAPI kthread(s) to `cpu`; returns their pids.
    fn pin_napi(&self, cpu: usize) -> Result<Vec<u32>> {
        let mut found = Vec::new();
        let prefix = format!("napi/{GW6}-");
        for entry in std::fs::read_dir("/proc").context("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            // Kernel threads live in the initial namespace; the name is this bench's own.
            if comm.trim().starts_with(&prefix) {
                common::output("taskset", &["-pc", &cpu.to_string(), &pid.to_string()])?;
                found.push(pid);
            }
        }
        if found.is_empty() {
            bail!("no threaded NAPI kthread for {GW6}");
        }
        Ok(found)
    }
}

// ------------------------------------------------------------------------------- setups

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    /// `translator clat`.
    Ours,
    /// TAYGA on a tun device, as clatd runs it.
    Tayga,
    /// No CLAT: IPv6 straight to the server's NAT64 address.
    Direct,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Ours => "our CLAT (translator clat, TC)",
            Setup::Tayga => "TAYGA as the CLAT (clatd setup)",
            Setup::Direct => "no CLAT, IPv6 to the NAT64 address (floor)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Setup::Ours => "ours",
            Setup::Tayga => "tayga",
            Setup::Direct => "direct",
        }
    }

    /// Where the server is for the client's applications.
    fn server(self) -> IpAddr {
        match self {
            Setup::Ours | Setup::Tayga => SERVER_V4.into(),
            Setup::Direct => server_via_prefix().into(),
        }
    }

    /// The CPU of the gateway's NAPI kthread: the one the CLAT's own work leaves free. Our CLAT
    /// (and the floor's sending) run inside the sender's system calls on the generator's CPU,
    /// so the gateway gets the other; TAYGA gets the other CPU to itself, so the gateway shares
    /// the generator's.
    fn gateway_cpu(self) -> usize {
        match self {
            Setup::Ours | Setup::Direct => OTHER_CPU,
            Setup::Tayga => GEN_CPU,
        }
    }
}

/// What keeps a setup running; dropping it stops everything (the namespaces go with `Net`):
/// TAYGA first, then our CLAT (`clat down`), then the gateway (`translator down`).
struct Running<'a> {
    tayga: Option<Proc>,
    clat: Option<Clat<'a>>,
    _gateway: Gateway<'a>,
    dir: TempDir,
    /// The gateway's NAPI kthread(s).
    napi: Vec<u32>,
}

impl Running<'_> {
    fn tayga_pid(&self) -> Option<u32> {
        self.tayga.as_ref().map(Proc::pid)
    }

    /// The CPU time so far of the gateway's kthread(s) and of TAYGA, in seconds.
    fn cpu(&self) -> (f64, f64) {
        (
            self.napi.iter().map(|&p| common::cpu_secs(p)).sum(),
            self.tayga_pid().map_or(0.0, common::cpu_secs),
        )
    }
}

fn start(net: &Net, setup: Setup) -> Result<Running<'_>> {
    let dir = TempDir::new("clat-bench")?;
    let mut cfg = GatewayConfig::new(GW6, GW4);
    cfg.mode = Some("tc".to_owned());
    let mut gateway = Gateway::start(&net.gateway, cfg).context("starting the gateway")?;
    gateway.set_print_log_on_drop(false);
    let napi = net.pin_napi(setup.gateway_cpu())?;
    let mut running = Running {
        tayga: None,
        clat: None,
        _gateway: gateway,
        dir,
        napi,
    };
    let c = &net.client;
    let clat6 = match setup {
        Setup::Direct => None,
        Setup::Ours => {
            let mut clat = Clat::start(
                translator_bin()?,
                c,
                &["--interface", CLI, "--prefix", PREFIX, "--no-dns"],
            )?;
            clat.set_print_log_on_drop(false);
            let st = clat.wait_active(Duration::from_secs(30))?;
            running.clat = Some(clat);
            let clat6 = st["clat6"]
                .as_str()
                .and_then(|a| a.parse::<Ipv6Addr>().ok())
                .ok_or_else(|| anyhow!("clat status names no CLAT address: {st}"))?;
            Some(clat6)
        }
        Setup::Tayga => {
            tayga_as_clatd(net, &mut running)?;
            Some(TAYGA_CLAT6)
        }
    };
    // Both ways work: the gateway finds the CLAT's address by Neighbor Discovery (the kernel
    // answers for our CLAT's address, proxy NDP for TAYGA's). Then that neighbour entry is made
    // permanent, as every other neighbour of the bench is.
    preflight(net, setup, &running)?;
    if let Some(a) = clat6 {
        net.gateway.ip(&[
            "neigh",
            "replace",
            &a.to_string(),
            "lladdr",
            &mac(MAC_C),
            "dev",
            GW6,
            "nud",
            "permanent",
        ])?;
    }
    Ok(running)
}

/// TAYGA as the CLAT, set up the way clatd does it (module documentation), on CPU 1.
fn tayga_as_clatd(net: &Net, running: &mut Running<'_>) -> Result<()> {
    let c = &net.client;
    let conf = running.dir.join("tayga.conf");
    std::fs::write(
        &conf,
        format!(
            "tun-device {V4_DEV}\nprefix {PREFIX}\nipv4-addr 192.0.0.2\nmap {HOST4} {TAYGA_CLAT6}\n"
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let conf = conf.display().to_string();
    let clat6 = TAYGA_CLAT6.to_string();
    c.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    c.sysctl(&format!("net.ipv6.conf.{CLI}.proxy_ndp"), "1")?;
    c.ip(&["-6", "neigh", "add", "proxy", &clat6, "dev", CLI])?;
    c.ip(&["-6", "rule", "add", "prio", "1", "table", "local"])?;
    c.ip(&["-6", "rule", "del", "prio", "0", "table", "local"])?;
    c.run(&["tayga", "-c", &conf, "--mktun"])?;
    c.ip(&["link", "set", V4_DEV, "mtu", MTU4, "up"])?;
    c.ip(&["-4", "addr", "add", &HOST4.to_string(), "dev", V4_DEV])?;
    c.ip(&[
        "-6",
        "route",
        "add",
        &clat6,
        "dev",
        V4_DEV,
        "table",
        CLATD_TABLE,
    ])?;
    c.ip(&[
        "-6",
        "rule",
        "add",
        "prio",
        "0",
        "from",
        PREFIX,
        "to",
        &clat6,
        "table",
        CLATD_TABLE,
    ])?;
    c.ip(&[
        "-4", "route", "add", "default", "dev", V4_DEV, "metric", "2048",
    ])?;
    let cpu = OTHER_CPU.to_string();
    running.tayga = Some(c.spawn(
        &["taskset", "-c", &cpu, "tayga", "-c", &conf, "--nodetach"],
        &running.dir.join("tayga.log"),
    )?);
    Ok(())
}

/// Pings the server through the setup (a few tries: proxy NDP answers after a random delay of
/// up to 0.8 s).
fn preflight(net: &Net, setup: Setup, running: &Running<'_>) -> Result<()> {
    let target = setup.server().to_string();
    let mut last = String::new();
    for _ in 0..5 {
        let out = net.client.try_run(
            &["ping", "-c", "1", "-W", "2", &target],
            Duration::from_secs(10),
        )?;
        if out.status.success() {
            return Ok(());
        }
        last = format!("{}{}", out.stdout_str(), out.stderr_str());
        if interrupted() {
            bail!("interrupted");
        }
    }
    let log = match (&running.tayga, &running.clat) {
        (Some(t), _) => format!("\nTAYGA's log:\n{}", t.log()),
        (None, Some(c)) => format!("\nthe CLAT's log:\n{}", c.log()),
        (None, None) => String::new(),
    };
    bail!(
        "{}: ping {target} from the client fails: {}{log}",
        setup.name(),
        last.trim()
    )
}

// ------------------------------------------------------------------------------- generator

/// How the generator's datagrams enter the host.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gen {
    /// UDP sockets, `sendmmsg`: the host's IPv4 (or, for the floor, IPv6) stack, as an
    /// application sends.
    Sockets,
    /// Prebuilt frames written with `sendmmsg` on an `AF_PACKET` socket into the CLAT's IPv4
    /// interface (for the floor: the uplink), through its qdisc and TC hooks: the host's
    /// socket and IP layers are skipped, so the CLAT's share of the sender's work is largest.
    Inject,
}

impl Gen {
    /// For row names.
    fn name(self) -> &'static str {
        match self {
            Gen::Sockets => "from sockets",
            Gen::Inject => "injected",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Gen::Sockets => "sockets",
            Gen::Inject => "inject",
        }
    }
}

/// One UDP socket per flow, bound to its own port and connected to the server's port 9.
fn udp_sockets(server: IpAddr) -> Result<Vec<UdpSocket>> {
    (0..FLOWS)
        .map(|i| {
            let local: SocketAddr = match server {
                IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 10000 + i).into(),
                IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 10000 + i).into(),
            };
            let s = UdpSocket::bind(local).with_context(|| format!("binding UDP {local}"))?;
            s.connect((server, 9))
                .with_context(|| format!("connecting a UDP socket to {server} port 9"))?;
            Ok(s)
        })
        .collect()
}

/// The frames the injecting generator writes: Ethernet + IPv4 + UDP on our CLAT's veth, bare
/// IPv4 + UDP on TAYGA's tun, Ethernet + IPv6 + UDP on the uplink for the floor.
fn inject_frames(setup: Setup, clat_mac: [u8; 6]) -> Vec<Vec<u8>> {
    use translator_tests::packets::{eth, ipv4, ipv6, udp};
    (0..FLOWS)
        .map(|i| match setup {
            Setup::Ours | Setup::Tayga => {
                let seg = udp(HOST4.into(), SERVER_V4.into(), 10000 + i, 9, PAYLOAD);
                let ip = ipv4(HOST4, SERVER_V4, 17, 64, 0, 0, true, &seg);
                if setup == Setup::Ours {
                    eth([0x02, 0, 0, 0, 0, 0x01], clat_mac, 0x0800, &ip)
                } else {
                    ip
                }
            }
            Setup::Direct => {
                let dst = server_via_prefix();
                let seg = udp(CLIENT_V6.into(), dst.into(), 10000 + i, 9, PAYLOAD);
                eth(
                    MAC_G6,
                    MAC_C,
                    0x86dd,
                    &ipv6(CLIENT_V6, dst, 17, 64, 0, &seg),
                )
            }
        })
        .collect()
}

/// What the generator sends on.
enum Sender {
    Sockets(Vec<UdpSocket>),
    /// An unbound `AF_PACKET` socket, the device and protocol in every message's address.
    Packet {
        sock: OwnedFd,
        to: libc::sockaddr_ll,
        frames: Vec<Vec<u8>>,
    },
}

impl Sender {
    /// Opens the generator's sockets in the calling thread's namespace.
    fn open(gen_: Gen, setup: Setup) -> Result<Self> {
        match gen_ {
            Gen::Sockets => Ok(Self::Sockets(udp_sockets(setup.server())?)),
            Gen::Inject => {
                let (dev, proto) = match setup {
                    Setup::Ours | Setup::Tayga => (V4_DEV, libc::ETH_P_IP),
                    Setup::Direct => (CLI, libc::ETH_P_IPV6),
                };
                let ifindex = translator::netns::ifindex(dev)
                    .with_context(|| format!("no interface {dev} in the client"))?;
                let mac = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
                    .ok()
                    .and_then(|t| parse_mac(t.trim()))
                    .unwrap_or([0; 6]);
                // SAFETY: plain socket(2); protocol 0: it receives nothing.
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
                }
                // SAFETY: a new descriptor nothing else owns.
                let sock = unsafe { OwnedFd::from_raw_fd(fd) };
                // SAFETY: a zeroed sockaddr_ll is valid; fields set below.
                let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                to.sll_family = libc::AF_PACKET as u16;
                to.sll_protocol = (proto as u16).to_be();
                to.sll_ifindex = i32::try_from(ifindex).context("ifindex out of range")?;
                Ok(Self::Packet {
                    sock,
                    to,
                    frames: inject_frames(setup, mac),
                })
            }
        }
    }

    /// Sends until `stop`, `BATCH` datagrams per sendmmsg; publishes the datagrams handed
    /// over and the thread's CPU time.
    fn run(&mut self, stop: &AtomicBool, sent: &AtomicU64, cpu: &AtomicU64) {
        let mut payload_iov = libc::iovec {
            iov_base: PAYLOAD.as_ptr() as *mut libc::c_void,
            iov_len: PAYLOAD.len(),
        };
        let (mut iovs, name): (Vec<libc::iovec>, Option<*mut libc::sockaddr_ll>) = match self {
            Self::Sockets(_) => (Vec::new(), None),
            Self::Packet { to, frames, .. } => (
                (0..BATCH)
                    .map(|i| {
                        let f = &frames[i % frames.len()];
                        libc::iovec {
                            iov_base: f.as_ptr() as *mut libc::c_void,
                            iov_len: f.len(),
                        }
                    })
                    .collect(),
                Some(to as *mut libc::sockaddr_ll),
            ),
        };
        // SAFETY: a zeroed mmsghdr is valid; each points at one iovec (and, for AF_PACKET, at
        // the device address), which the kernel only reads and which outlive the calls.
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
            .collect();
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_iov = match iovs.get_mut(i) {
                Some(iov) => iov,
                None => &mut payload_iov,
            };
            m.msg_hdr.msg_iovlen = 1;
            if let Some(n) = name {
                m.msg_hdr.msg_name = n.cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            }
        }
        let mut n = 0u64;
        let mut send = |fd: libc::c_int| {
            // SAFETY: msgs and everything they point at outlive the call.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
            u64::try_from(r).unwrap_or(0)
        };
        while !stop.load(Ordering::Relaxed) && !interrupted() {
            match self {
                Self::Sockets(socks) => {
                    for s in socks.iter() {
                        n += send(s.as_raw_fd());
                    }
                }
                Self::Packet { sock, .. } => {
                    for _ in 0..FLOWS {
                        n += send(sock.as_raw_fd());
                    }
                }
            }
            sent.store(n, Ordering::Relaxed);
            cpu.store(common::thread_cpu_ns(), Ordering::Relaxed);
        }
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Packets per second counted at the server.
    delivered: f64,
    /// Datagrams per second the generator handed over.
    offered: f64,
    /// Busy share (0..1) of one CPU: the generator thread (with our CLAT inside it), TAYGA,
    /// the gateway's NAPI kthread, and everything else on the machine.
    gen_busy: f64,
    tayga_busy: f64,
    gateway_busy: f64,
    other_busy: f64,
    /// Per second: dropped before the CLAT's translation (its IPv4 interface's qdisc and
    /// device), and on the client's uplink (the gateway's veth ring was full).
    drop_clat: f64,
    drop_uplink: f64,
}

impl Sample {
    /// What the client spends on one packet, ns: the generator's CPU per datagram it offered
    /// (our CLAT runs inside it), plus TAYGA's per packet it wrote out (delivered, or dropped
    /// on the uplink). Drops after the CLAT do not make it look dearer.
    fn client_ns(&self) -> f64 {
        let out = self.delivered + self.drop_uplink;
        let generator = if self.offered > 0.0 {
            self.gen_busy / self.offered
        } else {
            0.0
        };
        let tayga = if out > 0.0 {
            self.tayga_busy / out
        } else {
            0.0
        };
        (generator + tayga) * 1e9
    }
}

/// CPU time (s) all CPUs spent busy so far, from /proc/stat.
fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy / hz
}

/// A device's transmit drops plus its qdisc's drops (0 when it has none, or on an error: the
/// figure only goes into a note).
fn tx_drops(ns: &NetNs, dev: &str) -> u64 {
    let json = |o: translator_tests::Output| serde_json::from_slice::<serde_json::Value>(&o.stdout);
    let link = ns
        .ip(&["-j", "-s", "link", "show", "dev", dev])
        .ok()
        .and_then(|o| json(o).ok())
        .and_then(|v| v.pointer("/0/stats64/tx/dropped").and_then(|d| d.as_u64()))
        .unwrap_or(0);
    let qdisc = ns
        .run(&["tc", "-j", "-s", "qdisc", "show", "dev", dev])
        .ok()
        .and_then(|o| json(o).ok())
        .and_then(|v| {
            v.as_array()
                .map(|a| a.iter().filter_map(|q| q.get("drops")?.as_u64()).sum())
        })
        .unwrap_or(0);
    link + qdisc
}

/// Sets the calling thread's nice value to 19.
fn lowest_priority() -> Result<()> {
    // SAFETY: gettid has no preconditions; setpriority on the calling thread (on Linux a
    // thread id is a valid PRIO_PROCESS id).
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setpriority(19) on the generator");
    }
    Ok(())
}

/// One counted run of the generator through a running setup.
fn measure(net: &Net, running: &Running<'_>, setup: Setup, gen_: Gen, secs: f64) -> Result<Sample> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let gen_cpu = Arc::new(AtomicU64::new(0));
    let (stop2, sent2, cpu2) = (stop.clone(), sent.clone(), gen_cpu.clone());
    let sender = net.client.spawn_thread(move || -> Result<()> {
        common::pin_current_thread(GEN_CPU)?;
        lowest_priority()?;
        let mut sender = Sender::open(gen_, setup)?;
        sender.run(&stop2, &sent2, &cpu2);
        Ok(())
    })?;
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let guard = Stop(stop);
    let clat_dev = (setup != Setup::Direct).then_some(V4_DEV);
    struct Snap {
        delivered: u64,
        sent: u64,
        gen_: f64,
        napi: f64,
        tayga: f64,
        busy: f64,
        drop_clat: u64,
        drop_uplink: u64,
        at: Instant,
    }
    let snapshot = || -> Result<Snap> {
        let (napi, tayga) = running.cpu();
        Ok(Snap {
            delivered: net.delivered()?,
            sent: sent.load(Ordering::Relaxed),
            gen_: gen_cpu.load(Ordering::Relaxed) as f64 / 1e9,
            napi,
            tayga,
            busy: machine_busy_secs(),
            drop_clat: clat_dev.map_or(0, |d| tx_drops(&net.client, d)),
            drop_uplink: tx_drops(&net.client, CLI),
            at: Instant::now(),
        })
    };
    sleep_unless_interrupted(Duration::from_secs(1))?;
    let a = snapshot()?;
    sleep_unless_interrupted(Duration::from_secs_f64(secs))?;
    let b = snapshot()?;
    drop(guard);
    sender
        .join()
        .map_err(|_| anyhow!("the generator thread panicked"))???;
    let dt = (b.at - a.at).as_secs_f64();
    let delivered = b.delivered.saturating_sub(a.delivered) as f64;
    let offered = b.sent.saturating_sub(a.sent) as f64;
    if delivered == 0.0 {
        bail!(
            "{}: nothing reached the server ({offered} datagrams offered in {dt:.1} s)",
            setup.name()
        );
    }
    let (g, t, n) = (b.gen_ - a.gen_, b.tayga - a.tayga, b.napi - a.napi);
    Ok(Sample {
        delivered: delivered / dt,
        offered: offered / dt,
        gen_busy: g / dt,
        tayga_busy: t / dt,
        gateway_busy: n / dt,
        other_busy: ((b.busy - a.busy) - g - t - n).max(0.0) / dt,
        drop_clat: b.drop_clat.saturating_sub(a.drop_clat) as f64 / dt,
        drop_uplink: b.drop_uplink.saturating_sub(a.drop_uplink) as f64 / dt,
    })
}

// ------------------------------------------------------------------------------- iperf3

/// One TCP run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct TcpSample {
    gbps: f64,
    retransmits: u64,
    tayga_busy: f64,
    gateway_busy: f64,
}

/// One iperf3 TCP stream client -> server for `secs`.
fn iperf(net: &Net, running: &Running<'_>, setup: Setup, secs: u32) -> Result<TcpSample> {
    let dir = TempDir::new("clat-bench-iperf")?;
    let cpu = GEN_CPU.to_string();
    let _server = net.server.spawn(
        &["taskset", "-c", &cpu, "iperf3", "-s", "-1", "-p", "5299"],
        &dir.join("server.log"),
    )?;
    let listening = wait_until(Duration::from_secs(10), || {
        net.server
            .try_run(&["ss", "-Hltn", "sport = :5299"], Duration::from_secs(5))
            .is_ok_and(|o| !o.stdout.is_empty())
    });
    if !listening {
        bail!("iperf3 -s did not start listening in the server namespace");
    }
    let target = setup.server().to_string();
    let (n0, t0, i0) = {
        let (n, t) = running.cpu();
        (n, t, Instant::now())
    };
    let out = net.client.run_timeout(
        &[
            "taskset",
            "-c",
            &cpu,
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
    let (n1, t1) = running.cpu();
    let dt = i0.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_str(&out.stdout_str())
        .with_context(|| format!("iperf3 -J printed: {}", out.stdout_str()))?;
    let bps = v
        .pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| anyhow!("iperf3 gave no result: {}", out.stdout_str()))?;
    Ok(TcpSample {
        gbps: bps / 1e9,
        retransmits: v
            .pointer("/end/sum_sent/retransmits")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        tayga_busy: (t1 - t0) / dt,
        gateway_busy: (n1 - n0) / dt,
    })
}

// ------------------------------------------------------------------------------- main

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("CLAT bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A setup, its variant (the generator, or none) and its samples (or why it has none).
type Case<V, S> = (Setup, V, Result<Vec<S>>);

/// Runs `f` `runs` times for every (setup, variant), round robin, each on a fresh topology, so
/// that a change in the machine's load touches every setup alike. A setup that fails once is
/// not run again; its error is kept for its row.
fn round_robin<V: Copy, S: std::fmt::Debug>(
    what: &str,
    cases: &[(Setup, V)],
    runs: usize,
    label: impl Fn(Setup, V) -> String,
    f: impl Fn(&Net, &Running<'_>, Setup, V) -> Result<S>,
) -> Result<Vec<Case<V, S>>> {
    let mut acc: Vec<Case<V, S>> = cases.iter().map(|&(s, v)| (s, v, Ok(Vec::new()))).collect();
    for _ in 0..runs {
        for (setup, v, samples) in &mut acc {
            let Ok(list) = samples else { continue };
            let r = (|| -> Result<S> {
                let net = Net::new()?;
                let running = start(&net, *setup)?;
                f(&net, &running, *setup, *v)
            })();
            match r {
                Ok(s) => {
                    println!("clat: {what} {}: {s:?}", label(*setup, *v));
                    list.push(s);
                }
                Err(e) => {
                    eprintln!("clat: {what} {}: {e:#}", label(*setup, *v));
                    *samples = Err(e);
                }
            }
            if interrupted() {
                bail!("interrupted");
            }
        }
    }
    Ok(acc)
}

fn bench() -> Result<()> {
    require_root()?;
    common::stop_on_interrupt()?;
    translator_bin()?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        bail!(
            "the CLAT bench pins the generator and the CLAT's work to two CPUs; this machine has {cpus}"
        );
    }
    let (runs, mut secs) = if quick() { (1, 2.0) } else { (3, 5.0) };
    if let Ok(v) = std::env::var("TRANSLATOR_BENCH_CLAT_SECS") {
        secs =
            v.parse().ok().filter(|s: &f64| *s > 0.0).with_context(|| {
                format!("TRANSLATOR_BENCH_CLAT_SECS={v:?}: a number of seconds")
            })?;
    }
    let only = std::env::var("TRANSLATOR_BENCH_CLAT").unwrap_or_default();
    let keys: Vec<&str> = only
        .split(',')
        .filter(|w| !w.is_empty() && *w != "notcp")
        .collect();
    let setups: Vec<Setup> = [Setup::Ours, Setup::Tayga, Setup::Direct]
        .into_iter()
        .filter(|s| keys.is_empty() || keys.contains(&s.key()))
        .collect();
    let gen_only = std::env::var("TRANSLATOR_BENCH_CLAT_GEN").unwrap_or_default();
    let gens: Vec<Gen> = [Gen::Inject, Gen::Sockets]
        .into_iter()
        .filter(|g| gen_only.is_empty() || gen_only == g.key())
        .collect();
    let cases: Vec<(Setup, Gen)> = gens
        .iter()
        .flat_map(|g| setups.iter().map(move |s| (*s, *g)))
        .collect();
    let udp = round_robin(
        "64-byte UDP",
        &cases,
        runs,
        |s, g| format!("{} ({})", s.name(), g.name()),
        |net, running, setup, gen_| measure(net, running, setup, gen_, secs),
    )?;
    let tcp_secs = if quick() { 2 } else { 5 };
    let tcp_cases: Vec<(Setup, ())> = if only.contains("notcp") {
        Vec::new()
    } else {
        setups.iter().map(|s| (*s, ())).collect()
    };
    let tcp = round_robin(
        "iperf3",
        &tcp_cases,
        runs,
        |s, ()| s.name().to_owned(),
        |net, running, setup, ()| iperf(net, running, setup, tcp_secs),
    )?;
    let mut rows = Vec::new();
    for gen_ in gens {
        rows.extend(udp_rows(&udp, gen_, secs));
    }
    rows.extend(tcp_rows(&tcp, tcp_secs));
    write_rows("clat", &rows)
}

fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    common::stats(&v.into_iter().collect::<Vec<_>>())
        .0
        .unwrap_or(0.0)
}

/// What saturated in a setup, from the busy shares.
fn limited_by(setup: Setup, s: &Sample) -> String {
    let sender = if setup == Setup::Ours {
        "the sender's CPU (the generator, with our CLAT inside it)"
    } else {
        "the sender's CPU (the generator)"
    };
    let mut parts = [
        (sender, s.gen_busy),
        ("TAYGA's CPU", s.tayga_busy),
        ("the gateway's CPU", s.gateway_busy),
    ];
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let [(top, tb), (next, nb), _] = parts;
    if tb < 0.85 {
        return format!(
            "nothing ran at its limit (busiest: {top}, {:.0} %)",
            tb * 100.0
        );
    }
    let mut out = format!("limited by {top} ({:.0} % busy)", tb * 100.0);
    if nb >= 0.85 {
        out.push_str(&format!(
            ", with {next} near its limit too ({:.0} %)",
            nb * 100.0
        ));
    }
    out
}

type UdpResults = [Case<Gen, Sample>];

fn udp_rows(udp: &UdpResults, gen_: Gen, secs: f64) -> Vec<Row> {
    let samples = |setup: Setup| -> Option<&Result<Vec<Sample>>> {
        udp.iter()
            .find(|(s, g, _)| *s == setup && *g == gen_)
            .map(|(_, _, r)| r)
    };
    let floor = samples(Setup::Direct).and_then(|r| r.as_ref().ok());
    let pps_row = |setup: Setup| -> Option<Row> {
        let r = samples(setup)?;
        let name = format!(
            "CLAT + NAT64, 64-byte UDP {}: {}",
            gen_.name(),
            setup.name()
        );
        Some(match r {
            Ok(v) => {
                let m = |f: fn(&Sample) -> f64| median(v.iter().map(f));
                let typical = Sample {
                    gen_busy: m(|s| s.gen_busy),
                    tayga_busy: m(|s| s.tayga_busy),
                    gateway_busy: m(|s| s.gateway_busy),
                    ..Sample::default()
                };
                let floor_ratio = floor
                    .filter(|_| setup != Setup::Direct)
                    .map(|f| median(f.iter().map(|s| s.delivered)))
                    .filter(|f| *f > 0.0)
                    .map(|f| format!("; x{:.2} of the floor", m(|s| s.delivered) / f))
                    .unwrap_or_default();
                Row::new(
                    "clat",
                    &name,
                    "packets/s",
                    v.iter().map(|s| s.delivered).collect(),
                    &format!(
                        "delivered at the server, {secs} s per run after 1 s warm-up; {}; \
                         offered {:.0}/s; busy: generator {:.0} % (CPU {GEN_CPU}), TAYGA {:.0} \
                         %, gateway kthread {:.0} % (CPU {}), all else {:.0} %; dropped/s \
                         before the CLAT {:.0}, on the uplink {:.0}{floor_ratio}",
                        limited_by(setup, &typical),
                        m(|s| s.offered),
                        typical.gen_busy * 100.0,
                        typical.tayga_busy * 100.0,
                        typical.gateway_busy * 100.0,
                        setup.gateway_cpu(),
                        m(|s| s.other_busy) * 100.0,
                        m(|s| s.drop_clat),
                        m(|s| s.drop_uplink),
                    ),
                )
            }
            Err(e) => Row::missing("clat", &name, "packets/s", &format!("{e:#}")),
        })
    };
    // What the CLAT costs the client per delivered packet, over the floor in the same round.
    let capacity_row = |setup: Setup| -> Option<Row> {
        let r = samples(setup)?;
        let name = format!(
            "CLAT capacity per core, 64-byte UDP {}: {}",
            gen_.name(),
            setup.name()
        );
        let unit = "packets/s/core";
        let (v, floor) = match (r, floor) {
            (Ok(v), Some(f)) => (v, f),
            (Err(e), _) => return Some(Row::missing("clat", &name, unit, &format!("{e:#}"))),
            (Ok(_), None) => {
                return Some(Row::missing(
                    "clat",
                    &name,
                    unit,
                    "needs the floor (setup `direct`) measured in the same run",
                ));
            }
        };
        let costs: Vec<f64> = v
            .iter()
            .zip(floor)
            .map(|(s, f)| s.client_ns() - f.client_ns())
            .collect();
        if costs.iter().any(|c| *c <= 0.0) {
            return Some(Row::missing(
                "clat",
                &name,
                unit,
                &format!(
                    "the client's CPU per packet was not above the floor's in every round \
                     ({costs:.0?} ns): the CLAT's cost is lost in the noise"
                ),
            ));
        }
        Some(Row::new(
            "clat",
            &name,
            unit,
            costs.iter().map(|c| 1e9 / c).collect(),
            &format!(
                "1 s / (the client's CPU per packet - the floor's, same round): the CLAT costs \
                 {:.0} ns per packet ({:.0} ns on the client with it: the generator per \
                 datagram{}; {:.0} ns without)",
                median(costs.iter().copied()),
                median(v.iter().map(Sample::client_ns)),
                if setup == Setup::Tayga {
                    " + TAYGA per packet it wrote"
                } else {
                    ", the CLAT inside"
                },
                median(floor.iter().map(Sample::client_ns)),
            ),
        ))
    };
    let mut rows = Vec::new();
    let kinds: [&dyn Fn(Setup) -> Option<Row>; 2] = [&pps_row, &capacity_row];
    for row in kinds {
        let tayga = row(Setup::Tayga);
        if let Some(mut ours) = row(Setup::Ours) {
            if let Some(t) = &tayga {
                ours = ours.ratio_to(t);
            }
            rows.push(ours);
        }
        rows.extend(tayga);
    }
    // The floor's own packets/s, after the CLATs' rows.
    let floor_row = pps_row(Setup::Direct);
    let at = rows
        .iter()
        .position(|r| r.unit == "packets/s/core")
        .unwrap_or(rows.len());
    if let Some(f) = floor_row {
        rows.insert(at, f);
    }
    rows
}

fn tcp_rows(tcp: &[Case<(), TcpSample>], secs: u32) -> Vec<Row> {
    let row = |setup: Setup| -> Option<Row> {
        let (_, _, r) = tcp.iter().find(|(s, _, _)| *s == setup)?;
        let name = format!("CLAT + NAT64, iperf3 TCP: {}", setup.name());
        Some(match r {
            Ok(v) => {
                let m = |f: fn(&TcpSample) -> f64| median(v.iter().map(f));
                Row::new(
                    "clat",
                    &name,
                    "Gbit/s",
                    v.iter().map(|s| s.gbps).collect(),
                    &format!(
                        "one stream, {secs} s per run, iperf3 client and server on CPU \
                         {GEN_CPU}; retransmits {:.0}; busy: TAYGA {:.0} %, gateway kthread \
                         {:.0} % (CPU {})",
                        m(|s| s.retransmits as f64),
                        m(|s| s.tayga_busy) * 100.0,
                        m(|s| s.gateway_busy) * 100.0,
                        setup.gateway_cpu(),
                    ),
                )
            }
            Err(e) => Row::missing("clat", &name, "Gbit/s", &format!("{e:#}")),
        })
    };
    let mut rows = Vec::new();
    let tayga = row(Setup::Tayga);
    if let Some(mut ours) = row(Setup::Ours) {
        if let Some(t) = &tayga {
            ours = ours.ratio_to(t);
        }
        rows.push(ours);
    }
    rows.extend(tayga);
    rows.extend(row(Setup::Direct));
    rows
}
