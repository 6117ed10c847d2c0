//! Helpers of the router advertisement end-to-end tests (`e2e_ra.rs`, `e2e_ra_wire.rs`):
//! prerequisites, addresses and MACs read with `ip -j`, the gateway's link, scapy, counters, and
//! the whole-frame comparison with the independent encoder of `translator_tests::ra`. Shared by
//! several test files (`mod ra_common;`); each uses part of it.
#![allow(dead_code)]

use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use translator_tests::named::NAMED;
use translator_tests::ra::{Frame, Opt, Ra, frame, multicast_mac};
use translator_tests::{Gateway, GatewayConfig, NetNs, Topology, same_bytes, wait_until};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const PYTHON: &str = "/usr/bin/python3";

/// Takes the one-test-at-a-time lock and checks the prerequisites.
pub fn prepare() -> Result<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    translator_tests::require_root()?;
    translator_tests::translator_bin()?;
    for tool in [
        "/usr/bin/rdisc6",
        translator_tests::named::RDNSSD,
        PYTHON,
        NAMED,
        "/usr/bin/curl",
    ] {
        ensure!(
            Path::new(tool).is_file(),
            "{tool} is missing (Debian packages ndisc6, rdnssd, python3-scapy, bind9, curl; \
             `cargo xtask setup`)"
        );
    }
    Ok(guard)
}

pub fn ip(s: &str) -> Ipv6Addr {
    s.parse().expect("address literal")
}

/// The MAC address of `dev` in `ns`.
pub fn mac_of(ns: &NetNs, dev: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let text = v[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {dev}: {}", out.stdout_str()))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    ensure!(parts.len() == 6, "{text:?} is not a MAC address");
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)?;
    }
    Ok(mac)
}

/// The IPv6 addresses of `dev` in `ns` with the given scope, each with its JSON entry.
pub fn addrs(ns: &NetNs, dev: &str, scope: &str) -> Result<Vec<(Ipv6Addr, serde_json::Value)>> {
    let out = ns.ip(&["-j", "-6", "addr", "show", "dev", dev, "scope", scope])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut list = Vec::new();
    for a in v[0]["addr_info"].as_array().into_iter().flatten() {
        if let Some(local) = a["local"].as_str().and_then(|s| s.parse().ok()) {
            list.push((local, a.clone()));
        }
    }
    Ok(list)
}

/// The link-local address of `dev`, once DAD is done.
pub fn link_local(ns: &NetNs, dev: &str) -> Result<Ipv6Addr> {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = addrs(ns, dev, "link").ok().and_then(|l| {
            l.into_iter()
                .find(|(_, j)| j["tentative"].as_bool() != Some(true))
                .map(|(a, _)| a)
        });
        found.is_some()
    });
    found.with_context(|| format!("{dev} in {} has no usable link-local address", ns.name()))
}

/// The modified EUI-64 address in `prefix`/64 for `mac` (RFC 4291 appendix A).
pub fn eui64(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[8..].copy_from_slice(&[
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    Ipv6Addr::from(o)
}

/// The gateway's end of the client link.
pub struct GwLink {
    pub mac: [u8; 6],
    pub ll: Ipv6Addr,
}

impl GwLink {
    pub fn read(topo: &Topology) -> Result<Self> {
        Ok(Self {
            mac: mac_of(&topo.gateway, topo.ipv6_interface())?,
            ll: link_local(&topo.gateway, topo.ipv6_interface())?,
        })
    }

    /// The frame an advertisement from the gateway to ff02::1 must be.
    pub fn frame(&self, ra: &Ra) -> Result<Vec<u8>> {
        frame(self.mac, multicast_mac(ALL_NODES), self.ll, ALL_NODES, ra)
    }
}

/// A gateway configuration with short timers (the controller writes its counters every
/// second) and `extra` appended.
pub fn gateway_config(topo: &Topology, extra: &str) -> GatewayConfig {
    let mut cfg = topo.config();
    cfg.clients = vec!["2001:db8:1::/64".into(), "2001:db8:2::/64".into()];
    cfg.timeout_icmp = Some(4);
    cfg.extra = extra.to_owned();
    cfg
}

/// Runs a scapy script (after `from scapy.all import *`) in the client namespace.
pub fn scapy(ns: &NetNs, script: &str) -> Result<()> {
    let text = format!("from scapy.all import *\nimport struct\nconf.verb = 0\n{script}\n");
    ns.run_timeout(&[PYTHON, "-c", &text], Duration::from_secs(60))
        .context("running scapy")?;
    Ok(())
}

pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sends one valid solicitation from the client (hop limit 255, its link-local source and
/// a source link-layer address option), or from :: without the option.
pub fn solicit(topo: &Topology, unspecified: bool) -> Result<()> {
    let mac = mac_of(&topo.client, "c0")?;
    let m = mac_text(mac);
    let script = if unspecified {
        format!(
            "sendp(Ether(src='{m}', dst='33:33:00:00:00:02')/IPv6(src='::', dst='ff02::2', \
             hlim=255)/ICMPv6ND_RS(), iface='c0')"
        )
    } else {
        let ll = link_local(&topo.client, "c0")?;
        format!(
            "sendp(Ether(src='{m}', dst='33:33:00:00:00:02')/IPv6(src='{ll}', dst='ff02::2', \
             hlim=255)/ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr(lladdr='{m}'), iface='c0')"
        )
    };
    scapy(&topo.client, &script)
}

/// The `ra` section of `translator stats --json`.
pub fn ra_stats(gw: &Gateway<'_>) -> Result<serde_json::Value> {
    let out = gw.cli(&["stats", "--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v.get("ra").cloned().unwrap_or(serde_json::Value::Null))
}

pub fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// Compares a captured advertisement with the expected one.
pub fn check_advert(what: &str, got: &Frame, gw: &GwLink, want: &Ra) -> Result<()> {
    let expected = gw.frame(want)?;
    same_bytes(what, &got.bytes, &expected).with_context(|| {
        format!(
            "got:  {}\nwant: {}\nexpected fields: {want:?}",
            hex(&got.bytes),
            hex(&expected)
        )
    })
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn pref64(lifetime: u32, prefix: &str, len: u8) -> Opt {
    Opt::Pref64 {
        lifetime,
        prefix: ip(prefix),
        len,
    }
}

pub fn pio(prefix: &str, valid: u32, preferred: u32) -> Opt {
    Opt::Prefix {
        prefix: ip(prefix),
        len: 64,
        valid,
        preferred,
    }
}
