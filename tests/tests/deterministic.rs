//! RFC 7422 deterministic port blocks (`pool.deterministic`): subscriber i of the client
//! prefix gets blocks i * max_blocks .. of the pool, in order, whichever CPU or program
//! translates its first packet, and `translator log query` names the holder of a port from the
//! configuration alone. Real packets through `BPF_PROG_TEST_RUN` (XDP and TC) in a fixture
//! namespace, and the real binary for the query.

mod fixture_instance;

use std::net::Ipv6Addr;

use anyhow::{Context as _, Result, ensure};
use fixture_instance::{BASE, POOL, SERVER4, XDP_REDIRECT, XDP_TX, with_fixture_instance};
use translator::{
    config::Config,
    dataplane::{Maps, batch},
    sessions,
};
use translator_common::rfc6052;
use translator_tests::{
    fixture::{MAC_GW4, MAC_SERVER},
    gateway::translator_bin,
    packets::*,
    require_root,
};

/// 256 subscribers (the /64s of 2001:db8:1::/56), 2 blocks of 32 ports each: 512 of the 992
/// blocks of 1024-32767 (below the host's ephemeral ports: the pool address is the fixture
/// gateway's own).
const SETTINGS: &str = r#"clients = ["2001:db8:1::/56"]
[pool]
addresses = ["192.0.2.1"]
tcp_ports = "1024-32767"
udp_ports = "1024-32767"
icmp_ids = "1024-32767"
block_size = 32
max_blocks_per_client = 2
subscriber_prefix_len = 64
deterministic = true
"#;

/// Host `host` of subscriber `i` (the address's fourth group: bits 48 to 64).
fn subscriber(i: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, i, 0, 0, 0, host)
}

/// First port of block `b` of the layout (1024 + 32 b).
fn block_start(b: u32) -> u16 {
    (1024 + 32 * b) as u16
}

fn udp_from(src: Ipv6Addr, sport: u16) -> Vec<u8> {
    fixture_instance::udp_to_server(src, sport, 9, b"rfc7422")
}

/// The translation of [`udp_from`] with pool port `pport`; the IPv4 identification is random
/// (DF clear), so it is taken from the packet compared against.
fn expected(pport: u16, got: &[u8]) -> Vec<u8> {
    let id = got
        .get(18..20)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let seg = udp(POOL.into(), SERVER4.into(), pport, 9, b"rfc7422");
    eth(
        MAC_SERVER,
        MAC_GW4,
        0x0800,
        &ipv4(POOL, SERVER4, 17, 63, 0, id, false, &seg),
    )
}

#[test]
fn each_subscriber_gets_the_blocks_of_its_index() -> Result<()> {
    require_root()?;
    with_fixture_instance("det", SETTINGS, |fx| {
        // The first flow of a subscriber takes its slot 0, block 2 i; an even client port
        // starts at the block's first port.
        for i in [0u16, 1, 37, 255] {
            let out = fx.run(&udp_from(subscriber(i, 0xa), 1000), fx.v6if)?;
            let want = expected(block_start(2 * u32::from(i)), &out.packet);
            ensure!(
                out.action == XDP_REDIRECT && out.packet == want,
                "subscriber {i}: expected its block {} (port {}), got action {} and\n{:02x?}\n\
                 instead of\n{want:02x?}",
                2 * i,
                block_start(2 * u32::from(i)),
                out.action,
                out.packet
            );
        }
        // The TC program takes the same table: subscriber 2's first block is block 4.
        let out = fx.run_tc(&udp_from(subscriber(2, 0xb), 2000), fx.v6if)?;
        let translated = out
            .packet
            .get(34..36)
            .map(|p| u16::from_be_bytes([p[0], p[1]]));
        ensure!(
            translated == Some(block_start(4)),
            "TC: subscriber 2's first flow must get port {}, got {translated:?}",
            block_start(4)
        );

        // So does the slow path (a first packet with extension headers or IPv4 options):
        // subscriber 9's first flow through it gets block 18.
        let cfg = Config::parse(&format!("{BASE}{SETTINGS}"))?;
        let (pool, port) =
            fx.maps
                .create_outbound(&cfg, subscriber(9, 0xb), 7000, SERVER4, 9, 17, 0)?;
        ensure!(
            pool == POOL && port == block_start(18),
            "slow path: subscriber 9's first flow must get {POOL}:{}, got {pool}:{port}",
            block_start(18)
        );

        // Subscriber 37 (2001:db8:1:25::/64), another host of it: its first block (74) has
        // 31 ports left, then its second (75) 32; the flow after that is over its limit.
        let mut ports = Vec::new();
        for n in 0..63 {
            let out = fx.run(&udp_from(subscriber(37, 0xc), 3000 + n), fx.v6if)?;
            ensure!(
                out.action == XDP_REDIRECT,
                "flow {n} of subscriber 37: action {}",
                out.action
            );
            let p = out.packet.get(34..36).context("a UDP header")?;
            ports.push(u16::from_be_bytes([p[0], p[1]]));
        }
        ports.sort_unstable();
        let want: Vec<u16> = (block_start(74) + 1..block_start(76)).collect();
        ensure!(
            ports == want,
            "subscriber 37's flows must use exactly blocks 74 and 75 (but the port its first \
             flow took): got {ports:?}"
        );
        let out = fx.run(&udp_from(subscriber(37, 0xd), 4000), fx.v6if)?;
        ensure!(
            out.action == XDP_TX && out.packet.get(54) == Some(&1),
            "subscriber 37 holds its 2 blocks, full: an ICMPv6 destination unreachable is \
             expected back, got action {}",
            out.action
        );
        // Every flow ends (as expiry would remove them), and the blocks' last allocation is
        // long ago: the next expiry pass empties every slot, and returns nothing to the free
        // queues (there is nothing in them to take).
        clear(&mut fx.maps)?;
        let pass = sessions::expire(&mut fx.maps, &cfg);
        let mut released: Vec<(u16, u16)> = pass
            .blocks
            .iter()
            .map(|(k, b)| ((rfc6052::from_raw6(&k.client) >> 64) as u16, b.start))
            .collect();
        released.sort_unstable();
        let want = [
            (0, block_start(0)),
            (1, block_start(2)),
            (2, block_start(4)),
            (9, block_start(18)),
            (37, block_start(74)),
            (37, block_start(75)),
            (255, block_start(510)),
        ];
        ensure!(
            released == want,
            "released (subscriber, block): {released:?}, expected {want:?}"
        );
        for (p, q) in fx.maps.free.iter_mut().enumerate() {
            ensure!(q.pop(0).is_err(), "free queue {p} is not empty");
        }
        // The subscriber's next flow, from yet another host, has its first block again.
        let out = fx.run(&udp_from(subscriber(37, 0xe), 5000), fx.v6if)?;
        let want = expected(block_start(74), &out.packet);
        ensure!(
            out.action == XDP_REDIRECT && out.packet == want,
            "after the release subscriber 37 must get block 74 again: action {}, {:02x?}",
            out.action,
            out.packet
        );
        Ok(())
    })
}

/// Removes every session, binding and permit and makes every block slot's last allocation
/// long past.
fn clear(maps: &mut Maps) -> Result<()> {
    let k6: Vec<_> = maps.sessions6.keys().collect::<Result<_, _>>()?;
    batch::remove("SESSIONS6", &mut maps.sessions6, &k6);
    let k4: Vec<_> = maps.sessions4.keys().collect::<Result<_, _>>()?;
    batch::remove("SESSIONS4", &mut maps.sessions4, &k4);
    let b6: Vec<_> = maps.bindings6.keys().collect::<Result<_, _>>()?;
    batch::remove("BINDINGS6", &mut maps.bindings6, &b6);
    let b4: Vec<_> = maps.bindings4.keys().collect::<Result<_, _>>()?;
    batch::remove("BINDINGS4", &mut maps.bindings4, &b4);
    let f: Vec<_> = maps.filters.keys().collect::<Result<_, _>>()?;
    batch::remove("FILTERS", &mut maps.filters, &f);
    let slots: Vec<_> = maps.block_slots.iter().collect::<Result<_, _>>()?;
    for (k, mut v) in slots {
        v.last_alloc = 0;
        maps.block_slots.insert(k, v, 0)?;
    }
    Ok(())
}

#[test]
fn log_query_names_the_subscriber_from_the_configuration() -> Result<()> {
    let path = std::env::temp_dir().join(format!("translator-det-{}.toml", std::process::id()));
    std::fs::write(&path, format!("{}{SETTINGS}", fixture_instance::BASE))?;
    let answers = queries(&path);
    let _ = std::fs::remove_file(&path);
    answers
}

fn queries(path: &std::path::Path) -> Result<()> {
    let query = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new(translator_bin()?)
            .args(["log", "query", "--config"])
            .arg(path)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "translator log query {args:?}: {out:?}"
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    // Port 3430 is in block 75: subscriber 37's second.
    let got = query(&["--pool", "192.0.2.1", "--port", "3430", "--protocol", "udp"])?;
    let want = format!(
        "udp 192.0.2.1 ports {}-{} belong to 2001:db8:1:25::/64 (deterministic block 1 of 2)\n",
        block_start(75),
        block_start(76) - 1
    );
    ensure!(got == want, "log query answered\n{got}instead of\n{want}");
    // Every protocol has the same layout here, so without --protocol all three answer.
    let got = query(&["--pool", "192.0.2.1", "--port", "1024", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&got)?;
    let clients: Vec<(&str, &str)> = v
        .as_array()
        .context("a JSON list")?
        .iter()
        .filter_map(|h| Some((h["protocol"].as_str()?, h["client"].as_str()?)))
        .collect();
    ensure!(
        clients
            == [
                ("tcp", "2001:db8:1::"),
                ("udp", "2001:db8:1::"),
                ("icmp", "2001:db8:1::")
            ],
        "port 1024 is subscriber 0's first block in each protocol: {got}"
    );
    // Block 512 and later belong to nobody.
    let got = query(&[
        "--pool",
        "192.0.2.1",
        "--port",
        &block_start(512).to_string(),
    ])?;
    ensure!(
        got.starts_with("no subscriber's deterministic block holds"),
        "{got}"
    );
    Ok(())
}

#[test]
fn blocks_over_the_hosts_ephemeral_ports_are_refused() -> Result<()> {
    require_root()?;
    // The pool address is the fixture gateway's: its ephemeral ports (32768-60999) would be
    // inside subscribers' TCP blocks 30016-46399.
    let settings = SETTINGS.replace("tcp_ports = \"1024-32767\"", "tcp_ports = \"30000-65535\"");
    let e = with_fixture_instance("det-eph", &settings, |_| Ok(()))
        .expect_err("an ephemeral-port overlap must be refused");
    let msg = format!("{e:#}");
    ensure!(
        msg.contains("pool.deterministic: 192.0.2.1 is an address of this host and its tcp blocks")
            && msg.contains(r#"set pool.tcp_ports to a range below 32768 (e.g. "30000-32767")"#),
        "the error must name the setting to change: {msg}"
    );
    Ok(())
}
