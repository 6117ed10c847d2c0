//! Which attach mode suits an interface, and why: `translator check` and `translator status`
//! print it, and `translator run` warns when the configured mode is a poor fit.
//!
//! The interface's driver (`ETHTOOL_GDRVINFO`) decides: on veth, native XDP copies every packet
//! into a new page before the program runs, sees each segment of a GRO-merged TCP stream on its
//! own, and what it sends back out of the veth it came in on (the errors the gateway answers
//! with, one-armed replies) reaches the peer only when the peer has NAPI (GRO on, or an XDP
//! program of its own). With `XDP_TX` such frames wait in the peer's queue until a later frame
//! wakes it (seconds, or never); so on veth the data plane sends them with a redirect to the
//! same veth instead ([`tx_by_redirect`]), which wakes a peer with NAPI at once; a peer without
//! NAPI, the kernel's default for veth, drops them either way. A TC program works on the skb
//! as it is, GSO included, and sends through the kernel's queues: everything arrives at once
//! with nothing on the peer. On a TAP device and on NIC drivers with XDP support, native XDP
//! runs on the frame before any skb exists, which nothing else matches.

use serde::Serialize;

use crate::config::{AttachMode, Config};

/// The advice for one interface.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub interface: String,
    /// The kernel driver, as `ethtool -i` names it (empty when it could not be read).
    pub driver: String,
    pub suggested: AttachMode,
    pub reason: &'static str,
}

impl Advice {
    /// A sentence for an operator who configured `mode` on this interface, or `None` when the
    /// mode is the suggested one.
    pub fn warning(&self, mode: AttachMode) -> Option<String> {
        (mode != self.suggested).then(|| {
            format!(
                "interfaces.mode = \"{mode}\" on {} ({}): mode \"{}\" suits it better: {}",
                self.interface,
                if self.driver.is_empty() {
                    "driver unknown"
                } else {
                    &self.driver
                },
                self.suggested,
                self.reason
            )
        })
    }
}

const VETH: &str = "veth: native XDP copies every packet into a new page and sees each segment \
                    of a GRO-merged TCP stream on its own; what the gateway sends back out of \
                    the veth a packet came in on (its own ICMP errors: packet too big, \
                    fragmentation needed, time exceeded, address unreachable; one-armed \
                    replies) reaches the host only if the veth's peer has NAPI: the gateway \
                    sends those with a redirect, which the peer takes at once with GRO on \
                    (`ethtool -K <peer> gro on`) or an XDP program of its own, and drops \
                    otherwise (with XDP_TX they would wait in its queue until a later frame); \
                    TC works on the skb as it is, GSO included, with no copy, and delivers \
                    them at once with nothing on the peer";
const TUN: &str = "TAP: native XDP runs on the written frame before any skb exists";
const VIRTUAL: &str = "a software device without native XDP: generic XDP pays for an skb anyway, \
                       and TC works on that skb as it is, GSO included";
const NIC: &str = "a NIC driver: native XDP runs in the driver's receive path before any skb \
                   exists (if the driver lacks XDP support, `run` falls back to generic mode; \
                   tc is then the better choice)";

/// The suggestion for a driver name.
pub fn for_driver(driver: &str) -> (AttachMode, &'static str) {
    match driver {
        "veth" | "netkit" => (AttachMode::Tc, VETH),
        "tun" => (AttachMode::Native, TUN),
        "bridge" | "bonding" | "team" | "macvlan" | "ipvlan" | "vxlan" | "geneve"
        | "802.1Q VLAN" | "dummy" | "wireguard" | "gre" | "ip6_gre" | "ip_gre" | "ipip" | "sit"
        | "vrf" | "" => (AttachMode::Tc, VIRTUAL),
        _ => (AttachMode::Native, NIC),
    }
}

/// Whether the XDP program should send what goes back out of the receiving interface with a
/// redirect instead of `XDP_TX`: native mode with a veth among the interfaces (see the module
/// docs). Generic XDP and TC send through the kernel's queues either way.
pub fn tx_by_redirect(cfg: &Config) -> bool {
    cfg.mode == AttachMode::Native
        && crate::dataplane::interfaces(cfg)
            .iter()
            .any(|i| driver(i).is_some_and(|d| d == "veth"))
}

/// The advice for an interface of this network namespace.
pub fn advise(interface: &str) -> Advice {
    let driver = driver(interface).unwrap_or_default();
    let (suggested, reason) = for_driver(&driver);
    Advice {
        interface: interface.to_owned(),
        driver,
        suggested,
        reason,
    }
}

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with the `ifr_data` member.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut DrvInfo,
    _pad: [u8; 16],
}

const ETHTOOL_GDRVINFO: u32 = 3;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// The driver of an interface, as `ethtool -i` shows it.
pub fn driver(interface: &str) -> Option<String> {
    let bytes = interface.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `req` and the `info` it points to outlive the call; the kernel writes at most
    // sizeof(struct ethtool_drvinfo) into `info`.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) };
    // SAFETY: closing the socket made above.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers() {
        assert_eq!(for_driver("veth").0, AttachMode::Tc);
        assert_eq!(for_driver("tun").0, AttachMode::Native);
        assert_eq!(for_driver("mlx5_core").0, AttachMode::Native);
        assert_eq!(for_driver("bridge").0, AttachMode::Tc);
        assert_eq!(for_driver("").0, AttachMode::Tc);
    }

    #[test]
    fn unknown_interfaces_have_no_driver() {
        // (Real drivers are read in the end-to-end tests, on veths.)
        assert!(driver("no-such-if-x").is_none());
        assert!(driver("a-name-longer-than-ifnamsiz").is_none());
    }

    #[test]
    fn warning_names_setting_interface_and_mode() {
        let a = Advice {
            interface: "g6".into(),
            driver: "veth".into(),
            suggested: AttachMode::Tc,
            reason: VETH,
        };
        let w = a.warning(AttachMode::Native).unwrap_or_default();
        assert!(w.contains("interfaces.mode") && w.contains("g6") && w.contains("\"tc\""));
        // It says what goes wrong and what to do about it.
        assert!(w.contains("packet too big") && w.contains("one-armed"));
        assert!(w.contains("gro on") && w.contains("XDP_TX"));
        assert!(a.warning(AttachMode::Tc).is_none());
    }
}
