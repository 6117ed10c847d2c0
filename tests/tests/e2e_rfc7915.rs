//! End-to-end tests of the RFC 7915 / RFC 6146 behaviour that ordinary tools depend on (issue 4):
//! traceroute (UDP, ICMP, TCP) through the gateway in both directions (its own hop-limit / TTL
//! exceeded, translated errors from an IPv4 router and from the end hosts), the errors RFC 6146
//! asks for when no port is left, path MTU discovery across smaller IPv4 and IPv6 links (packet
//! too big / fragmentation needed sent by the gateway or translated, never below 1280), fragments
//! both ways (in order, in reverse order, DF-clear IPv4 refragmented for 1280), IPv6 extension
//! headers and IPv4 options, and hairpinning between two IPv6 clients through a static mapping.
//!
//! Each test builds its own namespaces (removed on drop, also when it fails) and runs its own
//! controller instance. A lock keeps the tests one at a time. They need root, the tools checked
//! in `prepare`, and the `translator` binary (`cargo build -p translator-user`).
//!
//! The gateway sends its own ICMP errors and hairpinned packets back out of the receiving veth
//! with `XDP_TX`; a veth wakes its peer for such frames only when the peer runs an XDP program,
//! so the tests attach an `XDP_PASS` program to the host ends that receive them.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use translator_tests::{
    CLIENT_V6, GATEWAY_V4, GATEWAY_V6, Gateway, GatewayConfig, HttpServer, NetNs, SERVER_V4,
    StaticMapping, Stats, TcpEcho, Topology, UdpEcho, XdpPass, describe_sessions, nat64, pattern,
    same_bytes, server_via_prefix, stats_delta,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the one-test-at-a-time lock and checks the prerequisites.
fn prepare() -> Result<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    translator_tests::require_root()?;
    translator_tests::translator_bin()?;
    for tool in ["traceroute", "tracepath", "curl", "ping", "ethtool"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        ensure!(found, "`{tool}` is not installed (PATH has no {tool})");
    }
    Ok(guard)
}

// ------------------------------------------------------------------------------------------------
// A topology with an IPv4 router between the gateway and the server.

/// The router's address on the gateway's link.
const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The server behind the router.
const FAR_SERVER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

/// ```text
///  client ns             gateway ns               router ns                  server ns
///  c0 2001:db8:1::2 ---- g6 2001:db8:1::1
///                        g4 192.0.2.1/24 -------- r0 192.0.2.254/24
///                                                 r1 203.0.113.1/24 -------- s0 203.0.113.2/24
/// ```
/// The MTU of the gateway-router link and of the router-server link can be chosen.
struct RouterTopology {
    /// Dropped first, while the namespaces still exist.
    _pass: Vec<XdpPass>,
    client: NetNs,
    gateway: NetNs,
    router: NetNs,
    server: NetNs,
}

/// `ethtool -K dev tx off`, then GRO off and on (the device must be up): full checksums from the
/// hosts, and NAPI on devices that receive redirected frames (see tests/src/topology.rs).
fn offloads(ns: &NetNs, dev: &str) -> Result<()> {
    ns.run(&["ethtool", "-K", dev, "tx", "off"])?;
    ns.run(&["ethtool", "-K", dev, "gro", "off"])?;
    ns.run(&["ethtool", "-K", dev, "gro", "on"])?;
    Ok(())
}

/// No ICMP rate limit in a namespace (traceroute/tracepath probes come in bursts).
fn no_icmp_ratelimit(ns: &NetNs) -> Result<()> {
    ns.sysctl("net.ipv4.icmp_ratelimit", "0")?;
    // Per namespace only on newer kernels: best effort.
    let _ = ns.sysctl("net.ipv4.icmp_msgs_per_sec", "100000");
    Ok(())
}

impl RouterTopology {
    fn build(tag: &str, gw_router_mtu: u32, router_server_mtu: u32) -> Result<Self> {
        let mut t = Self {
            _pass: Vec::new(),
            client: NetNs::new(&format!("{tag}-cli"))?,
            gateway: NetNs::new(&format!("{tag}-gw"))?,
            router: NetNs::new(&format!("{tag}-rtr"))?,
            server: NetNs::new(&format!("{tag}-srv"))?,
        };
        t.wire(gw_router_mtu, router_server_mtu)
            .with_context(|| format!("building the router topology {tag}"))?;
        Ok(t)
    }

    fn wire(&mut self, gw_router_mtu: u32, router_server_mtu: u32) -> Result<()> {
        let (c, g, r, s) = (&self.client, &self.gateway, &self.router, &self.server);
        let (m1, m2) = (gw_router_mtu.to_string(), router_server_mtu.to_string());
        g.ip(&[
            "link",
            "add",
            "g6",
            "type",
            "veth",
            "peer",
            "name",
            "c0",
            "netns",
            c.name(),
        ])?;
        g.ip(&[
            "link",
            "add",
            "g4",
            "type",
            "veth",
            "peer",
            "name",
            "r0",
            "netns",
            r.name(),
        ])?;
        r.ip(&[
            "link",
            "add",
            "r1",
            "type",
            "veth",
            "peer",
            "name",
            "s0",
            "netns",
            s.name(),
        ])?;

        g.ip(&["link", "set", "g4", "mtu", &m1])?;
        for dev in ["g6", "g4"] {
            g.ip(&["link", "set", dev, "up"])?;
            g.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
        }
        g.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "g6", "nodad"])?;
        g.ip(&["addr", "add", "192.0.2.1/24", "dev", "g4"])?;
        g.ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.254"])?;
        g.sysctl("net.ipv4.ip_forward", "1")?;
        g.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        g.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        g.sysctl("net.ipv4.conf.default.rp_filter", "0")?;

        c.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        c.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "c0", "nodad"])?;
        c.ip(&["link", "set", "c0", "up"])?;
        offloads(c, "c0")?;
        c.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::1",
            "dev",
            "c0",
        ])?;

        r.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        r.sysctl("net.ipv4.ip_forward", "1")?;
        no_icmp_ratelimit(r)?;
        r.ip(&["link", "set", "r0", "mtu", &m1])?;
        r.ip(&["link", "set", "r1", "mtu", &m2])?;
        r.ip(&["addr", "add", "192.0.2.254/24", "dev", "r0"])?;
        r.ip(&["addr", "add", "203.0.113.1/24", "dev", "r1"])?;
        for dev in ["r0", "r1"] {
            r.ip(&["link", "set", dev, "up"])?;
            // r0 receives the frames the gateway's XDP program redirects to g4.
            offloads(r, dev)?;
        }

        s.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        no_icmp_ratelimit(s)?;
        s.ip(&["link", "set", "s0", "mtu", &m2])?;
        s.ip(&["addr", "add", "203.0.113.2/24", "dev", "s0"])?;
        s.ip(&["link", "set", "s0", "up"])?;
        offloads(s, "s0")?;
        s.ip(&["route", "add", "default", "via", "203.0.113.1", "dev", "s0"])?;

        // The gateway's own ICMPv6 errors leave g6 with XDP_TX, and a veth wakes its peer for
        // XDP_TX frames only when the peer runs an XDP program.
        let pass = XdpPass::attach(c, "c0")?;
        self._pass.push(pass);

        // Neighbours resolved once, so the first translated packets find them.
        let _ = c.try_run(
            &["ping", "-6", "-c", "1", "-W", "2", "2001:db8:1::1"],
            Duration::from_secs(10),
        );
        let _ = r.try_run(
            &["ping", "-c", "1", "-W", "2", "192.0.2.1"],
            Duration::from_secs(10),
        );
        let _ = s.try_run(
            &["ping", "-c", "1", "-W", "2", "203.0.113.1"],
            Duration::from_secs(10),
        );
        Ok(())
    }

    fn config(&self) -> GatewayConfig {
        GatewayConfig::new("g6", "g4")
    }

    fn config_in(&self, mode: &str) -> GatewayConfig {
        let mut c = self.config();
        c.mode = Some(mode.to_owned());
        c
    }
}

/// ```text
///  client ns               router6 ns                      gateway ns              server ns
///  c0 2001:db8:1::2/64 --- rc 2001:db8:1::1/64
///                          r6 2001:db8:2::2/64 ----------- g6 2001:db8:2::1/64
///                                                          g4 192.0.2.1/24 ------- s0 192.0.2.2/24
/// ```
/// An IPv6 router between the client and the gateway; the client's link has a chosen MTU.
struct V6RouterTopology {
    /// Dropped first, while the namespaces still exist.
    _pass: Vec<XdpPass>,
    client: NetNs,
    router: NetNs,
    gateway: NetNs,
    server: NetNs,
}

impl V6RouterTopology {
    fn build(tag: &str, client_link_mtu: u32) -> Result<Self> {
        let mut t = Self {
            _pass: Vec::new(),
            client: NetNs::new(&format!("{tag}-cli"))?,
            router: NetNs::new(&format!("{tag}-rt6"))?,
            gateway: NetNs::new(&format!("{tag}-gw"))?,
            server: NetNs::new(&format!("{tag}-srv"))?,
        };
        t.wire(client_link_mtu)
            .with_context(|| format!("building the IPv6 router topology {tag}"))?;
        Ok(t)
    }

    fn wire(&mut self, client_link_mtu: u32) -> Result<()> {
        let (c, r, g, s) = (&self.client, &self.router, &self.gateway, &self.server);
        let mtu = client_link_mtu.to_string();
        r.ip(&[
            "link",
            "add",
            "rc",
            "type",
            "veth",
            "peer",
            "name",
            "c0",
            "netns",
            c.name(),
        ])?;
        g.ip(&[
            "link",
            "add",
            "g6",
            "type",
            "veth",
            "peer",
            "name",
            "r6",
            "netns",
            r.name(),
        ])?;
        g.ip(&[
            "link",
            "add",
            "g4",
            "type",
            "veth",
            "peer",
            "name",
            "s0",
            "netns",
            s.name(),
        ])?;

        for dev in ["g6", "g4"] {
            g.ip(&["link", "set", dev, "up"])?;
            g.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
        }
        g.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        g.ip(&["addr", "add", "2001:db8:2::1/64", "dev", "g6", "nodad"])?;
        g.ip(&["addr", "add", "192.0.2.1/24", "dev", "g4"])?;
        g.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:1::/64",
            "via",
            "2001:db8:2::2",
        ])?;
        g.sysctl("net.ipv4.ip_forward", "1")?;
        g.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        g.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        g.sysctl("net.ipv4.conf.default.rp_filter", "0")?;

        r.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        r.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        r.sysctl("net.ipv6.icmp.ratelimit", "0")?;
        r.ip(&["link", "set", "rc", "mtu", &mtu])?;
        r.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "rc", "nodad"])?;
        r.ip(&["addr", "add", "2001:db8:2::2/64", "dev", "r6", "nodad"])?;
        for dev in ["rc", "r6"] {
            r.ip(&["link", "set", dev, "up"])?;
            offloads(r, dev)?;
        }
        r.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:2::1",
            "dev",
            "r6",
        ])?;

        c.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        c.ip(&["link", "set", "c0", "mtu", &mtu])?;
        c.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "c0", "nodad"])?;
        c.ip(&["link", "set", "c0", "up"])?;
        offloads(c, "c0")?;
        c.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::1",
            "dev",
            "c0",
        ])?;

        s.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        no_icmp_ratelimit(s)?;
        s.ip(&["addr", "add", "192.0.2.2/24", "dev", "s0"])?;
        s.ip(&["link", "set", "s0", "up"])?;
        offloads(s, "s0")?;
        s.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", "s0"])?;

        // The gateway's own errors leave with XDP_TX: towards the router on g6, towards the
        // server on g4.
        let pass = XdpPass::attach(r, "r6")?;
        self._pass.push(pass);
        let pass = XdpPass::attach(s, "s0")?;
        self._pass.push(pass);

        let _ = r.try_run(
            &["ping", "-6", "-c", "1", "-W", "2", "2001:db8:2::1"],
            Duration::from_secs(10),
        );
        let _ = c.try_run(
            &["ping", "-6", "-c", "1", "-W", "2", "2001:db8:2::1"],
            Duration::from_secs(10),
        );
        let _ = s.try_run(
            &["ping", "-c", "1", "-W", "2", "192.0.2.1"],
            Duration::from_secs(10),
        );
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Helpers.

/// An `XDP_PASS` program on the client's `c0`: the gateway sends its own ICMPv6 errors and
/// hairpinned packets back out of g6 with `XDP_TX`, and a veth wakes its peer for `XDP_TX`
/// frames only when the peer runs an XDP program (the two-armed harness topology gives the
/// client none). Keep it alive for the whole test, declared after the topology.
fn client_xdp_pass(topo: &Topology) -> Result<XdpPass> {
    XdpPass::attach(&topo.client, "c0")
}

/// The controller's slow-path counters (`stats --json`, section `slow_path`), for messages.
/// The controller publishes them on its expiry tick (every 10 s with the default timeouts).
fn slow_path_counters(gw: &Gateway) -> String {
    std::thread::sleep(Duration::from_secs(11));
    gw.cli(&["stats", "--json"])
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v.get("slow_path").map(ToString::to_string))
        .unwrap_or_else(|| "(no slow_path section)".to_owned())
}

/// One hop of traceroute's output: its number and the address that answered (None for `*`).
type Hop = (u32, Option<String>);

/// Parses `traceroute -n -q 1` output: ` 1  2001:db8:1::1  0.050 ms` per hop.
fn traceroute_hops(text: &str) -> Vec<Hop> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let hop: u32 = words.next()?.parse().ok()?;
            let addr = words.next().filter(|w| *w != "*").map(str::to_owned);
            Some((hop, addr))
        })
        .collect()
}

/// Runs traceroute (`extra` selects the method) from `ns` to `target` and returns its hops.
fn traceroute(ns: &NetNs, extra: &[&str], target: Ipv6Addr) -> Result<(Vec<Hop>, String)> {
    let target = target.to_string();
    let mut argv = vec!["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5"];
    argv.extend_from_slice(extra);
    argv.push(&target);
    let out = ns.try_run(&argv, Duration::from_secs(30))?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    ensure!(
        out.status.success(),
        "`{}` failed with {}:\n{text}",
        out.command,
        out.status
    );
    Ok((traceroute_hops(&out.stdout_str()), text))
}

/// Errors unless traceroute showed exactly `want` (hop 1, 2, ... in order).
fn expect_hops(what: &str, got: &[Hop], want: &[Ipv6Addr], text: &str) -> Result<()> {
    let want: Vec<Hop> = want
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u32 + 1, Some(a.to_string())))
        .collect();
    ensure!(
        got == want.as_slice(),
        "{what}: expected hops {want:?}, got {got:?}; output:\n{text}"
    );
    Ok(())
}

/// `tracepath -n` from `ns` to `target`: (the pmtu of its "Resume" line, whether it said
/// "reached", the output).
fn tracepath(ns: &NetNs, target: Ipv6Addr) -> Result<(Option<u32>, bool, String)> {
    let target = target.to_string();
    let out = ns.try_run(
        &["tracepath", "-n", "-m", "6", &target],
        Duration::from_secs(40),
    )?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    let pmtu = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Resume: pmtu "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    Ok((pmtu, text.contains("reached"), text))
}

/// `ping -c COUNT` from `ns` with extra options; errors unless every echo is answered.
fn ping_all(ns: &NetNs, extra: &[&str], target: &str, count: u32) -> Result<String> {
    let count_s = count.to_string();
    let mut argv = vec!["ping", "-c", &count_s, "-i", "0.2", "-W", "2"];
    argv.extend_from_slice(extra);
    argv.push(target);
    let out = ns.try_run(&argv, Duration::from_secs(30))?;
    let text = out.stdout_str();
    let want = format!("{count} packets transmitted, {count} received");
    ensure!(
        out.status.success() && text.contains(&want),
        "`{}`: expected `{want}`, got ({}):\n{text}{}",
        out.command,
        out.status,
        out.stderr_str()
    );
    Ok(text)
}

/// Connects from `ns` to `to` (binding `from` if given), sends `payload`, shuts down the sending
/// side and returns everything the peer sent back.
fn tcp_exchange(
    ns: &NetNs,
    from: Option<SocketAddr>,
    to: SocketAddr,
    payload: &[u8],
) -> Result<Vec<u8>> {
    ns.in_ns(|| -> std::io::Result<Vec<u8>> {
        let mut c = match from {
            None => TcpStream::connect_timeout(&to, Duration::from_secs(5))?,
            Some(local) => {
                // std has no bind-then-connect for TCP: use a raw socket for the bind.
                connect_from(local, to)?
            }
        };
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        c.set_write_timeout(Some(Duration::from_secs(20)))?;
        c.write_all(payload)?;
        c.shutdown(std::net::Shutdown::Write)?;
        let mut back = Vec::new();
        c.read_to_end(&mut back)?;
        Ok(back)
    })?
    .with_context(|| format!("TCP exchange with {to} from {}", ns.name()))
}

/// A TCP connection from `local` (IPv6) to `to`, with a 5 s connect timeout.
fn connect_from(local: SocketAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let (SocketAddr::V6(local), SocketAddr::V6(to)) = (local, to) else {
        return Err(std::io::Error::other("connect_from handles IPv6 only"));
    };
    let sockaddr = |a: std::net::SocketAddrV6| libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: a.port().to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: a.ip().octets(),
        },
        sin6_scope_id: 0,
    };
    // SAFETY: plain socket(2); the descriptor is owned by the TcpStream below at once.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    let l = sockaddr(local);
    // SAFETY: `l` is a valid sockaddr_in6 of `len` bytes.
    if unsafe { libc::bind(fd, (&raw const l).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A blocking connect bounded by a send timeout (Linux applies SO_SNDTIMEO to connect).
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let t = sockaddr(to);
    // SAFETY: `t` is a valid sockaddr_in6 of `len` bytes.
    if unsafe { libc::connect(fd, (&raw const t).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

/// Downloads `url` with curl in `ns` and returns the body.
fn curl(ns: &NetNs, url: &str) -> Result<Vec<u8>> {
    let out = ns.run_timeout(
        &[
            "curl",
            "-g",
            "-sS",
            "--fail",
            "--max-time",
            "25",
            "-o",
            "-",
            url,
        ],
        Duration::from_secs(30),
    )?;
    Ok(out.stdout)
}

// ------------------------------------------------------------------------------------------------
// 1. traceroute.

#[test]
fn traceroute_udp_icmp_and_tcp_show_gateway_then_server() -> Result<()> {
    traceroute_udp_icmp_and_tcp_show_gateway_then_server_in("native")
}

/// [`traceroute_udp_icmp_and_tcp_show_gateway_then_server`] with the gateway in tc mode.
#[test]
fn traceroute_udp_icmp_and_tcp_show_gateway_then_server_tc() -> Result<()> {
    traceroute_udp_icmp_and_tcp_show_gateway_then_server_in("tc")
}

fn traceroute_udp_icmp_and_tcp_show_gateway_then_server_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("trc")?;
    let _pass = client_xdp_pass(&topo)?;
    no_icmp_ratelimit(&topo.server)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let server = server_via_prefix();

    let before = gw.stats()?;
    let (hops, text) = traceroute(&topo.client, &[], server)?;
    expect_hops("traceroute (UDP)", &hops, &[GATEWAY_V6, server], &text)?;
    let after_udp = gw.stats()?;
    // Hop 1: the gateway's own hop-limit exceeded; hop 2: the server's port unreachable,
    // translated with its quoted UDP probe.
    ensure!(
        after_udp.event("icmp-error-sent") > before.event("icmp-error-sent")
            && after_udp.event("icmp-error-translated") > before.event("icmp-error-translated")
            && after_udp.drop_count("hop-limit-exceeded") > before.drop_count("hop-limit-exceeded"),
        "traceroute (UDP) should count a sent and a translated ICMP error and a hop-limit drop: {}",
        stats_delta(&before, &after_udp)
    );

    let (hops, text) = traceroute(&topo.client, &["-I"], server)?;
    expect_hops("traceroute -I (ICMP)", &hops, &[GATEWAY_V6, server], &text)?;
    let after_icmp = gw.stats()?;
    ensure!(
        after_icmp.event("icmp-error-sent") > after_udp.event("icmp-error-sent"),
        "traceroute -I should make the gateway send a time exceeded: {}",
        stats_delta(&after_udp, &after_icmp)
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions
            .iter()
            .any(|s| s.protocol == "icmp" && s.client == CLIENT_V6 && s.remote == SERVER_V4)
            && sessions
                .iter()
                .any(|s| s.protocol == "udp" && s.client == CLIENT_V6 && s.remote == SERVER_V4),
        "expected UDP and ICMP sessions to {SERVER_V4} from the probes; {}",
        describe_sessions(&sessions)
    );

    // TCP SYN probes (`-T`, port 80, nobody listening): the server's RST ends the trace.
    let (hops, text) = traceroute(&topo.client, &["-T", "-p", "80"], server)?;
    expect_hops("traceroute -T (TCP)", &hops, &[GATEWAY_V6, server], &text)?;
    Ok(())
}

/// The same through a one-armed gateway: its errors and translations both leave g0 with
/// `XDP_TX`.
#[test]
fn traceroute_through_a_one_armed_gateway() -> Result<()> {
    traceroute_through_a_one_armed_gateway_in("native")
}

/// [`traceroute_through_a_one_armed_gateway`] with the gateway in tc mode.
#[test]
fn traceroute_through_a_one_armed_gateway_tc() -> Result<()> {
    traceroute_through_a_one_armed_gateway_in("tc")
}

fn traceroute_through_a_one_armed_gateway_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::one_armed("tr1a")?;
    no_icmp_ratelimit(&topo.server)?;
    let _gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let server = server_via_prefix();
    for (method, extra) in [
        ("UDP", &[][..]),
        ("ICMP", &["-I"][..]),
        ("TCP", &["-T", "-p", "80"][..]),
    ] {
        let (hops, text) = traceroute(&topo.client, extra, server)?;
        expect_hops(
            &format!("traceroute ({method}), one-armed"),
            &hops,
            &[GATEWAY_V6, server],
            &text,
        )?;
    }
    Ok(())
}

#[test]
fn traceroute_through_an_ipv4_router_shows_its_translated_address() -> Result<()> {
    let _lock = prepare()?;
    let topo = RouterTopology::build("trr", 1500, 1500)?;
    let gw = Gateway::start(&topo.gateway, topo.config())?;
    let server = nat64(FAR_SERVER_V4);
    // The router's ICMPv4 time exceeded comes from 192.0.2.254 and reaches the client from
    // the prefix: 2001:db8:64::c000:2fe.
    let router = nat64(ROUTER_V4);

    for (method, extra) in [
        ("UDP", &[][..]),
        ("ICMP", &["-I"][..]),
        ("TCP", &["-T", "-p", "80"][..]),
    ] {
        let before = gw.stats()?;
        let (hops, text) = traceroute(&topo.client, extra, server)?;
        expect_hops(
            &format!("traceroute ({method}) via a router"),
            &hops,
            &[GATEWAY_V6, router, server],
            &text,
        )?;
        let after = gw.stats()?;
        ensure!(
            after.event("icmp-error-translated") > before.event("icmp-error-translated")
                && after.event("icmp-error-sent") > before.event("icmp-error-sent"),
            "traceroute ({method}) via a router should count sent and translated ICMP errors: {}",
            stats_delta(&before, &after)
        );
    }
    Ok(())
}

/// The other direction: the IPv4 server traces UDP to a static mapping (192.0.2.1:8080 ->
/// [2001:db8:1::2]:8080, nobody listening). Hop 1: the probe's TTL expires at the gateway, which
/// answers time exceeded from the pool address itself (the kernel must not see the probe: it
/// would answer "port unreachable" for its own 192.0.2.1 and end the trace at hop 1). Hop 2: the
/// client's ICMPv6 port unreachable, translated, ends the trace.
#[test]
fn traceroute_from_the_ipv4_side_to_a_static_mapping() -> Result<()> {
    traceroute_from_the_ipv4_side_to_a_static_mapping_in("native")
}

/// [`traceroute_from_the_ipv4_side_to_a_static_mapping`] with the gateway in tc mode.
#[test]
fn traceroute_from_the_ipv4_side_to_a_static_mapping_tc() -> Result<()> {
    traceroute_from_the_ipv4_side_to_a_static_mapping_in("tc")
}

fn traceroute_from_the_ipv4_side_to_a_static_mapping_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("trv4")?;
    let _pass = client_xdp_pass(&topo)?;
    // The gateway's ICMPv4 errors leave g4 with XDP_TX.
    let _server_pass = XdpPass::attach(&topo.server, "s0")?;
    let mut config = topo.config_in(mode);
    config.statics.push(StaticMapping {
        protocol: "udp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 8080,
        ipv4: GATEWAY_V4,
        ipv4_port: 8080,
    });
    let gw = Gateway::start(&topo.gateway, config)?;
    let before = gw.stats()?;
    let out = topo.server.try_run(
        &[
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "1",
            "-m",
            "4",
            "-U",
            "-p",
            "8080",
            "192.0.2.1",
        ],
        Duration::from_secs(30),
    )?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    let after = gw.stats()?;
    let hops = traceroute_hops(&out.stdout_str());
    let want: Vec<Hop> = vec![(1, Some("192.0.2.1".into())), (2, Some("192.0.2.1".into()))];
    ensure!(
        hops == want,
        "expected hops {want:?} (gateway time exceeded, then the client's port unreachable), \
         got {hops:?}; output:\n{text}\ngateway counters: {}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.drop_count("hop-limit-exceeded") > before.drop_count("hop-limit-exceeded")
            && after.event("icmp-error-sent") > before.event("icmp-error-sent")
            && after.event("icmp-error-translated") > before.event("icmp-error-translated"),
        "expected a TTL drop answered by the gateway and a translated port unreachable: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

/// RFC 6146 section 3.5.1.1: when no port can be had for a new flow, the gateway drops the
/// packet and answers ICMPv6 destination unreachable, address unreachable (code 3). One block
/// of 64 UDP ports and one block per client: flows are opened until one fails (at the 65th at
/// the latest), and that one must get the error, which a connected UDP socket with
/// IPV6_RECVERR reports as EHOSTUNREACH.
#[test]
fn no_port_left_answers_address_unreachable() -> Result<()> {
    const PORTS: usize = 64;
    let _lock = prepare()?;
    let topo = Topology::two_armed("nopo")?;
    let _pass = client_xdp_pass(&topo)?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7700".parse()?)?;
    let mut config = topo.config();
    config.udp_ports = Some("2048-2111".into());
    config.block_size = Some(64);
    config.max_blocks_per_client = Some(1);
    let gw = Gateway::start(&topo.gateway, config)?;
    let server: SocketAddr = (server_via_prefix(), 7700).into();

    let socks = topo
        .client
        .in_ns(|| -> std::io::Result<Vec<UdpSocket>> {
            (0..=PORTS)
                .map(|_| {
                    let s = UdpSocket::bind("[::]:0")?;
                    s.connect(server)?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    set_int_option(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
                    Ok(s)
                })
                .collect()
        })?
        .context("UDP sockets in the client")?;
    let mut buf = [0u8; 64];
    let mut answered = 0;
    let mut failure = None;
    for (i, s) in socks.iter().enumerate() {
        let before = gw.stats()?;
        let msg = format!("flow {i}");
        s.send(msg.as_bytes())?;
        match s.recv(&mut buf) {
            Ok(n) => {
                same_bytes("echo", &buf[..n], msg.as_bytes())?;
                answered += 1;
            }
            Err(e) => {
                failure = Some((i, e, before, gw.stats()?));
                break;
            }
        }
    }
    let Some((i, err, before, after)) = failure else {
        bail!(
            "all {} flows were answered although the client has one block of {PORTS} ports",
            PORTS + 1
        );
    };
    ensure!(
        err.raw_os_error() == Some(libc::EHOSTUNREACH),
        "flow {i} (after {answered} answered flows) should fail with EHOSTUNREACH (ICMPv6 \
         address unreachable), got {err}; gateway counters: {}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.drop_count("client-limit") > before.drop_count("client-limit")
            && after.event("icmp-error-sent") > before.event("icmp-error-sent"),
        "flow {i} should be a client-limit drop answered with an ICMP error: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

/// `setsockopt(level, name, int)`.
fn set_int_option(
    sock: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setsockopt(2) with a valid descriptor and a pointer to an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Traceroute from a client behind an IPv6 router: the router, the gateway (its errors
/// sourced from its IPv6-side address 2001:db8:2::1, routed back through the router), the
/// server.
#[test]
fn traceroute_from_behind_an_ipv6_router() -> Result<()> {
    let _lock = prepare()?;
    let topo = V6RouterTopology::build("tr6c", 1500)?;
    let _gw = Gateway::start(&topo.gateway, GatewayConfig::new("g6", "g4"))?;
    let server = server_via_prefix();
    let router = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    let gateway = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
    for (method, extra) in [
        ("UDP", &[][..]),
        ("ICMP", &["-I"][..]),
        ("TCP", &["-T", "-p", "80"][..]),
    ] {
        let (hops, text) = traceroute(&topo.client, extra, server)?;
        expect_hops(
            &format!("traceroute ({method}) behind an IPv6 router"),
            &hops,
            &[router, gateway, server],
            &text,
        )?;
    }
    Ok(())
}

/// Traceroute from the IPv4 side through an IPv6 router: the router's ICMPv6 time exceeded
/// comes from an address outside the prefix, so the gateway translates it with its own IPv4
/// (pool) address as the source (RFC 6146 / RFC 6791): hop 2 must answer, not stay `*`.
#[test]
fn traceroute_from_the_ipv4_side_through_an_ipv6_router() -> Result<()> {
    let _lock = prepare()?;
    let topo = V6RouterTopology::build("trr6", 1500)?;
    let mut config = GatewayConfig::new("g6", "g4");
    config.statics.push(StaticMapping {
        protocol: "udp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 8080,
        ipv4: GATEWAY_V4,
        ipv4_port: 8080,
    });
    let gw = Gateway::start(&topo.gateway, config)?;
    let before = gw.stats()?;
    let out = topo.server.try_run(
        &[
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "1",
            "-m",
            "5",
            "-U",
            "-p",
            "8080",
            "192.0.2.1",
        ],
        Duration::from_secs(30),
    )?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    let after = gw.stats()?;
    let hops = traceroute_hops(&out.stdout_str());
    let pool = Some("192.0.2.1".to_owned());
    let want: Vec<Hop> = vec![(1, pool.clone()), (2, pool.clone()), (3, pool)];
    ensure!(
        hops == want,
        "expected hops {want:?} (gateway, router's time exceeded translated, client's port \
         unreachable), got {hops:?}; output:\n{text}\ngateway counters: {}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.event("icmp-error-translated") >= before.event("icmp-error-translated") + 2,
        "expected the router's time exceeded and the client's port unreachable translated: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// 2. Path MTU discovery.

/// Makes the server advertise a TCP MSS of 1460 to `via_route` although its link MTU is lower,
/// so the client's first full-size segments do not fit and path MTU discovery has to work.
fn server_advertises_mss_1460(server: &NetNs, route: &[&str]) -> Result<()> {
    let mut args = vec!["route", "replace"];
    args.extend_from_slice(route);
    args.extend_from_slice(&["advmss", "1460"]);
    server.ip(&args)?;
    Ok(())
}

/// Forgets the path MTUs the client learnt (`ip -6 route flush cache`).
fn forget_pmtu(client: &NetNs) -> Result<()> {
    client.run(&["ip", "-6", "route", "flush", "cache"])?;
    Ok(())
}

/// A TCP upload of `size` bytes to an echo server, and the echo back, compared.
fn upload_and_echo(client: &NetNs, to: SocketAddr, size: usize, seed: u64) -> Result<()> {
    let payload = pattern(size, seed);
    let back = tcp_exchange(client, None, to, &payload)?;
    same_bytes("TCP echo across the smaller MTU", &back, &payload)
}

#[test]
fn pmtu_gateway_sends_packet_too_big_for_its_smaller_ipv4_link() -> Result<()> {
    pmtu_gateway_sends_packet_too_big_for_its_smaller_ipv4_link_in("native")
}

/// [`pmtu_gateway_sends_packet_too_big_for_its_smaller_ipv4_link`] with the gateway in tc mode.
#[test]
fn pmtu_gateway_sends_packet_too_big_for_its_smaller_ipv4_link_tc() -> Result<()> {
    pmtu_gateway_sends_packet_too_big_for_its_smaller_ipv4_link_in("tc")
}

fn pmtu_gateway_sends_packet_too_big_for_its_smaller_ipv4_link_in(mode: &str) -> Result<()> {
    const SIZE: usize = 4 * 1024 * 1024;
    let _lock = prepare()?;
    let topo = Topology::two_armed("pmtu")?;
    let _pass = client_xdp_pass(&topo)?;
    topo.gateway.ip(&["link", "set", "g4", "mtu", "1400"])?;
    topo.server.ip(&["link", "set", "s0", "mtu", "1400"])?;
    no_icmp_ratelimit(&topo.server)?;
    server_advertises_mss_1460(
        &topo.server,
        &["192.0.2.0/24", "dev", "s0", "src", "192.0.2.2"],
    )?;
    let http = HttpServer::start(&topo.server, 80)?;
    let body = pattern(SIZE, 21);
    http.add_file("big.bin", &body)?;
    let echo = TcpEcho::start(&topo.server, "0.0.0.0:9000".parse()?)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let server = server_via_prefix();

    // (a) tracepath: the 1500-byte probe becomes a 1480-byte IPv4 packet that does not fit g4;
    // the gateway answers "packet too big" with 1400 + 20.
    let before = gw.stats()?;
    let (pmtu, reached, text) = tracepath(&topo.client, server)?;
    let after = gw.stats()?;
    ensure!(
        pmtu == Some(1420) && reached,
        "tracepath should reach {server} with pmtu 1420, got pmtu {pmtu:?} (reached: {reached}):\n{text}"
    );
    ensure!(
        text.contains(&format!("{GATEWAY_V6}")),
        "tracepath should show the gateway {GATEWAY_V6} as a hop:\n{text}"
    );
    ensure!(
        after.drop_count("mtu-exceeded") > before.drop_count("mtu-exceeded")
            && after.event("icmp-error-sent") > before.event("icmp-error-sent"),
        "the oversized probe should be counted as mtu-exceeded and answered: {}",
        stats_delta(&before, &after)
    );

    // (b) A large TCP transfer each way completes intact. Forget the PMTU tracepath learnt, so
    // the upload has to go through packet too big again.
    forget_pmtu(&topo.client)?;
    let before = gw.stats()?;
    upload_and_echo(
        &topo.client,
        SocketAddr::from((server, 9000)),
        1024 * 1024,
        5,
    )?;
    let after = gw.stats()?;
    ensure!(
        echo.seen().len() == 1,
        "the echo server saw {} connections, expected 1",
        echo.seen().len()
    );
    let got = curl(&topo.client, &format!("http://[{server}]:80/big.bin"))?;
    same_bytes("big.bin across the MTU-1400 link", &got, &body)?;
    ensure!(
        after.drop_count("mtu-exceeded") > before.drop_count("mtu-exceeded")
            && after.event("icmp-error-sent") > before.event("icmp-error-sent"),
        "the upload's full-size segments should meet the gateway's packet too big: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

#[test]
fn pmtu_router_fragmentation_needed_is_translated_to_packet_too_big() -> Result<()> {
    pmtu_router_fragmentation_needed_is_translated_to_packet_too_big_in("native")
}

/// [`pmtu_router_fragmentation_needed_is_translated_to_packet_too_big`] with the gateway in tc mode.
#[test]
fn pmtu_router_fragmentation_needed_is_translated_to_packet_too_big_tc() -> Result<()> {
    pmtu_router_fragmentation_needed_is_translated_to_packet_too_big_in("tc")
}

fn pmtu_router_fragmentation_needed_is_translated_to_packet_too_big_in(mode: &str) -> Result<()> {
    const SIZE: usize = 4 * 1024 * 1024;
    let _lock = prepare()?;
    let topo = RouterTopology::build("pmtr", 1500, 1400)?;
    server_advertises_mss_1460(
        &topo.server,
        &["default", "via", "203.0.113.1", "dev", "s0"],
    )?;
    let http = HttpServer::start(&topo.server, 80)?;
    let body = pattern(SIZE, 22);
    http.add_file("big.bin", &body)?;
    let _echo = TcpEcho::start(&topo.server, "0.0.0.0:9000".parse()?)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let server = nat64(FAR_SERVER_V4);

    // The 1480-byte translated probe fits g4 but not the router's r1: the router's ICMPv4
    // "fragmentation needed" (MTU 1400) comes back to the pool address and the gateway turns it
    // into "packet too big" (MTU 1420) from 2001:db8:64::c000:2fe.
    let before = gw.stats()?;
    let (pmtu, reached, text) = tracepath(&topo.client, server)?;
    let after = gw.stats()?;
    ensure!(
        pmtu == Some(1420) && reached,
        "tracepath should reach {server} with pmtu 1420, got pmtu {pmtu:?} (reached: {reached}):\n{text}"
    );
    ensure!(
        text.contains(&nat64(ROUTER_V4).to_string()),
        "tracepath should show the router as {}:\n{text}",
        nat64(ROUTER_V4)
    );
    ensure!(
        after.event("icmp-error-translated") > before.event("icmp-error-translated"),
        "the router's errors should be counted as translated: {}",
        stats_delta(&before, &after)
    );

    // ping with DF and a full-size packet gets the translated "packet too big" back.
    forget_pmtu(&topo.client)?;
    let out = topo.client.try_run(
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.3",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "1452",
            &server.to_string(),
        ],
        Duration::from_secs(15),
    )?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    ensure!(
        text.contains("mtu=1420") || text.contains("mtu = 1420"),
        "a 1500-byte ping with DF should report the translated MTU 1420:\n{text}"
    );

    // Large TCP transfers both ways.
    forget_pmtu(&topo.client)?;
    let before = gw.stats()?;
    upload_and_echo(
        &topo.client,
        SocketAddr::from((server, 9000)),
        1024 * 1024,
        6,
    )?;
    let after = gw.stats()?;
    ensure!(
        after.event("icmp-error-translated") > before.event("icmp-error-translated"),
        "the upload's full-size segments should meet the router's fragmentation needed, \
         translated: {}",
        stats_delta(&before, &after)
    );
    let got = curl(&topo.client, &format!("http://[{server}]:80/big.bin"))?;
    same_bytes("big.bin across the router's MTU-1400 link", &got, &body)?;
    Ok(())
}

/// An IPv4 link below 1280 - 20: the router reports MTU 1000, which the gateway must not pass
/// on as is (IPv6 never goes below 1280): the client learns 1280, and its 1280-byte packets
/// become 1260-byte IPv4 packets without DF (RFC 7915 section 5.1), which the router fragments.
#[test]
fn pmtu_below_the_ipv6_minimum_on_the_ipv4_side() -> Result<()> {
    let _lock = prepare()?;
    let topo = RouterTopology::build("pmt1k", 1500, 1000)?;
    server_advertises_mss_1460(
        &topo.server,
        &["default", "via", "203.0.113.1", "dev", "s0"],
    )?;
    let http = HttpServer::start(&topo.server, 80)?;
    let body = pattern(1024 * 1024, 23);
    http.add_file("big.bin", &body)?;
    let _echo = TcpEcho::start(&topo.server, "0.0.0.0:9000".parse()?)?;
    let gw = Gateway::start(&topo.gateway, topo.config())?;
    let server = nat64(FAR_SERVER_V4);

    let before = gw.stats()?;
    let (pmtu, reached, text) = tracepath(&topo.client, server)?;
    let after = gw.stats()?;
    ensure!(
        pmtu == Some(1280) && reached,
        "tracepath should reach {server} with pmtu 1280 (the router says 1000), got pmtu \
         {pmtu:?} (reached: {reached}):\n{text}\ngateway counters: {}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.event("icmp-error-translated") > before.event("icmp-error-translated"),
        "the router's fragmentation needed should be counted as translated: {}",
        stats_delta(&before, &after)
    );
    // A full 1280-byte IPv6 ping with "don't fragment" gets through (as a DF-clear IPv4 packet
    // that the router fragments).
    let out = ping_all(
        &topo.client,
        &["-M", "do", "-s", "1232"],
        &server.to_string(),
        3,
    )?;
    ensure!(
        out.contains("1240 bytes from"),
        "expected 1240-byte echo replies:\n{out}"
    );
    forget_pmtu(&topo.client)?;
    upload_and_echo(
        &topo.client,
        SocketAddr::from((server, 9000)),
        512 * 1024,
        8,
    )?;
    let got = curl(&topo.client, &format!("http://[{server}]:80/big.bin"))?;
    same_bytes("big.bin across the router's MTU-1000 link", &got, &body)?;
    Ok(())
}

/// An IPv6 router with a 1280-byte link in front of the client: its "packet too big" about the
/// server's full-size TCP segments is translated into "fragmentation needed" (MTU 1260) for the
/// server, which then sends smaller segments and the download completes.
#[test]
fn pmtu_ipv6_router_packet_too_big_is_translated_to_fragmentation_needed() -> Result<()> {
    pmtu_ipv6_router_packet_too_big_is_translated_to_fragmentation_needed_in("native")
}

/// [`pmtu_ipv6_router_packet_too_big_is_translated_to_fragmentation_needed`] with the gateway in tc mode.
#[test]
fn pmtu_ipv6_router_packet_too_big_is_translated_to_fragmentation_needed_tc() -> Result<()> {
    pmtu_ipv6_router_packet_too_big_is_translated_to_fragmentation_needed_in("tc")
}

fn pmtu_ipv6_router_packet_too_big_is_translated_to_fragmentation_needed_in(
    mode: &str,
) -> Result<()> {
    const SIZE: usize = 2 * 1024 * 1024;
    let _lock = prepare()?;
    let topo = V6RouterTopology::build("pmt6", 1280)?;
    // The client advertises MSS 1440 although its link is 1280, so the server's first segments
    // (1500 bytes once translated) do not fit the router's client link.
    topo.client.ip(&[
        "-6",
        "route",
        "replace",
        "default",
        "via",
        "2001:db8:1::1",
        "dev",
        "c0",
        "advmss",
        "1440",
    ])?;
    let http = HttpServer::start(&topo.server, 80)?;
    let body = pattern(SIZE, 24);
    http.add_file("big.bin", &body)?;
    let mut config = GatewayConfig::new("g6", "g4");
    config.mode = Some(mode.to_owned());
    let gw = Gateway::start(&topo.gateway, config)?;
    let server = server_via_prefix();

    let before = gw.stats()?;
    let got = curl(&topo.client, &format!("http://[{server}]:80/big.bin"))?;
    let after = gw.stats()?;
    same_bytes("big.bin behind the IPv6 router's 1280 link", &got, &body)?;
    ensure!(
        after.event("icmp-error-translated") > before.event("icmp-error-translated"),
        "the router's packet too big should be translated for the server: {}",
        stats_delta(&before, &after)
    );
    let route = topo
        .server
        .run(&["ip", "route", "get", "192.0.2.1"])?
        .stdout_str();
    ensure!(
        route.contains("mtu 1260"),
        "the server should have learnt path MTU 1260 (1280 - 20) towards the pool address:\n{route}"
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// 3. Fragments.

/// Errors unless fragments went through without a `fragment` drop, handled by the data plane
/// (`fragment-translated`) or handed to the slow path (`slow-path`).
fn expect_fragments_handled(before: &Stats, after: &Stats) -> Result<()> {
    let delta = stats_delta(before, after);
    eprintln!("fragments: {delta}");
    ensure!(
        after.drop_count("fragment") == before.drop_count("fragment"),
        "fragments were dropped: {delta}"
    );
    ensure!(
        after.event("fragment-translated") > before.event("fragment-translated")
            || after.event("slow-path") > before.event("slow-path"),
        "neither fragment-translated nor slow-path counted the fragments: {delta}"
    );
    Ok(())
}

#[test]
fn ping_3000_bytes_fragments_both_ways() -> Result<()> {
    ping_3000_bytes_fragments_both_ways_in("native")
}

/// [`ping_3000_bytes_fragments_both_ways`] with the gateway in tc mode.
#[test]
fn ping_3000_bytes_fragments_both_ways_tc() -> Result<()> {
    ping_3000_bytes_fragments_both_ways_in("tc")
}

fn ping_3000_bytes_fragments_both_ways_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("frgp")?;
    let _pass = client_xdp_pass(&topo)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let before = gw.stats()?;
    let text = ping_all(
        &topo.client,
        &["-s", "3000"],
        &server_via_prefix().to_string(),
        3,
    )?;
    ensure!(
        text.contains("3008 bytes from"),
        "replies should carry 3008 bytes of ICMPv6:\n{text}"
    );
    let after = gw.stats()?;
    expect_fragments_handled(&before, &after)?;
    Ok(())
}

/// The other way round: the IPv4 server pings the client through a static ICMP mapping
/// (identifier 2222 on the pool address, 1111 on the client), with 3000 bytes: IPv4 fragments
/// in, IPv6 fragments out, and the client's fragmented replies back.
#[test]
fn ping_3000_bytes_from_the_ipv4_side_through_a_static_icmp_mapping() -> Result<()> {
    const ID6: u16 = 1111;
    const ID4: u16 = 2222;
    let _lock = prepare()?;
    let topo = Topology::two_armed("frgs")?;
    let _pass = client_xdp_pass(&topo)?;
    let mut config = topo.config();
    config.statics.push(StaticMapping {
        protocol: "icmp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: ID6,
        ipv4: GATEWAY_V4,
        ipv4_port: ID4,
    });
    let gw = Gateway::start(&topo.gateway, config)?;
    let before = gw.stats()?;
    let text = ping_all(
        &topo.server,
        &["-e", &ID4.to_string(), "-s", "3000"],
        &GATEWAY_V4.to_string(),
        3,
    )?;
    // The client's replies come back with hop limit 64 - 1; the gateway's own kernel would
    // answer an echo to its address with TTL 64.
    let replies: Vec<&str> = text.lines().filter(|l| l.contains("bytes from")).collect();
    ensure!(
        replies.len() == 3
            && replies
                .iter()
                .all(|l| l.starts_with("3008 bytes from 192.0.2.1") && l.contains("ttl=63")),
        "expected three 3008-byte replies with ttl=63 (answered by the client, translated):\n{text}"
    );
    let after = gw.stats()?;
    expect_fragments_handled(&before, &after)?;
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "icmp"
            && s.client == CLIENT_V6
            && s.client_port == ID6
            && s.pool == GATEWAY_V4
            && s.pool_port == ID4
            && s.remote == SERVER_V4),
        "no ICMP session [{CLIENT_V6}] id {ID6} <- {SERVER_V4} via {GATEWAY_V4} id {ID4}; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

#[test]
fn udp_4000_byte_datagrams_both_ways() -> Result<()> {
    udp_4000_byte_datagrams_both_ways_in("native")
}

/// [`udp_4000_byte_datagrams_both_ways`] with the gateway in tc mode.
#[test]
fn udp_4000_byte_datagrams_both_ways_tc() -> Result<()> {
    udp_4000_byte_datagrams_both_ways_in("tc")
}

fn udp_4000_byte_datagrams_both_ways_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("frgu")?;
    let _pass = client_xdp_pass(&topo)?;
    let echo = UdpEcho::start(&topo.server, "0.0.0.0:7400".parse()?)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let server: SocketAddr = (server_via_prefix(), 7400).into();
    let before = gw.stats()?;

    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind("[::]:0"))?
        .context("binding the client's UDP socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = vec![0u8; 65536];
    for seed in 1..=3u64 {
        let payload = pattern(4000, seed);
        sock.send_to(&payload, server)?;
        let (n, from) = sock
            .recv_from(&mut buf)
            .with_context(|| format!("no echo of 4000-byte datagram #{seed} within 3 s"))?;
        ensure!(from == server, "echo came from {from}, expected {server}");
        same_bytes("4000-byte UDP echo", &buf[..n], &payload)?;
    }
    let seen = echo.seen();
    ensure!(
        seen.len() == 3 && seen.iter().all(|(_, d)| d.len() == 4000),
        "the server should receive three whole 4000-byte datagrams, got sizes {:?}",
        seen.iter().map(|(_, d)| d.len()).collect::<Vec<_>>()
    );
    let mapping = seen[0].0;
    ensure!(
        mapping.ip() == GATEWAY_V4,
        "the server saw {mapping}, expected the pool address {GATEWAY_V4}"
    );

    // The server sends a 4000-byte datagram of its own to the mapping (IPv4 fragments in,
    // IPv6 fragments out).
    let from_server = pattern(4000, 77);
    let port = topo
        .server
        .in_ns(|| -> std::io::Result<u16> {
            let s = UdpSocket::bind("0.0.0.0:7400").or_else(|_| UdpSocket::bind("0.0.0.0:0"))?;
            s.send_to(&from_server, mapping)?;
            Ok(s.local_addr()?.port())
        })?
        .context("sending 4000 bytes from the server")?;
    let (n, from) = sock
        .recv_from(&mut buf)
        .context("the server's 4000-byte datagram did not reach the client within 3 s")?;
    ensure!(
        from == SocketAddr::from((server_via_prefix(), port)),
        "server datagram came from {from}"
    );
    same_bytes(
        "server-initiated 4000-byte datagram",
        &buf[..n],
        &from_server,
    )?;
    let after = gw.stats()?;
    expect_fragments_handled(&before, &after)?;
    Ok(())
}

/// `IP_MTU_DISCOVER` on a socket: `IP_PMTUDISC_DO` (DF set) or `IP_PMTUDISC_DONT` (DF clear).
fn set_pmtudisc(sock: &UdpSocket, value: libc::c_int) -> std::io::Result<()> {
    set_int_option(sock, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, value)
}

/// `IP_MTU` of a connected socket: the path MTU the kernel knows for its destination.
fn path_mtu(sock: &UdpSocket) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd as _;
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) with a valid descriptor and a pointer to an int of the size given.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    u32::try_from(value).map_err(std::io::Error::other)
}

/// A counter of `/proc/net/snmp6` inside `ns` (e.g. `Ip6ReasmOKs`).
fn snmp6(ns: &NetNs, name: &str) -> Result<u64> {
    let text = ns.run(&["cat", "/proc/net/snmp6"])?.stdout_str();
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()?.parse().ok())?
        })
        .with_context(|| format!("no {name} in /proc/net/snmp6 of {}", ns.name()))
}

/// Client side of the two tests below: a UDP socket on [2001:db8:1::2]:8080, reachable from
/// the IPv4 side through the static mapping 192.0.2.1:8080.
fn static_udp_8080(tag: &str) -> Result<(Topology, GatewayConfig)> {
    let topo = Topology::two_armed(tag)?;
    let mut config = topo.config();
    config.statics.push(StaticMapping {
        protocol: "udp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 8080,
        ipv4: GATEWAY_V4,
        ipv4_port: 8080,
    });
    Ok((topo, config))
}

/// RFC 7915 section 4 (and issue 4): an IPv4 packet with DF clear whose translation is larger
/// than the configured lowest IPv6 MTU (`nat64.ipv6_mtu`, default 1280) is fragmented, so it
/// arrives even where the IPv6 path is 1280 bytes (the IPv4 sender, not doing path MTU
/// discovery, would never learn otherwise). The client must reassemble it.
#[test]
fn ipv4_df_clear_packet_over_1280_reaches_the_client_in_fragments() -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = static_udp_8080("dfc")?;
    let _pass = client_xdp_pass(&topo)?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind(SocketAddr::from((CLIENT_V6, 8080))))?
        .context("binding [2001:db8:1::2]:8080 in the client")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;

    let reasm_before = snmp6(&topo.client, "Ip6ReasmOKs")?;
    let before = gw.stats()?;
    let payload = pattern(1400, 55);
    topo.server
        .in_ns(|| -> std::io::Result<()> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            set_pmtudisc(&s, libc::IP_PMTUDISC_DONT)?;
            s.send_to(&payload, (GATEWAY_V4, 8080))?;
            Ok(())
        })?
        .context("sending 1400 bytes with DF clear from the server")?;
    let mut buf = vec![0u8; 4096];
    let (n, from) = sock
        .recv_from(&mut buf)
        .context("the 1428-byte DF-clear IPv4 packet did not reach the client within 3 s")?;
    same_bytes("DF-clear datagram", &buf[..n], &payload)?;
    ensure!(
        from.ip() == std::net::IpAddr::V6(server_via_prefix()),
        "the datagram came from {from}, expected {}",
        server_via_prefix()
    );
    let after = gw.stats()?;
    let reasm_after = snmp6(&topo.client, "Ip6ReasmOKs")?;
    ensure!(
        reasm_after > reasm_before,
        "the client received the 1448-byte translation in one piece (Ip6ReasmOKs {reasm_before} \
         -> {reasm_after}): a DF-clear IPv4 packet larger than nat64.ipv6_mtu (1280) should be \
         fragmented to fit 1280; gateway counters: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

/// The gateway's own "fragmentation needed" towards the IPv4 side: the client's link is 1280
/// bytes, a 1400-byte UDP datagram with DF from the server does not fit once translated (1448),
/// so the server must learn a path MTU of 1260 (1280 - 20) and its smaller datagram arrives.
#[test]
fn gateway_sends_fragmentation_needed_when_the_ipv6_link_is_smaller() -> Result<()> {
    gateway_sends_fragmentation_needed_when_the_ipv6_link_is_smaller_in("native")
}

/// [`gateway_sends_fragmentation_needed_when_the_ipv6_link_is_smaller`] with the gateway in tc mode.
#[test]
fn gateway_sends_fragmentation_needed_when_the_ipv6_link_is_smaller_tc() -> Result<()> {
    gateway_sends_fragmentation_needed_when_the_ipv6_link_is_smaller_in("tc")
}

fn gateway_sends_fragmentation_needed_when_the_ipv6_link_is_smaller_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = static_udp_8080("fneed")?;
    topo.gateway.ip(&["link", "set", "g6", "mtu", "1280"])?;
    topo.client.ip(&["link", "set", "c0", "mtu", "1280"])?;
    let _pass = client_xdp_pass(&topo)?;
    // The error leaves g4 with XDP_TX: s0 needs an XDP program to be woken for it.
    let _server_pass = XdpPass::attach(&topo.server, "s0")?;
    let mut config = config;
    config.mode = Some(mode.to_owned());
    let gw = Gateway::start(&topo.gateway, config)?;
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind(SocketAddr::from((CLIENT_V6, 8080))))?
        .context("binding [2001:db8:1::2]:8080 in the client")?;
    sock.set_read_timeout(Some(Duration::from_millis(1500)))?;

    let before = gw.stats()?;
    let big = pattern(1400, 56);
    let small = pattern(1232, 57);
    let (mtu, second_send) = topo
        .server
        .in_ns(|| -> std::io::Result<(u32, std::io::Result<usize>)> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            set_pmtudisc(&s, libc::IP_PMTUDISC_DO)?;
            s.connect((GATEWAY_V4, 8080))?;
            s.send(&big)?;
            let mut mtu = path_mtu(&s)?;
            for _ in 0..40 {
                if mtu < 1500 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                mtu = path_mtu(&s)?;
            }
            // A connected socket also gets the error itself (EMSGSIZE) as a pending socket
            // error: clear it, so that each send below reports only its own fate.
            let _ = s.take_error();
            let second = s.send(&big);
            let _ = s.take_error();
            s.send(&small)?;
            Ok((mtu, second))
        })?
        .context("sending from the server")?;
    let after = gw.stats()?;
    ensure!(
        mtu == 1260,
        "the server's path MTU to {GATEWAY_V4} should become 1260 after the gateway's \
         fragmentation needed, it is {mtu}; gateway counters: {}",
        stats_delta(&before, &after)
    );
    ensure!(
        second_send.is_err(),
        "a second 1400-byte datagram with DF should be refused locally (EMSGSIZE), got {second_send:?}"
    );
    ensure!(
        after.drop_count("mtu-exceeded") > before.drop_count("mtu-exceeded")
            && after.event("icmp-error-sent") > before.event("icmp-error-sent"),
        "expected an mtu-exceeded drop answered by the gateway: {}",
        stats_delta(&before, &after)
    );
    let mut buf = vec![0u8; 4096];
    let (n, _) = sock
        .recv_from(&mut buf)
        .context("the 1232-byte datagram (1280 bytes once translated) did not arrive")?;
    same_bytes("datagram that fits the path", &buf[..n], &small)?;
    Ok(())
}

/// A sticky IPv6 option on a socket: `IPV6_HOPOPTS` or `IPV6_DSTOPTS` with one PadN option
/// (an 8-byte extension header; the kernel fills in the next-header byte).
fn set_ipv6_padn_header(sock: &UdpSocket, option: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let header: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    // SAFETY: setsockopt(2) with a valid descriptor and a buffer of the length given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            option,
            header.as_ptr().cast(),
            header.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// RFC 7915 section 5.1: hop-by-hop and destination options headers are skipped; the UDP
/// datagram behind them is translated and its echo comes back.
#[test]
fn udp_behind_ipv6_extension_headers_is_translated() -> Result<()> {
    udp_behind_ipv6_extension_headers_is_translated_in("native")
}

/// [`udp_behind_ipv6_extension_headers_is_translated`] with the gateway in tc mode.
#[test]
fn udp_behind_ipv6_extension_headers_is_translated_tc() -> Result<()> {
    udp_behind_ipv6_extension_headers_is_translated_in("tc")
}

fn udp_behind_ipv6_extension_headers_is_translated_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("exth")?;
    let _pass = client_xdp_pass(&topo)?;
    let echo = UdpEcho::start(&topo.server, "0.0.0.0:7500".parse()?)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let server: SocketAddr = (server_via_prefix(), 7500).into();
    for (name, option) in [
        ("hop-by-hop", libc::IPV6_HOPOPTS),
        ("destination options", libc::IPV6_DSTOPTS),
    ] {
        let before = gw.stats()?;
        let sock = topo
            .client
            .in_ns(|| -> std::io::Result<UdpSocket> {
                let s = UdpSocket::bind("[::]:0")?;
                set_ipv6_padn_header(&s, option)?;
                Ok(s)
            })?
            .with_context(|| format!("a UDP socket with a {name} header"))?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        let payload = pattern(700, u64::from(option.unsigned_abs()));
        sock.send_to(&payload, server)?;
        let mut buf = vec![0u8; 2048];
        let got = sock.recv_from(&mut buf);
        let after = gw.stats()?;
        let (n, from) = got.with_context(|| {
            format!(
                "no echo of a datagram with a {name} header within 3 s; gateway counters: {}",
                stats_delta(&before, &after)
            )
        })?;
        ensure!(from == server, "echo came from {from}, expected {server}");
        same_bytes(
            &format!("echo of a datagram with a {name} header"),
            &buf[..n],
            &payload,
        )?;
        ensure!(
            after.drop_count("ipv6-extension-header") == before.drop_count("ipv6-extension-header"),
            "a {name} header was counted as dropped: {}",
            stats_delta(&before, &after)
        );
    }
    ensure!(
        echo.seen().len() == 2,
        "the server saw {} datagrams, expected 2",
        echo.seen().len()
    );
    Ok(())
}

/// RFC 7915 section 4.1: IPv4 options are ignored (not translated); the datagram behind them
/// reaches the client intact.
#[test]
fn udp_with_ipv4_options_is_translated() -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = static_udp_8080("ipopt")?;
    let _pass = client_xdp_pass(&topo)?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind(SocketAddr::from((CLIENT_V6, 8080))))?
        .context("binding [2001:db8:1::2]:8080 in the client")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let before = gw.stats()?;
    let payload = pattern(600, 58);
    let port = topo
        .server
        .in_ns(|| -> std::io::Result<u16> {
            use std::os::fd::AsRawFd as _;
            let s = UdpSocket::bind("0.0.0.0:0")?;
            // Three NOPs and an end-of-options: a 24-byte IPv4 header.
            let options: [u8; 4] = [1, 1, 1, 0];
            // SAFETY: setsockopt(2) with a valid descriptor and a buffer of the length given.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_OPTIONS,
                    options.as_ptr().cast(),
                    options.len() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            s.send_to(&payload, (GATEWAY_V4, 8080))?;
            Ok(s.local_addr()?.port())
        })?
        .context("sending with IPv4 options from the server")?;
    let mut buf = vec![0u8; 2048];
    let got = sock.recv_from(&mut buf);
    let after = gw.stats()?;
    let (n, from) = got.with_context(|| {
        format!(
            "no datagram with IPv4 options reached the client within 3 s; gateway counters: {}",
            stats_delta(&before, &after)
        )
    })?;
    same_bytes("datagram sent with IPv4 options", &buf[..n], &payload)?;
    ensure!(
        from == SocketAddr::from((server_via_prefix(), port)),
        "the datagram came from {from}, expected [{}]:{port}",
        server_via_prefix()
    );
    ensure!(
        after.drop_count("ipv4-options") == before.drop_count("ipv4-options"),
        "IPv4 options were counted as dropped: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

/// Sends whole IP packets (headers included) from `ns` through a raw socket, in the order
/// given; `dst` only routes them.
fn raw_send(ns: &NetNs, dst: std::net::IpAddr, packets: &[Vec<u8>]) -> Result<()> {
    ns.in_ns(|| -> std::io::Result<()> {
        let family = if dst.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2); IPPROTO_RAW means "headers included" for both families.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let _owner = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        for p in packets {
            let rc = match dst {
                std::net::IpAddr::V4(a) => {
                    let sa = libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: 0,
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_ne_bytes(a.octets()),
                        },
                        sin_zero: [0; 8],
                    };
                    // SAFETY: valid buffer and sockaddr of the sizes given.
                    unsafe {
                        libc::sendto(
                            fd,
                            p.as_ptr().cast(),
                            p.len(),
                            0,
                            (&raw const sa).cast(),
                            size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        )
                    }
                }
                std::net::IpAddr::V6(a) => {
                    let sa = libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: 0,
                        sin6_flowinfo: 0,
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.octets(),
                        },
                        sin6_scope_id: 0,
                    };
                    // SAFETY: valid buffer and sockaddr of the sizes given.
                    unsafe {
                        libc::sendto(
                            fd,
                            p.as_ptr().cast(),
                            p.len(),
                            0,
                            (&raw const sa).cast(),
                            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                        )
                    }
                }
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    })?
    .with_context(|| format!("sending raw packets from {}", ns.name()))
}

/// Splits `l4` (a whole transport segment) into fragment payloads of at most `size` bytes
/// (a multiple of 8): (offset, more fragments, bytes).
fn split(l4: &[u8], size: usize) -> Vec<(usize, bool, Vec<u8>)> {
    let chunks: Vec<&[u8]> = l4.chunks(size).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| (i * size, i != last, c.to_vec()))
        .collect()
}

/// Fragments that arrive last-first: the non-first fragments reach the gateway before the
/// fragment that names the flow (issue 4: matched within bounded time and memory). IPv6
/// fragments from the client towards the server, then IPv4 fragments from the server towards a
/// static mapping of the client.
#[test]
fn fragments_in_reverse_order_both_ways() -> Result<()> {
    fragments_in_reverse_order_both_ways_in("native")
}

/// [`fragments_in_reverse_order_both_ways`] with the gateway in tc mode.
#[test]
fn fragments_in_reverse_order_both_ways_tc() -> Result<()> {
    fragments_in_reverse_order_both_ways_in("tc")
}

fn fragments_in_reverse_order_both_ways_in(mode: &str) -> Result<()> {
    use translator_tests::packets;
    let _lock = prepare()?;
    let (topo, config) = static_udp_8080("frgr")?;
    let _pass = client_xdp_pass(&topo)?;
    let echo = UdpEcho::start(&topo.server, "0.0.0.0:7600".parse()?)?;
    let mut config = config;
    config.mode = Some(mode.to_owned());
    let gw = Gateway::start(&topo.gateway, config)?;
    let server6 = server_via_prefix();
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind(SocketAddr::from((CLIENT_V6, 8080))))?
        .context("binding [2001:db8:1::2]:8080 in the client")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = vec![0u8; 8192];

    // IPv6: a 3000-byte UDP datagram from [::2]:8080 to the server's echo, in three fragments
    // sent last first.
    let before = gw.stats()?;
    let data = pattern(3000, 61);
    let l4 = packets::udp(CLIENT_V6.into(), server6.into(), 8080, 7600, &data);
    let frags: Vec<Vec<u8>> = split(&l4, 1232)
        .into_iter()
        .rev()
        .map(|(off, more, p)| {
            packets::frag6(CLIENT_V6, server6, 17, 64, 0x5eed_0001, off, more, &p)
        })
        .collect();
    raw_send(&topo.client, server6.into(), &frags)?;
    let got = sock.recv_from(&mut buf);
    let after = gw.stats()?;
    let (n, from) = got.with_context(|| {
        format!(
            "no echo of the IPv6 datagram sent in reverse-order fragments; server saw {:?}; \
             gateway counters: {}",
            echo.seen()
                .iter()
                .map(|(a, d)| (a, d.len()))
                .collect::<Vec<_>>(),
            stats_delta(&before, &after)
        )
    })?;
    ensure!(
        from == SocketAddr::from((server6, 7600)),
        "echo came from {from}"
    );
    same_bytes("echo of the reverse-order IPv6 fragments", &buf[..n], &data)?;

    // IPv4: the server sends 3000 bytes to the static mapping 192.0.2.1:8080 in three fragments,
    // last first.
    let before = gw.stats()?;
    let data = pattern(3000, 62);
    let l4 = packets::udp(SERVER_V4.into(), GATEWAY_V4.into(), 7601, 8080, &data);
    let frags: Vec<Vec<u8>> = split(&l4, 1400)
        .into_iter()
        .rev()
        .map(|(off, more, p)| packets::frag4(SERVER_V4, GATEWAY_V4, 17, 64, 0x7e57, off, more, &p))
        .collect();
    raw_send(&topo.server, GATEWAY_V4.into(), &frags)?;
    let got = sock.recv_from(&mut buf);
    let after = gw.stats()?;
    let (n, from) = got.with_context(|| {
        format!(
            "the IPv4 datagram sent in reverse-order fragments did not reach the client; \
             gateway counters: {}",
            stats_delta(&before, &after)
        )
    })?;
    ensure!(
        from == SocketAddr::from((server6, 7601)),
        "the datagram came from {from}, expected [{server6}]:7601"
    );
    same_bytes("reverse-order IPv4 fragments", &buf[..n], &data)?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// 4. Hairpinning.

/// Client B: the harness client 2001:db8:1::2, behind a static mapping. Client A: a second
/// address 2001:db8:1::3 in the same namespace (inside nat64.clients), which reaches B through
/// the prefix and the pool address: [2001:db8:64::c000:201]:8080.
const CLIENT_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);

fn hairpin_topology(tag: &str, protocol: &str) -> Result<(Topology, GatewayConfig)> {
    let topo = Topology::two_armed(tag)?;
    topo.client
        .ip(&["addr", "add", "2001:db8:1::3/64", "dev", "c0", "nodad"])?;
    let mut config = topo.config();
    config.statics.push(StaticMapping {
        protocol: protocol.into(),
        ipv6: CLIENT_V6,
        ipv6_port: 8080,
        ipv4: GATEWAY_V4,
        ipv4_port: 8080,
    });
    Ok((topo, config))
}

#[test]
fn hairpin_tcp_between_two_ipv6_clients() -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = hairpin_topology("hpt", "tcp")?;
    let _pass = client_xdp_pass(&topo)?;
    let listener = TcpEcho::start(&topo.client, SocketAddr::from((CLIENT_V6, 8080)))?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let public: SocketAddr = (nat64(GATEWAY_V4), 8080).into();

    let before = gw.stats()?;
    let payload = pattern(200_000, 31);
    let back = tcp_exchange(
        &topo.client,
        Some(SocketAddr::from((CLIENT_A, 0))),
        public,
        &payload,
    )?;
    same_bytes("hairpinned TCP echo", &back, &payload)?;
    let after = gw.stats()?;

    // B sees A as the prefix + pool address, never as A's own address.
    let seen = listener.seen();
    ensure!(
        seen.len() == 1 && seen[0].0.ip() == std::net::IpAddr::V6(nat64(GATEWAY_V4)),
        "client B should see one connection from {}, saw {:?}",
        nat64(GATEWAY_V4),
        seen.iter().map(|(a, d)| (a, d.len())).collect::<Vec<_>>()
    );
    let a_pool_port = seen[0].0.port();
    ensure!(
        after.event("hairpinned") > before.event("hairpinned"),
        "the hairpinned event did not count: {}",
        stats_delta(&before, &after)
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "tcp"
            && s.client == CLIENT_A
            && s.remote == GATEWAY_V4
            && s.remote_port == 8080
            && s.pool == GATEWAY_V4
            && s.pool_port == a_pool_port),
        "no session [{CLIENT_A}] -> {GATEWAY_V4}:8080 via {GATEWAY_V4}:{a_pool_port}; {}",
        describe_sessions(&sessions)
    );
    ensure!(
        sessions.iter().any(|s| s.protocol == "tcp"
            && s.client == CLIENT_V6
            && s.client_port == 8080
            && s.pool_port == 8080
            && s.remote == GATEWAY_V4
            && s.remote_port == a_pool_port),
        "no session for client B [{CLIENT_V6}]:8080 <- {GATEWAY_V4}:{a_pool_port}; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

/// Hairpinning with fragments: 4000-byte datagrams from client A to client B's public address
/// and back (IPv6 fragments in, IPv6 fragments out).
///
/// Ignored: the slow path reassembles A's datagram and translates it to IPv4 towards the pool
/// address 192.0.2.1:8080, then sends it out of its raw socket, where the gateway's own kernel
/// takes it (UdpNoPorts, port unreachable to itself) instead of hairpinning it back to B as the
/// data plane does for whole packets.
#[test]
fn hairpin_udp_4000_byte_datagrams() -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = hairpin_topology("hpf", "udp")?;
    let _pass = client_xdp_pass(&topo)?;
    let echo = UdpEcho::start(&topo.client, SocketAddr::from((CLIENT_V6, 8080)))?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let public: SocketAddr = (nat64(GATEWAY_V4), 8080).into();
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind(SocketAddr::from((CLIENT_A, 0))))?
        .context("binding client A's UDP socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = vec![0u8; 8192];
    // A small datagram first, so the flow exists before any fragment arrives.
    for (i, len) in [100usize, 4000, 4000].into_iter().enumerate() {
        let before = gw.stats()?;
        let payload = pattern(len, 70 + i as u64);
        sock.send_to(&payload, public)?;
        let got = sock.recv_from(&mut buf);
        let after = gw.stats()?;
        let (n, from) = got.with_context(|| {
            format!(
                "no hairpinned echo of {len} bytes within 3 s; B saw {:?}; gateway counters: \
                 {}; slow path: {}",
                echo.seen()
                    .iter()
                    .map(|(a, d)| (a, d.len()))
                    .collect::<Vec<_>>(),
                stats_delta(&before, &after),
                slow_path_counters(&gw)
            )
        })?;
        ensure!(from == public, "echo came from {from}, expected {public}");
        same_bytes("hairpinned echo", &buf[..n], &payload)?;
    }
    Ok(())
}

#[test]
fn hairpin_udp_between_two_ipv6_clients() -> Result<()> {
    hairpin_udp_between_two_ipv6_clients_in("native")
}

/// [`hairpin_udp_between_two_ipv6_clients`] with the gateway in tc mode.
#[test]
fn hairpin_udp_between_two_ipv6_clients_tc() -> Result<()> {
    hairpin_udp_between_two_ipv6_clients_in("tc")
}

fn hairpin_udp_between_two_ipv6_clients_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = hairpin_topology("hpu", "udp")?;
    let _pass = client_xdp_pass(&topo)?;
    let echo = UdpEcho::start(&topo.client, SocketAddr::from((CLIENT_V6, 8080)))?;
    let mut config = config;
    config.mode = Some(mode.to_owned());
    let gw = Gateway::start(&topo.gateway, config)?;
    let public: SocketAddr = (nat64(GATEWAY_V4), 8080).into();

    let before = gw.stats()?;
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind(SocketAddr::from((CLIENT_A, 0))))?
        .context("binding client A's UDP socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = vec![0u8; 2048];
    for (i, len) in [1usize, 500, 1200].into_iter().enumerate() {
        let payload = pattern(len, 40 + i as u64);
        sock.send_to(&payload, public)?;
        let (n, from) = sock
            .recv_from(&mut buf)
            .with_context(|| format!("no hairpinned echo of {len} bytes within 3 s"))?;
        ensure!(from == public, "echo came from {from}, expected {public}");
        same_bytes("hairpinned UDP echo", &buf[..n], &payload)?;
    }
    let after = gw.stats()?;
    let sources: BTreeSet<SocketAddr> = echo.seen().iter().map(|(a, _)| *a).collect();
    ensure!(
        sources.len() == 1
            && sources
                .iter()
                .all(|a| a.ip() == std::net::IpAddr::V6(nat64(GATEWAY_V4))),
        "client B should see every datagram from one prefix+pool address and port, saw {sources:?}"
    );
    ensure!(
        after.event("hairpinned") >= before.event("hairpinned") + 6,
        "expected at least 6 hairpinned packets (3 each way): {}",
        stats_delta(&before, &after)
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "udp"
            && s.client == CLIENT_A
            && s.remote == GATEWAY_V4
            && s.remote_port == 8080),
        "no UDP session [{CLIENT_A}] -> {GATEWAY_V4}:8080; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}
