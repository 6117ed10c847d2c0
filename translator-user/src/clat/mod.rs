//! `translator clat`: the customer-side translator of 464XLAT (RFC 6877) for an IPv6-only
//! Linux host, so that applications using IPv4 literals and IPv4-only sockets work through the
//! network's NAT64 (the PLAT).
//!
//! What it does on the host, and undoes on exit or `translator clat down`:
//! - a veth pair, `clat` (the host's IPv4 interface, 192.0.0.1/29 after RFC 7335) and
//!   `clat-peer`, both without IPv6, with the MTU of the uplink minus 20;
//! - an IPv4 default route via 192.0.0.2 on `clat` with metric 2048, only while the host has no
//!   native IPv4 default route (RFC 6877 section 6.3);
//! - one IPv6 address dedicated to the CLAT, a stable interface identifier in the uplink's
//!   SLAAC /64, added to the uplink as a never-preferred /128 with duplicate address detection,
//!   so the kernel answers Neighbor Discovery for it and never uses it itself;
//! - the data plane's CLAT programs (`clat_egress` on `clat`, `clat_ingress` on the uplink,
//!   TCX), and the user-space slow path for what they hand over.
//!
//! The PLAT prefix comes from PREF64 in the uplink's router advertisements, else from
//! ipv4only.arpa through the host's resolvers, else from `--prefix` (`discover`); a change or
//! an expiry is followed at once. `clat status` shows the prefix, where it came from, its
//! lifetime and the counters; the running CLAT writes them to /run/translator-clat/net-<inode>
//! (its pins are in /sys/fs/bpf/translator-clat/net-<inode>: one CLAT per network namespace).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub mod dataplane;
pub mod discover;
pub mod net;
mod run;
pub mod slowpath;

pub use run::{Options, run};

/// The host's IPv4 interface and its veth peer.
pub const V4_INTERFACE: &str = "clat";
pub const PEER_INTERFACE: &str = "clat-peer";
/// The host's IPv4 address and the gateway of its default route (RFC 7335).
pub const HOST_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 1);
pub const GATEWAY_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 2);
pub const HOST_PREFIX_LEN: u8 = 29;
/// The source of ICMPv4 errors whose ICMPv6 source has no IPv4 form: the IPv4 dummy address
/// (RFC 7600), as RFC 6791 suggests.
pub const ERROR_SOURCE_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 8);

/// Where CLATs keep pins and state: one folder per network namespace (bpffs and /run are
/// shared by all namespaces of the host; one CLAT runs per namespace).
pub const PINS_ROOT: &str = "/sys/fs/bpf/translator-clat";
pub const RUN_ROOT: &str = "/run/translator-clat";

/// The current network namespace's name in those folders: `net-<inode>`.
fn netns_id() -> String {
    use std::os::unix::fs::MetadataExt as _;
    // The calling thread's namespace (`--netns` moves the main thread).
    match std::fs::metadata("/proc/thread-self/ns/net") {
        Ok(m) => format!("net-{}", m.ino()),
        Err(_) => "net-unknown".to_owned(),
    }
}

/// This namespace's CLAT pins.
pub fn pins_dir() -> PathBuf {
    Path::new(PINS_ROOT).join(netns_id())
}

/// This namespace's CLAT state.
pub fn run_dir() -> PathBuf {
    Path::new(RUN_ROOT).join(netns_id())
}

pub fn status_path() -> PathBuf {
    run_dir().join("status.json")
}

/// What the running CLAT records (`clat status` reads it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub started_unix: u64,
    pub updated_unix: u64,
    pub uplink: String,
    pub v4_interface: String,
    pub ipv4: Option<Ipv4Addr>,
    /// The CLAT's IPv6 address, once chosen.
    pub clat6: Option<Ipv6Addr>,
    /// "active" (translating) or "off".
    pub state: String,
    /// Why it is off (or what it waits for).
    pub reason: Option<String>,
    /// The PLAT prefix in use, and how it was learnt.
    pub prefix: Option<String>,
    pub source: Option<serde_json::Value>,
    /// Seconds left before the prefix expires (none: no expiry).
    pub lifetime_remaining_s: Option<u64>,
    /// What every source last said (for debugging a choice).
    pub ra_prefix: Option<String>,
    pub dns_prefix: Option<String>,
    pub configured_prefix: Option<String>,
    pub dns_error: Option<String>,
    /// Control-plane counters: advertisements, PREF64 options, DNS lookups, prefix changes,
    /// and the slow path's.
    pub counters: Vec<(String, u64)>,
}

impl Status {
    pub fn read() -> anyhow::Result<Self> {
        let p = status_path();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "no CLAT is running here: cannot read {} (start one with `translator clat`)",
                p.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    pub fn write(&self) -> anyhow::Result<()> {
        let dir = run_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let p = status_path();
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))
    }
}

/// Whether process `pid` runs: it exists and is not a zombie (an exited process its parent
/// has not reaped yet).
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may contain anything.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Removes what a CLAT left on the host: interfaces (and with them the route and the IPv4
/// address), the CLAT's IPv6 address on the uplink, the pins and the state. Returns what was
/// removed, for the operator.
pub async fn remove_leftovers(
    nl: &net::Netlink,
    v4_interface: &str,
    uplink_and_clat6: Option<(&str, Ipv6Addr)>,
) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    if nl.delete_link(v4_interface).await? {
        removed.push(format!(
            "interface {v4_interface} (with its peer, address and route)"
        ));
    }
    if let Some((uplink, a)) = uplink_and_clat6
        && let Some(l) = nl.link(uplink).await?
        && nl.del_address6(l.index, a).await?
    {
        removed.push(format!("address {a} on {uplink}"));
    }
    for (dir, root, what) in [
        (pins_dir(), PINS_ROOT, "pins"),
        (run_dir(), RUN_ROOT, "state"),
    ] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            removed.push(format!("{what} in {}", dir.display()))
        }
        // The shared folder goes with the last CLAT of the host.
        let _ = std::fs::remove_dir(root);
    }
    Ok(removed)
}

/// `translator clat down`: stops a running CLAT (it cleans up after itself) and removes
/// whatever is left.
pub fn down() -> anyhow::Result<Vec<String>> {
    let status = Status::read().ok();
    let mut out = Vec::new();
    if let Some(s) = &status
        && alive(s.pid)
    {
        // SAFETY: plain kill(2) on the recorded pid.
        unsafe { libc::kill(s.pid as i32, libc::SIGTERM) };
        let t0 = std::time::Instant::now();
        while alive(s.pid) && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(s.pid) {
            anyhow::bail!(
                "the CLAT (pid {}) did not stop within 10 s of SIGTERM; stop it and run \
                 `translator clat down` again",
                s.pid
            );
        }
        out.push(format!("stopped the CLAT (pid {})", s.pid));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let v4 = status
        .as_ref()
        .map(|s| s.v4_interface.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| V4_INTERFACE.to_owned());
    let removed = rt.block_on(async {
        let nl = net::Netlink::open()?;
        let up = status
            .as_ref()
            .and_then(|s| Some((s.uplink.as_str(), s.clat6?)));
        remove_leftovers(&nl, &v4, up).await
    })?;
    out.extend(removed);
    Ok(out)
}

/// A stable interface identifier for the CLAT's address in `prefix` (a /64): FNV-1a over the
/// uplink's MAC, the prefix and an attempt number (raised after a failed duplicate address
/// detection), like RFC 7217's stable identifiers; never one of the reserved ones (RFC 5453).
pub fn interface_id(mac: &[u8; 6], prefix: Ipv6Addr, attempt: u32) -> u64 {
    let mut attempt = attempt;
    loop {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let (octets, n) = (prefix.octets(), attempt.to_be_bytes());
        let bytes = mac
            .iter()
            .chain(&octets[..8])
            .chain(&n)
            .chain(b"translator-clat");
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let reserved = h == 0 || (h >> 7) == (0xfdff_ffff_ffff_ff80u64 >> 7);
        if !reserved {
            return h;
        }
        attempt = attempt.wrapping_add(1);
    }
}

/// The CLAT's address in the /64 of `global`.
pub fn clat_address(mac: &[u8; 6], global: Ipv6Addr, attempt: u32) -> Ipv6Addr {
    let prefix = u128::from(global) & !((1u128 << 64) - 1);
    let p = Ipv6Addr::from(prefix);
    Ipv6Addr::from(prefix | u128::from(interface_id(mac, p, attempt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clat_address_is_stable_and_in_the_uplinks_64() {
        let mac = [2, 0, 0, 0, 0, 0x42];
        let g: Ipv6Addr = "2001:db8:1::1234".parse().unwrap();
        let a = clat_address(&mac, g, 0);
        assert_eq!(a, clat_address(&mac, g, 0));
        assert_eq!(a.segments()[..4], g.segments()[..4]);
        assert_ne!(a, clat_address(&mac, g, 1));
        assert_ne!(a, clat_address(&[2, 0, 0, 0, 0, 0x43], g, 0));
        assert_ne!(a, g);
    }
}
