//! The packet-fixture network: one namespace with two veth pairs, fixed MAC addresses and
//! permanent neighbour entries, so the data plane's route lookups give known answers.
//! v6a (gateway, IPv6 side, 2001:db8:1::1/64) <-> v6b; v4a (gateway, IPv4 side, 192.0.2.1/24)
//! <-> v4b. Neighbours: 2001:db8:1::2 (client), 2001:db8:1::10 (static host), 192.0.2.2 and
//! 192.0.2.3 (servers).

use anyhow::Result;

use crate::NetNs;

pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const MAC_GW6: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_GW4: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
pub const MAC_SERVER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];
pub const MAC_SERVER2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];
pub const MAC_STATIC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x06];

/// The fixture namespace: v6a (gateway, IPv6 side) <-> v6b, v4a (gateway, IPv4 side) <-> v4b.
pub fn fixture_net() -> Result<NetNs> {
    let ns = NetNs::new("fx")?;
    ns.ip(&[
        "link",
        "add",
        "v6a",
        "address",
        "02:00:00:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "v6b",
    ])?;
    ns.ip(&[
        "link",
        "add",
        "v4a",
        "address",
        "02:00:00:00:00:03",
        "type",
        "veth",
        "peer",
        "name",
        "v4b",
    ])?;
    for dev in ["v6a", "v6b", "v4a", "v4b"] {
        ns.ip(&["link", "set", dev, "up"])?;
    }
    ns.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "v6a", "nodad"])?;
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "v4a"])?;
    for (addr, mac, dev) in [
        ("2001:db8:1::2", "02:00:00:00:00:02", "v6a"),
        ("2001:db8:1::10", "02:00:00:00:00:06", "v6a"),
        ("192.0.2.2", "02:00:00:00:00:04", "v4a"),
        ("192.0.2.3", "02:00:00:00:00:05", "v4a"),
    ] {
        ns.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])?;
    }
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    Ok(ns)
}
