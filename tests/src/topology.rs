//! The test and demo topology: an IPv6-only client, the gateway, an IPv4-only server.
//!
//! Two-armed (default):
//! ```text
//!  client ns                gateway ns                          server ns
//!  c0 2001:db8:1::2/64 ---- g6 2001:db8:1::1/64
//!                           g4 192.0.2.1/24 ------------------- s0 192.0.2.2/24
//! ```
//! One-armed: a fourth namespace `lan` holds a bridge; client, gateway and server each have one
//! veth into it, and the gateway's single interface `g0` carries both 2001:db8:1::1/64 and
//! 192.0.2.1/24 (the data plane answers with `XDP_TX`).
//!
//! The client and server veths get `tx off` (namespaces hand veth partially checksummed packets
//! that XDP cannot finish; a real wire never carries them) and GRO (a veth receiving
//! `XDP_REDIRECT`ed frames drops them unless it has NAPI: GRO or an XDP program). In the
//! one-armed variant the bridge port facing the gateway gets an `XDP_PASS` program, because
//! veth forwards `XDP_TX` frames only to a peer that runs XDP itself.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};

use crate::gateway::GatewayConfig;
use crate::netns::NetNs;
use crate::xdp_pass::XdpPass;

/// The client's address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The clients' prefix (the `clients` setting).
pub const CLIENT_PREFIX: &str = "2001:db8:1::/64";
/// The gateway's IPv6 address (the client's default router).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The gateway's IPv4 address (also the default pool address).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The server's address.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// An alternative pool address that is not on any interface; the server routes
/// 198.51.100.0/24 via the gateway.
pub const ALT_POOL_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The NAT64 prefix.
pub const PREFIX: &str = "2001:db8:64::/96";
/// The NAT64 prefix's first 96 bits.
const PREFIX_BITS: [u16; 6] = [0x2001, 0xdb8, 0x64, 0, 0, 0];

/// The IPv6 address under [`PREFIX`] that stands for `v4` (RFC 6052, /96).
pub fn nat64(v4: Ipv4Addr) -> Ipv6Addr {
    let [a, b, c, d] = v4.octets();
    let p = PREFIX_BITS;
    Ipv6Addr::new(
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    )
}

/// The server as the client reaches it: 2001:db8:64::c000:202.
pub fn server_via_prefix() -> Ipv6Addr {
    nat64(SERVER_V4)
}

/// Builds a [`Topology`].
#[derive(Clone, Debug)]
pub struct TopologyBuilder {
    tag: String,
    one_armed: bool,
    plain: bool,
    slaac_client: bool,
}

impl TopologyBuilder {
    /// Veths as a container runtime leaves them: checksum offload, TSO and GRO as the kernel
    /// sets them, and no XDP programs on the peers. The XDP data plane needs the preparation the
    /// default topology makes (module docs); tc mode needs none.
    pub fn plain_veths(mut self, yes: bool) -> Self {
        self.plain = yes;
        self
    }

    /// A single interface on the gateway for both IPv6 and IPv4.
    pub fn one_armed(mut self, yes: bool) -> Self {
        self.one_armed = yes;
        self
    }

    /// A client with nothing configured: no address but its link-local one, no route, and
    /// `accept_ra = 2`, `autoconf = 1` on `c0`, so that it takes what router advertisements say.
    pub fn slaac_client(mut self, yes: bool) -> Self {
        self.slaac_client = yes;
        self
    }

    /// Creates the namespaces and links. On error, whatever was created is removed again.
    pub fn build(self) -> Result<Topology> {
        let tag = &self.tag;
        let client = NetNs::new(&format!("{tag}-cli"))?;
        let gateway = NetNs::new(&format!("{tag}-gw"))?;
        let server = NetNs::new(&format!("{tag}-srv"))?;
        let lan = if self.one_armed {
            Some(NetNs::new(&format!("{tag}-lan"))?)
        } else {
            None
        };
        let mut topo = Topology {
            client,
            gateway,
            server,
            lan,
            slaac_client: self.slaac_client,
            _xdp_pass: Vec::new(),
        };
        topo.wire(self.plain).with_context(|| {
            format!(
                "building the {} topology",
                if self.one_armed {
                    "one-armed"
                } else {
                    "two-armed"
                }
            )
        })?;
        Ok(topo)
    }
}

/// The namespaces of one topology; dropping it removes them all.
#[derive(Debug)]
pub struct Topology {
    /// IPv6-only client: `c0` 2001:db8:1::2/64, default route via 2001:db8:1::1 (or, with
    /// [`TopologyBuilder::slaac_client`], nothing but what router advertisements give it).
    pub client: NetNs,
    /// The gateway: forwarding on; `g6` + `g4`, or `g0` when one-armed.
    pub gateway: NetNs,
    /// IPv4-only server: `s0` 192.0.2.2/24, default route via 192.0.2.1.
    pub server: NetNs,
    /// The bridge namespace of the one-armed variant.
    pub lan: Option<NetNs>,
    /// Whether the client configures itself from router advertisements only.
    slaac_client: bool,
    /// `XDP_PASS` programs on the veths that receive the gateway's `XDP_TX` frames.
    _xdp_pass: Vec<XdpPass>,
}

impl Topology {
    /// A builder; `tag` starts every namespace name (keep it short, e.g. the test name).
    pub fn builder(tag: &str) -> TopologyBuilder {
        TopologyBuilder {
            tag: tag.to_owned(),
            one_armed: false,
            plain: false,
            slaac_client: false,
        }
    }

    /// The two-armed topology.
    pub fn two_armed(tag: &str) -> Result<Self> {
        Self::builder(tag).build()
    }

    /// The one-armed topology.
    pub fn one_armed(tag: &str) -> Result<Self> {
        Self::builder(tag).one_armed(true).build()
    }

    /// Whether the gateway has one interface for both sides.
    pub fn is_one_armed(&self) -> bool {
        self.lan.is_some()
    }

    /// The gateway's IPv6-side interface.
    pub fn ipv6_interface(&self) -> &'static str {
        if self.is_one_armed() { "g0" } else { "g6" }
    }

    /// The gateway's IPv4-side interface.
    pub fn ipv4_interface(&self) -> &'static str {
        if self.is_one_armed() { "g0" } else { "g4" }
    }

    /// A gateway configuration for this topology: its interfaces, prefix 2001:db8:64::/96,
    /// clients 2001:db8:1::/64, pool 192.0.2.1, native mode, and a unique instance name.
    pub fn config(&self) -> GatewayConfig {
        GatewayConfig::new(self.ipv6_interface(), self.ipv4_interface())
    }

    /// [`Topology::config`] with the gateway in attach mode `mode` (native, generic, tc).
    pub fn config_in(&self, mode: &str) -> GatewayConfig {
        let mut c = self.config();
        c.mode = Some(mode.to_owned());
        c
    }

    fn wire(&mut self, plain: bool) -> Result<()> {
        let (c, g, s) = (&self.client, &self.gateway, &self.server);
        let mut xdp_pass = Vec::new();
        match &self.lan {
            None => {
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
                    "s0",
                    "netns",
                    s.name(),
                ])?;
                for dev in ["g6", "g4"] {
                    gateway_interface(g, dev)?;
                }
                g.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "g6", "nodad"])?;
                g.ip(&["addr", "add", "192.0.2.1/24", "dev", "g4"])?;
            }
            Some(lan) => {
                lan.ip(&["link", "add", "br0", "type", "bridge"])?;
                lan.ip(&["link", "set", "br0", "up"])?;
                for (ns, dev, port) in [(c, "c0", "lc"), (g, "g0", "lg"), (s, "s0", "ls")] {
                    lan.ip(&[
                        "link",
                        "add",
                        port,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        dev,
                        "netns",
                        ns.name(),
                    ])?;
                    lan.ip(&["link", "set", port, "master", "br0"])?;
                    lan.ip(&["link", "set", port, "up"])?;
                    // The bridge ports receive what the gateway sends with XDP_TX, and forward the
                    // others' frames: give them NAPI and full checksums too.
                    if !plain {
                        endpoint_offloads(lan, port)?;
                    }
                }
                gateway_interface(g, "g0")?;
                g.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "g0", "nodad"])?;
                g.ip(&["addr", "add", "192.0.2.1/24", "dev", "g0"])?;
                // XDP_TX on g0 lands in lg's ring, and veth only kicks the peer's NAPI for
                // XDP_TX when the peer runs an XDP program: give lg one that passes everything.
                if !plain {
                    xdp_pass.push(XdpPass::attach(lan, "lg")?);
                }
            }
        }
        g.sysctl("net.ipv4.ip_forward", "1")?;
        g.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        g.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        g.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
        g.sysctl("net.ipv4.conf.all.accept_local", "1")?;

        // IPv6-only client.
        c.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        if self.slaac_client {
            c.sysctl("net.ipv6.conf.c0.accept_ra", "2")?;
            c.sysctl("net.ipv6.conf.c0.autoconf", "1")?;
            c.ip(&["link", "set", "c0", "up"])?;
            if !plain {
                endpoint_offloads(c, "c0")?;
            }
        } else {
            c.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "c0", "nodad"])?;
            c.ip(&["link", "set", "c0", "up"])?;
            if !plain {
                endpoint_offloads(c, "c0")?;
            }
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
        }

        // IPv4-only server.
        s.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        s.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        s.ip(&["addr", "add", "192.0.2.2/24", "dev", "s0"])?;
        s.ip(&["link", "set", "s0", "up"])?;
        if !plain {
            endpoint_offloads(s, "s0")?;
        }
        s.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", "s0"])?;
        s.ip(&[
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "192.0.2.1",
            "dev",
            "s0",
        ])?;

        // Resolve neighbours once so the first translated packet finds them (the data plane
        // passes packets to the kernel while a neighbour is unresolved; this only saves time).
        if !self.slaac_client {
            let _ = c.try_run(
                &["ping", "-6", "-c", "1", "-W", "2", "2001:db8:1::1"],
                crate::cmd::SHORT,
            );
        }
        let _ = s.try_run(
            &["ping", "-4", "-c", "1", "-W", "2", "192.0.2.1"],
            crate::cmd::SHORT,
        );
        self._xdp_pass = xdp_pass;
        Ok(())
    }
}

fn gateway_interface(g: &NetNs, dev: &str) -> Result<()> {
    g.ip(&["link", "set", dev, "up"])?;
    g.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
    g.sysctl(&format!("net.ipv4.conf.{dev}.accept_local"), "1")?;
    Ok(())
}

/// `ethtool -K dev tx off`, then GRO off and on again (see the module docs). The device must be
/// up: veth enables NAPI for GRO when it opens or when GRO changes while it is up, and an
/// `ethtool -K dev gro on` on a device whose GRO is already on changes nothing, so the toggle is
/// what reliably gives it NAPI.
fn endpoint_offloads(ns: &NetNs, dev: &str) -> Result<()> {
    ns.run(&["ethtool", "-K", dev, "tx", "off"])?;
    ns.run(&["ethtool", "-K", dev, "gro", "off"])?;
    ns.run(&["ethtool", "-K", dev, "gro", "on"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_under_the_prefix() {
        assert_eq!(server_via_prefix().to_string(), "2001:db8:64::c000:202");
        assert_eq!(nat64(ALT_POOL_V4).to_string(), "2001:db8:64::c633:6401");
    }
}
