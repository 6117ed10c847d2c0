//! End-to-end tests of the conformance fixes of issue 12, with real clients:
//! - on a lab whose hosts run no XDP program and keep their veths as the kernel sets them
//!   (`plain_veths`), the errors the gateway makes itself (time exceeded, packet too big,
//!   fragmentation needed, address unreachable) arrive at once in tc mode, timed from a raw
//!   socket; tracepath and a large ping cross a small IPv4 MTU there; in native mode the
//!   controller says what goes wrong and how to fix it, and with GRO on the peer the
//!   gateway's redirect delivers them at once;
//! - hairpinning: a ping from one client to another client's ICMP mapping, and the ICMPv6 error
//!   a client answers a hairpinned datagram with, back at the sender as "connection refused";
//! - TCP (RFC 6146 section 3.5.2): a simultaneous open between two sockets through a static
//!   mapping, and an inbound SYN to an unbound pool port held for 6 s, then answered with port
//!   unreachable (the IPv4 host's connect fails then), not answered when a client opened a
//!   connection to its source meanwhile, and dropped at once by policy.
//!
//! Each test builds its own namespaces and runs its own controller; a lock keeps them one at a
//! time.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use translator_tests::{
    ALT_POOL_V4, CLIENT_V6, GATEWAY_V4, GATEWAY_V6, Gateway, NetNs, SERVER_V4, StaticMapping,
    Topology, describe_sessions, nat64, probe, server_via_prefix, stats_delta, wait_until,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn prepare() -> Result<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    translator_tests::require_root()?;
    translator_tests::translator_bin()?;
    for tool in ["tracepath", "ping", "ethtool", "nft"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        ensure!(found, "`{tool}` is not installed (PATH has no {tool})");
    }
    Ok(guard)
}

/// What "at once" means here: the gateway's errors take tens of microseconds on veth; a frame
/// left in a queue until another one came would take seconds.
const AT_ONCE: Duration = Duration::from_millis(200);

/// Errors unless an error of type `ty` (and code) came back within [`AT_ONCE`].
fn arrives_at_once(
    what: &str,
    a: Option<probe::Answer>,
    ty: u8,
    code: u8,
) -> Result<probe::Answer> {
    let a = a.with_context(|| format!("{what}: no ICMP error came back within 3 s"))?;
    ensure!(
        a.ty == ty && a.code == code,
        "{what}: got type {} code {}, expected {ty}/{code}",
        a.ty,
        a.code
    );
    ensure!(
        a.after < AT_ONCE,
        "{what}: the error took {:?} (more than {AT_ONCE:?})",
        a.after
    );
    println!(
        "{what}: type {ty} code {code} from {} after {:?}",
        a.from, a.after
    );
    Ok(a)
}

const WAIT: Duration = Duration::from_secs(3);

// ------------------------------------------------------------------------------------------------
// 5. Generated errors on a lab of plain veths.

/// A client pings with hop limit 1 (time exceeded), with 1452 bytes across the 1400-byte IPv4
/// link (packet too big, MTU 1420); the server pings a static ICMP mapping with TTL 1 (time
/// exceeded) and with 1400 bytes that do not fit the gateway's link toward the client once it
/// is 1280 bytes (fragmentation needed, MTU 1260); a ninth identifier from a client whose
/// eight are taken (address unreachable). Each must arrive within [`AT_ONCE`].
fn generated_errors(topo: &Topology, two_armed: bool) -> Result<()> {
    let server = server_via_prefix();
    arrives_at_once(
        "time exceeded (hop limit 1)",
        probe::icmp6_error_after(&topo.client, server, 64, 1, 0x0101, WAIT)?,
        3,
        0,
    )?;
    if two_armed {
        let ptb = arrives_at_once(
            "packet too big (1452-byte echo, 1400-byte IPv4 link)",
            probe::icmp6_error_after(&topo.client, server, 1452, 64, 0x0102, WAIT)?,
            2,
            0,
        )?;
        ensure!(ptb.rest == 1420, "packet too big with MTU {}", ptb.rest);
        // Now a smaller link toward the client (after the client's big probe: g6 would not
        // take its frames any more).
        topo.gateway.ip(&["link", "set", "g6", "mtu", "1280"])?;
        let fn4 = arrives_at_once(
            "fragmentation needed (1400-byte echo, 1280-byte IPv6 link)",
            probe::icmp4_error_after(&topo.server, GATEWAY_V4, 1380, 64, ECHO_ID4, WAIT)?,
            3,
            4,
        )?;
        ensure!(
            fn4.rest & 0xffff == 1260,
            "next-hop MTU {}",
            fn4.rest & 0xffff
        );
    }
    arrives_at_once(
        "time exceeded (TTL 1, IPv4 side)",
        probe::icmp4_error_after(&topo.server, GATEWAY_V4, 64, 1, ECHO_ID4, WAIT)?,
        11,
        0,
    )?;
    // Eight identifiers fill the client's one block of eight; the ninth has no port left.
    for id in 0..8u16 {
        let _ = probe::icmp6_error_after(
            &topo.client,
            server,
            64,
            64,
            0x0200 + id,
            Duration::from_millis(100),
        )?;
    }
    arrives_at_once(
        "address unreachable (no identifier left)",
        probe::icmp6_error_after(&topo.client, server, 64, 64, 0x0300, WAIT)?,
        1,
        3,
    )?;
    Ok(())
}

/// The server's ICMP identifier for the static mapping to the client.
const ECHO_ID4: u16 = 4242;

fn plain_lab(
    tag: &str,
    one_armed: bool,
    mode: &str,
) -> Result<(Topology, translator_tests::GatewayConfig)> {
    let topo = Topology::builder(tag)
        .one_armed(one_armed)
        .plain_veths(true)
        .build()?;
    if !one_armed {
        // A 1400-byte IPv4 link (the IPv6 link becomes smaller later, see generated_errors).
        topo.gateway.ip(&["link", "set", "g4", "mtu", "1400"])?;
        topo.server.ip(&["link", "set", "s0", "mtu", "1400"])?;
    }
    let mut config = topo.config_in(mode);
    config.icmp_ids = Some("1024-1031".into());
    config.block_size = Some(8);
    config.max_blocks_per_client = Some(1);
    config.statics.push(StaticMapping {
        protocol: "icmp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 7,
        ipv4: GATEWAY_V4,
        ipv4_port: ECHO_ID4,
    });
    Ok((topo, config))
}

/// `tracepath` to the server across the 1400-byte IPv4 link: the gateway as the first hop,
/// path MTU 1420, reached; and how long it took.
fn tracepath_across(client: &NetNs) -> Result<Duration> {
    let start = Instant::now();
    let target = server_via_prefix().to_string();
    let out = client.try_run(
        &["tracepath", "-n", "-m", "4", &target],
        Duration::from_secs(30),
    )?;
    let took = start.elapsed();
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    let pmtu = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Resume: pmtu "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok());
    ensure!(
        pmtu == Some(1420) && text.contains("reached") && text.contains(&GATEWAY_V6.to_string()),
        "tracepath should reach {target} through {GATEWAY_V6} with pmtu 1420:\n{text}"
    );
    println!("tracepath took {took:?}:\n{text}");
    Ok(took)
}

/// A large ping (1452 bytes, 1500 in all) across the 1400-byte IPv4 link: the first one meets
/// packet too big, the kernel fragments the next ones, and they are answered.
fn large_ping_across(client: &NetNs) -> Result<()> {
    let target = server_via_prefix().to_string();
    let out = client.try_run(
        &[
            "ping", "-6", "-c", "4", "-i", "0.3", "-W", "2", "-s", "1452", &target,
        ],
        Duration::from_secs(30),
    )?;
    let text = out.stdout_str();
    let replies = text.lines().filter(|l| l.contains("bytes from")).count();
    ensure!(
        text.contains("Packet too big") && text.contains("mtu=1420") && replies >= 3,
        "a 1452-byte ping should meet packet too big (mtu 1420) once and then be answered \
         in fragments:\n{text}"
    );
    Ok(())
}

/// tc mode on plain veths, two-armed and one-armed: every error the gateway makes arrives at
/// once; tracepath and a large ping cross the small IPv4 MTU.
#[test]
fn tc_mode_on_plain_veths_delivers_generated_errors_at_once() -> Result<()> {
    let _lock = prepare()?;
    for one_armed in [false, true] {
        let (topo, config) = plain_lab(if one_armed { "gen1" } else { "gen2" }, one_armed, "tc")?;
        let gw = Gateway::start(&topo.gateway, config)?;
        if !one_armed {
            // Each of these learns the path MTU: the client forgets it in between.
            large_ping_across(&topo.client)?;
            topo.client.run(&["ip", "-6", "route", "flush", "cache"])?;
            let took = tracepath_across(&topo.client)?;
            ensure!(
                took < Duration::from_secs(5),
                "tracepath took {took:?}: its errors should come at once"
            );
            topo.client.run(&["ip", "-6", "route", "flush", "cache"])?;
        }
        generated_errors(&topo, !one_armed)?;
        let stats = gw.stats()?;
        let sent = if one_armed { 3 } else { 6 };
        ensure!(
            stats.event("icmp-error-sent") >= sent,
            "the gateway should count the {sent} errors it sent: {stats:?}"
        );
    }
    Ok(())
}

/// native mode on plain veths: `check`, `status` and the log name the problem (what the
/// gateway sends back out of a veth reaches the host only if its peer has NAPI) and the fixes
/// (GRO on the peer, or tc mode). Without NAPI on the peer the errors are lost; with GRO on it,
/// the gateway's redirect (it uses one instead of XDP_TX on veth) delivers them at once.
#[test]
fn native_mode_on_plain_veths_says_what_to_do_and_delivers_with_gro() -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = plain_lab("gennat", false, "native")?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let mut check = gw.command();
    check.arg("check").arg("--config").arg(gw.config_path());
    let text = translator_tests::cmd::run_ok(&mut check, Duration::from_secs(30))?.stdout_str();
    let status = gw.cli(&["status"])?.stdout_str();
    let log = gw.log();
    for (what, said) in [("check", &text), ("status", &status), ("the log", &log)] {
        for must in [
            "interfaces.mode = \"native\" on g6 (veth)",
            "packet too big",
            "one-armed",
            "gro on",
            "XDP_TX",
            "mode \"tc\" suits it better",
        ] {
            ensure!(said.contains(must), "{what} does not say {must:?}:\n{said}");
        }
    }
    let json = gw.status()?;
    let advice = json["advice"]
        .as_array()
        .context("`status --json` has no advice")?;
    ensure!(
        advice.iter().all(|a| a["driver"] == "veth"
            && a["suggested"] == "tc"
            && a["reason"]
                .as_str()
                .is_some_and(|r| r.contains("gro on") && r.contains("XDP_TX"))),
        "`status --json` should give the reason and the fix: {advice:?}"
    );
    // The peer as the kernel leaves it (GRO off, no XDP program): nothing comes back.
    let lost = probe::icmp6_error_after(&topo.client, server_via_prefix(), 64, 1, 0x0101, WAIT)?;
    ensure!(
        lost.is_none(),
        "without NAPI on the peer the time exceeded was expected to be lost (as check says), \
         but it came: {lost:?}"
    );
    println!("native, peer without GRO: the time exceeded did not come within {WAIT:?}");
    // GRO on the peer (NAPI): the redirect delivers at once.
    topo.client.run(&["ethtool", "-K", "c0", "gro", "on"])?;
    topo.server.run(&["ethtool", "-K", "s0", "gro", "on"])?;
    generated_errors(&topo, true)?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// 4. and 7. Hairpinning between two clients.

/// Client A (2001:db8:1::3) next to client B (CLIENT_V6) on the client's link; two pool
/// addresses.
const CLIENT_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);

fn hairpin_lab(tag: &str, mode: &str) -> Result<(Topology, translator_tests::GatewayConfig)> {
    let topo = Topology::two_armed(tag)?;
    topo.client
        .ip(&["addr", "add", "2001:db8:1::3/64", "dev", "c0", "nodad"])?;
    let mut config = topo.config_in(mode);
    config.pool = vec![GATEWAY_V4.to_string(), ALT_POOL_V4.to_string()];
    Ok((topo, config))
}

fn hairpin_ping_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let (topo, mut config) = hairpin_lab("hpi", mode)?;
    // A's identifier 1111 maps to 3333 on the first pool address, B's 2222 to 3333 on the
    // second: a request A sends to B's mapping arrives there with identifier 3333.
    config.statics.push(StaticMapping {
        protocol: "icmp".into(),
        ipv6: CLIENT_A,
        ipv6_port: 1111,
        ipv4: GATEWAY_V4,
        ipv4_port: 3333,
    });
    config.statics.push(StaticMapping {
        protocol: "icmp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 2222,
        ipv4: ALT_POOL_V4,
        ipv4_port: 3333,
    });
    let gw = Gateway::start(&topo.gateway, config)?;
    let before = gw.stats()?;
    let target = nat64(ALT_POOL_V4).to_string();
    let out = topo.client.try_run(
        &[
            "ping",
            "-6",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "-I",
            "2001:db8:1::3",
            "-e",
            "1111",
            &target,
        ],
        Duration::from_secs(20),
    )?;
    let after = gw.stats()?;
    let text = out.stdout_str();
    let replies = text
        .lines()
        .filter(|l| l.contains(&format!("bytes from {target}")))
        .count();
    ensure!(
        replies == 3,
        "A's ping to B's mapping {target} should be answered by B three times:\n{text}\n{}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.event("hairpinned") >= before.event("hairpinned") + 6,
        "three requests and three replies should be hairpinned: {}",
        stats_delta(&before, &after)
    );
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "icmp"
            && s.client == CLIENT_V6
            && s.client_port == 2222
            && s.remote == GATEWAY_V4),
        "no ICMP session for B from A's mapping; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

/// Client A pings client B's ICMP mapping; B's kernel answers, and A gets the replies from
/// B's mapping.
#[test]
fn hairpinned_ping_between_two_clients() -> Result<()> {
    hairpin_ping_in("native")
}

/// [`hairpinned_ping_between_two_clients`] in tc mode.
#[test]
fn hairpinned_ping_between_two_clients_tc() -> Result<()> {
    hairpin_ping_in("tc")
}

fn hairpin_error_in(mode: &str) -> Result<()> {
    let _lock = prepare()?;
    let (topo, mut config) = hairpin_lab("hpe", mode)?;
    config.statics.push(StaticMapping {
        protocol: "udp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: 8080,
        ipv4: ALT_POOL_V4,
        ipv4_port: 8080,
    });
    let gw = Gateway::start(&topo.gateway, config)?;
    let public = SocketAddr::from((nat64(ALT_POOL_V4), 8080));
    let before = gw.stats()?;
    // Nothing listens on B's port 8080: B's kernel answers A's datagram with ICMPv6 port
    // unreachable, to A's mapping; it must reach A's connected socket.
    let result = topo.client.in_ns(|| -> Result<std::io::ErrorKind> {
        let sock = UdpSocket::bind(SocketAddr::from((CLIENT_A, 0)))?;
        sock.connect(public)?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            sock.send(b"anyone there?")?;
            match sock.recv(&mut buf) {
                Ok(n) => bail!("B answered {n} bytes, but nothing listens there"),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    return Ok(ErrorKind::ConnectionRefused);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(ErrorKind::TimedOut)
    })??;
    let after = gw.stats()?;
    ensure!(
        result == ErrorKind::ConnectionRefused,
        "A's socket should learn of B's port unreachable (connection refused), got {result:?}: \
         {}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.event("icmp-error-translated") > before.event("icmp-error-translated"),
        "the hairpinned error should be counted: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

/// Client A sends a datagram to client B's mapping where nothing listens: B's ICMPv6 port
/// unreachable comes back to A through both mappings, and A's socket reports it.
#[test]
fn hairpinned_port_unreachable_reaches_the_sender() -> Result<()> {
    hairpin_error_in("native")
}

/// [`hairpinned_port_unreachable_reaches_the_sender`] in tc mode.
#[test]
fn hairpinned_port_unreachable_reaches_the_sender_tc() -> Result<()> {
    hairpin_error_in("tc")
}

// ------------------------------------------------------------------------------------------------
// 6. TCP: simultaneous open, held SYNs.

/// A rule in the server's namespace that drops SYNs (without ACK) to `port`, removed on drop.
struct DropSyns<'a>(&'a NetNs);

impl<'a> DropSyns<'a> {
    fn to_port(ns: &'a NetNs, port: u16) -> Result<Self> {
        ns.run(&["nft", "add", "table", "inet", "dropsyn"])?;
        ns.run(&[
            "nft",
            "add chain inet dropsyn in { type filter hook input priority 0 ; }",
        ])?;
        ns.run(&[
            "nft",
            &format!("add rule inet dropsyn in tcp dport {port} tcp flags == syn drop"),
        ])?;
        Ok(Self(ns))
    }
}

impl Drop for DropSyns<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["nft", "delete", "table", "inet", "dropsyn"]);
    }
}

/// Two sockets open a connection to each other at the same time (RFC 793's simultaneous
/// open), through a static TCP mapping: the client's SYN passes the gateway (V6 INIT) but is
/// lost before the server, whose own SYN then meets the client's socket in SYN-SENT; both
/// connects succeed, data goes both ways, and the session is established.
#[test]
fn simultaneous_open_between_two_sockets() -> Result<()> {
    const CPORT: u16 = 5001;
    const SPORT: u16 = 6001;
    let _lock = prepare()?;
    let topo = Topology::two_armed("simo")?;
    let mut config = topo.config_in("tc");
    config.statics.push(StaticMapping {
        protocol: "tcp".into(),
        ipv6: CLIENT_V6,
        ipv6_port: CPORT,
        ipv4: GATEWAY_V4,
        ipv4_port: CPORT,
    });
    let gw = Gateway::start(&topo.gateway, config)?;
    let _drop = DropSyns::to_port(&topo.server, SPORT)?;
    let connect = |ns: &NetNs, local: SocketAddr, remote: SocketAddr| {
        ns.in_ns(move || -> Result<TcpStream> {
            let domain = if local.is_ipv6() {
                socket2::Domain::IPV6
            } else {
                socket2::Domain::IPV4
            };
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.bind(&local.into())?;
            s.connect_timeout(&remote.into(), Duration::from_secs(10))?;
            Ok(s.into())
        })
    };
    let client_side = SocketAddr::from((CLIENT_V6, CPORT));
    let server_side = SocketAddr::from((SERVER_V4, SPORT));
    let (client, server) = std::thread::scope(|sc| {
        let c = sc.spawn(|| {
            connect(
                &topo.client,
                client_side,
                (server_via_prefix(), SPORT).into(),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let s = sc.spawn(|| connect(&topo.server, server_side, (GATEWAY_V4, CPORT).into()));
        (c.join(), s.join())
    });
    let mut client = client.map_err(|_| anyhow::anyhow!("the client thread panicked"))???;
    let mut server = server.map_err(|_| anyhow::anyhow!("the server thread panicked"))???;
    client.write_all(b"from the client")?;
    server.write_all(b"from the server")?;
    let mut buf = [0u8; 15];
    server.set_read_timeout(Some(Duration::from_secs(3)))?;
    client.set_read_timeout(Some(Duration::from_secs(3)))?;
    server.read_exact(&mut buf)?;
    ensure!(&buf == b"from the client", "the server read {buf:?}");
    client.read_exact(&mut buf)?;
    ensure!(&buf == b"from the server", "the client read {buf:?}");
    let sessions = gw.sessions()?;
    ensure!(
        sessions.iter().any(|s| s.protocol == "tcp"
            && s.client_port == CPORT
            && s.remote_port == SPORT
            && s.state == "established"),
        "the simultaneously opened session should be established; {}",
        describe_sessions(&sessions)
    );
    Ok(())
}

/// The controller's held-SYN counter `name` (`stats --json`, section slow_path), once it
/// published one at least `at_least`, within `within`.
fn held_counter(gw: &Gateway, name: &str, at_least: u64, within: Duration) -> Result<u64> {
    let read = || -> u64 {
        gw.cli(&["stats", "--json"])
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["slow_path"][name].as_u64())
            .unwrap_or(0)
    };
    wait_until(within, || read() >= at_least);
    Ok(read())
}

fn held_syn_lab(tag: &str, policy: &str) -> Result<(Topology, translator_tests::GatewayConfig)> {
    let topo = Topology::two_armed(tag)?;
    let mut config = topo.config_in("tc");
    // A pool address that is not the gateway's own: an unbound port there is nobody's.
    config.pool = vec![ALT_POOL_V4.to_string()];
    config.inbound_syn = Some(policy.into());
    // A short expiry period, so that the controller publishes its counters every 2 s.
    config.timeout_icmp = Some(8);
    config.enforce_rfc_minimums = Some(false);
    Ok((topo, config))
}

/// A connect from the IPv4 side to `to`, from `local` (port 0: any): how it ended and when.
fn connect_from_server(
    ns: &NetNs,
    local: SocketAddr,
    to: SocketAddr,
    timeout: Duration,
) -> Result<(ErrorKind, Duration)> {
    ns.in_ns(move || -> Result<(ErrorKind, Duration)> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&local.into())?;
        let start = Instant::now();
        let kind = match s.connect_timeout(&to.into(), timeout) {
            Ok(()) => bail!("the connect to {to} succeeded; nothing is bound there"),
            Err(e) => e.kind(),
        };
        Ok((kind, start.elapsed()))
    })?
}

/// An inbound SYN to a pool port nothing is bound to is held (RFC 6146 section 3.5.2.2), then
/// answered with port unreachable after 6 s: the IPv4 host's connect fails as refused then, not
/// at once. Its retransmissions meanwhile are not answered twice.
#[test]
fn inbound_syn_is_held_then_answered() -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = held_syn_lab("syn6", "hold")?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let before = gw.stats()?;
    let (kind, took) = connect_from_server(
        &topo.server,
        SocketAddr::from((SERVER_V4, 0)),
        SocketAddr::from((ALT_POOL_V4, 7000)),
        Duration::from_secs(15),
    )?;
    let after = gw.stats()?;
    println!("the held SYN was answered after {took:?} ({kind:?})");
    ensure!(
        kind == ErrorKind::ConnectionRefused
            && took >= Duration::from_millis(5900)
            && took < Duration::from_secs(8),
        "the connect should be refused 6 to 7 s after the SYN, was {kind:?} after {took:?}: {}",
        stats_delta(&before, &after)
    );
    ensure!(
        after.drop_count("inbound-syn-held") > before.drop_count("inbound-syn-held"),
        "the SYN should be counted as held: {}",
        stats_delta(&before, &after)
    );
    let answered = held_counter(&gw, "held-syn-answered", 1, Duration::from_secs(5))?;
    ensure!(answered == 1, "held-syn-answered is {answered}, expected 1");
    Ok(())
}

/// A held SYN is not answered when a client opens a connection to its source meanwhile (the
/// client's SYN forgets it: a simultaneous open may be under way). The IPv4 host gives up
/// before its SYN is sent again (a retransmission would be held afresh: it still goes to a
/// port nothing is bound to).
#[test]
fn inbound_syn_held_is_not_answered_when_the_client_opens() -> Result<()> {
    const SPORT: u16 = 7100;
    let _lock = prepare()?;
    let (topo, config) = held_syn_lab("syn6c", "hold")?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let before = gw.stats()?;
    std::thread::scope(|sc| {
        let server = sc.spawn(|| {
            connect_from_server(
                &topo.server,
                SocketAddr::from((SERVER_V4, SPORT)),
                SocketAddr::from((ALT_POOL_V4, 7001)),
                Duration::from_millis(800),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        // The client opens a connection to the held SYN's source (the server's kernel refuses
        // it: that socket is busy connecting; what matters is the client's SYN).
        let _ = topo.client.in_ns(|| {
            TcpStream::connect_timeout(
                &SocketAddr::from((server_via_prefix(), SPORT)),
                Duration::from_secs(2),
            )
        });
        let _ = server.join();
    });
    let after = gw.stats()?;
    ensure!(
        after.event("inbound-syn-cancelled") > before.event("inbound-syn-cancelled")
            && after.drop_count("inbound-syn-held") == before.drop_count("inbound-syn-held") + 1,
        "one SYN should be held and the client's SYN should forget it: {}",
        stats_delta(&before, &after)
    );
    // Past the 6 s, nothing was answered.
    std::thread::sleep(Duration::from_secs(7));
    let answered = held_counter(&gw, "held-syn-answered", 1, Duration::from_secs(3))?;
    ensure!(answered == 0, "held-syn-answered is {answered}, expected 0");
    Ok(())
}

/// `nat64.inbound_syn = "drop"`: such a SYN is dropped at once and never answered.
#[test]
fn inbound_syn_dropped_by_policy() -> Result<()> {
    let _lock = prepare()?;
    let (topo, config) = held_syn_lab("syn6d", "drop")?;
    let gw = Gateway::start(&topo.gateway, config)?;
    let before = gw.stats()?;
    let (kind, took) = connect_from_server(
        &topo.server,
        SocketAddr::from((SERVER_V4, 0)),
        SocketAddr::from((ALT_POOL_V4, 7000)),
        Duration::from_secs(9),
    )?;
    let after = gw.stats()?;
    ensure!(
        kind == ErrorKind::TimedOut || kind == ErrorKind::WouldBlock,
        "with inbound_syn = \"drop\" the connect should time out, was {kind:?} after {took:?}"
    );
    ensure!(
        after.drop_count("no-session") > before.drop_count("no-session")
            && after.drop_count("inbound-syn-held") == before.drop_count("inbound-syn-held"),
        "the SYN should be dropped as no-session, not held: {}",
        stats_delta(&before, &after)
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Upgrades: pins of another map layout.

/// A controller refuses to adopt the pins of a data plane with another map layout (here: pins
/// without the layout record, as an older translator leaves them), says why and what to do, and
/// starts after `translator down`.
#[test]
fn pins_of_another_map_layout_are_not_adopted() -> Result<()> {
    let _lock = prepare()?;
    let topo = Topology::two_armed("layout")?;
    let mut gw = Gateway::start(&topo.gateway, topo.config_in("tc"))?;
    gw.stop()?;
    let pin = format!("/sys/fs/bpf/translator/{}/LAYOUT", gw.instance());
    std::fs::remove_file(&pin).with_context(|| format!("removing {pin}"))?;
    gw.set_print_log_on_drop(false);
    ensure!(
        gw.launch().is_err(),
        "the controller adopted pins without a layout record"
    );
    let log = gw.log();
    ensure!(
        log.contains("map layout 1")
            && log.contains(&format!("translator down --instance {}", gw.instance())),
        "the refusal should name the layouts and the fix:\n{log}"
    );
    gw.cli(&["down"])?;
    gw.set_print_log_on_drop(true);
    gw.launch()?;
    ping_once(&topo.client)?;
    Ok(())
}

fn ping_once(client: &NetNs) -> Result<()> {
    let out = client.try_run(
        &[
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            &server_via_prefix().to_string(),
        ],
        Duration::from_secs(10),
    )?;
    ensure!(
        out.status.success(),
        "ping after the restart failed:\n{}",
        out.stdout_str()
    );
    Ok(())
}
