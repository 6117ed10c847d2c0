//! The CLAT (`translator clat`, issue 11 part B) with real clients: an IPv6-only client that
//! learns everything from the gateway's router advertisements runs `translator clat` with no
//! settings, and IPv4 literals then work through the CLAT and the gateway's NAT64.
//!
//! - `clat_with_no_settings_reaches_ipv4_literals`: PREF64 from the advertisements; ping,
//!   curl, iperf3 and a UDP application to 192.0.2.2; the server sees the pool address; a
//!   fragmented ping (reassembled by the CLAT's slow path) and an ICMP error (port
//!   unreachable, an application's ECONNREFUSED) come back; `clat down` leaves nothing.
//! - `the_rfc7050_fallback_finds_the_prefix_without_pref64`: no advertisements at all; the
//!   prefix comes from ipv4only.arpa through the gateway's DNS64.
//! - `a_prefix_change_is_followed`: the gateway goes down (its final advertisement withdraws
//!   the prefix) and comes back with another prefix; the CLAT takes the new PREF64 without a
//!   restart and traffic follows.
//! - `with_native_ipv4_the_clat_stays_off`: a native IPv4 default route keeps the CLAT off
//!   (no route through it); removing it turns the CLAT on.
//! - `bad_pref64_options_are_ignored`: advertisements with a PREF64 of a bad length or prefix
//!   length code, or a wrong hop limit, are counted and ignored; a good one is taken.
//!
//! Every namespace, process and file a test creates is removed by a guard, also when it fails.
//! Traffic goes only to addresses inside the test's namespaces. Needs root.

mod ra_common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use ra_common::*;
use translator_tests::clat::Clat;
use translator_tests::named::NetnsEtc;
use translator_tests::{
    GATEWAY_V4, Gateway, HttpServer, NetNs, SERVER_V4, Topology, UdpEcho, iperf3_tcp, pattern,
    translator_bin, udp_recv,
};

const ACTIVE: Duration = Duration::from_secs(30);

/// The gateway with DNS64 on its client address and router advertisements for SLAAC.
fn gateway_with_ra(topo: &Topology, prefix: Option<&str>) -> translator_tests::GatewayConfig {
    let mut cfg = gateway_config(
        topo,
        &format!(
            "[dns64]\nenabled = true\nlisten = [\"[2001:db8:1::1]:53\"]\nupstreams = \
             [\"{SERVER_V4}:53\"]\n\n[ra]\nenabled = true\nmax_interval = 4\nprefixes = \
             [\"2001:db8:1::/64\"]\n"
        ),
    );
    if let Some(p) = prefix {
        cfg.prefix = p.to_owned();
    }
    cfg
}

fn ping(ns: &NetNs, args: &[&str], target: &str, count: u32) -> Result<()> {
    let c = count.to_string();
    let mut argv = vec!["ping", "-c", &c, "-i", "0.2", "-W", "3"];
    argv.extend_from_slice(args);
    argv.push(target);
    let out = ns.try_run(&argv, Duration::from_secs(30))?;
    let text = out.stdout_str();
    let want = format!("{count} packets transmitted, {count} received");
    ensure!(
        out.status.success() && text.contains(&want),
        "ping {args:?} {target}: expected `{want}`, got:\n{text}{}",
        out.stderr_str()
    );
    Ok(())
}

/// What must be gone after `clat down`.
fn nothing_left(ns: &NetNs, clat6: Option<&str>) -> Result<()> {
    let links = ns.ip(&["-j", "link", "show"])?.stdout_str();
    ensure!(
        !links.contains("\"clat\"") && !links.contains("clat-peer"),
        "interfaces left: {links}"
    );
    let routes = ns.ip(&["-4", "route", "show"])?.stdout_str();
    ensure!(!routes.contains("192.0.0"), "IPv4 routes left: {routes}");
    if let Some(a) = clat6 {
        let addrs = ns.ip(&["-6", "addr", "show"])?.stdout_str();
        ensure!(!addrs.contains(a), "the CLAT address {a} is left: {addrs}");
    }
    let progs = std::process::Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .context("bpftool prog show")?;
    let progs = String::from_utf8_lossy(&progs.stdout);
    ensure!(
        !progs.contains("clat_egress") && !progs.contains("clat_ingress"),
        "CLAT programs are still loaded:\n{progs}"
    );
    for root in ["/sys/fs/bpf/translator-clat", "/run/translator-clat"] {
        let left: Vec<String> = std::fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        ensure!(left.is_empty(), "left in {root}: {left:?}");
    }
    Ok(())
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c[0] == name)
        .and_then(|c| c[1].as_u64())
        .or_else(|| status["dataplane"][name].as_u64())
        .unwrap_or(0)
}

#[test]
fn clat_with_no_settings_reaches_ipv4_literals() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::builder("clat0").slaac_client(true).build()?;
    let http = HttpServer::start(&topo.server, 80)?;
    let page = format!(
        "reached by an IPv4 literal through the CLAT (test process {})\n",
        std::process::id()
    );
    http.add_file("index.html", page.as_bytes())?;
    let echo = UdpEcho::start(&topo.server, "0.0.0.0:7777".parse()?)?;
    let gw = Gateway::start(&topo.gateway, gateway_with_ra(&topo, None))?;
    let mut clat = Clat::start(translator_bin()?, &topo.client, &[])?;
    let st = clat.wait_active(ACTIVE)?;
    ensure!(
        st["prefix"] == "2001:db8:64::/96" && st["source"]["kind"] == "router-advertisement",
        "the prefix must come from PREF64: {st}"
    );
    let clat6 = st["clat6"].as_str().context("no CLAT address")?.to_owned();
    ensure!(
        clat6.starts_with("2001:db8:1:"),
        "the CLAT address {clat6} is not in the client's SLAAC /64"
    );
    let routes = topo
        .client
        .ip(&["-4", "route", "show", "default"])?
        .stdout_str();
    ensure!(
        routes.contains("via 192.0.0.2 dev clat") && routes.contains("metric 2048"),
        "IPv4 default route: {routes}"
    );

    // ICMP echo, TCP (HTTP), UDP, iperf3 to the IPv4 literal.
    ping(&topo.client, &[], &SERVER_V4.to_string(), 3)?;
    let out = topo.client.run_timeout(
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "http://192.0.2.2/index.html",
        ],
        Duration::from_secs(20),
    )?;
    ensure!(out.stdout_str() == page, "curl got {:?}", out.stdout_str());

    let sock = topo
        .client
        .in_ns(|| UdpSocket::bind("0.0.0.0:0"))?
        .context("binding an IPv4 UDP socket in the client")?;
    let server: SocketAddr = (SERVER_V4, 7777).into();
    let mut buf = vec![0u8; 2048];
    for (i, n) in [1usize, 500, 1200].into_iter().enumerate() {
        let p = pattern(n, i as u64 + 7);
        sock.send_to(&p, server)?;
        let (got, from) = udp_recv(&sock, &mut buf, Duration::from_secs(3))
            .with_context(|| format!("no echo of a {n}-byte datagram"))?;
        ensure!(from == server, "the echo came from {from}");
        ensure!(buf[..got] == p[..], "the echo of {n} bytes differs");
    }
    let sources: Vec<Ipv4Addr> = echo
        .seen()
        .iter()
        .filter_map(|(a, _)| match a {
            SocketAddr::V4(v4) => Some(*v4.ip()),
            SocketAddr::V6(_) => None,
        })
        .collect();
    ensure!(
        !sources.is_empty() && sources.iter().all(|a| *a == GATEWAY_V4),
        "the server must see the pool address {GATEWAY_V4}, saw {sources:?}"
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions
            .iter()
            .any(|s| s.client.to_string() == clat6 && s.remote == SERVER_V4),
        "no gateway session from the CLAT address {clat6}: {}",
        translator_tests::describe_sessions(&sessions)
    );

    // A ping larger than the IPv4 MTU: fragments, reassembled by the CLAT's slow path both
    // ways (and by the gateway's).
    ping(&topo.client, &["-s", "3000"], &SERVER_V4.to_string(), 2)?;
    // An ICMP error back to an application: UDP to a closed port.
    let closed = topo
        .client
        .in_ns(|| -> std::io::Result<std::io::ErrorKind> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect((SERVER_V4, 9))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.send(b"anyone?")?;
            let mut b = [0u8; 64];
            Ok(match s.recv(&mut b) {
                Ok(_) => ErrorKind::Other,
                Err(e) => e.kind(),
            })
        })??;
    ensure!(
        closed == ErrorKind::ConnectionRefused,
        "UDP to a closed port must fail with ECONNREFUSED (ICMP port unreachable translated \
         twice), got {closed:?}"
    );

    let (_, bps) = iperf3_tcp(&topo.client, &topo.server, "192.0.2.2", 2)
        .context("iperf3 through the CLAT")?;
    println!("iperf3 through CLAT + NAT64: {:.2} Gbit/s", bps / 1e9);

    let st = clat.status()?;
    for c in [
        "translated-4to6",
        "translated-6to4",
        "slow-path-reassembled",
    ] {
        ensure!(counter(&st, c) > 0, "counter {c} is 0: {st}");
    }

    // Down: nothing left.
    let out = clat.cli(&["clat", "down"])?;
    println!("clat down:\n{}", out.stdout_str());
    nothing_left(&topo.client, Some(&clat6))?;
    Ok(())
}

#[test]
fn the_rfc7050_fallback_finds_the_prefix_without_pref64() -> Result<()> {
    let _lock = prepare()?;
    // A client with a static address and route: no router advertisement at all.
    let topo = Topology::two_armed("clat1")?;
    let mut cfg = gateway_config(
        &topo,
        &format!(
            "[dns64]\nenabled = true\nlisten = [\"[2001:db8:1::1]:53\"]\nupstreams = \
             [\"{SERVER_V4}:53\"]\n"
        ),
    );
    cfg.prefix = "2001:db8:46::/96".into();
    let _gw = Gateway::start(&topo.gateway, cfg)?;
    let etc = NetnsEtc::create(&topo.client)?;
    etc.write("resolv.conf", "nameserver 2001:db8:1::1\n")?;
    let mut clat = Clat::start(translator_bin()?, &topo.client, &[])?;
    let st = clat.wait_active(ACTIVE)?;
    ensure!(
        st["prefix"] == "2001:db8:46::/96"
            && st["source"]["kind"] == "dns"
            && st["source"]["resolver"] == "[2001:db8:1::1]:53",
        "the prefix must come from ipv4only.arpa through 2001:db8:1::1: {st}"
    );
    let life = st["lifetime_remaining_s"].as_u64().unwrap_or(0);
    ensure!(
        (3000..=3600).contains(&life),
        "the lifetime must be the records' TTL (3600 s): {life}"
    );
    ping(&topo.client, &[], &SERVER_V4.to_string(), 3)?;
    drop(clat);
    nothing_left(&topo.client, None)?;
    Ok(())
}

#[test]
fn a_prefix_change_is_followed() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::builder("clat2").slaac_client(true).build()?;
    let mut gw = Gateway::start(&topo.gateway, gateway_with_ra(&topo, None))?;
    let mut clat = Clat::start(translator_bin()?, &topo.client, &["--no-dns"])?;
    clat.wait_active(ACTIVE)?;
    ping(&topo.client, &[], &SERVER_V4.to_string(), 2)?;
    // Another gateway configuration: another prefix (`translator down` withdraws the old one
    // with a final advertisement, then the new gateway advertises the new one).
    gw.stop()?;
    drop(gw);
    let gw = Gateway::start(
        &topo.gateway,
        gateway_with_ra(&topo, Some("2001:db8:65::/96")),
    )?;
    let st = clat.wait_status("the new prefix", Duration::from_secs(30), |s| {
        s["prefix"] == "2001:db8:65::/96" && s["state"] == "active"
    })?;
    ensure!(counter(&st, "prefix-changes") >= 1, "{st}");
    ping(&topo.client, &[], &SERVER_V4.to_string(), 3)?;
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.remote == SERVER_V4),
        "the new gateway has no session to {SERVER_V4}"
    );
    Ok(())
}

#[test]
fn with_native_ipv4_the_clat_stays_off() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::builder("clat3").slaac_client(true).build()?;
    let _gw = Gateway::start(&topo.gateway, gateway_with_ra(&topo, None))?;
    // Native IPv4 on the client: an address and a default route on another link.
    let c = &topo.client;
    c.ip(&["link", "add", "n4", "type", "veth", "peer", "name", "n4p"])?;
    c.ip(&["addr", "add", "10.9.9.1/24", "dev", "n4"])?;
    c.ip(&["link", "set", "n4", "up"])?;
    c.ip(&["link", "set", "n4p", "up"])?;
    c.ip(&["route", "add", "default", "via", "10.9.9.2", "dev", "n4"])?;
    let mut clat = Clat::start(translator_bin()?, c, &["--no-dns"])?;
    let st = clat.wait_status("off because of native IPv4", ACTIVE, |s| {
        s["state"] == "off"
            && s["prefix"] == "2001:db8:64::/96"
            && s["reason"]
                .as_str()
                .is_some_and(|r| r.contains("native IPv4") && r.contains("n4"))
    })?;
    let routes = c.ip(&["-4", "route", "show", "default"])?.stdout_str();
    ensure!(
        !routes.contains("clat"),
        "with native IPv4 there must be no route through the CLAT: {routes} ({st})"
    );
    // Native IPv4 goes: the CLAT takes over.
    c.ip(&["route", "del", "default", "via", "10.9.9.2", "dev", "n4"])?;
    clat.wait_active(ACTIVE)?;
    ping(c, &[], &SERVER_V4.to_string(), 2)?;
    // And it comes back: the CLAT steps back again.
    c.ip(&["route", "add", "default", "via", "10.9.9.2", "dev", "n4"])?;
    clat.wait_status("off again", ACTIVE, |s| s["state"] == "off")?;
    let routes = c.ip(&["-4", "route", "show", "default"])?.stdout_str();
    ensure!(
        !routes.contains("clat"),
        "route through the CLAT left: {routes}"
    );
    Ok(())
}

#[test]
fn bad_pref64_options_are_ignored() -> Result<()> {
    let _lock = prepare()?;
    // A static client and a gateway that does not advertise: the test sends the
    // advertisements, from the gateway's link-local address, with scapy.
    let topo = Topology::two_armed("clat4")?;
    let _gw = Gateway::start(&topo.gateway, gateway_config(&topo, ""))?;
    let mut clat = Clat::start(translator_bin()?, &topo.client, &["--no-dns"])?;
    clat.wait_status("running", ACTIVE, |s| s["state"] == "off")?;
    let gw_link = GwLink::read(&topo)?;
    let src = mac_text(gw_link.mac);
    let ll = gw_link.ll;
    let dev = topo.ipv6_interface();
    // PREF64 option bytes: type 38, length 2, scaled lifetime | code, 96 prefix bits.
    let opt = |len_units: u8, plc: u8, extra: usize| {
        let mut o = vec![38u8, len_units];
        o.extend(((1800u16 / 8) << 3 | u16::from(plc)).to_be_bytes());
        o.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0x64, 0, 0, 0, 0, 0, 0]);
        o.extend(std::iter::repeat_n(0u8, extra));
        o
    };
    let send = |hlim: u8, options: &[u8]| -> Result<()> {
        let bytes: String = options.iter().map(|b| format!("\\x{b:02x}")).collect();
        scapy(
            &topo.gateway,
            &format!(
                "sendp(Ether(src='{src}', dst='33:33:00:00:00:01')/IPv6(src='{ll}', \
                 dst='ff02::1', hlim={hlim})/ICMPv6ND_RA(routerlifetime=0)/Raw(b'{bytes}'), \
                 iface='{dev}')"
            ),
        )
    };
    // Codes 6 and 7 are no prefix length; a length of 3 units is not PREF64's.
    send(255, &[opt(2, 6, 0), opt(2, 7, 0), opt(3, 0, 8)].concat())?;
    // A good option, but with hop limit 64: the advertisement is not valid at all.
    send(64, &opt(2, 0, 0))?;
    let st = clat.wait_status("the bad options counted", Duration::from_secs(10), |s| {
        counter(s, "pref64-ignored") >= 3 && counter(s, "adverts-refused") >= 1
    })?;
    ensure!(
        st["state"] == "off" && st["ra_prefix"].is_null(),
        "no prefix may be taken from those: {st}"
    );
    // A good one is taken.
    send(255, &opt(2, 0, 0))?;
    let st = clat.wait_active(Duration::from_secs(10))?;
    ensure!(
        st["prefix"] == "2001:db8:64::/96" && st["source"]["router"] == ll.to_string(),
        "{st}"
    );
    ping(&topo.client, &[], &SERVER_V4.to_string(), 2)?;
    if !clat.stop()? {
        bail!(
            "translator clat did not exit cleanly; its log:\n{}",
            clat.log()
        );
    }
    Ok(())
}
