//! The route cache (`nat64.route_cache_ms`): with it on, a translated packet reuses the answer
//! of a route lookup made less than that long ago for its destination, so a neighbour change
//! reaches traffic only after the cache time; with it off (the default) at once. A packet
//! larger than any that went through the cached route is looked up again, so the MTU check
//! still applies. Real packets through `BPF_PROG_TEST_RUN` in the fixture namespace, in both
//! directions.

mod fixture_instance;

use std::time::Duration;

use anyhow::{Result, ensure};
use fixture_instance::{
    CLIENT, POOL, SERVER4, SERVER6, XDP_REDIRECT, XDP_TX, mac_text as mac, with_fixture_instance,
};
use translator_tests::{
    NetNs,
    fixture::{MAC_CLIENT, MAC_GW4, MAC_GW6, MAC_SERVER, MAC_SERVER2},
    packets::*,
    require_root,
};

/// A MAC no fixture neighbour has.
const MAC_NEW: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];

fn udp6(len: usize) -> Vec<u8> {
    let seg = udp(CLIENT.into(), SERVER6.into(), 40000, 9, &vec![7u8; len]);
    eth(
        MAC_GW6,
        MAC_CLIENT,
        0x86dd,
        &ipv6(CLIENT, SERVER6, 17, 64, 0, &seg),
    )
}

fn udp4(pool_port: u16) -> Vec<u8> {
    let seg = udp(SERVER4.into(), POOL.into(), 9, pool_port, b"back");
    eth(
        MAC_GW4,
        MAC_SERVER,
        0x0800,
        &ipv4(SERVER4, POOL, 17, 64, 0, 1, true, &seg),
    )
}

fn neigh(ns: &NetNs, addr: &str, m: [u8; 6], dev: &str) -> Result<()> {
    ns.ip(&[
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
    Ok(())
}

/// Destination MAC of a frame.
fn dst_mac(frame: &[u8]) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&frame[..6]);
    m
}

struct Seen {
    /// Destination MAC of a 6->4 packet: first, right after the server's neighbour entry
    /// changed, and after the cache time.
    out4: [[u8; 6]; 3],
    /// The same for 4->6 packets and the client's neighbour entry.
    out6: [[u8; 6]; 3],
    /// Action and first ICMPv6 type byte for a packet larger than the IPv4 link's MTU.
    big: (u32, u8),
}

fn run(cache_ms: u32) -> Result<Seen> {
    let settings = format!(
        r#"clients = ["2001:db8:1::/64"]
icmp_source6 = "2001:db8:1::1"
route_cache_ms = {cache_ms}
[pool]
addresses = ["192.0.2.1"]
"#
    );
    with_fixture_instance(&format!("rcache-{cache_ms}"), &settings, |fx| {
        let (v6if, v4if) = (fx.v6if, fx.v4if);
        let small = udp6(10);
        let first = fx.run(&small, v6if)?;
        ensure!(
            first.action == XDP_REDIRECT,
            "first packet: {}",
            first.action
        );
        let pool_port = u16::from_be_bytes([first.packet[34], first.packet[35]]);
        let back = fx.run(&udp4(pool_port), v4if)?;
        ensure!(back.action == XDP_REDIRECT, "reply: {}", back.action);

        neigh(fx.ns, "192.0.2.2", MAC_NEW, "v4a")?;
        neigh(fx.ns, "2001:db8:1::2", MAC_SERVER2, "v6a")?;
        let soon4 = fx.run(&small, v6if)?;
        let soon6 = fx.run(&udp4(pool_port), v4if)?;
        std::thread::sleep(Duration::from_millis(u64::from(cache_ms) + 300));
        let later4 = fx.run(&small, v6if)?;
        let later6 = fx.run(&udp4(pool_port), v4if)?;

        // Larger than any packet that used the cached route, and than the link: the MTU
        // check must still answer (packet too big, sent back to the client).
        fx.ns.ip(&["link", "set", "v4a", "mtu", "1000"])?;
        let big = fx.run(&udp6(1200), v6if)?;
        let icmp_type = big.packet.get(54).copied().unwrap_or(0);
        Ok(Seen {
            out4: [
                dst_mac(&first.packet),
                dst_mac(&soon4.packet),
                dst_mac(&later4.packet),
            ],
            out6: [
                dst_mac(&back.packet),
                dst_mac(&soon6.packet),
                dst_mac(&later6.packet),
            ],
            big: (big.action, icmp_type),
        })
    })
}

#[test]
fn cached_routes_serve_until_the_cache_time_and_mtu_checks_still_apply() -> Result<()> {
    require_root()?;
    let s = run(1000)?;
    ensure!(
        s.out4 == [MAC_SERVER, MAC_SERVER, MAC_NEW],
        "6->4 next-hop MACs (first, right after the neighbour change, after 1 s): {:?}",
        s.out4.map(mac)
    );
    ensure!(
        s.out6 == [MAC_CLIENT, MAC_CLIENT, MAC_SERVER2],
        "4->6 next-hop MACs (first, right after the neighbour change, after 1 s): {:?}",
        s.out6.map(mac)
    );
    ensure!(
        s.big == (XDP_TX, 2),
        "a packet larger than the link MTU must get an ICMPv6 packet too big (XDP_TX, type 2), \
         got action {} type {}",
        s.big.0,
        s.big.1
    );
    Ok(())
}

#[test]
fn without_the_cache_a_neighbour_change_applies_at_once() -> Result<()> {
    require_root()?;
    let s = run(0)?;
    ensure!(
        s.out4 == [MAC_SERVER, MAC_NEW, MAC_NEW],
        "6->4 next-hop MACs: {:?}",
        s.out4.map(mac)
    );
    ensure!(
        s.out6 == [MAC_CLIENT, MAC_SERVER2, MAC_SERVER2],
        "4->6 next-hop MACs: {:?}",
        s.out6.map(mac)
    );
    ensure!(s.big == (XDP_TX, 2), "big packet: {:?}", s.big);
    Ok(())
}
