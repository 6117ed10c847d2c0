//! What the CLAT changes on the host, over rtnetlink (the `rtnetlink` crate): the veth pair of
//! its IPv4 interface, the host's 192.0.0.0/29 address and IPv4 default route on it, and the
//! IPv6 address dedicated to the CLAT on the uplink. Also what it reads: the uplink's global
//! addresses, the interface of the IPv6 default route, and native IPv4 default routes.
//!
//! Every change here is undone by [`Netlink::remove_all`] (`translator clat down` and a clean
//! exit): deleting one end of the veth pair deletes the other, its address and its routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, anyhow};
use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle, LinkVeth, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo},
        link::{LinkAttribute, LinkFlags},
        route::{RouteAttribute, RouteMessage, RouteProtocol, RouteScope},
    },
};

/// The metric of the CLAT's IPv4 default route: high, so that any native default route the
/// host gets later wins at once (RFC 6877 section 6.3), before the CLAT notices and steps back.
pub const ROUTE_METRIC: u32 = 2048;
/// Infinite lifetime (`ip address ... valid_lft forever`).
const FOREVER: u32 = u32::MAX;

/// A global IPv6 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Global6 {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    /// Still in duplicate address detection.
    pub tentative: bool,
    pub dad_failed: bool,
    pub deprecated: bool,
}

/// An interface as the CLAT needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
}

/// A connection to the kernel's routing socket, on its own task of the caller's runtime.
pub struct Netlink {
    handle: Handle,
}

fn is_global6(a: Ipv6Addr) -> bool {
    let s = a.segments()[0];
    // 2000::/3 global unicast; fc00::/7 unique local (a CLAT on a ULA-only link still works).
    (0x2000..=0x3fff).contains(&s) || (s & 0xfe00) == 0xfc00
}

fn flags_of(m: &AddressMessage) -> AddressFlags {
    m.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(m.header.flags.bits())))
}

fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

fn default_route_oif(r: &RouteMessage) -> Option<u32> {
    if r.header.destination_prefix_length != 0 {
        return None;
    }
    // Only the main table: policy-routing tables are not "the host's default route".
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table));
    if table != 254 {
        return None;
    }
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

impl Netlink {
    /// Opens the connection; must run inside a Tokio runtime (the connection is spawned on it).
    pub fn open() -> anyhow::Result<Self> {
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening the rtnetlink socket")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The interface named `name`, if there is one.
    pub async fn link(&self, name: &str) -> anyhow::Result<Option<LinkInfo>> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let m = match s.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            // ENODEV: no such interface.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                return Ok(None);
            }
            Err(e) => return Err(anyhow!("reading interface {name}: {e}")),
        };
        let mut info = LinkInfo {
            index: m.header.index,
            mac: [0; 6],
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::Address(b) if b.len() == 6 => info.mac.copy_from_slice(b),
                LinkAttribute::Mtu(v) => info.mtu = *v,
                _ => {}
            }
        }
        Ok(Some(info))
    }

    /// The name of interface `index`.
    pub async fn link_name(&self, index: u32) -> anyhow::Result<Option<String>> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(anyhow!("reading interface {index}: {e}")),
        }
    }

    /// Creates the veth pair `name` / `peer` (down) unless `name` exists.
    pub async fn create_veth(&self, name: &str, peer: &str, mtu: u32) -> anyhow::Result<()> {
        if self.link(name).await?.is_some() {
            return Ok(());
        }
        let msg = LinkVeth::new(name, peer).mtu(mtu).arp(false).build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| anyhow!("creating the veth pair {name}/{peer}: {e}"))
    }

    /// Sets an interface up with an MTU, and without ARP (nothing resolves neighbours on the
    /// CLAT's link: its programs write the MAC addresses).
    pub async fn set_up(&self, index: u32, mtu: u32) -> anyhow::Result<()> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index)
            .mtu(mtu)
            .arp(false)
            .up()
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| anyhow!("setting interface {index} up with MTU {mtu}: {e}"))
    }

    /// Sets the MTU of an interface.
    pub async fn set_mtu(&self, index: u32, mtu: u32) -> anyhow::Result<()> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index)
            .mtu(mtu)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| anyhow!("setting the MTU of interface {index} to {mtu}: {e}"))
    }

    /// Deletes an interface (and so its veth peer, addresses and routes) if it exists.
    pub async fn delete_link(&self, name: &str) -> anyhow::Result<bool> {
        let Some(l) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(l.index).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(false),
            Err(e) => Err(anyhow!("deleting interface {name}: {e}")),
        }
    }

    /// The IPv4 addresses of an interface.
    pub async fn addresses4(&self, index: u32) -> anyhow::Result<Vec<(Ipv4Addr, u8)>> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s.try_next().await.context("reading IPv4 addresses")? {
            if m.header.index != index {
                continue;
            }
            if let Some(IpAddr::V4(a)) = address_of(&m) {
                out.push((a, m.header.prefix_len));
            }
        }
        Ok(out)
    }

    /// Adds an IPv4 address (if missing).
    pub async fn add_address4(&self, index: u32, a: Ipv4Addr, len: u8) -> anyhow::Result<()> {
        if self.addresses4(index).await?.contains(&(a, len)) {
            return Ok(());
        }
        self.handle
            .address()
            .add(index, IpAddr::V4(a), len)
            .execute()
            .await
            .map_err(|e| anyhow!("adding {a}/{len} to interface {index}: {e}"))
    }

    /// The global IPv6 addresses of an interface, with their DAD state.
    pub async fn globals6(&self, index: u32) -> anyhow::Result<Vec<Global6>> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s.try_next().await.context("reading IPv6 addresses")? {
            if m.header.index != index || m.header.family != AddressFamily::Inet6 {
                continue;
            }
            let Some(IpAddr::V6(addr)) = address_of(&m) else {
                continue;
            };
            if !is_global6(addr) {
                continue;
            }
            let f = flags_of(&m);
            out.push(Global6 {
                addr,
                prefix_len: m.header.prefix_len,
                tentative: f.contains(AddressFlags::Tentative),
                dad_failed: f.contains(AddressFlags::Dadfailed),
                deprecated: f.contains(AddressFlags::Deprecated),
            });
        }
        Ok(out)
    }

    /// Adds the CLAT's IPv6 address to the uplink: a /128 that is never preferred (the host's
    /// own IPv6 traffic does not pick it as a source), with duplicate address detection, so
    /// the kernel answers Neighbor Discovery for it once it is unique.
    pub async fn add_clat6(&self, index: u32, a: Ipv6Addr) -> anyhow::Result<()> {
        let mut req = self.handle.address().add(index, IpAddr::V6(a), 128);
        let m = req.message_mut();
        let mut lifetimes = CacheInfo::default();
        lifetimes.ifa_preferred = 0;
        lifetimes.ifa_valid = FOREVER;
        m.attributes.push(AddressAttribute::CacheInfo(lifetimes));
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(anyhow!(
                "adding the CLAT address {a}/128 to interface {index}: {e}"
            )),
        }
    }

    /// Removes an IPv6 /128 from an interface, if it is there.
    pub async fn del_address6(&self, index: u32, a: Ipv6Addr) -> anyhow::Result<bool> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(IpAddr::V6(a))
            .execute();
        let mut found = Vec::new();
        while let Some(m) = s.try_next().await.context("reading IPv6 addresses")? {
            if m.header.index == index && address_of(&m) == Some(IpAddr::V6(a)) {
                found.push(m);
            }
        }
        let any = !found.is_empty();
        for m in found {
            match self.handle.address().del(m).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.raw_code() == -libc::EADDRNOTAVAIL || e.raw_code() == -libc::ENODEV => {}
                Err(e) => return Err(anyhow!("removing {a} from interface {index}: {e}")),
            }
        }
        Ok(any)
    }

    async fn routes(&self, v6: bool) -> anyhow::Result<Vec<RouteMessage>> {
        let msg = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        self.handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .context("reading the routing table")
    }

    /// Interfaces with an IPv6 default route in the main table, best metric first.
    pub async fn default6_interfaces(&self) -> anyhow::Result<Vec<u32>> {
        let mut v: Vec<(u32, u32)> = self
            .routes(true)
            .await?
            .iter()
            .filter_map(|r| {
                let oif = default_route_oif(r)?;
                let metric = r
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Priority(p) => Some(*p),
                        _ => None,
                    })
                    .unwrap_or(0);
                Some((metric, oif))
            })
            .collect();
        v.sort();
        Ok(v.into_iter().map(|(_, i)| i).collect())
    }

    /// Interfaces other than `except` with an IPv4 default route in the main table: native
    /// IPv4, with which the CLAT stays off.
    pub async fn native4_interfaces(&self, except: u32) -> anyhow::Result<Vec<u32>> {
        Ok(self
            .routes(false)
            .await?
            .iter()
            .filter_map(default_route_oif)
            .filter(|i| *i != except)
            .collect())
    }

    fn default4(index: u32, gateway: Ipv4Addr) -> RouteMessage {
        let mut m = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(index)
            .gateway(gateway)
            .priority(ROUTE_METRIC)
            .protocol(RouteProtocol::Static)
            .scope(RouteScope::Universe)
            .build();
        // Nothing resolves the gateway on the CLAT's link (no ARP): it is on-link by decree.
        m.header.flags |= rtnetlink::packet_route::route::RouteFlags::Onlink;
        m
    }

    /// Whether the CLAT's IPv4 default route is there.
    pub async fn has_default4(&self, index: u32) -> anyhow::Result<bool> {
        Ok(self
            .routes(false)
            .await?
            .iter()
            .any(|r| default_route_oif(r) == Some(index)))
    }

    /// Adds the IPv4 default route through the CLAT's interface.
    pub async fn add_default4(&self, index: u32, gateway: Ipv4Addr) -> anyhow::Result<()> {
        match self
            .handle
            .route()
            .add(Self::default4(index, gateway))
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(anyhow!("adding the IPv4 default route via {gateway}: {e}")),
        }
    }

    /// Removes the IPv4 default route through the CLAT's interface, if it is there.
    pub async fn del_default4(&self, index: u32, gateway: Ipv4Addr) -> anyhow::Result<()> {
        match self
            .handle
            .route()
            .del(Self::default4(index, gateway))
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc::ESRCH || e.raw_code() == -libc::ENODEV =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow!(
                "removing the IPv4 default route via {gateway}: {e}"
            )),
        }
    }

    /// The gateway of a route, for tests of this module.
    #[cfg(test)]
    fn gateway_of(r: &RouteMessage) -> Option<IpAddr> {
        use rtnetlink::packet_route::route::RouteAddress;
        r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(IpAddr::V6(*g)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_addresses() {
        assert!(is_global6("2001:db8::1".parse().unwrap()));
        assert!(is_global6("fd00::1".parse().unwrap()));
        assert!(!is_global6("fe80::1".parse().unwrap()));
        assert!(!is_global6("::1".parse().unwrap()));
        assert!(!is_global6("ff02::1".parse().unwrap()));
    }

    #[test]
    fn the_default_route_message_is_onlink_with_the_metric() {
        let m = Netlink::default4(7, Ipv4Addr::new(192, 0, 0, 2));
        assert_eq!(m.header.destination_prefix_length, 0);
        assert!(
            m.header
                .flags
                .contains(rtnetlink::packet_route::route::RouteFlags::Onlink)
        );
        assert_eq!(
            Netlink::gateway_of(&m),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 0, 2)))
        );
        assert!(
            m.attributes
                .contains(&RouteAttribute::Priority(ROUTE_METRIC))
        );
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
    }
}
