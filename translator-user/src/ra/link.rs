//! What the advertisement needs to know about the interface, read fresh before each one (the
//! current network namespace, through getifaddrs(3): netlink, not /sys, which shows the
//! namespace it was mounted in).

use std::net::Ipv6Addr;

use super::rdnss::is_link_local;

/// The interface as the sender sees it now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// 0 when the interface does not exist.
    pub ifindex: u32,
    /// The link-layer address (empty on links without one, e.g. tun).
    pub mac: Vec<u8>,
    /// Every IPv6 address of the interface, link-local ones included.
    pub addrs: Vec<Ipv6Addr>,
}

impl Link {
    /// Reads the interface `name`.
    pub fn read(name: &str) -> Self {
        let mut mac = Vec::new();
        crate::netns::walk_addresses(|ifname, sa| {
            // SAFETY: walk_addresses passes non-null sockaddrs.
            if ifname == name && i32::from(unsafe { (*sa).sa_family }) == libc::AF_PACKET {
                // SAFETY: AF_PACKET entries of getifaddrs are sockaddr_ll.
                let ll = unsafe { &*(sa as *const libc::sockaddr_ll) };
                let n = usize::from(ll.sll_halen).min(ll.sll_addr.len());
                mac = ll.sll_addr[..n].to_vec();
            }
        });
        // An all-zero address (a bridge without ports, some virtual links) is no address.
        if mac.iter().all(|b| *b == 0) {
            mac.clear();
        }
        Self {
            name: name.to_owned(),
            ifindex: crate::netns::ifindex(name).unwrap_or(0),
            mac,
            addrs: crate::netns::interface_ipv6(name),
        }
    }

    /// The first link-local address: the source of every advertisement (RFC 4861 section 6.1.2).
    pub fn link_local(&self) -> Option<Ipv6Addr> {
        self.addrs.iter().copied().find(|a| is_link_local(*a))
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_link_layer_address_and_no_link_local() {
        let lo = Link::read("lo");
        assert!(lo.ifindex > 0);
        assert!(lo.mac.is_empty());
        assert_eq!(lo.link_local(), None);
        let none = Link::read("no-such-if0");
        assert_eq!(none.ifindex, 0);
        assert!(none.addrs.is_empty());
        assert_eq!(mac_text(&[2, 0, 0x5e, 0xab, 0, 1]), "02:00:5e:ab:00:01");
    }
}
