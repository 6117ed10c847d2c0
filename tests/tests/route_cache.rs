//! The route cache (`nat64.route_cache_ms`): with it on, a translated packet reuses the answer
//! of a route lookup made less than that long ago for its destination, so a neighbour change
//! reaches traffic only after the cache time; with it off (the default) at once. A packet
//! larger than any that went through the cached route is looked up again, so the MTU check
//! still applies. Real packets through `BPF_PROG_TEST_RUN` in the fixture namespace, in both
//! directions.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd as _;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use translator::{
    config::Config,
    dataplane::{self, Instance, Maps},
    testrun,
};
use translator_tests::{
    NetNs,
    fixture::{MAC_CLIENT, MAC_GW4, MAC_GW6, MAC_SERVER, MAC_SERVER2, fixture_net},
    packets::*,
    require_root,
};

const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// 192.0.2.2 under 2001:db8:64::/96.
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc000, 0x202);
const SERVER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const POOL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
/// A MAC no fixture neighbour has.
const MAC_NEW: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

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
    let ns = fixture_net()?;
    ns.in_ns(|| -> Result<Seen> {
        translator::netns::ensure_bpffs()?;
        let v6if = translator::netns::ifindex("v6a").context("no v6a")?;
        let v4if = translator::netns::ifindex("v4a").context("no v4a")?;
        let cfg = Config::parse(&format!(
            r#"
instance = "rcache-{}-{cache_ms}"
[interfaces]
ipv6 = "v6a"
ipv4 = "v4a"
[nat64]
prefix = "2001:db8:64::/96"
clients = ["2001:db8:1::/64"]
icmp_source6 = "2001:db8:1::1"
route_cache_ms = {cache_ms}
[pool]
addresses = ["192.0.2.1"]
"#,
            std::process::id()
        ))?;
        let inst = Instance::new(&cfg.instance);
        let result = (|| -> Result<Seen> {
            let mut obj = dataplane::load(&cfg, Some(&inst.pins))?;
            let mut maps = Maps::open(&inst.pins)?;
            maps.fill_pool(&cfg)?;
            maps.sync_policy(&cfg)?;
            let fd = dataplane::program(&mut obj)?.fd()?.try_clone()?;
            let send = |frame: &[u8], ifindex: u32| -> Result<testrun::Outcome> {
                Ok(testrun::run(fd.as_fd(), frame, ifindex, 1)?)
            };
            let small = udp6(10);
            let first = send(&small, v6if)?;
            ensure!(
                first.action == XDP_REDIRECT,
                "first packet: {}",
                first.action
            );
            let pool_port = u16::from_be_bytes([first.packet[34], first.packet[35]]);
            let back = send(&udp4(pool_port), v4if)?;
            ensure!(back.action == XDP_REDIRECT, "reply: {}", back.action);

            neigh(&ns, "192.0.2.2", MAC_NEW, "v4a")?;
            neigh(&ns, "2001:db8:1::2", MAC_SERVER2, "v6a")?;
            let soon4 = send(&small, v6if)?;
            let soon6 = send(&udp4(pool_port), v4if)?;
            std::thread::sleep(Duration::from_millis(u64::from(cache_ms) + 300));
            let later4 = send(&small, v6if)?;
            let later6 = send(&udp4(pool_port), v4if)?;

            // Larger than any packet that used the cached route, and than the link: the MTU
            // check must still answer (packet too big, sent back to the client).
            ns.ip(&["link", "set", "v4a", "mtu", "1000"])?;
            let big = send(&udp6(1200), v6if)?;
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
        })();
        dataplane::down(&inst)?;
        result
    })?
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
