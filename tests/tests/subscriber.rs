//! Port blocks per subscriber (`pool.subscriber_prefix_len`, RFC 6888 REQ-4): with 64, the
//! addresses of one /64 share one client's blocks and block limit, so a host that rotates its
//! addresses cannot take more of the pool; with the default 128 each address is a client.
//! Real packets through `BPF_PROG_TEST_RUN` in a fixture namespace.

mod fixture_instance;

use std::net::Ipv6Addr;

use anyhow::{Result, ensure};
use fixture_instance::{XDP_REDIRECT, XDP_TX, with_fixture_instance};
use translator_common::{counters::DropReason, rfc6052};
use translator_tests::require_root;

fn udp_from(src: Ipv6Addr, sport: u16) -> Vec<u8> {
    fixture_instance::udp_to_server(src, sport, 9, b"subscriber")
}

type Outcome = (Vec<(u32, Vec<u8>)>, Vec<Ipv6Addr>, u64);

/// Sends one new UDP flow from each (address, port); returns the actions and output frames,
/// the block holders (BLOCK_SLOTS clients) and the client-limit drop count afterwards.
fn run(subscriber_len: u8, flows: &[(Ipv6Addr, u16)]) -> Result<Outcome> {
    let settings = format!(
        r#"clients = ["2001:db8:1::/48"]
[pool]
addresses = ["192.0.2.1"]
block_size = 64
max_blocks_per_client = 1
subscriber_prefix_len = {subscriber_len}
"#
    );
    with_fixture_instance(&format!("subscr-{subscriber_len}"), &settings, |fx| {
        let mut actions = Vec::new();
        for &(src, port) in flows {
            let out = fx.run(&udp_from(src, port), fx.v6if)?;
            actions.push((out.action, out.packet));
        }
        let mut holders: Vec<Ipv6Addr> = fx
            .maps
            .block_slots
            .keys()
            .filter_map(Result::ok)
            .map(|k| Ipv6Addr::from(rfc6052::from_raw6(&k.client)))
            .collect();
        holders.sort();
        let (_, drops) = fx.maps.counters()?;
        let limit = drops
            .iter()
            .find(|(d, _)| *d == DropReason::ClientLimit)
            .map_or(0, |(_, n)| *n);
        Ok((actions, holders, limit))
    })
}

fn addr(s: &str) -> Ipv6Addr {
    s.parse().expect("test address")
}

/// 64 flows from one address fill its only block; then one flow from another address of the
/// same /64, and one from an address of another /64.
fn flows() -> Vec<(Ipv6Addr, u16)> {
    let mut f: Vec<(Ipv6Addr, u16)> = (0..64).map(|i| (addr("2001:db8:1::a"), 1000 + i)).collect();
    f.push((addr("2001:db8:1::b"), 2000));
    f.push((addr("2001:db8:1:1::c"), 3000));
    f
}

#[test]
fn addresses_of_one_subscriber_prefix_share_its_blocks_and_limit() -> Result<()> {
    require_root()?;
    let (outcomes, holders, limit) = run(64, &flows())?;
    let actions: Vec<u32> = outcomes.iter().map(|(a, _)| *a).collect();
    ensure!(
        actions[..64].iter().all(|&a| a == XDP_REDIRECT),
        "the first 64 flows of 2001:db8:1::a must be translated: {actions:?}"
    );
    // Refused, with an ICMPv6 destination unreachable (type 1) sent back to the client.
    let (action, refused) = &outcomes[64];
    ensure!(
        *action == XDP_TX
            && refused.len() > 54
            && refused[12..14] == [0x86, 0xdd]
            && refused[20] == 58
            && refused[54] == 1,
        "2001:db8:1::b is in the same /64, whose one block is full: expected an ICMPv6 \
         destination unreachable back (XDP_TX), got action {action}"
    );
    ensure!(
        actions[65] == XDP_REDIRECT,
        "2001:db8:1:1::c is another subscriber: it must get a block, got action {}",
        actions[65]
    );
    ensure!(limit == 1, "client-limit drops: {limit}, expected 1");
    ensure!(
        holders == [addr("2001:db8:1::"), addr("2001:db8:1:1::")],
        "blocks are held by the subscriber prefixes, found {holders:?}"
    );
    Ok(())
}

#[test]
fn by_default_every_address_is_a_client_of_its_own() -> Result<()> {
    require_root()?;
    let (outcomes, holders, limit) = run(128, &flows())?;
    let actions: Vec<u32> = outcomes.iter().map(|(a, _)| *a).collect();
    ensure!(
        actions.iter().all(|&a| a == XDP_REDIRECT),
        "with subscriber_prefix_len 128 every address has its own block: {actions:?}"
    );
    ensure!(limit == 0, "client-limit drops: {limit}, expected 0");
    ensure!(
        holders
            == [
                addr("2001:db8:1::a"),
                addr("2001:db8:1::b"),
                addr("2001:db8:1:1::c")
            ],
        "blocks are held by the addresses, found {holders:?}"
    );
    Ok(())
}
