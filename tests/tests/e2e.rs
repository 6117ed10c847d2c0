//! End-to-end tests: real namespaces, the real `translator` binary, real traffic.
//!
//! Each test builds its own topology (removed on drop, also when the test fails) and runs its own
//! controller instance (stopped and taken down on drop). Tests hold a lock so they run one at a
//! time even without `--test-threads=1`. They need root.
//!
//! The binary is `$TRANSLATOR_BIN`, else the newer of target/{release,debug}/translator
//! (`cargo xtask test` builds it and sets the variable).

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use translator_tests::ping_all;
use translator_tests::{
    ALT_POOL_V4, CLIENT_V6, GATEWAY_V4, Gateway, GatewayConfig, HttpServer, NetNs, PacedHttp,
    SERVER_V4, Session, StaticMapping, TcpEcho, TempDir, Topology, UdpEcho, describe_sessions,
    iperf3_tcp, nat64, pattern, same_bytes, server_via_prefix, udp_recv, wait_until,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the one-test-at-a-time lock and checks the prerequisites.
fn prepare() -> Result<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    translator_tests::require_root()?;
    translator_tests::translator_bin()?;
    Ok(guard)
}

/// GETs `url` with curl from `ns` and returns the body.
fn curl(ns: &NetNs, url: &str) -> Result<Vec<u8>> {
    let out = ns.run_timeout(
        &[
            "curl",
            "-g",
            "-sS",
            "--fail",
            "--max-time",
            "20",
            "-o",
            "-",
            url,
        ],
        Duration::from_secs(30),
    )?;
    Ok(out.stdout)
}

fn server_url(path: &str) -> String {
    format!("http://[{}]:80/{path}", server_via_prefix())
}

/// Where packets went, for failure messages: the gateway's non-zero counters, the veths' non-zero
/// driver counters and the endpoints' UDP/IP error counters.
fn diagnose(topo: &Topology, gw: &Gateway<'_>) -> String {
    let mut out = String::from("--- diagnostics ---\n");
    match gw.stats() {
        Ok(st) => {
            let events: Vec<String> = st
                .events
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let drops: Vec<String> = st
                .drops
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!(
                "gateway events: {}\ngateway drops: {}\n",
                events.join(" "),
                drops.join(" ")
            ));
        }
        Err(e) => out.push_str(&format!("stats: {e:#}\n")),
    }
    let mut devs = vec![(&topo.client, "c0"), (&topo.server, "s0")];
    if topo.is_one_armed() {
        devs.push((&topo.gateway, "g0"));
    } else {
        devs.push((&topo.gateway, "g6"));
        devs.push((&topo.gateway, "g4"));
    }
    for (ns, dev) in devs {
        if let Ok(o) = ns.try_run(&["ethtool", "-S", dev], Duration::from_secs(10)) {
            let nz: Vec<String> = o
                .stdout_str()
                .lines()
                .map(str::trim)
                .filter(|l| !l.ends_with(": 0") && !l.starts_with("NIC"))
                .map(str::to_owned)
                .collect();
            out.push_str(&format!("{dev}: {}\n", nz.join(", ")));
        }
    }
    for (ns, what) in [(&topo.client, "client"), (&topo.server, "server")] {
        if let Ok(o) = ns.try_run(&["nstat", "-az"], Duration::from_secs(10)) {
            let nz: Vec<String> = o
                .stdout_str()
                .lines()
                .filter(|l| {
                    (l.contains("Err") || l.contains("Drop") || l.contains("Discard"))
                        && l.split_whitespace().nth(1).is_some_and(|v| v != "0")
                })
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join("="))
                .collect();
            out.push_str(&format!("{what} nstat: {}\n", nz.join(" ")));
        }
    }
    out
}

#[test]
fn topology_alone_connects_neighbours_but_not_through_the_prefix() -> Result<()> {
    let _lock = prepare()?;
    for one_armed in [false, true] {
        let topo = Topology::builder("topo").one_armed(one_armed).build()?;
        ping_all(&topo.client, "2001:db8:1::1", 2)?;
        ping_all(&topo.server, "192.0.2.1", 2)?;
        // Without a translator nothing answers inside the prefix: the later tests' successes are
        // the gateway's doing.
        let out = topo.client.try_run(
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                &server_via_prefix().to_string(),
            ],
            Duration::from_secs(10),
        )?;
        ensure!(
            !out.status.success(),
            "the server answered through the prefix without a translator:\n{}",
            out.stdout_str()
        );
    }
    Ok(())
}

/// Every configuration shape the tests use passes `translator check`, so a config mistake shows
/// here with the controller's message rather than as a failed start elsewhere.
#[test]
fn generated_configs_pass_translator_check() -> Result<()> {
    let _lock = prepare()?;
    let bin = translator_tests::translator_bin()?;
    let scratch = TempDir::new("check")?;
    let mut configs = vec![
        GatewayConfig::new("g6", "g4"),
        GatewayConfig::new("g0", "g0"),
    ];
    let mut c = GatewayConfig::new("g6", "g4");
    c.pool = vec![ALT_POOL_V4.to_string()];
    c.block_size = Some(64);
    c.max_blocks_per_client = Some(8);
    c.statics.push(StaticMapping {
        protocol: "tcp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 8080,
        ipv4: ALT_POOL_V4,
        ipv4_port: 8080,
    });
    configs.push(c);
    let mut c = GatewayConfig::new("g6", "g4");
    c.timeout_udp = Some(2);
    c.timeout_icmp = Some(2);
    c.enforce_rfc_minimums = Some(false);
    configs.push(c);
    for (i, c) in configs.iter().enumerate() {
        let path = scratch.join(&format!("c{i}.toml"));
        std::fs::write(&path, c.to_toml())?;
        let out = translator_tests::cmd::run(
            std::process::Command::new(&bin)
                .arg("check")
                .arg("--config")
                .arg(&path),
            Duration::from_secs(30),
        )?;
        ensure!(
            out.status.success(),
            "`translator check` refused this config:\n{}\n{}{}",
            c.to_toml(),
            out.stdout_str(),
            out.stderr_str()
        );
    }
    // And it refuses a broken one (the check is real).
    let mut broken = GatewayConfig::new("g6", "g4");
    broken.prefix = "2001:db8:64::/95".into();
    let path = scratch.join("broken.toml");
    std::fs::write(&path, broken.to_toml())?;
    let out = translator_tests::cmd::run(
        std::process::Command::new(&bin)
            .arg("check")
            .arg("--config")
            .arg(&path),
        Duration::from_secs(30),
    )?;
    ensure!(
        !out.status.success(),
        "`translator check` accepted prefix length 95"
    );
    Ok(())
}

#[test]
fn ping_through_the_prefix() -> Result<()> {
    ping_through_the_prefix_in("native")
}

/// [`ping_through_the_prefix`] with the gateway in tc mode.
#[test]
fn ping_through_the_prefix_tc() -> Result<()> {
    ping_through_the_prefix_in("tc")
}

fn ping_through_the_prefix_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("ping")?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    ping_all(&topo.client, &server_via_prefix().to_string(), 3)?;

    let sessions = gw.sessions()?;
    let icmp: Vec<&Session> = sessions.iter().filter(|s| s.protocol == "icmp").collect();
    ensure!(
        icmp.len() == 1
            && icmp[0].client == CLIENT_V6
            && icmp[0].remote == SERVER_V4
            && icmp[0].pool == GATEWAY_V4,
        "expected one ICMP session [{CLIENT_V6}] -> {SERVER_V4} via {GATEWAY_V4}; {}",
        describe_sessions(&sessions)
    );
    let stats = gw.stats()?;
    ensure!(
        stats.event("translated-6to4") >= 3 && stats.event("translated-4to6") >= 3,
        "expected at least 3 translations each way, stats: {stats:?}"
    );
    Ok(())
}

#[test]
fn tcp_http_through_the_prefix() -> Result<()> {
    tcp_http_through_the_prefix_in("native")
}

/// [`tcp_http_through_the_prefix`] with the gateway in tc mode.
#[test]
fn tcp_http_through_the_prefix_tc() -> Result<()> {
    tcp_http_through_the_prefix_in("tc")
}

fn tcp_http_through_the_prefix_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("tcp")?;
    let http = HttpServer::start(&topo.server, 80)?;
    let small = b"<html>hello from 192.0.2.2 over NAT64</html>\n".to_vec();
    let big = pattern(300_000, 7);
    http.add_file("index.html", &small)?;
    http.add_file("big.bin", &big)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;

    same_bytes(
        "index.html",
        &curl(&topo.client, &server_url("index.html"))?,
        &small,
    )?;
    same_bytes(
        "big.bin",
        &curl(&topo.client, &server_url("big.bin"))?,
        &big,
    )?;

    let sessions = gw.sessions()?;
    let tcp = sessions
        .iter()
        .filter(|s| s.protocol == "tcp" && s.remote == SERVER_V4 && s.remote_port == 80)
        .count();
    ensure!(
        tcp >= 2,
        "expected two TCP sessions to {SERVER_V4}:80; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

#[test]
fn iperf3_tcp_through_the_prefix() -> Result<()> {
    iperf3_tcp_through_the_prefix_in("native")
}

/// [`iperf3_tcp_through_the_prefix`] with the gateway in tc mode.
#[test]
fn iperf3_tcp_through_the_prefix_tc() -> Result<()> {
    iperf3_tcp_through_the_prefix_in("tc")
}

fn iperf3_tcp_through_the_prefix_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("iperf")?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let target = server_via_prefix().to_string();
    let (_, bps) =
        iperf3_tcp(&topo.client, &topo.server, &target, 3).with_context(|| diagnose(&topo, &gw))?;
    println!("iperf3: {:.2} Gbit/s through the gateway", bps / 1e9);
    Ok(())
}

#[test]
fn udp_both_ways() -> Result<()> {
    udp_both_ways_in("native")
}

/// [`udp_both_ways`] with the gateway in tc mode.
#[test]
fn udp_both_ways_tc() -> Result<()> {
    udp_both_ways_in("tc")
}

fn udp_both_ways_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("udp")?;
    let echo = UdpEcho::start(&topo.server, "0.0.0.0:7777".parse()?)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    let server: SocketAddr = (server_via_prefix(), 7777).into();
    let payloads: Vec<Vec<u8>> = [1usize, 100, 1000, 1400]
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n, i as u64 + 1))
        .collect();

    // Client to server and back: the echo must come back byte for byte from the server's
    // synthesized address.
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind("[::]:0"))?
        .context("binding the client's UDP socket")?;
    let local_port = sock.local_addr()?.port();
    let mut buf = vec![0u8; 2048];
    for p in &payloads {
        sock.send_to(p, server)?;
        let (n, from) = udp_recv(&sock, &mut buf, Duration::from_secs(3))
            .with_context(|| format!("no echo of a {}-byte datagram within 3 s", p.len()))?;
        ensure!(from == server, "echo came from {from}, expected {server}");
        same_bytes("UDP echo", &buf[..n], p)?;
    }
    let seen = echo.seen();
    let sources: BTreeSet<SocketAddr> = seen.iter().map(|(a, _)| *a).collect();
    ensure!(
        sources.len() == 1 && sources.iter().all(|a| a.ip() == GATEWAY_V4),
        "the server should see every datagram from one pool address and port, saw {sources:?}"
    );
    let mapping = *sources
        .iter()
        .next()
        .context("the server saw no datagram")?;

    // Server to client, from another port of the same host: allowed by address-dependent
    // filtering, and it must arrive from that port's synthesized address.
    let from_server = pattern(333, 99);
    let other = topo
        .server
        .in_ns(|| -> std::io::Result<u16> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.send_to(&from_server, mapping)?;
            Ok(s.local_addr()?.port())
        })?
        .context("sending from the server")?;
    let (n, from) = udp_recv(&sock, &mut buf, Duration::from_secs(3))
        .context("the server's datagram to the mapping did not reach the client within 3 s")?;
    ensure!(
        from == SocketAddr::from((server_via_prefix(), other)),
        "server-initiated datagram came from {from}, expected [{}]:{other}",
        server_via_prefix()
    );
    same_bytes("server-initiated datagram", &buf[..n], &from_server)?;

    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "udp"
            && s.client_port == local_port
            && s.remote_port == 7777
            && s.pool_port == mapping.port()),
        "no UDP session for client port {local_port} -> 7777 via {mapping}; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

#[test]
fn filtering_address_dependent_then_endpoint_independent() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("filter")?;
    // A second IPv4 host (address) the client never talks to.
    topo.server
        .ip(&["addr", "add", "192.0.2.3/24", "dev", "s0"])?;
    let other_host = std::net::Ipv4Addr::new(192, 0, 2, 3);
    let echo = UdpEcho::start(&topo.server, "192.0.2.2:7000".parse()?)?;
    for filtering in ["address-dependent", "endpoint-independent"] {
        let mut config = topo.config();
        config.filtering = Some(filtering.into());
        let gw = Gateway::start(&topo.gateway, config)?;
        let sock = topo
            .client
            .in_ns(|| UdpSocket::bind("[::]:0"))?
            .context("binding the client's UDP socket")?;
        let mut buf = [0u8; 256];
        sock.send_to(b"open a mapping", (server_via_prefix(), 7000))?;
        udp_recv(&sock, &mut buf, Duration::from_secs(3))
            .with_context(|| format!("{filtering}: no echo from the server"))?;
        let mapping = echo
            .seen()
            .last()
            .map(|(a, _)| *a)
            .context("the server saw no datagram")?;
        let drops_before = gw.stats()?.total_drops();

        // The host the client never contacted sends to the mapping.
        topo.server
            .in_ns(|| -> std::io::Result<()> {
                let s = UdpSocket::bind((other_host, 0))?;
                s.send_to(b"unsolicited", mapping)?;
                Ok(())
            })?
            .context("sending from 192.0.2.3")?;
        let got = udp_recv(&sock, &mut buf, Duration::from_millis(1500));
        match filtering {
            "address-dependent" => {
                ensure!(
                    got.is_err(),
                    "address-dependent filtering let a datagram from {other_host} (never contacted) \
                     through to the client: {got:?}"
                );
                let drops_after = gw.stats()?.total_drops();
                ensure!(
                    drops_after > drops_before,
                    "the filtered datagram was not counted as a drop ({drops_before} -> \
                     {drops_after})\n{}",
                    diagnose(&topo, &gw)
                );
            }
            _ => {
                let (n, from) = got.with_context(|| {
                    format!(
                        "endpoint-independent filtering dropped a datagram from {other_host}\n{}",
                        diagnose(&topo, &gw)
                    )
                })?;
                ensure!(
                    buf.get(..n) == Some(&b"unsolicited"[..])
                        && from.ip() == std::net::IpAddr::V6(nat64(other_host)),
                    "expected `unsolicited` from [{}]:*, got {n} bytes from {from}",
                    nat64(other_host)
                );
            }
        }
    }
    Ok(())
}

#[test]
fn two_hundred_client_ports_share_one_pool_address() -> Result<()> {
    const N: usize = 200;
    let _lock = prepare()?;
    let topo = Topology::two_armed("many")?;
    let mut echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut config = topo.config();
    config.block_size = Some(64);
    config.max_blocks_per_client = Some(8);
    let gw = Gateway::start(&topo.gateway, config)?;
    let server: SocketAddr = (server_via_prefix(), 7000).into();

    let socks = topo
        .client
        .in_ns(|| {
            (0..N)
                .map(|_| UdpSocket::bind("[::]:0"))
                .collect::<std::io::Result<Vec<_>>>()
        })?
        .context("binding 200 UDP sockets in the client")?;
    let mut ports = BTreeSet::new();
    for (i, s) in socks.iter().enumerate() {
        s.set_nonblocking(true)?;
        ports.insert(s.local_addr()?.port());
        s.send_to(format!("client socket {i}").as_bytes(), server)?;
    }
    let mut answered = [false; N];
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.iter().any(|a| !a) && Instant::now() < deadline {
        for (i, s) in socks.iter().enumerate() {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                ensure!(from == server, "socket {i} got a reply from {from}");
                same_bytes("echo", &buf[..n], format!("client socket {i}").as_bytes())?;
                answered[i] = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    echo.check_alive()?;
    let missing = answered.iter().filter(|a| !**a).count();
    ensure!(
        missing == 0,
        "{missing} of {N} client sockets got no echo (the server saw {} datagrams)\n{}",
        echo.seen().len(),
        diagnose(&topo, &gw)
    );

    let sources: BTreeSet<SocketAddr> = echo.seen().iter().map(|(a, _)| *a).collect();
    ensure!(
        sources.len() == N && sources.iter().all(|a| a.ip() == GATEWAY_V4),
        "the server should see {N} distinct ports of {GATEWAY_V4}, saw {} sources: {:?}",
        sources.len(),
        sources.iter().take(5).collect::<Vec<_>>()
    );

    let sessions: Vec<Session> = gw
        .sessions()?
        .into_iter()
        .filter(|s| s.protocol == "udp" && s.remote_port == 7000)
        .collect();
    let pool_ports: BTreeSet<u16> = sessions.iter().map(|s| s.pool_port).collect();
    let client_ports: BTreeSet<u16> = sessions.iter().map(|s| s.client_port).collect();
    ensure!(
        sessions.len() == N
            && sessions
                .iter()
                .all(|s| s.pool == GATEWAY_V4 && s.client == CLIENT_V6)
            && pool_ports.len() == N
            && client_ports == ports,
        "expected {N} UDP sessions on pool {GATEWAY_V4} with distinct pool ports, one per client \
         socket; got {} sessions, {} distinct pool ports, client ports match: {}; {}",
        sessions.len(),
        pool_ports.len(),
        client_ports == ports,
        describe_sessions(&sessions)
    );
    Ok(())
}

#[test]
fn static_mapping_reached_from_the_ipv4_side() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("static")?;
    let listener = TcpEcho::start(&topo.client, "[::]:8080".parse()?)?;
    let mut config = topo.config();
    config.pool = vec![ALT_POOL_V4.to_string()];
    config.statics.push(StaticMapping {
        protocol: "tcp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 8080,
        ipv4: ALT_POOL_V4,
        ipv4_port: 8080,
    });
    let gw = Gateway::start(&topo.gateway, config)?;

    // The IPv4-only server opens the connection; the client never sent anything before.
    let payload = pattern(50_000, 3);
    let echoed = topo
        .server
        .in_ns(|| -> std::io::Result<Vec<u8>> {
            let mut c =
                TcpStream::connect_timeout(&(ALT_POOL_V4, 8080).into(), Duration::from_secs(5))?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.write_all(&payload)?;
            c.shutdown(std::net::Shutdown::Write)?;
            let mut back = Vec::new();
            c.read_to_end(&mut back)?;
            Ok(back)
        })?
        .with_context(|| format!("connecting from the server to {ALT_POOL_V4}:8080"))?;
    same_bytes("echo through the static mapping", &echoed, &payload)?;

    let seen = listener.seen();
    ensure!(
        seen.len() == 1 && seen[0].0.ip() == std::net::IpAddr::V6(server_via_prefix()),
        "the client's listener should see one connection from {}, saw {:?}",
        server_via_prefix(),
        seen.iter().map(|(a, d)| (a, d.len())).collect::<Vec<_>>()
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "tcp"
            && s.client_port == 8080
            && s.pool == ALT_POOL_V4
            && s.pool_port == 8080
            && s.remote == SERVER_V4),
        "no TCP session [{CLIENT_V6}]:8080 <- {SERVER_V4} via {ALT_POOL_V4}:8080; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

/// Sends one datagram from the server to `to` and waits up to 2 s for its echo.
fn udp_from_server(server: &NetNs, to: SocketAddr, payload: &[u8]) -> Result<Option<Vec<u8>>> {
    server
        .in_ns(|| -> std::io::Result<Option<Vec<u8>>> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.send_to(payload, to)?;
            let mut buf = [0u8; 2048];
            match udp_recv(&s, &mut buf, Duration::from_secs(2)) {
                Ok((n, _)) => Ok(Some(buf[..n].to_vec())),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(None),
                Err(e) => Err(e),
            }
        })?
        .context("UDP from the server")
}

/// `bib list --json`, parsed.
fn bib_list(gw: &Gateway<'_>) -> Result<Vec<serde_json::Value>> {
    let out = gw.cli(&["bib", "list", "--json"])?;
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`bib list --json` printed: {}", out.stdout_str()))
}

/// The UDP mapping [2001:db8:1::2]:5353 = 198.51.100.1:5353.
fn is_5353(m: &serde_json::Value) -> bool {
    m["protocol"]
        .as_str()
        .is_some_and(|p| p.eq_ignore_ascii_case("udp"))
        && m["ipv6"] == "2001:db8:1::2"
        && m["ipv6_port"] == 5353
        && m["ipv4"] == "198.51.100.1"
        && m["ipv4_port"] == 5353
}

#[test]
fn bib_add_and_del_at_run_time() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("bib")?;
    let _echo = UdpEcho::start(&topo.client, "[::]:5353".parse()?)?;
    let mut config = topo.config();
    config.pool = vec![ALT_POOL_V4.to_string()];
    let gw = Gateway::start(&topo.gateway, config)?;
    let to: SocketAddr = (ALT_POOL_V4, 5353).into();
    let payload = pattern(200, 5);

    ensure!(
        udp_from_server(&topo.server, to, &payload)?.is_none(),
        "{to} answered before any mapping existed"
    );
    let mapping = [
        "--protocol",
        "udp",
        "--ipv6",
        "2001:db8:1::2",
        "--ipv6-port",
        "5353",
        "--ipv4",
        "198.51.100.1",
        "--ipv4-port",
        "5353",
    ];
    let mut add = vec!["bib", "add"];
    add.extend(mapping);
    gw.cli(&add)?;
    let list = bib_list(&gw)?;
    ensure!(
        list.iter().any(is_5353),
        "`bib list --json` does not show the new mapping: {list:?}"
    );
    let back = udp_from_server(&topo.server, to, &payload)?
        .with_context(|| format!("no answer through the mapping {to} after `bib add`"))?;
    same_bytes("echo through the run-time mapping", &back, &payload)?;

    let mut del = vec!["bib", "del"];
    del.extend(mapping);
    gw.cli(&del)?;
    // Sessions made through the mapping may live on until they expire (RFC 6146 keeps the
    // binding while a session uses it), so only the mapping table is checked here.
    let list = bib_list(&gw)?;
    ensure!(
        !list.iter().any(is_5353),
        "`bib list --json` still shows the mapping after `bib del`: {list:?}"
    );
    Ok(())
}

#[test]
fn one_armed_gateway_ping_and_curl() -> Result<()> {
    one_armed_gateway_ping_and_curl_in("native")
}

/// [`one_armed_gateway_ping_and_curl`] with the gateway in tc mode.
#[test]
fn one_armed_gateway_ping_and_curl_tc() -> Result<()> {
    one_armed_gateway_ping_and_curl_in("tc")
}

fn one_armed_gateway_ping_and_curl_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::one_armed("onearm")?;
    let http = HttpServer::start(&topo.server, 80)?;
    let page = pattern(100_000, 11);
    http.add_file("page.bin", &page)?;
    let gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;
    ping_all(&topo.client, &server_via_prefix().to_string(), 3)?;
    same_bytes(
        "page.bin",
        &curl(&topo.client, &server_url("page.bin"))?,
        &page,
    )?;
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "icmp")
            && sessions.iter().any(|s| s.protocol == "tcp"),
        "expected an ICMP and a TCP session; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

#[test]
fn generic_mode_ping_and_curl() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("generic")?;
    let http = HttpServer::start(&topo.server, 80)?;
    let page = pattern(100_000, 13);
    http.add_file("page.bin", &page)?;
    let mut config = topo.config();
    config.mode = Some("generic".into());
    let gw = Gateway::start(&topo.gateway, config)?;
    let link = topo
        .gateway
        .run(&["ip", "-d", "link", "show", "g6"])?
        .stdout_str();
    ensure!(
        link.contains("xdpgeneric"),
        "g6 should carry a generic-mode XDP program:\n{link}"
    );
    ping_all(&topo.client, &server_via_prefix().to_string(), 3)?;
    same_bytes(
        "page.bin",
        &curl(&topo.client, &server_url("page.bin"))?,
        &page,
    )?;
    let status = gw.status()?;
    ensure!(
        status.to_string().contains("generic"),
        "`status --json` does not report generic mode: {status}"
    );
    Ok(())
}

#[test]
fn sessions_expire() -> Result<()> {
    const UDP: u32 = 2;
    const ICMP: u32 = 2;
    let _lock = prepare()?;
    let topo = Topology::two_armed("expiry")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7001".parse()?)?;
    let mut config = topo.config();
    config.timeout_udp = Some(UDP);
    config.timeout_icmp = Some(ICMP);
    // UDP below the RFC 6146 minimum of 2 minutes needs the lab switch.
    config.enforce_rfc_minimums = Some(false);
    let gw = Gateway::start(&topo.gateway, config)?;

    ping_all(&topo.client, &server_via_prefix().to_string(), 1)?;
    let got = topo
        .client
        .in_ns(|| -> std::io::Result<usize> {
            let s = UdpSocket::bind("[::]:0")?;
            s.send_to(b"expire me", (server_via_prefix(), 7001))?;
            let mut buf = [0u8; 64];
            Ok(udp_recv(&s, &mut buf, Duration::from_secs(3))?.0)
        })?
        .context("UDP echo before expiry")?;
    ensure!(got == 9, "UDP echo returned {got} bytes, expected 9");

    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "udp")
            && sessions.iter().any(|s| s.protocol == "icmp"),
        "expected a UDP and an ICMP session before expiry; {}",
        describe_sessions(&sessions)
    );
    for s in &sessions {
        let limit = i64::from(if s.protocol == "udp" { UDP } else { ICMP });
        ensure!(
            s.expires_in_secs <= limit,
            "session expires in {} s but its timeout is {limit} s: {s:?}",
            s.expires_in_secs
        );
    }
    let started = Instant::now();
    let mut last = Vec::new();
    let gone = wait_until(
        Duration::from_secs(u64::from(UDP.max(ICMP)) + 20),
        || match gw.sessions() {
            Ok(s) => {
                let empty = s.is_empty();
                last = s;
                empty
            }
            Err(_) => false,
        },
    );
    ensure!(
        gone,
        "sessions still listed {:?} after their {UDP} s / {ICMP} s timeouts; {}",
        started.elapsed(),
        describe_sessions(&last)
    );
    Ok(())
}

#[test]
fn controller_restart_during_a_tcp_transfer() -> Result<()> {
    controller_restart_during_a_tcp_transfer_in("native")
}

/// [`controller_restart_during_a_tcp_transfer`] with the gateway in tc mode.
#[test]
fn controller_restart_during_a_tcp_transfer_tc() -> Result<()> {
    controller_restart_during_a_tcp_transfer_in("tc")
}

fn controller_restart_during_a_tcp_transfer_in(mode: &str) -> Result<()> {
    const SIZE: usize = 8 * 1024 * 1024;
    const RATE: u64 = 1024 * 1024;
    let _lock = prepare()?;
    let topo = Topology::two_armed("restart")?;
    let body = Arc::new(pattern(SIZE, 42));
    // Paced by the server: the transfer takes about 8 s and keeps crossing the gateway.
    let _http = PacedHttp::start(&topo.server, "0.0.0.0:8000".parse()?, body.clone(), RATE)?;
    let mut gw = Gateway::start(&topo.gateway, topo.config_in(mode))?;

    let scratch = TempDir::new("restart")?;
    let out = scratch.join("large.bin");
    let out_s = out.to_str().context("temp path is not UTF-8")?.to_owned();
    let url = format!("http://[{}]:8000/large.bin", server_via_prefix());
    let mut curl = topo.client.spawn(
        &[
            "curl",
            "-g",
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "-o",
            &out_s,
            &url,
        ],
        &scratch.join("curl.log"),
    )?;
    let size = || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);

    ensure!(
        wait_until(Duration::from_secs(10), || size() > 1024 * 1024),
        "the transfer did not get past 1 MiB in 10 s (at {} bytes); curl: {}",
        size(),
        curl.log()
    );
    let status = gw.stop()?;
    let at_stop = size();
    // With the controller gone the pinned data plane keeps forwarding.
    let grew = wait_until(Duration::from_secs(5), || size() > at_stop + 256 * 1024);
    let down_sessions = gw.sessions();
    ensure!(
        grew,
        "the transfer stalled while the controller was down ({at_stop} -> {} bytes; controller exit {status})",
        size()
    );
    let down_sessions = down_sessions.context("`sessions` while the controller is down")?;
    ensure!(
        down_sessions
            .iter()
            .any(|s| s.protocol == "tcp" && s.remote_port == 8000),
        "the TCP session is not listed while the controller is down; {}",
        describe_sessions(&down_sessions)
    );

    gw.launch()
        .context("starting the controller again with the same config")?;
    ensure!(
        curl.exited().is_none(),
        "the transfer finished before the controller came back; make the file bigger"
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions
            .iter()
            .any(|s| s.protocol == "tcp" && s.remote == SERVER_V4 && s.remote_port == 8000),
        "the TCP session is not listed after the restart; {}",
        describe_sessions(&sessions)
    );

    let finished = wait_until(Duration::from_secs(30), || curl.exited().is_some());
    let exit = curl.exited();
    ensure!(
        finished && exit.is_some_and(|s| s.success()),
        "curl did not finish successfully (exit {exit:?}, {} of {SIZE} bytes): {}",
        size(),
        curl.log()
    );
    let got = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    same_bytes("downloaded large.bin", &got, &body)?;

    let sessions = gw.sessions()?;
    ensure!(
        sessions
            .iter()
            .any(|s| s.protocol == "tcp" && s.remote_port == 8000),
        "the TCP session vanished after the transfer; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

/// One iperf3 TCP stream from the client to the server through the prefix, `secs` long;
/// received bits per second.
fn iperf3_stream(topo: &Topology, secs: u32) -> Result<f64> {
    let target = server_via_prefix().to_string();
    Ok(iperf3_tcp(&topo.client, &topo.server, &target, secs)?.1)
}

/// tc mode on veths left as a container runtime leaves them: the hosts send partially
/// checksummed packets (checksum offload) and TSO super-packets, and their peers run no XDP
/// program. The TC program works on those skbs as they are (the kernel finishes the checksums,
/// GSO is kept), and what it sends back out reaches the host at once.
#[test]
fn tc_mode_on_plain_veths() -> Result<()> {
    let _lock = prepare()?;
    for one_armed in [false, true] {
        let topo = Topology::builder(if one_armed { "plain1" } else { "plain2" })
            .one_armed(one_armed)
            .plain_veths(true)
            .build()?;
        let offloads = topo.client.run(&["ethtool", "-k", "c0"])?.stdout_str();
        ensure!(
            offloads.contains("tx-checksumming: on")
                && offloads.contains("tcp-segmentation-offload: on"),
            "the client's veth should keep checksum offload and TSO:\n{offloads}"
        );
        let http = HttpServer::start(&topo.server, 80)?;
        let page = pattern(500_000, 17);
        http.add_file("page.bin", &page)?;
        let gw = Gateway::start(&topo.gateway, topo.config_in("tc"))?;
        ping_all(&topo.client, &server_via_prefix().to_string(), 3)?;
        same_bytes(
            "page.bin",
            &curl(&topo.client, &server_url("page.bin"))?,
            &page,
        )?;
        let bps = iperf3_stream(&topo, 2)?;
        println!(
            "tc mode, {}, plain veths: iperf3 {:.2} Gbit/s",
            if one_armed { "one-armed" } else { "two-armed" },
            bps / 1e9
        );
        // Hop limit 1: the gateway's time exceeded goes back out of the interface the packet
        // came in on (XDP_TX on XDP; a redirect on TC) and must reach the client's ping.
        let out = topo.client.try_run(
            &[
                "ping",
                "-6",
                "-c",
                "1",
                "-W",
                "2",
                "-t",
                "1",
                &server_via_prefix().to_string(),
            ],
            Duration::from_secs(10),
        )?;
        ensure!(
            out.stdout_str().contains("Time exceeded"),
            "ping with hop limit 1 should get the gateway's time exceeded at once:\n{}\n{}",
            out.stdout_str(),
            diagnose(&topo, &gw)
        );
        let stats = gw.stats()?;
        ensure!(
            stats.total_drops() == stats.drop_count("hop-limit-exceeded"),
            "no drops but the hop limit one expected, stats: {stats:?}"
        );
    }
    Ok(())
}

/// `translator check` and `translator status` say which mode suits the interfaces they see, and
/// why: tc for veth; and what the session tables take of kernel memory.
#[test]
fn check_and_status_say_tc_suits_veth() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("advice")?;
    let gw = Gateway::start(&topo.gateway, topo.config_in("native"))?;
    let mut check = gw.command();
    check.arg("check").arg("--config").arg(gw.config_path());
    let out = translator_tests::cmd::run_ok(&mut check, Duration::from_secs(30))?;
    let text = out.stdout_str();
    for iface in ["g6", "g4"] {
        ensure!(
            text.contains(&format!("interfaces.mode = \"native\" on {iface} (veth)"))
                && text.contains("mode \"tc\" suits it better"),
            "`translator check` does not advise tc mode for {iface}:\n{text}"
        );
    }
    ensure!(
        text.lines()
            .any(|l| l.trim_start().starts_with("sessions") && l.contains("MiB of kernel memory")),
        "`translator check` does not say what the session tables take:\n{text}"
    );
    let status = gw.status()?;
    let advice = status["advice"]
        .as_array()
        .context("`status --json` has no advice")?;
    ensure!(
        advice.len() == 2
            && advice
                .iter()
                .all(|a| a["driver"] == "veth" && a["suggested"] == "tc"),
        "`status --json` should suggest tc for both veths: {advice:?}"
    );
    let text = gw.cli(&["status"])?.stdout_str();
    ensure!(
        text.contains("mode \"tc\" suits it better"),
        "`translator status` does not advise tc mode:\n{text}"
    );
    // The session tables' memory: the kernel's accounting, the same as the check's plan.
    let memory = gw.session_memory()?;
    let (slots, bytes) = (memory.session_slots, memory.bytes);
    let planned = translator::dataplane::memory::planned_slots(
        slots,
        memory.binding_slots,
        memory.permit_slots,
    );
    ensure!(
        slots > 0 && planned.abs_diff(bytes) < bytes / 1000,
        "`status --json`: {bytes} bytes for {slots} session slots, planned {planned}"
    );
    ensure!(
        text.contains("memory ") && text.contains(&format!("for {slots} session slots")),
        "`translator status` does not show the session tables' memory:\n{text}"
    );
    ensure!(
        gw.log().contains("mode \"tc\" suits it better"),
        "`translator run` does not warn about native XDP on veth; its log:\n{}",
        gw.log()
    );
    Ok(())
}

/// Changing `interfaces.mode` from native to tc and back while sessions exist: the controller
/// detaches the old kind of program, attaches the new one on the same maps, and the flow keeps
/// its session and mapping.
#[test]
fn mode_change_keeps_sessions() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("modechg")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7777".parse()?)?;
    let mut config = topo.config_in("native");
    let mut gw = Gateway::start(&topo.gateway, config.clone())?;
    let server: SocketAddr = (server_via_prefix(), 7777).into();
    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind("[::]:0"))?
        .context("binding the client's UDP socket")?;
    let port = sock.local_addr()?.port();
    let exchange = |what: &str| -> Result<()> {
        let mut buf = [0u8; 64];
        sock.send_to(what.as_bytes(), server)?;
        let (n, _) = udp_recv(&sock, &mut buf, Duration::from_secs(3))
            .with_context(|| format!("no echo of {what:?}"))?;
        same_bytes("UDP echo", &buf[..n], what.as_bytes())
    };
    let mapping = |gw: &Gateway<'_>| -> Result<(std::net::Ipv4Addr, u16)> {
        gw.sessions()?
            .iter()
            .find(|s| s.protocol == "udp" && s.client_port == port)
            .map(|s| (s.pool, s.pool_port))
            .context("no UDP session of the client's socket")
    };
    exchange("native")?;
    let first = mapping(&gw)?;
    for mode in ["tc", "native"] {
        gw.stop()?;
        config.mode = Some(mode.to_owned());
        std::fs::write(gw.config_path(), config.to_toml())?;
        gw.launch()?;
        exchange(mode)?;
        ensure!(
            mapping(&gw)? == first,
            "the session's mapping changed when the mode became {mode}"
        );
        let link = topo
            .gateway
            .run(&["ip", "-d", "link", "show", "g6"])?
            .stdout_str();
        let tcx: Vec<String> = topo.gateway.in_ns(|| -> Result<Vec<String>> {
            let (_, progs) = aya::programs::SchedClassifier::query_tcx(
                "g6",
                aya::programs::TcAttachType::Ingress,
            )?;
            Ok(progs
                .iter()
                .filter_map(|p| p.name_as_str().map(str::to_owned))
                .collect())
        })??;
        let (xdp, tc) = (
            link.contains("prog/xdp"),
            tcx.iter().any(|n| n == "translator_tc"),
        );
        ensure!(
            if mode == "tc" { tc && !xdp } else { xdp && !tc },
            "in {mode} mode g6 should carry only the {} program (XDP attached: {xdp}, TCX \
             ingress: {tcx:?}):\n{link}",
            if mode == "tc" { "TC" } else { "XDP" }
        );
        let status = gw.status()?;
        ensure!(
            status["mode"].to_string().contains(mode),
            "`status --json` does not report {mode} mode: {}",
            status["mode"]
        );
    }
    Ok(())
}
