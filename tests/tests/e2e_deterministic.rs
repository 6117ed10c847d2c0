//! RFC 7422 deterministic port blocks end to end: a running gateway with `pool.deterministic`,
//! real UDP and ping from three subscribers of the client prefix (addresses of the client
//! namespace), their sessions on the ports of the blocks their index names, and the running
//! instance's `log query` and `status` naming them without any block log.

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use translator_tests::{
    ALT_POOL_V4, CLIENT_V6, Gateway, NetNs, TempDir, Topology, UdpEcho, XdpPass, describe_sessions,
    server_via_prefix, udp_recv, wait_until,
};

/// Subscriber `i` of 2001:db8:1::/64 cut into /72s: the interface identifier's first byte.
fn subscriber(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, i << 8, 0, 0, 2)
}

/// First port (or ICMP identifier) of subscriber `i`'s one block of 64.
fn block_start(i: u16) -> u16 {
    1024 + 64 * i
}

fn udp_from(ns: &NetNs, addr: Ipv6Addr, port: u16) -> Result<UdpSocket> {
    ns.in_ns(|| UdpSocket::bind(SocketAddr::from((addr, port))))?
        .with_context(|| format!("binding [{addr}]:{port}"))
}

fn round_trip(sock: &UdpSocket, to: SocketAddr) -> Result<()> {
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        sock.send_to(b"rfc7422", to)?;
        if let Ok((n, from)) = udp_recv(sock, &mut buf, Duration::from_secs(1)) {
            ensure!(
                from == to && buf.get(..n) == Some(&b"rfc7422"[..]),
                "echo from {from}"
            );
            return Ok(());
        }
    }
    anyhow::bail!("no UDP echo from {to}")
}

#[test]
fn subscribers_use_the_blocks_of_their_index_and_log_query_names_them() -> Result<()> {
    translator_tests::require_root()?;
    translator_tests::translator_bin()?;
    let topo = Topology::two_armed("determ")?;
    let _echo = UdpEcho::start(&topo.server, "0.0.0.0:7000".parse()?)?;
    let mut cfg = topo.config();
    // 256 subscribers x 1 block of the 1008 of 198.51.100.1 (not an address of the gateway,
    // so the host's ephemeral ports are not in the way).
    cfg.pool = vec![ALT_POOL_V4.to_string()];
    cfg.block_size = Some(64);
    cfg.max_blocks_per_client = Some(1);
    cfg.subscriber_prefix_len = Some(72);
    cfg.deterministic = Some(true);
    // A block log, which must stay without block lines.
    let logs = TempDir::new("determ")?;
    let log = logs.path().join("blocks.jsonl");
    cfg.extra = format!("[log]\nblocks = \"{}\"\nsessions = true\n", log.display());
    let gw = Gateway::start(&topo.gateway, cfg)?;
    let _pass = XdpPass::attach(&topo.client, "c0")?;
    for i in [37, 255] {
        let a = format!("{}/64", subscriber(i));
        topo.client.ip(&["addr", "add", &a, "dev", "c0", "nodad"])?;
    }
    let server: SocketAddr = (server_via_prefix(), 7000).into();
    let subscribers = [
        (0u16, CLIENT_V6),
        (37, subscriber(37)),
        (255, subscriber(255)),
    ];
    for (n, (_, addr)) in subscribers.iter().enumerate() {
        let sock = udp_from(&topo.client, *addr, 45000 + n as u16)?;
        round_trip(&sock, server)?;
    }
    let target = server_via_prefix().to_string();
    let src = subscriber(37).to_string();
    topo.client
        .run(&["ping", "-6", "-c", "1", "-W", "2", "-I", &src, &target])
        .context("ping from subscriber 37")?;

    let sessions = gw.sessions()?;
    for (i, addr) in subscribers {
        let s = sessions
            .iter()
            .find(|s| s.protocol == "udp" && s.client == addr)
            .with_context(|| {
                format!("no UDP session of {addr}: {}", describe_sessions(&sessions))
            })?;
        ensure!(
            s.pool == ALT_POOL_V4 && (block_start(i)..block_start(i + 1)).contains(&s.pool_port),
            "subscriber {i} ({addr}) must use ports {}-{} of {ALT_POOL_V4}, its session has \
             {}:{}",
            block_start(i),
            block_start(i + 1) - 1,
            s.pool,
            s.pool_port
        );
    }
    let ping = sessions
        .iter()
        .find(|s| s.protocol == "icmp" && s.client == subscriber(37))
        .with_context(|| format!("no ping session: {}", describe_sessions(&sessions)))?;
    ensure!(
        (block_start(37)..block_start(38)).contains(&ping.pool_port),
        "subscriber 37's ping must use identifiers {}-{}, it has {}",
        block_start(37),
        block_start(38) - 1,
        ping.pool_port
    );

    // The running instance answers from its configuration; the block log has the sessions but
    // no block allocations.
    ensure!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.matches("session-created").count() >= 4)
        }),
        "the block log must get the four sessions' session-created lines"
    );
    let text = std::fs::read_to_string(&log)?;
    ensure!(
        !text.contains("block-allocated"),
        "deterministic blocks must not be logged:\n{text}"
    );
    let port = block_start(37) + 5;
    let out = gw.cli(&[
        "log",
        "query",
        "--pool",
        &ALT_POOL_V4.to_string(),
        "--port",
        &port.to_string(),
        "--protocol",
        "udp",
    ])?;
    let want = format!(
        "udp {ALT_POOL_V4} ports {}-{} belong to 2001:db8:1:0:2500::/72 (deterministic block 0 \
         of 1)\n",
        block_start(37),
        block_start(38) - 1
    );
    let got = out.stdout_str();
    ensure!(got == want, "log query answered\n{got}instead of\n{want}");
    // A static binding added at run time holds its port, whatever block the port is in.
    let pool = ALT_POOL_V4.to_string();
    let static_port = (block_start(200) + 1).to_string();
    gw.cli(&[
        "bib",
        "add",
        "--protocol",
        "tcp",
        "--ipv6",
        "2001:db8:1::10",
        "--ipv6-port",
        "80",
        "--ipv4",
        &pool,
        "--ipv4-port",
        &static_port,
    ])?;
    let out = gw.cli(&["log", "query", "--pool", &pool, "--port", &static_port])?;
    let want = format!(
        "tcp {pool} port {static_port} is held by the static mapping of [2001:db8:1::10]:80\n\
         udp {pool} ports {}-{} belong to 2001:db8:1:0:c800::/72 (deterministic block 0 of 1)\n\
         icmp {pool} ports {}-{} belong to 2001:db8:1:0:c800::/72 (deterministic block 0 of 1)\n",
        block_start(200),
        block_start(201) - 1,
        block_start(200),
        block_start(201) - 1
    );
    let got = out.stdout_str();
    ensure!(got == want, "log query answered\n{got}instead of\n{want}");
    let status = gw.status()?;
    ensure!(
        status["pool"]["deterministic_subscribers"] == 256
            && status["pool"]["protocols"]
                .as_array()
                .is_some_and(|ps| ps.len() == 3 && ps.iter().all(|p| p["blocks_total"] == 256)),
        "status must show the 256 subscribers and their 256 blocks per protocol: {}",
        status["pool"]
    );
    Ok(())
}
